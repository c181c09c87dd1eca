//! Fig 5 (EIDN's mean AUC over classes against the anomaly ratio) and Fig 7 (every reducer
//! under every detector), each a chart, a markdown table and a terminal table.

use std::fmt::Write as _;
use std::path::Path;

use polars::prelude::*;

use super::frame::{
    f64s, group_means, is, is_eidn, is_own_score, over_classes, polars_error, ratio_is, stat_at,
    u64s, Stat,
};
use super::plot::{self, BarPanel, Line};
use super::{new_table, pct, Report, NOT_RUN};
use crate::data::DatasetName;
use crate::detect::DetectorKind;
use crate::experiment::{ExperimentError, StageId};
use crate::reduce::ReducerKind;

/// Fig 7's detectors in its order, EIDN's own score first, then the paper's four, then ours;
/// a figure shows those with records.
pub(super) const FIG7_DETECTORS: [DetectorKind; 7] = [
    DetectorKind::OriginDistance,
    DetectorKind::IsolationForest,
    DetectorKind::OneClassSvm,
    DetectorKind::Gmm,
    DetectorKind::Lof,
    DetectorKind::Knn,
    DetectorKind::Mahalanobis,
];

/// A point or bar: mean over classes with its spread across classes, classes, seeds.
#[derive(Clone, Copy, Debug)]
pub struct OverClasses {
    pub stat: Stat,
    pub classes: usize,
    pub seeds: usize,
}

impl OverClasses {
    fn show(&self) -> String {
        format!("{} ({}, {})", self.stat.show(), self.classes, self.seeds)
    }
}

/// Row `i` of an `over_classes` frame.
fn over_classes_at(df: &DataFrame, i: usize) -> PolarsResult<OverClasses> {
    let stat = stat_at(df, i)?;
    Ok(OverClasses {
        stat,
        classes: stat.n,
        seeds: u64s(df, "seeds")?[i] as usize,
    })
}

/// The first row of `df` where `mask` holds, if any.
fn first_where(df: &DataFrame, mask: &BooleanChunked) -> PolarsResult<Option<OverClasses>> {
    let rows = df.filter(mask)?;
    (rows.height() > 0)
        .then(|| over_classes_at(&rows, 0))
        .transpose()
}

/// One ratio of one dataset in Fig 5: ours (if run) and the paper's (if published).
type Fig5Point = (Option<OverClasses>, Option<f64>);

/// Fig 5's points: per dataset, per ratio (high to low), ours and the paper's.
struct Fig5 {
    ratios: Vec<f64>,
    series: Vec<(DatasetName, Vec<Fig5Point>)>,
    /// EIDN+ per dataset that has any, at the same ratios.
    plus: Vec<(DatasetName, Vec<Option<OverClasses>>)>,
}

impl Report {
    fn fig5_points(&self) -> Result<Fig5, ExperimentError> {
        let query = || -> PolarsResult<Fig5> {
            let f = &self.frame;
            let ovr = is(f, "protocol", "one-vs-rest")?;
            let rows = f.filter(&(&ovr & &is_eidn(f)?))?;
            let ours = over_classes(&rows, &["dataset", "anomaly_ratio"])?;
            let plus_rows = f.filter(&(&ovr & &is_own_score(f, ReducerKind::EidnPlus)?))?;
            let plus_stats = over_classes(&plus_rows, &["dataset", "anomaly_ratio"])?;
            let paper = self.published.fig5_frame()?;
            // Every ratio that ran, that the paper gives, or that the profile asks for.
            let mut ratios = f64s(&ours, "anomaly_ratio")?;
            ratios.extend(f64s(&paper, "anomaly_ratio")?);
            ratios.extend(
                self.profile
                    .stages
                    .iter()
                    .filter(|s| s.train_anomaly_classes.is_none())
                    .flat_map(|s| s.ratios.iter().copied()),
            );
            ratios.sort_by(|a, b| b.total_cmp(a));
            ratios.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
            let mut series = Vec::new();
            let mut plus = Vec::new();
            for d in self.datasets() {
                let mut points = Vec::new();
                let mut plus_points = Vec::new();
                for &r in &ratios {
                    let at = |df: &DataFrame| -> PolarsResult<BooleanChunked> {
                        Ok(&is(df, "dataset", &d.to_string())? & &ratio_is(df, r)?)
                    };
                    let ours = first_where(&ours, &at(&ours)?)?;
                    let paper = f64s(&paper.filter(&at(&paper)?)?, "paper")?
                        .first()
                        .copied();
                    points.push((ours, paper));
                    plus_points.push(first_where(&plus_stats, &at(&plus_stats)?)?);
                }
                series.push((d, points));
                if plus_points.iter().any(Option::is_some) {
                    plus.push((d, plus_points));
                }
            }
            Ok(Fig5 {
                ratios,
                series,
                plus,
            })
        };
        query().map_err(polars_error("Fig 5"))
    }

