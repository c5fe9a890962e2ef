use anyhow::{bail, Result};
use clap::Args;

/// Placeholder until this subcommand lands; fails loudly instead of pretending.
#[derive(Args)]
pub struct ReportArgs {}

pub fn run(_args: ReportArgs) -> Result<()> {
    bail!("`rulebench report` is not implemented yet")
}
