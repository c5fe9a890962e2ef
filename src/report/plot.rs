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
    let series = medians(results, figure.id);
    let all: Vec<(f64, f64)> = series.values().flatten().copied().collect();
    if all.is_empty() {
        return Err(format!("no samples of {}", figure.id));
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
            .caption(
                format!("{} ({})", figure.title, figure.unit),
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70);
        let x = (0.5f64..x_max).log_scale();
        if y_min > 0.0 {
            let mut chart = builder
                .build_cartesian_2d(x, (y_min / 2.0..y_max * 2.0).log_scale())
                .map_err(|e| e.to_string())?;
            draw(&mut chart, &series, figure)?;
        } else {
            // Zero values (e.g. 0 % loss) cannot go on a log axis.
            let mut chart = builder
                .build_cartesian_2d(x, y_min.min(0.0)..(y_max * 1.2).max(1.0))
                .map_err(|e| e.to_string())?;
            draw(&mut chart, &series, figure)?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(text)
}

fn draw<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    series: &BTreeMap<String, Vec<(f64, f64)>>,
    figure: &Figure,
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
        .y_desc(figure.unit)
        .draw()
        .map_err(|e| e.to_string())?;
    for (tech, points) in series {
        let c = colour(tech);
        chart
            .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(tech.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled())))
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())
}
