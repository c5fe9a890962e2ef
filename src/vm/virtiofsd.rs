//! The host's virtiofsd: finding it, its command line (QEMU's C daemon in
//! bookworm's qemu-system-common, or the Rust one packaged as `virtiofsd`
//! from trixie on), and one running daemon per share, killed with its VM.

use super::process;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `RULEBENCH_VIRTIOFSD`: a virtiofsd binary to use, or `none` to force
/// the copy fallback.
pub const VIRTIOFSD_ENV: &str = "RULEBENCH_VIRTIOFSD";

/// Where distributions install virtiofsd outside PATH.
const KNOWN_PATHS: &[&str] = &["/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// QEMU's C virtiofsd (`-o source=DIR`), QEMU ≤ 7.2.
    Qemu,
    /// The Rust virtiofsd (`--shared-dir DIR`).
    Rust,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Virtiofsd {
    pub binary: PathBuf,
    pub flavor: Flavor,
}

/// The Rust daemon documents `--shared-dir`; QEMU's uses `-o source=`.
pub fn flavor_from_help(help: &str) -> Flavor {
    if help.contains("--shared-dir") {
        Flavor::Rust
    } else {
        Flavor::Qemu
    }
}

/// The binary to use: the override (`none` = none), else `virtiofsd` on
/// `path_var`, else a known install location. `exists` is injected for tests.
pub fn locate_binary(
    override_value: Option<&str>,
    path_var: &str,
    exists: impl Fn(&Path) -> bool,
) -> Result<PathBuf, String> {
    match override_value {
        Some("none") => return Err(format!("{VIRTIOFSD_ENV}=none")),
        Some(path) if !path.is_empty() => {
            return if exists(Path::new(path)) {
                Ok(PathBuf::from(path))
            } else {
                Err(format!("{VIRTIOFSD_ENV}={path} does not exist"))
            };
        }
        _ => {}
    }
    path_var
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join("virtiofsd"))
        .chain(KNOWN_PATHS.iter().map(PathBuf::from))
        .find(|p| exists(p))
        .ok_or_else(|| {
            "virtiofsd not found (on PATH, /usr/libexec, /usr/lib/qemu; Debian: qemu-system-common \
             up to bookworm, the virtiofsd package from trixie on)"
                .to_string()
        })
}

/// The host's virtiofsd, if any, by the environment and the filesystem.
pub fn locate() -> Result<Virtiofsd, String> {
    let binary = locate_binary(
        std::env::var(VIRTIOFSD_ENV).ok().as_deref(),
        &std::env::var("PATH").unwrap_or_default(),
        |p| p.is_file(),
    )?;
    let help = Command::new(&binary)
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {} --help: {e}", binary.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&help.stdout),
        String::from_utf8_lossy(&help.stderr)
    );
    Ok(Virtiofsd {
        flavor: flavor_from_help(&text),
        binary,
    })
}

/// The daemon's command line for one shared directory. QEMU's daemon has no
/// read-only mode: there the guest mounts the share `ro`.
pub fn argv(daemon: &Virtiofsd, socket: &Path, dir: &Path, readonly: bool) -> Vec<String> {
    let mut argv = vec![daemon.binary.display().to_string()];
    match daemon.flavor {
        Flavor::Qemu => argv.extend([
            format!("--socket-path={}", socket.display()),
            "-o".into(),
            format!("source={}", dir.display()),
            "-o".into(),
            "cache=auto".into(),
            "-o".into(),
            "sandbox=namespace".into(),
        ]),
        Flavor::Rust => {
            argv.extend([
                "--socket-path".to_string(),
                socket.display().to_string(),
                "--shared-dir".into(),
                dir.display().to_string(),
                "--cache".into(),
                "auto".into(),
                "--sandbox".into(),
                "namespace".into(),
            ]);
            if readonly {
                argv.push("--readonly".into());
            }
        }
    }
    argv
}

/// A running virtiofsd; killed (and reaped) on drop.
pub struct Daemon {
    child: Child,
    log: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("starting {argv0}: {source}")]
    Spawn {
        argv0: String,
        source: std::io::Error,
    },
    #[error("virtiofsd for {dir} exited ({status}) before its socket appeared: {log}")]
    Exited {
        dir: String,
        status: String,
        log: String,
    },
    #[error("virtiofsd for {dir} made no socket {socket} within {secs} s: {log}")]
    NoSocket {
        dir: String,
        socket: String,
        secs: u64,
        log: String,
    },
}

