//! iptables with the legacy (x_tables) backend: `iptables-legacy-restore`
//! of kube-proxy's nat layout / a filter FORWARD chain.

use crate::workload::{Firewall, Services, UpdateOp};

use super::iptables_layout as layout;
use super::normalize::normalize_iptables_save;
use super::Step;

pub const RESTORE: &str = "iptables-legacy-restore";
pub const SAVE: &str = "iptables-legacy-save";

pub fn render_services(services: &Services) -> Vec<Step> {
    vec![Step::with_stdin(&[RESTORE], layout::nat_restore(services))]
}

pub fn render_firewall(fw: &Firewall) -> Vec<Step> {
    vec![Step::with_stdin(&[RESTORE], layout::filter_restore(fw))]
}

pub fn render_services_update(before: &Services, op: &UpdateOp) -> Vec<Step> {
    vec![Step::with_stdin(
        &[RESTORE, "--noflush"],
        layout::nat_update(before, op),
    )]
}

pub fn render_firewall_update(before: &Firewall, op: &UpdateOp) -> Vec<Step> {
    vec![Step::with_stdin(
        &[RESTORE, "--noflush"],
        layout::filter_update(before, op),
    )]
}

pub fn dump_commands() -> Vec<Step> {
    vec![Step::new(&[SAVE])]
}

pub fn normalize(dump: &str) -> String {
    normalize_iptables_save(dump)
}

/// Legacy tables cannot be unregistered from user space; an atomic restore
/// of empty nat and filter tables (ACCEPT policies) is the clean state.
pub fn reset_steps() -> Vec<Step> {
    vec![Step::with_stdin(&[RESTORE], layout::EMPTY_TABLES)]
}
