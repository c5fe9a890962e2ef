//! `rulebench bench`: the measurement job behind `make bench`. Times a
//! cold boot and snapshot restores, then walks the size ladder for every
//! technology and family — several guests taking jobs from one queue — and
//! writes results JSON, CSV and the report under one output directory.

use crate::image::{self, LockFile};
use crate::measure::{self, data::DataConfig, figures, Recorder, Setting};
use crate::results::{Results, RunMeta, Sample, SCHEMA};
use crate::tech::Tech;
use crate::vm::{Vm, VmOptions};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Args)]
pub struct BenchArgs {
    /// Image name under images/ or a lock file path.
    #[arg(long)]
    image: Option<String>,
    /// Boots to time after one cold boot (restored from a snapshot unless
    /// RULEBENCH_SNAPSHOT=0; the first restore of a fresh cache includes
    /// making the snapshot). The measuring guests boot after these.
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
    /// Guest seconds the full loads of one job may take together: full
    /// loads repeat (up to --repeats) until they have used this much, so a
    /// load that takes minutes is measured once (at least one always is).
    #[arg(long, default_value_t = measure::DEFAULT_FULL_LOAD_BUDGET_MS / 1000)]
    full_load_budget: u64,
    /// Guests measuring at the same time (default: one per host core, at
    /// most 4). Each guest is one vCPU thread booted from the
    /// same image and snapshot, and takes the next job (heaviest first) when
    /// it is free; every job starts from a reset guest.
    #[arg(long)]
    guests: Option<usize>,
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

impl std::fmt::Display for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} N={}",
            self.family, self.setting.tech, self.setting.n
        )
    }
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
                        full_load_budget_ms: args.full_load_budget.saturating_mul(1000),
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

/// The order guests take jobs in: heaviest first (longest-processing-
/// time scheduling), so the last jobs are short and the guests finish
/// together. Equal weights keep the given order.
fn schedule(jobs: &[Job]) -> VecDeque<Job> {
    let mut out = jobs.to_vec();
    out.sort_by_key(|j| std::cmp::Reverse(weight(j)));
    out.into()
}

/// One guest per host core (each is one vCPU thread), at most 4: more
/// guests mostly add memory-bandwidth noise to each other's figures.
fn default_guests(jobs: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.min(4).min(jobs).max(1)
}

/// What a lane reports back to the thread that owns the results file.
enum LaneMsg {
    Started {
        lane: usize,
        job: Job,
    },
    Done {
        lane: usize,
        job: Job,
        samples: Vec<Sample>,
        note: Option<String>,
    },
    Failed {
        lane: usize,
        error: String,
    },
}

fn run_job(vm: &mut Vm, job: &Job, config: &DataConfig) -> (Vec<Sample>, Option<String>) {
    let mut rec = Recorder::default();
    let outcome = match job.family.as_str() {
        "services" => measure::run_services(vm, &job.setting, config, &mut rec),
        _ => measure::run_firewall(vm, &job.setting, config, &mut rec),
    };
    let note = outcome.err().map(|e| format!("{job}: {e:#}"));
    (rec.samples, note)
}

/// One guest taking jobs from the shared queue until it is empty. A guest
/// that cannot start leaves its share to the others.
fn run_lane(
    lane: usize,
    built: &image::BuiltImage,
    opts: &VmOptions,
    queue: &Mutex<VecDeque<Job>>,
    config: &DataConfig,
    tx: &std::sync::mpsc::Sender<LaneMsg>,
) {
    let fail = |error: String| {
        let _ = tx.send(LaneMsg::Failed { lane, error });
    };
    let mut vm = match Vm::boot(built, opts) {
        Ok(vm) => vm,
        Err(e) => return fail(format!("booting the guest: {e}")),
    };
    if let Err(e) = measure::guest::prepare(&mut vm) {
        return fail(format!("building the guest topology and servers: {e}"));
    }
    loop {
        let next = queue.lock().expect("queue lock").pop_front();
        let Some(job) = next else { break };
        let started = LaneMsg::Started {
            lane,
            job: job.clone(),
        };
        if tx.send(started).is_err() {
            break;
        }
        let (samples, note) = run_job(&mut vm, &job, config);
        let done = LaneMsg::Done {
            lane,
            job,
            samples,
            note,
        };
        if tx.send(done).is_err() {
            break;
        }
    }
    if let Err(e) = vm.shutdown() {
        fail(format!("shutting the guest down: {e}"));
    }
}

