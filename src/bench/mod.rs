//! The bench campaign behind `rulebench bench` and `make bench`: times a
//! cold boot and snapshot restores, then walks the size ladder for every
//! technology and family — several guests taking jobs from one queue,
//! heaviest first — and writes results JSON, CSV and the report under one
//! output directory. The engine emits [`BenchEvent`]s; the caller draws
//! progress from them (the CLI: a bar, or a line per job in logs).
//!
//! ```text
//! BenchPlan ─► run: image ─► boot timing ─► lanes: N guests ◄── queue (heaviest first)
//!                                             │ each job: its phases in order
//!                                             ▼ LaneMsg
//!                         results.json / .csv after every job, report at the end
//!                                             │
//!                                             ▼ BenchEvent (to the caller's view)
//! ```
//!
//! - [`job`]: the unit of work (family × technology × N) and the ladder
//!   that expands to the job list.
//! - [`phase`]: what a job does in its guest; new measurements are new
//!   phases.
//! - [`schedule`]: job weights, heaviest-first order, guest count.
//! - [`progress`]: the events, and the weighted share done / ETA /
//!   running jobs a view keeps from them.
//! - [`lanes`]: guests on threads taking jobs from the shared queue.
//! - [`boot`]: cold-boot and snapshot-restore timing.
//! - [`meta`]: the run's provenance (host, revision, plan).
//! - [`output`]: the output directory and the results files.
//! - [`campaign`]: the run from a [`BenchPlan`] to a [`BenchOutcome`].

pub mod boot;
pub mod campaign;
pub mod job;
pub mod lanes;
pub mod meta;
pub mod output;
pub mod phase;
pub mod progress;
pub mod schedule;

pub use campaign::{run, BenchOutcome, BenchPlan};
pub use job::{Family, Job, Ladder, PlanError};
pub use output::default_out_dir;
pub use phase::{JobOutcome, Phase};
pub use progress::{BenchEvent, Progress};
