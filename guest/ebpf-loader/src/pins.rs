//! Where loaded state lives between loader runs: each subcommand is a new
//! process, so maps are pinned in bpffs and the committed firewall
//! ruleset is kept in a small state file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub const BPFFS: &str = "/sys/fs/bpf";
pub const OBJECT_DIR_ENV: &str = "RULEBENCH_EBPF_OBJECTS";
pub const DEFAULT_OBJECT_DIR: &str = "/usr/lib/rulebench/bpf";
pub const STATE_DIR: &str = "/run/rulebench-ebpf";

pub fn root() -> PathBuf {
    Path::new(BPFFS).join("rulebench")
}

pub fn services_dir() -> PathBuf {
    root().join("services")
}

pub fn firewall_dir() -> PathBuf {
    root().join("firewall")
}

pub fn object_dir() -> PathBuf {
    std::env::var_os(OBJECT_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_OBJECT_DIR))
}

pub fn object(name: &str) -> PathBuf {
    object_dir().join(name)
}

fn is_bpffs(path: &str) -> bool {
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let mut f = l.split_whitespace();
            (f.nth(1), f.next()) == (Some(path), Some("bpf"))
        })
}

/// Mounts bpffs when the guest has not (our initramfs does not by default).
pub fn ensure_bpffs() -> Result<()> {
    if is_bpffs(BPFFS) {
        return Ok(());
    }
    std::fs::create_dir_all(BPFFS).with_context(|| format!("creating {BPFFS}"))?;
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
    let (src, target, fstype) = (c("bpf"), c(BPFFS), c("bpf"));
    // SAFETY: plain mount(2) with NUL-terminated strings that outlive it.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("mounting bpffs on /sys/fs/bpf");
    }
    Ok(())
}

pub fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}
