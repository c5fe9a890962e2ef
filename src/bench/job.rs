//! The bench's unit of work — one family × technology × N — and the job
//! list a size ladder expands to.

use std::fmt;
use std::str::FromStr;

use crate::measure::Setting;
use crate::tech::Tech;

/// A workload family the bench measures (parsed from `--families`).
pub use crate::measure::Family;

impl FromStr for Family {
    type Err = PlanError;
    fn from_str(s: &str) -> Result<Family, PlanError> {
        match s {
            "services" => Ok(Family::Services),
            "firewall" => Ok(Family::Firewall),
            other => Err(PlanError::UnknownFamily(other.to_string())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("unknown family {0:?} (services or firewall)")]
    UnknownFamily(String),
    #[error("no technology in --techs supports the chosen --families")]
    NoJobs,
}

/// One unit of work: a family × technology × N.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub family: Family,
    pub setting: Setting,
}

impl fmt::Display for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} N={}",
            self.family, self.setting.tech, self.setting.n
        )
    }
}

/// What to measure: every family × technology × size, each job with the
/// same repeats and full-load budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ladder {
    pub families: Vec<Family>,
    /// Technologies to keep (empty: every one that supports the family).
    pub techs: Vec<Tech>,
    /// N (services or rules).
    pub sizes: Vec<u64>,
    pub repeats: u32,
    /// Guest seconds the full loads of one job may take together.
    pub full_load_budget_seconds: u64,
}

impl Ladder {
    /// The jobs in ladder order: family, then technology, then size.
    pub fn jobs(&self) -> Result<Vec<Job>, PlanError> {
        let mut out = Vec::new();
        for &family in &self.families {
            for &tech in family
                .techs()
                .iter()
                .filter(|t| self.techs.is_empty() || self.techs.contains(t))
            {
                for &n in &self.sizes {
                    out.push(Job {
                        family,
                        setting: Setting {
                            tech,
                            n,
                            repeats: self.repeats,
                            full_load_budget_ms: self.full_load_budget_seconds.saturating_mul(1000),
                        },
                    });
                }
            }
        }
        if out.is_empty() {
            return Err(PlanError::NoJobs);
        }
        Ok(out)
    }

    /// Guest memory for this ladder: today's 1 GiB up to N = 10k (the
    /// runs every figure so far comes from), 4 GiB above. 1 GiB does not
    /// hold 100k: eBPF's firewall vectors grow with N² and its loader was
    /// OOM-killed at 40k rules in 1 GiB, and nftables' ruleset took
    /// 15 MiB of kernel memory at 3k services (≈ 0.5 GiB at 100k, before
    /// nft's own parse of the text).
    pub fn default_guest_memory_mb(&self) -> u32 {
        let largest = self.sizes.iter().copied().max().unwrap_or(0);
        if largest > 10_000 {
            4096
        } else if largest > 1_000 {
            // nftables' firewall with alternating actions (the evidence
            // phase's overlap flood) is one interval set per rule: 3k of
            // them got nft OOM-killed in 1 GiB on 5.10 and load in 2 GiB.
            2048
        } else {
            1024
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ladder(families: &[Family], techs: &[Tech]) -> Ladder {
        Ladder {
            families: families.to_vec(),
            techs: techs.to_vec(),
            sizes: vec![0, 100],
            repeats: 3,
            full_load_budget_seconds: 120,
        }
    }

    #[test]
    fn a_ladder_expands_family_then_technology_then_size() {
        let jobs = ladder(
            &[Family::Firewall, Family::Services],
            &[Tech::Ipvs, Tech::Ebpf],
        )
        .jobs()
        .unwrap();
        let names: Vec<String> = jobs.iter().map(Job::to_string).collect();
        // IPVS cannot filter: the firewall family keeps eBPF only.
        assert_eq!(
            names,
            [
                "firewall ebpf N=0",
                "firewall ebpf N=100",
                "services ipvs N=0",
                "services ipvs N=100",
                "services ebpf N=0",
                "services ebpf N=100",
            ]
        );
        assert_eq!(jobs[0].setting.repeats, 3);
        assert_eq!(jobs[0].setting.full_load_budget_ms, 120_000);
        let all = ladder(&[Family::Services], &[]).jobs().unwrap();
        assert_eq!(all.len(), 2 * Tech::for_services().len());
    }

    #[test]
    fn larger_ladders_get_more_guest_memory() {
        let mut l = ladder(&[Family::Services], &[]);
        l.sizes = vec![0, 100, 1000];
        assert_eq!(l.default_guest_memory_mb(), 1024);
        l.sizes = vec![100, 3000];
        assert_eq!(l.default_guest_memory_mb(), 2048);
        l.sizes = vec![100, 10_000];
        assert_eq!(l.default_guest_memory_mb(), 2048);
        l.sizes = vec![100, 100_000];
        assert_eq!(l.default_guest_memory_mb(), 4096);
    }

    #[test]
    fn unknown_families_and_empty_ladders_are_plan_errors() {
        assert_eq!("firewall".parse::<Family>().unwrap(), Family::Firewall);
        let err = "routing".parse::<Family>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown family \"routing\" (services or firewall)"
        );
        let none = ladder(&[Family::Firewall], &[Tech::Ipvs])
            .jobs()
            .unwrap_err();
        assert!(matches!(none, PlanError::NoJobs));
    }
}
