//! The report files: `--hdr` in HdrHistogram's percentile format, `--plot` SVG, `plot` over
//! several runs.

mod common;

use common::{load, load_json, num, start_broker};

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ringmq-load-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// (value, percentile, total count) of each data line; panics on anything malformed.
fn parse_hdr(text: &str) -> Vec<(f64, f64, u64)> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
    );
    let mut rows = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert!(f.len() == 4 || f.len() == 3, "bad line {line:?}");
        rows.push((
            f[0].parse().unwrap(),
            f[1].parse().unwrap(),
            f[2].parse().unwrap(),
        ));
    }
    assert!(
        text.contains("#[Mean    =") && text.contains("#[Buckets ="),
        "footer:\n{text}"
    );
    rows
}

#[test]
fn hdr_and_plot_files() {
    let b = start_broker();
    let (hdr, svg) = (tmp("run.hdr"), tmp("run.svg"));
    let j = load_json(
        b.port,
        &[
            "fanin",
            "--pairs",
            "1",
            "--qos",
            "1",
            "--rate",
            "2000",
            "--duration",
            "1",
            "--hdr",
            hdr.to_str().unwrap(),
            "--plot",
            svg.to_str().unwrap(),
            "--label",
            "ringmq",
        ],
    );
    let rows = parse_hdr(&std::fs::read_to_string(&hdr).unwrap());
    let last = rows.last().unwrap();
    assert_eq!(last.1, 1.0, "ends at the 100th percentile");
    assert_eq!(
        last.2 as f64,
        num(&j, "received"),
        "one sample per delivery"
    );
    assert!(rows
        .windows(2)
        .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
    let p50_ms = rows.iter().find(|r| r.1 >= 0.5).unwrap().0;
    let json_p50_ms = num(&j, "p50") / 1000.0;
    assert!(
        (p50_ms - json_p50_ms).abs() <= json_p50_ms * 0.01 + 0.001,
        "{p50_ms} vs {j}"
    );

    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(svg_text.starts_with("<svg") && svg_text.trim_end().ends_with("</svg>"));
    assert!(svg_text.contains("<polyline") && svg_text.contains(">ringmq<"));

    // Two runs on one chart, as HTML.
    let html = tmp("both.html");
    let out = std::process::Command::new(common::LOAD)
        .args(["plot", "--out", html.to_str().unwrap()])
        .arg(format!("a={}", hdr.display()))
        .arg(format!("b={}", hdr.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html_text = std::fs::read_to_string(&html).unwrap();
    assert!(html_text.starts_with("<!DOCTYPE html>"));
    assert_eq!(html_text.matches("<polyline").count(), 2);
}

#[test]
fn text_summary_and_progress() {
    let b = start_broker();
    let out = load(b.port, &["fanin", "--pairs", "1", "--duration", "2"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for row in [
        "sent",
        "received",
        "delivered",
        "lost",
        "duplicates",
        "latency",
    ] {
        assert!(text.contains(row), "no {row} row in:\n{text}");
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let lines = err.lines().filter(|l| l.contains("s] sent")).count();
    assert!(lines >= 1, "a progress line each second:\n{err}");
}
