//! The heads (`model::head`) as reducers of the grid: the standardised pretrained features of
//! the normal and the labelled anomalous training images train the head; its embedding
//! (DevNet's softplus score, Deep SAD's `phi(x) - c`, EIDN's f(x)) is what the detectors see,
//! and its distance from the origin is the head's own score.

use std::sync::Arc;

use linfa::ParamGuard;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::pretrained::{lookup, FeatureReducer, Standardiser};
use super::{ReduceError, Reducer};
use crate::backbone::cache::FeatureTable;
use crate::backbone::FeatureSpec;
use crate::data::ImageSet;
use crate::model::head::{FittedHead, HeadKind, HeadParams, HeadValidParams};

/// Checked settings: which features, and the head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadReducerValidParams {
    pub features: FeatureSpec,
    pub head: HeadValidParams,
}

crate::checked_params!(HeadReducerParams, HeadReducerValidParams, ReduceError);

impl HeadReducerParams {
    /// The head's published settings, its draws from `seed`.
    pub fn new(features: FeatureSpec, kind: HeadKind, seed: u64) -> Self {
        let head = HeadParams::new(kind, seed)
            .check()
            .expect("the published settings are valid");
        HeadReducerParams(HeadReducerValidParams { features, head })
    }
}

impl HeadReducerValidParams {
    fn validate(&self) -> Result<(), ReduceError> {
        self.features
            .validate()
            .map_err(|e| ReduceError::InvalidParams(e.to_string()))?;
        self.head
            .validate()
            .map_err(|e| ReduceError::InvalidParams(e.to_string()))
    }

    pub fn fit(
        &self,
        table: Arc<FeatureTable>,
        normal: &ImageSet,
        anomalous: &ImageSet,
    ) -> Result<FittedHeadReducer, ReduceError> {
        let x0 = lookup(&table, normal)?;
        let x1 = lookup(&table, anomalous)?;
        self.fit_features(table, x0, x1)
    }

    /// The same fit on features at hand (`eidn train` keeps them with a saved model).
    pub fn fit_features(
        &self,
        table: Arc<FeatureTable>,
        x0: Array2<f64>,
        x1: Array2<f64>,
    ) -> Result<FittedHeadReducer, ReduceError> {
        let standard = Standardiser::fit(&x0)?;
        let head = self
            .head
            .fit(&standard.apply(x0), &standard.apply(x1))
            .map_err(|e| ReduceError::Fit {
                reducer: "pretrained head",
                message: e.to_string(),
            })?;
        Ok(FittedHeadReducer {
            table,
            standard,
            head,
        })
    }

    /// A head trained before (`FittedHead::from_tensors`), standardised as when it was
    /// trained, on the normal features `x0` it was trained on.
    pub fn with_head(
        &self,
        table: Arc<FeatureTable>,
        x0: &Array2<f64>,
        head: FittedHead,
    ) -> Result<FittedHeadReducer, ReduceError> {
        Ok(FittedHeadReducer {
            table,
            standard: Standardiser::fit(x0)?,
            head,
        })
    }
}

pub struct FittedHeadReducer {
    table: Arc<FeatureTable>,
    standard: Standardiser,
    pub head: FittedHead,
}

impl Reducer for FittedHeadReducer {
    fn dim(&self) -> usize {
        self.head.params.out
    }

    fn transform(&self, images: &ImageSet) -> Result<Array2<f64>, ReduceError> {
        Ok(self.embed_features(lookup(&self.table, images)?))
    }
}

impl FeatureReducer for FittedHeadReducer {
    fn embed_features(&self, x: Array2<f64>) -> Array2<f64> {
        self.head
            .embed(&self.standard.apply(x))
            .expect("features of the backbone's width")
    }
}
