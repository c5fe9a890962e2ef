//! Data-plane evidence that resolves a per-rule cost: in-kernel hook time
//! by position (first / middle / last service, a miss; the firewall's
//! matching rule after N fillers) and the new-flow packet rate (pktgen).
//!
//! Both use their own workloads, UDP towards a port nothing listens on
//! ([`pktgen::FLOOD_PORT`]), so every packet is a new flow and the only
//! thing that differs between positions is where in the ruleset the
//! packet's rule sits. Each repeat runs the positions interleaved, in an
//! order rotated per repeat, so drift over the run does not favour one.

use super::hook;
use super::pktgen::{self, Flood, FLOOD_PORT};
use super::Family;
use super::{control, guest, Recorder, Setting};
use crate::results::HookRow;
use crate::steps::run_steps;
use crate::vm::Vm;
use crate::workload::topology::{backend_addr, CLIENT_NET, CLUSTER_CIDR};
use crate::workload::{Endpoint, Firewall, PortRange, Proto, Rule, Services, Verdict, Workload};
use anyhow::{Context, Result};
use rulebench_proto::{HookPhase, HookPhaseReport};
use std::net::Ipv4Addr;

/// Packets per hook-time phase: enough for a stable median of the calls
/// (the spread of one call is a few per cent), few enough that a phase
/// takes well under a second even when each packet walks 1k rules.
pub const HOOK_PACKETS: u64 = 400;
/// Length of one pktgen rate run.
pub const RATE_MS: u64 = 1500;

/// N UDP services shaped like the measurement services (same VIPs, two
/// backends), answering nothing: the flood's packets are DNATed and
/// forwarded, never replied to.
pub fn flood_services(n: usize) -> Services {
    let mut services = super::services_workload(n);
    for s in &mut services.services {
        s.proto = Proto::Udp;
        for b in &mut s.backends {
            *b = Endpoint::new(b.ip, FLOOD_PORT);
        }
    }
    services
}

/// The measurement firewall (N fillers, then the accept rules) plus the
/// rule the flood matches, after all of them.
pub fn flood_firewall(n: usize) -> Firewall {
    let mut fw = super::firewall_workload(n, false);
    fw.rules.push(Rule {
        src: Some(CLIENT_NET),
        dst: Some(CLUSTER_CIDR),
        proto: Some(Proto::Udp),
        sport: None,
        dport: Some(PortRange::single(FLOOD_PORT)),
        action: Verdict::Accept,
    });
    fw
}

/// Port of the first overlap filler (`10000 + i`): clear of the flood,
/// backend and iperf3 ports.
const OVERLAP_PORT_BASE: u16 = 10_000;

/// The harder firewall: N fillers that share the client's source prefix,
/// the cluster destination and the flood's protocol, differing only in
/// destination port, with alternating actions — so a linear walk cannot
/// reject a filler on its first field, and LBVS's source, destination and
/// protocol vectors have every filler's bit set: only the port vector
/// clears them, and the AND runs over every word. Then the usual accept
/// rules and the flood's rule last.
pub fn flood_firewall_overlap(n: usize) -> Firewall {
    let mut fw = flood_firewall(0);
    let fillers = (0..n).map(|i| Rule {
        src: Some(CLIENT_NET),
        dst: Some(CLUSTER_CIDR),
        proto: Some(Proto::Udp),
        sport: None,
        dport: Some(PortRange::single(OVERLAP_PORT_BASE + i as u16)),
        action: if i % 2 == 0 {
            Verdict::Drop
        } else {
            Verdict::Accept
        },
    });
    fw.rules.splice(0..0, fillers);
    fw
}

/// Largest N [`flood_firewall_overlap`] can give (one port per filler).
pub const MAX_OVERLAP_FILLERS: usize = (u16::MAX - OVERLAP_PORT_BASE) as usize;

/// Where a flood goes: a service position, a miss, or the firewall match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    First,
    Middle,
    Last,
    /// A backend address directly: no service owns it, so a linear layout
    /// compares it against every service rule.
    Miss,
    /// Firewall: the accept rule after the N fillers.
    Match,
    /// Firewall: the same after N overlapping fillers.
    MatchOverlap,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::First => "first",
            Target::Middle => "middle",
            Target::Last => "last",
            Target::Miss => "miss",
            Target::Match => "match",
            Target::MatchOverlap => "match-overlap",
        }
    }

    /// Destination (address, UDP port) of the flood for a services
    /// workload: a service's VIP and port, or for the miss a backend's
    /// flood port reached directly.
    fn services_dst(self, services: &Services) -> (Ipv4Addr, u16) {
        let list = &services.services;
        let at = |i: usize| (list[i].vip, list[i].port);
        match self {
            Target::First => at(0),
            Target::Middle => at(list.len() / 2),
            Target::Last => at(list.len() - 1),
            Target::Miss | Target::Match | Target::MatchOverlap => (backend_addr(0), FLOOD_PORT),
        }
    }
}

