//! The `rulebench` command line.

mod apply_cmd;
mod bench_cmd;
mod bench_progress;
mod bisect_cmd;
mod compare_cmd;
mod gate_cmd;
mod image_cmd;
mod kernel_cmd;
mod render_cmd;
mod report_cmd;
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
    /// Build custom kernels for bisection.
    #[command(subcommand)]
    Kernel(kernel_cmd::KernelCommand),
    /// One `git bisect run` step: build + boot the kernel, run tests; 0 good, 1 bad, 125 skip, 128 abort.
    BisectRun(bisect_cmd::BisectArgs),
    /// Run the measurements and write results (the job behind `make bench`).
    Bench(bench_cmd::BenchArgs),
    /// Print what would be pushed for a technology and workload (no VM).
    Render(render_cmd::RenderArgs),
    /// Load a workload into a fresh guest; print the normalized dump and probe summary.
    Apply(apply_cmd::ApplyArgs),
    /// Compare two results files; exit 1 on a significant regression.
    Compare(compare_cmd::CompareArgs),
    /// A/B regression gate: base and head measured alternately in one run; exit 1 on a regression.
    Gate(gate_cmd::GateArgs),
    /// One side of `gate` (spawned by it; speaks a line protocol on stdin/stdout).
    #[command(hide = true)]
    AbWorker(gate_cmd::WorkerArgs),
    /// Write the markdown + SVG report of a results file.
    Report(report_cmd::ReportArgs),
}

pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Image(cmd) => image_cmd::run(cmd),
        Command::Vm(cmd) => vm_cmd::run(cmd),
        Command::Bench(args) => bench_cmd::run(args),
        Command::Kernel(cmd) => kernel_cmd::run(cmd),
        Command::BisectRun(args) => bisect_cmd::run(args),
        Command::Render(args) => render_cmd::run(args),
        Command::Apply(args) => apply_cmd::run(args),
        Command::Compare(args) => compare_cmd::run(args),
        Command::Gate(args) => gate_cmd::run(args),
        Command::AbWorker(args) => gate_cmd::run_worker(args),
        Command::Report(args) => report_cmd::run(args),
    }
}
