//! The share fallback without virtio-fs: the host directory is copied into
//! the guest once after boot, through the agent (directories, files with
//! their executable bit, symlinks). One way: the guest's changes stay there.

use super::{Vm, VmError};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A copy larger than this is refused: it travels through the agent port
/// into guest RAM, and virtio-fs is the way for big trees.
pub const COPY_LIMIT_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir(PathBuf),
    File {
        rel: PathBuf,
        mode: u32,
        size: u64,
    },
    Symlink {
        rel: PathBuf,
        target: PathBuf,
    },
    /// Sockets, FIFOs, devices: not copied.
    Skipped(PathBuf),
}

/// Everything under `dir`, parents before children, sorted by path.
pub fn walk(dir: &Path) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut children: Vec<_> = std::fs::read_dir(dir.join(&rel))?
            .map(|e| e.map(|e| rel.join(e.file_name())))
            .collect::<Result<_, _>>()?;
        children.sort();
        for child in children.into_iter().rev() {
            let meta = std::fs::symlink_metadata(dir.join(&child))?;
            let kind = meta.file_type();
            if kind.is_symlink() {
                let target = std::fs::read_link(dir.join(&child))?;
                out.push(Entry::Symlink { rel: child, target });
            } else if kind.is_dir() {
                out.push(Entry::Dir(child.clone()));
                stack.push(child);
            } else if kind.is_file() {
                let mode = if meta.permissions().mode() & 0o111 != 0 {
                    0o755
                } else {
                    0o644
                };
                out.push(Entry::File {
                    rel: child,
                    mode,
                    size: meta.len(),
                });
            } else {
                out.push(Entry::Skipped(child));
            }
        }
    }
    out.sort_by(|a, b| entry_path(a).cmp(entry_path(b)));
    Ok(out)
}

fn entry_path(e: &Entry) -> &Path {
    match e {
        Entry::Dir(p) | Entry::Skipped(p) => p,
        Entry::File { rel, .. } | Entry::Symlink { rel, .. } => rel,
    }
}

/// Total bytes of the regular files.
pub fn total_bytes(entries: &[Entry]) -> u64 {
    entries
        .iter()
        .map(|e| match e {
            Entry::File { size, .. } => *size,
            _ => 0,
        })
        .sum()
}

fn guest_join(base: &str, rel: &Path) -> String {
    format!("{}/{}", base.trim_end_matches('/'), rel.display())
}

impl Vm {
    /// Copy `host_dir` to `guest_path` in the guest. Returns the paths that
    /// were skipped (not files, directories or symlinks).
    pub(super) fn copy_dir_in(
        &mut self,
        host_dir: &Path,
        guest_path: &str,
    ) -> Result<Vec<PathBuf>, VmError> {
        let fail = |what: String| VmError::Share(format!("copying {}: {what}", host_dir.display()));
        let entries = walk(host_dir).map_err(|e| fail(e.to_string()))?;
        let bytes = total_bytes(&entries);
        if bytes > COPY_LIMIT_BYTES {
            return Err(fail(format!(
                "{bytes} bytes exceed the copy limit of {COPY_LIMIT_BYTES}; install virtiofsd \
                 and use an image with the virtiofs module"
            )));
        }
        let mut dirs = vec![guest_path.to_string()];
        dirs.extend(entries.iter().filter_map(|e| match e {
            Entry::Dir(rel) => Some(guest_join(guest_path, rel)),
            _ => None,
        }));
        for batch in dirs.chunks(200) {
            let mut argv = vec!["mkdir", "-p"];
            argv.extend(batch.iter().map(String::as_str));
            self.exec_checked(&argv)?;
        }
        let mut skipped = Vec::new();
        for entry in &entries {
            match entry {
                Entry::Dir(_) => {}
                Entry::File { rel, mode, .. } => {
                    let path = host_dir.join(rel);
                    let contents = std::fs::read(&path)
                        .map_err(|e| fail(format!("reading {}: {e}", path.display())))?;
                    self.put_file(&guest_join(guest_path, rel), &contents, *mode)?;
                }
                Entry::Symlink { rel, target } => {
                    let target = target.display().to_string();
                    let link = guest_join(guest_path, rel);
                    self.exec_checked(&["ln", "-sfn", &target, &link])?;
                }
                Entry::Skipped(rel) => skipped.push(rel.clone()),
            }
        }
        Ok(skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_lists_parents_first_with_modes_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("b/c")).unwrap();
        std::fs::write(root.join("a.sh"), b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(root.join("a.sh"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        std::fs::write(root.join("b/c/data"), b"12345").unwrap();
        std::os::unix::fs::symlink("../a.sh", root.join("b/link")).unwrap();
        let fifo = std::ffi::CString::new(root.join("pipe").to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let entries = walk(root).unwrap();
        assert_eq!(
            entries,
            vec![
                Entry::File {
                    rel: "a.sh".into(),
                    mode: 0o755,
                    size: 10
                },
                Entry::Dir("b".into()),
                Entry::Dir("b/c".into()),
                Entry::File {
                    rel: "b/c/data".into(),
                    mode: 0o644,
                    size: 5
                },
                Entry::Symlink {
                    rel: "b/link".into(),
                    target: "../a.sh".into()
                },
                Entry::Skipped("pipe".into()),
            ]
        );
        assert_eq!(total_bytes(&entries), 15);
        assert_eq!(guest_join("/share/", Path::new("b/c")), "/share/b/c");
    }
}
