//! Performance budgets (budgets.toml): what each one compares, checked
//! strictly on load so that a budget that could never fail — a misspelt
//! bound, a ratio without its baseline, an unknown technology — is an
//! error before any guest boots, not a green test. tests/budgets.rs
//! measures and calls [`Budget::evaluate`]; `rulebench bisect-run
//! --budget` uses [`select`] and [`Budget::test_function`] to run one.

use crate::measure::figures;
use crate::measure::stats::{bootstrap_median_ci, median};
use crate::results::Sample;
use crate::tech::Tech;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Newline-separated exact budget names; when set, tests/budgets.rs checks
/// only those (each test prints that it skipped when none is its own).
pub const SELECT_ENV: &str = "RULEBENCH_BUDGETS";

/// Raises the N of the measurements (never lowers it): see [`Budget::sizes`].
pub const N_ENV: &str = "RULEBENCH_BUDGET_N";

/// Fewer paired repeats than this and one spoiled repeat decides the median.
pub const MIN_PAIRS: usize = 3;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    pub name: String,
    pub tech: String,
    pub figure: String,
    /// N of the denominator; absent for a budget that is only an interval.
    pub small: Option<u64>,
    pub large: u64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// The budget only means something from this N on (below it the effect
    /// is smaller than TCG's noise); skipped, with the reason printed, when
    /// RULEBENCH_BUDGET_N does not reach it.
    pub requires_n: Option<u64>,
    /// Denominator figure (at `small`) when it is not `figure` itself, e.g.
    /// the last service's hook time over the first one's at the same N.
    pub versus: Option<String>,
    /// The 95 % bootstrap interval of `figure`'s median at `large` must lie
    /// above this value (a sign test: "the per-rule slope is > 0").
    pub interval_above: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetFile {
    budget: Vec<Budget>,
}

#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {}: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    /// A rule of the schema that serde cannot express; `problem` holds the
    /// rejection (the variants below) so tests and callers can match it.
    #[error("{}: {problem}", path.display())]
    InFile {
        path: PathBuf,
        problem: Box<BudgetError>,
    },
    #[error("the file lists no [[budget]]: nothing would be checked")]
    Empty,
    #[error("budget {name:?}: a name must be non-empty, one line, without surrounding spaces ({SELECT_ENV} selects by exact line)")]
    BadName { name: String },
    #[error("budget name {name:?} appears twice")]
    DuplicateName { name: String },
    #[error("budget {name:?}: unknown tech {tech:?} (known: {known})")]
    UnknownTech {
        name: String,
        tech: String,
        known: String,
    },
    #[error("budget {name:?}: tests/budgets.rs does not measure figure {figure:?} (it measures: {known})")]
    UnknownFigure {
        name: String,
        figure: String,
        known: String,
    },
    #[error(
        "budget {name:?} has no bound that can fail: give min, max (with small) or interval_above"
    )]
    NoBound { name: String },
    #[error(
        "budget {name:?}: min/max bound a ratio, which needs `small` (the N of the denominator)"
    )]
    RatioWithoutSmall { name: String },
    #[error(
        "budget {name:?}: `small` makes it a ratio, but neither min nor max bounds that ratio"
    )]
    UnboundedRatio { name: String },
    #[error("budget {name:?}: `versus` names the denominator at `small`, and there is no `small`")]
    VersusWithoutSmall { name: String },
    #[error("budget {name:?}: {field} = {value} is not a finite number")]
    NotFinite {
        name: String,
        field: &'static str,
        value: f64,
    },
    #[error("budget {name:?}: min = {min} must be below max = {max}: no ratio could pass")]
    MinNotBelowMax { name: String, min: f64, max: f64 },
    #[error("budget {name:?}: {field} = 0 (a measurement needs N >= 1)")]
    ZeroN { name: String, field: &'static str },
    #[error("{SELECT_ENV} is set but names no budget")]
    NothingSelected,
    #[error("no budget is named {name:?}; known budgets:\n  {}", known.join("\n  "))]
    UnknownName { name: String, known: Vec<String> },
    #[error("{N_ENV}={value:?} is not a whole number")]
    BadN { value: String },
}

