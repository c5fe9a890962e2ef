//! The pinned 5.10 guest boots, runs commands, has the pinned tools and modules.

mod common;

#[test]
fn cold_boots_the_pinned_kernel() {
    let mut vm = common::boot_with(&rulebench::vm::VmOptions {
        snapshot: false,
        ..Default::default()
    });
    assert!(
        vm.console_log().contains(rulebench_proto::READY_MARKER),
        "the boot log kept on the host lacks the agent's ready line:\n{}",
        vm.console_log()
    );
    let expected = common::expected_release(&vm);
    if std::env::var_os(rulebench::image::IMAGE_ENV).is_none()
        && std::env::var_os(rulebench::vm::KERNEL_ENV).is_none()
    {
        assert_eq!(
            expected, "5.10.0-32-cloud-amd64",
            "the default image must be the pinned 5.10"
        );
    }
    assert_eq!(vm.kernel_release, expected);
    let out = vm.sh("uname -r").unwrap();
    assert_eq!(out.trim(), expected);
    eprintln!("cold boot took {:?} under {}", vm.boot_time, vm.accel());
}

#[test]
fn restored_guests_are_independent() {
    let mut a = common::boot();
    let mut b = common::boot();
    eprintln!("restores took {:?} and {:?}", a.boot_time, b.boot_time);
    assert_eq!(
        a.sh("uname -r").unwrap().trim(),
        common::expected_release(&a)
    );
    // Each restored guest gets fresh entropy and its own state.
    let ra = a.sh("head -c 16 /dev/urandom | md5sum").unwrap();
    let rb = b.sh("head -c 16 /dev/urandom | md5sum").unwrap();
    assert_ne!(ra, rb, "restored guests share their RNG stream");
    a.sh("touch /tmp/only-in-a").unwrap();
    assert!(b.exec(&["test", "-e", "/tmp/only-in-a"]).unwrap().exit_code != Some(0));
}

#[test]
fn pinned_tool_versions() {
    let mut vm = common::boot();
    let mut versions = String::new();
    for cmd in [
        "iptables-legacy --version",
        "iptables-nft --version",
        "iptables --version",
        "nft --version",
        "ipvsadm --version",
        "iperf3 --version | head -1",
        "ipset --version",
        "conntrack --version",
        "ip -V",
    ] {
        let out = vm.sh(&format!("{cmd} 2>&1")).unwrap();
        // iperf3 prints the build's uname: keep only the version words.
        let first = out.lines().next().unwrap_or("").to_string();
        let first = if cmd.starts_with("iperf3") {
            first
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            first
        };
        versions.push_str(&format!("{cmd}: {first}\n"));
    }
    insta::assert_snapshot!(versions);
}

#[test]
fn netfilter_and_bpf_modules_load() {
    let mut vm = common::boot();
    let modules = [
        "nf_tables",
        "nft_chain_nat",
        "ip_tables",
        "iptable_nat",
        "iptable_filter",
        "xt_statistic",
        "ip_vs",
        "ip_vs_rr",
        "veth",
        "sch_ingress",
        "cls_bpf",
    ];
    for m in modules {
        let r = vm.exec(&["modprobe", m]).unwrap();
        assert_eq!(
            r.exit_code,
            Some(0),
            "modprobe {m}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
    }
    let loaded = vm.sh("cat /proc/modules").unwrap();
    // Custom kernels (kernel-configs/) build everything in: those modules
    // are listed in modules.builtin instead of /proc/modules.
    let builtin = vm
        .sh("cat /lib/modules/$(uname -r)/modules.builtin 2>/dev/null || true")
        .unwrap();
    for m in modules {
        let in_builtin = builtin.lines().any(|l| {
            l.ends_with(&format!("/{m}.ko")) || l.ends_with(&format!("/{}.ko", m.replace('_', "-")))
        });
        assert!(
            loaded.lines().any(|l| l.starts_with(&format!("{m} "))) || in_builtin,
            "{m} neither loaded (/proc/modules) nor built in (modules.builtin)"
        );
    }
}

#[test]
fn exec_reports_exit_code_stdin_and_guest_time() {
    let mut vm = common::boot();
    let r = vm
        .exec_request(rulebench::vm::ExecRequest {
            argv: vec!["sh".into(), "-c".into(), "cat; echo err >&2; exit 3".into()],
            stdin: b"hello".to_vec(),
            timeout_ms: 10_000,
            env: vec![],
        })
        .unwrap();
    assert_eq!(r.exit_code, Some(3));
    assert_eq!(r.stdout, b"hello");
    assert_eq!(r.stderr, b"err\n");
    assert!(r.elapsed_ns > 0);
    vm.put_file("/tmp/x/y.txt", b"payload", 0o600).unwrap();
    assert_eq!(vm.get_file("/tmp/x/y.txt").unwrap(), b"payload");
    assert_eq!(vm.sh("stat -c %a /tmp/x/y.txt").unwrap().trim(), "600");
    assert_eq!(vm.qmp_status().unwrap(), "running");
}
