//! "Where the control-plane time goes": each control-plane figure's
//! user / sys split (the agent's `wait4` of every command) and, from
//! `bench --profile`, the kernel functions a full load and an add spent
//! their samples in. Pure functions of the results, like the rest of the
//! report; the explainer quotes [`cause_line`] under its claims.

use super::num;
use crate::measure::figures::SPLITS;
use crate::measure::stats::median;
use crate::results::{tech_label, ProfileRow, ProfiledFunction, Results};
use std::collections::BTreeSet;

/// Kernel functions named per profile row in the table.
const TOP_IN_TABLE: usize = 5;
/// Kernel functions named in an explainer line.
const TOP_IN_LINE: usize = 3;

/// Median of one figure's samples for a series label at N.
fn median_of(results: &Results, figure: &str, label: &str, n: u64) -> Option<f64> {
    let v = super::values(results, figure, label, n);
    (!v.is_empty()).then(|| median(&v))
}

fn labels_and_sizes(results: &Results, figure: &str) -> Vec<(String, u64)> {
    let set: BTreeSet<(String, u64)> = results
        .samples
        .iter()
        .filter(|s| s.figure == figure)
        .map(|s| (tech_label(&s.tech, &s.update_mode), s.n))
        .collect();
    set.into_iter().collect()
}

/// (elapsed, user, sys) medians in ms of a split figure, where all three
/// were measured.
fn split_medians(results: &Results, total: &str, label: &str, n: u64) -> Option<(f64, f64, f64)> {
    let split = SPLITS.iter().find(|s| s.total.id == total)?;
    Some((
        median_of(results, total, label, n)?,
        median_of(results, split.user.id, label, n)?,
        median_of(results, split.sys.id, label, n)?,
    ))
}

fn percent(part: f64, whole: f64) -> String {
    if whole > 0.0 {
        format!("{:.0} %", 100.0 * part / whole)
    } else {
        "–".into()
    }
}

