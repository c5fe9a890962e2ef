//! The order guests take jobs in and how many guests take them.

use std::collections::VecDeque;

use super::job::Job;
use super::phase::Phase;

/// A job's cost for the order and the ETA: what its phases say they cost.
pub fn weight(job: &Job, phases: &[Box<dyn Phase>]) -> u64 {
    phases.iter().map(|phase| phase.weight(job)).sum()
}

/// Heaviest first (longest-processing-time scheduling), so the last jobs
/// are short and the guests finish together. Equal weights keep the
/// given order.
pub fn schedule(jobs: &[Job], phases: &[Box<dyn Phase>]) -> VecDeque<Job> {
    let mut out = jobs.to_vec();
    out.sort_by_key(|job| std::cmp::Reverse(weight(job, phases)));
    out.into()
}

/// One guest per host core (each is one vCPU thread), at most 4: more
/// guests mostly add memory-bandwidth noise to each other's figures.
pub fn default_guests(jobs: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    guests_for(cores, jobs)
}

/// [`default_guests`] for a given core count: never more guests than
/// jobs, always one.
pub fn guests_for(cores: usize, jobs: usize) -> usize {
    cores.min(4).min(jobs).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::job::Family;
    use crate::bench::phase::ControlAndDataPlane;
    use crate::measure::{self, data::DataConfig, Recorder, Setting};
    use crate::tech::Tech;
    use crate::vm::Vm;

    fn job(family: Family, tech: Tech, n: u64) -> Job {
        Job {
            family,
            setting: Setting {
                tech,
                n,
                repeats: 1,
                full_load_budget_ms: measure::DEFAULT_FULL_LOAD_BUDGET_MS,
            },
        }
    }

    /// The family measurements alone: what the weights below are about,
    /// whatever else `phase::standard` runs.
    fn control_and_data() -> Vec<Box<dyn Phase>> {
        vec![Box::new(ControlAndDataPlane {
            data: DataConfig::default(),
        })]
    }

    fn shape(jobs: &VecDeque<Job>) -> Vec<String> {
        jobs.iter()
            .map(|j| format!("{}/{}/{}", j.family, j.setting.tech, j.setting.n))
            .collect()
    }

    #[test]
    fn heaviest_jobs_go_first_and_equal_ones_keep_their_order() {
        let phases = control_and_data();
        let jobs = [
            job(Family::Services, Tech::Nftables, 0),
            job(Family::Firewall, Tech::Ebpf, 10_000),
            job(Family::Services, Tech::Ipvs, 10_000),
            job(Family::Firewall, Tech::Nftables, 0),
            job(Family::Services, Tech::Ipvs, 100),
        ];
        assert_eq!(
            shape(&schedule(&jobs, &phases)),
            [
                "services/ipvs/10000",
                "firewall/ebpf/10000",
                "services/ipvs/100",
                "services/nftables/0",
                "firewall/nftables/0",
            ]
        );
        assert!(schedule(&[], &phases).is_empty());
    }

    #[test]
    fn weights_grow_with_n_and_the_technologys_slowness() {
        let phases = control_and_data();
        let w = |family, tech, n| weight(&job(family, tech, n), &phases);
        // The fixed part alone at N = 0, whatever the technology.
        assert_eq!(w(Family::Services, Tech::Nftables, 0), 50);
        assert_eq!(w(Family::Firewall, Tech::Ebpf, 0), 50);
        // nft 0.9.8 loading 10k services is the slowest job of the ladder.
        assert_eq!(w(Family::Services, Tech::Nftables, 10_000), 650);
        assert_eq!(w(Family::Services, Tech::IptablesNft, 10_000), 350);
        assert_eq!(w(Family::Services, Tech::Ipvs, 10_000), 250);
        assert_eq!(w(Family::Firewall, Tech::Nftables, 10_000), 150);
    }

    /// A phase that only costs on firewall jobs.
    struct FirewallOnly;

    impl Phase for FirewallOnly {
        fn weight(&self, job: &Job) -> u64 {
            match job.family {
                Family::Firewall => 1000,
                Family::Services => 0,
            }
        }
        fn run(&self, _: &mut Vm, _: &Job, _: &mut Recorder) -> anyhow::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_added_phase_adds_its_weight_to_the_order() {
        let mut phases = control_and_data();
        let jobs = [
            job(Family::Services, Tech::Nftables, 10_000),
            job(Family::Firewall, Tech::Ebpf, 0),
        ];
        assert_eq!(
            shape(&schedule(&jobs, &phases)),
            ["services/nftables/10000", "firewall/ebpf/0"]
        );
        phases.push(Box::new(FirewallOnly));
        assert_eq!(weight(&jobs[1], &phases), 50 + 1000);
        assert_eq!(
            shape(&schedule(&jobs, &phases)),
            ["firewall/ebpf/0", "services/nftables/10000"]
        );
    }

    #[test]
    fn one_guest_per_core_at_most_four_never_more_than_jobs() {
        assert_eq!(guests_for(2, 40), 2);
        assert_eq!(guests_for(16, 40), 4);
        assert_eq!(guests_for(16, 3), 3);
        assert_eq!(guests_for(8, 0), 1);
        assert_eq!(guests_for(0, 5), 1);
    }
}
