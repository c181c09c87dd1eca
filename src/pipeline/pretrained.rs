//! One method on pretrained features, fitted on a protocol's training pools, then scored,
//! calibrated, saved and loaded.
//!
//! What is saved is the training images' backbone features (`features.safetensors`, normal
//! and labelled anomalous) and the settings (`pretrained.json`); loading fits the reducer and
//! detector on those features again. kNN's fitted state is its training set anyway, and every
//! fit here is deterministic (standardisation, Newton's method, Ledoit-Wolf), so the loaded
//! model scores exactly as the trained one did (tested) without a file format per detector.
//! A trained head is the exception: its weights (`head.*` in the same file) are saved and
//! loaded, not trained again.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use candle_core::{Device, Tensor};
use linfa::ParamGuard;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::{PipelineError, PretrainedMethod};
use crate::backbone::cache::FeatureTable;
use crate::backbone::weights::WeightsEntry;
use crate::backbone::{FeatureSpec, FEATURES};
use crate::build_info::Build;
use crate::data::catalog::DatasetSpec;
use crate::data::protocol::{OneVsRest, Pools};
use crate::data::{DataFingerprint, ImageSet};
use crate::detect::AnomalyScorer;
use crate::model::head::{FittedHead, HeadKind};
use crate::model::{load_config, save_model, Calibration, CalibrationSource};
use crate::reduce::{
    ComboParams, FeatureReducer, HeadReducerParams, LabelFree, LogisticParams, PretrainedParams,
    ReducerKind,
};

/// File names inside a model directory.
pub const PRETRAINED_CONFIG_FILE: &str = "pretrained.json";
pub const PRETRAINED_FEATURES_FILE: &str = "features.safetensors";
/// A head's tensors in the features file are named `head.<layer>`.
const HEAD_PREFIX: &str = "head.";

/// Everything needed to rebuild and describe a fitted method; saved as `pretrained.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PretrainedConfig {
    pub method: PretrainedMethod,
    pub features: FeatureSpec,
    /// SHA-256 of the backbone weights the saved features came from: a model is never
    /// scored with other weights.
    pub backbone_sha256: String,
    /// Channels, height and width of the training images (`score` decodes files to them;
    /// the backbone then resizes to `features.size`).
    pub input: [usize; 3],
    /// Seeds the detector (kNN and Mahalanobis draw nothing; recorded for the record's sake).
    pub seed: u64,
    /// How the training pools were drawn (absent for pools built by hand).
    pub protocol: Option<OneVsRest>,
    pub n_normal: usize,
    pub n_anomalous: usize,
    /// Features of the pools (computed or read from the cache) and the fit, in seconds.
    pub fit_seconds: f64,
    /// The training data copy's verification status, as for EIDN.
    #[serde(default)]
    pub data: Option<String>,
    #[serde(default)]
    pub calibration: Option<Calibration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_fingerprint: Option<DataFingerprint>,
}

/// A fitted method on pretrained features.
pub struct PretrainedModel {
    pub config: PretrainedConfig,
    /// The training images' raw features, `n x 1280`: what is saved.
    normal: Array2<f32>,
    anomalous: Array2<f32>,
    /// A head's trained weights (empty for the other methods).
    head: HashMap<String, Tensor>,
    /// Embeds the images scored: the backbone for new files, or a dataset's cached
    /// features ([`PretrainedModel::with_table`]).
    table: Arc<FeatureTable>,
    reducer: Box<dyn FeatureReducer>,
    scorer: Box<dyn AnomalyScorer>,
}

/// The head a method trains, if any.
fn head_kind(reducer: ReducerKind) -> Option<HeadKind> {
    match reducer {
        ReducerKind::HeadDevnet => Some(HeadKind::Devnet),
        ReducerKind::HeadDeepSad => Some(HeadKind::DeepSad),
        ReducerKind::HeadEidn => Some(HeadKind::Eidn),
        _ => None,
    }
}

