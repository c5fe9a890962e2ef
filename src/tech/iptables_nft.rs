//! iptables with the nf_tables backend (`iptables-nft-restore`): the same
//! rule text as legacy, translated by iptables into nft expressions (with
//! xt compat for `statistic`, `recent`, `comment`).

use crate::workload::{Firewall, Services, UpdateOp};

use super::iptables_layout as layout;
use super::normalize::normalize_iptables_save;
use super::Step;

pub const RESTORE: &str = "iptables-nft-restore";
pub const SAVE: &str = "iptables-nft-save";

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

/// The nft backend keeps its tables as nf_tables tables `ip nat` and
/// `ip filter`; deleting them also unregisters their hooks, which an empty
/// restore would not. Declaring a table before deleting it makes the
/// delete succeed whether or not it existed.
pub fn reset_steps() -> Vec<Step> {
    vec![Step::with_stdin(
        &super::nftables::LOAD_ARGV,
        "table ip nat\ndelete table ip nat\ntable ip filter\ndelete table ip filter\n",
    )]
}
