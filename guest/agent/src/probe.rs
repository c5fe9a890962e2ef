//! `rulebench-agent probe`: send test connections and record who answered.
//!
//! Every attempt uses a fresh socket, hence a fresh source port and a fresh
//! connection-tracking entry, so each one is an independent load-balancing
//! decision.

use rulebench_proto::{ProbeItem, ProbeOutcome, ProbePlan, ProbeReport};
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

/// Used when the plan says 0: a zero timeout would make every attempt fail.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// Read the plan from stdin, print the report on stdout. Exit status 2 for
/// an unreadable plan; failed attempts are data, not errors.
pub fn main() -> i32 {
    let mut input = String::new();
    if let Err(err) = io::stdin().read_to_string(&mut input) {
        eprintln!("rulebench-agent probe: reading the plan from stdin: {err}");
        return 2;
    }
    let plan: ProbePlan = match serde_json::from_str(&input) {
        Ok(plan) => plan,
        Err(err) => {
            eprintln!("rulebench-agent probe: the plan on stdin is not a ProbePlan: {err}");
            return 2;
        }
    };
    let report = run_plan(&plan);
    println!(
        "{}",
        serde_json::to_string(&report).expect("a report always serializes")
    );
    0
}

pub fn run_plan(plan: &ProbePlan) -> ProbeReport {
    let timeout = match plan.timeout_ms {
        0 => DEFAULT_TIMEOUT,
        ms => Duration::from_millis(ms),
    };
    ProbeReport {
        results: plan
            .items
            .iter()
            .map(|item| probe_item(item, timeout))
            .collect(),
    }
}

fn probe_item(item: &ProbeItem, timeout: Duration) -> ProbeOutcome {
    let target = format!("{} {}:{}", item.proto, item.addr, item.port);
    let mut outcome = ProbeOutcome {
        answers: Vec::with_capacity(item.count as usize),
        first_error: None,
    };
    let attempt: fn(SocketAddr, Duration) -> Result<String, String> = match item.proto.as_str() {
        "tcp" => attempt_tcp,
        "udp" => attempt_udp,
        other => {
            return failed(
                item,
                format!("{target}: unknown protocol {other:?} (tcp or udp)"),
            )
        }
    };
    let addr = match item.addr.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, item.port),
        Err(err) => return failed(item, format!("{target}: bad address: {err}")),
    };
    for _ in 0..item.count {
        match attempt(addr, timeout) {
            Ok(line) => outcome.answers.push(Some(line)),
            Err(err) => {
                outcome.answers.push(None);
                outcome
                    .first_error
                    .get_or_insert_with(|| format!("{target}: {err}"));
            }
        }
    }
    outcome
}

/// Every attempt failed the same way before any packet was sent.
fn failed(item: &ProbeItem, error: String) -> ProbeOutcome {
    ProbeOutcome {
        answers: vec![None; item.count as usize],
        first_error: Some(error),
    }
}

fn attempt_tcp(addr: SocketAddr, timeout: Duration) -> Result<String, String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| format!("set read timeout: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    identity_line(&answer)
}

fn attempt_udp(addr: SocketAddr, timeout: Duration) -> Result<String, String> {
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).map_err(|e| format!("bind: {e}"))?;
    // Connected, so an ICMP port-unreachable shows up as "connection refused".
    socket.connect(addr).map_err(|e| format!("connect: {e}"))?;
    socket
        .set_read_timeout(Some(timeout))
        .map_err(|e| format!("set read timeout: {e}"))?;
    socket.send(b"?").map_err(|e| format!("send: {e}"))?;
    let mut buf = [0u8; 2048];
    match socket.recv(&mut buf) {
        Ok(n) => identity_line(&buf[..n]),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Err(format!("no reply within {} ms", timeout.as_millis()))
        }
        Err(e) => Err(format!("recv: {e}")),
    }
}

fn identity_line(answer: &[u8]) -> Result<String, String> {
    let line = String::from_utf8_lossy(answer).trim().to_string();
    if line.is_empty() {
        return Err("closed without an answer".into());
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity_server::{bind_tcp, bind_udp, serve_tcp, serve_udp};
    use std::net::SocketAddrV4;

    /// Identity server on 127.0.0.1, TCP and UDP on the same ephemeral port.
    fn start_server(identity: &'static str) -> u16 {
        let tcp = bind_tcp(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = tcp.local_addr().unwrap().port();
        let udp = bind_udp(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).unwrap();
        std::thread::spawn(move || serve_tcp(identity, tcp));
        std::thread::spawn(move || serve_udp(identity, udp));
        port
    }

    fn item(proto: &str, port: u16, count: u32) -> ProbeItem {
        ProbeItem {
            proto: proto.into(),
            addr: "127.0.0.1".into(),
            port,
            count,
        }
    }

    #[test]
    fn tcp_and_udp_probes_see_the_identity_and_local_address() {
        let port = start_server("backend-7");
        let plan = ProbePlan {
            timeout_ms: 2000,
            items: vec![item("tcp", port, 200), item("udp", port, 50)],
        };
        let report = run_plan(&plan);
        let expected = Some(format!("backend-7 127.0.0.1:{port}"));
        for outcome in &report.results {
            assert_eq!(outcome.first_error, None);
            assert!(
                outcome.answers.iter().all(|a| *a == expected),
                "{outcome:?}"
            );
        }
        assert_eq!(report.results[0].answers.len(), 200);
        assert_eq!(report.results[1].answers.len(), 50);
    }

    #[test]
    fn failures_are_recorded_per_attempt_with_the_first_error() {
        // Bind then drop to find a port with (almost certainly) no listener.
        let closed_port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let plan = ProbePlan {
            timeout_ms: 200,
            items: vec![
                item("tcp", closed_port, 2),
                item("udp", closed_port, 2),
                item("sctp", closed_port, 1),
                ProbeItem {
                    addr: "not-an-ip".into(),
                    ..item("tcp", closed_port, 1)
                },
            ],
        };
        let report = run_plan(&plan);
        for outcome in &report.results {
            assert!(outcome.answers.iter().all(Option::is_none), "{outcome:?}");
            assert!(outcome.first_error.is_some());
        }
        assert_eq!(report.results[0].answers.len(), 2);
        let tcp_error = report.results[0].first_error.as_deref().unwrap();
        assert!(tcp_error.contains("refused"), "{tcp_error}");
        let udp_error = report.results[1].first_error.as_deref().unwrap();
        assert!(
            udp_error.contains("refused") || udp_error.contains("no reply"),
            "{udp_error}"
        );
    }

    #[test]
    fn report_json_round_trips() {
        let port = start_server("json-check");
        let report = run_plan(&ProbePlan {
            timeout_ms: 1000,
            items: vec![item("tcp", port, 1)],
        });
        let text = serde_json::to_string(&report).unwrap();
        let back: ProbeReport = serde_json::from_str(&text).unwrap();
        assert_eq!(back, report);
    }
}
