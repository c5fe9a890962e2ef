//! `rulebench-ebpf hooktime < HookPlan JSON`: time every call of the given
//! kernel functions while each phase's command runs, and print each call's
//! duration per phase (a `HookReport`).
//!
//! A function's `state_arg` names the argument (1-5) that is its
//! `struct nf_hook_state *`, so each call is attributed to its netfilter
//! hook; 0 for a function without one. A function the kernel does not
//! have (its module is not loaded, or another kernel inlined it) is
//! reported as not attached instead of failing the run: the caller decides
//! whether it needed it. Probes are attached once for all phases and live
//! only as long as this process; each phase starts from empty sample space.

use std::collections::BTreeMap;
use std::process::Command;

use anyhow::{bail, Context, Result};
use aya::maps::{Array, MapData, PerCpuArray, PerCpuValues};
use aya::programs::KProbe;
use aya::util::nr_cpus;
use aya::Ebpf;
use rulebench_proto::{
    HookAttachment, HookCalls, HookFunction, HookPhaseReport, HookPlan, HookReport,
};

use crate::pins;

const OBJECT: &str = "hooktime.bpf.o";
/// Must match hooktime.bpf.c.
const SLOTS: usize = 16;
const PER_CPU_SAMPLES: u32 = 16384;
const MAX_CPUS: usize = 8;
const NS_BITS: u64 = 52;

/// Netfilter's `enum nf_inet_hooks` as iptables names them.
pub fn hook_name(hook: u8) -> String {
    match hook {
        0 => "PREROUTING".into(),
        1 => "INPUT".into(),
        2 => "FORWARD".into(),
        3 => "OUTPUT".into(),
        4 => "POSTROUTING".into(),
        0xff => String::new(),
        other => format!("hook{other}"),
    }
}

/// Splits a sample word into (slot, hook, ns).
pub fn decode(sample: u64) -> (usize, u8, u64) {
    (
        (sample >> 60) as usize,
        ((sample >> NS_BITS) & 0xff) as u8,
        sample & ((1 << NS_BITS) - 1),
    )
}

pub fn validate(plan: &HookPlan) -> Result<()> {
    if plan.functions.is_empty() || plan.functions.len() > SLOTS {
        bail!(
            "hooktime takes 1 to {SLOTS} functions, got {}",
            plan.functions.len()
        );
    }
    if let Some(f) = plan.functions.iter().find(|f| f.state_arg > 5) {
        bail!("{}: state_arg must be 0-5, got {}", f.name, f.state_arg);
    }
    if let Some(p) = plan.phases.iter().find(|p| p.argv.is_empty()) {
        bail!("phase {:?} has an empty argv", p.name);
    }
    Ok(())
}

fn kallsyms() -> Result<Vec<String>> {
    let text = std::fs::read_to_string("/proc/kallsyms").context("reading /proc/kallsyms")?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
        .collect())
}

fn attach(ebpf: &mut Ebpf, slot: usize, function: &HookFunction) -> Result<()> {
    for prefix in ["ht_enter", "ht_leave"] {
        let name = format!("{prefix}{slot}");
        let prog: &mut KProbe = ebpf
            .program_mut(&name)
            .with_context(|| format!("{OBJECT} has no program {name}"))?
            .try_into()?;
        prog.load().with_context(|| format!("verifying {name}"))?;
        prog.attach(&function.name, 0)
            .with_context(|| format!("attaching {name} to {}", function.name))?;
    }
    Ok(())
}

fn map<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::maps::Map> {
    ebpf.map_mut(name)
        .with_context(|| format!("{OBJECT} has no map {name}"))
}

fn zero_cursors(cursors: &mut PerCpuArray<&mut MapData, u64>) -> Result<()> {
    let cpus = nr_cpus().map_err(|(what, e)| anyhow::anyhow!("counting CPUs ({what}): {e}"))?;
    cursors.set(0, PerCpuValues::try_from(vec![0u64; cpus])?, 0)?;
    Ok(())
}

