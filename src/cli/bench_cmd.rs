//! `rulebench bench`: the measurement job behind `make bench`. For now it
//! measures the foundation: image build time and boot-to-first-command.

use crate::image::{self, LockFile};
use crate::vm::{Vm, VmOptions};
use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Args)]
pub struct BenchArgs {
    /// Image name under images/ or a lock file path.
    #[arg(long)]
    image: Option<String>,
    /// How many cold boots to time.
    #[arg(long, default_value_t = 5)]
    boots: usize,
    /// Rebuild the image from scratch to time a cold build.
    #[arg(long)]
    cold_build: bool,
    /// Output directory (default bench-results/<unix time>).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Serialize)]
struct FoundationResults {
    schema: u32,
    image: String,
    image_sha256: String,
    initramfs_bytes: u64,
    accel: String,
    qemu_version: String,
    kernel_release: String,
    image_build_seconds: f64,
    image_build_was_cached: bool,
    boot_to_first_command_seconds: Vec<f64>,
    boot_to_first_command_median_seconds: f64,
}

pub fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    let lock = LockFile::load(&image::lock_path(args.image.as_deref()))?;
    if args.cold_build {
        if let Ok(old) = image::build(&lock, true) {
            image::build::forget(&old)?;
        }
    }
    let started = Instant::now();
    let manifest_existed = image::build::is_cached(&lock);
    let built = image::build(&lock, false).context("building the image")?;
    let build_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "image {} built in {build_seconds:.2} s (sha256 {})",
        built.name, built.sha256
    );
    let bar = indicatif::ProgressBar::new(args.boots as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix("booting");
    let mut samples = Vec::new();
    let (mut accel, mut qemu, mut release) = (String::new(), String::new(), String::new());
    for _ in 0..args.boots {
        let t = Instant::now();
        let mut vm = Vm::boot(&built, &VmOptions::default()).context("booting the guest")?;
        let out = vm.sh("uname -r").context("first command")?;
        samples.push(t.elapsed().as_secs_f64());
        accel = vm.accel().to_string();
        qemu = vm.qemu_version();
        release = out.trim().to_string();
        vm.shutdown()?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let results = FoundationResults {
        schema: 1,
        image: built.name.clone(),
        image_sha256: built.sha256.clone(),
        initramfs_bytes: built.initramfs_bytes,
        accel,
        qemu_version: qemu,
        kernel_release: release,
        image_build_seconds: build_seconds,
        image_build_was_cached: manifest_existed,
        boot_to_first_command_median_seconds: median(&samples),
        boot_to_first_command_seconds: samples.clone(),
    };
    let out = args.out.unwrap_or_else(|| {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        PathBuf::from("bench-results").join(ts.to_string())
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join("foundation.json");
    std::fs::write(&path, serde_json::to_string_pretty(&results)?)?;
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| accel | {} (QEMU {}) |",
        results.accel, results.qemu_version
    );
    println!("| kernel | {} |", results.kernel_release);
    println!("| initramfs | {} KiB |", results.initramfs_bytes / 1024);
    println!(
        "| image build | {:.2} s ({}) |",
        results.image_build_seconds,
        if manifest_existed { "cached" } else { "built" }
    );
    let list: Vec<String> = samples.iter().map(|s| format!("{s:.2}")).collect();
    println!(
        "| boot to first command, median of {} | {:.2} s (samples {}) |",
        samples.len(),
        results.boot_to_first_command_median_seconds,
        list.join(", ")
    );
    println!("results: {}", path.display());
    Ok(())
}
