//! `rulebench-ebpf profile < ProfilePlan JSON`: run the plan's commands
//! one after the other under a kernel sampling profiler
//! (guest/bpf/profile.bpf.c on a cpu-clock perf event per CPU) and print
//! a `ProfileReport`: where the samples fell — the commands in user mode
//! or in the kernel, the idle task, other tasks — and the kernel
//! functions of the commands and of the other tasks.
//!
//! The commands run in a cgroup of their own, which their children
//! inherit, so samples are the commands' whatever process they forked;
//! the program compares the interrupted task's cgroup id with the one the
//! loader wrote. Kernel addresses are symbolized from /proc/kallsyms once
//! the commands are done (modules they loaded are listed by then).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use aya::maps::{Array, HashMap, PerCpuArray};
use aya::programs::perf_event::{
    PerfEvent, PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent,
};
use aya::util::online_cpus;
use aya::Ebpf;
use rulebench_proto::{ProfileOutcome, ProfilePlan, ProfileReport, ProfileTask};

use crate::pins;
use crate::symbols::{self, Symbol};

const OBJECT: &str = "profile.bpf.o";
const PROGRAM: &str = "pf_sample";
/// Must match profile.bpf.c.
const IN_TARGET: u32 = 1;
const IN_KERNEL: u32 = 2;
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// A command's stderr kept in the report.
const STDERR_TAIL: usize = 2000;

/// The count map's key, laid out as `struct pf_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleKey {
    pub ip: u64,
    pub tgid: u32,
    pub flags: u32,
}

// SAFETY: plain integers, no padding (8 + 4 + 4 bytes).
unsafe impl aya::Pod for SampleKey {}

pub fn validate(plan: &ProfilePlan) -> Result<()> {
    if !(1..=10_000).contains(&plan.frequency_hz) {
        bail!(
            "profile frequency must be 1-10000 Hz, got {}",
            plan.frequency_hz
        );
    }
    if plan.commands.is_empty() {
        bail!("profile plan has no commands");
    }
    if plan.commands.iter().any(|c| c.argv.is_empty()) {
        bail!("profile plan has a command with an empty argv");
    }
    Ok(())
}

/// Counts of one profile, before the task names and command outcomes.
#[derive(Debug, Default, PartialEq)]
pub struct Tally {
    pub samples: u64,
    pub idle: u64,
    pub command_user: u64,
    pub command_kernel: u64,
    pub other_user: u64,
    pub other_kernel: u64,
    /// Kernel addresses with their counts.
    pub command_ips: Vec<(u64, u64)>,
    pub other_ips: Vec<(u64, u64)>,
    /// Samples per other process id.
    pub other_tgids: BTreeMap<u32, u64>,
}

/// Sorts raw map entries into the report's buckets. The idle task is
/// process 0 on every CPU; it is never in the commands' cgroup.
pub fn tally(entries: impl IntoIterator<Item = (SampleKey, u64)>) -> Tally {
    let mut t = Tally::default();
    for (key, count) in entries {
        t.samples += count;
        let kernel = key.flags & IN_KERNEL != 0;
        if key.flags & IN_TARGET != 0 {
            if kernel {
                t.command_kernel += count;
                t.command_ips.push((key.ip, count));
            } else {
                t.command_user += count;
            }
        } else if key.tgid == 0 {
            t.idle += count;
        } else {
            if kernel {
                t.other_kernel += count;
                t.other_ips.push((key.ip, count));
            } else {
                t.other_user += count;
            }
            *t.other_tgids.entry(key.tgid).or_default() += count;
        }
    }
    t
}

