use anyhow::{bail, Result};
use clap::Args;

/// Placeholder until this subcommand lands; fails loudly instead of pretending.
#[derive(Args)]
pub struct RenderArgs {}

pub fn run(_args: RenderArgs) -> Result<()> {
    bail!("`rulebench render` is not implemented yet")
}
