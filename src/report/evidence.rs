//! The report's data-plane evidence: in-kernel hook time by position with
//! the per-rule slope and its interval, the new-flow pktgen rate, and the
//! breakdown of where each packet's kernel time goes — every sentence
//! computed from this results file.

use super::{num, sizes, techs, values};
use crate::measure::stats::{bootstrap_median_ci, cv, median};
use crate::results::{HookRow, Results};
use std::collections::BTreeMap;

fn med(results: &Results, figure: &str, tech: &str, n: u64) -> Option<f64> {
    let v = values(results, figure, tech, n);
    (!v.is_empty()).then(|| median(&v))
}

fn cell(v: Option<f64>) -> String {
    v.map_or("–".into(), num)
}

fn cv_cell(results: &Results, figure: &str, tech: &str, n: u64) -> String {
    let v = values(results, figure, tech, n);
    if v.len() < 2 {
        return "–".into();
    }
    format!("{:.1} %", 100.0 * cv(&v))
}

/// "9.02 ns/rule (95 % interval 8.85 … 19.1, 5 repeats)".
pub fn slope_line(results: &Results, tech: &str, n: u64) -> Option<String> {
    let v = values(results, "services.hook-slope", tech, n);
    if v.is_empty() {
        return None;
    }
    let (lo, hi) = bootstrap_median_ci(&v, 0.95, 2000);
    let verdict = if lo > 0.0 {
        "above 0: each rule before the match costs time"
    } else if hi < 0.0 {
        "below 0"
    } else {
        "includes 0: no per-rule cost detectable"
    };
    Some(format!(
        "{} ns/rule (95 % interval {} … {}, {} repeats; interval {verdict})",
        num(median(&v)),
        num(lo),
        num(hi),
        v.len()
    ))
}

fn hook_table(results: &Results) -> String {
    let mut out = String::from(
        "| technology | N | first (ns) | middle (ns) | last (ns) | miss (ns) | CV last | slope |\n\
         |---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    let mut all_techs = techs(results, "services.hook-ns.miss");
    all_techs.extend(techs(results, "services.hook-ns.last"));
    all_techs.sort();
    all_techs.dedup();
    let mut all_sizes = sizes(results, "services.hook-ns.miss");
    all_sizes.extend(sizes(results, "services.hook-ns.last"));
    all_sizes.sort_unstable();
    all_sizes.dedup();
    for tech in all_techs {
        for &n in &all_sizes {
            let get = |pos: &str| med(results, &format!("services.hook-ns.{pos}"), &tech, n);
            if get("miss").is_none() && get("last").is_none() {
                continue;
            }
            out += &format!(
                "| {tech} | {n} | {} | {} | {} | {} | {} | {} |\n",
                cell(get("first")),
                cell(get("middle")),
                cell(get("last")),
                cell(get("miss")),
                cv_cell(results, "services.hook-ns.last", &tech, n),
                slope_line(results, &tech, n).unwrap_or_else(|| "–".into())
            );
        }
    }
    out
}

fn pktgen_table(results: &Results) -> String {
    let mut out = String::from(
        "| technology | N | first (pkt/s) | last (pkt/s) | last / first | CV last | dropped, last |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    for tech in techs(results, "services.pktgen-pps.last") {
        for n in sizes(results, "services.pktgen-pps.last") {
            let first = med(results, "services.pktgen-pps.first", &tech, n);
            let last = med(results, "services.pktgen-pps.last", &tech, n);
            if last.is_none() {
                continue;
            }
            let ratio = first.zip(last).map(|(f, l)| l / f);
            out += &format!(
                "| {tech} | {n} | {} | {} | {} | {} | {} % |\n",
                cell(first),
                cell(last),
                cell(ratio),
                cv_cell(results, "services.pktgen-pps.last", &tech, n),
                cell(med(results, "services.pktgen-drop.last", &tech, n)),
            );
        }
    }
    out
}

fn firewall_table(results: &Results) -> String {
    let mut out = String::from(
        "| technology | N | hook, match (ns) | CV | pkt/s | CV | dropped | conntrack entries after a run | hook, overlapping fillers (ns) | CV | pkt/s, overlapping |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for tech in techs(results, "firewall.hook-ns.match") {
        for n in sizes(results, "firewall.hook-ns.match") {
            let hook = med(results, "firewall.hook-ns.match", &tech, n);
            if hook.is_none() {
                continue;
            }
            out += &format!(
                "| {tech} | {n} | {} | {} | {} | {} | {} % | {} | {} | {} | {} |\n",
                cell(hook),
                cv_cell(results, "firewall.hook-ns.match", &tech, n),
                cell(med(results, "firewall.pktgen-pps", &tech, n)),
                cv_cell(results, "firewall.pktgen-pps", &tech, n),
                cell(med(results, "firewall.pktgen-drop", &tech, n)),
                cell(med(results, "firewall.pktgen-conntrack-entries", &tech, n)),
                cell(med(results, "firewall.hook-ns.match-overlap", &tech, n)),
                cv_cell(results, "firewall.hook-ns.match-overlap", &tech, n),
                cell(med(results, "firewall.pktgen-pps.overlap", &tech, n)),
            );
        }
    }
    out
}

/// (family, tech, N, position, function, hook).
type BreakdownKey<'a> = (&'a str, &'a str, u64, &'a str, &'a str, &'a str);

