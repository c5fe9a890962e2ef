//! What a job does in its guest, as an ordered list of phases. A new
//! measurement is a new [`Phase`]: it records samples for a job and says
//! what it costs, so the schedule and the ETA account for it; add it to
//! [`standard`] (or to a plan's own list) and every lane runs it.
//! `--phases control,data,evidence` picks among them ([`select`]).

use std::str::FromStr;
use std::time::Instant;

use crate::measure::{self, data::DataConfig, Recorder};
use crate::tech::Tech;
use crate::vm::Vm;
use crate::workload::Workload;

use super::job::{Family, Job};

/// One part of a job's work in a guest. Phases of a job run in order on
/// the same guest (the previous job's guest: a phase resets what it
/// relies on), and the first failure ends the job — a later phase may
/// depend on what an earlier one loaded.
pub trait Phase: Sync {
    /// Relative cost for the schedule and the ETA, in units of roughly a
    /// second of TCG guest time; 0 for a job the phase does nothing for.
    fn weight(&self, job: &Job) -> u64;
    /// Measure `job` in `vm`, recording into `rec`.
    fn run(&self, vm: &mut Vm, job: &Job, rec: &mut Recorder) -> anyhow::Result<()>;
    /// The `--phases` names it stands for, comma-separated.
    fn name(&self) -> &'static str;
    /// Runs while no other guest of the run works (see [`EXCLUSIVE`]).
    fn exclusive(&self) -> bool {
        false
    }
}

/// A name `--phases` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PhaseName {
    /// Full load and updates.
    Control,
    /// Connection rate and bandwidth on the loaded ruleset.
    Data,
    /// Hook time and pktgen rate, alone on the host.
    Evidence,
    /// A kernel sampling profile of the full load and of adding one
    /// (`--profile`).
    Profile,
}

#[derive(Debug, thiserror::Error)]
pub enum PhaseError {
    #[error("unknown phase {0:?} (control, data, evidence or profile)")]
    Unknown(String),
    #[error("no phase chosen (control, data or evidence)")]
    None,
    #[error(
        "the data phase needs the control phase: it measures the ruleset the control plane loads"
    )]
    DataWithoutControl,
}

impl FromStr for PhaseName {
    type Err = PhaseError;
    fn from_str(s: &str) -> Result<PhaseName, PhaseError> {
        match s {
            "control" => Ok(PhaseName::Control),
            "data" => Ok(PhaseName::Data),
            "evidence" => Ok(PhaseName::Evidence),
            "profile" => Ok(PhaseName::Profile),
            other => Err(PhaseError::Unknown(other.to_string())),
        }
    }
}

/// The phases for the chosen names, in their fixed order (control before
/// data before evidence, whatever the order given).
pub fn select(names: &[PhaseName], data: DataConfig) -> Result<Vec<Box<dyn Phase>>, PhaseError> {
    let has = |name| names.contains(&name);
    let mut out: Vec<Box<dyn Phase>> = Vec::new();
    match (has(PhaseName::Control), has(PhaseName::Data)) {
        (true, true) => out.push(Box::new(ControlAndDataPlane { data })),
        (true, false) => out.push(Box::new(ControlPlane)),
        (false, true) => return Err(PhaseError::DataWithoutControl),
        (false, false) => {}
    }
    if has(PhaseName::Evidence) {
        out.push(Box::new(Evidence));
    }
    if has(PhaseName::Profile) {
        out.push(Box::new(Profile));
    }
    if out.is_empty() {
        return Err(PhaseError::None);
    }
    Ok(out)
}

/// The names a phase list stands for, for the run's metadata.
pub fn names(phases: &[Box<dyn Phase>]) -> Vec<String> {
    phases
        .iter()
        .flat_map(|p| p.name().split(','))
        .map(str::to_string)
        .collect()
}

/// How slow the technology's tools were at N = 10k in the TCG runs of
/// 2026-11-29 (nft 0.9.8 > iptables-nft-restore > iptables-legacy,
/// IPVS > eBPF and every firewall), for the control-plane weights.
fn slowness(job: &Job) -> u64 {
    match (job.family, job.setting.tech) {
        (Family::Services, Tech::Nftables) => 6,
        // One run at N ≤ 3k: full load 0.65× and updates 0.2–0.8× of
        // nftables'; nothing measured at 10k yet.
        (Family::Services, Tech::NftablesNoAnonMaps) => 4,
        (Family::Services, Tech::IptablesNft) => 3,
        (Family::Services, Tech::IptablesLegacy | Tech::Ipvs) => 2,
        _ => 1,
    }
}

/// The family's measurements at one (tech, N): control plane from a reset
/// guest, then data plane on the loaded ruleset (`measure::run_services`,
/// `measure::run_firewall`).
pub struct ControlAndDataPlane {
    pub data: DataConfig,
}

