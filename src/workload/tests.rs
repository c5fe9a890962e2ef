//! Parsing, validation and update tests over whole TOML workloads.

use super::*;

fn err(text: &str) -> String {
    Workload::from_toml_str(text).unwrap_err().to_string()
}

/// Two services (one TCP, one UDP with ClientIP affinity), shared with the
/// renderer tests.
pub(crate) const TWO: &str = r#"
[services]
[[services.service]]
name = "web"
vip = "10.96.0.10"
port = 80
proto = "tcp"
backends = ["10.200.0.2:8080", "10.200.1.2:8080"]

[[services.service]]
name = "dns"
vip = "10.96.0.11"
port = 53
proto = "udp"
affinity = "client-ip"
backends = ["10.200.0.2:8080", "10.200.1.2:8080"]
"#;

#[test]
fn parses_explicit_services() {
    let Workload::Services(s) = Workload::from_toml_str(TWO).unwrap() else {
        panic!("not services")
    };
    assert_eq!(s.services.len(), 2);
    assert_eq!(s.services[1].proto, Proto::Udp);
    assert_eq!(s.services[1].affinity.unwrap().timeout_seconds, 10800);
    assert_eq!(s.backend_endpoints().len(), 2);
}

#[test]
fn parses_generator_and_is_deterministic() {
    let text = "[services.generate]\ncount = 1000\nbackends = 3\nproto = \"tcp\"\nudp_every = 10\n";
    let a = Workload::from_toml_str(text).unwrap();
    let b = Workload::from_toml_str(text).unwrap();
    assert_eq!(a, b);
    let Workload::Services(s) = a else { panic!() };
    assert_eq!(s.services.len(), 1000);
    assert_eq!(
        s.services.iter().filter(|s| s.proto == Proto::Udp).count(),
        100
    );
    // K = max(4, 3) backend namespaces, port 8080.
    assert_eq!(s.backend_endpoints().len(), 4);
    assert_eq!(s.services[999].vip.to_string(), "10.96.3.232");
}

#[test]
fn parses_firewall() {
    let text = r#"
[firewall]
default_policy = "drop"
accept_established = true
[[firewall.rule]]
src = "10.100.0.0/24"
dst = "10.200.1.2/32"
proto = "tcp"
dport = "8080"
action = "accept"
[[firewall.rule]]
proto = "udp"
sport = 53
dport = "1000-2000"
action = "drop"
[firewall.generate]
count = 10
"#;
    let Workload::Firewall(f) = Workload::from_toml_str(text).unwrap() else {
        panic!()
    };
    assert_eq!(f.rules.len(), 2 + 10 + 2);
    assert_eq!(f.rules[1].sport, Some(PortRange::single(53)));
    assert_eq!(f.rules[1].dport.unwrap().colon(), "1000:2000");
    let probe = Packet {
        src: topology::CLIENT_ADDR,
        dst: topology::backend_addr(1),
        proto: Proto::Tcp,
        sport: 40000,
        dport: 8080,
    };
    assert_eq!(f.verdict(&probe), Verdict::Accept);
    let other_port = Packet {
        dport: 9090,
        ..probe
    };
    assert_eq!(f.verdict(&other_port), Verdict::Drop);
}