/// The figures tests/budgets.rs can produce; a budget on any other would
/// only fail at the end of a guest run with "no samples".
const MEASURED_FIGURES: &[&str] = &[
    figures::SVC_ADD.id,
    figures::SVC_P50.id,
    figures::SVC_HOOK_FIRST.id,
    figures::SVC_HOOK_MIDDLE.id,
    figures::SVC_HOOK_LAST.id,
    figures::SVC_HOOK_MISS.id,
    figures::SVC_HOOK_SLOPE.id,
    figures::FW_HOOK_MATCH.id,
    figures::FW_HOOK_OVERLAP.id,
];

/// The workspace's budgets.toml.
pub fn default_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("budgets.toml")
}

pub fn load(path: &Path) -> Result<Vec<Budget>, BudgetError> {
    let text = std::fs::read_to_string(path).map_err(|source| BudgetError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text).map_err(|e| match e {
        BudgetError::Parse { source, .. } => BudgetError::Parse {
            path: path.to_path_buf(),
            source,
        },
        problem => BudgetError::InFile {
            path: path.to_path_buf(),
            problem: Box::new(problem),
        },
    })
}

/// Parses and validates budgets.toml text (`load` adds the path to errors).
pub fn parse(text: &str) -> Result<Vec<Budget>, BudgetError> {
    let file: BudgetFile = toml::from_str(text).map_err(|e| BudgetError::Parse {
        path: PathBuf::new(),
        source: Box::new(e),
    })?;
    if file.budget.is_empty() {
        return Err(BudgetError::Empty);
    }
    let mut names = BTreeSet::new();
    for b in &file.budget {
        b.validate()?;
        if !names.insert(b.name.as_str()) {
            return Err(BudgetError::DuplicateName {
                name: b.name.clone(),
            });
        }
    }
    Ok(file.budget)
}

/// The budgets named in `names`, in file order. A name that matches no
/// budget is an error listing the known ones: a typo must not check nothing.
pub fn select<'a>(all: &'a [Budget], names: &[String]) -> Result<Vec<&'a Budget>, BudgetError> {
    if names.is_empty() {
        return Err(BudgetError::NothingSelected);
    }
    if let Some(missing) = names.iter().find(|n| !all.iter().any(|b| &b.name == *n)) {
        return Err(BudgetError::UnknownName {
            name: missing.clone(),
            known: all.iter().map(|b| b.name.clone()).collect(),
        });
    }
    Ok(all.iter().filter(|b| names.contains(&b.name)).collect())
}

/// [`SELECT_ENV`] as names (one per non-blank line), or None when unset.
pub fn selected_from_env() -> Option<Vec<String>> {
    std::env::var(SELECT_ENV).ok().map(|v| parse_selection(&v))
}

pub fn parse_selection(value: &str) -> Vec<String> {
    value
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// [`N_ENV`], if set.
pub fn n_from_env() -> Result<Option<u64>, BudgetError> {
    match std::env::var(N_ENV) {
        Err(_) => Ok(None),
        Ok(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| BudgetError::BadN { value: v }),
    }
}

/// The two N a budget measures at, after [`N_ENV`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    pub small: Option<u64>,
    pub large: u64,
}

/// The ratio `figure` at `large` over `versus` at `small`, computed from
/// per-repeat pairs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatioFigures {
    pub numerator_median: f64,
    pub denominator_median: f64,
    pub ratio: f64,
}

