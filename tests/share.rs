//! Host directories in the guest and streamed output: a reproducer written
//! for Debian runs unchanged in the tools image, in a shared directory.

mod common;

use rulebench::image::{self, BuiltImage, LockFile};
use rulebench::vm::share::parse_share;
use rulebench::vm::{ExecRequest, ExecStreamRequest, OutputStream, ShareMount, Vm, VmOptions};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The tools image of the kernel under test: `<image>-tools` when that lock
/// exists, else the 5.10 one.
fn tools_image_name() -> String {
    let base = image::lock_path(None);
    let stem = base
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".lock.toml"))
        .unwrap_or(image::DEFAULT_IMAGE)
        .to_string();
    let tools = format!("{stem}-tools");
    if image::lock_path(Some(&tools)).exists() {
        tools
    } else {
        format!("{}-tools", image::DEFAULT_IMAGE)
    }
}

fn tools_image() -> BuiltImage {
    let path = image::lock_path(Some(&tools_image_name()));
    let lock = LockFile::load(&path).expect("loading the tools lock file");
    image::build(&lock, true).unwrap_or_else(|e| panic!("building {}: {e:#}", path.display()))
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/debian-shell")
}

fn stream(vm: &mut Vm, script: &str, cwd: &str) -> (Option<i32>, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let result = vm
        .exec_streaming(
            ExecStreamRequest {
                exec: ExecRequest {
                    argv: vec!["bash".into(), "-c".into(), script.into()],
                    timeout_ms: 300_000,
                    ..Default::default()
                },
                cwd: cwd.into(),
            },
            |stream, data| match stream {
                OutputStream::Stdout => out.extend_from_slice(data),
                OutputStream::Stderr => err.extend_from_slice(data),
            },
        )
        .unwrap_or_else(|e| panic!("{script}: {e}"));
    (
        result.exit_code,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

fn alive(pid: u32) -> bool {
    // A zombie is gone for our purposes; its stat state says Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                != Some("Z")
        })
        .unwrap_or(false)
}

/// The acceptance command, through the real CLI: output is streamed
/// line by line while the command runs, and the exit code passes through.
#[test]
fn vm_run_with_a_share_streams_and_passes_the_exit_code() {
    common::require_virtiofsd();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("from-host.txt"), b"x").unwrap();
    let script = "ls; unshare -n ip link show lo; echo first; sleep 3; echo second; exit 7";
    let mut child = Command::new(env!("CARGO_BIN_EXE_rulebench"))
        .args(["vm", "run", "--image", &tools_image_name(), "--share"])
        .arg(dir.path())
        .args(["--", "bash", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting rulebench vm run");
    let stdout = child.stdout.take().unwrap();
    let mut lines: Vec<(Instant, String)> = Vec::new();
    for line in BufReader::new(stdout).lines() {
        lines.push((Instant::now(), line.unwrap()));
    }
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(status.code(), Some(7), "stdout {text:?}\nstderr {stderr}");
    assert!(text.contains(&"from-host.txt"), "{text:?}");
    assert!(
        text.iter().any(|l| l.contains("lo: <LOOPBACK>")),
        "a new netns has lo, down: {text:?}"
    );
    let at = |want: &str| lines.iter().find(|(_, l)| l == want).unwrap().0;
    let gap = at("second") - at("first");
    assert!(
        gap >= Duration::from_secs(2),
        "\"first\" arrived only {gap:?} before \"second\": not streamed"
    );
    assert!(
        !stderr.contains("copying"),
        "the tools image shares over virtio-fs here: {stderr}"
    );
}

#[test]
fn debian_shell_tests_run_unchanged_in_a_virtiofs_share() {
    common::require_virtiofsd();
    let scratch = tempfile::tempdir().unwrap();
    let readonly = parse_share(
        &format!("{}:/tests", fixture_dir().display()),
        true,
        Path::new("/"),
    )
    .unwrap();
    let writable = parse_share(
        &format!("{}:/out", scratch.path().display()),
        false,
        Path::new("/"),
    )
    .unwrap();
    let opts = VmOptions {
        shares: vec![readonly, writable],
        ..Default::default()
    };
    let mut vm = Vm::boot(&tools_image(), &opts).expect("booting the tools image");
    let daemons = vm.virtiofsd_pids();
    let socket_dir = vm.socket_dir().unwrap();
    assert_eq!(
        vm.share_mounts,
        vec![ShareMount::VirtioFs, ShareMount::VirtioFs],
        "both shares must be virtio-fs, not copies"
    );
    assert_eq!(daemons.len(), 2, "one virtiofsd per share");
    // The guest's own view: a copy would be a plain directory of the root fs.
    let mounts = vm.sh("cat /proc/mounts").unwrap();
    for dir in ["/tests", "/out"] {
        assert!(
            mounts
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some(dir)
                    && l.split_whitespace().nth(2) == Some("virtiofs")),
            "{dir} is not a virtiofs mount in the guest:\n{mounts}"
        );
    }

    let started = Instant::now();
    let (code, out, err) = stream(&mut vm, "./run-all.sh", "/tests");
    eprintln!("suite took {:?}:\n{out}{err}", started.elapsed());
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("4 passed, 0 failed, 0 skipped"), "{out}");

    // The read-only share refuses writes; the writable one reaches the host.
    let (code, _, err) = stream(&mut vm, "touch /tests/nope", "/");
    assert_ne!(code, Some(0));
    assert!(err.contains("Read-only"), "{err}");
    let (code, out, _) = stream(&mut vm, "echo from-guest > result; pwd", "/out");
    assert_eq!((code, out.trim()), (Some(0), "/out"));
    assert_eq!(
        std::fs::read_to_string(scratch.path().join("result")).unwrap(),
        "from-guest\n",
        "a write in the writable share reaches the host"
    );

    vm.shutdown().unwrap();
    for pid in daemons {
        assert!(!alive(pid), "virtiofsd {pid} outlived its VM");
    }
    assert!(!socket_dir.exists(), "{} left behind", socket_dir.display());
}

