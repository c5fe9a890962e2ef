//! The services family: kube-proxy-like virtual IPs, each with an ordered
//! list of backends, plus the reference semantics the probes are judged by.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::types::{Endpoint, Proto};

/// Every service lives in this Kubernetes namespace; it only shows up in
/// chain names and comments, where kube-proxy puts it.
pub const NAMESPACE: &str = "default";

/// kube-proxy's ClientIP default timeout (seconds).
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10800;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Affinity {
    pub timeout_seconds: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub vip: Ipv4Addr,
    pub port: u16,
    pub proto: Proto,
    /// `Some` = ClientIP session affinity.
    pub affinity: Option<Affinity>,
    /// In order: the order decides the probability cascade / numgen slots.
    pub backends: Vec<Endpoint>,
}

impl Service {
    /// The Service port's name, as a Kubernetes Service would name it.
    pub fn port_name(&self) -> String {
        format!("p{}", self.port)
    }

    /// kube-proxy's `ServicePortName.String()`: `default/web:p80`. Chain
    /// hashes are computed over this.
    pub fn service_port_name(&self) -> String {
        format!("{NAMESPACE}/{}:{}", self.name, self.port_name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Services {
    pub services: Vec<Service>,
}

/// What a correct load balancer does with one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// Translated to one of these (uniformly at random, or sticky for
    /// affinity services).
    Backends(BTreeSet<Endpoint>),
    /// No service owns this destination: the packet is not DNATed (what
    /// happens to it then differs by technology and is not judged here).
    NotTranslated,
}

impl Services {
    pub fn find(&self, proto: Proto, dst: Ipv4Addr, dport: u16) -> Option<&Service> {
        self.services
            .iter()
            .find(|s| s.proto == proto && s.vip == dst && s.port == dport)
    }

    pub fn by_name(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    pub fn expected(&self, proto: Proto, dst: Ipv4Addr, dport: u16) -> Expected {
        expected(self, proto, dst, dport)
    }

    /// Every (address, port) some service sends traffic to: the VM side
    /// creates one namespace per address and listens on these ports with
    /// both TCP and UDP.
    pub fn backend_endpoints(&self) -> BTreeSet<(Ipv4Addr, u16)> {
        self.services
            .iter()
            .flat_map(|s| s.backends.iter().map(|e| (e.ip, e.port)))
            .collect()
    }

    /// Distinct VIPs, in first-use order (IPVS binds each once).
    pub fn vips(&self) -> Vec<Ipv4Addr> {
        let mut seen = BTreeSet::new();
        self.services
            .iter()
            .filter(|s| seen.insert(s.vip))
            .map(|s| s.vip)
            .collect()
    }
}

/// Reference semantics: which backends may serve `proto dst:dport`.
pub fn expected(services: &Services, proto: Proto, dst: Ipv4Addr, dport: u16) -> Expected {
    match services.find(proto, dst, dport) {
        Some(s) => Expected::Backends(s.backends.iter().copied().collect()),
        None => Expected::NotTranslated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str) -> Endpoint {
        s.parse().unwrap()
    }

    fn sample() -> Services {
        Services {
            services: vec![
                Service {
                    name: "web".into(),
                    vip: Ipv4Addr::new(10, 96, 0, 10),
                    port: 80,
                    proto: Proto::Tcp,
                    affinity: None,
                    backends: vec![ep("10.200.0.2:8080"), ep("10.200.1.2:8080")],
                },
                Service {
                    name: "dns".into(),
                    vip: Ipv4Addr::new(10, 96, 0, 10),
                    port: 53,
                    proto: Proto::Udp,
                    affinity: None,
                    backends: vec![ep("10.200.2.2:8080")],
                },
            ],
        }
    }

    #[test]
    fn oracle_matches_vip_port_and_proto() {
        let s = sample();
        let vip = Ipv4Addr::new(10, 96, 0, 10);
        assert_eq!(
            s.expected(Proto::Tcp, vip, 80),
            Expected::Backends([ep("10.200.0.2:8080"), ep("10.200.1.2:8080")].into())
        );
        assert_eq!(s.expected(Proto::Udp, vip, 80), Expected::NotTranslated);
        assert_eq!(s.expected(Proto::Tcp, vip, 53), Expected::NotTranslated);
        assert_eq!(
            s.expected(Proto::Udp, vip, 53),
            Expected::Backends([ep("10.200.2.2:8080")].into())
        );
        assert_eq!(
            s.expected(Proto::Tcp, Ipv4Addr::new(10, 96, 0, 11), 80),
            Expected::NotTranslated
        );
    }

    #[test]
    fn endpoints_and_vips() {
        let s = sample();
        assert_eq!(s.backend_endpoints().len(), 3);
        assert_eq!(s.vips(), vec![Ipv4Addr::new(10, 96, 0, 10)]);
        assert_eq!(s.services[0].service_port_name(), "default/web:p80");
    }
}
