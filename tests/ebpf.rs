//! The eBPF row in real guests: rulebench's own tc dataplanes (guest/bpf)
//! loaded by `rulebench-ebpf` must give the oracle's verdicts on every
//! probe, dump deterministic maps, apply updates without disturbing other
//! services, and leave the previous dataplane running on bad input.

mod support;

use rulebench::correctness::{probes_for, ProbeOptions, Session};
use rulebench::steps::{run_steps, StepError};
use rulebench::tech::{self, Step, Tech};
use rulebench::workload::Workload;

/// Every probe got a verdict, and there was at least one: `Session::probe`
/// answers an empty list with no verdicts, which every check below accepts.
fn assert_probed(name: &str, probes: usize, verdicts: usize) {
    assert!(
        probes > 0,
        "{name}: no probes for this workload: nothing checked"
    );
    assert_eq!(
        verdicts, probes,
        "{name}: {verdicts} verdicts for {probes} probes"
    );
}

fn agree(session: &mut Session, name: &str, workload: &Workload) {
    let probes = probes_for(workload, &session.topology, &ProbeOptions::default());
    let run = session
        .run(Tech::Ebpf, workload, &probes)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_probed(name, probes.len(), run.verdicts.len());
    eprintln!(
        "{name}: ebpf loaded in {:.2}s (guest time), {} probes",
        run.load_ns as f64 / 1e9,
        probes.len()
    );
    let wrong: Vec<String> = probes
        .iter()
        .zip(&run.verdicts)
        .filter(|(p, v)| **v != p.expected)
        .map(|(p, v)| format!("{}: expected {:?}, got {v:?}", p.label, p.expected))
        .collect();
    assert!(
        wrong.is_empty(),
        "{name}: ebpf disagrees with the oracle:\n{}",
        wrong.join("\n")
    );
}

fn dump(session: &mut Session) -> String {
    session.dump(Tech::Ebpf).expect("rulebench-ebpf dump")
}

/// (vip, port, proto number, affinity timeout, backends) of one service.
type ServiceRow = (String, u64, u64, u64, Vec<String>);

fn hex_bytes(v: &serde_json::Value) -> Vec<u8> {
    v.as_array()
        .expect("bpftool prints key and value as arrays of hex strings")
        .iter()
        .map(|b| {
            let b = b.as_str().expect("hex string");
            u8::from_str_radix(b.trim_start_matches("0x"), 16).expect("hex byte")
        })
        .collect()
}

