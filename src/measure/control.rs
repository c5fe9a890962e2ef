//! Control plane: how long a technology takes to load N services (or
//! rules) from empty and to add / delete / change one with N present, and
//! the kernel memory the ruleset costs. Every time is the guest-side
//! elapsed time of the renderer's steps (`steps::run_steps`).

use super::guest::{self, KernelMemory};
use super::{Recorder, Setting};
use crate::steps::{run_steps, total_times, StepTimes};
use crate::tech::{self, Tech, UpdateMode};
use crate::vm::Vm;
use crate::workload::{Endpoint, Rule, Services, UpdateOp, Workload};
use anyhow::{Context, Result};

/// Where in the list an update lands: the positions differ for linear
/// layouts (iptables walks or rewrites from the start) and should not for
/// hashed ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    First,
    Middle,
    Last,
}

impl Position {
    pub const ALL: [Position; 3] = [Position::First, Position::Middle, Position::Last];

    /// Position of repeat `r`: the repeats rotate through first, middle
    /// and last, so R repeats of an op cover all three positions (R ≥ 3)
    /// at a third of the cost of R at each position.
    pub fn of_repeat(r: u32) -> Position {
        Position::ALL[r as usize % Position::ALL.len()]
    }

    pub fn name(self) -> &'static str {
        match self {
            Position::First => "first",
            Position::Middle => "middle",
            Position::Last => "last",
        }
    }

    /// Index of this position in a list of `len` items (len > 0).
    pub fn index(self, len: usize) -> usize {
        match self {
            Position::First => 0,
            Position::Middle => len / 2,
            Position::Last => len.saturating_sub(1),
        }
    }
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// A control-plane time and, where the catalogue has one, its user / sys
/// split ([`figures::split_of`](super::figures::split_of)), all with the
/// same labels. Kernel work inside the commands' system calls is sys time
/// (nfnetlink processes a batch in the sender's `sendmsg`); work deferred
/// to kworkers or RCU callbacks is in neither user nor sys.
fn record_times(
    rec: &mut Recorder,
    figure: &super::figures::Figure,
    setting: &Setting,
    (r, position, mode): (u32, &str, Option<UpdateMode>),
    times: StepTimes,
) {
    let mut push = |figure: &super::figures::Figure, ns: u64| match mode {
        Some(mode) => rec.push_update(figure, setting, r, position, mode, ms(ns)),
        None => rec.push(figure, setting, r, position, ms(ns)),
    };
    push(figure, times.elapsed_ns);
    if let Some(split) = super::figures::split_of(figure.id) {
        push(&split.user, times.user_ns);
        push(&split.sys, times.sys_ns);
    }
}

/// Reset, then push the full workload; returns (guest ns, kernel memory delta).
pub fn full_load(vm: &mut Vm, tech: Tech, workload: &Workload) -> Result<(u64, KernelMemory)> {
    full_load_times(vm, tech, workload).map(|(t, mem)| (t.elapsed_ns, mem))
}

/// [`full_load`] with the user / sys split of the load's steps.
pub fn full_load_times(
    vm: &mut Vm,
    tech: Tech,
    workload: &Workload,
) -> Result<(StepTimes, KernelMemory)> {
    guest::reset(vm).context("resetting the guest before a full load")?;
    let before = guest::settled_kernel_memory(vm).context("reading /proc/meminfo")?;
    let steps = tech::render_workload(tech, workload)?;
    let times = total_times(&run_steps(vm, tech, &steps)?);
    let after = guest::kernel_memory(vm).context("reading /proc/meminfo")?;
    let delta = KernelMemory {
        slab_kib: after.slab_kib - before.slab_kib,
        vmalloc_kib: after.vmalloc_kib - before.vmalloc_kib,
        percpu_kib: after.percpu_kib - before.percpu_kib,
    };
    Ok((times, delta))
}

/// One untimed load first: the first load after a reset pays module
/// loading and cold page cache for the tool's binaries and libraries,
/// which made the first sample an outlier (CV > 50 % in a trial run).
/// A small workload of the same family warms the same things; a full one
/// at 10k would cost a minute under TCG for nothing.
pub fn warm_up(vm: &mut Vm, tech: Tech, small: &Workload) -> Result<()> {
    full_load(vm, tech, small)
        .map(|_| ())
        .context("warm-up load")
}

