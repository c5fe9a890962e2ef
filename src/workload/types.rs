//! Small network value types shared by both workload families, each parsed
//! from the strings people write in TOML.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// Transport protocol. Only the two that every technology under test can
/// load-balance and filter by port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            other => Err(format!(
                "unknown proto {other:?} (expected \"tcp\" or \"udp\")"
            )),
        }
    }
}

/// A backend address: IP and port the DNAT/real-server entry points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
}

impl Endpoint {
    pub fn new(ip: Ipv4Addr, port: u16) -> Self {
        Endpoint { ip, port }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ip, self.port)
    }
}

impl FromStr for Endpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("backend {s:?} is not IP:PORT"))?;
        let ip = parse_ipv4(ip).map_err(|e| format!("backend {s:?}: {e}"))?;
        let port = parse_port(port).map_err(|e| format!("backend {s:?}: {e}"))?;
        Ok(Endpoint { ip, port })
    }
}

/// An IPv4 prefix with no host bits set (so that every technology renders
/// and echoes it back identically).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    pub fn host(addr: Ipv4Addr) -> Self {
        Cidr { addr, prefix: 32 }
    }

    pub fn mask(self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }

    /// Inclusive address range, for overlap tests.
    pub fn range(self) -> (u32, u32) {
        let lo = u32::from(self.addr);
        (lo, lo | !self.mask())
    }

    pub fn is_host(self) -> bool {
        self.prefix == 32
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => {
                let p: u8 = p
                    .parse()
                    .ok()
                    .filter(|p| *p <= 32)
                    .ok_or_else(|| format!("bad CIDR {s:?}: prefix must be 0..=32"))?;
                (a, p)
            }
            None => (s, 32),
        };
        let addr = parse_ipv4(addr).map_err(|e| format!("bad CIDR {s:?}: {e}"))?;
        let cidr = Cidr { addr, prefix };
        if u32::from(addr) & !cidr.mask() != 0 {
            return Err(format!(
                "bad CIDR {s:?}: host bits set (did you mean {}/{prefix}?)",
                Ipv4Addr::from(u32::from(addr) & cidr.mask())
            ));
        }
        Ok(cidr)
    }
}

/// Inclusive port range; a single port is `lo == hi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub fn single(port: u16) -> Self {
        PortRange { lo: port, hi: port }
    }

    pub fn contains(self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }

    pub fn is_single(self) -> bool {
        self.lo == self.hi
    }

    /// `8080` or `1000-2000` (nftables and our TOML spelling).
    pub fn dash(self) -> String {
        if self.is_single() {
            self.lo.to_string()
        } else {
            format!("{}-{}", self.lo, self.hi)
        }
    }

    /// `8080` or `1000:2000` (iptables spelling).
    pub fn colon(self) -> String {
        if self.is_single() {
            self.lo.to_string()
        } else {
            format!("{}:{}", self.lo, self.hi)
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.dash())
    }
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (lo, hi) = match s.split_once('-') {
            Some((lo, hi)) => (parse_port(lo.trim())?, parse_port(hi.trim())?),
            None => {
                let p = parse_port(s.trim())?;
                (p, p)
            }
        };
        if lo > hi {
            return Err(format!("empty port range {s:?} (start above end)"));
        }
        Ok(PortRange { lo, hi })
    }
}

/// What a firewall rule or policy does with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Accept,
    Drop,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accept => "accept",
            Verdict::Drop => "drop",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Verdict {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "accept" => Ok(Verdict::Accept),
            "drop" => Ok(Verdict::Drop),
            other => Err(format!(
                "unknown action {other:?} (expected \"accept\" or \"drop\")"
            )),
        }
    }
}

pub(crate) fn parse_ipv4(s: &str) -> Result<Ipv4Addr, String> {
    // std accepts only dotted quads, which is what every tool echoes back.
    s.parse::<Ipv4Addr>()
        .map_err(|_| format!("{s:?} is not an IPv4 address"))
}

pub(crate) fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u32>() {
        Ok(0) => Err("port 0 is not a usable port".to_string()),
        Ok(p) if p <= 65535 => Ok(p as u16),
        Ok(p) => Err(format!("port {p} is above 65535")),
        Err(_) => Err(format!("{s:?} is not a port number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses_and_matches() {
        let c: Cidr = "10.100.0.0/24".parse().unwrap();
        assert!(c.contains("10.100.0.2".parse().unwrap()));
        assert!(!c.contains("10.100.1.2".parse().unwrap()));
        assert_eq!("10.0.0.1".parse::<Cidr>().unwrap().prefix, 32);
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        assert!("10.0.0.1/24"
            .parse::<Cidr>()
            .unwrap_err()
            .contains("host bits"));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("10.0.0/8".parse::<Cidr>().is_err());
    }

    #[test]
    fn port_ranges() {
        assert_eq!("80".parse::<PortRange>().unwrap(), PortRange::single(80));
        let r: PortRange = "1000-2000".parse().unwrap();
        assert_eq!(
            (r.colon(), r.dash()),
            ("1000:2000".into(), "1000-2000".into())
        );
        assert!(r.contains(1000) && r.contains(2000) && !r.contains(2001));
        assert!("2000-1000"
            .parse::<PortRange>()
            .unwrap_err()
            .contains("empty"));
        assert!("0".parse::<PortRange>().unwrap_err().contains("port 0"));
        assert!("70000".parse::<PortRange>().is_err());
    }

    #[test]
    fn endpoints() {
        let e: Endpoint = "10.200.0.2:8080".parse().unwrap();
        assert_eq!(e.to_string(), "10.200.0.2:8080");
        assert!("10.200.0.2".parse::<Endpoint>().is_err());
        assert!("10.200.0.2:0".parse::<Endpoint>().is_err());
    }
}