/// The services map as the kernel holds it, read by bpftool (an
/// independent reader of the same pinned map), decoded by the layout of
/// guest/bpf/services.bpf.c: key {vip be32, port be16, proto u8, pad},
/// value {count u32, affinity u32, {ip be32, port be16, pad}[]}.
fn bpftool_services(session: &mut Session) -> Vec<ServiceRow> {
    let r = session
        .vm
        .exec(&[
            "bpftool",
            "-j",
            "map",
            "dump",
            "pinned",
            "/sys/fs/bpf/rulebench/services/services",
        ])
        .expect("running bpftool");
    assert_eq!(
        r.exit_code,
        Some(0),
        "bpftool map dump failed: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    let entries: Vec<serde_json::Value> =
        serde_json::from_slice(&r.stdout).expect("bpftool -j prints a JSON array");
    let mut rows: Vec<ServiceRow> = entries
        .iter()
        .map(|e| {
            let (k, v) = (hex_bytes(&e["key"]), hex_bytes(&e["value"]));
            let word = |i: usize| u32::from_ne_bytes([v[i], v[i + 1], v[i + 2], v[i + 3]]);
            let backends = (0..word(0) as usize)
                .map(|i| {
                    let b = &v[8 + 8 * i..];
                    format!(
                        "{}.{}.{}.{}:{}",
                        b[0],
                        b[1],
                        b[2],
                        b[3],
                        u16::from_be_bytes([b[4], b[5]])
                    )
                })
                .collect();
            (
                format!("{}.{}.{}.{}", k[0], k[1], k[2], k[3]),
                u64::from(u16::from_be_bytes([k[4], k[5]])),
                u64::from(k[6]),
                u64::from(word(4)),
                backends,
            )
        })
        .collect();
    rows.sort();
    rows
}

/// The loader's dump and bpftool's view of the kernel map must agree.
fn cross_check_with_bpftool(session: &mut Session, ours: &str) {
    let ours: serde_json::Value = serde_json::from_str(ours).expect("the dump is JSON");
    let mut expected: Vec<ServiceRow> = ours["services"]
        .as_array()
        .expect("the dump lists services")
        .iter()
        .map(|s| {
            let proto = match s["proto"].as_str() {
                Some("tcp") => 6,
                Some("udp") => 17,
                other => panic!("proto {other:?} in the dump"),
            };
            (
                s["vip"].as_str().unwrap().to_string(),
                s["port"].as_u64().unwrap(),
                proto,
                s["affinity_timeout_s"].as_u64().unwrap(),
                s["backends"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|b| b.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    expected.sort();
    assert_eq!(
        bpftool_services(session),
        expected,
        "bpftool's view of the services map differs from rulebench-ebpf dump"
    );
}

#[test]
fn ebpf_services_agree_with_the_oracle() {
    let small = support::fixture("services-small");
    let large = support::fixture("services-1000");
    let mut session = support::session(&[&small, &large]);
    agree(&mut session, "services-small", &small);
    let ours = dump(&mut session);
    insta::assert_snapshot!("services_small_dump", ours);
    cross_check_with_bpftool(&mut session, &ours);
    agree(&mut session, "services-1000", &large);
}

#[test]
fn ebpf_firewall_agrees_with_the_oracle() {
    let small = support::fixture("firewall-small");
    let large = support::fixture("firewall-1000");
    let mut session = support::session(&[&small, &large]);
    agree(&mut session, "firewall-small", &small);
    insta::assert_snapshot!("firewall_small_dump", dump(&mut session));
    agree(&mut session, "firewall-1000", &large);
}

#[test]
fn ebpf_bad_input_leaves_the_previous_dataplane_running() {
    let small = support::fixture("firewall-small");
    let mut session = support::session(&[&small]);
    agree(&mut session, "firewall-small", &small);
    let before = dump(&mut session);
    // Each input with the words the loader's error must use for its cause:
    // any failure would do otherwise, e.g. a loader that cannot start.
    let bad = [
        (
            Step::with_stdin(&[tech::ebpf::LOADER, "firewall", "load"], "{\"rules\": [\n"),
            "EOF while parsing",
        ),
        (
            Step::with_stdin(
                &[tech::ebpf::LOADER, "firewall", "load"],
                r#"{"default_policy":"accept","rules":[{"dport":"99999","proto":"tcp","action":"drop"}]}"#,
            ),
            "bad port \"99999\"",
        ),
        (
            Step::with_stdin(
                &[tech::ebpf::LOADER, "firewall", "update"],
                r#"{"delete":{"index":100000}}"#,
            ),
            "delete [100000]",
        ),
    ];
    for (step, cause) in &bad {
        match run_steps(&mut session.vm, Tech::Ebpf, std::slice::from_ref(step)) {
            Ok(_) => panic!("{} was accepted", step.display()),
            Err(StepError::Failed { message, .. }) => assert!(
                message.contains(cause),
                "{}: the loader's error does not name the cause ({cause:?}): {message}",
                step.display()
            ),
            Err(e) => panic!("{}: not a loader rejection: {e}", step.display()),
        }
    }
    assert_eq!(
        dump(&mut session),
        before,
        "a rejected input changed the maps"
    );
    // Still enforcing: same verdicts as before, without reloading.
    let probes = probes_for(&small, &session.topology, &ProbeOptions::default());
    let verdicts = session.probe(&probes).unwrap();
    assert_probed("after rejected inputs", probes.len(), verdicts.len());
    for (p, v) in probes.iter().zip(&verdicts) {
        assert_eq!(*v, p.expected, "{} after rejected inputs", p.label);
    }
}
