//! The regression gate behind `rulebench compare BASE NEW`: for every
//! (figure, technology, N, update position) present in both runs, is NEW
//! significantly worse than BASE by more than the threshold? A series
//! with fewer than [`MIN_SAMPLES`] samples on either side is undecided:
//! it is shown, never called the same.
//!
//! Decision: the ratio of medians, oriented so > 1 means worse, must
//! exceed 1 + threshold, *and* the 95 % bootstrap interval of that ratio
//! must lie entirely above 1 (the difference is not noise). The bootstrap
//! works with the 3–5 repeats a bench run has, where a rank test cannot
//! reach significance at all; the Mann-Whitney p-value is shown as context.

use crate::measure::figures::{self, Better};
use crate::measure::stats;
use crate::results::Results;

pub const DEFAULT_THRESHOLD: f64 = 0.10;
/// Default when either run was emulated (TCG): flag only changes beyond
/// 2.5×. Two bench runs of the same code on the 2-core TCG machine (two
/// guests in parallel) differed by up to 2.03× on single series — even on
/// one whose within-run CV was 3 % — while a deliberately degraded
/// renderer moved its key series 2.6–11×. Run-to-run drift of emulation is
/// invisible to a bootstrap over one run's repeats.
pub const TCG_THRESHOLD: f64 = 1.5;
/// A change must also exceed this many times the series' own coefficient
/// of variation (the larger of the two runs): a series whose repeats
/// scatter by 30 % cannot show a 20 % change, whatever the threshold.
pub const NOISE_FACTOR: f64 = 4.0;

/// The threshold to use when none is given: 10 % between KVM runs, 150 %
/// (2.5×) as soon as one side ran under TCG. Returns it with the reason to
/// print.
pub fn default_threshold(base: &Results, new: &Results) -> (f64, &'static str) {
    if base.meta.accel == "kvm" && new.meta.accel == "kvm" {
        (DEFAULT_THRESHOLD, "both runs used KVM")
    } else {
        (
            TCG_THRESHOLD,
            "a run used TCG, whose run-to-run drift reached 2.03× between runs of the same code",
        )
    }
}
const CONFIDENCE: f64 = 0.95;
const RESAMPLES: usize = 2000;
/// Samples each side needs before a difference can count as significant.
pub const MIN_SAMPLES: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Regression,
    Improvement,
    /// Within the threshold, or not significant.
    Same,
    /// Too few samples on a side to tell (fewer than [`MIN_SAMPLES`]):
    /// one or two repeats have no spread to judge a change by.
    Undecided,
}

impl Verdict {
    /// The word the table prints.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Regression => "REGRESSION",
            Verdict::Improvement => "improved",
            Verdict::Same => "same",
            Verdict::Undecided => "undecided",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub figure: String,
    pub tech: String,
    pub n: u64,
    /// first / middle / last for updates, empty otherwise.
    pub position: String,
    /// primitive / kube-proxy for updates, empty otherwise.
    pub update_mode: String,
    /// Samples on each side (base, new).
    pub samples: (usize, usize),
    pub base_median: f64,
    pub new_median: f64,
    /// median(new) / median(base), oriented: > 1 is worse.
    pub worse_ratio: f64,
    pub ci: (f64, f64),
    pub mann_whitney_p: f64,
    pub verdict: Verdict,
}

/// Ratio > 1 means `new` is worse, whichever direction the figure prefers.
fn oriented(better: Better, base: &[f64], new: &[f64]) -> (f64, (f64, f64)) {
    let ratio = stats::median(new) / stats::median(base);
    let (lo, hi) = stats::bootstrap_median_ratio_ci(base, new, CONFIDENCE, RESAMPLES);
    match better {
        Better::Lower => (ratio, (lo, hi)),
        Better::Higher => (1.0 / ratio, (1.0 / hi, 1.0 / lo)),
    }
}

