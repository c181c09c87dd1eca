//! Reports: the paper's Tables 1-3 and Figs 5-7 from a results folder, beside the published
//! numbers (`reports/published.toml`), as markdown + PNG charts, and the same tables for the
//! terminal. Also the CI regression's thresholds.

mod plot;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use comfy_table::{presets, Table};
use polars::prelude::{Column, CsvReadOptions, DataFrame, SerReader};
use serde::Deserialize;

use crate::data::DatasetName;
use crate::detect::DetectorKind;
use crate::experiment::{
    read_failures, read_records, select, write_atomic, write_csv, ExperimentError, Failure, Record,
    RunMeta, Selection, StageId, ValidProfile,
};
use crate::reduce::ReducerKind;
use plot::{BarPanel, Line, Points};

/// The published numbers, compiled in.
const PUBLISHED: &str = include_str!("../../reports/published.toml");

#[derive(Clone, Debug, Deserialize)]
pub struct Published {
    pub source: String,
    pub unseen_auc: f64,
    pub table: Vec<PublishedTable>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct PublishedTable {
    pub id: String,
    pub title: String,
    pub dataset: DatasetName,
    pub anomaly_ratio: f64,
    pub columns: Vec<String>,
    pub eidn_column: String,
    pub rows: Vec<PublishedRow>,
    pub mean: Vec<f64>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct PublishedRow {
    pub paper_row: String,
    /// Our loaders' name for the class.
    pub class: String,
    pub values: Vec<f64>,
}

impl PublishedTable {
    pub fn eidn(&self, values: &[f64]) -> f64 {
        let j = self
            .columns
            .iter()
            .position(|c| *c == self.eidn_column)
            .expect("published.toml: eidn_column is one of the columns (checked by a test)");
        values[j]
    }
}

impl Published {
    pub fn builtin() -> Published {
        toml::from_str(PUBLISHED).expect("reports/published.toml parses (checked by a test)")
    }

    pub fn table_for(&self, dataset: DatasetName) -> Option<&PublishedTable> {
        self.table.iter().find(|t| t.dataset == dataset)
    }
}

/// Mean, sample standard deviation (None below 2 values) and count.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stat {
    pub mean: f64,
    pub std: Option<f64>,
    pub n: usize,
}

impl Stat {
    pub fn of(values: &[f64]) -> Option<Stat> {
        if values.is_empty() {
            return None;
        }
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n as f64;
        let std = (n > 1).then(|| {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        });
        Some(Stat { mean, std, n })
    }

    /// "0.9912 ± 0.0021" (no ± for a single value).
    pub fn show(&self) -> String {
        match self.std {
            Some(s) => format!("{:.4} ± {:.4}", self.mean, s),
            None => format!("{:.4}", self.mean),
        }
    }
}

fn same_ratio(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn pct(ratio: f64) -> String {
    format!("{}%", (ratio * 100.0 * 1000.0).round() / 1000.0)
}

fn dataset_label(d: DatasetName) -> &'static str {
    match d {
        DatasetName::Mnist => "MNIST",
        DatasetName::Cifar10 => "CIFAR-10",
        DatasetName::Concrete => "Concrete Cracks",
    }
}

/// Records of EIDN's own score (encoder + distance from the origin).
fn is_eidn(r: &Record) -> bool {
    r.reducer == ReducerKind::Eidn && r.detector == DetectorKind::OriginDistance
}

/// A table over classes: per class the mean ± std over seeds, and the mean over classes
/// with its std over seeds (each seed's mean over the classes that seed has all of).
pub struct ClassTable {
    /// (class label, class name, stat over seeds)
    pub classes: Vec<(u8, String, Stat)>,
    pub mean: Option<Stat>,
    pub seeds: Vec<u64>,
}

impl ClassTable {
    pub fn from_records<'a>(records: impl Iterator<Item = &'a Record>) -> ClassTable {
        let mut by_class: BTreeMap<u8, (String, BTreeMap<u64, f64>)> = BTreeMap::new();
        for r in records {
            by_class
                .entry(r.normal_class)
                .or_insert_with(|| (r.class_name.clone(), BTreeMap::new()))
                .1
                .insert(r.seed, r.auc);
        }
        let seeds: BTreeSet<u64> = by_class
            .values()
            .flat_map(|(_, s)| s.keys().copied())
            .collect();
        let classes: Vec<(u8, String, Stat)> = by_class
            .iter()
            .filter_map(|(&c, (name, s))| {
                Stat::of(&s.values().copied().collect::<Vec<_>>()).map(|st| (c, name.clone(), st))
            })
            .collect();
        // Mean over classes per seed, for seeds that cover every class.
        let per_seed: Vec<f64> = seeds
            .iter()
            .filter(|seed| by_class.values().all(|(_, s)| s.contains_key(seed)))
            .map(|seed| {
                by_class.values().map(|(_, s)| s[seed]).sum::<f64>() / by_class.len() as f64
            })
            .collect();
        let mean = if per_seed.is_empty() {
            Stat::of(&classes.iter().map(|c| c.2.mean).collect::<Vec<_>>())
                .map(|s| Stat { std: None, ..s })
        } else {
            Stat::of(&per_seed)
        };
        ClassTable {
            classes,
            mean,
            seeds: seeds.into_iter().collect(),
        }
    }

