//! IPVS in kube-proxy's IPVS-mode layout: every VIP bound to the dummy
//! device kube-ipvs0 (so routing delivers it locally, where IPVS hooks in),
//! one virtual service per VIP:port (`rr`, masquerade forwarding,
//! persistence for ClientIP affinity), the ipsets KUBE-CLUSTER-IP and
//! KUBE-LOOP-BACK, and kube-proxy's few nat rules that use them for
//! masquerade marking.
//!
//! The nat rules go through iptables-legacy-restore: the IPVS numbers
//! should not include the nft-compat translation cost, and legacy is what
//! the iptables-legacy technology measures alone, so the difference
//! between the two is IPVS itself.
//!
//! IPVS has no atomic full replace: a full load clears the table and
//! restores it (a short window with no services).

use std::collections::BTreeSet;
use std::fmt::Write;

use crate::workload::topology::CLUSTER_CIDR;
use crate::workload::{Endpoint, Proto, Service, Services, UpdateOp};

use super::iptables_layout::{EMPTY_NAT, MASQ_MARK};
use super::normalize::{
    normalize_ip_addr, normalize_ipset_save, normalize_iptables_save, normalize_ipvsadm_save,
};
use super::{iptables, Step};

pub const DUMMY_DEVICE: &str = "kube-ipvs0";
pub const CLUSTER_IP_SET: &str = "KUBE-CLUSTER-IP";
pub const LOOP_BACK_SET: &str = "KUBE-LOOP-BACK";

/// maxelem covers the largest generated workload (200k services), so the
/// set definition never changes and `create -exist` always agrees with an
/// existing set.
pub(super) const SET_OPTIONS: &str = "family inet hashsize 1024 maxelem 262144";

pub const UNSUPPORTED_FIREWALL: &str = "IPVS is a load balancer and has no firewall rules";

pub(super) fn proto_flag(p: Proto) -> &'static str {
    match p {
        Proto::Tcp => "-t",
        Proto::Udp => "-u",
    }
}

pub(super) fn virtual_service(svc: &Service) -> String {
    format!("{} {}:{}", proto_flag(svc.proto), svc.vip, svc.port)
}

pub(super) fn add_virtual(svc: &Service) -> String {
    let persistence = svc
        .affinity
        .map(|a| format!(" -p {}", a.timeout_seconds))
        .unwrap_or_default();
    format!("-A {} -s rr{persistence}\n", virtual_service(svc))
}

pub(super) fn add_real(svc: &Service, ep: &Endpoint) -> String {
    format!("-a {} -r {ep} -m -w 1\n", virtual_service(svc))
}

pub(super) fn cluster_ip_entry(svc: &Service) -> String {
    format!("{},{}:{}", svc.vip, svc.proto, svc.port)
}

/// Hairpin entry: a backend reaching itself through a VIP.
fn loop_back_entry(proto: Proto, ep: &Endpoint) -> String {
    format!("{},{}:{},{}", ep.ip, proto, ep.port, ep.ip)
}

pub(super) fn loop_back_entries<'a>(
    services: impl Iterator<Item = &'a Service>,
) -> BTreeSet<String> {
    services
        .flat_map(|s| {
            s.backends
                .iter()
                .map(move |ep| loop_back_entry(s.proto, ep))
        })
        .collect()
}

fn ipvsadm_rules(services: &Services) -> String {
    let mut out = String::new();
    for svc in &services.services {
        out.push_str(&add_virtual(svc));
        for ep in &svc.backends {
            out.push_str(&add_real(svc, ep));
        }
    }
    out
}

fn ipset_restore(services: &Services) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "create {CLUSTER_IP_SET} hash:ip,port {SET_OPTIONS}");
    let _ = writeln!(out, "flush {CLUSTER_IP_SET}");
    for svc in &services.services {
        let _ = writeln!(out, "add {CLUSTER_IP_SET} {}", cluster_ip_entry(svc));
    }
    let _ = writeln!(out, "create {LOOP_BACK_SET} hash:ip,port,ip {SET_OPTIONS}");
    let _ = writeln!(out, "flush {LOOP_BACK_SET}");
    for entry in loop_back_entries(services.services.iter()) {
        let _ = writeln!(out, "add {LOOP_BACK_SET} {entry}");
    }
    out
}

