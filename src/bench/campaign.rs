//! The campaign: image, boot timing, the lanes over the job queue,
//! results and report files — with [`BenchEvent`]s for whoever shows
//! progress.

use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::image::{self, LockFile};
use crate::measure::Recorder;
use crate::results::{JobTime, Results, SkippedJob, SCHEMA};
use crate::vm::VmOptions;

use super::boot::time_boots;
use super::job::{Job, Ladder};
use super::lanes::{LaneMsg, Lanes};
use super::meta::{run_meta, PlanMeta};
use super::output::{write_results, REPORT_MD, RESULTS_JSON};
use super::phase::{self, Phase};
use super::progress::BenchEvent;
use super::projection::{skip_reason, Projection};
use super::schedule::{default_guests, weight, JobQueue};

/// Everything a run needs, decided before it starts.
pub struct BenchPlan {
    /// Image names under images/ or lock file paths, measured one after
    /// the other with the same ladder (empty: the default image).
    pub images: Vec<String>,
    /// Rebuild the image from scratch to time a cold build.
    pub cold_build: bool,
    /// Boots to time after the cold boot (at least one).
    pub boots: usize,
    pub ladder: Ladder,
    /// What each job does in its guest, in order.
    pub phases: Vec<Box<dyn Phase>>,
    /// Guests measuring at the same time (`None`: one per host core, at
    /// most 4, at most one per job).
    pub guests: Option<usize>,
    /// A job whose time, projected from its technology's smaller jobs,
    /// exceeds this many minutes is skipped (`None`: every job runs).
    pub job_budget_minutes: Option<f64>,
    /// Memory of each guest (`None`: [`Ladder::default_guest_memory_mb`]).
    pub guest_memory_mb: Option<u32>,
    /// Directory for results, CSV and report (created if missing); with
    /// several images one subdirectory per image and the side-by-side
    /// report at the top.
    pub out: PathBuf,
}

/// A finished run: its results (notes name every failed job, skips are
/// in the metadata) and where they were written.
pub struct BenchOutcome {
    pub results: Results,
    pub out: PathBuf,
}

impl BenchOutcome {
    pub fn results_json(&self) -> PathBuf {
        self.out.join(RESULTS_JSON)
    }

    pub fn report_md(&self) -> PathBuf {
        self.out.join(REPORT_MD)
    }
}

fn job_time(job: &Job, seconds: f64, failed: bool) -> JobTime {
    JobTime {
        family: job.family.to_string(),
        tech: job.setting.tech.name().to_string(),
        n: job.setting.n,
        seconds,
        failed,
    }
}

/// The results-file record of a job skipped by `projection`.
pub fn skipped_job(job: &Job, projection: &Projection, budget_seconds: f64) -> SkippedJob {
    SkippedJob {
        family: job.family.to_string(),
        tech: job.setting.tech.name().to_string(),
        n: job.setting.n,
        projected_seconds: projection.seconds,
        budget_seconds,
        fit: projection.model.to_string(),
        from: projection
            .from
            .iter()
            .map(|&(n, seconds)| JobTime {
                n,
                ..job_time(job, seconds, false)
            })
            .collect(),
        reason: skip_reason(projection, budget_seconds),
    }
}

