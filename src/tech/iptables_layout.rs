//! iptables-restore text in kube-proxy's layout, shared by the legacy and
//! the nf_tables backend (they read the same file format; only the binary
//! differs).
//!
//! Services live in the nat table:
//! PREROUTING/OUTPUT -> KUBE-SERVICES -> KUBE-SVC-<hash> -> KUBE-SEP-<hash>
//! (DNAT), with KUBE-MARK-MASQ / KUBE-POSTROUTING for masquerade. The
//! firewall lives in the filter table's FORWARD chain.

use std::fmt::Write;

use crate::workload::topology::CLUSTER_CIDR;
use crate::workload::{Endpoint, Firewall, Rule, Service, Services, UpdateOp, Verdict};

use super::hash::{kube_sep_chain, kube_svc_chain};

/// kube-proxy's masquerade mark bit.
pub const MASQ_MARK: &str = "0x4000";

/// A service's chain names, hashed once (sha256 per name adds up at 100k
/// services).
pub(super) struct Names {
    pub(super) svc: String,
    pub(super) seps: Vec<String>,
}

impl Names {
    pub(super) fn of(svc: &Service) -> Names {
        Names {
            svc: kube_svc_chain(svc),
            seps: svc
                .backends
                .iter()
                .map(|ep| kube_sep_chain(svc, ep))
                .collect(),
        }
    }
}

/// kube-proxy's `computeProbability`: `%0.10f` of 1/n.
pub fn probability(n: usize) -> String {
    format!("{:.10}", 1.0 / n as f64)
}

/// kube-proxy quotes a comment only when it contains spaces.
fn comment(text: &str) -> String {
    if text.contains(' ') {
        format!("-m comment --comment \"{text}\"")
    } else {
        format!("-m comment --comment {text}")
    }
}

/// `-m tcp -p tcp`, in kube-proxy's order.
fn proto_match(svc: &Service) -> String {
    format!("-m {0} -p {0}", svc.proto)
}

/// The KUBE-SERVICES rule for a service, without the leading `-A CHAIN`
/// (so `-D` can reuse it).
pub(super) fn services_jump_spec(svc: &Service, names: &Names) -> String {
    format!(
        "{} {} -d {} --dport {} -j {}",
        comment(&format!("{} cluster IP", svc.service_port_name())),
        proto_match(svc),
        svc.vip,
        svc.port,
        names.svc
    )
}

