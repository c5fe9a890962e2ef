//! Fixed address plan of the guest topology. The renderers and the VM side
//! (which creates the namespaces) must agree on these numbers, so they live
//! in one place.
//!
//! client netns `10.100.0.2/24` ── root ns (LB / firewall node) ── backend
//! netns k at `10.200.k.2/24`, each reached through `10.200.k.1`.

use std::net::Ipv4Addr;

use super::types::Cidr;

/// Address of the client namespace.
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 2);
/// Root-namespace side of the client link (the client's default gateway).
pub const CLIENT_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 1);
pub const CLIENT_PREFIX: u8 = 24;
/// The client's subnet, as firewall rules name it.
pub const CLIENT_NET: Cidr = Cidr {
    addr: Ipv4Addr::new(10, 100, 0, 0),
    prefix: 24,
};

pub const BACKEND_PREFIX: u8 = 24;
/// Backend namespaces are numbered 0..=255 (one /24 each).
pub const MAX_BACKENDS: usize = 256;
/// Port every backend server listens on (TCP and UDP) unless a workload
/// names other ports.
pub const BACKEND_PORT: u16 = 8080;

/// All backend namespaces live here. kube-proxy calls this the cluster
/// (pod) CIDR: traffic from outside it is marked for masquerade, the same
/// way in every technology's layout.
pub const CLUSTER_CIDR: Cidr = Cidr {
    addr: Ipv4Addr::new(10, 200, 0, 0),
    prefix: 16,
};

/// Generated VIPs count upward from here (10.96.0.1, 10.96.0.2, ...).
pub const SERVICE_CIDR: Cidr = Cidr {
    addr: Ipv4Addr::new(10, 96, 0, 0),
    prefix: 16,
};

/// Port of generated services.
pub const SERVICE_PORT: u16 = 80;

/// Address of backend namespace `k` (`10.200.k.2`).
pub fn backend_addr(k: usize) -> Ipv4Addr {
    assert!(k < MAX_BACKENDS, "backend index {k} out of range");
    Ipv4Addr::new(10, 200, k as u8, 2)
}

/// Root-namespace side of backend `k`'s link (`10.200.k.1`).
pub fn backend_gateway(k: usize) -> Ipv4Addr {
    assert!(k < MAX_BACKENDS, "backend index {k} out of range");
    Ipv4Addr::new(10, 200, k as u8, 1)
}

/// The backend namespace index an address belongs to, if it is one.
pub fn backend_index(ip: Ipv4Addr) -> Option<usize> {
    let o = ip.octets();
    (o[0] == 10 && o[1] == 200 && o[3] == 2).then_some(o[2] as usize)
}

/// VIP of generated service `i` (0-based): 10.96.0.1 + i. Above 65 534
/// services this continues past 10.96.255.255 into 10.97.x.y, which is fine
/// for every technology (nothing routes the service range).
pub fn generated_vip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(SERVICE_CIDR.addr) + 1 + i as u32)
}

/// Source of generated non-matching firewall rule `i`: 172.16.0.0/12 is
/// disjoint from every address the probes use.
pub fn filler_source(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 1)) + i as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_plan() {
        assert_eq!(backend_addr(3), Ipv4Addr::new(10, 200, 3, 2));
        assert_eq!(backend_gateway(3), Ipv4Addr::new(10, 200, 3, 1));
        assert_eq!(backend_index(backend_addr(7)), Some(7));
        assert_eq!(backend_index(CLIENT_ADDR), None);
        assert_eq!(generated_vip(0), Ipv4Addr::new(10, 96, 0, 1));
        assert_eq!(generated_vip(255), Ipv4Addr::new(10, 96, 1, 0));
        assert!(CLUSTER_CIDR.contains(backend_addr(255)));
        assert!(!CLUSTER_CIDR.contains(CLIENT_ADDR));
        assert!(CLIENT_NET.contains(CLIENT_ADDR));
        assert!(!CLIENT_NET.contains(filler_source(199_999)));
    }
}
