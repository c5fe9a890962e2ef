//! The A/B verdict: per series, the geometric mean over pairs of head /
//! base (oriented so > 1 is worse), with a Student-t interval of the mean
//! log ratio. Pairs were measured back to back, so a slow spell of the
//! host is in both sides of a pair and cancels in its ratio; what is left
//! is the revisions' difference and the within-pair noise.
//!
//! Update figures are judged per position (first / middle / last) and
//! pooled over positions (`all`): a change that slows every update is
//! seen with three times the pairs; one that slows only the last
//! position is seen in its own row.

use crate::compare::Verdict;
use crate::measure::figures::{self, Better};
use crate::measure::stats;
use crate::results::{Sample, SeriesKey};
use std::collections::BTreeMap;

/// A change must exceed this to count (pair ratio > 1.15), and the
/// interval must exclude 1.
pub const DEFAULT_THRESHOLD: f64 = 0.15;
/// Pairs a series needs before it is decided.
pub const MIN_PAIRS: usize = 3;
/// Position label of the rows pooled over positions.
pub const ALL_POSITIONS: &str = "all";
/// Chance that an A/A run fails the gate (all gating rows together).
pub const FAMILY_ALPHA: f64 = 0.05;
const CONFIDENCE: f64 = 0.95;

#[derive(Debug, Clone, PartialEq)]
pub struct PairRow {
    pub key: SeriesKey,
    pub pairs: usize,
    pub base_median: f64,
    pub head_median: f64,
    /// Geometric mean over pairs of head / base, oriented (> 1 is worse).
    pub worse_ratio: f64,
    pub ci: (f64, f64),
    pub verdict: Verdict,
    /// Whether the verdict counts for the gate's exit code: a total time
    /// (its user / sys parts move with it and are noisier), whole or
    /// pooled over positions. A single position has 3 pairs of 9: shown,
    /// but with a family-wise bound its interval could only exclude 1 for
    /// a change far beyond any threshold.
    pub gating: bool,
    pub pair_values: Vec<(f64, f64)>,
}

/// (base, head) values paired by (position, repeat), each side's value
/// the median of its samples there (a unit's update rounds); a pair
/// missing on either side, or with a non-positive value (no ratio), is
/// dropped.
fn pairs(base: &[&Sample], head: &[&Sample]) -> Vec<(f64, f64)> {
    let by_repeat = |v: &[&Sample]| -> BTreeMap<(String, u32), f64> {
        let mut m: BTreeMap<(String, u32), Vec<f64>> = BTreeMap::new();
        for s in v {
            m.entry((s.position.clone(), s.repeat))
                .or_default()
                .push(s.value);
        }
        m.into_iter().map(|(k, v)| (k, stats::median(&v))).collect()
    };
    let b = by_repeat(base);
    let h = by_repeat(head);
    b.iter()
        .filter_map(|(k, &bv)| h.get(k).map(|&hv| (bv, hv)))
        .filter(|&(bv, hv)| bv > 0.0 && hv > 0.0 && bv.is_finite() && hv.is_finite())
        .collect()
}

/// The verdict of one series from its pairs: (ratio, interval, verdict).
pub fn decide_pairs(
    better: Better,
    pairs: &[(f64, f64)],
    threshold: f64,
    confidence: f64,
) -> (f64, (f64, f64), Verdict) {
    if pairs.is_empty() {
        return (f64::NAN, (f64::NAN, f64::NAN), Verdict::Undecided);
    }
    let logs: Vec<f64> = pairs
        .iter()
        .map(|&(b, h)| match better {
            Better::Lower => (h / b).ln(),
            Better::Higher => (b / h).ln(),
        })
        .collect();
    let k = logs.len();
    let mean = stats::mean(&logs);
    let half = if k < 2 {
        f64::INFINITY
    } else {
        let var = logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (k - 1) as f64;
        let q = stats::student_t_quantile(1.0 - (1.0 - confidence) / 2.0, (k - 1) as f64);
        q * (var / k as f64).sqrt()
    };
    let ratio = mean.exp();
    let ci = ((mean - half).exp(), (mean + half).exp());
    let verdict = if k < MIN_PAIRS {
        Verdict::Undecided
    } else if ratio > 1.0 + threshold && ci.0 > 1.0 {
        Verdict::Regression
    } else if ratio < 1.0 / (1.0 + threshold) && ci.1 < 1.0 {
        Verdict::Improvement
    } else {
        Verdict::Same
    };
    (ratio, ci, verdict)
}

