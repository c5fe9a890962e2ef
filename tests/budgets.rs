//! Performance budgets (budgets.toml): ratios of figures measured in one
//! guest in one run, so they hold under TCG and KVM. N stays at 1k unless
//! RULEBENCH_BUDGET_N raises it.

mod common;

use rulebench::measure::stats::bootstrap_median_ci;
use rulebench::measure::stats::median;
use rulebench::measure::{
    self, control, data, data::DataConfig, evidence, guest, Recorder, Setting,
};
use rulebench::tech::Tech;
use rulebench::workload::{UpdateOp, Workload};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Deserialize)]
struct Budgets {
    budget: Vec<Budget>,
}

#[derive(Debug, Deserialize)]
struct Budget {
    name: String,
    tech: String,
    figure: String,
    /// N of the denominator; absent for a budget that is only an interval.
    small: Option<u64>,
    large: u64,
    min: Option<f64>,
    max: Option<f64>,
    /// The budget only means something from this N on (below it the effect
    /// is smaller than TCG's noise); skipped, with the reason printed, when
    /// RULEBENCH_BUDGET_N does not reach it.
    requires_n: Option<u64>,
    /// Denominator figure (at `small`) when it is not `figure` itself, e.g.
    /// the last service's hook time over the first one's at the same N.
    versus: Option<String>,
    /// The 95 % bootstrap interval of `figure`'s median at `large` must lie
    /// above this value (a sign test: "the per-rule slope is > 0").
    interval_above: Option<f64>,
}

impl Budget {
    fn active(&self) -> bool {
        self.requires_n.is_none_or(|n| scaled(self.large) >= n)
    }
}

fn budgets() -> Vec<Budget> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/budgets.toml");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let b: Budgets = toml::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"));
    b.budget
}

/// `large` of a budget, raised by RULEBENCH_BUDGET_N.
fn scaled(large: u64) -> u64 {
    std::env::var("RULEBENCH_BUDGET_N")
        .ok()
        .map(|v| {
            v.parse::<u64>()
                .unwrap_or_else(|_| panic!("RULEBENCH_BUDGET_N={v:?} is not a number"))
        })
        .map_or(large, |n| n.max(large))
}

const REPEATS: u32 = 5;

/// Hook figures: rounds × repeats per round. Every round reloads each
/// (tech, N), so rounds cost load time: 3 rounds of 2 keep both hook
/// tests inside nextest's 10-minute limit on a loaded 2-core host, and
/// the median of 3 paired ratios survives one spoiled round.
const HOOK_ROUNDS: u32 = 3;
const HOOK_REPEATS_PER_ROUND: u32 = 2;

/// Which measurement produces a figure: the hook-time phases for
/// `*.hook-*`, the control / connection-load phases otherwise.
fn is_hook_figure(figure: &str) -> bool {
    figure.starts_with("services.hook-") || figure.starts_with("firewall.hook-")
}

/// Only the figures budgets use, with the bench's own functions: one full
/// load (untimed), add-one (timed) + delete-again REPEATS times, then
/// REPEATS connection-load runs; or the hook-time phases of the evidence
/// module (no pktgen rates: those are bench figures).
fn measure_budget_figures(
    vm: &mut rulebench::vm::Vm,
    setting: Setting,
    figures: &BTreeSet<String>,
    rec: &mut Recorder,
) -> anyhow::Result<()> {
    use measure::figures::{SVC_ADD, SVC_P50};
    if figures.iter().any(|f| f.starts_with("services.hook-")) {
        evidence::services_hooks(vm, &setting, rec)?;
    }
    if figures.iter().any(|f| f.starts_with("firewall.hook-")) {
        evidence::firewall(vm, &setting, rec, false)?;
    }
    let control_figures = figures.iter().any(|f| f == SVC_ADD.id);
    let load_figures = figures.iter().any(|f| f == SVC_P50.id);
    if !control_figures && !load_figures {
        return Ok(());
    }
    let services = measure::services_workload(setting.n as usize);
    let mut model = Workload::Services(services.clone());
    control::full_load(vm, setting.tech, &model)?;
    for r in (0..setting.repeats).filter(|_| control_figures) {
        let extra = setting.extra_service(0);
        let ns = control::update(
            vm,
            setting.tech,
            &mut model,
            &UpdateOp::AddService(extra.clone()),
        )?;
        rec.push(&SVC_ADD, &setting, r, "last", ns as f64 / 1e6);
        control::update(
            vm,
            setting.tech,
            &mut model,
            &UpdateOp::DeleteService { name: extra.name },
        )?;
    }
    let config = DataConfig {
        crr_duration_ms: 1500,
        ..DataConfig::default()
    };
    for r in (0..setting.repeats).filter(|_| load_figures) {
        let report = data::run_load(
            vm,
            &data::services_plan(&services, &config, u64::from(r) + 1),
        )?;
        rec.push(
            &SVC_P50,
            &setting,
            r,
            "",
            report.connect_ns.p50 as f64 / 1e3,
        );
    }
    Ok(())
}

