//! What the bench tells whoever draws its progress: [`BenchEvent`]s, and
//! [`Progress`], the state a view keeps from them (weighted share done,
//! ETA, which jobs are running). Drawing is the caller's business.

use std::time::{Duration, Instant};

use super::job::Job;

#[derive(Debug, Clone)]
pub enum BenchEvent {
    /// The image is built or found in the cache, `elapsed` after the run
    /// started.
    ImageReady {
        name: String,
        sha256: String,
        elapsed: Duration,
    },
    /// Boots are timed; `guests` guests now take the jobs, whose weights
    /// sum to `total_weight`.
    LanesStarting {
        guests: usize,
        total_weight: u64,
    },
    JobStarted {
        lane: usize,
        job: Job,
    },
    /// `failure` is the note the results file keeps for a failed job.
    JobFinished {
        lane: usize,
        job: Job,
        weight: u64,
        failure: Option<String>,
    },
    /// A guest could not start or stop; its jobs went to the others.
    LaneFailed {
        lane: usize,
        note: String,
    },
}

/// Weighted progress over the jobs and the job each lane is running.
#[derive(Debug, Default)]
pub struct Progress {
    total_weight: u64,
    done_weight: u64,
    running: Vec<Option<(Job, Instant)>>,
}

impl Progress {
    /// Take in `event`, which arrived at `now`.
    pub fn apply(&mut self, event: &BenchEvent, now: Instant) {
        match event {
            BenchEvent::ImageReady { .. } => {}
            BenchEvent::LanesStarting {
                guests,
                total_weight,
            } => {
                self.total_weight = *total_weight;
                self.running = vec![None; *guests];
            }
            BenchEvent::JobStarted { lane, job } => {
                *self.slot(*lane) = Some((job.clone(), now));
            }
            BenchEvent::JobFinished { lane, weight, .. } => {
                *self.slot(*lane) = None;
                self.done_weight += weight;
            }
            BenchEvent::LaneFailed { lane, .. } => *self.slot(*lane) = None,
        }
    }

    fn slot(&mut self, lane: usize) -> &mut Option<(Job, Instant)> {
        if lane >= self.running.len() {
            self.running.resize(lane + 1, None);
        }
        &mut self.running[lane]
    }

    pub fn done_weight(&self) -> u64 {
        self.done_weight
    }

    /// Share of the total weight done, 0 to 1.
    pub fn fraction(&self) -> f64 {
        self.done_weight as f64 / self.total_weight.max(1) as f64
    }

    /// Seconds still to go if the rest runs at the pace so far
    /// (`elapsed_seconds` since the run started).
    pub fn eta_seconds(&self, elapsed_seconds: f64) -> f64 {
        let done = self.fraction();
        elapsed_seconds * (1.0 - done) / done.max(1e-9)
    }

    /// "services nftables N=10000 for 7.5 min; …" for the jobs in
    /// progress, in lane order; empty when none is.
    pub fn running_line(&self, now: Instant) -> String {
        self.running
            .iter()
            .flatten()
            .map(|(job, since)| {
                let minutes = now.saturating_duration_since(*since).as_secs_f64() / 60.0;
                format!("{job} for {minutes:.1} min")
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::job::Family;
    use crate::measure::Setting;
    use crate::tech::Tech;

    fn job(tech: Tech, n: u64) -> Job {
        Job {
            family: Family::Services,
            setting: Setting {
                tech,
                n,
                repeats: 1,
                full_load_budget_ms: 1000,
            },
        }
    }

    fn finished(lane: usize, job: Job, weight: u64) -> BenchEvent {
        BenchEvent::JobFinished {
            lane,
            job,
            weight,
            failure: None,
        }
    }

    #[test]
    fn eta_follows_the_weighted_share_done() {
        let t0 = Instant::now();
        let mut p = Progress::default();
        assert_eq!(p.fraction(), 0.0);
        p.apply(
            &BenchEvent::LanesStarting {
                guests: 2,
                total_weight: 400,
            },
            t0,
        );
        p.apply(&finished(0, job(Tech::Ipvs, 10_000), 100), t0);
        assert_eq!(p.done_weight(), 100);
        assert_eq!(p.fraction(), 0.25);
        // A quarter done in 10 min: 30 min to go.
        assert_eq!(p.eta_seconds(600.0), 1800.0);
        p.apply(&finished(1, job(Tech::Ebpf, 0), 300), t0);
        assert_eq!(p.fraction(), 1.0);
        assert_eq!(p.eta_seconds(600.0), 0.0);
        // Nothing done yet: a huge but finite ETA, not a division by zero.
        assert!(Progress::default().eta_seconds(1.0).is_finite());
    }

    #[test]
    fn the_running_line_names_each_lanes_job_and_its_time() {
        let t0 = Instant::now();
        let mut p = Progress::default();
        p.apply(
            &BenchEvent::LanesStarting {
                guests: 3,
                total_weight: 1000,
            },
            t0,
        );
        assert_eq!(p.running_line(t0), "");
        let nft = job(Tech::Nftables, 10_000);
        p.apply(&BenchEvent::JobStarted { lane: 2, job: nft }, t0);
        let ipvs = job(Tech::Ipvs, 100);
        let later = t0 + Duration::from_secs(360);
        p.apply(
            &BenchEvent::JobStarted {
                lane: 0,
                job: ipvs.clone(),
            },
            later,
        );
        let now = t0 + Duration::from_secs(450);
        assert_eq!(
            p.running_line(now),
            "services ipvs N=100 for 1.5 min; services nftables N=10000 for 7.5 min"
        );
        p.apply(&finished(0, ipvs, 50), now);
        p.apply(
            &BenchEvent::LaneFailed {
                lane: 2,
                note: "guest 2: shutting the guest down: gone".into(),
            },
            now,
        );
        assert_eq!(p.running_line(now), "");
    }
}