/// Every series present on both sides, and each update figure pooled
/// over its positions; regressions first.
pub fn compare(base: &[Sample], head: &[Sample], threshold: f64) -> Vec<PairRow> {
    let b = group(base);
    let h = group(head);
    let mut rows: Vec<PairRow> = b
        .iter()
        .filter_map(|(key, bs)| h.get(key).map(|hs| row(key, bs, hs, threshold)))
        .collect();
    let (pb, ph) = (pooled(&b), pooled(&h));
    let pooled_rows: Vec<PairRow> = pb
        .iter()
        .filter_map(|(key, bs)| ph.get(key).map(|hs| row(key, bs, hs, threshold)))
        // One position only (add-one is always "last"): the same row again.
        .filter(|r| {
            !rows
                .iter()
                .any(|o| o.pairs == r.pairs && same_but_position(&o.key, &r.key))
        })
        .collect();
    rows.extend(pooled_rows);
    // A single position gates only where it is the series' only one (add-one
    // always appends: "last" has all the pairs).
    let pooled_keys: Vec<SeriesKey> = rows
        .iter()
        .filter(|r| r.key.position == ALL_POSITIONS)
        .map(|r| r.key.clone())
        .collect();
    for r in rows.iter_mut() {
        let pooled_exists = pooled_keys.iter().any(|k| same_but_position(k, &r.key));
        if r.key.position != ALL_POSITIONS && !r.key.position.is_empty() && pooled_exists {
            r.gating = false;
        }
    }
    // Family-wise: the gate fails if any gating row regresses, so each of
    // the m gating rows is judged at 1 - 0.05 / m (Bonferroni): an A/A run
    // of 40 rows at 95 % each flagged one (3 pairs, +26 %).
    let m = rows.iter().filter(|r| r.gating).count().max(1);
    let family = 1.0 - FAMILY_ALPHA / m as f64;
    for r in rows.iter_mut().filter(|r| r.gating) {
        let better = figures::lookup(&r.key.figure).better;
        let (ratio, ci, verdict) = decide_pairs(better, &r.pair_values, threshold, family);
        (r.worse_ratio, r.ci, r.verdict) = (ratio, ci, verdict);
    }
    rows.sort_by_key(|r| (rank(r.verdict), r.key.clone()));
    rows
}

/// Each update figure's samples under one key with position [`ALL_POSITIONS`].
fn pooled<'a>(g: &BTreeMap<SeriesKey, Vec<&'a Sample>>) -> BTreeMap<SeriesKey, Vec<&'a Sample>> {
    let mut m: BTreeMap<SeriesKey, Vec<&Sample>> = BTreeMap::new();
    for (key, v) in g.iter().filter(|(k, _)| !k.position.is_empty()) {
        let all = SeriesKey {
            position: ALL_POSITIONS.to_string(),
            ..key.clone()
        };
        m.entry(all).or_default().extend(v.iter().copied());
    }
    m
}

fn same_but_position(a: &SeriesKey, b: &SeriesKey) -> bool {
    a.figure == b.figure && a.tech == b.tech && a.n == b.n && a.update_mode == b.update_mode
}

fn row(key: &SeriesKey, bs: &[&Sample], hs: &[&Sample], threshold: f64) -> PairRow {
    let p = pairs(bs, hs);
    let better = figures::lookup(&key.figure).better;
    let (worse_ratio, ci, verdict) = decide_pairs(better, &p, threshold, CONFIDENCE);
    let values = |v: &[&Sample]| v.iter().map(|s| s.value).collect::<Vec<_>>();
    PairRow {
        key: key.clone(),
        pairs: p.len(),
        base_median: stats::median(&values(bs)),
        head_median: stats::median(&values(hs)),
        worse_ratio,
        ci,
        verdict,
        gating: !figures::is_split_part(&key.figure),
        pair_values: p,
    }
}

fn group(v: &[Sample]) -> BTreeMap<SeriesKey, Vec<&Sample>> {
    let mut m: BTreeMap<SeriesKey, Vec<&Sample>> = BTreeMap::new();
    for s in v {
        m.entry(SeriesKey::of(s)).or_default().push(s);
    }
    m
}

fn rank(v: Verdict) -> u8 {
    match v {
        Verdict::Regression => 0,
        Verdict::Improvement => 1,
        Verdict::Undecided => 2,
        Verdict::Same => 3,
    }
}

