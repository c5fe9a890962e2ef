//! Renderer tests on a small workload (exact text), and dispatcher checks.

use super::*;
use crate::workload::{Endpoint, Service, Workload};

/// Two services with two backends each: a plain TCP one and a UDP one
/// with ClientIP affinity.
pub(crate) fn sample_services() -> Services {
    let Workload::Services(s) = Workload::from_toml_str(crate::workload::tests::TWO).unwrap()
    else {
        unreachable!()
    };
    s
}

pub(crate) fn sample_firewall() -> Firewall {
    let Workload::Firewall(f) = Workload::from_toml_str(
        r#"
[firewall]
default_policy = "drop"
accept_established = true
[[firewall.rule]]
src = "172.16.0.1/32"
dst = "10.200.0.2/32"
proto = "tcp"
dport = 8080
action = "drop"
[[firewall.rule]]
src = "10.100.0.0/24"
dst = "10.200.0.0/16"
proto = "tcp"
dport = "8080-8081"
action = "accept"
"#,
    )
    .unwrap() else {
        unreachable!()
    };
    f
}

fn ep(s: &str) -> Endpoint {
    s.parse().unwrap()
}

fn only_stdin(steps: Vec<Step>) -> String {
    assert_eq!(steps.len(), 1, "{steps:?}");
    steps.into_iter().next().unwrap().stdin
}

const IPTABLES_NAT: &str = r#"*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SVC-4HWD6WD2BXF6N7ZC - [0:0]
:KUBE-SEP-DYCUVXBF7RH27W7M - [0:0]
:KUBE-SEP-7AQP2UYBSHYHIHNZ - [0:0]
:KUBE-SVC-AFFGOHOLTDDPXU2Q - [0:0]
:KUBE-SEP-K7X2HXXUDFCXKUOH - [0:0]
:KUBE-SEP-J57EM5JFEU6NLWPS - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
-A KUBE-SERVICES -m comment --comment "default/web:p80 cluster IP" -m tcp -p tcp -d 10.96.0.10 --dport 80 -j KUBE-SVC-4HWD6WD2BXF6N7ZC
-A KUBE-SERVICES -m comment --comment "default/dns:p53 cluster IP" -m udp -p udp -d 10.96.0.11 --dport 53 -j KUBE-SVC-AFFGOHOLTDDPXU2Q
-A KUBE-SVC-4HWD6WD2BXF6N7ZC -m comment --comment "default/web:p80 cluster IP" -m tcp -p tcp -d 10.96.0.10 --dport 80 ! -s 10.200.0.0/16 -j KUBE-MARK-MASQ
-A KUBE-SVC-4HWD6WD2BXF6N7ZC -m comment --comment "default/web:p80 -> 10.200.0.2:8080" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-DYCUVXBF7RH27W7M
-A KUBE-SVC-4HWD6WD2BXF6N7ZC -m comment --comment "default/web:p80 -> 10.200.1.2:8080" -j KUBE-SEP-7AQP2UYBSHYHIHNZ
-A KUBE-SEP-DYCUVXBF7RH27W7M -m comment --comment default/web:p80 -s 10.200.0.2 -j KUBE-MARK-MASQ
-A KUBE-SEP-DYCUVXBF7RH27W7M -m comment --comment default/web:p80 -m tcp -p tcp -j DNAT --to-destination 10.200.0.2:8080
-A KUBE-SEP-7AQP2UYBSHYHIHNZ -m comment --comment default/web:p80 -s 10.200.1.2 -j KUBE-MARK-MASQ
-A KUBE-SEP-7AQP2UYBSHYHIHNZ -m comment --comment default/web:p80 -m tcp -p tcp -j DNAT --to-destination 10.200.1.2:8080
-A KUBE-SVC-AFFGOHOLTDDPXU2Q -m comment --comment "default/dns:p53 cluster IP" -m udp -p udp -d 10.96.0.11 --dport 53 ! -s 10.200.0.0/16 -j KUBE-MARK-MASQ
-A KUBE-SVC-AFFGOHOLTDDPXU2Q -m comment --comment "default/dns:p53 -> 10.200.0.2:8080" -m recent --name KUBE-SEP-K7X2HXXUDFCXKUOH --rcheck --seconds 10800 --reap -j KUBE-SEP-K7X2HXXUDFCXKUOH
-A KUBE-SVC-AFFGOHOLTDDPXU2Q -m comment --comment "default/dns:p53 -> 10.200.1.2:8080" -m recent --name KUBE-SEP-J57EM5JFEU6NLWPS --rcheck --seconds 10800 --reap -j KUBE-SEP-J57EM5JFEU6NLWPS
-A KUBE-SVC-AFFGOHOLTDDPXU2Q -m comment --comment "default/dns:p53 -> 10.200.0.2:8080" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-K7X2HXXUDFCXKUOH
-A KUBE-SVC-AFFGOHOLTDDPXU2Q -m comment --comment "default/dns:p53 -> 10.200.1.2:8080" -j KUBE-SEP-J57EM5JFEU6NLWPS
-A KUBE-SEP-K7X2HXXUDFCXKUOH -m comment --comment default/dns:p53 -s 10.200.0.2 -j KUBE-MARK-MASQ
-A KUBE-SEP-K7X2HXXUDFCXKUOH -m comment --comment default/dns:p53 -m recent --name KUBE-SEP-K7X2HXXUDFCXKUOH --set -m udp -p udp -j DNAT --to-destination 10.200.0.2:8080
-A KUBE-SEP-J57EM5JFEU6NLWPS -m comment --comment default/dns:p53 -s 10.200.1.2 -j KUBE-MARK-MASQ
-A KUBE-SEP-J57EM5JFEU6NLWPS -m comment --comment default/dns:p53 -m recent --name KUBE-SEP-J57EM5JFEU6NLWPS --set -m udp -p udp -j DNAT --to-destination 10.200.1.2:8080
COMMIT
"#;

