//! A guest's rule state between technologies, shared by correctness and
//! measurement: both start a technology from a guest that [`reset`] left
//! with no technology's state and no tracked connection. Sits beside
//! `steps.rs` (it runs the renderers' reset steps through it) and below
//! both `correctness` and `measure`, which take the reset from here.

use crate::steps::{run_steps, StepError};
use crate::tech::{self, Step, Tech};
use crate::vm::Vm;

/// Order matters: IPVS's reset empties the legacy nat table that refers to
/// its ipsets before destroying them. `NftablesLinear` and
/// `NftablesNoAnonMaps` share the nftables reset.
const RESET_ORDER: [Tech; 5] = [
    Tech::Ipvs,
    Tech::IptablesLegacy,
    Tech::IptablesNft,
    Tech::Nftables,
    // tc programs stay attached until detached: a leftover eBPF firewall
    // would silently filter the next technology's probes.
    Tech::Ebpf,
];

/// Clean every technology's state and forget tracked connections, so one
/// technology's NAT or filter decisions cannot leak into the next one's
/// probes through a conntrack entry.
pub fn reset(vm: &mut Vm) -> Result<(), StepError> {
    for tech in RESET_ORDER {
        run_steps(vm, tech, &tech::reset_steps(tech))?;
    }
    // A legacy x_tables table cannot be deleted, only emptied: once
    // loaded, an empty filter or nat table stays hooked in and every later
    // technology's packets walk it (hooktime showed `iptable_filter_hook`
    // FORWARD, ~0.8 µs per packet under TCG, in every other technology's
    // path). Unloading the table modules unhooks them; the next
    // iptables-legacy command loads them again. Tolerant: a kernel with
    // them built in, or a table still in use, keeps them.
    let unhook = Step::new(&[
        "rmmod",
        "iptable_nat",
        "iptable_filter",
        "iptable_mangle",
        "iptable_raw",
    ])
    .tolerant();
    // `conntrack -F` exits 1 on an empty table on some versions.
    let flush = Step::new(&["conntrack", "-F"]).tolerant();
    run_steps(vm, Tech::IptablesLegacy, &[unhook, flush])?;
    Ok(())
}
