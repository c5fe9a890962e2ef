//! `rulebench bench`: the measurement job behind `make bench`. Boots the
//! guest (timing the boot, as the foundation figures did), then walks the
//! size ladder for every technology and family, and writes results JSON,
//! CSV and the report under one output directory.

use crate::image::{self, LockFile};
use crate::measure::{self, data::DataConfig, figures, Recorder, Setting};
use crate::results::{Results, RunMeta, Sample, SCHEMA};
use crate::tech::Tech;
use crate::vm::{Vm, VmOptions};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Args)]
pub struct BenchArgs {
    /// Image name under images/ or a lock file path.
    #[arg(long)]
    image: Option<String>,
    /// Cold boots to time (the last one runs the measurements).
    #[arg(long, default_value_t = 1)]
    boots: usize,
    /// Rebuild the image from scratch to time a cold build.
    #[arg(long)]
    cold_build: bool,
    /// Ladder of N (services or rules).
    #[arg(long, value_delimiter = ',', default_value = "0,100,1000,10000")]
    sizes: Vec<u64>,
    /// Technologies (default: every one that supports the family).
    #[arg(long, value_delimiter = ',')]
    techs: Vec<Tech>,
    /// Workload families: services, firewall.
    #[arg(long, value_delimiter = ',', default_value = "services,firewall")]
    families: Vec<String>,
    /// Repeats of every figure.
    #[arg(long, default_value_t = 5)]
    repeats: u32,
    /// Duration of one connection-rate run (2 s under TCG is ~500
    /// connections, enough for stable percentiles).
    #[arg(long, default_value_t = 2000)]
    crr_ms: u64,
    /// Seconds of one iperf3 run.
    #[arg(long, default_value_t = 2)]
    iperf_seconds: u32,
    /// Output directory (default bench-results/<YYYYmmdd-HHMMSS>).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// One unit of work: a family × technology × N.
#[derive(Debug, Clone)]
struct Job {
    family: String,
    setting: Setting,
}

fn jobs(args: &BenchArgs) -> Result<Vec<Job>> {
    let mut out = Vec::new();
    for family in &args.families {
        let supported = match family.as_str() {
            "services" => Tech::for_services(),
            "firewall" => Tech::for_firewall(),
            other => bail!("unknown family {other:?} (services or firewall)"),
        };
        for &tech in supported
            .iter()
            .filter(|t| args.techs.is_empty() || args.techs.contains(t))
        {
            for &n in &args.sizes {
                out.push(Job {
                    family: family.clone(),
                    setting: Setting {
                        tech,
                        n,
                        repeats: args.repeats,
                    },
                });
            }
        }
    }
    if out.is_empty() {
        bail!("no technology in --techs supports the chosen --families");
    }
    Ok(out)
}

/// Relative cost of a job for the ETA: loads and updates grow with N.
fn weight(job: &Job) -> u64 {
    10 + job.setting.n / 100
}

fn default_out() -> PathBuf {
    let stamp = std::process::Command::new("date")
        .arg("+%Y%m%d-%H%M%S")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| unix_now().to_string());
    PathBuf::from("bench-results").join(stamp)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

fn host_cpu() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .map(|model| {
            format!(
                "{model} ({} threads)",
                std::thread::available_parallelism().map_or(0, |n| n.get())
            )
        })
        .unwrap_or_else(|| "unknown".into())
}

