//! Guest network topology: a `client` namespace, the load-balancer/firewall
//! node in the root namespace, and one namespace per backend address running
//! an identity server — so every probe knows which backend answered.

use crate::vm::{Vm, VmError};
use crate::workload::{topology as plan, Workload};
use rulebench_proto::{ProbePlan, ProbeReport};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

// One address plan: the renderers and the namespaces agree because both
// take their numbers from `workload::topology`.
pub use crate::workload::topology::{CLIENT_ADDR, CLIENT_GATEWAY};

pub const CLIENT_NS: &str = "client";
pub const DEFAULT_BACKEND_PORT: u16 = plan::BACKEND_PORT;
/// A port every backend of a workload topology also serves, which no
/// generated service or rule names: probes use it for "not a service" and
/// "default policy" checks.
pub const SPARE_PORT: u16 = 9090;
/// At most this many distinct ports per backend server (each is a TCP and a
/// UDP socket; a workload naming more is probed on a subset).
pub const MAX_PORTS_PER_BACKEND: usize = 16;
/// Path of the agent binary inside the guest (serve / probe subcommands).
pub const AGENT: &str = "/usr/local/bin/rulebench-agent";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Namespace name, also the identity the server answers with.
    pub name: String,
    pub addr: Ipv4Addr,
    pub ports: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub backends: Vec<Backend>,
}

/// Address of backend `k`: 10.200.k.2 (gateway 10.200.k.1 in the root ns).
pub fn backend_addr(k: u8) -> Ipv4Addr {
    plan::backend_addr(usize::from(k))
}

/// Namespace (and identity) name of the backend at `addr`: `be<k>`.
pub fn backend_name(addr: Ipv4Addr) -> Option<String> {
    plan::backend_index(addr).map(|k| format!("be{k}"))
}

fn gateway_of(addr: Ipv4Addr) -> Ipv4Addr {
    let o = addr.octets();
    Ipv4Addr::new(o[0], o[1], o[2], 1)
}

impl Topology {
    /// `count` backends, each serving `ports`.
    pub fn with_backends(count: u8, ports: &[u16]) -> Self {
        Topology {
            backends: (0..count)
                .map(|k| Backend {
                    name: format!("be{k}"),
                    addr: backend_addr(k),
                    ports: ports.to_vec(),
                })
                .collect(),
        }
    }

    /// The namespaces a workload needs. Services: one per backend address
    /// of `backend_endpoints()`, serving that address's ports. Firewall:
    /// every backend address a rule's destination names as a host, plus
    /// namespaces 0..4 (the generator's pool), serving 8080 and each single
    /// destination port a rule names. Every backend also serves
    /// [`SPARE_PORT`].
    pub fn for_workload(workload: &Workload) -> Topology {
        let mut ports: BTreeMap<Ipv4Addr, Vec<u16>> = BTreeMap::new();
        match workload {
            Workload::Services(s) => {
                for (ip, port) in s.backend_endpoints() {
                    if plan::backend_index(ip).is_some() {
                        ports.entry(ip).or_default().push(port);
                    }
                }
            }
            Workload::Firewall(f) => {
                for k in 0..4 {
                    ports
                        .entry(plan::backend_addr(k))
                        .or_default()
                        .push(plan::BACKEND_PORT);
                }
                let rule_ports: Vec<u16> = f
                    .rules
                    .iter()
                    .filter_map(|r| r.dport.filter(|p| p.is_single()).map(|p| p.lo))
                    .collect();
                for r in &f.rules {
                    if let Some(dst) = r.dst.filter(|d| d.is_host()) {
                        if plan::backend_index(dst.addr).is_some() {
                            ports.entry(dst.addr).or_default().push(plan::BACKEND_PORT);
                        }
                    }
                }
                for list in ports.values_mut() {
                    list.extend(&rule_ports);
                }
            }
        }
        Topology {
            backends: ports
                .into_iter()
                .map(|(addr, mut ports)| {
                    ports.push(SPARE_PORT);
                    ports.sort_unstable();
                    ports.dedup();
                    ports.truncate(MAX_PORTS_PER_BACKEND);
                    Backend {
                        name: backend_name(addr).expect("only backend-plan addresses"),
                        addr,
                        ports,
                    }
                })
                .collect(),
        }
    }

    pub fn backend(&self, addr: Ipv4Addr) -> Option<&Backend> {
        self.backends.iter().find(|b| b.addr == addr)
    }

