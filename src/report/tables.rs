//! Tables 1-3: EIDN per class, mean ± std over seeds, joined by class name to the paper's
//! rows.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use polars::prelude::*;

use comfy_table::Table;

use super::frame::{
    f64s, is, is_eidn, mean_over_classes, over_seeds, polars_error, ratio_is, stat_at, strs, u64s,
    Stat,
};
use super::{new_table, pct, Report, NOT_RUN};
use crate::data::DatasetName;
use crate::experiment::{ExperimentError, StageId};
use crate::reduce::ReducerKind;
use crate::report::PublishedTable;

/// One published table with ours beside it.
pub(super) struct Joined {
    /// The published rows in the paper's order, with `mean`, `std`, `n` (seeds) of ours
    /// (null where a class has no record).
    rows: DataFrame,
    /// Mean over classes, ± over seeds.
    mean: Option<Stat>,
    seeds: Vec<u64>,
    /// Per published row: whether the profile asks for that class (then a missing record
    /// shows as "not yet run", else as "—").
    expected: Vec<bool>,
}

impl Joined {
    pub(super) fn ours(&self, i: usize) -> PolarsResult<Option<Stat>> {
        let mean = self.rows.column("mean")?.f64()?.get(i);
        Ok(mean.map(|mean| Stat {
            mean,
            std: self
                .rows
                .column("std")
                .ok()
                .and_then(|c| c.f64().ok()?.get(i)),
            n: self
                .rows
                .column("n")
                .ok()
                .and_then(|c| c.u64().ok()?.get(i))
                .unwrap_or(0) as usize,
        }))
    }

    /// (ours, ours − published) as shown; `expected`: the profile asks for this number.
    fn show(ours: Option<Stat>, published: f64, expected: bool) -> (String, String) {
        match ours {
            Some(s) => (s.show(), format!("{:+.4}", s.mean - published)),
            None if expected => (NOT_RUN.into(), "—".into()),
            None => ("—".into(), "—".into()),
        }
    }
}

impl Report {
    pub(super) fn join_published(
        &self,
        t: &PublishedTable,
        reducer: ReducerKind,
    ) -> Result<Joined, ExperimentError> {
        let stage = StageId::parse(&t.id);
        let rows = self.own_score_one_vs_rest(t.dataset, t.anomaly_ratio, stage, reducer)?;
        let query = || -> PolarsResult<(DataFrame, Option<Stat>, Vec<u64>)> {
            let ours = over_seeds(&rows, &["class_name"])?;
            let joined = t
                .rows_frame()?
                .with_row_index("row".into(), None)?
                .left_join(&ours, ["class"], ["class_name"])?
                .sort(["row"], SortMultipleOptions::default())?;
            let seeds: BTreeSet<u64> = u64s(&rows, "seed")?.into_iter().collect();
            let mean = if rows.height() == 0 {
                None
            } else {
                mean_over_classes(&rows)?
            };
            Ok((joined, mean, seeds.into_iter().collect()))
        };
        let (rows, mean, seeds) = query().map_err(polars_error(&t.title))?;
        let coverage = stage.and_then(|s| super::coverage::of(&self.coverage, s, t.dataset));
        // A number is expected only from a reducer the table's stage runs.
        let asks = self.profile.stages.iter().any(|s| {
            Some(s.id) == stage && s.dataset == t.dataset && s.reducers.contains(&reducer)
        });
        let coverage = coverage.filter(|_| asks);
        let names = t.dataset.class_names().unwrap_or_default();
        let expected = t
            .rows
            .iter()
            .map(|row| {
                let label = names.iter().position(|n| *n == row.class);
                coverage
                    .zip(label)
                    .is_some_and(|(c, l)| c.classes.contains(&(l as u8)))
            })
            .collect();
        Ok(Joined {
            rows,
            mean,
            seeds,
            expected,
        })
    }