/// Control-plane and connection-load budgets.
#[test]
fn control_budgets_hold() {
    check(|b| !is_hook_figure(&b.figure));
}

/// In-kernel hook-time budgets of the services family: their own guest,
/// so the budget tests run in parallel and each stays well inside the
/// test timeout (~3 min under TCG).
#[test]
fn services_hook_budgets_hold() {
    check(|b| b.figure.starts_with("services.hook-"));
}

/// Hook-time budgets of the firewall family (both filler shapes).
#[test]
fn firewall_hook_budgets_hold() {
    check(|b| b.figure.starts_with("firewall.hook-"));
}

fn check(select: fn(&Budget) -> bool) {
    let (budgets, skipped): (Vec<Budget>, Vec<Budget>) = budgets()
        .into_iter()
        .filter(select)
        .partition(Budget::active);
    for b in &skipped {
        eprintln!(
            "SKIPPED budget {:?}: needs RULEBENCH_BUDGET_N >= {} (at N={} the effect is below TCG noise)",
            b.name,
            b.requires_n.unwrap_or_default(),
            scaled(b.large)
        );
    }
    assert!(
        !budgets.is_empty(),
        "every budget was skipped: nothing checked"
    );
    // Which (tech, N) to measure, and which figures there: the union over
    // all budgets.
    let mut plan: BTreeMap<(String, u64), BTreeSet<String>> = BTreeMap::new();
    for b in &budgets {
        let versus = b.versus.clone().unwrap_or_else(|| b.figure.clone());
        let mut wanted = vec![(scaled(b.large), b.figure.clone())];
        wanted.extend(b.small.map(|n| (n, versus)));
        for (n, figure) in wanted {
            plan.entry((b.tech.clone(), n)).or_default().insert(figure);
        }
    }
    let mut vm = common::boot();
    guest::prepare(&mut vm).expect("guest topology");
    let mut rec = Recorder::default();
    // Hook budgets compare figures taken at different moments, and a
    // loaded host (a 2-core CI runner, or other guests) slows a TCG guest
    // by up to ~1.9x for tens of seconds: measured one (tech, N) after the
    // other, a flat layout failed `max = 1.3` in 4 of 6 runs of the suite
    // under load (scripts/flake-count). So hook figures are taken in
    // rounds — every N of a technology once per round —
    // and compared pairwise within a round (`paired_ratio`): a slow spell
    // spoils one pair, not the whole comparison.
    let rounds = budgets.iter().all(|b| is_hook_figure(&b.figure));
    let (passes, repeats) = if rounds {
        (HOOK_ROUNDS, HOOK_REPEATS_PER_ROUND)
    } else {
        (1, REPEATS)
    };
    for pass in 0..passes {
        for ((tech, n), figures) in &plan {
            let tech: Tech = tech.parse().expect("budget names a known technology");
            let started = std::time::Instant::now();
            let before = rec.samples.len();
            measure_budget_figures(
                &mut vm,
                Setting {
                    tech,
                    n: *n,
                    repeats,
                    full_load_budget_ms: measure::DEFAULT_FULL_LOAD_BUDGET_MS,
                },
                figures,
                &mut rec,
            )
            .unwrap_or_else(|e| panic!("measuring {tech} at N={n}: {e:#}"));
            if rounds {
                for s in &mut rec.samples[before..] {
                    s.repeat = pass;
                }
            }
            eprintln!(
                "measured {tech} N={n} ({}) in {:.0} s{}",
                figures.iter().cloned().collect::<Vec<_>>().join(", "),
                started.elapsed().as_secs_f64(),
                if rounds {
                    format!(", round {}/{passes}", pass + 1)
                } else {
                    String::new()
                }
            );
        }
    }
    let values = |tech: &str, figure: &str, n: u64| -> Vec<f64> {
        let v: Vec<f64> = rec
            .samples
            .iter()
            .filter(|s| s.tech == tech && s.figure == figure && s.n == n)
            .map(|s| s.value)
            .collect();
        assert!(!v.is_empty(), "no samples of {figure} for {tech} at N={n}");
        v
    };
    let value = |tech: &str, figure: &str, n: u64| median(&values(tech, figure, n));
    let mut failures = Vec::new();
    for b in &budgets {
        let large = scaled(b.large);
        let versus = b.versus.as_deref().unwrap_or(&b.figure);
        let l = value(&b.tech, &b.figure, large);
        let mut line = format!("{}: {} at N={large} = {l:.3}", b.name, b.figure);
        let mut failed = false;
        if let Some(small) = b.small {
            let s = value(&b.tech, versus, small);
            let ratio = paired_ratio(&rec.samples, &b.tech, (&b.figure, large), (versus, small));
            line += &format!(
                " / {versus} at N={small} = {s:.3} -> median of per-repeat ratios {ratio:.2} (allowed {:?}..{:?})",
                b.min, b.max
            );
            failed |= b.max.is_some_and(|m| ratio > m) || b.min.is_some_and(|m| ratio < m);
        }
        if let Some(floor) = b.interval_above {
            let (lo, hi) = bootstrap_median_ci(&values(&b.tech, &b.figure, large), 0.95, 2000);
            line +=
                &format!("; 95 % interval of the median {lo:.3}..{hi:.3} (must be above {floor})");
            failed |= lo <= floor;
        }
        eprintln!("{line}");
        if failed {
            failures.push(line);
        }
    }
    assert!(
        failures.is_empty(),
        "budgets exceeded:\n{}",
        failures.join("\n")
    );
}

