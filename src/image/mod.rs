//! Pinned guest images: lock files, the reproducible initramfs builder.

pub mod agent;
pub mod apt;
pub mod build;
pub mod cpio;
pub mod deb;
pub mod elf;
pub mod export;
pub mod lock;
pub mod mirror;
pub mod rootfs;
pub mod store;

pub use build::{build, cache_root, lock, BuiltImage};
pub use lock::LockFile;

use std::path::PathBuf;

/// Image selected by `RULEBENCH_IMAGE` (a name under images/ or a path).
pub const IMAGE_ENV: &str = "RULEBENCH_IMAGE";
pub const DEFAULT_IMAGE: &str = "bullseye-5.10";

/// Lock file path for an image name or an explicit path.
pub fn lock_path(name_or_path: Option<&str>) -> PathBuf {
    let chosen = name_or_path
        .map(str::to_string)
        .or_else(|| std::env::var(IMAGE_ENV).ok())
        .unwrap_or_else(|| DEFAULT_IMAGE.to_string());
    if chosen.ends_with(".toml") || chosen.contains('/') {
        PathBuf::from(chosen)
    } else {
        agent::workspace_root()
            .join("images")
            .join(format!("{chosen}.lock.toml"))
    }
}

/// Every image's lock file under images/, sorted by name.
pub fn all_lock_paths() -> std::io::Result<Vec<PathBuf>> {
    let dir = agent::workspace_root().join("images");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".lock.toml"))
        .collect();
    paths.sort();
    Ok(paths)
}
