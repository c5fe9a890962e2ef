//! nftables firewall layouts in table `ip rulebench-filter`, chain
//! `forward` (filter hook forward, policy = default policy):
//!
//! - linear: one nft rule per rule, the iptables shape in nft syntax;
//! - sets: runs of consecutive rules with the same action and the same
//!   matched fields become one set lookup on a concatenated key
//!   (`ip saddr . ip daddr . meta l4proto . th dport`), with
//!   `flags interval` only where a prefix or port range needs it
//!   (concatenations with intervals exist since nftables 0.9.4 / kernel
//!   5.6, pipapo). Within a run all rules share the action, so their order
//!   does not matter and first-match-wins is preserved by the order of the
//!   runs. Rules that overlap inside a run start a new run (an interval
//!   set cannot hold overlapping elements).

use std::collections::HashSet;
use std::fmt::Write;

use crate::workload::{Cidr, Firewall, PortRange, Rule, UpdateOp, Verdict};

use super::nft::{self, table_preamble};
use super::step::Step;

pub const TABLE: &str = "ip rulebench-filter";
pub const CHAIN: &str = "forward";

/// Large element lists are split so no single command line gets huge.
const ELEMENTS_PER_COMMAND: usize = 1000;

fn addr(c: Cidr) -> String {
    if c.is_host() {
        c.addr.to_string()
    } else {
        c.to_string()
    }
}

fn chain_header(fw: &Firewall) -> String {
    let mut out = table_preamble(TABLE);
    let _ = writeln!(
        out,
        "add chain {TABLE} {CHAIN} {{ type filter hook forward priority 0 ; policy {} ; }}",
        fw.default_policy
    );
    out
}

fn established(fw: &Firewall, out: &mut String) {
    if fw.accept_established {
        let _ = writeln!(
            out,
            "add rule {TABLE} {CHAIN} ct state established,related accept"
        );
    }
}

/// `ip saddr 10.0.0.0/8 tcp dport 80 accept` for one rule.
pub fn linear_rule(rule: &Rule) -> String {
    let mut parts = Vec::new();
    if let Some(c) = rule.src {
        parts.push(format!("ip saddr {}", addr(c)));
    }
    if let Some(c) = rule.dst {
        parts.push(format!("ip daddr {}", addr(c)));
    }
    match rule.proto {
        Some(p) if rule.sport.is_some() || rule.dport.is_some() => {
            if let Some(r) = rule.sport {
                parts.push(format!("{p} sport {}", r.dash()));
            }
            if let Some(r) = rule.dport {
                parts.push(format!("{p} dport {}", r.dash()));
            }
        }
        Some(p) => parts.push(format!("meta l4proto {p}")),
        None => {}
    }
    parts.push(rule.action.to_string());
    parts.join(" ")
}

pub fn linear_ruleset(fw: &Firewall) -> String {
    let mut out = chain_header(fw);
    established(fw, &mut out);
    for rule in &fw.rules {
        let _ = writeln!(out, "add rule {TABLE} {CHAIN} {}", linear_rule(rule));
    }
    out
}

/// Insert uses nft's `index` (a rule position, resolved by nft itself);
/// delete needs the rule's handle, which only the guest knows, so it is
/// looked up from `nft -a list chain` first — the same lookup any nft user
/// without a handle cache has to do.
pub fn linear_update(before: &Firewall, op: &UpdateOp) -> Vec<Step> {
    let offset = usize::from(before.accept_established);
    match op {
        UpdateOp::InsertRule { index, rule } => {
            let text = if *index >= before.rules.len() {
                format!("add rule {TABLE} {CHAIN} {}\n", linear_rule(rule))
            } else {
                format!(
                    "insert rule {TABLE} {CHAIN} index {} {}\n",
                    index + offset,
                    linear_rule(rule)
                )
            };
            vec![nft::load_step(text)]
        }
        UpdateOp::DeleteRule { index } => {
            // n counts handle-bearing lines after the chain header: rule
            // position p (0-based) is n == p + 1.
            let nth = index + offset + 1;
            vec![Step::shell(format!(
                "h=$(nft -a list chain {TABLE} {CHAIN} | awk '/chain {CHAIN} /{{c=1; next}} c && /# handle [0-9]+$/ {{n++; if (n == {nth}) print $NF}}') && [ -n \"$h\" ] && nft delete rule {TABLE} {CHAIN} handle \"$h\""
            ))]
        }
        _ => vec![],
    }
}

/// Which fields a rule matches on: rules with the same shape and action
/// can share one set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Shape {
    src: bool,
    dst: bool,
    proto: bool,
    sport: bool,
    dport: bool,
}

