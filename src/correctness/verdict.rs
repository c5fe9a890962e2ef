//! What one probe's answers mean: [`judge`] turns the agent's answers into
//! a [`Verdict`] (defined with the probes, since a probe carries the
//! verdict its oracle expects).

use std::collections::BTreeMap;

use rulebench_proto::ProbeOutcome;

use crate::topo::backend_name;
use crate::workload::Endpoint;

use super::probes::{Check, Probe, Verdict};

/// The endpoint an identity line names: `be0 10.200.0.2:8080` is backend
/// namespace 0 answering on 10.200.0.2:8080. The name must agree with the
/// address plan, else the line is not trusted.
pub fn parse_identity(line: &str) -> Result<Endpoint, String> {
    let mut words = line.split_whitespace();
    let (Some(name), Some(addr), None) = (words.next(), words.next(), words.next()) else {
        return Err(format!("unreadable answer {line:?}"));
    };
    let ep: Endpoint = addr.parse()?;
    match backend_name(ep.ip) {
        Some(expected) if expected == name => Ok(ep),
        _ => Err(format!("answer {line:?}: {name} does not own {}", ep.ip)),
    }
}

/// Judge the answers of one probe.
pub fn judge(probe: &Probe, outcome: &ProbeOutcome) -> Verdict {
    let attempts = outcome.answers.len();
    let mut counts: BTreeMap<Endpoint, usize> = BTreeMap::new();
    let mut failed = 0;
    for answer in &outcome.answers {
        match answer.as_deref().map(parse_identity) {
            Some(Ok(ep)) => *counts.entry(ep).or_default() += 1,
            Some(Err(e)) => return Verdict::Wrong(e),
            None => failed += 1,
        }
    }
    let first_error = outcome.first_error.as_deref().unwrap_or("?");
    if attempts == 0 {
        return Verdict::Wrong("no attempts in the report".into());
    }
    if failed == attempts {
        return match probe.check {
            Check::Firewall => Verdict::Blocked,
            Check::Service { .. } => Verdict::NoAnswer,
        };
    }
    if failed > 0 {
        return Verdict::Wrong(format!(
            "{failed} of {attempts} attempts failed ({first_error})"
        ));
    }
    let dst = probe.destination();
    let answered_by = || {
        counts
            .iter()
            .map(|(ep, n)| format!("{ep} x{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match &probe.check {
        Check::Firewall if counts.keys().all(|ep| *ep == dst) => Verdict::Connected,
        Check::Firewall => Verdict::Wrong(format!("answered by {}", answered_by())),
        Check::Service {
            backends,
            sticky,
            min_share,
        } => {
            if counts.keys().all(|ep| *ep == dst) && !backends.contains(&dst) {
                return Verdict::Direct;
            }
            if let Some(stray) = counts.keys().find(|ep| !backends.contains(ep)) {
                return Verdict::Wrong(format!(
                    "answered by {stray}, not a backend (answers: {})",
                    answered_by()
                ));
            }
            if *sticky && counts.len() > 1 {
                return Verdict::Wrong(format!(
                    "affinity broken: one client reached {}",
                    answered_by()
                ));
            }
            if let Some(share) = min_share {
                let need = (share * attempts as f64).ceil() as usize;
                let starved: Vec<String> = backends
                    .iter()
                    .filter(|ep| counts.get(ep).copied().unwrap_or(0) < need)
                    .map(|ep| ep.to_string())
                    .collect();
                if !starved.is_empty() {
                    return Verdict::Wrong(format!(
                        "uneven: {} got fewer than {need} of {attempts} (answers: {})",
                        starved.join(", "),
                        answered_by()
                    ));
                }
            }
            Verdict::Balanced
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Proto;

    fn ep(s: &str) -> Endpoint {
        s.parse().unwrap()
    }

    fn service_probe(backends: &[&str], sticky: bool, min_share: Option<f64>) -> Probe {
        Probe {
            label: "svc".into(),
            proto: Proto::Tcp,
            addr: "10.96.0.1".parse().unwrap(),
            port: 80,
            count: 0,
            check: Check::Service {
                backends: backends.iter().map(|b| ep(b)).collect(),
                sticky,
                min_share,
            },
            expected: Verdict::Balanced,
        }
    }

    fn outcome(answers: &[Option<&str>]) -> ProbeOutcome {
        ProbeOutcome {
            answers: answers.iter().map(|a| a.map(str::to_string)).collect(),
            first_error: answers
                .iter()
                .any(Option::is_none)
                .then(|| "connect: timed out".to_string()),
        }
    }

    const BE0: &str = "be0 10.200.0.2:8080";
    const BE1: &str = "be1 10.200.1.2:8080";

    #[test]
    fn identities_must_match_the_address_plan() {
        assert_eq!(parse_identity(BE0), Ok(ep("10.200.0.2:8080")));
        assert!(parse_identity("be1 10.200.0.2:8080").is_err());
        assert!(parse_identity("hello").is_err());
    }

    #[test]
    fn service_answers() {
        let p = service_probe(&["10.200.0.2:8080", "10.200.1.2:8080"], false, None);
        assert_eq!(
            judge(&p, &outcome(&[Some(BE0), Some(BE1)])),
            Verdict::Balanced
        );
        assert_eq!(judge(&p, &outcome(&[None, None])), Verdict::NoAnswer);
        assert!(
            matches!(judge(&p, &outcome(&[Some(BE0), None])), Verdict::Wrong(w) if w.contains("1 of 2"))
        );
        let stray = judge(&p, &outcome(&[Some("be2 10.200.2.2:8080")]));
        assert!(matches!(stray, Verdict::Wrong(w) if w.contains("not a backend")));
    }

    #[test]
    fn sticky_and_spread() {
        let sticky = service_probe(&["10.200.0.2:8080", "10.200.1.2:8080"], true, None);
        assert_eq!(
            judge(&sticky, &outcome(&[Some(BE1), Some(BE1)])),
            Verdict::Balanced
        );
        assert!(
            matches!(judge(&sticky, &outcome(&[Some(BE0), Some(BE1)])), Verdict::Wrong(w) if w.contains("affinity"))
        );
        let spread = service_probe(&["10.200.0.2:8080", "10.200.1.2:8080"], false, Some(0.1));
        let mut answers = vec![Some(BE0); 19];
        answers.push(Some(BE1));
        assert!(
            matches!(judge(&spread, &outcome(&answers)), Verdict::Wrong(w) if w.contains("uneven"))
        );
        answers[0] = Some(BE1);
        assert_eq!(judge(&spread, &outcome(&answers)), Verdict::Balanced);
    }

    #[test]
    fn untranslated_and_firewall() {
        let mut direct = service_probe(&[], false, None);
        direct.addr = "10.200.0.2".parse().unwrap();
        direct.port = 8080;
        assert_eq!(judge(&direct, &outcome(&[Some(BE0)])), Verdict::Direct);
        let fw = Probe {
            check: Check::Firewall,
            ..direct
        };
        assert_eq!(judge(&fw, &outcome(&[Some(BE0)])), Verdict::Connected);
        assert_eq!(judge(&fw, &outcome(&[None])), Verdict::Blocked);
        assert!(matches!(
            judge(&fw, &outcome(&[Some(BE1)])),
            Verdict::Wrong(_)
        ));
    }
}
