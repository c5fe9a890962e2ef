//! Linear Bit Vector Search tables (bpf-iptables): for every field value
//! class, the bit vector of the rules that value allows. Pure; the
//! firewall module writes the result into a pipeline's maps.
//!
//! Vectors are deduplicated and numbered from 1 in first-use order (0 in
//! the port/proto arrays means "the field's wildcard vector"), so the same
//! ruleset always gives the same ids and the same map dump.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use crate::model::{ParsedRule, Prefix};

pub type BitVec = Vec<u64>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    pub nwords: usize,
    /// `vectors[id - 1]`.
    pub vectors: Vec<BitVec>,
    pub src: Vec<(Prefix, u32)>,
    pub dst: Vec<(Prefix, u32)>,
    /// Protocol numbers rules name; others use `proto_default`.
    pub proto: Vec<(u8, u32)>,
    pub proto_default: u32,
    /// Inclusive port ranges whose vector differs from the default.
    pub sport: Vec<(u16, u16, u32)>,
    pub sport_default: u32,
    pub dport: Vec<(u16, u16, u32)>,
    pub dport_default: u32,
    pub accept: Vec<bool>,
}

pub fn words_for(rules: usize) -> usize {
    rules.div_ceil(64).max(1)
}

fn set(v: &mut BitVec, i: usize) {
    v[i / 64] |= 1 << (i % 64);
}

fn or_into(dst: &mut BitVec, src: &BitVec) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d |= s);
}

/// Deduplicates vectors. Each is held once (shared by the lookup table
/// and the id order): at tens of thousands of rules the vectors are
/// hundreds of MB, and a second copy is what ran the guest out of memory.
#[derive(Default)]
struct Interner {
    ids: HashMap<Rc<BitVec>, u32>,
    vectors: Vec<Rc<BitVec>>,
}

impl Interner {
    fn id(&mut self, v: BitVec) -> u32 {
        if let Some(id) = self.ids.get(&v) {
            return *id;
        }
        let v = Rc::new(v);
        self.vectors.push(Rc::clone(&v));
        let id = self.vectors.len() as u32;
        self.ids.insert(v, id);
        id
    }

    fn into_vectors(self) -> Vec<BitVec> {
        drop(self.ids);
        self.vectors
            .into_iter()
            .map(|v| Rc::try_unwrap(v).expect("the lookup table is gone"))
            .collect()
    }
}

/// Vectors for a prefix field. The LPM trie returns the longest inserted
/// prefix P containing the address; rule prefixes containing the address
/// are nested, so they are exactly the rule prefixes containing P. Each
/// entry's vector is the OR over P's ancestors (33 lengths at most).
fn prefix_field(
    rules: &[ParsedRule],
    nwords: usize,
    field: impl Fn(&ParsedRule) -> Option<Prefix>,
    interner: &mut Interner,
) -> Vec<(Prefix, u32)> {
    let mut wildcard = vec![0; nwords];
    let mut exact: BTreeMap<Prefix, BitVec> = BTreeMap::new();
    for (i, r) in rules.iter().enumerate() {
        match field(r) {
            None => set(&mut wildcard, i),
            Some(p) => set(exact.entry(p).or_insert_with(|| vec![0; nwords]), i),
        }
    }
    let mut keys: BTreeSet<Prefix> = exact.keys().copied().collect();
    keys.insert(Prefix { addr: 0, len: 0 });
    keys.into_iter()
        .map(|p| {
            let mut v = wildcard.clone();
            for len in 0..=p.len {
                let ancestor = Prefix {
                    addr: p.addr & Prefix::mask(len),
                    len,
                };
                if let Some(e) = exact.get(&ancestor) {
                    or_into(&mut v, e);
                }
            }
            (p, interner.id(v))
        })
        .collect()
}