impl Phase for ControlAndDataPlane {
    /// A fixed part (reset, warm-up, data plane: a job at N ≤ 100 took
    /// under a minute) plus a control-plane part growing with N, scaled by
    /// the technology's [`slowness`]. Only the schedule and the ETA
    /// depend on it.
    fn weight(&self, job: &Job) -> u64 {
        50 + slowness(job) * job.setting.n / 100
    }

    fn run(&self, vm: &mut Vm, job: &Job, rec: &mut Recorder) -> anyhow::Result<()> {
        match job.family {
            Family::Services => measure::run_services(vm, &job.setting, &self.data, rec),
            Family::Firewall => measure::run_firewall(vm, &job.setting, &self.data, rec),
        }
    }

    fn name(&self) -> &'static str {
        "control,data"
    }
}

/// The firewall the control-plane phases load and update (with conntrack,
/// as `measure::run_firewall`'s control plane does).
fn control_firewall(n: usize) -> Workload {
    Workload::Firewall(measure::firewall_workload(n, false))
}

/// The control plane alone (`--phases control`): full loads and updates
/// at every position, no traffic.
pub struct ControlPlane;

impl Phase for ControlPlane {
    /// Reset and warm-up (the data plane's ~35 s of a small job is not
    /// run) plus the same growing part as [`ControlAndDataPlane`].
    fn weight(&self, job: &Job) -> u64 {
        15 + slowness(job) * job.setting.n / 100
    }

    fn run(&self, vm: &mut Vm, job: &Job, rec: &mut Recorder) -> anyhow::Result<()> {
        let n = job.setting.n as usize;
        match job.family {
            Family::Services => {
                let services = measure::services_workload(n);
                measure::control::services(vm, &job.setting, &services, rec)?;
            }
            Family::Firewall => {
                measure::control::firewall(
                    vm,
                    &job.setting,
                    &control_firewall(n),
                    &control_firewall(n.min(100)),
                    measure::extra_firewall_rule(n),
                    rec,
                )?;
            }
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        "control"
    }
}

/// Held shared by every other phase and exclusively by [`Evidence`]: the
/// hook-time and pktgen figures are taken while no other guest of the run
/// works (two TCG guests share the host's cores; a neighbour's 25-minute
/// load beside a rate measurement would be measured too). std's RwLock
/// queues new readers behind a waiting writer, so the evidence phase waits
/// at most for the other lanes' current phases.
static EXCLUSIVE: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// In-kernel hook time by position and the new-flow pktgen rate
/// (`measure::run_evidence`), alone on the host.
pub struct Evidence;

impl Phase for Evidence {
    /// A flood workload's load plus 5 repeats of hook phases and rates:
    /// 25–35 s per job at N ≤ 1k under TCG (hook_budgets_hold).
    fn weight(&self, job: &Job) -> u64 {
        30 + job.setting.n / 100
    }

    fn run(&self, vm: &mut Vm, job: &Job, rec: &mut Recorder) -> anyhow::Result<()> {
        measure::run_evidence(vm, &job.setting, job.family, rec)
    }

    fn name(&self) -> &'static str {
        "evidence"
    }

    fn exclusive(&self) -> bool {
        true
    }
}

/// One more full load and one add per update mode, each under the
/// guest's kernel sampler (`measure::profile`), after the timed figures:
/// the profile explains them without perturbing them.
pub struct Profile;

impl Phase for Profile {
    /// A reset plus a full load and an add or two: about a third of the
    /// control plane's growing part.
    fn weight(&self, job: &Job) -> u64 {
        10 + slowness(job) * job.setting.n / 300
    }

    fn run(&self, vm: &mut Vm, job: &Job, rec: &mut Recorder) -> anyhow::Result<()> {
        let n = job.setting.n as usize;
        match job.family {
            Family::Services => measure::profile::services(vm, &job.setting, rec),
            Family::Firewall => measure::profile::firewall(
                vm,
                &job.setting,
                &control_firewall(n),
                measure::extra_firewall_rule(n),
                rec,
            ),
        }
    }

    fn name(&self) -> &'static str {
        "profile"
    }
}

/// The phases of `make bench`.
pub fn standard(data: DataConfig) -> Vec<Box<dyn Phase>> {
    vec![Box::new(ControlAndDataPlane { data }), Box::new(Evidence)]
}

/// What a job left: everything its phases recorded (also before a
/// failure), if a phase failed the note saying so, and the host seconds
/// its phases took (without waiting for another lane's exclusive phase).
#[derive(Debug, Default)]
pub struct JobOutcome {
    pub recorded: Recorder,
    pub failure: Option<String>,
    pub seconds: f64,
}

