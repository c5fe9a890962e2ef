//! The order guests take jobs in, which jobs are skipped by projection,
//! and how many guests take them.
//!
//! Jobs of one family × technology (a "chain") run in increasing N, one
//! at a time, so a job's time can be projected from the chain's smaller
//! jobs before it starts ([`super::projection`]). Across chains the lanes
//! stay busy: a free lane takes the ready job whose chain has the most
//! weight left (longest remaining chain first, the critical path), so the
//! heaviest chain never waits at the end.

use super::job::{Family, Job};
use super::phase::Phase;
use super::projection::{fits, project, Projection};
use crate::tech::Tech;

/// A job's cost for the order and the ETA: what its phases say they cost.
pub fn weight(job: &Job, phases: &[Box<dyn Phase>]) -> u64 {
    phases.iter().map(|phase| phase.weight(job)).sum()
}

/// What a free lane does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Run(Job),
    /// Not run: the projection exceeds the job budget.
    Skip(Job, Projection),
    /// Every pending job waits for a smaller one of its chain to finish.
    Wait,
    /// Nothing left to hand out.
    Done,
}

/// A finished job's host time, by chain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    pub family: Family,
    pub tech: Tech,
    pub n: u64,
    pub seconds: f64,
    pub failed: bool,
}

/// The jobs not yet handed out, the ones running, and the times of the
/// finished ones.
#[derive(Debug)]
pub struct JobQueue {
    /// Ladder order, each with its weight.
    pending: Vec<(Job, u64)>,
    running: Vec<Job>,
    measured: Vec<Measured>,
    /// None: every job runs.
    budget_seconds: Option<f64>,
}

fn same_chain(a: &Job, b: &Job) -> bool {
    a.family == b.family && a.setting.tech == b.setting.tech
}

impl JobQueue {
    pub fn new(jobs: &[Job], phases: &[Box<dyn Phase>], budget_seconds: Option<f64>) -> Self {
        JobQueue {
            pending: jobs
                .iter()
                .map(|job| (job.clone(), weight(job, phases)))
                .collect(),
            running: Vec::new(),
            measured: Vec::new(),
            budget_seconds,
        }
    }

    /// Ready: no smaller job of the same chain is pending or running.
    fn ready(&self, job: &Job) -> bool {
        let smaller = |other: &Job| same_chain(job, other) && other.setting.n < job.setting.n;
        !self.pending.iter().any(|(other, _)| smaller(other)) && !self.running.iter().any(smaller)
    }

    /// Weight of the job and everything after it in its chain.
    fn chain_left(&self, job: &Job) -> u64 {
        self.pending
            .iter()
            .filter(|(other, _)| same_chain(job, other) && other.setting.n >= job.setting.n)
            .map(|(_, w)| w)
            .sum()
    }

    /// The next job for a free lane: the ready job with the longest
    /// remaining chain (ties: ladder order), or its skip when the
    /// projection from the chain's finished jobs exceeds the budget.
    pub fn take_next(&mut self) -> Next {
        let mut best: Option<(usize, u64)> = None;
        for (i, (job, _)) in self.pending.iter().enumerate() {
            if !self.ready(job) {
                continue;
            }
            let left = self.chain_left(job);
            if best.is_none_or(|(_, b)| left > b) {
                best = Some((i, left));
            }
        }
        let Some((i, _)) = best else {
            return if self.pending.is_empty() {
                Next::Done
            } else {
                Next::Wait
            };
        };
        let (job, _) = self.pending.remove(i);
        if let Some(budget) = self.budget_seconds {
            let points: Vec<(u64, f64)> = self
                .measured
                .iter()
                .filter(|m| !m.failed && m.family == job.family && m.tech == job.setting.tech)
                .map(|m| (m.n, m.seconds))
                .collect();
            let projection = project(&points, job.setting.n);
            if !fits(projection.as_ref(), budget) {
                let projection = projection.expect("only a projection can exceed the budget");
                return Next::Skip(job, projection);
            }
        }
        self.running.push(job.clone());
        Next::Run(job)
    }

    /// `job` ended after `seconds` of work; a failed job's time does not
    /// project (it stopped early).
    pub fn finished(&mut self, job: &Job, seconds: f64, failed: bool) {
        if let Some(i) = self
            .running
            .iter()
            .position(|r| same_chain(r, job) && r.setting.n == job.setting.n)
        {
            self.running.remove(i);
        }
        self.measured.push(Measured {
            family: job.family,
            tech: job.setting.tech,
            n: job.setting.n,
            seconds,
            failed,
        });
    }

    /// Jobs never finished: pending, and running on a lane that stopped.
    pub fn unfinished(self) -> Vec<Job> {
        self.running
            .into_iter()
            .chain(self.pending.into_iter().map(|(job, _)| job))
            .collect()
    }
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

