//! The unseen-anomaly test (Section 4) and Fig 6: every reducer and detector on MNIST class 0
//! with training anomalies from classes 1-5 only, and the 2-D embeddings of the test split.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::figures::FIG7_DETECTORS;
use super::frame::{f64s, group_means, is, polars_error, stat_at, strs, summarise, Stat};
use super::plot::{self, Points};
use super::{new_table, Report};
use crate::data::DatasetName;
use crate::detect::DetectorKind;
use crate::experiment::{ExperimentError, StageId};
use crate::reduce::ReducerKind;

/// Fig 6's points (one `fig6-<cell>.csv` of the unseen stage: `group`, then x and y per
/// embedding).
pub struct Fig6 {
    pub source: PathBuf,
    pub points: DataFrame,
}

/// (embedding name, x column, y column)
const EMBEDDINGS: [(&str, &str, &str); 2] =
    [("EIDN", "eidn_x", "eidn_y"), ("PCA", "pca_x", "pca_y")];

impl Fig6 {
    /// The lowest seed's Fig 6 points in `results/artifacts`, if any.
    pub fn find(results: &Path) -> Result<Option<Fig6>, ExperimentError> {
        let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(results.join("artifacts"))
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter_map(|p| {
                        let name = p.file_name()?.to_str()?;
                        let cell = name.strip_prefix("fig6-")?.strip_suffix(".csv")?;
                        // Cell ids spell the seed as "-s<seed>-".
                        let seed = cell.split("-s").nth(1)?.split('-').next()?.parse().ok()?;
                        Some((seed, p))
                    })
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        found.first().map(|(_, p)| Fig6::load(p)).transpose()
    }

    fn load(path: &Path) -> Result<Fig6, ExperimentError> {
        let points = CsvReadOptions::default()
            .with_has_header(true)
            .try_into_reader_with_file_path(Some(path.to_path_buf()))
            .and_then(|r| r.finish())
            .map_err(polars_error(&path.display().to_string()))?;
        Ok(Fig6 {
            source: path.to_path_buf(),
            points,
        })
    }

    /// Per embedding: mean distance from the normal cluster centre of the normal, seen and
    /// unseen test images (scale-free as ratios, so EIDN and PCA compare).
    pub fn distances(&self) -> Result<Vec<(String, [f64; 3])>, ExperimentError> {
        let query = |x: &str, y: &str| -> PolarsResult<[f64; 3]> {
            let p = &self.points;
            let normal = p.filter(&is(p, "group", "normal")?)?;
            let centre = |c: &str| -> PolarsResult<f64> {
                Ok(normal
                    .column(c)?
                    .as_materialized_series()
                    .mean()
                    .unwrap_or(f64::NAN))
            };
            let (cx, cy) = (centre(x)?, centre(y)?);
            let dist: Vec<f64> = f64s(p, x)?
                .iter()
                .zip(f64s(p, y)?)
                .map(|(a, b)| ((a - cx).powi(2) + (b - cy).powi(2)).sqrt())
                .collect();
            let by_group = group_means(
                &DataFrame::new_infer_height(vec![
                    p.column("group")?.clone(),
                    Column::new("dist".into(), dist),
                ])?,
                &["group"],
                &["dist"],
            )?;
            let mean_of = |g: &str| -> PolarsResult<f64> {
                let at = by_group.filter(&is(&by_group, "group", g)?)?;
                Ok(f64s(&at, "dist_mean")?.first().copied().unwrap_or(f64::NAN))
            };
            Ok([mean_of("normal")?, mean_of("seen")?, mean_of("unseen")?])
        };
        EMBEDDINGS
            .iter()
            .map(|&(name, x, y)| {
                let d = query(x, y).map_err(polars_error(&self.source.display().to_string()))?;
                Ok((name.to_string(), d))
            })
            .collect()
    }

    fn panels(&self) -> Result<Vec<(String, Vec<Points>)>, ExperimentError> {
        let bad = polars_error("Fig 6");
        let groups = strs(&self.points, "group").map_err(&bad)?;
        let groups_shown = [
            ("normal", 0usize, "normal (class 0)"),
            ("seen", 2, "seen anomalies (1-5)"),
            ("unseen", 1, "unseen anomalies (6-9)"),
        ];
        EMBEDDINGS
            .iter()
            .map(|&(name, x, y)| {
                let xs = f64s(&self.points, x).map_err(&bad)?;
                let ys = f64s(&self.points, y).map_err(&bad)?;
                let points = groups_shown
                    .iter()
                    .map(|&(g, colour, label)| Points {
                        label: label.into(),
                        colour,
                        xy: (0..groups.len())
                            .filter(|&i| groups[i] == g)
                            .map(|i| (xs[i], ys[i]))
                            .collect(),
                    })
                    .collect();
                Ok((format!("{name} embedding of the MNIST test split"), points))
            })
            .collect()
    }
}

