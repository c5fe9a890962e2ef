//! nftables in kube-proxy's nftables-mode layout (table `ip kube-proxy`):
//! one `service-ips` verdict map lookup per packet instead of a linear walk
//! of KUBE-SERVICES, then `numgen random mod N vmap` to an endpoint chain.
//!
//! Written for nftables 0.9.8: `add ...` commands in one `nft -f -`
//! transaction, no table/set comments (newer than 0.9.8 userspace + 5.10),
//! and only the nat-path chains (no filter-hook helper chains for
//! no-endpoint / unallocated-IP rejection, which the iptables layout here
//! does not model either).

use std::fmt::Write;

use crate::workload::topology::CLUSTER_CIDR;
use crate::workload::{Endpoint, Firewall, Service, Services, UpdateOp};

use super::hash::{nft_endpoint_base, nft_service_base};
use super::iptables_layout::MASQ_MARK;
use super::nft::{self, table_preamble};
use super::nftables_firewall;
use super::normalize::normalize_nft_ruleset;
use super::step::Step;

pub const TABLE: &str = "ip kube-proxy";

/// Kept here too: the measurements' NOTRACK table loads through it.
pub use super::nft::LOAD_ARGV;

/// A service's chain and set names, hashed once per service.
pub(super) struct Names {
    pub(super) service: String,
    /// Per backend, in order: (endpoint chain, affinity set).
    pub(super) endpoints: Vec<(String, String)>,
}

impl Names {
    pub(super) fn of(svc: &Service) -> Names {
        Names {
            service: format!("service-{}", nft_service_base(svc)),
            endpoints: svc
                .backends
                .iter()
                .map(|ep| {
                    let base = nft_endpoint_base(svc, ep);
                    (format!("endpoint-{base}"), format!("affinity-{base}"))
                })
                .collect(),
        }
    }

    fn endpoint(&self, svc: &Service, ep: &Endpoint) -> &(String, String) {
        let i = svc
            .backends
            .iter()
            .position(|e| e == ep)
            .expect("endpoint belongs to the service");
        &self.endpoints[i]
    }
}

pub(super) fn service_ips_key(svc: &Service) -> String {
    format!("{} . {} . {}", svc.vip, svc.proto, svc.port)
}

fn base_rules(out: &mut String) {
    let t = TABLE;
    let _ = write!(
        out,
        "add map {t} service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict ; }}\n\
         add chain {t} mark-for-masquerade\n\
         add chain {t} masquerading\n\
         add chain {t} services\n\
         add chain {t} nat-output {{ type nat hook output priority -100 ; }}\n\
         add chain {t} nat-postrouting {{ type nat hook postrouting priority 100 ; }}\n\
         add chain {t} nat-prerouting {{ type nat hook prerouting priority -100 ; }}\n\
         add rule {t} mark-for-masquerade mark set mark or {m}\n\
         add rule {t} masquerading mark and {m} == 0 return\n\
         add rule {t} masquerading mark set mark xor {m}\n\
         add rule {t} masquerading masquerade fully-random\n\
         add rule {t} nat-output jump services\n\
         add rule {t} nat-postrouting jump masquerading\n\
         add rule {t} nat-prerouting jump services\n\
         add rule {t} services ip daddr . meta l4proto . th dport vmap @service-ips\n",
        m = MASQ_MARK
    );
}

pub(super) fn endpoint_objects(svc: &Service, (chain, set): &(String, String), out: &mut String) {
    let t = TABLE;
    if let Some(a) = svc.affinity {
        let _ = writeln!(
            out,
            "add set {t} {set} {{ type ipv4_addr ; flags dynamic,timeout ; timeout {}s ; }}",
            a.timeout_seconds
        );
    }
    let _ = writeln!(out, "add chain {t} {chain}");
}