    pub(super) fn published_table(
        &self,
        md: &mut String,
        t: &PublishedTable,
    ) -> Result<(), ExperimentError> {
        let j = self.join_published(t, ReducerKind::Eidn)?;
        let plus = self.join_published(t, ReducerKind::EidnPlus)?;
        let with_plus = !plus.seeds.is_empty();
        let pretrained = self.pretrained_columns(t)?;
        let bad = polars_error(&t.title);
        let _ = writeln!(md, "## {}\n", t.title);
        if let Some(line) = StageId::parse(&t.id).and_then(|s| self.coverage_line(s, t.dataset)) {
            let _ = writeln!(md, "{line}\n");
        }
        if j.seeds.is_empty() && !with_plus {
            let _ = writeln!(
                md,
                "**Data missing / not run:** no {} records at {} in this results folder{}. Published values only.\n",
                t.dataset.label(),
                pct(t.anomaly_ratio),
                if t.dataset == DatasetName::Concrete {
                    " (Concrete Cracks is not available offline here; `eidn data fetch --dataset concrete` gets it)"
                } else {
                    ""
                }
            );
        }
        let mut header = vec!["class (paper row)".to_string()];
        header.extend(t.columns.iter().map(|c| {
            if *c == t.eidn_column {
                format!("{c} published")
            } else {
                c.clone()
            }
        }));
        header.push("EIDN ours".into());
        header.push("ours − published EIDN".into());
        if with_plus {
            header.push("EIDN+ ours".into());
        }
        header.extend(
            pretrained
                .iter()
                .map(|(r, _)| format!("{} ours", pretrained_label(*r))),
        );
        let _ = writeln!(md, "| {} |", header.join(" | "));
        let _ = writeln!(md, "|{}", "---|".repeat(header.len()));
        let classes = strs(&j.rows, "class").map_err(&bad)?;
        let paper_rows = strs(&j.rows, "paper_row").map_err(&bad)?;
        for (i, row) in t.rows.iter().enumerate() {
            let (o, d) = Joined::show(j.ours(i).map_err(&bad)?, t.eidn(&row.values), j.expected[i]);
            let mut cells = vec![format!("{} ({})", classes[i], paper_rows[i])];
            cells.extend(row.values.iter().map(|v| format!("{v:.4}")));
            cells.push(o);
            cells.push(d);
            if with_plus {
                let p = plus.ours(i).map_err(&bad)?;
                cells.push(Joined::show(p, 0.0, plus.expected[i]).0);
            }
            for (_, p) in &pretrained {
                cells.push(Joined::show(p.ours(i).map_err(&bad)?, 0.0, p.expected[i]).0);
            }
            let _ = writeln!(md, "| {} |", cells.join(" | "));
        }
        let (mut o, mut d) = Joined::show(j.mean, t.eidn(&t.mean), j.expected.iter().any(|&e| e));
        // Part of a table run: the mean is over the classes that ran, so the difference is
        // against the published EIDN over those same classes, and both say so.
        let ran: Vec<usize> = (0..t.rows.len())
            .filter(|&i| matches!(j.ours(i), Ok(Some(_))))
            .collect();
        if let (Some(mean), true) = (j.mean, !ran.is_empty() && ran.len() < t.rows.len()) {
            let published =
                ran.iter().map(|&i| t.eidn(&t.rows[i].values)).sum::<f64>() / ran.len() as f64;
            o = format!(
                "{} over {} of {} classes",
                mean.show(),
                ran.len(),
                t.rows.len()
            );
            d = format!("{:+.4} on those classes", mean.mean - published);
        }
        let mut cells = vec!["**mean**".to_string()];
        cells.extend(t.mean.iter().map(|v| format!("{v:.4}")));
        cells.push(format!("**{o}**"));
        cells.push(d);
        if with_plus {
            let p = Joined::show(plus.mean, 0.0, true).0;
            cells.push(format!("**{p}**"));
        }
        for (_, p) in &pretrained {
            cells.push(format!("**{}**", Joined::show(p.mean, 0.0, true).0));
        }
        let _ = writeln!(md, "| {} |\n", cells.join(" | "));
        if let Some((_, p)) = pretrained.first() {
            let _ = writeln!(
                md,
                "Pretrained columns: EfficientNet-Lite0 ImageNet features (global average pool, 1,280 \
                 values; images upsampled to {} px), standardised on the normal training images. \
                 kNN: mean distance to the 2 nearest normal training images, no labels used. LR: \
                 class-balanced logistic regression (C = 1) on the normal and the same labelled \
                 anomalies EIDN gets, the honest stand-in for the paper's supervised CNN columns \
                 (trained there on balanced data). Seeds {:?} (they draw the labelled anomalies).\n",
                self.profile.features(t.dataset).size,
                p.seeds
            );
        }
        if with_plus {
            let _ = writeln!(
                md,
                "{} Seeds {:?}.\n",
                self.eidn_plus_line(t.dataset),
                plus.seeds
            );
        }
        if !j.seeds.is_empty() {
            // A mean over seeds needs two seeds that each have every class that ran.
            let why_no_spread = match j.mean {
                Some(Stat { std: None, .. }) if j.seeds.len() > 1 => {
                    " It has none here: fewer than two seeds have every class that ran."
                }
                _ => "",
            };
            let _ = writeln!(
                md,
                "Ours: seeds {:?}; the mean row's ± is the spread over seeds of the mean over classes.{why_no_spread}",
                j.seeds
            );
        }
        if t.dataset == DatasetName::Cifar10 {
            let _ = writeln!(
                md,
                "Rows are matched by class name, not position: the paper lists plane, car, bird, cat, deer, \
                 frog, horse, ship, truck, dog, while CIFAR-10's labels are airplane 0, automobile 1, bird 2, \
                 cat 3, deer 4, dog 5, frog 6, horse 7, ship 8, truck 9."
            );
        }
        md.push('\n');
        Ok(())
    }