#[test]
fn iptables_full_load_is_kube_proxy_layout() {
    let s = sample_services();
    for tech in [Tech::IptablesLegacy, Tech::IptablesNft] {
        let steps = render_services(tech, &s).unwrap();
        let binary = if tech == Tech::IptablesLegacy {
            "iptables-legacy-restore"
        } else {
            "iptables-nft-restore"
        };
        assert_eq!(steps[0].argv, [binary]);
        assert_eq!(only_stdin(steps), IPTABLES_NAT, "{tech}");
    }
}

#[test]
fn probabilities_follow_kube_proxy() {
    assert_eq!(iptables_layout::probability(3), "0.3333333333");
    assert_eq!(iptables_layout::probability(2), "0.5000000000");
    assert_eq!(iptables_layout::probability(7), "0.1428571429");
    let mut s = sample_services();
    s.services[0].backends.push(ep("10.200.2.2:8080"));
    let text = iptables_layout::nat_restore(&s);
    let web: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("-A KUBE-SVC-4HWD6WD2BXF6N7ZC") && l.contains("->"))
        .collect();
    assert_eq!(web.len(), 3);
    assert!(web[0].contains("--probability 0.3333333333"));
    assert!(web[1].contains("--probability 0.5000000000"));
    assert!(
        !web[2].contains("statistic"),
        "the last endpoint is unconditional"
    );
}

#[test]
fn chain_names_have_kube_proxy_shape() {
    let s = sample_services();
    let svc = hash::kube_svc_chain(&s.services[0]);
    let sep = hash::kube_sep_chain(&s.services[0], &s.services[0].backends[0]);
    for (name, prefix) in [(svc, "KUBE-SVC-"), (sep, "KUBE-SEP-")] {
        let h = name.strip_prefix(prefix).unwrap();
        assert_eq!(h.len(), 16);
        assert!(h
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)));
        assert!(
            name.len() <= 28,
            "iptables chain names are at most 28 chars"
        );
    }
}

