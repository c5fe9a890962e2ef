//! `rulebench bisect-run` keeps git's exit-code contract: 0 good, 1 bad,
//! 125 skip when the kernel does not build or its guest does not come up,
//! 128 when the selection cannot decide; and every recipe the docs show
//! selects a test that boots a guest.

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
    bisect_run_with(args, &[]).0
}

/// Exit code and stderr of `rulebench bisect-run ARGS` with `env` set.
fn bisect_run_with(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rulebench"))
        .arg("bisect-run")
        .args(args)
        .env_remove("RULEBENCH_IMAGE")
        .env_remove("RULEBENCH_KERNEL")
        .envs(env.iter().copied())
        .output()
        .expect("running rulebench bisect-run");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    eprintln!("stderr of bisect-run {args:?}:\n{stderr}");
    (
        out.status.code().expect("bisect-run exited normally"),
        stderr,
    )
}

/// The arguments after `bisect-run` of every recipe in README.md and
/// docs/*.md (single quotes group words, as the shell does).
fn documented_recipes() -> Vec<Vec<String>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    files.extend(
        std::fs::read_dir(root.join("docs"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "md")),
    );
    let mut recipes = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for line in text.lines() {
            let Some((_, args)) = line.split_once("bisect-run ") else {
                continue;
            };
            if !line.trim_start().starts_with("git bisect run")
                && !line.trim_start().starts_with("rulebench bisect-run")
            {
                continue;
            }
            let args = args.split('#').next().unwrap_or_default();
            let mut words = Vec::new();
            for (i, part) in args.split('\'').enumerate() {
                if i % 2 == 1 {
                    words.push(part.to_string());
                } else {
                    words.extend(part.split_whitespace().map(str::to_string));
                }
            }
            recipes.push(words);
        }
    }
    recipes
}

#[test]
fn every_documented_recipe_selects_a_test_that_boots_a_guest() {
    let recipes = documented_recipes();
    assert!(
        recipes.len() >= 2,
        "expected the docs to show bisect recipes, found {recipes:?}"
    );
    for recipe in recipes {
        let mut args: Vec<&str> = recipe.iter().map(String::as_str).collect();
        args.push("--list");
        let (code, stderr) = bisect_run_with(&args, &[]);
        assert_eq!(code, 0, "recipe {recipe:?} cannot decide:\n{stderr}");
        let guest_tests = stderr
            .lines()
            .filter(|l| l.trim_start().starts_with("rulebench::"))
            .count();
        assert!(
            guest_tests >= 1,
            "recipe {recipe:?} selects no guest test:\n{stderr}"
        );
    }
}

#[test]
fn a_selection_that_cannot_decide_aborts() {
    let (code, stderr) = bisect_run_with(&["--test", "correctness::differential", "--list"], &[]);
    assert_eq!(code, 128);
    assert!(stderr.contains("cannot tell kernels apart"), "{stderr}");
    let (code, stderr) = bisect_run_with(&["--budget", "no such budget", "--list"], &[]);
    assert_eq!(code, 128);
    assert!(stderr.contains("known budgets"), "{stderr}");
    let (code, _) = bisect_run_with(&["--test", "test(=no_such_test)", "--list"], &[]);
    assert_eq!(code, 128);
}

#[test]
fn a_kernel_whose_guest_does_not_come_up_is_skipped() {
    // Not a kernel at all: QEMU refuses it.
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("bzImage");
    std::fs::write(&junk, vec![0x5a_u8; 4096]).unwrap();
    let (code, stderr) =
        bisect_run_with(&["--kernel", junk.to_str().unwrap(), "--test", "boot"], &[]);
    assert_eq!(code, 125, "{stderr}");
    assert!(stderr.contains("did not come up"), "{stderr}");
    // A real kernel that is not up within the boot timeout.
    let (code, stderr) = bisect_run_with(
        &["--image-kernel", "--test", "boot"],
        &[("RULEBENCH_BOOT_TIMEOUT", "1")],
    );
    assert_eq!(code, 125, "{stderr}");
    assert!(stderr.contains("Console tail"), "{stderr}");
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