/// Compare one series. Figures whose base median is 0 (e.g. 0 % UDP loss)
/// have no ratio; they compare by absolute difference on the same rule.
pub fn decide(
    better: Better,
    base: &[f64],
    new: &[f64],
    threshold: f64,
) -> (f64, (f64, f64), Verdict) {
    if base.is_empty() || new.is_empty() {
        return (f64::NAN, (f64::NAN, f64::NAN), Verdict::Undecided);
    }
    // One sample a side has no spread: its bootstrap interval is the point
    // ratio itself, so any change would look significant (seen on the
    // single boot-time sample of two bench runs). Report, never decide.
    let decidable = base.len() >= MIN_SAMPLES && new.len() >= MIN_SAMPLES;
    let shift = if stats::median(base) <= 0.0 || stats::median(new) <= 0.0 {
        // Shift both sides so a zero median still gives a finite ratio;
        // 1 unit of the figure is the smallest change that matters here.
        1.0 - stats::median(base).min(stats::median(new)).min(0.0)
    } else {
        0.0
    };
    let b: Vec<f64> = base.iter().map(|x| x + shift).collect();
    let n: Vec<f64> = new.iter().map(|x| x + shift).collect();
    let (ratio, ci) = oriented(better, &b, &n);
    let noise = stats::cv(&b).max(stats::cv(&n));
    let margin = threshold.max(NOISE_FACTOR * if noise.is_finite() { noise } else { 0.0 });
    let verdict = if !decidable {
        Verdict::Undecided
    } else if ratio > 1.0 + margin && ci.0 > 1.0 {
        Verdict::Regression
    } else if ratio < 1.0 / (1.0 + margin) && ci.1 < 1.0 {
        Verdict::Improvement
    } else {
        Verdict::Same
    };
    (ratio, ci, verdict)
}

pub fn compare(base: &Results, new: &Results, threshold: f64) -> Vec<Row> {
    let new_series = new.series();
    base.series()
        .into_iter()
        .filter_map(|(key, base_values)| {
            let new_values = new_series.get(&key)?;
            let figure = figures::lookup(&key.figure);
            let (worse_ratio, ci, verdict) =
                decide(figure.better, &base_values, new_values, threshold);
            Some(Row {
                base_median: stats::median(&base_values),
                new_median: stats::median(new_values),
                mann_whitney_p: stats::mann_whitney(&base_values, new_values).1,
                samples: (base_values.len(), new_values.len()),
                figure: key.figure,
                tech: key.tech,
                n: key.n,
                position: key.position,
                update_mode: key.update_mode,
                worse_ratio,
                ci,
                verdict,
            })
        })
        .collect()
}

pub fn has_regression(rows: &[Row]) -> bool {
    rows.iter().any(|r| r.verdict == Verdict::Regression)
}

pub fn undecided(rows: &[Row]) -> usize {
    rows.iter()
        .filter(|r| r.verdict == Verdict::Undecided)
        .count()
}

