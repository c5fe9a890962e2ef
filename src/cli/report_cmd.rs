//! `rulebench report RESULTS -o DIR`: markdown + SVG plots.

use crate::results::Results;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct ReportArgs {
    /// A results.json written by `rulebench bench`.
    results: PathBuf,
    /// Output directory (default: next to the results file).
    #[arg(short, long)]
    out: Option<PathBuf>,
}

pub fn run(args: ReportArgs) -> Result<()> {
    let results = Results::load(&args.results)?;
    let out = args
        .out
        .unwrap_or_else(|| args.results.parent().map(PathBuf::from).unwrap_or_default());
    crate::report::write(&results, &out)?;
    println!("{}", out.join("report.md").display());
    Ok(())
}
