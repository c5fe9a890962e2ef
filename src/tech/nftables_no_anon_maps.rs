//! kube-proxy's nftables layout (table `ip kube-proxy`, the `service-ips`
//! verdict map, one chain per service and per endpoint) with no anonymous
//! map per service: the variant that tests where the nftables control
//! plane's time goes on 5.10 (a commit does per-set work that scans the
//! table's sets once per anonymous set, see FACTS "nftables control
//! plane").
//!
//! - A single-endpoint service jumps straight to its endpoint chain
//!   (`goto endpoint-…`), as kube-proxy PR #140723 does instead of
//!   `numgen random mod 1 vmap { 0 : goto … }`.
//! - A multi-endpoint service picks its endpoint with one `numgen` rule per
//!   endpoint, like the iptables layout's `statistic --mode random` cascade:
//!   rule i (0-based, of B) is `numgen random mod (B − i) == 0 goto
//!   endpoint-i`, the last one an unconditional `goto`, so each endpoint gets
//!   1/B. A named per-service map would be closer to kube-proxy, but nft
//!   0.9.8 cannot declare one: `typeof numgen … : verdict` is refused
//!   ("lacks typeof serialization") and `type mark : verdict` does not
//!   match numgen's integer type.
//!
//! So the only sets left are `service-ips` and the affinity sets; the rest
//! (chains, rules, map elements, updates) is `nftables.rs` unchanged.

use std::fmt::Write;

use crate::workload::{Service, Services, UpdateOp};

use super::nft;
use super::nftables::{services_ruleset_with, services_update_with, Names, TABLE};
use super::step::Step;

/// The endpoint pick without a map.
pub(super) fn numgen_rules(svc: &Service, names: &Names, out: &mut String) {
    let chain = &names.service;
    let count = names.endpoints.len();
    for (i, (endpoint, _)) in names.endpoints.iter().enumerate() {
        if i + 1 == count {
            let _ = writeln!(out, "add rule {TABLE} {chain} goto {endpoint}");
        } else {
            let _ = writeln!(
                out,
                "add rule {TABLE} {chain} numgen random mod {} == 0 goto {endpoint}",
                count - i
            );
        }
    }
    debug_assert_eq!(count, svc.backends.len());
}

/// The full `nft -f -` input for a services workload.
pub fn services_ruleset(services: &Services) -> String {
    services_ruleset_with(services, numgen_rules)
}

/// One transaction applying a services update.
pub fn services_update(before: &Services, op: &UpdateOp) -> String {
    services_update_with(before, op, numgen_rules)
}

pub fn render_services(services: &Services) -> Vec<Step> {
    vec![nft::load_step(services_ruleset(services))]
}

