//! `rulebench apply`: a fresh guest, the workload loaded with one
//! technology, its normalized dump and a probe summary. Exit 1 when a
//! probe disagrees with the workload's oracle.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::correctness::{probes_for, ProbeOptions, Session};
use crate::image::{self, LockFile};
use crate::tech::Tech;
use crate::topo::Topology;
use crate::vm::{Vm, VmOptions};
use crate::workload::Workload;

#[derive(Args)]
pub struct ApplyArgs {
    /// iptables-legacy, iptables-nft, nftables, nftables-linear,
    /// nftables-no-anon-maps, ipvs or ebpf.
    #[arg(long)]
    tech: Tech,
    /// Workload TOML file.
    #[arg(long)]
    workload: PathBuf,
    /// Image name under images/ or a lock file path.
    #[arg(long)]
    image: Option<String>,
}

pub fn run(args: ApplyArgs) -> Result<()> {
    let workload = Workload::from_file(&args.workload)
        .with_context(|| format!("loading workload {}", args.workload.display()))?;
    // Render before booting: an unsupported pair fails in milliseconds.
    crate::tech::render_workload(args.tech, &workload)?;
    let lock_path = image::lock_path(args.image.as_deref());
    let lock = LockFile::load(&lock_path)?;
    let built = image::build(&lock, true).context("building the guest image")?;
    let vm = Vm::boot(&built, &VmOptions::default()).context("booting the guest")?;
    let mut session = Session::start(vm, Topology::for_workload(&workload))?;
    let tech = args.tech;
    let load_ns = session.load(tech, &workload)?;
    println!(
        "# {tech}: loaded {} in {:.3} s (guest time)",
        args.workload.display(),
        load_ns as f64 / 1e9
    );
    println!("# normalized dump");
    print!("{}", session.dump(tech)?);
    let probes = probes_for(&workload, &session.topology, &ProbeOptions::default());
    let verdicts = session.probe(&probes)?;
    let failed: Vec<String> = probes
        .iter()
        .zip(&verdicts)
        .filter(|(p, v)| **v != p.expected)
        .map(|(p, v)| format!("  {}: got {v}, oracle says {}", p.label, p.expected))
        .collect();
    println!(
        "# probes: {} of {} agree with the oracle",
        probes.len() - failed.len(),
        probes.len()
    );
    for line in &failed {
        println!("{line}");
    }
    session.vm.shutdown().context("shutting the guest down")?;
    if !failed.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
