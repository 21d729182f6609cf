//! Charts drawn on the server as SVG: readable without JavaScript, each
//! bar with its value as text and as a tooltip (`<title>`).

use maud::{Markup, html};

const WIDTH: f64 = 400.0;
const BAR: f64 = 22.0;
const GAP: f64 = 8.0;
const LABEL: f64 = 150.0;

/// A horizontal bar chart of `metric`: one bar (class `mark`) per version
/// that has a value; versions without one are listed as such.
pub fn bar_chart(metric: &str, bars: &[(String, Option<f64>)]) -> Markup {
    let values: Vec<f64> = bars.iter().filter_map(|(_, v)| *v).collect();
    let max = values.iter().cloned().fold(0.0_f64, f64::max);
    let min = values.iter().cloned().fold(0.0_f64, f64::min);
    let span = if max - min > 0.0 { max - min } else { 1.0 };
    let plot = WIDTH - LABEL - 60.0;
    let zero = LABEL + (-min / span) * plot;
    let height = bars.len() as f64 * (BAR + GAP) + GAP;
    let summary = bars
        .iter()
        .map(|(l, v)| match v {
            Some(v) => format!("{l}: {v}"),
            None => format!("{l}: no value"),
        })
        .collect::<Vec<_>>()
        .join("; ");
    html! {
        figure.chart {
            figcaption { (metric) }
            svg viewBox={"0 0 " (WIDTH) " " (height)} role="img" aria-label={(metric) ": " (summary)} xmlns="http://www.w3.org/2000/svg" {
                @for (i, (label, value)) in bars.iter().enumerate() {
                    @let y = GAP + i as f64 * (BAR + GAP);
                    text x=(LABEL - 6.0) y=(y + BAR * 0.7) text-anchor="end" font-size="12" fill="#1b1f24" { (shorten(label)) }
                    @if let Some(v) = value {
                        @let end = LABEL + ((v - min) / span) * plot;
                        @let (x, w) = if end >= zero { (zero, (end - zero).max(1.0)) } else { (end, zero - end) };
                        rect.mark x=(x) y=(y) width=(w) height=(BAR) fill="#0b5cad" data-version=(label) data-value=(v) {
                            title { (label) ": " (v) }
                        }
                        text x=(x + w + 4.0) y=(y + BAR * 0.7) font-size="12" fill="#1b1f24" { (format_value(*v)) }
                    } @else {
                        text x=(LABEL) y=(y + BAR * 0.7) font-size="12" fill="#57606a" { "no value" }
                    }
                }
            }
        }
    }
}

fn shorten(label: &str) -> String {
    if label.chars().count() > 22 {
        let s: String = label.chars().take(21).collect();
        format!("{s}…")
    } else {
        label.to_string()
    }
}

fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.4}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// A named line: (step, value) points in step order.
pub type Series = (String, Vec<(f64, f64)>);

/// A line chart of one metric over steps: one polyline (class `series`)
/// per series, its points as marks with tooltips.
pub fn line_chart(metric: &str, series: &[Series]) -> Markup {
    const H: f64 = 220.0;
    const PAD: f64 = 40.0;
    let points: Vec<(f64, f64)> = series.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    let (x0, x1) = bounds(points.iter().map(|p| p.0));
    let (y0, y1) = bounds(points.iter().map(|p| p.1));
    let sx = |x: f64| PAD + (x - x0) / (x1 - x0) * (WIDTH - 2.0 * PAD);
    let sy = |y: f64| H - PAD + -(y - y0) / (y1 - y0) * (H - 2.0 * PAD);
    const COLOURS: [&str; 6] = [
        "#0b5cad", "#b35900", "#1a7f37", "#8250df", "#cf222e", "#57606a",
    ];
    let summary = series
        .iter()
        .map(|(name, p)| match p.last() {
            Some((s, v)) => format!("{name}: {} points, last {v} at step {s}", p.len()),
            None => format!("{name}: no points"),
        })
        .collect::<Vec<_>>()
        .join("; ");
    html! {
        figure.chart {
            figcaption { (metric) }
            svg viewBox={"0 0 " (WIDTH) " " (H)} role="img" aria-label={(metric) " over steps: " (summary)} xmlns="http://www.w3.org/2000/svg" {
                line x1=(PAD) y1=(H - PAD) x2=(WIDTH - PAD) y2=(H - PAD) stroke="#8c959f" {}
                line x1=(PAD) y1=(PAD) x2=(PAD) y2=(H - PAD) stroke="#8c959f" {}
                text x=(PAD) y=(H - PAD + 16.0) font-size="11" fill="#1b1f24" { (format_value(x0)) }
                text x=(WIDTH - PAD) y=(H - PAD + 16.0) font-size="11" text-anchor="end" fill="#1b1f24" { (format_value(x1)) }
                text x=(PAD - 4.0) y=(H - PAD) font-size="11" text-anchor="end" fill="#1b1f24" { (format_value(y0)) }
                text x=(PAD - 4.0) y=(PAD + 4.0) font-size="11" text-anchor="end" fill="#1b1f24" { (format_value(y1)) }
                @for (i, (name, p)) in series.iter().enumerate() {
                    @let colour = COLOURS[i % COLOURS.len()];
                    @let path = p.iter().map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y))).collect::<Vec<_>>().join(" ");
                    polyline.series points=(path) fill="none" stroke=(colour) stroke-width="2" data-series=(name) {}
                    @for (x, y) in p.iter().take(200) {
                        circle.mark cx=(format!("{:.1}", sx(*x))) cy=(format!("{:.1}", sy(*y))) r="2.5" fill=(colour) {
                            title { (name) " step " (format_value(*x)) ": " (format_value(*y)) }
                        }
                    }
                    text x=(WIDTH - PAD) y=(PAD + 12.0 * i as f64) font-size="11" text-anchor="end" fill=(colour) { (shorten(name)) }
                }
            }
        }
    }
}

/// The range of `values`, never empty.
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        (0.0, 1.0)
    } else if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, hi + 0.5)
    }
}