    fn get(&self, class_name: &str) -> Option<&Stat> {
        self.classes
            .iter()
            .find(|(_, n, _)| n == class_name)
            .map(|(_, _, s)| s)
    }
}

/// A test image in a 2-D embedding: (group: normal / seen / unseen, x, y).
pub type Point = (String, f64, f64);

/// Fig 6's points from the unseen stage, and the distance summary.
pub struct Fig6 {
    pub source: PathBuf,
    /// (embedding name, its points)
    pub embeddings: Vec<(String, Vec<Point>)>,
}

impl Fig6 {
    fn load(path: &Path) -> Result<Fig6, ExperimentError> {
        let bad = |e: polars::error::PolarsError| {
            ExperimentError::Polars(format!("{}: {e}", path.display()))
        };
        let df = CsvReadOptions::default()
            .with_has_header(true)
            .try_into_reader_with_file_path(Some(path.to_path_buf()))
            .map_err(bad)?
            .finish()
            .map_err(bad)?;
        let groups: Vec<String> = df
            .column("group")
            .and_then(|c| {
                c.str().map(|s| {
                    (0..s.len())
                        .map(|i| s.get(i).unwrap_or("").to_string())
                        .collect()
                })
            })
            .map_err(bad)?;
        let col = |name: &str| -> Result<Vec<f64>, ExperimentError> {
            df.column(name)
                .and_then(|c| {
                    c.f64()
                        .map(|s| (0..s.len()).map(|i| s.get(i).unwrap_or(f64::NAN)).collect())
                })
                .map_err(bad)
        };
        let mut embeddings = Vec::new();
        for (name, x, y) in [("EIDN", "eidn_x", "eidn_y"), ("PCA", "pca_x", "pca_y")] {
            let (xs, ys) = (col(x)?, col(y)?);
            let points = groups
                .iter()
                .zip(xs.iter().zip(&ys))
                .map(|(g, (&x, &y))| (g.clone(), x, y))
                .collect();
            embeddings.push((name.to_string(), points));
        }
        Ok(Fig6 {
            source: path.to_path_buf(),
            embeddings,
        })
    }

    /// Per embedding: mean distance from the normal cluster centre of the normal, seen and
    /// unseen test images, and each anomaly group's ratio to the normals' (scale-free, so EIDN
    /// and PCA compare).
    pub fn distances(&self) -> Vec<(String, [f64; 3])> {
        self.embeddings
            .iter()
            .map(|(name, pts)| {
                let normal: Vec<&Point> = pts.iter().filter(|p| p.0 == "normal").collect();
                let n = normal.len().max(1) as f64;
                let cx = normal.iter().map(|p| p.1).sum::<f64>() / n;
                let cy = normal.iter().map(|p| p.2).sum::<f64>() / n;
                let mean_dist = |g: &str| {
                    let d: Vec<f64> = pts
                        .iter()
                        .filter(|p| p.0 == g)
                        .map(|p| ((p.1 - cx).powi(2) + (p.2 - cy).powi(2)).sqrt())
                        .collect();
                    d.iter().sum::<f64>() / d.len().max(1) as f64
                };
                (
                    name.clone(),
                    [mean_dist("normal"), mean_dist("seen"), mean_dist("unseen")],
                )
            })
            .collect()
    }
}

/// (anomaly ratio, mean over classes with its spread across classes, classes, seeds).
type Fig5Point = (f64, Option<Stat>, usize, usize);

/// Everything a report shows, gathered from one results folder.
pub struct Report {
    pub results: PathBuf,
    /// The records that count (see `experiment::select`).
    pub records: Vec<Record>,
    pub selection: Selection,
    pub profile: ValidProfile,
    /// Cells that failed and have no result since.
    pub failures: Vec<Failure>,
    pub runs: Vec<RunMeta>,
    pub published: Published,
    pub fig6: Option<Fig6>,
}

/// The profile whose records count: `profile` when given, else the newest run's.
pub fn current_profile(
    results: &Path,
    runs: &[RunMeta],
    profile: Option<ValidProfile>,
) -> Result<ValidProfile, ExperimentError> {
    if let Some(p) = profile {
        return Ok(p);
    }
    let newest = runs
        .iter()
        .filter(|r| r.profile_spec.is_some())
        .max_by_key(|r| r.started_unix);
    match newest.and_then(|r| r.profile_spec.clone()) {
        Some(spec) => spec.check(&results.join("runs")),
        None => Err(ExperimentError::Profile {
            path: results.join("runs"),
            message: "no run here records its profile (written by an older eidn?), so it is \
                      unknown which records are current: pass --profile"
                .into(),
        }),
    }
}

const FIG7_DETECTORS: [DetectorKind; 5] = [
    DetectorKind::OriginDistance,
    DetectorKind::IsolationForest,
    DetectorKind::OneClassSvm,
    DetectorKind::Gmm,
    DetectorKind::Lof,
];