pub fn render_services_update(before: &Services, op: &UpdateOp) -> Vec<Step> {
    vec![nft::load_step(services_update(before, op))]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Workload;

    /// A single-endpoint service, a three-endpoint one and a single-endpoint
    /// one with ClientIP affinity.
    fn services() -> Services {
        let Workload::Services(s) = Workload::from_toml_str(
            r#"
[[services.service]]
name = "one"
vip = "10.96.0.10"
port = 80
backends = ["10.200.0.2:8080"]

[[services.service]]
name = "three"
vip = "10.96.0.11"
port = 53
proto = "udp"
backends = ["10.200.0.2:8080", "10.200.1.2:8080", "10.200.2.2:8080"]

[[services.service]]
name = "sticky"
vip = "10.96.0.12"
port = 80
affinity = "client-ip"
affinity_timeout = 600
backends = ["10.200.3.2:8080"]
"#,
        )
        .unwrap() else {
            unreachable!()
        };
        s
    }

    /// The rules of one chain, in order, without the `add rule TABLE CHAIN`.
    fn chain_rules(text: &str, chain_prefix: &str) -> Vec<String> {
        let prefix = format!("add rule {TABLE} {chain_prefix}");
        text.lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(|rest| rest.split_once(' ').map_or("", |(_, r)| r).to_string())
            .collect()
    }

    #[test]
    fn no_anonymous_map_anywhere() {
        let text = services_ruleset(&services());
        assert!(!text.contains("vmap {"), "{text}");
        assert!(!text.contains(" map {"), "{text}");
        // The only sets: the service-ips map and the affinity set.
        let sets: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("add map") || l.starts_with("add set"))
            .collect();
        assert_eq!(sets.len(), 2, "{sets:?}");
        assert!(sets[0].starts_with("add map ip kube-proxy service-ips "));
        assert!(sets[1].starts_with("add set ip kube-proxy affinity-"));
    }

    #[test]
    fn a_single_endpoint_service_jumps_to_its_endpoint() {
        let text = services_ruleset(&services());
        let names = Names::of(&services().services[0]);
        assert_eq!(
            chain_rules(&text, &names.service),
            [
                "ip daddr 10.96.0.10 ip saddr != 10.200.0.0/16 jump mark-for-masquerade"
                    .to_string(),
                format!("goto {}", names.endpoints[0].0),
            ]
        );
        // Everything else is kube-proxy's layout: only the pick differs.
        let nftables = super::super::nftables::services_ruleset(&services());
        assert!(nftables.contains("numgen random mod 1 vmap { 0 : goto endpoint-"));
        let without_pick = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| {
                    !(l.starts_with(&format!("add rule {TABLE} service-"))
                        && (l.contains(" numgen ") || l.contains(" goto endpoint-")))
                })
                .map(str::to_string)
                .collect()
        };
        assert_eq!(without_pick(&text), without_pick(&nftables));
    }

    #[test]
    fn several_endpoints_cascade_like_iptables_statistic() {
        let text = services_ruleset(&services());
        let svc = &services().services[1];
        let names = Names::of(svc);
        let rules = chain_rules(&text, &names.service);
        let e = |i: usize| names.endpoints[i].0.clone();
        assert_eq!(
            rules,
            [
                "ip daddr 10.96.0.11 ip saddr != 10.200.0.0/16 jump mark-for-masquerade"
                    .to_string(),
                format!("numgen random mod 3 == 0 goto {}", e(0)),
                format!("numgen random mod 2 == 0 goto {}", e(1)),
                format!("goto {}", e(2)),
            ]
        );
    }

    #[test]
    fn affinity_rules_stay_before_the_pick() {
        let text = services_ruleset(&services());
        let svc = &services().services[2];
        let names = Names::of(svc);
        let rules = chain_rules(&text, &names.service);
        let (endpoint, set) = &names.endpoints[0];
        assert_eq!(rules.len(), 3, "{rules:#?}");
        assert_eq!(rules[1], format!("ip saddr @{set} goto {endpoint}"));
        assert_eq!(rules[2], format!("goto {endpoint}"));
    }

    #[test]
    fn a_change_rewrites_the_pick_in_one_transaction() {
        let before = services();
        let op = UpdateOp::ChangeBackends {
            name: "one".into(),
            backends: vec![
                "10.200.0.2:8080".parse().unwrap(),
                "10.200.1.2:8080".parse().unwrap(),
            ],
        };
        let text = services_update(&before, &op);
        let mut after = before.clone();
        after.apply(&op).unwrap();
        let names = Names::of(after.by_name("one").unwrap());
        let flush = format!("flush chain {TABLE} {}\n", names.service);
        let (added, rules) = text
            .split_once(&flush)
            .expect("the service chain is flushed");
        assert!(
            added.contains("add chain ip kube-proxy endpoint-"),
            "{text}"
        );
        assert_eq!(
            chain_rules(rules, &names.service)[1..],
            [
                format!("numgen random mod 2 == 0 goto {}", names.endpoints[0].0),
                format!("goto {}", names.endpoints[1].0),
            ]
        );
        // Back to one endpoint: a goto again, the other endpoint removed.
        let back = UpdateOp::ChangeBackends {
            name: "one".into(),
            backends: vec!["10.200.1.2:8080".parse().unwrap()],
        };
        let text = services_update(&after, &back);
        assert!(!text.contains("numgen"), "{text}");
        assert!(text.contains(&format!("delete chain {TABLE} {}\n", names.endpoints[0].0)));
        assert_eq!(
            render_services_update(&after, &back)[0].argv,
            nft::LOAD_ARGV
        );
    }

    #[test]
    fn full_load_is_one_atomic_transaction() {
        let steps = render_services(&services());
        assert_eq!(steps.len(), 1);
        assert!(steps[0].stdin.starts_with(
            "table ip kube-proxy\ndelete table ip kube-proxy\nadd table ip kube-proxy\n"
        ));
        // nft 0.9.8 wants `;` or a newline before every closing brace.
        assert!(!steps[0].stdin.contains("} }"));
    }
}