/// Median over repeats of (numerator in repeat r) / (denominator in
/// repeat r): with figures taken in rounds, the two sides of a pair were
/// measured minutes apart at most, so a change in host load between
/// rounds cancels. Each side's repeat is its median if a repeat holds
/// several samples.
fn paired_ratio(
    samples: &[rulebench::results::Sample],
    tech: &str,
    numerator: (&str, u64),
    denominator: (&str, u64),
) -> f64 {
    let per_repeat = |(figure, n): (&str, u64)| -> BTreeMap<u32, f64> {
        let mut by: BTreeMap<u32, Vec<f64>> = BTreeMap::new();
        for s in samples
            .iter()
            .filter(|s| s.tech == tech && s.figure == figure && s.n == n)
        {
            by.entry(s.repeat).or_default().push(s.value);
        }
        by.into_iter().map(|(r, v)| (r, median(&v))).collect()
    };
    let num = per_repeat(numerator);
    let den = per_repeat(denominator);
    let ratios: Vec<f64> = num
        .iter()
        .filter_map(|(r, v)| den.get(r).map(|d| v / d))
        .collect();
    assert!(
        ratios.len() >= 3,
        "{tech}: only {} repeat(s) have both {} at N={} and {} at N={}: too few pairs to compare",
        ratios.len(),
        numerator.0,
        numerator.1,
        denominator.0,
        denominator.1
    );
    median(&ratios)
}
