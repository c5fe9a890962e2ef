//! Dump normalizers: make two dumps of the same ruleset compare equal
//! across runs, guests and load paths (full load vs. updates). They drop
//! what varies (counters, timestamps, handles, hash seeds, timers) and
//! sort only where order carries no meaning; rule order inside a chain is
//! always kept.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use regex::Regex;

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("static regex"))
}

/// `iptables-save` / `iptables-legacy-save` / `iptables-nft-save` output.
///
/// Comment lines (timestamps, "tables present" warnings) go, chain and
/// rule counters become `[0:0]`, tables are sorted by name, chain
/// declarations sorted, and rules grouped by chain (stable, so each
/// chain's rule order is untouched): the order *between* chains depends on
/// the backend and on the history of updates, not on behaviour.
pub fn normalize_iptables_save(dump: &str) -> String {
    static COUNTER: OnceLock<Regex> = OnceLock::new();
    let counter = re(&COUNTER, r"\[\d+:\d+\]");
    // table -> (chain declarations, (chain, rule) in dump order)
    type Table = (Vec<String>, Vec<(String, String)>);
    let mut tables: BTreeMap<String, Table> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in dump.lines().map(str::trim_end) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('*') {
            current = Some(name.to_string());
            tables.entry(name.to_string()).or_default();
            continue;
        }
        let Some(table) = current.as_ref() else {
            continue;
        };
        let entry = tables.get_mut(table).expect("table entry exists");
        if line == "COMMIT" {
            current = None;
        } else if line.starts_with(':') {
            entry
                .0
                .push(counter.replace_all(line, "[0:0]").into_owned());
        } else {
            // `-c` style dumps prefix each rule with its counters.
            let rule = match line.strip_prefix('[') {
                Some(rest) if line.starts_with('[') => {
                    rest.split_once("] ").map_or(line, |(_, r)| r)
                }
                _ => line,
            };
            let chain = rule.split_whitespace().nth(1).unwrap_or("").to_string();
            entry.1.push((chain, rule.to_string()));
        }
    }
    let mut out = String::new();
    for (name, (mut chains, mut rules)) in tables {
        // A table with only built-in chains, ACCEPT policies and no rules
        // holds nothing; whether it shows up at all depends on which table
        // modules the kernel has loaded (all of them when built in).
        let builtin_accept = |c: &String| {
            c.split_whitespace().nth(1) == Some("ACCEPT")
                && ["INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"]
                    .iter()
                    .any(|b| c.starts_with(&format!(":{b} ")))
        };
        if rules.is_empty() && chains.iter().all(builtin_accept) {
            continue;
        }
        chains.sort();
        rules.sort_by(|a, b| a.0.cmp(&b.0));
        out.push('*');
        out.push_str(&name);
        out.push('\n');
        for c in chains {
            out.push_str(&c);
            out.push('\n');
        }
        for (_, r) in rules {
            out.push_str(&r);
            out.push('\n');
        }
        out.push_str("COMMIT\n");
    }
    out
}

fn brace_balance(s: &str) -> i64 {
    s.chars().fold(0, |n, c| match c {
        '{' => n + 1,
        '}' => n - 1,
        _ => n,
    })
}

/// Joins lines whose braces do not balance (multi-line element lists)
/// onto one line, except block openers (`chain x {`).
fn logical_lines(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut pending: Option<String> = None;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(p) = pending.as_mut() {
            p.push(' ');
            p.push_str(line);
            if brace_balance(p) == 0 {
                out.push(pending.take().expect("pending"));
            }
            continue;
        }
        if brace_balance(line) > 0 && !line.ends_with('{') {
            pending = Some(line.to_string());
        } else {
            out.push(line.to_string());
        }
    }
    out.extend(pending);
    out
}

