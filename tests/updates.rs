//! Update ops verified by traffic and by dumps: after each op the probes
//! see the new state, and the dump equals the dump of a full load of the
//! updated model (so nothing but the intended change happened).

mod support;

use rulebench::correctness::{probes_for, ProbeOptions, Session};
use rulebench::tech::{self, Tech, UpdateMode};
use rulebench::workload::{Rule, Service, Services, UpdateOp, Workload};

/// Lines only in `a` (-) and only in `b` (+), for failure messages.
fn line_diff(a: &str, b: &str) -> String {
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let mut out = String::new();
    for l in la.iter().filter(|l| !lb.contains(l)) {
        out.push_str(&format!("- {l}\n"));
    }
    for l in lb.iter().filter(|l| !la.contains(l)) {
        out.push_str(&format!("+ {l}\n"));
    }
    if out.is_empty() {
        out.push_str("(same lines, different order)\n");
    }
    out
}

fn check_ops(session: &mut Session, base: &Workload, ops: &[UpdateOp]) {
    check_ops_in(session, base, ops, UpdateMode::Primitive)
}

/// Pushes `op` in `mode`: the primitive steps through the session, the
/// kube-proxy ones rendered here and run by the shared step runner.
fn push(session: &mut Session, tech: Tech, before: &Workload, op: &UpdateOp, mode: UpdateMode) {
    let what = format!("{tech} ({mode}): {}", op.describe());
    match (mode, before) {
        (UpdateMode::KubeProxy, Workload::Services(s)) => {
            let steps = tech::render_services_update_kube_proxy(tech, s, op)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            rulebench::steps::run_steps(&mut session.vm, tech, &steps)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
        }
        _ => {
            session
                .update(tech, before, op)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
        }
    }
}

/// Every technology with `mode` for the base's family.
fn techs_in(base: &Workload, mode: UpdateMode) -> Vec<Tech> {
    Tech::for_workload(base)
        .iter()
        .copied()
        .filter(|&t| match base {
            Workload::Services(_) => UpdateMode::for_services(t).contains(&mode),
            Workload::Firewall(_) => mode == UpdateMode::Primitive,
        })
        .collect()
}

fn check_ops_in(session: &mut Session, base: &Workload, ops: &[UpdateOp], mode: UpdateMode) {
    let techs = techs_in(base, mode);
    assert!(
        !techs.is_empty(),
        "no technology has {mode}: nothing checked"
    );
    assert!(!ops.is_empty(), "no update ops: nothing checked");
    let mut checked = 0usize;
    for tech in techs {
        session
            .reset()
            .unwrap_or_else(|e| panic!("{tech}: reset: {e}"));
        session.load(tech, base).unwrap_or_else(|e| panic!("{e}"));
        let mut before = base.clone();
        for op in ops {
            let what = format!("{tech} ({mode}): {}", op.describe());
            let mut after = before.clone();
            after.apply(op).unwrap_or_else(|e| panic!("{what}: {e}"));
            push(session, tech, &before, op, mode);
            let incremental = session.dump(tech).unwrap_or_else(|e| panic!("{what}: {e}"));
            let probes = probes_for(&after, &session.topology, &ProbeOptions::default());
            let verdicts = session
                .probe(&probes)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            // `Session::probe` answers no probes with no verdicts, which the
            // loop below would accept: an update nothing probed is unchecked.
            assert!(
                !probes.is_empty(),
                "{what}: no probes for the updated model"
            );
            assert_eq!(
                verdicts.len(),
                probes.len(),
                "{what}: {} verdicts for {} probes",
                verdicts.len(),
                probes.len()
            );
            checked += verdicts.len();
            for (p, v) in probes.iter().zip(&verdicts) {
                assert_eq!(
                    *v, p.expected,
                    "{what}: probe {} after the update: got {v}, oracle says {}",
                    p.label, p.expected
                );
            }
            // A full load of the updated model must hold exactly the same.
            session
                .load(tech, &after)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let full = session.dump(tech).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(
                incremental == full,
                "{what}: the incremental update differs from a full load of the updated model:\n{}",
                line_diff(&full, &incremental)
            );
            eprintln!(
                "{what}: {} probes ok, dump matches a full load",
                probes.len()
            );
            before = after;
        }
    }
    eprintln!("{mode}: {checked} probe verdicts checked in all");
}

/// The services-small fixture, as a workload and as its services.
fn services_small() -> (Workload, Services) {
    let base = support::fixture("services-small");
    let Workload::Services(services) = &base else {
        panic!("services-small is not a services workload")
    };
    let services = services.clone();
    (base, services)
}

