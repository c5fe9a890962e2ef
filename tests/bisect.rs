//! `rulebench bisect-run` keeps git's exit-code contract: 0 good, 1 bad,
//! 125 skip when the kernel does not build.

mod common;

use std::process::Command;

/// The deciding test of the demonstration: good on 5.10, bad on anything else.
#[test]
#[ignore = "bisect demo: run through `rulebench bisect-run --test kernel_is_5_10`"]
fn kernel_is_5_10() {
    let mut vm = common::boot();
    let release = vm.sh("uname -r").unwrap();
    assert!(release.starts_with("5.10."), "kernel {release} is not 5.10");
}

fn bisect_run(args: &[&str]) -> i32 {
    let out = Command::new(env!("CARGO_BIN_EXE_rulebench"))
        .arg("bisect-run")
        .args(args)
        .env_remove("RULEBENCH_IMAGE")
        .env_remove("RULEBENCH_KERNEL")
        .output()
        .expect("running rulebench bisect-run");
    eprintln!(
        "stderr of bisect-run {args:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.status.code().expect("bisect-run exited normally")
}

#[test]
fn good_kernel_exits_0_and_bad_kernel_exits_1() {
    let good = bisect_run(&[
        "--image-kernel",
        "--image",
        "bullseye-5.10",
        "--test",
        "kernel_is_5_10",
    ]);
    assert_eq!(good, 0, "5.10 must be good");
    let bad = bisect_run(&[
        "--image-kernel",
        "--image",
        "bookworm-6.1-bullseye-userland",
        "--test",
        "kernel_is_5_10",
    ]);
    assert_eq!(bad, 1, "6.1 must be bad");
}

#[test]
fn kernel_that_does_not_build_exits_125() {
    let tree = tempfile::tempdir().unwrap();
    std::fs::write(tree.path().join("Makefile"), "defconfig:\n\tfalse\n").unwrap();
    std::fs::create_dir_all(tree.path().join("scripts/kconfig")).unwrap();
    std::fs::write(
        tree.path().join("scripts/kconfig/merge_config.sh"),
        "#!/bin/sh\nexit 1\n",
    )
    .unwrap();
    let code = bisect_run(&[
        "--src",
        tree.path().to_str().unwrap(),
        "--test",
        "kernel_is_5_10",
    ]);
    assert_eq!(code, 125);
}
