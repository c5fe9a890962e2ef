//! Host directories made visible in the guest (`vm run --share DIR[:PATH]`):
//! what a share is, how the guest mounts it, and how the transport is
//! chosen (virtio-fs when the host has virtiofsd and the guest a virtiofs
//! driver, else a one-way copy).

use std::path::{Component, Path, PathBuf};

/// Where a share appears in the guest when the spec names no path.
pub const DEFAULT_GUEST_PATH: &str = "/share";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// Absolute host directory.
    pub host_dir: PathBuf,
    /// Absolute guest path it is mounted (or copied) at.
    pub guest_path: String,
    pub readonly: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShareError {
    #[error("share {spec:?}: {reason}")]
    Invalid { spec: String, reason: String },
}

/// Guest directories a share may not cover: the guest needs them itself.
const RESERVED: &[&str] = &[
    "/", "/bin", "/dev", "/etc", "/lib", "/lib64", "/proc", "/run", "/sbin", "/sys", "/usr",
    "/var", "/tmp",
];

/// Parse `DIR[:GUEST_PATH]` (relative DIRs are taken from `cwd`). The host
/// directory must exist; the guest path must be absolute, normalized and
/// not one of the guest's own system directories.
pub fn parse_share(spec: &str, readonly: bool, cwd: &Path) -> Result<Share, ShareError> {
    let invalid = |reason: &str| ShareError::Invalid {
        spec: spec.to_string(),
        reason: reason.to_string(),
    };
    let (dir, guest) = match spec.rsplit_once(':') {
        Some((dir, guest)) if guest.starts_with('/') => (dir, guest.to_string()),
        Some((_, guest)) if !guest.is_empty() => {
            return Err(invalid("the guest path must be absolute"));
        }
        _ => (spec, DEFAULT_GUEST_PATH.to_string()),
    };
    let dir = dir.strip_suffix(':').unwrap_or(dir);
    if dir.is_empty() {
        return Err(invalid("no host directory given"));
    }
    let host_dir = cwd.join(dir);
    let host_dir = host_dir
        .canonicalize()
        .map_err(|e| invalid(&format!("host directory {}: {e}", host_dir.display())))?;
    if !host_dir.is_dir() {
        return Err(invalid(&format!(
            "{} is not a directory",
            host_dir.display()
        )));
    }
    let normal = Path::new(&guest)
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !normal || guest.contains("//") || (guest.len() > 1 && guest.ends_with('/')) {
        return Err(invalid(
            "the guest path must be normalized (no `.`, `..` or `//`)",
        ));
    }
    if guest.contains(',') || guest.chars().any(char::is_whitespace) {
        return Err(invalid("the guest path may not contain commas or spaces"));
    }
    if RESERVED.contains(&guest.as_str()) {
        return Err(invalid(&format!(
            "{guest} is a directory the guest itself needs"
        )));
    }
    Ok(Share {
        host_dir,
        guest_path: guest,
        readonly,
    })
}

/// The virtio-fs tag of the share at `index` (`-device vhost-user-fs-pci,tag=`).
pub fn tag(index: usize) -> String {
    format!("rbshare{index}")
}

/// Guest commands that mount a virtio-fs share: load the driver unless the
/// kernel already knows the filesystem (built in: the 6.12 cloud kernel,
/// whose built-ins the bullseye modprobe cannot resolve), create the mount
/// point, mount (read-only if asked).
pub fn virtiofs_mount_commands(tag: &str, guest_path: &str, readonly: bool) -> Vec<Vec<String>> {
    let mut mount = vec!["mount".to_string(), "-t".into(), "virtiofs".into()];
    if readonly {
        mount.extend(["-o".to_string(), "ro".into()]);
    }
    mount.extend([tag.to_string(), guest_path.to_string()]);
    vec![
        vec![
            "sh".into(),
            "-c".into(),
            "grep -qw virtiofs /proc/filesystems || modprobe virtiofs".into(),
        ],
        vec!["mkdir".into(), "-p".into(), guest_path.into()],
        mount,
    ]
}

