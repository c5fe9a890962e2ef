//! Lock and build: resolve and pin packages (`lock`), then fetch, verify,
//! extract, select and pack them into a deterministic initramfs (`build`).

use super::apt::{AptError, PrivateApt};
use super::cpio::{self, Entry, EntryKind};
use super::lock::{ImageSpec, LockFile, LockedPackage};
use super::store::{self, Store};
use super::{agent, deb, mirror, rootfs};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Bump when the builder's output for the same inputs changes.
const BUILDER_VERSION: &str = "3";
pub const CACHE_ENV: &str = "RULEBENCH_CACHE";
/// An image's files, beside its manifest in its cache directory.
pub const KERNEL_FILE: &str = "vmlinuz";
pub const INITRAMFS_FILE: &str = "initramfs.cpio.gz";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BuiltImage {
    pub name: String,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub kernel_release: String,
    /// sha256 over the kernel's and the initramfs's sha256.
    pub sha256: String,
    pub initramfs_bytes: u64,
    pub cmdline: String,
    /// The image carries the virtiofs module, so host directories can be
    /// shared with virtio-fs (else `vm run --share` copies them in).
    #[serde(default)]
    pub virtiofs: bool,
}

pub fn cache_root() -> PathBuf {
    std::env::var_os(CACHE_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| agent::workspace_root().join("target/rulebench"))
}

fn deb_cache_path(cache: &Path, name: &str, version: &str) -> PathBuf {
    cache
        .join("debs")
        .join(format!("{name}_{}_amd64.deb", version.replace(':', "%3a")))
}

pub(crate) fn progress(len: u64, quiet: bool, what: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar
}

/// Serializes builds of the cache between concurrent test processes.
pub(crate) struct CacheLock {
    _file: std::fs::File,
}

impl CacheLock {
    pub(crate) fn acquire(cache: &Path) -> Result<Self> {
        std::fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
        let path = cache.join(".build.lock");
        let file =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on an fd we own; released when the file closes.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            bail!(
                "locking {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
        }
        Ok(CacheLock { _file: file })
    }
}

/// Lazily created private apts, one per suite (only needed on a cache miss).
pub(crate) struct Fetcher {
    cache: PathBuf,
    apts: BTreeMap<String, PrivateApt>,
}

impl Fetcher {
    pub(crate) fn new(cache: PathBuf) -> Self {
        Fetcher {
            cache,
            apts: BTreeMap::new(),
        }
    }

    fn apt(&mut self, suite: &str) -> Result<&PrivateApt> {
        if !self.apts.contains_key(suite) {
            let mirror = mirror::host_mirror()?;
            let dir = self.cache.join("apt").join(suite);
            let apt = PrivateApt::new(&dir, &mirror, suite)
                .with_context(|| format!("preparing apt for suite {suite}"))?;
            self.apts.insert(suite.to_string(), apt);
        }
        Ok(&self.apts[suite])
    }

    /// The cached .deb of `name=version` from `suite`, downloading it if absent.
    fn fetch(&mut self, suite: &str, name: &str, version: &str) -> Result<PathBuf> {
        let dest = deb_cache_path(&self.cache, name, version);
        if dest.exists() {
            return Ok(dest);
        }
        let debs = self.cache.join("debs");
        std::fs::create_dir_all(&debs)?;
        let tmp = tempfile::tempdir_in(&debs)?;
        self.apt(suite)?
            .download(name, version, tmp.path())
            .with_context(|| format!("downloading {name}={version}"))?;
        let file = std::fs::read_dir(tmp.path())?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .with_context(|| format!("apt-get download {name}={version} produced no .deb"))?;
        std::fs::rename(&file, &dest)?;
        Ok(dest)
    }
}

/// Where a locked package's .deb came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DebOrigin {
    Store,
    /// The image cache's debs/ or the mirror (through it).
    Mirror,
}

/// The .deb of a locked package, its sha256 checked against the lock: from
/// the package store if it has the file, else from the cache or the mirror.
/// A mirror that does not deliver the pinned version is reported as such,
/// with the package store as the fix.
pub(crate) fn locked_deb(
    image: &str,
    fetcher: &mut Fetcher,
    store: Option<&Store>,
    suite: &str,
    pkg: &LockedPackage,
) -> Result<(PathBuf, DebOrigin)> {
    if let Some(store) = store {
        if let Some(path) = store.find(&pkg.name, &pkg.version, &pkg.sha256)? {
            return Ok((path, DebOrigin::Store));
        }
    }
    let path = match fetcher.fetch(suite, &pkg.name, &pkg.version) {
        Ok(path) => path,
        Err(e) => match e.downcast_ref::<AptError>() {
            Some(AptError::Failed { stderr, .. }) => {
                return Err(store::not_served(
                    image,
                    &pkg.name,
                    &pkg.version,
                    suite,
                    &pkg.sha256,
                    stderr,
                )
                .into())
            }
            _ => return Err(e),
        },
    };
    deb::verify(&pkg.name, &path, &pkg.sha256)?;
    Ok((path, DebOrigin::Mirror))
}

