//! Reports: the paper's Tables 1-3 and Figs 5-7 from a results folder, beside the published
//! numbers, as markdown + PNG charts, and the same tables for the terminal.
//!
//! The counted records become one polars frame (`frame`); every table is a query on it.
//! Where to look: `frame` (the frame, `results.csv` / `.parquet`, the shared queries),
//! `published` (the paper's numbers), `header` and `coverage` (what ran, where, how much),
//! `tables` (Tables 1-3), `figures` (Figs 5 and 7), `unseen` (the unseen test and Fig 6),
//! `plot` (the charts), `thresholds` and `golden` (CI's regression guard).

mod compare;
mod coverage;
mod deep_sad;
mod few_shot;
mod figures;
pub mod frame;
mod golden;
mod header;
mod paired;
mod plot;
mod published;
mod tables;
mod thresholds;
mod unseen;

use std::path::{Path, PathBuf};

use comfy_table::{presets, Table};
use polars::prelude::{BooleanChunked, DataFrame};

pub use compare::{parse_pair, Method};
pub use coverage::StageCoverage;
pub use frame::{records_frame, Stat};
pub use golden::{today, CpuFamily, Golden, GoldenCell, GoldenCheck};
pub use paired::{wilcoxon, Paired};
pub use published::{Published, PublishedRow, PublishedTable};
pub use thresholds::{ThresholdCell, Thresholds};
pub use unseen::Fig6;

use crate::build_info::{numerics_of, Build};
use crate::data::DatasetName;
use crate::experiment::archive::{self, Carried, ReportSpec};
use crate::experiment::{
    read_failures, read_records, select, write_atomic, ExperimentError, Failure, Record, RunMeta,
    Selection, StageId, ValidProfile,
};
use crate::reduce::ReducerKind;
use frame::{is, is_own_score, polars_error, ratio_is, stage_column};

