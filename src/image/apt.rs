//! A private apt environment (own sources list, lists, status and cache) so
//! resolving and fetching guest packages never touches the host's apt state.

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum AptError {
    #[error("preparing apt directory {path}: {source}")]
    Setup {
        path: String,
        source: std::io::Error,
    },
    #[error("running apt-get ({what}): {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("apt-get {what} failed: {stderr}")]
    Failed { what: String, stderr: String },
}

/// A resolved package of the dependency closure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedPackage {
    pub name: String,
    pub version: String,
}

pub struct PrivateApt {
    dir: PathBuf,
}

/// The `-o` options that redirect every piece of apt state into `dir`.
pub fn apt_options(dir: &Path) -> Vec<String> {
    let d = dir.display();
    vec![
        format!("-oDir::Etc::sourcelist={d}/sources.list"),
        "-oDir::Etc::sourceparts=-".to_string(),
        format!("-oDir::State::Lists={d}/lists"),
        format!("-oDir::State::status={d}/status"),
        format!("-oDir::Cache={d}/cache"),
        "-oDebug::NoLocking=1".to_string(),
        "-oAPT::Architecture=amd64".to_string(),
        "-oAPT::Architectures=amd64".to_string(),
        "-oAPT::Get::AllowUnauthenticated=false".to_string(),
    ]
}

/// The sources line for one suite's main component. Security suites are
/// deliberately absent: their pool answers 404 for bullseye (FACTS.md).
pub fn sources_line(mirror: &str, suite: &str) -> String {
    let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
    format!("deb [signed-by={keyring}] {mirror} {suite} main\n")
}

/// Parse `apt-get install -s` output: `Inst NAME (VERSION SUITE [ARCH])`.
/// The simulation (not `--print-uris`) is used because it keeps epochs.
pub fn parse_simulated_install(text: &str) -> Vec<ResolvedPackage> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("Inst ")?;
            let (name, rest) = rest.split_once(' ')?;
            let version = rest.strip_prefix('(')?.split_whitespace().next()?;
            Some(ResolvedPackage {
                name: name.to_string(),
                version: version.to_string(),
            })
        })
        .collect()
}

impl PrivateApt {
    /// Prepare `dir` for `suite` from `mirror` and run `apt-get update`.
    pub fn new(dir: &Path, mirror: &str, suite: &str) -> Result<Self, AptError> {
        let setup = |path: &Path, r: std::io::Result<()>| {
            r.map_err(|source| AptError::Setup {
                path: path.display().to_string(),
                source,
            })
        };
        let lists = dir.join("lists/partial");
        setup(&lists, std::fs::create_dir_all(&lists))?;
        let archives = dir.join("cache/archives/partial");
        setup(&archives, std::fs::create_dir_all(&archives))?;
        let status = dir.join("status");
        setup(&status, std::fs::write(&status, ""))?;
        let sources = dir.join("sources.list");
        setup(
            &sources,
            std::fs::write(&sources, sources_line(mirror, suite)),
        )?;
        let apt = PrivateApt {
            dir: dir.to_path_buf(),
        };
        apt.run("update", &["update"], None)?;
        Ok(apt)
    }

    fn run(&self, what: &str, args: &[&str], cwd: Option<&Path>) -> Result<String, AptError> {
        let mut cmd = Command::new("apt-get");
        cmd.args(apt_options(&self.dir)).arg("-q").args(args);
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        let out = cmd.output().map_err(|source| AptError::Spawn {
            what: what.to_string(),
            source,
        })?;
        if !out.status.success() {
            return Err(AptError::Failed {
                what: what.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Full dependency closure (as if installed on an empty system).
    pub fn resolve(&self, packages: &[String]) -> Result<Vec<ResolvedPackage>, AptError> {
        let mut args = vec!["install", "-s", "-qq", "-y", "--no-install-recommends"];
        args.extend(packages.iter().map(String::as_str));
        let out = self.run("install -s", &args, None)?;
        Ok(parse_simulated_install(&out))
    }

    /// Download `name=version` into `dest` (apt verifies the archive signature
    /// chain; rulebench then checks the lock's sha256).
    pub fn download(&self, name: &str, version: &str, dest: &Path) -> Result<(), AptError> {
        self.download_spec(&format!("{name}={version}"), dest)
    }

    /// Download `NAME` (the suite's candidate) or `NAME=VERSION` into `dest`.
    pub fn download_spec(&self, spec: &str, dest: &Path) -> Result<(), AptError> {
        self.run(&format!("download {spec}"), &["download", spec], Some(dest))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_simulated_install_with_epochs() {
        let text = "Inst gcc-10-base (10.2.1-6 Debian:11.11/oldoldstable [amd64])\n\
                    Inst busybox-static (1:1.30.1-6+b3 Debian:11.11/oldoldstable [amd64]) []\n\
                    Conf busybox-static (1:1.30.1-6+b3 Debian:11.11/oldoldstable [amd64])\n";
        let got = parse_simulated_install(text);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].name, "busybox-static");
        assert_eq!(got[1].version, "1:1.30.1-6+b3");
    }

    #[test]
    fn options_keep_state_private() {
        let opts = apt_options(Path::new("/x"));
        assert!(opts.contains(&"-oDir::State::status=/x/status".to_string()));
        assert!(opts.contains(&"-oDir::Etc::sourceparts=-".to_string()));
    }
}