/// Without virtiofsd the share is copied in (and the guest may restore
/// from a snapshot, since no device differs). The default 5.10 image also
/// lacks the virtiofs module; 6.12 has it built in, so virtiofsd is turned
/// off here (nextest runs each test in its own process).
#[test]
fn without_virtiofs_the_share_is_copied_in() {
    std::env::set_var(rulebench::vm::virtiofsd::VIRTIOFSD_ENV, "none");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(
        dir.path().join("sub/run.sh"),
        b"#!/bin/sh\necho copied-run\n",
    )
    .unwrap();
    std::fs::set_permissions(
        dir.path().join("sub/run.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("sub/run.sh", dir.path().join("link.sh")).unwrap();
    let share = parse_share(&dir.path().display().to_string(), true, Path::new("/")).unwrap();
    let opts = VmOptions {
        shares: vec![share],
        ..Default::default()
    };
    let mut vm = common::boot_with(&opts);
    assert!(
        matches!(&vm.share_mounts[..], [ShareMount::Copied { reason }] if reason.contains("VIRTIOFSD=none")),
        "{:?}",
        vm.share_mounts
    );
    let out = vm.sh("cd /share && ./link.sh && ls sub").unwrap();
    assert_eq!(out, "copied-run\nrun.sh\n");
    let r = vm.exec(&["sh", "-c", "touch /share/nope"]).unwrap();
    assert_ne!(r.exit_code, Some(0), "read-only copy accepted a write");
}

/// Measurement, not a check (`--run-ignored only`): cold boot to the
/// agent's first answer and initramfs size, default image vs tools image,
/// alternating so both see the same host load.
#[test]
#[ignore]
fn tools_image_boot_cost() {
    let default = common::image();
    let tools = tools_image();
    let cold = VmOptions {
        snapshot: false,
        ..Default::default()
    };
    let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..7 {
        for (i, img) in [&default, &tools].into_iter().enumerate() {
            let vm = Vm::boot(img, &cold).unwrap();
            times[i].push(vm.boot_time.as_secs_f64());
        }
    }
    for (i, img) in [&default, &tools].into_iter().enumerate() {
        let mut t = times[i].clone();
        t.sort_by(f64::total_cmp);
        eprintln!(
            "{}: initramfs {} bytes, cold boot median {:.2} s (min {:.2}, max {:.2})",
            img.name,
            img.initramfs_bytes,
            t[t.len() / 2],
            t[0],
            t[t.len() - 1]
        );
    }
}
