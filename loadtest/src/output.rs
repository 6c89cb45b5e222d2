//! Report files: `--hdr` and `--plot` of a run, and the `plot` command over several `.hdr` files.

use std::path::Path;

use crate::cli::{PlotArgs, RunArgs};
use crate::hdr;
use crate::plot::{self, Series};
use crate::report::Summary;

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
}

pub fn write_files(run: &RunArgs, s: &Summary) -> Result<(), String> {
    let text = hdr::format(&s.latency);
    if let Some(path) = &run.hdr {
        write(path, &text)?;
    }
    if let Some(path) = &run.plot {
        if s.latency.is_empty() {
            return Err(format!(
                "no latency samples to plot into {}",
                path.display()
            ));
        }
        let series = [Series {
            label: s.label.clone(),
            points: hdr::parse(&text)?,
        }];
        let title = format!("{} latency, {}", s.scenario, s.label);
        write(path, &plot::render(path, &title, &series))?;
    }
    Ok(())
}

pub fn plot_files(a: &PlotArgs) -> Result<(), String> {
    let mut series = Vec::new();
    for run in &a.runs {
        let (label, file) = match run.split_once('=') {
            Some((l, f)) => (l.to_string(), f),
            None => {
                let stem = Path::new(run).file_stem().and_then(|s| s.to_str());
                (stem.unwrap_or(run).to_string(), run.as_str())
            }
        };
        let text = std::fs::read_to_string(file).map_err(|e| format!("read {file}: {e}"))?;
        let points = hdr::parse(&text).map_err(|e| format!("{file}: {e}"))?;
        series.push(Series { label, points });
    }
    write(&a.out, &plot::render(&a.out, &a.title, &series))
}
