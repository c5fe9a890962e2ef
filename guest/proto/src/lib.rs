//! Wire protocol between the rulebench host and the guest agent.
//!
//! Frames are a little-endian `u32` length followed by a bincode body. Every
//! request carries an id that its response echoes, so a host that reconnects
//! after a timeout can discard a stale answer instead of misattributing it.

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::io::{Read, Write};

/// Name of the virtio-serial port the agent listens on.
pub const PORT_NAME: &str = "org.rulebench.agent";
/// Line the agent prints on the console once it serves requests.
pub const READY_MARKER: &str = "RULEBENCH-AGENT-READY";
/// Refuse frames above this size: a corrupt length must not allocate gigabytes.
pub const MAX_FRAME: u32 = 512 * 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Envelope<T> {
    pub id: u64,
    pub body: T,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Request {
    Ping,
    /// Run a command to completion and collect its output.
    Exec(ExecRequest),
    /// Start a command detached from the agent (servers in namespaces);
    /// its output goes to the given file in the guest.
    Spawn {
        argv: Vec<String>,
        log_path: String,
    },
    PutFile {
        path: String,
        mode: u32,
        contents: Vec<u8>,
    },
    GetFile {
        path: String,
    },
    PowerOff,
    /// Run a command like `Exec`, in a working directory, and send its
    /// output as it comes: zero or more `Response::ExecOutput` frames with
    /// this request's id, then one `Response::Exec` whose stdout and stderr
    /// are empty (everything went out in the chunks).
    ExecStream(ExecStreamRequest),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ExecRequest {
    pub argv: Vec<String>,
    pub stdin: Vec<u8>,
    pub timeout_ms: u64,
    pub env: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Response {
    Pong {
        agent_version: String,
        kernel_release: String,
    },
    Exec(ExecResult),
    Spawned {
        pid: u32,
    },
    FileWritten,
    File {
        contents: Vec<u8>,
    },
    PoweringOff,
    /// The agent could not carry out the request (not the command's failure).
    Error {
        message: String,
    },
    /// A chunk of a streamed command's output, in the order it was read.
    ExecOutput {
        stream: OutputStream,
        data: Vec<u8>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ExecResult {
    /// Exit status when the command exited normally.
    pub exit_code: Option<i32>,
    /// Signal number when it was killed by a signal.
    pub signal: Option<i32>,
    /// True when the agent killed it on the request's timeout.
    pub timed_out: bool,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Guest-side monotonic time from spawn to exit.
    pub elapsed_ns: u64,
    /// CPU time the command spent in user mode, from the kernel's
    /// accounting at its exit (`wait4`): its own and that of the
    /// descendants it waited for. (Bincode is positional: host and agent
    /// are built together, the serde default only serves JSON readers.)
    #[serde(default)]
    pub user_ns: u64,
    /// CPU time spent in the kernel on the command's behalf, the same way.
    /// Kernel work done inside its system calls counts (an nfnetlink batch
    /// is processed in the sender's `sendmsg`); work the kernel deferred to
    /// kworkers, softirqs of other tasks or RCU callbacks does not.
    #[serde(default)]
    pub sys_ns: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("agent channel I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("agent frame encoding: {0}")]
    Codec(#[from] bincode::Error),
    #[error("agent frame of {0} bytes exceeds the {MAX_FRAME} byte limit")]
    TooLarge(u64),
}

pub fn write_frame<W: Write, T: Serialize>(w: &mut W, value: &T) -> Result<(), FrameError> {
    let body = bincode::serialize(value)?;
    if body.len() as u64 > MAX_FRAME as u64 {
        return Err(FrameError::TooLarge(body.len() as u64));
    }
    w.write_all(&(body.len() as u32).to_le_bytes())?;
    w.write_all(&body)?;
    w.flush()?;
    Ok(())
}

pub fn read_frame<R: Read, T: DeserializeOwned>(r: &mut R) -> Result<T, FrameError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len);
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len as u64));
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body)?;
    Ok(bincode::deserialize(&body)?)
}

/// Traffic probes run by `rulebench-agent probe` inside a network namespace.
/// Plan on stdin, report on stdout, both JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProbePlan {
    pub timeout_ms: u64,
    pub items: Vec<ProbeItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProbeItem {
    /// "tcp" or "udp".
    pub proto: String,
    pub addr: String,
    pub port: u16,
    pub count: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProbeReport {
    pub results: Vec<ProbeOutcome>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProbeOutcome {
    /// One entry per attempt: the identity that answered, or None when the
    /// attempt failed (refused, timed out, reset).
    pub answers: Vec<Option<String>>,
    /// Error text of the first failed attempt, for diagnostics.
    pub first_error: Option<String>,
}

/// Connection-rate load run by `rulebench-agent load` inside the client
/// namespace: connect / read the server's answer / close, as fast as
/// `concurrency` workers can, like netperf TCP_CRR. Each connection is a
/// new conntrack entry, so the first packet walks the ruleset every time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoadPlan {
    pub targets: Vec<LoadTarget>,
    /// Stop after this long (guest monotonic clock).
    pub duration_ms: u64,
    /// Also stop after this many connections in total (0: no limit).
    pub max_connections: u64,
    pub concurrency: u32,
    /// Per-connection connect/read timeout; a timeout counts as a failure.
    pub timeout_ms: u64,
    /// Seed of the target choice, so two runs pick the same sequence.
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoadTarget {
    pub addr: String,
    pub port: u16,
    /// Relative share of connections sent here.
    pub weight: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoadReport {
    /// Completed connect + answer + close cycles.
    pub connections: u64,
    pub failures: u64,
    pub elapsed_ns: u64,
    /// `connections` per second of `elapsed_ns`.
    pub connections_per_second: f64,
    /// Time from `connect()` to the established socket, successful cycles only.
    pub connect_ns: LatencySummary,
    /// Whole cycle (connect, read answer, close), successful cycles only.
    pub cycle_ns: LatencySummary,
    pub first_error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip() {
        let req = Envelope {
            id: 7,
            body: Request::Exec(ExecRequest {
                argv: vec!["uname".into(), "-r".into()],
                stdin: b"x".to_vec(),
                timeout_ms: 1000,
                env: vec![],
            }),
        };
        let mut buf = Vec::new();
        write_frame(&mut buf, &req).unwrap();
        let back: Envelope<Request> = read_frame(&mut buf.as_slice()).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn oversized_length_is_refused() {
        let buf = (MAX_FRAME + 1).to_le_bytes();
        let err = read_frame::<_, Envelope<Request>>(&mut buf.as_slice()).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge(_)));
    }
}

/// `rulebench-ebpf hooktime`: kernel functions to time, and the commands
/// (phases) to time them under. Read from the loader's stdin as JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HookPlan {
    pub functions: Vec<HookFunction>,
    pub phases: Vec<HookPhase>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HookFunction {
    pub name: String,
    /// 1-based argument index of the function's `struct nf_hook_state *`
    /// (each call is attributed to its netfilter hook); 0 for none.
    pub state_arg: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HookPhase {
    pub name: String,
    pub argv: Vec<String>,
}

/// What the loader prints: which functions could be probed, and per phase
/// every call's duration.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HookReport {
    pub functions: Vec<HookAttachment>,
    pub phases: Vec<HookPhaseReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HookAttachment {
    pub name: String,
    pub attached: bool,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HookPhaseReport {
    pub name: String,
    pub calls: Vec<HookCalls>,
    /// Calls past the per-CPU sample space (not in `calls`).
    pub dropped: u64,
    pub exit_code: Option<i32>,
    /// The phase command's stdout (it carries e.g. pktgen's result).
    pub stdout: String,
}

/// Durations of the calls of one function at one netfilter hook.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HookCalls {
    pub function: String,
    /// PREROUTING … POSTROUTING, or "" for a function without a hook state.
    pub hook: String,
    pub ns: Vec<u64>,
}

/// `Request::ExecStream`: a command whose output is streamed back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ExecStreamRequest {
    pub exec: ExecRequest,
    /// Working directory of the command; empty for the agent's own (`/`).
    pub cwd: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

#[cfg(test)]
mod stream_tests {
    use super::*;

    #[test]
    fn streamed_exec_frames_round_trip() {
        let req = Envelope {
            id: 3,
            body: Request::ExecStream(ExecStreamRequest {
                exec: ExecRequest {
                    argv: vec!["bash".into(), "-c".into(), "ls".into()],
                    ..Default::default()
                },
                cwd: "/share".into(),
            }),
        };
        let chunk = Envelope {
            id: 3,
            body: Response::ExecOutput {
                stream: OutputStream::Stderr,
                data: b"line\n".to_vec(),
            },
        };
        let mut buf = Vec::new();
        write_frame(&mut buf, &req).unwrap();
        write_frame(&mut buf, &chunk).unwrap();
        let mut rd = buf.as_slice();
        assert_eq!(read_frame::<_, Envelope<Request>>(&mut rd).unwrap(), req);
        assert_eq!(read_frame::<_, Envelope<Response>>(&mut rd).unwrap(), chunk);
    }

    #[test]
    fn older_variants_keep_their_wire_index() {
        // bincode encodes the variant index: new variants go last, so an
        // agent and host built from different revisions still agree on these.
        let bytes = bincode::serialize(&Request::PowerOff).unwrap();
        assert_eq!(bytes, 5u32.to_le_bytes());
        let bytes = bincode::serialize(&Response::Error {
            message: String::new(),
        })
        .unwrap();
        assert_eq!(&bytes[..4], &6u32.to_le_bytes());
    }
}

/// `rulebench-ebpf profile < ProfilePlan JSON`: sample every CPU while the
/// commands run one after the other, each with its stdin, and attribute
/// the samples to the commands (and their children) or to the rest of
/// the system.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ProfilePlan {
    /// Samples per second and CPU (a software cpu-clock event).
    pub frequency_hz: u64,
    pub commands: Vec<ProfileCommand>,
    /// Kernel functions kept per table, the most sampled first.
    pub top: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ProfileCommand {
    pub argv: Vec<String>,
    pub stdin: String,
    /// A non-zero exit does not stop the plan (the host's step runner
    /// tolerates the same steps: "already gone" cases of a reset).
    #[serde(default)]
    pub tolerate_failure: bool,
}

/// What the loader prints. A sample is one timer tick on one CPU, charged
/// to the task it interrupted: the commands' (their cgroup's) tasks, the
/// idle task (also when it was serving an interrupt or softirq), or any
/// other task (kworkers, ksoftirqd, RCU threads, the agent).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ProfileReport {
    pub frequency_hz: u64,
    pub cpus: u32,
    /// Guest monotonic time of the commands, summed.
    pub elapsed_ns: u64,
    /// Every sample, idle included.
    pub samples: u64,
    pub idle: u64,
    pub command_user: u64,
    pub command_kernel: u64,
    pub other_user: u64,
    pub other_kernel: u64,
    /// Samples lost because the sample map was full.
    pub dropped: u64,
    /// The commands' kernel samples by function (self samples).
    pub command_functions: Vec<ProfileFunction>,
    /// Other tasks' kernel samples by function.
    pub other_functions: Vec<ProfileFunction>,
    /// Other tasks by name (`/proc/PID/comm` at the end; `?` once gone).
    pub other_tasks: Vec<ProfileTask>,
    pub commands: Vec<ProfileOutcome>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProfileFunction {
    pub name: String,
    /// The module the function is in; empty for the kernel image.
    pub module: String,
    pub samples: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProfileTask {
    pub name: String,
    pub samples: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProfileOutcome {
    pub exit_code: Option<i32>,
    pub elapsed_ns: u64,
    /// The end of the command's stderr (it names a failure's cause).
    pub stderr: String,
}
