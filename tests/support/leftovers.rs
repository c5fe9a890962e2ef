//! What a finished guest must not leave behind: our QEMU, its virtiofsd
//! daemons, its socket directory (the VM's only temp dir).

use std::path::Path;

/// Assert that nothing of a dropped guest survives. `socket_dir` is
/// `Vm::socket_dir()` and `daemons` `Vm::virtiofsd_pids()`, taken before
/// the drop.
pub fn assert_none_left(what: &str, socket_dir: Option<&Path>, daemons: &[u32]) {
    assert!(
        super::common::own_qemu_children().is_empty(),
        "QEMU left running after {what}"
    );
    for pid in daemons {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // A zombie is gone for good; only its parent's wait is missing.
        let zombie = state
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'));
        assert!(
            state.is_empty() || zombie,
            "virtiofsd {pid} left running after {what}"
        );
    }
    let dir = socket_dir.expect("the VM had a socket directory");
    assert!(!dir.exists(), "{} left behind after {what}", dir.display());
}