fn clean_nft_line(line: &str) -> String {
    static HANDLE: OnceLock<Regex> = OnceLock::new();
    static COUNTER: OnceLock<Regex> = OnceLock::new();
    static EXPIRES: OnceLock<Regex> = OnceLock::new();
    let line = re(&HANDLE, r"\s*# handle \d+").replace_all(line, "");
    let line = re(&COUNTER, r"counter packets \d+ bytes \d+")
        .replace_all(&line, "counter packets 0 bytes 0");
    let line = re(&EXPIRES, r" expires [0-9hmsd.]+").replace_all(&line, "");
    line.trim().to_string()
}

/// `elements = { b, a }` -> sorted, one element per line.
fn normalize_elements(line: &str, indent: &str) -> Option<String> {
    let inner = line.strip_prefix("elements = {")?.strip_suffix('}')?;
    let mut elements: Vec<String> = inner
        .split(',')
        .map(|e| e.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|e| !e.is_empty())
        .collect();
    elements.sort();
    let mut out = format!("{indent}elements = {{\n");
    for (i, e) in elements.iter().enumerate() {
        let sep = if i + 1 < elements.len() { "," } else { "" };
        out.push_str(&format!("{indent}\t{e}{sep}\n"));
    }
    out.push_str(&format!("{indent}}}\n"));
    Some(out)
}

#[derive(Default)]
struct NftTable {
    header: String,
    blocks: Vec<(String, Vec<String>)>,
    loose: Vec<String>,
}

/// `nft list ruleset` output.
///
/// Handles, counters and timer countdowns go; tables are sorted, and the
/// sets, maps and chains inside a table are sorted by name (their listing
/// order is creation order, which differs between a full load and a
/// sequence of updates); set elements are sorted. Rules keep their order.
pub fn normalize_nft_ruleset(dump: &str) -> String {
    let mut tables: Vec<NftTable> = Vec::new();
    let mut depth = 0;
    // Clean first: `{ # handle 7` must end in `{` to be seen as a block.
    let cleaned: String = dump.lines().map(|l| clean_nft_line(l) + "\n").collect();
    for line in logical_lines(&cleaned) {
        if line.is_empty() {
            continue;
        }
        if line == "}" {
            depth = (depth - 1).max(0);
            continue;
        }
        let opens = line.ends_with('{');
        match (depth, opens) {
            (0, true) => {
                tables.push(NftTable {
                    header: line,
                    ..NftTable::default()
                });
                depth = 1;
            }
            (1, true) => {
                if let Some(t) = tables.last_mut() {
                    t.blocks.push((line, Vec::new()));
                }
                depth = 2;
            }
            (1, false) => {
                if let Some(t) = tables.last_mut() {
                    t.loose.push(line);
                }
            }
            (d, _) if d >= 2 => {
                if let Some((_, lines)) = tables.last_mut().and_then(|t| t.blocks.last_mut()) {
                    lines.push(line);
                }
                if opens {
                    depth += 1;
                }
            }
            _ => {}
        }
    }
    tables.sort_by(|a, b| a.header.cmp(&b.header));
    let mut out = String::new();
    for mut t in tables {
        t.blocks.sort_by(|a, b| a.0.cmp(&b.0));
        out.push_str(&t.header);
        out.push('\n');
        for l in &t.loose {
            out.push_str(&format!("\t{l}\n"));
        }
        for (header, lines) in &t.blocks {
            out.push_str(&format!("\t{header}\n"));
            for l in lines {
                match normalize_elements(l, "\t\t") {
                    Some(e) => out.push_str(&e),
                    None => out.push_str(&format!("\t\t{l}\n")),
                }
            }
            out.push_str("\t}\n");
        }
        out.push_str("}\n");
    }
    out
}

/// `ipvsadm -Sn`: one command per line, whose order only reflects hash
/// bucket order in the kernel.
pub fn normalize_ipvsadm_save(dump: &str) -> String {
    let mut lines: Vec<String> = dump
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect();
    lines.sort();
    lines.into_iter().map(|l| l + "\n").collect()
}

