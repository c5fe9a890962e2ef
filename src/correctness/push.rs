//! Load, update and dump a technology's state in the guest, always
//! through the renderers' steps and the shared step runner. The reset
//! between technologies is `crate::guest_state::reset`.

use crate::steps::{run_steps, total_ns};
use crate::tech::{self, Step, Tech};
use crate::vm::Vm;
use crate::workload::{UpdateOp, Workload};

use super::CorrectnessError;

/// Full (atomic where the tool allows) load of `workload`; returns the
/// guest-side time of the load steps.
pub fn load(vm: &mut Vm, tech: Tech, workload: &Workload) -> Result<u64, CorrectnessError> {
    let steps = tech::render_workload(tech, workload)?;
    Ok(total_ns(&run_steps(vm, tech, &steps)?))
}

/// Incremental update from `before` to `before + op`.
pub fn update(
    vm: &mut Vm,
    tech: Tech,
    before: &Workload,
    op: &UpdateOp,
) -> Result<u64, CorrectnessError> {
    let steps = tech::render_update(tech, before, op)?;
    Ok(total_ns(&run_steps(vm, tech, &steps)?))
}

/// The technology's state, normalized.
pub fn dump(vm: &mut Vm, tech: Tech) -> Result<String, CorrectnessError> {
    let outputs = run_steps(vm, tech, &tech::dump_commands(tech))?;
    let stdouts: Vec<String> = outputs.into_iter().map(|o| o.stdout).collect();
    Ok(tech::normalize(tech, &stdouts))
}

/// A port nft refuses, in kube-proxy's services chain.
const NFT_SERVICES_LINE: &str = "add rule ip kube-proxy services tcp dport 99999 accept";

/// A line the technology's loader must reject (a port above 65535), in the
/// syntax of its main load step. `None` for eBPF, whose loader input is
/// not a line-oriented ruleset this module knows.
pub fn malformed_line(tech: Tech, workload: &Workload) -> Option<String> {
    let services = matches!(workload, Workload::Services(_));
    let line: String = match tech {
        Tech::IptablesLegacy | Tech::IptablesNft if services => {
            "-A KUBE-SERVICES -m tcp -p tcp -d 10.96.255.254 --dport 99999 -j ACCEPT".into()
        }
        Tech::IptablesLegacy | Tech::IptablesNft => {
            "-A FORWARD -p tcp -m tcp --dport 99999 -j ACCEPT".into()
        }
        // nftables-no-anon-maps renders services only.
        Tech::Nftables if services => NFT_SERVICES_LINE.into(),
        Tech::NftablesNoAnonMaps => NFT_SERVICES_LINE.into(),
        Tech::Nftables | Tech::NftablesLinear => {
            format!(
                "add rule {} {} tcp dport 99999 accept",
                tech::nftables_firewall::TABLE,
                tech::nftables_firewall::CHAIN
            )
        }
        Tech::Ipvs => "-A -t 10.96.255.254:99999 -s rr".into(),
        // The loader takes one JSON document; a second one is rejected.
        Tech::Ebpf => r#"{"port": 99999}"#.into(),
    };
    Some(line)
}

/// Where [`inject_line`] put the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    pub steps: Vec<Step>,
    /// Index of the step that carries the line.
    pub step: usize,
    /// 1-based line number of the injected line in that step's stdin.
    pub line: usize,
}

/// Insert `line` in the middle of the longest stdin among `steps` (the
/// ruleset itself, not a preparatory command). `None` if no step has input.
pub fn inject_line(steps: &[Step], line: &str) -> Option<Injected> {
    let (index, target) = steps
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.stdin.is_empty())
        .max_by_key(|(i, s)| (s.stdin.lines().count(), std::cmp::Reverse(*i)))?;
    let mut lines: Vec<&str> = target.stdin.lines().collect();
    // Before a trailing COMMIT, never after it: iptables-restore must see
    // the line inside the table it commits.
    let at = (lines.len() / 2).max(1).min(lines.len().saturating_sub(1));
    lines.insert(at, line);
    let mut out = steps.to_vec();
    out[index].stdin = lines.join("\n") + "\n";
    Some(Injected {
        steps: out,
        step: index,
        line: at + 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injects_into_the_longest_input_before_its_last_line() {
        let steps = vec![
            Step::with_stdin(&["ip", "-batch", "-"], "a\n"),
            Step::with_stdin(&["iptables-legacy-restore"], "*nat\nx\ny\nCOMMIT\n"),
        ];
        let got = inject_line(&steps, "BAD").unwrap();
        assert_eq!(got.step, 1);
        assert_eq!(got.line, 3);
        assert_eq!(got.steps[1].stdin, "*nat\nx\nBAD\ny\nCOMMIT\n");
        assert_eq!(got.steps[0], steps[0]);
        let short = vec![Step::with_stdin(&["x"], "*filter\nCOMMIT\n")];
        assert_eq!(
            inject_line(&short, "BAD").unwrap().steps[0].stdin,
            "*filter\nBAD\nCOMMIT\n"
        );
        assert!(inject_line(&[Step::new(&["true"])], "BAD").is_none());
    }

    #[test]
    fn malformed_lines_use_each_tools_syntax() {
        let w = Workload::from_toml_str("[services.generate]\ncount = 1\nbackends = 1\n").unwrap();
        assert!(malformed_line(Tech::Ipvs, &w).unwrap().starts_with("-A -t"));
        assert!(malformed_line(Tech::Nftables, &w)
            .unwrap()
            .contains("kube-proxy"));
        assert!(malformed_line(Tech::Ebpf, &w).is_some());
    }
}
