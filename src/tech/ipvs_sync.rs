//! The `kube-proxy` update mode of the IPVS layout: what one run of
//! kube-proxy's IPVS sync loop does for one changed service.
//!
//! kubernetes/kubernetes `pkg/proxy/ipvs/proxier.go`,
//! `Proxier.syncProxyRules`. The IPVS proxier has no partial sync: every
//! sync walks every service.
//! - `createAndLinkKubeChain`: `EnsureChain` (`iptables -N`) for each of
//!   its chains and `EnsureRule` (`iptables -C`, then `-I` if missing) for
//!   each jump from a base chain, one iptables process each;
//! - `EnsureDummyDevice`, `ensureIPSet` (`ipset create … -exist`) per set,
//!   `GetLocalAddresses(kube-ipvs0)` and `GetAllLocalAddressesExcept`
//!   (netlink address dumps);
//! - per service: `syncService` (`GetVirtualServer`, add or update if it
//!   differs, bind the VIP unless bound) and `syncEndpoint`
//!   (`GetVirtualServer` again, `GetRealServers`, add the missing real
//!   servers, gracefully delete the stale ones);
//! - `syncIPSetEntries` per set: `ipset list NAME`, then one
//!   `ipset add … -exist` / `ipset del …` process per changed entry;
//! - one `iptables-restore --noflush` of its chains, written whole;
//! - unbind superfluous VIPs, then `GetVirtualServers` and
//!   `cleanLegacyService` deletes services no longer wanted.
//!
//! The emulation runs the same sequence with the guest's tools. It
//! keeps: the iptables ensures, the address dump, the set ensures, a walk
//! of every virtual service and its real servers (`ipvsadm -S -n`: one
//! service dump, then one destination dump per service, the netlink
//! requests `GetRealServers` makes), the change itself through ipvsadm,
//! the set listings and per-entry ipset processes, the nat restore, the
//! unbind and the service delete. It cannot be exact where kube-proxy
//! talks netlink in-process: here every call is a process (fork + exec +
//! the tool's own setup), and the walk makes one request per service
//! where kube-proxy makes three (two `GetVirtualServer`, one
//! `GetRealServers`) plus the final `GetVirtualServers` dump. Graceful
//! deletion (weight 0 until connections drain) is a plain delete, as if
//! nothing were connected. The layout has two of kube-proxy's ipsets and
//! three of its nat chains; the others (node ports, load balancers,
//! filter chains) are empty in its workloads and left out.

use std::fmt::Write;

use crate::workload::{Service, Services, UpdateOp};

use super::ipvs::{
    add_real, add_virtual, cluster_ip_entry, kube_chain_lines, kube_chain_rules, loop_back_entries,
    others, proto_flag, virtual_service, CLUSTER_IP_SET, DUMMY_DEVICE, KUBE_CHAINS, LOOP_BACK_SET,
    SET_OPTIONS,
};
use super::{iptables, Step};

/// The base-chain jumps kube-proxy's `EnsureRule` checks on every sync.
const JUMPS: [(&str, &str, &str); 3] = [
    ("PREROUTING", "kubernetes service portals", "KUBE-SERVICES"),
    ("OUTPUT", "kubernetes service portals", "KUBE-SERVICES"),
    (
        "POSTROUTING",
        "kubernetes postrouting rules",
        "KUBE-POSTROUTING",
    ),
];

const LEGACY: &str = "iptables-legacy";

fn ensure_iptables() -> Vec<Step> {
    let mut steps: Vec<Step> = KUBE_CHAINS
        .iter()
        // Exit 1 is "chain exists", which kube-proxy takes as success.
        .map(|c| Step::new(&[LEGACY, "-t", "nat", "-N", c]).tolerant())
        .collect();
    for (from, comment, to) in JUMPS {
        steps.push(Step::new(&[
            LEGACY,
            "-t",
            "nat",
            "-C",
            from,
            "-m",
            "comment",
            "--comment",
            comment,
            "-j",
            to,
        ]));
    }
    steps
}

