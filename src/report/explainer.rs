//! The architecture write-up, one section per technology: each claim is
//! followed by the measurement of this run that shows (or contradicts) it.

use super::growth_line;
use crate::results::Results;

/// (figure, what the claim predicts) pairs backing one claim.
struct Claim {
    text: &'static str,
    evidence: &'static [&'static str],
    /// Control-plane figures whose cause this run measured (user / sys
    /// split, kernel profile): quoted under the claim.
    causes: &'static [&'static str],
}

struct Section {
    tech: &'static str,
    heading: &'static str,
    claims: &'static [Claim],
}

const SECTIONS: &[Section] = &[
    Section {
        tech: "iptables-legacy",
        heading: "iptables (legacy x_tables)",
        claims: &[
            Claim {
                text: "Rules live in tables (nat, filter) hooked into PREROUTING / FORWARD / OUTPUT. kube-proxy's KUBE-SERVICES chain holds one rule per service and is walked top to bottom: a new connection's first packet is compared against every rule before its own, and a miss against all of them. Expect the hook time to grow with the service's position (a per-rule slope above 0), the new-flow packet rate to fall, and — much less visibly under TCG — connect latency to grow.",
                evidence: &["services.hook-slope", "services.hook-ns.last", "services.pktgen-pps.last", "services.connect-p50", "services.crr-rate"],
                causes: &[],
            },
            Claim {
                text: "conntrack remembers the NAT decision, so the packets after the first skip the nat table: one long iperf3 stream barely sees N.",
                evidence: &["services.iperf-tcp"],
                causes: &[],
            },
            Claim {
                text: "The table is one blob: iptables-restore rewrites and the kernel replaces the whole table for any change, so adding one service costs time proportional to N.",
                evidence: &["services.add-one", "services.full-load"],
                causes: &["services.add-one", "services.full-load"],
            },
            Claim {
                text: "As a firewall with the matching rule after N others, every new connection walks all N; with NOTRACK every packet does, which is where bandwidth collapses.",
                evidence: &["firewall.hook-ns.match", "firewall.hook-ns.match-overlap", "firewall.pktgen-pps", "firewall.crr-rate.conntrack", "firewall.iperf-tcp.notrack"],
                causes: &[],
            },
        ],
    },
    Section {
        tech: "iptables-nft",
        heading: "iptables-nft (iptables syntax on nf_tables)",
        claims: &[
            Claim {
                text: "Same rules, translated to nf_tables rules in linear chains (no sets or maps), so the per-packet walk is still linear in N.",
                evidence: &["services.hook-slope", "services.connect-p50", "firewall.crr-rate.conntrack"],
                causes: &[],
            },
            Claim {
                text: "Changes go through nf_tables transactions instead of a whole-table replace, but iptables-nft-restore still reads and compares the existing ruleset, so loads are slow.",
                evidence: &["services.full-load", "services.add-one"],
                causes: &["services.full-load", "services.add-one"],
            },
        ],
    },
    Section {
        tech: "nftables",
        heading: "nftables (kube-proxy's nftables layout; set-based firewall)",
        claims: &[
            Claim {
                text: "One rule looks the destination up in a verdict map (`ip daddr . meta l4proto . th dport vmap @service-ips`): a hash lookup whatever N, so connect latency and connection rate should stay roughly flat.",
                evidence: &["services.hook-ns.last", "services.pktgen-pps.last", "services.connect-p50", "services.crr-rate"],
                causes: &[],
            },
            Claim {
                text: "Adding a service is a small transaction (a map element and its chains), independent of N, in the kernel's design. Two things can break that, and the user / sys split and kernel profile quoted below say which one this image pays. In user space, nft before 1.0.1 reads the whole ruleset on every `nft -f` (kube-proxy's nftables mode requires nft ≥ 1.0.1, and by default a kernel ≥ 5.13, for this reason): that shows as user time and as the kernel's dump functions (`nf_tables_dump_*`) growing with N. In the kernel, a transaction does per-set and per-chain work that looks across the whole table — finding sets by name (`nft_set_lookup_global`), binding anonymous sets (`__nft_set_trans_bind`), validating jumps through every verdict map (`nf_tables_check_loops`) — and kube-proxy's layout has one anonymous `numgen … vmap` per service: if that is where the time goes, a full load grows quadratically as system time in those functions, whatever the nft version, and the layout without the anonymous maps (nftables-no-anon-maps, below) does not.",
                evidence: &["services.add-one", "services.full-load"],
                causes: &["services.full-load", "services.add-one"],
            },
            Claim {
                text: "As a firewall the rules become set elements matched by one rule, so N filler rules cost a lookup, not a walk.",
                evidence: &["firewall.hook-ns.match", "firewall.crr-rate.conntrack", "firewall.iperf-tcp.notrack"],
                causes: &[],
            },
            Claim {
                text: "That holds only while consecutive rules share an action. First-match order with alternating actions cannot live in one set (a set has no order), so this renderer starts a new interval set — on 5.10 a concatenated-range (pipapo) lookup — at every change of action: the overlapping fillers become N ordered set lookups per packet, each far dearer than a linear rule's compare. Expect the overlap figure to grow with N faster than nftables-linear's.",
                evidence: &["firewall.hook-ns.match-overlap", "firewall.pktgen-pps.overlap"],
                causes: &[],
            },
        ],
    },
    Section {
        tech: "nftables-linear",
        heading: "nftables with one rule per filter rule",
        claims: &[Claim {
            text: "nftables does not make linear rule lists fast by itself: one rule per filter rule is walked like iptables.",
            evidence: &["firewall.hook-ns.match", "firewall.hook-ns.match-overlap", "firewall.crr-rate.conntrack", "firewall.iperf-tcp.notrack"],
            causes: &[],
        }],
    },
    Section {
        tech: "nftables-no-anon-maps",
        heading: "nftables without a map per service (kube-proxy's services layout, no anonymous `numgen … vmap`)",
        claims: &[
            Claim {
                text: "The test of the nftables explanation above: the same table, chains and `service-ips` map, but no anonymous set per service — a single-endpoint service jumps straight to its endpoint chain (as kube-proxy PR #140723 does), a multi-endpoint one picks with one `numgen random mod (B − i) == 0 goto` rule per endpoint (nft 0.9.8 cannot declare a named verdict map keyed by numgen). If the per-anonymous-set work of the commit is where the time goes, full load and add-one grow much less here than with nftables at the same N.",
                evidence: &["services.full-load", "services.add-one"],
                causes: &["services.full-load", "services.add-one"],
            },
            Claim {
                text: "The packet path is the same map lookup plus at most B − 1 more rules in the service chain, so per-packet figures should match nftables'.",
                evidence: &["services.hook-ns.last", "services.pktgen-pps.last", "services.connect-p50"],
                causes: &[],
            },
        ],
    },
    Section {
        tech: "ipvs",
        heading: "IPVS (kube-proxy's IPVS mode)",
        claims: &[
            Claim {
                text: "Virtual services live in a kernel hash table keyed by address, port and protocol; a scheduler (rr here) picks the real server. Lookup cost does not depend on N.",
                evidence: &["services.hook-ns.last", "services.connect-p50", "services.crr-rate"],
                causes: &[],
            },
            Claim {
                text: "ipvsadm adds one virtual service with one netlink call: add-one stays flat.",
                evidence: &["services.add-one"],
                causes: &["services.add-one"],
            },
        ],
    },
    Section {
        tech: "ebpf",
        heading: "eBPF (rulebench's own tc programs and maps, not upstream bpf-iptables)",
        claims: &[
            Claim {
                text: "Upstream bpf-iptables cannot be built on these machines, so this row is rulebench's own dataplane implementing the published designs. Services: a tc program looks the service up in a BPF hash map and rewrites the packet itself, so per-packet cost is independent of N, and a service change is one map write.",
                evidence: &["services.hook-ns.last", "services.pktgen-pps.last", "services.connect-p50", "services.add-one"],
                causes: &[],
            },
            Claim {
                text: "Firewall: Linear Bit Vector Search (Miano et al., CCR 2019). Five lookups give bit vectors over the rules; the program ANDs only the words where all five can have bits, so N filler rules on other sources cost little per packet. With overlapping fillers (same source, destination and protocol as the flood, other ports) every word survives the first four vectors and the scan runs over all N/64 words: still one AND per 64 rules.",
                evidence: &["firewall.hook-ns.match", "firewall.hook-ns.match-overlap", "firewall.pktgen-pps", "firewall.crr-rate.conntrack", "firewall.connect-p50.notrack"],
                causes: &[],
            },
            Claim {
                text: "The price is on the control plane: the vectors are rules/64 words each and there are about as many vectors as distinct field values, so memory and build time grow with N squared, and every change (one rule too) rebuilds all vectors in a new pipeline that is swapped in atomically.",
                evidence: &["firewall.full-load", "firewall.add-one"],
                causes: &["firewall.full-load"],
            },
        ],
    },
];

