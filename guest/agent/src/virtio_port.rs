//! Finding the host channel: the virtio-serial port QEMU named [`PORT_NAME`].
//!
//! Without udev there are no /dev/virtio-ports/NAME symlinks, so the name is
//! matched in sysfs and the device node (created by devtmpfs) opened by the
//! sysfs directory's name, e.g. /dev/vport1p1.
//!
//! [`PORT_NAME`]: rulebench_proto::PORT_NAME

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const SYSFS_PORTS: &str = "/sys/class/virtio-ports";

/// Poll `sysfs_ports`/*/name for `name` until `timeout`, then open the
/// matching node under `dev_dir` read-write. The driver module may still be
/// probing when we start, hence the polling.
pub fn open_named_port(
    sysfs_ports: &Path,
    dev_dir: &Path,
    name: &str,
    timeout: Duration,
    interval: Duration,
) -> io::Result<File> {
    let deadline = Instant::now() + timeout;
    loop {
        let attempt = find_port(sysfs_ports, name).and_then(|node| {
            let path = dev_dir.join(node);
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", path.display())))
        });
        match attempt {
            Ok(file) => return Ok(file),
            Err(err) if Instant::now() >= deadline => {
                return Err(io::Error::new(
                    err.kind(),
                    format!(
                        "no usable virtio-serial port named {name} after {timeout:?} (last: {err}); \
                         are virtio_pci and virtio_console loaded and is the QEMU port named {name}?"
                    ),
                ))
            }
            Err(_) => std::thread::sleep(interval),
        }
    }
}

/// The sysfs directory name (= device node name) of the port called `name`.
fn find_port(sysfs_ports: &Path, name: &str) -> io::Result<PathBuf> {
    for entry in std::fs::read_dir(sysfs_ports)? {
        let entry = entry?;
        let Ok(port_name) = std::fs::read_to_string(entry.path().join("name")) else {
            continue;
        };
        if port_name.trim_end() == name {
            return Ok(PathBuf::from(entry.file_name()));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("no port named {name} in {}", sysfs_ports.display()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn opens_the_node_whose_sysfs_name_matches() {
        let root =
            std::env::temp_dir().join(format!("rulebench-agent-vport-{}", std::process::id()));
        let sysfs = root.join("sys");
        let dev = root.join("dev");
        for (port, name) in [
            ("vport0p0", ""),
            ("vport0p1", "other.port\n"),
            ("vport0p2", "org.test\n"),
        ] {
            std::fs::create_dir_all(sysfs.join(port)).unwrap();
            std::fs::write(sysfs.join(port).join("name"), name).unwrap();
        }
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("vport0p2"), b"it is me").unwrap();

        let mut file = open_named_port(
            &sysfs,
            &dev,
            "org.test",
            Duration::from_millis(50),
            Duration::from_millis(10),
        )
        .unwrap();
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        assert_eq!(text, "it is me");
        file.write_all(b"!").unwrap();

        let err = open_named_port(
            &sysfs,
            &dev,
            "org.absent",
            Duration::from_millis(30),
            Duration::from_millis(10),
        )
        .unwrap_err();
        assert!(err.to_string().contains("org.absent"), "{err}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
