//! How long a job at size N will take, projected from the same
//! technology's jobs at smaller N in this run, and whether it fits the
//! job budget. Pure: the schedule asks before handing a job out.
//!
//! Two models, and the larger projection wins: a least-squares line
//! a + b·N through every smaller job (a job has a large fixed part —
//! reset, warm-up, data plane — that a power law through small sizes
//! reads as "flat"), and a power law c·N^k through the two largest
//! smaller sizes (nft 0.9.8's full load grows with exponent ~1.6, which a
//! line underestimates once N dominates). Overestimating costs a figure
//! the report marks as skipped; underestimating costs the budget.

use std::fmt;

use crate::report::growth::linear_fit;

/// Which model gave a projection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Model {
    /// seconds = a + b·N.
    Linear { a: f64, b: f64 },
    /// seconds = t · (N / n)^k through the largest measured size n.
    Power { k: f64, n: u64, seconds: f64 },
}

/// A projected job time and what it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    pub n: u64,
    pub seconds: f64,
    pub model: Model,
    /// The (N, seconds) points used, in ascending N.
    pub from: Vec<(u64, f64)>,
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Model::Linear { a, b } => write!(
                f,
                "least-squares line a + b·N: a = {a:.1} s, b = {:.3} s per 1k N",
                b * 1000.0
            ),
            Model::Power { k, n, seconds } => write!(
                f,
                "power law through the two largest sizes: {seconds:.1} s at N = {n}, exponent k = {k:.2}"
            ),
        }
    }
}

/// The projected time of a job at `n` from `measured` (N, seconds) of
/// the same technology and family; only sizes below `n` count. None with
/// fewer than two distinct smaller sizes: such a job runs.
pub fn project(measured: &[(u64, f64)], n: u64) -> Option<Projection> {
    let mut from: Vec<(u64, f64)> = measured
        .iter()
        .copied()
        .filter(|&(m, s)| m < n && s.is_finite())
        .collect();
    from.sort_by(|x, y| x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)));
    let points: Vec<(f64, f64)> = from.iter().map(|&(m, s)| (m as f64, s)).collect();
    let line = linear_fit(&points)?;
    let linear = (
        line.a + line.b * n as f64,
        Model::Linear {
            a: line.a,
            b: line.b,
        },
    );
    let best = match power(&from, n) {
        Some(p) if p.0 > linear.0 => p,
        _ => linear,
    };
    Some(Projection {
        n,
        seconds: best.0.max(0.0),
        model: best.1,
        from,
    })
}

/// c·N^k through the median times of the two largest sizes above 0; the
/// exponent is never below 0 (a job does not get cheaper with N).
fn power(from: &[(u64, f64)], n: u64) -> Option<(f64, Model)> {
    let mut sizes: Vec<u64> = from.iter().map(|p| p.0).filter(|&m| m > 0).collect();
    sizes.dedup();
    let [.., n1, n2] = sizes[..] else {
        return None;
    };
    let median = |m: u64| {
        let v: Vec<f64> = from.iter().filter(|p| p.0 == m).map(|p| p.1).collect();
        crate::measure::stats::median(&v)
    };
    let (t1, t2) = (median(n1), median(n2));
    if t1 <= 0.0 || t2 <= 0.0 {
        return None;
    }
    let k = ((t2 / t1).ln() / (n2 as f64 / n1 as f64).ln()).max(0.0);
    let seconds = t2 * (n as f64 / n2 as f64).powf(k);
    Some((
        seconds,
        Model::Power {
            k,
            n: n2,
            seconds: t2,
        },
    ))
}

/// Whether a job runs: without a projection it does; with one, only if
/// the projected time is within `budget_seconds`.
pub fn fits(projection: Option<&Projection>, budget_seconds: f64) -> bool {
    projection.is_none_or(|p| p.seconds <= budget_seconds)
}

