//! `eidn score`: image files scored by a saved encoder, with a verdict at the threshold that
//! `train` calibrated (or one given). Images are decoded and preprocessed as the model's
//! training data was (its channels and size, pixels / 255), in chunks, on all cores.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use comfy_table::{presets, Table};
use eidn::backbone::weights;
use eidn::data::images::{decode_many, list_images, IMAGE_EXTENSIONS};
use eidn::data::ImageSet;
use eidn::model::{parse_device, CalibrationSource};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{ScoreArgs, ScoreFormat};
use crate::saved::{Saved, Weights};

/// Images decoded and scored at a time.
const CHUNK: usize = 1024;

/// One scored image.
#[derive(serde::Serialize)]
struct Row {
    path: String,
    score: f64,
    /// The percentage of the model's calibration images (normal ones) scoring below this
    /// image: how unusual it is among normal images. None without a calibration.
    percentile: Option<f64>,
    /// "anomaly", "normal", or "unknown" without a threshold.
    verdict: &'static str,
}

pub fn score(args: &ScoreArgs, data_dir: &Path, mirror: Option<&str>) -> Result<ExitCode> {
    let device = parse_device(&args.device)?;
    let models_dir = weights::models_dir(data_dir);
    let at = Weights {
        models_dir: &models_dir,
        mirror,
        progress: !args.quiet,
    };
    let model = Saved::load(&args.model, &device, &at)?;
    let calibration = model.calibration();
    if let Some(c) = calibration.filter(|c| c.source == CalibrationSource::Training) {
        eprintln!(
            "warning: {}: the threshold was calibrated on the training images ({} scores), which \
             the model was fitted on: expect more than --fpr {} of new normal images flagged; \
             retrain with a held-out share (train --calibration-share)",
            args.model.display(),
            c.scores.len(),
            args.fpr.unwrap_or(c.fpr)
        );
    }
    let threshold = match (args.threshold, args.fpr, calibration) {
        (Some(t), _, _) => Some(t),
        (None, Some(fpr), Some(c)) => Some(c.threshold_at(fpr)?),
        (None, Some(_), None) => bail!(
            "{}: the model records no calibration (trained by the grid or an older eidn), so \
             --fpr cannot be applied; pass --threshold",
            args.model.display()
        ),
        (None, None, c) => c.map(|c| c.threshold),
    };
    if threshold.is_none() {
        eprintln!(
            "warning: {}: no calibrated threshold; verdicts are \"unknown\" (pass --threshold)",
            args.model.display()
        );
    }
    let found = list_images(&args.paths)?;
    let kinds = IMAGE_EXTENSIONS.join(", ");
    for path in &found.skipped {
        eprintln!("skipped (not an image file: {kinds}): {}", path.display());
    }
    for (path, why) in &found.refused {
        eprintln!("not read: {}: {why}", path.display());
    }
    let images = found.images;
    if images.is_empty() {
        bail!("no image files ({kinds}) under the given paths");
    }
    let shape = model.input();
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(images.len() as u64).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} images {per_sec} {eta}")
                .expect("valid template"),
        )
    };
    let mut out = Output::new(args.format, threshold);
    let mut failed: Vec<(PathBuf, String)> = Vec::new();
    for chunk in images.chunks(CHUNK) {
        let mut set = ImageSet {
            pixels: Vec::with_capacity(chunk.len() * shape.iter().product::<usize>()),
            labels: Vec::new(),
            channels: shape[0],
            height: shape[1],
            width: shape[2],
            class_names: Vec::new(),
        };
        let mut ok = Vec::new();
        for (path, decoded) in chunk.iter().zip(decode_many(chunk, shape)) {
            match decoded {
                Ok(pixels) => {
                    set.pixels.extend_from_slice(&pixels);
                    set.labels.push(0);
                    ok.push(path);
                }
                Err(e) => failed.push((path.clone(), e.to_string())),
            }
        }
        let scores = model.score(&set)?;
        for (path, score) in ok.into_iter().zip(scores) {
            let verdict = match threshold {
                Some(t) if score > t => "anomaly",
                Some(_) => "normal",
                None => "unknown",
            };
            out.row(Row {
                path: path.display().to_string(),
                score,
                percentile: calibration.map(|c| c.percentile(score)),
                verdict,
            })?;
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    out.finish()?;
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for (path, why) in &failed {
        eprintln!("error: not scored: {}: {why}", path.display());
    }
    bail!(
        "{} of {} images could not be read (listed above); the rest were scored",
        failed.len(),
        images.len()
    )
}

/// Rows go out as they are scored (CSV, JSON lines) or as one table at the end.
struct Output {
    format: ScoreFormat,
    table: Table,
    stdout: std::io::StdoutLock<'static>,
}

impl Output {
    fn new(format: ScoreFormat, threshold: Option<f64>) -> Output {
        let mut table = Table::new();
        table.load_style(presets::ASCII_MARKDOWN);
        table.set_header([
            "path".to_string(),
            "score".to_string(),
            "percentile".to_string(),
            match threshold {
                Some(t) => format!("verdict (threshold {t:.4})"),
                None => "verdict".to_string(),
            },
        ]);
        let mut out = Output {
            format,
            table,
            stdout: std::io::stdout().lock(),
        };
        if format == ScoreFormat::Csv {
            let _ = writeln!(out.stdout, "path,score,percentile,verdict");
        }
        out
    }

    fn row(&mut self, row: Row) -> Result<()> {
        let percentile = row.percentile.map_or(String::new(), |p| format!("{p:.1}"));
        match self.format {
            ScoreFormat::Table => {
                self.table.add_row([
                    row.path,
                    format!("{:.6}", row.score),
                    percentile,
                    row.verdict.to_string(),
                ]);
                Ok(())
            }
            ScoreFormat::Csv => self.line(&format!(
                "{},{},{percentile},{}",
                csv_field(&row.path),
                row.score,
                row.verdict
            )),
            ScoreFormat::Json => self.line(&serde_json::to_string(&row)?),
        }
    }

    fn line(&mut self, line: &str) -> Result<()> {
        writeln!(self.stdout, "{line}").context("writing to stdout")
    }

    fn finish(mut self) -> Result<()> {
        if self.format == ScoreFormat::Table {
            let table = self.table.to_string();
            self.line(&table)?;
        }
        self.stdout.flush().context("writing to stdout")
    }
}

/// A CSV field, quoted when it holds a comma, quote or line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
