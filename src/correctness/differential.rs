//! Verdict tables across technologies: one row per probe, one column per
//! technology, plus the oracle. A row where any technology differs from
//! the oracle (or from another technology) is a disagreement.

use std::fmt::Write;

use crate::tech::Tech;

use super::probes::{Probe, Verdict};

#[derive(Debug, Clone, PartialEq)]
pub struct Differential {
    pub probes: Vec<Probe>,
    /// One column per technology, each with a verdict per probe.
    pub columns: Vec<(Tech, Vec<Verdict>)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Disagreement {
    pub probe: Probe,
    pub answers: Vec<(Tech, Verdict)>,
}

impl Differential {
    pub fn new(probes: Vec<Probe>) -> Self {
        Differential {
            probes,
            columns: Vec::new(),
        }
    }

    /// Adds one technology's verdicts (same order as the probes).
    pub fn add(&mut self, tech: Tech, verdicts: Vec<Verdict>) {
        assert_eq!(
            verdicts.len(),
            self.probes.len(),
            "{tech}: one verdict per probe"
        );
        self.columns.push((tech, verdicts));
    }

    /// Rows where some technology's verdict differs from the oracle's.
    /// (Agreement with the oracle implies agreement with each other.)
    pub fn disagreements(&self) -> Vec<Disagreement> {
        self.probes
            .iter()
            .enumerate()
            .filter(|(i, p)| self.columns.iter().any(|(_, v)| v[*i] != p.expected))
            .map(|(i, p)| Disagreement {
                probe: p.clone(),
                answers: self
                    .columns
                    .iter()
                    .map(|(t, v)| (*t, v[i].clone()))
                    .collect(),
            })
            .collect()
    }

    /// (technology, probes agreeing with the oracle, probes).
    pub fn pass_counts(&self) -> Vec<(Tech, usize, usize)> {
        self.columns
            .iter()
            .map(|(t, v)| {
                let pass = v
                    .iter()
                    .zip(&self.probes)
                    .filter(|(v, p)| **v == p.expected)
                    .count();
                (*t, pass, self.probes.len())
            })
            .collect()
    }

    /// One line per technology with its pass count.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for (tech, pass, total) in self.pass_counts() {
            let _ = writeln!(
                out,
                "{:<16} {pass}/{total} probes agree with the oracle",
                tech.name()
            );
        }
        out
    }

    /// Every disagreement: the probe, the oracle's verdict and each
    /// technology's answer.
    pub fn report(&self) -> String {
        let mut out = String::new();
        for d in self.disagreements() {
            let _ = writeln!(
                out,
                "probe {} ({} attempts): oracle says {}",
                d.probe.label, d.probe.count, d.probe.expected
            );
            for (tech, verdict) in &d.answers {
                let mark = if *verdict == d.probe.expected {
                    " "
                } else {
                    "!"
                };
                let _ = writeln!(out, "  {mark} {:<16} {verdict}", tech.name());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correctness::probes::Check;
    use crate::workload::Proto;

    fn probe(label: &str, expected: Verdict) -> Probe {
        Probe {
            label: label.into(),
            proto: Proto::Tcp,
            addr: "10.200.0.2".parse().unwrap(),
            port: 8080,
            count: 1,
            check: Check::Firewall,
            expected,
        }
    }

    #[test]
    fn disagreements_name_probe_and_every_answer() {
        let mut d = Differential::new(vec![
            probe("a", Verdict::Connected),
            probe("b", Verdict::Blocked),
        ]);
        d.add(
            Tech::IptablesLegacy,
            vec![Verdict::Connected, Verdict::Blocked],
        );
        d.add(Tech::Nftables, vec![Verdict::Connected, Verdict::Connected]);
        assert_eq!(
            d.pass_counts(),
            vec![(Tech::IptablesLegacy, 2, 2), (Tech::Nftables, 1, 2)]
        );
        let rows = d.disagreements();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].probe.label, "b");
        assert_eq!(
            d.report(),
            "probe b (1 attempts): oracle says blocked\n    iptables-legacy  blocked\n  ! nftables         connected\n"
        );
        assert!(d.summary().contains("nftables         1/2 probes"));
    }

    #[test]
    fn agreement_has_no_rows() {
        let mut d = Differential::new(vec![probe("a", Verdict::Connected)]);
        d.add(Tech::IptablesNft, vec![Verdict::Connected]);
        assert!(d.disagreements().is_empty());
        assert_eq!(d.report(), "");
    }
}