/// Targets of a services hook run at this size: positions only where
/// there are services (at N = 0 only the miss exists).
pub fn service_targets(n: usize) -> Vec<Target> {
    if n == 0 {
        vec![Target::Miss]
    } else {
        vec![Target::First, Target::Middle, Target::Last, Target::Miss]
    }
}

/// `targets` rotated by `r`: each repeat starts at another position.
pub fn rotated(targets: &[Target], r: u32) -> Vec<Target> {
    let mut t = targets.to_vec();
    let len = t.len().max(1);
    t.rotate_left(r as usize % len);
    t
}

/// Per-rule cost from the first and last service's hook time.
pub fn slope(first_ns: f64, last_ns: f64, n: u64) -> Option<f64> {
    (n >= 2).then(|| (last_ns - first_ns) / (n - 1) as f64)
}

const PHASE_SCRIPT_DIR: &str = "/tmp";

fn phase(vm: &mut Vm, target: Target, flood: &Flood, mac: &str) -> Result<HookPhase> {
    let path = format!("{PHASE_SCRIPT_DIR}/rulebench-flood-{}.sh", target.name());
    vm.put_file(&path, pktgen::script(flood, mac).as_bytes(), 0o755)
        .with_context(|| format!("writing {path} into the guest"))?;
    // Conntrack emptied first: every phase starts from the same table.
    let command = format!(
        "conntrack -F >/dev/null 2>&1; ip netns exec {} sh {path}",
        crate::topo::CLIENT_NS
    );
    Ok(HookPhase {
        name: target.name().into(),
        argv: vec!["sh".into(), "-c".into(), command],
    })
}

fn hook_rows(
    family: Family,
    setting: &Setting,
    r: u32,
    phase: &HookPhaseReport,
    packets: u64,
) -> Vec<HookRow> {
    phase
        .calls
        .iter()
        .map(|c| {
            let ns: Vec<f64> = c.ns.iter().map(|&n| n as f64).collect();
            HookRow {
                family: family.name().into(),
                tech: setting.tech.name().into(),
                n: setting.n,
                repeat: r,
                position: phase.name.clone(),
                function: c.function.clone(),
                hook: c.hook.clone(),
                median_ns: super::stats::median(&ns),
                calls_per_packet: c.ns.len() as f64 / packets.max(1) as f64,
            }
        })
        .collect()
}

/// Runs one hook-time repeat over `targets`; returns each target's median
/// ns in the technology's own hook.
fn hook_repeat(
    vm: &mut Vm,
    setting: &Setting,
    family: Family,
    targets: &[(Target, (Ipv4Addr, u16))],
    mac: &str,
    r: u32,
    rec: &mut Recorder,
) -> Result<Vec<(Target, f64)>> {
    let mut phases = Vec::new();
    for (target, (dst, port)) in targets {
        let flood = Flood::packets(*dst, *port, HOOK_PACKETS);
        phases.push(phase(vm, *target, &flood, mac)?);
    }
    let kernel = hook::KernelHooks::of_release(&vm.kernel_release);
    let report = hook::run(vm, &hook::plan(kernel, phases))?;
    let (function, hook_name) = hook::primary(setting.tech, family, kernel);
    hook::require_attached(&report, function)?;
    let mut out = Vec::new();
    for (p, (target, _)) in report.phases.iter().zip(targets) {
        let sent =
            pktgen::parse_report(&p.stdout).with_context(|| format!("hook phase {}", p.name))?;
        rec.hooks
            .extend(hook_rows(family, setting, r, p, sent.packets));
        // IPVS never sees a miss (not a local address): no calls, no figure.
        if let Some((median, _calls)) = hook::group(p, function, hook_name) {
            out.push((*target, median));
        }
    }
    Ok(out)
}