/// `ipset save`: drops the parameters that vary by run (random `initval`)
/// or by history (`hashsize` and `bucketsize` grow with the element
/// count), then lists `create` lines and `add` lines, each sorted.
pub fn normalize_ipset_save(dump: &str) -> String {
    static VOLATILE: OnceLock<Regex> = OnceLock::new();
    let volatile = re(
        &VOLATILE,
        r" (initval 0x[0-9a-fA-F]+|hashsize \d+|bucketsize \d+)",
    );
    let (mut creates, mut adds): (Vec<String>, Vec<String>) = dump
        .lines()
        .map(|l| volatile.replace_all(l.trim(), "").into_owned())
        .filter(|l| !l.is_empty())
        .partition(|l| l.starts_with("create "));
    creates.sort();
    adds.sort();
    creates.into_iter().chain(adds).map(|l| l + "\n").collect()
}

/// `ip -o -4 address show`: just the sorted `inet ADDR/LEN` of each line.
pub fn normalize_ip_addr(dump: &str) -> String {
    let mut addrs: Vec<String> = dump
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "inet")?;
            words.next().map(|a| format!("inet {a}"))
        })
        .collect();
    addrs.sort();
    addrs.into_iter().map(|l| l + "\n").collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shaped like iptables-nft-save 1.8.7 output in a bullseye guest.
    const SAVE_A: &str = "\
# Warning: iptables-legacy tables present, use iptables-legacy-save to see them
# Generated by iptables-nft-save v1.8.7 on Sat Nov 28 12:52:40 2026
*nat
:PREROUTING ACCEPT [12:720]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [3:180]
:POSTROUTING ACCEPT [15:900]
:KUBE-SEP-7AQP2UYBSHYHIHNZ - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-4HWD6WD2BXF6N7ZC - [0:0]
-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A KUBE-SEP-7AQP2UYBSHYHIHNZ -p tcp -m comment --comment \"default/web:p80\" -m tcp -j DNAT --to-destination 10.200.1.2:8080
-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m comment --comment \"default/web:p80 cluster IP\" -m tcp --dport 80 -j KUBE-SVC-4HWD6WD2BXF6N7ZC
-A KUBE-SVC-4HWD6WD2BXF6N7ZC -m comment --comment \"default/web:p80 -> 10.200.0.2:8080\" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-DYCUVXBF7RH27W7M
-A KUBE-SVC-4HWD6WD2BXF6N7ZC -m comment --comment \"default/web:p80 -> 10.200.1.2:8080\" -j KUBE-SEP-7AQP2UYBSHYHIHNZ
COMMIT
# Completed on Sat Nov 28 12:52:40 2026
";

    // The same ruleset after a different history: other counters and
    // timestamps, chains listed in another order, `-c` rule counters.
    const SAVE_B: &str = "\
# Generated by iptables-nft-save v1.8.7 on Sun Nov 29 08:00:01 2026
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-4HWD6WD2BXF6N7ZC - [0:0]
:KUBE-SEP-7AQP2UYBSHYHIHNZ - [0:0]
[7:420] -A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m comment --comment \"default/web:p80 cluster IP\" -m tcp --dport 80 -j KUBE-SVC-4HWD6WD2BXF6N7ZC
-A KUBE-SVC-4HWD6WD2BXF6N7ZC -m comment --comment \"default/web:p80 -> 10.200.0.2:8080\" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-DYCUVXBF7RH27W7M
-A KUBE-SVC-4HWD6WD2BXF6N7ZC -m comment --comment \"default/web:p80 -> 10.200.1.2:8080\" -j KUBE-SEP-7AQP2UYBSHYHIHNZ
-A KUBE-SEP-7AQP2UYBSHYHIHNZ -p tcp -m comment --comment \"default/web:p80\" -m tcp -j DNAT --to-destination 10.200.1.2:8080
COMMIT
";

    #[test]
    fn iptables_save_ignores_counters_timestamps_and_chain_order() {
        let a = normalize_iptables_save(SAVE_A);
        assert_eq!(a, normalize_iptables_save(SAVE_B));
        assert!(!a.contains('#'));
        assert!(a.contains(":PREROUTING ACCEPT [0:0]\n"));
        assert!(a.starts_with("*nat\n:INPUT ACCEPT [0:0]\n"));
        assert!(
            a.ends_with("--comment \"kubernetes service portals\" -j KUBE-SERVICES\nCOMMIT\n"),
            "{a}"
        );
    }

    #[test]
    fn iptables_save_keeps_rule_order_within_a_chain() {
        let swapped = SAVE_B.replace(
            "-A KUBE-SVC-4HWD6WD2BXF6N7ZC -m comment --comment \"default/web:p80 -> 10.200.0.2:8080\" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-DYCUVXBF7RH27W7M\n-A KUBE-SVC-4HWD6WD2BXF6N7ZC -m comment --comment \"default/web:p80 -> 10.200.1.2:8080\" -j KUBE-SEP-7AQP2UYBSHYHIHNZ\n",
            "-A KUBE-SVC-4HWD6WD2BXF6N7ZC -m comment --comment \"default/web:p80 -> 10.200.1.2:8080\" -j KUBE-SEP-7AQP2UYBSHYHIHNZ\n-A KUBE-SVC-4HWD6WD2BXF6N7ZC -m comment --comment \"default/web:p80 -> 10.200.0.2:8080\" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-DYCUVXBF7RH27W7M\n",
        );
        assert_ne!(swapped, SAVE_B);
        assert_ne!(
            normalize_iptables_save(&swapped),
            normalize_iptables_save(SAVE_B)
        );
    }

    // Shaped like `nft list ruleset` from nftables 0.9.8 (with -a handles).
    const NFT_A: &str = "\
table ip kube-proxy { # handle 7
\tmap service-ips { # handle 1
\t\ttype ipv4_addr . inet_proto . inet_service : verdict
\t\telements = { 10.96.0.11 . udp . 53 : goto service-6YBQJMLX-default/dns/udp/p53,
\t\t\t     10.96.0.10 . tcp . 80 : goto service-CLLS5CZR-default/web/tcp/p80 }
\t}

