//! `rulebench bench`: the measurement job behind `make bench`. Turns the
//! arguments into a [`BenchPlan`], runs it (`crate::bench`) while drawing
//! its progress, and prints where the results went.

use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;

use super::bench_progress::ProgressView;
use crate::bench::{self, phase, BenchPlan, Family, Ladder};
use crate::measure::{self, data::DataConfig};
use crate::tech::Tech;

#[derive(Args)]
pub struct BenchArgs {
    /// Image name under images/ or a lock file path.
    #[arg(long)]
    image: Option<String>,
    /// Boots to time after one cold boot (restored from a snapshot unless
    /// RULEBENCH_SNAPSHOT=0; the first restore of a fresh cache includes
    /// making the snapshot). The measuring guests boot after these.
    #[arg(long, default_value_t = 1)]
    boots: usize,
    /// Rebuild the image from scratch to time a cold build.
    #[arg(long)]
    cold_build: bool,
    /// Ladder of N (services or rules).
    #[arg(long, value_delimiter = ',', default_value = "0,100,1000,10000")]
    sizes: Vec<u64>,
    /// Technologies (default: every one that supports the family).
    #[arg(long, value_delimiter = ',')]
    techs: Vec<Tech>,
    /// Workload families: services, firewall.
    #[arg(long, value_delimiter = ',', default_value = "services,firewall")]
    families: Vec<String>,
    /// Repeats of every figure.
    #[arg(long, default_value_t = 5)]
    repeats: u32,
    /// Duration of one connection-rate run (2 s under TCG is ~500
    /// connections, enough for stable percentiles).
    #[arg(long, default_value_t = 2000)]
    crr_ms: u64,
    /// Seconds of one iperf3 run.
    #[arg(long, default_value_t = 2)]
    iperf_seconds: u32,
    /// Guest seconds the full loads of one job may take together: full
    /// loads repeat (up to --repeats) until they have used this much, so a
    /// load that takes minutes is measured once (at least one always is).
    #[arg(long, default_value_t = measure::DEFAULT_FULL_LOAD_BUDGET_MS / 1000)]
    full_load_budget: u64,
    /// Guests measuring at the same time (default: one per host core, at
    /// most 4). Each guest is one vCPU thread booted from the
    /// same image and snapshot, and takes the next job (heaviest first) when
    /// it is free; every job starts from a reset guest.
    #[arg(long)]
    guests: Option<usize>,
    /// Output directory (default bench-results/<YYYYmmdd-HHMMSS>).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// How often the progress view redraws with no event (the running jobs'
/// times).
const REDRAW: Duration = Duration::from_secs(5);

fn plan(args: BenchArgs) -> Result<BenchPlan> {
    let families = args
        .families
        .iter()
        .map(|f| f.parse::<Family>())
        .collect::<Result<Vec<_>, _>>()?;
    let ladder = Ladder {
        families,
        techs: args.techs,
        sizes: args.sizes,
        repeats: args.repeats,
        full_load_budget_seconds: args.full_load_budget,
    };
    // A ladder without jobs fails before an output directory is chosen.
    ladder.jobs()?;
    let data = DataConfig {
        crr_duration_ms: args.crr_ms,
        iperf_seconds: args.iperf_seconds,
        ..DataConfig::default()
    };
    Ok(BenchPlan {
        image: args.image,
        cold_build: args.cold_build,
        boots: args.boots,
        ladder,
        phases: phase::standard(data),
        guests: args.guests,
        out: args.out.unwrap_or_else(bench::default_out_dir),
    })
}

pub fn run(args: BenchArgs) -> Result<()> {
    let plan = plan(args)?;
    let started = Instant::now();
    let (tx, rx) = mpsc::channel();
    let outcome = std::thread::scope(|scope| {
        let plan = &plan;
        let engine = scope.spawn(move || bench::run(plan, &tx));
        let mut view = ProgressView::new(started);
        loop {
            match rx.recv_timeout(REDRAW) {
                Ok(event) => view.show(&event),
                Err(RecvTimeoutError::Timeout) => view.redraw(),
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        view.finish();
        engine
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })?;
    let results = &outcome.results;
    println!("{}", crate::report::headline_table(results));
    println!(
        "results: {}  report: {}",
        outcome.results_json().display(),
        outcome.report_md().display()
    );
    println!("total {:.1} min", results.meta.duration_seconds / 60.0);
    if !results.notes.is_empty() {
        bail!(
            "{} measurement(s) failed; see notes in {}",
            results.notes.len(),
            outcome.results_json().display()
        );
    }
    Ok(())
}
