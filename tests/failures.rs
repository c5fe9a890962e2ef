//! Failure paths: panics, hangs and bad inputs become clear errors, and no
//! QEMU process survives its test.

mod common;
#[path = "support/leftovers.rs"]
mod leftovers;

use rulebench::image::LockFile;
use rulebench::vm::VmError;
use std::time::{Duration, Instant};

#[test]
fn guest_panic_is_a_clear_error_fast() {
    let mut vm = common::boot();
    let started = Instant::now();
    let err = vm
        .exec(&["sh", "-c", "echo c > /proc/sysrq-trigger"])
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(err, VmError::GuestPanic { .. } | VmError::QemuExited { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("sysrq") || msg.contains("panic"),
        "error should quote the console: {msg}"
    );
    assert!(
        elapsed < Duration::from_secs(30),
        "panic detection took {elapsed:?}"
    );
    drop(vm);
    assert!(
        common::own_qemu_children().is_empty(),
        "QEMU left running after a panic"
    );
}

#[test]
fn command_timeout_is_an_error_and_the_vm_stays_usable() {
    let mut vm = common::boot();
    let err = vm
        .exec_request(rulebench::vm::ExecRequest {
            argv: vec!["sleep".into(), "30".into()],
            stdin: vec![],
            timeout_ms: 500,
            env: vec![],
        })
        .unwrap_err();
    assert!(matches!(err, VmError::CommandTimeout { .. }), "{err}");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert_eq!(vm.sh("echo still-alive").unwrap().trim(), "still-alive");
}

#[test]
fn tampered_lock_hash_is_refused_naming_the_package() {
    let path = rulebench::image::lock_path(None);
    let mut lock = LockFile::load(&path).unwrap();
    let pkg = lock
        .packages
        .iter_mut()
        .find(|p| p.name == "iptables")
        .expect("iptables locked");
    pkg.sha256 = "0".repeat(64);
    let err = rulebench::image::build(&lock, true).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("iptables") && msg.contains("sha256 mismatch"),
        "{msg}"
    );
}

#[test]
fn no_qemu_survives_a_panicking_test() {
    let result = std::panic::catch_unwind(|| {
        let _vm = common::boot();
        assert!(
            !common::own_qemu_children().is_empty(),
            "expected our QEMU to run"
        );
        panic!("deliberate test panic");
    });
    assert!(result.is_err());
    assert!(
        common::own_qemu_children().is_empty(),
        "QEMU left running after a test panic"
    );
}

/// The tools image and options that share `dir` into the guest.
fn tools_image_sharing(
    dir: &std::path::Path,
) -> (rulebench::image::BuiltImage, rulebench::vm::VmOptions) {
    let lock_path = rulebench::image::lock_path(Some("bullseye-5.10-tools"));
    let image = rulebench::image::build(&LockFile::load(&lock_path).unwrap(), true).unwrap();
    let share = rulebench::vm::share::parse_share(
        &dir.display().to_string(),
        false,
        std::path::Path::new("/"),
    )
    .unwrap();
    let opts = rulebench::vm::VmOptions {
        shares: vec![share],
        ..Default::default()
    };
    (image, opts)
}

#[test]
fn nothing_of_a_shared_guest_survives_a_panicking_test() {
    common::require_virtiofsd();
    let dir = tempfile::tempdir().unwrap();
    let (image, opts) = tools_image_sharing(dir.path());
    let seen = std::sync::Mutex::new((Vec::new(), None));
    let result = std::panic::catch_unwind(|| {
        let vm = rulebench::vm::Vm::boot(&image, &opts).expect("booting with a share");
        *seen.lock().unwrap() = (vm.virtiofsd_pids(), vm.socket_dir());
        assert!(!common::own_qemu_children().is_empty());
        panic!("deliberate test panic");
    });
    assert!(result.is_err());
    let (daemons, socket_dir) = seen.into_inner().unwrap();
    assert!(
        !daemons.is_empty(),
        "the tools image shares over virtio-fs: no virtiofsd ran, so no daemon's cleanup was checked"
    );
    leftovers::assert_none_left("a test panic", socket_dir.as_deref(), &daemons);
}

#[test]
fn guest_panic_during_a_streamed_command_keeps_the_output_so_far() {
    let mut vm = common::boot();
    let mut seen = Vec::new();
    let started = Instant::now();
    let err = vm
        .exec_streaming(
            rulebench::vm::ExecStreamRequest {
                exec: rulebench::vm::ExecRequest {
                    argv: vec![
                        "sh".into(),
                        "-c".into(),
                        "echo before; sleep 1; echo c > /proc/sysrq-trigger".into(),
                    ],
                    timeout_ms: 60_000,
                    ..Default::default()
                },
                cwd: String::new(),
            },
            |_, data| seen.extend_from_slice(data),
        )
        .unwrap_err();
    assert!(
        matches!(err, VmError::GuestPanic { .. } | VmError::QemuExited { .. }),
        "{err}"
    );
    assert_eq!(seen, b"before\n", "output streamed before the panic");
    assert!(started.elapsed() < Duration::from_secs(30));
    drop(vm);
    assert!(common::own_qemu_children().is_empty());
}

#[test]
fn a_dead_virtiofsd_is_an_error_not_a_hang() {
    common::require_virtiofsd();
    let dir = tempfile::tempdir().unwrap();
    let (image, opts) = tools_image_sharing(dir.path());
    let mut vm = rulebench::vm::Vm::boot(&image, &opts).expect("booting with a share");
    assert_eq!(
        vm.share_mounts,
        [rulebench::vm::ShareMount::VirtioFs],
        "a copied share has no daemon to kill"
    );
    let pid = vm.virtiofsd_pids()[0] as i32;
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        // SAFETY: kill takes no pointers; pid is our own child daemon.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    let started = Instant::now();
    let err = vm
        .exec_streaming(
            rulebench::vm::ExecStreamRequest {
                exec: rulebench::vm::ExecRequest {
                    argv: vec!["sh".into(), "-c".into(), "sleep 4; ls /share".into()],
                    timeout_ms: 120_000,
                    ..Default::default()
                },
                cwd: String::new(),
            },
            |_, _| {},
        )
        .unwrap_err();
    killer.join().unwrap();
    let msg = err.to_string();
    assert!(msg.contains("virtiofsd"), "{msg}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    drop(vm);
    assert!(common::own_qemu_children().is_empty());
}