/// Per (reducer, detector) in Fig 7's order: AUC and AP over seeds.
type MethodStats = Vec<(ReducerKind, DetectorKind, Stat, Stat)>;

impl Report {
    fn unseen_stats(&self) -> Result<MethodStats, ExperimentError> {
        let query = || -> PolarsResult<MethodStats> {
            let f = &self.frame;
            let rows = f.filter(&is(f, "protocol", "unseen")?)?;
            let keys = ["reducer", "detector"];
            let (auc, ap) = (
                summarise(&rows, &keys, "auc")?,
                summarise(&rows, &keys, "ap")?,
            );
            let mut out = Vec::new();
            for r in ReducerKind::ALL {
                for k in FIG7_DETECTORS {
                    let at = |df: &DataFrame| -> PolarsResult<DataFrame> {
                        df.filter(
                            &(&is(df, "reducer", r.as_str())? & &is(df, "detector", k.as_str())?),
                        )
                    };
                    let (a, p) = (at(&auc)?, at(&ap)?);
                    if a.height() > 0 {
                        out.push((r, k, stat_at(&a, 0)?, stat_at(&p, 0)?));
                    }
                }
            }
            Ok(out)
        };
        query().map_err(polars_error("the unseen-anomaly test"))
    }

    pub(super) fn unseen(&self, md: &mut String, out: &Path) -> Result<(), ExperimentError> {
        let _ = writeln!(md, "## Unseen anomalies (Section 4) and Fig 6\n");
        if let Some(line) = self.coverage_line(StageId::Unseen, DatasetName::Mnist) {
            let _ = writeln!(md, "{line}\n");
        }
        let stats = self.unseen_stats()?;
        if stats.is_empty() {
            let _ = writeln!(md, "Not run.\n");
            return Ok(());
        }
        let _ = writeln!(
            md,
            "MNIST, normal class 0, training anomalies (5 %) drawn from classes 1-5 only; test on class 0 and \
             the never-seen classes 6-9. Paper: EIDN AUC {:.4}.\n",
            self.published.unseen_auc
        );
        let _ = writeln!(md, "| reducer | detector | ROC AUC (seeds) | AP |");
        let _ = writeln!(md, "|---|---|---|---|");
        for (reducer, detector, auc, ap) in &stats {
            let _ = writeln!(
                md,
                "| {} | {} | {} ({}) | {} |",
                reducer.label(),
                detector.label(),
                auc.show(),
                auc.n,
                ap.show()
            );
        }
        md.push('\n');
        if let Some(f) = &self.fig6 {
            plot::scatter_panels(&out.join("fig6.png"), &f.panels()?)?;
            let _ = writeln!(
                md,
                "![Fig 6](fig6.png)\n\nFig 6: the whole MNIST test split in the 2-D EIDN embedding and in a 2-D PCA \
                 fitted on the same training pools (`{}`; t-SNE is left out: no maintained Rust crate). Mean \
                 distance from the normal cluster centre (the normal test images' mean):\n",
                f.source.file_name().and_then(|n| n.to_str()).unwrap_or("")
            );
            let _ = writeln!(md, "| embedding | normal | seen anomalies | unseen anomalies | seen / normal | unseen / normal |");
            let _ = writeln!(md, "|---|---|---|---|---|---|");
            for (name, [n, s, u]) in f.distances()? {
                let _ = writeln!(
                    md,
                    "| {name} | {n:.4} | {s:.4} | {u:.4} | {:.2} | {:.2} |",
                    s / n,
                    u / n
                );
            }
            md.push('\n');
        }
        Ok(())
    }

    pub(super) fn unseen_terminal(&self, out: &mut String) -> Result<(), ExperimentError> {
        let stats = self.unseen_stats()?;
        if stats.is_empty() {
            return Ok(());
        }
        let mut table = new_table(["reducer", "detector", "AUC", "seeds"]);
        for (r, d, auc, _) in &stats {
            table.add_row([
                r.label().to_string(),
                d.label().to_string(),
                auc.show(),
                auc.n.to_string(),
            ]);
        }
        let _ = writeln!(
            out,
            "Unseen anomalies (paper EIDN {:.4})\n{table}\n",
            self.published.unseen_auc
        );
        Ok(())
    }
}
