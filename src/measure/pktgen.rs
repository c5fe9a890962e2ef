//! New-flow packet rate, as the bpf-iptables paper measured it: the
//! kernel's packet generator sends UDP from the client namespace with a
//! random source address and port per packet, so every packet is a new
//! flow and walks the NAT / filter rules (no conntrack shortcut). The
//! rate is what the root namespace forwards to the backends.
//!
//! pktgen transmits straight into the client's veth; the peer's receive
//! softirq runs on the same vCPU when pktgen re-enables bottom halves, so
//! a slower rule walk lowers the rate the sender can reach rather than
//! filling a queue: delivered packets per second is the figure, drops
//! (sent − delivered) are stated beside it.

use crate::topo::CLIENT_NS;
use crate::vm::Vm;
use crate::workload::topology::CLIENT_ADDR;
use anyhow::{bail, Context, Result};
use std::net::Ipv4Addr;

/// The client namespace's end of its veth (pktgen sends on it).
const CLIENT_DEV: &str = "eth0";
/// The root namespace's end, whose MAC the frames are addressed to.
const GATEWAY_DEV: &str = "vclient";
/// UDP destination port of flood workloads: nothing listens on it, so a
/// backend answers at most with rate-limited ICMP, not with a reply per
/// packet that would load the vCPU the measurement runs on.
pub const FLOOD_PORT: u16 = 9;

/// One pktgen run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flood {
    pub dst: Ipv4Addr,
    pub dport: u16,
    /// Packets to send (0: until `duration_ms` ends it).
    pub count: u64,
    /// Stop after this long (with `count` 0).
    pub duration_ms: Option<u64>,
}

impl Flood {
    /// `count` packets as fast as they go (hook-time phases).
    pub fn packets(dst: Ipv4Addr, dport: u16, count: u64) -> Flood {
        Flood {
            dst,
            dport,
            count,
            duration_ms: None,
        }
    }

    /// Full speed for a fixed time (rate phases).
    pub fn timed(dst: Ipv4Addr, dport: u16, duration_ms: u64) -> Flood {
        Flood {
            dst,
            dport,
            count: 0,
            duration_ms: Some(duration_ms),
        }
    }
}

/// Random sources over the client subnet (10.100.0.2–254) × ports
/// 1024–65535: 16 M tuples, so a run of 100k packets repeats almost none.
fn source_range() -> (Ipv4Addr, Ipv4Addr) {
    let o = CLIENT_ADDR.octets();
    (CLIENT_ADDR, Ipv4Addr::new(o[0], o[1], o[2], 254))
}

/// Shell script (run inside the client namespace) that configures pktgen
/// for `flood` and prints the device's report when done.
pub fn script(flood: &Flood, gateway_mac: &str) -> String {
    let (src_min, src_max) = source_range();
    let settings = [
        format!("count {}", flood.count),
        "clone_skb 0".into(), // veth rewrites the skb: no clones
        "pkt_size 60".into(),
        "delay 0".into(),
        format!("dst {}", flood.dst),
        format!("dst_mac {gateway_mac}"),
        format!("udp_dst_min {}", flood.dport),
        format!("udp_dst_max {}", flood.dport),
        "udp_src_min 1024".into(),
        "udp_src_max 65535".into(),
        format!("src_min {src_min}"),
        format!("src_max {src_max}"),
        "flag UDPSRC_RND".into(),
        "flag IPSRC_RND".into(),
    ];
    let mut s = format!(
        "set -e\nP=/proc/net/pktgen\nD=$P/{CLIENT_DEV}\n\
         echo rem_device_all > $P/kpktgend_0\n\
         echo 'add_device {CLIENT_DEV}' > $P/kpktgend_0\n"
    );
    for line in settings {
        s += &format!("echo '{line}' > $D\n");
    }
    match flood.duration_ms {
        Some(ms) => {
            s += &format!(
                "echo start > $P/pgctrl &\nsleep {}\necho stop > $P/pgctrl\nwait\n",
                secs(ms)
            );
        }
        None => s += "echo start > $P/pgctrl\n",
    }
    s += "cat $D\necho rem_device_all > $P/kpktgend_0\n";
    s
}

