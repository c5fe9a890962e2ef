//! Checks on the concrete model. Run after expansion and after every
//! update, so nothing malformed ever reaches a renderer or a guest.

use std::collections::{BTreeMap, BTreeSet};

use super::firewall::Firewall;
use super::services::Services;
use super::WorkloadError;

/// Upper bound on a generator's count: the benchmarks go to 100k, and
/// beyond this a typo (an extra zero) is likelier than intent.
pub const MAX_COUNT: usize = 200_000;

/// Upper bound on a whole workload (generated plus listed entries).
pub const MAX_TOTAL: usize = 250_000;

/// kube-proxy's maximum ClientIP timeout (one day).
pub const MAX_AFFINITY_TIMEOUT: u32 = 86_400;

/// Names end up in chain names and comments, so they must be DNS labels
/// like Kubernetes service names.
fn check_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok_ends = name
        .bytes()
        .next()
        .zip(name.bytes().last())
        .is_some_and(|(a, z)| a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric());
    if name.is_empty() || name.len() > 63 || !ok_chars || !ok_ends {
        return Err(format!(
            "name {name:?} is not a DNS label (1-63 chars of a-z, 0-9, '-', starting and ending alphanumeric)"
        ));
    }
    Ok(())
}

pub fn validate_services(s: &Services) -> Result<(), WorkloadError> {
    if s.services.len() > MAX_TOTAL {
        return Err(WorkloadError::TooMany {
            what: "services",
            count: s.services.len(),
            max: MAX_TOTAL,
        });
    }
    let mut names = BTreeSet::new();
    let mut owners = BTreeMap::new();
    for svc in &s.services {
        let bad = |problem: String| WorkloadError::Service {
            service: svc.name.clone(),
            problem,
        };
        check_name(&svc.name).map_err(bad)?;
        if !names.insert(svc.name.as_str()) {
            return Err(WorkloadError::DuplicateServiceName(svc.name.clone()));
        }
        if svc.port == 0 {
            return Err(bad("port 0 is not a usable port".into()));
        }
        if svc.backends.is_empty() {
            return Err(bad("has zero backends".into()));
        }
        let mut seen = BTreeSet::new();
        for b in &svc.backends {
            if b.port == 0 {
                return Err(bad(format!("backend {b}: port 0 is not a usable port")));
            }
            if !seen.insert(b) {
                return Err(bad(format!("backend {b} is listed twice")));
            }
        }
        if let Some(a) = svc.affinity {
            if a.timeout_seconds == 0 || a.timeout_seconds > MAX_AFFINITY_TIMEOUT {
                return Err(bad(format!(
                    "affinity timeout {} s is outside 1..={MAX_AFFINITY_TIMEOUT}",
                    a.timeout_seconds
                )));
            }
        }
        if let Some(first) = owners.insert((svc.vip, svc.port, svc.proto), svc.name.as_str()) {
            return Err(WorkloadError::DuplicateVip {
                first: first.to_string(),
                second: svc.name.clone(),
                vip: svc.vip,
                port: svc.port,
                proto: svc.proto,
            });
        }
    }
    Ok(())
}

pub fn validate_firewall(f: &Firewall) -> Result<(), WorkloadError> {
    if f.rules.len() > MAX_TOTAL {
        return Err(WorkloadError::TooMany {
            what: "firewall rules",
            count: f.rules.len(),
            max: MAX_TOTAL,
        });
    }
    for (index, r) in f.rules.iter().enumerate() {
        let bad = |problem: String| WorkloadError::Rule { index, problem };
        if (r.sport.is_some() || r.dport.is_some()) && r.proto.is_none() {
            return Err(bad("a port match needs proto = \"tcp\" or \"udp\"".into()));
        }
        for (what, range) in [("sport", r.sport), ("dport", r.dport)] {
            if let Some(range) = range {
                if range.lo == 0 {
                    return Err(bad(format!("{what}: port 0 is not a usable port")));
                }
                if range.lo > range.hi {
                    return Err(bad(format!("{what}: empty port range {range}")));
                }
            }
        }
        for (what, cidr) in [("src", r.src), ("dst", r.dst)] {
            if let Some(c) = cidr {
                if c.prefix > 32 || u32::from(c.addr) & !c.mask() != 0 {
                    return Err(bad(format!("{what}: bad CIDR {}/{}", c.addr, c.prefix)));
                }
            }
        }
    }
    Ok(())
}