#[test]
fn iptables_updates_touch_one_service() {
    let s = sample_services();
    let del = only_stdin(
        render_services_update(
            Tech::IptablesLegacy,
            &s,
            &UpdateOp::DeleteService { name: "web".into() },
        )
        .unwrap(),
    );
    assert_eq!(
        del,
        "*nat\n\
         -D KUBE-SERVICES -m comment --comment \"default/web:p80 cluster IP\" -m tcp -p tcp -d 10.96.0.10 --dport 80 -j KUBE-SVC-4HWD6WD2BXF6N7ZC\n\
         -F KUBE-SVC-4HWD6WD2BXF6N7ZC\n-X KUBE-SVC-4HWD6WD2BXF6N7ZC\n\
         -F KUBE-SEP-DYCUVXBF7RH27W7M\n-X KUBE-SEP-DYCUVXBF7RH27W7M\n\
         -F KUBE-SEP-7AQP2UYBSHYHIHNZ\n-X KUBE-SEP-7AQP2UYBSHYHIHNZ\n\
         COMMIT\n"
    );
    let steps = render_services_update(
        Tech::IptablesNft,
        &s,
        &UpdateOp::ChangeBackends {
            name: "web".into(),
            backends: vec![ep("10.200.1.2:8080")],
        },
    )
    .unwrap();
    assert_eq!(steps[0].argv, ["iptables-nft-restore", "--noflush"]);
    let chg = &steps[0].stdin;
    assert!(
        chg.starts_with(
            "*nat\n:KUBE-SVC-4HWD6WD2BXF6N7ZC - [0:0]\n:KUBE-SEP-7AQP2UYBSHYHIHNZ - [0:0]\n"
        ),
        "{chg}"
    );
    assert!(
        chg.ends_with("-F KUBE-SEP-DYCUVXBF7RH27W7M\n-X KUBE-SEP-DYCUVXBF7RH27W7M\nCOMMIT\n"),
        "{chg}"
    );
    assert!(
        !chg.contains("KUBE-SERVICES"),
        "the KUBE-SERVICES jump stays as it is"
    );
    assert!(!chg.contains("statistic"), "one endpoint left: no lottery");
}

#[test]
fn iptables_firewall_and_updates() {
    let f = sample_firewall();
    assert_eq!(
        only_stdin(render_firewall(Tech::IptablesLegacy, &f).unwrap()),
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         -A FORWARD -s 172.16.0.1/32 -d 10.200.0.2/32 -p tcp -m tcp --dport 8080 -j DROP\n\
         -A FORWARD -s 10.100.0.0/24 -d 10.200.0.0/16 -p tcp -m tcp --dport 8080:8081 -j ACCEPT\n\
         COMMIT\n"
    );
    let rule = f.rules[0];
    let ins = |index| {
        only_stdin(
            render_firewall_update(
                Tech::IptablesLegacy,
                &f,
                &UpdateOp::InsertRule { index, rule },
            )
            .unwrap(),
        )
    };
    // Position 1 is the established rule, so model index 0 is position 2.
    assert!(ins(0).contains("\n-I FORWARD 2 -s 172.16.0.1/32"));
    assert!(ins(2).contains("\n-A FORWARD -s 172.16.0.1/32"));
    let del = only_stdin(
        render_firewall_update(Tech::IptablesNft, &f, &UpdateOp::DeleteRule { index: 1 }).unwrap(),
    );
    assert_eq!(del, "*filter\n-D FORWARD 3\nCOMMIT\n");
}