/// `git describe`-like revision, marked `-dirty` with uncommitted changes.
fn git_revision() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(image::agent::workspace_root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "HEAD"]) {
        Some(rev) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{rev}-dirty")
            } else {
                rev
            }
        }
        None => "unknown".into(),
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    let jobs = jobs(&args)?;
    let out = args.out.clone().unwrap_or_else(default_out);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let started = Instant::now();
    let lock = LockFile::load(&image::lock_path(args.image.as_deref()))?;
    if args.cold_build {
        if let Ok(old) = image::build(&lock, true) {
            image::build::forget(&old)?;
        }
    }
    let built = image::build(&lock, false).context("building the image")?;
    eprintln!(
        "image {} ready in {:.1} s (sha256 {})",
        built.name,
        started.elapsed().as_secs_f64(),
        built.sha256
    );

    let opts = VmOptions::default();
    let mut boot_samples = Vec::new();
    let mut vm = None;
    for i in 0..args.boots.max(1) {
        let t = Instant::now();
        let mut booted = Vm::boot(&built, &opts).context("booting the guest")?;
        booted.sh("uname -r").context("first guest command")?;
        boot_samples.push(t.elapsed().as_secs_f64());
        if i + 1 < args.boots.max(1) {
            booted.shutdown()?;
        } else {
            vm = Some(booted);
        }
    }
    let mut vm = vm.expect("at least one boot");
    measure::guest::prepare(&mut vm).context("building the guest topology and servers")?;

    let mut meta = RunMeta {
        image: built.name.clone(),
        image_sha256: built.sha256.clone(),
        kernel: vm.kernel_release.clone(),
        accel: vm.accel().to_string(),
        host_cpu: host_cpu(),
        qemu_version: vm.qemu_version(),
        rulebench_revision: git_revision(),
        started_unix: unix_now(),
        duration_seconds: 0.0,
        sizes: args.sizes.clone(),
        techs: {
            let mut t: Vec<String> = jobs
                .iter()
                .map(|j| j.setting.tech.name().to_string())
                .collect();
            t.dedup();
            t.sort();
            t.dedup();
            t
        },
        families: args.families.clone(),
        repeats: args.repeats,
        guest_vcpus: opts.smp,
        guest_memory_mb: opts.memory_mb,
    };
    let mut rec = Recorder::default();
    for (i, s) in boot_samples.iter().enumerate() {
        rec.samples.push(Sample {
            figure: figures::BOOT.id.into(),
            tech: "guest".into(),
            n: 0,
            repeat: i as u32,
            position: String::new(),
            value: *s,
            unit: figures::BOOT.unit.into(),
        });
    }
    let config = DataConfig {
        crr_duration_ms: args.crr_ms,
        iperf_seconds: args.iperf_seconds,
        ..DataConfig::default()
    };
    let bar = indicatif::ProgressBar::new(jobs.iter().map(weight).sum());
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix:>28} [{bar:30}] {percent:>3}% elapsed {elapsed} ETA {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let mut notes = Vec::new();
    for job in &jobs {
        bar.set_prefix(format!(
            "{} {} N={}",
            job.family, job.setting.tech, job.setting.n
        ));
        let outcome = match job.family.as_str() {
            "services" => measure::run_services(&mut vm, &job.setting, &config, &mut rec),
            _ => measure::run_firewall(&mut vm, &job.setting, &config, &mut rec),
        };
        if let Err(e) = outcome {
            let note = format!(
                "{} {} N={}: {e:#}",
                job.family, job.setting.tech, job.setting.n
            );
            bar.suspend(|| eprintln!("FAILED {note}"));
            notes.push(note);
        }
        bar.inc(weight(job));
        if bar.is_hidden() {
            // No terminal (CI logs, `make bench > log`): the bar is not
            // drawn, so say the same in one line per job.
            let done = bar.position() as f64 / bar.length().unwrap_or(1).max(1) as f64;
            let elapsed = started.elapsed().as_secs_f64();
            eprintln!(
                "{:>3.0}% {} {} N={} done; elapsed {:.1} min, ETA {:.1} min",
                done * 100.0,
                job.family,
                job.setting.tech,
                job.setting.n,
                elapsed / 60.0,
                elapsed * (1.0 - done) / done.max(1e-9) / 60.0
            );
        }
        // Write as we go: a long run interrupted late still leaves data.
        meta.duration_seconds = started.elapsed().as_secs_f64();
        write_results(
            &out,
            &Results {
                schema: SCHEMA,
                meta: meta.clone(),
                samples: rec.samples.clone(),
                notes: notes.clone(),
            },
        )?;
    }
    bar.finish_and_clear();
    vm.shutdown()?;
    meta.duration_seconds = started.elapsed().as_secs_f64();
    let results = Results {
        schema: SCHEMA,
        meta,
        samples: rec.samples,
        notes,
    };
    write_results(&out, &results)?;
    crate::report::write(&results, &out).context("writing the report")?;
    println!("{}", crate::report::headline_table(&results));
    println!(
        "results: {}  report: {}",
        out.join("results.json").display(),
        out.join("report.md").display()
    );
    println!("total {:.1} min", results.meta.duration_seconds / 60.0);
    if !results.notes.is_empty() {
        bail!(
            "{} measurement(s) failed; see notes in {}",
            results.notes.len(),
            out.join("results.json").display()
        );
    }
    Ok(())
}

fn write_results(out: &Path, results: &Results) -> Result<()> {
    let json = out.join("results.json");
    std::fs::write(&json, results.to_json())
        .with_context(|| format!("writing {}", json.display()))?;
    let csv = out.join("results.csv");
    std::fs::write(&csv, results.to_csv()).with_context(|| format!("writing {}", csv.display()))?;
    Ok(())
}
