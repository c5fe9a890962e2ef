//! The `kube-proxy` update mode of the nftables services layouts
//! (`nftables` and `nftables-no-anon-maps`): what kube-proxy's nftables
//! proxier sends for one changed service.
//!
//! kubernetes/kubernetes `pkg/proxy/nftables/proxier.go`,
//! `Proxier.syncProxyRules`, on a partial sync (`tryPartialSync`):
//! - `setupNFTables` (table, base chains, the top-level chains and maps)
//!   runs on full syncs only; a partial sync does not re-add them;
//! - for the changed service only (`skipServiceUpdate` false),
//!   `ensureChain` adds and flushes its service chain and every endpoint
//!   chain (also those of endpoints that stayed), `tx.Add` re-declares its
//!   affinity sets, and the chains' rules are written again;
//! - map elements go through `nftElementStorage`: only a missing or
//!   changed `service-ips` element is added, and `cleanupLeftoverKeys`
//!   deletes the elements of a service that is gone;
//! - stale chains are found with `nftables.List(ctx, "chains")` and stale
//!   affinity sets with `List(ctx, "sets")`; knftables' `List` runs
//!   `nft --json list chains ip` and `nft --json list sets ip` (every
//!   table of the family, names filtered by table afterwards), i.e. two
//!   listings per sync: cheap for nft ≥ 1.0.1, which fetches only what the
//!   command lists, and a read of the whole ruleset each for older nft.
//!   Stale chains are flushed in this
//!   transaction and deleted by a later sync (at the start of
//!   `syncProxyRules`, once they are a second old: kernels before 6.2 may
//!   still see a reference from the just-deleted map element); stale
//!   affinity sets are deleted at once;
//! - everything goes to one `nft -f` transaction (knftables `Run`).
//!
//! What the emulation keeps: both listings, the add + flush +
//! rewrite of the changed service's chains, the element add / delete, the
//! flush of stale chains and deletion of stale sets in one transaction,
//! and the later transaction that deletes the stale chains (run right
//! after, so the state matches a full load and its cost is counted once).
//! What it leaves out: the layout's objects kube-proxy's has and
//! rulebench's does not (`cluster-ips` set and its element, the
//! no-endpoint and firewall maps, comments — nft 0.9.8 has no element
//! comments); the one-second wait before the stale chains go; the stale
//! chains are taken from the model (kube-proxy reads them from the
//! listing), the listings run for their cost.

use std::fmt::Write;

use crate::workload::{Service, Services, UpdateOp};

use super::nft;
use super::nftables::{
    endpoint_objects, endpoint_rules, service_chain_rules, service_ips_key, Dispatch, Names, TABLE,
};
use super::Step;

/// knftables' `List(ctx, "chains")` and `List(ctx, "sets")`: every chain
/// and set of the family as JSON (knftables filters by table itself).
pub const LIST_CHAINS_ARGV: [&str; 5] = ["nft", "--json", "list", "chains", "ip"];
pub const LIST_SETS_ARGV: [&str; 5] = ["nft", "--json", "list", "sets", "ip"];

/// The chains and sets a service owns in the layout.
fn owned(svc: &Service) -> (Vec<String>, Vec<String>) {
    let names = Names::of(svc);
    let mut chains = vec![names.service];
    let mut sets = Vec::new();
    for (chain, set) in names.endpoints {
        chains.push(chain);
        if svc.affinity.is_some() {
            sets.push(set);
        }
    }
    (chains, sets)
}

/// The two transactions of one partial sync from `before` to `after`:
/// the sync itself, and the later deletion of the chains it left stale
/// (empty when there are none).
pub(super) fn sync_transactions(
    before: &Services,
    after: &Services,
    op: &UpdateOp,
    dispatch: Dispatch,
) -> (String, String) {
    let t = TABLE;
    let mut tx = String::new();
    let Some(name) = op.service_name() else {
        return (tx, String::new());
    };
    let old = before.by_name(name);
    let new = after.by_name(name);
    if let Some(svc) = new {
        let names = Names::of(svc);
        for n in &names.endpoints {
            endpoint_objects(svc, n, &mut tx);
            let _ = writeln!(tx, "flush chain {t} {}", n.0);
        }
        let _ = writeln!(tx, "add chain {t} {0}\nflush chain {t} {0}", names.service);
        let element_changed = old.map(service_ips_key) != Some(service_ips_key(svc));
        if element_changed {
            let _ = writeln!(
                tx,
                "add element {t} service-ips {{ {} : goto {} }}",
                service_ips_key(svc),
                names.service
            );
        }
        service_chain_rules(svc, &names, dispatch, &mut tx);
        for (ep, n) in svc.backends.iter().zip(&names.endpoints) {
            endpoint_rules(svc, ep, n, &mut tx);
        }
    }
    let (kept_chains, kept_sets) = new.map(owned).unwrap_or_default();
    let (old_chains, old_sets) = old.map(owned).unwrap_or_default();
    let stale: Vec<&String> = old_chains
        .iter()
        .filter(|c| !kept_chains.contains(c))
        .collect();
    for chain in &stale {
        let _ = writeln!(tx, "flush chain {t} {chain}");
    }
    for set in old_sets.iter().filter(|s| !kept_sets.contains(s)) {
        let _ = writeln!(tx, "delete set {t} {set}");
    }
    if let (Some(svc), None) = (old, new) {
        let _ = writeln!(
            tx,
            "delete element {t} service-ips {{ {} }}",
            service_ips_key(svc)
        );
    }
    let mut later = String::new();
    for chain in stale {
        let _ = writeln!(later, "delete chain {t} {chain}");
    }
    (tx, later)
}

