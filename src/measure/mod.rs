//! Measurements in a booted guest: control plane ([`control`]) and data
//! plane ([`data`]) for one technology at one size N, recorded as
//! [`Sample`]s. The bench command walks the size ladder and technologies;
//! the budgets test uses the same functions at small N.

pub mod control;
pub mod data;
pub mod evidence;
mod family;
pub mod figures;
pub mod guest;
pub mod hook;
pub mod pktgen;
pub mod profile;
pub mod stats;

use crate::results::Sample;
use crate::tech::Tech;
use crate::vm::Vm;
use crate::workload::topology::{backend_addr, generated_vip, CLIENT_NET, CLUSTER_CIDR};
use crate::workload::{
    Endpoint, Firewall, FirewallGen, PortRange, Proto, Rule, Service, ServiceGen, Services,
    UpdateOp, Verdict, Workload,
};
use anyhow::{Context, Result};
use data::DataConfig;
pub use family::Family;
use figures::Figure;

/// Backends per generated service (kube-proxy's common small case).
pub const BACKENDS_PER_SERVICE: usize = 2;

/// Which technology, at which N, how many repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub tech: Tech,
    pub n: u64,
    pub repeats: u32,
    /// Full loads stop repeating once they have taken this much guest time
    /// together (at least one is always made); see
    /// [`control::full_loads`].
    pub full_load_budget_ms: u64,
}

/// Default of [`Setting::full_load_budget_ms`]: two minutes keeps every
/// repeat where a load takes seconds, and a single sample where one takes
/// minutes under TCG (iptables-nft-restore or nft 0.9.8 at N = 10k).
pub const DEFAULT_FULL_LOAD_BUDGET_MS: u64 = 120_000;

impl Setting {
    fn generator(&self) -> ServiceGen {
        service_generator(self.n as usize)
    }

    /// A service that is not part of the N (for add-one at N = 0).
    pub fn extra_service(&self, i: usize) -> Service {
        self.generator().service(self.n as usize + i)
    }
}

/// Collects samples in file order.
#[derive(Debug, Default)]
pub struct Recorder {
    pub samples: Vec<Sample>,
    /// The hook-time breakdown ([`evidence`]), written beside the samples.
    pub hooks: Vec<crate::results::HookRow>,
    /// Control-plane profiles ([`profile`]), written beside the samples.
    pub profiles: Vec<crate::results::ProfileRow>,
}

impl Recorder {
    pub fn push(
        &mut self,
        figure: &Figure,
        setting: &Setting,
        repeat: u32,
        position: &str,
        value: f64,
    ) {
        self.samples.push(Sample {
            figure: figure.id.to_string(),
            tech: setting.tech.name().to_string(),
            n: setting.n,
            repeat,
            position: position.to_string(),
            value,
            unit: figure.unit.to_string(),
            update_mode: String::new(),
        });
    }

    /// An update figure's sample, labelled with how the update was sent.
    pub fn push_update(
        &mut self,
        figure: &Figure,
        setting: &Setting,
        repeat: u32,
        position: &str,
        mode: crate::tech::UpdateMode,
        value: f64,
    ) {
        self.push(figure, setting, repeat, position, value);
        if let Some(last) = self.samples.last_mut() {
            last.update_mode = mode.name().to_string();
        }
    }
}

pub fn service_generator(count: usize) -> ServiceGen {
    ServiceGen::plain(count, BACKENDS_PER_SERVICE)
}

/// N TCP services, B = 2 backends each, over the 4 backend namespaces.
pub fn services_workload(n: usize) -> Services {
    Services {
        services: service_generator(n).expand(),
    }
}

/// The two services iperf3 goes through: TCP and UDP on one VIP after the
/// N generated ones, single backend (iperf3's control and data connections
/// must reach the same server).
pub fn iperf_services(n: usize) -> [Service; 2] {
    let service = |proto: Proto| Service {
        name: format!("iperf-{proto}"),
        vip: generated_vip(n),
        port: guest::IPERF_PORT,
        proto,
        affinity: None,
        backends: vec![Endpoint::new(backend_addr(0), guest::IPERF_PORT)],
    };
    [service(Proto::Tcp), service(Proto::Udp)]
}

fn firewall_generator(n: usize) -> FirewallGen {
    FirewallGen {
        count: n,
        backends: usize::from(guest::BACKENDS),
        filler_action: Verdict::Drop,
        match_action: Verdict::Accept,
        port: crate::workload::topology::BACKEND_PORT,
    }
}

