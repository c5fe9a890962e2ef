//! iptables with the nf_tables backend (`iptables-nft-restore`): the same
//! rule text as legacy, translated by iptables into nft expressions (with
//! xt compat for `statistic`, `recent`, `comment`).

use super::iptables_layout::Tools;
use super::Step;

pub const RESTORE: &str = "iptables-nft-restore";
pub const SAVE: &str = "iptables-nft-save";
pub const TOOLS: Tools = Tools {
    restore: RESTORE,
    save: SAVE,
};

/// The nft backend keeps its tables as nf_tables tables `ip nat` and
/// `ip filter`; deleting them also unregisters their hooks, which an empty
/// restore would not. Declaring a table before deleting it makes the
/// delete succeed whether or not it existed.
pub fn reset_steps() -> Vec<Step> {
    vec![Step::with_stdin(
        &super::nft::LOAD_ARGV,
        "table ip nat\ndelete table ip nat\ntable ip filter\ndelete table ip filter\n",
    )]
}