/// Resolve `spec`'s package closure, fetch it, and pin the packages that
/// contribute kept files (exact version + sha256).
pub fn lock(spec: &ImageSpec, quiet: bool) -> Result<LockFile> {
    let cache = cache_root();
    let mut fetcher = Fetcher::new(cache.clone());
    let mut wanted = spec.packages.clone();
    for name in &spec.package_binaries {
        if !wanted.contains(name) {
            wanted.push(name.clone());
        }
    }
    let kernel_suite = spec.kernel_suite.clone();
    if kernel_suite.is_none() {
        wanted.push(spec.kernel_package.clone());
    }
    let mut resolved: Vec<(Option<String>, _)> = fetcher
        .apt(&spec.suite)?
        .resolve(&wanted)
        .context("resolving the package closure")?
        .into_iter()
        .map(|p| (None, p))
        .collect();
    if let Some(ks) = &kernel_suite {
        // Only the kernel package itself comes from the other suite: the
        // userland stays that of the image's suite, so only the kernel differs.
        let kernel = fetcher
            .apt(ks)?
            .resolve(std::slice::from_ref(&spec.kernel_package))
            .with_context(|| format!("resolving {} in {ks}", spec.kernel_package))?
            .into_iter()
            .find(|p| p.name == spec.kernel_package)
            .with_context(|| format!("{} not found in {ks}", spec.kernel_package))?;
        resolved.push((Some(ks.clone()), kernel));
    }
    let bar = progress(resolved.len() as u64, quiet, "fetching");
    let mut candidates = Vec::new();
    for (suite, pkg) in &resolved {
        bar.set_message(pkg.name.clone());
        let from = suite.as_deref().unwrap_or(&spec.suite);
        let path = fetcher.fetch(from, &pkg.name, &pkg.version)?;
        let sha256 = deb::sha256_file(&path)?;
        candidates.push((
            LockedPackage {
                name: pkg.name.clone(),
                version: pkg.version.clone(),
                sha256,
                suite: suite.clone(),
            },
            path,
        ));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let staging = tempfile::tempdir().context("creating staging directory")?;
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    for (pkg, path) in &candidates {
        deb::extract(path, staging.path())?;
        for p in deb::contents(path)? {
            // Kept paths are spelled as after the merge (`usr/lib/…`).
            let p = match spec.merged_usr {
                true => rootfs::merged_spelling(&p).unwrap_or(p),
                false => p,
            };
            owners.entry(p).or_insert_with(|| pkg.name.clone());
        }
    }
    let debs: Vec<(&str, &Path)> = candidates
        .iter()
        .map(|(p, path)| (p.name.as_str(), path.as_path()))
        .collect();
    let kept = select(spec, staging.path(), &programs_of(spec, &debs)?)?;
    let used: BTreeSet<&String> = kept
        .iter()
        .filter_map(|p| owners.get(&p.to_string_lossy().into_owned()))
        .collect();
    let packages = candidates
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| used.contains(&p.name) || p.name == spec.kernel_package)
        .collect();
    Ok(LockFile {
        image: spec.clone(),
        packages,
    })
}

/// The programs of the spec's `package_binaries`, from their fetched .debs.
fn programs_of(spec: &ImageSpec, debs: &[(&str, &Path)]) -> Result<Vec<String>> {
    let mut programs = Vec::new();
    for name in &spec.package_binaries {
        let (_, path) = debs
            .iter()
            .find(|(n, _)| n == name)
            .with_context(|| format!("package_binaries names {name}, which is not locked"))?;
        programs.extend(rootfs::package_programs(&deb::contents(path)?));
    }
    programs.retain(|p| !spec.exclude_programs.contains(p));
    Ok(programs)
}

