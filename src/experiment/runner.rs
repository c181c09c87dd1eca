//! Running a profile's cells: each job takes the next cell, skips it when the store has its
//! records (or its data is missing), else runs it; a failing cell is noted and the grid
//! goes on.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use candle_core::Device;

use super::cell::{plan_cell, run_cell};
use super::data_cache::DataCache;
use super::meta::RunMeta;
use super::profile::{Cell, Shard, StageId, ValidProfile};
use super::store::{now_unix, Failure, ResultStore, Reuse};
use super::ExperimentError;
use crate::data::verify::DatasetReport;
use crate::data::DatasetName;
use crate::kernels::threads;

pub struct RunOptions {
    pub data_dir: PathBuf,
    /// Pretrained weights and their feature caches (`backbone::weights::models_dir`).
    pub models_dir: PathBuf,
    /// Verification reports the caller already has (see `DataCache::new`).
    pub verified: Vec<DatasetReport>,
    pub device: Device,
    pub shard: Option<Shard>,
    /// Stages to run; empty = all.
    pub only: Vec<StageId>,
    /// Seeds to run; empty = all.
    pub seeds: Vec<u64>,
    /// One line per cell on stderr.
    pub verbose: bool,
    /// Cells run at once, each with its share of the cores; records are the same for any
    /// number (every computation is independent of the thread count).
    pub jobs: usize,
    /// Saved under `<results>/runs/` at the start and after every cell, so even a killed
    /// run's wall time and commit are on record.
    pub meta: Option<RunMeta>,
    /// Which stored records (and saved networks) count as done, by the build that wrote them.
    pub reuse: Reuse,
}

/// What a run did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RunSummary {
    pub cells: usize,
    pub cells_run: usize,
    pub cells_already_done: usize,
    pub records_written: usize,
    /// Cells skipped because their dataset is not in the data directory (Concrete here).
    pub missing_data: Vec<String>,
    /// Cells that could not run, with the reason; the grid went on without them.
    pub failed: Vec<(String, String)>,
    pub wall_seconds: f64,
}

/// Runs every cell of `profile` (this shard's share) that the store lacks.
pub fn run_profile(
    profile: &ValidProfile,
    store: &mut ResultStore,
    options: &RunOptions,
) -> Result<RunSummary, ExperimentError> {
    let start = Instant::now();
    let store_dir = store.dir().to_path_buf();
    let store_dir = store_dir.as_path();
    let cells: Vec<Cell> = super::cost::shard_cells(
        profile.cells_of(&options.only, &options.seeds),
        options.shard,
    );
    let summary = RunSummary {
        cells: cells.len(),
        ..RunSummary::default()
    };
    let mut data = DataCache::new(&options.data_dir, &options.verified);
    // Every dataset is checked before any work: only Concrete Cracks (which cannot be
    // fetched unattended) may be missing, and its cells are skipped.
    for cell in &cells {
        let dataset = cell.protocol.dataset;
        if data.status(dataset).is_none() && dataset != DatasetName::Concrete {
            return Err(ExperimentError::MissingData {
                dataset: dataset.to_string(),
                dir: options.data_dir.clone(),
            });
        }
    }
    let progress = Mutex::new(Progress {
        summary,
        meta: options.meta.clone(),
    });
    progress
        .lock()
        .expect("not poisoned")
        .save(store_dir, start)?;
    let data = Mutex::new(data);
    let store = Mutex::new(store);
    let next = AtomicUsize::new(0);
    let fatal: Mutex<Option<ExperimentError>> = Mutex::new(None);
    // Each job takes the next cell; a job's compute gets its share of the cores.
    let jobs = options.jobs.clamp(1, cells.len().max(1));
    let budget = (threads::available() / jobs).max(1);
    let worker = || {
        threads::with_budget(if jobs == 1 { 0 } else { budget }, || loop {
            let i = next.fetch_add(1, Ordering::SeqCst);
            if i >= cells.len() || fatal.lock().expect("not poisoned").is_some() {
                return;
            }
            if let Err(e) = one_cell(
                i, &cells, &data, &store, store_dir, &progress, start, options,
            ) {
                *fatal.lock().expect("not poisoned") = Some(e);
                return;
            }
        })
    };
    if jobs == 1 {
        worker();
    } else {
        std::thread::scope(|scope| {
            for _ in 0..jobs {
                scope.spawn(worker);
            }
        });
    }
    if let Some(e) = fatal.into_inner().expect("not poisoned") {
        return Err(e);
    }
    let mut progress = progress.into_inner().expect("not poisoned");
    progress.summary.wall_seconds = start.elapsed().as_secs_f64();
    progress.save(store_dir, start)?;
    Ok(progress.summary)
}

