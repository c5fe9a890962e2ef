//! `rulebench report`: markdown + one SVG plot per figure from a results
//! file. Everything here is a pure function of the results, so the same
//! file always gives the same report.

mod control_time;
mod evidence;
mod explainer;
pub mod growth;
pub mod plot;
pub mod side_by_side;

use crate::measure::figures::{self, Figure};
use crate::measure::stats;
use crate::results::Results;
use anyhow::{Context, Result};
use std::collections::BTreeSet;
use std::path::Path;

/// Figures present in the results, in catalogue order.
fn present(results: &Results) -> Vec<Figure> {
    let ids: BTreeSet<&str> = results.samples.iter().map(|s| s.figure.as_str()).collect();
    figures::ALL
        .iter()
        .copied()
        .filter(|f| ids.contains(f.id))
        .collect()
}

fn techs(results: &Results, figure: &str) -> Vec<String> {
    let set: BTreeSet<String> = results
        .samples
        .iter()
        .filter(|s| s.figure == figure)
        .map(|s| s.tech.clone())
        .collect();
    set.into_iter().collect()
}

fn sizes(results: &Results, figure: &str) -> Vec<u64> {
    let set: BTreeSet<u64> = results
        .samples
        .iter()
        .filter(|s| s.figure == figure)
        .map(|s| s.n)
        .collect();
    set.into_iter().collect()
}

/// Samples of `figure` at N for a series label: a technology, or
/// "TECH (kube-proxy)" for its kube-proxy-mode updates (labelled or not).
fn values(results: &Results, figure: &str, tech: &str, n: u64) -> Vec<f64> {
    results
        .samples
        .iter()
        .filter(|s| {
            s.figure == figure
                && s.n == n
                && crate::results::tech_label(&s.tech, &s.update_mode) == tech
        })
        .map(|s| s.value)
        .collect()
}

/// "skipped (projected 41.2 min)" where the run skipped this figure's
/// family × technology × N because its projected time exceeded the job
/// budget — a table shows the gap instead of dropping the row.
fn skipped(results: &Results, figure: &str, tech: &str, n: u64) -> Option<String> {
    let family = figure.split('.').next()?;
    results
        .meta
        .skipped_jobs
        .iter()
        .find(|s| s.family == family && s.tech == tech && s.n == n)
        .map(|s| format!("skipped (projected {:.1} min)", s.projected_seconds / 60.0))
}

/// The sizes a figure has samples or projected skips at, ascending.
fn sizes_with_skips(results: &Results, figure: &str, tech: &str) -> Vec<u64> {
    let family = figure.split('.').next().unwrap_or_default();
    let mut out: BTreeSet<u64> = sizes(results, figure).into_iter().collect();
    out.extend(
        results
            .meta
            .skipped_jobs
            .iter()
            .filter(|s| s.family == family && s.tech == tech)
            .map(|s| s.n),
    );
    out.into_iter().collect()
}

/// Three significant digits, no exponent for the ranges we see.
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// Growth exponent: log-log slope of the medians over N > 0.
pub fn slope(results: &Results, figure: &str, tech: &str) -> Option<f64> {
    let points: Vec<(f64, f64)> = sizes(results, figure)
        .into_iter()
        .map(|n| (n as f64, stats::median(&values(results, figure, tech, n))))
        .filter(|p| p.1.is_finite())
        .collect();
    stats::loglog_slope(&points)
}

/// "from A at N=a to B at N=b (growth exponent s; fit a + b·N …)" — the
/// sentence the explainer puts under each claim.
pub fn growth_line(results: &Results, figure: &str, tech: &str) -> String {
    let f = figures::lookup(figure);
    let ns: Vec<u64> = sizes(results, figure)
        .into_iter()
        .filter(|&n| !values(results, figure, tech, n).is_empty())
        .collect();
    let (Some(&lo), Some(&hi)) = (ns.first(), ns.last()) else {
        return format!("{figure}: not measured for {tech} in this run");
    };
    let m = |n| stats::median(&values(results, figure, tech, n));
    let exponent = slope(results, figure, tech).map_or("–".to_string(), |s| format!("{s:.2}"));
    format!(
        "{} — {} {} at N={lo} → {} {} at N={hi} (×{}, growth exponent {exponent}; {})",
        figure,
        num(m(lo)),
        f.unit,
        num(m(hi)),
        f.unit,
        num(m(hi) / m(lo)),
        growth::sentence(growth::fit(results, figure, tech), f.unit)
    )
}

