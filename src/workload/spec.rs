//! The TOML shape of a workload file, exactly as people write it. Values
//! stay strings here so that validation can say which service or rule is
//! wrong, in words; `expand` turns a spec into the concrete model.

use serde::{Deserialize, Serialize};

use super::topology::{BACKEND_PORT, SERVICE_PORT};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    pub services: Option<ServicesSpec>,
    pub firewall: Option<FirewallSpec>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServicesSpec {
    /// `[[services.service]]` entries, in order.
    #[serde(default)]
    pub service: Vec<ServiceSpec>,
    /// Generated services are appended after the explicit ones.
    pub generate: Option<ServiceGenerator>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: String,
    pub vip: String,
    pub port: i64,
    #[serde(default = "default_proto")]
    pub proto: String,
    /// `"client-ip"` or `"none"`.
    pub affinity: Option<String>,
    /// Seconds; kube-proxy's default is 10800.
    pub affinity_timeout: Option<i64>,
    /// `"IP:PORT"` strings.
    pub backends: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceGenerator {
    pub count: usize,
    /// Backends per service (B); they are picked round-robin from
    /// K = max(4, B) backend namespaces.
    pub backends: usize,
    #[serde(default = "default_proto")]
    pub proto: String,
    /// Every n-th service (1-based: the 10th, 20th, ...) is UDP; 0 = never.
    #[serde(default)]
    pub udp_every: usize,
    /// Every n-th service has ClientIP affinity; 0 = never.
    #[serde(default)]
    pub affinity_every: usize,
    #[serde(default = "default_affinity_timeout")]
    pub affinity_timeout: i64,
    #[serde(default = "default_service_port")]
    pub port: i64,
    #[serde(default = "default_backend_port")]
    pub backend_port: i64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FirewallSpec {
    /// `"accept"` or `"drop"`.
    pub default_policy: String,
    /// Put `ct state established,related accept` before all rules.
    #[serde(default)]
    pub accept_established: bool,
    /// `[[firewall.rule]]` entries, in order (first match wins).
    #[serde(default)]
    pub rule: Vec<RuleSpec>,
    /// Generated rules come after the explicit ones.
    pub generate: Option<FirewallGenerator>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub src: Option<String>,
    pub dst: Option<String>,
    pub proto: Option<String>,
    pub sport: Option<PortSpec>,
    pub dport: Option<PortSpec>,
    pub action: String,
}

/// A port written as a number (`8080`) or a string (`"8080"`, `"1000-2000"`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum PortSpec {
    Number(i64),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FirewallGenerator {
    /// Number of rules that the probe traffic walks past without matching.
    pub count: usize,
    /// Backend namespaces the generated rules point at (K).
    #[serde(default = "default_fw_backends")]
    pub backends: usize,
    /// Action of the non-matching rules.
    #[serde(default = "default_filler_action")]
    pub filler_action: String,
    /// Action of the final rules that match client -> backend:8080.
    #[serde(default = "default_match_action")]
    pub match_action: String,
}

fn default_proto() -> String {
    "tcp".to_string()
}
fn default_affinity_timeout() -> i64 {
    10800
}
fn default_service_port() -> i64 {
    i64::from(SERVICE_PORT)
}
fn default_backend_port() -> i64 {
    i64::from(BACKEND_PORT)
}
fn default_fw_backends() -> usize {
    4
}
fn default_filler_action() -> String {
    "drop".to_string()
}
fn default_match_action() -> String {
    "accept".to_string()
}
