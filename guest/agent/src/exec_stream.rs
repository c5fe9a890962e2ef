//! `ExecStream`: run a command and hand its output to the caller chunk by
//! chunk as the pipes deliver it (so a shell script's lines reach the host
//! as they are printed), then its exit.

use crate::exec::{feed_stdin, piped_command, OUTPUT_GRACE};
use crate::reaper::{self, Exit};
use rulebench_proto::{ExecResult, ExecStreamRequest, OutputStream};
use std::io::{self, Read};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Chunks read while one is being sent are merged up to this size, so a
/// command printing fast makes few frames, and a slow one one per write.
const MAX_CHUNK: usize = 64 * 1024;

enum Event {
    Output(OutputStream, Vec<u8>),
    /// A pipe reached EOF (or broke).
    Closed,
    Exited {
        exit: Exit,
        timed_out: bool,
    },
}

/// Run `request`, calling `emit` with each chunk of output in the order it
/// was read. `emit` returns false when nobody listens any more (the host
/// left): the command's process group is then killed. The result carries
/// no output. `Err` is for the agent's own failure (nothing to run, cannot
/// spawn, no such working directory).
pub fn run(
    request: &ExecStreamRequest,
    mut emit: impl FnMut(OutputStream, &[u8]) -> bool,
) -> Result<ExecResult, String> {
    let (mut command, program) = piped_command(&request.exec)?;
    if !request.cwd.is_empty() {
        command.current_dir(&request.cwd);
    }
    let reaper = reaper::global();
    let child = reaper.spawn(&mut command, true).map_err(|err| {
        if request.cwd.is_empty() {
            format!("cannot run `{program}`: {err}")
        } else {
            format!("cannot run `{program}` in {}: {err}", request.cwd)
        }
    })?;
    let (pid, started) = (child.pid, child.started);
    feed_stdin(child.stdin, request.exec.stdin.clone());

    let (events, inbox) = mpsc::channel();
    let mut open_pipes = 0;
    if let Some(pipe) = child.stdout {
        open_pipes += 1;
        forward_pipe(pipe, OutputStream::Stdout, events.clone());
    }
    if let Some(pipe) = child.stderr {
        open_pipes += 1;
        forward_pipe(pipe, OutputStream::Stderr, events.clone());
    }
    let deadline = (request.exec.timeout_ms > 0)
        .then(|| started + Duration::from_millis(request.exec.timeout_ms));
    std::thread::spawn(move || {
        let (exit, timed_out) = match reaper.wait(pid, deadline) {
            Some(exit) => (exit, false),
            None => {
                kill_group(pid);
                let exit = reaper
                    .wait(pid, None)
                    .expect("waiting without a deadline always yields the exit");
                (exit, true)
            }
        };
        let _ = events.send(Event::Exited { exit, timed_out });
    });

    let mut exited: Option<(Exit, bool)> = None;
    // After the exit, output is read only until this deadline: a background
    // process the command left behind may hold the pipes open forever.
    let mut grace_end: Option<Instant> = None;
    let mut listening = true;
    let mut pending = Pending::default();
    while open_pipes > 0 || exited.is_none() {
        let event = match grace_end {
            None => inbox.recv().map_err(|_| ()),
            Some(end) => inbox
                .recv_timeout(end.saturating_duration_since(Instant::now()))
                .map_err(|_| ()),
        };
        let Ok(first) = event else { break };
        // Take everything already queued before sending, to merge chunks.
        for event in std::iter::once(first).chain(inbox.try_iter()) {
            match event {
                Event::Output(stream, data) => {
                    if let Some((s, d)) = pending.push(stream, data) {
                        listening = send(&mut emit, listening, pid, s, &d);
                    }
                }
                Event::Closed => open_pipes -= 1,
                Event::Exited { exit, timed_out } => {
                    exited = Some((exit, timed_out));
                    grace_end = Some(Instant::now() + OUTPUT_GRACE);
                }
            }
        }
        if let Some((s, d)) = pending.take() {
            listening = send(&mut emit, listening, pid, s, &d);
        }
    }
    let (exit, timed_out) = exited.expect("the loop ends only after the exit");
    let (exit_code, signal) = exit.termination.code_and_signal();
    Ok(ExecResult {
        exit_code,
        signal,
        timed_out,
        stdout: Vec::new(),
        stderr: Vec::new(),
        elapsed_ns: exit.at.saturating_duration_since(started).as_nanos() as u64,
        user_ns: exit.user_ns,
        sys_ns: exit.sys_ns,
    })
}

/// Send one chunk while the host listens; once it has left, kill the
/// command (once) and drop the rest.
fn send(
    emit: &mut impl FnMut(OutputStream, &[u8]) -> bool,
    listening: bool,
    pid: i32,
    stream: OutputStream,
    data: &[u8],
) -> bool {
    if !listening {
        return false;
    }
    if emit(stream, data) {
        return true;
    }
    kill_group(pid);
    false
}

fn kill_group(pid: i32) {
    // SAFETY: kill takes no pointers; a negative pid names the group.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
}

