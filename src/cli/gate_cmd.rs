//! `rulebench gate` (the A/B regression gate) and `rulebench ab-worker`
//! (one side of it). The campaign and the verdict live in `crate::ab`.

use crate::ab::{controller, decide, plan::AbPlan, worker};
use crate::compare::Verdict;
use crate::measure::Family;
use crate::tech::Tech;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
#[command(
    after_help = "Example (what `make gate` runs, base built from another checkout):
  rulebench gate --base-bin ../base/target/release/rulebench \\
      --techs iptables-legacy,nftables --sizes 100,1000 --repeats 9 --out target/gate"
)]
pub struct GateArgs {
    /// The base revision's rulebench binary (it must have `ab-worker`).
    #[arg(long, required_unless_present = "from")]
    base_bin: Option<PathBuf>,
    /// Decide a finished campaign again from DIR/ab.json (no guest runs).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["base_bin", "head_bin"])]
    from: Option<PathBuf>,
    /// The head revision's binary (default: this one).
    #[arg(long)]
    head_bin: Option<PathBuf>,
    #[command(flatten)]
    plan: PlanArgs,
    /// Relative change that counts: a series regresses when the median over
    /// pairs of head/base exceeds 1 + THRESHOLD and its 95 % interval lies
    /// above 1.
    #[arg(long, default_value_t = decide::DEFAULT_THRESHOLD)]
    threshold: f64,
    /// Directory for summary.md, ab.json and the workers' logs.
    #[arg(long, default_value = "target/gate")]
    out: PathBuf,
}

/// The plan, as given to the gate and passed on to both workers verbatim.
#[derive(Args)]
pub struct PlanArgs {
    /// Technologies, comma-separated: iptables-legacy, iptables-nft,
    /// nftables, nftables-linear, nftables-no-anon-maps, ipvs, ebpf.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "iptables-legacy,nftables"
    )]
    techs: Vec<Tech>,
    /// Families, comma-separated: services, firewall.
    #[arg(long, value_delimiter = ',', default_value = "services")]
    families: Vec<String>,
    /// N of each unit, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    sizes: Vec<u64>,
    /// Pairs per (technology, family, N); repeats rotate over the first,
    /// middle and last position, so 9 gives 3 pairs per position.
    #[arg(long, default_value_t = 9)]
    repeats: u32,
    /// Update rounds per unit; a pair compares the rounds' medians.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
}

impl PlanArgs {
    fn plan(&self) -> Result<AbPlan> {
        let families = self
            .families
            .iter()
            .map(|f| match f.as_str() {
                "services" => Ok(Family::Services),
                "firewall" => Ok(Family::Firewall),
                other => bail!("unknown family {other:?} (services, firewall)"),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(AbPlan {
            techs: self.techs.clone(),
            families,
            sizes: self.sizes.clone(),
            repeats: self.repeats,
            rounds: self.rounds,
        })
    }
}

#[derive(Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    plan: PlanArgs,
}

pub fn run(args: GateArgs) -> Result<()> {
    let outcome = match (&args.from, &args.base_bin) {
        (Some(dir), _) => controller::reanalyze(dir, args.threshold)?,
        (None, Some(base)) => {
            let plan = args.plan.plan()?;
            let head = match args.head_bin {
                Some(h) => h,
                None => std::env::current_exe().context("locating this rulebench binary")?,
            };
            controller::run(base, &head, &plan, args.threshold, &args.out)?
        }
        (None, None) => bail!("--base-bin or --from is required"),
    };
    let text = std::fs::read_to_string(&outcome.summary_path)?;
    println!("{text}");
    let regressions: Vec<String> = outcome
        .rows
        .iter()
        .filter(|r| r.gating && r.verdict == Verdict::Regression)
        .map(|r| {
            format!(
                "{} {} N={} {} {}: {:.2}× worse",
                r.key.figure, r.key.tech, r.key.n, r.key.position, r.key.update_mode, r.worse_ratio
            )
        })
        .collect();
    eprintln!("gate: summary in {}", outcome.summary_path.display());
    if !regressions.is_empty() {
        eprintln!("gate: REGRESSION in:\n  {}", regressions.join("\n  "));
        std::process::exit(1);
    }
    Ok(())
}

pub fn run_worker(args: WorkerArgs) -> Result<()> {
    let plan = args.plan.plan()?;
    let stdin = std::io::stdin().lock();
    let stdout = std::io::stdout().lock();
    worker::run(&plan, stdin, stdout)
}
