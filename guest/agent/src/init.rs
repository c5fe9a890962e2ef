//! The agent as the guest's /init (PID 1): prepare a minimal system, find the
//! host channel, announce readiness on the console, serve until told to power
//! off. Nothing here may return: PID 1 exiting panics the kernel, so every
//! failure ends in [`power_off`] with the reason on the console.

use crate::channel::FdChannel;
use crate::power::power_off;
use crate::serve_loop::serve;
use crate::{exec, handlers, loopback, mounts, reaper, say, virtio_port};
use rulebench_proto::{ExecRequest, PORT_NAME, READY_MARKER};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const EARLY_MODULES: &str = "/etc/rulebench/modules-early";
const PORT_TIMEOUT: Duration = Duration::from_secs(20);
const PORT_POLL: Duration = Duration::from_millis(10);
const RECONNECT_PAUSE: Duration = Duration::from_millis(20);
const MODPROBE_TIMEOUT_MS: u64 = 120_000;

pub fn run() -> ! {
    // A panic in PID 1 would otherwise end as an opaque kernel panic.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        power_off("the agent panicked");
    }));

    mount_filesystems();
    // Before any thread exists: children inherit it, and setting the
    // environment is only sound while single-threaded.
    std::env::set_var("PATH", PATH);
    reaper::global();

    if let Err(err) = loopback::bring_up("lo") {
        say!("warning: cannot bring up lo: {err}");
    }
    load_early_modules(Path::new(EARLY_MODULES));

    let port = virtio_port::open_named_port(
        Path::new(virtio_port::SYSFS_PORTS),
        Path::new("/dev"),
        PORT_NAME,
        PORT_TIMEOUT,
        PORT_POLL,
    )
    .unwrap_or_else(|err| power_off(&format!("fatal: {err}")));
    let mut channel = FdChannel::new(port.into())
        .unwrap_or_else(|err| power_off(&format!("fatal: agent port: {err}")));

    let mut stdout = std::io::stdout();
    // Leading newline: firmware and kernel output may have left the cursor mid-line.
    let _ = writeln!(stdout, "\n{READY_MARKER}");
    let _ = stdout.flush();

    match serve(&mut channel, handlers::handle, RECONNECT_PAUSE) {
        Ok(()) => power_off("the host asked for it"),
        Err(err) => power_off(&format!("fatal: agent channel broke: {err}")),
    }
}

fn mount_filesystems() {
    let (dev, rest) = mounts::GUEST_MOUNTS
        .split_first()
        .expect("mount table starts with /dev");
    let dev_result = mounts::mount(dev);
    // Only now can /dev/console be opened to report anything.
    ensure_console_fds();
    let results =
        std::iter::once((dev, dev_result)).chain(rest.iter().map(|m| (m, mounts::mount(m))));
    for (mount, result) in results {
        match result {
            Ok(()) => {}
            Err(err) if mount.optional => say!("warning: {err}"),
            Err(err) => power_off(&format!("fatal: {err}")),
        }
    }
    if let Err(err) = mounts::link_dev_fds() {
        say!("warning: {err}");
    }
}

/// Make fds 0-2 the console. When the initramfs lacks /dev/console the kernel
/// starts init with them closed and std then points them at /dev/null (or
/// aborts if that is missing too — so the image must carry both nodes).
fn ensure_console_fds() {
    let needs_console = |fd: i32| {
        // SAFETY: stat is plain data; fstat only writes into it.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd, &mut st) } == -1 {
            return true;
        }
        let is_char = st.st_mode & libc::S_IFMT == libc::S_IFCHR;
        is_char && st.st_rdev == libc::makedev(1, 3) // /dev/null
    };
    let missing: Vec<i32> = (0..3).filter(|&fd| needs_console(fd)).collect();
    if missing.is_empty() {
        return;
    }
    // SAFETY: a NUL-terminated path; the fd is only dup'ed and closed here.
    unsafe {
        let console = libc::open(c"/dev/console".as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
        if console == -1 {
            return;
        }
        for fd in missing {
            if fd != console {
                libc::dup2(console, fd);
            }
        }
        if console > 2 {
            libc::close(console);
        }
    }
}

/// `modprobe -a` everything listed in `list` (one name per line, `#` comments).
fn load_early_modules(list: &Path) {
    let text = match std::fs::read_to_string(list) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return,
        Err(err) => {
            say!("warning: cannot read {}: {err}", list.display());
            return;
        }
    };
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(String::from)
        .collect();
    if names.is_empty() {
        return;
    }
    let mut argv = vec!["modprobe".to_string(), "-a".to_string()];
    argv.extend(names.iter().cloned());
    let request = ExecRequest {
        argv,
        timeout_ms: MODPROBE_TIMEOUT_MS,
        ..ExecRequest::default()
    };
    match exec::run(&request) {
        Ok(result) if result.exit_code == Some(0) => {}
        Ok(result) => say!(
            "ERROR: modprobe -a {} failed (exit {:?}, signal {:?}, timed out {}): {}",
            names.join(" "),
            result.exit_code,
            result.signal,
            result.timed_out,
            String::from_utf8_lossy(&result.stderr).trim_end()
        ),
        Err(err) => say!("ERROR: loading early modules: {err}"),
    }
}
