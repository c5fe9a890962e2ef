//! The eBPF row in real guests: rulebench's own tc dataplanes (guest/bpf)
//! loaded by `rulebench-ebpf` must give the oracle's verdicts on every
//! probe, dump deterministic maps, apply updates without disturbing other
//! services, and leave the previous dataplane running on bad input.

mod support;

use rulebench::correctness::{probes_for, ProbeOptions, Session};
use rulebench::steps::run_steps;
use rulebench::tech::{self, Step, Tech};
use rulebench::workload::Workload;

fn agree(session: &mut Session, name: &str, workload: &Workload) {
    let probes = probes_for(workload, &session.topology, &ProbeOptions::default());
    let run = session
        .run(Tech::Ebpf, workload, &probes)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    eprintln!(
        "{name}: ebpf loaded in {:.2}s (guest time)",
        run.load_ns as f64 / 1e9
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

#[test]
fn ebpf_services_agree_with_the_oracle() {
    let small = support::fixture("services-small");
    let large = support::fixture("services-1000");
    let mut session = support::session(&[&small, &large]);
    agree(&mut session, "services-small", &small);
    insta::assert_snapshot!("services_small_dump", dump(&mut session));
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
    let bad = [
        Step::with_stdin(&[tech::ebpf::LOADER, "firewall", "load"], "{\"rules\": [\n"),
        Step::with_stdin(
            &[tech::ebpf::LOADER, "firewall", "load"],
            r#"{"default_policy":"accept","rules":[{"dport":"99999","proto":"tcp","action":"drop"}]}"#,
        ),
        Step::with_stdin(
            &[tech::ebpf::LOADER, "firewall", "update"],
            r#"{"delete":{"index":100000}}"#,
        ),
    ];
    for step in &bad {
        let err = run_steps(&mut session.vm, Tech::Ebpf, std::slice::from_ref(step));
        assert!(err.is_err(), "{} was accepted", step.display());
    }
    assert_eq!(
        dump(&mut session),
        before,
        "a rejected input changed the maps"
    );
    // Still enforcing: same verdicts as before, without reloading.
    let probes = probes_for(&small, &session.topology, &ProbeOptions::default());
    let verdicts = session.probe(&probes).unwrap();
    for (p, v) in probes.iter().zip(&verdicts) {
        assert_eq!(*v, p.expected, "{} after rejected inputs", p.label);
    }
}