/// A TCP service on a VIP the services-small fixture does not use.
fn added_service() -> Service {
    let ep = |s: &str| s.parse().unwrap();
    Service {
        name: "added".into(),
        vip: "10.96.0.20".parse().unwrap(),
        port: 80,
        proto: rulebench::workload::Proto::Tcp,
        affinity: None,
        backends: vec![ep("10.200.0.2:8080"), ep("10.200.3.2:8080")],
    }
}

/// The add / change / delete ops of [`service_updates`] with the model
/// they end in.
fn service_ops() -> (Workload, Vec<UpdateOp>, Workload) {
    let (base, services) = services_small();
    let ep = |s: &str| s.parse().unwrap();
    let ops = vec![
        UpdateOp::AddService(added_service()),
        UpdateOp::ChangeBackends {
            name: "web".into(),
            backends: vec![
                ep("10.200.1.2:8080"),
                ep("10.200.2.2:8080"),
                ep("10.200.4.2:8080"),
            ],
        },
        UpdateOp::DeleteService { name: "dns".into() },
    ];
    let mut all = services;
    for op in &ops {
        all.apply(op).expect("ops apply to the model");
    }
    (base, ops, Workload::Services(all))
}

/// kube-proxy mode (its sync's rewrites, listings and walks) must leave
/// exactly what the primitive update and a full load leave.
#[test]
fn service_updates_in_kube_proxy_mode() {
    let (base, ops, all) = service_ops();
    let mut session = support::session(&[&base, &all]);
    support::timed("service updates in kube-proxy mode", || {
        check_ops_in(&mut session, &base, &ops, UpdateMode::KubeProxy)
    });
}

#[test]
fn service_updates() {
    let (base, services) = services_small();
    let ep = |s: &str| s.parse().unwrap();
    let added = added_service();
    let ops = vec![
        UpdateOp::AddService(added),
        // be4 is new: the change must reach a namespace no service used.
        UpdateOp::ChangeBackends {
            name: "web".into(),
            backends: vec![
                ep("10.200.1.2:8080"),
                ep("10.200.2.2:8080"),
                ep("10.200.4.2:8080"),
            ],
        },
        UpdateOp::DeleteService { name: "dns".into() },
    ];
    let mut all = services.clone();
    for op in &ops {
        all.apply(op).expect("ops apply to the model");
    }
    let mut session = support::session(&[&base, &Workload::Services(all)]);
    support::timed("service updates, all technologies", || {
        check_ops(&mut session, &base, &ops)
    });
}

/// Changes between one and several endpoints: a layout that renders a
/// single-endpoint service differently (nftables-no-anon-maps' `goto`,
/// iptables without `statistic`) must switch forms both ways, and a
/// single-endpoint service must come and go cleanly.
#[test]
fn single_endpoint_updates() {
    let (base, services) = services_small();
    let ep = |s: &str| s.parse().unwrap();
    let solo = Service {
        backends: vec![ep("10.200.3.2:8080")],
        ..added_service()
    };
    let ops = vec![
        UpdateOp::ChangeBackends {
            name: "web".into(),
            backends: vec![ep("10.200.1.2:8080")],
        },
        UpdateOp::ChangeBackends {
            name: "sticky".into(),
            backends: vec![ep("10.200.3.2:8080")],
        },
        UpdateOp::AddService(solo),
        UpdateOp::ChangeBackends {
            name: "web".into(),
            backends: vec![ep("10.200.1.2:8080"), ep("10.200.0.2:8080")],
        },
        UpdateOp::DeleteService {
            name: "added".into(),
        },
    ];
    let mut all = services.clone();
    for op in &ops {
        all.apply(op).expect("ops apply to the model");
    }
    let mut session = support::session(&[&base, &Workload::Services(all)]);
    support::timed("single-endpoint updates, all technologies", || {
        check_ops(&mut session, &base, &ops)
    });
}

#[test]
fn firewall_updates() {
    let base = support::fixture("firewall-small");
    let deny_be0 = Rule {
        src: Some("10.100.0.0/24".parse().unwrap()),
        dst: Some("10.200.0.2/32".parse().unwrap()),
        proto: Some(rulebench::workload::Proto::Tcp),
        sport: None,
        dport: Some("8080".parse().unwrap()),
        action: rulebench::workload::Verdict::Drop,
    };
    let ops = vec![
        UpdateOp::InsertRule {
            index: 0,
            rule: deny_be0,
        },
        // The fixture's deny for be1 (index 1, now 2): be1 connects again.
        UpdateOp::DeleteRule { index: 2 },
    ];
    let mut session = support::session(&[&base]);
    support::timed("firewall updates, all technologies", || {
        check_ops(&mut session, &base, &ops)
    });
}