fn ensure_sets() -> Vec<Step> {
    [
        (CLUSTER_IP_SET, "hash:ip,port"),
        (LOOP_BACK_SET, "hash:ip,port,ip"),
    ]
    .into_iter()
    .map(|(name, kind)| {
        let mut argv = vec!["ipset", "create", name, kind];
        argv.extend(SET_OPTIONS.split(' '));
        argv.push("-exist");
        Step::new(&argv)
    })
    .collect()
}

/// One set's `syncIPSetEntries`: list it, then a process per change.
fn sync_set(name: &str, added: &[String], removed: &[String]) -> Vec<Step> {
    let mut steps = vec![Step::new(&["ipset", "list", name])];
    for e in added {
        steps.push(Step::new(&["ipset", "add", name, e, "-exist"]));
    }
    for e in removed {
        steps.push(Step::new(&["ipset", "del", name, e]));
    }
    steps
}

/// `ipvsadm -R` input adding / removing real servers so `old` becomes
/// `new` (either may be absent: an added or a deleted service).
fn real_server_changes(old: Option<&Service>, new: Option<&Service>) -> String {
    let mut out = String::new();
    if let Some(svc) = new {
        if old.is_none() {
            out.push_str(&add_virtual(svc));
        }
        for ep in &svc.backends {
            if !old.is_some_and(|o| o.backends.contains(ep)) {
                out.push_str(&add_real(svc, ep));
            }
        }
        if let Some(o) = old {
            for ep in o.backends.iter().filter(|e| !svc.backends.contains(e)) {
                let _ = writeln!(out, "-d {} -r {ep}", virtual_service(o));
            }
        }
    }
    out
}

fn vip_arg(svc: &Service) -> String {
    format!("{}/32", svc.vip)
}

/// The steps of one sync from `before` to `before + op`.
pub fn render_services_update(before: &Services, op: &UpdateOp) -> Vec<Step> {
    let mut after = before.clone();
    // The dispatcher has checked the op against the model.
    let _ = after.apply(op);
    let Some(name) = op.service_name() else {
        return Vec::new();
    };
    let (old, new) = (before.by_name(name), after.by_name(name));
    let mut steps = ensure_iptables();
    steps.push(Step::new(&[
        "ip",
        "-o",
        "link",
        "show",
        "dev",
        DUMMY_DEVICE,
    ]));
    steps.extend(ensure_sets());
    steps.push(Step::new(&["ip", "-o", "-4", "address", "show"]));
    steps.push(Step::new(&["ipvsadm", "-S", "-n"]));
    if let Some(svc) = new.filter(|_| old.is_none()) {
        if !before.services.iter().any(|s| s.vip == svc.vip) {
            steps.push(Step::new(&[
                "ip",
                "address",
                "add",
                &vip_arg(svc),
                "dev",
                DUMMY_DEVICE,
            ]));
        }
    }
    let rules = real_server_changes(old, new);
    if !rules.is_empty() {
        steps.push(Step::with_stdin(&["ipvsadm", "-R"], rules));
    }
    let cluster = |s: Option<&Service>| s.map(cluster_ip_entry).into_iter().collect::<Vec<_>>();
    let (was, will) = (cluster(old), cluster(new));
    steps.extend(sync_set(
        CLUSTER_IP_SET,
        &difference(&will, &was),
        &difference(&was, &will),
    ));
    let loop_back = |s: &Services| loop_back_entries(s.services.iter());
    let (was, will) = (loop_back(before), loop_back(&after));
    steps.extend(sync_set(
        LOOP_BACK_SET,
        &will.difference(&was).cloned().collect::<Vec<_>>(),
        &was.difference(&will).cloned().collect::<Vec<_>>(),
    ));
    steps.push(Step::with_stdin(
        &[iptables::RESTORE, "--noflush"],
        format!("*nat\n{}{}COMMIT\n", kube_chain_lines(), kube_chain_rules()),
    ));
    if let (Some(svc), None) = (old, new) {
        if !others(before, name).any(|s| s.vip == svc.vip) {
            steps.push(Step::new(&[
                "ip",
                "address",
                "del",
                &vip_arg(svc),
                "dev",
                DUMMY_DEVICE,
            ]));
        }
        steps.push(Step::new(&[
            "ipvsadm",
            "-D",
            proto_flag(svc.proto),
            &format!("{}:{}", svc.vip, svc.port),
        ]));
    }
    steps
}

