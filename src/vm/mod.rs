//! The VM engine: boots a guest image under QEMU, watches its console, talks
//! to its agent. It knows nothing of netfilter.

pub mod accel;
pub mod argv;
pub mod channel;
pub mod console;
pub mod process;
pub mod qmp;
pub mod share;
pub mod share_copy;
pub mod snapshot;
pub mod virtiofsd;

pub use argv::Accel;
pub use rulebench_proto::{ExecRequest, ExecResult, ExecStreamRequest, OutputStream};
pub use share::Share;

use crate::image::BuiltImage;
use channel::{AgentChannel, ChannelError};
use console::ConsoleWatcher;
use rulebench_proto::{Request, Response, PORT_NAME, READY_MARKER};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BOOT_TIMEOUT_ENV: &str = "RULEBENCH_BOOT_TIMEOUT";
pub const SNAPSHOT_ENV: &str = "RULEBENCH_SNAPSHOT";
/// Boot this bzImage (e.g. from `rulebench kernel build`) with the image's userland.
pub const KERNEL_ENV: &str = "RULEBENCH_KERNEL";
const CONSOLE_TAIL: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("starting QEMU ({argv0}): {source}")]
    Spawn {
        argv0: String,
        source: std::io::Error,
    },
    #[error("creating the VM's socket directory: {0}")]
    TempDir(std::io::Error),
    #[error(transparent)]
    Accel(#[from] accel::AccelError),
    #[error("QEMU socket {path} did not appear: {detail}")]
    Socket { path: String, detail: String },
    #[error("guest did not become ready within {secs} s ({accel}). Console tail:\n{tail}")]
    BootTimeout {
        secs: u64,
        accel: Accel,
        tail: String,
    },
    #[error("guest kernel panicked{}: {line}\nConsole tail:\n{tail}", panic_note(.line))]
    GuestPanic { line: String, tail: String },
    #[error("QEMU exited unexpectedly ({status}). {stderr}\nConsole tail:\n{tail}")]
    QemuExited {
        status: String,
        stderr: String,
        tail: String,
    },
    #[error("guest agent: {0}")]
    Agent(String),
    #[error("command {argv:?} timed out after {timeout_ms} ms in the guest (killed; the VM is still usable). stdout tail: {stdout_tail}")]
    CommandTimeout {
        argv: Vec<String>,
        timeout_ms: u64,
        stdout_tail: String,
    },
    #[error("QMP: {0}")]
    Qmp(String),
    #[error("{0}")]
    Share(String),
    #[error(transparent)]
    Virtiofsd(#[from] virtiofsd::DaemonError),
}

fn panic_note(line: &str) -> String {
    console::panic_cause(line)
        .map(|c| format!(" ({c})"))
        .unwrap_or_default()
}

#[derive(Debug, Clone)]
pub struct VmOptions {
    /// None: decide by `RULEBENCH_ACCEL` or a KVM probe.
    pub accel: Option<Accel>,
    pub memory_mb: u32,
    pub smp: u32,
    pub boot_timeout: Duration,
    pub extra_cmdline: String,
    /// Boot this bzImage instead of the image's kernel (custom kernels).
    pub kernel: Option<PathBuf>,
    /// Restore a saved booted guest instead of cold-booting (much faster
    /// under TCG). `RULEBENCH_SNAPSHOT=0` turns it off. Never used for a
    /// guest with virtio-fs shares (its devices differ).
    pub snapshot: bool,
    /// Host directories to make visible in the guest (virtio-fs, or a copy).
    pub shares: Vec<Share>,
}

impl Default for VmOptions {
    fn default() -> Self {
        let boot_secs = std::env::var(BOOT_TIMEOUT_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(90);
        VmOptions {
            accel: None,
            memory_mb: 1024,
            smp: 1,
            boot_timeout: Duration::from_secs(boot_secs),
            extra_cmdline: String::new(),
            kernel: std::env::var_os(KERNEL_ENV).map(PathBuf::from),
            snapshot: std::env::var(SNAPSHOT_ENV)
                .map(|v| v != "0")
                .unwrap_or(true),
            shares: Vec::new(),
        }
    }
}

pub struct Vm {
    child: Option<Child>,
    console: Option<ConsoleWatcher>,
    qmp: Option<qmp::QmpClient>,
    agent: Option<AgentChannel>,
    dir: Option<tempfile::TempDir>,
    /// One virtiofsd per virtio-fs share; stopped after QEMU.
    daemons: Vec<virtiofsd::Daemon>,
    /// How each of `VmOptions::shares` reached the guest, in order.
    pub share_mounts: Vec<ShareMount>,
    accel: Accel,
    /// Console lines seen before the last command started.
    exec_console_mark: usize,
    /// Host time from QEMU start to the agent's first answer.
    pub boot_time: Duration,
    pub kernel_release: String,
}

/// How a share reached the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareMount {
    VirtioFs,
    /// Copied in after boot, for this reason (no virtiofsd, no driver …).
    Copied {
        reason: String,
    },
}

/// `Some(error)` when QEMU has exited, with its stderr and the console tail.
fn exited_error(child: &mut Child, tail: impl FnOnce() -> String) -> Option<VmError> {
    let status = child.try_wait().ok()??;
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    Some(VmError::QemuExited {
        status: status.to_string(),
        stderr: stderr.trim().to_string(),
        tail: tail(),
    })
}

fn wait_for_socket(
    path: &Path,
    child: &mut Child,
    timeout: Duration,
) -> Result<UnixStream, VmError> {
    let started = Instant::now();
    loop {
        if let Ok(s) = UnixStream::connect(path) {
            return Ok(s);
        }
        if let Some(exited) = exited_error(child, String::new) {
            return Err(exited);
        }
        if started.elapsed() > timeout {
            return Err(VmError::Socket {
                path: path.display().to_string(),
                detail: format!("not connectable after {:?}", timeout),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Vm {
    /// Boot a guest: restored from a saved snapshot of a booted guest when
    /// `opts.snapshot` (created on first use), else a cold boot.
    pub fn boot(image: &BuiltImage, opts: &VmOptions) -> Result<Vm, VmError> {
        let kernel = opts.kernel.clone().unwrap_or_else(|| image.kernel.clone());
        let accel = match opts.accel {
            Some(a) => a,
            None => accel::resolve(&kernel, &crate::image::cache_root())?,
        };
        let transport = (!opts.shares.is_empty()).then(|| {
            // A custom kernel may have virtio-fs built in; a failed mount
            // still falls back to the copy.
            share::choose_transport(virtiofsd::locate(), image.virtiofs || opts.kernel.is_some())
        });
        let daemon = match &transport {
            Some(share::Transport::VirtioFs(daemon)) => Some(daemon),
            _ => None,
        };
        let template = argv::QemuConfig {
            accel,
            memory_mb: opts.memory_mb,
            smp: opts.smp,
            kernel,
            initrd: Some(image.initramfs.clone()),
            cmdline: argv::kernel_cmdline(&format!("{} {}", image.cmdline, opts.extra_cmdline)),
            socket_dir: PathBuf::new(),
            virtiofs_tags: match daemon {
                Some(_) => (0..opts.shares.len()).map(share::tag).collect(),
                None => Vec::new(),
            },
        };
        let mut vm = Self::boot_template(image, &template, opts, daemon)?;
        if let Some(transport) = transport {
            vm.attach_shares(&opts.shares, transport)?;
        }
        Ok(vm)
    }

    fn boot_template(
        image: &BuiltImage,
        template: &argv::QemuConfig,
        opts: &VmOptions,
        daemon: Option<&virtiofsd::Virtiofsd>,
    ) -> Result<Vm, VmError> {
        if opts.snapshot && daemon.is_none() {
            let state = snapshot::ensure(image, template, opts)?;
            match Self::restore(template, &state, opts) {
                Ok(vm) => return Ok(vm),
                Err(e) => {
                    // A stale or incompatible state file must not break the run.
                    eprintln!("rulebench: snapshot restore failed ({e}); cold-booting instead");
                    let _ = std::fs::remove_file(&state);
                }
            }
        }
        let virtiofs = daemon.map(|d| (d, opts.shares.as_slice()));
        Self::cold_boot_with(template, opts, virtiofs)
    }

    /// Mount (virtio-fs) or copy each share; a virtio-fs mount that fails
    /// falls back to the copy, saying why on stderr.
    fn attach_shares(
        &mut self,
        shares: &[Share],
        transport: share::Transport,
    ) -> Result<(), VmError> {
        for (index, s) in shares.iter().enumerate() {
            let mut reason = match &transport {
                share::Transport::VirtioFs(_) => match self.mount_virtiofs(&share::tag(index), s) {
                    Ok(()) => {
                        self.share_mounts.push(ShareMount::VirtioFs);
                        continue;
                    }
                    Err(e) => format!("mounting virtio-fs failed: {e}"),
                },
                share::Transport::Copy { reason } => reason.clone(),
            };
            eprintln!(
                "rulebench: copying {} into the guest at {} ({reason}); changes in the guest \
                 stay there",
                s.host_dir.display(),
                s.guest_path
            );
            let skipped = self.copy_dir_in(&s.host_dir, &s.guest_path)?;
            if !skipped.is_empty() {
                eprintln!(
                    "rulebench: not copied (neither file, directory nor symlink): {}",
                    skipped
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            if s.readonly {
                for argv in share::readonly_bind_commands(&s.guest_path) {
                    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                    self.exec_checked(&argv)?;
                }
                reason.push_str(", read-only by a bind mount");
            }
            self.share_mounts.push(ShareMount::Copied { reason });
        }
        Ok(())
    }

    fn mount_virtiofs(&mut self, tag: &str, s: &Share) -> Result<(), VmError> {
        for argv in share::virtiofs_mount_commands(tag, &s.guest_path, s.readonly) {
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            self.exec_checked(&argv)?;
        }
        Ok(())
    }

    /// Run `argv` (120 s timeout); a non-zero exit is an error quoting its stderr.
    pub fn exec_checked(&mut self, argv: &[&str]) -> Result<ExecResult, VmError> {
        let r = self.exec(argv)?;
        if r.exit_code != Some(0) {
            return Err(VmError::Agent(format!(
                "{argv:?} failed (exit {:?}, signal {:?}): {}{}",
                r.exit_code,
                r.signal,
                String::from_utf8_lossy(&r.stderr).trim(),
                self.oom_note(&r)
            )));
        }
        Ok(r)
    }

    fn start_qemu(
        template: &argv::QemuConfig,
        extra: &[&str],
        virtiofs: Option<(&virtiofsd::Virtiofsd, &[Share])>,
    ) -> Result<(Vm, Instant), VmError> {
        process::sweep_stale_dirs(&std::env::temp_dir());
        let dir = tempfile::Builder::new()
            .prefix(process::VM_DIR_PREFIX)
            .tempdir()
            .map_err(VmError::TempDir)?;
        process::claim_dir(dir.path()).map_err(VmError::TempDir)?;
        let cfg = argv::QemuConfig {
            socket_dir: dir.path().to_path_buf(),
            ..template.clone()
        };
        let mut argv = argv::qemu_argv(&cfg, PORT_NAME);
        argv.extend(extra.iter().map(|s| s.to_string()));
        let started = Instant::now();
        // QEMU connects to the vhost-user sockets as it starts: daemons first.
        let mut daemons = Vec::new();
        if let Some((daemon, shares)) = virtiofs {
            for (index, s) in shares.iter().enumerate() {
                daemons.push(virtiofsd::Daemon::start(
                    daemon,
                    &argv::virtiofs_socket(dir.path(), index),
                    &s.host_dir,
                    s.readonly,
                    &dir.path().join(format!("virtiofsd{index}.log")),
                )?);
            }
        }
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        process::die_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|source| VmError::Spawn {
            argv0: argv[0].clone(),
            source,
        })?;
        let vm = Vm {
            child: Some(child),
            console: None,
            qmp: None,
            agent: None,
            dir: Some(dir),
            daemons,
            share_mounts: Vec::new(),
            accel: template.accel,
            exec_console_mark: 0,
            boot_time: Duration::ZERO,
            kernel_release: String::new(),
        };
        Ok((vm, started))
    }

    pub(crate) fn cold_boot(template: &argv::QemuConfig, opts: &VmOptions) -> Result<Vm, VmError> {
        Self::cold_boot_with(template, opts, None)
    }

    fn cold_boot_with(
        template: &argv::QemuConfig,
        opts: &VmOptions,
        virtiofs: Option<(&virtiofsd::Virtiofsd, &[Share])>,
    ) -> Result<Vm, VmError> {
        let (mut vm, started) = Self::start_qemu(template, &[], virtiofs)?;
        vm.attach(opts.boot_timeout, started)?;
        if let Some(kernel) = &opts.kernel {
            vm.install_builtin_module_list(kernel)?;
        }
        Ok(vm)
    }

    /// A custom kernel has everything built in, but the image has no
    /// /lib/modules for its release, so modprobe would call built-in modules
    /// missing. Install the build's modules.builtin and index it.
    fn install_builtin_module_list(&mut self, kernel: &Path) -> Result<(), VmError> {
        let release = self.kernel_release.clone();
        let dir = format!("/lib/modules/{release}");
        if self
            .exec(&["test", "-e", &format!("{dir}/modules.dep")])?
            .exit_code
            == Some(0)
        {
            return Ok(());
        }
        let build_dir = kernel
            .ancestors()
            .find(|d| d.join("modules.builtin").is_file());
        if let Some(build_dir) = build_dir {
            for name in ["modules.builtin", "modules.builtin.modinfo"] {
                if let Ok(bytes) = std::fs::read(build_dir.join(name)) {
                    self.put_file(&format!("{dir}/{name}"), &bytes, 0o644)?;
                }
            }
        } else {
            eprintln!(
                "rulebench: no modules.builtin found next to {}; modprobe of built-in modules will fail",
                kernel.display()
            );
        }
        self.sh(&format!("mkdir -p {dir} && depmod {release}"))?;
        Ok(())
    }

    fn restore(template: &argv::QemuConfig, state: &Path, opts: &VmOptions) -> Result<Vm, VmError> {
        let (mut vm, started) = Self::start_qemu(template, &["-incoming", "defer"], None)?;
        vm.connect_console_and_qmp()?;
        let qmp = vm.qmp.as_mut().expect("qmp connected");
        let uri = format!("exec:cat {}", shell_quote(&state.display().to_string()));
        qmp.migrate_incoming(&uri).map_err(VmError::Qmp)?;
        qmp.wait_migration(opts.boot_timeout)
            .map_err(VmError::Qmp)?;
        qmp.cont().map_err(VmError::Qmp)?;
        vm.connect_agent()?;
        // Every restored guest starts from the same RNG state: stir in host entropy.
        let mut seed = [0u8; 64];
        if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
            use std::io::Read;
            let _ = f.read_exact(&mut seed);
        }
        vm.put_file("/dev/urandom", &seed, 0o666)?;
        vm.boot_time = started.elapsed();
        Ok(vm)
    }

    /// Save the running guest's full state into `path` and stop QEMU.
    pub(crate) fn save_state(mut self, path: &Path) -> Result<(), VmError> {
        let qmp = self
            .qmp
            .as_mut()
            .ok_or_else(|| VmError::Qmp("not connected".into()))?;
        qmp.stop().map_err(VmError::Qmp)?;
        let uri = format!("exec:cat > {}", shell_quote(&path.display().to_string()));
        qmp.migrate(&uri).map_err(VmError::Qmp)?;
        qmp.wait_migration(Duration::from_secs(300))
            .map_err(VmError::Qmp)?;
        self.teardown();
        Ok(())
    }

    fn socket(&self, name: &str) -> PathBuf {
        self.dir.as_ref().expect("vm dir").path().join(name)
    }

    fn connect_console_and_qmp(&mut self) -> Result<(), VmError> {
        let path = self.socket(argv::CONSOLE_SOCKET);
        let child = self.child.as_mut().expect("child");
        let console = wait_for_socket(&path, child, Duration::from_secs(10))?;
        self.console =
            Some(
                ConsoleWatcher::start(console, READY_MARKER).map_err(|e| VmError::Socket {
                    path: "console".into(),
                    detail: e.to_string(),
                })?,
            );
        let path = self.socket(argv::QMP_SOCKET);
        let child = self.child.as_mut().expect("child");
        let qmp_stream = wait_for_socket(&path, child, Duration::from_secs(10))?;
        self.qmp = Some(qmp::QmpClient::connect(qmp_stream).map_err(VmError::Qmp)?);
        Ok(())
    }

    fn connect_agent(&mut self) -> Result<(), VmError> {
        let path = self.socket(argv::AGENT_SOCKET);
        let child = self.child.as_mut().expect("child");
        let agent = wait_for_socket(&path, child, Duration::from_secs(10))?;
        self.agent = Some(AgentChannel::new(agent).map_err(|e| VmError::Agent(e.to_string()))?);
        // The agent said it was ready on the console: a first request that
        // still goes unanswered is rare and needs the console to explain.
        let first = self
            .request(Request::Ping, Duration::from_secs(30))
            .map_err(|e| match e {
                VmError::Agent(message) => VmError::Agent(format!(
                    "{message} (first request after the agent announced itself). Console tail:\n{}",
                    self.console_tail()
                )),
                other => other,
            })?;
        match first {
            Response::Pong { kernel_release, .. } => self.kernel_release = kernel_release,
            other => {
                return Err(VmError::Agent(format!(
                    "unexpected answer to ping: {other:?}"
                )))
            }
        }
        Ok(())
    }

    fn attach(&mut self, boot_timeout: Duration, started: Instant) -> Result<(), VmError> {
        self.connect_console_and_qmp()?;
        // Wait for the agent's ready line, a panic, or QEMU's exit.
        let deadline = started + boot_timeout;
        loop {
            let st = self
                .console
                .as_ref()
                .expect("console")
                .wait_for(Duration::from_millis(200), |s| {
                    s.ready || s.panic.is_some() || s.closed
                });
            self.check_alive()?;
            if st.ready {
                break;
            }
            if Instant::now() > deadline {
                return Err(VmError::BootTimeout {
                    secs: boot_timeout.as_secs(),
                    accel: self.accel,
                    tail: self.console_tail(),
                });
            }
        }
        self.connect_agent()?;
        self.boot_time = started.elapsed();
        Ok(())
    }

    pub fn accel(&self) -> Accel {
        self.accel
    }

    /// Pids of this VM's virtiofsd daemons (tests check they are gone after).
    pub fn virtiofsd_pids(&self) -> Vec<u32> {
        self.daemons.iter().map(virtiofsd::Daemon::pid).collect()
    }

    /// The directory of this VM's sockets and logs (removed on teardown).
    pub fn socket_dir(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.path().to_path_buf())
    }

    pub fn qemu_version(&self) -> String {
        self.qmp
            .as_ref()
            .map(|q| q.qemu_version.clone())
            .unwrap_or_default()
    }

    pub fn console_tail(&self) -> String {
        self.console
            .as_ref()
            .map(|c| c.snapshot().tail(CONSOLE_TAIL))
            .unwrap_or_default()
    }

    pub fn console_log(&self) -> String {
        self.console
            .as_ref()
            .map(|c| c.snapshot().lines.join("\n"))
            .unwrap_or_default()
    }

    /// Err when the guest panicked or QEMU is gone.
    fn check_alive(&mut self) -> Result<(), VmError> {
        let exited = self
            .child
            .as_mut()
            .expect("child")
            .try_wait()
            .ok()
            .flatten()
            .is_some();
        if exited {
            // QEMU exits (-no-reboot) as soon as the kernel panics; the last
            // console bytes may still sit in the socket. Read them up to EOF
            // before deciding, or the error would lose the panic message.
            if let Some(c) = self.console.as_ref() {
                c.wait_for(Duration::from_secs(2), |s| s.closed);
            }
        }
        if let Some(line) = self.console.as_ref().and_then(|c| c.panic_line()) {
            // Give the console a moment to deliver the rest of the trace.
            if let Some(c) = self.console.as_ref() {
                c.wait_for(Duration::from_millis(300), |s| s.closed);
            }
            return Err(VmError::GuestPanic {
                line,
                tail: self.console_tail(),
            });
        }
        let console = self.console.as_ref();
        let child = self.child.as_mut().expect("child");
        let tail = || {
            console
                .map(|c| c.snapshot().tail(CONSOLE_TAIL))
                .unwrap_or_default()
        };
        if let Some(exited) = exited_error(child, tail) {
            return Err(exited);
        }
        for (index, daemon) in self.daemons.iter_mut().enumerate() {
            if let Some(how) = daemon.exited() {
                return Err(VmError::Share(format!(
                    "virtiofsd of share {index} exited ({how}); the guest's I/O on it would hang"
                )));
            }
        }
        Ok(())
    }

    fn request(&mut self, req: Request, timeout: Duration) -> Result<Response, VmError> {
        self.request_streaming(req, timeout, |_, _| {})
    }

    /// A request whose partial answers (streamed output) go to `on_output`.
    fn request_streaming(
        &mut self,
        req: Request,
        timeout: Duration,
        on_output: impl FnMut(OutputStream, &[u8]),
    ) -> Result<Response, VmError> {
        let mut agent = self
            .agent
            .take()
            .ok_or_else(|| VmError::Agent("no agent connection".into()))?;
        let mut failure: Option<VmError> = None;
        let alive = || match self.check_alive() {
            Ok(()) => Ok(()),
            Err(e) => {
                let msg = e.to_string();
                failure = Some(e);
                Err(msg)
            }
        };
        let result = agent.call_streaming(req, timeout, alive, on_output);
        self.agent = Some(agent);
        match result {
            Ok(Response::Error { message }) => Err(VmError::Agent(message)),
            Ok(resp) => Ok(resp),
            Err(ChannelError::Dead(_)) => Err(failure.expect("liveness failure recorded")),
            Err(e) => {
                // The channel may have broken because the guest died: QEMU's
                // exit and the console's panic line can trail the closed
                // socket a little, so look for them before blaming the agent.
                let deadline = Instant::now() + Duration::from_secs(3);
                while Instant::now() < deadline {
                    self.check_alive()?;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(VmError::Agent(e.to_string()))
            }
        }
    }

    /// Run a command; a guest-side timeout is an error (the VM stays usable).
    pub fn exec_request(&mut self, req: ExecRequest) -> Result<ExecResult, VmError> {
        let host_timeout = host_timeout(req.timeout_ms);
        let argv = req.argv.clone();
        let timeout_ms = req.timeout_ms;
        self.mark_console();
        match self.request(Request::Exec(req), host_timeout)? {
            Response::Exec(r) if r.timed_out => {
                let out = String::from_utf8_lossy(&r.stdout);
                let tail: String = out
                    .chars()
                    .rev()
                    .take(300)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                Err(VmError::CommandTimeout {
                    argv,
                    timeout_ms,
                    stdout_tail: tail,
                })
            }
            Response::Exec(r) => Ok(r),
            other => Err(VmError::Agent(format!(
                "unexpected answer to exec: {other:?}"
            ))),
        }
    }

    /// Run a command in `req.cwd`, handing its output to `on_output` chunk
    /// by chunk as the guest reads it; the result carries no output. A
    /// guest-side timeout is an error (the VM stays usable).
    pub fn exec_streaming(
        &mut self,
        req: ExecStreamRequest,
        on_output: impl FnMut(OutputStream, &[u8]),
    ) -> Result<ExecResult, VmError> {
        let host_timeout = host_timeout(req.exec.timeout_ms);
        let argv = req.exec.argv.clone();
        let timeout_ms = req.exec.timeout_ms;
        self.mark_console();
        match self.request_streaming(Request::ExecStream(req), host_timeout, on_output)? {
            Response::Exec(r) if r.timed_out => Err(VmError::CommandTimeout {
                argv,
                timeout_ms,
                stdout_tail: "(streamed)".into(),
            }),
            Response::Exec(r) => Ok(r),
            other => Err(VmError::Agent(format!(
                "unexpected answer to a streamed exec: {other:?}"
            ))),
        }
    }

    fn mark_console(&mut self) {
        self.exec_console_mark = self
            .console
            .as_ref()
            .map(|c| c.snapshot().lines.len())
            .unwrap_or(0);
    }

    /// The OOM killer's console report printed while the last command ran,
    /// if any: a command killed by SIGKILL may have been its victim. The
    /// report can trail the command's end on the serial line, so this waits
    /// for it up to a second.
    pub fn last_exec_oom_kill(&self) -> Option<String> {
        let console = self.console.as_ref()?;
        let mark = self.exec_console_mark;
        let seen = |s: &console::ConsoleState| {
            s.lines
                .iter()
                .skip(mark)
                .any(|l| console::is_oom_kill_line(l))
        };
        let st = console.wait_for(Duration::from_secs(1), seen);
        st.lines
            .iter()
            .skip(mark)
            .find(|l| console::is_oom_kill_line(l))
            .cloned()
    }

    /// What a failed command's error adds when the OOM killer killed it.
    fn oom_note(&self, r: &ExecResult) -> String {
        // 137: a shell reporting that its child died of SIGKILL.
        let killed = r.signal == Some(libc::SIGKILL) || r.exit_code == Some(128 + libc::SIGKILL);
        if !killed {
            return String::new();
        }
        self.last_exec_oom_kill()
            .map(|l| format!("\nkilled by the guest's OOM killer: {}", l.trim()))
            .unwrap_or_default()
    }

    /// Run `argv` with a 120 s timeout and no stdin.
    pub fn exec(&mut self, argv: &[&str]) -> Result<ExecResult, VmError> {
        self.exec_request(ExecRequest {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            stdin: Vec::new(),
            timeout_ms: 120_000,
            env: Vec::new(),
        })
    }

    /// Run a shell script (busybox sh) and return stdout; non-zero exit is an
    /// error carrying the script and its stderr.
    pub fn sh(&mut self, script: &str) -> Result<String, VmError> {
        let r = self.exec(&["sh", "-c", script])?;
        if r.exit_code != Some(0) {
            return Err(VmError::Agent(format!(
                "script failed (exit {:?}, signal {:?}): {}\nstderr: {}{}",
                r.exit_code,
                r.signal,
                script,
                String::from_utf8_lossy(&r.stderr).trim(),
                self.oom_note(&r)
            )));
        }
        Ok(String::from_utf8_lossy(&r.stdout).into_owned())
    }

    /// Start a detached process in the guest (servers); its output goes to `log_path`.
    pub fn spawn(&mut self, argv: &[&str], log_path: &str) -> Result<u32, VmError> {
        let req = Request::Spawn {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            log_path: log_path.to_string(),
        };
        match self.request(req, Duration::from_secs(30))? {
            Response::Spawned { pid } => Ok(pid),
            other => Err(VmError::Agent(format!(
                "unexpected answer to spawn: {other:?}"
            ))),
        }
    }

    pub fn put_file(&mut self, path: &str, contents: &[u8], mode: u32) -> Result<(), VmError> {
        let req = Request::PutFile {
            path: path.to_string(),
            mode,
            contents: contents.to_vec(),
        };
        match self.request(req, Duration::from_secs(120))? {
            Response::FileWritten => Ok(()),
            other => Err(VmError::Agent(format!(
                "unexpected answer to put-file: {other:?}"
            ))),
        }
    }

    pub fn get_file(&mut self, path: &str) -> Result<Vec<u8>, VmError> {
        match self.request(
            Request::GetFile {
                path: path.to_string(),
            },
            Duration::from_secs(120),
        )? {
            Response::File { contents } => Ok(contents),
            other => Err(VmError::Agent(format!(
                "unexpected answer to get-file: {other:?}"
            ))),
        }
    }

    pub fn qmp_status(&mut self) -> Result<String, VmError> {
        self.qmp
            .as_mut()
            .ok_or_else(|| VmError::Qmp("not connected".into()))?
            .status()
            .map_err(VmError::Qmp)
    }

    /// Orderly end: QMP quit, then make sure the process is gone.
    pub fn shutdown(mut self) -> Result<(), VmError> {
        self.teardown();
        Ok(())
    }

    fn teardown(&mut self) {
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                if let Some(q) = self.qmp.as_mut() {
                    let _ = q.quit();
                }
                let deadline = Instant::now() + Duration::from_secs(3);
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        self.agent = None;
        self.qmp = None;
        self.console = None;
        // After QEMU: a daemon whose peer is gone exits by itself or is killed.
        self.daemons.clear();
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// How long the host waits for a command with a guest-side timeout of
/// `timeout_ms` (0: none): the guest's own timeout plus slack for the answer.
fn host_timeout(timeout_ms: u64) -> Duration {
    if timeout_ms == 0 {
        Duration::from_secs(24 * 3600)
    } else {
        Duration::from_millis(timeout_ms) + Duration::from_secs(30)
    }
}

/// Quote for the `sh -c` QEMU uses to run `exec:` migration commands.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
