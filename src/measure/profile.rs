//! Where a control-plane operation's time goes, sampled in the guest
//! kernel (`bench --profile`): the full load and one add (one insert for
//! the firewall), each run once more, untimed by the figures, under
//! `rulebench-ebpf profile` — a cpu-clock sampler on every guest CPU that
//! charges each tick to the operation's commands (user or kernel, by
//! kernel function), to the idle task or to other tasks (kworkers, RCU
//! callbacks: commit work the kernel defers out of the command's
//! `sendmsg`). The timed figures stay unprofiled; their user / sys split
//! comes from the agent's `wait4` (see `control::record_times`).

use anyhow::{bail, Context, Result};
use rulebench_proto::{ProfileCommand, ProfileFunction, ProfilePlan, ProfileReport};

use super::figures::{Figure, FW_ADD, FW_FULL_LOAD, SVC_ADD, SVC_FULL_LOAD};
use super::{control, guest, Family, Recorder, Setting};
use crate::results::{ProfileRow, ProfiledFunction};
use crate::tech::{self, ebpf::LOADER, Step, Tech, UpdateMode};
use crate::vm::Vm;
use crate::workload::{Rule, UpdateOp, Workload};

/// Ticks per second and CPU. Prime, so the sampler does not beat with
/// periodic kernel work (the scheduler tick, timers at round rates).
pub const FREQUENCY_HZ: u64 = 997;
/// Kernel functions kept per table.
pub const TOP: u32 = 15;
/// Guest-side limit of one profiled operation: a full load of 100k under
/// TCG takes many minutes (same as a step's).
const TIMEOUT_MS: u64 = crate::steps::STEP_TIMEOUT_MS;

/// The profiler's plan for a renderer's steps, run in order as the step
/// runner would (tolerated failures go on, others stop the plan).
pub fn plan(steps: &[Step]) -> ProfilePlan {
    ProfilePlan {
        frequency_hz: FREQUENCY_HZ,
        commands: steps
            .iter()
            .map(|s| ProfileCommand {
                argv: s.argv.clone(),
                stdin: s.stdin.clone(),
                tolerate_failure: s.tolerate_failure,
            })
            .collect(),
        top: TOP,
    }
}

/// Runs `steps` under the profiler; fails like the step runner when a
/// step that must succeed did not.
pub fn run(vm: &mut Vm, tech: Tech, steps: &[Step]) -> Result<ProfileReport> {
    let report: ProfileReport = guest::run_json(
        vm,
        "rulebench-ebpf profile",
        vec![LOADER.into(), "profile".into()],
        &plan(steps),
        TIMEOUT_MS,
    )?;
    check_outcomes(tech, steps, &report)?;
    Ok(report)
}

/// Every step ran, and every one that must succeed did.
fn check_outcomes(tech: Tech, steps: &[Step], report: &ProfileReport) -> Result<()> {
    for (step, outcome) in steps.iter().zip(&report.commands) {
        crate::steps::check_exit(tech, step, outcome.exit_code, &outcome.stderr)
            .context("under the profiler")?;
    }
    if report.commands.len() < steps.len() {
        bail!(
            "{tech}: the profiler ran {} of {} steps",
            report.commands.len(),
            steps.len()
        );
    }
    Ok(())
}

/// What one profiled operation was.
pub struct Operation<'a> {
    pub family: Family,
    pub setting: &'a Setting,
    pub figure: &'a Figure,
    pub mode: Option<UpdateMode>,
}

fn functions(list: &[ProfileFunction]) -> Vec<ProfiledFunction> {
    list.iter()
        .map(|f| ProfiledFunction {
            name: f.name.clone(),
            module: f.module.clone(),
            samples: f.samples,
        })
        .collect()
}

/// The results row of one profiled operation.
pub fn row(op: &Operation, report: &ProfileReport) -> ProfileRow {
    ProfileRow {
        family: op.family.name().to_string(),
        tech: op.setting.tech.name().to_string(),
        n: op.setting.n,
        figure: op.figure.id.to_string(),
        update_mode: op.mode.map(|m| m.name().to_string()).unwrap_or_default(),
        elapsed_ns: report.elapsed_ns,
        frequency_hz: report.frequency_hz,
        cpus: report.cpus,
        samples: report.samples,
        idle: report.idle,
        command_user: report.command_user,
        command_kernel: report.command_kernel,
        other_user: report.other_user,
        other_kernel: report.other_kernel,
        dropped: report.dropped,
        command_functions: functions(&report.command_functions),
        other_functions: functions(&report.other_functions),
        other_tasks: report
            .other_tasks
            .iter()
            .map(|t| ProfiledFunction {
                name: t.name.clone(),
                module: String::new(),
                samples: t.samples,
            })
            .collect(),
    }
}

/// Reset, then profile the full load of `workload`.
fn full_load(vm: &mut Vm, op: &Operation, workload: &Workload, rec: &mut Recorder) -> Result<()> {
    let tech = op.setting.tech;
    guest::reset(vm).context("resetting the guest before a profiled full load")?;
    let steps = tech::render_workload(tech, workload)?;
    let report = run(vm, tech, &steps).context("profiling the full load")?;
    rec.profiles.push(row(op, &report));
    Ok(())
}

