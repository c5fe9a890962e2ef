//! A local package store: a directory of the .deb files an image lock pins,
//! read by the image builder before the mirror.
//!
//! A Debian suite keeps only its current point release, so a version a lock
//! pins disappears from the mirror at the next point release. A store made
//! by `rulebench image export` while the mirror still serves the pinned
//! versions (or filled by hand from the Debian snapshot archive) keeps an
//! image buildable after that: with `RULEBENCH_DEB_DIR` naming the store, a
//! package found there with the lock's sha256 is used without touching the
//! network, one with another sha256 is an error naming the file, and only
//! packages missing from the store are fetched from the mirror.
//!
//! Files are found by name: the Debian archive's own (`NAME_VERSION_ARCH.deb`,
//! the version without its epoch, as the snapshot archive serves it) or apt's
//! download name (epoch kept as `%3a`), for arch `amd64` or `all`. The index
//! (`index.toml`) records what `image export` wrote and for which images.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The package store directory the image builder reads before the mirror.
pub const DEB_DIR_ENV: &str = "RULEBENCH_DEB_DIR";
/// The store's index, written by `rulebench image export`.
pub const INDEX_FILE: &str = "index.toml";
/// Architectures a locked package can have (the images are amd64).
const ARCHES: [&str; 2] = ["amd64", "all"];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("package store {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Read(#[from] super::deb::DebError),
    #[error("{DEB_DIR_ENV}={dir} is not a directory (it should name a package store made by `rulebench image export`)")]
    NotADirectory { dir: String },
    #[error(
        "package store file {path} has sha256 {actual}, but the lock pins {package} {version} \
         with sha256 {expected}: remove or replace the file (refusing to build from it)"
    )]
    HashMismatch {
        path: String,
        package: String,
        version: String,
        expected: String,
        actual: String,
    },
    #[error("parsing package store index {path}: {source}")]
    Index {
        path: String,
        source: Box<toml::de::Error>,
    },
}

/// A pinned package the mirror did not deliver (gone since a point release,
/// or the mirror unreachable), with the package store as the fix.
#[derive(Debug, thiserror::Error)]
#[error(
    "package {package} version {version} (suite {suite}), pinned by the image lock, could not be \
     fetched: the mirror no longer serves it (a Debian suite keeps only its current point \
     release) or the mirror is unreachable.\n\
     Fix: set {DEB_DIR_ENV} to a package store: one made by `rulebench image export --image \
     {image} --out <DIR>` (run while the mirror still serves the pinned versions, or where an \
     image cache still has them), or a directory you put {file} (sha256 {sha256}) into, fetched \
     from the Debian snapshot archive.\n\
     apt said: {apt_error}"
)]
pub struct NotServed {
    pub image: String,
    pub package: String,
    pub version: String,
    pub suite: String,
    /// The file name(s) the store looks for.
    pub file: String,
    pub sha256: String,
    pub apt_error: String,
}

/// The version as it appears in archive file names: without its epoch.
fn version_without_epoch(version: &str) -> &str {
    version.split_once(':').map_or(version, |(_, v)| v)
}

/// The Debian archive's file name of a package (what the snapshot archive
/// serves and `image export` writes).
pub fn pool_file_name(name: &str, version: &str, arch: &str) -> String {
    format!("{name}_{}_{arch}.deb", version_without_epoch(version))
}

/// The names under which the store may hold `name` `version`: the archive's
/// and apt's download name (epoch as `%3a`), each for `amd64` and `all`.
pub fn candidate_file_names(name: &str, version: &str) -> Vec<String> {
    let mut names: Vec<String> = ARCHES
        .iter()
        .map(|arch| pool_file_name(name, version, arch))
        .collect();
    for arch in ARCHES {
        let apt_name = format!("{name}_{}_{arch}.deb", version.replace(':', "%3a"));
        if !names.contains(&apt_name) {
            names.push(apt_name);
        }
    }
    names
}