impl Shape {
    fn of(r: &Rule) -> Shape {
        Shape {
            src: r.src.is_some(),
            dst: r.dst.is_some(),
            proto: r.proto.is_some(),
            sport: r.sport.is_some(),
            dport: r.dport.is_some(),
        }
    }

    fn is_empty(self) -> bool {
        !(self.src || self.dst || self.proto || self.sport || self.dport)
    }

    fn fields(self) -> Vec<(&'static str, &'static str)> {
        let mut f = Vec::new();
        if self.src {
            f.push(("ip saddr", "ipv4_addr"));
        }
        if self.dst {
            f.push(("ip daddr", "ipv4_addr"));
        }
        if self.proto {
            f.push(("meta l4proto", "inet_proto"));
        }
        if self.sport {
            f.push(("th sport", "inet_service"));
        }
        if self.dport {
            f.push(("th dport", "inet_service"));
        }
        f
    }

    fn key_expr(self) -> String {
        self.fields()
            .iter()
            .map(|f| f.0)
            .collect::<Vec<_>>()
            .join(" . ")
    }

    fn key_type(self) -> String {
        self.fields()
            .iter()
            .map(|f| f.1)
            .collect::<Vec<_>>()
            .join(" . ")
    }
}

fn is_point(r: &Rule) -> bool {
    r.src.is_none_or(Cidr::is_host)
        && r.dst.is_none_or(Cidr::is_host)
        && r.sport.is_none_or(PortRange::is_single)
        && r.dport.is_none_or(PortRange::is_single)
}

fn overlaps(a: &Rule, b: &Rule) -> bool {
    fn cidrs(x: Option<Cidr>, y: Option<Cidr>) -> bool {
        match (x, y) {
            (Some(x), Some(y)) => {
                let ((a0, a1), (b0, b1)) = (x.range(), y.range());
                a0 <= b1 && b0 <= a1
            }
            _ => true,
        }
    }
    fn ports(x: Option<PortRange>, y: Option<PortRange>) -> bool {
        match (x, y) {
            (Some(x), Some(y)) => x.lo <= y.hi && y.lo <= x.hi,
            _ => true,
        }
    }
    cidrs(a.src, b.src)
        && cidrs(a.dst, b.dst)
        && (a.proto.is_none() || b.proto.is_none() || a.proto == b.proto)
        && ports(a.sport, b.sport)
        && ports(a.dport, b.dport)
}

/// A run of rules rendered as one set lookup (or, for a rule matching
/// everything, as a bare verdict).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Group {
    shape: Shape,
    action: Verdict,
    rules: Vec<Rule>,
    interval: bool,
}

impl Group {
    fn element(&self, r: &Rule) -> String {
        let mut parts = Vec::new();
        if let Some(c) = r.src {
            parts.push(addr(c));
        }
        if let Some(c) = r.dst {
            parts.push(addr(c));
        }
        if let Some(p) = r.proto {
            parts.push(p.to_string());
        }
        if let Some(p) = r.sport {
            parts.push(p.dash());
        }
        if let Some(p) = r.dport {
            parts.push(p.dash());
        }
        parts.join(" . ")
    }

    fn signature(&self) -> (Shape, Verdict, bool) {
        (self.shape, self.action, self.interval)
    }
}

fn groups(rules: &[Rule]) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    // Exact-duplicate check for all-point groups, so 100k /32 rules group
    // in linear time; groups with intervals fall back to pairwise checks.
    let mut points: HashSet<Rule> = HashSet::new();
    for r in rules {
        let shape = Shape::of(r);
        let joinable = out.last().is_some_and(|g| {
            g.shape == shape
                && g.action == r.action
                && !shape.is_empty()
                && if g.interval || !is_point(r) {
                    !g.rules.iter().any(|x| overlaps(x, r))
                } else {
                    !points.contains(r)
                }
        });
        if joinable {
            let g = out.last_mut().expect("joinable implies a group");
            g.interval |= !is_point(r);
            g.rules.push(*r);
        } else {
            points.clear();
            out.push(Group {
                shape,
                action: r.action,
                rules: vec![*r],
                interval: !is_point(r),
            });
        }
        points.insert(*r);
    }
    out
}

fn set_name(i: usize) -> String {
    format!("rules-{i}")
}

fn add_elements(name: &str, elements: &[String], verb: &str, out: &mut String) {
    for chunk in elements.chunks(ELEMENTS_PER_COMMAND) {
        let _ = writeln!(
            out,
            "{verb} element {TABLE} {name} {{ {} }}",
            chunk.join(", ")
        );
    }
}

