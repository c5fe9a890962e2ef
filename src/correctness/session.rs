//! A booted guest with the probe topology up: load a technology, run the
//! probes, judge the answers. One session serves every technology in turn
//! (reset in between), because a guest boot costs more than all the
//! resets of a test together.

use std::collections::BTreeMap;

use crate::tech::Tech;
use crate::topo::{self, Topology};
use crate::vm::Vm;
use crate::workload::{UpdateOp, Workload};

use super::differential::Differential;
use super::probes::{plan, Check, Probe, Verdict};
use super::verdict::judge;
use super::{push, CorrectnessError};

/// Per-attempt timeout for service probes: an untranslated connection to
/// an address nobody owns fails fast (unreachable or reset), so this only
/// bounds a lost packet. Above TCP's 1 s initial SYN retransmission, so a
/// first SYN lost on an overloaded host is not mistaken for a wrong verdict.
pub const SERVICE_TIMEOUT_MS: u64 = 3000;
/// Per-attempt timeout for firewall probes: a dropped connection costs
/// exactly this, an accepted one answers in milliseconds even under TCG.
pub const FIREWALL_TIMEOUT_MS: u64 = 500;

pub struct Session {
    pub vm: Vm,
    pub topology: Topology,
}

/// The union of the topologies several workloads need (e.g. a workload
/// before and after an update that moves a service to a new backend).
pub fn topology_for(workloads: &[&Workload]) -> Topology {
    let mut backends: BTreeMap<std::net::Ipv4Addr, topo::Backend> = BTreeMap::new();
    for w in workloads {
        for b in Topology::for_workload(w).backends {
            let entry = backends.entry(b.addr).or_insert_with(|| b.clone());
            entry.ports.extend(b.ports);
            entry.ports.sort_unstable();
            entry.ports.dedup();
        }
    }
    Topology {
        backends: backends.into_values().collect(),
    }
}

/// What one technology did with one workload.
#[derive(Debug, Clone, PartialEq)]
pub struct TechRun {
    pub tech: Tech,
    /// Guest-side time of the full load.
    pub load_ns: u64,
    pub verdicts: Vec<Verdict>,
}

fn timeout_for(probes: &[Probe]) -> u64 {
    if probes.iter().any(|p| p.check == Check::Firewall) {
        FIREWALL_TIMEOUT_MS
    } else {
        SERVICE_TIMEOUT_MS
    }
}

impl Session {
    /// Build `topology` in `vm` and start its servers.
    pub fn start(mut vm: Vm, topology: Topology) -> Result<Session, CorrectnessError> {
        topology
            .setup(&mut vm)
            .map_err(|e| CorrectnessError::Topology(Box::new(e)))?;
        Ok(Session { vm, topology })
    }

    pub fn reset(&mut self) -> Result<(), CorrectnessError> {
        Ok(crate::guest_state::reset(&mut self.vm)?)
    }

    pub fn load(&mut self, tech: Tech, workload: &Workload) -> Result<u64, CorrectnessError> {
        push::load(&mut self.vm, tech, workload)
    }

    pub fn update(
        &mut self,
        tech: Tech,
        before: &Workload,
        op: &UpdateOp,
    ) -> Result<u64, CorrectnessError> {
        push::update(&mut self.vm, tech, before, op)
    }

    pub fn dump(&mut self, tech: Tech) -> Result<String, CorrectnessError> {
        push::dump(&mut self.vm, tech)
    }

    /// Run every probe from the client namespace and judge its answers.
    pub fn probe(&mut self, probes: &[Probe]) -> Result<Vec<Verdict>, CorrectnessError> {
        if probes.is_empty() {
            return Ok(Vec::new());
        }
        let report = topo::probe(&mut self.vm, &plan(probes, timeout_for(probes)))
            .map_err(|e| CorrectnessError::Probe(Box::new(e)))?;
        if report.results.len() != probes.len() {
            return Err(CorrectnessError::ProbeCount {
                got: report.results.len(),
                want: probes.len(),
            });
        }
        Ok(probes
            .iter()
            .zip(&report.results)
            .map(|(p, o)| judge(p, o))
            .collect())
    }

    /// Reset, load `workload` with `tech`, probe.
    pub fn run(
        &mut self,
        tech: Tech,
        workload: &Workload,
        probes: &[Probe],
    ) -> Result<TechRun, CorrectnessError> {
        self.reset()?;
        let load_ns = self.load(tech, workload)?;
        let verdicts = self.probe(probes)?;
        Ok(TechRun {
            tech,
            load_ns,
            verdicts,
        })
    }

    /// Every technology of `techs` in turn on the same probes; `on_run`
    /// sees each run (for progress output and timings).
    pub fn differential(
        &mut self,
        workload: &Workload,
        techs: &[Tech],
        probes: &[Probe],
        mut on_run: impl FnMut(&TechRun),
    ) -> Result<Differential, CorrectnessError> {
        let mut table = Differential::new(probes.to_vec());
        for &tech in techs {
            let run = self.run(tech, workload, probes)?;
            on_run(&run);
            table.add(tech, run.verdicts);
        }
        Ok(table)
    }
}
