//! `rulebench render`: what a technology would push for a workload, with
//! no VM — each step's command line and its stdin.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::tech::{self, Tech};
use crate::workload::Workload;

#[derive(Args)]
pub struct RenderArgs {
    /// iptables-legacy, iptables-nft, nftables, nftables-linear,
    /// nftables-no-anon-maps, ipvs or ebpf.
    #[arg(long)]
    tech: Tech,
    /// Workload TOML file.
    #[arg(long)]
    workload: PathBuf,
}

pub fn run(args: RenderArgs) -> Result<()> {
    let workload = Workload::from_file(&args.workload)
        .with_context(|| format!("loading workload {}", args.workload.display()))?;
    let steps = tech::render_workload(args.tech, &workload)
        .with_context(|| format!("rendering {}", args.workload.display()))?;
    print!("{}", format_steps(&steps));
    Ok(())
}

/// `$ argv` per step, then its stdin verbatim (if any).
pub fn format_steps(steps: &[tech::Step]) -> String {
    let mut out = String::new();
    for step in steps {
        let argv = tech::Step {
            stdin: String::new(),
            ..step.clone()
        };
        out.push_str(&format!("$ {}", argv.display()));
        if step.tolerate_failure {
            out.push_str("    # failure tolerated");
        }
        out.push('\n');
        out.push_str(&step.stdin);
        if !step.stdin.is_empty() && !step.stdin.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_print_argv_then_stdin() {
        let steps = vec![
            tech::Step::new(&["ip", "link", "add", "x"]).tolerant(),
            tech::Step::with_stdin(&["nft", "-f", "/proc/self/fd/0"], "add table ip t"),
        ];
        assert_eq!(
            format_steps(&steps),
            "$ ip link add x    # failure tolerated\n$ nft -f /proc/self/fd/0\nadd table ip t\n"
        );
    }
}
