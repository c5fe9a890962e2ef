//! Data plane: new-connection rate and connect latency with our load tool
//! (`rulebench-agent load`, TCP_CRR-like), and iperf3 bandwidth — both run
//! from the client namespace through the root namespace where the
//! technology under test sits.
//!
//! Both are needed: a single iperf3 stream hides per-rule cost, because
//! only its first packet walks the NAT / filter rules; conntrack carries
//! the rest. The connection-rate test pays the walk on every connection.

use crate::topo::{AGENT, CLIENT_NS, SPARE_PORT};
use crate::vm::Vm;
use crate::workload::topology::backend_addr;
use crate::workload::{Proto, Services};
use anyhow::{bail, Context, Result};
use rulebench_proto::{ExecRequest, LoadPlan, LoadReport, LoadTarget};
use std::net::Ipv4Addr;

/// Knobs of one data-plane run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DataConfig {
    pub crr_duration_ms: u64,
    pub crr_concurrency: u32,
    pub iperf_seconds: u32,
    /// iperf3 UDP is sent at this fixed rate; loss at that rate is the figure.
    pub udp_rate_mbit: u32,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            crr_duration_ms: 3000,
            // One connection at a time, as netperf TCP_CRR: with a 1-vCPU
            // guest more workers only queue behind each other and the
            // connect latency would measure the scheduler, not the path.
            crr_concurrency: 1,
            iperf_seconds: 3,
            udp_rate_mbit: 50,
        }
    }
}

/// Connections spread uniformly over every TCP service, plus a tenth to an
/// address no service owns (a backend's spare port, reached directly): a
/// miss walks every rule of a linear layout, the worst case.
pub fn services_plan(services: &Services, config: &DataConfig, seed: u64) -> LoadPlan {
    let mut targets: Vec<LoadTarget> = services
        .services
        .iter()
        .filter(|s| s.proto == Proto::Tcp)
        .map(|s| LoadTarget {
            addr: s.vip.to_string(),
            port: s.port,
            weight: 9,
        })
        .collect();
    // 9 per service and N for the miss: the miss is 10 % of the traffic.
    // With no service at all, every connection is a miss.
    let miss_weight = (targets.len() as u32).max(1);
    targets.push(LoadTarget {
        addr: backend_addr(0).to_string(),
        port: SPARE_PORT,
        weight: miss_weight,
    });
    plan(targets, config, seed)
}

/// Connections straight to the backends' port: allowed by the matching
/// rule that sits after the N filler rules.
pub fn firewall_plan(backends: u8, port: u16, config: &DataConfig, seed: u64) -> LoadPlan {
    let targets = (0..usize::from(backends))
        .map(|k| LoadTarget {
            addr: backend_addr(k).to_string(),
            port,
            weight: 1,
        })
        .collect();
    plan(targets, config, seed)
}

fn plan(targets: Vec<LoadTarget>, config: &DataConfig, seed: u64) -> LoadPlan {
    LoadPlan {
        targets,
        duration_ms: config.crr_duration_ms,
        max_connections: 0,
        concurrency: config.crr_concurrency,
        // Generous for TCG: a timeout is counted as a failure, not waited
        // out. Well over 1 s, so that a connection whose first SYN was lost
        // (the kernel retries after 1 s) still completes on a loaded 2-core
        // runner; CI saw one 2 s timeout in five IPVS connections.
        timeout_ms: 3000,
        seed,
    }
}

fn in_client(argv: &[&str]) -> Vec<String> {
    ["ip", "netns", "exec", CLIENT_NS]
        .iter()
        .chain(argv)
        .map(|s| s.to_string())
        .collect()
}

pub fn run_load(vm: &mut Vm, plan: &LoadPlan) -> Result<LoadReport> {
    let report: LoadReport = super::guest::run_json(
        vm,
        "rulebench-agent load (client namespace)",
        in_client(&[AGENT, "load"]),
        plan,
        plan.duration_ms + 60_000,
    )?;
    // Failures beyond a few percent mean the ruleset is broken, and a
    // rate measured on broken connections is meaningless. One lost
    // connection is tolerated whatever the count: short runs on a loaded
    // TCG runner make only a handful of attempts.
    let attempts = report.connections + report.failures;
    if attempts == 0 || report.failures > 1.max(attempts / 20) {
        bail!(
            "load: {} of {} connections failed (first error: {})",
            report.failures,
            attempts,
            report.first_error.as_deref().unwrap_or("none")
        );
    }
    Ok(report)
}

/// A load run started in the background by [`spawn_load`], so the control
/// plane can change while connections are being made.
#[derive(Debug)]
pub struct BackgroundLoad {
    report_path: String,
    log_path: String,
    /// Guest-side duration plus slack; [`BackgroundLoad::wait`] gives up after it.
    wait_limit: std::time::Duration,
}

/// Start `rulebench-agent load` detached in the client namespace. The
/// report is written to a temporary name and renamed when complete, so a
/// half-written file is never read.
pub fn spawn_load(vm: &mut Vm, plan: &LoadPlan, tag: &str) -> Result<BackgroundLoad> {
    let plan_path = format!("/tmp/rulebench-load-{tag}.plan.json");
    let report_path = format!("/tmp/rulebench-load-{tag}.report.json");
    let log_path = format!("/tmp/rulebench-load-{tag}.log");
    vm.put_file(
        &plan_path,
        &serde_json::to_vec(plan).expect("plan serializes"),
        0o644,
    )
    .context("writing the load plan into the guest")?;
    let script = format!(
        "rm -f {report_path}; ip netns exec {CLIENT_NS} {AGENT} load < {plan_path} > {report_path}.part && mv {report_path}.part {report_path}"
    );
    vm.spawn(&["sh", "-c", &script], &log_path)
        .context("starting `rulebench-agent load` in the background")?;
    Ok(BackgroundLoad {
        report_path,
        log_path,
        wait_limit: std::time::Duration::from_millis(plan.duration_ms + 60_000),
    })
}