    /// The pretrained methods' columns with records, in order: kNN (no labels), then LR.
    fn pretrained_columns(
        &self,
        t: &PublishedTable,
    ) -> Result<Vec<(ReducerKind, Joined)>, ExperimentError> {
        let mut out = Vec::new();
        for r in [ReducerKind::Pretrained, ReducerKind::PretrainedLogreg] {
            let j = self.join_published(t, r)?;
            if !j.seeds.is_empty() {
                out.push((r, j));
            }
        }
        Ok(out)
    }

    pub(super) fn published_table_terminal(
        &self,
        out: &mut String,
        t: &PublishedTable,
    ) -> Result<(), ExperimentError> {
        let j = self.join_published(t, ReducerKind::Eidn)?;
        let plus = self.join_published(t, ReducerKind::EidnPlus)?;
        if j.seeds.is_empty() && plus.seeds.is_empty() {
            return Ok(());
        }
        let bad = polars_error(&t.title);
        let mut table = new_table(["class", "paper EIDN", "ours", "diff", "EIDN+ ours"]);
        for (i, row) in t.rows.iter().enumerate() {
            let p = t.eidn(&row.values);
            let (o, d) = Joined::show(j.ours(i).map_err(&bad)?, p, j.expected[i]);
            let plus = Joined::show(plus.ours(i).map_err(&bad)?, 0.0, plus.expected[i]).0;
            table.add_row([row.class.clone(), format!("{p:.4}"), o, d, plus]);
        }
        let p = t.eidn(&t.mean);
        let (o, d) = Joined::show(j.mean, p, j.expected.iter().any(|&e| e));
        let plus_mean = Joined::show(plus.mean, 0.0, !plus.seeds.is_empty()).0;
        table.add_row(["mean".into(), format!("{p:.4}"), o, d, plus_mean]);
        let _ = writeln!(out, "{}\n{table}\n", t.title);
        Ok(())
    }
}

/// A dataset without published numbers: EIDN's AUC per normal class (rows) and anomaly
/// ratio (columns), mean ± std over seeds, with the mean over classes per ratio.
struct OwnTable {
    ratios: Vec<f64>,
    classes: Vec<String>,
    /// `cells[class][ratio]`.
    cells: Vec<Vec<Option<Stat>>>,
    means: Vec<Option<Stat>>,
    seeds: Vec<u64>,
}

