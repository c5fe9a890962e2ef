//! The `rulebench` command line.

mod bench_cmd;
mod image_cmd;
mod vm_cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rulebench",
    version,
    about = "Compare iptables, nftables, IPVS and eBPF inside pinned QEMU guests"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Lock, build and verify guest images.
    #[command(subcommand)]
    Image(image_cmd::ImageCommand),
    /// Boot guests and run commands in them.
    #[command(subcommand)]
    Vm(vm_cmd::VmCommand),
    /// Run the measurements and write results (the job behind `make bench`).
    Bench(bench_cmd::BenchArgs),
}

pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Image(cmd) => image_cmd::run(cmd),
        Command::Vm(cmd) => vm_cmd::run(cmd),
        Command::Bench(args) => bench_cmd::run(args),
    }
}