/// The run's summary so far and its saved meta, updated by whichever job finishes a cell.
struct Progress {
    summary: RunSummary,
    meta: Option<RunMeta>,
}

impl Progress {
    fn save(&mut self, store_dir: &Path, start: Instant) -> Result<(), ExperimentError> {
        if let Some(m) = self.meta.as_mut() {
            m.wall_seconds = start.elapsed().as_secs_f64();
            m.cells = self.summary.cells;
            m.cells_run = self.summary.cells_run;
            m.records_written = self.summary.records_written;
            m.missing_data = self.summary.missing_data.clone();
            m.failed = self.summary.failed.clone();
            m.save(store_dir)?;
        }
        Ok(())
    }
}

/// Runs cell `i` (or skips it: done, or its data missing); only a failing store is an error.
#[allow(clippy::too_many_arguments)]
fn one_cell(
    i: usize,
    cells: &[Cell],
    data: &Mutex<DataCache>,
    store: &Mutex<&mut ResultStore>,
    store_dir: &Path,
    progress: &Mutex<Progress>,
    start: Instant,
    options: &RunOptions,
) -> Result<(), ExperimentError> {
    let cell = &cells[i];
    let at = format!("[{}/{}] {}", i + 1, cells.len(), cell.id());
    let lock_progress = || progress.lock().expect("not poisoned");
    let status = data
        .lock()
        .expect("not poisoned")
        .status(cell.protocol.dataset);
    let Some(status) = status else {
        if options.verbose {
            eprintln!(
                "{at}: {} is not in the data directory; skipped",
                cell.protocol.dataset
            );
        }
        let mut p = lock_progress();
        p.summary.missing_data.push(cell.id());
        return Ok(());
    };
    let todo = plan_cell(
        cell,
        &status,
        &store.lock().expect("not poisoned"),
        options.reuse,
    );
    let outcome = todo.and_then(|(todo, other_build)| {
        if other_build > 0 {
            eprintln!(
                "{at}: {other_build} record(s) written by another build ({}) are computed again",
                match options.reuse {
                    Reuse::SameNumerics => "other numerics",
                    Reuse::SameBuild => "regress counts only this build's",
                }
            );
        }
        if todo.is_empty() {
            return Ok(None);
        }
        let protocol = &cell.protocol;
        let dataset = data
            .lock()
            .expect("not poisoned")
            .get(protocol.dataset, protocol.seed)?;
        run_cell(
            cell,
            &todo,
            &status,
            &dataset,
            store,
            store_dir,
            &options.device,
            &options.models_dir,
        )
        .map(Some)
    });
    let written = match outcome {
        Ok(None) => {
            lock_progress().summary.cells_already_done += 1;
            return Ok(());
        }
        Ok(Some(written)) => written,
        // The store itself failing is the end of the run; anything else is this cell's
        // problem: noted, and the grid goes on.
        Err(e @ (ExperimentError::Io { .. } | ExperimentError::Locked { .. })) => return Err(e),
        Err(e) => {
            let reason = e.to_string();
            eprintln!("{at}: FAILED: {reason}");
            store
                .lock()
                .expect("not poisoned")
                .append_failure(&Failure {
                    cell: cell.id(),
                    reason: reason.clone(),
                    written_unix: now_unix(),
                })?;
            let mut p = lock_progress();
            p.summary.failed.push((cell.id(), reason));
            return p.save(store_dir, start);
        }
    };
    if options.verbose {
        let parts: Vec<String> = written
            .iter()
            .map(|r| {
                format!(
                    "{}/{} {:.4}",
                    r.reducer.as_str(),
                    r.detector.as_str(),
                    r.auc
                )
            })
            .collect();
        eprintln!("{at}: AUC {}", parts.join(", "));
    }
    let mut p = lock_progress();
    p.summary.cells_run += 1;
    p.summary.records_written += written.len();
    p.save(store_dir, start)
}
