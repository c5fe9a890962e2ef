//! The guest topology: the client namespace reaches every backend, and each
//! backend answers with its own identity over TCP and UDP.

mod common;

use rulebench::topo::{self, Topology};
use rulebench_proto::{ProbeItem, ProbePlan};

#[test]
fn client_reaches_every_backend_over_tcp_and_udp() {
    let mut vm = common::boot();
    let topology = Topology::with_backends(4, &[8080, 9090]);
    topology.setup(&mut vm).unwrap();
    let mut items = Vec::new();
    for b in &topology.backends {
        for port in &b.ports {
            for proto in ["tcp", "udp"] {
                items.push(ProbeItem {
                    proto: proto.into(),
                    addr: b.addr.to_string(),
                    port: *port,
                    count: 3,
                });
            }
        }
    }
    let report = topo::probe(
        &mut vm,
        &ProbePlan {
            timeout_ms: 1000,
            items: items.clone(),
        },
    )
    .unwrap();
    assert_eq!(items.len(), 4 * 2 * 2, "every backend, port and protocol");
    assert_eq!(report.results.len(), items.len());
    for (item, outcome) in items.iter().zip(&report.results) {
        // Fewer answers than asked for would leave the loop below with
        // less (or nothing) to check.
        assert_eq!(
            outcome.answers.len(),
            item.count as usize,
            "{item:?}: {} answers for {} probes",
            outcome.answers.len(),
            item.count
        );
        let backend = topology
            .backends
            .iter()
            .find(|b| b.addr.to_string() == item.addr)
            .unwrap();
        for answer in &outcome.answers {
            let answer = answer.as_deref().unwrap_or_else(|| {
                panic!(
                    "{} {}:{} did not answer: {:?}",
                    item.proto, item.addr, item.port, outcome.first_error
                )
            });
            assert_eq!(
                answer,
                format!("{} {}:{}", backend.name, item.addr, item.port),
                "{item:?}"
            );
        }
    }
    // An address nobody owns does not answer.
    let report = topo::probe(
        &mut vm,
        &ProbePlan {
            timeout_ms: 300,
            items: vec![ProbeItem {
                proto: "tcp".into(),
                addr: "10.200.99.2".into(),
                port: 8080,
                count: 1,
            }],
        },
    )
    .unwrap();
    assert_eq!(report.results[0].answers, vec![None]);
}
