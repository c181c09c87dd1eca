//! The report's charts as PNG: plotters draws into an RGB buffer with a bundled font (no
//! system fontconfig), and the `image` crate encodes it.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::experiment::{write_atomic, ExperimentError};

/// DejaVu Sans (Bitstream Vera licence, see DejaVuSans.LICENSE), compiled in.
const FONT: &[u8] = include_bytes!("DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // A bundled, known-good font: failure here is a build defect, not bad input.
        plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
            .unwrap_or_else(|_| panic!("bundled DejaVuSans.ttf is not a valid font"));
    });
}

/// Colours for up to six series (Okabe-Ito, readable by colour-blind readers).
pub const PALETTE: [RGBColor; 6] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
];

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Renders `draw` on a `w x h` canvas and writes it as PNG to `path`, atomically.
fn render(
    path: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> DrawResult,
) -> Result<(), ExperimentError> {
    register_font();
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_error(path, e))?;
        draw(root.clone()).map_err(|e| plot_error(path, e))?;
        root.present().map_err(|e| plot_error(path, e))?;
    }
    let image = image::RgbImage::from_raw(w, h, buf).expect("buffer is w x h x 3");
    let mut png = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| plot_error(path, e))?;
    write_atomic(path, png.get_ref())
}

fn plot_error(path: &Path, e: impl std::fmt::Display) -> ExperimentError {
    ExperimentError::Io {
        path: path.to_path_buf(),
        error: std::io::Error::other(format!("drawing the chart: {e}")),
    }
}

/// The label of category axis position `x` (categories sit at 0, 1, 2, ...).
fn category_label(labels: &[String], x: f64) -> String {
    let i = x.round();
    if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
        labels[i as usize].clone()
    } else {
        String::new()
    }
}

/// The series legend, boxed on a translucent white background.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
    size: u32,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FAMILY, size))
        .position(position)
        .draw()?;
    Ok(())
}

/// One line of a line chart: y at each x index (None = no point there).
pub struct Line {
    pub label: String,
    pub colour: usize,
    pub points: Vec<Option<f64>>,
    /// Markers only, no connecting line (published points).
    pub markers_only: bool,
}

/// Fig 5: mean AUC against the anomaly ratio, x as categories (`x_labels`).
pub fn line_chart(
    path: &Path,
    title: &str,
    x_labels: &[String],
    x_desc: &str,
    lines: &[Line],
) -> Result<(), ExperimentError> {
    let values: Vec<f64> = lines
        .iter()
        .flat_map(|l| l.points.iter().flatten().copied())
        .collect();
    let lo = values.iter().copied().fold(1.0f64, f64::min);
    let y0 = ((lo - 0.02) * 20.0).floor() / 20.0;
    let n = x_labels.len();
    render(path, (900, 560), |root| {
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FAMILY, 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), y0.min(0.95)..1.0f64)?;
        let fmt = |x: &f64| category_label(x_labels, *x);
        chart
            .configure_mesh()
            .x_labels(n)
            .x_label_formatter(&fmt)
            .x_desc(x_desc)
            .y_desc("mean ROC AUC")
            .label_style((FAMILY, 15))
            .draw()?;
        for line in lines {
            let colour = PALETTE[line.colour % PALETTE.len()];
            let pts: Vec<(f64, f64)> = line
                .points
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| (i as f64, v)))
                .collect();
            if line.markers_only {
                chart
                    .draw_series(
                        pts.iter()
                            .map(|&p| TriangleMarker::new(p, 9, colour.filled())),
                    )?
                    .label(line.label.clone())
                    .legend(move |(x, y)| TriangleMarker::new((x + 10, y), 7, colour.filled()));
            } else {
                chart
                    .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2)))?
                    .label(line.label.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                    });
                chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, colour.filled())))?;
            }
        }
        legend(&mut chart, SeriesLabelPosition::LowerLeft, 15)?;
        Ok(())
    })
}

/// One group of points of a scatter panel.
pub struct Points {
    pub label: String,
    pub colour: usize,
    pub xy: Vec<(f64, f64)>,
}

