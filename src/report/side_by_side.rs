//! Several runs of the same ladder on different images, side by side:
//! one header row per image (kernel, userland, nft and iptables
//! versions), and for every figure one table with a column per image and
//! one plot with a line per image × technology — what a kernel or
//! userland upgrade changes. A pure function of the results (and the
//! images that failed), like the one-image report.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result};

use super::plot::{self, Line};
use super::{num, skipped, skipped_section, values};
use crate::measure::figures::{self, Figure};
use crate::measure::stats;
use crate::results::{Results, RunMeta};

/// The rows a run's header adds for what differs between images
/// (userland, tool versions, phases, job budget); "" where unknown.
pub fn versions_rows(m: &RunMeta) -> Vec<(&'static str, String)> {
    vec![
        ("userland", m.userland.clone()),
        ("nft", m.nft_version.clone()),
        ("iptables", m.iptables_version.clone()),
        ("phases", m.phases.join(", ")),
        (
            "job budget",
            m.job_budget_minutes.map_or(String::new(), |b| {
                format!("{b} min of projected time per job (longer jobs skipped)")
            }),
        ),
    ]
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "–"
    } else {
        s
    }
}

/// Figures any run has, in catalogue order (boot times included: a
/// kernel changes them too).
fn present(runs: &[&Results]) -> Vec<Figure> {
    let ids: BTreeSet<&str> = runs
        .iter()
        .flat_map(|r| r.samples.iter().map(|s| s.figure.as_str()))
        .collect();
    figures::ALL
        .iter()
        .copied()
        .filter(|f| ids.contains(f.id))
        .collect()
}

fn techs(runs: &[&Results], figure: &str) -> Vec<String> {
    let set: BTreeSet<String> = runs
        .iter()
        .flat_map(|r| r.samples.iter())
        .filter(|s| s.figure == figure)
        .map(|s| s.tech.clone())
        .collect();
    set.into_iter().collect()
}

/// The sizes any run measured or skipped for this figure and technology.
fn sizes(runs: &[&Results], figure: &str, tech: &str) -> Vec<u64> {
    let family = figure.split('.').next().unwrap_or_default();
    let mut set = BTreeSet::new();
    for r in runs {
        set.extend(
            r.samples
                .iter()
                .filter(|s| s.figure == figure && s.tech == tech)
                .map(|s| s.n),
        );
        set.extend(
            r.meta
                .skipped_jobs
                .iter()
                .filter(|s| s.family == family && s.tech == tech)
                .map(|s| s.n),
        );
    }
    set.into_iter().collect()
}

fn header(runs: &[&Results], failed: &[(String, String)]) -> String {
    let mut out = String::from("# rulebench: images side by side\n\n");
    out += "The same ladder on every image, one after the other on this host; each image's own \
            report (results.json, report.md, plots) is in its directory.\n\n";
    out += "| image | kernel | userland | nft | iptables | accel | guest | phases | job budget | duration |\n\
            |---|---|---|---|---|---|---|---|---|---:|\n";
    for r in runs {
        let m = &r.meta;
        let budget = m
            .job_budget_minutes
            .map_or("–".to_string(), |b| format!("{b} min"));
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {} vCPU, {} MiB | {} | {budget} | {:.1} min |\n",
            m.image,
            or_dash(&m.kernel),
            or_dash(&m.userland),
            or_dash(&m.nft_version),
            or_dash(&m.iptables_version),
            m.accel,
            m.guest_vcpus,
            m.guest_memory_mb,
            or_dash(&m.phases.join(", ")),
            m.duration_seconds / 60.0
        );
    }
    for (image, _) in failed {
        out += &format!("| {image} | failed | | | | | | | | |\n");
    }
    out.push('\n');
    if !failed.is_empty() {
        out += "## Images that failed\n\n";
        for (image, error) in failed {
            out += &format!("- {image}: {error}\n");
        }
        out.push('\n');
    }
    out += &differences(runs);
    for r in runs {
        if !r.notes.is_empty() {
            out += &format!("## Failed measurements on {}\n\n", r.meta.image);
            for n in &r.notes {
                out += &format!("- {n}\n");
            }
            out.push('\n');
        }
        let section = skipped_section(r);
        if !section.is_empty() {
            out += &section.replacen(
                "## Skipped by projection",
                &format!("## Skipped by projection on {}", r.meta.image),
                1,
            );
        }
    }
    out
}