/// Root-relative paths to keep, from an extracted staging tree: the spec's
/// includes, `programs` (of `package_binaries`) and the kernel modules.
fn select(spec: &ImageSpec, staging: &Path, programs: &[String]) -> Result<BTreeSet<PathBuf>> {
    if spec.merged_usr {
        rootfs::merge_usr(staging).context("merging /usr in the staging tree")?;
    }
    let mut sel = rootfs::Selection::new(staging);
    for path in spec.include.iter().chain(programs) {
        sel.include(path)
            .with_context(|| format!("keeping {path} in image {}", spec.name))?;
    }
    sel.include("/bin/busybox")?;
    let release = &spec.kernel_release;
    let modules_dir = rootfs::modules_base(staging, release);
    let builtin_text = std::fs::read_to_string(staging.join(&modules_dir).join("modules.builtin"))
        .context("reading modules.builtin of the kernel package")?;
    let builtin = rootfs::builtin_modules(&builtin_text);
    let index = rootfs::index_modules(staging, release)?;
    let mut requested = rootfs::expand_modules(&spec.modules, &index, &builtin)?;
    requested.extend(spec.early_modules.iter().cloned());
    let mut kept = sel.kept;
    kept.extend(rootfs::module_closure(
        staging, &index, &requested, &builtin,
    )?);
    kept.insert(modules_dir.join("modules.builtin"));
    Ok(kept)
}

/// Whether the image's kernel has module `name`: kept as a file, or built in.
fn has_module(staging: &Path, release: &str, kept: &BTreeSet<PathBuf>, name: &str) -> Result<bool> {
    let kept_file = kept.iter().any(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .and_then(rootfs::module_stem)
            .map(rootfs::module_name)
            .as_deref()
            == Some(name)
    });
    let builtin_path = staging
        .join(rootfs::modules_base(staging, release))
        .join("modules.builtin");
    let builtin = std::fs::read_to_string(&builtin_path)
        .with_context(|| format!("reading {}", builtin_path.display()))?;
    Ok(kept_file || rootfs::builtin_modules(&builtin).contains(name))
}

fn copy_into(staging: &Path, rootfs: &Path, rel: &Path) -> Result<()> {
    let src = staging.join(rel);
    let dst = rootfs.join(rel);
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let meta = std::fs::symlink_metadata(&src)?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(&src)?;
        let _ = std::fs::remove_file(&dst);
        std::os::unix::fs::symlink(target, &dst)?;
    } else if meta.is_dir() {
        std::fs::create_dir_all(&dst)?;
    } else {
        std::fs::copy(&src, &dst).with_context(|| format!("copying {}", rel.display()))?;
    }
    Ok(())
}