/// Markdown table; regressions first so a CI log shows them at the top,
/// then improvements, undecided series, and the unchanged ones.
pub fn table(rows: &[Row]) -> String {
    let mut sorted: Vec<&Row> = rows.iter().collect();
    sorted.sort_by_key(|r| match r.verdict {
        Verdict::Regression => 0,
        Verdict::Improvement => 1,
        Verdict::Undecided => 2,
        Verdict::Same => 3,
    });
    let mut out = String::from(
        "| verdict | figure | tech | N | position | samples | base median | new median | worse× | 95% CI | MW p |\n|---|---|---|---:|---|---:|---:|---:|---:|---|---:|\n",
    );
    for r in sorted {
        let unit = figures::lookup(&r.figure).unit;
        out += &format!(
            "| {} | {} | {} | {} | {} | {}/{} | {:.4} {unit} | {:.4} {unit} | {:.3} | {:.3}–{:.3} | {:.3} |\n",
            r.verdict.word(),
            r.figure,
            crate::results::tech_label(&r.tech, &r.update_mode),
            r.n,
            if r.position.is_empty() { "–" } else { &r.position },
            r.samples.0,
            r.samples.1,
            r.base_median,
            r.new_median,
            r.worse_ratio,
            r.ci.0,
            r.ci.1,
            r.mann_whitney_p
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{RunMeta, Sample, SCHEMA};

    /// Deterministic jitter of ±2 % around `center`.
    fn samples(center: f64, count: usize, seed: u64) -> Vec<f64> {
        (0..count)
            .map(|i| {
                let j = ((i as u64 * 7919 + seed * 104_729) % 41) as f64 / 40.0 - 0.5;
                center * (1.0 + 0.04 * j)
            })
            .collect()
    }

    #[test]
    fn clear_regression_is_flagged() {
        let (ratio, ci, v) = decide(
            Better::Lower,
            &samples(10.0, 5, 1),
            &samples(15.0, 5, 2),
            0.10,
        );
        assert_eq!(v, Verdict::Regression, "{ratio} {ci:?}");
        // Higher-is-better figure going down is a regression too.
        let (_, _, v) = decide(
            Better::Higher,
            &samples(1000.0, 5, 1),
            &samples(600.0, 5, 2),
            0.10,
        );
        assert_eq!(v, Verdict::Regression);
    }

    #[test]
    fn too_few_samples_are_undecided_never_same() {
        let (ratio, _, v) = decide(Better::Lower, &[0.67], &[0.78], 0.10);
        assert!(ratio > 1.1);
        assert_eq!(v, Verdict::Undecided);
        let (_, _, v) = decide(Better::Lower, &[10.0, 10.1], &[20.0, 20.1], 0.10);
        assert_eq!(v, Verdict::Undecided);
        // Identical pairs are not "same" either: two samples cannot tell.
        let (_, _, v) = decide(Better::Lower, &[10.0, 10.0], &[10.0, 10.0], 0.10);
        assert_eq!(v, Verdict::Undecided);
        // Enough on one side only is still undecided.
        let (_, _, v) = decide(Better::Lower, &samples(10.0, 5, 1), &[30.0, 31.0], 0.10);
        assert_eq!(v, Verdict::Undecided);
        let (_, _, v) = decide(Better::Lower, &[], &samples(10.0, 5, 1), 0.10);
        assert_eq!(v, Verdict::Undecided);
        // Three a side is enough.
        let (_, _, v) = decide(
            Better::Lower,
            &samples(10.0, 3, 1),
            &samples(30.0, 3, 2),
            0.10,
        );
        assert_eq!(v, Verdict::Regression);
    }

    #[test]
    fn identical_distributions_pass() {
        for seed in 0..20 {
            let (_, _, v) = decide(
                Better::Lower,
                &samples(10.0, 5, seed),
                &samples(10.0, 5, seed + 100),
                0.10,
            );
            assert_eq!(v, Verdict::Same, "seed {seed}");
        }
    }

    #[test]
    fn small_or_noisy_changes_pass() {
        // 5 % worse: below the 10 % threshold.
        let (_, _, v) = decide(
            Better::Lower,
            &samples(10.0, 5, 1),
            &samples(10.5, 5, 2),
            0.10,
        );
        assert_eq!(v, Verdict::Same);
        // 50 % worse median but overlapping wild samples: not significant.
        let (_, _, v) = decide(
            Better::Lower,
            &[1.0, 30.0, 2.0, 25.0, 3.0],
            &[1.5, 28.0, 3.0, 3.2, 31.0],
            0.10,
        );
        assert_eq!(v, Verdict::Same);
        // 1.8× worse, but the repeats scatter by ~30 %: within 4 × CV.
        let (_, _, v) = decide(
            Better::Lower,
            &[7.0, 10.0, 13.0, 9.0, 11.0],
            &[13.0, 18.0, 23.0, 16.0, 20.0],
            0.10,
        );
        assert_eq!(v, Verdict::Same);
        // The same 1.8× on quiet repeats (±2 %) is flagged.
        let (_, _, v) = decide(
            Better::Lower,
            &samples(10.0, 5, 1),
            &samples(18.0, 5, 2),
            0.10,
        );
        assert_eq!(v, Verdict::Regression);
    }

    #[test]
    fn improvement_and_zero_medians() {
        let (_, _, v) = decide(
            Better::Lower,
            &samples(10.0, 5, 1),
            &samples(5.0, 5, 2),
            0.10,
        );
        assert_eq!(v, Verdict::Improvement);
        // 0 % loss both times: same, not NaN trouble.
        let (_, _, v) = decide(Better::Lower, &[0.0; 5], &[0.0; 5], 0.10);
        assert_eq!(v, Verdict::Same);
        let (_, _, v) = decide(Better::Lower, &[0.0; 5], &[5.0, 5.2, 4.9, 5.1, 5.0], 0.10);
        assert_eq!(v, Verdict::Regression);
    }

    fn results(values: &[(&str, f64)]) -> Results {
        with_positions(values, &[""], 5)
    }

    /// `count` samples per position, the repeats rotating through
    /// `positions` like the bench's update repeats.
    fn with_positions(values: &[(&str, f64)], positions: &[&str], count: usize) -> Results {
        let mut samples = Vec::new();
        for (figure, center) in values {
            let all = self::samples(*center, count * positions.len(), 3);
            for (i, v) in all.into_iter().enumerate() {
                samples.push(Sample {
                    figure: figure.to_string(),
                    tech: "nftables".into(),
                    n: 1000,
                    repeat: i as u32,
                    position: positions[i % positions.len()].to_string(),
                    value: v,
                    unit: String::new(),
                    update_mode: String::new(),
                });
            }
        }
        Results {
            schema: SCHEMA,
            meta: RunMeta::default(),
            samples,
            notes: vec![],
            hooks: vec![],
            profiles: vec![],
        }
    }

    #[test]
    fn whole_files_gate() {
        let base = results(&[("services.add-one", 10.0), ("services.crr-rate", 900.0)]);
        let same = compare(&base, &base, DEFAULT_THRESHOLD);
        assert_eq!(same.len(), 2);
        assert!(!has_regression(&same));
        let worse = results(&[("services.add-one", 30.0), ("services.crr-rate", 880.0)]);
        let rows = compare(&base, &worse, DEFAULT_THRESHOLD);
        assert!(has_regression(&rows));
        let t = table(&rows);
        assert!(
            t.lines()
                .nth(2)
                .unwrap()
                .starts_with("| REGRESSION | services.add-one"),
            "{t}"
        );
    }

    #[test]
    fn positions_are_separate_series() {
        let positions = ["first", "middle", "last"];
        let base = with_positions(&[("services.add-one", 10.0)], &positions, 3);
        let mut new = with_positions(&[("services.add-one", 10.0)], &positions, 3);
        // Only the last position got slower: pooled, its three samples
        // would be outvoted by six unchanged ones.
        for s in new.samples.iter_mut().filter(|s| s.position == "last") {
            s.value *= 3.0;
        }
        let rows = compare(&base, &new, DEFAULT_THRESHOLD);
        assert_eq!(rows.len(), 3, "{rows:?}");
        let verdict = |p: &str| rows.iter().find(|r| r.position == p).unwrap().verdict;
        assert_eq!(verdict("last"), Verdict::Regression);
        assert_eq!(verdict("first"), Verdict::Same);
        assert_eq!(verdict("middle"), Verdict::Same);
        let t = table(&rows);
        assert!(
            t.lines()
                .nth(2)
                .unwrap()
                .starts_with("| REGRESSION | services.add-one | nftables | 1000 | last | 3/3 |"),
            "{t}"
        );
    }

    #[test]
    fn update_modes_are_separate_series_and_labelled() {
        let base = with_positions(&[("services.add-one", 10.0)], &["last"], 3);
        let mut both = base.clone();
        for s in base.samples.iter() {
            let mut kp = s.clone();
            kp.update_mode = "kube-proxy".into();
            kp.value *= 5.0;
            both.samples.push(kp);
        }
        let rows = compare(&both, &both, DEFAULT_THRESHOLD);
        assert_eq!(rows.len(), 2, "{rows:?}");
        let t = table(&rows);
        assert!(
            t.contains("| services.add-one | nftables (kube-proxy) | 1000 | last |"),
            "{t}"
        );
        assert!(
            t.contains("| services.add-one | nftables | 1000 | last |"),
            "{t}"
        );
    }

    #[test]
    fn series_of_two_samples_print_undecided() {
        // Five repeats rotating over three positions: 2, 2 and 1 samples.
        let base = with_positions(&[("services.delete-one", 10.0)], &["first"], 2);
        let new = with_positions(&[("services.delete-one", 40.0)], &["first"], 2);
        let rows = compare(&base, &new, DEFAULT_THRESHOLD);
        assert_eq!(rows[0].verdict, Verdict::Undecided);
        assert!(!has_regression(&rows));
        assert_eq!(undecided(&rows), 1);
        let t = table(&rows);
        assert!(
            t.contains("| undecided | services.delete-one | nftables | 1000 | first | 2/2 |"),
            "{t}"
        );
        assert!(!t.contains("| same |"), "{t}");
    }

    #[test]
    fn default_threshold_follows_the_accelerator() {
        let with_accel = |accel: &str| {
            let mut r = results(&[("services.add-one", 10.0)]);
            r.meta.accel = accel.into();
            r
        };
        let (kvm, tcg) = (with_accel("kvm"), with_accel("tcg"));
        assert_eq!(default_threshold(&kvm, &kvm).0, DEFAULT_THRESHOLD);
        assert_eq!(default_threshold(&kvm, &tcg).0, TCG_THRESHOLD);
        assert_eq!(default_threshold(&tcg, &kvm).0, TCG_THRESHOLD);
        // A 2× drift passes under TCG's default, a 3× regression does not.
        let drift = results(&[("services.add-one", 20.0)]);
        let degraded = results(&[("services.add-one", 30.0)]);
        assert!(!has_regression(&compare(&tcg, &drift, TCG_THRESHOLD)));
        assert!(has_regression(&compare(&tcg, &degraded, TCG_THRESHOLD)));
    }
}