\tset affinity-JUA7OXEH-default/dns/udp/p53__10.200.0.2/8080 { # handle 2
\t\ttype ipv4_addr
\t\tsize 65535
\t\tflags dynamic,timeout
\t\ttimeout 3h
\t\telements = { 10.100.0.2 expires 2h59m58s408ms }
\t}

\tchain services { # handle 3
\t\tip daddr . meta l4proto . th dport vmap @service-ips # handle 9
\t}

\tchain service-CLLS5CZR-default/web/tcp/p80 { # handle 4
\t\tip daddr 10.96.0.10 ip saddr != 10.200.0.0/16 counter packets 12 bytes 720 jump mark-for-masquerade # handle 10
\t\tnumgen random mod 2 vmap { 0 : goto endpoint-Y75IQUTI-default/web/tcp/p80__10.200.0.2/8080, 1 : goto endpoint-UGMW4NQQ-default/web/tcp/p80__10.200.1.2/8080 } # handle 11
\t}
}
";

    const NFT_B: &str = "\
table ip kube-proxy {
\tchain service-CLLS5CZR-default/web/tcp/p80 {
\t\tip daddr 10.96.0.10 ip saddr != 10.200.0.0/16 counter packets 0 bytes 0 jump mark-for-masquerade
\t\tnumgen random mod 2 vmap { 0 : goto endpoint-Y75IQUTI-default/web/tcp/p80__10.200.0.2/8080, 1 : goto endpoint-UGMW4NQQ-default/web/tcp/p80__10.200.1.2/8080 }
\t}

\tchain services {
\t\tip daddr . meta l4proto . th dport vmap @service-ips
\t}

\tset affinity-JUA7OXEH-default/dns/udp/p53__10.200.0.2/8080 {
\t\ttype ipv4_addr
\t\tsize 65535
\t\tflags dynamic,timeout
\t\ttimeout 3h
\t\telements = { 10.100.0.2 expires 1h2m3s }
\t}