/// Every sample of the phase that just ended, grouped by (slot, hook).
fn collect(ebpf: &mut Ebpf, functions: &[HookFunction]) -> Result<(Vec<HookCalls>, u64)> {
    let per_cpu: Vec<u64> = {
        let cursors: PerCpuArray<_, u64> = PerCpuArray::try_from(map(ebpf, "ht_cursor")?)?;
        cursors
            .get(&0, 0)
            .context("reading the sample cursors")?
            .iter()
            .copied()
            .collect()
    };
    let samples: Array<_, u64> = Array::try_from(map(ebpf, "ht_samples")?)?;
    let mut groups: BTreeMap<(usize, u8), Vec<u64>> = BTreeMap::new();
    let mut dropped = 0;
    for (cpu, &count) in per_cpu.iter().enumerate() {
        let kept = if cpu < MAX_CPUS {
            count.min(u64::from(PER_CPU_SAMPLES))
        } else {
            0
        };
        dropped += count - kept;
        for i in 0..kept as u32 {
            let word = samples.get(&(cpu as u32 * PER_CPU_SAMPLES + i), 0)?;
            let (slot, hook, ns) = decode(word);
            groups.entry((slot, hook)).or_default().push(ns);
        }
    }
    let calls = groups
        .into_iter()
        .filter(|((slot, _), _)| *slot < functions.len())
        .map(|((slot, hook), ns)| HookCalls {
            function: functions[slot].name.clone(),
            hook: hook_name(hook),
            ns,
        })
        .collect();
    Ok((calls, dropped))
}

pub fn run(plan: &HookPlan) -> Result<()> {
    validate(plan)?;
    let path = pins::object(OBJECT);
    let mut ebpf = Ebpf::load_file(&path).with_context(|| format!("loading {}", path.display()))?;
    {
        let mut state_args: Array<_, u32> = Array::try_from(map(&mut ebpf, "ht_state_arg")?)?;
        for (slot, f) in plan.functions.iter().enumerate() {
            state_args.set(slot as u32, f.state_arg, 0)?;
        }
    }
    let symbols = kallsyms()?;
    let mut functions = Vec::new();
    for (slot, f) in plan.functions.iter().enumerate() {
        let outcome = if symbols.contains(&f.name) {
            attach(&mut ebpf, slot, f)
        } else {
            Err(anyhow::anyhow!("not in /proc/kallsyms"))
        };
        functions.push(HookAttachment {
            name: f.name.clone(),
            attached: outcome.is_ok(),
            error: outcome.err().map(|e| format!("{e:#}")),
        });
    }
    let mut phases = Vec::new();
    for phase in &plan.phases {
        {
            let mut cursors: PerCpuArray<_, u64> =
                PerCpuArray::try_from(map(&mut ebpf, "ht_cursor")?)?;
            zero_cursors(&mut cursors)?;
        }
        let out = Command::new(&phase.argv[0])
            .args(&phase.argv[1..])
            .output()
            .with_context(|| format!("phase {}: running {}", phase.name, phase.argv[0]))?;
        // Passed on so a failing phase's reason reaches the host.
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        let (calls, dropped) = collect(&mut ebpf, &plan.functions)?;
        phases.push(HookPhaseReport {
            name: phase.name.clone(),
            calls,
            dropped,
            exit_code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        });
    }
    println!(
        "{}",
        serde_json::to_string(&HookReport { functions, phases })?
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_checked() {
        let f = |name: &str, state_arg| HookFunction {
            name: name.into(),
            state_arg,
        };
        let phase = rulebench_proto::HookPhase {
            name: "p".into(),
            argv: vec!["true".into()],
        };
        let ok = HookPlan {
            functions: vec![f("a", 3), f("b", 0)],
            phases: vec![phase.clone()],
        };
        assert!(validate(&ok).is_ok());
        assert!(validate(&HookPlan {
            functions: vec![f("a", 6)],
            ..ok.clone()
        })
        .is_err());
        assert!(validate(&HookPlan {
            functions: vec![],
            ..ok.clone()
        })
        .is_err());
        let empty = rulebench_proto::HookPhase {
            argv: vec![],
            ..phase
        };
        assert!(validate(&HookPlan {
            phases: vec![empty],
            ..ok
        })
        .is_err());
    }

    #[test]
    fn sample_words() {
        let word = (5u64 << 60) | (2u64 << 52) | 123_456;
        assert_eq!(decode(word), (5, 2, 123_456));
        assert_eq!(hook_name(2), "FORWARD");
        assert_eq!(hook_name(0xff), "");
    }
}
