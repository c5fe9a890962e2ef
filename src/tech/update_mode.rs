//! How a services update is sent: the smallest command that makes the
//! change (`primitive`), or what kube-proxy's proxier sends for one
//! changed service (`kube-proxy`, see `iptables_sync`, `nftables_sync`,
//! `ipvs_sync`). Both leave the same state; they differ in the work.

use std::fmt;
use std::str::FromStr;

use super::{Tech, TechError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UpdateMode {
    Primitive,
    KubeProxy,
}

impl UpdateMode {
    pub const ALL: [UpdateMode; 2] = [UpdateMode::Primitive, UpdateMode::KubeProxy];

    pub fn name(self) -> &'static str {
        match self {
            UpdateMode::Primitive => "primitive",
            UpdateMode::KubeProxy => "kube-proxy",
        }
    }

    /// The modes `tech` has for services updates. kube-proxy has no eBPF
    /// mode, and nftables-linear is a firewall layout: primitive only.
    pub fn for_services(tech: Tech) -> &'static [UpdateMode] {
        match tech {
            Tech::IptablesLegacy
            | Tech::IptablesNft
            | Tech::Nftables
            | Tech::NftablesNoAnonMaps
            | Tech::Ipvs => &Self::ALL,
            Tech::NftablesLinear | Tech::Ebpf => &[UpdateMode::Primitive],
        }
    }
}

impl fmt::Display for UpdateMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for UpdateMode {
    type Err = TechError;
    fn from_str(s: &str) -> Result<UpdateMode, TechError> {
        UpdateMode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| TechError::UnknownUpdateMode(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_ebpf_is_primitive_only() {
        for m in UpdateMode::ALL {
            assert_eq!(m.name().parse::<UpdateMode>().unwrap(), m);
        }
        assert!("kubeproxy".parse::<UpdateMode>().is_err());
        assert_eq!(
            UpdateMode::for_services(Tech::Ebpf),
            [UpdateMode::Primitive]
        );
        assert_eq!(UpdateMode::for_services(Tech::Ipvs), UpdateMode::ALL);
    }
}
