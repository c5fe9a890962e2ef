//! Which connections to try for a workload, each with the verdict the
//! workload's oracle expects. Pure: the same workload and topology always
//! give the same probes, so every technology is asked the same questions.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;

use rulebench_proto::{ProbeItem, ProbePlan};

use crate::topo::{Topology, SPARE_PORT};
use crate::workload::topology::{generated_vip, CLIENT_ADDR, SERVICE_PORT};
use crate::workload::{
    Endpoint, Expected, Firewall, Packet, Proto, Service, Services, Verdict as Action, Workload,
};

/// Linux's default ephemeral port range (`net.ipv4.ip_local_port_range`):
/// the probe's source port is somewhere in here, chosen by the kernel.
pub const EPHEMERAL_PORTS: (u16, u16) = (32768, 60999);

#[derive(Debug, Clone, PartialEq)]
pub struct ProbeOptions {
    /// Services probed at most (evenly sampled beyond this).
    pub max_services: usize,
    /// Attempts per sampled service.
    pub attempts: u32,
    /// Attempts of the spread check on a 4-backend service.
    pub spread_attempts: u32,
    /// Share each backend must get in the spread check.
    pub spread_min_share: f64,
    /// Attempts of the affinity check.
    pub affinity_attempts: u32,
    /// Firewall 5-tuples probed at most.
    pub max_firewall: usize,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            max_services: 256,
            attempts: 2,
            spread_attempts: 200,
            spread_min_share: 0.10,
            affinity_attempts: 20,
            max_firewall: 256,
        }
    }
}

/// How a probe's answers are judged.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// Load balancing: `backends` is the oracle's set for this destination
    /// (empty when no service owns it).
    Service {
        backends: BTreeSet<Endpoint>,
        /// Every attempt must reach the same backend (ClientIP affinity).
        sticky: bool,
        /// Every backend must answer at least this share of the attempts.
        min_share: Option<f64>,
    },
    /// Filtering: connected or blocked.
    Firewall,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// What the probe is about, for reports: `svc12 tcp 10.96.0.13:80`.
    pub label: String,
    pub proto: Proto,
    pub addr: Ipv4Addr,
    pub port: u16,
    pub count: u32,
    pub check: Check,
    /// The oracle's verdict.
    pub expected: Verdict,
}

impl Probe {
    pub fn item(&self) -> ProbeItem {
        ProbeItem {
            proto: self.proto.as_str().to_string(),
            addr: self.addr.to_string(),
            port: self.port,
            count: self.count,
        }
    }

    pub fn destination(&self) -> Endpoint {
        Endpoint::new(self.addr, self.port)
    }
}

/// What one probe's answers meant. A verdict is a small value, the same
/// for two technologies that behaved the same way, so verdicts compare
/// across technologies (the differential) and against the oracle.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// Every attempt was answered by one of the service's backends (and,
    /// where the probe checks it, spread over all of them / sticky).
    Balanced,
    /// Answered by the addressed endpoint itself: not translated.
    Direct,
    /// No attempt got an answer.
    NoAnswer,
    /// Firewall: the connection went through.
    Connected,
    /// Firewall: every attempt failed within the timeout.
    Blocked,
    /// Anything else, described.
    Wrong(String),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Balanced => f.write_str("balanced"),
            Verdict::Direct => f.write_str("direct (not translated)"),
            Verdict::NoAnswer => f.write_str("no answer"),
            Verdict::Connected => f.write_str("connected"),
            Verdict::Blocked => f.write_str("blocked"),
            Verdict::Wrong(why) => write!(f, "WRONG: {why}"),
        }
    }
}

/// The agent's plan for a probe list (one item per probe, same order).
pub fn plan(probes: &[Probe], timeout_ms: u64) -> ProbePlan {
    ProbePlan {
        timeout_ms,
        items: probes.iter().map(Probe::item).collect(),
    }
}

/// `count` indices spread evenly over `0..len` (all of them when
/// `len <= count`); deterministic, always includes 0.
pub fn sample(len: usize, count: usize) -> Vec<usize> {
    if len <= count {
        return (0..len).collect();
    }
    (0..count).map(|i| i * len / count).collect()
}

pub fn probes_for(workload: &Workload, topology: &Topology, opts: &ProbeOptions) -> Vec<Probe> {
    match workload {
        Workload::Services(s) => service_probes(s, topology, opts),
        Workload::Firewall(f) => firewall_probes(f, topology, opts),
    }
}

fn service_probe(
    services: &Services,
    topology: &Topology,
    label: String,
    (proto, addr, port): (Proto, Ipv4Addr, u16),
    count: u32,
    min_share: Option<f64>,
) -> Probe {
    let owner = services.find(proto, addr, port);
    let (backends, expected) = match services.expected(proto, addr, port) {
        Expected::Backends(set) => (set, Verdict::Balanced),
        // Not translated: the packet goes where it was addressed, which
        // answers only if a server of the topology listens there.
        Expected::NotTranslated if topology.serves(addr, port) => {
            (BTreeSet::new(), Verdict::Direct)
        }
        Expected::NotTranslated => (BTreeSet::new(), Verdict::NoAnswer),
    };
    Probe {
        label,
        proto,
        addr,
        port,
        count,
        check: Check::Service {
            backends,
            sticky: owner.is_some_and(|s| s.affinity.is_some()),
            min_share,
        },
        expected,
    }
}

