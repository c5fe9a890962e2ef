//! The bench campaign behind `rulebench bench` and `make bench`: times a
//! cold boot and snapshot restores, then walks the size ladder for every
//! technology and family — several guests taking jobs from one queue,
//! each technology's sizes in increasing N, longest remaining chain
//! first, a job skipped when its projected time exceeds the job budget —
//! and writes results JSON, CSV and the report under one output
//! directory; with several images, one campaign per image and a report
//! side by side. The engine emits [`BenchEvent`]s; the caller draws
//! progress from them (the CLI: a bar, or a line per job in logs).
//!
//! ```text
//! BenchPlan ─► per image: build ─► boot timing ─► lanes: N guests ◄── queue (chains in N, projected skips)
//!                                             │ each job: its phases in order
//!                                             ▼ LaneMsg
//!                         results.json / .csv after every job, report at the end
//!                                             │  (several images: OUT/<image>/ each, OUT/report.md side by side)
//!                                             ▼ BenchEvent (to the caller's view)
//! ```
//!
//! - [`job`]: the unit of work (family × technology × N) and the ladder
//!   that expands to the job list.
//! - [`phase`]: what a job does in its guest; new measurements are new
//!   phases.
//! - [`schedule`]: job weights, the job queue (chains in increasing N,
//!   longest remaining chain first, projected skips), guest count.
//! - [`projection`]: a job's time projected from its chain's smaller
//!   jobs, and whether it fits the budget.
//! - [`progress`]: the events, and the weighted share done / ETA /
//!   running jobs a view keeps from them.
//! - [`lanes`]: guests on threads taking jobs from the shared queue.
//! - [`boot`]: cold-boot and snapshot-restore timing.
//! - [`meta`]: the run's provenance (host, revision, plan).
//! - [`output`]: the output directory and the results files.
//! - [`campaign`]: one image's run from a [`BenchPlan`] to a
//!   [`BenchOutcome`].
//! - [`images`]: the plan over each of its images in turn.

pub mod boot;
pub mod campaign;
pub mod images;
pub mod job;
pub mod lanes;
pub mod meta;
pub mod output;
pub mod phase;
pub mod progress;
pub mod projection;
pub mod schedule;

pub use campaign::{BenchOutcome, BenchPlan};
pub use images::{run, ImagesOutcome};
pub use job::{Family, Job, Ladder, PlanError};
pub use output::default_out_dir;
pub use phase::{JobOutcome, Phase};
pub use progress::{BenchEvent, Progress};
