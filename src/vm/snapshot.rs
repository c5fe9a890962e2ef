//! Saved states of freshly booted guests. Booting once per image and
//! restoring per test turns a ~5 s TCG cold boot into about a second
//! (FACTS.md: restore takes 0.4–1.4 s). A state is only valid for the exact
//! same image, kernel, QEMU and machine arguments, so all of them are in its key.

use super::argv::QemuConfig;
use super::{Vm, VmError, VmOptions};
use crate::image::BuiltImage;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Bump when what a state depends on changes in a way the key can't see.
const FORMAT: &str = "1";

fn qemu_version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        std::process::Command::new("qemu-system-x86_64")
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    })
}

fn file_sha256(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| hex::encode(Sha256::digest(&b)))
        .unwrap_or_else(|_| "unreadable".into())
}

/// Cache key of a state: everything the saved machine depends on.
pub fn state_key(image_sha256: &str, kernel_sha256: &str, cfg: &QemuConfig, qemu: &str) -> String {
    let text = format!(
        "{FORMAT}\n{image_sha256}\n{kernel_sha256}\n{}\n{}\n{}\n{}\n{qemu}",
        cfg.accel, cfg.memory_mb, cfg.smp, cfg.cmdline
    );
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Path of a usable state for `cfg`, creating it (one cold boot) if needed.
pub fn ensure(image: &BuiltImage, cfg: &QemuConfig, opts: &VmOptions) -> Result<PathBuf, VmError> {
    let kernel_sha = if cfg.kernel == image.kernel {
        "image".to_string()
    } else {
        file_sha256(&cfg.kernel)
    };
    let key = state_key(&image.sha256, &kernel_sha, cfg, qemu_version());
    let dir = crate::image::cache_root().join("snapshots");
    let path = dir.join(format!("{}-{}.state", image.name, &key[..16]));
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).map_err(VmError::TempDir)?;
    let _lock = DirLock::acquire(&dir.join(".lock")).map_err(VmError::TempDir)?;
    if path.exists() {
        return Ok(path);
    }
    let tmp = dir.join(format!(".{}.{}.partial", &key[..16], std::process::id()));
    let vm = Vm::cold_boot(cfg, opts)?;
    vm.save_state(&tmp)?;
    std::fs::rename(&tmp, &path).map_err(VmError::TempDir)?;
    Ok(path)
}

/// Exclusive lock so concurrent test processes create a state only once.
struct DirLock {
    _file: std::fs::File,
}

impl DirLock {
    fn acquire(path: &Path) -> std::io::Result<Self> {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::create(path)?;
        // SAFETY: flock on an fd we own; released when the file closes.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(DirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::argv::{kernel_cmdline, Accel};

    fn cfg() -> QemuConfig {
        QemuConfig {
            accel: Accel::Tcg,
            memory_mb: 1024,
            smp: 1,
            kernel: "/k".into(),
            initrd: None,
            cmdline: kernel_cmdline(""),
            socket_dir: "/a".into(),
            virtiofs_tags: vec![],
        }
    }

    #[test]
    fn key_ignores_socket_dir_but_not_machine_shape() {
        let a = cfg();
        let b = QemuConfig {
            socket_dir: "/b".into(),
            ..cfg()
        };
        assert_eq!(state_key("i", "k", &a, "q"), state_key("i", "k", &b, "q"));
        let c = QemuConfig { smp: 2, ..cfg() };
        assert_ne!(state_key("i", "k", &a, "q"), state_key("i", "k", &c, "q"));
        assert_ne!(state_key("i", "k", &a, "q"), state_key("i2", "k", &a, "q"));
        assert_ne!(state_key("i", "k", &a, "q"), state_key("i", "k", &a, "q2"));
    }
}
