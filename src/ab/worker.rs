//! `rulebench ab-worker`: one side of an A/B campaign. Boots its guest,
//! says it is ready, then measures one unit per request, in plan order,
//! with this revision's own renderers and measurement code.
//!
//! Protocol (one JSON object per line): the worker writes [`Ready`];
//! the controller writes `load KEY` (the next unit's full load) or
//! `round KEY` (one more update round of that unit), the worker answers
//! each with an [`Answer`]; `quit` ends it. Everything else goes to
//! stderr.

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
    // The unit being measured and the model its guest holds.
    let mut current: Option<(&Unit, Workload)> = None;
    for line in input.lines() {
        let line = line.context("reading the controller's request")?;
        let line = line.trim();
        if line == "quit" {
            break;
        }
        let (key, result) = if let Some(key) = line.strip_prefix("load ") {
            let Some(unit) = next.next() else {
                bail!("asked to load {key:?} after the last unit");
            };
            if unit.key() != key {
                bail!(
                    "asked to load {key:?} but this worker's next unit is {:?} (different plans?)",
                    unit.key()
                );
            }
            let mut rec = Recorder::default();
            let result = load_unit(&mut vm, plan, unit, &mut rec).map(|model| {
                current = Some((unit, model));
                rec.samples
            });
            (key, result)
        } else if let Some(key) = line.strip_prefix("round ") {
            let Some((unit, model)) = current.as_mut().filter(|(u, _)| u.key() == key) else {
                bail!("asked for a round of {key:?}, which is not the loaded unit");
            };
            let mut rec = Recorder::default();
            let result = round(&mut vm, plan, unit, model, &mut rec).map(|()| rec.samples);
            (key, result)
        } else {
            bail!("unexpected request {line:?}");
        };
        let answer = match result {
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

fn setting(plan: &AbPlan, unit: &Unit) -> Result<Setting> {
    Ok(Setting {
        tech: unit.tech.parse::<Tech>()?,
        n: unit.n,
        repeats: plan.repeats,
        full_load_budget_ms: measure::DEFAULT_FULL_LOAD_BUDGET_MS,
    })
}

fn family(unit: &Unit) -> Family {
    if unit.family == Family::Services.name() {
        Family::Services
    } else {
        Family::Firewall
    }
}

/// The unit's workload (and, at its first repeat, an untimed warm-up),
/// then its timed full load.
fn load_unit(vm: &mut Vm, plan: &AbPlan, unit: &Unit, rec: &mut Recorder) -> Result<Workload> {
    let setting = setting(plan, unit)?;
    let n = unit.n as usize;
    let (workload, small) = match family(unit) {
        Family::Services => (
            Workload::Services(measure::services_workload(n)),
            Workload::Services(measure::services_workload(n.min(100))),
        ),
        Family::Firewall => (
            Workload::Firewall(measure::firewall_workload(n, false)),
            Workload::Firewall(measure::firewall_workload(n.min(100), false)),
        ),
    };
    if unit.repeat == 0 {
        control::warm_up(vm, setting.tech, &small)?;
    }
    control::unit_load(vm, &setting, &workload, unit.repeat, rec).with_context(|| unit.key())
}

fn round(
    vm: &mut Vm,
    plan: &AbPlan,
    unit: &Unit,
    model: &mut Workload,
    rec: &mut Recorder,
) -> Result<()> {
    let setting = setting(plan, unit)?;
    match family(unit) {
        Family::Services => control::services_unit_round(vm, &setting, model, unit.repeat, rec),
        Family::Firewall => control::firewall_update_round(
            vm,
            &setting,
            model,
            measure::extra_firewall_rule(unit.n as usize),
            unit.repeat,
            rec,
        ),
    }
    .with_context(|| unit.key())
}
