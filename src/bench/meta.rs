//! The run's provenance for the results file: what ran where, from which
//! revision, with which plan.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::image::{self, BuiltImage};
use crate::results::RunMeta;
use crate::vm::{Vm, VmOptions};

use super::job::{Job, Ladder};

/// The metadata of a run about to measure `jobs` on `guests` guests like
/// `probe` (a booted guest of the image); its duration is filled in as
/// the run goes.
pub fn run_meta(
    ladder: &Ladder,
    jobs: &[Job],
    built: &BuiltImage,
    probe: &Vm,
    opts: &VmOptions,
    guests: usize,
) -> RunMeta {
    let mut techs: Vec<String> = jobs
        .iter()
        .map(|j| j.setting.tech.name().to_string())
        .collect();
    techs.sort();
    techs.dedup();
    RunMeta {
        image: built.name.clone(),
        image_sha256: built.sha256.clone(),
        kernel: probe.kernel_release.clone(),
        accel: probe.accel().to_string(),
        host_cpu: host_cpu(),
        qemu_version: probe.qemu_version(),
        rulebench_revision: git_revision(),
        started_unix: unix_now(),
        duration_seconds: 0.0,
        sizes: ladder.sizes.clone(),
        techs,
        families: ladder.families.iter().map(|f| f.to_string()).collect(),
        repeats: ladder.repeats,
        full_load_budget_seconds: Some(ladder.full_load_budget_seconds),
        guest_vcpus: opts.smp,
        guest_memory_mb: opts.memory_mb,
        parallel_guests: guests as u32,
        exclusive_phases: vec!["evidence (hook time, pktgen rate)".into()],
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// The host CPU model and its thread count, from /proc/cpuinfo.
pub fn host_cpu() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .map(|model| {
            format!(
                "{model} ({} threads)",
                std::thread::available_parallelism().map_or(0, |n| n.get())
            )
        })
        .unwrap_or_else(|| "unknown".into())
}

/// `git describe`-like revision, marked `-dirty` with uncommitted changes.
pub fn git_revision() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(image::agent::workspace_root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "HEAD"]) {
        Some(rev) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{rev}-dirty")
            } else {
                rev
            }
        }
        None => "unknown".into(),
    }
}