    /// Hand out every job the queue gives without waiting, finishing
    /// each at once with `seconds(job)`; the order and the skips.
    fn drain(queue: &mut JobQueue, seconds: impl Fn(&Job) -> f64) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            match queue.take_next() {
                Next::Run(j) => {
                    out.push(format!("{}/{}/{}", j.family, j.setting.tech, j.setting.n));
                    queue.finished(&j, seconds(&j), false);
                }
                Next::Skip(j, p) => out.push(format!(
                    "skip {}/{}/{} ({:.0} s)",
                    j.family, j.setting.tech, j.setting.n, p.seconds
                )),
                Next::Wait => panic!("nothing runs, yet the queue waits"),
                Next::Done => return out,
            }
        }
    }

    #[test]
    fn chains_run_in_increasing_n_and_the_longest_chain_goes_first() {
        let phases = control_and_data();
        let jobs = [
            job(Family::Services, Tech::Ipvs, 10_000),
            job(Family::Services, Tech::Ipvs, 100),
            job(Family::Firewall, Tech::Ebpf, 10_000),
            job(Family::Services, Tech::Nftables, 0),
            job(Family::Services, Tech::Nftables, 10_000),
        ];
        let mut queue = JobQueue::new(&jobs, &phases, None);
        // nftables' chain weighs 50 + 650, IPVS' 250 + 52, eBPF's 150.
        assert_eq!(
            drain(&mut queue, |_| 1.0),
            [
                "services/nftables/0",
                "services/nftables/10000",
                "services/ipvs/100",
                "services/ipvs/10000",
                "firewall/ebpf/10000",
            ]
        );
        assert_eq!(JobQueue::new(&[], &phases, None).take_next(), Next::Done);
    }

    #[test]
    fn a_job_waits_while_a_smaller_one_of_its_chain_runs() {
        let phases = control_and_data();
        let jobs = [
            job(Family::Services, Tech::Nftables, 100),
            job(Family::Services, Tech::Nftables, 1000),
            job(Family::Services, Tech::Ipvs, 100),
        ];
        let mut queue = JobQueue::new(&jobs, &phases, None);
        let Next::Run(first) = queue.take_next() else {
            panic!()
        };
        assert_eq!(first.setting.n, 100);
        // The second lane takes the other chain, the third waits.
        let Next::Run(other) = queue.take_next() else {
            panic!()
        };
        assert_eq!(other.setting.tech, Tech::Ipvs);
        assert_eq!(queue.take_next(), Next::Wait);
        queue.finished(&first, 60.0, false);
        let Next::Run(next) = queue.take_next() else {
            panic!()
        };
        assert_eq!((next.setting.tech, next.setting.n), (Tech::Nftables, 1000));
        // Nothing left to hand out: a free lane ends.
        assert_eq!(queue.take_next(), Next::Done);
        assert_eq!(
            queue.unfinished().len(),
            2,
            "ipvs/100 and nftables/1000 still run"
        );
    }

    #[test]
    fn a_job_projected_over_the_budget_is_skipped_and_so_are_larger_ones() {
        let phases = control_and_data();
        let jobs: Vec<Job> = [100, 1000, 30_000, 100_000]
            .iter()
            .map(|&n| job(Family::Services, Tech::Nftables, n))
            .chain([job(Family::Services, Tech::Ebpf, 30_000)])
            .collect();
        // 60 s at 100, 80 s at 1000: 724 s projected at 30k.
        let seconds = |j: &Job| if j.setting.n == 100 { 60.0 } else { 80.0 };
        let mut queue = JobQueue::new(&jobs, &phases, Some(600.0));
        assert_eq!(
            drain(&mut queue, seconds),
            [
                "services/nftables/100",
                "services/nftables/1000",
                "skip services/nftables/30000 (724 s)",
                "skip services/nftables/100000 (2280 s)",
                // One size measured: nothing to project from, it runs.
                "services/ebpf/30000",
            ]
        );
    }

    #[test]
    fn failed_jobs_do_not_project() {
        let phases = control_and_data();
        let jobs: Vec<Job> = [100, 1000, 30_000]
            .iter()
            .map(|&n| job(Family::Services, Tech::Nftables, n))
            .collect();
        let mut queue = JobQueue::new(&jobs, &phases, Some(1.0));
        for failed in [false, true] {
            let Next::Run(j) = queue.take_next() else {
                panic!()
            };
            queue.finished(&j, 500.0, failed);
        }
        assert!(matches!(queue.take_next(), Next::Run(j) if j.setting.n == 30_000));
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
        fn name(&self) -> &'static str {
            "firewall-only"
        }
    }

    #[test]
    fn an_added_phase_adds_its_weight_to_the_order() {
        let mut phases = control_and_data();
        let jobs = [
            job(Family::Services, Tech::Nftables, 10_000),
            job(Family::Firewall, Tech::Ebpf, 0),
        ];
        let first = |phases: &[Box<dyn Phase>]| match JobQueue::new(&jobs, phases, None).take_next()
        {
            Next::Run(j) => format!("{}/{}", j.family, j.setting.tech),
            other => panic!("{other:?}"),
        };
        assert_eq!(first(&phases), "services/nftables");
        phases.push(Box::new(FirewallOnly));
        assert_eq!(weight(&jobs[1], &phases), 50 + 1000);
        assert_eq!(first(&phases), "firewall/ebpf");
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
