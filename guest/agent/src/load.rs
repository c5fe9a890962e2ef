//! `rulebench-agent load`: new-connection rate and connect latency, like
//! netperf TCP_CRR. Every cycle is connect → read the server's answer →
//! close on a fresh socket, so every cycle is a new conntrack entry and its
//! first packet walks the whole ruleset (an established stream would not:
//! conntrack short-cuts its packets past the NAT chains).
//!
//! Plan JSON on stdin, report JSON on stdout. Times come from this guest's
//! monotonic clock.

use rulebench_proto::{LatencySummary, LoadPlan, LoadReport, LoadTarget};
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn main() -> i32 {
    let mut input = String::new();
    if let Err(err) = io::stdin().read_to_string(&mut input) {
        eprintln!("rulebench-agent load: reading the plan from stdin: {err}");
        return 2;
    }
    let plan: LoadPlan = match serde_json::from_str(&input) {
        Ok(plan) => plan,
        Err(err) => {
            eprintln!("rulebench-agent load: the plan on stdin is not a LoadPlan: {err}");
            return 2;
        }
    };
    match run_plan(&plan) {
        Ok(report) => {
            println!(
                "{}",
                serde_json::to_string(&report).expect("a report always serializes")
            );
            0
        }
        Err(err) => {
            eprintln!("rulebench-agent load: {err}");
            2
        }
    }
}

/// Weighted targets resolved to socket addresses, with cumulative weights
/// for a binary-search pick.
struct Targets {
    addrs: Vec<SocketAddr>,
    cumulative: Vec<u64>,
}

impl Targets {
    fn new(targets: &[LoadTarget]) -> Result<Targets, String> {
        let mut addrs = Vec::new();
        let mut cumulative = Vec::new();
        let mut total = 0u64;
        for t in targets.iter().filter(|t| t.weight > 0) {
            let ip: IpAddr = t
                .addr
                .parse()
                .map_err(|e| format!("target {}: bad address: {e}", t.addr))?;
            total += u64::from(t.weight);
            addrs.push(SocketAddr::new(ip, t.port));
            cumulative.push(total);
        }
        if addrs.is_empty() {
            return Err("the plan has no target with a weight above 0".into());
        }
        Ok(Targets { addrs, cumulative })
    }

    fn pick(&self, random: u64) -> SocketAddr {
        let total = *self.cumulative.last().expect("at least one target");
        let x = random % total;
        let i = self.cumulative.partition_point(|&c| c <= x);
        self.addrs[i]
    }
}

/// xorshift64*: tiny, deterministic, good enough to spread targets.
fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

#[derive(Default)]
struct WorkerResult {
    connect_ns: Vec<u64>,
    cycle_ns: Vec<u64>,
    failures: u64,
    first_error: Option<String>,
}