impl Budget {
    fn validate(&self) -> Result<(), BudgetError> {
        let name = || self.name.clone();
        if self.name.is_empty() || self.name.contains('\n') || self.name.trim() != self.name {
            return Err(BudgetError::BadName { name: name() });
        }
        if self.tech.parse::<Tech>().is_err() {
            return Err(BudgetError::UnknownTech {
                name: name(),
                tech: self.tech.clone(),
                known: Tech::ALL.map(Tech::name).join(", "),
            });
        }
        for figure in std::iter::once(&self.figure).chain(self.versus.as_ref()) {
            if !MEASURED_FIGURES.contains(&figure.as_str()) {
                return Err(BudgetError::UnknownFigure {
                    name: name(),
                    figure: figure.clone(),
                    known: MEASURED_FIGURES.join(", "),
                });
            }
        }
        for (field, value) in [
            ("min", self.min),
            ("max", self.max),
            ("interval_above", self.interval_above),
        ] {
            if let Some(value) = value.filter(|v| !v.is_finite()) {
                return Err(BudgetError::NotFinite {
                    name: name(),
                    field,
                    value,
                });
            }
        }
        for (field, value) in [
            ("small", self.small),
            ("large", Some(self.large)),
            ("requires_n", self.requires_n),
        ] {
            if value == Some(0) {
                return Err(BudgetError::ZeroN {
                    name: name(),
                    field,
                });
            }
        }
        let ratio_bound = self.min.is_some() || self.max.is_some();
        if self.small.is_some() && !ratio_bound {
            return Err(BudgetError::UnboundedRatio { name: name() });
        }
        if !ratio_bound && self.interval_above.is_none() {
            return Err(BudgetError::NoBound { name: name() });
        }
        if ratio_bound && self.small.is_none() {
            return Err(BudgetError::RatioWithoutSmall { name: name() });
        }
        if self.versus.is_some() && self.small.is_none() {
            return Err(BudgetError::VersusWithoutSmall { name: name() });
        }
        if let (Some(min), Some(max)) = (self.min, self.max) {
            if min >= max {
                return Err(BudgetError::MinNotBelowMax {
                    name: name(),
                    min,
                    max,
                });
            }
        }
        Ok(())
    }

    /// The tests/budgets.rs test that checks this budget.
    pub fn test_function(&self) -> &'static str {
        if self.figure.starts_with("services.hook-") {
            "services_hook_budgets_hold"
        } else if self.figure.starts_with("firewall.hook-") {
            "firewall_hook_budgets_hold"
        } else {
            "control_budgets_hold"
        }
    }

    /// Whether the budget's figures are in-kernel hook times (measured in
    /// rounds, see tests/budgets.rs) rather than control-plane times.
    pub fn is_hook(&self) -> bool {
        self.test_function() != "control_budgets_hold"
    }

    /// The denominator's figure.
    pub fn versus_figure(&self) -> &str {
        self.versus.as_deref().unwrap_or(&self.figure)
    }

    /// N of both sides with `raise_to` ([`N_ENV`]) applied: `large` is
    /// raised to it; `small` is a fixed baseline (N = 1, N = 100), except in
    /// a same-N budget (small == large), which compares positions at one N
    /// and would otherwise turn into a growth budget its bounds were not
    /// chosen for.
    pub fn sizes(&self, raise_to: Option<u64>) -> Sizes {
        let raise = |n: u64| raise_to.map_or(n, |r| r.max(n));
        let same_n = self.small == Some(self.large);
        Sizes {
            small: self.small.map(|s| if same_n { raise(s) } else { s }),
            large: raise(self.large),
        }
    }

    /// False when `requires_n` is above the N this run measures at.
    pub fn active(&self, raise_to: Option<u64>) -> bool {
        let large = self.sizes(raise_to).large;
        self.requires_n.is_none_or(|n| large >= n)
    }

    /// Judges the budget on `samples`: Ok(the line to print) when it holds,
    /// Err(the same line with why it failed) otherwise. Missing samples, too
    /// few pairs and a ratio that is not a finite quotient of two positive
    /// medians are failures: each would otherwise pass or fail by accident.
    pub fn evaluate(&self, samples: &[Sample], raise_to: Option<u64>) -> Result<String, String> {
        let sizes = self.sizes(raise_to);
        let values = |figure: &str, n: u64| -> Vec<f64> {
            samples
                .iter()
                .filter(|s| s.tech == self.tech && s.figure == figure && s.n == n)
                .map(|s| s.value)
                .collect()
        };
        let mut line = format!("{}: {}", self.name, self.figure);
        let mut problems = Vec::new();
        if let Some(small) = sizes.small {
            let numerator = (self.figure.as_str(), sizes.large);
            let denominator = (self.versus_figure(), small);
            line += &format!(
                " at N={} / {} at N={small}",
                sizes.large,
                self.versus_figure()
            );
            match ratio(samples, &self.tech, numerator, denominator) {
                Err(why) => problems.push(why),
                Ok(r) => {
                    line += &format!(
                        " = {:.3} / {:.3} -> median of per-repeat ratios {:.2} (allowed {:?}..{:?})",
                        r.numerator_median, r.denominator_median, r.ratio, self.min, self.max
                    );
                    if let Some(max) = self.max.filter(|&m| r.ratio > m) {
                        problems.push(format!("ratio {:.3} > max {max}", r.ratio));
                    }
                    if let Some(min) = self.min.filter(|&m| r.ratio < m) {
                        problems.push(format!("ratio {:.3} < min {min}", r.ratio));
                    }
                }
            }
        }
        if let Some(floor) = self.interval_above {
            let v = values(&self.figure, sizes.large);
            if v.is_empty() {
                problems.push(format!(
                    "no samples of {} for {} at N={}",
                    self.figure, self.tech, sizes.large
                ));
            } else {
                let (lo, hi) = bootstrap_median_ci(&v, 0.95, 2000);
                line += &format!(
                    "; at N={} the 95 % interval of the median is {lo:.3}..{hi:.3} (must be above {floor})",
                    sizes.large
                );
                // `!(lo > floor)` rather than `lo <= floor`: a NaN fails.
                if !(lo > floor && hi.is_finite()) {
                    problems.push(format!("interval {lo:.3}..{hi:.3} is not above {floor}"));
                }
            }
        }
        if problems.is_empty() {
            Ok(line)
        } else {
            Err(format!("{line}: FAILED: {}", problems.join("; ")))
        }
    }
}