fn svc_chain_rules(svc: &Service, names: &Names, out: &mut String) {
    let chain = &names.svc;
    let spn = svc.service_port_name();
    // Traffic from outside the cluster CIDR (our client) is masqueraded.
    let _ = writeln!(
        out,
        "-A {chain} {} {} -d {} --dport {} ! -s {CLUSTER_CIDR} -j KUBE-MARK-MASQ",
        comment(&format!("{spn} cluster IP")),
        proto_match(svc),
        svc.vip,
        svc.port
    );
    // Affinity checks come first: a remembered client skips the lottery.
    if let Some(a) = svc.affinity {
        for (ep, sep) in svc.backends.iter().zip(&names.seps) {
            let _ = writeln!(
                out,
                "-A {chain} {} -m recent --name {sep} --rcheck --seconds {} --reap -j {sep}",
                comment(&format!("{spn} -> {ep}")),
                a.timeout_seconds
            );
        }
    }
    let n = svc.backends.len();
    for (i, (ep, sep)) in svc.backends.iter().zip(&names.seps).enumerate() {
        let lottery = if i + 1 < n {
            format!(
                " -m statistic --mode random --probability {}",
                probability(n - i)
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "-A {chain} {}{lottery} -j {sep}",
            comment(&format!("{spn} -> {ep}"))
        );
    }
}

fn sep_chain_rules(svc: &Service, ep: &Endpoint, sep: &str, out: &mut String) {
    let c = comment(&svc.service_port_name());
    // Hairpin: a backend reaching itself through the VIP must be SNATed.
    let _ = writeln!(out, "-A {sep} {c} -s {} -j KUBE-MARK-MASQ", ep.ip);
    let recent = if svc.affinity.is_some() {
        format!(" -m recent --name {sep} --set")
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "-A {sep} {c}{recent} {} -j DNAT --to-destination {ep}",
        proto_match(svc)
    );
}

pub(super) fn declare(chain: &str, out: &mut String) {
    let _ = writeln!(out, ":{chain} - [0:0]");
}

pub(super) fn declare_service(names: &Names, out: &mut String) {
    declare(&names.svc, out);
    for sep in &names.seps {
        declare(sep, out);
    }
}

pub(super) fn service_rules(svc: &Service, names: &Names, out: &mut String) {
    svc_chain_rules(svc, names, out);
    for (ep, sep) in svc.backends.iter().zip(&names.seps) {
        sep_chain_rules(svc, ep, sep, out);
    }
}

/// The rules of KUBE-MARK-MASQ and KUBE-POSTROUTING, which kube-proxy
/// also rewrites on every sync.
pub(super) fn masquerade_rules(out: &mut String) {
    let _ = writeln!(out, "-A KUBE-MARK-MASQ -j MARK --or-mark {MASQ_MARK}");
    let _ = writeln!(
        out,
        "-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN"
    );
    let _ = writeln!(out, "-A KUBE-POSTROUTING -j MARK --xor-mark {MASQ_MARK}");
    out.push_str(
        "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE\n",
    );
}

/// The whole nat table. Loaded without `--noflush`, it atomically replaces
/// whatever nat table was there.
pub fn nat_restore(services: &Services) -> String {
    let mut out = String::from(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n",
    );
    for chain in ["KUBE-SERVICES", "KUBE-MARK-MASQ", "KUBE-POSTROUTING"] {
        declare(chain, &mut out);
    }
    let names: Vec<Names> = services.services.iter().map(Names::of).collect();
    for n in &names {
        declare_service(n, &mut out);
    }
    out.push_str(
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n",
    );
    masquerade_rules(&mut out);
    for (svc, n) in services.services.iter().zip(&names) {
        let _ = writeln!(out, "-A KUBE-SERVICES {}", services_jump_spec(svc, n));
    }
    for (svc, n) in services.services.iter().zip(&names) {
        service_rules(svc, n, &mut out);
    }
    out.push_str("COMMIT\n");
    out
}

/// A `--noflush` snippet applying one services update. In --noflush mode a
/// `:CHAIN` line creates the chain, or flushes it if it exists, which is
/// how kube-proxy rewrites one service's chains in place.
pub fn nat_update(before: &Services, op: &UpdateOp) -> String {
    let mut out = String::from("*nat\n");
    match op {
        UpdateOp::AddService(svc) => {
            let n = Names::of(svc);
            declare_service(&n, &mut out);
            service_rules(svc, &n, &mut out);
            let _ = writeln!(out, "-A KUBE-SERVICES {}", services_jump_spec(svc, &n));
        }
        UpdateOp::DeleteService { name } => {
            if let Some(svc) = before.by_name(name) {
                let n = Names::of(svc);
                let _ = writeln!(out, "-D KUBE-SERVICES {}", services_jump_spec(svc, &n));
                for chain in std::iter::once(&n.svc).chain(&n.seps) {
                    let _ = writeln!(out, "-F {chain}\n-X {chain}");
                }
            }
        }
        UpdateOp::ChangeBackends { name, backends } => {
            if let Some(old) = before.by_name(name) {
                let new = Service {
                    backends: backends.clone(),
                    ..old.clone()
                };
                let n = Names::of(&new);
                declare_service(&n, &mut out);
                service_rules(&new, &n, &mut out);
                for ep in old.backends.iter().filter(|ep| !backends.contains(ep)) {
                    let chain = kube_sep_chain(old, ep);
                    let _ = writeln!(out, "-F {chain}\n-X {chain}");
                }
            }
        }
        UpdateOp::InsertRule { .. } | UpdateOp::DeleteRule { .. } => {}
    }
    out.push_str("COMMIT\n");
    out
}

/// `-s .. -d .. -p .. -m tcp --sport .. --dport .. -j ACCEPT`.
pub fn rule_spec(rule: &Rule) -> String {
    let mut parts = Vec::new();
    if let Some(c) = rule.src {
        parts.push(format!("-s {c}"));
    }
    if let Some(c) = rule.dst {
        parts.push(format!("-d {c}"));
    }
    if let Some(p) = rule.proto {
        parts.push(format!("-p {p}"));
        if rule.sport.is_some() || rule.dport.is_some() {
            parts.push(format!("-m {p}"));
        }
    }
    if let Some(r) = rule.sport {
        parts.push(format!("--sport {}", r.colon()));
    }
    if let Some(r) = rule.dport {
        parts.push(format!("--dport {}", r.colon()));
    }
    parts.push(format!("-j {}", target(rule.action)));
    parts.join(" ")
}

fn target(v: Verdict) -> &'static str {
    match v {
        Verdict::Accept => "ACCEPT",
        Verdict::Drop => "DROP",
    }
}

