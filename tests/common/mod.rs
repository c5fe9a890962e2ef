//! Shared helpers for guest tests: the pinned image and a booted VM.
#![allow(dead_code)]

use rulebench::image::{self, BuiltImage, LockFile};
use rulebench::vm::{Vm, VmOptions};

pub fn image() -> BuiltImage {
    let path = image::lock_path(None);
    let lock = LockFile::load(&path).expect("loading the image lock file");
    image::build(&lock, true).unwrap_or_else(|e| panic!("building image {}: {e:#}", path.display()))
}

pub fn boot() -> Vm {
    boot_with(&VmOptions::default())
}

pub fn boot_with(opts: &VmOptions) -> Vm {
    let image = image();
    Vm::boot(&image, opts).unwrap_or_else(|e| panic!("booting {}: {e}", image.name))
}

/// QEMU processes whose command line mentions a rulebench VM directory.
pub fn rulebench_qemu_pids() -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.starts_with("qemu-system") && cmdline.contains("rulebench-vm-") {
            pids.push(pid);
        }
    }
    pids
}

/// The QEMU process of this test process (a child of ours), if any.
pub fn own_qemu_children() -> Vec<u32> {
    let me = std::process::id();
    rulebench_qemu_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit(')').next().map(str::to_string))
                .and_then(|rest| {
                    rest.split_whitespace()
                        .nth(1)
                        .and_then(|p| p.parse::<u32>().ok())
                })
                == Some(me)
        })
        .collect()
}

/// The kernel release guests of this run should report: the image's own,
/// unless `RULEBENCH_KERNEL` boots a custom kernel (then only the agent's
/// answer is known).
pub fn expected_release(vm: &Vm) -> String {
    if std::env::var_os(rulebench::vm::KERNEL_ENV).is_some() {
        vm.kernel_release.clone()
    } else {
        image().kernel_release
    }
}

/// This host's virtiofsd, or a failure that says how to install it:
/// without one every share is a copy, and a virtio-fs test that returned
/// early would pass having checked nothing. Every Debian release packages it, so there is no skip.
pub fn require_virtiofsd() {
    if let Err(why) = rulebench::vm::virtiofsd::locate() {
        panic!(
            "this test needs virtiofsd and found none ({why}). Install it: Debian bookworm \
             `apt-get install qemu-system-common` (/usr/lib/qemu/virtiofsd, pulled in by \
             qemu-system-x86), Debian trixie and later `apt-get install virtiofsd`"
        );
    }
}
