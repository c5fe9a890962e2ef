//! Bad input: a ruleset the tool rejects (a malformed line injected into
//! the rendered input) leaves the previous ruleset in place, and the error
//! names the technology, the line and the tool's own message.

mod support;

use rulebench::correctness::push;
use rulebench::guest_state;
use rulebench::steps::{run_steps, StepError};
use rulebench::tech::{self, Tech};
use rulebench::workload::{UpdateOp, Workload};

/// How each tool points at the bad line in its message.
fn names_line(tech: Tech, message: &str, line: usize) -> bool {
    match tech {
        // iptables-restore: "Error occurred at line: N" or "line N failed".
        Tech::IptablesLegacy | Tech::IptablesNft => {
            message.contains(&format!("line: {line}")) || message.contains(&format!("line {line}"))
        }
        Tech::Nftables | Tech::NftablesLinear | Tech::NftablesNoAnonMaps => {
            message.contains(&format!(":{line}:"))
        }
        // The IPVS load is several tools in turn; the line number is the
        // one of whichever tool rejected it.
        Tech::Ipvs => {
            message.contains(&format!("line: {line}")) || message.contains(&format!("line {line}"))
        }
        // serde_json: "trailing characters at line N column 1".
        Tech::Ebpf => message.contains(&format!("line {line}")),
    }
}

#[test]
fn rejected_rulesets_leave_the_previous_one_in_place() {
    let mut vm = support::boot();
    let mut failures = Vec::new();
    for name in ["services-small", "firewall-small"] {
        let previous = support::fixture(name);
        // The rejected load would have changed something (one more service
        // or one rule fewer), so an accidental partial apply shows.
        let mut next = previous.clone();
        let op = match &previous {
            Workload::Services(s) => UpdateOp::DeleteService {
                name: s.services[0].name.clone(),
            },
            Workload::Firewall(_) => UpdateOp::DeleteRule { index: 0 },
        };
        next.apply(&op).expect("op applies");
        for &tech in Tech::for_workload(&previous) {
            guest_state::reset(&mut vm).unwrap_or_else(|e| panic!("{tech}: reset: {e}"));
            push::load(&mut vm, tech, &previous).unwrap_or_else(|e| panic!("{name}: {e}"));
            let before = push::dump(&mut vm, tech).unwrap_or_else(|e| panic!("{name}: {e}"));
            let steps = tech::render_workload(tech, &next).expect("renders");
            let bad = push::malformed_line(tech, &next)
                .unwrap_or_else(|| panic!("{tech}: no malformed line defined"));
            let injected = push::inject_line(&steps, &bad).expect("a step with input");
            let err = match run_steps(&mut vm, tech, &injected.steps) {
                Ok(_) => panic!("{name}: {tech} accepted the malformed line {bad:?}"),
                Err(e) => e,
            };
            let after = push::dump(&mut vm, tech).unwrap_or_else(|e| panic!("{name}: {e}"));
            let StepError::Failed { ref message, .. } = err else {
                panic!("{name}: {tech}: not a tool failure: {err}")
            };
            let text = err.to_string();
            eprintln!("{name}: {tech}: line {} rejected: {text}", injected.line);
            let mut problems = Vec::new();
            if !text.starts_with(&format!("{tech}:")) {
                problems.push("the error does not name the technology".to_string());
            }
            if message.is_empty() {
                problems.push("the error carries no tool message".to_string());
            }
            if !names_line(tech, message, injected.line) {
                problems.push(format!(
                    "the tool's message does not name line {}",
                    injected.line
                ));
            }
            // Known semantic difference: IPVS has no atomic replace (ip
            // addresses, ipsets, iptables and ipvsadm are separate tools run
            // in turn), so the steps before the rejected one stay applied.
            if tech == Tech::Ipvs {
                assert_ne!(
                    after, before,
                    "{name}: ipvs: expected the non-atomic partial apply"
                );
                eprintln!("{name}: ipvs: NOT atomic: steps before the rejected one stayed applied");
            } else if after != before {
                problems.push(format!(
                    "the previous ruleset changed:\n--- before\n{before}\n--- after\n{after}"
                ));
            }
            if !problems.is_empty() {
                failures.push(format!(
                    "{name}: {tech}: {}\n  error: {text}",
                    problems.join("; ")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