/// kube-proxy IPVS mode's nat table (the parts this topology exercises).
pub fn nat_restore() -> String {
    format!(
        "*nat\n\
         :PREROUTING ACCEPT [0:0]\n\
         :INPUT ACCEPT [0:0]\n\
         :OUTPUT ACCEPT [0:0]\n\
         :POSTROUTING ACCEPT [0:0]\n\
         {}\
         -A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n\
         {}\
         COMMIT\n",
        kube_chain_lines(),
        kube_chain_rules()
    )
}

/// The chains kube-proxy's IPVS mode owns in nat.
pub(super) const KUBE_CHAINS: [&str; 3] = ["KUBE-SERVICES", "KUBE-MARK-MASQ", "KUBE-POSTROUTING"];

/// Their declarations (under `--noflush` also their flush).
pub(super) fn kube_chain_lines() -> String {
    KUBE_CHAINS
        .iter()
        .map(|c| format!(":{c} - [0:0]\n"))
        .collect()
}

/// The rules of [`KUBE_CHAINS`], which kube-proxy writes on every sync.
pub(super) fn kube_chain_rules() -> String {
    format!(
        "-A KUBE-MARK-MASQ -j MARK --or-mark {m}\n\
         -A KUBE-POSTROUTING -m comment --comment \"Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose\" -m set --match-set {LOOP_BACK_SET} dst,dst,src -j MASQUERADE\n\
         -A KUBE-POSTROUTING -m mark ! --mark {m}/{m} -j RETURN\n\
         -A KUBE-POSTROUTING -j MARK --xor-mark {m}\n\
         -A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE\n\
         -A KUBE-SERVICES ! -s {CLUSTER_CIDR} -m comment --comment \"Kubernetes service cluster ip + port for masquerade purpose\" -m set --match-set {CLUSTER_IP_SET} dst,dst -j KUBE-MARK-MASQ\n\
         -A KUBE-SERVICES -m set --match-set {CLUSTER_IP_SET} dst,dst -j ACCEPT\n",
        m = MASQ_MARK
    )
}

fn ip_batch(services: &Services) -> String {
    let mut out = format!("address flush dev {DUMMY_DEVICE}\n");
    for vip in services.vips() {
        let _ = writeln!(out, "address add {vip}/32 dev {DUMMY_DEVICE}");
    }
    out
}

/// Sysctls kube-proxy sets in IPVS mode: conntrack for IPVS connections
/// (so the MASQUERADE rule sees them), and dropping connections to removed
/// real servers / stale persistence templates (matters after updates).
fn sysctl_step() -> Step {
    Step::new(&[
        "sysctl",
        "-w",
        "net.ipv4.vs.conntrack=1",
        "net.ipv4.vs.expire_nodest_conn=1",
        "net.ipv4.vs.expire_quiescent_template=1",
    ])
}

pub fn render_services(services: &Services) -> Vec<Step> {
    vec![
        // `ip link add` has no "may exist" form; an existing device is fine.
        Step::new(&["ip", "link", "add", DUMMY_DEVICE, "type", "dummy"]).tolerant(),
        Step::with_stdin(&["ip", "-batch", "-"], ip_batch(services)),
        Step::with_stdin(&["ipset", "-exist", "restore"], ipset_restore(services)),
        Step::with_stdin(&[iptables::RESTORE], nat_restore()),
        Step::new(&["ipvsadm", "-C"]),
        Step::with_stdin(&["ipvsadm", "-R"], ipvsadm_rules(services)),
        sysctl_step(),
    ]
}

/// The services other than `name`.
pub(super) fn others<'a>(
    services: &'a Services,
    name: &'a str,
) -> impl Iterator<Item = &'a Service> + 'a {
    services.services.iter().filter(move |s| s.name != name)
}

