//! QEMU command line, built from small pure pieces so each can be
//! snapshot-tested without starting anything.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct QemuConfig {
    pub accel: Accel,
    pub memory_mb: u32,
    pub smp: u32,
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    /// Per-VM directory holding the console, QMP and agent sockets.
    pub socket_dir: PathBuf,
    /// virtio-fs tags, one device each; its virtiofsd listens on
    /// [`virtiofs_socket`] in `socket_dir`. Empty: no shared memory either.
    pub virtiofs_tags: Vec<String>,
}

pub const CONSOLE_SOCKET: &str = "console.sock";
pub const CONSOLE_LOG: &str = "console.log";
pub const QMP_SOCKET: &str = "qmp.sock";
pub const AGENT_SOCKET: &str = "agent.sock";

/// Socket of the virtiofsd serving virtio-fs device `index`.
pub fn virtiofs_socket(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("virtiofs{index}.sock"))
}

pub fn machine_args() -> Vec<String> {
    // Plain `pc`: q35 boots slower under TCG and microvm prints nothing (FACTS.md).
    [
        "-M",
        "pc",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-vga",
        "none",
    ]
    .map(String::from)
    .to_vec()
}

pub fn accel_args(accel: Accel) -> Vec<String> {
    match accel {
        Accel::Kvm => ["-accel", "kvm", "-cpu", "host"],
        Accel::Tcg => ["-accel", "tcg", "-cpu", "max"],
    }
    .map(String::from)
    .to_vec()
}

pub fn resource_args(memory_mb: u32, smp: u32) -> Vec<String> {
    vec![
        "-m".into(),
        format!("{memory_mb}M"),
        "-smp".into(),
        smp.to_string(),
    ]
}

/// The kernel command line: serial console, power off instead of reboot on
/// panic, and no slow legacy probing.
pub fn kernel_cmdline(extra: &str) -> String {
    let base = "console=ttyS0,115200 panic=-1 oops=panic quiet loglevel=4 rdinit=/init \
                i8042.noaux i8042.nokbd i8042.nopnp tsc=unstable random.trust_cpu=on \
                nokaslr mitigations=off";
    if extra.trim().is_empty() {
        base.to_string()
    } else {
        format!("{base} {}", extra.trim())
    }
}

pub fn kernel_args(kernel: &Path, initrd: Option<&Path>, cmdline: &str) -> Vec<String> {
    let mut args = vec!["-kernel".into(), kernel.display().to_string()];
    if let Some(initrd) = initrd {
        args.push("-initrd".into());
        args.push(initrd.display().to_string());
    }
    args.push("-append".into());
    args.push(cmdline.to_string());
    args
}

/// Serial console on a socket (watched with rexpect) and mirrored to a log
/// file, so output written before the host connects is never lost.
pub fn serial_args(dir: &Path) -> Vec<String> {
    vec![
        "-chardev".into(),
        format!(
            "socket,id=console,path={},server=on,wait=off,logfile={}",
            dir.join(CONSOLE_SOCKET).display(),
            dir.join(CONSOLE_LOG).display()
        ),
        "-serial".into(),
        "chardev:console".into(),
    ]
}

pub fn qmp_args(dir: &Path) -> Vec<String> {
    vec![
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", dir.join(QMP_SOCKET).display()),
    ]
}

pub fn agent_args(dir: &Path, port_name: &str) -> Vec<String> {
    vec![
        "-device".into(),
        "virtio-serial-pci,id=agentbus".into(),
        "-chardev".into(),
        format!(
            "socket,id=agent,path={},server=on,wait=off",
            dir.join(AGENT_SOCKET).display()
        ),
        "-device".into(),
        format!("virtserialport,bus=agentbus.0,chardev=agent,name={port_name}"),
    ]
}

/// vhost-user devices (virtiofsd) map guest memory, so it must be a shared
/// memory file: the whole `-m` as one memfd backend on one NUMA node.
pub fn shared_memory_args(memory_mb: u32) -> Vec<String> {
    vec![
        "-object".into(),
        format!("memory-backend-memfd,id=mem,size={memory_mb}M,share=on"),
        "-numa".into(),
        "node,memdev=mem".into(),
    ]
}

/// One virtio-fs device per tag, each on its virtiofsd's socket.
pub fn virtiofs_args(dir: &Path, tags: &[String]) -> Vec<String> {
    let mut args = Vec::new();
    for (index, tag) in tags.iter().enumerate() {
        args.extend([
            "-chardev".to_string(),
            format!(
                "socket,id=vfs{index},path={}",
                virtiofs_socket(dir, index).display()
            ),
            "-device".into(),
            format!("vhost-user-fs-pci,chardev=vfs{index},tag={tag}"),
        ]);
    }
    args
}

/// Guests get no NIC: all traffic stays inside guest network namespaces.
pub fn no_network_args() -> Vec<String> {
    vec!["-nic".into(), "none".into()]
}

pub fn lifecycle_args() -> Vec<String> {
    vec!["-no-reboot".into()]
}

pub fn qemu_argv(cfg: &QemuConfig, port_name: &str) -> Vec<String> {
    let mut argv = vec!["qemu-system-x86_64".to_string()];
    argv.extend(machine_args());
    argv.extend(accel_args(cfg.accel));
    argv.extend(resource_args(cfg.memory_mb, cfg.smp));
    if !cfg.virtiofs_tags.is_empty() {
        argv.extend(shared_memory_args(cfg.memory_mb));
    }
    argv.extend(kernel_args(
        &cfg.kernel,
        cfg.initrd.as_deref(),
        &cfg.cmdline,
    ));
    argv.extend(serial_args(&cfg.socket_dir));
    argv.extend(qmp_args(&cfg.socket_dir));
    argv.extend(agent_args(&cfg.socket_dir, port_name));
    argv.extend(virtiofs_args(&cfg.socket_dir, &cfg.virtiofs_tags));
    argv.extend(no_network_args());
    argv.extend(lifecycle_args());
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(accel: Accel) -> QemuConfig {
        QemuConfig {
            accel,
            memory_mb: 1024,
            smp: 1,
            kernel: "/img/vmlinuz".into(),
            initrd: Some("/img/initramfs.cpio.gz".into()),
            cmdline: kernel_cmdline(""),
            socket_dir: "/tmp/vm".into(),
            virtiofs_tags: vec![],
        }
    }

    #[test]
    fn tcg_argv() {
        insta::assert_yaml_snapshot!(qemu_argv(&cfg(Accel::Tcg), "org.rulebench.agent"));
    }

    #[test]
    fn kvm_argv() {
        insta::assert_yaml_snapshot!(qemu_argv(&cfg(Accel::Kvm), "org.rulebench.agent"));
    }

    #[test]
    fn tcg_argv_with_two_shares() {
        let cfg = QemuConfig {
            virtiofs_tags: vec!["rbshare0".into(), "rbshare1".into()],
            ..cfg(Accel::Tcg)
        };
        insta::assert_yaml_snapshot!(qemu_argv(&cfg, "org.rulebench.agent"));
    }

    #[test]
    fn no_nic_is_ever_configured() {
        let argv = qemu_argv(&cfg(Accel::Tcg), "p");
        assert!(argv.windows(2).any(|w| w == ["-nic", "none"]));
        assert!(!argv
            .iter()
            .any(|a| a.contains("netdev") || a.contains("user,")));
    }
}