pub fn markdown(results: &Results) -> String {
    let mut out = String::from("## How each technology works, and what this run measured\n\n");
    for section in SECTIONS {
        out += &format!("### {}\n\n", section.heading);
        if !results.samples.iter().any(|s| s.tech == section.tech) {
            out += "_Not measured in this run._\n\n";
            continue;
        }
        for claim in section.claims {
            out += &format!("- {}\n", claim.text);
            for figure in claim.evidence {
                out += &format!(
                    "  - measured: {}\n",
                    growth_line(results, figure, section.tech)
                );
            }
            // Where the time went, for this technology and, where it was
            // measured, for its kube-proxy-mode updates too.
            let kube_proxy = crate::results::tech_label(section.tech, "kube-proxy");
            for figure in claim.causes {
                for label in [section.tech, kube_proxy.as_str()] {
                    if let Some(line) = super::control_time::cause_line(results, figure, label) {
                        out += &format!("  - where the time went ({label}): {line}\n");
                    }
                }
            }
            // The in-kernel figures are the ones that resolve the claim:
            // their plots sit next to it.
            let plots: Vec<String> = claim
                .evidence
                .iter()
                .filter(|f| f.contains(".hook-") || f.contains(".pktgen-"))
                .filter(|f| results.samples.iter().any(|s| s.figure == **f))
                .map(|f| format!("![{f}]({f}.svg)"))
                .collect();
            if !plots.is_empty() {
                out += &format!("  - {}\n", plots.join(" "));
            }
        }
        out.push('\n');
    }
    out
}
