//! What the bench tells whoever draws its progress: [`BenchEvent`]s, and
//! [`Progress`], the state a view keeps from them (weighted share done
//! over every image, ETA, which image and jobs are running). Drawing is
//! the caller's business.

use std::time::{Duration, Instant};

use super::job::Job;

#[derive(Debug, Clone)]
pub enum BenchEvent {
    /// Image `index` of `count` starts its campaign; its jobs weigh
    /// `total_weight` (the same ladder on every image).
    ImageStarting {
        index: usize,
        count: usize,
        name: String,
        total_weight: u64,
    },
    /// Its campaign ended; `failure` when it stopped early (its
    /// unfinished weight counts as done for the ETA).
    ImageFinished {
        index: usize,
        name: String,
        failure: Option<String>,
    },
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
    /// Not run: "skipped: projected X min > budget Y min".
    JobSkipped {
        job: Job,
        weight: u64,
        reason: String,
    },
}

/// Weighted progress over the jobs and the job each lane is running.
#[derive(Debug, Default)]
pub struct Progress {
    total_weight: u64,
    done_weight: u64,
    running: Vec<Option<(Job, Instant)>>,
    /// (index, count, name, weight per image) of the image running.
    image: Option<(usize, usize, String, u64)>,
}

impl Progress {
    /// Take in `event`, which arrived at `now`.
    pub fn apply(&mut self, event: &BenchEvent, now: Instant) {
        match event {
            BenchEvent::ImageStarting {
                index,
                count,
                name,
                total_weight,
            } => {
                self.total_weight = total_weight * *count as u64;
                self.done_weight = self.done_weight.max(total_weight * *index as u64);
                self.image = Some((*index, *count, name.clone(), *total_weight));
            }
            BenchEvent::ImageFinished { index, .. } => {
                if let Some((_, _, _, per_image)) = self.image {
                    self.done_weight = self.done_weight.max(per_image * (*index as u64 + 1));
                }
                self.running.iter_mut().for_each(|slot| *slot = None);
            }
            BenchEvent::ImageReady { .. } => {}
            BenchEvent::LanesStarting {
                guests,
                total_weight,
            } => {
                if self.image.is_none() {
                    self.total_weight = *total_weight;
                }
                self.running = vec![None; *guests];
            }
            BenchEvent::JobStarted { lane, job } => {
                *self.slot(*lane) = Some((job.clone(), now));
            }
            BenchEvent::JobFinished { lane, weight, .. } => {
                *self.slot(*lane) = None;
                self.done_weight += weight;
            }
            BenchEvent::JobSkipped { weight, .. } => self.done_weight += weight,
            BenchEvent::LaneFailed { lane, .. } => *self.slot(*lane) = None,
        }
    }

    /// "image 2/3 trixie-6.12" while a run of several images goes; empty
    /// for one image.
    pub fn image_line(&self) -> String {
        match &self.image {
            Some((index, count, name, _)) if *count > 1 => {
                format!("image {}/{count} {name}", index + 1)
            }
            _ => String::new(),
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

    /// The weight of every image's jobs together.
    pub fn total_weight(&self) -> u64 {
        self.total_weight
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
    fn the_eta_spans_every_image_and_a_failed_image_counts_as_done() {
        let t0 = Instant::now();
        let mut p = Progress::default();
        let starting = |index| BenchEvent::ImageStarting {
            index,
            count: 3,
            name: format!("image-{index}"),
            total_weight: 100,
        };
        p.apply(&starting(0), t0);
        assert_eq!(p.image_line(), "image 1/3 image-0");
        p.apply(
            &BenchEvent::LanesStarting {
                guests: 1,
                total_weight: 100,
            },
            t0,
        );
        p.apply(&finished(0, job(Tech::Nftables, 100), 50), t0);
        p.apply(
            &BenchEvent::JobSkipped {
                job: job(Tech::Nftables, 30_000),
                weight: 50,
                reason: "skipped: projected 41 min > budget 30 min".into(),
            },
            t0,
        );
        assert_eq!(p.fraction(), 1.0 / 3.0);
        // Image 2 fails to build: its share counts as done.
        p.apply(&starting(1), t0);
        p.apply(
            &BenchEvent::ImageFinished {
                index: 1,
                name: "image-1".into(),
                failure: Some("building the image: gone".into()),
            },
            t0,
        );
        assert_eq!(p.fraction(), 2.0 / 3.0);
        // Two thirds in 20 min: 10 min to go.
        assert!((p.eta_seconds(1200.0) - 600.0).abs() < 1e-6);
        p.apply(&starting(2), t0);
        assert_eq!(p.image_line(), "image 3/3 image-2");
        assert_eq!(p.fraction(), 2.0 / 3.0);
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
