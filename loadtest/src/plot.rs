//! Latency percentile curves as a standalone SVG (or HTML around it): x is the percentile on a
//! log axis of 1/(1-p), y is the latency on a log axis, one curve per run — the usual
//! HdrHistogram chart, readable without any tool.

use std::fmt::Write as _;
use std::path::Path;

use crate::hdr::Point;

const W: f64 = 900.0;
const H: f64 = 540.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 210.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 8] = [
    "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

pub struct Series {
    pub label: String,
    pub points: Vec<Point>,
}

/// Where a percentile goes on the x axis: log10 of 1/(1-q), capped for q = 1.
fn x_of(q: f64, cap: f64) -> f64 {
    if q >= 1.0 {
        cap
    } else {
        (1.0 / (1.0 - q)).log10().min(cap)
    }
}

pub fn svg(title: &str, series: &[Series]) -> String {
    // Axis ranges: whole decades around the data.
    let finite_x = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|p| p.quantile < 1.0)
        .map(|p| (1.0 / (1.0 - p.quantile)).log10())
        .fold(2.0f64, f64::max);
    let x_max = finite_x.ceil().clamp(2.0, 7.0);
    let values = series
        .iter()
        .flat_map(|s| s.points.iter())
        .map(|p| p.value)
        .filter(|v| *v > 0.0);
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (y_min, y_max) = if lo <= hi {
        (
            lo.log10().floor(),
            hi.log10().ceil().max(lo.log10().floor() + 1.0),
        )
    } else {
        (-3.0, 3.0)
    };
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let px = |x: f64| LEFT + x / x_max * pw;
    let py = |v: f64| {
        let l = v.max(10f64.powf(y_min)).log10();
        TOP + ph - (l - y_min) / (y_max - y_min) * ph
    };

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="28" font-size="16" text-anchor="middle">{}</text>"#,
        LEFT + pw / 2.0,
        escape(title)
    );
    // Grid and ticks.
    for d in 0..=(x_max as i32) {
        let x = px(f64::from(d));
        let label = match d {
            0 => "0%".to_string(),
            1 => "90%".to_string(),
            _ => format!("{:.*}%", (d - 2) as usize, 100.0 - 100.0 / 10f64.powi(d)),
        };
        let _ = writeln!(
            s,
            r##"<line x1="{x}" y1="{TOP}" x2="{x}" y2="{}" stroke="#ddd"/><text x="{x}" y="{}" text-anchor="middle">{label}</text>"##,
            TOP + ph,
            TOP + ph + 18.0
        );
    }
    for d in (y_min as i32)..=(y_max as i32) {
        let y = py(10f64.powi(d));
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            y + 4.0,
            fmt_ms(10f64.powi(d))
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text>"#,
        LEFT + pw / 2.0,
        H - 18.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(20 {}) rotate(-90)" text-anchor="middle">latency (ms, log)</text>"#,
        TOP + ph / 2.0
    );
    // Curves and legend.
    for (i, run) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<String> = run
            .points
            .iter()
            .map(|p| format!("{:.1},{:.1}", px(x_of(p.quantile, x_max)), py(p.value)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        );
        let ly = TOP + 10.0 + 20.0 * i as f64;
        let lx = LEFT + pw + 15.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            lx + 20.0,
            lx + 26.0,
            ly + 4.0,
            escape(&run.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// The chart as SVG, or as an HTML page holding it when `path` ends in `.html`/`.htm`.
pub fn render(path: &Path, title: &str, series: &[Series]) -> String {
    let svg = svg(title, series);
    match path.extension().and_then(|e| e.to_str()) {
        Some("html" | "htm") => format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head>\n<body>\n{svg}</body></html>\n",
            escape(title)
        ),
        _ => svg,
    }
}

fn fmt_ms(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_every_series() {
        let pts = |v: f64| {
            vec![
                Point {
                    value: v,
                    quantile: 0.0,
                    total_count: 1,
                },
                Point {
                    value: v * 2.0,
                    quantile: 0.99,
                    total_count: 99,
                },
                Point {
                    value: v * 5.0,
                    quantile: 1.0,
                    total_count: 100,
                },
            ]
        };
        let series = [
            Series {
                label: "a<b".into(),
                points: pts(0.1),
            },
            Series {
                label: "c".into(),
                points: pts(10.0),
            },
        ];
        let s = svg("t", &series);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"));
        assert_eq!(s.matches("<polyline").count(), 2);
        assert!(s.contains("a&lt;b") && s.contains(">99%<"));
    }
}
