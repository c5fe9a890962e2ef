use anyhow::{bail, Result};
use clap::Args;

/// Placeholder until this subcommand lands; fails loudly instead of pretending.
#[derive(Args)]
pub struct ApplyArgs {}

pub fn run(_args: ApplyArgs) -> Result<()> {
    bail!("`rulebench apply` is not implemented yet")
}