/// Other tasks by name, most samples first. Names are read at the end,
/// so a process that has exited shows as `?`.
fn other_tasks(tgids: &BTreeMap<u32, u64>, top: usize) -> Vec<ProfileTask> {
    let mut by_name: BTreeMap<String, u64> = BTreeMap::new();
    for (tgid, count) in tgids {
        let name = std::fs::read_to_string(format!("/proc/{tgid}/comm"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into());
        *by_name.entry(name).or_default() += count;
    }
    let mut out: Vec<ProfileTask> = by_name
        .into_iter()
        .map(|(name, samples)| ProfileTask { name, samples })
        .collect();
    out.sort_by(|a, b| b.samples.cmp(&a.samples).then_with(|| a.name.cmp(&b.name)));
    out.truncate(top);
    out
}

/// A cgroup2 directory for the profiled commands, removed on drop (its
/// processes have all exited by then).
struct Cgroup {
    path: PathBuf,
    procs: File,
    id: u64,
}

impl Cgroup {
    fn create() -> Result<Cgroup> {
        let path =
            PathBuf::from(CGROUP_ROOT).join(format!("rulebench-profile-{}", std::process::id()));
        std::fs::create_dir(&path).with_context(|| {
            format!(
                "creating cgroup {} (is cgroup2 mounted on {CGROUP_ROOT}?)",
                path.display()
            )
        })?;
        let cleanup = |e| {
            let _ = std::fs::remove_dir(&path);
            e
        };
        // A cgroup2 directory's inode number is the id bpf_get_current_cgroup_id returns.
        let id = std::fs::metadata(&path)
            .map(|m| m.ino())
            .map_err(|e| cleanup(anyhow::Error::from(e)))?;
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(path.join("cgroup.procs"))
            .map_err(|e| cleanup(anyhow::Error::from(e)))
            .with_context(|| format!("opening {}/cgroup.procs", path.display()))?;
        Ok(Cgroup { path, procs, id })
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// Run one command in `cgroup`, feeding its stdin; returns its outcome.
fn run_command(cgroup: &Cgroup, argv: &[String], stdin: &str) -> Result<ProfileOutcome> {
    let procs_fd = cgroup.procs.as_raw_fd();
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: runs between fork and exec and only calls write(2) on an
    // fd opened before the fork: async-signal-safe. "0" moves the
    // writing process, i.e. the command before it execs, so every
    // instruction of it (and of anything it forks) is in the cgroup.
    unsafe {
        command.pre_exec(move || {
            if libc::write(procs_fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("running {}", argv[0]))?;
    let mut pipe = child.stdin.take().expect("stdin is piped");
    let data = stdin.as_bytes().to_vec();
    // A command may exit without reading all of it (EPIPE): its business.
    let feeder = std::thread::spawn(move || {
        let _ = pipe.write_all(&data);
    });
    let out = child
        .wait_with_output()
        .with_context(|| format!("waiting for {}", argv[0]))?;
    let elapsed_ns = started.elapsed().as_nanos() as u64;
    let _ = feeder.join();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let cut = stderr
        .char_indices()
        .map(|(i, _)| i)
        .find(|&i| stderr.len() - i <= STDERR_TAIL)
        .unwrap_or(stderr.len());
    Ok(ProfileOutcome {
        exit_code: out.status.code(),
        elapsed_ns,
        stderr: stderr[cut..].to_string(),
    })
}

fn kallsyms() -> Result<Vec<Symbol>> {
    let text = std::fs::read_to_string("/proc/kallsyms").context("reading /proc/kallsyms")?;
    let symbols = symbols::parse_kallsyms(&text);
    if !symbols::addresses_visible(&symbols) {
        bail!("/proc/kallsyms shows no addresses (kernel.kptr_restrict could not be lowered): cannot name kernel functions");
    }
    Ok(symbols)
}

pub fn run(plan: &ProfilePlan) -> Result<()> {
    validate(plan)?;
    // kallsyms hides addresses unless kptr_restrict allows them; the
    // guest is a throwaway VM, nothing to protect.
    std::fs::write("/proc/sys/kernel/kptr_restrict", "0")
        .context("writing /proc/sys/kernel/kptr_restrict")?;
    let path = pins::object(OBJECT);
    let mut ebpf = Ebpf::load_file(&path).with_context(|| format!("loading {}", path.display()))?;
    let cgroup = Cgroup::create()?;
    {
        let mut target: Array<_, u64> = Array::try_from(
            ebpf.map_mut("pf_target")
                .with_context(|| format!("{OBJECT} has no map pf_target"))?,
        )?;
        target.set(0, cgroup.id, 0)?;
    }
    let cpus = online_cpus().map_err(|(what, e)| anyhow::anyhow!("listing CPUs ({what}): {e}"))?;
    let program: &mut PerfEvent = ebpf
        .program_mut(PROGRAM)
        .with_context(|| format!("{OBJECT} has no program {PROGRAM}"))?
        .try_into()?;
    program
        .load()
        .with_context(|| format!("verifying {PROGRAM}"))?;
    let mut links = Vec::new();
    for &cpu in &cpus {
        let link = program
            .attach(
                PerfEventConfig::Software(SoftwareEvent::CpuClock),
                PerfEventScope::AllProcessesOneCpu { cpu },
                SamplePolicy::Frequency(plan.frequency_hz),
                false,
            )
            .with_context(|| format!("attaching {PROGRAM} to a cpu-clock event on CPU {cpu}"))?;
        links.push(link);
    }
    let mut outcomes = Vec::new();
    for c in &plan.commands {
        let outcome = run_command(&cgroup, &c.argv, &c.stdin)?;
        let failed = outcome.exit_code != Some(0) && !c.tolerate_failure;
        outcomes.push(outcome);
        // Later commands build on earlier ones (a ruleset, then its
        // update): stop where the host's step runner would.
        if failed {
            break;
        }
    }
    // Stop sampling before reading, so the reading is not profiled.
    for link in links {
        program.detach(link)?;
    }
    let entries: Vec<(SampleKey, u64)> = {
        let counts: HashMap<_, SampleKey, u64> = HashMap::try_from(
            ebpf.map("pf_counts")
                .with_context(|| format!("{OBJECT} has no map pf_counts"))?,
        )?;
        counts
            .iter()
            .collect::<Result<_, _>>()
            .context("reading the sample counts")?
    };
    let dropped: u64 = {
        let d: PerCpuArray<_, u64> = PerCpuArray::try_from(
            ebpf.map("pf_dropped")
                .with_context(|| format!("{OBJECT} has no map pf_dropped"))?,
        )?;
        d.get(&0, 0)?.iter().sum()
    };
    drop(cgroup);
    let t = tally(entries);
    let symbols = kallsyms()?;
    let top = plan.top as usize;
    let report = ProfileReport {
        frequency_hz: plan.frequency_hz,
        cpus: cpus.len() as u32,
        elapsed_ns: outcomes.iter().map(|o| o.elapsed_ns).sum(),
        samples: t.samples,
        idle: t.idle,
        command_user: t.command_user,
        command_kernel: t.command_kernel,
        other_user: t.other_user,
        other_kernel: t.other_kernel,
        dropped,
        command_functions: symbols::top_functions(&symbols, t.command_ips, top),
        other_functions: symbols::top_functions(&symbols, t.other_ips, top),
        other_tasks: other_tasks(&t.other_tgids, top),
        commands: outcomes,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rulebench_proto::ProfileCommand;

    #[test]
    fn plans_are_checked() {
        let ok = ProfilePlan {
            frequency_hz: 997,
            commands: vec![ProfileCommand {
                argv: vec!["true".into()],
                stdin: String::new(),
                tolerate_failure: false,
            }],
            top: 10,
        };
        assert!(validate(&ok).is_ok());
        assert!(validate(&ProfilePlan {
            frequency_hz: 0,
            ..ok.clone()
        })
        .is_err());
        assert!(validate(&ProfilePlan {
            commands: vec![],
            ..ok.clone()
        })
        .is_err());
        let empty = ProfileCommand::default();
        assert!(validate(&ProfilePlan {
            commands: vec![empty],
            ..ok
        })
        .is_err());
    }

    #[test]
    fn samples_are_sorted_into_command_idle_and_other() {
        let key = |ip, tgid, flags| SampleKey { ip, tgid, flags };
        let t = tally([
            (key(0xffff_ffff_8100_0000, 300, IN_TARGET | IN_KERNEL), 7),
            (key(0, 301, IN_TARGET), 2),
            (key(0xffff_ffff_8100_0010, 0, IN_KERNEL), 50),
            (key(0xffff_ffff_8100_0020, 12, IN_KERNEL), 3),
            (key(0, 40, 0), 1),
        ]);
        assert_eq!(t.samples, 63);
        assert_eq!((t.command_kernel, t.command_user), (7, 2));
        assert_eq!(t.idle, 50);
        assert_eq!((t.other_kernel, t.other_user), (3, 1));
        assert_eq!(t.command_ips, [(0xffff_ffff_8100_0000, 7)]);
        assert_eq!(t.other_ips, [(0xffff_ffff_8100_0020, 3)]);
        assert_eq!(
            t.other_tgids.into_iter().collect::<Vec<_>>(),
            [(12, 3), (40, 1)]
        );
    }

    #[test]
    fn the_key_matches_the_programs_layout() {
        assert_eq!(std::mem::size_of::<SampleKey>(), 16);
    }
}