fn write_file(rootfs: &Path, rel: &str, contents: &[u8], mode: u32) -> Result<()> {
    let path = rootfs.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn symlink(rootfs: &Path, rel: &str, target: &str) -> Result<()> {
    let path = rootfs.join(rel.trim_start_matches('/'));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let _ = std::fs::remove_file(&path);
    std::os::unix::fs::symlink(target, &path).with_context(|| format!("linking {}", path.display()))
}

/// The files rulebench itself adds to the guest.
fn add_own_files(spec: &ImageSpec, rootfs: &Path, own: &OwnFiles) -> Result<()> {
    let agent_bytes = &own.agent_bytes;
    write_file(rootfs, "init", agent_bytes, 0o755)?;
    symlink(rootfs, "usr/local/bin/rulebench-agent", "/init")?;
    let mut early = spec.early_modules.join("\n");
    early.push('\n');
    write_file(
        rootfs,
        "etc/rulebench/modules-early",
        early.as_bytes(),
        0o644,
    )?;
    write_file(
        rootfs,
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\n",
        0o644,
    )?;
    write_file(rootfs, "etc/group", b"root:x:0:\n", 0o644)?;
    write_file(rootfs, "etc/hostname", b"rulebench\n", 0o644)?;
    for dir in [
        "proc", "sys", "dev", "run", "tmp", "root", "var/lib", "sys/fs",
    ] {
        std::fs::create_dir_all(rootfs.join(dir))?;
    }
    symlink(rootfs, "var/run", "/run")?;
    for (link, target) in &spec.symlinks {
        symlink(rootfs, link, target)?;
    }
    // The eBPF row: loader, compiled programs and the compiler identity.
    let ebpf = &own.ebpf;
    let loader = std::fs::read(&ebpf.loader)
        .with_context(|| format!("reading {}", ebpf.loader.display()))?;
    write_file(rootfs, "usr/local/bin/rulebench-ebpf", &loader, 0o755)?;
    for (name, path) in &ebpf.objects {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        write_file(
            rootfs,
            &format!("usr/lib/rulebench/bpf/{name}"),
            &bytes,
            0o644,
        )?;
    }
    write_file(
        rootfs,
        "usr/lib/rulebench/bpf/BUILD-INFO",
        ebpf.build_info.as_bytes(),
        0o644,
    )?;
    for applet in &spec.busybox_applets {
        let taken = ["bin", "sbin", "usr/bin", "usr/sbin"]
            .iter()
            .any(|d| std::fs::symlink_metadata(rootfs.join(d).join(applet)).is_ok());
        if !taken {
            symlink(rootfs, &format!("bin/{applet}"), "/bin/busybox")?;
        }
    }
    Ok(())
}

/// Run the image's own depmod inside the finished tree, with a fixed module
/// order so its output does not depend on directory read order.
fn run_depmod(rootfs: &Path, release: &str) -> Result<()> {
    let modules = rootfs.join("lib/modules").join(release);
    let mut order: Vec<String> = Vec::new();
    let mut dirs = vec![modules.join("kernel")];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir)?.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if let Ok(rel) = p.strip_prefix(&modules) {
                order.push(rel.display().to_string());
            }
        }
    }
    order.sort();
    std::fs::write(modules.join("modules.order"), order.join("\n") + "\n")?;
    let out = Command::new("chroot")
        .arg(rootfs)
        .args(["/sbin/depmod", release])
        .output()
        .context("running chroot for depmod (the image builder must run as root)")?;
    if !out.status.success() {
        bail!(
            "depmod in the image failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn collect_entries(rootfs: &Path) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        let full = rootfs.join(&rel);
        for e in std::fs::read_dir(&full)?.flatten() {
            let child = rel.join(e.file_name());
            let meta = std::fs::symlink_metadata(e.path())?;
            let path = child.to_string_lossy().into_owned();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(e.path())?.to_string_lossy().into_owned();
                entries.push(Entry {
                    path,
                    mode: 0o777,
                    kind: EntryKind::Symlink(target),
                });
            } else if meta.is_dir() {
                entries.push(Entry {
                    path,
                    mode: 0o755,
                    kind: EntryKind::Dir,
                });
                dirs.push(child);
            } else {
                // Only the executable bit is meaningful; normalize the rest.
                let mode = if meta.permissions().mode() & 0o111 != 0 {
                    0o755
                } else {
                    0o644
                };
                entries.push(Entry {
                    path,
                    mode,
                    kind: EntryKind::File(std::fs::read(e.path())?),
                });
            }
        }
    }
    Ok(entries)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What rulebench itself puts into an image (agent, eBPF loader and
/// programs), built once per process: every guest test asks for the image,
/// and rebuilding (cargo + clang) each time would sit on that path.
struct OwnFiles {
    agent_bytes: Vec<u8>,
    ebpf: agent::EbpfBundle,
    /// Their hash, part of the image cache key, so a change rebuilds the image.
    digest: String,
}

fn own_files(quiet: bool) -> Result<&'static OwnFiles> {
    static OWN: std::sync::OnceLock<OwnFiles> = std::sync::OnceLock::new();
    if let Some(own) = OWN.get() {
        return Ok(own);
    }
    let agent_path = agent::agent_binary(quiet).context("building the guest agent")?;
    let agent_bytes = std::fs::read(&agent_path)
        .with_context(|| format!("reading guest agent {}", agent_path.display()))?;
    let ebpf = agent::ebpf_bundle(quiet).context("building the eBPF loader and programs")?;
    let ebpf_digest = agent::ebpf_bundle_digest(&ebpf).context("hashing the eBPF bundle")?;
    let digest = sha256_hex(format!("{}\n{ebpf_digest}", sha256_hex(&agent_bytes)).as_bytes());
    Ok(OWN.get_or_init(|| OwnFiles {
        agent_bytes,
        ebpf,
        digest,
    }))
}

/// Whether `build` would be answered from the cache.
pub fn is_cached(lock: &LockFile) -> bool {
    own_files(true)
        .map(|own| read_manifest(&image_dir(lock, &own.digest).join("manifest.json")).is_some())
        .unwrap_or(false)
}

fn image_dir(lock: &LockFile, own_files_digest: &str) -> PathBuf {
    let key = sha256_hex(
        format!(
            "{}\n{}\n{}",
            lock.to_toml(),
            own_files_digest,
            BUILDER_VERSION
        )
        .as_bytes(),
    );
    cache_root()
        .join("images")
        .join(format!("{}-{}", lock.image.name, &key[..16]))
}