    /// Whether the profile asks for EIDN's one-vs-rest cells of `dataset` at `ratio`.
    fn expects(&self, dataset: DatasetName, ratio: f64) -> bool {
        self.profile.stages.iter().any(|s| {
            s.dataset == dataset
                && s.reducers.contains(&ReducerKind::Eidn)
                && s.train_anomaly_classes.is_none()
                && s.ratios.iter().any(|&x| (x - ratio).abs() < 1e-9)
        })
    }

    pub(super) fn fig5(&self, md: &mut String, out: &Path) -> Result<(), ExperimentError> {
        let _ = writeln!(md, "## Fig 5: mean AUC against the anomaly ratio\n");
        for d in self.datasets() {
            if let Some(line) = self.coverage_line(StageId::Fig5, d) {
                let _ = writeln!(md, "{line}");
            }
        }
        md.push('\n');
        let fig = self.fig5_points()?;
        let mut lines = Vec::new();
        for (i, (d, pts)) in fig.series.iter().enumerate() {
            if pts.iter().all(|p| p.0.is_none()) {
                continue;
            }
            lines.push(Line {
                label: format!("{} (ours)", d.label()),
                colour: i,
                points: pts.iter().map(|p| p.0.map(|o| o.stat.mean)).collect(),
                markers_only: false,
            });
        }
        for (i, (d, pts)) in fig.series.iter().enumerate() {
            if pts.iter().any(|p| p.1.is_some()) {
                lines.push(Line {
                    label: format!("{} (paper, table mean)", d.label()),
                    colour: i,
                    points: pts.iter().map(|p| p.1).collect(),
                    markers_only: true,
                });
            }
        }
        for (j, (d, pts)) in fig.plus.iter().enumerate() {
            lines.push(Line {
                label: format!("{} EIDN+ (ours)", d.label()),
                // Colours of their own: the paper's markers already use the datasets'.
                colour: fig.series.len() + j,
                points: pts.iter().map(|p| p.map(|o| o.stat.mean)).collect(),
                markers_only: true,
            });
        }
        if lines.iter().any(|l| !l.markers_only) || !fig.plus.is_empty() {
            plot::line_chart(
                &out.join("fig5.png"),
                "Fig 5: EIDN mean AUC over classes vs labelled anomaly ratio",
                &fig.ratios.iter().map(|&r| pct(r)).collect::<Vec<_>>(),
                "labelled anomalies, % of the normal training images",
                &lines,
            )?;
            let _ = writeln!(md, "![Fig 5](fig5.png)\n");
        } else {
            let _ = writeln!(md, "No one-vs-rest EIDN records: not run.\n");
        }
        let mut header = vec!["anomaly ratio".to_string()];
        for (d, _) in &fig.series {
            header.push(format!("{} ours (classes, seeds)", d.label()));
            header.push(format!("{} paper", d.label()));
        }
        for (d, _) in &fig.plus {
            header.push(format!("{} EIDN+ ours", d.label()));
        }
        let _ = writeln!(md, "| {} |", header.join(" | "));
        let _ = writeln!(md, "|{}", "---|".repeat(header.len()));
        for (k, &ratio) in fig.ratios.iter().enumerate() {
            let mut cells = vec![pct(ratio)];
            for (d, pts) in &fig.series {
                let (ours, paper) = pts[k];
                cells.push(match ours {
                    Some(o) => o.show(),
                    None if self.expects(*d, ratio) => NOT_RUN.into(),
                    None => "—".into(),
                });
                cells.push(paper.map_or("—".into(), |p| format!("{p:.4}")));
            }
            for (_, pts) in &fig.plus {
                cells.push(pts[k].map_or("—".into(), |o| o.show()));
            }
            let _ = writeln!(md, "| {} |", cells.join(" | "));
        }
        let _ = writeln!(
            md,
            "\nEach point: the mean over classes of each class's mean over seeds; ± is the spread across \
             classes. The paper prints Fig 5 without numbers, so its only known EIDN points are the table \
             means (MNIST 1 %, CIFAR-10 10 %, Concrete 50 %).\n"
        );
        Ok(())
    }