\tmap service-ips {
\t\ttype ipv4_addr . inet_proto . inet_service : verdict
\t\telements = { 10.96.0.10 . tcp . 80 : goto service-CLLS5CZR-default/web/tcp/p80, 10.96.0.11 . udp . 53 : goto service-6YBQJMLX-default/dns/udp/p53 }
\t}
}
";

    #[test]
    fn nft_ruleset_ignores_handles_counters_timers_and_listing_order() {
        let a = normalize_nft_ruleset(NFT_A);
        assert_eq!(a, normalize_nft_ruleset(NFT_B));
        assert!(!a.contains("handle") && !a.contains("expires") && !a.contains("packets 12"));
        assert!(a.contains(
            "\t\telements = {\n\t\t\t10.96.0.10 . tcp . 80 : goto service-CLLS5CZR-default/web/tcp/p80,\n\t\t\t10.96.0.11 . udp . 53 : goto service-6YBQJMLX-default/dns/udp/p53\n\t\t}\n"
        ), "{a}");
        // Blocks sorted by header: chains, then map, then set.
        let chain = a.find("\tchain service-CLLS5CZR").unwrap();
        let map = a.find("\tmap service-ips").unwrap();
        assert!(chain < map && a.starts_with("table ip kube-proxy {\n"));
    }

    #[test]
    fn nft_ruleset_keeps_rule_order() {
        let swapped = NFT_B.replace(
            "\t\tip daddr 10.96.0.10 ip saddr != 10.200.0.0/16 counter packets 0 bytes 0 jump mark-for-masquerade\n\t\tnumgen",
            "\t\tnumgen",
        ) .replace("p80__10.200.1.2/8080 }\n\t}", "p80__10.200.1.2/8080 }\n\t\tip daddr 10.96.0.10 ip saddr != 10.200.0.0/16 counter packets 0 bytes 0 jump mark-for-masquerade\n\t}");
        assert_ne!(
            normalize_nft_ruleset(&swapped),
            normalize_nft_ruleset(NFT_B)
        );
    }

    #[test]
    fn ipvsadm_and_ipset_and_ip_addr() {
        let a = "-A -u 10.96.0.11:53 -s rr -p 10800\n-a -u 10.96.0.11:53 -r 10.200.1.2:8080 -m -w 1\n-A -t 10.96.0.10:80 -s rr\n-a -t 10.96.0.10:80 -r 10.200.0.2:8080 -m -w 1\n";
        let b = "-A -t 10.96.0.10:80 -s rr\n-a -t 10.96.0.10:80 -r 10.200.0.2:8080 -m -w 1\n-A -u 10.96.0.11:53 -s rr -p 10800\n-a -u 10.96.0.11:53 -r 10.200.1.2:8080 -m -w 1\n";
        assert_eq!(normalize_ipvsadm_save(a), normalize_ipvsadm_save(b));

        let s1 = "create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 262144 bucketsize 12 initval 0x458bbb50\nadd KUBE-CLUSTER-IP 10.96.0.11,udp:53\nadd KUBE-CLUSTER-IP 10.96.0.10,tcp:80\n";
        let s2 = "create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 2048 maxelem 262144 bucketsize 12 initval 0x0c31ac7a\nadd KUBE-CLUSTER-IP 10.96.0.10,tcp:80\nadd KUBE-CLUSTER-IP 10.96.0.11,udp:53\n";
        let n = normalize_ipset_save(s1);
        assert_eq!(n, normalize_ipset_save(s2));
        assert_eq!(
            n,
            "create KUBE-CLUSTER-IP hash:ip,port family inet maxelem 262144\nadd KUBE-CLUSTER-IP 10.96.0.10,tcp:80\nadd KUBE-CLUSTER-IP 10.96.0.11,udp:53\n"
        );

        let ip = "5: kube-ipvs0    inet 10.96.0.11/32 scope global kube-ipvs0\\       valid_lft forever preferred_lft forever\n5: kube-ipvs0    inet 10.96.0.10/32 scope global kube-ipvs0\\       valid_lft forever preferred_lft forever\n";
        assert_eq!(
            normalize_ip_addr(ip),
            "inet 10.96.0.10/32\ninet 10.96.0.11/32\n"
        );
    }
}