/// Median at each N and the growth exponent, one row per figure × tech.
pub fn summary_table(results: &Results) -> String {
    let all_sizes: BTreeSet<u64> = results
        .samples
        .iter()
        .filter(|s| s.figure != figures::BOOT.id)
        .map(|s| s.n)
        .chain(results.meta.skipped_jobs.iter().map(|s| s.n))
        .collect();
    let mut out = String::from("| figure | tech |");
    for n in &all_sizes {
        out += &format!(" N={n} |");
    }
    out += " growth exponent | b per 1k N (95 % interval) | worst CV |\n|---|---|";
    out += &"---:|".repeat(all_sizes.len() + 3);
    out.push('\n');
    for figure in present(results).iter().filter(|f| f.id != figures::BOOT.id) {
        for tech in techs(results, figure.id) {
            out += &format!("| {} ({}) | {tech} |", figure.id, figure.unit);
            // A single sample (a full load over its time budget) has no CV.
            let mut worst_cv: Option<f64> = None;
            for &n in &all_sizes {
                let v = values(results, figure.id, &tech, n);
                if v.is_empty() {
                    out += &format!(
                        " {} |",
                        skipped(results, figure.id, &tech, n).unwrap_or_default()
                    );
                } else {
                    if v.len() > 1 {
                        worst_cv = Some(worst_cv.unwrap_or(0.0).max(stats::cv(&v)));
                    }
                    out += &format!(" {} |", num(stats::median(&v)));
                }
            }
            let s =
                slope(results, figure.id, &tech).map_or("–".to_string(), |s| format!("{s:.2}"));
            let b = growth::per_1k_cell(growth::fit(results, figure.id, &tech));
            let cv = worst_cv.map_or("–".to_string(), |c| format!("{:.1} %", c * 100.0));
            out += &format!(" {s} | {b} | {cv} |\n");
        }
    }
    out
}

/// The short table printed at the end of `bench`: connection cost and
/// add-one per technology at each N.
pub fn headline_table(results: &Results) -> String {
    let results = &with_mode_labels(results);
    let keep = [
        "services.connect-p50",
        "services.crr-rate",
        "services.add-one",
        "services.full-load",
        "firewall.crr-rate.conntrack",
        "firewall.iperf-tcp.notrack",
    ];
    let filtered = Results {
        samples: results
            .samples
            .iter()
            .filter(|s| keep.contains(&s.figure.as_str()))
            .cloned()
            .collect(),
        ..results.clone()
    };
    summary_table(&filtered)
}

fn figure_section(results: &Results, figure: &Figure) -> String {
    let mut out = format!(
        "### {} ({})\n\n![{}]({}.svg)\n\n",
        figure.title, figure.unit, figure.id, figure.id
    );
    out += "| tech | N | median | IQR | CV | samples |\n|---|---:|---:|---:|---:|---:|\n";
    for tech in techs(results, figure.id) {
        for n in sizes_with_skips(results, figure.id, &tech) {
            let v = values(results, figure.id, &tech, n);
            if v.is_empty() {
                if let Some(cell) = skipped(results, figure.id, &tech, n) {
                    out += &format!("| {tech} | {n} | {cell} | | | 0 |\n");
                }
                continue;
            }
            let cv = if v.len() > 1 {
                format!("{:.1} %", stats::cv(&v) * 100.0)
            } else {
                "–".to_string()
            };
            out += &format!(
                "| {tech} | {n} | {} | {} | {cv} | {} |\n",
                num(stats::median(&v)),
                num(stats::iqr(&v)),
                v.len()
            );
        }
    }
    out.push('\n');
    out
}

