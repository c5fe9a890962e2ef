//! The units of an A/B campaign, in the order both workers walk them.

use crate::measure::Family;
use crate::tech::Tech;
use serde::{Deserialize, Serialize};

/// What the workers are asked to measure (the same arguments go to both,
/// so their unit lists are identical).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbPlan {
    pub techs: Vec<Tech>,
    pub families: Vec<Family>,
    pub sizes: Vec<u64>,
    pub repeats: u32,
    /// Update rounds per unit (their median is the unit's value).
    pub rounds: u32,
}

/// One full load and one update round of (tech, family, N) at repeat
/// `repeat`'s position (`Position::of_repeat`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    pub tech: String,
    pub family: String,
    pub n: u64,
    pub repeat: u32,
}

impl Unit {
    pub fn key(&self) -> String {
        format!(
            "{} {} N={} r={}",
            self.tech, self.family, self.n, self.repeat
        )
    }
}

impl AbPlan {
    /// Every (family, tech, N) the family supports, each with its repeats
    /// in a row (one warm-up per group).
    pub fn units(&self) -> Vec<Unit> {
        let mut out = Vec::new();
        for &family in &self.families {
            for &tech in self.techs.iter().filter(|t| family.techs().contains(t)) {
                for &n in &self.sizes {
                    for repeat in 0..self.repeats {
                        out.push(Unit {
                            tech: tech.name().to_string(),
                            family: family.name().to_string(),
                            n,
                            repeat,
                        });
                    }
                }
            }
        }
        out
    }

    /// The worker's command-line arguments for this plan.
    pub fn worker_args(&self) -> Vec<String> {
        let join = |v: Vec<String>| v.join(",");
        vec![
            "ab-worker".into(),
            "--techs".into(),
            join(self.techs.iter().map(|t| t.name().to_string()).collect()),
            "--families".into(),
            join(self.families.iter().map(|f| f.name().to_string()).collect()),
            "--sizes".into(),
            join(self.sizes.iter().map(u64::to_string).collect()),
            "--repeats".into(),
            self.repeats.to_string(),
            "--rounds".into(),
            self.rounds.to_string(),
        ]
    }

    /// Guest memory: 2 GiB above N = 1k, as the bench gives its guests
    /// (nftables' interval sets at 3k were OOM-killed in 1 GiB).
    pub fn guest_memory_mb(&self) -> u32 {
        if self.sizes.iter().any(|&n| n > 1000) {
            2048
        } else {
            1024
        }
    }
}

/// Which side goes first in a unit: base in even repeats, head in odd
/// ones, so neither side always measures right after the other's load.
pub fn base_first(unit: &Unit) -> bool {
    unit.repeat.is_multiple_of(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_cover_every_supported_pair_with_repeats_in_a_row() {
        let plan = AbPlan {
            techs: vec![Tech::IptablesLegacy, Tech::Ipvs],
            families: vec![Family::Services, Family::Firewall],
            sizes: vec![100, 1000],
            repeats: 3,
            rounds: 2,
        };
        let units = plan.units();
        // IPVS has no firewall family.
        assert_eq!(units.len(), (2 + 1) * 2 * 3);
        assert_eq!(units[0].key(), "iptables-legacy services N=100 r=0");
        assert_eq!(units[2].key(), "iptables-legacy services N=100 r=2");
        assert!(!units
            .iter()
            .any(|u| u.tech == "ipvs" && u.family == "firewall"));
        assert!(base_first(&units[0]) && !base_first(&units[1]));
        assert_eq!(
            plan.worker_args().join(" "),
            "ab-worker --techs iptables-legacy,ipvs --families services,firewall --sizes 100,1000 --repeats 3 --rounds 2"
        );
    }
}
