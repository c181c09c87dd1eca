//! `pretrained_knn_logreg` / `pretrained_mahalanobis_logreg`: one label-free score combined
//! with one supervised score, on the same standardised pretrained features. Each score is
//! standardised by its own values on the normal training images (kNN: the mean distance to
//! the 2 nearest *other* normal images; Mahalanobis: the training images' own distances;
//! logistic regression: its decision function), and the combined score is their mean: the
//! label-free score keeps what no label shows (unseen anomaly types), the regression what
//! the labels teach. The one-dimensional embedding is softplus(score), ranked as the score.

use std::sync::Arc;

use linfa::ParamGuard;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::logistic::{FittedLogistic, LogisticValidParams};
use super::pretrained::{lookup, FeatureReducer, Standardiser};
use super::{ReduceError, Reducer};
use crate::backbone::cache::FeatureTable;
use crate::data::ImageSet;
use crate::detect::{AnomalyScorer, KnnParams, MahalanobisParams};

/// kNN's k (DN2's 2, as the `knn` detector).
const K: usize = 2;

/// The label-free half of the combination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelFree {
    /// Mean distance to the k nearest normal training images.
    Knn { k: usize },
    /// Ledoit-Wolf Mahalanobis distance from the normal training images.
    Mahalanobis,
}

/// Checked settings: the regression's (its features are the combination's) and the
/// label-free score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComboValidParams {
    pub logistic: LogisticValidParams,
    pub label_free: LabelFree,
}

crate::checked_params!(ComboParams, ComboValidParams, ReduceError);

impl ComboParams {
    /// kNN (k = 2) with logistic regression.
    pub fn new(logistic: LogisticValidParams) -> Self {
        ComboParams(ComboValidParams {
            logistic,
            label_free: LabelFree::Knn { k: K },
        })
    }

    pub fn label_free(mut self, label_free: LabelFree) -> Self {
        self.0.label_free = label_free;
        self
    }
}

/// Mean and standard deviation of `v` (std 1 when the values are constant).
fn moments(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    (mean, if var > 1e-24 { var.sqrt() } else { 1.0 })
}

fn detect_error(e: crate::detect::DetectError) -> ReduceError {
    ReduceError::Fit {
        reducer: "label-free + LR",
        message: e.to_string(),
    }
}

fn knn(k: usize, z: &Array2<f64>) -> Result<Box<dyn AnomalyScorer>, ReduceError> {
    let fitted = (KnnParams::default().n_neighbors(k).check())
        .map_err(detect_error)?
        .fit(z)
        .map_err(detect_error)?;
    Ok(Box::new(fitted))
}

impl ComboValidParams {
    fn validate(&self) -> Result<(), ReduceError> {
        if self.label_free == (LabelFree::Knn { k: 0 }) {
            return Err(ReduceError::InvalidParams("kNN + LR: k must be > 0".into()));
        }
        Ok(())
    }

    pub fn fit(
        &self,
        table: Arc<FeatureTable>,
        normal: &ImageSet,
        anomalous: &ImageSet,
    ) -> Result<FittedCombo, ReduceError> {
        let x0 = lookup(&table, normal)?;
        let x1 = lookup(&table, anomalous)?;
        self.fit_features(table, x0, x1)
    }

    pub fn fit_features(
        &self,
        table: Arc<FeatureTable>,
        x0: Array2<f64>,
        x1: Array2<f64>,
    ) -> Result<FittedCombo, ReduceError> {
        let logistic = self.logistic.fit_features(table.clone(), x0.clone(), x1)?;
        let standard = Standardiser::fit(&x0)?;
        let z0 = standard.apply(x0.clone());
        let (label_free, reference) = match self.label_free {
            LabelFree::Knn { k } => {
                if x0.nrows() <= k {
                    return Err(ReduceError::InvalidParams(format!(
                        "kNN + LR: {} normal images for k = {k}",
                        x0.nrows()
                    )));
                }
                // Each normal image is its own nearest neighbour at distance 0: the mean
                // over k + 1 neighbours times (k + 1) / k is the mean over the k nearest
                // others.
                let scale = (k + 1) as f64 / k as f64;
                let loo: Vec<f64> = score(knn(k + 1, &z0)?.as_ref(), &z0)?
                    .into_iter()
                    .map(|s| s * scale)
                    .collect();
                (knn(k, &z0)?, loo)
            }
            LabelFree::Mahalanobis => {
                let fitted: Box<dyn AnomalyScorer> = Box::new(
                    (MahalanobisParams::default().check())
                        .map_err(detect_error)?
                        .fit(&z0)
                        .map_err(detect_error)?,
                );
                let own = score(fitted.as_ref(), &z0)?;
                (fitted, own)
            }
        };
        Ok(FittedCombo {
            free_moments: moments(&reference),
            lr_moments: moments(&logistic.decision_of(x0)),
            table,
            standard,
            label_free,
            logistic,
        })
    }
}

fn score(scorer: &dyn AnomalyScorer, z: &Array2<f64>) -> Result<Vec<f64>, ReduceError> {
    scorer
        .score(z)
        .map_err(|e| ReduceError::Embed(e.to_string()))
}

pub struct FittedCombo {
    table: Arc<FeatureTable>,
    standard: Standardiser,
    label_free: Box<dyn AnomalyScorer>,
    logistic: FittedLogistic,
    free_moments: (f64, f64),
    lr_moments: (f64, f64),
}

impl FittedCombo {
    /// The combined score of features `x`.
    pub fn scores(&self, x: Array2<f64>) -> Result<Vec<f64>, ReduceError> {
        let lr = self.logistic.decision_of(x.clone());
        let free = score(self.label_free.as_ref(), &self.standard.apply(x))?;
        let ((km, ks), (lm, ls)) = (self.free_moments, self.lr_moments);
        Ok(free
            .iter()
            .zip(&lr)
            .map(|(k, l)| 0.5 * ((k - km) / ks + (l - lm) / ls))
            .collect())
    }
}

impl Reducer for FittedCombo {
    fn dim(&self) -> usize {
        1
    }

    fn transform(&self, images: &ImageSet) -> Result<Array2<f64>, ReduceError> {
        let s = self.scores(lookup(&self.table, images)?)?;
        Ok(softplus_column(s))
    }
}

impl FeatureReducer for FittedCombo {
    fn embed_features(&self, x: Array2<f64>) -> Array2<f64> {
        // Features come from the backbone the combination was fitted on: their width is its.
        softplus_column(self.scores(x).expect("features of the fitted width"))
    }
}

fn softplus_column(s: Vec<f64>) -> Array2<f64> {
    let n = s.len();
    let values = s
        .into_iter()
        .map(|m| m.max(0.0) + (-m.abs()).exp().ln_1p())
        .collect();
    Array2::from_shape_vec((n, 1), values).expect("n x 1")
}