fn group_objects(i: usize, g: &Group, out: &mut String) {
    if g.shape.is_empty() {
        return;
    }
    let flags = if g.interval { " flags interval ;" } else { "" };
    let name = set_name(i);
    let _ = writeln!(
        out,
        "add set {TABLE} {name} {{ type {} ;{flags} }}",
        g.shape.key_type()
    );
    let elements: Vec<String> = g.rules.iter().map(|r| g.element(r)).collect();
    add_elements(&name, &elements, "add", out);
}

fn group_rule(i: usize, g: &Group) -> String {
    if g.shape.is_empty() {
        format!("add rule {TABLE} {CHAIN} {}", g.action)
    } else {
        format!(
            "add rule {TABLE} {CHAIN} {} @{} {}",
            g.shape.key_expr(),
            set_name(i),
            g.action
        )
    }
}

pub fn sets_ruleset(fw: &Firewall) -> String {
    let gs = groups(&fw.rules);
    let mut out = chain_header(fw);
    let _ = writeln!(
        out,
        "# {} rules in {} ordered set lookups",
        fw.rules.len(),
        gs.len()
    );
    for (i, g) in gs.iter().enumerate() {
        group_objects(i, g, &mut out);
    }
    established(fw, &mut out);
    for (i, g) in gs.iter().enumerate() {
        let _ = writeln!(out, "{}", group_rule(i, g));
    }
    out
}