impl PretrainedModel {
    /// Fits `method` on the features of `pools` (looked up in `table`, computed for images
    /// it lacks); `table` also embeds the images later scored.
    pub fn fit(
        method: PretrainedMethod,
        table: Arc<FeatureTable>,
        pools: &Pools,
        seed: u64,
    ) -> Result<PretrainedModel, PipelineError> {
        if method.uses_labels() && pools.anomalous.is_empty() {
            return Err(PipelineError::InvalidParams(format!(
                "{method} learns from labelled anomalies, and the training pools hold none"
            )));
        }
        let start = Instant::now();
        let features = |set: &ImageSet| -> Result<Array2<f32>, PipelineError> {
            // The table holds f32; the round trip through f64 is exact.
            Ok(table.features(set)?.mapv(|v| v as f32))
        };
        let (normal, anomalous) = (features(&pools.normal)?, features(&pools.anomalous)?);
        let config = PretrainedConfig {
            method,
            features: table.spec.clone(),
            backbone_sha256: WeightsEntry::of(table.spec.backbone).sha256,
            input: [
                pools.normal.channels,
                pools.normal.height,
                pools.normal.width,
            ],
            seed,
            protocol: None,
            n_normal: normal.nrows(),
            n_anomalous: anomalous.nrows(),
            fit_seconds: 0.0,
            data: None,
            calibration: None,
            dataset: None,
            build: Some(Build::current()),
            data_fingerprint: None,
        };
        let mut model = Self::assemble(config, table, normal, anomalous, HashMap::new())?;
        model.config.fit_seconds = start.elapsed().as_secs_f64();
        Ok(model)
    }

    /// The reducer and detector of `config.method`, fitted on the saved features.
    /// A head's `saved` weights are used when given, else it is trained.
    fn assemble(
        config: PretrainedConfig,
        table: Arc<FeatureTable>,
        normal: Array2<f32>,
        anomalous: Array2<f32>,
        saved: HashMap<String, Tensor>,
    ) -> Result<PretrainedModel, PipelineError> {
        same_features(&table, &config)?;
        let (reducer_kind, detector_kind) = config.method.grid_method();
        let spec = config.features.clone();
        let x0 = normal.mapv(f64::from);
        let x1 = || anomalous.mapv(f64::from);
        let mut head = HashMap::new();
        let reducer: Box<dyn FeatureReducer> = match reducer_kind {
            ReducerKind::Pretrained => Box::new(
                PretrainedParams::new(spec)
                    .check()?
                    .fit_features(table.clone(), x0.clone())?,
            ),
            ReducerKind::PretrainedLogreg => {
                Box::new(LogisticParams::new(spec).check()?.fit_features(
                    table.clone(),
                    x0.clone(),
                    anomalous.mapv(f64::from),
                )?)
            }
            ReducerKind::PretrainedKnnLogreg | ReducerKind::PretrainedMahalanobisLogreg => {
                let mut params = ComboParams::new(LogisticParams::new(spec).check()?);
                if reducer_kind == ReducerKind::PretrainedMahalanobisLogreg {
                    params = params.label_free(LabelFree::Mahalanobis);
                }
                Box::new(
                    params
                        .check()?
                        .fit_features(table.clone(), x0.clone(), x1())?,
                )
            }
            kind if head_kind(kind).is_some() => {
                let kind = head_kind(kind).expect("a head");
                let params = HeadReducerParams::new(spec, kind, config.seed).check()?;
                let fitted = if saved.is_empty() {
                    params.fit_features(table.clone(), x0.clone(), x1())?
                } else {
                    let trained = FittedHead::from_tensors(params.head.clone(), FEATURES, &saved)
                        .map_err(|m| {
                        PipelineError::InvalidParams(format!(
                            "the saved {} head: {m}",
                            kind.as_str()
                        ))
                    })?;
                    params.with_head(table.clone(), &x0, trained)?
                };
                head = fitted.head.tensors()?;
                Box::new(fitted)
            }
            other => {
                return Err(PipelineError::InvalidParams(format!(
                    "{} is not a reducer of pretrained features",
                    other.as_str()
                )))
            }
        };
        let z0 = reducer.embed_features(x0);
        let scorer = detector_kind.default_params(config.seed)?.fit(&z0)?;
        Ok(PretrainedModel {
            config,
            normal,
            anomalous,
            head,
            table,
            reducer,
            scorer,
        })
    }

    /// Anomaly scores of `images` (higher: more anomalous), embedded through the model's
    /// table.
    pub fn score(&self, images: &ImageSet) -> Result<Vec<f64>, PipelineError> {
        let z = self.reducer.embed_features(self.table.features(images)?);
        Ok(self.scorer.score(&z)?)
    }

    /// Calibrates the score threshold at false-positive rate `fpr` on normal images.
    pub fn calibrate(
        &mut self,
        normals: &ImageSet,
        fpr: f64,
        source: CalibrationSource,
    ) -> Result<(), PipelineError> {
        let scores = self.score(normals)?;
        self.config.calibration = Some(Calibration::new(scores, fpr, source)?);
        Ok(())
    }