/// Run `job`'s phases in a guest with `memory_mb` of memory; a failure
/// the kernel's OOM killer caused says so.
pub fn run_job(vm: &mut Vm, job: &Job, phases: &[Box<dyn Phase>], memory_mb: u32) -> JobOutcome {
    let mut rec = Recorder::default();
    let console_before = vm.console_log().lines().count();
    let mut seconds = 0.0;
    let mut failure = None;
    for phase in phases {
        let _guard = Held::take(phase.exclusive());
        let started = Instant::now();
        let result = phase.run(vm, job, &mut rec);
        seconds += started.elapsed().as_secs_f64();
        if let Err(e) = result {
            failure = Some(format!("{job}: {e:#}"));
            break;
        }
    }
    let failure = failure.map(|note| {
        let console = vm.console_log();
        let new: Vec<&str> = console.lines().skip(console_before).collect();
        match memory_hint(&new, memory_mb) {
            Some(hint) => format!("{note} — {hint}"),
            None => note,
        }
    });
    JobOutcome {
        recorded: rec,
        failure,
        seconds,
    }
}

/// [`EXCLUSIVE`] held for one phase: exclusively or shared.
enum Held {
    Shared(#[allow(dead_code)] std::sync::RwLockReadGuard<'static, ()>),
    Alone(#[allow(dead_code)] std::sync::RwLockWriteGuard<'static, ()>),
}

impl Held {
    fn take(exclusive: bool) -> Held {
        if exclusive {
            Held::Alone(EXCLUSIVE.write().unwrap_or_else(|e| e.into_inner()))
        } else {
            Held::Shared(EXCLUSIVE.read().unwrap_or_else(|e| e.into_inner()))
        }
    }
}

/// "the guest ran out of memory (1024 MiB; kernel: …)" when the console
/// lines printed during a job show the OOM killer at work.
pub fn memory_hint(console: &[&str], memory_mb: u32) -> Option<String> {
    let line = console.iter().find(|l| {
        l.contains("Out of memory") || l.contains("invoked oom-killer") || l.contains("oom-kill:")
    })?;
    Some(format!(
        "the guest ran out of memory ({memory_mb} MiB; kernel: \"{}\"); give it more with --guest-memory",
        line.trim()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(names: &[&str]) -> Result<Vec<String>, String> {
        let names: Vec<PhaseName> = names
            .iter()
            .map(|n| n.parse())
            .collect::<Result<_, _>>()
            .map_err(|e: PhaseError| e.to_string())?;
        select(&names, DataConfig::default())
            .map(|p| self::names(&p))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn phases_are_chosen_by_name_in_their_fixed_order() {
        assert_eq!(
            pick(&["evidence", "data", "control"]).unwrap(),
            ["control", "data", "evidence"]
        );
        assert_eq!(pick(&["control"]).unwrap(), ["control"]);
        assert_eq!(pick(&["evidence"]).unwrap(), ["evidence"]);
        assert_eq!(
            names(&standard(DataConfig::default())),
            ["control", "data", "evidence"]
        );
        assert_eq!(
            pick(&["profile", "control"]).unwrap(),
            ["control", "profile"]
        );
        assert!(pick(&["data"])
            .unwrap_err()
            .contains("needs the control phase"));
        assert!(pick(&[]).unwrap_err().contains("no phase"));
        assert_eq!(
            pick(&["routing"]).unwrap_err(),
            "unknown phase \"routing\" (control, data, evidence or profile)"
        );
    }

    #[test]
    fn the_control_phase_alone_weighs_less_than_with_the_data_plane() {
        let job = Job {
            family: Family::Services,
            setting: measure::Setting {
                tech: Tech::Nftables,
                n: 1000,
                repeats: 3,
                full_load_budget_ms: 1000,
            },
        };
        let both = ControlAndDataPlane {
            data: DataConfig::default(),
        };
        assert_eq!(both.weight(&job), 110);
        assert_eq!(ControlPlane.weight(&job), 75);
        assert!(Evidence.exclusive() && !ControlPlane.exclusive());
    }

    #[test]
    fn an_oom_kill_in_the_console_is_named() {
        let console = [
            "[  812.1] nft invoked oom-killer: gfp_mask=0x100cca(GFP_HIGHUSER_MOVABLE), order=0",
            "[  812.3] Out of memory: Killed process 311 (nft) total-vm:1101232kB",
        ];
        let hint = memory_hint(&console, 1024).unwrap();
        assert!(
            hint.starts_with(
                "the guest ran out of memory (1024 MiB; kernel: \"[  812.1] nft invoked oom-killer"
            ),
            "{hint}"
        );
        assert!(hint.ends_with("--guest-memory"), "{hint}");
        assert_eq!(memory_hint(&["[ 1.0] nft: syntax error"], 1024), None);
    }
}