/// One image's campaign of `plan` into `out` (`image`: a name or lock
/// path, `None` the default image), sending progress to
/// `events` (a dropped receiver only silences them). A job that fails
/// becomes a note in the results, not an error; errors are what stops
/// the whole campaign (image, boots, files).
pub fn run_image(
    plan: &BenchPlan,
    image: Option<&str>,
    out: &Path,
    events: &Sender<BenchEvent>,
) -> Result<BenchOutcome> {
    let emit = |event: BenchEvent| {
        let _ = events.send(event);
    };
    let jobs = plan.ladder.jobs()?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let started = Instant::now();
    let lock = LockFile::load(&image::lock_path(image))?;
    if plan.cold_build {
        if let Ok(old) = image::build(&lock, true) {
            image::build::forget(&old)?;
        }
    }
    let built = image::build(&lock, false).context("building the image")?;
    emit(BenchEvent::ImageReady {
        name: built.name.clone(),
        sha256: built.sha256.clone(),
        elapsed: started.elapsed(),
    });

    let opts = VmOptions {
        memory_mb: plan
            .guest_memory_mb
            .unwrap_or_else(|| plan.ladder.default_guest_memory_mb()),
        ..VmOptions::default()
    };
    // The measuring guests boot afterwards, one per lane.
    let (boots, mut probe) = time_boots(&built, &opts, plan.boots)?;
    let guests = plan
        .guests
        .unwrap_or_else(|| default_guests(jobs.len()))
        .max(1);
    let budget_seconds = plan.job_budget_minutes.map(|m| m * 60.0);
    let queue = Mutex::new(JobQueue::new(&jobs, &plan.phases, budget_seconds));
    let mut meta = run_meta(
        &plan.ladder,
        &jobs,
        &built,
        &mut probe,
        &opts,
        PlanMeta {
            guests,
            userland: &lock.image.suite,
            phases: phase::names(&plan.phases),
            job_budget_seconds: budget_seconds,
        },
    );
    probe.shutdown()?;
    let mut rec = Recorder::default();
    rec.samples.extend(boots.samples());
    let mut notes = Vec::new();
    emit(BenchEvent::LanesStarting {
        guests,
        total_weight: jobs.iter().map(|j| weight(j, &plan.phases)).sum(),
    });
    let lanes = Lanes {
        built: &built,
        opts: &opts,
        queue: &queue,
        phases: &plan.phases,
    };
    lanes.run(guests, |msg| {
        match msg {
            LaneMsg::Started { lane, job } => {
                emit(BenchEvent::JobStarted { lane, job });
                return Ok(());
            }
            LaneMsg::Done { lane, job, outcome } => {
                rec.samples.extend(outcome.recorded.samples);
                rec.hooks.extend(outcome.recorded.hooks);
                rec.profiles.extend(outcome.recorded.profiles);
                notes.extend(outcome.failure.clone());
                meta.jobs
                    .push(job_time(&job, outcome.seconds, outcome.failure.is_some()));
                emit(BenchEvent::JobFinished {
                    lane,
                    weight: weight(&job, &plan.phases),
                    job,
                    failure: outcome.failure,
                });
            }
            LaneMsg::Skipped { job, projection } => {
                let budget = budget_seconds.unwrap_or(f64::INFINITY);
                let skipped = skipped_job(&job, &projection, budget);
                emit(BenchEvent::JobSkipped {
                    weight: weight(&job, &plan.phases),
                    job,
                    reason: skipped.reason.clone(),
                });
                meta.skipped_jobs.push(skipped);
            }
            LaneMsg::Failed { lane, error } => {
                let note = format!("guest {lane}: {error}");
                notes.push(note.clone());
                emit(BenchEvent::LaneFailed { lane, note });
            }
        }
        // Write as we go: a long run interrupted late still leaves data.
        meta.duration_seconds = started.elapsed().as_secs_f64();
        write_results(
            out,
            &Results {
                schema: SCHEMA,
                meta: meta.clone(),
                samples: rec.samples.clone(),
                notes: notes.clone(),
                hooks: rec.hooks.clone(),
                profiles: rec.profiles.clone(),
            },
        )
    })?;
    for job in queue.into_inner().expect("queue lock").unfinished() {
        notes.push(format!("{job}: not run (no guest could start)"));
    }
    meta.duration_seconds = started.elapsed().as_secs_f64();
    let results = Results {
        schema: SCHEMA,
        meta,
        samples: rec.samples,
        notes,
        hooks: rec.hooks,
        profiles: rec.profiles,
    };
    write_results(out, &results)?;
    crate::report::write(&results, out).context("writing the report")?;
    Ok(BenchOutcome {
        results,
        out: out.to_path_buf(),
    })
}
