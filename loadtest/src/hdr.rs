//! HdrHistogram's percentile-distribution text format (as Java's
//! `outputPercentileDistribution(out, 5, 1e6)`: nanoseconds written as milliseconds), which the
//! HdrHistogram plotter and wrk2 tooling read; and a parser for it, used by `plot`.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

/// Quantile iteration steps per halving of the distance to 100%, as the Java default.
const TICKS_PER_HALF: u32 = 5;
/// Nanoseconds -> milliseconds.
const SCALE: f64 = 1e6;

pub fn format(h: &Histogram<u64>) -> String {
    let digits = h.sigfig() as usize;
    let mut s = format!(
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(TICKS_PER_HALF) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / SCALE;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    s,
                    "{value:12.digits$} {q:2.12} {total:10} {:14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(s, "{value:12.digits$} {q:2.12} {total:10}");
            }
        }
    }
    let (mean, sd, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (h.mean() / SCALE, h.stdev() / SCALE, h.max() as f64 / SCALE)
    };
    let sub_buckets = (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two();
    let _ = writeln!(
        s,
        "#[Mean    = {mean:12.digits$}, StdDeviation   = {sd:12.digits$}]"
    );
    let _ = writeln!(
        s,
        "#[Max     = {max:12.digits$}, Total count    = {:12}]",
        h.len()
    );
    let _ = writeln!(
        s,
        "#[Buckets = {:12}, SubBuckets     = {sub_buckets:12}]",
        h.buckets()
    );
    s
}

/// One line of a percentile distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// In the file's unit (milliseconds for ours).
    pub value: f64,
    /// 0.0 ..= 1.0
    pub quantile: f64,
    pub total_count: u64,
}

/// Reads the data lines of a percentile distribution; headers and `#` lines are skipped.
pub fn parse(text: &str) -> Result<Vec<Point>, String> {
    let mut points = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("Value") {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 {
            return Err(format!("line {}: expected 3 or 4 columns: {line}", n + 1));
        }
        let bad = |what: &str| format!("line {}: bad {what}: {line}", n + 1);
        let value: f64 = f[0].parse().map_err(|_| bad("value"))?;
        let quantile: f64 = f[1].parse().map_err(|_| bad("percentile"))?;
        let total_count: u64 = f[2].parse().map_err(|_| bad("count"))?;
        if !(0.0..=1.0).contains(&quantile) {
            return Err(bad("percentile (not in 0..1)"));
        }
        points.push(Point {
            value,
            quantile,
            total_count,
        });
    }
    if points.is_empty() {
        return Err("no percentile lines".into());
    }
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscriber::new_histogram;

    #[test]
    fn round_trip() {
        let mut h = new_histogram();
        for i in 1..=10_000u64 {
            h.record(i * 1000).unwrap(); // 1 µs .. 10 ms
        }
        let text = format(&h);
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
        // Max is the top of its bucket: 10 ms within 3 significant digits.
        assert!(text.contains("#[Max     =       10.0"), "{text}");
        assert!(text.contains(", Total count    =        10000]"), "{text}");
        let points = parse(&text).unwrap();
        let last = points.last().unwrap();
        assert_eq!((last.quantile, last.total_count), (1.0, 10_000));
        let median = points.iter().find(|p| p.quantile >= 0.5).unwrap();
        assert!((median.value - 5.0).abs() < 0.01, "{median:?}");
        assert!(points.windows(2).all(|w| w[0].quantile <= w[1].quantile));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse("hello world\n").is_err());
        assert!(parse("").is_err());
    }
}