/// Vectors for a port field by a sweep over range boundaries: each
/// elementary interval gets wildcard | rules whose range covers it.
fn port_field(
    rules: &[ParsedRule],
    nwords: usize,
    field: impl Fn(&ParsedRule) -> Option<(u16, u16)>,
    interner: &mut Interner,
) -> (Vec<(u16, u16, u32)>, u32) {
    let mut wildcard = vec![0; nwords];
    // boundary (port, +1 start / -1 end-after) events
    let mut events: BTreeMap<u32, Vec<(usize, bool)>> = BTreeMap::new();
    for (i, r) in rules.iter().enumerate() {
        match field(r) {
            None => set(&mut wildcard, i),
            Some((lo, hi)) => {
                events.entry(u32::from(lo)).or_default().push((i, true));
                events
                    .entry(u32::from(hi) + 1)
                    .or_default()
                    .push((i, false));
            }
        }
    }
    let default = interner.id(wildcard.clone());
    let mut active = vec![0u64; nwords];
    let mut out = Vec::new();
    let points: Vec<u32> = events.keys().copied().collect();
    for (k, point) in points.iter().enumerate() {
        for (i, start) in &events[point] {
            if *start {
                active[i / 64] |= 1 << (i % 64);
            } else {
                active[i / 64] &= !(1 << (i % 64));
            }
        }
        let end = points.get(k + 1).map_or(65536, |p| *p) - 1;
        if *point > 65535 || active.iter().all(|w| *w == 0) {
            continue;
        }
        let mut v = wildcard.clone();
        or_into(&mut v, &active);
        out.push((*point as u16, end.min(65535) as u16, interner.id(v)));
    }
    (out, default)
}

pub fn compile(rules: &[ParsedRule]) -> Tables {
    let nwords = words_for(rules.len());
    let mut interner = Interner::default();
    let src = prefix_field(rules, nwords, |r| r.src, &mut interner);
    let dst = prefix_field(rules, nwords, |r| r.dst, &mut interner);

    let mut proto_wild = vec![0; nwords];
    let mut proto_exact: BTreeMap<u8, BitVec> = BTreeMap::new();
    for (i, r) in rules.iter().enumerate() {
        match r.proto {
            None => set(&mut proto_wild, i),
            Some(p) => set(proto_exact.entry(p).or_insert_with(|| vec![0; nwords]), i),
        }
    }
    let proto_default = interner.id(proto_wild.clone());
    let proto = proto_exact
        .into_iter()
        .map(|(p, mut v)| {
            or_into(&mut v, &proto_wild);
            (p, interner.id(v))
        })
        .collect();
    let (sport, sport_default) = port_field(rules, nwords, |r| r.sport, &mut interner);
    let (dport, dport_default) = port_field(rules, nwords, |r| r.dport, &mut interner);
    Tables {
        nwords,
        vectors: interner.into_vectors(),
        src,
        dst,
        proto,
        proto_default,
        sport,
        sport_default,
        dport,
        dport_default,
        accept: rules.iter().map(|r| r.accept).collect(),
    }
}

/// Rule indices set in a vector (for dumps and tests).
pub fn members(v: &[u64]) -> Vec<usize> {
    (0..v.len() * 64)
        .filter(|i| v[i / 64] & (1 << (i % 64)) != 0)
        .collect()
}

#[cfg(test)]
impl Tables {
    pub fn vector(&self, id: u32) -> &BitVec {
        &self.vectors[id as usize - 1]
    }