/// Everything a report shows, gathered from one results folder.
pub struct Report {
    pub results: PathBuf,
    /// Every record of the results folder, as read: the report carries them
    /// (`experiment::archive`).
    pub records: Vec<Record>,
    /// Whether records of different numerics versions were averaged (`--mix-builds`).
    pub mix_builds: bool,
    /// Pairs of methods compared besides the default ones (`--compare`).
    pub compare: Vec<(Method, Method)>,
    /// The records that count (see `experiment::select`), one row each.
    pub frame: DataFrame,
    pub selection: Selection,
    pub profile: ValidProfile,
    pub coverage: Vec<StageCoverage>,
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

/// The file that marks a folder as one eidn writes reports into.
pub const MARKER: &str = ".eidn-report";
const MARKER_TEXT: &str = "eidn writes its reports here (README.md, results.csv, results.parquet, charts, and the records they came from)\n";

/// Whether a report may go into `out`: a new or empty folder, or one eidn made (it holds
/// [`MARKER`]); any other folder holds the user's files (a `README.md`, a `results.csv`)
/// that the report would replace, so it takes `force`. Checked before any work.
pub fn check_out(out: &Path, force: bool) -> Result<(), ExperimentError> {
    let empty = match std::fs::read_dir(out) {
        Ok(mut d) => d.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(ExperimentError::io(out, e)),
    };
    if empty || force || out.join(MARKER).is_file() {
        return Ok(());
    }
    Err(ExperimentError::Usage(format!(
        "{} holds files eidn did not write; a report replaces README.md and results.csv there. \
         Give --out a new or empty folder (or one eidn made: it holds {MARKER}), or pass --force",
        out.display()
    )))
}

impl Report {
    /// Gathers the report of `results`; `profile` names the current configuration (default:
    /// the newest run's profile).
    ///
    /// Records of builds with different numerics versions are refused unless `mix_builds`.
    /// A report folder (it carries its records) counts them as it did when written, unless
    /// `profile` says otherwise.
    pub fn build(
        results: &Path,
        profile: Option<ValidProfile>,
        mix_builds: bool,
    ) -> Result<Report, ExperimentError> {
        if !results.is_dir() {
            return Err(ExperimentError::io(
                results,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such results folder"),
            ));
        }
        let runs = RunMeta::read_all(results);
        let records = read_records(results)?;
        // With no profile named, an empty folder has nothing to report; with one, its
        // tables render as "not yet run".
        if profile.is_none() && runs.is_empty() && records.is_empty() {
            return Err(ExperimentError::Usage(format!(
                "{} holds no eidn results (no records, no runs): run `eidn reproduce --results {}` first",
                results.display(),
                results.display()
            )));
        }
        let carried = archive::read_spec(results)?;
        let mix_builds = mix_builds || carried.as_ref().is_some_and(|s| s.mix_builds);
        let compare = (carried.iter().flat_map(|s| &s.compare))
            .map(|pair| {
                parse_pair(pair).map_err(|e| ExperimentError::Profile {
                    path: results.join(archive::REPORT),
                    message: e,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let profile = match (profile, carried) {
            (Some(p), _) => p,
            (None, Some(spec)) => spec.profile.check(&results.join(archive::REPORT))?,
            (None, None) => current_profile(results, &runs, None)?,
        };
        let selection = select(&records, &profile)?;
        let numerics: std::collections::BTreeSet<u32> = (selection.counted.iter())
            .map(|r| numerics_of(r.build.as_ref()))
            .collect();
        if numerics.len() > 1 && !mix_builds {
            let builds: std::collections::BTreeSet<String> = (selection.counted.iter())
                .map(|r| Build::label_of(r.build.as_ref()))
                .collect();
            return Err(ExperimentError::Usage(format!(
                "{}: the records that count come from builds with different numerics versions \
                 ({}); rerun `eidn reproduce` to recompute the older ones, or pass --mix-builds \
                 to average them anyway",
                results.display(),
                builds.into_iter().collect::<Vec<_>>().join("; ")
            )));
        }
        let frame = records_frame(&selection.counted, &selection)
            .map_err(polars_error("the results frame"))?;
        let failures = read_failures(results)
            .into_iter()
            .filter(|f| !selection.counted.iter().any(|r| r.cell == f.cell))
            .collect();
        Ok(Report {
            results: results.to_path_buf(),
            records,
            mix_builds,
            compare,
            coverage: coverage::coverage(&profile, &frame),
            frame,
            selection,
            profile,
            failures,
            runs,
            published: Published::builtin(),
            fig6: Fig6::find(results)?,
        })
    }

    /// Writes `README.md`, the PNG charts, `results.csv` and `results.parquet` into `out`,
    /// the records, runs and profile they came from (so that `out` can be re-rendered,
    /// resumed and merged: `experiment::archive`), and the marker that makes it a folder eidn
    /// writes reports into ([`check_out`]).
    pub fn write(&self, out: &Path) -> Result<(), ExperimentError> {
        std::fs::create_dir_all(out).map_err(|e| ExperimentError::io(out, e))?;
        write_atomic(&out.join(MARKER), MARKER_TEXT.as_bytes())?;
        let spec = ReportSpec {
            profile: (*self.profile).clone(),
            mix_builds: self.mix_builds,
            compare: (self.compare.iter())
                .map(|(a, b)| format!("{}:{}", a.spec(), b.spec()))
                .collect(),
        };
        let failures = read_failures(&self.results);
        archive::write(
            out,
            &Carried {
                records: &self.records,
                runs: &self.runs,
                failures: &failures,
                spec: &spec,
                artifacts: self.fig6.iter().map(|f| f.source.clone()).collect(),
            },
        )?;
        let mut md = String::new();
        self.header(&mut md);
        for t in self.shown_tables() {
            self.published_table(&mut md, t)?;
        }
        self.own_tables(&mut md)?;
        self.deep_sad(&mut md)?;
        self.few_shot(&mut md)?;
        if self.has_paper_protocol() {
            self.fig5(&mut md, out)?;
            self.unseen(&mut md, out)?;
            self.fig7(&mut md, out)?;
        }
        self.comparisons(&mut md)?;
        write_atomic(&out.join("README.md"), md.as_bytes())?;
        frame::write_results(&self.frame, out)
    }

    /// Tables 1-3, Fig 5, the unseen test and Fig 7 for the terminal.
    pub fn terminal_tables(&self) -> Result<String, ExperimentError> {
        let mut out = String::new();
        for t in self.shown_tables() {
            self.published_table_terminal(&mut out, t)?;
        }
        self.own_tables_terminal(&mut out)?;
        if self.has_paper_protocol() {
            self.fig5_terminal(&mut out)?;
            self.unseen_terminal(&mut out)?;
            self.fig7_terminal(&mut out)?;
        }
        Ok(out)
    }

    /// The rows of `dataset` that count for `stage`: its cells when the profile has that stage
    /// for the dataset, else every row of the dataset (any stage's cells stand in).
    fn of_stage(
        &self,
        dataset: DatasetName,
        stage: Option<StageId>,
    ) -> Result<DataFrame, ExperimentError> {
        let query = || {
            let mut mask = is(&self.frame, "dataset", &dataset.to_string())?;
            if let Some(stage) = stage {
                let has_stage = self
                    .profile
                    .stages
                    .iter()
                    .any(|s| s.id == stage && s.dataset == dataset);
                if has_stage {
                    mask = &mask & self.frame.column(&stage_column(stage))?.bool()?;
                }
            }
            self.frame.filter(&mask)
        };
        query().map_err(polars_error("selecting a stage's records"))
    }

    /// `reducer`'s own score (EIDN or EIDN+) on one-vs-rest cells of `dataset` at `ratio`
    /// (of `stage`).
    fn own_score_one_vs_rest(
        &self,
        dataset: DatasetName,
        ratio: f64,
        stage: Option<StageId>,
        reducer: ReducerKind,
    ) -> Result<DataFrame, ExperimentError> {
        let rows = self.of_stage(dataset, stage)?;
        let query = || {
            let mask: BooleanChunked = &(&is(&rows, "protocol", "one-vs-rest")?
                & &ratio_is(&rows, ratio)?)
                & &is_own_score(&rows, reducer)?;
            rows.filter(&mask)
        };
        query().map_err(polars_error("one-vs-rest records"))
    }

    /// One line on what EIDN+ trains with on `dataset` (for a table that shows it).
    fn eidn_plus_line(&self, dataset: DatasetName) -> String {
        let stage = self
            .profile
            .stages
            .iter()
            .find(|s| s.dataset == dataset && s.reducers.contains(&ReducerKind::EidnPlus));
        let base = stage.map_or_else(
            || self.profile.train.clone(),
            |s| s.train_spec(&self.profile.train),
        );
        let train = crate::experiment::recipe::eidn_plus(dataset).apply(&base);
        format!(
            "EIDN+ is EIDN (same loss, sampler and score) trained with {}'s validated recipe: {} \
             (configs/eidn_plus.toml, chosen on held-out training images; reports/eidn_plus/).",
            dataset.label(),
            crate::experiment::recipe::describe(&train)
        )
    }

    /// The datasets a report covers: those the profile names or the records hold (a user's
    /// report on their own images shows none of the paper's tables), built-ins first.
    fn datasets(&self) -> Vec<DatasetName> {
        let mut all: Vec<DatasetName> = self.profile.stages.iter().map(|s| s.dataset).collect();
        if let Ok(names) = frame::strs(&self.frame, "dataset") {
            all.extend(names.iter().map(|n| DatasetName::intern(n)));
        }
        all.sort();
        all.dedup();
        all
    }

    /// Whether anything here ran under the paper's protocols: a profile and results only
    /// under Deep SAD's have no Fig 5, unseen test or Fig 7 to show.
    fn has_paper_protocol(&self) -> bool {
        let stages = self.profile.stages.iter().any(|s| s.id != StageId::DeepSad);
        let protocols = frame::strs(&self.frame, "protocol").unwrap_or_default();
        stages || protocols.iter().any(|p| p != "deep-sad")
    }

    /// The paper's tables of the datasets this report covers under the paper's protocols (a
    /// dataset run only under Deep SAD's protocol has its own section instead).
    fn shown_tables(&self) -> Vec<&PublishedTable> {
        let mut datasets: Vec<DatasetName> = (self.profile.stages.iter())
            .filter(|s| s.id != StageId::DeepSad)
            .map(|s| s.dataset)
            .collect();
        let names = frame::strs(&self.frame, "dataset").unwrap_or_default();
        let protocols = frame::strs(&self.frame, "protocol").unwrap_or_default();
        datasets.extend(
            names
                .iter()
                .zip(&protocols)
                .filter(|(_, p)| p.as_str() != "deep-sad")
                .map(|(n, _)| DatasetName::intern(n)),
        );
        let tables = self.published.table.iter();
        tables.filter(|t| datasets.contains(&t.dataset)).collect()
    }

    /// "Table 1 (MNIST): 10 of 30 cells: ...", and the builds its numbers came from, when the
    /// profile has this stage.
    fn coverage_line(&self, stage: StageId, dataset: DatasetName) -> Option<String> {
        let builds: std::collections::BTreeSet<String> = (self.selection.counted.iter())
            .filter(|r| r.dataset == dataset && self.selection.in_stage(r, stage))
            .map(|r| Build::label_of(r.build.as_ref()))
            .collect();
        coverage::of(&self.coverage, stage, dataset).map(|c| {
            let from = match builds.len() {
                0 => String::new(),
                _ => format!(
                    " Numbers from {}.",
                    builds.into_iter().collect::<Vec<_>>().join("; ")
                ),
            };
            format!(
                "Coverage of the profile's `{}` stage on {}: {}.{from}",
                stage.as_str(),
                dataset.label(),
                c.line()
            )
        })
    }
}

pub(crate) fn pct(ratio: f64) -> String {
    format!("{}%", (ratio * 100.0 * 1000.0).round() / 1000.0)
}

/// What a table cell shows for a cell of the profile that has no record yet.
const NOT_RUN: &str = "not yet run";

fn new_table<const N: usize>(header: [&str; N]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::ASCII_MARKDOWN);
    t.set_header(header);
    t
}
