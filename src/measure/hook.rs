//! Hook time: how long each packet spends inside a technology's own hook
//! function, measured in the guest kernel (`rulebench-ebpf hooktime`:
//! kprobe at entry, kretprobe at return, every call a sample).
//!
//! Under TCG a TCP handshake costs ~3 ms and varies by 20–50 %, so a rule
//! walk of a tenth of that cannot be seen from the client; inside the
//! kernel the same walk is the whole difference between a packet that
//! matches the first service and one that matches the last.

use super::Family;
use crate::tech::{ebpf::LOADER, Tech};
use crate::vm::Vm;
use anyhow::{bail, Context, Result};
use rulebench_proto::{HookFunction, HookPhase, HookPhaseReport, HookPlan, HookReport};

/// How a kernel hooks iptables-legacy's tables in: up to 5.16 each table
/// module has a hook function of its own (`iptable_nat_do_chain`,
/// `iptable_filter_hook`) that calls `ipt_do_table(skb, state, table)`;
/// from 5.17 `ipt_do_table(priv, skb, state)` is itself the hook (6.1 and
/// 6.12 have no per-table functions at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XtHooks {
    PerTable,
    Shared,
}

impl XtHooks {
    /// From a kernel release such as `5.10.0-32-cloud-amd64`; an
    /// unreadable release is taken as a new kernel (a wrong guess fails
    /// loudly: the primary hook then cannot be probed).
    pub fn of_release(release: &str) -> XtHooks {
        let mut numbers = release
            .split(|c: char| !c.is_ascii_digit())
            .map(|p| p.parse::<u32>().ok());
        match (numbers.next().flatten(), numbers.next().flatten()) {
            (Some(major), Some(minor)) if (major, minor) < (5, 17) => XtHooks::PerTable,
            _ => XtHooks::Shared,
        }
    }
}

/// Every function traced, whatever the technology, so the breakdown shows
/// all the per-packet work (kube-proxy's IPVS mode also runs iptables
/// rules; a table left by an earlier technology would show up too).
/// Each is a hook function taking `(void *priv, struct sk_buff *, const
/// struct nf_hook_state *)` — the state is argument 3 — except tc's
/// classifier, which has no netfilter hook.
pub fn traced(xt: XtHooks) -> Vec<(&'static str, u32)> {
    let mut out = match xt {
        XtHooks::PerTable => vec![("iptable_nat_do_chain", 3), ("iptable_filter_hook", 3)],
        XtHooks::Shared => vec![("ipt_do_table", 3)],
    };
    out.extend([
        ("nft_nat_do_chain", 3),
        ("nft_do_chain_ipv4", 3),
        ("ip_vs_remote_request4", 3),
        ("cls_bpf_classify", 0),
    ]);
    out
}

/// The (function, hook) where a technology decides a new flow: the
/// service dispatch (DNAT) or the filter verdict.
pub fn primary(tech: Tech, family: Family, xt: XtHooks) -> (&'static str, &'static str) {
    match (tech, family) {
        (Tech::Ebpf, _) => ("cls_bpf_classify", ""),
        (Tech::IptablesLegacy, Family::Services) => match xt {
            XtHooks::PerTable => ("iptable_nat_do_chain", "PREROUTING"),
            XtHooks::Shared => ("ipt_do_table", "PREROUTING"),
        },
        (Tech::IptablesLegacy, Family::Firewall) => match xt {
            XtHooks::PerTable => ("iptable_filter_hook", "FORWARD"),
            XtHooks::Shared => ("ipt_do_table", "FORWARD"),
        },
        (Tech::Ipvs, _) => ("ip_vs_remote_request4", "INPUT"),
        (
            Tech::IptablesNft | Tech::Nftables | Tech::NftablesLinear | Tech::NftablesNoAnonMaps,
            Family::Services,
        ) => ("nft_nat_do_chain", "PREROUTING"),
        (
            Tech::IptablesNft | Tech::Nftables | Tech::NftablesLinear | Tech::NftablesNoAnonMaps,
            Family::Firewall,
        ) => ("nft_do_chain_ipv4", "FORWARD"),
    }
}