impl Daemon {
    /// Start the daemon for `dir` on `socket` (logging to `log`) and wait
    /// until the socket exists, so QEMU can connect to it at once.
    pub fn start(
        daemon: &Virtiofsd,
        socket: &Path,
        dir: &Path,
        readonly: bool,
        log: &Path,
    ) -> Result<Daemon, DaemonError> {
        let argv = argv(daemon, socket, dir, readonly);
        let log_file = std::fs::File::create(log).map_err(|source| DaemonError::Spawn {
            argv0: format!("{} (log {})", argv[0], log.display()),
            source,
        })?;
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        process::die_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|source| DaemonError::Spawn {
            argv0: argv[0].clone(),
            source,
        })?;
        let mut running = Daemon {
            child,
            log: log.to_path_buf(),
        };
        let timeout = Duration::from_secs(10);
        let started = Instant::now();
        while !socket.exists() {
            if let Ok(Some(status)) = running.child.try_wait() {
                return Err(DaemonError::Exited {
                    dir: dir.display().to_string(),
                    status: status.to_string(),
                    log: running.log_text(),
                });
            }
            if started.elapsed() > timeout {
                return Err(DaemonError::NoSocket {
                    dir: dir.display().to_string(),
                    socket: socket.display().to_string(),
                    secs: timeout.as_secs(),
                    log: running.log_text(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(running)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(how it ended, its log)` once the daemon has exited: the guest's
    /// file requests on its share would wait for it forever.
    pub fn exited(&mut self) -> Option<String> {
        let status = self.child.try_wait().ok()??;
        Some(format!("{status}; log: {}", self.log_text()))
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log)
            .map(|t| t.trim().to_string())
            .unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // It normally exits when QEMU closes the socket; don't wait on that.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_path_and_known_locations() {
        let only = |have: &'static str| move |p: &Path| p == Path::new(have);
        assert_eq!(
            locate_binary(None, "/a:/b", only("/b/virtiofsd")).unwrap(),
            PathBuf::from("/b/virtiofsd")
        );
        assert_eq!(
            locate_binary(None, "/a", only("/usr/lib/qemu/virtiofsd")).unwrap(),
            PathBuf::from("/usr/lib/qemu/virtiofsd")
        );
        assert_eq!(
            locate_binary(Some("/opt/vfsd"), "/a", only("/opt/vfsd")).unwrap(),
            PathBuf::from("/opt/vfsd")
        );
        let none = locate_binary(Some("none"), "/b", only("/b/virtiofsd")).unwrap_err();
        assert!(none.contains("=none"), "{none}");
        let missing = locate_binary(None, "/a", |_| false).unwrap_err();
        assert!(missing.contains("virtiofsd not found"), "{missing}");
    }

    #[test]
    fn flavors_by_their_help() {
        assert_eq!(
            flavor_from_help("    -o source=PATH   shared directory tree"),
            Flavor::Qemu
        );
        assert_eq!(
            flavor_from_help("      --shared-dir <SHARED_DIR>"),
            Flavor::Rust
        );
    }

    #[test]
    fn daemon_argv_per_flavor() {
        let sock = Path::new("/tmp/vm/virtiofs0.sock");
        let dir = Path::new("/home/dev/tests");
        let qemu = Virtiofsd {
            binary: "/usr/lib/qemu/virtiofsd".into(),
            flavor: Flavor::Qemu,
        };
        let rust = Virtiofsd {
            binary: "/usr/libexec/virtiofsd".into(),
            flavor: Flavor::Rust,
        };
        insta::assert_yaml_snapshot!("qemu_daemon", argv(&qemu, sock, dir, true));
        insta::assert_yaml_snapshot!("rust_daemon_ro", argv(&rust, sock, dir, true));
        assert!(!argv(&rust, sock, dir, false).contains(&"--readonly".to_string()));
    }

    #[test]
    fn a_daemon_that_dies_at_once_is_an_error_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Virtiofsd {
            binary: "/bin/ls".into(),
            flavor: Flavor::Qemu,
        };
        // `ls --socket-path=…` fails at once and says why on stderr.
        let err = Daemon::start(
            &fake,
            &dir.path().join("s.sock"),
            dir.path(),
            false,
            &dir.path().join("log"),
        )
        .err()
        .expect("ls is no virtiofsd");
        let msg = err.to_string();
        assert!(msg.contains("exited"), "{msg}");
        assert!(msg.contains("socket-path"), "{msg}");
    }
}