    /// What the BPF program computes for one packet (host order), as a
    /// reference for tests: Some(accept) for the first matching rule.
    pub fn classify(&self, src: u32, dst: u32, proto: u8, sport: u16, dport: u16) -> Option<bool> {
        let lpm = |t: &[(Prefix, u32)], a: u32| {
            t.iter()
                .filter(|(p, _)| p.contains(a))
                .max_by_key(|(p, _)| p.len)
                .map(|(_, id)| *id)
                .expect("0.0.0.0/0 is always present")
        };
        let port = |t: &[(u16, u16, u32)], d: u32, p: u16| {
            t.iter()
                .find(|(lo, hi, _)| *lo <= p && p <= *hi)
                .map_or(d, |(_, _, id)| *id)
        };
        let proto_id = self
            .proto
            .iter()
            .find(|(p, _)| *p == proto)
            .map_or(self.proto_default, |(_, id)| *id);
        let ids = [
            lpm(&self.src, src),
            lpm(&self.dst, dst),
            proto_id,
            port(&self.sport, self.sport_default, sport),
            port(&self.dport, self.dport_default, dport),
        ];
        (0..self.nwords).find_map(|w| {
            let word = ids
                .iter()
                .fold(u64::MAX, |acc, id| acc & self.vector(*id)[w]);
            (word != 0).then(|| self.accept[w * 64 + word.trailing_zeros() as usize])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{parse_ports, parse_prefix};

    fn rule(
        src: Option<&str>,
        dst: Option<&str>,
        proto: Option<u8>,
        dport: Option<&str>,
        accept: bool,
    ) -> ParsedRule {
        ParsedRule {
            src: src.map(|s| parse_prefix(s).unwrap()),
            dst: dst.map(|s| parse_prefix(s).unwrap()),
            proto,
            sport: None,
            dport: dport.map(|s| parse_ports(s).unwrap()),
            accept,
        }
    }

    fn reference(rules: &[ParsedRule], s: u32, d: u32, p: u8, sp: u16, dp: u16) -> Option<bool> {
        rules
            .iter()
            .find(|r| {
                r.src.is_none_or(|x| x.contains(s))
                    && r.dst.is_none_or(|x| x.contains(d))
                    && r.proto.is_none_or(|x| x == p)
                    && r.sport.is_none_or(|(lo, hi)| lo <= sp && sp <= hi)
                    && r.dport.is_none_or(|(lo, hi)| lo <= dp && dp <= hi)
            })
            .map(|r| r.accept)
    }

    #[test]
    fn agrees_with_first_match_on_a_grid() {
        let mut rules = vec![
            rule(
                Some("10.100.0.0/24"),
                Some("10.200.1.2/32"),
                Some(6),
                Some("8080-8081"),
                false,
            ),
            rule(Some("10.100.0.0/16"), None, None, None, true),
            rule(None, Some("10.200.0.0/16"), Some(17), Some("53"), false),
            rule(Some("10.100.0.2/32"), None, Some(6), Some("1-9000"), false),
        ];
        // Enough filler to cross a word boundary.
        for i in 0..70u32 {
            rules.insert(
                1,
                rule(
                    Some(&format!("172.16.{}.{}/32", i / 256, i % 256)),
                    Some("10.200.0.2/32"),
                    Some(6),
                    Some("8080"),
                    true,
                ),
            );
        }
        let t = compile(&rules);
        assert_eq!(t.nwords, 2);
        let addrs = [
            "10.100.0.2",
            "10.100.1.2",
            "10.101.0.2",
            "172.16.0.5",
            "10.200.1.2",
            "10.200.0.2",
            "1.1.1.1",
        ];
        let addr = |s: &str| u32::from(s.parse::<std::net::Ipv4Addr>().unwrap());
        for s in addrs {
            for d in addrs {
                for p in [6, 17, 1] {
                    for dp in [53, 8079, 8080, 8081, 8082, 9000, 9001] {
                        assert_eq!(
                            t.classify(addr(s), addr(d), p, 40000, dp),
                            reference(&rules, addr(s), addr(d), p, 40000, dp),
                            "{s} -> {d} proto {p} dport {dp}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn empty_ruleset_has_the_wildcard_entries() {
        let t = compile(&[]);
        assert_eq!(t.nwords, 1);
        assert_eq!(t.src.len(), 1);
        assert_eq!(t.classify(1, 2, 6, 3, 4), None);
    }

    #[test]
    fn vectors_are_shared() {
        let rules: Vec<_> = (0..10)
            .map(|_| rule(None, None, Some(6), Some("80"), true))
            .collect();
        let t = compile(&rules);
        assert!(t.vectors.len() <= 3, "{:?}", t.vectors.len());
        assert_eq!(members(t.vector(t.dport[0].2)), (0..10).collect::<Vec<_>>());
    }
}