fn forward_pipe<R: Read + Send + 'static>(
    mut pipe: R,
    stream: OutputStream,
    events: mpsc::Sender<Event>,
) {
    std::thread::spawn(move || {
        let mut chunk = vec![0u8; MAX_CHUNK];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    if events
                        .send(Event::Output(stream, chunk[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = events.send(Event::Closed);
    });
}

/// Consecutive chunks of one stream, merged up to [`MAX_CHUNK`].
#[derive(Default)]
struct Pending {
    chunk: Option<(OutputStream, Vec<u8>)>,
}

impl Pending {
    /// Add a chunk; returns the previous one when it cannot be merged.
    fn push(&mut self, stream: OutputStream, data: Vec<u8>) -> Option<(OutputStream, Vec<u8>)> {
        match &mut self.chunk {
            Some((s, d)) if *s == stream && d.len() + data.len() <= MAX_CHUNK => {
                d.extend_from_slice(&data);
                None
            }
            _ => self.chunk.replace((stream, data)),
        }
    }

    fn take(&mut self) -> Option<(OutputStream, Vec<u8>)> {
        self.chunk.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rulebench_proto::ExecRequest;

    fn request(script: &str) -> ExecStreamRequest {
        ExecStreamRequest {
            exec: ExecRequest {
                argv: vec!["sh".into(), "-c".into(), script.into()],
                timeout_ms: 10_000,
                ..Default::default()
            },
            cwd: String::new(),
        }
    }

    #[test]
    fn lines_arrive_while_the_command_runs() {
        let begin = Instant::now();
        let mut arrivals = Vec::new();
        let result = run(
            &request("echo first; sleep 1; echo second >&2; exit 3"),
            |stream, data| {
                arrivals.push((begin.elapsed(), stream, data.to_vec()));
                true
            },
        )
        .unwrap();
        assert_eq!(result.exit_code, Some(3));
        assert!(result.stdout.is_empty() && result.stderr.is_empty());
        assert_eq!(arrivals.len(), 2, "{arrivals:?}");
        assert_eq!(
            (arrivals[0].1, arrivals[0].2.as_slice()),
            (OutputStream::Stdout, &b"first\n"[..])
        );
        assert_eq!(
            (arrivals[1].1, arrivals[1].2.as_slice()),
            (OutputStream::Stderr, &b"second\n"[..])
        );
        // The first line came before the sleep ended, not with the exit.
        assert!(
            arrivals[1].0 - arrivals[0].0 >= Duration::from_millis(800),
            "{arrivals:?}"
        );
    }

    #[test]
    fn runs_in_the_requested_directory() {
        let dir = std::env::temp_dir().canonicalize().unwrap();
        let mut req = request("pwd");
        req.cwd = dir.display().to_string();
        let mut out = Vec::new();
        run(&req, |_, d| {
            out.extend_from_slice(d);
            true
        })
        .unwrap();
        let want = format!("{}\n", dir.display());
        assert_eq!(String::from_utf8_lossy(&out), want);
    }

    #[test]
    fn a_missing_directory_is_an_agent_error_naming_it() {
        let mut req = request("true");
        req.cwd = "/rulebench-no-such-dir".into();
        let err = run(&req, |_, _| true).unwrap_err();
        assert!(err.contains("/rulebench-no-such-dir"), "{err}");
    }

    #[test]
    fn a_departed_listener_kills_the_command() {
        let begin = Instant::now();
        let result = run(
            &request("while :; do echo tick; sleep 0.05; done"),
            |_, _| false,
        )
        .unwrap();
        assert_eq!(result.signal, Some(libc::SIGKILL));
        assert!(begin.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn timeout_kills_and_reports() {
        let mut req = request("echo before; sleep 5");
        req.exec.timeout_ms = 200;
        let mut out = Vec::new();
        let result = run(&req, |_, d| {
            out.extend_from_slice(d);
            true
        })
        .unwrap();
        assert!(result.timed_out);
        assert_eq!(out, b"before\n");
    }

    #[test]
    fn large_output_arrives_complete_and_in_order() {
        let mut out = Vec::new();
        let mut frames = 0;
        let result = run(&request("seq 1 200000"), |_, d| {
            frames += 1;
            assert!(d.len() <= MAX_CHUNK);
            out.extend_from_slice(d);
            true
        })
        .unwrap();
        assert_eq!(result.exit_code, Some(0));
        let want: String = (1..=200000).map(|i| format!("{i}\n")).collect();
        assert_eq!(String::from_utf8(out).unwrap(), want);
        assert!(frames >= 2);
    }

    #[test]
    fn chunks_of_one_stream_merge_but_streams_keep_their_order() {
        let mut p = Pending::default();
        assert!(p.push(OutputStream::Stdout, b"a".to_vec()).is_none());
        assert!(p.push(OutputStream::Stdout, b"b".to_vec()).is_none());
        let out = p.push(OutputStream::Stderr, b"c".to_vec()).unwrap();
        assert_eq!(out, (OutputStream::Stdout, b"ab".to_vec()));
        assert_eq!(p.take(), Some((OutputStream::Stderr, b"c".to_vec())));
        assert!(p.take().is_none());
    }
}