/// The results as the report shows them: kube-proxy-mode update
/// samples become their own series, "TECH (kube-proxy)", so every table
/// gives them a row and every plot a line, next to the primitive ones.
fn with_mode_labels(results: &Results) -> Results {
    let mut out = results.clone();
    for s in &mut out.samples {
        let label = crate::results::tech_label(&s.tech, &s.update_mode);
        if label != s.tech && !s.tech.ends_with(" (kube-proxy)") {
            s.tech = label;
        }
    }
    out
}

pub fn markdown(results: &Results) -> String {
    let results = &with_mode_labels(results);
    let m = &results.meta;
    let mut out = String::from("# rulebench report\n\n");
    out += "| run | |\n|---|---|\n";
    for (k, v) in [
        ("image", format!("{} (sha256 {})", m.image, m.image_sha256)),
        ("kernel", m.kernel.clone()),
        ("accel", m.accel.clone()),
        (
            "guest",
            format!("{} vCPU, {} MiB", m.guest_vcpus, m.guest_memory_mb),
        ),
        ("host CPU", m.host_cpu.clone()),
        ("QEMU", m.qemu_version.clone()),
        ("rulebench", m.rulebench_revision.clone()),
        (
            "sizes",
            m.sizes
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("repeats", m.repeats.to_string()),
        (
            "full loads",
            m.full_load_budget_seconds
                .map_or("every repeat".to_string(), |b| {
                    format!("repeated until they took {b} s of guest time per job (at least one)")
                }),
        ),
        ("duration", format!("{:.1} min", m.duration_seconds / 60.0)),
        (
            "guests",
            format!(
                "{} in parallel; alone on the host: {}",
                m.parallel_guests,
                if m.exclusive_phases.is_empty() {
                    "none".to_string()
                } else {
                    m.exclusive_phases.join(", ")
                }
            ),
        ),
    ] {
        out += &format!("| {k} | {v} |\n");
    }
    for (k, v) in side_by_side::versions_rows(m) {
        // Fields that files written before them lack stay out.
        if !v.is_empty() {
            out += &format!("| {k} | {v} |\n");
        }
    }
    out.push('\n');
    if !results.notes.is_empty() {
        out += "## Failed or skipped measurements\n\n";
        for n in &results.notes {
            out += &format!("- {n}\n");
        }
        out.push('\n');
    }
    out += &skipped_section(results);
    out += "## Summary\n\nMedians per N; growth exponent = least-squares slope of log(median) over log(N) for N > 0 \
            (0 flat, 1 linear); b = the slope of a least-squares line value = a + b·N through every sample \
            (all sizes, repeats and update positions), in the figure's unit per 1,000 N, with its 95 % t-interval — \
            a large fixed cost plus linear growth reads as exponent ≈ 0 but b > 0 (interval above 0); worst CV = the largest coefficient of variation over the sizes with more than one \
            sample (– when every size has one).\n\n";
    out += &summary_table(results);
    out += "\n## Why both connection rate and iperf3\n\nA single iperf3 stream is one connection: only its first packet \
            walks the NAT / filter rules, conntrack carries the rest. The connection-rate test (connect / answer / close, \
            like netperf TCP_CRR, spread over all N services plus 10 % to an address no rule matches) pays the walk \
            on every connection.\n\n";
    for tech in techs(results, "services.crr-rate") {
        out += &format!(
            "- {tech}: {}; {}\n",
            growth_line(results, "services.crr-rate", &tech),
            growth_line(results, "services.iperf-tcp", &tech)
        );
    }
    out.push('\n');
    out += &evidence::markdown(results);
    out += &control_time::markdown(results);
    out += &explainer::markdown(results);
    out += "## Figures\n\n";
    for figure in present(results) {
        out += &figure_section(results, &figure);
    }
    out
}

/// The jobs the run skipped by projection, each with the fit it came
/// from; empty when none was.
pub fn skipped_section(results: &Results) -> String {
    let skipped = &results.meta.skipped_jobs;
    if skipped.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "## Skipped by projection\n\nA job runs unless its time, projected from the same technology's \
         smaller jobs of this run, exceeds the job budget (the larger of a least-squares line through every \
         smaller job and a power law through the two largest).\n\n",
    );
    for s in skipped {
        let from: Vec<String> = s
            .from
            .iter()
            .map(|j| format!("{:.1} min at N={}", j.seconds / 60.0, j.n))
            .collect();
        out += &format!(
            "- {} {} N={}: {} (from {}; {})\n",
            s.family,
            s.tech,
            s.n,
            s.reason,
            from.join(", "),
            s.fit
        );
    }
    out.push('\n');
    out
}