    /// Writes `features.safetensors` and `pretrained.json` into `dir`, each through a
    /// temporary file and a rename; the config records the features file's SHA-256.
    pub fn save(&self, dir: &Path) -> Result<(), PipelineError> {
        let write = |path: &Path| -> candle_core::Result<()> {
            let mut tensors = HashMap::new();
            for (name, x) in [("normal", &self.normal), ("anomalous", &self.anomalous)] {
                // safetensors has no empty tensors: no labelled anomalies, no entry.
                if x.nrows() > 0 {
                    let values: Vec<f32> = x.iter().copied().collect();
                    tensors.insert(
                        name.to_string(),
                        Tensor::from_vec(values, (x.nrows(), FEATURES), &Device::Cpu)?,
                    );
                }
            }
            for (name, t) in &self.head {
                tensors.insert(format!("{HEAD_PREFIX}{name}"), t.clone());
            }
            candle_core::safetensors::save(&tensors, path)
        };
        Ok(save_model(
            dir,
            PRETRAINED_FEATURES_FILE,
            write,
            PRETRAINED_CONFIG_FILE,
            &self.config,
        )?)
    }

    /// Reads a model saved by [`PretrainedModel::save`] and fits it again on its features.
    /// `table_for` gives the table that embeds the images to score, for the model's feature
    /// settings: a dataset's cached features (evaluation) or the backbone alone (new files).
    pub fn load(
        dir: &Path,
        table_for: impl FnOnce(&PretrainedConfig) -> Result<Arc<FeatureTable>, PipelineError>,
    ) -> Result<PretrainedModel, PipelineError> {
        let config: PretrainedConfig =
            load_config(dir, PRETRAINED_CONFIG_FILE, PRETRAINED_FEATURES_FILE)?;
        let path = dir.join(PRETRAINED_CONFIG_FILE);
        let bad = |message: String| PipelineError::BadModelFile {
            path: path.clone(),
            message,
        };
        config.features.validate().map_err(|e| bad(e.to_string()))?;
        let expected = WeightsEntry::of(config.features.backbone).sha256;
        if !config.backbone_sha256.eq_ignore_ascii_case(&expected) {
            return Err(bad(format!(
                "its features came from {} weights with SHA-256 {}, and this eidn has {expected}; \
                 retrain it with this eidn",
                config.features.backbone, config.backbone_sha256
            )));
        }
        if let Some(c) = &config.calibration {
            c.check().map_err(bad)?;
        }
        let features_path = dir.join(PRETRAINED_FEATURES_FILE);
        let mut tensors =
            candle_core::safetensors::load(&features_path, &Device::Cpu).map_err(|e| {
                PipelineError::BadModelFile {
                    path: features_path.clone(),
                    message: e.to_string(),
                }
            })?;
        let mut take = |name: &str, rows: usize| -> Result<Array2<f32>, PipelineError> {
            let bad = |message: String| PipelineError::BadModelFile {
                path: features_path.clone(),
                message,
            };
            let values = match tensors.remove(name) {
                None if rows == 0 => Vec::new(),
                None => return Err(bad(format!("no \"{name}\" features ({rows} expected)"))),
                Some(t) => {
                    if t.dims() != [rows, FEATURES] {
                        return Err(bad(format!(
                            "\"{name}\" is {:?}, the config says {rows} x {FEATURES}",
                            t.dims()
                        )));
                    }
                    t.flatten_all()
                        .and_then(|t| t.to_vec1::<f32>())
                        .map_err(|e| bad(e.to_string()))?
                }
            };
            if values.iter().any(|v| !v.is_finite()) {
                return Err(bad(format!("\"{name}\" holds a value that is not finite")));
            }
            Ok(Array2::from_shape_vec((rows, FEATURES), values).expect("rows x 1280"))
        };
        let normal = take("normal", config.n_normal)?;
        let anomalous = take("anomalous", config.n_anomalous)?;
        let head: HashMap<String, Tensor> = tensors
            .into_iter()
            .filter_map(|(k, t)| k.strip_prefix(HEAD_PREFIX).map(|k| (k.to_string(), t)))
            .collect();
        if head_kind(config.method.grid_method().0).is_some() && head.is_empty() {
            return Err(PipelineError::BadModelFile {
                path: features_path,
                message: format!("no trained {} head in it", config.method),
            });
        }
        let table = table_for(&config)?;
        Self::assemble(config, table, normal, anomalous, head)
    }

    /// The same fitted model embedding the images it scores through `table` (features of
    /// the same backbone and size, so the scores are the same): nothing is fitted again.
    pub fn with_table(self, table: Arc<FeatureTable>) -> Result<PretrainedModel, PipelineError> {
        same_features(&table, &self.config)?;
        Ok(PretrainedModel { table, ..self })
    }
}

/// Features of one backbone and size are never mixed with another's.
fn same_features(table: &FeatureTable, config: &PretrainedConfig) -> Result<(), PipelineError> {
    if table.spec != config.features {
        return Err(PipelineError::InvalidParams(format!(
            "features of {:?} given for a model of {:?}",
            table.spec, config.features
        )));
    }
    Ok(())
}
