//! The campaign: image, boot timing, the lanes over the job queue,
//! results and report files — with [`BenchEvent`]s for whoever shows
//! progress.

use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::image::{self, LockFile};
use crate::measure::Recorder;
use crate::results::{Results, SCHEMA};
use crate::vm::VmOptions;

use super::boot::time_boots;
use super::job::Ladder;
use super::lanes::{LaneMsg, Lanes};
use super::meta::run_meta;
use super::output::{write_results, REPORT_MD, RESULTS_JSON};
use super::phase::Phase;
use super::progress::BenchEvent;
use super::schedule::{default_guests, schedule, weight};

/// Everything a run needs, decided before it starts.
pub struct BenchPlan {
    /// Image name under images/ or a lock file path (`None`: the default).
    pub image: Option<String>,
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
    /// Directory for results, CSV and report (created if missing).
    pub out: PathBuf,
}

/// A finished run: its results (notes name every failed or skipped job)
/// and where they were written.
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

/// Run `plan`, sending progress to `events` (a dropped receiver only
/// silences them). A job that fails becomes a note in the results, not an
/// error; errors are what stops the whole run (image, boots, files).
pub fn run(plan: &BenchPlan, events: &Sender<BenchEvent>) -> Result<BenchOutcome> {
    let emit = |event: BenchEvent| {
        let _ = events.send(event);
    };
    let jobs = plan.ladder.jobs()?;
    let out = &plan.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let started = Instant::now();
    let lock = LockFile::load(&image::lock_path(plan.image.as_deref()))?;
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

    let opts = VmOptions::default();
    // The measuring guests boot afterwards, one per lane.
    let (boots, probe) = time_boots(&built, &opts, plan.boots)?;
    let guests = plan
        .guests
        .unwrap_or_else(|| default_guests(jobs.len()))
        .max(1);
    let queue = Mutex::new(schedule(&jobs, &plan.phases));
    let mut meta = run_meta(&plan.ladder, &jobs, &built, &probe, &opts, guests);
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
                notes.extend(outcome.failure.clone());
                emit(BenchEvent::JobFinished {
                    lane,
                    weight: weight(&job, &plan.phases),
                    job,
                    failure: outcome.failure,
                });
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
            },
        )
    })?;
    for job in queue.into_inner().expect("queue lock") {
        notes.push(format!("{job}: not run (no guest could start)"));
    }
    meta.duration_seconds = started.elapsed().as_secs_f64();
    let results = Results {
        schema: SCHEMA,
        meta,
        samples: rec.samples,
        notes,
        hooks: rec.hooks,
    };
    write_results(out, &results)?;
    crate::report::write(&results, out).context("writing the report")?;
    Ok(BenchOutcome {
        results,
        out: out.clone(),
    })
}
