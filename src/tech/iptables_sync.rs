//! The `kube-proxy` update mode of the iptables layout (both backends):
//! what kube-proxy's iptables proxier sends for one changed service.
//!
//! kubernetes/kubernetes `pkg/proxy/iptables/proxier.go`,
//! `Proxier.syncProxyRules`, on a partial sync (`tryPartialSync`: the
//! MinimizeIPTablesRestore behaviour, the default since 1.27):
//! - it skips the `EnsureChain` / `EnsureRule` calls for the base-chain
//!   jumps (those run on full syncs only);
//! - it writes a chain line for every top-level chain (nat: KUBE-SERVICES,
//!   KUBE-NODEPORTS, KUBE-POSTROUTING, KUBE-MARK-MASQ; filter:
//!   KUBE-SERVICES, KUBE-EXTERNAL-SERVICES, KUBE-FORWARD, KUBE-NODEPORTS,
//!   KUBE-PROXY-FIREWALL), which under `--noflush` flushes the chain, and
//!   writes them whole again: the KUBE-POSTROUTING and KUBE-MARK-MASQ rules
//!   and one KUBE-SERVICES jump per service — every service, changed or not;
//! - only a service whose Service or EndpointSlice changed gets its
//!   KUBE-SVC-* / KUBE-SEP-* chain lines and rules written (the others go
//!   to a discard buffer);
//! - unless in large-cluster mode, it runs `iptables-save -t nat`
//!   (`SaveInto(TableNAT)`) to find service chains no longer in use, and
//!   writes a chain line (flush) and `-X` for each;
//! - all of it goes to one `iptables-restore --noflush` (filter, then nat).
//!
//! What the emulation keeps: the `iptables-save -t nat` walk, the whole
//! KUBE-SERVICES rewrite (N jump lines), the masquerade chains, the
//! changed service's chains, the flush and `-X` of stale chains, all in
//! one `--noflush` restore. What it leaves out, and why:
//! - the filter table section and KUBE-NODEPORTS: rulebench's layout has
//!   no filter chains and no node ports (its full load writes only these
//!   nat chains), and declaring them would leave a state the full load
//!   does not have. That part is a constant ~10 lines, whatever N.
//! - large-cluster mode (over 1,000 endpoints: no comments on endpoint
//!   rules, and the `iptables-save` only once per sync period): the
//!   layout keeps kube-proxy's comments at every N, so the emulation
//!   saves on every sync, as kube-proxy does below the threshold.
//! - kube-proxy computes the stale chains from the save output; the
//!   renderer is pure, so it takes them from the model (the same chains)
//!   and the save is run for its cost only.
//! - kube-proxy passes `-w` / `--counters`; neither changes the work done.

use std::fmt::Write;

use crate::workload::{Service, Services, UpdateOp};

use super::iptables_layout::{
    declare, declare_service, masquerade_rules, service_rules, services_jump_spec, Names, Tools,
};
use super::Step;

/// The one `--noflush` restore of a partial sync: `after` is the model
/// once `op` is applied, `op` names the one changed service.
pub fn nat_sync(before: &Services, after: &Services, op: &UpdateOp) -> String {
    let changed = op.service_name();
    let mut chains = String::from("*nat\n");
    let mut rules = String::new();
    for chain in ["KUBE-SERVICES", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"] {
        declare(chain, &mut chains);
    }
    masquerade_rules(&mut rules);
    for svc in &after.services {
        let names = Names::of(svc);
        let _ = writeln!(
            rules,
            "-A KUBE-SERVICES {}",
            services_jump_spec(svc, &names)
        );
        if Some(svc.name.as_str()) == changed {
            declare_service(&names, &mut chains);
            service_rules(svc, &names, &mut rules);
        }
    }
    for chain in stale_chains(before, after, changed) {
        declare(&chain, &mut chains);
        let _ = writeln!(rules, "-X {chain}");
    }
    chains + &rules + "COMMIT\n"
}