/// Fig 6: side-by-side scatter panels, each a title and its groups (drawn in order).
pub fn scatter_panels(
    path: &Path,
    panels: &[(String, Vec<Points>)],
) -> Result<(), ExperimentError> {
    let w = 560 * panels.len() as u32;
    render(path, (w.max(560), 540), |root| {
        let areas = root.split_evenly((1, panels.len().max(1)));
        for (area, (title, groups)) in areas.iter().zip(panels) {
            let all: Vec<(f64, f64)> = groups.iter().flat_map(|g| g.xy.iter().copied()).collect();
            let (x0, x1) = range(all.iter().map(|p| p.0));
            let (y0, y1) = range(all.iter().map(|p| p.1));
            let mut chart = ChartBuilder::on(area)
                .caption(title.as_str(), (FAMILY, 19))
                .margin(14)
                .x_label_area_size(34)
                .y_label_area_size(48)
                .build_cartesian_2d(x0..x1, y0..y1)?;
            chart
                .configure_mesh()
                .label_style((FAMILY, 13))
                .x_labels(6)
                .y_labels(6)
                .draw()?;
            for g in groups {
                let colour = PALETTE[g.colour % PALETTE.len()];
                chart
                    .draw_series(
                        g.xy.iter()
                            .map(|&p| Circle::new(p, 2, colour.mix(0.55).filled())),
                    )?
                    .label(format!("{} ({})", g.label, g.xy.len()))
                    .legend(move |(x, y)| Circle::new((x + 8, y), 5, colour.filled()));
            }
            legend(&mut chart, SeriesLabelPosition::UpperRight, 14)?;
        }
        Ok(())
    })
}

/// Padded min..max of finite values (a unit range when there are none).
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-6);
    (lo - pad, hi + pad)
}

/// Fig 7: panels of grouped bars; `groups` name the x positions, each series has one value
/// per group.
pub struct BarPanel {
    pub title: String,
    pub groups: Vec<String>,
    pub series: Vec<(String, Vec<Option<f64>>)>,
}

pub fn grouped_bars(path: &Path, panels: &[BarPanel]) -> Result<(), ExperimentError> {
    let h = 440 * panels.len() as u32;
    render(path, (1000, h.max(440)), |root| {
        let areas = root.split_evenly((panels.len().max(1), 1));
        for (area, panel) in areas.iter().zip(panels) {
            let values: Vec<f64> = panel
                .series
                .iter()
                .flat_map(|(_, v)| v.iter().flatten().copied())
                .collect();
            let lo = values.iter().copied().fold(1.0f64, f64::min);
            let y0 = (((lo - 0.05) * 10.0).floor() / 10.0).clamp(0.0, 0.9);
            // Series without a value in this panel (a reducer one dataset did not run) get
            // neither bars nor a legend entry.
            let series: Vec<_> = panel
                .series
                .iter()
                .filter(|(_, v)| v.iter().any(Option::is_some))
                .collect();
            let n = panel.groups.len();
            let k = series.len().max(1);
            // Headroom above 1.0 for the legend (~20 px per entry + 20 of a ~356 px plot), so
            // it never covers a bar.
            let room = ((k as f64 * 20.0 + 20.0) / 356.0).min(0.6);
            let top = (1.0 - room * y0) / (1.0 - room);
            let mut chart = ChartBuilder::on(area)
                .caption(panel.title.as_str(), (FAMILY, 20))
                .margin(14)
                .x_label_area_size(36)
                .y_label_area_size(56)
                .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), y0..top)?;
            let fmt = |x: &f64| category_label(&panel.groups, *x);
            chart
                .configure_mesh()
                .x_labels(n)
                .x_label_formatter(&fmt)
                .disable_x_mesh()
                .y_label_formatter(&|y: &f64| {
                    if *y <= 1.0 + 1e-9 {
                        format!("{y:.1}")
                    } else {
                        String::new()
                    }
                })
                .y_desc("mean ROC AUC")
                .label_style((FAMILY, 14))
                .draw()?;
            let width = 0.8 / k as f64;
            for (s, (label, vals)) in series.iter().enumerate() {
                let colour = PALETTE
                    [panel.series.iter().position(|x| x.0 == *label).unwrap_or(s) % PALETTE.len()];
                chart
                    .draw_series(vals.iter().enumerate().filter_map(|(g, v)| {
                        v.map(|v| {
                            let x0 = g as f64 - 0.4 + s as f64 * width;
                            Rectangle::new([(x0, y0), (x0 + width * 0.92, v)], colour.filled())
                        })
                    }))?
                    .label(label.clone())
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.filled())
                    });
            }
            legend(&mut chart, SeriesLabelPosition::UpperRight, 14)?;
        }
        Ok(())
    })
}