/// A warning when the runs did not measure the same thing: columns of
/// different ladders, repeats or phases are not comparable.
fn differences(runs: &[&Results]) -> String {
    let Some(first) = runs.first() else {
        return String::new();
    };
    let mut out = String::new();
    let key = |m: &RunMeta| {
        (
            m.sizes.clone(),
            m.techs.clone(),
            m.families.clone(),
            m.repeats,
            m.phases.clone(),
            m.accel.clone(),
        )
    };
    for r in &runs[1..] {
        if key(&r.meta) != key(&first.meta) {
            out += &format!(
                "- {} ran another plan than {} (sizes, technologies, families, repeats, phases or accel differ): \
                 compare its columns with care\n",
                r.meta.image, first.meta.image
            );
        }
    }
    if out.is_empty() {
        out
    } else {
        format!("## Runs that differ\n\n{out}\n")
    }
}

/// "12.5 (CV 3.1 %)", a projected skip, or "–".
fn cell(run: &Results, figure: &str, tech: &str, n: u64) -> (String, Option<f64>) {
    let v = values(run, figure, tech, n);
    if v.is_empty() {
        let text = skipped(run, figure, tech, n).unwrap_or_else(|| "–".into());
        return (text, None);
    }
    let m = stats::median(&v);
    let text = if v.len() > 1 {
        format!("{} (CV {:.1} %)", num(m), stats::cv(&v) * 100.0)
    } else {
        num(m)
    };
    (text, Some(m))
}

fn figure_section(runs: &[&Results], figure: &Figure) -> String {
    let mut out = format!(
        "### {} ({})\n\n![{}]({}.svg)\n\n",
        figure.title, figure.unit, figure.id, figure.id
    );
    let first = &runs[0].meta.image;
    out += "| tech | N |";
    for r in runs {
        out += &format!(" {} |", r.meta.image);
    }
    for r in &runs[1..] {
        out += &format!(" {} / {first} |", r.meta.image);
    }
    out += "\n|---|---:|";
    out += &"---:|".repeat(runs.len() * 2 - 1);
    out.push('\n');
    for tech in techs(runs, figure.id) {
        for n in sizes(runs, figure.id, &tech) {
            let cells: Vec<(String, Option<f64>)> =
                runs.iter().map(|r| cell(r, figure.id, &tech, n)).collect();
            out += &format!("| {tech} | {n} |");
            for (text, _) in &cells {
                out += &format!(" {text} |");
            }
            // Ratios of medians against the first image: what the
            // upgrade changes, at a glance.
            for (_, median) in &cells[1..] {
                let ratio = match (cells[0].1, median) {
                    (Some(base), Some(m)) if base != 0.0 => format!("×{}", num(m / base)),
                    _ => "–".into(),
                };
                out += &format!(" {ratio} |");
            }
            out.push('\n');
        }
    }
    out.push('\n');
    out
}

/// The side-by-side markdown of `runs` (in the order given; ratios are
/// against the first) and the images that `failed` with their errors.
pub fn markdown(runs: &[&Results], failed: &[(String, String)]) -> String {
    let mut out = header(runs, failed);
    if runs.is_empty() {
        out += "No image finished: nothing to compare.\n";
        return out;
    }
    out += "## Figures\n\nMedian per image (CV over the repeats where there are several; update positions \
            pooled as in each image's own figure tables), then each image's median over the first image's. \
            Plots: one colour per technology, one line style per image (solid, dashed, dotted in the order \
            of the table).\n\n";
    for figure in present(runs) {
        out += &figure_section(runs, &figure);
    }
    for r in runs {
        let section = super::control_time::markdown(r);
        if !section.is_empty() {
            out += &section.replacen(
                "## Where the control-plane time goes",
                &format!(
                    "## Where the control-plane time goes on {} (kernel {}, nft {})",
                    r.meta.image,
                    or_dash(&r.meta.kernel),
                    or_dash(&r.meta.nft_version)
                ),
                1,
            );
        }
    }
    out
}

/// One line per image × technology, drawn in the image's style.
pub fn svg(runs: &[&Results], figure: &Figure) -> Result<String, String> {
    let mut lines = Vec::new();
    for (style, r) in runs.iter().enumerate() {
        for (tech, points) in plot::medians(r, figure.id) {
            lines.push(Line {
                label: format!("{tech} @ {}", r.meta.image),
                tech,
                style,
                points,
            });
        }
    }
    plot::svg_lines(
        &format!("{} ({})", figure.title, figure.unit),
        figure.unit,
        &lines,
    )
}

