use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum VmCommand {}

pub fn run(cmd: VmCommand) -> Result<()> {
    match cmd {}
}
