//! Technology-neutral workload model (services and firewall families).
//!
//! A TOML file ([`spec`]) is expanded ([`WorkloadSpec::expand`]) into a
//! concrete, validated [`Workload`]; renderers in `crate::tech` only ever
//! see the concrete model.

pub mod firewall;
pub mod generate;
pub mod services;
pub mod spec;
pub mod topology;
pub mod types;
pub mod update;
pub mod validate;

use std::net::Ipv4Addr;
use std::path::Path;

pub use firewall::{expected_verdict, Firewall, Packet, Rule};
pub use generate::{FirewallGen, ServiceGen};
pub use services::{expected, Affinity, Expected, Service, Services};
pub use spec::{FirewallSpec, ServicesSpec, WorkloadSpec};
pub use types::{Cidr, Endpoint, PortRange, Proto, Verdict};
pub use update::{UpdateError, UpdateOp};

use spec::{FirewallGenerator, PortSpec, RuleSpec, ServiceGenerator, ServiceSpec};
use validate::MAX_COUNT;

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("reading workload file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("workload TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("workload has neither [services] nor [firewall]")]
    NoFamily,
    #[error("workload has both [services] and [firewall]; a workload file describes one family")]
    BothFamilies,
    #[error("[services] lists no service and has no [services.generate]")]
    NoServices,
    #[error("service {service:?}: {problem}")]
    Service { service: String, problem: String },
    #[error("service name {0:?} is used twice")]
    DuplicateServiceName(String),
    #[error("services {first:?} and {second:?} both claim {vip}:{port}/{proto}")]
    DuplicateVip {
        first: String,
        second: String,
        vip: Ipv4Addr,
        port: u16,
        proto: Proto,
    },
    #[error("[firewall]: {0}")]
    FirewallSetting(String),
    #[error("firewall rule [{index}]: {problem}")]
    Rule { index: usize, problem: String },
    #[error("[{family}.generate]: {problem}")]
    Generator {
        family: &'static str,
        problem: String,
    },
    #[error("{count} {what} is more than the limit of {max}")]
    TooMany {
        what: &'static str,
        count: usize,
        max: usize,
    },
}

/// A concrete, validated workload of one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workload {
    Services(Services),
    Firewall(Firewall),
}

impl Workload {
    pub fn from_toml_str(text: &str) -> Result<Workload, WorkloadError> {
        let spec: WorkloadSpec = toml::from_str(text)?;
        spec.expand()
    }

    pub fn from_file(path: &Path) -> Result<Workload, WorkloadError> {
        let text = std::fs::read_to_string(path).map_err(|source| WorkloadError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_str(&text)
    }

    pub fn family(&self) -> &'static str {
        match self {
            Workload::Services(_) => "services",
            Workload::Firewall(_) => "firewall",
        }
    }

    pub fn validate(&self) -> Result<(), WorkloadError> {
        match self {
            Workload::Services(s) => validate::validate_services(s),
            Workload::Firewall(f) => validate::validate_firewall(f),
        }
    }
}

impl WorkloadSpec {
    pub fn expand(&self) -> Result<Workload, WorkloadError> {
        match (&self.services, &self.firewall) {
            (Some(s), None) => Ok(Workload::Services(s.expand()?)),
            (None, Some(f)) => Ok(Workload::Firewall(f.expand()?)),
            (Some(_), Some(_)) => Err(WorkloadError::BothFamilies),
            (None, None) => Err(WorkloadError::NoFamily),
        }
    }
}

fn port_u16(v: i64) -> Result<u16, String> {
    match v {
        0 => Err("port 0 is not a usable port".into()),
        1..=65535 => Ok(v as u16),
        _ => Err(format!("port {v} is outside 1..=65535")),
    }
}

fn check_count(family: &'static str, count: usize) -> Result<(), WorkloadError> {
    if count > MAX_COUNT {
        return Err(WorkloadError::Generator {
            family,
            problem: format!("count {count} is more than the limit of {MAX_COUNT}"),
        });
    }
    Ok(())
}

impl ServiceSpec {
    fn to_service(&self) -> Result<Service, WorkloadError> {
        let bad = |problem: String| WorkloadError::Service {
            service: self.name.clone(),
            problem,
        };
        let vip = types::parse_ipv4(&self.vip).map_err(|e| bad(format!("vip: {e}")))?;
        let port = port_u16(self.port).map_err(bad)?;
        let proto: Proto = self.proto.parse().map_err(bad)?;
        let affinity = match self.affinity.as_deref() {
            None | Some("none") => {
                if self.affinity_timeout.is_some() {
                    return Err(bad(
                        "affinity_timeout given without affinity = \"client-ip\"".into(),
                    ));
                }
                None
            }
            Some("client-ip") => {
                let t = self
                    .affinity_timeout
                    .unwrap_or(i64::from(services::DEFAULT_AFFINITY_TIMEOUT));
                let timeout_seconds = u32::try_from(t)
                    .map_err(|_| bad(format!("affinity timeout {t} s is out of range")))?;
                Some(Affinity { timeout_seconds })
            }
            Some(other) => {
                return Err(bad(format!(
                    "unknown affinity {other:?} (expected \"client-ip\" or \"none\")"
                )))
            }
        };
        let backends = self
            .backends
            .iter()
            .map(|b| b.parse::<Endpoint>().map_err(&bad))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Service {
            name: self.name.clone(),
            vip,
            port,
            proto,
            affinity,
            backends,
        })
    }
}

