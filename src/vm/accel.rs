//! Choosing the accelerator. `/dev/kvm` can exist and still hang a guest
//! forever (FACTS.md), so KVM is used only after a real probe boot printed
//! kernel output within a short timeout.

use super::argv::{self, Accel};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCEL_ENV: &str = "RULEBENCH_ACCEL";
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AccelError {
    #[error("{ACCEL_ENV}={0:?} is not one of kvm, tcg")]
    BadOverride(String),
    #[error(
        "{ACCEL_ENV}=kvm but KVM is unusable here: {0}. Unset {ACCEL_ENV} (or set it to tcg) to use software emulation"
    )]
    ForcedKvmUnusable(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProbeOutcome {
    Booted,
    /// The guest produced no kernel output in time, or QEMU failed.
    Failed(String),
}

pub fn parse_override(value: Option<&str>) -> Result<Option<Accel>, AccelError> {
    match value.map(str::trim) {
        None | Some("") | Some("auto") => Ok(None),
        Some("kvm") => Ok(Some(Accel::Kvm)),
        Some("tcg") => Ok(Some(Accel::Tcg)),
        Some(other) => Err(AccelError::BadOverride(other.to_string())),
    }
}

/// The decision, separate from the side effects so it can be unit-tested.
pub fn choose(
    forced: Option<Accel>,
    kvm_node: Result<(), String>,
    probe: impl FnOnce() -> ProbeOutcome,
) -> Result<Accel, AccelError> {
    match forced {
        Some(Accel::Tcg) => Ok(Accel::Tcg),
        Some(Accel::Kvm) => {
            kvm_node.map_err(AccelError::ForcedKvmUnusable)?;
            match probe() {
                ProbeOutcome::Booted => Ok(Accel::Kvm),
                ProbeOutcome::Failed(why) => Err(AccelError::ForcedKvmUnusable(why)),
            }
        }
        None => {
            if kvm_node.is_err() {
                return Ok(Accel::Tcg);
            }
            Ok(match probe() {
                ProbeOutcome::Booted => Accel::Kvm,
                ProbeOutcome::Failed(_) => Accel::Tcg,
            })
        }
    }
}

pub fn kvm_node_usable() -> Result<(), String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(|_| ())
        .map_err(|e| format!("/dev/kvm: {e}"))
}

/// Boot `kernel` under KVM with no initrd and wait for its first output.
pub fn probe_kvm(kernel: &Path, timeout: Duration) -> ProbeOutcome {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return ProbeOutcome::Failed(format!("tempdir: {e}")),
    };
    let log = dir.path().join("probe.log");
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(argv::machine_args())
        .args(argv::accel_args(Accel::Kvm))
        .args(argv::resource_args(256, 1))
        .args(argv::kernel_args(kernel, None, "console=ttyS0 panic=-1"))
        .args(["-serial", &format!("file:{}", log.display())])
        .args(argv::no_network_args())
        .args(argv::lifecycle_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    super::process::die_with_parent(&mut cmd);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return ProbeOutcome::Failed(format!("starting qemu-system-x86_64: {e}")),
    };
    let started = Instant::now();
    let outcome = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("Linux version") {
            break ProbeOutcome::Booted;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            break ProbeOutcome::Failed(format!(
                "QEMU exited ({status}) during the KVM probe: {}",
                err.trim()
            ));
        }
        if started.elapsed() > timeout {
            break ProbeOutcome::Failed(format!(
                "a KVM guest printed nothing within {} s (the vCPU hangs)",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    outcome
}

#[derive(Serialize, Deserialize)]
struct CachedProbe {
    host_kernel: String,
    outcome: ProbeOutcome,
}

fn host_kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Resolve the accelerator for this process, caching a probe result per host
/// kernel under `cache_dir` so every test process doesn't pay the timeout.
pub fn resolve(kernel: &Path, cache_dir: &Path) -> Result<Accel, AccelError> {
    let forced = parse_override(std::env::var(ACCEL_ENV).ok().as_deref())?;
    let cache_file: PathBuf = cache_dir.join("kvm-probe.json");
    choose(forced, kvm_node_usable(), || {
        let host = host_kernel_release();
        if forced.is_none() {
            if let Some(cached) = std::fs::read_to_string(&cache_file)
                .ok()
                .and_then(|t| serde_json::from_str::<CachedProbe>(&t).ok())
                .filter(|c| c.host_kernel == host)
            {
                return cached.outcome;
            }
        }
        let outcome = probe_kvm(kernel, PROBE_TIMEOUT);
        let _ = std::fs::create_dir_all(cache_dir);
        let cached = CachedProbe {
            host_kernel: host,
            outcome: outcome.clone(),
        };
        if let Ok(text) = serde_json::to_string(&cached) {
            let _ = std::fs::write(&cache_file, text);
        }
        outcome
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_parsing() {
        assert_eq!(parse_override(None), Ok(None));
        assert_eq!(parse_override(Some("kvm")), Ok(Some(Accel::Kvm)));
        assert_eq!(parse_override(Some("tcg")), Ok(Some(Accel::Tcg)));
        assert!(parse_override(Some("hvf")).is_err());
    }

    #[test]
    fn auto_uses_kvm_only_when_the_probe_boots() {
        assert_eq!(
            choose(None, Ok(()), || ProbeOutcome::Booted),
            Ok(Accel::Kvm)
        );
        assert_eq!(
            choose(None, Ok(()), || ProbeOutcome::Failed("hang".into())),
            Ok(Accel::Tcg)
        );
    }

    #[test]
    fn auto_without_kvm_node_never_probes() {
        let got = choose(None, Err("no /dev/kvm".into()), || panic!("must not probe"));
        assert_eq!(got, Ok(Accel::Tcg));
    }

    #[test]
    fn forced_tcg_never_probes() {
        assert_eq!(
            choose(Some(Accel::Tcg), Ok(()), || panic!("must not probe")),
            Ok(Accel::Tcg)
        );
    }

    #[test]
    fn forced_kvm_that_hangs_is_a_clear_error() {
        let err = choose(Some(Accel::Kvm), Ok(()), || {
            ProbeOutcome::Failed("printed nothing within 10 s".into())
        })
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("RULEBENCH_ACCEL=kvm") && msg.contains("printed nothing"),
            "{msg}"
        );
        assert!(
            choose(Some(Accel::Kvm), Err("/dev/kvm: denied".into()), || {
                ProbeOutcome::Booted
            })
            .is_err()
        );
    }
}