pub(super) fn endpoint_rules(
    svc: &Service,
    ep: &Endpoint,
    (chain, set): &(String, String),
    out: &mut String,
) {
    let t = TABLE;
    let _ = writeln!(
        out,
        "add rule {t} {chain} ip saddr {} jump mark-for-masquerade",
        ep.ip
    );
    if svc.affinity.is_some() {
        let _ = writeln!(out, "add rule {t} {chain} update @{set} {{ ip saddr }}");
    }
    let _ = writeln!(
        out,
        "add rule {t} {chain} meta l4proto {} dnat to {ep}",
        svc.proto
    );
}

/// How a service chain picks one of its endpoints: the last rule(s) of
/// the chain. kube-proxy's layout is [`numgen_vmap`]; the
/// `nftables-no-anon-maps` variant renders the same layout with another.
pub(super) type Dispatch = fn(&Service, &Names, &mut String);

/// kube-proxy's pick: `numgen random mod N vmap { 0 : goto …, … }`, one
/// anonymous verdict map per service.
pub(super) fn numgen_vmap(svc: &Service, names: &Names, out: &mut String) {
    let slots = names
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, (endpoint, _))| format!("{i} : goto {endpoint}"))
        .collect::<Vec<_>>()
        .join(" , ");
    let _ = writeln!(
        out,
        "add rule {TABLE} {} numgen random mod {} vmap {{ {slots} }}",
        names.service,
        svc.backends.len()
    );
}

pub(super) fn service_chain_rules(
    svc: &Service,
    names: &Names,
    dispatch: Dispatch,
    out: &mut String,
) {
    let t = TABLE;
    let chain = &names.service;
    let _ = writeln!(
        out,
        "add rule {t} {chain} ip daddr {} ip saddr != {CLUSTER_CIDR} jump mark-for-masquerade",
        svc.vip
    );
    // Affinity: a client seen recently by an endpoint goes straight back.
    if svc.affinity.is_some() {
        for (endpoint, set) in &names.endpoints {
            let _ = writeln!(out, "add rule {t} {chain} ip saddr @{set} goto {endpoint}");
        }
    }
    dispatch(svc, names, out);
}

/// Everything one service adds: sets and chains first (rules refer to
/// them), then rules, then the map element that makes it reachable.
fn service_block(svc: &Service, dispatch: Dispatch, out: &mut String) {
    let names = Names::of(svc);
    let _ = writeln!(out, "# {}", svc.service_port_name());
    let _ = writeln!(out, "add chain {TABLE} {}", names.service);
    for n in &names.endpoints {
        endpoint_objects(svc, n, out);
    }
    service_chain_rules(svc, &names, dispatch, out);
    for (ep, n) in svc.backends.iter().zip(&names.endpoints) {
        endpoint_rules(svc, ep, n, out);
    }
    let _ = writeln!(
        out,
        "add element {TABLE} service-ips {{ {} : goto {} }}",
        service_ips_key(svc),
        names.service
    );
}

fn delete_endpoint((chain, _): &(String, String), out: &mut String) {
    let _ = writeln!(
        out,
        "flush chain {TABLE} {chain}\ndelete chain {TABLE} {chain}"
    );
}

fn delete_affinity_set(svc: &Service, (_, set): &(String, String), out: &mut String) {
    if svc.affinity.is_some() {
        let _ = writeln!(out, "delete set {TABLE} {set}");
    }
}

/// The full `nft -f -` input for a services workload.
pub fn services_ruleset(services: &Services) -> String {
    services_ruleset_with(services, numgen_vmap)
}

/// One transaction applying a services update.
pub fn services_update(before: &Services, op: &UpdateOp) -> String {
    services_update_with(before, op, numgen_vmap)
}

/// [`services_ruleset`] with another endpoint pick.
pub(super) fn services_ruleset_with(services: &Services, dispatch: Dispatch) -> String {
    let mut out = table_preamble(TABLE);
    base_rules(&mut out);
    for svc in &services.services {
        service_block(svc, dispatch, &mut out);
    }
    out
}

