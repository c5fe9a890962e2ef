//! What a job does in its guest, as an ordered list of phases. A new
//! measurement is a new [`Phase`]: it records samples for a job and says
//! what it costs, so the schedule and the ETA account for it; add it to
//! [`standard`] (or to a plan's own list) and every lane runs it.

use crate::measure::{self, data::DataConfig, Recorder};
use crate::tech::Tech;
use crate::vm::Vm;

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
    /// how slow the technology's tools were at N = 10k in the TCG runs of
    /// 2026-11-29 (nft 0.9.8 > iptables-nft-restore > iptables-legacy,
    /// IPVS > eBPF and every firewall). Only the schedule and the ETA
    /// depend on it.
    fn weight(&self, job: &Job) -> u64 {
        let slowness = match (job.family, job.setting.tech) {
            (Family::Services, Tech::Nftables) => 6,
            // One run at N ≤ 3k: full load 0.65× and updates 0.2–0.8× of
            // nftables'; nothing measured at 10k yet.
            (Family::Services, Tech::NftablesNoAnonMaps) => 4,
            (Family::Services, Tech::IptablesNft) => 3,
            (Family::Services, Tech::IptablesLegacy | Tech::Ipvs) => 2,
            _ => 1,
        };
        50 + slowness * job.setting.n / 100
    }

    fn run(&self, vm: &mut Vm, job: &Job, rec: &mut Recorder) -> anyhow::Result<()> {
        let _shared = EXCLUSIVE.read().unwrap_or_else(|e| e.into_inner());
        match job.family {
            Family::Services => measure::run_services(vm, &job.setting, &self.data, rec),
            Family::Firewall => measure::run_firewall(vm, &job.setting, &self.data, rec),
        }
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
        let _alone = EXCLUSIVE.write().unwrap_or_else(|e| e.into_inner());
        measure::run_evidence(vm, &job.setting, job.family, rec)
    }
}

/// The phases of `make bench`.
pub fn standard(data: DataConfig) -> Vec<Box<dyn Phase>> {
    vec![Box::new(ControlAndDataPlane { data }), Box::new(Evidence)]
}

/// What a job left: everything its phases recorded (also before a
/// failure) and, if a phase failed, the note saying so.
#[derive(Debug, Default)]
pub struct JobOutcome {
    pub recorded: Recorder,
    pub failure: Option<String>,
}

pub fn run_job(vm: &mut Vm, job: &Job, phases: &[Box<dyn Phase>]) -> JobOutcome {
    let mut rec = Recorder::default();
    let failure = phases
        .iter()
        .find_map(|phase| phase.run(vm, job, &mut rec).err())
        .map(|e| format!("{job}: {e:#}"));
    JobOutcome {
        recorded: rec,
        failure,
    }
}
