//! Deterministic generators: the same spec always expands to the same
//! services / rules, in the same order, so snapshots and results compare.

use super::firewall::Rule;
use super::services::{Affinity, Service};
use super::topology::{backend_addr, filler_source, generated_vip, CLIENT_NET, CLUSTER_CIDR};
use super::types::{Cidr, Endpoint, PortRange, Proto, Verdict};

/// Concrete parameters of a service generator (already validated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceGen {
    pub count: usize,
    pub backends: usize,
    pub proto: Proto,
    pub udp_every: usize,
    pub affinity_every: usize,
    pub affinity_timeout: u32,
    pub port: u16,
    pub backend_port: u16,
}

impl ServiceGen {
    /// `count` TCP services on the standard ports with `backends` each, no
    /// UDP, no affinity: the generator the measurements use, and the base
    /// tests vary with struct-update syntax.
    pub fn plain(count: usize, backends: usize) -> ServiceGen {
        ServiceGen {
            count,
            backends,
            proto: Proto::Tcp,
            udp_every: 0,
            affinity_every: 0,
            affinity_timeout: super::services::DEFAULT_AFFINITY_TIMEOUT,
            port: super::topology::SERVICE_PORT,
            backend_port: super::topology::BACKEND_PORT,
        }
    }

    /// K: the number of backend namespaces the services share.
    pub fn backend_pool(&self) -> usize {
        self.backends.max(4)
    }

    /// Service `i` (0-based). Public so an update test can make "the next"
    /// service of a generated workload.
    pub fn service(&self, i: usize) -> Service {
        let every = |n: usize| n != 0 && (i + 1).is_multiple_of(n);
        let proto = if every(self.udp_every) {
            Proto::Udp
        } else {
            self.proto
        };
        let pool = self.backend_pool();
        // Round-robin window of B consecutive namespaces: distinct because
        // B <= K, and every namespace gets the same share.
        let start = (i * self.backends) % pool;
        let backends = (0..self.backends)
            .map(|j| Endpoint::new(backend_addr((start + j) % pool), self.backend_port))
            .collect();
        Service {
            name: format!("svc{i}"),
            vip: generated_vip(i),
            port: self.port,
            proto,
            affinity: every(self.affinity_every).then_some(Affinity {
                timeout_seconds: self.affinity_timeout,
            }),
            backends,
        }
    }

    pub fn expand(&self) -> Vec<Service> {
        (0..self.count).map(|i| self.service(i)).collect()
    }
}

/// Concrete parameters of a firewall generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirewallGen {
    pub count: usize,
    pub backends: usize,
    pub filler_action: Verdict,
    pub match_action: Verdict,
    pub port: u16,
}

impl FirewallGen {
    /// Filler rule `i`: same shape as the probe traffic (tcp to a backend's
    /// port) but from a source no probe uses, so every probe walks past it.
    pub fn filler(&self, i: usize) -> Rule {
        Rule {
            src: Some(Cidr::host(filler_source(i))),
            dst: Some(Cidr::host(backend_addr(i % self.backends))),
            proto: Some(Proto::Tcp),
            sport: None,
            dport: Some(PortRange::single(self.port)),
            action: self.filler_action,
        }
    }

    /// The rules the probe traffic (client -> any backend:port) matches.
    pub fn matching(&self) -> Vec<Rule> {
        [Proto::Tcp, Proto::Udp]
            .into_iter()
            .map(|proto| Rule {
                src: Some(CLIENT_NET),
                dst: Some(CLUSTER_CIDR),
                proto: Some(proto),
                sport: None,
                dport: Some(PortRange::single(self.port)),
                action: self.match_action,
            })
            .collect()
    }

    pub fn expand(&self) -> Vec<Rule> {
        let mut rules: Vec<Rule> = (0..self.count).map(|i| self.filler(i)).collect();
        rules.extend(self.matching());
        rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn gen(count: usize, backends: usize) -> ServiceGen {
        ServiceGen {
            udp_every: 10,
            affinity_every: 4,
            ..ServiceGen::plain(count, backends)
        }
    }

    #[test]
    fn services_are_deterministic_and_round_robin() {
        let g = gen(20, 3);
        assert_eq!(g.expand(), g.expand());
        let s = g.expand();
        assert_eq!(s[0].vip.to_string(), "10.96.0.1");
        assert_eq!(s[0].name, "svc0");
        assert_eq!(
            s[0].backends
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>(),
            ["10.200.0.2:8080", "10.200.1.2:8080", "10.200.2.2:8080"]
        );
        // K = max(4, 3) = 4: service 1 starts at namespace 3 and wraps.
        assert_eq!(
            s[1].backends
                .iter()
                .map(|e| e.ip.octets()[2])
                .collect::<Vec<_>>(),
            [3, 0, 1]
        );
        for svc in &s {
            let distinct: BTreeSet<_> = svc.backends.iter().collect();
            assert_eq!(distinct.len(), 3);
        }
        assert_eq!(s[9].proto, Proto::Udp);
        assert_eq!(s[8].proto, Proto::Tcp);
        assert!(s[3].affinity.is_some() && s[2].affinity.is_none());
    }

    #[test]
    fn firewall_generator_puts_matching_rules_last() {
        let g = FirewallGen {
            count: 5,
            backends: 4,
            filler_action: Verdict::Drop,
            match_action: Verdict::Accept,
            port: 8080,
        };
        let r = g.expand();
        assert_eq!(r.len(), 7);
        assert_eq!(r[0].src.unwrap().to_string(), "172.16.0.1/32");
        assert_eq!(r[4].dst.unwrap().to_string(), "10.200.0.2/32");
        assert_eq!(r[5].action, Verdict::Accept);
        assert_eq!(r[6].proto, Some(Proto::Udp));
    }
}