/// Full loads, each from empty: up to `setting.repeats`, but no new one
/// once the loads so far took `setting.full_load_budget_ms` of guest time.
/// The time goes where it says most: cheap loads keep every repeat (a
/// median and a spread), while a load that takes minutes (one
/// iptables-nft-restore of 10k services is 5–6 minutes under TCG) is
/// measured once instead of dominating the whole run.
fn full_loads(
    vm: &mut Vm,
    setting: &Setting,
    workload: &Workload,
    mut record: impl FnMut(u32, StepTimes, &KernelMemory),
) -> Result<()> {
    let budget_ns = setting.full_load_budget_ms.saturating_mul(1_000_000);
    repeat_within_budget(setting.repeats, budget_ns, |r| {
        let (times, mem) = full_load_times(vm, setting.tech, workload)?;
        record(r, times, &mem);
        Ok(times.elapsed_ns)
    })
}

/// Run `one(r)` (which returns the ns it took) up to `repeats` times, at
/// least once, and no more once `budget_ns` is used up.
fn repeat_within_budget(
    repeats: u32,
    budget_ns: u64,
    mut one: impl FnMut(u32) -> Result<u64>,
) -> Result<()> {
    let mut spent_ns = 0u64;
    for r in 0..repeats.max(1) {
        spent_ns = spent_ns.saturating_add(one(r)?);
        if spent_ns >= budget_ns {
            break;
        }
    }
    Ok(())
}

/// Push one update; the model moves along so the next render is relative
/// to what the guest now holds. Returns guest ns.
pub fn update(vm: &mut Vm, tech: Tech, model: &mut Workload, op: &UpdateOp) -> Result<u64> {
    update_in(vm, tech, model, op, UpdateMode::Primitive)
}

/// [`update`] sent in `mode` (kube-proxy mode exists for services only).
pub fn update_in(
    vm: &mut Vm,
    tech: Tech,
    model: &mut Workload,
    op: &UpdateOp,
    mode: UpdateMode,
) -> Result<u64> {
    update_times(vm, tech, model, op, mode).map(|t| t.elapsed_ns)
}

/// [`update_in`] with the user / sys split of its steps.
pub fn update_times(
    vm: &mut Vm,
    tech: Tech,
    model: &mut Workload,
    op: &UpdateOp,
    mode: UpdateMode,
) -> Result<StepTimes> {
    let steps = tech::render_update_in(mode, tech, model, op)
        .with_context(|| format!("{} ({mode})", op.describe()))?;
    let times = total_times(&run_steps(vm, tech, &steps)?);
    model.apply(op).with_context(|| op.describe())?;
    Ok(times)
}

/// The backend window after `backends`, so a change really changes the
/// DNAT targets (and stays inside the served namespaces).
pub fn shifted_backends(backends: &[Endpoint]) -> Vec<Endpoint> {
    let pool = usize::from(guest::BACKENDS);
    backends
        .iter()
        .map(|e| {
            let k = crate::workload::topology::backend_index(e.ip).unwrap_or(0);
            Endpoint::new(
                crate::workload::topology::backend_addr((k + 1) % pool),
                e.port,
            )
        })
        .collect()
}

/// Full loads (`repeats` times, each from empty), then updates at every
/// position. Leaves the guest holding the model it returns.
pub fn services(
    vm: &mut Vm,
    setting: &Setting,
    services: &Services,
    rec: &mut Recorder,
) -> Result<Workload> {
    use super::figures::*;
    let tech = setting.tech;
    let workload = Workload::Services(services.clone());
    let small = Services {
        services: services.services.iter().take(100).cloned().collect(),
    };
    warm_up(vm, tech, &Workload::Services(small))?;
    full_loads(vm, setting, &workload, |r, times, mem| {
        record_times(rec, &SVC_FULL_LOAD, setting, (r, "", None), times);
        rec.push(&SVC_MEMORY, setting, r, "", mem.total_kib() as f64);
    })?;
    let mut model = workload;
    // Primitive first, then kube-proxy mode where the technology has it;
    // every op keeps the model equal to the guest, so the modes follow on.
    for &mode in UpdateMode::for_services(tech) {
        service_updates(vm, setting, &mut model, mode, rec)?;
    }
    Ok(model)
}