/// Per (family, tech, position, function, hook) at the largest N: median
/// over repeats of the per-call medians, and calls per sent packet.
fn breakdown(results: &Results) -> String {
    let mut largest: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for h in &results.hooks {
        let e = largest.entry((&h.family, &h.tech)).or_default();
        *e = (*e).max(h.n);
    }
    let mut groups: BTreeMap<BreakdownKey, Vec<&HookRow>> = BTreeMap::new();
    for h in &results.hooks {
        if largest.get(&(h.family.as_str(), h.tech.as_str())) != Some(&h.n) {
            continue;
        }
        if h.position != "last" && h.position != "match" {
            continue;
        }
        groups
            .entry((&h.family, &h.tech, h.n, &h.position, &h.function, &h.hook))
            .or_default()
            .push(h);
    }
    let mut out = String::from(
        "| family | technology | N | flood to | function | hook | median ns per call | calls per packet |\n\
         |---|---|---:|---|---|---|---:|---:|\n",
    );
    for ((family, tech, n, pos, function, hook), rows) in groups {
        let ns: Vec<f64> = rows.iter().map(|r| r.median_ns).collect();
        let calls: Vec<f64> = rows.iter().map(|r| r.calls_per_packet).collect();
        // Calls that happen for a handful of packets (ICMP errors, ARP)
        // are not part of the per-packet path.
        if median(&calls) < 0.05 {
            continue;
        }
        out += &format!(
            "| {family} | {tech} | {n} | {pos} | `{function}` | {} | {} | {} |\n",
            if hook.is_empty() { "tc ingress" } else { hook },
            num(median(&ns)),
            num(median(&calls))
        );
    }
    out
}

/// One line per technology at the largest N it was measured at: its
/// per-rule slope, and the rate change from the first to the last service.
fn findings(results: &Results) -> String {
    let mut out = String::new();
    for tech in techs(results, "services.hook-slope") {
        let Some(&n) = sizes(results, "services.hook-slope")
            .iter()
            .rev()
            .find(|&&n| !values(results, "services.hook-slope", &tech, n).is_empty())
        else {
            continue;
        };
        let mut line = format!(
            "- **{tech}**, N = {n}: per-rule slope {}",
            slope_line(results, &tech, n).unwrap_or_default()
        );
        let first = med(results, "services.pktgen-pps.first", &tech, n);
        let last = med(results, "services.pktgen-pps.last", &tech, n);
        if let (Some(f), Some(l)) = (first, last) {
            line += &format!(
                "; pktgen new-flow rate to the last service {} of the first ({} vs {} pkt/s)",
                num(l / f),
                num(l),
                num(f)
            );
        }
        out += &line;
        out += ".\n";
    }
    for tech in techs(results, "firewall.pktgen-conntrack-entries") {
        let Some(&n) = sizes(results, "firewall.pktgen-conntrack-entries").last() else {
            continue;
        };
        if let Some(entries) = med(results, "firewall.pktgen-conntrack-entries", &tech, n) {
            let meaning = if entries == 0.0 {
                "kernel conntrack was not in the path"
            } else {
                "kernel conntrack tracked the flood"
            };
            out += &format!(
                "- firewall **{tech}**, N = {n}: {} conntrack entries after a flood: {meaning}.\n",
                num(entries)
            );
        }
    }
    out
}

