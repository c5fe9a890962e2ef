//! Summary statistics and the two-sample tests used by `compare` and the
//! report. Pure functions over `f64` samples; NaN-free input is assumed
//! (measurements never produce NaN).

/// Median (mean of the two middle values for an even count); NaN if empty.
pub fn median(samples: &[f64]) -> f64 {
    quantile(samples, 0.5)
}

/// Linear-interpolated quantile (type 7, as R and numpy default).
pub fn quantile(samples: &[f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

/// Interquartile range: the spread reported next to every median.
pub fn iqr(samples: &[f64]) -> f64 {
    quantile(samples, 0.75) - quantile(samples, 0.25)
}

pub fn mean(samples: &[f64]) -> f64 {
    samples.iter().sum::<f64>() / samples.len() as f64
}

/// Coefficient of variation (sample standard deviation / mean); 0 for a
/// single sample, NaN for none or a zero mean.
pub fn cv(samples: &[f64]) -> f64 {
    if samples.len() < 2 {
        return if samples.is_empty() { f64::NAN } else { 0.0 };
    }
    let m = mean(samples);
    let var = samples.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (samples.len() - 1) as f64;
    var.sqrt() / m
}

/// Mann-Whitney U test, two-sided, normal approximation with tie and
/// continuity correction. Returns (U of `a`, p-value). With fewer than ~4
/// samples per side the p-value cannot get small — that is why `compare`
/// decides on the bootstrap interval and shows U only as context.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> (f64, f64) {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    if a.is_empty() || b.is_empty() {
        return (f64::NAN, 1.0);
    }
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|&x| (x, true))
        .chain(b.iter().map(|&x| (x, false)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut rank_sum_a = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        rank_sum_a += all[i..=j].iter().filter(|x| x.1).count() as f64 * rank;
        i = j + 1;
    }
    let u = rank_sum_a - n1 * (n1 + 1.0) / 2.0;
    let n = n1 + n2;
    let var = n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    if var <= 0.0 {
        return (u, 1.0);
    }
    let z = ((u - n1 * n2 / 2.0).abs() - 0.5).max(0.0) / var.sqrt();
    (u, (2.0 * normal_upper_tail(z)).min(1.0))
}

/// P(Z > z) for a standard normal (Abramowitz-Stegun 7.1.26, error < 1.5e-7).
fn normal_upper_tail(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    0.5 * poly * (-x * x).exp()
}

/// Deterministic xorshift resampler (fixed seed): `compare` and the report
/// give the same interval every time for the same files.
struct Resampler(u64);

impl Resampler {
    fn new() -> Self {
        Resampler(0x853c_49e6_748f_ea9b)
    }

    fn median_of_draw(&mut self, s: &[f64]) -> f64 {
        let pick: Vec<f64> = (0..s.len())
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                s[(self.0 % s.len() as u64) as usize]
            })
            .collect();
        median(&pick)
    }
}

fn percentile_interval(mut values: Vec<f64>, confidence: f64) -> (f64, f64) {
    values.retain(|r| r.is_finite());
    let alpha = (1.0 - confidence) / 2.0;
    (quantile(&values, alpha), quantile(&values, 1.0 - alpha))
}

/// Percentile bootstrap confidence interval of median(new) / median(base).
pub fn bootstrap_median_ratio_ci(
    base: &[f64],
    new: &[f64],
    confidence: f64,
    resamples: usize,
) -> (f64, f64) {
    if base.is_empty() || new.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut r = Resampler::new();
    let ratios = (0..resamples)
        .map(|_| r.median_of_draw(new) / r.median_of_draw(base))
        .collect();
    percentile_interval(ratios, confidence)
}

/// Percentile bootstrap confidence interval of one series' median (e.g.
/// the per-rule slope over repeats: does its interval exclude 0?).
pub fn bootstrap_median_ci(samples: &[f64], confidence: f64, resamples: usize) -> (f64, f64) {
    if samples.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut r = Resampler::new();
    let medians = (0..resamples).map(|_| r.median_of_draw(samples)).collect();
    percentile_interval(medians, confidence)
}

/// Least-squares slope of log(value) against log(n): the growth exponent
/// (0 flat, 1 linear in N). Points with n = 0 or value <= 0 have no
/// logarithm and are skipped; fewer than two usable sizes give None.
pub fn loglog_slope(points: &[(f64, f64)]) -> Option<f64> {
    let logs: Vec<(f64, f64)> = points
        .iter()
        .filter(|(n, v)| *n > 0.0 && *v > 0.0)
        .map(|(n, v)| (n.ln(), v.ln()))
        .collect();
    let distinct_n = {
        let mut xs: Vec<f64> = logs.iter().map(|p| p.0).collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        xs.len()
    };
    if distinct_n < 2 {
        return None;
    }
    let k = logs.len() as f64;
    let mx = logs.iter().map(|p| p.0).sum::<f64>() / k;
    let my = logs.iter().map(|p| p.1).sum::<f64>() / k;
    let sxy: f64 = logs.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = logs.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    Some(sxy / sxx)
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7; error < 1e-13 in double precision).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let sum = C[1..]
        .iter()
        .enumerate()
        .fold(C[0], |acc, (i, c)| acc + c / (x + i as f64 + 1.0));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// The regularized incomplete beta function I_x(a, b), by its continued
