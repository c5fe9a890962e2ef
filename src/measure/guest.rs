//! Guest preparation shared by every measurement: the namespace topology
//! with identity servers, iperf3 servers, resetting state between
//! technologies, and reading the kernel's memory counters.

use crate::steps::{run_steps, StepError};
use crate::tech::{self, Step, Tech};
use crate::topo::{Topology, SPARE_PORT};
use crate::vm::{Vm, VmError};
use crate::workload::topology::BACKEND_PORT;

/// Backend namespaces every measurement workload uses (the generators'
/// pool is max(B, 4)).
pub const BACKENDS: u8 = 4;
/// iperf3 server port in backend 0; the measurement workloads route a
/// VIP (services) or a rule (firewall) to it.
pub const IPERF_PORT: u16 = 5201;
/// nftables table carrying the NOTRACK variant's raw-priority rule.
pub const NOTRACK_TABLE: &str = "ip rulebench_notrack";

/// Run a guest tool that reads a JSON plan on stdin and prints a JSON
/// report (the agent's load tool, `rulebench-ebpf hooktime` / `profile`):
/// a non-zero exit is an error quoting its stderr; `what` names the tool.
pub fn run_json<P: serde::Serialize, R: serde::de::DeserializeOwned>(
    vm: &mut Vm,
    what: &str,
    argv: Vec<String>,
    plan: &P,
    timeout_ms: u64,
) -> anyhow::Result<R> {
    use anyhow::Context;
    let r = vm
        .exec_request(rulebench_proto::ExecRequest {
            argv,
            stdin: serde_json::to_vec(plan).expect("plans serialize"),
            timeout_ms,
            env: Vec::new(),
        })
        .with_context(|| format!("running `{what}`"))?;
    if r.exit_code != Some(0) {
        anyhow::bail!(
            "{what} exited {:?}: {}",
            r.exit_code,
            String::from_utf8_lossy(&r.stderr).trim()
        );
    }
    serde_json::from_slice(&r.stdout).with_context(|| format!("parsing the report of `{what}`"))
}

/// Build the namespaces, start identity servers on the backend and spare
/// ports and one iperf3 server in backend 0.
pub fn prepare(vm: &mut Vm) -> Result<Topology, VmError> {
    let topology = Topology::with_backends(BACKENDS, &[BACKEND_PORT, SPARE_PORT]);
    topology.setup(vm)?;
    vm.spawn(
        &[
            "ip",
            "netns",
            "exec",
            "be0",
            "iperf3",
            "-s",
            "-p",
            &IPERF_PORT.to_string(),
        ],
        "/tmp/iperf3-server.log",
    )?;
    // Wait until iperf3 listens: a LISTEN (0A) socket on the port in
    // be0's /proc/net/tcp (iperf3 has no readiness signal of its own).
    let probe = format!(
        "for i in $(seq 100); do ip netns exec be0 cat /proc/net/tcp6 /proc/net/tcp 2>/dev/null | grep -q ':{IPERF_PORT:04X} 0\\+:0000 0A' && exit 0; sleep 0.1; done; cat /tmp/iperf3-server.log; exit 1"
    );
    vm.sh(&probe)?;
    Ok(topology)
}

/// Every technology's state gone (the guest-state reset the correctness
/// tests use too: one list of technologies for both, so none is forgotten
/// — the eBPF programs were, once, and each eBPF full load then replaced
/// the previous one instead of loading from empty), the NOTRACK table
/// gone, conntrack empty.
pub fn reset(vm: &mut Vm) -> Result<(), StepError> {
    // The guest-state reset already flushed conntrack; nothing passes
    // traffic between that flush and this step.
    crate::guest_state::reset(vm)?;
    run_steps(vm, Tech::Nftables, &[notrack_off()])?;
    Ok(())
}

/// `conntrack -F` exits 1 on an empty table on some versions.
pub fn flush_conntrack() -> Step {
    Step::new(&["conntrack", "-F"]).tolerant()
}

/// Connection tracking off for every packet (the NOTRACK variant of the
/// firewall family): a raw-priority prerouting chain with `notrack`.
pub fn notrack_on() -> Step {
    Step::with_stdin(
        &tech::nftables::LOAD_ARGV,
        format!(
            "add table {NOTRACK_TABLE}\n\
             add chain {NOTRACK_TABLE} prerouting {{ type filter hook prerouting priority -300 ; }}\n\
             add chain {NOTRACK_TABLE} output {{ type filter hook output priority -300 ; }}\n\
             add rule {NOTRACK_TABLE} prerouting notrack\n\
             add rule {NOTRACK_TABLE} output notrack\n"
        ),
    )
}

/// Removes the NOTRACK table; fine when it does not exist.
pub fn notrack_off() -> Step {
    Step::with_stdin(
        &tech::nftables::LOAD_ARGV,
        format!("table {NOTRACK_TABLE}\ndelete table {NOTRACK_TABLE}\n"),
    )
}

/// Kernel memory counters (KiB) that a ruleset's objects land in:
/// x_tables blobs are vmalloc'd, nftables objects, IPVS services and
/// ipset entries are slab, x_tables counters are per-CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KernelMemory {
    pub slab_kib: i64,
    pub vmalloc_kib: i64,
    pub percpu_kib: i64,
}

impl KernelMemory {
    pub fn total_kib(&self) -> i64 {
        self.slab_kib + self.vmalloc_kib + self.percpu_kib
    }
}

pub fn parse_meminfo(text: &str) -> KernelMemory {
    let field = |name: &str| -> i64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    KernelMemory {
        slab_kib: field("Slab"),
        vmalloc_kib: field("VmallocUsed"),
        percpu_kib: field("Percpu"),
    }
}

/// Read the counters after dropping caches, so dentry / page-cache noise
/// from the loader process does not count as ruleset memory.
pub fn kernel_memory(vm: &mut Vm) -> Result<KernelMemory, VmError> {
    let text = vm.sh("sync; echo 3 > /proc/sys/vm/drop_caches; cat /proc/meminfo")?;
    Ok(parse_meminfo(&text))
}

/// Counters once deferred frees from a reset have landed: BPF maps and
/// programs are released from a workqueue after an RCU grace period, so
/// right after a reset the previous load still holds its memory, and its
/// release during the next load would cancel that load's cost (an eBPF
/// ruleset of 20k rules read as 132 KiB). Waits until the total stops
/// moving (under 64 KiB between reads 300 ms apart), at most 3 s.
pub fn settled_kernel_memory(vm: &mut Vm) -> Result<KernelMemory, VmError> {
    let mut last = kernel_memory(vm)?;
    for _ in 0..10 {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let now = kernel_memory(vm)?;
        if (last.total_kib() - now.total_kib()).abs() < 64 {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_fields() {
        let text = "MemTotal:        1000 kB\nSlab:              120 kB\nSReclaimable:  5 kB\nVmallocUsed:      30 kB\nPercpu:            8 kB\n";
        let m = parse_meminfo(text);
        assert_eq!(
            m,
            KernelMemory {
                slab_kib: 120,
                vmalloc_kib: 30,
                percpu_kib: 8
            }
        );
        assert_eq!(m.total_kib(), 158);
        assert_eq!(parse_meminfo(""), KernelMemory::default());
    }
}