/// Loads the flood services and records hook time by position (and the
/// per-rule slope) over `setting.repeats` interleaved repeats.
pub fn services_hooks(vm: &mut Vm, setting: &Setting, rec: &mut Recorder) -> Result<()> {
    use super::figures::*;
    let n = setting.n as usize;
    let services = flood_services(n);
    control::full_load(vm, setting.tech, &Workload::Services(services.clone()))
        .context("loading the flood services")?;
    pktgen::prepare(vm)?;
    let mac = pktgen::gateway_mac(vm)?;
    for r in 0..setting.repeats {
        let targets: Vec<(Target, (Ipv4Addr, u16))> = rotated(&service_targets(n), r)
            .into_iter()
            .map(|t| (t, t.services_dst(&services)))
            .collect();
        let medians = hook_repeat(vm, setting, Family::Services, &targets, &mac, r, rec)
            .with_context(|| format!("{} N={n}: hook time", setting.tech))?;
        let get = |t: Target| medians.iter().find(|(x, _)| *x == t).map(|(_, v)| *v);
        for (target, figure) in [
            (Target::First, &SVC_HOOK_FIRST),
            (Target::Middle, &SVC_HOOK_MIDDLE),
            (Target::Last, &SVC_HOOK_LAST),
            (Target::Miss, &SVC_HOOK_MISS),
        ] {
            if let Some(v) = get(target) {
                rec.push(figure, setting, r, target.name(), v);
            }
        }
        if let (Some(first), Some(last)) = (get(Target::First), get(Target::Last)) {
            if let Some(s) = slope(first, last, setting.n) {
                rec.push(&SVC_HOOK_SLOPE, setting, r, "", s);
            }
        }
    }
    Ok(())
}

/// pktgen rate to the first and the last service, interleaved, with no
/// probes attached. Expects [`services_hooks`]' workload loaded.
pub fn services_rates(vm: &mut Vm, setting: &Setting, rec: &mut Recorder) -> Result<()> {
    use super::figures::*;
    let n = setting.n as usize;
    if n == 0 {
        return Ok(());
    }
    let services = flood_services(n);
    let mac = pktgen::gateway_mac(vm)?;
    for r in 0..setting.repeats {
        for target in rotated(&[Target::First, Target::Last], r) {
            run_steps(vm, setting.tech, &[guest::flush_conntrack()])?;
            let (dst, port) = target.services_dst(&services);
            let flood = Flood::timed(dst, port, RATE_MS);
            let rate = pktgen::rate(vm, &flood, &mac).with_context(|| {
                format!(
                    "{} N={n}: pktgen to the {} service",
                    setting.tech,
                    target.name()
                )
            })?;
            let figure = if target == Target::First {
                &SVC_PKTGEN_FIRST
            } else {
                rec.push(
                    &SVC_PKTGEN_DROP_LAST,
                    setting,
                    r,
                    "last",
                    rate.drop_percent(),
                );
                &SVC_PKTGEN_LAST
            };
            rec.push(figure, setting, r, target.name(), rate.delivered_pps());
        }
    }
    Ok(())
}

/// The two firewall shapes the evidence measures, with their figures.
struct Shape {
    target: Target,
    workload: fn(usize) -> Firewall,
    hook: &'static super::figures::Figure,
    rate: &'static super::figures::Figure,
}

const SHAPES: [Shape; 2] = [
    Shape {
        target: Target::Match,
        workload: flood_firewall,
        hook: &super::figures::FW_HOOK_MATCH,
        rate: &super::figures::FW_PKTGEN,
    },
    Shape {
        target: Target::MatchOverlap,
        workload: flood_firewall_overlap,
        hook: &super::figures::FW_HOOK_OVERLAP,
        rate: &super::figures::FW_PKTGEN_OVERLAP,
    },
];

/// Firewall: hook time and pktgen rate of the matching rule after N
/// fillers (conntrack on: every random-source packet is a new flow, so it
/// walks the rules), and whether kernel conntrack saw the flood; for the
/// best-case fillers (other sources) and the overlapping ones.
pub fn firewall(vm: &mut Vm, setting: &Setting, rec: &mut Recorder, rates: bool) -> Result<()> {
    use super::figures::*;
    let n = setting.n as usize;
    for shape in &SHAPES {
        if shape.target == Target::MatchOverlap && n > MAX_OVERLAP_FILLERS {
            continue;
        }
        let name = shape.target.name();
        control::full_load(vm, setting.tech, &Workload::Firewall((shape.workload)(n)))
            .with_context(|| format!("loading the flood firewall ({name})"))?;
        pktgen::prepare(vm)?;
        let mac = pktgen::gateway_mac(vm)?;
        let targets = [(shape.target, (backend_addr(0), FLOOD_PORT))];
        for r in 0..setting.repeats {
            let medians = hook_repeat(vm, setting, Family::Firewall, &targets, &mac, r, rec)
                .with_context(|| format!("{} N={n}: firewall hook time ({name})", setting.tech))?;
            for (_, v) in medians {
                rec.push(shape.hook, setting, r, name, v);
            }
        }
        if !rates {
            continue;
        }
        for r in 0..setting.repeats {
            run_steps(vm, setting.tech, &[guest::flush_conntrack()])?;
            let flood = Flood::timed(backend_addr(0), FLOOD_PORT, RATE_MS);
            let rate = pktgen::rate(vm, &flood, &mac)
                .with_context(|| format!("{} N={n}: firewall pktgen ({name})", setting.tech))?;
            rec.push(shape.rate, setting, r, name, rate.delivered_pps());
            if shape.target != Target::Match {
                continue;
            }
            rec.push(&FW_PKTGEN_DROP, setting, r, name, rate.drop_percent());
            let count = vm
                .sh("conntrack -C")
                .context("counting conntrack entries")?;
            let entries = conntrack_count(&count)?;
            rec.push(&FW_PKTGEN_CONNTRACK, setting, r, name, entries as f64);
        }
    }
    Ok(())
}