pub fn render_services_update(before: &Services, op: &UpdateOp) -> Vec<Step> {
    let mut steps = Vec::new();
    match op {
        UpdateOp::AddService(svc) => {
            if !before.services.iter().any(|s| s.vip == svc.vip) {
                steps.push(Step::new(&[
                    "ip",
                    "address",
                    "add",
                    &format!("{}/32", svc.vip),
                    "dev",
                    DUMMY_DEVICE,
                ]));
            }
            let mut sets = format!("add {CLUSTER_IP_SET} {}\n", cluster_ip_entry(svc));
            for entry in loop_back_entries(std::iter::once(svc)) {
                let _ = writeln!(sets, "add {LOOP_BACK_SET} {entry}");
            }
            steps.push(Step::with_stdin(&["ipset", "-exist", "restore"], sets));
            let mut rules = add_virtual(svc);
            for ep in &svc.backends {
                rules.push_str(&add_real(svc, ep));
            }
            steps.push(Step::with_stdin(&["ipvsadm", "-R"], rules));
        }
        UpdateOp::DeleteService { name } => {
            let Some(svc) = before.by_name(name) else {
                return steps;
            };
            steps.push(Step::new(&[
                "ipvsadm",
                "-D",
                proto_flag(svc.proto),
                &format!("{}:{}", svc.vip, svc.port),
            ]));
            let still_used = loop_back_entries(others(before, name));
            let mut sets = format!("del {CLUSTER_IP_SET} {}\n", cluster_ip_entry(svc));
            for entry in loop_back_entries(std::iter::once(svc)).difference(&still_used) {
                let _ = writeln!(sets, "del {LOOP_BACK_SET} {entry}");
            }
            steps.push(Step::with_stdin(&["ipset", "-exist", "restore"], sets));
            if !others(before, name).any(|s| s.vip == svc.vip) {
                steps.push(Step::new(&[
                    "ip",
                    "address",
                    "del",
                    &format!("{}/32", svc.vip),
                    "dev",
                    DUMMY_DEVICE,
                ]));
            }
        }
        UpdateOp::ChangeBackends { name, backends } => {
            let Some(old) = before.by_name(name) else {
                return steps;
            };
            let new = Service {
                backends: backends.clone(),
                ..old.clone()
            };
            let mut rules = String::new();
            for ep in backends.iter().filter(|e| !old.backends.contains(e)) {
                rules.push_str(&add_real(&new, ep));
            }
            for ep in old.backends.iter().filter(|e| !backends.contains(e)) {
                let _ = writeln!(rules, "-d {} -r {ep}", virtual_service(old));
            }
            steps.push(Step::with_stdin(&["ipvsadm", "-R"], rules));
            let elsewhere = loop_back_entries(others(before, name));
            let (was, will) = (
                loop_back_entries(std::iter::once(old)),
                loop_back_entries(std::iter::once(&new)),
            );
            let mut sets = String::new();
            for entry in will.difference(&was) {
                let _ = writeln!(sets, "add {LOOP_BACK_SET} {entry}");
            }
            for entry in was.difference(&will).filter(|e| !elsewhere.contains(*e)) {
                let _ = writeln!(sets, "del {LOOP_BACK_SET} {entry}");
            }
            if !sets.is_empty() {
                steps.push(Step::with_stdin(&["ipset", "-exist", "restore"], sets));
            }
        }
        UpdateOp::InsertRule { .. } | UpdateOp::DeleteRule { .. } => {}
    }
    steps
}

/// Four dumps, normalized section by section by [`normalize`].
pub fn dump_commands() -> Vec<Step> {
    vec![
        Step::new(&["ipvsadm", "-Sn"]),
        Step::new(&["ipset", "save"]),
        Step::new(&[iptables::SAVE, "-t", "nat"]),
        Step::new(&["ip", "-o", "-4", "address", "show", "dev", DUMMY_DEVICE]).tolerant(),
    ]
}

/// `outputs` holds the stdout of each [`dump_commands`] step, in order.
pub fn normalize(outputs: &[String]) -> String {
    let section = |i: usize| outputs.get(i).map(String::as_str).unwrap_or("");
    format!(
        "## ipvsadm -Sn\n{}## ipset save\n{}## {} -t nat\n{}## ip address show dev {DUMMY_DEVICE}\n{}",
        normalize_ipvsadm_save(section(0)),
        normalize_ipset_save(section(1)),
        iptables::SAVE,
        normalize_iptables_save(section(2)),
        normalize_ip_addr(section(3)),
    )
}

/// Removes the nat rules first (they hold references to the sets), then
/// the virtual services, the sets and the dummy device.
pub fn reset_steps() -> Vec<Step> {
    let sets = format!(
        "create {CLUSTER_IP_SET} hash:ip,port {SET_OPTIONS}\ndestroy {CLUSTER_IP_SET}\n\
         create {LOOP_BACK_SET} hash:ip,port,ip {SET_OPTIONS}\ndestroy {LOOP_BACK_SET}\n"
    );
    vec![
        Step::with_stdin(&[iptables::RESTORE], EMPTY_NAT),
        Step::new(&["ipvsadm", "-C"]),
        Step::with_stdin(&["ipset", "-exist", "restore"], sets),
        Step::new(&["ip", "link", "del", DUMMY_DEVICE]).tolerant(),
    ]
}
