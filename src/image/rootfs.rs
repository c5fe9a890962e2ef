//! Choosing what of the extracted packages the guest keeps: the listed paths,
//! the shared libraries their ELF files need (transitively), and the listed
//! kernel modules with their dependencies. Everything else is left behind,
//! because initramfs size dominates boot time under TCG.

use super::elf;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("included path {0} is not in any locked package")]
    MissingInclude(String),
    #[error("{binary} needs shared library {library}, which no locked package provides")]
    MissingLibrary { binary: String, library: String },
    #[error("kernel module {0} is not shipped by the kernel package")]
    MissingModule(String),
    #[error("symlink {link} points outside the tree ({target})")]
    EscapingSymlink { link: String, target: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RootfsError + '_ {
    move |source| RootfsError::Io {
        path: path.display().to_string(),
        source,
    }
}

const LIBRARY_DIRS: &[&str] = &[
    "lib/x86_64-linux-gnu",
    "usr/lib/x86_64-linux-gnu",
    "lib",
    "usr/lib",
];

/// Lexically resolve `target` of a symlink at `link` (both root-relative).
fn resolve_link(link: &Path, target: &str) -> Option<PathBuf> {
    let base = if target.starts_with('/') {
        PathBuf::new()
    } else {
        link.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    let mut out = PathBuf::new();
    for c in base.join(target.trim_start_matches('/')).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir if !out.pop() => return None,
            _ => {}
        }
    }
    Some(out)
}

/// Top-level directories that are symlinks into /usr on a merged-/usr system.
pub const MERGED_DIRS: &[&str] = &["bin", "sbin", "lib", "lib64"];

/// Make `root` a merged-/usr tree: whatever a package still put in `/bin`,
/// `/sbin`, `/lib` or `/lib64` moves under `/usr`, and those four become
/// relative symlinks (`bin -> usr/bin`), as base-files lays them out. Done
/// on the staging tree (so kept paths have one spelling) and on the
/// finished root (so the links exist even where nothing was kept below).
pub fn merge_usr(root: &Path) -> Result<(), RootfsError> {
    for dir in MERGED_DIRS {
        let top = root.join(dir);
        let usr = root.join("usr").join(dir);
        std::fs::create_dir_all(&usr).map_err(io_err(&usr))?;
        match std::fs::symlink_metadata(&top) {
            Ok(meta) if meta.file_type().is_symlink() => continue,
            Ok(_) => {
                move_merging(&top, &usr)?;
                std::fs::remove_dir(&top).map_err(io_err(&top))?;
            }
            Err(_) => {}
        }
        let target = format!("usr/{dir}");
        std::os::unix::fs::symlink(&target, &top).map_err(io_err(&top))?;
    }
    Ok(())
}

/// Where `merge_usr` puts a root-relative path a package ships below one of
/// the merged directories (`lib/x` → `usr/lib/x`); `None` for other paths.
pub fn merged_spelling(path: &str) -> Option<String> {
    let top = path.split('/').next()?;
    (MERGED_DIRS.contains(&top) && path.len() > top.len()).then(|| format!("usr/{path}"))
}

/// Move the entries of directory `from` into `to`, merging subdirectories
/// that exist on both sides (`from` is left empty).
fn move_merging(from: &Path, to: &Path) -> Result<(), RootfsError> {
    for entry in std::fs::read_dir(from).map_err(io_err(from))?.flatten() {
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let src_is_dir = entry.file_type().map_err(io_err(&src))?.is_dir();
        let dst_is_dir = std::fs::symlink_metadata(&dst).is_ok_and(|m| m.is_dir());
        if src_is_dir && dst_is_dir {
            move_merging(&src, &dst)?;
            std::fs::remove_dir(&src).map_err(io_err(&src))?;
        } else {
            std::fs::rename(&src, &dst).map_err(io_err(&src))?;
        }
    }
    Ok(())
}

