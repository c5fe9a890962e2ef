//! Faults from outside the command under test: QEMU killed, the agent
//! killed or crashed, the guest out of memory, a damaged image cache. Each
//! is a clear error well before any timeout and leaves nothing behind.

mod common;
#[path = "support/leftovers.rs"]
mod leftovers;

use rulebench::image::build;
use rulebench::vm::{ExecRequest, Vm, VmError, VmOptions};
use std::time::{Duration, Instant};

fn sh_request(script: &str, timeout_ms: u64) -> ExecRequest {
    ExecRequest {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        timeout_ms,
        ..Default::default()
    }
}

/// Drop `vm` and check that nothing of it survives.
fn drop_and_check(vm: Vm, what: &str) {
    let dir = vm.socket_dir();
    let daemons = vm.virtiofsd_pids();
    drop(vm);
    leftovers::assert_none_left(what, dir.as_deref(), &daemons);
}

#[test]
fn qemu_killed_mid_command_is_an_error_naming_the_signal_fast() {
    let mut vm = common::boot();
    let qemu = common::own_qemu_children();
    assert_eq!(qemu.len(), 1, "expected exactly our QEMU: {qemu:?}");
    let pid = qemu[0] as i32;
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        // SAFETY: kill takes no pointers; pid is our own QEMU child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    let started = Instant::now();
    let err = vm
        .exec_request(sh_request("sleep 60", 120_000))
        .unwrap_err();
    let elapsed = started.elapsed();
    killer.join().unwrap();
    assert!(matches!(err, VmError::QemuExited { .. }), "{err}");
    let msg = err.to_string();
    eprintln!("after {elapsed:?}: {msg}");
    assert!(
        msg.contains("QEMU exited") && msg.contains("signal: 9"),
        "the error should say QEMU died of SIGKILL: {msg}"
    );
    assert!(
        elapsed < Duration::from_secs(15),
        "QEMU's death took {elapsed:?} to notice"
    );
    let started = Instant::now();
    let next = vm.exec(&["true"]).unwrap_err();
    assert!(matches!(next, VmError::QemuExited { .. }), "{next}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the next call took {:?} to fail",
        started.elapsed()
    );
    drop_and_check(vm, "QEMU was killed");
}

/// The agent is PID 1, which the kernel shields from signals it has no
/// handler for, even SIGKILL from root in the same namespace.
#[test]
fn sigkill_to_the_agent_is_ignored_and_the_guest_stays_usable() {
    let mut vm = common::boot();
    let r = vm.exec(&["kill", "-KILL", "1"]).unwrap();
    assert_eq!(r.exit_code, Some(0), "{r:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(vm.sh("echo still-here").unwrap().trim(), "still-here");
    drop_and_check(vm, "SIGKILL to the agent");
}

/// An agent that really dies (here: its code overwritten with breakpoint
/// instructions through /proc/1/mem, like a crash) takes the kernel down
/// with "Attempted to kill init"; the error says the agent died and how.
#[test]
fn a_crashed_agent_is_a_clear_error_fast() {
    let mut vm = common::boot();
    let crash = r#"
        set -e
        line=$(grep ' r-xp .* /init$' /proc/1/maps | head -n 1)
        range=${line%% *}
        start=$((0x${range%-*})); end=$((0x${range#*-}))
        dd if=/dev/zero bs=4096 count=$(((end - start) / 4096)) 2>/dev/null \
          | tr '\000' '\314' \
          | dd of=/proc/1/mem bs=4096 seek=$((start / 4096)) conv=notrunc 2>/dev/null
    "#;
    let started = Instant::now();
    let err = vm.exec_request(sh_request(crash, 60_000)).unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(err, VmError::GuestPanic { .. } | VmError::QemuExited { .. }),
        "{err}"
    );
    let msg = err.to_string();
    eprintln!("after {elapsed:?}: {msg}");
    assert!(
        msg.contains("Attempted to kill init") && msg.contains("the guest agent (PID 1) died"),
        "the error should say the agent died: {msg}"
    );
    assert!(
        elapsed < Duration::from_secs(30),
        "the agent's death took {elapsed:?} to notice"
    );
    drop_and_check(vm, "the agent crashed");
}

/// A command that allocates more than the guest has is killed by the OOM
/// killer (never the agent: init is exempt); the result says SIGKILL, the
/// error names the OOM kill, and the guest goes on.
#[test]
fn an_oom_killed_command_says_so_and_the_guest_stays_usable() {
    let opts = VmOptions {
        // Small, so the allocation fills it quickly under TCG; a cold boot,
        // so no snapshot is saved for this one memory size.
        memory_mb: 256,
        snapshot: false,
        ..Default::default()
    };
    let mut vm = common::boot_with(&opts);
    // tail keeps the last lines of a stream without newlines: all of it.
    let hog = ExecRequest {
        argv: vec!["tail".into(), "/dev/zero".into()],
        timeout_ms: 300_000,
        ..Default::default()
    };
    let started = Instant::now();
    let r = vm.exec_request(hog).unwrap();
    eprintln!("tail /dev/zero ended after {:?}: {r:?}", started.elapsed());
    assert_eq!(r.signal, Some(libc::SIGKILL), "{r:?}");
    let oom = vm.last_exec_oom_kill();
    let oom = oom.expect("the console reports the OOM kill");
    assert!(oom.contains("(tail)"), "{oom}");
    let err = vm.sh("tail /dev/zero").unwrap_err().to_string();
    eprintln!("{err}");
    assert!(
        err.contains("OOM killer") && err.contains("(tail)"),
        "{err}"
    );
    assert_eq!(vm.sh("echo after-oom").unwrap().trim(), "after-oom");
    drop_and_check(vm, "an OOM kill");
}

/// A truncated initramfs in the image cache is noticed at the next build
/// (size and sha256 against the manifest) and rebuilt to the same bytes,
/// instead of booting a broken archive. Runs on a private copy of the
/// cache, so the shared one is never damaged.
#[test]
fn a_truncated_cached_initramfs_is_detected_and_rebuilt() {
    let good = common::image();
    let private = tempfile::tempdir().unwrap();
    let shared = rulebench::image::cache_root();
    let image_dir = good.initramfs.parent().unwrap();
    let rel = image_dir.strip_prefix(&shared).unwrap();
    std::fs::create_dir_all(private.path().join(rel)).unwrap();
    for name in [build::KERNEL_FILE, build::INITRAMFS_FILE] {
        std::fs::copy(image_dir.join(name), private.path().join(rel).join(name)).unwrap();
    }
    // Copied as is: its recorded paths name the shared cache, and the copy
    // must still be read as the files beside it.
    std::fs::copy(
        image_dir.join("manifest.json"),
        private.path().join(rel).join("manifest.json"),
    )
    .unwrap();
    // The rebuild reads the pinned .debs from the shared cache.
    std::os::unix::fs::symlink(shared.join("debs"), private.path().join("debs")).unwrap();
    std::env::set_var(build::CACHE_ENV, private.path());

    let copy = common::image();
    assert_eq!(copy.sha256, good.sha256);
    assert!(copy.initramfs.starts_with(private.path()));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&copy.initramfs)
        .unwrap();
    f.set_len(good.initramfs_bytes / 2).unwrap();
    drop(f);

    let rebuilt = common::image();
    assert_eq!(
        rebuilt.sha256, good.sha256,
        "the rebuild gives the same image"
    );
    assert_eq!(
        std::fs::metadata(&rebuilt.initramfs).unwrap().len(),
        good.initramfs_bytes,
        "the truncated initramfs was replaced"
    );
}