    /// Whether a server listens at `addr:port` (TCP and UDP).
    pub fn serves(&self, addr: Ipv4Addr, port: u16) -> bool {
        self.backend(addr).is_some_and(|b| b.ports.contains(&port))
    }

    /// Shell script (busybox sh) that builds the namespaces and links.
    pub fn setup_script(&self) -> String {
        let mut s = String::from(
            "set -e\n\
             sysctl -qw net.ipv4.ip_forward=1\n\
             sysctl -qw net.ipv4.conf.all.rp_filter=0\n\
             sysctl -qw net.ipv4.conf.default.rp_filter=0\n",
        );
        s += &link_script(CLIENT_NS, "vclient", CLIENT_ADDR, CLIENT_GATEWAY);
        for b in &self.backends {
            // The root-side veth carries the namespace name, so it is
            // unique however sparse the backend numbers are.
            s += &link_script(&b.name, &format!("v{}", b.name), b.addr, gateway_of(b.addr));
        }
        s
    }

    pub fn server_argv(backend: &Backend) -> Vec<String> {
        let mut argv: Vec<String> = [
            "ip",
            "netns",
            "exec",
            &backend.name,
            AGENT,
            "serve",
            "--identity",
            &backend.name,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for p in &backend.ports {
            argv.push("--port".into());
            argv.push(p.to_string());
        }
        argv
    }

    /// Build the topology in `vm` and start every backend's server; returns
    /// once each server answers a probe from the client namespace.
    pub fn setup(&self, vm: &mut Vm) -> Result<(), VmError> {
        vm.sh(&self.setup_script())?;
        for b in &self.backends {
            let argv = Self::server_argv(b);
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            vm.spawn(&argv, &format!("/tmp/server-{}.log", b.name))?;
        }
        let plan = ProbePlan {
            timeout_ms: 500,
            items: self
                .backends
                .iter()
                .flat_map(|b| {
                    b.ports.iter().map(|p| rulebench_proto::ProbeItem {
                        proto: "tcp".into(),
                        addr: b.addr.to_string(),
                        port: *p,
                        count: 1,
                    })
                })
                .collect(),
        };
        // Servers need a moment to bind; retry briefly instead of sleeping blindly.
        let mut last = None;
        for _ in 0..50 {
            let report = probe(vm, &plan)?;
            if report
                .results
                .iter()
                .all(|r| r.answers.iter().all(Option::is_some))
            {
                return Ok(());
            }
            last = Some(report);
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Err(VmError::Agent(format!(
            "backend servers did not come up: {last:?}"
        )))
    }
}

fn link_script(ns: &str, veth: &str, addr: Ipv4Addr, gateway: Ipv4Addr) -> String {
    format!(
        "ip netns add {ns}\n\
         ip link add {veth} type veth peer name eth0 netns {ns}\n\
         ip addr add {gateway}/24 dev {veth}\n\
         ip link set {veth} up\n\
         ip -n {ns} addr add {addr}/24 dev eth0\n\
         ip -n {ns} link set eth0 up\n\
         ip -n {ns} link set lo up\n\
         ip -n {ns} route add default via {gateway}\n"
    )
}

/// Run a probe plan from the client namespace.
pub fn probe(vm: &mut Vm, plan: &ProbePlan) -> Result<ProbeReport, VmError> {
    let per_attempt: u64 = plan.items.iter().map(|i| i.count as u64).sum::<u64>() * plan.timeout_ms;
    let r = vm.exec_request(rulebench_proto::ExecRequest {
        argv: ["ip", "netns", "exec", CLIENT_NS, AGENT, "probe"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        stdin: serde_json::to_vec(plan).expect("plan serializes"),
        timeout_ms: 60_000 + per_attempt,
        env: Vec::new(),
    })?;
    if r.exit_code != Some(0) {
        return Err(VmError::Agent(format!(
            "probe failed (exit {:?}): {}",
            r.exit_code,
            String::from_utf8_lossy(&r.stderr)
        )));
    }
    serde_json::from_slice(&r.stdout).map_err(|e| VmError::Agent(format!("probe report: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_script_for_two_backends() {
        insta::assert_snapshot!(Topology::with_backends(2, &[8080]).setup_script());
    }

    #[test]
    fn server_argv_lists_every_port() {
        let t = Topology::with_backends(1, &[8080, 9090]);
        assert_eq!(
            Topology::server_argv(&t.backends[0]).join(" "),
            "ip netns exec be0 /usr/local/bin/rulebench-agent serve --identity be0 --port 8080 --port 9090"
        );
    }
}