fn describe(svc: &Service) -> String {
    format!("{} {} {}:{}", svc.name, svc.proto, svc.vip, svc.port)
}

/// Sampled services (each answer must come from one of its backends), a
/// spread check on the first 4-backend service without affinity, a
/// stickiness check on the first affinity service, and destinations no
/// service owns (a backend addressed directly, an unused VIP, a used VIP
/// on a port no service has).
pub fn service_probes(services: &Services, topology: &Topology, opts: &ProbeOptions) -> Vec<Probe> {
    let list = &services.services;
    let key = |s: &Service| (s.proto, s.vip, s.port);
    let mut probes: Vec<Probe> = sample(list.len(), opts.max_services)
        .into_iter()
        .map(|i| {
            let s = &list[i];
            service_probe(services, topology, describe(s), key(s), opts.attempts, None)
        })
        .collect();
    if let Some(s) = list
        .iter()
        .find(|s| s.backends.len() == 4 && s.affinity.is_none())
    {
        probes.push(service_probe(
            services,
            topology,
            format!("spread over 4 backends: {}", describe(s)),
            key(s),
            opts.spread_attempts,
            Some(opts.spread_min_share),
        ));
    }
    if let Some(s) = list.iter().find(|s| s.affinity.is_some()) {
        probes.push(service_probe(
            services,
            topology,
            format!("affinity: {}", describe(s)),
            key(s),
            opts.affinity_attempts,
            None,
        ));
    }
    let vips: BTreeSet<Ipv4Addr> = list.iter().map(|s| s.vip).collect();
    let mut odd = Vec::new();
    if let Some(b) = topology.backends.first() {
        let port = b.ports.first().copied().unwrap_or(SPARE_PORT);
        odd.push(("backend addressed directly", (Proto::Tcp, b.addr, port)));
    }
    if let Some(vip) = (0..).map(generated_vip).find(|v| !vips.contains(v)) {
        odd.push(("unused VIP", (Proto::Tcp, vip, SERVICE_PORT)));
    }
    if let Some(s) = list.first() {
        let port = (1..=u16::MAX)
            .map(|d| s.port.wrapping_add(d))
            .find(|p| *p != 0 && services.find(Proto::Tcp, s.vip, *p).is_none())
            .unwrap_or(SPARE_PORT);
        odd.push(("used VIP, port of no service", (Proto::Tcp, s.vip, port)));
    }
    for (what, (proto, addr, port)) in odd {
        probes.push(service_probe(
            services,
            topology,
            format!("not a service ({what}): {proto} {addr}:{port}"),
            (proto, addr, port),
            1,
            None,
        ));
    }
    probes
}

/// The oracle's answer for a client connection to `dst:dport`: the first
/// packet must be accepted, and so must the replies (by the established
/// rule or by a rule of their own). `None` when the answer depends on the
/// ephemeral source port the kernel picks, so no probe can test it.
pub fn firewall_expectation(
    fw: &Firewall,
    proto: Proto,
    dst: Ipv4Addr,
    dport: u16,
) -> Option<bool> {
    let (lo, hi) = EPHEMERAL_PORTS;
    let sports = [lo, lo + (hi - lo) / 2, hi];
    let outcomes: BTreeSet<bool> = sports
        .iter()
        .map(|&sport| {
            let forward = Packet {
                src: CLIENT_ADDR,
                dst,
                proto,
                sport,
                dport,
            };
            let reply = Packet {
                src: dst,
                dst: CLIENT_ADDR,
                proto,
                sport: dport,
                dport: sport,
            };
            fw.verdict(&forward) == Action::Accept
                && (fw.accept_established || fw.verdict(&reply) == Action::Accept)
        })
        .collect();
    // A rule on a source-port range inside the ephemeral range would make
    // the answer depend on the port: such a tuple is not probed.
    let depends_on_sport = fw.rules.iter().any(|r| {
        r.sport
            .is_some_and(|p| p.hi >= lo && p.lo <= hi && !(p.lo <= lo && p.hi >= hi))
    });
    (outcomes.len() == 1 && !depends_on_sport).then(|| outcomes.contains(&true))
}

