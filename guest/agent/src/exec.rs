//! Running commands for the host: `Exec` (to completion, output collected)
//! and `Spawn` (detached, output to a log file).

use crate::reaper;
use rulebench_proto::{ExecRequest, ExecResult};
use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// How long to keep reading stdout/stderr after the command itself exited.
/// A background process it left behind may hold the pipes open forever; the
/// agent serves one request at a time, so it must not wait for that.
pub const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// Run `request.argv` to completion. `Err` is for the agent's own failure
/// (nothing to run, cannot spawn), not for the command failing.
pub fn run(request: &ExecRequest) -> Result<ExecResult, String> {
    let (mut command, program) = piped_command(request)?;
    let reaper = reaper::global();
    let child = reaper
        .spawn(&mut command, true)
        .map_err(|err| format!("cannot run `{program}`: {err}"))?;

    feed_stdin(child.stdin, request.stdin.clone());
    let stdout = child.stdout.map(PipeCollector::start);
    let stderr = child.stderr.map(PipeCollector::start);

    let deadline =
        (request.timeout_ms > 0).then(|| child.started + Duration::from_millis(request.timeout_ms));
    let mut timed_out = false;
    let exit = match reaper.wait(child.pid, deadline) {
        Some(exit) => exit,
        None => {
            timed_out = true;
            // SAFETY: kill takes no pointers; a negative pid names the group.
            unsafe { libc::kill(-child.pid, libc::SIGKILL) };
            reaper
                .wait(child.pid, None)
                .expect("waiting without a deadline always yields the exit")
        }
    };

    let output_deadline = Instant::now() + OUTPUT_GRACE;
    let (exit_code, signal) = exit.termination.code_and_signal();
    Ok(ExecResult {
        exit_code,
        signal,
        timed_out,
        stdout: stdout.map_or_else(Vec::new, |c| c.finish(output_deadline)),
        stderr: stderr.map_or_else(Vec::new, |c| c.finish(output_deadline)),
        elapsed_ns: exit.at.saturating_duration_since(child.started).as_nanos() as u64,
        user_ns: exit.user_ns,
        sys_ns: exit.sys_ns,
    })
}

/// The command of an exec request with all three stdio streams piped, in
/// its own process group (so a timeout kills everything it started), and
/// its program name for messages.
pub fn piped_command(request: &ExecRequest) -> Result<(Command, &str), String> {
    let program = request
        .argv
        .first()
        .ok_or_else(|| "exec: empty argv".to_string())?;
    let mut command = Command::new(program);
    command
        .args(&request.argv[1..])
        .envs(request.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    Ok((command, program))
}

/// Start `argv` detached from the agent: its own session, stdin from
/// /dev/null, stdout and stderr appended to `log_path`. Returns its pid; the
/// reaper collects it whenever it dies.
pub fn spawn_detached(argv: &[String], log_path: &str) -> Result<u32, String> {
    let program = argv
        .first()
        .ok_or_else(|| "spawn: empty argv".to_string())?;
    let log = open_log(Path::new(log_path))
        .map_err(|err| format!("spawn `{program}`: cannot open log {log_path}: {err}"))?;
    let log_for_stderr = log
        .try_clone()
        .map_err(|err| format!("spawn `{program}`: cannot duplicate log fd: {err}"))?;
    let mut command = Command::new(program);
    command
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_for_stderr);
    // SAFETY: the closure runs between fork and exec and only calls setsid,
    // which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = reaper::global()
        .spawn(&mut command, false)
        .map_err(|err| format!("cannot spawn `{program}`: {err}"))?;
    Ok(child.pid as u32)
}

fn open_log(path: &Path) -> io::Result<std::fs::File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(path)
}

pub fn feed_stdin(stdin: Option<std::process::ChildStdin>, data: Vec<u8>) {
    let Some(mut stdin) = stdin else { return };
    if data.is_empty() {
        // Dropping the pipe gives the command EOF at once.
        return;
    }
    std::thread::spawn(move || {
        // The command may exit without reading everything (EPIPE); that is
        // its business, not an agent error.
        let _ = stdin.write_all(&data);
    });
}

/// Reads one pipe to EOF in a thread, but lets the caller stop waiting at a
/// deadline and take what has arrived so far.
struct PipeCollector {
    bytes: Arc<Mutex<Vec<u8>>>,
    done: mpsc::Receiver<()>,
}