const ESTABLISHED_RULE: &str = "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n";

/// The whole filter table (atomic replace): FORWARD carries the rules in
/// order, its policy is the default policy.
pub fn filter_restore(fw: &Firewall) -> String {
    let mut out = format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD {} [0:0]\n:OUTPUT ACCEPT [0:0]\n",
        target(fw.default_policy)
    );
    if fw.accept_established {
        out.push_str(ESTABLISHED_RULE);
    }
    for rule in &fw.rules {
        let _ = writeln!(out, "-A FORWARD {}", rule_spec(rule));
    }
    out.push_str("COMMIT\n");
    out
}

/// A `--noflush` snippet inserting or deleting one FORWARD rule by
/// position (1-based in iptables, after the optional established rule).
pub fn filter_update(before: &Firewall, op: &UpdateOp) -> String {
    let offset = 1 + usize::from(before.accept_established);
    let mut out = String::from("*filter\n");
    match op {
        UpdateOp::InsertRule { index, rule } if *index >= before.rules.len() => {
            let _ = writeln!(out, "-A FORWARD {}", rule_spec(rule));
        }
        UpdateOp::InsertRule { index, rule } => {
            let _ = writeln!(out, "-I FORWARD {} {}", index + offset, rule_spec(rule));
        }
        UpdateOp::DeleteRule { index } => {
            let _ = writeln!(out, "-D FORWARD {}", index + offset);
        }
        _ => {}
    }
    out.push_str("COMMIT\n");
    out
}

/// Empty nat and filter tables with ACCEPT policies: the clean state.
pub const EMPTY_TABLES: &str = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";

/// Empty nat table only (what IPVS mode owns).
pub const EMPTY_NAT: &str = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n";

/// The binaries of one iptables backend. Legacy and nft backends load the
/// same rule text and differ only in these (and in how they are reset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tools {
    pub restore: &'static str,
    pub save: &'static str,
}

impl Tools {
    pub fn render_services(self, services: &crate::workload::Services) -> Vec<super::Step> {
        vec![super::Step::with_stdin(
            &[self.restore],
            nat_restore(services),
        )]
    }

    pub fn render_firewall(self, fw: &crate::workload::Firewall) -> Vec<super::Step> {
        vec![super::Step::with_stdin(&[self.restore], filter_restore(fw))]
    }

    pub fn render_services_update(
        self,
        before: &crate::workload::Services,
        op: &crate::workload::UpdateOp,
    ) -> Vec<super::Step> {
        vec![super::Step::with_stdin(
            &[self.restore, "--noflush"],
            nat_update(before, op),
        )]
    }

    pub fn render_firewall_update(
        self,
        before: &crate::workload::Firewall,
        op: &crate::workload::UpdateOp,
    ) -> Vec<super::Step> {
        vec![super::Step::with_stdin(
            &[self.restore, "--noflush"],
            filter_update(before, op),
        )]
    }

    pub fn dump_commands(self) -> Vec<super::Step> {
        vec![super::Step::new(&[self.save])]
    }
}