fn accept(
    src: crate::workload::Cidr,
    dst: crate::workload::Cidr,
    sport: Option<u16>,
    dport: Option<u16>,
) -> Rule {
    Rule {
        src: Some(src),
        dst: Some(dst),
        proto: Some(Proto::Tcp),
        sport: sport.map(PortRange::single),
        dport: dport.map(PortRange::single),
        action: Verdict::Accept,
    }
}

/// N non-matching rules, then the rules the test traffic matches (the
/// Red Hat / bpf-iptables method). With `notrack` there is no
/// established shortcut, so replies need their own rules — also after the
/// N fillers, so every packet in both directions walks them.
pub fn firewall_workload(n: usize, notrack: bool) -> Firewall {
    let gen = firewall_generator(n);
    let mut rules = gen.expand();
    rules.push(accept(
        CLIENT_NET,
        CLUSTER_CIDR,
        None,
        Some(guest::IPERF_PORT),
    ));
    if notrack {
        for port in [crate::workload::topology::BACKEND_PORT, guest::IPERF_PORT] {
            rules.push(accept(CLUSTER_CIDR, CLIENT_NET, Some(port), None));
        }
    }
    Firewall {
        default_policy: Verdict::Drop,
        accept_established: !notrack,
        rules,
    }
}

/// A filler rule not in the workload, for insert-one.
pub fn extra_firewall_rule(n: usize) -> Rule {
    firewall_generator(n).filler(n + 1)
}

/// Rate and p50 always; p90 / p99 where the figure catalogue has them.
struct LoadFigures<'a> {
    rate: &'a Figure,
    p50: &'a Figure,
    tails: Option<(&'a Figure, &'a Figure)>,
}

fn record_load(
    rec: &mut Recorder,
    setting: &Setting,
    r: u32,
    figs: &LoadFigures,
    report: &rulebench_proto::LoadReport,
) {
    let us = |ns: u64| ns as f64 / 1e3;
    rec.push(figs.rate, setting, r, "", report.connections_per_second);
    rec.push(figs.p50, setting, r, "", us(report.connect_ns.p50));
    if let Some((p90, p99)) = figs.tails {
        rec.push(p90, setting, r, "", us(report.connect_ns.p90));
        rec.push(p99, setting, r, "", us(report.connect_ns.p99));
    }
}

/// Evidence phases of one (tech, N) — hook time by position and pktgen
/// rate ([`evidence`]); they load their own flood workloads.
pub fn run_evidence(
    vm: &mut Vm,
    setting: &Setting,
    family: Family,
    rec: &mut Recorder,
) -> Result<()> {
    if !family.techs().contains(&setting.tech) {
        return Ok(());
    }
    // The baseline of a per-rule cost is one service (or rule): the same
    // DNAT + masquerade path as at N = 1k. At N = 0 every packet would be
    // a miss, a different path — so the N = 0 job measures N = 1 and says so.
    let one = Setting { n: 1, ..*setting };
    let setting = if setting.n == 0 { &one } else { setting };
    match family {
        Family::Services => {
            evidence::services_hooks(vm, setting, rec)?;
            evidence::services_rates(vm, setting, rec)
        }
        Family::Firewall => evidence::firewall(vm, setting, rec, true),
    }
}

/// Services family at one (tech, N): control plane, then data plane on
/// the loaded ruleset.
pub fn run_services(
    vm: &mut Vm,
    setting: &Setting,
    config: &DataConfig,
    rec: &mut Recorder,
) -> Result<()> {
    use figures::*;
    let services = services_workload(setting.n as usize);
    let mut model = control::services(vm, setting, &services, rec)?;
    // The connection load targets the N services only (taken before the
    // iperf3 services join: iperf3 answers nothing on connect).
    let Workload::Services(current) = &model else {
        unreachable!("services model")
    };
    let current = current.clone();
    for service in iperf_services(setting.n as usize) {
        control::update(vm, setting.tech, &mut model, &UpdateOp::AddService(service))
            .context("adding the iperf3 services")?;
    }
    for r in 0..setting.repeats {
        crate::steps::run_steps(vm, setting.tech, &[guest::flush_conntrack()])?;
        let plan = data::services_plan(&current, config, u64::from(r) + 1);
        let report = data::run_load(vm, &plan)
            .with_context(|| format!("{} N={}: connection load", setting.tech, setting.n))?;
        record_load(
            rec,
            setting,
            r,
            &LoadFigures {
                rate: &SVC_CRR,
                p50: &SVC_P50,
                tails: Some((&SVC_P90, &SVC_P99)),
            },
            &report,
        );
        let vip = generated_vip(setting.n as usize);
        let tcp = data::iperf(vm, vip, guest::IPERF_PORT, config, false)?;
        rec.push(&SVC_TCP, setting, r, "", tcp.mbit_per_s);
        let udp = data::iperf(vm, vip, guest::IPERF_PORT, config, true)?;
        rec.push(
            &SVC_UDP_LOSS,
            setting,
            r,
            "",
            udp.lost_percent.unwrap_or(0.0),
        );
    }
    Ok(())
}

