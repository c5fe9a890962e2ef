//! The one place that waits for child processes.
//!
//! As PID 1 the agent inherits every orphan in the guest, so something must
//! call `waitpid(-1)` or zombies pile up. Any second waiter (std's
//! `Child::wait`, `Command::output`) would race with that call and lose exit
//! statuses, so all waiting goes through this module:
//!
//! * A reaper thread blocks in `waitid(P_ALL, WEXITED | WNOWAIT)`, which names
//!   a dead child *without* reaping it, then takes the table lock and reaps
//!   exactly that pid.
//! * Spawning happens under the same lock ([`Reaper::spawn`]). So a pid is in
//!   the watch table before the reaper can reap it (its status is never lost),
//!   and when `exec` fails inside `Command::spawn`, std's own internal
//!   `waitpid` on that child runs before the reaper can touch it (std asserts
//!   that this wait succeeds).
//! * Only statuses of watched pids are kept; orphans and detached servers are
//!   reaped and forgotten. A recycled pid therefore never finds a stale status.
//!
//! Callers must never call `wait` on a child themselves; [`Reaper::spawn`]
//! hands out the pid and pipes, not a `std::process::Child`.

use crate::say;
use std::collections::HashMap;
use std::io;
use std::process::{ChildStderr, ChildStdin, ChildStdout, Command};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// How a watched child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    Exited(i32),
    Signaled(i32),
}

impl Termination {
    /// (exit code, signal) as the exec result reports them.
    pub fn code_and_signal(self) -> (Option<i32>, Option<i32>) {
        match self {
            Termination::Exited(code) => (Some(code), None),
            Termination::Signaled(sig) => (None, Some(sig)),
        }
    }
}

/// A reaped child: how it ended, when the reaper saw it die, and the CPU
/// time the kernel accounted to it (and to the descendants it waited for).
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    pub termination: Termination,
    pub at: Instant,
    pub user_ns: u64,
    pub sys_ns: u64,
}

/// A freshly started child. Deliberately not a `std::process::Child`, so
/// nobody can wait on it behind the reaper's back.
pub struct Spawned {
    pub pid: i32,
    /// Taken right after `exec` succeeded.
    pub started: Instant,
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
}

#[derive(Default)]
struct Table {
    /// Watched pids: `None` while running, the exit once reaped.
    watched: HashMap<i32, Option<Exit>>,
    /// Bumped on every spawn so an idle reaper (no children) knows to look again.
    spawns: u64,
}

pub struct Reaper {
    table: Mutex<Table>,
    /// Signalled on every spawn and every recorded exit.
    changed: Condvar,
}

/// The process-wide reaper, its thread started on first use.
pub fn global() -> &'static Reaper {
    static REAPER: OnceLock<&'static Reaper> = OnceLock::new();
    REAPER.get_or_init(|| {
        let reaper: &'static Reaper = Box::leak(Box::new(Reaper {
            table: Mutex::new(Table::default()),
            changed: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("reaper".into())
            .spawn(move || reaper.run())
            .expect("cannot start the reaper thread");
        reaper
    })
}

impl Reaper {
    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic elsewhere must not stop reaping: the table stays consistent
        // because every update is a single insert or assignment.
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Start `command`. With `watch`, its exit status is kept for [`Reaper::wait`],
    /// which the caller must then call (until it returns `Some`) to free the entry.
    pub fn spawn(&self, command: &mut Command, watch: bool) -> io::Result<Spawned> {
        let mut table = self.lock();
        let mut child = command.spawn()?;
        let started = Instant::now();
        let pid = child.id() as i32;
        if watch {
            table.watched.insert(pid, None);
        }
        table.spawns += 1;
        self.changed.notify_all();
        Ok(Spawned {
            pid,
            started,
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
        })
    }

    /// Wait for a watched child to end, until `deadline` if given.
    /// `None` means the deadline passed; the child stays watched.
    pub fn wait(&self, pid: i32, deadline: Option<Instant>) -> Option<Exit> {
        let mut table = self.lock();
        loop {
            if let Some(Some(exit)) = table.watched.get(&pid) {
                let exit = *exit;
                table.watched.remove(&pid);
                return Some(exit);
            }
            table = match deadline {
                None => self.changed.wait(table).unwrap_or_else(|p| p.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return None;
                    }
                    self.changed
                        .wait_timeout(table, deadline - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    fn run(&self) {
        loop {
            let spawns_before = self.lock().spawns;
            match next_dead_child() {
                Ok((pid, at)) => self.reap(pid, at),
                Err(err) if err.raw_os_error() == Some(libc::ECHILD) => {
                    // No children at all: sleep until someone spawns one. Orphans
                    // cannot appear meanwhile, since only our own descendants get
                    // reparented to us and they need a living child of ours first.
                    let mut table = self.lock();
                    while table.spawns == spawns_before {
                        table = self.changed.wait(table).unwrap_or_else(|p| p.into_inner());
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    say!("reaper: waitid failed: {err}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    fn reap(&self, pid: i32, at: Instant) {
        let mut table = self.lock();
        let mut status = 0;
        // SAFETY: rusage is plain data; all-zero is a valid value to overwrite.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: status and usage are valid out pointers for the call.
        // wait4 rather than waitpid: the child's rusage is only available
        // at the moment it is reaped.
        let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        // reaped == -1 (ECHILD) when std already waited for a child whose
        // exec failed; nothing to record then.
        if reaped != pid {
            return;
        }
        if let Some(slot) = table.watched.get_mut(&pid) {
            *slot = Some(Exit {
                termination: decode_status(status),
                at,
                user_ns: timeval_ns(usage.ru_utime),
                sys_ns: timeval_ns(usage.ru_stime),
            });
            self.changed.notify_all();
        }
    }
}

/// Block until some child has died; name it without reaping it.
fn next_dead_child() -> io::Result<(i32, Instant)> {
    // SAFETY: siginfo_t is plain data; all-zero is a valid value to overwrite.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: info is a valid out pointer; P_ALL ignores the id argument.
    let rc = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOWAIT) };
    let at = Instant::now();
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: waitid with WEXITED filled a SIGCHLD-style siginfo.
    Ok((unsafe { info.si_pid() }, at))
}

fn timeval_ns(t: libc::timeval) -> u64 {
    (t.tv_sec.max(0) as u64) * 1_000_000_000 + (t.tv_usec.max(0) as u64) * 1_000
}

fn decode_status(status: i32) -> Termination {
    if libc::WIFSIGNALED(status) {
        Termination::Signaled(libc::WTERMSIG(status))
    } else {
        Termination::Exited(libc::WEXITSTATUS(status))
    }
}
