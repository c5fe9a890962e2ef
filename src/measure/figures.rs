//! The catalogue of figures a bench run produces: one id per measured
//! quantity, with its unit and which direction is better. `compare` reads
//! the direction, the report reads titles and units.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figure {
    pub id: &'static str,
    pub title: &'static str,
    pub unit: &'static str,
    pub better: Better,
}

const fn lower(id: &'static str, title: &'static str, unit: &'static str) -> Figure {
    Figure {
        id,
        title,
        unit,
        better: Better::Lower,
    }
}

const fn higher(id: &'static str, title: &'static str, unit: &'static str) -> Figure {
    Figure {
        id,
        title,
        unit,
        better: Better::Higher,
    }
}

pub const BOOT: Figure = lower(
    "guest.boot-to-first-command",
    "boot to first guest command (host clock; a snapshot restore unless RULEBENCH_SNAPSHOT=0)",
    "s",
);

pub const COLD_BOOT: Figure = lower(
    "guest.cold-boot-to-first-command",
    "cold boot (kernel + initramfs, no snapshot) to first guest command (host clock)",
    "s",
);

pub const SVC_FULL_LOAD: Figure = lower(
    "services.full-load",
    "services: full load of N from empty",
    "ms",
);
pub const SVC_ADD: Figure = lower("services.add-one", "services: add one with N present", "ms");
pub const SVC_DELETE: Figure = lower(
    "services.delete-one",
    "services: delete one with N present",
    "ms",
);
pub const SVC_CHANGE: Figure = lower(
    "services.change-one",
    "services: change one service's backends",
    "ms",
);
pub const SVC_MEMORY: Figure = lower(
    "services.kernel-memory",
    "services: kernel memory of the ruleset (slab + vmalloc + percpu delta)",
    "KiB",
);
pub const SVC_CRR: Figure = higher(
    "services.crr-rate",
    "services: new TCP connections per second (connect/answer/close)",
    "conn/s",
);
pub const SVC_P50: Figure = lower(
    "services.connect-p50",
    "services: connect latency p50",
    "us",
);
pub const SVC_P90: Figure = lower(
    "services.connect-p90",
    "services: connect latency p90",
    "us",
);
pub const SVC_P99: Figure = lower(
    "services.connect-p99",
    "services: connect latency p99",
    "us",
);
pub const SVC_TCP: Figure = higher(
    "services.iperf-tcp",
    "services: iperf3 TCP bandwidth through a VIP (one stream)",
    "Mbit/s",
);
pub const SVC_UDP_LOSS: Figure = lower(
    "services.iperf-udp-loss",
    "services: iperf3 UDP loss at a fixed rate through a VIP",
    "%",
);

pub const FW_FULL_LOAD: Figure = lower(
    "firewall.full-load",
    "firewall: full load of N rules from empty",
    "ms",
);
pub const FW_ADD: Figure = lower(
    "firewall.add-one",
    "firewall: insert one rule with N present",
    "ms",
);
pub const FW_DELETE: Figure = lower(
    "firewall.delete-one",
    "firewall: delete one rule with N present",
    "ms",
);
pub const FW_MEMORY: Figure = lower(
    "firewall.kernel-memory",
    "firewall: kernel memory of the ruleset",
    "KiB",
);
pub const FW_CRR: Figure = higher(
    "firewall.crr-rate.conntrack",
    "firewall: new connections/s, N rules before the match (conntrack on)",
    "conn/s",
);
pub const FW_P50: Figure = lower(
    "firewall.connect-p50.conntrack",
    "firewall: connect p50, N rules before the match (conntrack on)",
    "us",
);
pub const FW_TCP: Figure = higher(
    "firewall.iperf-tcp.conntrack",
    "firewall: iperf3 TCP, N rules before the match (conntrack on)",
    "Mbit/s",
);
pub const FW_CRR_NOTRACK: Figure = higher(
    "firewall.crr-rate.notrack",
    "firewall: new connections/s, N rules before the match (NOTRACK)",
    "conn/s",
);
pub const FW_P50_NOTRACK: Figure = lower(
    "firewall.connect-p50.notrack",
    "firewall: connect p50, N rules before the match (NOTRACK)",
    "us",
);
pub const FW_TCP_NOTRACK: Figure = higher(
    "firewall.iperf-tcp.notrack",
    "firewall: iperf3 TCP, N rules before the match (NOTRACK: every packet walks the rules)",
    "Mbit/s",
);