fn split_table(results: &Results) -> String {
    let mut rows = String::new();
    for split in SPLITS {
        for (label, n) in labels_and_sizes(results, split.total.id) {
            let Some((elapsed, user, sys)) = split_medians(results, split.total.id, &label, n)
            else {
                continue;
            };
            let waiting = (elapsed - user - sys).max(0.0);
            rows += &format!(
                "| {} | {label} | {n} | {} | {} | {} | {} | {} |\n",
                split.total.id,
                num(elapsed),
                num(user),
                num(sys),
                percent(sys, elapsed),
                num(waiting),
            );
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    format!(
        "### User and kernel time of the commands\n\n\
         Medians over the repeats, in ms, from the agent's `wait4` of every command an operation runs: \
         *user* is the tool itself (parsing, its cache of the ruleset), *sys* the kernel inside the \
         tool's system calls (nfnetlink commits a batch inside the sender's `sendmsg`; x_tables swaps a \
         whole table inside `setsockopt`); *waiting* = elapsed − user − sys: work the kernel deferred to \
         other tasks (kworkers, RCU callbacks), I/O, or the vCPU given to another task.\n\n\
         | figure | tech | N | elapsed | user | sys | sys / elapsed | waiting |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n{rows}\n"
    )
}

fn function_name(f: &ProfiledFunction) -> String {
    if f.module.is_empty() {
        format!("`{}`", f.name)
    } else {
        format!("`{}` [{}]", f.name, f.module)
    }
}

/// "`a` [mod] 12 %, `b` 6 %" — the first `k` functions with their share
/// of `of` samples.
fn top_functions(list: &[ProfiledFunction], of: u64, k: usize) -> String {
    if list.is_empty() || of == 0 {
        return "–".into();
    }
    list.iter()
        .take(k)
        .map(|f| {
            format!(
                "{} {}",
                function_name(f),
                percent(f.samples as f64, of as f64)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn operation(row: &ProfileRow) -> String {
    if row.update_mode.is_empty() {
        row.figure.clone()
    } else {
        format!("{} ({})", row.figure, row.update_mode)
    }
}

fn profile_table(results: &Results) -> String {
    if results.profiles.is_empty() {
        return String::new();
    }
    let first = &results.profiles[0];
    let mut out = format!(
        "### Kernel profiles\n\n\
         Each operation run once more after the timed figures, under a cpu-clock sampler at {} Hz on every \
         guest CPU ({} here; `rulebench-ebpf profile`). Every tick is charged to the operation's commands \
         (their cgroup: user mode or a kernel function), the idle task, or another task. Shares are of \
         samples; *kernel* is the commands' kernel samples over their own. The functions are those the \
         commands were in, as a share of the commands' kernel samples; *other tasks* names where the \
         kernel's deferred work ran (`rulebench-ebpf` there is the profiler itself, writing the \
         commands' input into their pipes). Sampling has a cost of its own (a BPF program per tick; under TCG \
         the profiled run takes up to ~1.6× the timed one): read the shares, and the times from the \
         figures.\n\n\
         | operation | tech | N | elapsed | samples | kernel | other tasks | idle | top kernel functions of the commands | other tasks' top |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---|---|\n",
        first.frequency_hz, first.cpus
    );
    for row in &results.profiles {
        let own = row.command_user + row.command_kernel;
        let others = row.other_user + row.other_kernel;
        let tasks = top_functions(&row.other_tasks, others, 2);
        out += &format!(
            "| {} | {} | {} | {} s | {} | {} | {} | {} | {} | {} |\n",
            operation(row),
            row.tech,
            row.n,
            num(row.elapsed_ns as f64 / 1e9),
            row.samples,
            percent(row.command_kernel as f64, own as f64),
            percent(others as f64, row.samples as f64),
            percent(row.idle as f64, row.samples as f64),
            top_functions(&row.command_functions, row.command_kernel, TOP_IN_TABLE),
            tasks.replace('`', ""),
        );
        if row.dropped > 0 {
            out += &format!(
                "|  | ({} samples dropped: the sample map was full) | | | | | | | | |\n",
                row.dropped
            );
        }
    }
    out.push('\n');
    out
}

/// The section, empty when the run has neither splits nor profiles.
pub fn markdown(results: &Results) -> String {
    let body = split_table(results) + &profile_table(results);
    if body.is_empty() {
        return String::new();
    }
    format!("## Where the control-plane time goes\n\n{body}")
}

/// The profile of `figure` for a technology label (`nftables`,
/// `nftables (kube-proxy)`) at its largest profiled N.
fn largest_profile<'a>(results: &'a Results, figure: &str, tech: &str) -> Option<&'a ProfileRow> {
    results
        .profiles
        .iter()
        .filter(|p| p.figure == figure && tech_label(&p.tech, &p.update_mode) == tech)
        .max_by_key(|p| p.n)
}

/// The sentence under an explainer claim: at the largest N of `figure`,
/// how much of the time was the kernel's (wait4) and, when profiled,
/// where in the kernel it went — this run's own evidence of the cause.
pub fn cause_line(results: &Results, figure: &str, tech: &str) -> Option<String> {
    let n_split = labels_and_sizes(results, figure)
        .into_iter()
        .filter(|(label, _)| label == tech)
        .map(|(_, n)| n)
        .filter(|&n| split_medians(results, figure, tech, n).is_some())
        .max();
    let split = n_split.and_then(|n| {
        let (elapsed, user, sys) = split_medians(results, figure, tech, n)?;
        Some(format!(
            "at N={n} the commands spent {} ms of their {} ms in the kernel ({}) and {} ms in user mode (wait4, medians)",
            num(sys),
            num(elapsed),
            percent(sys, elapsed),
            num(user)
        ))
    });
    let profile = largest_profile(results, figure, tech).map(|p| {
        let own = p.command_user + p.command_kernel;
        format!(
            "profiled at N={}: {} of the commands' samples in the kernel, most in {}",
            p.n,
            percent(p.command_kernel as f64, own as f64),
            top_functions(&p.command_functions, p.command_kernel, TOP_IN_LINE)
        )
    });
    match (split, profile) {
        (None, None) => None,
        (Some(s), None) => Some(format!(
            "{figure}: {s}; no kernel profile in this run (`bench --profile`)"
        )),
        (None, Some(p)) => Some(format!("{figure}: {p}")),
        (Some(s), Some(p)) => Some(format!("{figure}: {s}; {p}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{tests::small, Sample};

    fn sample(figure: &str, n: u64, mode: &str, value: f64) -> Sample {
        Sample {
            figure: figure.into(),
            tech: "nftables".into(),
            n,
            repeat: 0,
            position: if mode.is_empty() { "" } else { "last" }.into(),
            value,
            unit: "ms".into(),
            update_mode: mode.into(),
        }
    }

    fn function(name: &str, module: &str, samples: u64) -> ProfiledFunction {
        ProfiledFunction {
            name: name.into(),
            module: module.into(),
            samples,
        }
    }

    fn profiled() -> Results {
        let mut r = small();
        r.samples = vec![
            sample("services.full-load", 3000, "", 20_000.0),
            sample("services.full-load.user", 3000, "", 3_000.0),
            sample("services.full-load.sys", 3000, "", 15_000.0),
            sample("services.add-one", 3000, "kube-proxy", 900.0),
            sample("services.add-one.user", 3000, "kube-proxy", 600.0),
            sample("services.add-one.sys", 3000, "kube-proxy", 250.0),
        ];
        r.profiles = vec![ProfileRow {
            family: "services".into(),
            tech: "nftables".into(),
            n: 3000,
            figure: "services.full-load".into(),
            update_mode: String::new(),
            elapsed_ns: 21_000_000_000,
            frequency_hz: 997,
            cpus: 1,
            samples: 1000,
            idle: 50,
            command_user: 150,
            command_kernel: 750,
            other_user: 0,
            other_kernel: 50,
            dropped: 0,
            command_functions: vec![
                function("__nft_set_trans_bind", "nf_tables", 300),
                function("nf_tables_newset", "nf_tables", 150),
                function("strlen", "", 75),
            ],
            other_functions: vec![],
            other_tasks: vec![function("kworker/0:1", "", 50)],
        }];
        r
    }

    #[test]
    fn the_split_table_has_a_row_per_mode_and_size() {
        let md = markdown(&profiled());
        assert!(
            md.contains(
                "| services.full-load | nftables | 3000 | 20000 | 3000 | 15000 | 75 % | 2000 |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| services.add-one | nftables (kube-proxy) | 3000 | 900 | 600 | 250 | 28 % | 50.0 |"),
            "{md}"
        );
    }

    #[test]
    fn profiles_name_their_top_kernel_functions() {
        let md = markdown(&profiled());
        assert!(md.contains("| services.full-load | nftables | 3000 | 21.0 s | 1000 | 83 % | 5 % | 5 % | `__nft_set_trans_bind` [nf_tables] 40 %, `nf_tables_newset` [nf_tables] 20 %, `strlen` 10 % | kworker/0:1 100 % |"), "{md}");
    }

    #[test]
    fn the_cause_line_quotes_split_and_profile() {
        let line = cause_line(&profiled(), "services.full-load", "nftables").unwrap();
        assert_eq!(
            line,
            "services.full-load: at N=3000 the commands spent 15000 ms of their 20000 ms in the kernel (75 %) \
             and 3000 ms in user mode (wait4, medians); profiled at N=3000: 83 % of the commands' samples in \
             the kernel, most in `__nft_set_trans_bind` [nf_tables] 40 %, `nf_tables_newset` [nf_tables] 20 %, \
             `strlen` 10 %"
        );
        let unprofiled =
            cause_line(&profiled(), "services.add-one", "nftables (kube-proxy)").unwrap();
        assert!(
            unprofiled.ends_with("no kernel profile in this run (`bench --profile`)"),
            "{unprofiled}"
        );
        assert_eq!(cause_line(&small(), "services.full-load", "ipvs"), None);
    }

    #[test]
    fn no_split_and_no_profile_is_no_section() {
        assert_eq!(markdown(&small()), "");
    }
}