/// How often a log without a terminal says what is running.
const HEARTBEAT: Duration = Duration::from_secs(120);

/// "services nftables N=10000 for 7.5 min; …" for the jobs in progress.
fn running_line(running: &[Option<(Job, Instant)>]) -> String {
    running
        .iter()
        .flatten()
        .map(|(job, since)| format!("{job} for {:.1} min", since.elapsed().as_secs_f64() / 60.0))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Relative cost of a job for the ETA and the order, in units of roughly
/// a second of TCG guest time: a fixed part (reset, warm-up, data plane:
/// a job at N ≤ 100 took under a minute) plus a control-plane part growing
/// with N, scaled by how slow the technology's tools were at N = 10k in the
/// TCG runs of 2026-11-29 (nft 0.9.8 > iptables-nft-restore >
/// iptables-legacy, IPVS > eBPF and every firewall). Only the schedule and
/// the ETA depend on it.
fn weight(job: &Job) -> u64 {
    let slowness = match (job.family.as_str(), job.setting.tech) {
        ("services", Tech::Nftables) => 6,
        ("services", Tech::IptablesNft) => 3,
        ("services", Tech::IptablesLegacy | Tech::Ipvs) => 2,
        _ => 1,
    };
    50 + slowness * job.setting.n / 100
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
    // One cold boot always, so the report shows what a snapshot restore
    // saves.
    let cold_sample = {
        let t = Instant::now();
        let cold = VmOptions {
            snapshot: false,
            ..opts.clone()
        };
        let mut booted = Vm::boot(&built, &cold).context("cold-booting the guest")?;
        booted.sh("uname -r").context("first guest command")?;
        let s = t.elapsed().as_secs_f64();
        booted.shutdown()?;
        s
    };
    // Timed boots; the last one also reports what the guest runs. The
    // measuring guests boot afterwards, one per lane.
    let mut boot_samples = Vec::new();
    let mut probe = None;
    for _ in 0..args.boots.max(1) {
        let t = Instant::now();
        let mut booted = Vm::boot(&built, &opts).context("booting the guest")?;
        booted.sh("uname -r").context("first guest command")?;
        boot_samples.push(t.elapsed().as_secs_f64());
        if let Some(old) = probe.replace(booted) {
            old.shutdown()?;
        }
    }
    let probe = probe.expect("at least one boot");
    let guests = args
        .guests
        .unwrap_or_else(|| default_guests(jobs.len()))
        .max(1);
    let queue = Mutex::new(schedule(&jobs));

    let mut meta = RunMeta {
        image: built.name.clone(),
        image_sha256: built.sha256.clone(),
        kernel: probe.kernel_release.clone(),
        accel: probe.accel().to_string(),
        host_cpu: host_cpu(),
        qemu_version: probe.qemu_version(),
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
        full_load_budget_seconds: Some(args.full_load_budget),
        guest_vcpus: opts.smp,
        guest_memory_mb: opts.memory_mb,
        parallel_guests: guests as u32,
    };
    probe.shutdown()?;
    let mut rec = Recorder::default();
    rec.samples.push(Sample {
        figure: figures::COLD_BOOT.id.into(),
        tech: "guest".into(),
        n: 0,
        repeat: 0,
        position: String::new(),
        value: cold_sample,
        unit: figures::COLD_BOOT.unit.into(),
    });
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
            "{prefix:>28} [{bar:30}] {percent:>3}% elapsed {elapsed} ETA {eta} {wide_msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let mut notes = Vec::new();
    if guests > 1 {
        eprintln!("{guests} guests in parallel, heaviest jobs first");
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| -> Result<()> {
        for i in 0..guests {
            let (tx, built, opts, config, queue) = (tx.clone(), &built, &opts, &config, &queue);
            scope.spawn(move || run_lane(i, built, opts, queue, config, &tx));
        }
        // Only the lanes hold senders now: the loop ends when all are done.
        drop(tx);
        // Jobs at 10k run for minutes: say what is running, so a quiet log
        // is never mistaken for a hang.
        let mut running: Vec<Option<(Job, Instant)>> = vec![None; guests];
        let mut last_heartbeat = Instant::now();
        loop {
            let msg = match rx.recv_timeout(Duration::from_secs(5)) {
                Ok(msg) => Some(msg),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let line = running_line(&running);
            bar.set_message(line.clone());
            if bar.is_hidden() && last_heartbeat.elapsed() >= HEARTBEAT && !line.is_empty() {
                eprintln!("     running: {line}");
                last_heartbeat = Instant::now();
            }
            let Some(msg) = msg else { continue };
            match msg {
                LaneMsg::Started { lane, job } => {
                    running[lane] = Some((job, Instant::now()));
                    continue;
                }
                LaneMsg::Done {
                    lane,
                    job,
                    samples,
                    note,
                } => {
                    running[lane] = None;
                    rec.samples.extend(samples);
                    if let Some(note) = note {
                        bar.suspend(|| eprintln!("FAILED {note}"));
                        notes.push(note);
                    }
                    bar.set_prefix(job.to_string());
                    bar.inc(weight(&job));
                    if bar.is_hidden() {
                        // No terminal (CI logs, `make bench > log`): the bar
                        // is not drawn, so say the same in one line per job.
                        let done = bar.position() as f64 / bar.length().unwrap_or(1).max(1) as f64;
                        let elapsed = started.elapsed().as_secs_f64();
                        eprintln!(
                            "{:>3.0}% {job} done; elapsed {:.1} min, ETA {:.1} min",
                            done * 100.0,
                            elapsed / 60.0,
                            elapsed * (1.0 - done) / done.max(1e-9) / 60.0
                        );
                    }
                }
                LaneMsg::Failed { lane, error } => {
                    running[lane] = None;
                    let note = format!("guest {lane}: {error}");
                    bar.suspend(|| eprintln!("FAILED {note}"));
                    notes.push(note);
                }
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
        Ok(())
    })?;
    bar.finish_and_clear();
    for job in queue.into_inner().expect("queue lock") {
        notes.push(format!("{job}: not run (no guest could start)"));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn job(family: &str, tech: Tech, n: u64) -> Job {
        Job {
            family: family.into(),
            setting: Setting {
                tech,
                n,
                repeats: 1,
                full_load_budget_ms: measure::DEFAULT_FULL_LOAD_BUDGET_MS,
            },
        }
    }

    fn shape(jobs: &VecDeque<Job>) -> Vec<String> {
        jobs.iter()
            .map(|j| format!("{}/{}/{}", j.family, j.setting.tech, j.setting.n))
            .collect()
    }

    #[test]
    fn heaviest_jobs_go_first_and_equal_ones_keep_their_order() {
        let jobs = [
            job("services", Tech::Nftables, 0),
            job("firewall", Tech::Ebpf, 10_000),
            job("services", Tech::Ipvs, 10_000),
            job("firewall", Tech::Nftables, 0),
            job("services", Tech::Ipvs, 100),
        ];
        assert_eq!(
            shape(&schedule(&jobs)),
            [
                "services/ipvs/10000",
                "firewall/ebpf/10000",
                "services/ipvs/100",
                "services/nftables/0",
                "firewall/nftables/0",
            ]
        );
        assert!(schedule(&[]).is_empty());
    }
}
