//! PNG charts for run directories and reports: line charts (loss, learning rate, dev metrics)
//! and annotated heatmaps (confusion matrices). Text uses the system's sans-serif font through
//! fontconfig.
#![deny(missing_docs)]

use std::path::Path;

use plotters::prelude::*;

/// Plotting failed (font, file or drawing backend).
#[derive(Debug, thiserror::Error)]
#[error("{path}: cannot draw chart: {message}")]
pub struct PlotError {
    /// The file being written.
    pub path: String,
    /// The backend's message.
    pub message: String,
}

fn err(path: &Path, e: impl std::fmt::Display) -> PlotError {
    PlotError {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// One named series of `(x, y)` points.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Points in x order.
    pub points: Vec<(f64, f64)>,
}

/// A panel of a line chart: a title, axis labels, and its series.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Title above the panel.
    pub title: String,
    /// X-axis label.
    pub x_label: String,
    /// Y-axis label.
    pub y_label: String,
    /// Curves to draw.
    pub series: Vec<Series>,
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    // A near-constant series still gets a readable range (5 % of its magnitude).
    let min_span = (hi.abs().max(lo.abs()) * 0.05).max(1e-9);
    let (lo, hi) = if hi - lo < min_span {
        let mid = (hi + lo) / 2.0;
        (mid - min_span / 2.0, mid + min_span / 2.0)
    } else {
        (lo, hi)
    };
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

/// Tick labels: integers without `.0`, tiny or huge values in scientific notation.
fn tick(v: &f64) -> String {
    let a = v.abs();
    // Axis steps like -1 + 5·0.2 land a rounding error away from zero.
    if a < 1e-12 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else if a < 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.2}")
    }
}

/// Draws panels side by side (one row) into a PNG.
pub fn line_panels(path: &Path, panels: &[Panel]) -> Result<(), PlotError> {
    let width = 520 * panels.len().max(1) as u32;
    let root = BitMapBackend::new(path, (width, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    for (area, panel) in areas.iter().zip(panels) {
        let (x0, x1) = bounds(
            panel
                .series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.0)),
        );
        let (y0, y1) = bounds(
            panel
                .series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1)),
        );
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| err(path, e))?;
        chart
            .configure_mesh()
            .x_desc(&panel.x_label)
            .y_desc(&panel.y_label)
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .draw()
            .map_err(|e| err(path, e))?;
        for (i, s) in panel.series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(|e| err(path, e))?
                .label(&s.name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(3))
                });
            if s.points.len() <= 30 {
                chart
                    .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(|e| err(path, e))?;
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(path, e))?;
    }
    root.present().map_err(|e| err(path, e))
}

/// One bar of an interval chart: a mean with its confidence interval.
#[derive(Debug, Clone)]
pub struct IntervalBar {
    /// Label under the bar.
    pub name: String,
    /// Bar height.
    pub mean: f64,
    /// Lower end of the interval.
    pub low: f64,
    /// Upper end of the interval.
    pub high: f64,
}

/// Panels of bars with interval whiskers, side by side (e.g. one panel per metric, one bar per
/// method), into a PNG.
pub fn interval_bars(path: &Path, panels: &[(String, Vec<IntervalBar>)]) -> Result<(), PlotError> {
    let bars_max = panels.iter().map(|(_, b)| b.len()).max().unwrap_or(1) as u32;
    let panel_width = (95 * bars_max).max(420);
    let width = panel_width * panels.len().max(1) as u32;
    let root = BitMapBackend::new(path, (width, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    for (area, (title, bars)) in areas.iter().zip(panels) {
        let (y0, y1) = bounds(
            bars.iter()
                .flat_map(|b| [b.low, b.high, b.mean])
                .chain(std::iter::once(0.0)),
        );
        let names: Vec<String> = bars.iter().map(|b| b.name.clone()).collect();
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..(bars.len() as f64 - 0.5), y0..y1)
            .map_err(|e| err(path, e))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(bars.len().max(1))
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    names.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_label_style(("sans-serif", 12).into_font())
            .y_label_formatter(&tick)
            .draw()
            .map_err(|e| err(path, e))?;
        for (i, b) in bars.iter().enumerate() {
            let x = i as f64;
            let colour = Palette99::pick(i).to_rgba();
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x - 0.35, 0.0), (x + 0.35, b.mean)],
                    colour.mix(0.7).filled(),
                )))
                .map_err(|e| err(path, e))?;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, b.low), (x, b.high)],
                    BLACK.stroke_width(2),
                )))
                .map_err(|e| err(path, e))?;
            for y in [b.low, b.high] {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(x - 0.12, y), (x + 0.12, y)],
                        BLACK.stroke_width(2),
                    )))
                    .map_err(|e| err(path, e))?;
            }
        }
    }
    root.present().map_err(|e| err(path, e))
}

