//! Ending the guest.
//!
//! PID 1 must never return (the kernel panics when init exits), so every way out
//! of the agent as init ends here: flush the filesystems, then ask the kernel to
//! power off, which makes QEMU (run with `-no-reboot`) exit.

use crate::say;
use std::time::Duration;

/// Sync and power the machine off. Never returns.
pub fn power_off(reason: &str) -> ! {
    say!("powering off: {reason}");
    // SAFETY: sync and reboot take no pointers; both are plain syscalls.
    unsafe { libc::sync() };
    let rc = unsafe { libc::reboot(libc::RB_POWER_OFF) };
    let err = std::io::Error::last_os_error();
    say!("power off failed (rc {rc}): {err}");
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != 1 {
        // Someone ran `rulebench-agent init` by hand without the right to power
        // off; an ordinary process may simply give up.
        std::process::exit(1);
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