const NFT_SERVICES_TAIL: &str = "\
# default/dns:p53
add chain ip kube-proxy service-6YBQJMLX-default/dns/udp/p53
add set ip kube-proxy affinity-JUA7OXEH-default/dns/udp/p53__10.200.0.2/8080 { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }
add chain ip kube-proxy endpoint-JUA7OXEH-default/dns/udp/p53__10.200.0.2/8080
add set ip kube-proxy affinity-JJ6DRLOH-default/dns/udp/p53__10.200.1.2/8080 { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }
add chain ip kube-proxy endpoint-JJ6DRLOH-default/dns/udp/p53__10.200.1.2/8080
add rule ip kube-proxy service-6YBQJMLX-default/dns/udp/p53 ip daddr 10.96.0.11 ip saddr != 10.200.0.0/16 jump mark-for-masquerade
add rule ip kube-proxy service-6YBQJMLX-default/dns/udp/p53 ip saddr @affinity-JUA7OXEH-default/dns/udp/p53__10.200.0.2/8080 goto endpoint-JUA7OXEH-default/dns/udp/p53__10.200.0.2/8080
add rule ip kube-proxy service-6YBQJMLX-default/dns/udp/p53 ip saddr @affinity-JJ6DRLOH-default/dns/udp/p53__10.200.1.2/8080 goto endpoint-JJ6DRLOH-default/dns/udp/p53__10.200.1.2/8080
add rule ip kube-proxy service-6YBQJMLX-default/dns/udp/p53 numgen random mod 2 vmap { 0 : goto endpoint-JUA7OXEH-default/dns/udp/p53__10.200.0.2/8080 , 1 : goto endpoint-JJ6DRLOH-default/dns/udp/p53__10.200.1.2/8080 }
add rule ip kube-proxy endpoint-JUA7OXEH-default/dns/udp/p53__10.200.0.2/8080 ip saddr 10.200.0.2 jump mark-for-masquerade
add rule ip kube-proxy endpoint-JUA7OXEH-default/dns/udp/p53__10.200.0.2/8080 update @affinity-JUA7OXEH-default/dns/udp/p53__10.200.0.2/8080 { ip saddr }
add rule ip kube-proxy endpoint-JUA7OXEH-default/dns/udp/p53__10.200.0.2/8080 meta l4proto udp dnat to 10.200.0.2:8080
add rule ip kube-proxy endpoint-JJ6DRLOH-default/dns/udp/p53__10.200.1.2/8080 ip saddr 10.200.1.2 jump mark-for-masquerade
add rule ip kube-proxy endpoint-JJ6DRLOH-default/dns/udp/p53__10.200.1.2/8080 update @affinity-JJ6DRLOH-default/dns/udp/p53__10.200.1.2/8080 { ip saddr }
add rule ip kube-proxy endpoint-JJ6DRLOH-default/dns/udp/p53__10.200.1.2/8080 meta l4proto udp dnat to 10.200.1.2:8080
add element ip kube-proxy service-ips { 10.96.0.11 . udp . 53 : goto service-6YBQJMLX-default/dns/udp/p53 }
";

#[test]
fn nftables_full_load_is_kube_proxy_layout() {
    let text = only_stdin(render_services(Tech::Nftables, &sample_services()).unwrap());
    assert!(text.starts_with("table ip kube-proxy\ndelete table ip kube-proxy\nadd table ip kube-proxy\nadd map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }\n"));
    assert!(text.contains(
        "add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips\n"
    ));
    assert!(text.contains("add rule ip kube-proxy service-CLLS5CZR-default/web/tcp/p80 numgen random mod 2 vmap { 0 : goto endpoint-Y75IQUTI-default/web/tcp/p80__10.200.0.2/8080 , 1 : goto endpoint-UGMW4NQQ-default/web/tcp/p80__10.200.1.2/8080 }\n"));
    assert!(text.contains("add rule ip kube-proxy endpoint-Y75IQUTI-default/web/tcp/p80__10.200.0.2/8080 meta l4proto tcp dnat to 10.200.0.2:8080\n"));
    assert!(text.ends_with(NFT_SERVICES_TAIL), "{text}");
    // nft 0.9.8 wants `;` or a newline before every closing brace.
    for line in text.lines() {
        assert!(!line.contains("} }"), "{line}");
    }
}