impl Report {
    /// Gathers the report of `results`; `profile` names the current configuration (default:
    /// the newest run's profile).
    pub fn build(results: &Path, profile: Option<ValidProfile>) -> Result<Report, ExperimentError> {
        if !results.is_dir() {
            return Err(ExperimentError::io(
                results,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such results folder"),
            ));
        }
        let runs = RunMeta::read_all(results);
        let profile = current_profile(results, &runs, profile)?;
        let selection = select(&read_records(results)?, &profile)?;
        let records = selection.counted.clone();
        let failures = read_failures(results)
            .into_iter()
            .filter(|f| !records.iter().any(|r| r.cell == f.cell))
            .collect();
        let mut artifacts: Vec<PathBuf> = std::fs::read_dir(results.join("artifacts"))
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with("fig6-") && n.ends_with(".csv"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        // Lowest seed first: cell ids sort by "-s<seed>-".
        artifacts.sort_by_key(|p| {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_string();
            let seed: u64 = name
                .split("-s")
                .nth(1)
                .and_then(|s| s.split('-').next())
                .and_then(|s| s.parse().ok())
                .unwrap_or(u64::MAX);
            (seed, name)
        });
        let fig6 = artifacts.first().map(|p| Fig6::load(p)).transpose()?;
        Ok(Report {
            results: results.to_path_buf(),
            records,
            selection,
            profile,
            failures,
            runs,
            published: Published::builtin(),
            fig6,
        })
    }

    /// Whether `r` belongs to `stage`: its cell is one of the stage's, or the profile has no
    /// such stage for the record's dataset (then any stage's cells stand in).
    fn of_stage(&self, r: &Record, stage: Option<StageId>) -> bool {
        let Some(stage) = stage else { return true };
        let has_stage = self
            .profile
            .stages
            .iter()
            .any(|s| s.id == stage && s.dataset == r.dataset);
        !has_stage || self.selection.in_stage(r, stage)
    }

    fn eidn_one_vs_rest(
        &self,
        dataset: DatasetName,
        ratio: f64,
        stage: Option<StageId>,
    ) -> ClassTable {
        ClassTable::from_records(self.records.iter().filter(|r| {
            r.dataset == dataset
                && r.protocol == "one-vs-rest"
                && same_ratio(r.anomaly_ratio, ratio)
                && is_eidn(r)
                && self.of_stage(r, stage)
        }))
    }

    /// Writes `README.md`, the PNG charts and `results.csv` into `out`.
    pub fn write(&self, out: &Path) -> Result<(), ExperimentError> {
        std::fs::create_dir_all(out).map_err(|e| ExperimentError::io(out, e))?;
        let mut md = String::new();
        self.header(&mut md);
        for t in &self.published.table {
            self.published_table(&mut md, t);
        }
        self.fig5(&mut md, out)?;
        self.unseen(&mut md, out)?;
        self.fig7(&mut md, out)?;
        write_atomic(&out.join("README.md"), md.as_bytes())?;
        self.write_csv(&out.join("results.csv"))
    }

    fn header(&self, md: &mut String) {
        let profiles: BTreeSet<&str> = self.runs.iter().map(|r| r.profile.as_str()).collect();
        let commits: BTreeSet<&str> = self.runs.iter().map(|r| r.commit.as_str()).collect();
        let machines: BTreeSet<&str> = self.runs.iter().map(|r| r.machine.as_str()).collect();
        let devices: BTreeSet<&str> = self.runs.iter().map(|r| r.device.as_str()).collect();
        let seeds: BTreeSet<u64> = self.records.iter().map(|r| r.seed).collect();
        let wall: f64 = self.runs.iter().map(|r| r.wall_seconds).sum();
        let join = |s: &BTreeSet<&str>| {
            if s.is_empty() {
                "unknown".to_string()
            } else {
                s.iter().copied().collect::<Vec<_>>().join(", ")
            }
        };
        let _ = writeln!(
            md,
            "# EIDN reproduction report: profile {}\n",
            join(&profiles)
        );
        let _ = writeln!(md, "| | |\n|---|---|");
        let _ = writeln!(md, "| profile | {} |", join(&profiles));
        let _ = writeln!(md, "| commit(s) | {} |", join(&commits));
        let _ = writeln!(md, "| machine(s) | {} |", join(&machines));
        let _ = writeln!(md, "| device | {} |", join(&devices));
        let _ = writeln!(
            md,
            "| seeds | {} |",
            seeds
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(
            md,
            "| wall time | {:.0} s ({:.1} min) over {} run(s) (interrupted and resumed runs add up) |",
            wall,
            wall / 60.0,
            self.runs.len()
        );
        let _ = writeln!(
            md,
            "| records | {} counted (one per cell, seed and method of the current profile){} |",
            self.records.len(),
            if self.selection.ignored_total() == 0 {
                String::new()
            } else {
                format!("; {}", self.selection.ignored_lines().join("; "))
            }
        );
        let steps: BTreeSet<String> = self
            .records
            .iter()
            .filter_map(|r| {
                let t = r.config.get("train")?;
                Some(format!(
                    "{}: {} x {} steps of {} triplets",
                    r.dataset,
                    t.get("epochs")?,
                    t.get("steps_per_epoch")?,
                    t.get("batch_size")?
                ))
            })
            .collect();
        let _ = writeln!(
            md,
            "| EIDN training | {} (paper: 50 x 100 steps of 128) |",
            steps.into_iter().collect::<Vec<_>>().join("; ")
        );
        let data: BTreeSet<String> = self
            .records
            .iter()
            .map(|r| format!("{} {}", r.dataset, r.data))
            .collect();
        let _ = writeln!(
            md,
            "| data | {} |\n",
            data.into_iter().collect::<Vec<_>>().join("; ")
        );
        if self.records.iter().any(|r| r.data.starts_with("variant")) {
            let _ = writeln!(
                md,
                "**Data note.** A dataset marked `variant` is not the original distribution: the CIFAR-10 copy \
                 here is `jpeg-q75` (every image re-encoded as JPEG at quality 75, same images, labels and \
                 split; see `eidn data verify`). Numbers on it may differ slightly from the original files.\n"
            );
        }
        let missing: BTreeSet<&str> = self
            .runs
            .iter()
            .flat_map(|r| {
                r.missing_data
                    .iter()
                    .map(|c| c.split('-').next().unwrap_or(""))
            })
            .collect();
        if !missing.is_empty() {
            let _ = writeln!(
                md,
                "**Data missing:** {} (not in the data directory when the grid ran; its cells were skipped).\n",
                missing.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
        if !self.failures.is_empty() {
            let _ = writeln!(md, "**Failed cells** (no result; rerun to retry):\n");
            for f in &self.failures {
                let _ = writeln!(md, "- `{}`: {}", f.cell, f.reason);
            }
            md.push('\n');
        }
        let _ = writeln!(
            md,
            "Published numbers: {} (`reports/published.toml`). Ours: mean ± sample standard deviation over \
             seeds; ROC AUC of the test split.\n",
            self.published.source
        );
    }

    fn published_table(&self, md: &mut String, t: &PublishedTable) {
        let ours = self.eidn_one_vs_rest(t.dataset, t.anomaly_ratio, StageId::parse(&t.id));
        let _ = writeln!(md, "## {}\n", t.title);
        if ours.classes.is_empty() {
            let _ = writeln!(
                md,
                "**Data missing / not run:** no {} records at {} in this results folder{}. Published values only.\n",
                dataset_label(t.dataset),
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
        let _ = writeln!(md, "| {} |", header.join(" | "));
        let _ = writeln!(md, "|{}", "---|".repeat(header.len()));
        let show = |s: Option<&Stat>, published: f64| match s {
            Some(s) => (s.show(), format!("{:+.4}", s.mean - published)),
            None => ("—".into(), "—".into()),
        };
        for row in &t.rows {
            let (o, d) = show(ours.get(&row.class), t.eidn(&row.values));
            let mut cells = vec![format!("{} ({})", row.class, row.paper_row)];
            cells.extend(row.values.iter().map(|v| format!("{v:.4}")));
            cells.push(o);
            cells.push(d);
            let _ = writeln!(md, "| {} |", cells.join(" | "));
        }
        let (o, d) = show(ours.mean.as_ref(), t.eidn(&t.mean));
        let mut cells = vec!["**mean**".to_string()];
        cells.extend(t.mean.iter().map(|v| format!("{v:.4}")));
        cells.push(format!("**{o}**"));
        cells.push(d);
        let _ = writeln!(md, "| {} |\n", cells.join(" | "));
        if !ours.classes.is_empty() {
            let _ = writeln!(
                md,
                "Ours: seeds {:?}; the mean row's ± is the spread over seeds of the mean over classes.",
                ours.seeds
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
    }

    /// Per dataset, per ratio (high to low): our mean over classes, classes, seeds.
    fn fig5_points(&self) -> Vec<(DatasetName, Vec<Fig5Point>)> {
        let mut ratios: Vec<f64> = Vec::new();
        for r in self
            .records
            .iter()
            .filter(|r| r.protocol == "one-vs-rest" && is_eidn(r))
        {
            if !ratios.iter().any(|&x| same_ratio(x, r.anomaly_ratio)) {
                ratios.push(r.anomaly_ratio);
            }
        }
        for t in &self.published.table {
            if !ratios.iter().any(|&x| same_ratio(x, t.anomaly_ratio)) {
                ratios.push(t.anomaly_ratio);
            }
        }
        ratios.sort_by(|a, b| b.total_cmp(a));
        DatasetName::ALL
            .iter()
            .map(|&d| {
                let pts = ratios
                    .iter()
                    .map(|&ratio| {
                        let t = self.eidn_one_vs_rest(d, ratio, None);
                        let class_means: Vec<f64> = t.classes.iter().map(|c| c.2.mean).collect();
                        (
                            ratio,
                            Stat::of(&class_means),
                            t.classes.len(),
                            t.seeds.len(),
                        )
                    })
                    .collect();
                (d, pts)
            })
            .collect()
    }

    fn fig5(&self, md: &mut String, out: &Path) -> Result<(), ExperimentError> {
        let _ = writeln!(md, "## Fig 5: mean AUC against the anomaly ratio\n");
        let points = self.fig5_points();
        let ratios: Vec<f64> = points
            .first()
            .map(|p| p.1.iter().map(|x| x.0).collect())
            .unwrap_or_default();
        let mut lines = Vec::new();
        for (i, (d, pts)) in points.iter().enumerate() {
            if pts.iter().all(|p| p.1.is_none()) {
                continue;
            }
            lines.push(Line {
                label: format!("{} (ours)", dataset_label(*d)),
                colour: i,
                points: pts.iter().map(|p| p.1.map(|s| s.mean)).collect(),
                markers_only: false,
            });
        }
        for (i, (d, _)) in points.iter().enumerate() {
            if let Some(t) = self.published.table_for(*d) {
                lines.push(Line {
                    label: format!("{} (paper, table mean)", dataset_label(*d)),
                    colour: i,
                    points: ratios
                        .iter()
                        .map(|&r| same_ratio(r, t.anomaly_ratio).then(|| t.eidn(&t.mean)))
                        .collect(),
                    markers_only: true,
                });
            }
        }
        if lines.iter().any(|l| !l.markers_only) {
            plot::line_chart(
                &out.join("fig5.png"),
                "Fig 5: EIDN mean AUC over classes vs labelled anomaly ratio",
                &ratios.iter().map(|&r| pct(r)).collect::<Vec<_>>(),
                "labelled anomalies, % of the normal training images",
                &lines,
            )?;
            let _ = writeln!(md, "![Fig 5](fig5.png)\n");
        } else {
            let _ = writeln!(md, "No one-vs-rest EIDN records: not run.\n");
        }
        let mut header = vec!["anomaly ratio".to_string()];
        for (d, _) in &points {
            header.push(format!("{} ours (classes, seeds)", dataset_label(*d)));
            header.push(format!("{} paper", dataset_label(*d)));
        }
        let _ = writeln!(md, "| {} |", header.join(" | "));
        let _ = writeln!(md, "|{}", "---|".repeat(header.len()));
        for (k, &ratio) in ratios.iter().enumerate() {
            let mut cells = vec![pct(ratio)];
            for (d, pts) in &points {
                let (_, stat, classes, seeds) = &pts[k];
                cells.push(match stat {
                    Some(s) => format!("{} ({classes}, {seeds})", Stat { std: s.std, ..*s }.show()),
                    None => "—".into(),
                });
                cells.push(
                    self.published
                        .table_for(*d)
                        .filter(|t| same_ratio(t.anomaly_ratio, ratio))
                        .map_or("—".into(), |t| format!("{:.4}", t.eidn(&t.mean))),
                );
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

    fn unseen(&self, md: &mut String, out: &Path) -> Result<(), ExperimentError> {
        let _ = writeln!(md, "## Unseen anomalies (Section 4) and Fig 6\n");
        let recs: Vec<&Record> = self
            .records
            .iter()
            .filter(|r| r.protocol == "unseen")
            .collect();
        if recs.is_empty() {
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
        for (reducer, detector, auc, ap) in method_stats(recs.iter().copied()) {
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
            let names = [("normal", 0usize), ("seen", 2), ("unseen", 1)];
            let panels: Vec<(String, Vec<Points>)> = f
                .embeddings
                .iter()
                .map(|(name, pts)| {
                    let groups = names
                        .iter()
                        .map(|&(g, colour)| Points {
                            label: match g {
                                "normal" => "normal (class 0)".into(),
                                "seen" => "seen anomalies (1-5)".into(),
                                _ => "unseen anomalies (6-9)".into(),
                            },
                            colour,
                            xy: pts
                                .iter()
                                .filter(|p| p.0 == g)
                                .map(|p| (p.1, p.2))
                                .collect(),
                        })
                        .collect();
                    (format!("{name} embedding of the MNIST test split"), groups)
                })
                .collect();
            plot::scatter_panels(&out.join("fig6.png"), &panels)?;
            let _ = writeln!(
                md,
                "![Fig 6](fig6.png)\n\nFig 6: the whole MNIST test split in the 2-D EIDN embedding and in a 2-D PCA \
                 fitted on the same training pools (`{}`; t-SNE is left out: no maintained Rust crate). Mean \
                 distance from the normal cluster centre (the normal test images' mean):\n",
                f.source.file_name().and_then(|n| n.to_str()).unwrap_or("")
            );
            let _ = writeln!(md, "| embedding | normal | seen anomalies | unseen anomalies | seen / normal | unseen / normal |");
            let _ = writeln!(md, "|---|---|---|---|---|---|");
            for (name, [n, s, u]) in f.distances() {
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

    /// Fig 7's records: the fig7 stage's, one-vs-rest with EIDN trained at 5 % (as in the paper).
    fn in_fig7(&self, r: &Record) -> bool {
        r.protocol == "one-vs-rest"
            && same_ratio(r.anomaly_ratio, 0.05)
            && self.of_stage(r, Some(StageId::Fig7))
    }

    /// Datasets with baseline (non EIDN-distance) records at 5 %.
    fn fig7_datasets(&self) -> Vec<DatasetName> {
        DatasetName::ALL
            .into_iter()
            .filter(|&d| {
                self.records
                    .iter()
                    .any(|r| r.dataset == d && self.in_fig7(r) && !is_eidn(r))
            })
            .collect()
    }

    /// Fig 7's cell: per-class means over seeds, then mean ± std across classes, with the
    /// numbers of classes and seeds.
    fn fig7_stat(
        &self,
        d: DatasetName,
        r: ReducerKind,
        k: DetectorKind,
    ) -> Option<(Stat, usize, usize)> {
        let t =
            ClassTable::from_records(self.records.iter().filter(|x| {
                self.in_fig7(x) && x.dataset == d && x.reducer == r && x.detector == k
            }));
        let means: Vec<f64> = t.classes.iter().map(|c| c.2.mean).collect();
        Stat::of(&means).map(|s| (s, t.classes.len(), t.seeds.len()))
    }

    fn fig7(&self, md: &mut String, out: &Path) -> Result<(), ExperimentError> {
        let _ = writeln!(md, "## Fig 7: reducers x detectors (EIDN trained at 5 %)\n");
        let datasets = self.fig7_datasets();
        if datasets.is_empty() {
            let _ = writeln!(md, "Not run.\n");
            return Ok(());
        }
        // Per dataset, reducer, detector: per-class means over seeds -> stat across classes.
        let stat = |d, r, k| self.fig7_stat(d, r, k);
        let panels: Vec<BarPanel> = datasets
            .iter()
            .map(|&d| BarPanel {
                title: format!("{}: mean AUC over classes", dataset_label(d)),
                groups: FIG7_DETECTORS
                    .iter()
                    .map(|k| k.label().to_string())
                    .collect(),
                series: ReducerKind::ALL
                    .iter()
                    .map(|&r| {
                        (
                            r.label().to_string(),
                            FIG7_DETECTORS
                                .iter()
                                .map(|&k| stat(d, r, k).map(|s| s.0.mean))
                                .collect(),
                        )
                    })
                    .collect(),
            })
            .collect();
        plot::grouped_bars(&out.join("fig7.png"), &panels)?;
        let _ = writeln!(md, "![Fig 7](fig7.png)\n");
        let mut header = vec!["reducer".to_string(), "detector".to_string()];
        header.extend(
            datasets
                .iter()
                .map(|d| format!("{} (classes, seeds)", dataset_label(*d))),
        );
        let _ = writeln!(md, "| {} |", header.join(" | "));
        let _ = writeln!(md, "|{}", "---|".repeat(header.len()));
        for r in ReducerKind::ALL {
            for k in FIG7_DETECTORS {
                let mut cells = vec![r.label().to_string(), k.label().to_string()];
                for &d in &datasets {
                    cells.push(
                        stat(d, r, k)
                            .map_or("—".into(), |(s, c, n)| format!("{} ({c}, {n})", s.show())),
                    );
                }
                let _ = writeln!(md, "| {} |", cells.join(" | "));
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
        let _ = writeln!(md, "Mean seconds per fit / per scoring of the test split (scoring includes embedding it):\n");
        let _ = writeln!(md, "| dataset | reducer | reducer fit (EIDN: training) | detector | detector fit | score |");
        let _ = writeln!(md, "|---|---|---|---|---|---|");
        for &d in &datasets {
            for r in ReducerKind::ALL {
                for k in FIG7_DETECTORS {
                    let xs: Vec<&Record> = self
                        .records
                        .iter()
                        .filter(|x| {
                            self.in_fig7(x) && x.dataset == d && x.reducer == r && x.detector == k
                        })
                        .collect();
                    if xs.is_empty() {
                        continue;
                    }
                    let m = |f: fn(&Record) -> f64| {
                        xs.iter().map(|x| f(x)).sum::<f64>() / xs.len() as f64
                    };
                    let _ = writeln!(
                        md,
                        "| {} | {} | {:.2} | {} | {:.3} | {:.3} |",
                        dataset_label(d),
                        r.label(),
                        m(|x| x.train_seconds),
                        k.label(),
                        m(|x| x.fit_seconds),
                        m(|x| x.score_seconds)
                    );
                }
            }
        }
        md.push('\n');
        Ok(())
    }

    /// Every record as one flat CSV row (written with polars).
    fn write_csv(&self, path: &Path) -> Result<(), ExperimentError> {
        let r = &self.records;
        let s = |f: fn(&Record) -> String| r.iter().map(f).collect::<Vec<String>>();
        let f = |f: fn(&Record) -> f64| r.iter().map(f).collect::<Vec<f64>>();
        let mut df = DataFrame::new_infer_height(vec![
            Column::new("cell".into(), s(|x| x.cell.clone())),
            Column::new("config_hash".into(), s(|x| x.config_hash.clone())),
            Column::new("dataset".into(), s(|x| x.dataset.to_string())),
            Column::new("protocol".into(), s(|x| x.protocol.clone())),
            Column::new(
                "normal_class".into(),
                r.iter().map(|x| x.normal_class as u32).collect::<Vec<_>>(),
            ),
            Column::new("class_name".into(), s(|x| x.class_name.clone())),
            Column::new("anomaly_ratio".into(), f(|x| x.anomaly_ratio)),
            Column::new(
                "seed".into(),
                r.iter().map(|x| x.seed).collect::<Vec<u64>>(),
            ),
            Column::new("reducer".into(), s(|x| x.reducer.as_str().to_string())),
            Column::new("detector".into(), s(|x| x.detector.as_str().to_string())),
            Column::new("auc".into(), f(|x| x.auc)),
            Column::new("ap".into(), f(|x| x.ap)),
            Column::new("train_seconds".into(), f(|x| x.train_seconds)),
            Column::new("fit_seconds".into(), f(|x| x.fit_seconds)),
            Column::new("score_seconds".into(), f(|x| x.score_seconds)),
            Column::new("data".into(), s(|x| x.data.clone())),
        ])
        .map_err(|e| ExperimentError::Polars(e.to_string()))?;
        write_csv(path, &mut df)
    }

    /// Tables 1-2, Fig 5, the unseen test and Fig 7 for the terminal.
    pub fn terminal_tables(&self) -> String {
        let mut out = String::new();
        for t in &self.published.table {
            let ours = self.eidn_one_vs_rest(t.dataset, t.anomaly_ratio, StageId::parse(&t.id));
            if ours.classes.is_empty() {
                continue;
            }
            let mut table = new_table(["class", "paper EIDN", "ours", "diff"]);
            for row in &t.rows {
                let p = t.eidn(&row.values);
                let o = ours.get(&row.class);
                table.add_row([
                    row.class.clone(),
                    format!("{p:.4}"),
                    o.map_or("—".into(), |s| s.show()),
                    o.map_or("—".into(), |s| format!("{:+.4}", s.mean - p)),
                ]);
            }
            let p = t.eidn(&t.mean);
            table.add_row([
                "mean".into(),
                format!("{p:.4}"),
                ours.mean.map_or("—".into(), |s| s.show()),
                ours.mean
                    .map_or("—".into(), |s| format!("{:+.4}", s.mean - p)),
            ]);
            let _ = writeln!(out, "{}\n{table}\n", t.title);
        }
        let points = self.fig5_points();
        let mut table = new_table([
            "dataset",
            "ratio",
            "ours mean over classes",
            "classes",
            "seeds",
        ]);
        for (d, pts) in &points {
            for (ratio, stat, classes, seeds) in pts {
                if let Some(s) = stat {
                    table.add_row([
                        dataset_label(*d).to_string(),
                        pct(*ratio),
                        format!("{:.4}", s.mean),
                        classes.to_string(),
                        seeds.to_string(),
                    ]);
                }
            }
        }
        let _ = writeln!(out, "Fig 5\n{table}\n");
        let unseen: Vec<&Record> = self
            .records
            .iter()
            .filter(|r| r.protocol == "unseen")
            .collect();
        if !unseen.is_empty() {
            let mut table = new_table(["reducer", "detector", "AUC", "seeds"]);
            for (r, d, auc, _) in method_stats(unseen.into_iter()) {
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
        }
        let datasets = self.fig7_datasets();
        if !datasets.is_empty() {
            let mut table = new_table(["dataset", "reducer", "detector", "mean AUC over classes"]);
            for d in datasets {
                for r in ReducerKind::ALL {
                    for k in FIG7_DETECTORS {
                        if let Some((s, _, _)) = self.fig7_stat(d, r, k) {
                            table.add_row([
                                dataset_label(d).to_string(),
                                r.label().to_string(),
                                k.label().to_string(),
                                s.show(),
                            ]);
                        }
                    }
                }
            }
            let _ = writeln!(out, "Fig 7 (EIDN trained at 5 %)\n{table}\n");
        }
        out
    }
}

fn new_table<const N: usize>(header: [&str; N]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::ASCII_MARKDOWN);
    t.set_header(header);
    t
}

/// AUC and AP stats per (reducer, detector), over whatever records are given (seeds).
fn method_stats<'a>(
    records: impl Iterator<Item = &'a Record>,
) -> Vec<(ReducerKind, DetectorKind, Stat, Stat)> {
    let mut by: BTreeMap<(ReducerKind, DetectorKind), (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for r in records {
        let e = by.entry((r.reducer, r.detector)).or_default();
        e.0.push(r.auc);
        e.1.push(r.ap);
    }
    let mut out: Vec<_> = by
        .into_iter()
        .filter_map(|((r, d), (auc, ap))| Some((r, d, Stat::of(&auc)?, Stat::of(&ap)?)))
        .collect();
    // Reducers in their order, detectors in Fig 7's (EIDN's own score first).
    out.sort_by_key(|(r, d, _, _)| (*r, FIG7_DETECTORS.iter().position(|k| k == d)));
    out
}

/// `tests/regression/thresholds.toml`: minimum mean AUC per cell of the `ci` profile.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    #[serde(rename = "cell")]
    pub cells: Vec<ThresholdCell>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdCell {
    pub dataset: DatasetName,
    #[serde(default = "one_vs_rest")]
    pub protocol: String,
    pub normal_class: u8,
    pub anomaly_ratio: f64,
    pub reducer: ReducerKind,
    pub detector: DetectorKind,
    pub min_auc: f64,
}

fn one_vs_rest() -> String {
    "one-vs-rest".into()
}

impl ThresholdCell {
    fn name(&self) -> String {
        format!(
            "{} {} class {} @ {} {}/{}",
            self.dataset,
            self.protocol,
            self.normal_class,
            pct(self.anomaly_ratio),
            self.reducer.as_str(),
            self.detector.as_str()
        )
    }

    fn stat(&self, records: &[Record]) -> Option<Stat> {
        let aucs: Vec<f64> = records
            .iter()
            .filter(|r| {
                r.dataset == self.dataset
                    && r.protocol == self.protocol
                    && r.normal_class == self.normal_class
                    && same_ratio(r.anomaly_ratio, self.anomaly_ratio)
                    && r.reducer == self.reducer
                    && r.detector == self.detector
            })
            .map(|r| r.auc)
            .collect();
        Stat::of(&aucs)
    }
}

impl Thresholds {
    pub fn load(path: &Path) -> Result<Thresholds, ExperimentError> {
        let text = std::fs::read_to_string(path).map_err(|e| ExperimentError::io(path, e))?;
        let t: Thresholds = toml::from_str(&text).map_err(|e| ExperimentError::Profile {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let bad = |message: String| {
            Err(ExperimentError::Profile {
                path: path.to_path_buf(),
                message,
            })
        };
        if t.cells.is_empty() {
            return bad("no [[cell]]".into());
        }
        for (i, c) in t.cells.iter().enumerate() {
            // NaN fails every comparison: a NaN threshold would pass nothing and fail nothing.
            if !(0.0..=1.0).contains(&c.min_auc) {
                return bad(format!(
                    "cell {} ({}): min_auc {} is not in [0, 1]",
                    i + 1,
                    c.name(),
                    c.min_auc
                ));
            }
            if !(c.anomaly_ratio > 0.0 && c.anomaly_ratio.is_finite()) {
                return bad(format!(
                    "cell {}: anomaly_ratio {} must be > 0",
                    i + 1,
                    c.anomaly_ratio
                ));
            }
        }
        Ok(t)
    }

    /// One message per cell whose mean AUC is below its threshold or that has no records.
    pub fn check(&self, records: &[Record]) -> Vec<String> {
        self.cells
            .iter()
            .filter_map(|c| match c.stat(records) {
                None => Some(format!("{}: no records (did the cell run?)", c.name())),
                Some(s) if s.mean < c.min_auc => Some(format!(
                    "{}: mean AUC {:.4} over {} seed(s) < threshold {:.4}",
                    c.name(),
                    s.mean,
                    s.n,
                    c.min_auc
                )),
                Some(_) => None,
            })
            .collect()
    }

    pub fn table(&self, records: &[Record]) -> Table {
        let mut t = new_table(["cell", "mean AUC", "seeds", "threshold", "ok"]);
        for c in &self.cells {
            let s = c.stat(records);
            t.add_row([
                c.name(),
                s.map_or("—".into(), |s| format!("{:.4}", s.mean)),
                s.map_or("0".into(), |s| s.n.to_string()),
                format!("{:.4}", c.min_auc),
                if s.is_some_and(|s| s.mean >= c.min_auc) {
                    "yes"
                } else {
                    "NO"
                }
                .into(),
            ]);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_numbers_parse_and_their_means_match_their_rows() {
        let p = Published::builtin();
        assert_eq!(p.table.len(), 3);
        for t in &p.table {
            assert!(t.columns.contains(&t.eidn_column), "{}", t.id);
            assert_eq!(t.mean.len(), t.columns.len());
            for (j, &m) in t.mean.iter().enumerate() {
                assert!(t.rows.iter().all(|r| r.values.len() == t.columns.len()));
                let mean = t.rows.iter().map(|r| r.values[j]).sum::<f64>() / t.rows.len() as f64;
                // The paper's means are rounded to 4-7 digits.
                assert!(
                    (mean - m).abs() < 6e-4,
                    "{} column {j}: {mean} vs {m}",
                    t.id
                );
            }
        }
        let t2 = p.table_for(DatasetName::Cifar10).unwrap();
        assert_eq!(t2.rows[5].paper_row, "frog");
        assert_eq!(t2.rows[9].class, "dog");
        assert!((t2.eidn(&t2.mean) - 0.791246).abs() < 1e-9);
    }

    /// Issue 10 item 4: a NaN or out-of-range threshold is an error, not a silent pass.
    #[test]
    fn bad_thresholds_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        for bad in ["nan", "1.5", "-0.1"] {
            std::fs::write(
                &path,
                format!(
                    "[[cell]]\ndataset = \"mnist\"\nnormal_class = 0\nanomaly_ratio = 0.01\n\
                     reducer = \"eidn\"\ndetector = \"origin_distance\"\nmin_auc = {bad}\n"
                ),
            )
            .unwrap();
            let err = Thresholds::load(&path).unwrap_err().to_string();
            assert!(
                err.contains("min_auc") && err.contains("t.toml"),
                "{bad}: {err}"
            );
        }
        assert!(Thresholds::load(&dir.path().join("missing.toml")).is_err());
    }

    #[test]
    fn stats_are_sample_statistics() {
        let s = Stat::of(&[0.9, 0.8, 1.0]).unwrap();
        assert!((s.mean - 0.9).abs() < 1e-12);
        assert!((s.std.unwrap() - 0.1).abs() < 1e-12);
        assert_eq!(Stat::of(&[0.5]).unwrap().std, None);
        assert!(Stat::of(&[]).is_none());
    }
}
