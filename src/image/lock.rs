//! The image lock file: which kernel and userland packages (exact versions and
//! sha256), which files of them the guest keeps, and which kernel modules.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("reading lock file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("parsing lock file {path}: {source}")]
    Parse {
        path: String,
        source: Box<toml::de::Error>,
    },
    #[error("lock file {path}: {message}")]
    Invalid { path: String, message: String },
}

/// What an image should contain, before package versions are resolved.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    pub name: String,
    /// Debian suite the packages come from (e.g. "bullseye").
    pub suite: String,
    /// Kernel image package; its vmlinuz and modules are taken from it.
    pub kernel_package: String,
    /// Suite the kernel comes from when it differs from the userland's
    /// (kernel matrix images: newer kernel, same bullseye userland).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_suite: Option<String>,
    pub kernel_release: String,
    /// Packages to resolve (their dependency closure is fetched at lock time;
    /// only packages that contribute kept files end up in the lock).
    pub packages: Vec<String>,
    /// Paths (files, symlinks or directories) kept in the guest. ELF files pull
    /// in their interpreter and shared libraries automatically.
    pub include: Vec<String>,
    /// Extra symlinks (path -> target), e.g. what Debian's alternatives would set.
    #[serde(default)]
    pub symlinks: BTreeMap<String, String>,
    /// The suite's packages ship everything under /usr (trixie on): the
    /// image gets /bin, /sbin, /lib and /lib64 as symlinks into /usr, as an
    /// installed system has them from base-files, so `/bin/sh`, `/sbin/…`
    /// and the ELF interpreter `/lib64/ld-linux-x86-64.so.2` resolve.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub merged_usr: bool,
    /// Packages whose every program is kept: all their files directly in
    /// /bin, /sbin, /usr/bin and /usr/sbin (tools images: coreutils,
    /// util-linux, procps … without listing each binary). The packages are
    /// resolved like `packages`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub package_binaries: Vec<String>,
    /// Programs of `package_binaries` left out (absolute paths), typically
    /// because they alone would pull in large libraries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_programs: Vec<String>,
    /// Busybox applets linked to /bin/busybox where no real binary exists.
    #[serde(default)]
    pub busybox_applets: Vec<String>,
    /// Kernel modules kept (their dependencies are added automatically).
    /// An entry with `*` is a pattern over module names (`nft_*`); a
    /// pattern that matches nothing is an error like a missing name.
    pub modules: Vec<String>,
    /// Modules the agent loads at boot before it looks for its port.
    pub early_modules: Vec<String>,
    /// Kernel command line additions.
    #[serde(default)]
    pub cmdline: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
    pub sha256: String,
    /// Suite to fetch from when not the image's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    pub image: ImageSpec,
    #[serde(default, rename = "package")]
    pub packages: Vec<LockedPackage>,
}

impl LockFile {
    pub fn load(path: &Path) -> Result<Self, LockError> {
        let text = std::fs::read_to_string(path).map_err(|source| LockError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self, LockError> {
        let lock: LockFile = toml::from_str(text).map_err(|e| LockError::Parse {
            path: origin.to_string(),
            source: Box::new(e),
        })?;
        lock.validate(origin)?;
        Ok(lock)
    }

    fn validate(&self, origin: &str) -> Result<(), LockError> {
        let invalid = |message: String| LockError::Invalid {
            path: origin.to_string(),
            message,
        };
        for p in &self.packages {
            if p.sha256.len() != 64 || !p.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(invalid(format!(
                    "package {} has a malformed sha256 {:?}",
                    p.name, p.sha256
                )));
            }
        }
        if !self.packages.is_empty()
            && !self
                .packages
                .iter()
                .any(|p| p.name == self.image.kernel_package)
        {
            return Err(invalid(format!(
                "kernel package {} is not among the locked packages",
                self.image.kernel_package
            )));
        }
        Ok(())
    }

    /// Stable text form (sorted packages) so that re-locking is diff-friendly.
    pub fn to_toml(&self) -> String {
        let mut sorted = self.clone();
        sorted.packages.sort();
        let body = toml::to_string_pretty(&sorted).expect("lock file serializes");
        format!(
            "# rulebench image lock: written by `rulebench image lock`, read by `rulebench image build`.\n\
             # Every package is pinned by exact version and the sha256 of its .deb.\n{body}"
        )
    }

    /// Content hash used as the image cache key (with the agent's hash).
    pub fn content_hash(&self) -> String {
        hex::encode(Sha256::digest(self.to_toml().as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LockFile {
        LockFile {
            image: ImageSpec {
                name: "t".into(),
                suite: "bullseye".into(),
                kernel_package: "linux-image-x".into(),
                kernel_suite: None,
                kernel_release: "5.10.0-x".into(),
                packages: vec!["iptables".into()],
                include: vec!["/usr/sbin/iptables".into()],
                package_binaries: vec![],
                exclude_programs: vec![],
                symlinks: BTreeMap::new(),
                merged_usr: false,
                busybox_applets: vec!["sh".into()],
                modules: vec!["nf_tables".into()],
                early_modules: vec!["virtio_console".into()],
                cmdline: String::new(),
            },
            packages: vec![LockedPackage {
                name: "linux-image-x".into(),
                version: "1".into(),
                sha256: "a".repeat(64),
                suite: None,
            }],
        }
    }

    #[test]
    fn round_trips_through_toml() {
        let lock = sample();
        let back = LockFile::parse(&lock.to_toml(), "mem").unwrap();
        assert_eq!(back, lock);
        assert_eq!(back.content_hash(), lock.content_hash());
    }

    #[test]
    fn optional_fields_do_not_appear_when_unused() {
        // Existing locks must keep their text, hence their cache keys.
        let text = sample().to_toml();
        assert!(!text.contains("package_binaries"), "{text}");
        assert!(!text.contains("merged_usr"), "{text}");
        let mut tools = sample();
        tools.image.package_binaries = vec!["coreutils".into()];
        let back = LockFile::parse(&tools.to_toml(), "mem").unwrap();
        assert_eq!(back.image.package_binaries, vec!["coreutils".to_string()]);
    }

    #[test]
    fn malformed_hash_is_refused_with_package_name() {
        let mut lock = sample();
        lock.packages[0].sha256 = "xyz".into();
        let err = LockFile::parse(&lock.to_toml(), "mem").unwrap_err();
        assert!(err.to_string().contains("linux-image-x"), "{err}");
    }
}