/// The error for a pinned package the mirror did not deliver.
pub fn not_served(
    image: &str,
    package: &str,
    version: &str,
    suite: &str,
    sha256: &str,
    apt_error: &str,
) -> NotServed {
    NotServed {
        image: image.to_string(),
        package: package.to_string(),
        version: version.to_string(),
        suite: suite.to_string(),
        file: format!(
            "{} (or {})",
            pool_file_name(package, version, "amd64"),
            pool_file_name(package, version, "all")
        ),
        sha256: sha256.to_string(),
        apt_error: apt_error.trim().to_string(),
    }
}

/// A package store directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store named by `RULEBENCH_DEB_DIR`, if set and not empty.
    pub fn from_env() -> Result<Option<Store>, StoreError> {
        match std::env::var_os(DEB_DIR_ENV) {
            Some(dir) if !dir.is_empty() => Store::open(Path::new(&dir)).map(Some),
            _ => Ok(None),
        }
    }

    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        if !dir.is_dir() {
            return Err(StoreError::NotADirectory {
                dir: dir.display().to_string(),
            });
        }
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store's file of `name` `version` if it holds one; an error if
    /// that file's sha256 is not the pinned one.
    pub fn find(
        &self,
        name: &str,
        version: &str,
        sha256: &str,
    ) -> Result<Option<PathBuf>, StoreError> {
        for file in candidate_file_names(name, version) {
            let path = self.dir.join(file);
            if !path.is_file() {
                continue;
            }
            check_file(&path, name, version, sha256)?;
            return Ok(Some(path));
        }
        Ok(None)
    }
}

/// `path` hashes to `expected`, else the mismatch naming the file.
pub fn check_file(
    path: &Path,
    package: &str,
    version: &str,
    expected: &str,
) -> Result<(), StoreError> {
    let actual = super::deb::sha256_file(path)?;
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(StoreError::HashMismatch {
            path: path.display().to_string(),
            package: package.to_string(),
            version: version.to_string(),
            expected: expected.to_string(),
            actual,
        })
    }
}

/// One file of the store, as the index records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct IndexEntry {
    pub file: String,
    pub name: String,
    pub version: String,
    pub sha256: String,
    /// Images whose locks pin this package.
    pub images: Vec<String>,
}

/// The store's `index.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StoreIndex {
    #[serde(default, rename = "package")]
    pub packages: Vec<IndexEntry>,
}

