//! `rulebench report RESULTS -o DIR`: markdown + SVG plots; with
//! `--side-by-side`, several runs (directories or results files) of the
//! same ladder on different images in one report.

use crate::results::Results;
use anyhow::{bail, Result};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct ReportArgs {
    /// A results.json written by `rulebench bench` (with --side-by-side:
    /// several, or the directories holding them).
    #[arg(required = true)]
    results: Vec<PathBuf>,
    /// Put the runs side by side: one table column and one plot line per
    /// image, ratios against the first.
    #[arg(long)]
    side_by_side: bool,
    /// Output directory (default: next to the results file; with
    /// --side-by-side, the current directory).
    #[arg(short, long)]
    out: Option<PathBuf>,
}

/// A results file, or the results.json in a directory.
fn results_path(given: &Path) -> PathBuf {
    if given.is_dir() {
        given.join("results.json")
    } else {
        given.to_path_buf()
    }
}

pub fn run(args: ReportArgs) -> Result<()> {
    if args.side_by_side {
        let runs = args
            .results
            .iter()
            .map(|p| Results::load(&results_path(p)))
            .collect::<Result<Vec<_>, _>>()?;
        let out = args.out.unwrap_or_else(|| PathBuf::from("."));
        let refs: Vec<&Results> = runs.iter().collect();
        crate::report::side_by_side::write(&refs, &[], &out)?;
        println!("{}", out.join("report.md").display());
        return Ok(());
    }
    let [one] = &args.results[..] else {
        bail!("one results file without --side-by-side (several: add --side-by-side)");
    };
    let path = results_path(one);
    let results = Results::load(&path)?;
    let out = args
        .out
        .unwrap_or_else(|| path.parent().map(PathBuf::from).unwrap_or_default());
    crate::report::write(&results, &out)?;
    println!("{}", out.join("report.md").display());
    Ok(())
}
