//! The guest agent binary that becomes the image's /init: built static from
//! this workspace (paths remapped so the bytes don't depend on the checkout
//! location), or taken from `RULEBENCH_AGENT_BIN`.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const AGENT_BIN_ENV: &str = "RULEBENCH_AGENT_BIN";
const TARGET: &str = "x86_64-unknown-linux-gnu";

#[derive(Debug, thiserror::Error)]
pub enum AgentBuildError {
    #[error("running cargo to build the guest agent: {0}")]
    Spawn(std::io::Error),
    #[error("building the guest agent failed (cargo exit {code:?}); see cargo's output above")]
    Failed { code: Option<i32> },
    #[error("guest agent binary {path} is missing: {source}")]
    Missing {
        path: String,
        source: std::io::Error,
    },
}

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// RUSTFLAGS for a static, location-independent agent build.
pub fn agent_rustflags(workspace: &Path, cargo_home: &Path) -> String {
    format!(
        "-C target-feature=+crt-static --remap-path-prefix={}=/rulebench --remap-path-prefix={}=/cargo",
        workspace.display(),
        cargo_home.display()
    )
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
}

/// Path of a ready agent binary, building it when needed.
pub fn agent_binary(quiet: bool) -> Result<PathBuf, AgentBuildError> {
    if let Some(p) = std::env::var_os(AGENT_BIN_ENV) {
        return Ok(PathBuf::from(p));
    }
    let ws = workspace_root();
    let target_dir = ws.join("target/guest");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&ws)
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "rulebench-agent",
            "--target",
            TARGET,
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("RUSTFLAGS", agent_rustflags(&ws, &cargo_home()))
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    if quiet {
        cmd.arg("--quiet");
    }
    let status = cmd.status().map_err(AgentBuildError::Spawn)?;
    if !status.success() {
        return Err(AgentBuildError::Failed {
            code: status.code(),
        });
    }
    let bin = target_dir.join(TARGET).join("release/rulebench-agent");
    std::fs::metadata(&bin).map_err(|source| AgentBuildError::Missing {
        path: bin.display().to_string(),
        source,
    })?;
    Ok(bin)
}
