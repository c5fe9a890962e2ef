//! One SVG per figure: value vs N per technology, log-log where the data
//! allow (N = 0 has no logarithm and is drawn at N = 1).

use crate::measure::figures::Figure;
use crate::measure::stats;
use crate::results::Results;
use plotters::prelude::*;
use std::collections::BTreeMap;

/// Fixed palette so a technology keeps its colour across plots.
fn colour(tech: &str) -> RGBColor {
    match tech {
        "iptables-legacy" => RGBColor(214, 39, 40),
        "iptables-nft" => RGBColor(255, 127, 14),
        "nftables" => RGBColor(31, 119, 180),
        "nftables-linear" => RGBColor(148, 103, 189),
        "nftables-no-anon-maps" => RGBColor(140, 86, 75),
        "ipvs" => RGBColor(44, 160, 44),
        "ebpf" => RGBColor(23, 190, 207),
        _ => RGBColor(90, 90, 90),
    }
}

/// Median per (tech, N) of one figure over every update position, N = 0
/// mapped to 1 for the log axis.
pub fn medians(results: &Results, figure: &str) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut pooled: BTreeMap<(String, u64), Vec<f64>> = BTreeMap::new();
    for s in results.samples.iter().filter(|s| s.figure == figure) {
        pooled
            .entry((s.tech.clone(), s.n))
            .or_default()
            .push(s.value);
    }
    let mut out: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for ((tech, n), values) in pooled {
        out.entry(tech)
            .or_default()
            .push(((n as f64).max(1.0), stats::median(&values)));
    }
    out
}

pub fn svg(results: &Results, figure: &Figure) -> Result<String, String> {
    let lines: Vec<Line> = medians(results, figure.id)
        .into_iter()
        .map(|(tech, points)| Line {
            label: tech.clone(),
            tech,
            style: 0,
            points,
        })
        .collect();
    if lines.is_empty() {
        return Err(format!("no samples of {}", figure.id));
    }
    svg_lines(
        &format!("{} ({})", figure.title, figure.unit),
        figure.unit,
        &lines,
    )
}

/// One line of a plot: a technology's colour, drawn solid (style 0),
/// dashed (1) or dotted (2 and on) — the side-by-side report draws one
/// style per image.
pub struct Line {
    pub label: String,
    pub tech: String,
    pub style: usize,
    pub points: Vec<(f64, f64)>,
}

/// Value vs N for every line, log-log where the values allow.
pub fn svg_lines(caption: &str, unit: &str, lines: &[Line]) -> Result<String, String> {
    let all: Vec<(f64, f64)> = lines
        .iter()
        .flat_map(|l| l.points.iter().copied())
        .collect();
    if all.is_empty() {
        return Err(format!("nothing to plot for {caption}"));
    }
    let x_max = all.iter().map(|p| p.0).fold(1.0, f64::max) * 2.0;
    let y_min = all.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let y_max = all.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (760, 460)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(caption, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70);
        let x = (0.5f64..x_max).log_scale();
        if y_min > 0.0 {
            let mut chart = builder
                .build_cartesian_2d(x, (y_min / 2.0..y_max * 2.0).log_scale())
                .map_err(|e| e.to_string())?;
            draw(&mut chart, lines, unit)?;
        } else {
            // Zero values (e.g. 0 % loss) cannot go on a log axis.
            let mut chart = builder
                .build_cartesian_2d(x, y_min.min(0.0)..(y_max * 1.2).max(1.0))
                .map_err(|e| e.to_string())?;
            draw(&mut chart, lines, unit)?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(text)
}

fn draw<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    lines: &[Line],
    unit: &str,
) -> Result<(), String>
where
    X: plotters::coord::ranged1d::Ranged<ValueType = f64>
        + plotters::coord::ranged1d::ValueFormatter<f64>,
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>
        + plotters::coord::ranged1d::ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc("N (N = 0 drawn at 1)")
        .y_desc(unit)
        .draw()
        .map_err(|e| e.to_string())?;
    for line in lines {
        let c = colour(&line.tech);
        let style = c.stroke_width(2);
        let points = line.points.iter().copied();
        let drawn = match line.style {
            0 => chart.draw_series(LineSeries::new(points, style)),
            1 => chart.draw_series(DashedLineSeries::new(points, 8, 5, style)),
            _ => chart.draw_series(DashedLineSeries::new(points, 2, 4, style)),
        };
        let dash = line.style;
        drawn
            .map_err(|e| e.to_string())?
            .label(line.label.as_str())
            .legend(move |(x, y)| {
                // Two strokes with the line's gap between them.
                let (a, b) = match dash {
                    0 => (9, 9),
                    1 => (7, 11),
                    _ => (3, 7),
                };
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (a, 0)], c.stroke_width(2))
                    + PathElement::new(vec![(b, 0), (18, 0)], c.stroke_width(2))
            });
        chart
            .draw_series(line.points.iter().map(|&p| Circle::new(p, 3, c.filled())))
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())
}