/// Every (backend, served port, tcp/udp) from the client, sampled down to
/// `max_firewall`: accepted ones must connect, dropped ones must fail
/// within the probe timeout.
pub fn firewall_probes(fw: &Firewall, topology: &Topology, opts: &ProbeOptions) -> Vec<Probe> {
    let mut all = Vec::new();
    for b in &topology.backends {
        for &port in &b.ports {
            for proto in [Proto::Tcp, Proto::Udp] {
                let Some(connects) = firewall_expectation(fw, proto, b.addr, port) else {
                    continue;
                };
                all.push(Probe {
                    label: format!("{proto} {CLIENT_ADDR} -> {}:{port}", b.addr),
                    proto,
                    addr: b.addr,
                    port,
                    count: 1,
                    check: Check::Firewall,
                    expected: if connects {
                        Verdict::Connected
                    } else {
                        Verdict::Blocked
                    },
                });
            }
        }
    }
    sample(all.len(), opts.max_firewall)
        .into_iter()
        .map(|i| all[i].clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Workload;

    fn services_fixture() -> Workload {
        Workload::from_toml_str(
            r#"
            [[services.service]]
            name = "web"
            vip = "10.96.0.10"
            port = 80
            backends = ["10.200.0.2:8080", "10.200.1.2:8080", "10.200.2.2:8080", "10.200.3.2:8080"]
            [[services.service]]
            name = "dns"
            vip = "10.96.0.11"
            port = 53
            proto = "udp"
            backends = ["10.200.1.2:8080"]
            [[services.service]]
            name = "sticky"
            vip = "10.96.0.12"
            port = 80
            affinity = "client-ip"
            backends = ["10.200.2.2:8080", "10.200.3.2:8080"]
            "#,
        )
        .unwrap()
    }

    #[test]
    fn sampling_is_even_and_bounded() {
        assert_eq!(sample(3, 256), vec![0, 1, 2]);
        let s = sample(1000, 256);
        assert_eq!(s.len(), 256);
        assert_eq!(s[0], 0);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        assert!(*s.last().unwrap() < 1000);
    }

    #[test]
    fn service_probes_cover_services_spread_affinity_and_non_services() {
        let w = services_fixture();
        let topo = Topology::for_workload(&w);
        let probes = probes_for(&w, &topo, &ProbeOptions::default());
        let labels: Vec<&str> = probes.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "web tcp 10.96.0.10:80",
                "dns udp 10.96.0.11:53",
                "sticky tcp 10.96.0.12:80",
                "spread over 4 backends: web tcp 10.96.0.10:80",
                "affinity: sticky tcp 10.96.0.12:80",
                "not a service (backend addressed directly): tcp 10.200.0.2:8080",
                "not a service (unused VIP): tcp 10.96.0.1:80",
                "not a service (used VIP, port of no service): tcp 10.96.0.10:81",
            ]
        );
        assert_eq!(probes[3].count, 200);
        assert!(
            matches!(&probes[4].check, Check::Service { sticky: true, backends, .. } if backends.len() == 2)
        );
        let expected: Vec<Verdict> = probes.iter().map(|p| p.expected.clone()).collect();
        use Verdict::*;
        assert_eq!(
            expected,
            [Balanced, Balanced, Balanced, Balanced, Balanced, Direct, NoAnswer, NoAnswer]
        );
        let plan = plan(&probes, 500);
        assert_eq!(plan.items[1].proto, "udp");
        assert_eq!(plan.items[1].port, 53);
    }

    #[test]
    fn large_workloads_are_sampled() {
        let w = Workload::from_toml_str(
            "[services.generate]\ncount = 1000\nbackends = 2\naffinity_every = 7\n",
        )
        .unwrap();
        let topo = Topology::for_workload(&w);
        assert_eq!(topo.backends.len(), 4);
        let probes = probes_for(&w, &topo, &ProbeOptions::default());
        // 256 sampled, no 4-backend service, one affinity check, 3 non-service.
        assert_eq!(probes.len(), 256 + 1 + 3);
    }

    #[test]
    fn firewall_probes_follow_first_match_and_replies() {
        let w = Workload::from_toml_str(
            r#"
            [firewall]
            default_policy = "drop"
            accept_established = true
            [[firewall.rule]]
            dst = "10.200.1.2/32"
            proto = "tcp"
            dport = 8080
            action = "drop"
            [[firewall.rule]]
            src = "10.100.0.0/24"
            proto = "tcp"
            dport = "8000-8100"
            action = "accept"
            "#,
        )
        .unwrap();
        let Workload::Firewall(fw) = &w else {
            unreachable!()
        };
        let topo = Topology::for_workload(&w);
        let probes = probes_for(&w, &topo, &ProbeOptions::default());
        // 4 backends x {8080, 9090} x {tcp, udp}.
        assert_eq!(probes.len(), 16);
        let verdict = |label: &str| {
            probes
                .iter()
                .find(|p| p.label == label)
                .unwrap_or_else(|| panic!("{label}"))
                .expected
                .clone()
        };
        assert_eq!(
            verdict("tcp 10.100.0.2 -> 10.200.0.2:8080"),
            Verdict::Connected
        );
        assert_eq!(
            verdict("tcp 10.100.0.2 -> 10.200.1.2:8080"),
            Verdict::Blocked
        );
        assert_eq!(
            verdict("udp 10.100.0.2 -> 10.200.0.2:8080"),
            Verdict::Blocked
        );
        assert_eq!(
            verdict("tcp 10.100.0.2 -> 10.200.0.2:9090"),
            Verdict::Blocked
        );
        // Without the established rule the replies need a rule of their own.
        let no_est = Firewall {
            accept_established: false,
            ..fw.clone()
        };
        assert_eq!(
            firewall_expectation(&no_est, Proto::Tcp, "10.200.0.2".parse().unwrap(), 8080),
            Some(false)
        );
    }
}