/// [`services_update`] with another endpoint pick.
pub(super) fn services_update_with(before: &Services, op: &UpdateOp, dispatch: Dispatch) -> String {
    let t = TABLE;
    let mut out = String::new();
    match op {
        UpdateOp::AddService(svc) => service_block(svc, dispatch, &mut out),
        UpdateOp::DeleteService { name } => {
            if let Some(svc) = before.by_name(name) {
                let names = Names::of(svc);
                let _ = writeln!(
                    out,
                    "delete element {t} service-ips {{ {} }}",
                    service_ips_key(svc)
                );
                let chain = &names.service;
                let _ = writeln!(out, "flush chain {t} {chain}\ndelete chain {t} {chain}");
                for n in &names.endpoints {
                    delete_endpoint(n, &mut out);
                }
                // Sets last: the deleted chains' rules referenced them.
                for n in &names.endpoints {
                    delete_affinity_set(svc, n, &mut out);
                }
            }
        }
        UpdateOp::ChangeBackends { name, backends } => {
            if let Some(old) = before.by_name(name) {
                let new = Service {
                    backends: backends.clone(),
                    ..old.clone()
                };
                let (old_names, new_names) = (Names::of(old), Names::of(&new));
                let added: Vec<_> = backends
                    .iter()
                    .filter(|e| !old.backends.contains(e))
                    .collect();
                let removed: Vec<_> = old
                    .backends
                    .iter()
                    .filter(|e| !backends.contains(e))
                    .collect();
                for ep in &added {
                    endpoint_objects(&new, new_names.endpoint(&new, ep), &mut out);
                }
                for ep in &added {
                    endpoint_rules(&new, ep, new_names.endpoint(&new, ep), &mut out);
                }
                let _ = writeln!(out, "flush chain {t} {}", new_names.service);
                service_chain_rules(&new, &new_names, dispatch, &mut out);
                for ep in &removed {
                    delete_endpoint(old_names.endpoint(old, ep), &mut out);
                }
                for ep in &removed {
                    delete_affinity_set(old, old_names.endpoint(old, ep), &mut out);
                }
            }
        }
        UpdateOp::InsertRule { .. } | UpdateOp::DeleteRule { .. } => {}
    }
    out
}

pub fn render_services(services: &Services) -> Vec<Step> {
    vec![nft::load_step(services_ruleset(services))]
}

pub fn render_services_update(before: &Services, op: &UpdateOp) -> Vec<Step> {
    vec![nft::load_step(services_update(before, op))]
}

/// Set-based firewall layout (see `nftables_firewall`).
pub fn render_firewall(fw: &Firewall) -> Vec<Step> {
    vec![nft::load_step(nftables_firewall::sets_ruleset(fw))]
}

pub fn render_firewall_update(before: &Firewall, op: &UpdateOp) -> Vec<Step> {
    vec![nft::load_step(nftables_firewall::sets_update(before, op))]
}

/// Linear firewall layout: one nft rule per rule, like iptables.
pub fn render_firewall_linear(fw: &Firewall) -> Vec<Step> {
    vec![nft::load_step(nftables_firewall::linear_ruleset(fw))]
}

pub fn render_firewall_linear_update(before: &Firewall, op: &UpdateOp) -> Vec<Step> {
    nftables_firewall::linear_update(before, op)
}

pub fn dump_commands() -> Vec<Step> {
    vec![Step::new(&["nft", "list", "ruleset"])]
}

pub fn normalize(dump: &str) -> String {
    normalize_nft_ruleset(dump)
}

/// Deletes only the tables this technology creates.
pub fn reset_steps() -> Vec<Step> {
    let mut text = String::new();
    for table in [TABLE, nftables_firewall::TABLE] {
        let _ = writeln!(text, "table {table}\ndelete table {table}");
    }
    vec![nft::load_step(text)]
}