pub fn run_plan(plan: &LoadPlan) -> Result<LoadReport, String> {
    let targets = Arc::new(Targets::new(&plan.targets)?);
    let timeout = Duration::from_millis(plan.timeout_ms.max(1));
    let duration = Duration::from_millis(plan.duration_ms);
    let budget = Arc::new(AtomicU64::new(if plan.max_connections == 0 {
        u64::MAX
    } else {
        plan.max_connections
    }));
    let started = Instant::now();
    let deadline = started + duration;
    let workers: Vec<_> = (0..plan.concurrency.max(1))
        .map(|w| {
            let targets = Arc::clone(&targets);
            let budget = Arc::clone(&budget);
            // Never 0: xorshift would stay at 0 forever.
            let mut state =
                (plan.seed ^ (u64::from(w) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
            std::thread::spawn(move || {
                let mut result = WorkerResult::default();
                while Instant::now() < deadline && take_one(&budget) {
                    let addr = targets.pick(next_random(&mut state));
                    match cycle(addr, timeout) {
                        Ok((connect, whole)) => {
                            result.connect_ns.push(connect);
                            result.cycle_ns.push(whole);
                        }
                        Err(err) => {
                            result.failures += 1;
                            result
                                .first_error
                                .get_or_insert_with(|| format!("{addr}: {err}"));
                        }
                    }
                }
                result
            })
        })
        .collect();
    let mut all = WorkerResult::default();
    for worker in workers {
        let r = worker
            .join()
            .map_err(|_| "a load worker panicked".to_string())?;
        all.connect_ns.extend(r.connect_ns);
        all.cycle_ns.extend(r.cycle_ns);
        all.failures += r.failures;
        if all.first_error.is_none() {
            all.first_error = r.first_error;
        }
    }
    let elapsed = started.elapsed();
    let connections = all.cycle_ns.len() as u64;
    Ok(LoadReport {
        connections,
        failures: all.failures,
        elapsed_ns: elapsed.as_nanos() as u64,
        connections_per_second: connections as f64 / elapsed.as_secs_f64(),
        connect_ns: summarize(all.connect_ns),
        cycle_ns: summarize(all.cycle_ns),
        first_error: all.first_error,
    })
}

fn take_one(budget: &AtomicU64) -> bool {
    budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

/// One connect → read-to-EOF → close; returns (connect ns, whole cycle ns).
fn cycle(addr: SocketAddr, timeout: Duration) -> Result<(u64, u64), String> {
    let start = Instant::now();
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    let connected = start.elapsed();
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| format!("set read timeout: {e}"))?;
    let mut answer = Vec::with_capacity(64);
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    if answer.is_empty() {
        return Err("connection closed without an answer".into());
    }
    drop(stream);
    Ok((
        connected.as_nanos() as u64,
        start.elapsed().as_nanos() as u64,
    ))
}

/// Nearest-rank percentiles.
pub fn summarize(mut samples: Vec<u64>) -> LatencySummary {
    if samples.is_empty() {
        return LatencySummary::default();
    }
    samples.sort_unstable();
    let rank = |p: f64| {
        let i = ((p / 100.0) * samples.len() as f64).ceil() as usize;
        samples[i.clamp(1, samples.len()) - 1]
    };
    LatencySummary {
        count: samples.len() as u64,
        p50: rank(50.0),
        p90: rank(90.0),
        p99: rank(99.0),
        max: *samples.last().expect("not empty"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    #[test]
    fn percentiles_are_nearest_rank() {
        let s = summarize((1..=100).collect());
        assert_eq!(
            (s.count, s.p50, s.p90, s.p99, s.max),
            (100, 50, 90, 99, 100)
        );
        assert_eq!(summarize(vec![]), LatencySummary::default());
        assert_eq!(summarize(vec![7]).p99, 7);
    }

    #[test]
    fn weighted_pick_honours_weights() {
        let t = Targets::new(&[
            LoadTarget {
                addr: "10.0.0.1".into(),
                port: 1,
                weight: 9,
            },
            LoadTarget {
                addr: "10.0.0.2".into(),
                port: 1,
                weight: 1,
            },
            LoadTarget {
                addr: "10.0.0.3".into(),
                port: 1,
                weight: 0,
            },
        ])
        .unwrap();
        let mut state = 1;
        let picks: Vec<SocketAddr> = (0..10_000)
            .map(|_| t.pick(next_random(&mut state)))
            .collect();
        let second = picks
            .iter()
            .filter(|a| a.port() == 1 && a.ip().to_string() == "10.0.0.2")
            .count();
        assert!((800..1200).contains(&second), "{second}");
        assert!(picks.iter().all(|a| a.ip().to_string() != "10.0.0.3"));
        assert!(Targets::new(&[]).is_err());
    }

    #[test]
    fn loads_a_local_server() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let _ = s.unwrap().write_all(b"x\n");
            }
        });
        let report = run_plan(&LoadPlan {
            targets: vec![LoadTarget {
                addr: "127.0.0.1".into(),
                port,
                weight: 1,
            }],
            duration_ms: 10_000,
            max_connections: 50,
            concurrency: 2,
            timeout_ms: 1000,
            seed: 1,
        })
        .unwrap();
        assert_eq!(report.connections, 50);
        assert_eq!(report.failures, 0);
        assert_eq!(report.connect_ns.count, 50);
        assert!(report.connections_per_second > 0.0);
    }
}
