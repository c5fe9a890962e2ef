//! Growth of a figure with N as a straight line, value = a + b·N, fitted
//! by least squares over every sample (all sizes, all repeats), with the
//! 95 % t-interval of the slope b.
//!
//! The report's log-log exponent says how a figure scales once N
//! dominates, but a large fixed cost hides a linear part: 700 ms + 0.1 ms
//! per service reads as exponent 0.1 ("flat") from N = 100 to 1000 while
//! adding 90 ms. b with its interval says whether N costs anything at
//! all, and how much, whatever the fixed part.

use crate::results::Results;

/// value ≈ a + b·N, b with its 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearFit {
    pub a: f64,
    pub b: f64,
    /// 95 % t-interval of b; None with fewer than three samples (no
    /// residual left to estimate the scatter from).
    pub b_interval: Option<(f64, f64)>,
    pub samples: usize,
}

impl LinearFit {
    /// The interval lies entirely above (+1) or below (−1) zero, or
    /// contains it (0, also when there is no interval).
    pub fn sign(&self) -> i8 {
        match self.b_interval {
            Some((lo, _)) if lo > 0.0 => 1,
            Some((_, hi)) if hi < 0.0 => -1,
            _ => 0,
        }
    }
}

/// Two-sided 95 % quantiles of Student's t for 1 to 30 degrees of freedom.
const T_975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

/// t(0.975, df); beyond the table the Cornish-Fisher expansion around the
/// normal quantile (error < 0.001 from df = 30).
pub fn t_975(df: usize) -> f64 {
    if df == 0 {
        return f64::INFINITY;
    }
    if let Some(&t) = T_975.get(df - 1) {
        return t;
    }
    let z: f64 = 1.959_964;
    let d = df as f64;
    z + (z.powi(3) + z) / (4.0 * d)
        + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * d * d)
}

/// Ordinary least squares over (N, value) points; None unless there are
/// two distinct N.
pub fn linear_fit(points: &[(f64, f64)]) -> Option<LinearFit> {
    let k = points.len();
    let mut xs: Vec<f64> = points.iter().map(|p| p.0).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    if xs.len() < 2 {
        return None;
    }
    let kf = k as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / kf;
    let my = points.iter().map(|p| p.1).sum::<f64>() / kf;
    let sxx: f64 = points.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let b = sxy / sxx;
    let a = my - b * mx;
    let b_interval = (k >= 3).then(|| {
        let residuals: f64 = points.iter().map(|(x, y)| (y - a - b * x).powi(2)).sum();
        let df = k - 2;
        let se = (residuals / df as f64 / sxx).sqrt();
        let half = t_975(df) * se;
        (b - half, b + half)
    });
    Some(LinearFit {
        a,
        b,
        b_interval,
        samples: k,
    })
}

/// The fit of one figure for one technology over every sample (every
/// size, repeat and update position).
pub fn fit(results: &Results, figure: &str, tech: &str) -> Option<LinearFit> {
    let points: Vec<(f64, f64)> = results
        .samples
        .iter()
        .filter(|s| s.figure == figure && s.tech == tech && s.value.is_finite())
        .map(|s| (s.n as f64, s.value))
        .collect();
    linear_fit(&points)
}

/// b per 1,000 N in the figure's unit, "0.52 (0.41 … 0.63)"; "–" without a
/// fit, no interval without three samples.
pub fn per_1k_cell(fit: Option<LinearFit>) -> String {
    let Some(f) = fit else {
        return "–".into();
    };
    let b = num(f.b * 1000.0);
    match f.b_interval {
        Some((lo, hi)) => format!("{b} ({} … {})", num(lo * 1000.0), num(hi * 1000.0)),
        None => b,
    }
}

/// "fit a + b·N: a = 700 ms, b = 100 ms per 1k N, 95 % interval 80.0 …
/// 120, grows with N" — or "no change with N resolved" when the interval
/// contains 0.
pub fn sentence(fit: Option<LinearFit>, unit: &str) -> String {
    let Some(f) = fit else {
        return "no linear fit (fewer than two sizes)".into();
    };
    let (a, b) = (num(f.a), num(f.b * 1000.0));
    match f.b_interval {
        None => format!(
            "fit a + b·N: a = {a} {unit}, b = {b} {unit} per 1k N, no interval from two samples"
        ),
        Some((lo, hi)) => format!(
            "fit a + b·N: a = {a} {unit}, b = {b} {unit} per 1k N, 95 % interval {} … {}, {}",
            num(lo * 1000.0),
            num(hi * 1000.0),
            match f.sign() {
                1 => "grows with N",
                -1 => "falls with N",
                _ => "no change with N resolved",
            }
        ),
    }
}