    pub(super) fn fig5_terminal(&self, out: &mut String) -> Result<(), ExperimentError> {
        let fig = self.fig5_points()?;
        let mut table = new_table([
            "dataset",
            "ratio",
            "ours mean over classes",
            "classes",
            "seeds",
        ]);
        let plus = fig
            .plus
            .iter()
            .map(|(d, pts)| (format!("{} EIDN+", d.label()), pts.clone()));
        let rows = fig
            .series
            .iter()
            .map(|(d, pts)| (d.label(), pts.iter().map(|p| p.0).collect::<Vec<_>>()))
            .chain(plus);
        for (label, pts) in rows {
            for (&ratio, ours) in fig.ratios.iter().zip(&pts) {
                if let Some(o) = ours {
                    table.add_row([
                        label.clone(),
                        pct(ratio),
                        format!("{:.4}", o.stat.mean),
                        o.classes.to_string(),
                        o.seeds.to_string(),
                    ]);
                }
            }
        }
        let _ = writeln!(out, "Fig 5\n{table}\n");
        Ok(())
    }

    /// Fig 7's rows of `dataset`: the fig7 stage's one-vs-rest cells, EIDN trained at 5 %.
    fn fig7_rows(&self, dataset: DatasetName) -> Result<DataFrame, ExperimentError> {
        let rows = self.of_stage(dataset, Some(StageId::Fig7))?;
        let query =
            || rows.filter(&(&is(&rows, "protocol", "one-vs-rest")? & &ratio_is(&rows, 0.05)?));
        query().map_err(polars_error("Fig 7"))
    }

    /// Per dataset with baseline (non EIDN-distance) records: its rows and, per (reducer,
    /// detector), the mean over classes.
    fn fig7_frames(&self) -> Result<Vec<(DatasetName, DataFrame, DataFrame)>, ExperimentError> {
        let mut out = Vec::new();
        for d in self.datasets() {
            let rows = self.fig7_rows(d)?;
            let query = || -> PolarsResult<Option<DataFrame>> {
                let baselines = rows.filter(&!is_eidn(&rows)?)?;
                (baselines.height() > 0)
                    .then(|| over_classes(&rows, &["reducer", "detector"]))
                    .transpose()
            };
            if let Some(stats) = query().map_err(polars_error("Fig 7"))? {
                out.push((d, rows, stats));
            }
        }
        Ok(out)
    }