/// Draws a confusion matrix (rows: true label, columns: predicted), shaded by row-normalised
/// share and annotated with counts.
pub fn confusion_matrix(
    path: &Path,
    labels: &[String],
    counts: &[Vec<usize>],
    title: &str,
) -> Result<(), PlotError> {
    let k = labels.len();
    let cell = if k <= 10 {
        60
    } else {
        (900 / k.max(1)).max(10)
    } as u32;
    let margin = 160u32;
    let size = (margin + cell * k as u32 + 40, margin + cell * k as u32 + 40);
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(margin - 40)
        .y_label_area_size(margin - 40)
        .build_cartesian_2d(0..k, 0..k)
        .map_err(|e| err(path, e))?;
    let show_names = k <= 30;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(k)
        .y_labels(k)
        .x_desc("predicted")
        .y_desc("true")
        .x_label_formatter(&|i| {
            if show_names {
                labels.get(*i).cloned().unwrap_or_default()
            } else {
                i.to_string()
            }
        })
        .y_label_formatter(&|i| {
            let row = k.saturating_sub(1).saturating_sub(*i);
            if show_names {
                labels.get(row).cloned().unwrap_or_default()
            } else {
                row.to_string()
            }
        })
        .x_label_style(
            ("sans-serif", 12)
                .into_font()
                .transform(FontTransform::Rotate90),
        )
        .draw()
        .map_err(|e| err(path, e))?;
    for (row, line) in counts.iter().enumerate() {
        let total: usize = line.iter().sum::<usize>().max(1);
        for (col, &n) in line.iter().enumerate() {
            let share = n as f64 / total as f64;
            let y = k - 1 - row;
            let shade = RGBColor(
                (255.0 - 200.0 * share) as u8,
                (255.0 - 140.0 * share) as u8,
                255,
            );
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(col, y), (col + 1, y + 1)],
                    shade.filled(),
                )))
                .map_err(|e| err(path, e))?;
            if k <= 20 {
                let color = if share > 0.6 { WHITE } else { BLACK };
                chart
                    .draw_series(std::iter::once(Text::new(
                        n.to_string(),
                        (col, y + 1),
                        ("sans-serif", 14).into_font().color(&color),
                    )))
                    .map_err(|e| err(path, e))?;
            }
        }
    }
    root.present().map_err(|e| err(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_png(path: &Path) -> bool {
        std::fs::read(path)
            .map(|b| b.starts_with(b"\x89PNG"))
            .unwrap_or(false)
    }

    #[test]
    fn tick_labels_are_readable() {
        assert_eq!(tick(&50.0), "50");
        assert_eq!(tick(&2e-5), "2.0e-5");
        assert_eq!(tick(&0.8245), "0.825");
        assert_eq!(tick(&0.0), "0");
    }

    #[test]
    fn draws_line_panels_and_confusion_matrix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("curves.png");
        let panel = Panel {
            title: "loss".into(),
            x_label: "step".into(),
            y_label: "loss".into(),
            series: vec![Series {
                name: "train".into(),
                points: (0..50)
                    .map(|i| (i as f64, 1.0 / (1.0 + i as f64)))
                    .collect(),
            }],
        };
        line_panels(&p, &[panel.clone(), panel]).unwrap();
        assert!(is_png(&p));
        let p = dir.path().join("cm.png");
        confusion_matrix(
            &p,
            &["neg".into(), "pos".into()],
            &[vec![5, 1], vec![2, 7]],
            "dev",
        )
        .unwrap();
        assert!(is_png(&p));
    }
}
