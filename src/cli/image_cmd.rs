use crate::image::{self, LockFile};
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Resolve the package closure of an image spec and (re)write its lock file.
    Lock {
        /// Lock file whose [image] section is the spec (rewritten in place).
        #[arg(long)]
        lock: Option<PathBuf>,
        /// Override the Debian suite of the spec.
        #[arg(long)]
        suite: Option<String>,
    },
    /// Build the image of a lock file; prints `sha256 <hex>` last.
    Build {
        #[arg(long)]
        lock: Option<PathBuf>,
        /// Image name under images/ (alternative to --lock).
        #[arg(long)]
        image: Option<String>,
        /// Ignore the cache and build from scratch.
        #[arg(long)]
        fresh: bool,
    },
    /// Download one Debian package (e.g. a kernel's source for its
    /// selftests) through the builder's private apt and the host's mirror;
    /// prints `deb <path>` and `sha256 <hex>`.
    Fetch {
        /// NAME or NAME=VERSION.
        package: String,
        #[arg(long)]
        suite: String,
        /// Directory the .deb is written to.
        #[arg(long)]
        out: PathBuf,
    },
    /// Copy every .deb an image's lock pins (sha256-checked) into a package
    /// store directory, with an index; builds read it first when
    /// `RULEBENCH_DEB_DIR` names it, so the image outlives its mirror.
    Export {
        /// Image name under images/ (default: RULEBENCH_IMAGE or bullseye-5.10).
        #[arg(long, conflicts_with = "all")]
        image: Option<String>,
        /// Every image under images/.
        #[arg(long)]
        all: bool,
        /// The package store directory (created if missing; added to if not).
        #[arg(long)]
        out: PathBuf,
    },
    /// Rebuild from scratch and check the result matches the cached build.
    Verify {
        #[arg(long)]
        lock: Option<PathBuf>,
        #[arg(long)]
        image: Option<String>,
    },
}

fn lock_file(lock: Option<PathBuf>, image: Option<String>) -> PathBuf {
    lock.unwrap_or_else(|| image::lock_path(image.as_deref()))
}

pub fn run(cmd: ImageCommand) -> Result<()> {
    match cmd {
        ImageCommand::Lock { lock, suite } => {
            let path = lock_file(lock, None);
            let mut current = LockFile::load(&path)?;
            if let Some(suite) = suite {
                current.image.suite = suite;
            }
            let locked = image::lock(&current.image, false)?;
            std::fs::write(&path, locked.to_toml())
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "locked {} packages into {}",
                locked.packages.len(),
                path.display()
            );
            Ok(())
        }
        ImageCommand::Build { lock, image, fresh } => {
            let path = lock_file(lock, image);
            let locked = LockFile::load(&path)?;
            if fresh {
                if let Ok(old) = image::build(&locked, true) {
                    image::build::forget(&old)?;
                }
            }
            let built = image::build(&locked, false)?;
            println!("kernel {}", built.kernel.display());
            println!(
                "initramfs {} ({} bytes)",
                built.initramfs.display(),
                built.initramfs_bytes
            );
            println!("sha256 {}", built.sha256);
            Ok(())
        }
        ImageCommand::Fetch {
            package,
            suite,
            out,
        } => {
            let dest = image::export::fetch_package(&package, &suite, &out)?;
            println!("deb {}", dest.display());
            println!("sha256 {}", image::deb::sha256_file(&dest)?);
            Ok(())
        }
        ImageCommand::Export { image, all, out } => export(image, all, &out),
        ImageCommand::Verify { lock, image } => {
            let path = lock_file(lock, image);
            let locked = LockFile::load(&path)?;
            let first = image::build(&locked, false)?;
            image::build::forget(&first)?;
            let second = image::build(&locked, false)?;
            if first.sha256 != second.sha256 {
                bail!(
                    "image {} is not reproducible: cached build {} vs fresh build {}",
                    locked.image.name,
                    first.sha256,
                    second.sha256
                );
            }
            println!("reproducible: both builds give the same image");
            println!("sha256 {}", second.sha256);
            Ok(())
        }
    }
}

fn export(image: Option<String>, all: bool, out: &Path) -> Result<()> {
    let paths = match all {
        true => image::all_lock_paths().context("listing images/*.lock.toml")?,
        false => vec![image::lock_path(image.as_deref())],
    };
    let locks = paths
        .iter()
        .map(|p| LockFile::load(p))
        .collect::<Result<Vec<_>, _>>()?;
    let done = image::export::export(&locks, out, false)?;
    eprintln!("{done} into {}", out.display());
    println!("store {}", out.display());
    Ok(())
}