fn difference(a: &[String], b: &[String]) -> Vec<String> {
    a.iter().filter(|x| !b.contains(x)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::ServiceGen;

    fn services(n: usize) -> Services {
        Services {
            services: ServiceGen::plain(n, 2).expand(),
        }
    }

    fn argv0(steps: &[Step]) -> Vec<String> {
        steps.iter().map(|s| s.argv[..2].join(" ")).collect()
    }

    #[test]
    fn every_sync_walks_all_services_and_lists_the_sets() {
        let before = services(20);
        let target = before.services[3].clone();
        let op = UpdateOp::ChangeBackends {
            name: target.name.clone(),
            backends: vec![target.backends[0]],
        };
        let steps = render_services_update(&before, &op);
        let names = argv0(&steps);
        assert!(steps.iter().any(|s| s.argv == ["ipvsadm", "-S", "-n"]));
        assert_eq!(
            names.iter().filter(|n| *n == "ipset list").count(),
            2,
            "{names:?}"
        );
        assert_eq!(
            names.iter().filter(|n| *n == "iptables-legacy -t").count(),
            6
        );
        let r = steps.iter().find(|s| s.argv == ["ipvsadm", "-R"]).unwrap();
        assert_eq!(
            r.stdin,
            format!(
                "-d {} -r {}\n",
                virtual_service(&target),
                target.backends[1]
            )
        );
        let restore = steps
            .iter()
            .find(|s| s.argv[0] == iptables::RESTORE)
            .unwrap();
        assert_eq!(restore.argv[1], "--noflush");
        assert!(restore.stdin.starts_with("*nat\n:KUBE-SERVICES - [0:0]\n"));
        // The walk comes before the change, the restore after the sets.
        let pos = |want: &str| names.iter().position(|n| n == want).unwrap();
        assert!(pos("ipvsadm -S") < pos("ipvsadm -R"));
        assert!(pos("ipset list") < pos(&format!("{} --noflush", iptables::RESTORE)));
    }

    #[test]
    fn add_binds_and_delete_unbinds_and_removes_the_service() {
        let before = services(4);
        let extra = services(5).services[4].clone();
        let add = render_services_update(&before, &UpdateOp::AddService(extra.clone()));
        assert!(add
            .iter()
            .any(|s| s.argv.join(" ").starts_with("ip address add ")));
        let r = add.iter().find(|s| s.argv == ["ipvsadm", "-R"]).unwrap();
        assert_eq!(r.stdin.lines().count(), 3, "{}", r.stdin);
        assert!(add.iter().any(|s| s
            .argv
            .join(" ")
            .starts_with(&format!("ipset add {CLUSTER_IP_SET} "))));
        let mut with = before.clone();
        with.apply(&UpdateOp::AddService(extra.clone())).unwrap();
        let del = render_services_update(
            &with,
            &UpdateOp::DeleteService {
                name: extra.name.clone(),
            },
        );
        let last = del.last().unwrap();
        assert_eq!(last.argv[..2], ["ipvsadm", "-D"]);
        assert!(del.iter().any(|s| s
            .argv
            .join(" ")
            .starts_with(&format!("ipset del {CLUSTER_IP_SET} "))));
        assert!(del
            .iter()
            .any(|s| s.argv.join(" ").starts_with("ip address del ")));
        assert!(!del.iter().any(|s| s.argv == ["ipvsadm", "-R"]));
    }
}
