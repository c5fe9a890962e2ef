//! Guest network topology: a `client` namespace, the load-balancer/firewall
//! node in the root namespace, and one namespace per backend address running
//! an identity server — so every probe knows which backend answered.

use crate::vm::{Vm, VmError};
use rulebench_proto::{ProbePlan, ProbeReport};
use std::net::Ipv4Addr;

pub const CLIENT_NS: &str = "client";
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 2);
pub const CLIENT_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 1);
pub const DEFAULT_BACKEND_PORT: u16 = 8080;
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
    Ipv4Addr::new(10, 200, k, 2)
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

    /// Shell script (busybox sh) that builds the namespaces and links.
    pub fn setup_script(&self) -> String {
        let mut s = String::from(
            "set -e\n\
             sysctl -qw net.ipv4.ip_forward=1\n\
             sysctl -qw net.ipv4.conf.all.rp_filter=0\n\
             sysctl -qw net.ipv4.conf.default.rp_filter=0\n",
        );
        s += &link_script(CLIENT_NS, "vclient", CLIENT_ADDR, CLIENT_GATEWAY);
        for (k, b) in self.backends.iter().enumerate() {
            s += &link_script(&b.name, &format!("vbe{k}"), b.addr, gateway_of(b.addr));
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