pub fn markdown(results: &Results) -> String {
    if !results.samples.iter().any(|s| s.figure.contains(".hook-")) {
        return String::new();
    }
    let mut out = String::from(
        "## Where the per-packet time goes (measured inside the guest kernel)\n\n\
         Under TCG one TCP handshake costs milliseconds and varies by tens of per cent, which hides a \
         rule walk of a tenth of that. So each technology's own hook function is timed in the guest \
         kernel: a kprobe at its entry and a kretprobe at its return (`rulebench-ebpf hooktime`), every \
         call one sample, while pktgen sends 400 UDP packets from random source addresses and ports — \
         every packet a new flow, so every packet is decided by the rules, none by a conntrack shortcut. \
         The flood goes to the first, middle or last service of N (or to no service: a miss), interleaved \
         within each repeat in a rotated order. The N = 0 job of the ladder measures N = 1 here: the \
         baseline of a per-rule cost is the same DNAT + masquerade path with one rule, not the miss path. Figures are the median over repeats of each repeat's \
         median per call; the slope is (last − first) / (N − 1), with a bootstrap interval over the \
         repeats. The hooks: iptables-legacy `iptable_nat_do_chain` PREROUTING (`ipt_do_table` from kernel \
         5.16 on, where it is the hook itself), iptables-nft and \
         nftables `nft_nat_do_chain` PREROUTING, IPVS `ip_vs_remote_request4` INPUT (`ip_vs_in_hook` \
         from 5.16 on; it includes the \
         NAT transmit to the backend), eBPF `cls_bpf_classify` at tc ingress. Each includes the same \
         constant probe overhead, which cancels in slopes (differences), not in ratios or in absolute \
         comparisons between technologies: a ratio of two hook times is a ratio of overhead-inflated \
         times, closer to 1 than the hooks' own work.\n\n",
    );
    out += &findings(results);
    out.push('\n');
    out += &hook_table(results);
    out += "\n![hook time, last service](services.hook-ns.last.svg) ![per-rule slope](services.hook-slope.svg)\n\n";
    out += "### New-flow packet rate (pktgen, as in the bpf-iptables paper)\n\n\
            pktgen sends for a fixed time at full speed, every packet a new flow, with no probes attached; \
            the rate is what reached the backends per second of sending. The sender and the forwarding \
            share the guest's vCPU, so a slower rule walk lowers the rate rather than filling a queue; \
            drops are stated beside it.\n\n";
    out += &pktgen_table(results);
    out += "\n![pktgen rate, last service](services.pktgen-pps.last.svg)\n\n";
    out += "### Firewall: the matching rule after N fillers\n\n\
            The same measurements against the firewall workload: N filler rules, then the rule the flood \
            matches (conntrack on; every packet is a new flow, so each walks the rules). Two filler shapes: \
            the best case (fillers from other sources: a linear walk rejects each on its first field, LBVS's \
            source vector already excludes them) and overlapping fillers (the client's own prefix, the \
            cluster destination, UDP, differing only in destination port, alternating drop / accept: each \
            filler is compared up to its port, and LBVS ANDs every word of the vectors). The last column \
            says whether kernel conntrack saw the flood: netfilter technologies need it for the \
            established shortcut; for the eBPF firewall it shows whether conntrack ran beside the tc \
            program anyway.\n\n";
    out += &firewall_table(results);
    out += "\n![firewall hook time](firewall.hook-ns.match.svg) ![firewall pktgen rate](firewall.pktgen-pps.svg)\n\n";
    out += "### Breakdown at the largest N (every traced function on the packet's path)\n\n";
    out += &breakdown(results);
    out += "\nFairness notes: the baseline is N = 1 (the same DNAT + masquerade path as at N = 1k), not N = 0 \
            (where every packet is a miss). The eBPF services dataplane rewrites the destination only: it does \
            not masquerade, so its backends see the client address, while the netfilter and IPVS layouts mark \
            and masquerade (`iptable_nat_do_chain` / `nft_nat_do_chain` at POSTROUTING in the breakdown).\n\n";
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{RunMeta, Sample, SCHEMA};

    fn sample(figure: &str, tech: &str, n: u64, repeat: u32, value: f64) -> Sample {
        Sample {
            figure: figure.into(),
            tech: tech.into(),
            n,
            repeat,
            position: String::new(),
            value,
            unit: "ns".into(),
            update_mode: String::new(),
        }
    }

    #[test]
    fn slopes_state_whether_their_interval_excludes_zero() {
        let mut samples = Vec::new();
        for r in 0..5u32 {
            let jitter = f64::from(r) * 0.1;
            samples.push(sample(
                "services.hook-slope",
                "linear",
                1000,
                r,
                9.0 + jitter,
            ));
            samples.push(sample(
                "services.hook-slope",
                "hashed",
                1000,
                r,
                jitter - 0.2,
            ));
            samples.push(sample("services.hook-ns.miss", "linear", 1000, r, 10_000.0));
        }
        let results = Results {
            schema: SCHEMA,
            meta: RunMeta::default(),
            samples,
            notes: vec![],
            hooks: vec![],
            profiles: vec![],
        };
        let linear = slope_line(&results, "linear", 1000).unwrap();
        assert!(linear.starts_with("9.20 ns/rule"), "{linear}");
        assert!(linear.contains("above 0"), "{linear}");
        let hashed = slope_line(&results, "hashed", 1000).unwrap();
        assert!(hashed.contains("includes 0"), "{hashed}");
        assert_eq!(slope_line(&results, "linear", 1), None);
        let md = markdown(&results);
        assert!(md.contains("| linear | 1000 |"), "{md}");
    }
}
