//! `rulebench bench`: the measurement job behind `make bench`. Turns the
//! arguments into a [`BenchPlan`], runs it (`crate::bench`) while drawing
//! its progress, and prints where the results went.

use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;

use super::bench_progress::ProgressView;
use crate::bench::phase::PhaseName;
use crate::bench::{self, phase, BenchPlan, Family, Ladder};
use crate::measure::{self, data::DataConfig};
use crate::tech::Tech;

#[derive(Args)]
pub struct BenchArgs {
    /// Image name under images/ or a lock file path.
    #[arg(long, conflicts_with = "images")]
    image: Option<String>,
    /// Several images, measured one after the other with the same ladder:
    /// each into OUT/<image>/ (its own results and report), then
    /// OUT/report.md with the images side by side.
    #[arg(long, value_delimiter = ',')]
    images: Vec<String>,
    /// Job phases to run: control (full load, updates), data (connection
    /// rate, bandwidth; needs control), evidence (hook time, pktgen rate),
    /// profile (as --profile).
    #[arg(long, value_delimiter = ',', default_value = "control,data,evidence")]
    phases: Vec<String>,
    /// Also profile each job's control plane in the guest kernel: one more
    /// full load and one add per update mode under a sampling profiler,
    /// reduced to the kernel functions they spent their time in
    /// (results.json `profiles`, the report's control-plane section).
    #[arg(long)]
    profile: bool,
    /// Minutes a job may take: a job whose time, projected from the same
    /// technology's smaller jobs of this run (two sizes at least), exceeds
    /// it is skipped and recorded as skipped, with the fit.
    #[arg(long, default_value_t = 30.0)]
    job_budget: f64,
    /// Memory of each guest in MiB (default: 1024 up to N = 10k, 4096
    /// for larger ladders).
    #[arg(long)]
    guest_memory: Option<u32>,
    /// Boots to time after one cold boot (restored from a snapshot unless
    /// RULEBENCH_SNAPSHOT=0; the first restore of a fresh cache includes
    /// making the snapshot). The measuring guests boot after these.
    #[arg(long, default_value_t = 1)]
    boots: usize,
    /// Rebuild the image from scratch to time a cold build.
    #[arg(long)]
    cold_build: bool,
    /// Ladder of N (services or rules).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0,100,1000,10000,30000,100000"
    )]
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
    /// same image and snapshot, and takes the next job when it is free
    /// (each technology's sizes in increasing N, the technology with the
    /// most work left first); every job starts from a reset guest.
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
    let mut phase_names = args
        .phases
        .iter()
        .map(|p| p.parse::<PhaseName>())
        .collect::<Result<Vec<_>, _>>()?;
    if args.profile {
        phase_names.push(PhaseName::Profile);
    }
    if args.job_budget.is_nan() || args.job_budget <= 0.0 {
        bail!("--job-budget must be a positive number of minutes");
    }
    Ok(BenchPlan {
        images: images(args.image, args.images)?,
        cold_build: args.cold_build,
        boots: args.boots,
        ladder,
        phases: phase::select(&phase_names, data)?,
        guests: args.guests,
        job_budget_minutes: Some(args.job_budget),
        guest_memory_mb: args.guest_memory,
        out: args.out.unwrap_or_else(bench::default_out_dir),
    })
}

/// `--image X` is `--images X`; an image given twice would overwrite
/// its own directory.
fn images(image: Option<String>, images: Vec<String>) -> Result<Vec<String>> {
    let list: Vec<String> = image.into_iter().chain(images).collect();
    for (i, name) in list.iter().enumerate() {
        if list[..i].contains(name) {
            bail!("image {name} is given twice in --images");
        }
    }
    Ok(list)
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
    let mut failed_jobs = 0;
    for run in &outcome.runs {
        let Ok(done) = &run.result else { continue };
        let results = &done.results;
        if outcome.runs.len() > 1 {
            println!("== {}", results.meta.image);
        }
        println!("{}", crate::report::headline_table(results));
        println!(
            "results: {}  report: {}",
            done.results_json().display(),
            done.report_md().display()
        );
        println!("total {:.1} min", results.meta.duration_seconds / 60.0);
        for skipped in &results.meta.skipped_jobs {
            println!(
                "{} {} N={}: {}",
                skipped.family, skipped.tech, skipped.n, skipped.reason
            );
        }
        failed_jobs += results.notes.len();
    }
    if let Some(path) = &outcome.side_by_side {
        println!("side by side: {}", path.display());
    }
    let failed_images = outcome.failed_images();
    let mut problems = Vec::new();
    if !failed_images.is_empty() {
        for (image, error) in &failed_images {
            eprintln!("image {image} failed: {error}");
        }
        let names: Vec<&str> = failed_images.iter().map(|f| f.0).collect();
        problems.push(format!(
            "{} image(s) failed ({})",
            names.len(),
            names.join(", ")
        ));
    }
    if failed_jobs > 0 {
        problems.push(format!(
            "{failed_jobs} measurement(s) failed; see the notes in the results files"
        ));
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn plan_of(args: &[&str]) -> Result<BenchPlan> {
        let cli = Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))?;
        plan(cli.bench)
    }

    #[test]
    fn the_defaults_climb_to_100k_with_a_30_minute_job_budget() {
        let p = plan_of(&["--out", "/tmp/x"]).unwrap();
        assert_eq!(p.ladder.sizes, [0, 100, 1000, 10_000, 30_000, 100_000]);
        assert_eq!(p.job_budget_minutes, Some(30.0));
        assert_eq!(phase::names(&p.phases), ["control", "data", "evidence"]);
        assert!(p.images.is_empty());
    }

    #[test]
    fn images_phases_and_budget_come_from_the_flags() {
        let p = plan_of(&[
            "--images",
            "bullseye-5.10,trixie-6.12",
            "--phases",
            "control",
            "--job-budget",
            "2",
        ])
        .unwrap();
        assert_eq!(p.images, ["bullseye-5.10", "trixie-6.12"]);
        assert_eq!(phase::names(&p.phases), ["control"]);
        assert_eq!(p.job_budget_minutes, Some(2.0));
        assert_eq!(plan_of(&["--image", "a"]).unwrap().images, ["a"]);
        let profiled = plan_of(&["--phases", "control", "--profile"]).unwrap();
        assert_eq!(phase::names(&profiled.phases), ["control", "profile"]);
        let twice = plan_of(&["--images", "a,b,a"]).err().unwrap();
        assert!(twice.to_string().contains("given twice"), "{twice}");
        assert!(plan_of(&["--phases", "data"]).is_err());
        assert!(plan_of(&["--job-budget", "0"]).is_err());
        assert!(plan_of(&["--image", "a", "--images", "b"]).is_err());
    }
}