/// Median over repeats of (numerator in repeat r) / (denominator in
/// repeat r): with figures taken in rounds, the two sides of a pair were
/// measured minutes apart at most, so a change in host load between
/// rounds cancels. Each side's repeat is its median if a repeat holds
/// several samples. Err says why no meaningful ratio exists.
pub fn ratio(
    samples: &[Sample],
    tech: &str,
    numerator: (&str, u64),
    denominator: (&str, u64),
) -> Result<RatioFigures, String> {
    let per_repeat = |(figure, n): (&str, u64)| -> BTreeMap<u32, f64> {
        let mut by: BTreeMap<u32, Vec<f64>> = BTreeMap::new();
        for s in samples
            .iter()
            .filter(|s| s.tech == tech && s.figure == figure && s.n == n)
        {
            by.entry(s.repeat).or_default().push(s.value);
        }
        by.into_iter().map(|(r, v)| (r, median(&v))).collect()
    };
    let side = |name: &str, (figure, n): (&str, u64), by: &BTreeMap<u32, f64>| {
        let all: Vec<f64> = by.values().copied().collect();
        let m = median(&all);
        if all.is_empty() {
            Err(format!("no samples of {figure} for {tech} at N={n}"))
        } else if !(m.is_finite() && m > 0.0) {
            Err(format!(
                "{name} {figure} at N={n} has median {m}: a ratio needs a positive, finite median"
            ))
        } else {
            Ok(m)
        }
    };
    let num = per_repeat(numerator);
    let den = per_repeat(denominator);
    let numerator_median = side("numerator", numerator, &num)?;
    let denominator_median = side("denominator", denominator, &den)?;
    let ratios: Vec<f64> = num
        .iter()
        .filter_map(|(r, v)| den.get(r).map(|d| v / d))
        .collect();
    if ratios.len() < MIN_PAIRS {
        return Err(format!(
            "only {} repeat(s) have both {} at N={} and {} at N={}: too few pairs to compare",
            ratios.len(),
            numerator.0,
            numerator.1,
            denominator.0,
            denominator.1
        ));
    }
    if let Some(bad) = ratios.iter().find(|r| !(r.is_finite() && **r > 0.0)) {
        return Err(format!(
            "a per-repeat ratio is {bad} (a zero, negative or NaN sample): the measurement is broken"
        ));
    }
    let ratio = median(&ratios);
    if !ratio.is_finite() {
        return Err(format!("the ratio is {ratio}"));
    }
    Ok(RatioFigures {
        numerator_median,
        denominator_median,
        ratio,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[budget]]
name = "flat"
tech = "nftables"
figure = "services.hook-ns.last"
small = 1
large = 1000
max = 1.3
"#;

    fn with(extra: &str) -> String {
        format!("{GOOD}{extra}\n")
    }

    fn one(fields: &str) -> String {
        format!("[[budget]]\nname = \"b\"\ntech = \"ipvs\"\nfigure = \"services.add-one\"\nlarge = 1000\n{fields}\n")
    }

    fn err(text: &str) -> BudgetError {
        parse(text).expect_err("accepted an invalid budget file")
    }

    #[test]
    fn the_workspace_budgets_load() {
        let all = load(&default_path()).unwrap();
        assert!(all.len() >= 10);
        for f in [
            "control_budgets_hold",
            "services_hook_budgets_hold",
            "firewall_hook_budgets_hold",
        ] {
            assert!(all.iter().any(|b| b.test_function() == f), "{f}");
        }
    }

    #[test]
    fn a_misspelt_field_is_an_error() {
        let e = err(&one("small = 100\nmx = 1.3"));
        assert!(matches!(e, BudgetError::Parse { .. }), "{e}");
        assert!(e.to_string().contains("mx"), "{e}");
        let e = err("[[budgt]]\nname = \"x\"\n");
        assert!(e.to_string().contains("budgt"), "{e}");
    }

    #[test]
    fn a_budget_without_a_bound_is_an_error() {
        assert!(matches!(err(&one("")), BudgetError::NoBound { .. }));
        assert!(matches!(
            err(&one("small = 100")),
            BudgetError::UnboundedRatio { .. }
        ));
        assert!(matches!(
            err(&one("max = 3.0")),
            BudgetError::RatioWithoutSmall { .. }
        ));
        assert!(matches!(
            err(&one("interval_above = 0.0\nversus = \"services.add-one\"")),
            BudgetError::VersusWithoutSmall { .. }
        ));
        parse(&one("interval_above = 0.0")).unwrap();
        parse(&one("small = 100\nmin = 1.5")).unwrap();
    }

    #[test]
    fn names_are_unique_and_selectable() {
        let e = err(&with(GOOD));
        assert!(matches!(e, BudgetError::DuplicateName { .. }), "{e}");
        for bad in ["", " b", "a\nb"] {
            let text = GOOD.replace("\"flat\"", &format!("{bad:?}"));
            assert!(matches!(err(&text), BudgetError::BadName { .. }), "{bad:?}");
        }
    }

    #[test]
    fn tech_and_figures_must_be_known() {
        let e = err(&GOOD.replace("\"nftables\"", "\"nft\""));
        assert!(
            matches!(&e, BudgetError::UnknownTech { tech, .. } if tech == "nft"),
            "{e}"
        );
        assert!(e.to_string().contains("iptables-legacy"), "{e}");
        let e = err(&GOOD.replace("hook-ns.last", "hook-ns.lsat"));
        assert!(matches!(e, BudgetError::UnknownFigure { .. }), "{e}");
        let e = err(&with("versus = \"services.hook-first\""));
        assert!(matches!(e, BudgetError::UnknownFigure { .. }), "{e}");
    }

    #[test]
    fn bounds_must_be_ordered_and_finite() {
        let e = err(&one("small = 100\nmin = 2.0\nmax = 1.5"));
        assert!(matches!(e, BudgetError::MinNotBelowMax { .. }), "{e}");
        let e = err(&one("small = 100\nmin = 2.0\nmax = 2.0"));
        assert!(matches!(e, BudgetError::MinNotBelowMax { .. }), "{e}");
        let e = err(&one("small = 100\nmax = nan"));
        assert!(
            matches!(e, BudgetError::NotFinite { field: "max", .. }),
            "{e}"
        );
        let e = err(&one("interval_above = inf"));
        assert!(matches!(e, BudgetError::NotFinite { .. }), "{e}");
        let e = err(&one("small = 0\nmax = 2.0"));
        assert!(
            matches!(e, BudgetError::ZeroN { field: "small", .. }),
            "{e}"
        );
    }

    #[test]
    fn an_empty_file_is_an_error() {
        assert!(matches!(err("budget = []"), BudgetError::Empty));
        assert!(matches!(err(""), BudgetError::Parse { .. }));
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("budgets.toml");
        std::fs::write(&path, one("small = 100\nmx = 1.3")).unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("budgets.toml") && e.contains("mx"), "{e}");
        std::fs::write(&path, one("")).unwrap();
        let e = load(&path).unwrap_err();
        assert!(
            matches!(&e, BudgetError::InFile { problem, .. } if matches!(**problem, BudgetError::NoBound { .. })),
            "{e}"
        );
        let e = load(&dir.path().join("absent.toml")).unwrap_err();
        assert!(matches!(e, BudgetError::Read { .. }), "{e}");
    }

    #[test]
    fn select_rejects_an_unknown_name_and_lists_the_known_ones() {
        let all = load(&default_path()).unwrap();
        let name = all[3].name.clone();
        let picked = select(&all, std::slice::from_ref(&name)).unwrap();
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].name, name);
        let e = select(&all, &[name.clone(), "ipvs add-one stays flt".into()]).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("stays flt") && text.contains(&name), "{text}");
        assert!(matches!(
            select(&all, &[]),
            Err(BudgetError::NothingSelected)
        ));
    }

    #[test]
    fn the_selection_is_one_name_per_line() {
        assert_eq!(
            parse_selection("a b\n\n  c: d \r\n"),
            vec!["a b".to_string(), "c: d".to_string()]
        );
        assert!(parse_selection("\n \n").is_empty());
    }

    #[test]
    fn test_function_follows_the_figure() {
        let all = parse(&with(&one("small = 100\nmax = 3.0"))).unwrap();
        assert_eq!(all[0].test_function(), "services_hook_budgets_hold");
        assert_eq!(all[1].test_function(), "control_budgets_hold");
        let fw = GOOD.replace("services.hook-ns.last", "firewall.hook-ns.match");
        assert_eq!(
            parse(&fw).unwrap()[0].test_function(),
            "firewall_hook_budgets_hold"
        );
    }

    #[test]
    fn raising_n_keeps_a_same_n_budget_same_n() {
        let growth = &parse(GOOD).unwrap()[0];
        let position = &parse(&one("small = 1000\nmax = 1.3")).unwrap()[0];
        let sizes = |b: &Budget, r| {
            let s = b.sizes(r);
            (s.small, s.large)
        };
        assert_eq!(sizes(growth, None), (Some(1), 1000));
        assert_eq!(sizes(growth, Some(5000)), (Some(1), 5000));
        assert_eq!(sizes(growth, Some(10)), (Some(1), 1000));
        assert_eq!(sizes(position, Some(5000)), (Some(5000), 5000));
        assert_eq!(sizes(position, None), (Some(1000), 1000));
        let gated = &parse(&one("interval_above = 0.0\nrequires_n = 3000")).unwrap()[0];
        assert!(!gated.active(None));
        assert!(gated.active(Some(3000)));
    }

    fn sample(figure: &str, n: u64, repeat: u32, value: f64) -> Sample {
        Sample {
            figure: figure.into(),
            tech: "nftables".into(),
            n,
            repeat,
            position: String::new(),
            value,
            unit: "ns".into(),
            update_mode: String::new(),
        }
    }

    /// `large` then `small` value for each of 3 repeats.
    fn samples(pairs: &[(f64, f64)]) -> Vec<Sample> {
        let f = "services.hook-ns.last";
        pairs
            .iter()
            .enumerate()
            .flat_map(|(r, &(l, s))| [sample(f, 1000, r as u32, l), sample(f, 1, r as u32, s)])
            .collect()
    }

    fn judge(pairs: &[(f64, f64)]) -> Result<String, String> {
        parse(GOOD).unwrap()[0].evaluate(&samples(pairs), None)
    }

    #[test]
    fn a_ratio_inside_its_bound_passes_and_one_outside_fails() {
        let ok = judge(&[(110.0, 100.0); 3]).unwrap();
        assert!(ok.contains("1.10"), "{ok}");
        let e = judge(&[(140.0, 100.0); 3]).unwrap_err();
        assert!(e.contains("> max 1.3"), "{e}");
    }

    #[test]
    fn a_ratio_that_is_not_a_quotient_of_positive_medians_fails() {
        for (pairs, why) in [
            ([(f64::NAN, 100.0); 3], "median NaN"),
            ([(100.0, 0.0); 3], "denominator"),
            ([(0.0, 100.0); 3], "numerator"),
            ([(-5.0, 100.0); 3], "numerator"),
            ([(f64::INFINITY, 100.0); 3], "numerator"),
            (
                [(100.0, 100.0), (100.0, 100.0), (100.0, 0.0)],
                "per-repeat ratio is inf",
            ),
            (
                [(100.0, 100.0), (100.0, 100.0), (f64::NAN, 100.0)],
                "per-repeat ratio is NaN",
            ),
        ] {
            let e = judge(&pairs).expect_err(why);
            assert!(e.contains("FAILED") && e.contains(why), "{why}: {e}");
        }
    }

    #[test]
    fn missing_samples_and_too_few_pairs_fail() {
        let e = judge(&[(100.0, 100.0); 2]).unwrap_err();
        assert!(e.contains("too few pairs"), "{e}");
        let e = parse(GOOD).unwrap()[0].evaluate(&[], None).unwrap_err();
        assert!(e.contains("no samples"), "{e}");
        // Raised N: the samples at 1000 no longer count.
        let e = parse(GOOD).unwrap()[0]
            .evaluate(&samples(&[(100.0, 100.0); 3]), Some(2000))
            .unwrap_err();
        assert!(e.contains("N=2000"), "{e}");
    }

    #[test]
    fn a_raised_position_budget_compares_both_positions_at_the_raised_n() {
        let b = &parse(
            "[[budget]]\nname = \"p\"\ntech = \"nftables\"\nfigure = \"services.hook-ns.last\"\n\
             versus = \"services.hook-ns.first\"\nsmall = 1000\nlarge = 1000\nmax = 1.3\n",
        )
        .unwrap()[0];
        let at = |n: u64, last: f64, first: f64| -> Vec<Sample> {
            (0..3)
                .flat_map(|r| {
                    [
                        sample("services.hook-ns.last", n, r, last),
                        sample("services.hook-ns.first", n, r, first),
                    ]
                })
                .collect()
        };
        // Flat at 5000 (110 / 100) passes; with `small` left at 1000 the
        // ratio would be 110 / 50, a growth budget failing `max`.
        let mut both = at(5000, 110.0, 100.0);
        both.extend(at(1000, 60.0, 50.0));
        let line = b.evaluate(&both, Some(5000)).unwrap();
        assert!(
            line.contains("N=5000 / services.hook-ns.first at N=5000"),
            "{line}"
        );
        let e = b.evaluate(&at(5000, 200.0, 100.0), Some(5000)).unwrap_err();
        assert!(e.contains("> max 1.3"), "{e}");
    }

    #[test]
    fn an_interval_must_lie_above_its_floor() {
        let b = &parse(
            "[[budget]]\nname = \"s\"\ntech = \"nftables\"\nfigure = \"services.hook-slope\"\nlarge = 1000\ninterval_above = 0.0\n",
        )
        .unwrap()[0];
        let at = |vals: &[f64]| -> Vec<Sample> {
            vals.iter()
                .enumerate()
                .map(|(r, &v)| sample("services.hook-slope", 1000, r as u32, v))
                .collect()
        };
        b.evaluate(&at(&[1.0, 1.2, 0.9, 1.1]), None).unwrap();
        let e = b.evaluate(&at(&[-1.0, 0.5, -0.2, 0.1]), None).unwrap_err();
        assert!(e.contains("not above 0"), "{e}");
        let e = b.evaluate(&at(&[f64::NAN; 3]), None).unwrap_err();
        assert!(e.contains("not above"), "{e}");
        let e = b.evaluate(&[], None).unwrap_err();
        assert!(e.contains("no samples"), "{e}");
    }
}