impl StoreIndex {
    /// The index of `dir`, empty if it has none yet.
    pub fn load(dir: &Path) -> Result<StoreIndex, StoreError> {
        let path = dir.join(INDEX_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(StoreIndex::default()),
            Err(source) => {
                return Err(StoreError::Io {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        toml::from_str(&text).map_err(|e| StoreError::Index {
            path: path.display().to_string(),
            source: Box::new(e),
        })
    }

    /// Record `entry` (its images merged into an existing entry of the same file).
    pub fn add(&mut self, entry: IndexEntry) {
        match self.packages.iter_mut().find(|e| e.file == entry.file) {
            Some(existing) => {
                for image in entry.images {
                    if !existing.images.contains(&image) {
                        existing.images.push(image);
                    }
                }
                existing.images.sort();
            }
            None => self.packages.push(entry),
        }
    }

    /// Stable text form (sorted by file).
    pub fn to_toml(&self) -> String {
        let mut sorted = self.clone();
        sorted.packages.sort();
        let body = toml::to_string_pretty(&sorted).expect("store index serializes");
        format!(
            "# rulebench package store: written by `rulebench image export`.\n\
             # {DEB_DIR_ENV}=<this directory> makes image builds take these .debs before the mirror.\n{body}"
        )
    }

    /// Write the index into `dir` (through a temporary file and a rename).
    pub fn write(&self, dir: &Path) -> Result<(), StoreError> {
        let path = dir.join(INDEX_FILE);
        let tmp = dir.join(format!(".{INDEX_FILE}.tmp"));
        let io = |source| StoreError::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::write(&tmp, self.to_toml()).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    #[test]
    fn file_names_drop_the_epoch_like_the_archive_and_keep_apts_spelling() {
        assert_eq!(
            candidate_file_names("busybox-static", "1:1.30.1-6+b3"),
            vec![
                "busybox-static_1.30.1-6+b3_amd64.deb",
                "busybox-static_1.30.1-6+b3_all.deb",
                "busybox-static_1%3a1.30.1-6+b3_amd64.deb",
                "busybox-static_1%3a1.30.1-6+b3_all.deb",
            ]
        );
        assert_eq!(
            candidate_file_names("netbase", "6.3"),
            vec!["netbase_6.3_amd64.deb", "netbase_6.3_all.deb"]
        );
    }

    #[test]
    fn a_file_with_the_pinned_hash_is_found_and_a_missing_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("netbase_6.3_all.deb"), b"netbase").unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.find("netbase", "6.3", &sha(b"netbase")).unwrap(),
            Some(dir.path().join("netbase_6.3_all.deb"))
        );
        assert_eq!(store.find("dash", "0.5.11", &sha(b"dash")).unwrap(), None);
    }

    #[test]
    fn a_file_with_another_hash_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("iptables_1.8.7-1_amd64.deb");
        std::fs::write(&file, b"something else").unwrap();
        let store = Store::open(dir.path()).unwrap();
        let err = store
            .find("iptables", "1.8.7-1", &sha(b"iptables"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&file.display().to_string()), "{err}");
        assert!(err.contains(&sha(b"iptables")), "{err}");
        assert!(err.contains("iptables 1.8.7-1"), "{err}");
    }

    #[test]
    fn a_store_that_is_not_a_directory_is_refused() {
        let err = Store::open(Path::new("/nonexistent/rulebench-store")).unwrap_err();
        assert!(err.to_string().contains(DEB_DIR_ENV), "{err}");
    }

    #[test]
    fn the_pinned_version_gone_error_names_package_version_and_fix() {
        let msg = not_served(
            "bullseye-5.10",
            "linux-image-5.10.0-32-cloud-amd64-unsigned",
            "5.10.223-1",
            "bullseye",
            &"ab".repeat(32),
            "E: Version '5.10.223-1' for 'linux-image-5.10.0-32-cloud-amd64-unsigned' was not found\n",
        )
        .to_string();
        for needle in [
            "linux-image-5.10.0-32-cloud-amd64-unsigned version 5.10.223-1 (suite bullseye)",
            "no longer serves it",
            "RULEBENCH_DEB_DIR",
            "rulebench image export --image bullseye-5.10 --out",
            "linux-image-5.10.0-32-cloud-amd64-unsigned_5.10.223-1_amd64.deb",
            &"ab".repeat(32),
            "the Debian snapshot archive",
            "apt said: E: Version '5.10.223-1'",
        ] {
            assert!(msg.contains(needle), "{needle:?} missing from: {msg}");
        }
        assert!(
            !msg.contains("http"),
            "no archive address in the text: {msg}"
        );
    }

    #[test]
    fn the_index_merges_images_and_round_trips() {
        let entry = |image: &str| IndexEntry {
            file: "dash_0.5.11_amd64.deb".into(),
            name: "dash".into(),
            version: "0.5.11".into(),
            sha256: "0".repeat(64),
            images: vec![image.into()],
        };
        let mut index = StoreIndex::default();
        index.add(entry("bullseye-5.10"));
        index.add(entry("bookworm-6.1-bullseye-userland"));
        index.add(entry("bullseye-5.10"));
        assert_eq!(index.packages.len(), 1);
        assert_eq!(
            index.packages[0].images,
            vec!["bookworm-6.1-bullseye-userland", "bullseye-5.10"]
        );
        let dir = tempfile::tempdir().unwrap();
        index.write(dir.path()).unwrap();
        assert_eq!(StoreIndex::load(dir.path()).unwrap(), index);
        assert_eq!(
            StoreIndex::load(&dir.path().join("none")).unwrap(),
            StoreIndex::default()
        );
    }
}