#[test]
fn nftables_updates_are_one_transaction() {
    let s = sample_services();
    let steps = render_services_update(
        Tech::Nftables,
        &s,
        &UpdateOp::DeleteService { name: "dns".into() },
    )
    .unwrap();
    assert_eq!(steps[0].argv, ["nft", "-f", "/proc/self/fd/0"]);
    assert_eq!(
        only_stdin(steps),
        "delete element ip kube-proxy service-ips { 10.96.0.11 . udp . 53 }
flush chain ip kube-proxy service-6YBQJMLX-default/dns/udp/p53
delete chain ip kube-proxy service-6YBQJMLX-default/dns/udp/p53
flush chain ip kube-proxy endpoint-JUA7OXEH-default/dns/udp/p53__10.200.0.2/8080
delete chain ip kube-proxy endpoint-JUA7OXEH-default/dns/udp/p53__10.200.0.2/8080
flush chain ip kube-proxy endpoint-JJ6DRLOH-default/dns/udp/p53__10.200.1.2/8080
delete chain ip kube-proxy endpoint-JJ6DRLOH-default/dns/udp/p53__10.200.1.2/8080
delete set ip kube-proxy affinity-JUA7OXEH-default/dns/udp/p53__10.200.0.2/8080
delete set ip kube-proxy affinity-JJ6DRLOH-default/dns/udp/p53__10.200.1.2/8080
"
    );
    let chg = only_stdin(
        render_services_update(
            Tech::Nftables,
            &s,
            &UpdateOp::ChangeBackends {
                name: "web".into(),
                backends: vec![ep("10.200.1.2:8080"), ep("10.200.3.2:8080")],
            },
        )
        .unwrap(),
    );
    assert!(
        chg.contains("add chain ip kube-proxy endpoint-") && chg.contains("__10.200.3.2/8080\n")
    );
    assert!(chg.contains("flush chain ip kube-proxy service-CLLS5CZR-default/web/tcp/p80\n"));
    assert!(
        chg.ends_with(
            "delete chain ip kube-proxy endpoint-Y75IQUTI-default/web/tcp/p80__10.200.0.2/8080\n"
        ),
        "{chg}"
    );
    assert!(!chg.contains("UGMW4NQQ-default/web/tcp/p80__10.200.1.2/8080\nadd rule ip kube-proxy endpoint-UGMW4NQQ"), "a kept endpoint chain is left alone");
}

#[test]
fn ipvs_steps_mirror_kube_proxy_ipvs_mode() {
    let steps = render_services(Tech::Ipvs, &sample_services()).unwrap();
    let argv: Vec<String> = steps.iter().map(|s| s.argv.join(" ")).collect();
    assert_eq!(
        argv,
        [
            "ip link add kube-ipvs0 type dummy",
            "ip -batch -",
            "ipset -exist restore",
            "iptables-legacy-restore",
            "ipvsadm -C",
            "ipvsadm -R",
            "sysctl -w net.ipv4.vs.conntrack=1 net.ipv4.vs.expire_nodest_conn=1 net.ipv4.vs.expire_quiescent_template=1",
        ]
    );
    assert!(steps[0].tolerate_failure && !steps[1].tolerate_failure);
    assert_eq!(
        steps[1].stdin,
        "address flush dev kube-ipvs0\naddress add 10.96.0.10/32 dev kube-ipvs0\naddress add 10.96.0.11/32 dev kube-ipvs0\n"
    );
    assert!(steps[2]
        .stdin
        .contains("add KUBE-CLUSTER-IP 10.96.0.11,udp:53\n"));
    assert!(steps[2]
        .stdin
        .contains("add KUBE-LOOP-BACK 10.200.1.2,udp:8080,10.200.1.2\n"));
    assert!(steps[3].stdin.contains("-A KUBE-SERVICES ! -s 10.200.0.0/16 -m comment --comment \"Kubernetes service cluster ip + port for masquerade purpose\" -m set --match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ\n"));
    assert_eq!(
        steps[5].stdin,
        "-A -t 10.96.0.10:80 -s rr\n\
         -a -t 10.96.0.10:80 -r 10.200.0.2:8080 -m -w 1\n\
         -a -t 10.96.0.10:80 -r 10.200.1.2:8080 -m -w 1\n\
         -A -u 10.96.0.11:53 -s rr -p 10800\n\
         -a -u 10.96.0.11:53 -r 10.200.0.2:8080 -m -w 1\n\
         -a -u 10.96.0.11:53 -r 10.200.1.2:8080 -m -w 1\n"
    );
}

