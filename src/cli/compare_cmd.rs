//! `rulebench compare BASE NEW`: the regression gate (exit 1 on a
//! significant regression of any figure present in both files).

use crate::compare;
use crate::results::Results;
use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct CompareArgs {
    /// Results of the reference run.
    base: PathBuf,
    /// Results of the run under test.
    new: PathBuf,
    /// Relative change that counts (0.10 = 10 % worse); a change must also
    /// exceed 4 × the series' coefficient of variation. Default: 0.10 when
    /// both runs used KVM, 1.5 (2.5×) when either used TCG (emulation
    /// drifted up to 2× between runs of the same code).
    #[arg(long)]
    threshold: Option<f64>,
    /// VARIANT=REFERENCE: read NEW's samples of technology VARIANT as
    /// REFERENCE (e.g. `nftables-linear=nftables` to gate a linear
    /// rendering against the set/map one).
    #[arg(long, value_name = "VARIANT=REFERENCE")]
    tech_as: Option<String>,
}

pub fn run(args: CompareArgs) -> Result<()> {
    let base = Results::load(&args.base)?;
    let mut new = Results::load(&args.new)?;
    if let Some(spec) = &args.tech_as {
        let Some((variant, reference)) = spec.split_once('=') else {
            bail!("--tech-as wants VARIANT=REFERENCE, got {spec:?}");
        };
        if !new.samples.iter().any(|s| s.tech == variant) {
            bail!(
                "{} has no samples of technology {variant:?}",
                args.new.display()
            );
        }
        new = new.with_tech_as(variant, reference);
    }
    let threshold = match args.threshold {
        Some(t) => t,
        None => {
            let (t, why) = compare::default_threshold(&base, &new);
            eprintln!(
                "threshold {:.0} %, i.e. more than {:.2}× worse ({why}; --threshold to change)",
                t * 100.0,
                1.0 + t
            );
            t
        }
    };
    let rows = compare::compare(&base, &new, threshold);
    if rows.is_empty() {
        bail!(
            "{} and {} have no figure in common (same technologies and sizes?)",
            args.base.display(),
            args.new.display()
        );
    }
    print!("{}", compare::table(&rows));
    let undecided = compare::undecided(&rows);
    if undecided > 0 {
        eprintln!(
            "{undecided} of {} series undecided: fewer than {} samples on a side (an update \
             position gets every third repeat)",
            rows.len(),
            compare::MIN_SAMPLES
        );
    }
    let regressions = rows
        .iter()
        .filter(|r| r.verdict == compare::Verdict::Regression)
        .count();
    if regressions > 0 {
        eprintln!(
            "{regressions} significant regression(s) beyond {:.2}× (and 4 × the series' CV)",
            1.0 + threshold
        );
        std::process::exit(1);
    }
    eprintln!(
        "no significant regression beyond {:.2}× (and 4 × the series' CV) in {} decided series",
        1.0 + threshold,
        rows.len() - undecided
    );
    Ok(())
}
