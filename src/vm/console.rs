//! Watches the guest's serial console (through rexpect): keeps the whole boot
//! log, and notices readiness of the agent and kernel panics as they happen.

use rexpect::error::Error as ExpectError;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Debug, Default, Clone)]
pub struct ConsoleState {
    pub lines: Vec<String>,
    pub ready: bool,
    /// The panic line, once seen.
    pub panic: Option<String>,
    /// The console socket closed (QEMU exited).
    pub closed: bool,
}

impl ConsoleState {
    pub fn tail(&self, n: usize) -> String {
        let start = self.lines.len().saturating_sub(n);
        self.lines[start..].join("\n")
    }
}

pub struct ConsoleWatcher {
    shared: Arc<(Mutex<ConsoleState>, Condvar)>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Lines that mean the guest is gone for good.
pub fn is_panic_line(line: &str) -> bool {
    line.contains("Kernel panic - not syncing") || line.contains("kernel BUG at")
}

/// Why the guest panicked, when the panic line says more than the kernel's
/// words: init is the agent, so "Attempted to kill init" means the agent
/// died, and its exit code is a wait status.
pub fn panic_cause(line: &str) -> Option<String> {
    let (_, code) = line.split_once("Attempted to kill init! exitcode=")?;
    let code = code.trim().trim_start_matches("0x");
    let status = u32::from_str_radix(code.get(..8).unwrap_or(code), 16).ok()?;
    let how = match status & 0x7f {
        0 => format!("exited with status {}", (status >> 8) & 0xff),
        signal => format!("killed by signal {signal}{}", signal_name(signal)),
    };
    Some(format!("the guest agent (PID 1) died: {how}"))
}

fn signal_name(signal: u32) -> &'static str {
    match signal {
        4 => " (SIGILL)",
        5 => " (SIGTRAP)",
        6 => " (SIGABRT)",
        7 => " (SIGBUS)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        15 => " (SIGTERM)",
        _ => "",
    }
}

/// The OOM killer's report of a process it killed.
pub fn is_oom_kill_line(line: &str) -> bool {
    line.contains("Out of memory: Killed process") || line.contains("Memory cgroup out of memory")
}

impl ConsoleWatcher {
    pub fn start(stream: UnixStream, ready_marker: &'static str) -> std::io::Result<Self> {
        let reader = stream.try_clone()?;
        let mut session = rexpect::session::spawn_stream(reader, stream, Some(200));
        let shared = Arc::new((Mutex::new(ConsoleState::default()), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (shared2, stop2) = (shared.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("console".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    let result = session.exp_string("\n");
                    let (lock, cvar) = &*shared2;
                    let mut st = lock.lock().expect("console state lock");
                    match result {
                        Ok(line) => {
                            let line = line.trim_end_matches('\r').to_string();
                            if line.contains(ready_marker) {
                                st.ready = true;
                            }
                            if is_panic_line(&line) && st.panic.is_none() {
                                st.panic = Some(line.clone());
                            }
                            st.lines.push(line);
                        }
                        Err(ExpectError::Timeout { .. }) => continue,
                        Err(ExpectError::EOF { got, .. }) => {
                            if !got.is_empty() {
                                st.lines.push(got);
                            }
                            st.closed = true;
                            cvar.notify_all();
                            return;
                        }
                        Err(_) => {
                            st.closed = true;
                            cvar.notify_all();
                            return;
                        }
                    }
                    cvar.notify_all();
                }
            })?;
        Ok(ConsoleWatcher {
            shared,
            stop,
            thread: Some(thread),
        })
    }

    pub fn snapshot(&self) -> ConsoleState {
        self.shared.0.lock().expect("console state lock").clone()
    }

    /// Wait until `pred` holds or `timeout` passes; returns the state seen.
    pub fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&ConsoleState) -> bool,
    ) -> ConsoleState {
        let (lock, cvar) = &*self.shared;
        let guard = lock.lock().expect("console state lock");
        let (guard, _) = cvar
            .wait_timeout_while(guard, timeout, |st| !pred(st))
            .expect("console state lock");
        guard.clone()
    }

    pub fn panic_line(&self) -> Option<String> {
        self.shared
            .0
            .lock()
            .expect("console state lock")
            .panic
            .clone()
    }
}

impl Drop for ConsoleWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The thread notices within one expect timeout (200 ms) or at EOF.
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_dead_init_is_named_with_its_signal_or_status() {
        let line =
            "[   12.3] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000005";
        assert_eq!(
            panic_cause(line).unwrap(),
            "the guest agent (PID 1) died: killed by signal 5 (SIGTRAP)"
        );
        let exited = "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100";
        assert_eq!(
            panic_cause(exited).unwrap(),
            "the guest agent (PID 1) died: exited with status 1"
        );
        assert!(panic_cause("Kernel panic - not syncing: sysrq triggered crash").is_none());
    }

    #[test]
    fn sees_ready_then_panic_and_keeps_the_log() {
        let (mut guest, host) = UnixStream::pair().unwrap();
        let watcher = ConsoleWatcher::start(host, "READY-MARK").unwrap();
        guest
            .write_all(b"Linux version 5.10\r\nREADY-MARK\r\n")
            .unwrap();
        let st = watcher.wait_for(Duration::from_secs(5), |s| s.ready);
        assert!(st.ready);
        guest
            .write_all(b"Kernel panic - not syncing: sysrq triggered crash\n")
            .unwrap();
        let st = watcher.wait_for(Duration::from_secs(5), |s| s.panic.is_some());
        assert!(st.panic.unwrap().contains("sysrq"));
        assert_eq!(st.lines[0], "Linux version 5.10");
        drop(guest);
        let st = watcher.wait_for(Duration::from_secs(5), |s| s.closed);
        assert!(st.closed);
    }
}
