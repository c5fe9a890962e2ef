use anyhow::{bail, Result};
use clap::Args;

/// Placeholder until this subcommand lands; fails loudly instead of pretending.
#[derive(Args)]
pub struct CompareArgs {}

pub fn run(_args: CompareArgs) -> Result<()> {
    bail!("`rulebench compare` is not implemented yet")
}