/// Rounds of change / delete / re-add one service at a rotating
/// position, each sent in `mode`: `setting.repeats` of them, but no new
/// round once this mode's rounds took `setting.full_load_budget_ms` of
/// guest time (one always runs). kube-proxy's sync of one service at 3k
/// with nft 0.9.8 reads the ruleset three times and takes tens of seconds under TCG:
/// like a slow full load, it is measured once rather than five times.
fn service_updates(
    vm: &mut Vm,
    setting: &Setting,
    model: &mut Workload,
    mode: UpdateMode,
    rec: &mut Recorder,
) -> Result<()> {
    let budget_ns = setting.full_load_budget_ms.saturating_mul(1_000_000);
    repeat_within_budget(setting.repeats, budget_ns, |r| {
        service_update_round(vm, setting, model, mode, r, rec)
    })
}

/// One round of [`service_updates`]; returns the guest ns it took.
fn service_update_round(
    vm: &mut Vm,
    setting: &Setting,
    model: &mut Workload,
    mode: UpdateMode,
    r: u32,
    rec: &mut Recorder,
) -> Result<u64> {
    use super::figures::*;
    let tech = setting.tech;
    let Workload::Services(current) = &*model else {
        unreachable!()
    };
    if current.services.is_empty() {
        // Nothing to delete or change at N = 0: add one and take it away.
        let extra = setting.extra_service(0);
        let add = UpdateOp::AddService(extra.clone());
        let times = update_times(vm, tech, model, &add, mode)?;
        record_times(rec, &SVC_ADD, setting, (r, "last", Some(mode)), times);
        let removed = update_in(
            vm,
            tech,
            model,
            &UpdateOp::DeleteService { name: extra.name },
            mode,
        )?;
        return Ok(times.elapsed_ns + removed);
    }
    let pos = Position::of_repeat(r);
    let target = current.services[pos.index(current.services.len())].clone();
    // The change is not undone: shifted backends are still backends of
    // the pool, and the data plane only needs the VIPs to answer.
    let change = UpdateOp::ChangeBackends {
        name: target.name.clone(),
        backends: shifted_backends(&target.backends),
    };
    let changed = update_times(vm, tech, model, &change, mode)?;
    record_times(
        rec,
        &SVC_CHANGE,
        setting,
        (r, pos.name(), Some(mode)),
        changed,
    );
    let Workload::Services(current) = &*model else {
        unreachable!()
    };
    let target = current.services[pos.index(current.services.len())].clone();
    let delete = UpdateOp::DeleteService {
        name: target.name.clone(),
    };
    let deleted = update_times(vm, tech, model, &delete, mode)?;
    record_times(
        rec,
        &SVC_DELETE,
        setting,
        (r, pos.name(), Some(mode)),
        deleted,
    );
    // Re-adding appends: a new service always goes after the others,
    // as kube-proxy's layouts do.
    let added = update_times(vm, tech, model, &UpdateOp::AddService(target), mode)?;
    record_times(rec, &SVC_ADD, setting, (r, "last", Some(mode)), added);
    Ok(changed.elapsed_ns + deleted.elapsed_ns + added.elapsed_ns)
}

/// Firewall counterpart: full loads, then insert + delete one rule at the
/// first, middle and last filler position.
pub fn firewall(
    vm: &mut Vm,
    setting: &Setting,
    workload: &Workload,
    small: &Workload,
    extra_rule: Rule,
    rec: &mut Recorder,
) -> Result<Workload> {
    use super::figures::*;
    let tech = setting.tech;
    warm_up(vm, tech, small)?;
    full_loads(vm, setting, workload, |r, times, mem| {
        record_times(rec, &FW_FULL_LOAD, setting, (r, "", None), times);
        rec.push(&FW_MEMORY, setting, r, "", mem.total_kib() as f64);
    })?;
    let mut model = workload.clone();
    for r in 0..setting.repeats {
        firewall_update_round(vm, setting, &mut model, extra_rule, r, rec)?;
    }
    Ok(model)
}