/// Build (or fetch from cache) the image described by a lock file.
pub fn build(lock: &LockFile, quiet: bool) -> Result<BuiltImage> {
    let spec = &lock.image;
    if lock.packages.is_empty() {
        bail!(
            "lock file for image {} pins no packages; run `rulebench image lock` first",
            spec.name
        );
    }
    let own = own_files(quiet)?;
    let cache = cache_root();
    let out_dir = image_dir(lock, &own.digest);
    let manifest = out_dir.join("manifest.json");
    if let Some(image) = read_manifest(&manifest).filter(|i| check_cached_files(i).is_ok()) {
        return Ok(image);
    }
    let _guard = CacheLock::acquire(&cache)?;
    if let Some(image) = read_manifest(&manifest) {
        match check_cached_files(&image) {
            Ok(()) => return Ok(image),
            Err(why) => eprintln!(
                "rulebench: cached image {} is damaged ({why}); rebuilding it",
                image.name
            ),
        }
    }
    let started = Instant::now();
    let mut fetcher = Fetcher::new(cache.clone());
    let store = Store::from_env()?;
    let bar = progress(lock.packages.len() as u64, quiet, "fetching");
    let staging = tempfile::tempdir().context("creating staging directory")?;
    let mut debs = Vec::new();
    let mut from_store = 0;
    for pkg in &lock.packages {
        bar.set_message(pkg.name.clone());
        let suite = pkg.suite.as_deref().unwrap_or(&spec.suite);
        let (path, origin) = locked_deb(&spec.name, &mut fetcher, store.as_ref(), suite, pkg)?;
        from_store += usize::from(origin == DebOrigin::Store);
        deb::extract(&path, staging.path())?;
        debs.push((pkg.name.as_str(), path));
        bar.inc(1);
    }
    bar.finish_and_clear();
    if let (Some(store), false) = (&store, quiet) {
        eprintln!(
            "{from_store} of {} packages from the package store {}, {} from the mirror or cache",
            lock.packages.len(),
            store.dir().display(),
            lock.packages.len() - from_store
        );
    }
    let debs: Vec<(&str, &Path)> = debs.iter().map(|(n, p)| (*n, p.as_path())).collect();
    let kept = select(spec, staging.path(), &programs_of(spec, &debs)?)?;
    let root = tempfile::tempdir().context("creating rootfs directory")?;
    for rel in &kept {
        copy_into(staging.path(), root.path(), rel)?;
    }
    // Newer kernels ship modules under /usr/lib; the bullseye userland's kmod
    // looks in /lib/modules. A merged /usr has both through the `lib` link.
    let merged = root.path().join("usr/lib/modules");
    if spec.merged_usr {
        rootfs::merge_usr(root.path()).context("merging /usr in the image")?;
    } else if merged.is_dir() {
        std::fs::create_dir_all(root.path().join("lib"))?;
        std::fs::rename(&merged, root.path().join("lib/modules"))
            .context("moving kernel modules to /lib/modules")?;
    }
    add_own_files(spec, root.path(), own)?;
    run_depmod(root.path(), &spec.kernel_release)?;
    let mut entries = collect_entries(root.path())?;
    // Rust's runtime aborts when fds 0-2 are closed and /dev/null is missing,
    // so the device nodes exist before devtmpfs is mounted over /dev.
    entries.push(Entry {
        path: "dev/console".into(),
        mode: 0o600,
        kind: EntryKind::CharDev(5, 1),
    });
    entries.push(Entry {
        path: "dev/null".into(),
        mode: 0o666,
        kind: EntryKind::CharDev(1, 3),
    });
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    cpio::write_archive(&mut gz, entries)?;
    let initramfs = gz.finish()?;
    let kernel_src = staging
        .path()
        .join(format!("boot/vmlinuz-{}", spec.kernel_release));
    let kernel = std::fs::read(&kernel_src)
        .with_context(|| format!("reading {} from the kernel package", kernel_src.display()))?;
    let sha256 =
        sha256_hex(format!("{}{}", sha256_hex(&kernel), sha256_hex(&initramfs)).as_bytes());
    let images_dir = cache.join("images");
    std::fs::create_dir_all(&images_dir)?;
    let tmp_out = tempfile::tempdir_in(&images_dir)?;
    std::fs::write(tmp_out.path().join(KERNEL_FILE), &kernel)?;
    std::fs::write(tmp_out.path().join(INITRAMFS_FILE), &initramfs)?;
    let image = BuiltImage {
        name: spec.name.clone(),
        kernel: out_dir.join(KERNEL_FILE),
        initramfs: out_dir.join(INITRAMFS_FILE),
        kernel_release: spec.kernel_release.clone(),
        sha256,
        initramfs_bytes: initramfs.len() as u64,
        cmdline: spec.cmdline.clone(),
        virtiofs: has_module(staging.path(), &spec.kernel_release, &kept, "virtiofs")?,
    };
    let mut f = std::fs::File::create(tmp_out.path().join("manifest.json"))?;
    f.write_all(serde_json::to_string_pretty(&image)?.as_bytes())?;
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::rename(tmp_out.keep(), &out_dir)
        .with_context(|| format!("moving the image into {}", out_dir.display()))?;
    if !quiet {
        eprintln!(
            "built image {} ({} KiB initramfs) in {:.1} s",
            spec.name,
            image.initramfs_bytes / 1024,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(image)
}

fn read_manifest(path: &Path) -> Option<BuiltImage> {
    let text = std::fs::read_to_string(path).ok()?;
    let image = rebase(serde_json::from_str(&text).ok()?, path.parent()?);
    (image.kernel.exists() && image.initramfs.exists()).then_some(image)
}

/// The manifest records where its image was built, but a cache is moved
/// or copied (a renamed checkout, a CI cache restored elsewhere, a test's
/// private copy): the image is the files beside the manifest, never the
/// ones at the recorded path, which may be gone or belong to another tree.
fn rebase(mut image: BuiltImage, dir: &Path) -> BuiltImage {
    image.kernel = dir.join(KERNEL_FILE);
    image.initramfs = dir.join(INITRAMFS_FILE);
    image
}

/// The cached kernel and initramfs still hash to the manifest's sha256: a
/// truncated or overwritten file would otherwise boot into an unpacking
/// error, a panic or a hang far from its cause. Checked once per process
/// and file state (size, mtime), since every guest test asks for the image.
fn check_cached_files(image: &BuiltImage) -> Result<(), String> {
    static CHECKED: std::sync::Mutex<BTreeSet<String>> = std::sync::Mutex::new(BTreeSet::new());
    let state = |p: &Path| -> Result<(u64, std::time::SystemTime), String> {
        let meta = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        Ok((meta.len(), meta.modified().map_err(|e| e.to_string())?))
    };
    let (kernel_len, kernel_mtime) = state(&image.kernel)?;
    let (initramfs_len, initramfs_mtime) = state(&image.initramfs)?;
    let key = format!(
        "{}:{kernel_len}:{kernel_mtime:?}:{}:{initramfs_len}:{initramfs_mtime:?}",
        image.kernel.display(),
        image.initramfs.display()
    );
    if CHECKED.lock().expect("checked set").contains(&key) {
        return Ok(());
    }
    if initramfs_len != image.initramfs_bytes {
        return Err(format!(
            "{} is {initramfs_len} bytes, the manifest says {}",
            image.initramfs.display(),
            image.initramfs_bytes
        ));
    }
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let sha256 = sha256_hex(
        format!(
            "{}{}",
            sha256_hex(&read(&image.kernel)?),
            sha256_hex(&read(&image.initramfs)?)
        )
        .as_bytes(),
    );
    if sha256 != image.sha256 {
        return Err(format!(
            "{} or {} no longer hashes to the manifest's sha256 {}",
            image.kernel.display(),
            image.initramfs.display(),
            image.sha256
        ));
    }
    CHECKED.lock().expect("checked set").insert(key);
    Ok(())
}

/// Remove a cached image so the next build starts from scratch (verify).
pub fn forget(image: &BuiltImage) -> Result<()> {
    if let Some(dir) = image.initramfs.parent() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moved_manifest_names_the_files_beside_it() {
        let image = BuiltImage {
            name: "bullseye-5.10".into(),
            kernel: "/old/tree/target/rulebench/images/x/vmlinuz".into(),
            initramfs: "/old/tree/target/rulebench/images/x/initramfs.cpio.gz".into(),
            kernel_release: "5.10.0-0".into(),
            sha256: "00".into(),
            initramfs_bytes: 1,
            cmdline: String::new(),
            virtiofs: false,
        };
        let moved = rebase(image, Path::new("/new/cache/images/x"));
        assert_eq!(moved.kernel, Path::new("/new/cache/images/x/vmlinuz"));
        assert_eq!(
            moved.initramfs,
            Path::new("/new/cache/images/x/initramfs.cpio.gz")
        );
    }
}
