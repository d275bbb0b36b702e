//! SVG figures of the experiment reports (plotters' SVG backend needs no system fonts).

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use std::path::Path;

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Value range with a margin, never empty.
fn padded(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
    let span = (hi - lo).max(1e-3);
    (lo - 0.1 * span, hi + 0.1 * span)
}

/// Writes the SVG through a temporary file renamed into place.
fn write_svg(path: &Path, draw: impl FnOnce(&mut String) -> Result<()>) -> Result<()> {
    let mut svg = String::new();
    draw(&mut svg)?;
    dmsrec_data::atomic::write_bytes_atomic(path, svg.as_bytes())?;
    Ok(())
}

/// One line per series over a numeric x axis.
pub fn lines(path: &Path, title: &str, x_label: &str, series: &[(&str, &[(f64, f64)])]) -> Result<()> {
    let points = || series.iter().flat_map(|(_, s)| s.iter());
    let (x0, x1) = padded(points().map(|p| p.0));
    let (y0, y1) = padded(points().map(|p| p.1));
    write_svg(path, |svg| {
        let root = SVGBackend::with_string(svg, (640, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc("test MRR@20 (×100)")
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        for (i, (name, s)) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(s.iter().copied(), color.stroke_width(2)))
                .map_err(|e| anyhow!("{e}"))?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
            chart
                .draw_series(s.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(|e| anyhow!("{e}"))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE)
            .border_style(BLACK)
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        root.present().map_err(|e| anyhow!("{e}"))?;
        Ok(())
    })
}

/// Bars of two series side by side for each category.
pub fn grouped_bars(path: &Path, title: &str, bars: &[(String, [f64; 2])], series: [&str; 2]) -> Result<()> {
    let (_, y1) = padded(bars.iter().flat_map(|(_, v)| v.iter().copied()));
    let n = bars.len() as f64;
    write_svg(path, |svg| {
        let root = SVGBackend::with_string(svg, (640, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..n, 0.0..y1)
            .map_err(|e| anyhow!("{e}"))?;
        let names: Vec<String> = bars.iter().map(|(c, _)| c.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(bars.len() * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - x.floor() - 0.5).abs() < 1e-9 && i < names.len() {
                    names[i].clone()
                } else {
                    String::new()
                }
            })
            .y_desc("test MRR@20 (×100)")
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        for (s, name) in series.iter().enumerate() {
            let color = PALETTE[s];
            chart
                .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
                    let left = i as f64 + 0.1 + 0.4 * s as f64;
                    Rectangle::new([(left, 0.0), (left + 0.4, v[s])], color.filled())
                }))
                .map_err(|e| anyhow!("{e}"))?
                .label(*name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE)
            .border_style(BLACK)
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        root.present().map_err(|e| anyhow!("{e}"))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_svg_files_with_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let line = dir.path().join("l.svg");
        lines(
            &line,
            "σ sweep",
            "σ",
            &[("paper", &[(0.0, 1.0), (0.5, 2.0)]), ("valid", &[(0.0, 0.5), (0.5, 1.5)])],
        )
        .unwrap();
        let text = std::fs::read_to_string(&line).unwrap();
        assert!(text.starts_with("<svg") && text.contains("σ sweep") && text.contains("valid"));
        let bars = dir.path().join("b.svg");
        grouped_bars(
            &bars,
            "align",
            &[("kl".into(), [1.0, 2.0]), ("infonce".into(), [0.5, 0.7])],
            ["paper", "valid"],
        )
        .unwrap();
        let text = std::fs::read_to_string(&bars).unwrap();
        assert!(text.contains("infonce") && text.matches("<rect").count() >= 4);
    }
}