/// Firewall family at one (tech, N): control plane, then connection rate
/// and bandwidth with conntrack on, then the same with NOTRACK.
pub fn run_firewall(
    vm: &mut Vm,
    setting: &Setting,
    config: &DataConfig,
    rec: &mut Recorder,
) -> Result<()> {
    use figures::*;
    let n = setting.n as usize;
    let tracked = Workload::Firewall(firewall_workload(n, false));
    let small = Workload::Firewall(firewall_workload(n.min(100), false));
    control::firewall(vm, setting, &tracked, &small, extra_firewall_rule(n), rec)?;
    let variants = [
        (
            false,
            LoadFigures {
                rate: &FW_CRR,
                p50: &FW_P50,
                tails: None,
            },
            &FW_TCP,
        ),
        (
            true,
            LoadFigures {
                rate: &FW_CRR_NOTRACK,
                p50: &FW_P50_NOTRACK,
                tails: None,
            },
            &FW_TCP_NOTRACK,
        ),
    ];
    for (notrack, load_figs, tcp_fig) in variants {
        if notrack {
            control::full_load(
                vm,
                setting.tech,
                &Workload::Firewall(firewall_workload(n, true)),
            )?;
            crate::steps::run_steps(vm, setting.tech, &[guest::notrack_on()])?;
        }
        for r in 0..setting.repeats {
            crate::steps::run_steps(vm, setting.tech, &[guest::flush_conntrack()])?;
            let plan = data::firewall_plan(
                guest::BACKENDS,
                crate::workload::topology::BACKEND_PORT,
                config,
                u64::from(r) + 1,
            );
            let report = data::run_load(vm, &plan).with_context(|| {
                format!(
                    "{} N={} notrack={notrack}: connection load",
                    setting.tech, setting.n
                )
            })?;
            record_load(rec, setting, r, &load_figs, &report);
            let tcp = data::iperf(vm, backend_addr(0), guest::IPERF_PORT, config, false)?;
            rec.push(tcp_fig, setting, r, "", tcp.mbit_per_s);
        }
    }
    crate::steps::run_steps(vm, setting.tech, &[guest::notrack_off()])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{expected_verdict, Packet};

    #[test]
    fn firewall_workloads_pass_the_test_traffic_after_n_rules() {
        let client = crate::workload::topology::CLIENT_ADDR;
        let be = backend_addr(1);
        let packet = |src, dst, sport, dport| Packet {
            src,
            dst,
            proto: Proto::Tcp,
            sport,
            dport,
        };
        for notrack in [false, true] {
            let fw = firewall_workload(100, notrack);
            assert_eq!(fw.accept_established, !notrack);
            Workload::Firewall(fw.clone()).validate().unwrap();
            let verdict = |p: &Packet| expected_verdict(&fw.rules, fw.default_policy, p);
            for port in [8080, guest::IPERF_PORT] {
                assert_eq!(verdict(&packet(client, be, 40000, port)), Verdict::Accept);
            }
            // Replies pass by rule only without conntrack's shortcut.
            let reply = verdict(&packet(be, client, 8080, 40000));
            assert_eq!(reply == Verdict::Accept, notrack);
            // Every matching rule comes after the N fillers.
            assert!(fw.rules[..100].iter().all(|r| r.action == Verdict::Drop));
        }
        assert!(!firewall_workload(3, false)
            .rules
            .contains(&extra_firewall_rule(3)));
    }

    #[test]
    fn iperf_services_follow_the_generated_ones() {
        let mut services = services_workload(10);
        services.services.extend(iperf_services(10));
        Workload::Services(services).validate().unwrap();
    }
}
