//! iptables with the legacy (x_tables) backend: `iptables-legacy-restore`
//! of kube-proxy's nat layout / a filter FORWARD chain.

use super::iptables_layout::{self as layout, Tools};
use super::Step;

pub const RESTORE: &str = "iptables-legacy-restore";
pub const SAVE: &str = "iptables-legacy-save";
pub const TOOLS: Tools = Tools {
    restore: RESTORE,
    save: SAVE,
};

/// Legacy tables cannot be unregistered from user space; an atomic restore
/// of empty nat and filter tables (ACCEPT policies) is the clean state.
pub fn reset_steps() -> Vec<Step> {
    vec![Step::with_stdin(&[RESTORE], layout::EMPTY_TABLES)]
}
