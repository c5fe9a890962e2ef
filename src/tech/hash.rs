//! Chain names as kube-proxy derives them, so our rulesets look like (and
//! are as long as) the ones real clusters run.

use sha2::{Digest, Sha256};

use crate::workload::{Endpoint, Service};

const BASE32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 (Go's `base32.StdEncoding`), without padding: callers
/// only ever take a prefix.
pub fn base32(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let mut buffer: u64 = 0;
    let mut bits = 0;
    for &byte in data {
        buffer = (buffer << 8) | u64::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32_ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(BASE32_ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn sha256_base32(input: &str) -> String {
    base32(&Sha256::digest(input.as_bytes()))
}

/// kube-proxy iptables `portProtoHash`: first 16 base32 chars of
/// sha256(servicePortName + protocol).
pub fn port_proto_hash(service_port_name: &str, proto: &str) -> String {
    sha256_base32(&format!("{service_port_name}{proto}"))[..16].to_string()
}

/// `KUBE-SVC-<hash>` of a service.
pub fn kube_svc_chain(svc: &Service) -> String {
    format!(
        "KUBE-SVC-{}",
        port_proto_hash(&svc.service_port_name(), svc.proto.as_str())
    )
}

/// `KUBE-SEP-<hash>`: sha256(servicePortName + protocol + "IP:PORT").
pub fn kube_sep_chain(svc: &Service, ep: &Endpoint) -> String {
    let input = format!("{}{}{}", svc.service_port_name(), svc.proto, ep);
    format!("KUBE-SEP-{}", &sha256_base32(&input)[..16])
}

/// kube-proxy nftables `hashAndTruncate`: 8 base32 chars of the name's
/// sha256, a dash, then the readable name (never long enough here to need
/// truncation: DNS-label service names keep it under nft's 256 limit).
pub fn hash_and_truncate(name: &str) -> String {
    format!("{}-{}", &sha256_base32(name)[..8], name)
}

/// `ns/name/proto/portname`, the readable part of nft service chains.
pub fn nft_service_base(svc: &Service) -> String {
    hash_and_truncate(&format!(
        "{}/{}/{}/{}",
        crate::workload::services::NAMESPACE,
        svc.name,
        svc.proto,
        svc.port_name()
    ))
}

/// `ns/name/proto/portname__ip/port`, the readable part of endpoint chains.
pub fn nft_endpoint_base(svc: &Service, ep: &Endpoint) -> String {
    hash_and_truncate(&format!(
        "{}/{}/{}/{}__{}/{}",
        crate::workload::services::NAMESPACE,
        svc.name,
        svc.proto,
        svc.port_name(),
        ep.ip,
        ep.port
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
    }

    // Vectors from kube-proxy's own tests (pkg/proxy/iptables and
    // pkg/proxy/nftables proxier_test.go): ns1/svc1 port p80, endpoint
    // 10.180.0.1:80.
    #[test]
    fn matches_kube_proxy_vectors() {
        assert_eq!(port_proto_hash("ns1/svc1:p80", "tcp"), "XPGD46QRK7WJZT7O");
        assert_eq!(
            &sha256_base32("ns1/svc1:p80tcp10.180.0.1:80")[..16],
            "SXIVWICOYRO3J4NJ"
        );
        assert_eq!(
            hash_and_truncate("ns1/svc1/tcp/p80"),
            "ULMVA6XW-ns1/svc1/tcp/p80"
        );
        assert_eq!(
            hash_and_truncate("ns1/svc1/tcp/p80__10.180.0.1/80"),
            "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
        );
    }
}
