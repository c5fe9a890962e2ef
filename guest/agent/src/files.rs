//! `PutFile` / `GetFile`.
//!
//! Writes go straight to the path (no temp file + rename) so the host can also
//! use PutFile on /proc/sys and /sys knobs, where rename is impossible.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Create parent directories, write `contents`, set `mode` (not masked by umask).
pub fn put(path: &str, mode: u32, contents: &[u8]) -> Result<(), String> {
    let target = Path::new(path);
    let fail = |what: &str, err: std::io::Error| format!("put {path}: {what}: {err}");
    if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| fail("create parent directories", e))?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(target)
        .map_err(|e| fail("open", e))?;
    file.write_all(contents).map_err(|e| fail("write", e))?;
    let metadata = file.metadata().map_err(|e| fail("stat", e))?;
    if metadata.is_file() {
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| fail("chmod", e))?;
    }
    Ok(())
}

pub fn get(path: &str) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|err| format!("get {path}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_creates_parents_and_sets_mode_then_get_reads_back() {
        let dir =
            std::env::temp_dir().join(format!("rulebench-agent-files-{}", std::process::id()));
        let path = dir.join("a/b/script.sh");
        let path_str = path.to_str().unwrap();
        put(path_str, 0o755, b"#!/bin/sh\necho hi\n").unwrap();
        assert_eq!(get(path_str).unwrap(), b"#!/bin/sh\necho hi\n");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o755);
        put(path_str, 0o600, b"short").unwrap();
        assert_eq!(get(path_str).unwrap(), b"short");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn get_error_names_the_path() {
        let err = get("/nonexistent/rulebench/file").unwrap_err();
        assert!(err.contains("/nonexistent/rulebench/file"), "{err}");
        assert!(err.contains("No such file"), "{err}");
    }
}
