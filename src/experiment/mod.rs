//! The reproduction grid: profiles (`configs/*.toml`) expand into cells; the runner trains,
//! reduces, detects and scores each cell and appends the results to a resumable store that
//! the `report` module reads.

pub mod cost;
pub mod profile;
pub mod recipe;
pub mod runner;
pub mod select;
pub mod store;

use std::path::{Path, PathBuf};

use polars::prelude::{CsvWriter, DataFrame, SerWriter};
use serde::{Deserialize, Serialize};

pub use cost::Plan;
pub use profile::{Cell, Profile, Shard, StageId, TrainOverride, TrainSpec, ValidProfile};
pub use runner::{run_profile, RunOptions, RunSummary};
pub use select::{select, Ignored, Selection};
pub use store::{read_failures, read_records, Failure, Record, ResultStore};

#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error("{path}: {message}")]
    Profile { path: PathBuf, message: String },
    #[error("bad shard {0:?}: expected K/N with 1 <= K <= N")]
    Shard(String),
    // The io error is shown, not chained as a source, so `{:#}` prints it once.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{dir} is in use by another eidn run ({holder}); wait for it to finish, or give this run another --results folder or --shard")]
    Locked { dir: PathBuf, holder: String },
    #[error("{path} line {line}: not a result record: {message}")]
    BadRecord {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{dataset} is missing or corrupt in {dir} (run `eidn data verify`)")]
    MissingData { dataset: String, dir: PathBuf },
    #[error("cell {cell}: {message}")]
    Cell { cell: String, message: String },
    #[error("writing a table: {0}")]
    Polars(String),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Reduce(#[from] crate::reduce::ReduceError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
}

/// Writes `bytes` with the data layer's temporary file + rename: a crash leaves the old file
/// or the new one, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ExperimentError> {
    Ok(crate::data::files::write_atomic(path, bytes)?)
}

/// A polars table as CSV, written atomically.
pub(crate) fn write_csv(path: &Path, df: &mut DataFrame) -> Result<(), ExperimentError> {
    let mut buf = Vec::new();
    CsvWriter::new(&mut buf)
        .finish(df)
        .map_err(|e| ExperimentError::Polars(format!("{}: {e}", path.display())))?;
    write_atomic(path, &buf)
}

impl ExperimentError {
    pub(crate) fn io(path: &Path, error: std::io::Error) -> Self {
        ExperimentError::Io {
            path: path.to_path_buf(),
            error,
        }
    }
}

/// Where and how a run happened; one JSON file per run under `<results>/runs/`, which the
/// report's header sums up.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunMeta {
    pub profile: String,
    pub only: Vec<String>,
    pub shard: Option<String>,
    pub commit: String,
    pub machine: String,
    pub device: String,
    pub seeds: Vec<u64>,
    pub started_unix: u64,
    pub wall_seconds: f64,
    pub cells: usize,
    pub cells_run: usize,
    pub records_written: usize,
    pub missing_data: Vec<String>,
    /// Cells that could not run, with the reason.
    #[serde(default)]
    pub failed: Vec<(String, String)>,
    /// The profile as it ran: the report counts only records this profile asks for.
    #[serde(default)]
    pub profile_spec: Option<Profile>,
    #[serde(default)]
    pub pid: u32,
}

impl RunMeta {
    /// Writes `<results>/runs/<started>-<shard>-<pid>.json` atomically (the pid keeps two
    /// runs started in the same second apart).
    pub fn save(&self, results: &Path) -> Result<PathBuf, ExperimentError> {
        let dir = results.join("runs");
        std::fs::create_dir_all(&dir).map_err(|e| ExperimentError::io(&dir, e))?;
        let tag = self.shard.as_deref().unwrap_or("all").replace('/', "-of-");
        let path = dir.join(format!("{}-{tag}-{}.json", self.started_unix, self.pid));
        let json = serde_json::to_vec_pretty(self).expect("run meta serialises");
        write_atomic(&path, &json)?;
        Ok(path)
    }

    /// Every run of a results folder, oldest first (unreadable files are skipped with a
    /// warning: they describe runs, not results).
    pub fn read_all(results: &Path) -> Vec<RunMeta> {
        let dir = results.join("runs");
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect()
            })
            .unwrap_or_default();
        paths.sort();
        paths
            .into_iter()
            .filter_map(|p| {
                let parsed = std::fs::read_to_string(&p)
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok());
                if parsed.is_none() {
                    eprintln!("warning: {} is not a run description; ignored", p.display());
                }
                parsed
            })
            .collect()
    }
}

/// `git rev-parse --short HEAD` (plus "-dirty" when the tree has changes), or "unknown".
pub fn current_commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(head) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{head}-dirty")
            } else {
                head
            }
        }
        None => "unknown".into(),
    }
}

/// CPU model and core count, e.g. "AMD EPYC 9654 96-Core Processor, 2 cores".
pub fn machine_description() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{model}, {cores} cores")
}