/// The service chains `before` had for the changed service that `after`
/// no longer has: what kube-proxy finds in its `iptables-save`.
fn stale_chains(before: &Services, after: &Services, changed: Option<&str>) -> Vec<String> {
    let Some(name) = changed else {
        return Vec::new();
    };
    let chains = |s: Option<&Service>| -> Vec<String> {
        s.map(|svc| {
            let n = Names::of(svc);
            std::iter::once(n.svc).chain(n.seps).collect()
        })
        .unwrap_or_default()
    };
    let kept = chains(after.by_name(name));
    chains(before.by_name(name))
        .into_iter()
        .filter(|c| !kept.contains(c))
        .collect()
}

/// The steps of one kube-proxy partial sync: the nat save, then the restore.
pub fn render_services_update(tools: Tools, before: &Services, op: &UpdateOp) -> Vec<Step> {
    let mut after = before.clone();
    // The dispatcher has checked the op against the model.
    let _ = after.apply(op);
    vec![
        Step::new(&[tools.save, "-t", "nat"]),
        Step::with_stdin(&[tools.restore, "--noflush"], nat_sync(before, &after, op)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tech::hash::kube_sep_chain;
    use crate::tech::iptables;
    use crate::workload::ServiceGen;

    pub(crate) fn services_workload(n: usize) -> Services {
        Services {
            services: ServiceGen::plain(n, 2).expand(),
        }
    }

    fn jump_lines(text: &str) -> usize {
        text.lines()
            .filter(|l| l.starts_with("-A KUBE-SERVICES "))
            .count()
    }

    #[test]
    fn a_sync_rewrites_every_services_jump_and_only_the_changed_chains() {
        let before = services_workload(50);
        let target = before.services[20].clone();
        let change = UpdateOp::ChangeBackends {
            name: target.name.clone(),
            backends: vec![target.backends[0]],
        };
        let steps = render_services_update(iptables::TOOLS, &before, &change);
        assert_eq!(steps[0].argv, ["iptables-legacy-save", "-t", "nat"]);
        assert_eq!(steps[1].argv, ["iptables-legacy-restore", "--noflush"]);
        let text = &steps[1].stdin;
        assert!(text.starts_with("*nat\n:KUBE-SERVICES - [0:0]\n"), "{text}");
        assert!(text.ends_with("COMMIT\n"));
        assert_eq!(jump_lines(text), 50, "all N jumps, not one");
        // The changed service's chains only: one SVC and its SEPs.
        let svc_decls = text.lines().filter(|l| l.starts_with(":KUBE-SVC-")).count();
        assert_eq!(svc_decls, 1, "{text}");
        // The dropped endpoint's chain is flushed and removed.
        let dropped = kube_sep_chain(&target, &target.backends[1]);
        assert!(text.contains(&format!(":{dropped} - [0:0]\n")));
        assert!(text.contains(&format!("-X {dropped}\n")));
        assert!(!text.contains(&format!("-A {dropped} ")));
        // The masquerade chains are rewritten too.
        assert!(text.contains("-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n"));
    }

    #[test]
    fn add_and_delete_keep_the_model_order() {
        let before = services_workload(10);
        let extra = services_workload(11).services[10].clone();
        let add = render_services_update(iptables::TOOLS, &before, &UpdateOp::AddService(extra));
        let text = &add[1].stdin;
        assert_eq!(jump_lines(text), 11);
        let last_jump = text
            .lines()
            .rev()
            .find(|l| l.starts_with("-A KUBE-SERVICES "))
            .unwrap();
        assert!(last_jump.contains("10.96."), "{last_jump}");
        let gone = before.services[0].clone();
        let del = render_services_update(
            iptables::TOOLS,
            &before,
            &UpdateOp::DeleteService {
                name: gone.name.clone(),
            },
        );
        let text = &del[1].stdin;
        assert_eq!(jump_lines(text), 9);
        let names = Names::of(&gone);
        for chain in std::iter::once(&names.svc).chain(&names.seps) {
            assert!(text.contains(&format!("-X {chain}\n")), "{chain}");
            assert!(!text.contains(&format!("-A {chain} ")), "{chain}");
        }
    }
}
