//! Runs a profile's cells: train (or reuse) the encoder, reduce, detect, score, append one
//! record per (reducer, detector). Finished records are skipped, so a killed run resumes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use candle_core::Device;
use ndarray::Array2;
use polars::prelude::{Column, DataFrame};

use super::profile::{Cell, Shard, StageId, ValidProfile};
use super::select::{method_settings, record_config};
use super::store::{now_unix, Failure, Record, ResultStore};
use super::ExperimentError;
use crate::data::manifest::Manifest;
use crate::data::protocol::{OneVsRest, Pools, TestSet};
use crate::data::verify::{verify, DatasetReport};
use crate::data::{load, Dataset, DatasetName, ImageSet};
use crate::detect::Detector;
use crate::metrics::{average_precision, roc_auc};
use crate::model::deep_sad::{self, DeepSad};
use crate::model::{Eidn, TrainOptions};
use crate::reduce::{
    DeepSadReducer, EidnReducer, PcaParams, Reducer, ReducerKind, ReducerSettings,
};

pub struct RunOptions {
    pub data_dir: PathBuf,
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
    pub meta: Option<super::RunMeta>,
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
    let cells: Vec<Cell> = profile
        .cells_of(&options.only, &options.seeds)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| options.shard.is_none_or(|s| s.takes(*i)))
        .map(|(_, c)| c)
        .collect();
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
    let budget = (crate::threads::available() / jobs).max(1);
    let worker = || {
        crate::threads::with_budget(if jobs == 1 { 0 } else { budget }, || loop {
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
    meta: Option<super::RunMeta>,
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
    let todo = plan_cell(cell, &status, &store.lock().expect("not poisoned"));
    let outcome = todo.and_then(|todo| {
        if todo.is_empty() {
            return Ok(None);
        }
        let protocol = &cell.protocol;
        let dataset = data
            .lock()
            .expect("not poisoned")
            .get(protocol.dataset, protocol.seed)?;
        run_cell(cell, &todo, &status, &dataset, store, store_dir, options).map(Some)
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

/// The methods of `cell` that the store lacks, with their checked settings.
type Todo = Vec<(ReducerSettings, Detector)>;

fn plan_cell(cell: &Cell, status: &str, store: &ResultStore) -> Result<Todo, ExperimentError> {
    let mut todo = Vec::new();
    for &(r, d) in &cell.methods {
        let (reducer, detector) = method_settings(cell, r, d)?;
        let (_, hash) = record_config(cell, &reducer, &detector, Some(status));
        if !store.has(&cell.id(), r, d, &hash) {
            todo.push((reducer, detector));
        }
    }
    Ok(todo)
}

fn run_cell(
    cell: &Cell,
    todo: &[(ReducerSettings, Detector)],
    status: &str,
    dataset: &Dataset,
    store: &Mutex<&mut ResultStore>,
    store_dir: &Path,
    options: &RunOptions,
) -> Result<Vec<Record>, ExperimentError> {
    let protocol = &cell.protocol;
    let pools = protocol.pools(dataset)?;
    let test = protocol.test_set(dataset)?;
    let deep = match &cell.deep {
        Some(_) => Some(deep_sad_for(
            cell,
            &pools,
            status,
            store_dir,
            &options.device,
        )?),
        None => None,
    };
    let encoder = if cell.needs_encoder() {
        Some(encoder_for(
            cell,
            &pools,
            status,
            store_dir,
            &options.device,
        )?)
    } else {
        None
    };
    // Each reducer is fitted once, whatever the order of the methods.
    let mut reducers: Vec<&ReducerSettings> = Vec::new();
    for (r, _) in todo {
        if !reducers.contains(&r) {
            reducers.push(r);
        }
    }
    reducers.sort_by_key(|r| r.kind());
    let mut written = Vec::new();
    for settings in reducers {
        let reducer = settings.kind();
        let fit_start = Instant::now();
        let fitted: Box<dyn Reducer + '_> = match (settings, &encoder) {
            (ReducerSettings::Eidn | ReducerSettings::EidnPlus, Some(model)) => {
                Box::new(EidnReducer(model))
            }
            (ReducerSettings::Eidn | ReducerSettings::EidnPlus, None) => {
                return Err(ExperimentError::Cell {
                    cell: cell.id(),
                    message: "an EIDN method without a trained encoder".into(),
                })
            }
            (ReducerSettings::DeepSad | ReducerSettings::DeepSvdd, _) => match &deep {
                Some(model) => Box::new(DeepSadReducer(model)),
                None => {
                    return Err(ExperimentError::Cell {
                        cell: cell.id(),
                        message: "a Deep SAD method in a cell without a Deep SAD network".into(),
                    })
                }
            },
            (ReducerSettings::Pca(p), _) => Box::new(p.fit(&both_pools(&pools))?),
            (ReducerSettings::Lda(p), _) => {
                let (images, y) = labelled_pools(&pools);
                Box::new(p.fit(&images, &y)?)
            }
        };
        let train_seconds = match (reducer, &encoder, &deep) {
            (r, Some(model), _) if r.is_trained() => model.config.train_seconds,
            (r, _, Some(model)) if r.is_deep_sad() => model.config.train_seconds,
            _ => fit_start.elapsed().as_secs_f64(),
        };
        let normal = fitted.transform(&pools.normal)?;
        let embed_start = Instant::now();
        let test_z = fitted.transform(&test.images)?;
        let embed_seconds = embed_start.elapsed().as_secs_f64();
        if reducer == ReducerKind::Eidn && cell.stages.contains(&StageId::Unseen) {
            write_fig6_points(
                cell,
                dataset,
                encoder.as_ref().expect("trained"),
                &pools,
                store_dir,
            )?;
        }
        for (_, detector) in todo.iter().filter(|(r, _)| r == settings) {
            let record = detect_and_score(
                cell,
                settings,
                detector,
                &normal,
                &test_z,
                &test,
                status,
                train_seconds,
                embed_seconds,
            )?;
            store.lock().expect("not poisoned").append(record.clone())?;
            written.push(record);
        }
    }
    Ok(written)
}

#[allow(clippy::too_many_arguments)]
fn detect_and_score(
    cell: &Cell,
    reducer_settings: &ReducerSettings,
    detector_settings: &Detector,
    normal: &Array2<f64>,
    test_z: &Array2<f64>,
    test: &TestSet,
    status: &str,
    train_seconds: f64,
    embed_seconds: f64,
) -> Result<Record, ExperimentError> {
    let protocol = &cell.protocol;
    let (reducer, detector) = (reducer_settings.kind(), detector_settings.kind());
    let at = |e: crate::detect::DetectError| ExperimentError::Cell {
        cell: format!("{} {}/{}", cell.id(), reducer.as_str(), detector.as_str()),
        message: e.to_string(),
    };
    let fit_start = Instant::now();
    let scorer = detector_settings.fit(normal).map_err(at)?;
    let fit_seconds = fit_start.elapsed().as_secs_f64();
    let score_start = Instant::now();
    let scores = scorer.score(test_z).map_err(at)?;
    let score_seconds = embed_seconds + score_start.elapsed().as_secs_f64();
    let auc = roc_auc(&scores, &test.is_anomaly)?;
    let ap = average_precision(&scores, &test.is_anomaly)?;
    let (config, config_hash) =
        record_config(cell, reducer_settings, detector_settings, Some(status));
    Ok(Record {
        cell: cell.id(),
        config_hash,
        dataset: protocol.dataset,
        protocol: protocol_name(protocol).into(),
        normal_class: protocol.normal_class,
        class_name: protocol.normal_name(&test.images.class_names),
        anomaly_ratio: protocol.anomaly_ratio,
        seed: protocol.seed,
        reducer,
        detector,
        auc,
        ap,
        train_seconds,
        fit_seconds,
        score_seconds,
        n_test: test.images.len(),
        n_test_anomalies: test.is_anomaly.iter().filter(|&&a| a).count(),
        data: status.to_string(),
        config,
        written_unix: now_unix(),
    })
}

pub fn protocol_name(p: &OneVsRest) -> &'static str {
    if p.deep_sad {
        "deep-sad"
    } else if p.train_anomaly_classes.is_some() || p.test_anomaly_classes.is_some() {
        "unseen"
    } else {
        "one-vs-rest"
    }
}

/// The cell's saved encoder when it was trained with the same settings on the same copy of
/// the data, else a new one (saved before it is used, so a later crash does not lose it).
fn encoder_for(
    cell: &Cell,
    pools: &Pools,
    data_status: &str,
    results: &Path,
    device: &Device,
) -> Result<Eidn, ExperimentError> {
    let dir = results.join("encoders").join(cell.id());
    let params = cell.train.params(cell.protocol.seed);
    if dir.join("eidn.json").exists() {
        if let Ok(model) = Eidn::load(&dir, device) {
            if model.config.params == params
                && model.config.protocol.as_ref() == Some(&cell.protocol)
                && model.config.data.as_deref() == Some(data_status)
            {
                return Ok(model);
            }
        }
    }
    let options = TrainOptions {
        progress: false,
        protocol: Some(cell.protocol.clone()),
        reference_ops: false,
        data: Some(data_status.to_string()),
        calibrate_fpr: None,
    };
    let model = params.check()?.fit(pools, device, &options)?;
    model.save(&dir)?;
    Ok(model)
}

/// The cell's saved Deep SAD network when trained with the same settings on the same copy
/// of the data, else a new one (saved before it is used).
fn deep_sad_for(
    cell: &Cell,
    pools: &Pools,
    data_status: &str,
    results: &Path,
    device: &Device,
) -> Result<DeepSad, ExperimentError> {
    let deep = cell.deep.as_ref().expect("a Deep SAD cell");
    let dir = results.join("encoders").join(cell.id());
    let params = deep.params(cell.protocol.seed);
    if dir.join(deep_sad::CONFIG_FILE).exists() {
        if let Ok(model) = DeepSad::load(&dir, device) {
            if model.config.params == params
                && model.config.protocol.as_ref() == Some(&cell.protocol)
                && model.config.data.as_deref() == Some(data_status)
            {
                return Ok(model);
            }
        }
    }
    let options = TrainOptions {
        protocol: Some(cell.protocol.clone()),
        data: Some(data_status.to_string()),
        ..TrainOptions::default()
    };
    let model = params.check()?.fit(pools, device, &options)?;
    model.save(&dir)?;
    Ok(model)
}

fn both_pools(pools: &Pools) -> ImageSet {
    let mut all = pools.normal.clone();
    all.pixels.extend_from_slice(&pools.anomalous.pixels);
    all.labels.extend_from_slice(&pools.anomalous.labels);
    all
}

/// Training images labelled 0 = normal, 1 = anomalous (the paper's binary LDA).
fn labelled_pools(pools: &Pools) -> (ImageSet, Vec<usize>) {
    let y = std::iter::repeat_n(0, pools.normal.len())
        .chain(std::iter::repeat_n(1, pools.anomalous.len()))
        .collect();
    (both_pools(pools), y)
}

/// Fig 6's points: the whole test split embedded by the EIDN encoder and by a 2-D PCA fitted
/// on the same training pools, each image tagged normal / seen / unseen.
fn write_fig6_points(
    cell: &Cell,
    dataset: &Dataset,
    model: &Eidn,
    pools: &Pools,
    results: &Path,
) -> Result<(), ExperimentError> {
    let p = &cell.protocol;
    let test = &dataset.test;
    let eidn = EidnReducer(model).transform(test)?;
    let pca = PcaParams::new(2).fit(&both_pools(pools))?.transform(test)?;
    let group: Vec<&str> = test
        .labels
        .iter()
        .map(|&l| {
            if p.is_normal(l) {
                "normal"
            } else if p
                .train_anomaly_classes
                .as_ref()
                .is_none_or(|k| k.contains(&l))
            {
                "seen"
            } else {
                "unseen"
            }
        })
        .collect();
    let col = |name: &str, m: &Array2<f64>, j: usize| {
        Column::new(name.into(), m.column(j.min(m.ncols() - 1)).to_vec())
    };
    let mut df = DataFrame::new_infer_height(vec![
        Column::new(
            "label".into(),
            test.labels.iter().map(|&l| l as u32).collect::<Vec<_>>(),
        ),
        Column::new("group".into(), group),
        col("eidn_x", &eidn, 0),
        col("eidn_y", &eidn, 1),
        col("pca_x", &pca, 0),
        col("pca_y", &pca, 1),
    ])
    .map_err(|e| ExperimentError::Polars(e.to_string()))?;
    let dir = results.join("artifacts");
    std::fs::create_dir_all(&dir).map_err(|e| ExperimentError::io(&dir, e))?;
    super::write_csv(&dir.join(format!("fig6-{}.csv", cell.id())), &mut df)
}

/// The status the grid records for a dataset, or None when the grid cannot use it (a
/// checksum mismatch is not the data the tables are about).
fn grid_status(report: &DatasetReport) -> Option<String> {
    report
        .status
        .usable()
        .then(|| report.status.label(report.variant.as_deref()))
        .flatten()
}

/// Datasets loaded once per run, and their verification status.
struct DataCache {
    dir: PathBuf,
    loaded: HashMap<(DatasetName, u64), Arc<Dataset>>,
    status: HashMap<DatasetName, Option<String>>,
}

impl DataCache {
    /// `verified`: reports the caller already made, so those datasets are not hashed and
    /// loaded a second time just to learn their status.
    fn new(dir: &Path, verified: &[DatasetReport]) -> Self {
        let status = verified
            .iter()
            .filter_map(|r| Some((DatasetName::parse(&r.name)?, grid_status(r))))
            .collect();
        DataCache {
            dir: dir.to_path_buf(),
            loaded: HashMap::new(),
            status,
        }
    }

    /// "exact", "variant <name>" or "unverified"; None when the dataset is missing or corrupt.
    fn status(&mut self, name: DatasetName) -> Option<String> {
        let dir = self.dir.clone();
        self.status
            .entry(name)
            .or_insert_with(|| grid_status(&verify(name, &dir, &Manifest::builtin())))
            .clone()
    }

    /// Loaded once per seed only where the split depends on it (Concrete, split folders).
    fn get(&mut self, name: DatasetName, seed: u64) -> Result<Arc<Dataset>, ExperimentError> {
        let key = (name, if name.split_uses_seed() { seed } else { 0 });
        if !self.loaded.contains_key(&key) {
            let data = load(name, &self.dir, key.1)?;
            self.loaded.insert(key, Arc::new(data));
        }
        Ok(self.loaded[&key].clone())
    }
}
