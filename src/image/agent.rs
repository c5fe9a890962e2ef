//! The guest-side binaries and eBPF objects built from this workspace:
//! the agent that becomes the image's /init, the eBPF loader
//! (`rulebench-ebpf`) and the restricted-C programs of guest/bpf. The Rust
//! binaries are static with paths remapped, the BPF objects are compiled
//! from a fixed relative path with the prefix mapped, so the bytes do not
//! depend on the checkout location. The agent may instead come from
//! `RULEBENCH_AGENT_BIN`.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const AGENT_BIN_ENV: &str = "RULEBENCH_AGENT_BIN";
const TARGET: &str = "x86_64-unknown-linux-gnu";
/// Guest crates built static for the image, by package name.
const GUEST_PACKAGES: [&str; 2] = ["rulebench-agent", "rulebench-ebpf"];
/// MAX_WORDS variants of the firewall pipeline (64 rules per word), by
/// powers of two so a ruleset's vectors are at most twice the size they
/// need; the loader picks the smallest variant in the image that holds a
/// ruleset. 4,096 words (262,144 rules) is past what fits in guest memory
/// anyway (the vectors grow with rules squared).
pub const FIREWALL_VARIANT_WORDS: [usize; 9] = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096];
const CLANG_ENV: &str = "RULEBENCH_CLANG";

#[derive(Debug, thiserror::Error)]
pub enum AgentBuildError {
    #[error("running cargo to build the guest binaries: {0}")]
    Spawn(std::io::Error),
    #[error("building the guest binaries failed (cargo exit {code:?}); see cargo's output above")]
    Failed { code: Option<i32> },
    #[error("guest binary {path} is missing: {source}")]
    Missing {
        path: String,
        source: std::io::Error,
    },
    #[error("running {clang} to build guest/bpf (install clang, llvm and libbpf-dev: `make deps`): {source}")]
    ClangSpawn {
        clang: String,
        source: std::io::Error,
    },
    #[error("clang failed on guest/bpf/{file} (exit {code:?}): {stderr}")]
    ClangFailed {
        file: String,
        code: Option<i32>,
        stderr: String,
    },
}

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// RUSTFLAGS for a static, location-independent guest build.
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

fn guest_target_dir() -> PathBuf {
    workspace_root().join("target/guest")
}

/// Builds every guest crate (one cargo run) and returns the directory
/// holding the release binaries.
fn build_guest_crates(quiet: bool) -> Result<PathBuf, AgentBuildError> {
    let ws = workspace_root();
    let target_dir = guest_target_dir();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&ws)
        .args(["build", "--release", "--locked", "--target", TARGET])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("RUSTFLAGS", agent_rustflags(&ws, &cargo_home()))
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    for p in GUEST_PACKAGES {
        cmd.args(["-p", p]);
    }
    if quiet {
        cmd.arg("--quiet");
    }
    let status = cmd.status().map_err(AgentBuildError::Spawn)?;
    if !status.success() {
        return Err(AgentBuildError::Failed {
            code: status.code(),
        });
    }
    Ok(target_dir.join(TARGET).join("release"))
}

fn existing(path: PathBuf) -> Result<PathBuf, AgentBuildError> {
    std::fs::metadata(&path).map_err(|source| AgentBuildError::Missing {
        path: path.display().to_string(),
        source,
    })?;
    Ok(path)
}

/// Path of a ready agent binary, building the guest crates when needed.
pub fn agent_binary(quiet: bool) -> Result<PathBuf, AgentBuildError> {
    if let Some(p) = std::env::var_os(AGENT_BIN_ENV) {
        return Ok(PathBuf::from(p));
    }
    existing(build_guest_crates(quiet)?.join("rulebench-agent"))
}

/// What the image carries for the eBPF row.
#[derive(Debug, Clone)]
pub struct EbpfBundle {
    pub loader: PathBuf,
    /// (file name, path) of each compiled object, sorted by name.
    pub objects: Vec<(String, PathBuf)>,
    /// Compiler identity and flags: installed as BUILD-INFO so results can
    /// say which clang built the programs.
    pub build_info: String,
}

fn clang() -> String {
    std::env::var(CLANG_ENV).unwrap_or_else(|_| "clang".into())
}