/// The report's number format, with rounding noise around 0 printed as 0
/// (a flat series' slope is 1e-16, not "-0.000").
fn num(x: f64) -> String {
    super::num(if x.abs() < 1e-9 { 0.0 } else { x })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_intercept_and_slope() {
        let points: Vec<(f64, f64)> = [0.0, 100.0, 1000.0, 3000.0]
            .iter()
            .map(|&n| (n, 700.0 + 0.1 * n))
            .collect();
        let f = linear_fit(&points).unwrap();
        assert!((f.a - 700.0).abs() < 1e-9, "{f:?}");
        assert!((f.b - 0.1).abs() < 1e-12, "{f:?}");
        let (lo, hi) = f.b_interval.unwrap();
        assert!((lo - 0.1).abs() < 1e-9 && (hi - 0.1).abs() < 1e-9, "{f:?}");
        assert_eq!(f.sign(), 1);
    }

    #[test]
    fn a_fixed_cost_plus_linear_growth_is_not_flat() {
        // 700 ms + 0.1 ms/N with ±1 % scatter over three repeats: the
        // log-log exponent from 100 to 1000 is about 0.05, "flat".
        let mut points = Vec::new();
        for n in [100.0, 1000.0] {
            for j in [-1.0, 0.0, 1.0] {
                points.push((n, (700.0 + 0.1 * n) * (1.0 + 0.01 * j)));
            }
        }
        let medians = [(100.0, 710.0), (1000.0, 800.0)];
        let exponent = crate::measure::stats::loglog_slope(&medians).unwrap();
        assert!(exponent < 0.06, "{exponent}");
        let f = linear_fit(&points).unwrap();
        assert_eq!(f.sign(), 1, "{f:?}");
        assert!((f.b * 1000.0 - 100.0).abs() < 10.0, "{f:?}");
        assert!(sentence(Some(f), "ms").contains("grows with N"));
    }

    #[test]
    fn pure_scatter_resolves_no_growth() {
        let points = [
            (100.0, 10.0),
            (100.0, 12.0),
            (100.0, 11.0),
            (1000.0, 11.5),
            (1000.0, 10.2),
            (1000.0, 11.0),
        ];
        let f = linear_fit(&points).unwrap();
        assert_eq!(f.sign(), 0, "{f:?}");
        let (lo, hi) = f.b_interval.unwrap();
        assert!(lo < 0.0 && hi > 0.0);
        assert!(sentence(Some(f), "ms").ends_with("no change with N resolved"));
    }

    #[test]
    fn interval_matches_a_known_regression() {
        // x = 1..5, y = 2.2, 4.1, 6.3, 7.9, 10.1: b = 1.96, a = 0.24,
        // residual SS 0.072, se(b) = √(0.072 / 3 / 10) = 0.04899 →
        // 95 % (df 3) 1.96 ± 3.182 × 0.04899.
        let points = [(1.0, 2.2), (2.0, 4.1), (3.0, 6.3), (4.0, 7.9), (5.0, 10.1)];
        let f = linear_fit(&points).unwrap();
        assert!((f.b - 1.96).abs() < 1e-9, "{f:?}");
        assert!((f.a - 0.24).abs() < 1e-9, "{f:?}");
        let (lo, hi) = f.b_interval.unwrap();
        assert!((hi - lo - 2.0 * 3.182 * 0.048_99).abs() < 1e-4, "{lo} {hi}");
    }

    #[test]
    fn degenerate_inputs() {
        assert_eq!(linear_fit(&[]), None);
        assert_eq!(linear_fit(&[(100.0, 1.0), (100.0, 2.0)]), None);
        let two = linear_fit(&[(0.0, 1.0), (100.0, 2.0)]).unwrap();
        assert_eq!(two.b_interval, None);
        assert_eq!(two.sign(), 0);
        assert_eq!(per_1k_cell(Some(two)), "10.0");
        assert_eq!(per_1k_cell(None), "–");
        assert!(sentence(Some(two), "ms").contains("no interval"));
        // A flat series prints 0, not a rounding-noise "-0.000".
        let flat = linear_fit(&[(0.0, 5.0), (100.0, 5.0), (1000.0, 5.0)]).unwrap();
        assert_eq!(per_1k_cell(Some(flat)), "0.000 (0.000 … 0.000)");
    }

    #[test]
    fn t_quantiles() {
        assert_eq!(t_975(1), 12.706);
        assert_eq!(t_975(30), 2.042);
        assert!((t_975(40) - 2.021).abs() < 0.001, "{}", t_975(40));
        assert!((t_975(120) - 1.980).abs() < 0.001, "{}", t_975(120));
        assert!(t_975(0).is_infinite());
    }
}
