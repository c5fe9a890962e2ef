//! `rulebench bisect-run`: one step of `git bisect run` inside a kernel tree.
//! Exit 0 = good, 1 = bad, 125 = skip (kernel does not build or boot),
//! 128 = abort (rulebench itself is broken) — git's bisect-run contract.

use crate::kernel::{self, KernelError};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::process::Command;

pub const GOOD: i32 = 0;
pub const BAD: i32 = 1;
pub const SKIP: i32 = 125;
pub const ABORT: i32 = 128;

#[derive(Args)]
pub struct BisectArgs {
    /// Kernel tree to build (default: the current directory).
    #[arg(long)]
    src: Option<PathBuf>,
    #[arg(long)]
    config: Option<PathBuf>,
    /// Use this bzImage instead of building one.
    #[arg(long, conflicts_with = "src")]
    kernel: Option<PathBuf>,
    /// Boot the image's own kernel (no build): bisect across images.
    #[arg(long, conflicts_with_all = ["src", "kernel"])]
    image_kernel: bool,
    /// Image whose userland is used.
    #[arg(long)]
    image: Option<String>,
    /// nextest filter expression of the tests that decide good/bad.
    #[arg(long, conflicts_with = "budget")]
    test: Option<String>,
    /// A budget name (tests/budgets.rs) that decides good/bad.
    #[arg(long)]
    budget: Option<String>,
}

/// nextest arguments selecting what decides good/bad.
pub fn nextest_args(test: Option<&str>, budget: Option<&str>) -> Vec<String> {
    let mut args: Vec<String> = [
        "nextest",
        "run",
        "--workspace",
        "--no-fail-fast",
        "--run-ignored",
        "all",
    ]
    .map(String::from)
    .to_vec();
    match (test, budget) {
        (_, Some(budget)) => {
            args.extend(["-E".into(), format!("binary(budgets) & test(/{budget}/)")]);
        }
        (Some(test), None) => args.extend(["-E".into(), format!("test(/{test}/)")]),
        (None, None) => {}
    }
    args
}

pub fn run(args: BisectArgs) -> Result<()> {
    std::process::exit(decide(args));
}

fn decide(args: BisectArgs) -> i32 {
    let workspace = crate::image::agent::workspace_root();
    let kernel_path = if args.image_kernel {
        None
    } else if let Some(k) = args.kernel {
        Some(k)
    } else {
        let src = args.src.unwrap_or_else(|| PathBuf::from("."));
        let config = args
            .config
            .unwrap_or_else(|| workspace.join("kernel-configs/rulebench.config"));
        let jobs = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        match kernel::build(&src, &config, &crate::image::cache_root(), jobs) {
            Ok(built) => Some(built.bzimage),
            Err(e @ (KernelError::Build { .. } | KernelError::MissingOptions(_))) => {
                eprintln!("rulebench bisect-run: skip: {e}");
                return SKIP;
            }
            Err(e) => {
                eprintln!("rulebench bisect-run: abort: {e}");
                return ABORT;
            }
        }
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args(nextest_args(args.test.as_deref(), args.budget.as_deref()));
    if let Some(k) = &kernel_path {
        cmd.env(crate::vm::KERNEL_ENV, k);
    }
    if let Some(image) = &args.image {
        cmd.env(crate::image::IMAGE_ENV, image);
    }
    match cmd.status() {
        Ok(s) if s.success() => GOOD,
        Ok(s) if s.code() == Some(4) => {
            // nextest: no tests matched the filter — a usage error, not a verdict.
            eprintln!("rulebench bisect-run: abort: no test matched");
            ABORT
        }
        Ok(_) => BAD,
        Err(e) => {
            eprintln!("rulebench bisect-run: abort: running cargo nextest: {e}");
            ABORT
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        assert!(nextest_args(Some("kernel_is"), None)
            .join(" ")
            .ends_with("-E test(/kernel_is/)"));
        assert!(nextest_args(None, Some("nft_add"))
            .join(" ")
            .contains("binary(budgets) & test(/nft_add/)"));
    }
}
