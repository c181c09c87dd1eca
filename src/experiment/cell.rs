//! One cell: its networks loaded or trained, each reducer fitted once, every detector fitted
//! on the normal training embeddings and scored on the test set, one record per method.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use candle_core::Device;
use ndarray::Array2;

use super::artifacts::write_fig6_points;
use super::networks::{load_or_train, NetworkReducer};
use super::profile::{Cell, StageId};
use super::select::{method_settings, record_config};
use super::store::{now_unix, Record, ResultStore, Reuse, Stored};
use super::ExperimentError;
use crate::backbone::cache::{self, FeatureTable};
use crate::backbone::FeatureSpec;
use crate::build_info::Build;
use crate::data::protocol::{OneVsRest, TestSet};
use crate::data::Dataset;
use crate::detect::Detector;
use crate::metrics::{average_precision, roc_auc};
use crate::model::deep_sad::DeepSad;
use crate::model::Eidn;
use crate::reduce::{Reducer, ReducerKind, ReducerSettings};

/// The methods of `cell` that the store lacks, with their checked settings.
pub(super) type Todo = Vec<(ReducerSettings, Detector)>;

/// The methods of `cell` the store lacks from a build `reuse` accepts, and how many of
/// them it holds only from another build (they are computed again).
pub(super) fn plan_cell(
    cell: &Cell,
    status: &str,
    store: &ResultStore,
    reuse: Reuse,
) -> Result<(Todo, usize), ExperimentError> {
    let (mut todo, mut other_build) = (Vec::new(), 0);
    for &(r, d) in &cell.methods {
        let (reducer, detector) = method_settings(cell, r, d)?;
        let (_, hash) = record_config(cell, &reducer, &detector, Some(status));
        match store.has(&cell.id(), r, d, &hash, reuse) {
            Stored::Usable => {}
            Stored::OtherBuild => {
                other_build += 1;
                todo.push((reducer, detector));
            }
            Stored::Missing => todo.push((reducer, detector)),
        }
    }
    Ok((todo, other_build))
}

/// The dataset's pretrained features (computed on first use, then from the cache).
fn features(
    cell: &Cell,
    dataset: &Dataset,
    spec: &FeatureSpec,
    models_dir: &Path,
) -> Result<Arc<FeatureTable>, ExperimentError> {
    cache::table(dataset, spec, models_dir, false).map_err(|e| ExperimentError::Cell {
        cell: cell.id(),
        message: e.to_string(),
    })
}

#[allow(clippy::too_many_arguments)]
pub(super) fn run_cell(
    cell: &Cell,
    todo: &[(ReducerSettings, Detector)],
    status: &str,
    dataset: &Dataset,
    store: &Mutex<&mut ResultStore>,
    store_dir: &Path,
    device: &Device,
    models_dir: &Path,
) -> Result<Vec<Record>, ExperimentError> {
    let protocol = &cell.protocol;
    let pools = protocol.pools(dataset)?;
    let test = protocol.test_set(dataset)?;
    let seed = protocol.seed;
    let at = (status, store_dir, device);
    let deep = (cell.deep.as_ref())
        .map(|d| load_or_train::<DeepSad>(cell, &d.params(seed), &pools, at))
        .transpose()?;
    let encoder = (cell.needs_encoder())
        .then(|| load_or_train::<Eidn>(cell, &cell.train.params(seed), &pools, at))
        .transpose()?;
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
                Box::new(NetworkReducer(model))
            }
            (ReducerSettings::Eidn | ReducerSettings::EidnPlus, None) => {
                return Err(ExperimentError::Cell {
                    cell: cell.id(),
                    message: "an EIDN method without a trained encoder".into(),
                })
            }
            (ReducerSettings::DeepSad | ReducerSettings::DeepSvdd, _) => match &deep {
                Some(model) => Box::new(NetworkReducer(model)),
                None => {
                    return Err(ExperimentError::Cell {
                        cell: cell.id(),
                        message: "a Deep SAD method in a cell without a Deep SAD network".into(),
                    })
                }
            },
            (ReducerSettings::Pca(p), _) => Box::new(p.fit(&pools.both())?),
            (ReducerSettings::Pretrained(p), _) => Box::new(p.fit(
                features(cell, dataset, &p.features, models_dir)?,
                &pools.normal,
            )?),
            (ReducerSettings::PretrainedLogreg(p), _) => Box::new(p.fit(
                features(cell, dataset, &p.features, models_dir)?,
                &pools.normal,
                &pools.anomalous,
            )?),
            (
                ReducerSettings::HeadDevnet(p)
                | ReducerSettings::HeadDeepSad(p)
                | ReducerSettings::HeadEidn(p),
                _,
            ) => Box::new(p.fit(
                features(cell, dataset, &p.features, models_dir)?,
                &pools.normal,
                &pools.anomalous,
            )?),
            (
                ReducerSettings::PretrainedKnnLogreg(p)
                | ReducerSettings::PretrainedMahalanobisLogreg(p),
                _,
            ) => Box::new(p.fit(
                features(cell, dataset, &p.logistic.features, models_dir)?,
                &pools.normal,
                &pools.anomalous,
            )?),
            (ReducerSettings::Lda(p), _) => {
                let (images, y) = pools.labelled();
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
    let notes = scorer.notes();
    for note in &notes {
        eprintln!(
            "{} {}/{}: {note}",
            cell.id(),
            reducer.as_str(),
            detector.as_str()
        );
    }
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
        build: Some(Build::current()),
        notes,
        per_type_auc: if protocol.shots.is_some() {
            per_type_auc(&scores, test)?
        } else {
            Vec::new()
        },
    })
}

/// The AUC of the normal test images against each anomaly class of the test set alone.
fn per_type_auc(scores: &[f64], test: &TestSet) -> Result<Vec<(String, f64)>, ExperimentError> {
    let labels = &test.images.labels;
    let mut types: Vec<u8> = (0..labels.len())
        .filter(|&i| test.is_anomaly[i])
        .map(|i| labels[i])
        .collect();
    types.sort_unstable();
    types.dedup();
    let mut out = Vec::new();
    for t in types {
        let keep: Vec<usize> = (0..labels.len())
            .filter(|&i| !test.is_anomaly[i] || labels[i] == t)
            .collect();
        let s: Vec<f64> = keep.iter().map(|&i| scores[i]).collect();
        let y: Vec<bool> = keep.iter().map(|&i| test.is_anomaly[i]).collect();
        let name =
            (test.images.class_names.get(t as usize).cloned()).unwrap_or_else(|| t.to_string());
        out.push((name, roc_auc(&s, &y)?));
    }
    Ok(out)
}

pub fn protocol_name(p: &OneVsRest) -> &'static str {
    if p.shots.is_some() {
        if p.train_anomaly_classes.is_some() {
            "few-shot-hard"
        } else {
            "few-shot-general"
        }
    } else if p.deep_sad {
        "deep-sad"
    } else if p.train_anomaly_classes.is_some() || p.test_anomaly_classes.is_some() {
        "unseen"
    } else {
        "one-vs-rest"
    }
}