/// Guest commands that make a copied-in share read-only: a bind mount of
/// the directory onto itself, remounted `ro`.
pub fn readonly_bind_commands(guest_path: &str) -> Vec<Vec<String>> {
    vec![
        vec![
            "mount".into(),
            "-o".into(),
            "bind".into(),
            guest_path.into(),
            guest_path.into(),
        ],
        vec![
            "mount".into(),
            "-o".into(),
            "remount,bind,ro".into(),
            guest_path.into(),
        ],
    ]
}

/// How the shares of one VM reach the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// virtio-fs, served by this virtiofsd binary.
    VirtioFs(super::virtiofsd::Virtiofsd),
    /// Copied in once after boot; changes in the guest stay there.
    Copy { reason: String },
}

/// virtio-fs when the host has virtiofsd and the guest can mount it, else
/// the copy, with the reason stated.
pub fn choose_transport(
    virtiofsd: Result<super::virtiofsd::Virtiofsd, String>,
    guest_has_virtiofs: bool,
) -> Transport {
    match (virtiofsd, guest_has_virtiofs) {
        (Ok(daemon), true) => Transport::VirtioFs(daemon),
        (Err(why), _) => Transport::Copy { reason: why },
        (Ok(_), false) => Transport::Copy {
            reason: "the image has no virtiofs kernel module (use a tools image)".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::virtiofsd::{Flavor, Virtiofsd};

    fn host() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tests")).unwrap();
        dir
    }

    #[test]
    fn share_specs_parse_with_and_without_guest_path() {
        let base = host();
        let canon = base.path().canonicalize().unwrap().join("tests");
        let s = parse_share("tests", false, base.path()).unwrap();
        assert_eq!(s.host_dir, canon);
        assert_eq!(s.guest_path, DEFAULT_GUEST_PATH);
        let s = parse_share("tests:/work/t", true, base.path()).unwrap();
        assert_eq!((s.guest_path.as_str(), s.readonly), ("/work/t", true));
        let abs = format!("{}:/x", canon.display());
        assert_eq!(
            parse_share(&abs, false, Path::new("/")).unwrap().host_dir,
            canon
        );
    }

    #[test]
    fn bad_share_specs_say_why() {
        let base = host();
        let err = |spec: &str| {
            parse_share(spec, false, base.path())
                .unwrap_err()
                .to_string()
        };
        assert!(err("absent").contains("absent"), "{}", err("absent"));
        assert!(err("tests:rel").contains("absolute"));
        assert!(err("tests:/a/../b").contains("normalized"));
        assert!(err("tests:/usr").contains("guest itself needs"));
        assert!(err("tests:/").contains("guest itself needs"));
        assert!(err(":/x").contains("no host directory"));
        assert!(err("tests:/a b").contains("spaces"));
    }

    #[test]
    fn mount_commands() {
        insta::assert_yaml_snapshot!(virtiofs_mount_commands(&tag(0), "/share", true));
        let rw = virtiofs_mount_commands(&tag(1), "/w", false);
        assert_eq!(rw[2], ["mount", "-t", "virtiofs", "rbshare1", "/w"]);
        assert_eq!(
            readonly_bind_commands("/w")[1],
            ["mount", "-o", "remount,bind,ro", "/w"]
        );
    }

    #[test]
    fn transport_falls_back_to_copy_with_a_reason() {
        let daemon = Virtiofsd {
            binary: "/usr/lib/qemu/virtiofsd".into(),
            flavor: Flavor::Qemu,
        };
        assert_eq!(
            choose_transport(Ok(daemon.clone()), true),
            Transport::VirtioFs(daemon.clone())
        );
        assert!(matches!(
            choose_transport(Ok(daemon), false),
            Transport::Copy { reason } if reason.contains("virtiofs kernel module")
        ));
        assert!(matches!(
            choose_transport(Err("no virtiofsd".into()), true),
            Transport::Copy { reason } if reason == "no virtiofsd"
        ));
    }
}
