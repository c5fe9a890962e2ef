//! Packages out of the builder: `image export` writes every .deb an image
//! lock pins into a package store (see `store`), `image fetch` downloads one
//! package through the builder's private apt.

use super::build::{self, locked_deb, CacheLock, DebOrigin, Fetcher};
use super::lock::LockFile;
use super::store::{self, IndexEntry, Store, StoreIndex};
use super::{apt, deb, mirror};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What an export did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportSummary {
    /// Distinct packages of the exported locks.
    pub packages: usize,
    /// Files copied into the store by this export.
    pub written: usize,
    /// Files the store already had with the pinned sha256.
    pub present: usize,
    /// Of the sources: files taken from another package store (`RULEBENCH_DEB_DIR`).
    pub from_other_store: usize,
    /// Bytes of all the store's files of these locks.
    pub bytes: u64,
    pub seconds: f64,
}

impl std::fmt::Display for ExportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exported {} packages ({:.1} MiB; {} written, {} already there) in {:.1} s",
            self.packages,
            self.bytes as f64 / (1024.0 * 1024.0),
            self.written,
            self.present,
            self.seconds
        )
    }
}

/// Write every package `locks` pin into `out` (created if missing), each
/// checked against its lock's sha256, and record them in `out`'s index.
/// The .debs come from `RULEBENCH_DEB_DIR`, the image cache or the mirror.
pub fn export(locks: &[LockFile], out: &Path, quiet: bool) -> Result<ExportSummary> {
    let started = Instant::now();
    std::fs::create_dir_all(out)
        .with_context(|| format!("creating package store {}", out.display()))?;
    let other_store = Store::from_env()?.filter(|s| !same_dir(s.dir(), out));
    // The cache's debs/ and apt lists are shared with builds.
    let cache = build::cache_root();
    let _guard = CacheLock::acquire(&cache)?;
    let mut fetcher = Fetcher::new(cache);
    let target = Store::open(out)?;
    let mut index = StoreIndex::load(out)?;
    let mut summary = ExportSummary::default();
    let mut done: Vec<(String, String)> = Vec::new();
    let total: usize = locks.iter().map(|l| l.packages.len()).sum();
    let bar = build::progress(total as u64, quiet, "exporting");
    for lock in locks {
        if lock.packages.is_empty() {
            bail!(
                "lock file for image {} pins no packages; run `rulebench image lock` first",
                lock.image.name
            );
        }
        for pkg in &lock.packages {
            bar.set_message(format!("{} {}", lock.image.name, pkg.name));
            let key = (pkg.name.clone(), pkg.version.clone());
            let first_time = !done.contains(&key);
            // Already in the store (a wrong hash there is an error naming
            // the file): nothing to fetch, even if the mirror lost it.
            let dest = match target.find(&pkg.name, &pkg.version, &pkg.sha256)? {
                Some(existing) => {
                    summary.present += usize::from(first_time);
                    existing
                }
                None => {
                    let suite = pkg.suite.as_deref().unwrap_or(&lock.image.suite);
                    let (source, origin) = locked_deb(
                        &lock.image.name,
                        &mut fetcher,
                        other_store.as_ref(),
                        suite,
                        pkg,
                    )
                    .with_context(|| format!("exporting image {}", lock.image.name))?;
                    let arch = deb::control_field(&source, "Architecture")?;
                    let dest = out.join(store::pool_file_name(&pkg.name, &pkg.version, &arch));
                    copy_checked(&source, &dest, pkg)?;
                    summary.written += 1;
                    summary.from_other_store += usize::from(origin == DebOrigin::Store);
                    dest
                }
            };
            let file = dest
                .file_name()
                .expect("a store file name")
                .to_string_lossy()
                .into_owned();
            if first_time {
                summary.packages += 1;
                summary.bytes += std::fs::metadata(&dest)
                    .with_context(|| format!("reading {}", dest.display()))?
                    .len();
                done.push(key);
            }
            index.add(IndexEntry {
                file,
                name: pkg.name.clone(),
                version: pkg.version.clone(),
                sha256: pkg.sha256.clone(),
                images: vec![lock.image.name.clone()],
            });
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    index.write(out)?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Copy `source` to `dest` through a temporary name, checking the copy's
/// sha256 before it takes the final name.
fn copy_checked(source: &Path, dest: &Path, pkg: &super::lock::LockedPackage) -> Result<()> {
    let name = dest.file_name().expect("a file name").to_string_lossy();
    let tmp = dest.with_file_name(format!(".{name}.tmp"));
    std::fs::copy(source, &tmp)
        .with_context(|| format!("copying {} to {}", source.display(), tmp.display()))?;
    if let Err(e) = store::check_file(&tmp, &pkg.name, &pkg.version, &pkg.sha256) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.into());
    }
    std::fs::rename(&tmp, dest).with_context(|| format!("renaming to {}", dest.display()))?;
    Ok(())
}

/// Download one package (`NAME` or `NAME=VERSION`) from `suite` into `out`
/// through a private apt and the host's mirror; returns the .deb's path.
pub fn fetch_package(package: &str, suite: &str, out: &Path) -> Result<PathBuf> {
    let mirror = mirror::host_mirror()?;
    // Not the builder's apt directory: a concurrent build may be using it.
    let dir = build::cache_root().join("apt-fetch").join(suite);
    let apt = apt::PrivateApt::new(&dir, &mirror, suite)
        .with_context(|| format!("preparing apt for suite {suite}"))?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let staging = tempfile::tempdir_in(out)?;
    apt.download_spec(package, staging.path())
        .with_context(|| format!("downloading {package} from {suite}"))?;
    let deb = std::fs::read_dir(staging.path())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("apt-get download {package} produced no .deb"))?;
    let dest = out.join(deb.file_name().expect("a file name"));
    std::fs::rename(&deb, &dest)?;
    Ok(dest)
}
