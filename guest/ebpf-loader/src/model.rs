//! The loader's input: what `src/tech/ebpf.rs` renders. Everything is
//! parsed and checked before any map is touched, so bad input never
//! leaves a half-applied dataplane.

use std::net::Ipv4Addr;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Backends one service value holds (`MAX_BACKENDS` in services.bpf.c).
pub const MAX_BACKENDS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }

    pub fn from_number(n: u8) -> Option<Proto> {
        match n {
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub vip: Ipv4Addr,
    pub port: u16,
    pub proto: Proto,
    /// 0 = no session affinity.
    #[serde(default)]
    pub affinity_timeout_s: u32,
    /// `IP:PORT`, in order.
    pub backends: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicesInput {
    pub services: Vec<Service>,
}

/// A service is addressed by what the dataplane keys it by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceKey {
    pub vip: Ipv4Addr,
    pub port: u16,
    pub proto: Proto,
}

/// One service change = one map update (or delete).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ServiceOp {
    Upsert(Service),
    Delete(ServiceKey),
}

impl Service {
    pub fn key(&self) -> ServiceKey {
        ServiceKey {
            vip: self.vip,
            port: self.port,
            proto: self.proto,
        }
    }

    pub fn endpoints(&self) -> Result<Vec<(Ipv4Addr, u16)>> {
        let what = || format!("service {}:{}/{:?}", self.vip, self.port, self.proto);
        if self.backends.is_empty() {
            bail!("{} has no backends", what());
        }
        if self.backends.len() > MAX_BACKENDS {
            bail!(
                "{} has {} backends; the eBPF service map holds at most {MAX_BACKENDS}",
                what(),
                self.backends.len()
            );
        }
        if self.port == 0 {
            bail!("{}: port 0", what());
        }
        self.backends
            .iter()
            .map(|b| parse_endpoint(b).with_context(what))
            .collect()
    }
}

pub fn parse_endpoint(s: &str) -> Result<(Ipv4Addr, u16)> {
    let (ip, port) = s
        .rsplit_once(':')
        .with_context(|| format!("backend {s:?} is not IP:PORT"))?;
    let ip: Ipv4Addr = ip
        .parse()
        .with_context(|| format!("backend {s:?}: bad IP"))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .with_context(|| format!("backend {s:?}: bad port"))?;
    Ok((ip, port))
}

impl ServicesInput {
    pub fn validate(&self) -> Result<()> {
        let mut seen = std::collections::BTreeSet::new();
        for s in &self.services {
            s.endpoints()?;
            if !seen.insert(s.key()) {
                bail!("duplicate service {}:{}/{:?}", s.vip, s.port, s.proto);
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Accept,
    Drop,
}

/// One filter rule; `None` matches anything. Prefixes are `A.B.C.D/LEN`
/// with no host bits, port ranges `LO` or `LO-HI`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default)]
    pub src: Option<String>,
    #[serde(default)]
    pub dst: Option<String>,
    #[serde(default)]
    pub proto: Option<Proto>,
    #[serde(default)]
    pub sport: Option<String>,
    #[serde(default)]
    pub dport: Option<String>,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirewallInput {
    pub default_policy: Action,
    #[serde(default)]
    pub accept_established: bool,
    pub rules: Vec<Rule>,
}

/// Firewall update ops, applied to the ruleset the loader last committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FirewallOp {
    Insert { index: usize, rule: Rule },
    Delete { index: usize },
}

/// A rule parsed into the numbers the classifier works with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedRule {
    pub src: Option<Prefix>,
    pub dst: Option<Prefix>,
    pub proto: Option<u8>,
    pub sport: Option<(u16, u16)>,
    pub dport: Option<(u16, u16)>,
    pub accept: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    pub addr: u32,
    pub len: u8,
}

impl Prefix {
    pub fn mask(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        }
    }

    #[cfg(test)]
    pub fn contains(self, addr: u32) -> bool {
        addr & Prefix::mask(self.len) == self.addr
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.addr), self.len)
    }
}

pub fn parse_prefix(s: &str) -> Result<Prefix> {
    let (a, l) = s.split_once('/').unwrap_or((s, "32"));
    let addr: Ipv4Addr = a.parse().with_context(|| format!("bad prefix {s:?}"))?;
    let len: u8 = l
        .parse()
        .ok()
        .filter(|l| *l <= 32)
        .with_context(|| format!("bad prefix length in {s:?}"))?;
    let addr = u32::from(addr);
    if addr & !Prefix::mask(len) != 0 {
        bail!("prefix {s:?} has host bits set");
    }
    Ok(Prefix { addr, len })
}

pub fn parse_ports(s: &str) -> Result<(u16, u16)> {
    let port = |p: &str| -> Result<u16> {
        p.trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .with_context(|| format!("bad port {p:?} in {s:?}"))
    };
    let (lo, hi) = match s.split_once('-') {
        Some((lo, hi)) => (port(lo)?, port(hi)?),
        None => (port(s)?, port(s)?),
    };
    if lo > hi {
        bail!("empty port range {s:?}");
    }
    Ok((lo, hi))
}

impl Rule {
    pub fn parse(&self) -> Result<ParsedRule> {
        let r = ParsedRule {
            src: self.src.as_deref().map(parse_prefix).transpose()?,
            dst: self.dst.as_deref().map(parse_prefix).transpose()?,
            proto: self.proto.map(Proto::number),
            sport: self.sport.as_deref().map(parse_ports).transpose()?,
            dport: self.dport.as_deref().map(parse_ports).transpose()?,
            accept: self.action == Action::Accept,
        };
        if (r.sport.is_some() || r.dport.is_some()) && r.proto.is_none() {
            bail!("a rule with ports must name its protocol");
        }
        Ok(r)
    }
}

impl FirewallInput {
    pub fn parse_rules(&self) -> Result<Vec<ParsedRule>> {
        self.rules
            .iter()
            .enumerate()
            .map(|(i, r)| r.parse().with_context(|| format!("rule [{i}]")))
            .collect()
    }

    /// The ruleset after `op`; `self` is unchanged on error.
    pub fn apply(&self, op: &FirewallOp) -> Result<FirewallInput> {
        let mut next = self.clone();
        match op {
            FirewallOp::Insert { index, rule } => {
                if *index > next.rules.len() {
                    bail!(
                        "insert at [{index}]: the ruleset has {} rules",
                        next.rules.len()
                    );
                }
                next.rules.insert(*index, rule.clone());
            }
            FirewallOp::Delete { index } => {
                if *index >= next.rules.len() {
                    bail!(
                        "delete [{index}]: the ruleset has {} rules",
                        next.rules.len()
                    );
                }
                next.rules.remove(*index);
            }
        }
        Ok(next)
    }
}