/// fraction (modified Lentz).
fn incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    if x > (a + 1.0) / (a + b + 2.0) {
        return 1.0 - incomplete_beta(1.0 - x, b, a);
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp() / a;
    let tiny = 1e-300;
    let (mut c, mut d) = (1.0, 1.0 - (a + b) * x / (a + 1.0));
    d = if d.abs() < tiny { tiny } else { d };
    d = 1.0 / d;
    let mut f = d;
    for m in 1..300 {
        let m = m as f64;
        for numerator in [
            m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0)),
        ] {
            d = 1.0 + numerator * d;
            d = if d.abs() < tiny { tiny } else { d };
            c = 1.0 + numerator / c;
            c = if c.abs() < tiny { tiny } else { c };
            d = 1.0 / d;
            f *= c * d;
        }
        if (c * d - 1.0).abs() < 1e-15 {
            break;
        }
    }
    front * f
}

/// P(T ≤ t) of Student's t with `df` degrees of freedom.
pub fn student_t_cdf(t: f64, df: f64) -> f64 {
    let tail = 0.5 * incomplete_beta(df / (df + t * t), df / 2.0, 0.5);
    if t >= 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// The `p` quantile (0.5 ≤ p < 1) of Student's t with `df` degrees of
/// freedom, by bisection of [`student_t_cdf`].
pub fn student_t_quantile(p: f64, df: f64) -> f64 {
    let (mut lo, mut hi) = (0.0, 1e7);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if student_t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

#[cfg(test)]
mod tests {
    #[test]
    fn student_t_quantiles_match_the_tables() {
        for (p, df, t) in [
            (0.975, 1.0, 12.706),
            (0.975, 2.0, 4.303),
            (0.975, 8.0, 2.306),
            (0.995, 8.0, 3.355),
            (0.9995, 2.0, 31.599),
            (0.975, 30.0, 2.042),
        ] {
            let q = super::student_t_quantile(p, df);
            assert!((q - t).abs() < 0.002, "t({p}, {df}) = {q}, table {t}");
        }
        assert!((super::student_t_cdf(0.0, 5.0) - 0.5).abs() < 1e-12);
    }

    use super::*;

    #[test]
    fn median_quantile_iqr() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(iqr(&[1.0, 2.0, 3.0, 4.0, 5.0]), 2.0);
        assert_eq!(quantile(&[1.0, 2.0], 1.0), 2.0);
    }

    #[test]
    fn cv_of_constant_and_spread() {
        assert_eq!(cv(&[5.0, 5.0, 5.0]), 0.0);
        assert!((cv(&[9.0, 10.0, 11.0]) - 0.1).abs() < 1e-12);
        assert_eq!(cv(&[1.0]), 0.0);
    }

    #[test]
    fn mann_whitney_separates_shifted_samples() {
        let a: Vec<f64> = (0..10).map(|i| 100.0 + i as f64).collect();
        let b: Vec<f64> = (0..10).map(|i| 200.0 + i as f64).collect();
        let (u, p) = mann_whitney(&a, &b);
        assert_eq!(u, 0.0);
        assert!(p < 0.001, "{p}");
        let (_, p_same) = mann_whitney(&a, &a);
        assert!(p_same > 0.9, "{p_same}");
    }

    #[test]
    fn normal_tail_known_values() {
        assert!((normal_upper_tail(0.0) - 0.5).abs() < 1e-6);
        assert!((normal_upper_tail(1.959_964) - 0.025).abs() < 1e-5);
    }

    #[test]
    fn bootstrap_ratio_interval() {
        let base = [10.0, 10.2, 9.9, 10.1, 10.0];
        let slow = [20.0, 20.5, 19.8, 20.1, 20.2];
        let (lo, hi) = bootstrap_median_ratio_ci(&base, &slow, 0.95, 2000);
        assert!(lo > 1.9 && hi < 2.1, "{lo} {hi}");
        let (lo, hi) = bootstrap_median_ratio_ci(&base, &base, 0.95, 2000);
        assert!(lo <= 1.0 && hi >= 1.0, "{lo} {hi}");
        // Deterministic: same input, same interval.
        assert_eq!(
            bootstrap_median_ratio_ci(&base, &slow, 0.95, 500),
            bootstrap_median_ratio_ci(&base, &slow, 0.95, 500)
        );
    }

    #[test]
    fn loglog_slope_recovers_exponents() {
        let linear: Vec<(f64, f64)> = [100.0, 1000.0, 10000.0]
            .iter()
            .map(|&n| (n, 3.0 * n))
            .collect();
        assert!((loglog_slope(&linear).unwrap() - 1.0).abs() < 1e-9);
        let flat = [(0.0, 5.0), (100.0, 2.0), (1000.0, 2.0)];
        assert!(loglog_slope(&flat).unwrap().abs() < 1e-9);
        let square: Vec<(f64, f64)> = [10.0, 100.0].iter().map(|&n| (n, n * n)).collect();
        assert!((loglog_slope(&square).unwrap() - 2.0).abs() < 1e-9);
        assert_eq!(loglog_slope(&[(0.0, 1.0), (100.0, 1.0)]), None);
    }
}