/// Markdown for people (and GitHub's job summary): the counts, then every
/// decided change and every undecided series, then the rest.
pub fn summary(rows: &[PairRow], threshold: f64, header: &str) -> String {
    let count = |v: Verdict| rows.iter().filter(|r| r.gating && r.verdict == v).count();
    let mut out = format!(
        "# A/B gate\n\n{header}\n\n{} gating series: {} regression(s), {} improvement(s), {} same, {} undecided \
         (fewer than {MIN_PAIRS} pairs). A series regresses when the geometric mean over pairs of head / \
         base exceeds {:.2} and its Student-t interval lies above 1 — for gating series a family-wise \
         interval (Bonferroni: {:.2} % each, so an unchanged head fails with at most 5 % chance), else \
         95 %. Gating: total times and memory, whole or pooled over positions (`all`); single \
         positions (3 pairs of 9) and user / sys parts are shown with their verdict in brackets.\n\n",
        rows.iter().filter(|r| r.gating).count(),
        count(Verdict::Regression),
        count(Verdict::Improvement),
        count(Verdict::Same),
        count(Verdict::Undecided),
        1.0 + threshold,
        100.0 * (1.0 - FAMILY_ALPHA / rows.iter().filter(|r| r.gating).count().max(1) as f64)
    );
    out += "| verdict | figure | tech | N | position | mode | pairs | base median | head median | head/base (worse > 1) | 95 % interval |\n";
    out += "|---|---|---|---:|---|---|---:|---:|---:|---:|---|\n";
    for r in rows {
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3}–{:.3} |\n",
            if r.gating {
                r.verdict.word().to_string()
            } else {
                format!("({})", r.verdict.word())
            },
            r.key.figure,
            r.key.tech,
            r.key.n,
            r.key.position,
            r.key.update_mode,
            r.pairs,
            r.base_median,
            r.head_median,
            r.worse_ratio,
            r.ci.0,
            r.ci.1
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(figure: &str, repeat: u32, value: f64) -> Sample {
        Sample {
            figure: figure.into(),
            tech: "iptables-legacy".into(),
            n: 1000,
            repeat,
            position: "first".into(),
            value,
            unit: "ms".into(),
            update_mode: "primitive".into(),
        }
    }

    #[test]
    fn drift_that_hits_both_sides_of_a_pair_cancels() {
        // The host slows down 2x for the later pairs: a two-run compare of
        // medians would see noise; the pairs see head = 1.2 x base.
        let slow = [1.0, 1.0, 2.0, 2.0, 2.0];
        let base: Vec<Sample> = (0..5)
            .map(|r| sample("services.add-one", r, 100.0 * slow[r as usize]))
            .collect();
        let head: Vec<Sample> = (0..5)
            .map(|r| sample("services.add-one", r, 120.0 * slow[r as usize]))
            .collect();
        let rows = compare(&base, &head, 0.10);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].verdict, Verdict::Regression);
        assert!((rows[0].worse_ratio - 1.2).abs() < 1e-9);
        let same = compare(&base, &base, 0.10);
        assert_eq!(same[0].verdict, Verdict::Same);
    }

    #[test]
    fn too_few_pairs_are_undecided_and_higher_is_better_is_oriented() {
        let (_, _, v) = decide_pairs(Better::Lower, &[(1.0, 2.0), (1.0, 2.0)], 0.1, 0.95);
        assert_eq!(v, Verdict::Undecided);
        let (ratio, _, v) = decide_pairs(Better::Higher, &[(2.0, 1.0); 4], 0.1, 0.95);
        assert_eq!(v, Verdict::Regression);
        assert!((ratio - 2.0).abs() < 1e-9);
        let (_, _, v) = decide_pairs(Better::Lower, &[(2.0, 1.0); 4], 0.1, 0.95);
        assert_eq!(v, Verdict::Improvement);
        // One pair up, one down, one flat: the interval holds 1.
        let (_, _, v) = decide_pairs(
            Better::Lower,
            &[(1.0, 1.5), (1.0, 0.7), (1.0, 1.2)],
            0.1,
            0.95,
        );
        assert_eq!(v, Verdict::Same);
        // Within-pair noise of 5 % around a 30 % slowdown is decided.
        let noisy: Vec<(f64, f64)> = [1.25, 1.35, 1.3, 1.28, 1.33]
            .iter()
            .map(|&h| (1.0, h))
            .collect();
        let (ratio, ci, v) = decide_pairs(Better::Lower, &noisy, 0.1, 0.95);
        assert_eq!(v, Verdict::Regression, "{ratio} {ci:?}");
    }

    #[test]
    fn unpaired_and_non_positive_values_make_no_pair() {
        let base = vec![
            sample("f", 0, 1.0),
            sample("f", 1, 0.0),
            sample("f", 2, 1.0),
        ];
        let head = vec![sample("f", 0, 1.0), sample("f", 1, 1.0)];
        let rows = compare(&base, &head, 0.1);
        assert_eq!(rows.len(), 1, "one position: no pooled copy");
        assert_eq!(rows[0].pairs, 1);
        assert_eq!(rows[0].verdict, Verdict::Undecided);
        assert!(summary(&rows, 0.1, "x").contains("1 undecided"));
    }

    #[test]
    fn rounds_are_one_value_and_positions_pool() {
        let at = |position: &str, repeat, value| Sample {
            position: position.into(),
            ..sample("services.delete-one", repeat, value)
        };
        let mut base = Vec::new();
        let mut head = Vec::new();
        for (r, position) in ["first", "middle", "last"]
            .iter()
            .cycle()
            .take(9)
            .enumerate()
        {
            let r = r as u32;
            // Two rounds each; the second is an outlier on the head side.
            base.extend([at(position, r, 100.0), at(position, r, 100.0)]);
            head.extend([
                at(position, r, 120.0),
                at(position, r, 121.0),
                at(position, r, 900.0),
            ]);
        }
        let rows = compare(&base, &head, 0.1);
        let all = rows
            .iter()
            .find(|r| r.key.position == ALL_POSITIONS)
            .unwrap();
        assert_eq!(all.pairs, 9);
        assert_eq!(all.verdict, Verdict::Regression);
        assert!((all.worse_ratio - 1.21).abs() < 1e-9, "{}", all.worse_ratio);
        assert_eq!(rows.iter().filter(|r| r.pairs == 3).count(), 3);
        assert!(rows.iter().filter(|r| r.pairs == 3).all(|r| !r.gating));
    }
}