/// The steps of one kube-proxy partial sync.
pub(super) fn render_services_update(
    before: &Services,
    op: &UpdateOp,
    dispatch: Dispatch,
) -> Vec<Step> {
    let mut after = before.clone();
    // The dispatcher has checked the op against the model.
    let _ = after.apply(op);
    let (tx, later) = sync_transactions(before, &after, op, dispatch);
    let mut steps = vec![
        Step::new(&LIST_CHAINS_ARGV),
        Step::new(&LIST_SETS_ARGV),
        nft::load_step(tx),
    ];
    if !later.is_empty() {
        steps.push(nft::load_step(later));
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tech::nftables::numgen_vmap;
    use crate::workload::{Affinity, ServiceGen};

    fn services(n: usize) -> Services {
        Services {
            services: ServiceGen::plain(n, 2).expand(),
        }
    }

    #[test]
    fn a_change_lists_chains_and_sets_and_rewrites_only_that_service() {
        let before = services(30);
        let target = before.services[7].clone();
        let op = UpdateOp::ChangeBackends {
            name: target.name.clone(),
            backends: vec![target.backends[1]],
        };
        let steps = render_services_update(&before, &op, numgen_vmap);
        assert_eq!(steps.len(), 4, "{steps:?}");
        assert_eq!(steps[0].argv, LIST_CHAINS_ARGV);
        assert_eq!(steps[1].argv, LIST_SETS_ARGV);
        let tx = &steps[2].stdin;
        let names = Names::of(&target);
        let (kept, dropped) = (&names.endpoints[1].0, &names.endpoints[0].0);
        // The staying endpoint's chain is flushed and written again.
        assert!(tx.contains(&format!(
            "add chain {TABLE} {kept}\nflush chain {TABLE} {kept}\n"
        )));
        assert!(tx.contains(&format!("add rule {TABLE} {kept} ")));
        assert!(tx.contains(&format!("flush chain {TABLE} {}\n", names.service)));
        // The dropped one is flushed now, deleted by the next transaction.
        assert!(tx.contains(&format!("flush chain {TABLE} {dropped}\n")));
        assert!(!tx.contains("delete chain"));
        assert_eq!(steps[3].stdin, format!("delete chain {TABLE} {dropped}\n"));
        // The element still points at the same chain: not sent again.
        assert!(!tx.contains("element"), "{tx}");
        // Base objects are not re-added on a partial sync, other services
        // are not touched.
        assert!(!tx.contains("add map") && !tx.contains("add table"), "{tx}");
        let other = Names::of(&before.services[8]).service;
        assert!(!tx.contains(&other));
    }

    #[test]
    fn add_and_delete_send_the_element_and_clean_up_sets() {
        let before = services(5);
        let mut extra = services(6).services[5].clone();
        extra.affinity = Some(Affinity {
            timeout_seconds: 60,
        });
        let add =
            render_services_update(&before, &UpdateOp::AddService(extra.clone()), numgen_vmap);
        assert_eq!(add.len(), 3, "nothing stale after an add");
        assert!(add[2]
            .stdin
            .contains("add element ip kube-proxy service-ips"));
        assert!(add[2].stdin.contains("add set ip kube-proxy affinity-"));
        let mut with = before.clone();
        with.apply(&UpdateOp::AddService(extra.clone())).unwrap();
        let del = render_services_update(
            &with,
            &UpdateOp::DeleteService {
                name: extra.name.clone(),
            },
            numgen_vmap,
        );
        let tx = &del[2].stdin;
        assert!(tx.contains("delete element ip kube-proxy service-ips"));
        assert_eq!(tx.matches("delete set ").count(), 2, "{tx}");
        assert_eq!(del[3].stdin.matches("delete chain ").count(), 3);
        // Sets go after the flush of the chains whose rules use them.
        let flush = tx.find("flush chain").unwrap();
        assert!(tx.find("delete set").unwrap() > flush);
    }
}
