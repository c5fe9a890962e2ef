//! What both nftables layouts (kube-proxy's services layout in
//! `nftables.rs`, the firewall layouts in `nftables_firewall.rs`) and
//! iptables-nft's reset share of the `nft` tool: how a transaction is fed
//! to it and how a table is replaced atomically.

use super::step::Step;

/// `nft -f FILE` reading stdin. nft 0.9.8 spells `-f -` as opening
/// `/dev/stdin`, a symlink the minimal guest's devtmpfs does not have
/// (udev makes it on a full system); `/proc/self/fd/0` is the same pipe
/// and always exists. Error messages then read `/proc/self/fd/0:LINE:COL`.
pub const LOAD_ARGV: [&str; 3] = ["nft", "-f", "/proc/self/fd/0"];

/// Deleting our own table and redefining it in the same transaction makes
/// the load atomic and leaves every other table alone; the leading bare
/// `table` line makes the delete succeed on a fresh guest.
pub fn table_preamble(table: &str) -> String {
    format!("table {table}\ndelete table {table}\nadd table {table}\n")
}

/// One `nft -f` transaction with `text` as its input.
pub fn load_step(text: String) -> Step {
    Step::with_stdin(&LOAD_ARGV, text)
}