impl Report {
    fn own_table_of(&self, dataset: DatasetName) -> Result<Option<OwnTable>, ExperimentError> {
        let rows = self.of_stage(dataset, None)?;
        let query = || -> PolarsResult<Option<OwnTable>> {
            let rows = rows.filter(&(&is(&rows, "protocol", "one-vs-rest")? & &is_eidn(&rows)?))?;
            if rows.height() == 0 {
                return Ok(None);
            }
            let mut ratios = f64s(&rows, "anomaly_ratio")?;
            ratios.sort_by(f64::total_cmp);
            ratios.dedup_by(|a, b| (*a - *b).abs() < 1e-12);
            let by_class = over_seeds(&rows, &["normal_class", "class_name"])?.sort(
                ["normal_class", "class_name"],
                SortMultipleOptions::default(),
            )?;
            let classes = strs(&by_class, "class_name")?;
            let mut cells = vec![vec![None; ratios.len()]; classes.len()];
            let mut means = Vec::new();
            for (j, &r) in ratios.iter().enumerate() {
                let at = rows.filter(&ratio_is(&rows, r)?)?;
                let per_class = over_seeds(&at, &["class_name"])?;
                let names = strs(&per_class, "class_name")?;
                for (k, name) in names.iter().enumerate() {
                    if let Some(i) = classes.iter().position(|c| c == name) {
                        cells[i][j] = Some(stat_at(&per_class, k)?);
                    }
                }
                means.push(mean_over_classes(&at)?);
            }
            let seeds: BTreeSet<u64> = u64s(&rows, "seed")?.into_iter().collect();
            Ok(Some(OwnTable {
                ratios,
                classes,
                cells,
                means,
                seeds: seeds.into_iter().collect(),
            }))
        };
        query().map_err(polars_error(&format!("the {dataset} table")))
    }

    /// The per-class table of every dataset the paper has no table for.
    pub(super) fn own_tables(&self, md: &mut String) -> Result<(), ExperimentError> {
        for d in self.datasets() {
            if self.published.table.iter().any(|t| t.dataset == d) {
                continue;
            }
            let Some(t) = self.own_table_of(d)? else {
                continue;
            };
            let _ = writeln!(
                md,
                "## {}: EIDN per normal class and anomaly ratio\n\n\
                 Test ROC AUC of EIDN's own score (distance from the origin), mean ± std over \
                 seeds {:?}; no published numbers exist for this dataset.\n",
                d.label(),
                t.seeds
            );
            let mut header = vec!["normal class".to_string()];
            header.extend(t.ratios.iter().map(|&r| pct(r)));
            let _ = writeln!(md, "| {} |", header.join(" | "));
            let _ = writeln!(md, "|{}", "---|".repeat(header.len()));
            for (class, row) in t.classes.iter().zip(&t.cells) {
                let cells: Vec<String> = row
                    .iter()
                    .map(|c| c.map_or("—".into(), |s| s.show()))
                    .collect();
                let _ = writeln!(md, "| {class} | {} |", cells.join(" | "));
            }
            let means: Vec<String> = t
                .means
                .iter()
                .map(|m| m.map_or("—".into(), |s| format!("**{}**", s.show())))
                .collect();
            let _ = writeln!(md, "| **mean** | {} |\n", means.join(" | "));
        }
        Ok(())
    }

    pub(super) fn own_tables_terminal(&self, out: &mut String) -> Result<(), ExperimentError> {
        for d in self.datasets() {
            if self.published.table.iter().any(|t| t.dataset == d) {
                continue;
            }
            let Some(t) = self.own_table_of(d)? else {
                continue;
            };
            let mut header = vec!["class".to_string()];
            header.extend(t.ratios.iter().map(|&r| pct(r)));
            let mut table = Table::new();
            table.load_style(comfy_table::presets::ASCII_MARKDOWN);
            table.set_header(header);
            for (class, row) in t.classes.iter().zip(&t.cells) {
                let mut cells = vec![class.clone()];
                cells.extend(row.iter().map(|c| c.map_or("—".into(), |s| s.show())));
                table.add_row(cells);
            }
            let mut mean = vec!["mean".to_string()];
            mean.extend(t.means.iter().map(|m| m.map_or("—".into(), |s| s.show())));
            table.add_row(mean);
            let _ = writeln!(
                out,
                "{}: EIDN test AUC per normal class\n{table}\n",
                d.label()
            );
        }
        Ok(())
    }
}

/// A pretrained method's column name.
fn pretrained_label(r: ReducerKind) -> &'static str {
    match r {
        ReducerKind::Pretrained => "pretrained + kNN",
        _ => "pretrained + LR",
    }
}
