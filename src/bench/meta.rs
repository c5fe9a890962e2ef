//! The run's provenance for the results file: what ran where, from which
//! revision, with which plan.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::image::{self, BuiltImage};
use crate::results::RunMeta;
use crate::vm::{Vm, VmOptions};

use super::job::{Job, Ladder};

/// What the plan decides beyond the ladder, for the metadata.
pub struct PlanMeta<'a> {
    pub guests: usize,
    /// The Debian suite of the image's userland (its lock's `suite`).
    pub userland: &'a str,
    /// `--phases` names.
    pub phases: Vec<String>,
    pub job_budget_seconds: Option<f64>,
}

/// The metadata of a run about to measure `jobs` like `probe` (a booted
/// guest of the image, asked once for its tool versions); its duration,
/// job times and skips are filled in as the run goes.
pub fn run_meta(
    ladder: &Ladder,
    jobs: &[Job],
    built: &BuiltImage,
    probe: &mut Vm,
    opts: &VmOptions,
    plan: PlanMeta,
) -> RunMeta {
    let mut techs: Vec<String> = jobs
        .iter()
        .map(|j| j.setting.tech.name().to_string())
        .collect();
    techs.sort();
    techs.dedup();
    let mut version = |tool: &str| {
        probe
            .sh(&format!("{tool} --version 2>/dev/null || true"))
            .map(|out| first_line(&out))
            .unwrap_or_default()
    };
    let nft_version = version("nft");
    let iptables_version = version("iptables");
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
        parallel_guests: plan.guests as u32,
        exclusive_phases: if plan.phases.iter().any(|p| p == "evidence") {
            vec!["evidence (hook time, pktgen rate)".into()]
        } else {
            Vec::new()
        },
        userland: plan.userland.to_string(),
        nft_version,
        iptables_version,
        phases: plan.phases,
        job_budget_minutes: plan.job_budget_seconds.map(|s| s / 60.0),
        jobs: Vec::new(),
        skipped_jobs: Vec::new(),
    }
}

/// The first non-empty line, trimmed ("nftables v0.9.8 (E.D.S.)").
pub fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default()
        .to_string()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_version_is_its_first_line() {
        assert_eq!(
            first_line("\n  nftables v0.9.8 (E.D.S.)\nmore\n"),
            "nftables v0.9.8 (E.D.S.)"
        );
        assert_eq!(first_line(""), "");
    }
}
