//! Custom kernels for bisection: build a bzImage from a kernel tree with
//! rulebench's config fragment merged on top of `make defconfig`.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("{0} is not a kernel source tree (no Makefile and scripts/kconfig/merge_config.sh)")]
    NotASourceTree(String),
    #[error("config fragment {path}: {source}")]
    Fragment {
        path: String,
        source: std::io::Error,
    },
    #[error("running `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    /// The kernel itself failed to configure or compile (bisect: skip).
    #[error("`{command}` failed with exit {code:?} (see its output above)")]
    Build { command: String, code: Option<i32> },
    #[error("options of the fragment not set in the final .config (missing dependencies or renamed in this kernel): {0}")]
    MissingOptions(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct BuiltKernel {
    pub bzimage: PathBuf,
    pub release: String,
    pub build_dir: PathBuf,
}

/// `CONFIG_X=y` lines of a fragment (comments and `=n` ignored).
pub fn required_options(fragment: &str) -> Vec<String> {
    fragment
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && l.ends_with("=y"))
        .map(str::to_string)
        .collect()
}

/// Required options that the resolved `.config` does not have.
pub fn missing_options(required: &[String], config: &str) -> Vec<String> {
    let present: std::collections::BTreeSet<&str> = config.lines().map(str::trim).collect();
    required
        .iter()
        .filter(|opt| !present.contains(opt.as_str()))
        .cloned()
        .collect()
}

/// The make invocations of a build, in order (pure, for tests and `--dry-run`).
pub fn make_commands(src: &Path, out: &Path, fragment: &Path, jobs: usize) -> Vec<Vec<String>> {
    let s = src.display().to_string();
    let o = format!("O={}", out.display());
    vec![
        vec![
            "make".into(),
            "-C".into(),
            s.clone(),
            o.clone(),
            "defconfig".into(),
        ],
        vec![
            format!("{s}/scripts/kconfig/merge_config.sh"),
            "-m".into(),
            "-O".into(),
            out.display().to_string(),
            out.join(".config").display().to_string(),
            fragment.display().to_string(),
        ],
        vec![
            "make".into(),
            "-C".into(),
            s.clone(),
            o.clone(),
            "olddefconfig".into(),
        ],
        // `modules` also writes modules.builtin, which the guest's modprobe
        // needs to accept built-in modules.
        vec![
            "make".into(),
            "-C".into(),
            s,
            o,
            format!("-j{jobs}"),
            "bzImage".into(),
            "modules".into(),
        ],
    ]
}

/// Build directory for a (tree, fragment) pair: the same pair reuses its
/// objects, so a bisect step only recompiles what the checkout changed.
pub fn build_dir(cache: &Path, src: &Path, fragment_text: &str) -> PathBuf {
    let key = hex::encode(Sha256::digest(
        format!("{}\n{fragment_text}", src.display()).as_bytes(),
    ));
    cache.join("kernels").join(&key[..16])
}

fn run(argv: &[String], cwd: &Path) -> Result<(), KernelError> {
    let command = argv.join(" ");
    eprintln!("+ {command}");
    let status = Command::new(&argv[0])
        .args(&argv[1..])
        .current_dir(cwd)
        .status()
        .map_err(|source| KernelError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !status.success() {
        return Err(KernelError::Build {
            command,
            code: status.code(),
        });
    }
    Ok(())
}

pub fn build(
    src: &Path,
    fragment: &Path,
    cache: &Path,
    jobs: usize,
) -> Result<BuiltKernel, KernelError> {
    let src = src
        .canonicalize()
        .map_err(|_| KernelError::NotASourceTree(src.display().to_string()))?;
    if !src.join("Makefile").exists() || !src.join("scripts/kconfig/merge_config.sh").exists() {
        return Err(KernelError::NotASourceTree(src.display().to_string()));
    }
    let fragment_text =
        std::fs::read_to_string(fragment).map_err(|source| KernelError::Fragment {
            path: fragment.display().to_string(),
            source,
        })?;
    let fragment = fragment
        .canonicalize()
        .map_err(|source| KernelError::Fragment {
            path: fragment.display().to_string(),
            source,
        })?;
    let out = build_dir(cache, &src, &fragment_text);
    std::fs::create_dir_all(&out).map_err(|source| KernelError::Spawn {
        command: format!("mkdir {}", out.display()),
        source,
    })?;
    let commands = make_commands(&src, &out, &fragment, jobs);
    run(&commands[0], &src)?;
    run(&commands[1], &src)?;
    run(&commands[2], &src)?;
    let config = std::fs::read_to_string(out.join(".config")).unwrap_or_default();
    let missing = missing_options(&required_options(&fragment_text), &config);
    if !missing.is_empty() {
        return Err(KernelError::MissingOptions(missing.join(" ")));
    }
    run(&commands[3], &src)?;
    let release = Command::new("make")
        .args(["-s", "-C"])
        .arg(&src)
        .arg(format!("O={}", out.display()))
        .arg("kernelrelease")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .map_err(|source| KernelError::Spawn {
            command: "make kernelrelease".into(),
            source,
        })?;
    Ok(BuiltKernel {
        bzimage: out.join("arch/x86/boot/bzImage"),
        release,
        build_dir: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_requirements_and_missing_detection() {
        let fragment = "# c\nCONFIG_A=y\nCONFIG_B=n\n CONFIG_C=y \n";
        let req = required_options(fragment);
        assert_eq!(req, vec!["CONFIG_A=y", "CONFIG_C=y"]);
        let config = "CONFIG_A=y\n# CONFIG_C is not set\n";
        assert_eq!(missing_options(&req, config), vec!["CONFIG_C=y"]);
    }

    #[test]
    fn make_sequence_is_defconfig_merge_olddefconfig_bzimage() {
        let cmds = make_commands(
            Path::new("/src"),
            Path::new("/out"),
            Path::new("/f.config"),
            2,
        );
        insta::assert_yaml_snapshot!(cmds);
    }

    #[test]
    fn the_shipped_fragment_builds_everything_in() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/kernel-configs/rulebench.config"
        ))
        .unwrap();
        let req = required_options(&text);
        for must in [
            "CONFIG_NF_TABLES=y",
            "CONFIG_IP_VS=y",
            "CONFIG_BPF_JIT=y",
            "CONFIG_VIRTIO_CONSOLE=y",
            "CONFIG_VETH=y",
        ] {
            assert!(
                req.iter().any(|r| r == must),
                "{must} missing from kernel-configs/rulebench.config"
            );
        }
    }
}
