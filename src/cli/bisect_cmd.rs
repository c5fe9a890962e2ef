//! `rulebench bisect-run`: one step of `git bisect run` inside a kernel tree.
//! Exit 0 = good, 1 = bad, 125 = skip (kernel does not build or boot),
//! 128 = abort (rulebench itself is broken, or the selection cannot
//! decide) — git's bisect-run contract. The rules live in `crate::bisect`.

use crate::bisect::{self, ABORT, SKIP};
use crate::kernel::{self, KernelError};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Args)]
#[command(after_help = "Examples (inside the kernel git tree):
  git bisect run rulebench bisect-run --test differential
  git bisect run rulebench bisect-run --budget 'nftables add-one'
  rulebench bisect-run --image-kernel --image bookworm-6.1 --test differential --list")]
pub struct BisectArgs {
    /// Kernel tree to build (default: the current directory).
    #[arg(long)]
    src: Option<PathBuf>,
    /// Config fragment merged on top of `make defconfig`
    /// (default: kernel-configs/rulebench.config of this checkout).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Use this bzImage instead of building one.
    #[arg(long, conflicts_with = "src")]
    kernel: Option<PathBuf>,
    /// Boot the image's own kernel (no build): bisect across images.
    #[arg(long, conflicts_with_all = ["src", "kernel"])]
    image_kernel: bool,
    /// Image whose userland is used (default: RULEBENCH_IMAGE or bullseye-5.10).
    #[arg(long)]
    image: Option<String>,
    /// The tests that decide: a nextest filterset (`test(=name)`,
    /// `binary(dumps) & test(nftables)`), or a bare word: the test binary
    /// of that name (`differential`), else `test(/WORD/)`. Must select a
    /// test that boots a guest.
    #[arg(long, conflicts_with = "budget")]
    test: Option<String>,
    /// A budget of budgets.toml that decides: its exact name or a part of it
    /// (every budget whose name contains it).
    #[arg(long)]
    budget: Option<String>,
    /// Print the selection and exit (0 when it can decide, 128 when not);
    /// builds and boots nothing.
    #[arg(long)]
    list: bool,
}

pub fn run(args: BisectArgs) -> anyhow::Result<()> {
    std::process::exit(decide(args));
}

fn decide(args: BisectArgs) -> i32 {
    let workspace = crate::image::agent::workspace_root();
    let (filter, budget_names) = match selection(&args) {
        Ok(s) => s,
        Err(e) => return abort(e),
    };
    let chosen = match bisect::step::list(&workspace, &filter) {
        Ok(c) => c,
        Err(e) => return abort(e),
    };
    let (tests, run_ignored) = chosen;
    eprintln!(
        "rulebench bisect-run: {} test(s) decide ({filter}):",
        tests.len()
    );
    for t in &tests {
        eprintln!(
            "  {}{}",
            t.full_name(),
            if t.ignored { " (ignored)" } else { "" }
        );
    }
    if args.list {
        return bisect::GOOD;
    }
    let kernel_path = match kernel_to_boot(&args, &workspace) {
        Ok(k) => k,
        Err(code) => return code,
    };
    if let Err(e) = bisect::step::guest_comes_up(args.image.as_deref(), kernel_path.as_deref()) {
        eprintln!(
            "rulebench bisect-run: skip: the kernel built but its guest did not come up: {e:#}"
        );
        return SKIP;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args(bisect::run_args(&filter, run_ignored));
    match &kernel_path {
        Some(k) => cmd.env(crate::vm::KERNEL_ENV, k),
        None => cmd.env_remove(crate::vm::KERNEL_ENV),
    };
    if let Some(image) = &args.image {
        cmd.env(crate::image::IMAGE_ENV, image);
    }
    if let Some(names) = &budget_names {
        cmd.env(crate::budgets::SELECT_ENV, names);
    }
    match cmd.status() {
        Ok(s) => {
            let code = bisect::verdict(s.code());
            eprintln!("rulebench bisect-run: nextest exited {s}: verdict {code}");
            code
        }
        Err(e) => abort(anyhow::anyhow!("running cargo nextest: {e}")),
    }
}

fn abort(e: impl std::fmt::Display) -> i32 {
    eprintln!("rulebench bisect-run: abort: {e:#}");
    ABORT
}

/// The filterset, and for `--budget` the budget names the tests check.
fn selection(args: &BisectArgs) -> anyhow::Result<(String, Option<String>)> {
    match (&args.test, &args.budget) {
        (_, Some(pattern)) => {
            let path = crate::budgets::default_path();
            let all = crate::budgets::load(&path)?;
            let (filter, names) =
                bisect::budget_selection(&all, pattern, &path.display().to_string())?;
            Ok((filter, Some(names)))
        }
        (Some(test), None) => {
            let binaries =
                bisect::test_binaries(&crate::image::agent::workspace_root().join("tests"));
            Ok((bisect::filterset(test, &binaries), None))
        }
        (None, None) => anyhow::bail!("name what decides: --test FILTER or --budget NAME"),
    }
}

/// The bzImage of this step (None: the image's own kernel); Err is the
/// exit code when the tree does not build (skip) or cannot be used (abort).
fn kernel_to_boot(args: &BisectArgs, workspace: &Path) -> Result<Option<PathBuf>, i32> {
    if args.image_kernel {
        return Ok(None);
    }
    if let Some(k) = &args.kernel {
        return Ok(Some(k.clone()));
    }
    let src = args.src.clone().unwrap_or_else(|| PathBuf::from("."));
    let config = args
        .config
        .clone()
        .unwrap_or_else(|| workspace.join("kernel-configs/rulebench.config"));
    let jobs = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    match kernel::build(&src, &config, &crate::image::cache_root(), jobs) {
        Ok(built) => {
            eprintln!("rulebench bisect-run: built kernel {}", built.release);
            Ok(Some(built.bzimage))
        }
        Err(e @ (KernelError::Build { .. } | KernelError::MissingOptions(_))) => {
            eprintln!("rulebench bisect-run: skip: {e}");
            Err(SKIP)
        }
        Err(e) => Err(abort(e)),
    }
}
