//! The filesystems a bare initramfs lacks and the tools expect.

use std::ffi::CString;
use std::io;

pub struct Mount {
    pub source: &'static str,
    pub target: &'static str,
    pub fstype: &'static str,
    pub flags: libc::c_ulong,
    pub data: &'static str,
    /// The guest still works without it (bpf, cgroup2): warn, don't die.
    pub optional: bool,
}

const NOSUID_NODEV_NOEXEC: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

/// /dev comes first: without it the console fds may be missing (see init).
pub const GUEST_MOUNTS: &[Mount] = &[
    Mount {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: libc::MS_NOSUID,
        data: "mode=0755",
        optional: false,
    },
    Mount {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: "",
        optional: false,
    },
    Mount {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: "",
        optional: false,
    },
    Mount {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: libc::MS_NOSUID | libc::MS_NOEXEC,
        data: "mode=0620,ptmxmode=0666",
        optional: false,
    },
    Mount {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: "mode=0755",
        optional: false,
    },
    Mount {
        source: "tmpfs",
        target: "/tmp",
        fstype: "tmpfs",
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: "mode=1777",
        optional: false,
    },
    Mount {
        source: "tmpfs",
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data: "mode=1777",
        optional: true,
    },
    Mount {
        source: "bpf",
        target: "/sys/fs/bpf",
        fstype: "bpf",
        flags: NOSUID_NODEV_NOEXEC,
        data: "mode=0700",
        optional: true,
    },
    Mount {
        source: "cgroup2",
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        data: "",
        optional: true,
    },
];

/// The /dev symlinks a distribution's udev or systemd would create and
/// devtmpfs does not: bash's `<(…)` and tools reading `/dev/stdin` need them.
pub const DEV_LINKS: &[(&str, &str)] = &[
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
];

/// Create [`DEV_LINKS`] (an existing entry counts as done).
pub fn link_dev_fds() -> io::Result<()> {
    for (link, target) in DEV_LINKS {
        match std::os::unix::fs::symlink(target, link) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => {
                return Err(io::Error::new(
                    err.kind(),
                    format!("symlink {link} -> {target}: {err}"),
                ))
            }
        }
    }
    Ok(())
}

/// Mount `m`, creating its mount point. Already mounted (EBUSY) counts as done.
pub fn mount(m: &Mount) -> io::Result<()> {
    // Fails harmlessly in sysfs, where the kernel provides the directory.
    let _ = std::fs::create_dir_all(m.target);
    let cstr = |s: &str| CString::new(s).expect("mount table strings have no NUL");
    let (source, target, fstype, data) =
        (cstr(m.source), cstr(m.target), cstr(m.fstype), cstr(m.data));
    // SAFETY: all pointers are NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            m.flags,
            if m.data.is_empty() {
                std::ptr::null()
            } else {
                data.as_ptr().cast()
            },
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EBUSY) {
        return Ok(());
    }
    Err(io::Error::new(
        err.kind(),
        format!("mount {} ({}) on {}: {err}", m.source, m.fstype, m.target),
    ))
}
