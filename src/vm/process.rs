//! Process hygiene for QEMU children.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Make the kernel kill the child when the spawning thread's process dies,
/// so a test killed by nextest's timeout leaves no QEMU behind.
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