pub const SVC_HOOK_FIRST: Figure = lower(
    "services.hook-ns.first",
    "services: ns per new flow in the technology's own hook, first service (in-kernel, kprobe)",
    "ns",
);
pub const SVC_HOOK_MIDDLE: Figure = lower(
    "services.hook-ns.middle",
    "services: ns per new flow in the technology's own hook, middle service",
    "ns",
);
pub const SVC_HOOK_LAST: Figure = lower(
    "services.hook-ns.last",
    "services: ns per new flow in the technology's own hook, last service",
    "ns",
);
pub const SVC_HOOK_MISS: Figure = lower(
    "services.hook-ns.miss",
    "services: ns per new flow in the technology's own hook, no service (a miss)",
    "ns",
);
pub const SVC_HOOK_SLOPE: Figure = lower(
    "services.hook-slope",
    "services: per-rule cost, (last − first) / (N − 1) of the hook time",
    "ns/rule",
);
pub const SVC_PKTGEN_FIRST: Figure = higher(
    "services.pktgen-pps.first",
    "services: new-flow UDP packets/s forwarded (pktgen, random sources), first service",
    "pkt/s",
);
pub const SVC_PKTGEN_LAST: Figure = higher(
    "services.pktgen-pps.last",
    "services: new-flow UDP packets/s forwarded (pktgen, random sources), last service",
    "pkt/s",
);
pub const SVC_PKTGEN_DROP_LAST: Figure = lower(
    "services.pktgen-drop.last",
    "services: pktgen packets sent but not forwarded, last service",
    "%",
);
pub const FW_HOOK_MATCH: Figure = lower(
    "firewall.hook-ns.match",
    "firewall: ns per new flow in the filter hook, matching rule after N fillers (in-kernel, kprobe)",
    "ns",
);
pub const FW_HOOK_OVERLAP: Figure = lower(
    "firewall.hook-ns.match-overlap",
    "firewall: ns per new flow in the filter hook, match after N fillers sharing the client's prefix (differ by port, alternating actions)",
    "ns",
);
pub const FW_PKTGEN_OVERLAP: Figure = higher(
    "firewall.pktgen-pps.overlap",
    "firewall: new-flow UDP packets/s forwarded (pktgen), match after N overlapping fillers",
    "pkt/s",
);
pub const FW_PKTGEN: Figure = higher(
    "firewall.pktgen-pps",
    "firewall: new-flow UDP packets/s forwarded (pktgen), matching rule after N fillers",
    "pkt/s",
);
pub const FW_PKTGEN_DROP: Figure = lower(
    "firewall.pktgen-drop",
    "firewall: pktgen packets sent but not forwarded",
    "%",
);
pub const FW_PKTGEN_CONNTRACK: Figure = lower(
    "firewall.pktgen-conntrack-entries",
    "firewall: kernel conntrack entries after a pktgen run (0: conntrack not in the path)",
    "entries",
);

pub const ALL: &[Figure] = &[
    COLD_BOOT,
    BOOT,
    SVC_FULL_LOAD,
    SVC_ADD,
    SVC_DELETE,
    SVC_CHANGE,
    SVC_MEMORY,
    SVC_CRR,
    SVC_P50,
    SVC_P90,
    SVC_P99,
    SVC_TCP,
    SVC_UDP_LOSS,
    FW_FULL_LOAD,
    FW_ADD,
    FW_DELETE,
    FW_MEMORY,
    FW_CRR,
    FW_P50,
    FW_TCP,
    FW_CRR_NOTRACK,
    FW_P50_NOTRACK,
    FW_TCP_NOTRACK,
    SVC_HOOK_FIRST,
    SVC_HOOK_MIDDLE,
    SVC_HOOK_LAST,
    SVC_HOOK_MISS,
    SVC_HOOK_SLOPE,
    SVC_PKTGEN_FIRST,
    SVC_PKTGEN_LAST,
    SVC_PKTGEN_DROP_LAST,
    FW_HOOK_MATCH,
    FW_HOOK_OVERLAP,
    FW_PKTGEN,
    FW_PKTGEN_OVERLAP,
    FW_PKTGEN_DROP,
    FW_PKTGEN_CONNTRACK,
];