fn clang_version(clang: &str) -> Result<String, AgentBuildError> {
    let out = Command::new(clang)
        .arg("--version")
        .output()
        .map_err(|source| AgentBuildError::ClangSpawn {
            clang: clang.into(),
            source,
        })?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("unknown")
        .trim()
        .to_string())
}

/// `(source file, object name, extra defines)` for every object.
fn bpf_units() -> Vec<(String, String, Vec<String>)> {
    let mut units = vec![
        ("services.bpf.c".into(), "services.bpf.o".into(), vec![]),
        (
            "firewall_entry.bpf.c".into(),
            "firewall_entry.bpf.o".into(),
            vec![],
        ),
        // kprobes read their arguments through bpf_tracing.h's per-arch
        // register names.
        (
            "hooktime.bpf.c".into(),
            "hooktime.bpf.o".into(),
            vec!["-D__TARGET_ARCH_x86".into()],
        ),
        // The sampler reads the interrupted instruction pointer the same way.
        (
            "profile.bpf.c".into(),
            "profile.bpf.o".into(),
            vec!["-D__TARGET_ARCH_x86".into()],
        ),
    ];
    for w in FIREWALL_VARIANT_WORDS {
        units.push((
            "firewall_pipeline.bpf.c".into(),
            format!("firewall_pipeline_w{w}.bpf.o"),
            vec![format!("-DMAX_WORDS={w}")],
        ));
    }
    units
}

/// Common clang flags. Building from guest/bpf with a relative source
/// name and the absolute prefix mapped keeps DWARF/BTF free of the
/// checkout path, so objects are byte-identical across checkouts.
fn bpf_flags(src_dir: &Path) -> Vec<String> {
    vec![
        "-O2".into(),
        "-g".into(),
        "-target".into(),
        "bpf".into(),
        "-Wall".into(),
        "-Werror".into(),
        "-I/usr/include/x86_64-linux-gnu".into(),
        format!(
            "-fdebug-prefix-map={}=/rulebench/guest/bpf",
            src_dir.display()
        ),
        "-fdebug-compilation-dir=/rulebench/guest/bpf".into(),
    ]
}

fn compile_bpf(out_dir: &Path) -> Result<(Vec<(String, PathBuf)>, String), AgentBuildError> {
    let src_dir = workspace_root().join("guest/bpf");
    let clang = clang();
    let version = clang_version(&clang)?;
    std::fs::create_dir_all(out_dir).map_err(|source| AgentBuildError::Missing {
        path: out_dir.display().to_string(),
        source,
    })?;
    let flags = bpf_flags(&src_dir);
    let mut objects = Vec::new();
    for (src, obj, defines) in bpf_units() {
        let out_path = out_dir.join(&obj);
        let out = Command::new(&clang)
            .current_dir(&src_dir)
            .args(&flags)
            .args(&defines)
            .args(["-c", &src, "-o"])
            .arg(&out_path)
            .output()
            .map_err(|source| AgentBuildError::ClangSpawn {
                clang: clang.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(AgentBuildError::ClangFailed {
                file: src,
                code: out.status.code(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        objects.push((obj, out_path));
    }
    objects.sort();
    let info = format!(
        "compiler: {version}\nflags: -O2 -g -target bpf\nfirewall_variant_words: {}\n",
        FIREWALL_VARIANT_WORDS.map(|w| w.to_string()).join(" ")
    );
    Ok((objects, info))
}

/// Builds the loader and the BPF objects (cheap when up to date: cargo
/// checks freshness, clang reruns on a handful of small files).
pub fn ebpf_bundle(quiet: bool) -> Result<EbpfBundle, AgentBuildError> {
    let release = build_guest_crates(quiet)?;
    let loader = existing(release.join("rulebench-ebpf"))?;
    let (objects, build_info) = compile_bpf(&guest_target_dir().join("bpf"))?;
    Ok(EbpfBundle {
        loader,
        objects,
        build_info,
    })
}

/// sha256 over everything the bundle installs, for image cache keys.
pub fn ebpf_bundle_digest(bundle: &EbpfBundle) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(std::fs::read(&bundle.loader)?);
    for (name, path) in &bundle.objects {
        h.update(name.as_bytes());
        h.update(std::fs::read(path)?);
    }
    h.update(bundle.build_info.as_bytes());
    Ok(hex::encode(h.finalize()))
}
