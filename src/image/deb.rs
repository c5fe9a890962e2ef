//! Working with fetched .deb files: hash check, extraction, content listing.

use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "sha256 mismatch for package {package} ({path}): lock says {expected}, file has {actual}; \
         refusing to build (re-run `rulebench image lock` only if the change is intended)"
    )]
    HashMismatch {
        package: String,
        path: String,
        expected: String,
        actual: String,
    },
    #[error("dpkg-deb {what} {path} failed: {stderr}")]
    Dpkg {
        what: &'static str,
        path: String,
        stderr: String,
    },
}

pub fn sha256_file(path: &Path) -> Result<String, DebError> {
    let bytes = std::fs::read(path).map_err(|source| DebError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

pub fn verify(package: &str, path: &Path, expected: &str) -> Result<(), DebError> {
    let actual = sha256_file(path)?;
    if !actual.eq_ignore_ascii_case(expected) {
        return Err(DebError::HashMismatch {
            package: package.to_string(),
            path: path.display().to_string(),
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(())
}

fn dpkg_deb(what: &'static str, args: &[&std::ffi::OsStr], deb: &Path) -> Result<String, DebError> {
    let out = Command::new("dpkg-deb")
        .args(args)
        .output()
        .map_err(|source| DebError::Io {
            path: format!("dpkg-deb (needed to unpack {})", deb.display()),
            source,
        })?;
    if !out.status.success() {
        return Err(DebError::Dpkg {
            what,
            path: deb.display().to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn extract(deb: &Path, dest: &Path) -> Result<(), DebError> {
    dpkg_deb(
        "-x",
        &["-x".as_ref(), deb.as_os_str(), dest.as_os_str()],
        deb,
    )
    .map(|_| ())
}

/// One field of the package's control file (`dpkg-deb -f`), e.g. `Architecture`.
pub fn control_field(deb: &Path, field: &str) -> Result<String, DebError> {
    let out = dpkg_deb("-f", &["-f".as_ref(), deb.as_os_str(), field.as_ref()], deb)?;
    Ok(out.trim().to_string())
}

/// Root-relative paths the package ships (files, links and directories).
pub fn contents(deb: &Path) -> Result<Vec<String>, DebError> {
    let listing = dpkg_deb("-c", &["-c".as_ref(), deb.as_os_str()], deb)?;
    Ok(parse_contents(&listing))
}

/// `dpkg-deb -c` prints `tar tv` lines: the path is the sixth field, and a
/// symlink line continues with ` -> target`.
pub fn parse_contents(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|line| {
            let path = line.split_whitespace().nth(5)?;
            let path = path.trim_start_matches("./").trim_end_matches('/');
            (!path.is_empty()).then(|| path.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_listing_is_parsed() {
        let listing = "drwxr-xr-x root/root         0 2021-01-10 12:00 ./\n\
                       drwxr-xr-x root/root         0 2021-01-10 12:00 ./usr/sbin/\n\
                       -rwxr-xr-x root/root     99 2021-01-10 12:00 ./usr/sbin/xtables-legacy-multi\n\
                       lrwxrwxrwx root/root      0 2021-01-10 12:00 ./usr/sbin/iptables-legacy -> xtables-legacy-multi\n";
        assert_eq!(
            parse_contents(listing),
            vec![
                "usr/sbin",
                "usr/sbin/xtables-legacy-multi",
                "usr/sbin/iptables-legacy"
            ]
        );
    }

    #[test]
    fn mismatch_names_the_package() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), b"not the real deb").unwrap();
        let err = verify("iptables", f.path(), &"0".repeat(64)).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("iptables") && msg.contains("refusing"),
            "{msg}"
        );
    }
}