/// Services are added, changed and deleted while a connect loop runs
/// against a service no op touches: not one of its connections may fail.
/// An update that rebuilt the whole ruleset non-atomically (or flushed
/// conntrack, or briefly detached a program) would show up here.
#[test]
fn updates_under_traffic_lose_no_connection_to_an_unchanged_service() {
    use rulebench::measure::data::spawn_load;
    use rulebench_proto::{LoadPlan, LoadTarget};

    let (base, services) = services_small();
    let ep = |s: &str| s.parse().unwrap();
    let added = added_service();
    let sticky = services
        .services
        .iter()
        .find(|s| s.name == "sticky")
        .expect("the fixture has a service `sticky`");
    // One cycle returns to the base model, so the loop can repeat it.
    let cycle = [
        UpdateOp::AddService(added),
        UpdateOp::ChangeBackends {
            name: "sticky".into(),
            backends: vec![ep("10.200.0.2:8080"), ep("10.200.1.2:8080")],
        },
        UpdateOp::DeleteService {
            name: "added".into(),
        },
        UpdateOp::ChangeBackends {
            name: "sticky".into(),
            backends: sticky.backends.clone(),
        },
    ];
    let mut with_added = services.clone();
    with_added.apply(&cycle[0]).expect("the op applies");
    let unchanged = services
        .services
        .iter()
        .find(|s| s.name == "web")
        .expect("the fixture has a service `web`");
    let plan = LoadPlan {
        targets: vec![LoadTarget {
            addr: unchanged.vip.to_string(),
            port: unchanged.port,
            weight: 1,
        }],
        duration_ms: 8000,
        max_connections: 0,
        concurrency: 1,
        timeout_ms: 2000,
        seed: 7,
    };
    let mut session = support::session(&[&base, &Workload::Services(with_added)]);
    for &tech in Tech::for_services() {
        session
            .reset()
            .unwrap_or_else(|e| panic!("{tech}: reset: {e}"));
        session.load(tech, &base).unwrap_or_else(|e| panic!("{e}"));
        let load = spawn_load(&mut session.vm, &plan, tech.name())
            .unwrap_or_else(|e| panic!("{tech}: {e:#}"));
        let mut model = base.clone();
        let mut applied = 0usize;
        while !load
            .finished(&mut session.vm)
            .unwrap_or_else(|e| panic!("{tech}: {e:#}"))
        {
            let op = &cycle[applied % cycle.len()];
            session
                .update(tech, &model, op)
                .unwrap_or_else(|e| panic!("{tech}: {}: {e}", op.describe()));
            model.apply(op).expect("the op applies to the model");
            applied += 1;
        }
        let report = load
            .wait(&mut session.vm)
            .unwrap_or_else(|e| panic!("{tech}: {e:#}"));
        eprintln!(
            "{tech}: {applied} update ops during {} connections to the unchanged service, {} failed, connect p99 {:.1} ms, longest {:.1} ms",
            report.connections,
            report.failures,
            report.connect_ns.p99 as f64 / 1e6,
            report.connect_ns.max as f64 / 1e6
        );
        assert!(
            applied >= cycle.len(),
            "{tech}: only {applied} ops ran while the load ran; the test needs at least one full cycle"
        );
        assert!(
            report.connections > 0,
            "{tech}: the load made no connection"
        );
        assert_eq!(
            report.failures,
            0,
            "{tech}: {} connections to the unchanged service failed during updates (first error: {})",
            report.failures,
            report.first_error.as_deref().unwrap_or("none")
        );
        // A dropped SYN is retried after 1 s, so a short blackout passes the
        // failure check above as a slow connect; TCG connects take 2-4 ms.
        assert!(
            report.connect_ns.max < BLACKOUT_NS,
            "{tech}: the longest connect to the unchanged service took {:.1} ms during updates \
             (a blackout: packets to it were dropped for a while)",
            report.connect_ns.max as f64 / 1e6
        );
    }
}

/// A connect this slow means the unchanged service was unreachable for a
/// while, not that the guest was busy.
const BLACKOUT_NS: u64 = 500_000_000;
