//! The parts of a bisect step that run things: `cargo nextest list` for
//! the selection, and one boot of the step's kernel. The rules they apply
//! are the pure functions of the parent module.

use std::path::Path;
use std::process::Command;

/// The tests a step runs and its `--run-ignored` mode, from `cargo
/// nextest list` in `workspace`: refused when nothing matches or nothing
/// boots a guest.
pub fn list(workspace: &Path, filter: &str) -> anyhow::Result<(Vec<super::Listed>, &'static str)> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace)
        .args(super::list_args(filter))
        .output()
        .map_err(|e| anyhow::anyhow!("running cargo nextest list: {e}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "cargo nextest list -E {filter:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let listed = super::parse_list(&String::from_utf8_lossy(&out.stdout))?;
    let (tests, run_ignored) = super::choose(filter, &listed)?;
    let config = std::fs::read_to_string(workspace.join(".config/nextest.toml"))
        .map_err(|e| anyhow::anyhow!("reading .config/nextest.toml: {e}"))?;
    super::require_guest(filter, &tests, &super::guest_binaries(&config))?;
    Ok((tests, run_ignored))
}

/// Boot the step's kernel once with the image's userland and ask the
/// agent for the release: a panic, a missing agent or a boot timeout is
/// the kernel's own failure (the error quotes the console tail).
pub fn guest_comes_up(image: Option<&str>, kernel: Option<&Path>) -> anyhow::Result<()> {
    let lock = crate::image::LockFile::load(&crate::image::lock_path(image))?;
    let built = crate::image::build(&lock, true)?;
    let opts = crate::vm::VmOptions {
        kernel: kernel.map(Path::to_path_buf),
        snapshot: false,
        ..Default::default()
    };
    let mut vm = crate::vm::Vm::boot(&built, &opts)?;
    let release = vm.sh("uname -r")?;
    eprintln!(
        "rulebench bisect-run: guest up with kernel {} in {:.1} s",
        release.trim(),
        vm.boot_time.as_secs_f64()
    );
    vm.shutdown()?;
    Ok(())
}