/// The longest proper prefix of `rel` that is a symlink in `staging`, and
/// `rel` spelled through that link's target instead.
fn through_linked_parent(staging: &Path, rel: &Path) -> Option<(PathBuf, PathBuf)> {
    let mut prefix = PathBuf::new();
    let mut components = rel.components();
    // The last component stays as it is: a symlink there is kept as a link.
    components.next_back();
    for c in components {
        prefix.push(c);
        let full = staging.join(&prefix);
        let is_link = std::fs::symlink_metadata(&full).is_ok_and(|m| m.file_type().is_symlink());
        if is_link {
            let target = std::fs::read_link(&full).ok()?;
            let resolved = resolve_link(&prefix, &target.to_string_lossy())?;
            let rest = rel.strip_prefix(&prefix).ok()?;
            return Some((prefix, resolved.join(rest)));
        }
    }
    None
}

/// Walks the staging tree and collects the closure of kept paths
/// (root-relative, without leading slash).
pub struct Selection<'a> {
    staging: &'a Path,
    pub kept: BTreeSet<PathBuf>,
    queue: VecDeque<PathBuf>,
}

impl<'a> Selection<'a> {
    pub fn new(staging: &'a Path) -> Self {
        Selection {
            staging,
            kept: BTreeSet::new(),
            queue: VecDeque::new(),
        }
    }

    pub fn include(&mut self, path: &str) -> Result<(), RootfsError> {
        let rel = PathBuf::from(path.trim_start_matches('/'));
        if std::fs::symlink_metadata(self.staging.join(&rel)).is_err() {
            return Err(RootfsError::MissingInclude(path.to_string()));
        }
        self.queue.push_back(rel);
        self.drain()
    }