/// A control-plane figure with its companions: the user and system CPU
/// time of the same commands (the agent's `wait4` of each step). Kernel
/// work inside the commands' system calls is sys time — nfnetlink
/// processes a batch in the sender's `sendmsg` — but work the kernel
/// deferred to kworkers or RCU callbacks is in neither, so user + sys can
/// be less than the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuSplit {
    pub total: Figure,
    pub user: Figure,
    pub sys: Figure,
}

const fn split(
    total: Figure,
    user: (&'static str, &'static str),
    sys: (&'static str, &'static str),
) -> CpuSplit {
    CpuSplit {
        total,
        user: lower(user.0, user.1, "ms"),
        sys: lower(sys.0, sys.1, "ms"),
    }
}

/// Every control-plane figure's split. Kept out of [`ALL`]: the report
/// shows them in their own section ("where control-plane time goes")
/// instead of a plot and table each; `compare` still finds them through
/// [`lookup`].
pub const SPLITS: &[CpuSplit] = &[
    split(
        SVC_FULL_LOAD,
        (
            "services.full-load.user",
            "services: full load, user CPU time of the commands",
        ),
        (
            "services.full-load.sys",
            "services: full load, kernel (system) CPU time of the commands",
        ),
    ),
    split(
        SVC_ADD,
        ("services.add-one.user", "services: add one, user CPU time"),
        (
            "services.add-one.sys",
            "services: add one, kernel (system) CPU time",
        ),
    ),
    split(
        SVC_DELETE,
        (
            "services.delete-one.user",
            "services: delete one, user CPU time",
        ),
        (
            "services.delete-one.sys",
            "services: delete one, kernel (system) CPU time",
        ),
    ),
    split(
        SVC_CHANGE,
        (
            "services.change-one.user",
            "services: change one, user CPU time",
        ),
        (
            "services.change-one.sys",
            "services: change one, kernel (system) CPU time",
        ),
    ),
    split(
        FW_FULL_LOAD,
        (
            "firewall.full-load.user",
            "firewall: full load, user CPU time of the commands",
        ),
        (
            "firewall.full-load.sys",
            "firewall: full load, kernel (system) CPU time of the commands",
        ),
    ),
    split(
        FW_ADD,
        (
            "firewall.add-one.user",
            "firewall: insert one rule, user CPU time",
        ),
        (
            "firewall.add-one.sys",
            "firewall: insert one rule, kernel (system) CPU time",
        ),
    ),
    split(
        FW_DELETE,
        (
            "firewall.delete-one.user",
            "firewall: delete one rule, user CPU time",
        ),
        (
            "firewall.delete-one.sys",
            "firewall: delete one rule, kernel (system) CPU time",
        ),
    ),
];

/// The split of a control-plane figure, by the total's id.
pub fn split_of(total_id: &str) -> Option<&'static CpuSplit> {
    SPLITS.iter().find(|s| s.total.id == total_id)
}

/// Whether `id` is the user or sys part of a split time (the parts are
/// noisier than their total and move with it).
pub fn is_split_part(id: &str) -> bool {
    SPLITS.iter().any(|s| s.user.id == id || s.sys.id == id)
}

/// The catalogue entry of a figure id (results files may carry ids a newer
/// or older rulebench knows; those get a neutral lower-is-better entry).
pub fn lookup(id: &str) -> Figure {
    let splits = SPLITS.iter().flat_map(|s| [s.user, s.sys]);
    ALL.iter()
        .copied()
        .chain(splits)
        .find(|f| f.id == id)
        .unwrap_or(Figure {
            id: "unknown",
            title: "unknown figure",
            unit: "",
            better: Better::Lower,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_known() {
        let splits = SPLITS.iter().flat_map(|s| [s.user.id, s.sys.id]);
        let mut ids: Vec<&str> = ALL.iter().map(|f| f.id).chain(splits).collect();
        ids.sort_unstable();
        let before = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), before);
        assert_eq!(lookup("services.crr-rate").better, Better::Higher);
        assert_eq!(lookup("nope").id, "unknown");
    }

    #[test]
    fn every_control_plane_time_has_a_split_named_after_it() {
        for s in SPLITS {
            assert!(ALL.contains(&s.total), "{}", s.total.id);
            assert_eq!(s.user.id, format!("{}.user", s.total.id));
            assert_eq!(s.sys.id, format!("{}.sys", s.total.id));
            assert_eq!(lookup(s.sys.id).unit, "ms");
        }
        assert_eq!(
            split_of("services.add-one").unwrap().sys.id,
            "services.add-one.sys"
        );
        assert!(split_of("services.crr-rate").is_none());
    }
}