/// Insert one rule at repeat `r`'s position among the fillers, then
/// delete it again (also one update round of an A/B unit, as
/// [`services_unit_round`] is for services).
pub fn firewall_update_round(
    vm: &mut Vm,
    setting: &Setting,
    model: &mut Workload,
    extra_rule: Rule,
    r: u32,
    rec: &mut Recorder,
) -> Result<()> {
    use super::figures::*;
    let tech = setting.tech;
    let pos = Position::of_repeat(r);
    // Positions among the N filler rules (the matching rules follow).
    let index = if setting.n == 0 {
        0
    } else {
        pos.index(setting.n as usize + 1)
    };
    let primitive = UpdateMode::Primitive;
    let insert = UpdateOp::InsertRule {
        index,
        rule: extra_rule,
    };
    let times = update_times(vm, tech, model, &insert, primitive)?;
    record_times(
        rec,
        &FW_ADD,
        setting,
        (r, pos.name(), Some(primitive)),
        times,
    );
    let delete = UpdateOp::DeleteRule { index };
    let times = update_times(vm, tech, model, &delete, primitive)?;
    record_times(
        rec,
        &FW_DELETE,
        setting,
        (r, pos.name(), Some(primitive)),
        times,
    );
    Ok(())
}

/// The full load of one A/B unit (`crate::ab`): from empty, timed and
/// recorded as repeat `r`; returns the model the guest now holds, for the
/// unit's update rounds ([`services_unit_round`], [`firewall_update_round`]).
/// A unit is what one repeat of [`services`] / [`firewall`] measures, split
/// so the gate can interleave base's and head's steps (A B B A …).
pub fn unit_load(
    vm: &mut Vm,
    setting: &Setting,
    workload: &Workload,
    r: u32,
    rec: &mut Recorder,
) -> Result<Workload> {
    use super::figures::*;
    let (full, memory) = match workload {
        Workload::Services(_) => (&SVC_FULL_LOAD, &SVC_MEMORY),
        Workload::Firewall(_) => (&FW_FULL_LOAD, &FW_MEMORY),
    };
    let (times, mem) = full_load_times(vm, setting.tech, workload)?;
    record_times(rec, full, setting, (r, "", None), times);
    rec.push(memory, setting, r, "", mem.total_kib() as f64);
    Ok(workload.clone())
}

/// One update round of an A/B unit at repeat `r`'s position, in every
/// update mode the technology has; its samples carry repeat `r` (the gate
/// takes the median of a unit's rounds).
pub fn services_unit_round(
    vm: &mut Vm,
    setting: &Setting,
    model: &mut Workload,
    r: u32,
    rec: &mut Recorder,
) -> Result<()> {
    for &mode in UpdateMode::for_services(setting.tech) {
        service_update_round(vm, setting, model, mode, r, rec)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::topology::backend_addr;

    #[test]
    fn positions() {
        assert_eq!(Position::First.index(10), 0);
        assert_eq!(Position::Middle.index(10), 5);
        assert_eq!(Position::Last.index(10), 9);
        assert_eq!(Position::Last.index(1), 0);
    }

    #[test]
    fn full_loads_repeat_until_the_budget_is_spent() {
        let runs = |each_s: u64, repeats: u32| {
            let mut n = 0;
            repeat_within_budget(repeats, 120_000_000_000, |_| {
                n += 1;
                Ok(each_s * 1_000_000_000)
            })
            .unwrap();
            n
        };
        assert_eq!(runs(2, 5), 5, "cheap loads keep every repeat");
        assert_eq!(runs(42, 5), 3, "42 s loads stop after passing 120 s");
        assert_eq!(runs(300, 5), 1, "one slow load is still measured");
        assert_eq!(runs(1, 0), 1, "at least one load");
        let mut calls = 0;
        let err = repeat_within_budget(5, u64::MAX, |r| {
            calls += 1;
            if r == 1 {
                anyhow::bail!("load failed")
            }
            Ok(1)
        });
        assert!(err.is_err() && calls == 2, "a failed load stops the job");
    }

    #[test]
    fn shifted_backends_stay_in_the_pool() {
        let b = vec![
            Endpoint::new(backend_addr(3), 8080),
            Endpoint::new(backend_addr(0), 8080),
        ];
        assert_eq!(
            shifted_backends(&b),
            vec![
                Endpoint::new(backend_addr(0), 8080),
                Endpoint::new(backend_addr(1), 8080)
            ]
        );
    }
}
