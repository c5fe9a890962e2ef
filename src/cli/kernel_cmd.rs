use crate::kernel;
use anyhow::Result;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum KernelCommand {
    /// Build a bzImage from a kernel tree with rulebench's config fragment.
    Build {
        /// Kernel source tree (e.g. Debian's linux-source-5.10, or a git checkout).
        #[arg(long)]
        src: PathBuf,
        #[arg(long, default_value = "kernel-configs/rulebench.config")]
        config: PathBuf,
        /// Parallel make jobs (default: number of CPUs).
        #[arg(long)]
        jobs: Option<usize>,
    },
}

pub fn run(cmd: KernelCommand) -> Result<()> {
    match cmd {
        KernelCommand::Build { src, config, jobs } => {
            let jobs = jobs.unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2)
            });
            let started = std::time::Instant::now();
            let built = kernel::build(&src, &config, &crate::image::cache_root(), jobs)?;
            eprintln!(
                "built kernel {} in {:.0} s",
                built.release,
                started.elapsed().as_secs_f64()
            );
            println!("release {}", built.release);
            println!("bzimage {}", built.bzimage.display());
            Ok(())
        }
    }
}
