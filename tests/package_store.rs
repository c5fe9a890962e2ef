//! The package store (`rulebench image export`, `RULEBENCH_DEB_DIR`): an image
//! lock stays buildable when the mirror no longer serves its pinned versions.
//!
//! Each test builds bullseye-5.10 (the smallest image) into a fresh, private
//! image cache (`RULEBENCH_CACHE`), so nothing comes from an earlier build,
//! and most point the mirror at 127.0.0.1 on a closed port, so nothing can
//! come from the network either. The builds run as `rulebench image build`
//! child processes: the variables are set for the child only. Image builds
//! need root (chroot for depmod).

use anyhow::{ensure, Context, Result};
use rulebench::image::{self, mirror::MIRROR_ENV, store::DEB_DIR_ENV, LockFile};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

const IMAGE: &str = "bullseye-5.10";

/// A mirror address nothing answers on: 127.0.0.1, a port just closed.
fn unreachable_mirror() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a local port");
    let port = listener.local_addr().expect("its address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}/debian")
}

/// `rulebench ARGS` with a private cache, a store (or none) and a mirror
/// (or the host's).
fn rulebench(
    args: &[&str],
    cache: &Path,
    store: Option<&Path>,
    mirror: Option<&str>,
) -> Result<Output> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rulebench"));
    cmd.args(args)
        .env(image::build::CACHE_ENV, cache)
        .env("RUST_BACKTRACE", "0")
        .env_remove(DEB_DIR_ENV)
        .env_remove(MIRROR_ENV);
    if let Some(store) = store {
        cmd.env(DEB_DIR_ENV, store);
    }
    if let Some(mirror) = mirror {
        cmd.env(MIRROR_ENV, mirror);
    }
    cmd.output()
        .with_context(|| format!("running rulebench {}", args.join(" ")))
}

fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn lock() -> Result<LockFile> {
    let path = image::lock_path(Some(IMAGE));
    LockFile::load(&path).with_context(|| format!("loading {}", path.display()))
}

/// The image built the normal way (the shared cache, the host's mirror).
fn normal_build() -> Result<image::BuiltImage> {
    image::build(&lock()?, true).context("building the image the normal way")
}

/// A package store of the image, exported through the CLI from the
/// shared cache (which `normal_build` filled).
fn export_store(dir: &Path) -> Result<f64> {
    let started = Instant::now();
    let dir = dir.to_str().context("a UTF-8 path")?;
    let out = rulebench(
        &["image", "export", "--image", IMAGE, "--out", dir],
        &image::cache_root(),
        None,
        None,
    )?;
    ensure!(out.status.success(), "image export failed:\n{}", text(&out));
    Ok(started.elapsed().as_secs_f64())
}

/// `initramfs PATH (N bytes)` of `image build`'s output.
fn initramfs_path(stdout: &str) -> Result<PathBuf> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("initramfs "))
        .context("no initramfs line")?;
    let path = line.split(" (").next().context("no path")?;
    Ok(PathBuf::from(path))
}

fn file_sha256(path: &Path) -> Result<String> {
    image::deb::sha256_file(path).with_context(|| format!("hashing {}", path.display()))
}

/// The first locked package (by the lock's order, the first one a build
/// reaches) and its store file.
fn first_package(store: &Path) -> Result<(image::lock::LockedPackage, PathBuf)> {
    let pkg = lock()?.packages[0].clone();
    let file = image::store::Store::open(store)?
        .find(&pkg.name, &pkg.version, &pkg.sha256)?
        .with_context(|| format!("{} is not in the exported store", pkg.name))?;
    Ok((pkg, file))
}