/// The entry count `conntrack -C` prints. Anything else is an error
/// carrying the text: read as 0 it would claim "conntrack not in the path".
fn conntrack_count(output: &str) -> Result<u64> {
    output
        .trim()
        .parse()
        .with_context(|| format!("`conntrack -C` printed {output:?}, not an entry count"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{expected_verdict, Packet};

    #[test]
    fn conntrack_count_is_a_number_or_an_error_with_the_text() {
        assert_eq!(conntrack_count("1024\n").unwrap(), 1024);
        assert_eq!(conntrack_count("0\n").unwrap(), 0);
        for bad in [
            "",
            "conntrack v1.4.6 (conntrack-tools): Operation failed\n",
            "-1",
            "12 flow entries",
        ] {
            let e = format!("{:#}", conntrack_count(bad).unwrap_err());
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn flood_workloads_are_valid_and_reach_their_targets() {
        let services = flood_services(10);
        Workload::Services(services.clone()).validate().unwrap();
        assert!(services.services.iter().all(|s| s.proto == Proto::Udp));
        let last = &services.services[9];
        assert_eq!(Target::Last.services_dst(&services), (last.vip, last.port));
        assert_eq!(
            Target::Miss.services_dst(&services),
            (backend_addr(0), FLOOD_PORT)
        );
        let fw = flood_firewall(50);
        Workload::Firewall(fw.clone()).validate().unwrap();
        let packet = Packet {
            src: Ipv4Addr::new(10, 100, 0, 77),
            dst: backend_addr(0),
            proto: Proto::Udp,
            sport: 33333,
            dport: FLOOD_PORT,
        };
        assert_eq!(
            expected_verdict(&fw.rules, fw.default_policy, &packet),
            Verdict::Accept
        );
        // The match is the last rule: every filler comes before it.
        let first_match = fw.rules.iter().position(|r| r.matches(&packet));
        assert_eq!(first_match, Some(fw.rules.len() - 1));
    }

    #[test]
    fn overlapping_fillers_differ_from_the_flood_only_in_port() {
        let fw = flood_firewall_overlap(64);
        Workload::Firewall(fw.clone()).validate().unwrap();
        let packet = Packet {
            src: Ipv4Addr::new(10, 100, 0, 9),
            dst: backend_addr(1),
            proto: Proto::Udp,
            sport: 40000,
            dport: FLOOD_PORT,
        };
        let first_match = fw.rules.iter().position(|r| r.matches(&packet));
        assert_eq!(first_match, Some(fw.rules.len() - 1));
        let fillers = &fw.rules[..64];
        assert!(fillers.iter().all(|r| r.src == Some(CLIENT_NET)
            && r.proto == Some(Proto::Udp)
            && r.dport.is_some_and(|p| !p.contains(FLOOD_PORT))));
        assert_eq!(fillers[0].action, Verdict::Drop);
        assert_eq!(fillers[1].action, Verdict::Accept);
    }

    #[test]
    fn positions_rotate_and_slopes_need_two_services() {
        assert_eq!(service_targets(0), vec![Target::Miss]);
        let all = service_targets(5);
        assert_eq!(rotated(&all, 0), all);
        assert_eq!(rotated(&all, 1)[0], Target::Middle);
        assert_eq!(rotated(&all, 4), all);
        assert_eq!(slope(1000.0, 10990.0, 1000), Some(10.0));
        assert_eq!(slope(1000.0, 1000.0, 1), None);
    }
}
