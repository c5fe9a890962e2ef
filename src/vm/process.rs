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

/// Name prefix of every VM's socket directory.
pub const VM_DIR_PREFIX: &str = "rulebench-vm-";
/// File in a VM directory holding the pid of the rulebench process that
/// owns it.
const OWNER_FILE: &str = "owner.pid";

/// Record this process as the owner of a fresh VM directory.
pub fn claim_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::write(dir.join(OWNER_FILE), std::process::id().to_string())
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Remove VM directories under `base` whose owner process is gone: a run
/// killed by a signal (Ctrl-C on `make bench`, a CI timeout) cannot run its
/// destructors, and its QEMU dies with it (`die_with_parent`), but the
/// directory with its sockets would stay. Directories of live owners — other
/// tests running in parallel — and those without an owner file are left
/// alone. Returns how many were removed.
pub fn sweep_stale_dirs(base: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(base) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(VM_DIR_PREFIX)
        {
            continue;
        }
        let path = entry.path();
        let owner = std::fs::read_to_string(path.join(OWNER_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        if let Some(pid) = owner {
            if !alive(pid) && std::fs::remove_dir_all(&path).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_directories_of_dead_owners_are_swept() {
        let base = tempfile::tempdir().unwrap();
        let make = |name: &str, owner: Option<String>| {
            let dir = base.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("qmp.sock"), b"").unwrap();
            if let Some(pid) = owner {
                std::fs::write(dir.join(OWNER_FILE), pid).unwrap();
            }
            dir
        };
        let mut child = Command::new("true").spawn().unwrap();
        let dead_pid = child.id();
        child.wait().unwrap();
        let dead = make("rulebench-vm-dead", Some(dead_pid.to_string()));
        let mine = make("rulebench-vm-mine", None);
        claim_dir(&mine).unwrap();
        let unowned = make("rulebench-vm-old", None);
        let other = make("unrelated-dir", Some(dead_pid.to_string()));
        assert_eq!(sweep_stale_dirs(base.path()), 1);
        assert!(!dead.exists());
        assert!(mine.exists() && unowned.exists() && other.exists());
    }
}
