//! `rulebench ab-worker`: one side of an A/B campaign. Boots its guest,
//! says it is ready, then measures one unit per request, in plan order,
//! with this revision's own renderers and measurement code.
//!
//! Protocol (one JSON object per line): the worker writes
//! [`Ready`]; the controller writes `unit KEY`; the worker answers
//! [`Answer`]; `quit` ends it. Everything else goes to stderr.

use super::plan::{AbPlan, Unit};
use crate::measure::{self, control, guest, Family, Recorder, Setting};
use crate::results::Sample;
use crate::tech::Tech;
use crate::vm::{Vm, VmOptions};
use crate::workload::Workload;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};

#[derive(Debug, Serialize, Deserialize)]
pub struct Ready {
    pub protocol: u32,
    pub revision: String,
    pub kernel: String,
    pub accel: String,
    pub units: usize,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Answer {
    pub key: String,
    #[serde(default)]
    pub samples: Vec<Sample>,
    /// The unit failed: the error, with its context.
    #[serde(default)]
    pub error: Option<String>,
}

pub fn run(plan: &AbPlan, input: impl BufRead, mut output: impl Write) -> Result<()> {
    let units = plan.units();
    let lock = crate::image::LockFile::load(&crate::image::lock_path(None))?;
    let image = crate::image::build(&lock, true).context("building the image")?;
    let opts = VmOptions {
        memory_mb: plan.guest_memory_mb(),
        ..Default::default()
    };
    let mut vm = Vm::boot(&image, &opts).context("booting the worker's guest")?;
    guest::prepare(&mut vm).context("guest topology")?;
    let ready = Ready {
        protocol: super::PROTOCOL,
        revision: crate::bench::meta::git_revision(),
        kernel: vm.kernel_release.clone(),
        accel: vm.accel().to_string(),
        units: units.len(),
    };
    writeln!(output, "{}", serde_json::to_string(&ready)?)?;
    output.flush()?;
    let mut next = units.iter();
    for line in input.lines() {
        let line = line.context("reading the controller's request")?;
        let line = line.trim();
        if line == "quit" {
            break;
        }
        let Some(key) = line.strip_prefix("unit ") else {
            bail!("unexpected request {line:?}");
        };
        let Some(unit) = next.next() else {
            bail!("asked for unit {key:?} after the last one");
        };
        if unit.key() != key {
            bail!(
                "asked for unit {key:?} but this worker's next unit is {:?} (different plans?)",
                unit.key()
            );
        }
        let answer = match measure_unit(&mut vm, plan, unit) {
            Ok(samples) => Answer {
                key: key.to_string(),
                samples,
                error: None,
            },
            Err(e) => Answer {
                key: key.to_string(),
                samples: Vec::new(),
                error: Some(format!("{e:#}")),
            },
        };
        writeln!(output, "{}", serde_json::to_string(&answer)?)?;
        output.flush()?;
    }
    vm.shutdown().context("shutting the worker's guest down")?;
    Ok(())
}

fn measure_unit(vm: &mut Vm, plan: &AbPlan, unit: &Unit) -> Result<Vec<Sample>> {
    let tech: Tech = unit.tech.parse()?;
    let setting = Setting {
        tech,
        n: unit.n,
        repeats: plan.repeats,
        full_load_budget_ms: measure::DEFAULT_FULL_LOAD_BUDGET_MS,
    };
    let n = unit.n as usize;
    let mut rec = Recorder::default();
    let family = if unit.family == Family::Services.name() {
        Family::Services
    } else {
        Family::Firewall
    };
    match family {
        Family::Services => {
            let services = measure::services_workload(n);
            if unit.repeat == 0 {
                let small = measure::services_workload(n.min(100));
                control::warm_up(vm, tech, &Workload::Services(small))?;
            }
            control::services_unit(
                vm,
                &setting,
                &services,
                (unit.repeat, plan.rounds),
                &mut rec,
            )
        }
        Family::Firewall => {
            let workload = Workload::Firewall(measure::firewall_workload(n, false));
            if unit.repeat == 0 {
                let small = Workload::Firewall(measure::firewall_workload(n.min(100), false));
                control::warm_up(vm, tech, &small)?;
            }
            control::firewall_unit(
                vm,
                &setting,
                &workload,
                measure::extra_firewall_rule(n),
                (unit.repeat, plan.rounds),
                &mut rec,
            )
        }
    }
    .with_context(|| unit.key())?;
    Ok(rec.samples)
}
