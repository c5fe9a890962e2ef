//! Differential test: the same workload loaded with every technology, the
//! same probes sent through each, every verdict compared with the oracle
//! (and so with each other). One guest per family, technologies in turn.

mod support;

use rulebench::correctness::{probes_for, Differential, ProbeOptions, Session, TechRun};
use rulebench::tech::Tech;
use rulebench::workload::Workload;

fn differential(session: &mut Session, name: &str, workload: &Workload) -> Differential {
    let probes = probes_for(workload, &session.topology, &ProbeOptions::default());
    assert!(!probes.is_empty(), "{name}: no probes");
    let table = support::timed(&format!("{name}: all technologies"), || {
        session
            .differential(
                workload,
                Tech::for_workload(workload),
                &probes,
                |run: &TechRun| {
                    eprintln!(
                        "{name}: {} loaded in {:.2}s (guest time)",
                        run.tech,
                        run.load_ns as f64 / 1e9
                    )
                },
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    });
    eprintln!("{name}: {} probes\n{}", probes.len(), table.summary());
    table
}

fn assert_agreement(name: &str, table: &Differential) {
    let report = table.report();
    assert!(
        report.is_empty(),
        "{name}: technologies disagree with the oracle:\n{report}\n{}",
        table.summary()
    );
}

#[test]
fn services_agree_across_technologies() {
    let small = support::fixture("services-small");
    let large = support::fixture("services-1000");
    let mut session = support::session(&[&small, &large]);
    let small_table = differential(&mut session, "services-small", &small);
    // The small fixture must exercise the spread and affinity checks.
    for wanted in ["spread over 4 backends", "affinity:", "not a service"] {
        assert!(
            small_table
                .probes
                .iter()
                .any(|p| p.label.starts_with(wanted)),
            "services-small has no {wanted:?} probe"
        );
    }
    assert_eq!(small_table.columns.len(), Tech::for_services().len());
    let large_table = differential(&mut session, "services-1000", &large);
    assert_agreement("services-small", &small_table);
    assert_agreement("services-1000", &large_table);
}

/// Single-endpoint services: kube-proxy renders them with
/// `numgen random mod 1 vmap`, nftables-no-anon-maps with a plain `goto`,
/// iptables with no `statistic` rule.
#[test]
fn single_endpoint_services_agree_across_technologies() {
    let workload = support::fixture("services-single-endpoint");
    let mut session = support::session(&[&workload]);
    let table = differential(&mut session, "services-single-endpoint", &workload);
    for wanted in ["spread over 4 backends", "affinity:", "not a service"] {
        assert!(
            table.probes.iter().any(|p| p.label.starts_with(wanted)),
            "services-single-endpoint has no {wanted:?} probe"
        );
    }
    assert_eq!(table.columns.len(), Tech::for_services().len());
    assert_agreement("services-single-endpoint", &table);
}

#[test]
fn firewalls_agree_across_technologies() {
    let small = support::fixture("firewall-small");
    let large = support::fixture("firewall-1000");
    let mut session = support::session(&[&small, &large]);
    let small_table = differential(&mut session, "firewall-small", &small);
    let large_table = differential(&mut session, "firewall-1000", &large);
    for (name, table) in [
        ("firewall-small", &small_table),
        ("firewall-1000", &large_table),
    ] {
        // Both outcomes must be exercised, or "agreement" proves little.
        for wanted in ["connected", "blocked"] {
            assert!(
                table
                    .probes
                    .iter()
                    .any(|p| p.expected.to_string() == wanted),
                "{name}: no probe expects {wanted}"
            );
        }
        assert_eq!(table.columns.len(), Tech::for_firewall().len());
    }
    assert_agreement("firewall-small", &small_table);
    assert_agreement("firewall-1000", &large_table);
}