    pub(super) fn fig7(&self, md: &mut String, out: &Path) -> Result<(), ExperimentError> {
        let _ = writeln!(md, "## Fig 7: reducers x detectors (EIDN trained at 5 %)\n");
        for d in self.datasets() {
            if let Some(line) = self.coverage_line(StageId::Fig7, d) {
                let _ = writeln!(md, "{line}");
            }
        }
        md.push('\n');
        let frames = self.fig7_frames()?;
        if frames.is_empty() {
            let _ = writeln!(md, "Not run.\n");
            return Ok(());
        }
        let bad = polars_error("Fig 7");
        let reducers =
            present(&frames, "reducer", ReducerKind::ALL, |r| r.as_str()).map_err(&bad)?;
        let detectors =
            present(&frames, "detector", FIG7_DETECTORS, |k| k.as_str()).map_err(&bad)?;
        let mut cells: Vec<Vec<Option<OverClasses>>> = Vec::new();
        for (_, _, stats) in &frames {
            let mut per = Vec::new();
            for &r in &reducers {
                for &k in &detectors {
                    per.push(method_at(stats, r, k).map_err(&bad)?);
                }
            }
            cells.push(per);
        }
        let n = detectors.len();
        let panels: Vec<BarPanel> = frames
            .iter()
            .zip(&cells)
            .map(|((d, _, _), per)| BarPanel {
                title: format!("{}: mean AUC over classes", d.label()),
                groups: detectors.iter().map(|k| k.label().to_string()).collect(),
                series: reducers
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let bars = per[i * n..(i + 1) * n].iter();
                        (
                            r.label().to_string(),
                            bars.map(|c| c.map(|c| c.stat.mean)).collect(),
                        )
                    })
                    .collect(),
            })
            .collect();
        plot::grouped_bars(&out.join("fig7.png"), &panels)?;
        let _ = writeln!(md, "![Fig 7](fig7.png)\n");
        let mut header = vec!["reducer".to_string(), "detector".to_string()];
        header.extend(
            frames
                .iter()
                .map(|(d, _, _)| format!("{} (classes, seeds)", d.label())),
        );
        let _ = writeln!(md, "| {} |", header.join(" | "));
        let _ = writeln!(md, "|{}", "---|".repeat(header.len()));
        for (i, r) in reducers.iter().enumerate() {
            for (j, k) in detectors.iter().enumerate() {
                let mut row = vec![r.label().to_string(), k.label().to_string()];
                row.extend(
                    cells
                        .iter()
                        .map(|per| per[i * n + j].map_or("—".into(), |c| c.show())),
                );
                let _ = writeln!(md, "| {} |", row.join(" | "));
            }
        }
        let _ = writeln!(
            md,
            "\n± is the spread across classes. Every detector is fitted on the embedded normal training \
             images only and scores the embedded test split. PCA: {l} components, fitted on the training \
             pools (normal + labelled anomalies). LDA (shrinkage 0.1) has at most C − 1 components: in this \
             normal-vs-anomaly setting that is **one**, so LDA's detectors work on a line. The paper's Fig 7 \
             has no printed numbers to compare with.\n",
            l = 2
        );
        if reducers.contains(&ReducerKind::Pretrained) {
            let _ = writeln!(
                md,
                "Pretrained: EfficientNet-Lite0's ImageNet features (1,280 values, images upsampled: \
                 {}), standardised on the normal training \
                 images; under GMM only, PCA to {} components first (a full covariance in 1,280 \
                 dimensions does not fit). kNN: mean distance to the 2 nearest normal training \
                 embeddings. Mahalanobis: Ledoit-Wolf shrunk covariance of the normal training \
                 embeddings.\n",
                frames
                    .iter()
                    .map(|(d, _, _)| format!(
                        "{} to {} px",
                        d.label(),
                        self.profile.features(*d).size
                    ))
                    .collect::<Vec<_>>()
                    .join(", "),
                crate::experiment::select::GMM_COMPONENTS
            );
        }
        self.fig7_timings(md, &frames).map_err(&bad)?;
        Ok(())
    }

    /// Mean seconds per (dataset, reducer, detector).
    fn fig7_timings(
        &self,
        md: &mut String,
        frames: &[(DatasetName, DataFrame, DataFrame)],
    ) -> PolarsResult<()> {
        let _ = writeln!(md, "Mean seconds per fit / per scoring of the test split (scoring includes embedding it):\n");
        let _ = writeln!(md, "| dataset | reducer | reducer fit (EIDN: training) | detector | detector fit | score |");
        let _ = writeln!(md, "|---|---|---|---|---|---|");
        for (d, rows, _) in frames {
            let times = group_means(
                rows,
                &["reducer", "detector"],
                &["train_seconds", "fit_seconds", "score_seconds"],
            )?;
            for r in ReducerKind::ALL {
                for k in FIG7_DETECTORS {
                    let at = times.filter(
                        &(&is(&times, "reducer", r.as_str())?
                            & &is(&times, "detector", k.as_str())?),
                    )?;
                    if at.height() == 0 {
                        continue;
                    }
                    let m = |c: &str| f64s(&at, c).map(|v| v[0]);
                    let _ = writeln!(
                        md,
                        "| {} | {} | {:.2} | {} | {:.3} | {:.3} |",
                        d.label(),
                        r.label(),
                        m("train_seconds_mean")?,
                        k.label(),
                        m("fit_seconds_mean")?,
                        m("score_seconds_mean")?
                    );
                }
            }
        }
        md.push('\n');
        Ok(())
    }

    pub(super) fn fig7_terminal(&self, out: &mut String) -> Result<(), ExperimentError> {
        let frames = self.fig7_frames()?;
        if frames.is_empty() {
            return Ok(());
        }
        let mut table = new_table(["dataset", "reducer", "detector", "mean AUC over classes"]);
        for (d, _, stats) in &frames {
            for r in ReducerKind::ALL {
                for k in FIG7_DETECTORS {
                    if let Some(c) = method_at(stats, r, k).map_err(polars_error("Fig 7"))? {
                        table.add_row([
                            d.label(),
                            r.label().to_string(),
                            k.label().to_string(),
                            c.stat.show(),
                        ]);
                    }
                }
            }
        }
        let _ = writeln!(out, "Fig 7 (EIDN trained at 5 %)\n{table}\n");
        Ok(())
    }
}

/// The members of `all` (reducers or detectors, named in `column`) with a record in any of
/// Fig 7's frames, in `all`'s order.
fn present<T: Copy, const N: usize>(
    frames: &[(DatasetName, DataFrame, DataFrame)],
    column: &str,
    all: [T; N],
    name: impl Fn(T) -> &'static str,
) -> PolarsResult<Vec<T>> {
    let mut out = Vec::new();
    for x in all {
        let mut found = false;
        for (_, _, stats) in frames {
            found |= is(stats, column, name(x))?.any();
        }
        if found {
            out.push(x);
        }
    }
    Ok(out)
}

/// The (reducer, detector) row of an `over_classes` frame keyed by them.
fn method_at(
    stats: &DataFrame,
    r: ReducerKind,
    k: DetectorKind,
) -> PolarsResult<Option<OverClasses>> {
    first_where(
        stats,
        &(&is(stats, "reducer", r.as_str())? & &is(stats, "detector", k.as_str())?),
    )
}