fn secs(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// argv that runs `script` in the client namespace.
pub fn client_argv(script: &str) -> Vec<String> {
    ["ip", "netns", "exec", CLIENT_NS, "sh", "-c", script]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// What pktgen says it sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sent {
    pub packets: u64,
    pub elapsed_us: u64,
}

impl Sent {
    pub fn pps(&self) -> f64 {
        self.packets as f64 * 1e6 / self.elapsed_us.max(1) as f64
    }
}

/// Parses the `Result: OK: 57652(c56749+d902) usec, 2000 (60byte,0frags)`
/// line of a pktgen device report.
pub fn parse_report(text: &str) -> Result<Sent> {
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Result: OK:"))
        .with_context(|| format!("pktgen reported no `Result: OK` line: {}", text.trim()))?;
    let (time, rest) = line
        .trim()
        .split_once('(')
        .context("pktgen result: no time")?;
    let packets = rest
        .split_once("usec,")
        .and_then(|(_, p)| p.split_whitespace().next())
        .context("pktgen result: no packet count")?;
    Ok(Sent {
        packets: packets.parse().context("pktgen packet count")?,
        elapsed_us: time.trim().parse().context("pktgen elapsed time")?,
    })
}

/// MAC of the root namespace's end of the client link.
pub fn gateway_mac(vm: &mut Vm) -> Result<String> {
    let mac = vm
        .sh(&format!("cat /sys/class/net/{GATEWAY_DEV}/address"))
        .context("reading the client gateway's MAC")?;
    Ok(mac.trim().to_string())
}

/// Packets the root namespace has sent to the backends so far (the sum
/// over the root-side backend links `vbe*`).
pub fn delivered(vm: &mut Vm) -> Result<u64> {
    let out = vm
        .sh("cat /sys/class/net/vbe*/statistics/tx_packets")
        .context("reading the backend links' tx counters")?;
    out.lines()
        .map(|l| l.trim().parse::<u64>().context("tx_packets"))
        .sum()
}

/// Raise conntrack's table limit so a flood of new flows is never dropped
/// for want of a slot (each packet is one entry until it times out).
pub const CONNTRACK_MAX: u64 = 2_000_000;

pub fn prepare(vm: &mut Vm) -> Result<()> {
    vm.sh(&format!(
        "modprobe pktgen && modprobe nf_conntrack && sysctl -qw net.netfilter.nf_conntrack_max={CONNTRACK_MAX}"
    ))
    .context("loading pktgen and raising nf_conntrack_max")?;
    Ok(())
}

/// One timed flood's outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub sent: Sent,
    pub delivered: u64,
}

impl Rate {
    pub fn delivered_pps(&self) -> f64 {
        self.delivered as f64 * 1e6 / self.sent.elapsed_us.max(1) as f64
    }

    /// Share of sent packets that never reached a backend, in percent.
    pub fn drop_percent(&self) -> f64 {
        if self.sent.packets == 0 {
            return 0.0;
        }
        let lost = self.sent.packets.saturating_sub(self.delivered);
        100.0 * lost as f64 / self.sent.packets as f64
    }
}

pub fn rate(vm: &mut Vm, flood: &Flood, gateway_mac: &str) -> Result<Rate> {
    let before = delivered(vm)?;
    let argv = client_argv(&script(flood, gateway_mac));
    let r = vm
        .exec_request(rulebench_proto::ExecRequest {
            argv,
            stdin: Vec::new(),
            timeout_ms: flood.duration_ms.unwrap_or(0) + 120_000,
            env: Vec::new(),
        })
        .context("running pktgen in the client namespace")?;
    if r.exit_code != Some(0) {
        bail!(
            "pktgen to {}:{} exited {:?}: {}",
            flood.dst,
            flood.dport,
            r.exit_code,
            String::from_utf8_lossy(&r.stderr).trim()
        );
    }
    let sent = parse_report(&String::from_utf8_lossy(&r.stdout))?;
    // Packets still queued behind the last one sent are forwarded within
    // a moment; counting right away would book them as drops.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let after = delivered(vm)?;
    Ok(Rate {
        sent,
        delivered: after.saturating_sub(before),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_line() {
        let text = "Params: count 2000\nResult: OK: 57652(c56749+d902) usec, 2000 (60byte,0frags)\n  34690pps 16Mb/sec\n";
        let sent = parse_report(text).unwrap();
        assert_eq!(
            sent,
            Sent {
                packets: 2000,
                elapsed_us: 57652
            }
        );
        assert!((sent.pps() - 34690.9).abs() < 1.0);
        assert!(parse_report("Result: Idle\n").is_err());
    }

    #[test]
    fn scripts() {
        let timed = script(
            &Flood::timed(Ipv4Addr::new(10, 96, 0, 1), 9, 2500),
            "aa:bb:cc:dd:ee:ff",
        );
        assert!(timed.contains("echo 'count 0' > $D"));
        assert!(timed.contains("sleep 2.500\necho stop > $P/pgctrl"));
        assert!(timed.contains("echo 'dst_mac aa:bb:cc:dd:ee:ff' > $D"));
        assert!(timed.contains("echo 'src_max 10.100.0.254' > $D"));
        let counted = script(&Flood::packets(Ipv4Addr::new(10, 96, 0, 1), 9, 300), "m");
        assert!(counted.contains("echo 'count 300' > $D"));
        assert!(counted.contains("echo start > $P/pgctrl\ncat $D"));
    }

    #[test]
    fn rates() {
        let r = Rate {
            sent: Sent {
                packets: 1000,
                elapsed_us: 500_000,
            },
            delivered: 900,
        };
        assert_eq!(r.delivered_pps(), 1800.0);
        assert_eq!(r.drop_percent(), 10.0);
    }
}