pub fn plan(xt: XtHooks, phases: Vec<HookPhase>) -> HookPlan {
    HookPlan {
        functions: traced(xt)
            .into_iter()
            .map(|(name, state_arg)| HookFunction {
                name: name.to_string(),
                state_arg,
            })
            .collect(),
        phases,
    }
}

/// Runs the plan in the guest; fails when a phase's command failed.
pub fn run(vm: &mut Vm, plan: &HookPlan) -> Result<HookReport> {
    let r = vm
        .exec_request(rulebench_proto::ExecRequest {
            argv: vec![LOADER.into(), "hooktime".into()],
            stdin: serde_json::to_vec(plan).expect("hook plan serializes"),
            timeout_ms: 600_000,
            env: Vec::new(),
        })
        .context("running `rulebench-ebpf hooktime`")?;
    if r.exit_code != Some(0) {
        bail!(
            "rulebench-ebpf hooktime exited {:?}: {}",
            r.exit_code,
            String::from_utf8_lossy(&r.stderr).trim()
        );
    }
    let report: HookReport =
        serde_json::from_slice(&r.stdout).context("parsing the hooktime report")?;
    if let Some(p) = report.phases.iter().find(|p| p.exit_code != Some(0)) {
        bail!(
            "hooktime phase {} exited {:?}: {}",
            p.name,
            p.exit_code,
            String::from_utf8_lossy(&r.stderr).trim()
        );
    }
    Ok(report)
}

/// Median per-call ns and call count of one (function, hook) in a phase.
pub fn group(phase: &HookPhaseReport, function: &str, hook: &str) -> Option<(f64, usize)> {
    let calls = phase
        .calls
        .iter()
        .find(|c| c.function == function && c.hook == hook)?;
    if calls.ns.is_empty() {
        return None;
    }
    let ns: Vec<f64> = calls.ns.iter().map(|&n| n as f64).collect();
    Some((super::stats::median(&ns), ns.len()))
}

/// Whether the technology's own hook could be probed at all: a missing
/// symbol would otherwise read as "no calls".
pub fn require_attached(report: &HookReport, function: &str) -> Result<()> {
    match report.functions.iter().find(|f| f.name == function) {
        Some(f) if f.attached => Ok(()),
        Some(f) => bail!(
            "cannot probe {function}: {}",
            f.error.as_deref().unwrap_or("not attached")
        ),
        None => bail!("{function} is not in the hooktime plan"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rulebench_proto::HookCalls;

    #[test]
    fn every_primary_hook_is_traced() {
        for xt in [XtHooks::PerTable, XtHooks::Shared] {
            for tech in Tech::ALL {
                for family in [Family::Services, Family::Firewall] {
                    let (function, _) = primary(tech, family, xt);
                    assert!(traced(xt).iter().any(|(f, _)| *f == function), "{function}");
                }
            }
        }
    }

    #[test]
    fn the_x_tables_hook_follows_the_kernel() {
        assert_eq!(
            XtHooks::of_release("5.10.0-32-cloud-amd64"),
            XtHooks::PerTable
        );
        assert_eq!(XtHooks::of_release("5.16.20"), XtHooks::PerTable);
        assert_eq!(XtHooks::of_release("6.1.0-50-cloud-amd64"), XtHooks::Shared);
        assert_eq!(
            XtHooks::of_release("6.12.117+deb13-cloud-amd64"),
            XtHooks::Shared
        );
        assert_eq!(
            primary(Tech::IptablesLegacy, Family::Firewall, XtHooks::Shared),
            ("ipt_do_table", "FORWARD")
        );
    }

    #[test]
    fn groups_take_the_median() {
        let phase = HookPhaseReport {
            name: "first".into(),
            calls: vec![HookCalls {
                function: "f".into(),
                hook: "PREROUTING".into(),
                ns: vec![10, 30, 20, 1000],
            }],
            ..Default::default()
        };
        assert_eq!(group(&phase, "f", "PREROUTING"), Some((25.0, 4)));
        assert_eq!(group(&phase, "f", "FORWARD"), None);
        let plan = plan(XtHooks::PerTable, vec![]);
        assert_eq!(plan.functions.len(), traced(XtHooks::PerTable).len());
    }
}
