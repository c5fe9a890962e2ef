//! Deterministic `newc` cpio writer: entries sorted by path, fixed mtime,
//! owner root, inode numbers assigned in order — same tree, same bytes.

use std::io::{self, Write};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    /// Character device (major, minor), e.g. /dev/console before devtmpfs.
    CharDev(u32, u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path without a leading slash, e.g. `usr/sbin/iptables`.
    pub path: String,
    pub mode: u32,
    pub kind: EntryKind,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

struct Header<'a> {
    ino: u32,
    mode: u32,
    nlink: u32,
    size: u32,
    rdev: (u32, u32),
    name: &'a str,
}

fn header<W: Write>(
    w: &mut W,
    ino: u32,
    mode: u32,
    nlink: u32,
    size: u32,
    name: &str,
) -> io::Result<()> {
    write_header(
        w,
        &Header {
            ino,
            mode,
            nlink,
            size,
            rdev: (0, 0),
            name,
        },
    )
}

fn write_header<W: Write>(w: &mut W, h: &Header) -> io::Result<()> {
    let (rmaj, rmin) = h.rdev;
    let (ino, mode, nlink, size, name) = (h.ino, h.mode, h.nlink, h.size, h.name);
    let name_size = name.len() as u32 + 1;
    // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
    // rdevmajor, rdevminor, namesize, check
    write!(
        w,
        "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{:08x}{size:08x}{:08x}{:08x}{rmaj:08x}{rmin:08x}{name_size:08x}{:08x}",
        0, 0, 0, 0, 0, 0
    )?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    pad(w, 110 + name_size as usize)
}

fn pad<W: Write>(w: &mut W, len: usize) -> io::Result<()> {
    let rem = (4 - len % 4) % 4;
    w.write_all(&[0u8; 4][..rem])
}

/// Write `entries` (sorted here, so callers need not care) and the trailer.
pub fn write_archive<W: Write>(w: &mut W, mut entries: Vec<Entry>) -> io::Result<()> {
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    entries.dedup_by(|a, b| a.path == b.path);
    for (i, e) in entries.iter().enumerate() {
        let ino = i as u32 + 1;
        let perm = e.mode & 0o7777;
        match &e.kind {
            EntryKind::Dir => header(w, ino, S_IFDIR | perm, 2, 0, &e.path)?,
            EntryKind::File(data) => {
                header(w, ino, S_IFREG | perm, 1, data.len() as u32, &e.path)?;
                w.write_all(data)?;
                pad(w, data.len())?;
            }
            EntryKind::CharDev(major, minor) => write_header(
                w,
                &Header {
                    ino,
                    mode: S_IFCHR | perm,
                    nlink: 1,
                    size: 0,
                    rdev: (*major, *minor),
                    name: &e.path,
                },
            )?,
            EntryKind::Symlink(target) => {
                header(w, ino, S_IFLNK | 0o777, 1, target.len() as u32, &e.path)?;
                w.write_all(target.as_bytes())?;
                pad(w, target.len())?;
            }
        }
    }
    header(w, 0, 0, 1, 0, "TRAILER!!!")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Entry> {
        vec![
            Entry {
                path: "bin/sh".into(),
                mode: 0o755,
                kind: EntryKind::Symlink("busybox".into()),
            },
            Entry {
                path: "bin".into(),
                mode: 0o755,
                kind: EntryKind::Dir,
            },
            Entry {
                path: "init".into(),
                mode: 0o755,
                kind: EntryKind::File(b"abc".to_vec()),
            },
        ]
    }

    #[test]
    fn output_is_independent_of_input_order() {
        let mut a = Vec::new();
        write_archive(&mut a, sample()).unwrap();
        let mut reversed = sample();
        reversed.reverse();
        let mut b = Vec::new();
        write_archive(&mut b, reversed).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len() % 4, 0);
    }

    #[test]
    fn host_cpio_lists_the_archive() {
        if std::process::Command::new("cpio")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skipped: host has no cpio to cross-check with");
            return;
        }
        let mut bytes = Vec::new();
        write_archive(&mut bytes, sample()).unwrap();
        let mut child = std::process::Command::new("cpio")
            .args(["-it", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&bytes).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "bin\nbin/sh\ninit\n");
    }
}
