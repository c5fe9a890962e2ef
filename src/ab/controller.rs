//! `rulebench gate`: runs the base and head workers side by side and asks
//! them for the same units in turn (see the module docs of `crate::ab`).

use super::decide::{self, PairRow};
use super::plan::{base_first, AbPlan};
use super::worker::{Answer, Ready};
use crate::results::Sample;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// One side: its binary, the process, the pipes, its log file.
struct Side {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    log: PathBuf,
}

impl Side {
    fn spawn(name: &'static str, binary: &Path, plan: &AbPlan, out: &Path) -> Result<Side> {
        let log = out.join(format!("{name}-worker.log"));
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = Command::new(binary)
            .args(plan.worker_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting the {name} worker {}", binary.display()))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Ok(Side {
            name,
            child,
            stdin,
            stdout,
            log,
        })
    }

    fn read_line(&mut self) -> Result<String> {
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line)?;
        if n == 0 {
            let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
            bail!(
                "the {} worker ended ({status}); the tail of {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log, 25)
            );
        }
        Ok(line)
    }

    fn ready(&mut self) -> Result<Ready> {
        let line = self.read_line()?;
        let ready: Ready = serde_json::from_str(&line).with_context(|| {
            format!(
                "the {} worker's first line is not its ready message (a revision without `ab-worker`?): {line:?}",
                self.name
            )
        })?;
        if ready.protocol != super::PROTOCOL {
            bail!(
                "the {} worker speaks A/B protocol {}, this gate {}",
                self.name,
                ready.protocol,
                super::PROTOCOL
            );
        }
        Ok(ready)
    }

    /// One step (`load` or `round`) of unit `key`.
    fn step(&mut self, step: &str, key: &str) -> Result<Answer> {
        let stdin = self.stdin.as_mut().expect("open until quit");
        writeln!(stdin, "{step} {key}")?;
        stdin.flush()?;
        let line = self.read_line()?;
        let answer: Answer = serde_json::from_str(&line)
            .with_context(|| format!("the {} worker's answer {line:?}", self.name))?;
        if answer.key != key {
            bail!(
                "the {} worker answered {:?} for {key:?}",
                self.name,
                answer.key
            );
        }
        if let Some(e) = &answer.error {
            bail!("{} worker, {step} {key}: {e}", self.name);
        }
        Ok(answer)
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        // Closing stdin ends the worker's loop (it shuts its guest down);
        // a worker that does not end in time is killed.
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "quit");
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[derive(Serialize, Deserialize)]
struct AbFile {
    base_revision: String,
    head_revision: String,
    kernel: String,
    accel: String,
    threshold: f64,
    /// Minutes the campaign took (absent in files written before).
    #[serde(default)]
    minutes: f64,
    #[serde(default)]
    repeats: u32,
    #[serde(default)]
    sizes: Vec<u64>,
    base: Vec<Sample>,
    head: Vec<Sample>,
}

impl AbFile {
    fn header(&self) -> String {
        // Files written before these fields: the samples say the same.
        let repeats = if self.repeats > 0 {
            self.repeats
        } else {
            self.base.iter().map(|s| s.repeat + 1).max().unwrap_or(0)
        };
        let mut sizes = self.sizes.clone();
        if sizes.is_empty() {
            sizes = self.base.iter().map(|s| s.n).collect();
            sizes.sort_unstable();
            sizes.dedup();
        }
        let minutes = if self.minutes > 0.0 {
            format!("{:.1} min", self.minutes)
        } else {
            "time not recorded".to_string()
        };
        format!(
            "base {} vs head {} — kernel {}, {}, {repeats} repeats (pairs), sizes {sizes:?}, {minutes}",
            self.base_revision, self.head_revision, self.kernel, self.accel,
        )
    }
}

/// The verdict of a finished campaign again, from its `ab.json` (e.g. at
/// another threshold); rewrites `summary.md` beside it.
pub fn reanalyze(dir: &Path, threshold: f64) -> Result<GateOutcome> {
    let path = dir.join("ab.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let file: AbFile =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let rows = decide::compare(&file.base, &file.head, threshold);
    let summary_path = dir.join("summary.md");
    std::fs::write(
        &summary_path,
        decide::summary(&rows, threshold, &file.header()),
    )
    .with_context(|| format!("writing {}", summary_path.display()))?;
    Ok(GateOutcome { rows, summary_path })
}

pub struct GateOutcome {
    pub rows: Vec<PairRow>,
    pub summary_path: PathBuf,
}

pub fn run(
    base_bin: &Path,
    head_bin: &Path,
    plan: &AbPlan,
    threshold: f64,
    out: &Path,
) -> Result<GateOutcome> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let units = plan.units();
    if units.is_empty() {
        bail!("the plan has no unit (no technology of the families?)");
    }
    let started = Instant::now();
    // Both guests boot before anything is measured, in parallel.
    let mut base = Side::spawn("base", base_bin, plan, out)?;
    let mut head = Side::spawn("head", head_bin, plan, out)?;
    let base_ready = base.ready()?;
    let head_ready = head.ready()?;
    eprintln!(
        "gate: base {} and head {} ready ({}, {}) after {:.0} s; {} units",
        base_ready.revision,
        head_ready.revision,
        head_ready.kernel,
        head_ready.accel,
        started.elapsed().as_secs_f64(),
        units.len()
    );
    if base_ready.units != units.len() || head_ready.units != units.len() {
        bail!(
            "the workers plan {} (base) and {} (head) units, the gate {}",
            base_ready.units,
            head_ready.units,
            units.len()
        );
    }
    let (mut base_samples, mut head_samples) = (Vec::new(), Vec::new());
    let measuring = Instant::now();
    for (i, unit) in units.iter().enumerate() {
        let key = unit.key();
        let t = Instant::now();
        let mut sides = [&mut base, &mut head];
        if !base_first(unit) {
            sides.reverse();
        }
        // A B, then B A, A B, … : each step of one side next to the same
        // step of the other, and the order balanced within the unit.
        for step in 0..=plan.rounds.max(1) {
            let name = if step == 0 { "load" } else { "round" };
            let order: [usize; 2] = if step.is_multiple_of(2) {
                [0, 1]
            } else {
                [1, 0]
            };
            for i in order {
                let side = &mut *sides[i];
                let answer = side.step(name, &key)?;
                if side.name == "base" {
                    base_samples.extend(answer.samples);
                } else {
                    head_samples.extend(answer.samples);
                }
            }
        }
        let done = i + 1;
        let per_unit = measuring.elapsed().as_secs_f64() / done as f64;
        eprintln!(
            "gate: {done}/{} {key} ({:.0} s); about {:.0} min left",
            units.len(),
            t.elapsed().as_secs_f64(),
            per_unit * (units.len() - done) as f64 / 60.0
        );
    }
    drop(base);
    drop(head);
    let file = AbFile {
        base_revision: base_ready.revision,
        head_revision: head_ready.revision,
        kernel: head_ready.kernel,
        accel: head_ready.accel,
        threshold,
        minutes: started.elapsed().as_secs_f64() / 60.0,
        repeats: plan.repeats,
        sizes: plan.sizes.clone(),
        base: base_samples,
        head: head_samples,
    };
    let json = out.join("ab.json");
    std::fs::write(&json, serde_json::to_string_pretty(&file)?)
        .with_context(|| format!("writing {}", json.display()))?;
    reanalyze(out, threshold)
}