/// If the update only adds or removes one element of one set (the run
/// structure is unchanged), emit just that; otherwise the ordered runs
/// changed shape and the table is reloaded in one transaction.
pub fn sets_update(before: &Firewall, op: &UpdateOp) -> String {
    let mut after = before.clone();
    if after.apply(op).is_err() {
        return String::new();
    }
    let (old, new) = (groups(&before.rules), groups(&after.rules));
    let same_structure = old.len() == new.len()
        && old
            .iter()
            .zip(&new)
            .all(|(a, b)| a.signature() == b.signature());
    if same_structure {
        let changed: Vec<usize> = (0..old.len())
            .filter(|&i| old[i].rules != new[i].rules)
            .collect();
        if let [i] = changed[..] {
            let (a, b) = (&old[i], &new[i]);
            let elems = |g: &Group| g.rules.iter().map(|r| g.element(r)).collect::<HashSet<_>>();
            let (ea, eb) = (elems(a), elems(b));
            let added: Vec<String> = eb.difference(&ea).cloned().collect();
            let removed: Vec<String> = ea.difference(&eb).cloned().collect();
            if !a.shape.is_empty() && added.len() + removed.len() == 1 {
                let mut out = String::new();
                add_elements(&set_name(i), &added, "add", &mut out);
                add_elements(&set_name(i), &removed, "delete", &mut out);
                return out;
            }
        }
    }
    let mut out =
        String::from("# rule runs changed shape: reloading the table in one transaction\n");
    out.push_str(&sets_ruleset(&after));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Proto;

    fn rule(src: &str, dport: Option<&str>, action: Verdict) -> Rule {
        Rule {
            src: Some(src.parse().unwrap()),
            dst: Some("10.200.0.2".parse().unwrap()),
            proto: Some(Proto::Tcp),
            sport: None,
            dport: dport.map(|d| d.parse().unwrap()),
            action,
        }
    }

    fn fw(rules: Vec<Rule>) -> Firewall {
        Firewall {
            default_policy: Verdict::Drop,
            accept_established: true,
            rules,
        }
    }

    #[test]
    fn linear_layout_text() {
        let f = fw(vec![
            rule("10.100.0.0/24", Some("8080"), Verdict::Accept),
            Rule {
                src: None,
                dst: None,
                proto: Some(Proto::Udp),
                sport: Some("1000-2000".parse().unwrap()),
                dport: None,
                action: Verdict::Drop,
            },
            Rule {
                src: None,
                dst: None,
                proto: Some(Proto::Udp),
                sport: None,
                dport: None,
                action: Verdict::Accept,
            },
        ]);
        assert_eq!(
            linear_ruleset(&f),
            "table ip rulebench-filter\n\
             delete table ip rulebench-filter\n\
             add table ip rulebench-filter\n\
             add chain ip rulebench-filter forward { type filter hook forward priority 0 ; policy drop ; }\n\
             add rule ip rulebench-filter forward ct state established,related accept\n\
             add rule ip rulebench-filter forward ip saddr 10.100.0.0/24 ip daddr 10.200.0.2 tcp dport 8080 accept\n\
             add rule ip rulebench-filter forward udp sport 1000-2000 drop\n\
             add rule ip rulebench-filter forward meta l4proto udp accept\n"
        );
    }

    #[test]
    fn linear_updates_use_index_and_handle_lookup() {
        let f = fw(vec![rule("172.16.0.1", Some("8080"), Verdict::Drop)]);
        let ins = linear_update(
            &f,
            &UpdateOp::InsertRule {
                index: 0,
                rule: rule("172.16.0.2", Some("8080"), Verdict::Drop),
            },
        );
        assert_eq!(
            ins[0].stdin,
            "insert rule ip rulebench-filter forward index 1 ip saddr 172.16.0.2 ip daddr 10.200.0.2 tcp dport 8080 drop\n"
        );
        let del = linear_update(&f, &UpdateOp::DeleteRule { index: 0 });
        assert_eq!(del[0].argv[..2], ["sh", "-c"]);
        assert!(del[0].argv[2].contains("n == 2") && del[0].argv[2].contains("handle \"$h\""));
    }

    #[test]
    fn sets_layout_groups_runs_and_keeps_order() {
        let mut rules: Vec<Rule> = (1..=3)
            .map(|i| rule(&format!("172.16.0.{i}"), Some("8080"), Verdict::Drop))
            .collect();
        rules.push(rule("10.100.0.0/24", Some("8080"), Verdict::Accept));
        rules.push(rule("10.100.0.0/24", Some("9000-9100"), Verdict::Accept));
        let text = sets_ruleset(&fw(rules));
        let expected = "\
# 5 rules in 2 ordered set lookups
add set ip rulebench-filter rules-0 { type ipv4_addr . ipv4_addr . inet_proto . inet_service ; }
add element ip rulebench-filter rules-0 { 172.16.0.1 . 10.200.0.2 . tcp . 8080, 172.16.0.2 . 10.200.0.2 . tcp . 8080, 172.16.0.3 . 10.200.0.2 . tcp . 8080 }
add set ip rulebench-filter rules-1 { type ipv4_addr . ipv4_addr . inet_proto . inet_service ; flags interval ; }
add element ip rulebench-filter rules-1 { 10.100.0.0/24 . 10.200.0.2 . tcp . 8080, 10.100.0.0/24 . 10.200.0.2 . tcp . 9000-9100 }
add rule ip rulebench-filter forward ct state established,related accept
add rule ip rulebench-filter forward ip saddr . ip daddr . meta l4proto . th dport @rules-0 drop
add rule ip rulebench-filter forward ip saddr . ip daddr . meta l4proto . th dport @rules-1 accept
";
        assert!(text.ends_with(expected), "{text}");
    }

    #[test]
    fn overlapping_rules_split_runs() {
        let rules = vec![
            rule("10.100.0.0/24", Some("8000-8100"), Verdict::Accept),
            rule("10.100.0.0/25", Some("8080"), Verdict::Accept),
            rule("10.100.1.0/24", Some("8080"), Verdict::Accept),
        ];
        let gs = groups(&rules);
        assert_eq!(gs.iter().map(|g| g.rules.len()).collect::<Vec<_>>(), [1, 2]);
        let dup = vec![
            rule("1.1.1.1", None, Verdict::Drop),
            rule("1.1.1.1", None, Verdict::Drop),
        ];
        assert_eq!(groups(&dup).len(), 2);
    }

    #[test]
    fn sets_update_touches_one_element_or_reloads() {
        let f = fw((1..=3)
            .map(|i| rule(&format!("172.16.0.{i}"), Some("8080"), Verdict::Drop))
            .collect());
        let add = sets_update(
            &f,
            &UpdateOp::InsertRule {
                index: 1,
                rule: rule("172.16.0.9", Some("8080"), Verdict::Drop),
            },
        );
        assert_eq!(
            add,
            "add element ip rulebench-filter rules-0 { 172.16.0.9 . 10.200.0.2 . tcp . 8080 }\n"
        );
        let del = sets_update(&f, &UpdateOp::DeleteRule { index: 2 });
        assert_eq!(
            del,
            "delete element ip rulebench-filter rules-0 { 172.16.0.3 . 10.200.0.2 . tcp . 8080 }\n"
        );
        let split = sets_update(
            &f,
            &UpdateOp::InsertRule {
                index: 1,
                rule: rule("172.16.0.9", Some("8080"), Verdict::Accept),
            },
        );
        assert!(split.starts_with("# rule runs changed shape"), "{split}");
        assert!(split.contains("rules-2"));
    }
}