/// "skipped: projected 41.2 min > budget 30 min".
pub fn skip_reason(projection: &Projection, budget_seconds: f64) -> String {
    format!(
        "skipped: projected {} min > budget {} min",
        minutes(projection.seconds),
        minutes(budget_seconds)
    )
}

/// Minutes with one decimal, or whole minutes when that is exact.
pub fn minutes(seconds: f64) -> String {
    let m = seconds / 60.0;
    if (m - m.round()).abs() < 1e-9 {
        format!("{m:.0}")
    } else {
        format!("{m:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fewer_than_two_smaller_sizes_give_no_projection() {
        assert_eq!(project(&[], 1000), None);
        assert_eq!(project(&[(100, 60.0), (100, 61.0)], 1000), None);
        // Sizes at or above the target do not count.
        assert_eq!(project(&[(100, 60.0), (1000, 80.0)], 1000), None);
        assert!(fits(None, 0.0));
    }

    #[test]
    fn a_fixed_cost_plus_linear_growth_projects_along_the_line() {
        // 60 s at 100, 80 s at 1000: the power law through them reads
        // exponent 0.12 (122 s at 30k); the line says 724 s.
        let p = project(&[(100, 60.0), (1000, 80.0)], 30_000).unwrap();
        assert!(matches!(p.model, Model::Linear { .. }), "{p:?}");
        let expected = 60.0 + 20.0 / 900.0 * 29_900.0;
        assert!((p.seconds - expected).abs() < 1e-6, "{p:?}");
        assert_eq!(p.from, [(100, 60.0), (1000, 80.0)]);
        assert!(!fits(Some(&p), 600.0));
        assert!(fits(Some(&p), 725.0));
        assert_eq!(
            skip_reason(&p, 600.0),
            "skipped: projected 12.1 min > budget 10 min"
        );
    }

    #[test]
    fn superlinear_growth_projects_by_the_power_law() {
        // Exponent 1.6 between 1k and 3k: the line underestimates 30k.
        let t = |n: f64| 40.0 + 0.002 * n.powf(1.6);
        let measured: Vec<(u64, f64)> = [0u64, 100, 1000, 3000]
            .iter()
            .map(|&n| (n, t(n as f64)))
            .collect();
        let p = project(&measured, 30_000).unwrap();
        let Model::Power { k, n, .. } = p.model else {
            panic!("{p:?}")
        };
        assert_eq!(n, 3000);
        assert!(k > 1.0 && k < 1.6, "{k}");
        let line = linear_fit(
            &measured
                .iter()
                .map(|&(n, s)| (n as f64, s))
                .collect::<Vec<_>>(),
        )
        .unwrap();
        assert!(p.seconds > line.a + line.b * 30_000.0, "{p:?}");
        // The truth (≈ 28.5k s) is within a factor 2 of the projection.
        assert!(p.seconds > t(30_000.0) / 2.0 && p.seconds < t(30_000.0) * 2.0);
    }

    #[test]
    fn repeated_sizes_use_their_median_and_times_never_fall() {
        let p = project(
            &[(100, 50.0), (1000, 45.0), (1000, 47.0), (1000, 90.0)],
            10_000,
        );
        let p = p.unwrap();
        assert!(
            p.seconds >= 47.0,
            "a job is no cheaper at a larger N: {p:?}"
        );
        let flat = power(&[(100, 50.0), (1000, 40.0)], 10_000).unwrap();
        assert_eq!(flat.0, 40.0);
    }

    #[test]
    fn models_describe_themselves() {
        let linear = Model::Linear { a: 52.0, b: 0.021 };
        assert_eq!(
            linear.to_string(),
            "least-squares line a + b·N: a = 52.0 s, b = 21.000 s per 1k N"
        );
        let power = Model::Power {
            k: 1.57,
            n: 3000,
            seconds: 410.0,
        };
        assert_eq!(
            power.to_string(),
            "power law through the two largest sizes: 410.0 s at N = 3000, exponent k = 1.57"
        );
        assert_eq!(minutes(1800.0), "30");
        assert_eq!(minutes(90.0), "1.5");
    }
}
