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
