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

/// Which hook functions a kernel registers. Linux 5.16 changed two of
/// them: x_tables' per-table hook functions (`iptable_nat_do_chain`,
/// `iptable_filter_hook`, each calling `ipt_do_table(skb, state, table)`)
/// gave way to `ipt_do_table(priv, skb, state)` registered as the hook
/// itself, and IPVS's per-direction `ip_vs_remote_request4` (LOCAL_IN) /
/// `ip_vs_local_request4` (LOCAL_OUT) merged into `ip_vs_in_hook(priv,
/// skb, state)`. A bookworm-6.1 guest with ip_vs and iptable_nat loaded
/// has `ipt_do_table` and `ip_vs_in_hook` and none of the older names in
/// /proc/kallsyms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelHooks {
    Before5_16,
    From5_16,
}

impl KernelHooks {
    /// From a kernel release such as `5.10.0-32-cloud-amd64`; an
    /// unreadable release is taken as a new kernel (a wrong guess fails
    /// loudly: the primary hook then cannot be probed).
    pub fn of_release(release: &str) -> KernelHooks {
        let mut numbers = release
            .split(|c: char| !c.is_ascii_digit())
            .map(|p| p.parse::<u32>().ok());
        match (numbers.next().flatten(), numbers.next().flatten()) {
            (Some(major), Some(minor)) if (major, minor) < (5, 16) => KernelHooks::Before5_16,
            _ => KernelHooks::From5_16,
        }
    }

    /// IPVS's LOCAL_IN hook for IPv4 requests.
    fn ipvs(self) -> &'static str {
        match self {
            KernelHooks::Before5_16 => "ip_vs_remote_request4",
            KernelHooks::From5_16 => "ip_vs_in_hook",
        }
    }
}

/// Every function traced, whatever the technology, so the breakdown shows
/// all the per-packet work (kube-proxy's IPVS mode also runs iptables
/// rules; a table left by an earlier technology would show up too).
/// Each is a hook function taking `(void *priv, struct sk_buff *, const
/// struct nf_hook_state *)` — the state is argument 3 — except tc's
/// classifier, which has no netfilter hook.
pub fn traced(kernel: KernelHooks) -> Vec<(&'static str, u32)> {
    let mut out = match kernel {
        KernelHooks::Before5_16 => vec![("iptable_nat_do_chain", 3), ("iptable_filter_hook", 3)],
        KernelHooks::From5_16 => vec![("ipt_do_table", 3)],
    };
    out.extend([
        ("nft_nat_do_chain", 3),
        ("nft_do_chain_ipv4", 3),
        (kernel.ipvs(), 3),
        ("cls_bpf_classify", 0),
    ]);
    out
}

/// The (function, hook) where a technology decides a new flow: the
/// service dispatch (DNAT) or the filter verdict.
pub fn primary(tech: Tech, family: Family, kernel: KernelHooks) -> (&'static str, &'static str) {
    match (tech, family) {
        (Tech::Ebpf, _) => ("cls_bpf_classify", ""),
        (Tech::IptablesLegacy, Family::Services) => match kernel {
            KernelHooks::Before5_16 => ("iptable_nat_do_chain", "PREROUTING"),
            KernelHooks::From5_16 => ("ipt_do_table", "PREROUTING"),
        },
        (Tech::IptablesLegacy, Family::Firewall) => match kernel {
            KernelHooks::Before5_16 => ("iptable_filter_hook", "FORWARD"),
            KernelHooks::From5_16 => ("ipt_do_table", "FORWARD"),
        },
        (Tech::Ipvs, _) => (kernel.ipvs(), "INPUT"),
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

pub fn plan(kernel: KernelHooks, phases: Vec<HookPhase>) -> HookPlan {
    HookPlan {
        functions: traced(kernel)
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
        for kernel in [KernelHooks::Before5_16, KernelHooks::From5_16] {
            for tech in Tech::ALL {
                for family in [Family::Services, Family::Firewall] {
                    let (function, _) = primary(tech, family, kernel);
                    assert!(
                        traced(kernel).iter().any(|(f, _)| *f == function),
                        "{function}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_hooks_follow_the_kernel_release_with_the_boundary_at_5_16() {
        use KernelHooks::*;
        for (release, expected) in [
            ("5.10.0-32-cloud-amd64", Before5_16),
            ("5.15.180", Before5_16),
            ("5.15.0-1-amd64", Before5_16),
            ("5.16", From5_16),
            ("5.16.0-rc1", From5_16),
            ("5.17.3", From5_16),
            ("6.1.0-50-cloud-amd64", From5_16),
            ("6.12.117+deb13-cloud-amd64", From5_16),
            ("4.19.0-27-amd64", Before5_16),
            ("", From5_16),
        ] {
            assert_eq!(KernelHooks::of_release(release), expected, "{release:?}");
        }
        assert_eq!(
            primary(Tech::IptablesLegacy, Family::Firewall, From5_16),
            ("ipt_do_table", "FORWARD")
        );
        assert_eq!(
            primary(Tech::IptablesLegacy, Family::Services, Before5_16),
            ("iptable_nat_do_chain", "PREROUTING")
        );
        assert_eq!(
            primary(Tech::Ipvs, Family::Services, Before5_16),
            ("ip_vs_remote_request4", "INPUT")
        );
        assert_eq!(
            primary(Tech::Ipvs, Family::Services, From5_16),
            ("ip_vs_in_hook", "INPUT")
        );
        assert!(!traced(From5_16)
            .iter()
            .any(|(f, _)| *f == "ip_vs_remote_request4" || *f == "iptable_nat_do_chain"));
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
        let plan = plan(KernelHooks::Before5_16, vec![]);
        assert_eq!(plan.functions.len(), traced(KernelHooks::Before5_16).len());
    }
}