/// report.md plus `<figure>.svg` for every figure into `dir`.
pub fn write(results: &Results, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let results = &with_mode_labels(results);
    for figure in present(results) {
        let svg = plot::svg(results, &figure)
            .map_err(|e| anyhow::anyhow!("plotting {}: {e}", figure.id))?;
        let path = dir.join(format!("{}.svg", figure.id));
        std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
    }
    let path = dir.join("report.md");
    std::fs::write(&path, markdown(results))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{RunMeta, Sample, SCHEMA};

    /// A small synthetic results file: linear growth for iptables-legacy,
    /// flat for nftables (shapes only; no claim about real numbers).
    fn small() -> Results {
        let mut samples = Vec::new();
        for (tech, per_n) in [("iptables-legacy", 0.01), ("nftables", 0.0)] {
            for n in [0u64, 100, 1000] {
                for r in 0..3u32 {
                    let jitter = 1.0 + 0.01 * f64::from(r);
                    for (figure, unit, base) in [
                        ("services.connect-p50", "us", 200.0),
                        ("services.add-one", "ms", 20.0),
                    ] {
                        samples.push(Sample {
                            figure: figure.into(),
                            tech: tech.into(),
                            n,
                            repeat: r,
                            position: String::new(),
                            value: (base + base * per_n * n as f64) * jitter,
                            unit: unit.into(),
                            update_mode: String::new(),
                        });
                    }
                }
            }
        }
        Results {
            schema: SCHEMA,
            meta: RunMeta {
                image: "bullseye-5.10".into(),
                image_sha256: "abc".into(),
                kernel: "5.10.0-32-cloud-amd64".into(),
                accel: "tcg".into(),
                sizes: vec![0, 100, 1000],
                repeats: 3,
                guest_vcpus: 1,
                guest_memory_mb: 1024,
                ..RunMeta::default()
            },
            samples,
            notes: vec!["firewall ipvs N=0: example note".into()],
            hooks: vec![],
            profiles: vec![],
        }
    }

    #[test]
    fn markdown_snapshot() {
        insta::assert_snapshot!(markdown(&small()));
    }

    #[test]
    fn kube_proxy_updates_get_their_own_rows() {
        let mut r = small();
        let extra: Vec<Sample> = r
            .samples
            .iter()
            .filter(|s| s.figure == "services.add-one")
            .map(|s| Sample {
                update_mode: "kube-proxy".into(),
                value: s.value * 3.0,
                ..s.clone()
            })
            .collect();
        r.samples.extend(extra);
        let md = markdown(&r);
        assert!(
            md.contains("| services.add-one (ms) | nftables (kube-proxy) |"),
            "{md}"
        );
        assert!(md.contains("| services.add-one (ms) | nftables |"), "{md}");
        // Labelling twice (write, then markdown) does not stack.
        let twice = with_mode_labels(&with_mode_labels(&r));
        assert!(twice
            .samples
            .iter()
            .all(|s| !s.tech.ends_with("(kube-proxy) (kube-proxy)")));
    }

    #[test]
    fn slopes_show_the_shapes() {
        let r = small();
        let legacy = slope(&r, "services.add-one", "iptables-legacy").unwrap();
        let flat = slope(&r, "services.add-one", "nftables").unwrap();
        assert!(legacy > 0.5, "{legacy}");
        assert!(flat.abs() < 0.05, "{flat}");
    }

    #[test]
    fn writes_svgs_and_markdown() {
        let dir = tempfile::tempdir().unwrap();
        write(&small(), dir.path()).unwrap();
        let svg = std::fs::read_to_string(dir.path().join("services.connect-p50.svg")).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("iptables-legacy"),
            "{}",
            &svg[..200.min(svg.len())]
        );
        assert!(dir.path().join("report.md").exists());
    }
}
