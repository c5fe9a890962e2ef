//! Renderers: one file per technology turning the workload model into the
//! guest commands ([`Step`]s) that load it, update it, dump it and clean
//! it away. Everything here is pure; the VM side runs the steps.
//!
//! The dispatcher functions below are what the VM side calls.

pub mod ebpf;
pub mod hash;
pub mod iptables;
pub mod iptables_layout;
pub mod iptables_nft;
pub mod iptables_sync;
pub mod ipvs;
pub mod ipvs_sync;
pub mod nft;
pub mod nftables;
pub mod nftables_firewall;
pub mod nftables_no_anon_maps;
pub mod nftables_sync;
pub mod normalize;
pub mod step;
pub mod update_mode;

use std::fmt;
use std::str::FromStr;

pub use step::Step;
pub use update_mode::UpdateMode;

use crate::workload::{Firewall, Services, UpdateError, UpdateOp, Workload};

/// A technology under test. `NftablesLinear` is the one-rule-per-rule
/// nftables firewall layout; `Nftables` means kube-proxy's nftables layout
/// for services and the set-based layout for firewalls;
/// `NftablesNoAnonMaps` is kube-proxy's services layout without the
/// anonymous `numgen … vmap` per service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tech {
    IptablesLegacy,
    IptablesNft,
    Nftables,
    NftablesLinear,
    NftablesNoAnonMaps,
    Ipvs,
    /// rulebench's own tc dataplanes (guest/bpf) via `rulebench-ebpf`.
    Ebpf,
}

impl Tech {
    pub const ALL: [Tech; 7] = [
        Tech::IptablesLegacy,
        Tech::IptablesNft,
        Tech::Nftables,
        Tech::NftablesLinear,
        Tech::NftablesNoAnonMaps,
        Tech::Ipvs,
        Tech::Ebpf,
    ];

    pub fn all() -> &'static [Tech] {
        &Self::ALL
    }

    /// Technologies that can load-balance services.
    pub fn for_services() -> &'static [Tech] {
        &[
            Tech::IptablesLegacy,
            Tech::IptablesNft,
            Tech::Nftables,
            Tech::NftablesNoAnonMaps,
            Tech::Ipvs,
            Tech::Ebpf,
        ]
    }

    /// Technologies (and layouts) that can filter.
    pub fn for_firewall() -> &'static [Tech] {
        &[
            Tech::IptablesLegacy,
            Tech::IptablesNft,
            Tech::Nftables,
            Tech::NftablesLinear,
            Tech::Ebpf,
        ]
    }

    pub fn for_workload(w: &Workload) -> &'static [Tech] {
        match w {
            Workload::Services(_) => Self::for_services(),
            Workload::Firewall(_) => Self::for_firewall(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Tech::IptablesLegacy => "iptables-legacy",
            Tech::IptablesNft => "iptables-nft",
            Tech::Nftables => "nftables",
            Tech::NftablesLinear => "nftables-linear",
            Tech::NftablesNoAnonMaps => "nftables-no-anon-maps",
            Tech::Ipvs => "ipvs",
            Tech::Ebpf => "ebpf",
        }
    }
}

