//! The firewall family: an ordered 5-tuple rule list with a default
//! policy (bpf-iptables paper style), and its reference semantics.

use std::net::Ipv4Addr;

use super::types::{Cidr, PortRange, Proto, Verdict};

/// One filter rule; an absent field matches anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rule {
    pub src: Option<Cidr>,
    pub dst: Option<Cidr>,
    /// Required whenever a port is given (every tool needs it).
    pub proto: Option<Proto>,
    pub sport: Option<PortRange>,
    pub dport: Option<PortRange>,
    pub action: Verdict,
}

impl Rule {
    pub fn matches(&self, p: &Packet) -> bool {
        self.src.is_none_or(|c| c.contains(p.src))
            && self.dst.is_none_or(|c| c.contains(p.dst))
            && self.proto.is_none_or(|x| x == p.proto)
            && self.sport.is_none_or(|r| r.contains(p.sport))
            && self.dport.is_none_or(|r| r.contains(p.dport))
    }

    /// A short human description for error messages and comments.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(c) = self.src {
            parts.push(format!("src {c}"));
        }
        if let Some(c) = self.dst {
            parts.push(format!("dst {c}"));
        }
        if let Some(p) = self.proto {
            parts.push(p.to_string());
        }
        if let Some(r) = self.sport {
            parts.push(format!("sport {r}"));
        }
        if let Some(r) = self.dport {
            parts.push(format!("dport {r}"));
        }
        parts.push(self.action.to_string());
        parts.join(" ")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firewall {
    pub default_policy: Verdict,
    /// Accept packets of established/related connections before any rule
    /// (so replies pass a default-drop policy).
    pub accept_established: bool,
    pub rules: Vec<Rule>,
}

/// The first packet of a connection, as the probe sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Packet {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: Proto,
    pub sport: u16,
    pub dport: u16,
}

impl Firewall {
    pub fn verdict(&self, packet: &Packet) -> Verdict {
        expected_verdict(&self.rules, self.default_policy, packet)
    }
}

/// Reference semantics for a NEW connection's first packet: the first
/// matching rule decides, else the policy. (`accept_established` does not
/// apply to a first packet.)
pub fn expected_verdict(rules: &[Rule], policy: Verdict, packet: &Packet) -> Verdict {
    rules
        .iter()
        .find(|r| r.matches(packet))
        .map_or(policy, |r| r.action)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(src: &str, dst: &str, proto: Proto, dport: u16) -> Packet {
        Packet {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            proto,
            sport: 40000,
            dport,
        }
    }

    #[test]
    fn first_match_wins_with_ranges_and_prefixes() {
        let rules = vec![
            Rule {
                src: Some("10.100.0.0/24".parse().unwrap()),
                dst: Some("10.200.1.2/32".parse().unwrap()),
                proto: Some(Proto::Tcp),
                sport: None,
                dport: Some("8080-8081".parse().unwrap()),
                action: Verdict::Drop,
            },
            Rule {
                src: Some("10.100.0.0/16".parse().unwrap()),
                dst: None,
                proto: None,
                sport: None,
                dport: None,
                action: Verdict::Accept,
            },
        ];
        let v = |p: Packet| expected_verdict(&rules, Verdict::Drop, &p);
        assert_eq!(
            v(pkt("10.100.0.2", "10.200.1.2", Proto::Tcp, 8081)),
            Verdict::Drop
        );
        assert_eq!(
            v(pkt("10.100.0.2", "10.200.1.2", Proto::Tcp, 8082)),
            Verdict::Accept
        );
        assert_eq!(
            v(pkt("10.100.0.2", "10.200.1.2", Proto::Udp, 8080)),
            Verdict::Accept
        );
        assert_eq!(
            v(pkt("10.101.0.2", "10.200.1.2", Proto::Udp, 8080)),
            Verdict::Drop
        );
        assert_eq!(
            expected_verdict(
                &[],
                Verdict::Accept,
                &pkt("1.1.1.1", "2.2.2.2", Proto::Tcp, 1)
            ),
            Verdict::Accept
        );
    }
}