impl BackgroundLoad {
    /// Whether the run has written its report.
    pub fn finished(&self, vm: &mut Vm) -> Result<bool> {
        let r = vm
            .exec(&["test", "-e", &self.report_path])
            .context("checking for the background load report")?;
        Ok(r.exit_code == Some(0))
    }

    /// Wait for the report; every failure stays in it (no threshold here:
    /// callers that count lost connections want the exact number).
    pub fn wait(self, vm: &mut Vm) -> Result<LoadReport> {
        let started = std::time::Instant::now();
        while !self.finished(vm)? {
            if started.elapsed() > self.wait_limit {
                let log = vm.get_file(&self.log_path).unwrap_or_default();
                bail!(
                    "the background load wrote no report within {:?}; its log: {}",
                    self.wait_limit,
                    String::from_utf8_lossy(&log).trim()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let raw = vm
            .get_file(&self.report_path)
            .context("reading the background load report")?;
        serde_json::from_slice(&raw).context("parsing the background load report")
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IperfResult {
    pub mbit_per_s: f64,
    /// UDP only.
    pub lost_percent: Option<f64>,
}

/// iperf3 `-J` output: TCP → receiver's bits/s; UDP → `end.sum`
/// (the server-side count of what arrived, as the client reports it).
pub fn parse_iperf(json: &str, udp: bool) -> Result<IperfResult> {
    let v: serde_json::Value =
        serde_json::from_str(json).context("iperf3 -J output is not JSON")?;
    if let Some(err) = v.get("error").and_then(|e| e.as_str()) {
        bail!("iperf3: {err}");
    }
    let end = v.get("end").context("iperf3 output has no `end` section")?;
    let section = if udp { "sum" } else { "sum_received" };
    let sum = end
        .get(section)
        .with_context(|| format!("iperf3 output has no end.{section}"))?;
    let bits = sum
        .get("bits_per_second")
        .and_then(|b| b.as_f64())
        .with_context(|| format!("iperf3 end.{section} has no bits_per_second"))?;
    Ok(IperfResult {
        mbit_per_s: bits / 1e6,
        lost_percent: if udp {
            Some(
                sum.get("lost_percent")
                    .and_then(|l| l.as_f64())
                    .unwrap_or(0.0),
            )
        } else {
            None
        },
    })
}

pub fn iperf(
    vm: &mut Vm,
    server: Ipv4Addr,
    port: u16,
    config: &DataConfig,
    udp: bool,
) -> Result<IperfResult> {
    let (server, port, secs) = (
        server.to_string(),
        port.to_string(),
        config.iperf_seconds.to_string(),
    );
    let rate = format!("{}M", config.udp_rate_mbit);
    let mut argv = vec!["iperf3", "-c", &server, "-p", &port, "-t", &secs, "-J"];
    if udp {
        argv.extend(["-u", "-b", &rate]);
    }
    let argv = in_client(&argv);
    let mut last = String::new();
    // The server refuses a test while it still finishes the previous one
    // ("the server is busy"): retry a few times before calling it a failure.
    for _ in 0..5 {
        let r = vm
            .exec_request(ExecRequest {
                argv: argv.clone(),
                stdin: Vec::new(),
                timeout_ms: (u64::from(config.iperf_seconds) + 60) * 1000,
                env: Vec::new(),
            })
            .context("running iperf3 in the client namespace")?;
        let out = String::from_utf8_lossy(&r.stdout).into_owned();
        match parse_iperf(&out, udp) {
            Ok(result) if r.exit_code == Some(0) => return Ok(result),
            Ok(_) => {
                last = format!(
                    "exit {:?}: {}",
                    r.exit_code,
                    String::from_utf8_lossy(&r.stderr)
                )
            }
            Err(e) => last = format!("{e:#}"),
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    bail!(
        "iperf3 {} to {server}:{port}: {last}",
        if udp { "UDP" } else { "TCP" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::ServiceGen;

    #[test]
    fn services_plan_sends_a_tenth_to_the_miss() {
        let gen = ServiceGen::plain(10, 2);
        let services = Services {
            services: gen.expand(),
        };
        let plan = services_plan(&services, &DataConfig::default(), 1);
        assert_eq!(plan.targets.len(), 11);
        let total: u32 = plan.targets.iter().map(|t| t.weight).sum();
        let miss = plan.targets.last().unwrap();
        assert_eq!((miss.addr.as_str(), miss.port), ("10.200.0.2", SPARE_PORT));
        assert_eq!(miss.weight * 10, total);
        let empty = services_plan(&Services::default(), &DataConfig::default(), 1);
        assert_eq!(empty.targets.len(), 1);
    }

    #[test]
    fn iperf_json() {
        let tcp = r#"{"end":{"sum_received":{"bits_per_second":5.5e8},"sum_sent":{"bits_per_second":6e8}}}"#;
        assert_eq!(
            parse_iperf(tcp, false).unwrap(),
            IperfResult {
                mbit_per_s: 550.0,
                lost_percent: None
            }
        );
        let udp = r#"{"end":{"sum":{"bits_per_second":4.9e7,"lost_percent":2.5}}}"#;
        assert_eq!(parse_iperf(udp, true).unwrap().lost_percent, Some(2.5));
        let err =
            parse_iperf(r#"{"error":"the server is busy running a test"}"#, false).unwrap_err();
        assert!(err.to_string().contains("busy"));
    }
}