    fn drain(&mut self) -> Result<(), RootfsError> {
        while let Some(rel) = self.queue.pop_front() {
            // A path through a linked directory (`bin/dash` with `bin ->
            // usr/bin`) is kept as the link plus the path it names: copied
            // as spelled, it would turn the link into a real directory.
            if let Some((link, real)) = through_linked_parent(self.staging, &rel) {
                self.kept.insert(link);
                self.queue.push_back(real);
                continue;
            }
            if !self.kept.insert(rel.clone()) {
                continue;
            }
            let full = self.staging.join(&rel);
            let meta = std::fs::symlink_metadata(&full).map_err(io_err(&full))?;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&full).map_err(io_err(&full))?;
                let target = target.to_string_lossy().into_owned();
                let resolved =
                    resolve_link(&rel, &target).ok_or_else(|| RootfsError::EscapingSymlink {
                        link: rel.display().to_string(),
                        target: target.clone(),
                    })?;
                if std::fs::symlink_metadata(self.staging.join(&resolved)).is_ok() {
                    self.queue.push_back(resolved);
                }
            } else if meta.is_dir() {
                let mut children: Vec<_> = std::fs::read_dir(&full)
                    .map_err(io_err(&full))?
                    .flatten()
                    .map(|e| rel.join(e.file_name()))
                    .collect();
                children.sort();
                self.queue.extend(children);
            } else {
                let bytes = std::fs::read(&full).map_err(io_err(&full))?;
                if let Some(needs) = elf::dynamic_needs(&bytes) {
                    if let Some(interp) = needs.interpreter {
                        self.queue
                            .push_back(PathBuf::from(interp.trim_start_matches('/')));
                    }
                    for lib in needs.libraries {
                        let found = LIBRARY_DIRS
                            .iter()
                            .map(|d| Path::new(d).join(&lib))
                            .find(|p| std::fs::symlink_metadata(self.staging.join(p)).is_ok())
                            .ok_or_else(|| RootfsError::MissingLibrary {
                                binary: rel.display().to_string(),
                                library: lib.clone(),
                            })?;
                        self.queue.push_back(found);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Module name as the kernel and modprobe treat it (`-` and `_` are equal).
pub fn module_name(file_stem: &str) -> String {
    file_stem.replace('-', "_")
}

/// Where a kernel package keeps its modules: `lib/modules/REL` up to
/// bookworm, `usr/lib/modules/REL` from trixie on (merged /usr). The /usr
/// spelling is tried first: in a merged tree `lib/modules` exists too, but
/// only through the `lib` link.
pub fn modules_base(staging: &Path, release: &str) -> PathBuf {
    let merged = PathBuf::from("usr/lib/modules").join(release);
    if staging.join(&merged).is_dir() {
        merged
    } else {
        PathBuf::from("lib/modules").join(release)
    }
}

/// Module file name without its `.ko` / `.ko.xz` / `.ko.zst` suffix.
pub fn module_stem(file_name: &str) -> Option<&str> {
    [".ko", ".ko.xz", ".ko.zst"]
        .iter()
        .find_map(|suffix| file_name.strip_suffix(suffix))
}

/// The ELF bytes of a module file, decompressing `.ko.xz`.
pub fn module_elf(path: &Path, bytes: Vec<u8>) -> Result<Vec<u8>, RootfsError> {
    let name = path.to_string_lossy();
    let invalid = |kind, msg: String| RootfsError::Io {
        path: name.to_string(),
        source: std::io::Error::new(kind, msg),
    };
    if name.ends_with(".xz") {
        let mut out = Vec::new();
        lzma_rs::xz_decompress(&mut bytes.as_slice(), &mut out)
            .map_err(|e| invalid(std::io::ErrorKind::InvalidData, e.to_string()))?;
        Ok(out)
    } else if name.ends_with(".zst") {
        Err(invalid(
            std::io::ErrorKind::Unsupported,
            "zstd-compressed modules are not supported by the bullseye userland's kmod".into(),
        ))
    } else {
        Ok(bytes)
    }
}

/// Map module name -> path of its module file relative to the staging root.
pub fn index_modules(
    staging: &Path,
    release: &str,
) -> Result<BTreeMap<String, PathBuf>, RootfsError> {
    let base = modules_base(staging, release).join("kernel");
    let mut index = BTreeMap::new();
    let mut dirs = vec![base];
    while let Some(dir) = dirs.pop() {
        let full = staging.join(&dir);
        for entry in std::fs::read_dir(&full).map_err(io_err(&full))?.flatten() {
            let rel = dir.join(entry.file_name());
            let ft = entry.file_type().map_err(io_err(&full))?;
            if ft.is_dir() {
                dirs.push(rel);
            } else if let Some(stem) = rel
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(module_stem)
            {
                index.insert(module_name(stem), rel);
            }
        }
    }
    Ok(index)
}

/// Whether module `name` is meant by spec entry `entry`: the same name, or
/// a pattern whose `*`s stand for any run of characters.
pub fn module_matches(entry: &str, name: &str) -> bool {
    glob_match(module_name(entry).as_bytes(), name.as_bytes())
}

fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| glob_match(rest, &text[skip..])),
        Some((c, rest)) => text.first() == Some(c) && glob_match(rest, &text[1..]),
    }
}

/// Spec entries (names and patterns) to module names of the kernel package,
/// sorted. A name or pattern that matches no shipped module is an error;
/// a built-in name is kept (it needs no file).
pub fn expand_modules(
    entries: &[String],
    index: &BTreeMap<String, PathBuf>,
    builtin: &BTreeSet<String>,
) -> Result<Vec<String>, RootfsError> {
    let mut out = BTreeSet::new();
    for entry in entries {
        if !entry.contains('*') {
            out.insert(module_name(entry));
            continue;
        }
        let matched: Vec<&String> = index
            .keys()
            .filter(|name| module_matches(entry, name))
            .collect();
        if matched.is_empty() && !builtin.iter().any(|n| module_matches(entry, n)) {
            return Err(RootfsError::MissingModule(entry.clone()));
        }
        out.extend(matched.into_iter().cloned());
    }
    Ok(out.into_iter().collect())
}

/// The programs of a package: its entries directly inside /bin, /sbin,
/// /usr/bin or /usr/sbin (from a `dpkg-deb -c` listing, root-relative).
pub fn package_programs(contents: &[String]) -> Vec<String> {
    const DIRS: &[&str] = &["bin", "sbin", "usr/bin", "usr/sbin"];
    contents
        .iter()
        .filter(|path| {
            Path::new(path.as_str())
                .parent()
                .is_some_and(|dir| DIRS.iter().any(|d| dir == Path::new(d)))
        })
        .map(|path| format!("/{path}"))
        .collect()
}

/// The requested modules plus everything they depend on (by `.modinfo`).
pub fn module_closure(
    staging: &Path,
    index: &BTreeMap<String, PathBuf>,
    requested: &[String],
    builtin: &BTreeSet<String>,
) -> Result<BTreeSet<PathBuf>, RootfsError> {
    let mut seen = BTreeSet::new();
    let mut out = BTreeSet::new();
    let mut queue: VecDeque<String> = requested.iter().map(|m| module_name(m)).collect();
    while let Some(name) = queue.pop_front() {
        if !seen.insert(name.clone()) || builtin.contains(&name) {
            continue;
        }
        let rel = index
            .get(&name)
            .ok_or_else(|| RootfsError::MissingModule(name.clone()))?;
        let full = staging.join(rel);
        let bytes = module_elf(&full, std::fs::read(&full).map_err(io_err(&full))?)?;
        queue.extend(elf::module_depends(&bytes).unwrap_or_default());
        out.insert(rel.clone());
    }
    Ok(out)
}

/// Names of modules built into the kernel, from `modules.builtin`.
pub fn builtin_modules(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.rsplit('/').next())
        .filter_map(module_stem)
        .map(module_name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_and_absolute_links_resolve_in_tree() {
        assert_eq!(
            resolve_link(
                Path::new("lib64/ld-linux-x86-64.so.2"),
                "/lib/x86_64-linux-gnu/ld-2.31.so"
            ),
            Some(PathBuf::from("lib/x86_64-linux-gnu/ld-2.31.so"))
        );
        assert_eq!(
            resolve_link(
                Path::new("usr/sbin/iptables-legacy"),
                "xtables-legacy-multi"
            ),
            Some(PathBuf::from("usr/sbin/xtables-legacy-multi"))
        );
        assert_eq!(
            resolve_link(Path::new("sbin/depmod"), "../bin/kmod"),
            Some(PathBuf::from("bin/kmod"))
        );
        assert_eq!(resolve_link(Path::new("a"), "../../x"), None);
    }

    #[test]
    fn compressed_module_names() {
        assert_eq!(module_stem("nf_tables.ko"), Some("nf_tables"));
        assert_eq!(module_stem("nf_tables.ko.xz"), Some("nf_tables"));
        assert_eq!(module_stem("modules.dep"), None);
    }

    #[test]
    fn module_patterns_expand_against_the_kernel_package() {
        let index: BTreeMap<String, PathBuf> = ["nft_nat", "nft_ct", "nf_tables", "veth"]
            .iter()
            .map(|n| (n.to_string(), PathBuf::from(format!("k/{n}.ko"))))
            .collect();
        let builtin: BTreeSet<String> = ["nf_builtin_x".to_string()].into();
        let got = expand_modules(
            &["nft_*".into(), "veth".into(), "nf-tables".into()],
            &index,
            &builtin,
        )
        .unwrap();
        assert_eq!(got, vec!["nf_tables", "nft_ct", "nft_nat", "veth"]);
        assert!(matches!(
            expand_modules(&["vxlan*".into()], &index, &builtin),
            Err(RootfsError::MissingModule(p)) if p == "vxlan*"
        ));
        // A pattern matching only built-in modules is satisfied.
        assert!(expand_modules(&["nf_builtin*".into()], &index, &builtin)
            .unwrap()
            .is_empty());
        assert!(module_matches("*", "anything"));
        assert!(module_matches("ip_vs*", "ip_vs"));
        assert!(!module_matches("ip_vs_*", "ip_vs"));
    }

    #[test]
    fn package_programs_are_the_direct_children_of_bin_dirs() {
        let contents: Vec<String> = [
            "bin",
            "bin/ls",
            "usr/bin/unshare",
            "usr/sbin/chroot",
            "usr/share/doc/coreutils/README",
            "usr/lib/x86_64-linux-gnu/coreutils/libstdbuf.so",
            "usr/bin/sub/dir/x",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            package_programs(&contents),
            vec!["/bin/ls", "/usr/bin/unshare", "/usr/sbin/chroot"]
        );
    }

    #[test]
    fn builtin_list_is_normalized() {
        let set =
            builtin_modules("kernel/drivers/tty/serial/8250/8250.ko\nkernel/net/ipv4/nf-x.ko\n");
        assert!(set.contains("8250"));
        assert!(set.contains("nf_x"));
    }

    #[test]
    fn merged_usr_moves_top_level_dirs_under_usr_and_links_them() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("lib/x86_64-linux-gnu")).unwrap();
        std::fs::write(root.join("lib/x86_64-linux-gnu/old.so"), b"o").unwrap();
        std::fs::create_dir_all(root.join("usr/lib/x86_64-linux-gnu")).unwrap();
        std::fs::write(root.join("usr/lib/x86_64-linux-gnu/new.so"), b"n").unwrap();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::write(root.join("usr/bin/dash"), b"d").unwrap();
        merge_usr(root).unwrap();
        for d in MERGED_DIRS {
            assert_eq!(
                std::fs::read_link(root.join(d)).unwrap(),
                PathBuf::from(format!("usr/{d}"))
            );
        }
        assert!(root.join("usr/lib/x86_64-linux-gnu/old.so").is_file());
        assert!(root.join("usr/lib/x86_64-linux-gnu/new.so").is_file());
        assert!(root.join("bin/dash").is_file());
        // A second pass (the finished root) changes nothing.
        merge_usr(root).unwrap();
        assert!(root.join("lib/x86_64-linux-gnu/old.so").is_file());
        assert_eq!(
            merged_spelling("lib/x/y.so").as_deref(),
            Some("usr/lib/x/y.so")
        );
        assert_eq!(
            merged_spelling("lib64/ld.so").as_deref(),
            Some("usr/lib64/ld.so")
        );
        assert_eq!(merged_spelling("libexec/x"), None);
        assert_eq!(merged_spelling("lib"), None);
        assert_eq!(merged_spelling("usr/bin/dash"), None);
    }

    #[test]
    fn selection_keeps_linked_parents_as_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::write(root.join("usr/bin/dash"), b"#!x\n").unwrap();
        std::fs::write(root.join("usr/bin/other"), b"#!x\n").unwrap();
        merge_usr(root).unwrap();
        let mut sel = Selection::new(root);
        sel.include("/bin/dash").unwrap();
        let kept: Vec<_> = sel.kept.iter().map(|p| p.display().to_string()).collect();
        // The link and the file, not a real bin/ directory nor all of usr/bin.
        assert_eq!(kept, vec!["bin", "usr/bin/dash"]);
    }

    #[test]
    fn selection_follows_links_and_reports_missing_libraries() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/sbin")).unwrap();
        std::fs::write(root.join("usr/sbin/tool-multi"), b"#!/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("tool-multi", root.join("usr/sbin/tool")).unwrap();
        let mut sel = Selection::new(root);
        sel.include("/usr/sbin/tool").unwrap();
        assert!(sel.kept.contains(Path::new("usr/sbin/tool-multi")));
        assert!(matches!(
            sel.include("/usr/sbin/absent"),
            Err(RootfsError::MissingInclude(_))
        ));
        // An ELF binary whose libraries are absent names them.
        std::fs::copy("/bin/true", root.join("usr/sbin/true")).unwrap();
        let err = sel.include("/usr/sbin/true").unwrap_err();
        assert!(err.to_string().contains("needs"), "{err}");
    }
}