impl fmt::Display for Tech {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Tech {
    type Err = TechError;
    fn from_str(s: &str) -> Result<Tech, TechError> {
        Tech::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| TechError::UnknownTech(s.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TechError {
    #[error("{tech} cannot render a {family} workload: {reason}")]
    Unsupported {
        tech: Tech,
        family: &'static str,
        reason: &'static str,
    },
    #[error("{tech}: {source}")]
    Update {
        tech: Tech,
        #[source]
        source: UpdateError,
    },
    #[error("unknown technology {0:?} (expected iptables-legacy, iptables-nft, nftables, nftables-linear, nftables-no-anon-maps, ipvs or ebpf)")]
    UnknownTech(String),
    #[error("{0} has no kube-proxy update mode (kube-proxy has no eBPF mode; nftables-linear is a firewall layout)")]
    NoKubeProxyMode(Tech),
    #[error("unknown update mode {0:?} (expected primitive or kube-proxy)")]
    UnknownUpdateMode(String),
}

fn unsupported(tech: Tech, family: &'static str, reason: &'static str) -> TechError {
    TechError::Unsupported {
        tech,
        family,
        reason,
    }
}

/// Steps that atomically (IPVS: as nearly as the tools allow) replace this
/// technology's state with the given services.
pub fn render_services(tech: Tech, services: &Services) -> Result<Vec<Step>, TechError> {
    match tech {
        Tech::IptablesLegacy | Tech::IptablesNft => {
            Ok(iptables_tools(tech).render_services(services))
        }
        Tech::Nftables => Ok(nftables::render_services(services)),
        Tech::NftablesNoAnonMaps => Ok(nftables_no_anon_maps::render_services(services)),
        Tech::NftablesLinear => Err(unsupported(
            tech,
            "services",
            "nftables-linear is a firewall layout; services use the nftables (kube-proxy) layout",
        )),
        Tech::Ipvs => Ok(ipvs::render_services(services)),
        Tech::Ebpf => ebpf::render_services(services),
    }
}

/// Steps that atomically replace this technology's filter state.
pub fn render_firewall(tech: Tech, fw: &Firewall) -> Result<Vec<Step>, TechError> {
    match tech {
        Tech::IptablesLegacy | Tech::IptablesNft => Ok(iptables_tools(tech).render_firewall(fw)),
        Tech::Nftables => Ok(nftables::render_firewall(fw)),
        Tech::NftablesLinear => Ok(nftables::render_firewall_linear(fw)),
        Tech::NftablesNoAnonMaps => Err(unsupported(
            tech,
            "firewall",
            "nftables-no-anon-maps is a services layout; firewalls use nftables or nftables-linear",
        )),
        Tech::Ipvs => Err(unsupported(tech, "firewall", ipvs::UNSUPPORTED_FIREWALL)),
        Tech::Ebpf => Ok(ebpf::render_firewall(fw)),
    }
}

pub fn render_workload(tech: Tech, w: &Workload) -> Result<Vec<Step>, TechError> {
    match w {
        Workload::Services(s) => render_services(tech, s),
        Workload::Firewall(f) => render_firewall(tech, f),
    }
}

/// An op the model refuses is an error before any step is rendered.
fn check_services_op(tech: Tech, before: &Services, op: &UpdateOp) -> Result<(), TechError> {
    before
        .clone()
        .apply(op)
        .map(|_| ())
        .map_err(|source| TechError::Update { tech, source })
}

/// Incremental steps taking the guest from `before` to `before + op`.
/// The op is checked against the model first, so a bad op is an error
/// here rather than a half-applied change in the guest.
pub fn render_services_update(
    tech: Tech,
    before: &Services,
    op: &UpdateOp,
) -> Result<Vec<Step>, TechError> {
    check_services_op(tech, before, op)?;
    match tech {
        Tech::IptablesLegacy | Tech::IptablesNft => {
            Ok(iptables_tools(tech).render_services_update(before, op))
        }
        Tech::Nftables => Ok(nftables::render_services_update(before, op)),
        Tech::NftablesNoAnonMaps => Ok(nftables_no_anon_maps::render_services_update(before, op)),
        Tech::NftablesLinear => render_services(tech, before),
        Tech::Ipvs => Ok(ipvs::render_services_update(before, op)),
        Tech::Ebpf => ebpf::render_services_update(before, op),
    }
}

/// What kube-proxy's proxier sends to take the guest from `before` to
/// `before + op` (one changed service); the same end state as
/// [`render_services_update`], more work. Checked against the model first.
pub fn render_services_update_kube_proxy(
    tech: Tech,
    before: &Services,
    op: &UpdateOp,
) -> Result<Vec<Step>, TechError> {
    check_services_op(tech, before, op)?;
    match tech {
        Tech::IptablesLegacy | Tech::IptablesNft => Ok(iptables_sync::render_services_update(
            iptables_tools(tech),
            before,
            op,
        )),
        Tech::Nftables => Ok(nftables_sync::render_services_update(
            before,
            op,
            nftables::numgen_vmap,
        )),
        Tech::NftablesNoAnonMaps => Ok(nftables_sync::render_services_update(
            before,
            op,
            nftables_no_anon_maps::numgen_rules,
        )),
        Tech::Ipvs => Ok(ipvs_sync::render_services_update(before, op)),
        Tech::NftablesLinear | Tech::Ebpf => Err(TechError::NoKubeProxyMode(tech)),
    }
}

/// A services update in the given mode.
pub fn render_services_update_in(
    mode: UpdateMode,
    tech: Tech,
    before: &Services,
    op: &UpdateOp,
) -> Result<Vec<Step>, TechError> {
    match mode {
        UpdateMode::Primitive => render_services_update(tech, before, op),
        UpdateMode::KubeProxy => render_services_update_kube_proxy(tech, before, op),
    }
}

pub fn render_firewall_update(
    tech: Tech,
    before: &Firewall,
    op: &UpdateOp,
) -> Result<Vec<Step>, TechError> {
    before
        .clone()
        .apply(op)
        .map_err(|source| TechError::Update { tech, source })?;
    match tech {
        Tech::IptablesLegacy | Tech::IptablesNft => {
            Ok(iptables_tools(tech).render_firewall_update(before, op))
        }
        Tech::Nftables => Ok(nftables::render_firewall_update(before, op)),
        Tech::NftablesLinear => Ok(nftables::render_firewall_linear_update(before, op)),
        Tech::NftablesNoAnonMaps | Tech::Ipvs => render_firewall(tech, before),
        Tech::Ebpf => Ok(ebpf::render_firewall_update(op)),
    }
}

pub fn render_update(tech: Tech, before: &Workload, op: &UpdateOp) -> Result<Vec<Step>, TechError> {
    match before {
        Workload::Services(s) => render_services_update(tech, s, op),
        Workload::Firewall(f) => render_firewall_update(tech, f, op),
    }
}

/// [`render_update`] sent in `mode`; kube-proxy mode exists for services
/// only (a firewall update is always primitive).
pub fn render_update_in(
    mode: UpdateMode,
    tech: Tech,
    before: &Workload,
    op: &UpdateOp,
) -> Result<Vec<Step>, TechError> {
    match before {
        Workload::Services(s) => render_services_update_in(mode, tech, s, op),
        Workload::Firewall(f) => render_firewall_update(tech, f, op),
    }
}

/// Commands whose stdout, passed in order to [`normalize`], is the
/// technology's state.
pub fn dump_commands(tech: Tech) -> Vec<Step> {
    match tech {
        Tech::IptablesLegacy | Tech::IptablesNft => iptables_tools(tech).dump_commands(),
        Tech::Nftables | Tech::NftablesLinear | Tech::NftablesNoAnonMaps => {
            nftables::dump_commands()
        }
        Tech::Ipvs => ipvs::dump_commands(),
        Tech::Ebpf => ebpf::dump_commands(),
    }
}

/// Normalizes the stdout of each [`dump_commands`] step (same order).
pub fn normalize(tech: Tech, outputs: &[String]) -> String {
    let first = outputs.first().map(String::as_str).unwrap_or("");
    match tech {
        Tech::IptablesLegacy | Tech::IptablesNft => normalize::normalize_iptables_save(first),
        Tech::Nftables | Tech::NftablesLinear | Tech::NftablesNoAnonMaps => {
            nftables::normalize(first)
        }
        Tech::Ipvs => ipvs::normalize(outputs),
        Tech::Ebpf => ebpf::normalize(first),
    }
}

/// Steps returning the guest to a clean state for this technology; safe
/// to run when nothing was loaded.
pub fn reset_steps(tech: Tech) -> Vec<Step> {
    match tech {
        Tech::IptablesLegacy => iptables::reset_steps(),
        Tech::IptablesNft => iptables_nft::reset_steps(),
        Tech::Nftables | Tech::NftablesLinear | Tech::NftablesNoAnonMaps => nftables::reset_steps(),
        Tech::Ipvs => ipvs::reset_steps(),
        Tech::Ebpf => ebpf::reset_steps(),
    }
}

#[cfg(test)]
mod tests;

/// The binaries of an iptables backend (only the two iptables techs have one).
fn iptables_tools(tech: Tech) -> iptables_layout::Tools {
    if tech == Tech::IptablesNft {
        iptables_nft::TOOLS
    } else {
        iptables::TOOLS
    }
}