/// report.md and one `<figure>.svg` per figure into `dir`.
pub fn write(runs: &[&Results], failed: &[(String, String)], dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // kube-proxy-mode updates are their own rows and lines, as in each
    // image's own report.
    let labelled: Vec<Results> = runs.iter().map(|r| super::with_mode_labels(r)).collect();
    let runs: &[&Results] = &labelled.iter().collect::<Vec<_>>();
    if !runs.is_empty() {
        for figure in present(runs) {
            let text =
                svg(runs, &figure).map_err(|e| anyhow::anyhow!("plotting {}: {e}", figure.id))?;
            let path = dir.join(format!("{}.svg", figure.id));
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    let path = dir.join("report.md");
    std::fs::write(&path, markdown(runs, failed))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{JobTime, Sample, SkippedJob, SCHEMA};

    /// Two runs of one ladder: nftables' add-one 4× cheaper on the
    /// second image (shapes only), its 30k job skipped on the first.
    fn run(image: &str, kernel: &str, nft: &str, factor: f64) -> Results {
        let mut samples = Vec::new();
        for tech in ["iptables-legacy", "nftables"] {
            for n in [100u64, 1000] {
                for r in 0..3u32 {
                    let base = if tech == "nftables" {
                        40.0 * factor
                    } else {
                        10.0
                    };
                    samples.push(Sample {
                        figure: "services.add-one".into(),
                        tech: tech.into(),
                        n,
                        repeat: r,
                        position: "last".into(),
                        value: base * (1.0 + n as f64 / 1000.0) * (1.0 + 0.01 * f64::from(r)),
                        unit: "ms".into(),
                        update_mode: String::new(),
                    });
                }
            }
        }
        let skipped_jobs = if factor == 1.0 {
            vec![SkippedJob {
                family: "services".into(),
                tech: "nftables".into(),
                n: 30_000,
                projected_seconds: 2472.0,
                budget_seconds: 120.0,
                fit: "least-squares line a + b·N: a = 40.0 s, b = 81.000 s per 1k N".into(),
                from: vec![JobTime {
                    family: "services".into(),
                    tech: "nftables".into(),
                    n: 100,
                    seconds: 48.1,
                    failed: false,
                }],
                reason: "skipped: projected 41.2 min > budget 2 min".into(),
            }]
        } else {
            vec![]
        };
        Results {
            schema: SCHEMA,
            meta: RunMeta {
                image: image.into(),
                kernel: kernel.into(),
                accel: "tcg".into(),
                userland: "bullseye".into(),
                nft_version: nft.into(),
                iptables_version: "iptables v1.8.7 (legacy)".into(),
                sizes: vec![100, 1000, 30_000],
                repeats: 3,
                guest_vcpus: 1,
                guest_memory_mb: 1024,
                phases: vec!["control".into()],
                job_budget_minutes: Some(2.0),
                skipped_jobs,
                ..RunMeta::default()
            },
            samples,
            notes: vec![],
            hooks: vec![],
            profiles: vec![],
        }
    }

    #[test]
    fn markdown_snapshot() {
        let a = run(
            "bullseye-5.10",
            "5.10.0-32-cloud-amd64",
            "nftables v0.9.8 (E.D.S.)",
            1.0,
        );
        let b = run(
            "trixie-6.12",
            "6.12.48+deb13-cloud-amd64",
            "nftables v1.1.3 (Commodore Bullmoose #4)",
            0.25,
        );
        let failed = [(
            "bookworm-6.1".to_string(),
            "building the image: no such lock".to_string(),
        )];
        insta::assert_snapshot!(markdown(&[&a, &b], &failed));
    }

    #[test]
    fn tables_show_a_column_per_image_ratios_and_skips() {
        let a = run("a", "5.10", "v0.9.8", 1.0);
        let b = run("b", "6.12", "v1.1.3", 0.25);
        let md = markdown(&[&a, &b], &[]);
        assert!(md.contains("| tech | N | a | b | b / a |"), "{md}");
        assert!(
            md.contains("| nftables | 30000 | skipped (projected 41.2 min) | – | – |"),
            "{md}"
        );
        assert!(md.contains("×0.250"), "{md}");
        assert!(!md.contains("Runs that differ"), "{md}");
        let mut c = run("c", "6.1", "v1.0.6", 0.5);
        c.meta.repeats = 5;
        assert!(markdown(&[&a, &c], &[]).contains("c ran another plan than a"));
    }

    #[test]
    fn plots_have_a_line_per_image_and_technology() {
        let a = run("a", "5.10", "v0.9.8", 1.0);
        let b = run("b", "6.12", "v1.1.3", 0.25);
        let figure = figures::lookup("services.add-one");
        let text = svg(&[&a, &b], &figure).unwrap();
        for label in [
            "nftables @ a",
            "nftables @ b",
            "iptables-legacy @ a",
            "iptables-legacy @ b",
        ] {
            assert!(text.contains(label), "{label}");
        }
        // The second image's lines are dashed.
        assert!(text.contains("stroke-dasharray") || text.matches("<polyline").count() > 4);
        let dir = tempfile::tempdir().unwrap();
        write(&[&a, &b], &[], dir.path()).unwrap();
        assert!(dir.path().join("services.add-one.svg").exists());
        assert!(dir.path().join("report.md").exists());
        let none = markdown(&[], &[("x".into(), "gone".into())]);
        assert!(
            none.contains("No image finished") && none.contains("- x: gone"),
            "{none}"
        );
    }
}