#[test]
fn validation_errors_name_the_culprit() {
    let e = err(&TWO
        .replace("10.96.0.11", "10.96.0.10")
        .replace("port = 53", "port = 80")
        .replace("\"udp\"", "\"tcp\""));
    assert!(
        e.contains("\"web\"") && e.contains("\"dns\"") && e.contains("10.96.0.10:80/tcp"),
        "{e}"
    );

    let e = err(&TWO.replace("10.96.0.11", "10.96.0.300"));
    assert!(
        e.contains("service \"dns\"") && e.contains("10.96.0.300"),
        "{e}"
    );

    let e = err(&TWO.replace(
        "backends = [\"10.200.0.2:8080\", \"10.200.1.2:8080\"]\n\n",
        "backends = []\n\n",
    ));
    assert!(
        e.contains("service \"web\"") && e.contains("zero backends"),
        "{e}"
    );

    let e = err(&TWO.replace("port = 53", "port = 0"));
    assert!(e.contains("\"dns\"") && e.contains("port 0"), "{e}");

    let e = err(&TWO.replace(
        "\"10.200.0.2:8080\", \"10.200.1.2:8080\"]\n\n[[",
        "\"10.200.0.2:8080\", \"10.200.0.2:8080\"]\n\n[[",
    ));
    assert!(
        e.contains("\"web\"") && e.contains("10.200.0.2:8080 is listed twice"),
        "{e}"
    );

    let e = err(&TWO.replace("\"udp\"", "\"sctp\""));
    assert!(
        e.contains("\"dns\"") && e.contains("unknown proto \"sctp\""),
        "{e}"
    );

    let e = err(&TWO.replace("proto = \"tcp\"", "protocol = \"tcp\""));
    assert!(e.contains("unknown field") && e.contains("protocol"), "{e}");

    let e = err(&format!("{TWO}\n[firewall]\ndefault_policy = \"drop\"\n"));
    assert!(e.contains("both [services] and [firewall]"), "{e}");

    assert!(err("").contains("neither"));
    assert!(err("[routes]\n").contains("unknown field"));

    let e = err("[services.generate]\ncount = 200001\nbackends = 1\n");
    assert!(e.contains("200001") && e.contains("200000"), "{e}");

    let e = err("[services.generate]\ncount = 2\nbackends = 0\n");
    assert!(e.contains("at least one backend"), "{e}");

    let e = err("[firewall]\ndefault_policy = \"drop\"\n[[firewall.rule]]\naction = \"accept\"\n[[firewall.rule]]\nsrc = \"10.0.0.0/40\"\naction = \"drop\"\n");
    assert!(e.contains("rule [1]") && e.contains("10.0.0.0/40"), "{e}");

    let e = err("[firewall]\ndefault_policy = \"drop\"\n[[firewall.rule]]\nproto = \"tcp\"\ndport = \"90-80\"\naction = \"drop\"\n");
    assert!(
        e.contains("rule [0]") && e.contains("empty port range"),
        "{e}"
    );

    let e = err(
        "[firewall]\ndefault_policy = \"drop\"\n[[firewall.rule]]\ndport = 80\naction = \"drop\"\n",
    );
    assert!(e.contains("rule [0]") && e.contains("needs proto"), "{e}");

    let e = err("[firewall]\ndefault_policy = \"reject\"\n");
    assert!(e.contains("default_policy") && e.contains("reject"), "{e}");
}

#[test]
fn updates_change_the_model_and_refuse_bad_ops() {
    let Workload::Services(mut s) = Workload::from_toml_str(TWO).unwrap() else {
        panic!()
    };
    let g = ServiceGen::plain(0, 2);
    let new = g.service(5);
    s.apply(&UpdateOp::AddService(new.clone())).unwrap();
    assert_eq!(
        s.expected(Proto::Tcp, new.vip, 80),
        Expected::Backends(new.backends.iter().copied().collect())
    );

    let before = s.clone();
    let dup = UpdateOp::AddService(Service {
        name: "other".into(),
        ..new.clone()
    });
    assert!(s
        .apply(&dup)
        .unwrap_err()
        .to_string()
        .contains("both claim"));
    assert_eq!(s, before, "a failed update leaves the model alone");

    let eps = vec!["10.200.3.2:8080".parse().unwrap()];
    s.apply(&UpdateOp::ChangeBackends {
        name: "web".into(),
        backends: eps.clone(),
    })
    .unwrap();
    assert_eq!(s.by_name("web").unwrap().backends, eps);

    s.apply(&UpdateOp::DeleteService { name: "web".into() })
        .unwrap();
    assert_eq!(
        s.expected(Proto::Tcp, "10.96.0.10".parse().unwrap(), 80),
        Expected::NotTranslated
    );
    let e = s
        .apply(&UpdateOp::DeleteService { name: "web".into() })
        .unwrap_err()
        .to_string();
    assert!(e.contains("no service named \"web\""), "{e}");
    let e = s
        .apply(&UpdateOp::DeleteRule { index: 0 })
        .unwrap_err()
        .to_string();
    assert!(e.contains("firewall update"), "{e}");

    let mut f = Firewall {
        default_policy: Verdict::Drop,
        accept_established: false,
        rules: vec![],
    };
    let rule = Rule {
        src: None,
        dst: None,
        proto: None,
        sport: None,
        dport: None,
        action: Verdict::Accept,
    };
    f.apply(&UpdateOp::InsertRule { index: 0, rule }).unwrap();
    assert!(f.apply(&UpdateOp::InsertRule { index: 2, rule }).is_err());
    f.apply(&UpdateOp::DeleteRule { index: 0 }).unwrap();
    assert!(f
        .apply(&UpdateOp::DeleteRule { index: 0 })
        .unwrap_err()
        .to_string()
        .contains("out of range"));
}