#[test]
fn ipvs_updates() {
    let s = sample_services();
    let del = render_services_update(
        Tech::Ipvs,
        &s,
        &UpdateOp::DeleteService { name: "dns".into() },
    )
    .unwrap();
    assert_eq!(del[0].argv, ["ipvsadm", "-D", "-u", "10.96.0.11:53"]);
    assert_eq!(del[1].stdin, "del KUBE-CLUSTER-IP 10.96.0.11,udp:53\ndel KUBE-LOOP-BACK 10.200.0.2,udp:8080,10.200.0.2\ndel KUBE-LOOP-BACK 10.200.1.2,udp:8080,10.200.1.2\n");
    assert_eq!(
        del[2].argv,
        ["ip", "address", "del", "10.96.0.11/32", "dev", "kube-ipvs0"]
    );
    let chg = render_services_update(
        Tech::Ipvs,
        &s,
        &UpdateOp::ChangeBackends {
            name: "web".into(),
            backends: vec![ep("10.200.1.2:8080"), ep("10.200.3.2:8080")],
        },
    )
    .unwrap();
    assert_eq!(
        chg[0].stdin,
        "-a -t 10.96.0.10:80 -r 10.200.3.2:8080 -m -w 1\n-d -t 10.96.0.10:80 -r 10.200.0.2:8080\n"
    );
    // 10.200.0.2 tcp:8080 is used by no other tcp service: its hairpin entry goes.
    assert_eq!(chg[1].stdin, "add KUBE-LOOP-BACK 10.200.3.2,tcp:8080,10.200.3.2\ndel KUBE-LOOP-BACK 10.200.0.2,tcp:8080,10.200.0.2\n");
    // A second service on an existing VIP does not add the address again.
    let same_vip = Service {
        name: "web2".into(),
        port: 81,
        ..s.services[0].clone()
    };
    let add = render_services_update(Tech::Ipvs, &s, &UpdateOp::AddService(same_vip)).unwrap();
    assert_eq!(add[0].argv, ["ipset", "-exist", "restore"]);
}

#[test]
fn dispatcher_names_and_errors() {
    for t in Tech::all() {
        assert_eq!(t.to_string().parse::<Tech>().unwrap(), *t);
    }
    assert_eq!(Tech::for_services().len(), 6);
    assert!(Tech::for_services().contains(&Tech::Ebpf));
    assert!(Tech::for_services().contains(&Tech::NftablesNoAnonMaps));
    assert!(!Tech::for_firewall().contains(&Tech::NftablesNoAnonMaps));
    assert!(!Tech::for_firewall().contains(&Tech::Ipvs));
    let e = "bpf".parse::<Tech>().unwrap_err().to_string();
    assert!(
        e.contains("\"bpf\"") && e.contains("iptables-legacy"),
        "{e}"
    );
    let e = render_firewall(Tech::Ipvs, &sample_firewall())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("IPVS is a load balancer and has no firewall rules"),
        "{e}"
    );
    let e = render_services(Tech::NftablesLinear, &sample_services())
        .unwrap_err()
        .to_string();
    assert!(e.contains("firewall layout"), "{e}");
    let e = render_firewall(Tech::NftablesNoAnonMaps, &sample_firewall())
        .unwrap_err()
        .to_string();
    assert!(e.contains("services layout"), "{e}");
    let e = render_services_update(
        Tech::Nftables,
        &sample_services(),
        &UpdateOp::DeleteService {
            name: "nope".into(),
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("nftables: ") && e.contains("\"nope\""), "{e}");
    for t in Tech::all() {
        assert!(!reset_steps(*t).is_empty() && !dump_commands(*t).is_empty());
    }
}

#[test]
fn large_generated_workloads_render_quickly() {
    let Workload::Services(s) = Workload::from_toml_str(
        "[services.generate]\ncount = 5000\nbackends = 3\nudp_every = 10\naffinity_every = 50\n",
    )
    .unwrap() else {
        unreachable!()
    };
    for tech in Tech::for_services() {
        let steps = render_services(*tech, &s).unwrap();
        // The eBPF loader takes one JSON document; count its services instead.
        let entries: usize = if *tech == Tech::Ebpf {
            steps
                .iter()
                .map(|st| st.stdin.matches("\"vip\"").count())
                .sum()
        } else {
            steps.iter().map(|st| st.stdin.lines().count()).sum()
        };
        assert!(entries >= 5000, "{tech}: {entries}");
    }
    let Workload::Firewall(f) = Workload::from_toml_str(
        "[firewall]\ndefault_policy = \"drop\"\naccept_established = true\n[firewall.generate]\ncount = 50000\n",
    )
    .unwrap() else {
        unreachable!()
    };
    let text = nftables_firewall::sets_ruleset(&f);
    assert!(
        text.contains("# 50002 rules in 2 ordered set lookups"),
        "{}",
        &text[..400]
    );
    assert_eq!(
        only_stdin(render_firewall(Tech::IptablesLegacy, &f).unwrap())
            .lines()
            .count(),
        50_002 + 6
    );
}