impl ServiceGenerator {
    pub fn to_gen(&self) -> Result<ServiceGen, WorkloadError> {
        let bad = |problem: String| WorkloadError::Generator {
            family: "services",
            problem,
        };
        check_count("services", self.count)?;
        if self.backends == 0 {
            return Err(bad(
                "backends = 0: every service needs at least one backend".into(),
            ));
        }
        if self.backends > topology::MAX_BACKENDS {
            return Err(bad(format!(
                "backends = {} but the topology has {} backend namespaces",
                self.backends,
                topology::MAX_BACKENDS
            )));
        }
        let affinity_timeout = u32::try_from(self.affinity_timeout)
            .ok()
            .filter(|t| (1..=validate::MAX_AFFINITY_TIMEOUT).contains(t))
            .ok_or_else(|| {
                bad(format!(
                    "affinity_timeout {} s is outside 1..={}",
                    self.affinity_timeout,
                    validate::MAX_AFFINITY_TIMEOUT
                ))
            })?;
        Ok(ServiceGen {
            count: self.count,
            backends: self.backends,
            proto: self.proto.parse().map_err(bad)?,
            udp_every: self.udp_every,
            affinity_every: self.affinity_every,
            affinity_timeout,
            port: port_u16(self.port).map_err(|e| bad(format!("port: {e}")))?,
            backend_port: port_u16(self.backend_port)
                .map_err(|e| bad(format!("backend_port: {e}")))?,
        })
    }
}

impl ServicesSpec {
    /// Explicit services first, then generated ones; then validation.
    pub fn expand(&self) -> Result<Services, WorkloadError> {
        if self.service.is_empty() && self.generate.is_none() {
            return Err(WorkloadError::NoServices);
        }
        check_count("services", self.service.len())?;
        let mut services = self
            .service
            .iter()
            .map(ServiceSpec::to_service)
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(g) = &self.generate {
            services.extend(g.to_gen()?.expand());
        }
        let services = Services { services };
        validate::validate_services(&services)?;
        Ok(services)
    }
}

impl RuleSpec {
    fn to_rule(&self, index: usize) -> Result<Rule, WorkloadError> {
        let bad = |problem: String| WorkloadError::Rule { index, problem };
        let cidr = |what: &str, v: &Option<String>| -> Result<Option<Cidr>, WorkloadError> {
            v.as_deref()
                .map(|s| s.parse::<Cidr>().map_err(|e| bad(format!("{what}: {e}"))))
                .transpose()
        };
        let ports =
            |what: &str, v: &Option<PortSpec>| -> Result<Option<PortRange>, WorkloadError> {
                let Some(v) = v else { return Ok(None) };
                let text = match v {
                    PortSpec::Number(n) => n.to_string(),
                    PortSpec::Text(s) => s.clone(),
                };
                text.parse::<PortRange>()
                    .map(Some)
                    .map_err(|e| bad(format!("{what}: {e}")))
            };
        Ok(Rule {
            src: cidr("src", &self.src)?,
            dst: cidr("dst", &self.dst)?,
            proto: self
                .proto
                .as_deref()
                .map(|p| p.parse::<Proto>().map_err(&bad))
                .transpose()?,
            sport: ports("sport", &self.sport)?,
            dport: ports("dport", &self.dport)?,
            action: self.action.parse().map_err(&bad)?,
        })
    }
}

impl FirewallGenerator {
    pub fn to_gen(&self) -> Result<FirewallGen, WorkloadError> {
        let bad = |problem: String| WorkloadError::Generator {
            family: "firewall",
            problem,
        };
        check_count("firewall", self.count)?;
        if self.backends == 0 || self.backends > topology::MAX_BACKENDS {
            return Err(bad(format!(
                "backends = {} is outside 1..={}",
                self.backends,
                topology::MAX_BACKENDS
            )));
        }
        Ok(FirewallGen {
            count: self.count,
            backends: self.backends,
            filler_action: self
                .filler_action
                .parse()
                .map_err(|e| bad(format!("filler_action: {e}")))?,
            match_action: self
                .match_action
                .parse()
                .map_err(|e| bad(format!("match_action: {e}")))?,
            port: topology::BACKEND_PORT,
        })
    }
}

impl FirewallSpec {
    /// Explicit rules first (they take precedence), then generated ones.
    pub fn expand(&self) -> Result<Firewall, WorkloadError> {
        check_count("firewall", self.rule.len())?;
        let default_policy = self
            .default_policy
            .parse()
            .map_err(|e| WorkloadError::FirewallSetting(format!("default_policy: {e}")))?;
        let mut rules = self
            .rule
            .iter()
            .enumerate()
            .map(|(i, r)| r.to_rule(i))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(g) = &self.generate {
            rules.extend(g.to_gen()?.expand());
        }
        let fw = Firewall {
            default_policy,
            accept_established: self.accept_established,
            rules,
        };
        validate::validate_firewall(&fw)?;
        Ok(fw)
    }
}

#[cfg(test)]
pub(crate) mod tests;