impl PipeCollector {
    fn start<R: Read + Send + 'static>(mut pipe: R) -> Self {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let (done_tx, done) = mpsc::channel();
        let sink = Arc::clone(&bytes);
        std::thread::spawn(move || {
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                match pipe.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => sink
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .extend_from_slice(&chunk[..n]),
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = done_tx.send(());
        });
        PipeCollector { bytes, done }
    }

    fn finish(self, deadline: Instant) -> Vec<u8> {
        let _ = self
            .done
            .recv_timeout(deadline.saturating_duration_since(Instant::now()));
        std::mem::take(&mut *self.bytes.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(argv: &[&str]) -> ExecRequest {
        ExecRequest {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            ..ExecRequest::default()
        }
    }

    #[test]
    fn captures_stdout_stderr_and_exit_code() {
        let result = run(&request(&["sh", "-c", "echo out; echo err >&2; exit 3"])).unwrap();
        assert_eq!(result.stdout, b"out\n");
        assert_eq!(result.stderr, b"err\n");
        assert_eq!(result.exit_code, Some(3));
        assert_eq!(result.signal, None);
        assert!(!result.timed_out);
        assert!(result.elapsed_ns > 0);
    }

    #[test]
    fn reports_user_and_system_cpu_time_of_the_command_and_its_children() {
        // A shell loop is user time; a byte-at-a-time dd is system-call
        // time — in a child of the shell, so it counts only if the
        // descendants' usage is included.
        let user = run(&request(&[
            "sh",
            "-c",
            "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done",
        ]))
        .unwrap();
        assert!(user.user_ns > user.sys_ns, "{user:?}");
        let sys = run(&request(&[
            "sh",
            "-c",
            "dd if=/dev/zero of=/dev/null bs=1 count=400000 2>/dev/null",
        ]))
        .unwrap();
        assert!(sys.sys_ns > 0, "{sys:?}");
        assert!(sys.user_ns + sys.sys_ns <= sys.elapsed_ns * 2, "{sys:?}");
    }

    #[test]
    fn feeds_stdin() {
        let mut req = request(&["cat"]);
        req.stdin = b"hello through stdin".to_vec();
        let result = run(&req).unwrap();
        assert_eq!(result.stdout, b"hello through stdin");
        assert_eq!(result.exit_code, Some(0));
    }

    #[test]
    fn large_stdin_and_stdout_do_not_deadlock() {
        let mut req = request(&["cat"]);
        req.stdin = vec![b'x'; 4 * 1024 * 1024];
        let result = run(&req).unwrap();
        assert_eq!(result.stdout.len(), 4 * 1024 * 1024);
    }

    #[test]
    fn passes_env_additions() {
        let mut req = request(&["sh", "-c", "printf %s \"$RULEBENCH_TEST_VAR\""]);
        req.env = vec![("RULEBENCH_TEST_VAR".into(), "value 42".into())];
        assert_eq!(run(&req).unwrap().stdout, b"value 42");
    }

    #[test]
    fn timeout_kills_the_process_group() {
        let mut req = request(&["sh", "-c", "sleep 5 & sleep 5; echo never"]);
        req.timeout_ms = 100;
        let begin = Instant::now();
        let result = run(&req).unwrap();
        assert!(result.timed_out);
        assert_eq!(result.signal, Some(libc::SIGKILL));
        assert_eq!(result.exit_code, None);
        assert!(result.stdout.is_empty());
        // The background sleep was killed with the group, so the pipes closed
        // at once instead of after the output grace period.
        assert!(
            begin.elapsed() < Duration::from_secs(1),
            "{:?}",
            begin.elapsed()
        );
        assert!(result.elapsed_ns >= 100_000_000);
    }

    #[test]
    fn lingering_background_process_does_not_block_the_answer() {
        let result = run(&request(&["sh", "-c", "sleep 3 & echo started"])).unwrap();
        assert_eq!(result.exit_code, Some(0));
        assert_eq!(result.stdout, b"started\n");
    }

    #[test]
    fn missing_program_is_an_agent_error_naming_it() {
        let err = run(&request(&["rulebench-no-such-program"])).unwrap_err();
        assert!(err.contains("rulebench-no-such-program"), "{err}");
        assert!(err.contains("No such file"), "{err}");
    }

    #[test]
    fn many_quick_commands_all_get_their_own_status() {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        let r = run(&request(&["sh", "-c", &format!("exit {i}")])).unwrap();
                        assert_eq!(r.exit_code, Some(i));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }

    #[test]
    fn spawn_detached_writes_its_log() {
        let dir =
            std::env::temp_dir().join(format!("rulebench-agent-spawn-{}", std::process::id()));
        let log = dir.join("sub/server.log");
        let argv = vec!["sh".to_string(), "-c".into(), "echo from-detached".into()];
        let pid = spawn_detached(&argv, log.to_str().unwrap()).unwrap();
        assert!(pid > 0);
        let begin = Instant::now();
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text == "from-detached\n" {
                break;
            }
            assert!(
                begin.elapsed() < Duration::from_secs(5),
                "log says {text:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