/// Profile `update` on `model` in `mode`; the model follows the guest.
fn update(
    vm: &mut Vm,
    op: &Operation,
    model: &mut Workload,
    update: &UpdateOp,
    rec: &mut Recorder,
) -> Result<()> {
    let tech = op.setting.tech;
    let mode = op.mode.unwrap_or(UpdateMode::Primitive);
    let steps = tech::render_update_in(mode, tech, model, update)
        .with_context(|| format!("{} ({mode})", update.describe()))?;
    let report = run(vm, tech, &steps)
        .with_context(|| format!("profiling {} ({mode})", update.describe()))?;
    model.apply(update).with_context(|| update.describe())?;
    rec.profiles.push(row(op, &report));
    Ok(())
}

/// Services: the full load of N, then adding one service in every update
/// mode the technology has (each added service is deleted again,
/// unprofiled, so every mode starts from the same N).
pub fn services(vm: &mut Vm, setting: &Setting, rec: &mut Recorder) -> Result<()> {
    let services = super::services_workload(setting.n as usize);
    let mut model = Workload::Services(services);
    let load = Operation {
        family: Family::Services,
        setting,
        figure: &SVC_FULL_LOAD,
        mode: None,
    };
    full_load(vm, &load, &model, rec)?;
    for &mode in UpdateMode::for_services(setting.tech) {
        let extra = setting.extra_service(0);
        let add = Operation {
            figure: &SVC_ADD,
            mode: Some(mode),
            ..load
        };
        update(
            vm,
            &add,
            &mut model,
            &UpdateOp::AddService(extra.clone()),
            rec,
        )?;
        control::update_in(
            vm,
            setting.tech,
            &mut model,
            &UpdateOp::DeleteService { name: extra.name },
            mode,
        )?;
    }
    Ok(())
}

/// Firewall: the full load of N fillers (and the matching rules), then
/// inserting one rule after the fillers.
pub fn firewall(
    vm: &mut Vm,
    setting: &Setting,
    workload: &Workload,
    extra_rule: Rule,
    rec: &mut Recorder,
) -> Result<()> {
    let load = Operation {
        family: Family::Firewall,
        setting,
        figure: &FW_FULL_LOAD,
        mode: None,
    };
    full_load(vm, &load, workload, rec)?;
    let insert = Operation {
        figure: &FW_ADD,
        mode: Some(UpdateMode::Primitive),
        ..load
    };
    let mut model = workload.clone();
    let op = UpdateOp::InsertRule {
        index: setting.n as usize,
        rule: extra_rule,
    };
    update(vm, &insert, &mut model, &op, rec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rulebench_proto::{ProfileOutcome, ProfileTask};

    fn report(exits: &[Option<i32>]) -> ProfileReport {
        ProfileReport {
            frequency_hz: FREQUENCY_HZ,
            cpus: 1,
            elapsed_ns: 2_000_000_000,
            samples: 100,
            idle: 10,
            command_user: 20,
            command_kernel: 60,
            other_user: 2,
            other_kernel: 8,
            dropped: 0,
            command_functions: vec![ProfileFunction {
                name: "nf_tables_newset".into(),
                module: "nf_tables".into(),
                samples: 30,
            }],
            other_functions: vec![],
            other_tasks: vec![ProfileTask {
                name: "kworker/0:1".into(),
                samples: 8,
            }],
            commands: exits
                .iter()
                .map(|&exit_code| ProfileOutcome {
                    exit_code,
                    ..Default::default()
                })
                .collect(),
        }
    }

    #[test]
    fn the_plan_keeps_each_steps_input_and_tolerance() {
        let steps = [
            Step::new(&["nft", "flush", "ruleset"]).tolerant(),
            Step::with_stdin(&["nft", "-f", "-"], "table ip t {}\n"),
        ];
        let p = plan(&steps);
        assert_eq!(p.frequency_hz, FREQUENCY_HZ);
        assert_eq!(p.commands.len(), 2);
        assert!(p.commands[0].tolerate_failure && !p.commands[1].tolerate_failure);
        assert_eq!(p.commands[1].argv, ["nft", "-f", "-"]);
        assert_eq!(p.commands[1].stdin, "table ip t {}\n");
    }

    #[test]
    fn a_failed_step_fails_unless_tolerated() {
        let steps = [
            Step::new(&["ipset", "destroy"]).tolerant(),
            Step::new(&["nft", "-f", "-"]),
        ];
        assert!(check_outcomes(Tech::Nftables, &steps, &report(&[Some(1), Some(0)])).is_ok());
        let err = check_outcomes(Tech::Nftables, &steps, &report(&[Some(0), Some(1)])).unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("under the profiler: nftables: `nft -f -` failed (exit Some(1))"),
            "{err}"
        );
        let short = check_outcomes(Tech::Nftables, &steps, &report(&[Some(0)])).unwrap_err();
        assert!(short.to_string().contains("ran 1 of 2 steps"), "{short}");
    }

    #[test]
    fn a_row_names_its_operation() {
        let setting = Setting {
            tech: Tech::Nftables,
            n: 3000,
            repeats: 3,
            full_load_budget_ms: 1,
        };
        let op = Operation {
            family: Family::Services,
            setting: &setting,
            figure: &SVC_ADD,
            mode: Some(UpdateMode::KubeProxy),
        };
        let r = row(&op, &report(&[Some(0)]));
        assert_eq!(
            (r.family.as_str(), r.tech.as_str(), r.n),
            ("services", "nftables", 3000)
        );
        assert_eq!(
            (r.figure.as_str(), r.update_mode.as_str()),
            ("services.add-one", "kube-proxy")
        );
        assert_eq!(r.command_functions[0].module, "nf_tables");
        assert_eq!(r.other_tasks[0].name, "kworker/0:1");
        assert_eq!(r.command_kernel_share(), Some(0.75));
    }
}