#[test]
fn the_image_builds_from_the_store_with_the_mirror_unreachable_to_the_same_bytes() -> Result<()> {
    let normal = normal_build()?;
    let work = tempfile::tempdir()?;
    let store = work.path().join("store");
    let export_s = export_store(&store)?;
    let index = image::store::StoreIndex::load(&store)?;
    ensure!(
        index.packages.len() == lock()?.packages.len(),
        "the index lists {} packages, the lock {}",
        index.packages.len(),
        lock()?.packages.len()
    );

    let cache = work.path().join("cache");
    let started = Instant::now();
    let out = rulebench(
        &["image", "build", "--image", IMAGE],
        &cache,
        Some(&store),
        Some(&unreachable_mirror()),
    )?;
    let build_s = started.elapsed().as_secs_f64();
    ensure!(
        out.status.success(),
        "build from the store failed:\n{}",
        text(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let from_store = initramfs_path(&stdout)?;
    ensure!(from_store.starts_with(&cache), "{}", from_store.display());
    let (a, b) = (file_sha256(&normal.initramfs)?, file_sha256(&from_store)?);
    eprintln!(
        "export {export_s:.1} s, store build {build_s:.1} s; initramfs sha256 normal {a}, from the store {b}"
    );
    ensure!(a == b, "initramfs differs: normal {a}, from the store {b}");
    ensure!(
        stdout.contains(&format!("sha256 {}", normal.sha256)),
        "image sha256 differs from the normal build's {}:\n{stdout}",
        normal.sha256
    );
    let n = lock()?.packages.len();
    ensure!(
        stderr.contains(&format!("{n} of {n} packages from the package store")),
        "{stderr}"
    );
    // Nothing was fetched: no apt state and no downloaded .debs in the cache.
    for unused in ["apt", "debs"] {
        ensure!(
            !cache.join(unused).exists(),
            "the store build created {unused}/ in its cache"
        );
    }
    Ok(())
}

#[test]
fn only_what_the_store_lacks_comes_from_the_mirror_and_an_unreachable_one_names_it() -> Result<()> {
    normal_build()?;
    let work = tempfile::tempdir()?;
    let store = work.path().join("store");
    export_store(&store)?;
    let (pkg, file) = first_package(&store)?;
    std::fs::remove_file(&file)?;

    // Mirror unreachable: the error names the package, its version and the fix.
    let cache = work.path().join("cache-offline");
    let out = rulebench(
        &["image", "build", "--image", IMAGE],
        &cache,
        Some(&store),
        Some(&unreachable_mirror()),
    )?;
    ensure!(!out.status.success(), "built without {}", pkg.name);
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        format!("package {} version {}", pkg.name, pkg.version),
        DEB_DIR_ENV.to_string(),
        format!("rulebench image export --image {IMAGE}"),
        "the Debian snapshot archive".to_string(),
    ] {
        ensure!(err.contains(&needle), "{needle:?} missing from:\n{err}");
    }

    // The host's mirror: that one package is downloaded, the rest is the store's.
    let cache = work.path().join("cache-online");
    let out = rulebench(
        &["image", "build", "--image", IMAGE],
        &cache,
        Some(&store),
        None,
    )?;
    ensure!(out.status.success(), "build failed:\n{}", text(&out));
    let fetched: Vec<String> = std::fs::read_dir(cache.join("debs"))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".deb"))
        .collect();
    ensure!(
        fetched.len() == 1 && fetched[0].starts_with(&format!("{}_", pkg.name)),
        "fetched from the mirror: {fetched:?}"
    );
    Ok(())
}

#[test]
fn a_store_file_with_a_wrong_hash_is_refused_naming_the_file() -> Result<()> {
    normal_build()?;
    let work = tempfile::tempdir()?;
    let store = work.path().join("store");
    export_store(&store)?;
    let (pkg, file) = first_package(&store)?;
    std::fs::write(&file, b"not the pinned package")?;
    let out = rulebench(
        &["image", "build", "--image", IMAGE],
        &work.path().join("cache"),
        Some(&store),
        Some(&unreachable_mirror()),
    )?;
    ensure!(!out.status.success(), "built from a damaged store");
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        format!("package store file {}", file.display()),
        format!("{} {} with sha256 {}", pkg.name, pkg.version, pkg.sha256),
        "refusing to build".to_string(),
    ] {
        ensure!(err.contains(&needle), "{needle:?} missing from:\n{err}");
    }
    // Export refuses to add to it as well, naming the same file.
    let again = rulebench(
        &[
            "image",
            "export",
            "--image",
            IMAGE,
            "--out",
            store.to_str().context("a UTF-8 path")?,
        ],
        &image::cache_root(),
        None,
        None,
    )?;
    ensure!(!again.status.success(), "export accepted a damaged store");
    let err = String::from_utf8_lossy(&again.stderr);
    ensure!(err.contains(&file.display().to_string()), "{err}");
    Ok(())
}

/// A version the mirror does not serve (as after a point release): the
/// build names it and the fix. Asks the host's real mirror.
#[test]
fn a_pinned_version_the_mirror_lost_is_named_with_the_fix() -> Result<()> {
    let mut gone = lock()?;
    gone.packages[0].version = "0.0.1-rulebench-gone".into();
    let name = gone.packages[0].name.clone();
    let work = tempfile::tempdir()?;
    let path = work.path().join(format!("{IMAGE}.lock.toml"));
    std::fs::write(&path, gone.to_toml())?;
    let out = rulebench(
        &[
            "image",
            "build",
            "--lock",
            path.to_str().context("a UTF-8 path")?,
        ],
        &work.path().join("cache"),
        None,
        None,
    )?;
    ensure!(!out.status.success(), "built a version that does not exist");
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        format!("package {name} version 0.0.1-rulebench-gone (suite bullseye)"),
        "no longer serves it".to_string(),
        DEB_DIR_ENV.to_string(),
        "rulebench image export".to_string(),
        format!("{name}_0.0.1-rulebench-gone_amd64.deb"),
        "apt said: E:".to_string(),
    ] {
        ensure!(err.contains(&needle), "{needle:?} missing from:\n{err}");
    }
    Ok(())
}
