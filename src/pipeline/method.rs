//! The methods on pretrained features, each a reducer and a detector of the grid.

use serde::{Deserialize, Serialize};

use crate::detect::DetectorKind;
use crate::reduce::ReducerKind;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PretrainedMethod {
    /// Standardised features, mean distance to the 2 nearest normal training images: no labels.
    PretrainedKnn,
    /// Standardised features, Ledoit-Wolf Mahalanobis distance from the normal ones: no labels.
    PretrainedMahalanobis,
    /// Class-balanced logistic regression on the normal and the labelled anomalous features.
    PretrainedLogreg,
    /// DevNet's scoring MLP, trained on the features (its weights are saved).
    HeadDevnet,
    /// Deep SAD's objective on an MLP over the features.
    HeadDeepSad,
    /// EIDN's refined triplet loss on an MLP over the features.
    HeadEidn,
    /// kNN and logistic regression, each standardised on the normal images, averaged.
    PretrainedKnnLogreg,
    /// Mahalanobis and logistic regression, likewise.
    PretrainedMahalanobisLogreg,
}

impl PretrainedMethod {
    pub const ALL: [PretrainedMethod; 8] = [
        PretrainedMethod::PretrainedKnn,
        PretrainedMethod::PretrainedMahalanobis,
        PretrainedMethod::PretrainedLogreg,
        PretrainedMethod::HeadDevnet,
        PretrainedMethod::HeadDeepSad,
        PretrainedMethod::HeadEidn,
        PretrainedMethod::PretrainedKnnLogreg,
        PretrainedMethod::PretrainedMahalanobisLogreg,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PretrainedMethod::PretrainedKnn => "pretrained_knn",
            PretrainedMethod::PretrainedMahalanobis => "pretrained_mahalanobis",
            PretrainedMethod::PretrainedLogreg => "pretrained_logreg",
            PretrainedMethod::HeadDevnet => "head_devnet",
            PretrainedMethod::HeadDeepSad => "head_deep_sad",
            PretrainedMethod::HeadEidn => "head_eidn",
            PretrainedMethod::PretrainedKnnLogreg => "pretrained_knn_logreg",
            PretrainedMethod::PretrainedMahalanobisLogreg => "pretrained_mahalanobis_logreg",
        }
    }

    pub fn parse(s: &str) -> Option<PretrainedMethod> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// The grid's (reducer, detector) that this method is.
    pub fn grid_method(self) -> (ReducerKind, DetectorKind) {
        match self {
            PretrainedMethod::PretrainedKnn => (ReducerKind::Pretrained, DetectorKind::Knn),
            PretrainedMethod::PretrainedMahalanobis => {
                (ReducerKind::Pretrained, DetectorKind::Mahalanobis)
            }
            PretrainedMethod::PretrainedLogreg => {
                (ReducerKind::PretrainedLogreg, DetectorKind::OriginDistance)
            }
            PretrainedMethod::HeadDevnet => (ReducerKind::HeadDevnet, DetectorKind::OriginDistance),
            PretrainedMethod::HeadDeepSad => {
                (ReducerKind::HeadDeepSad, DetectorKind::OriginDistance)
            }
            PretrainedMethod::HeadEidn => (ReducerKind::HeadEidn, DetectorKind::OriginDistance),
            PretrainedMethod::PretrainedKnnLogreg => (
                ReducerKind::PretrainedKnnLogreg,
                DetectorKind::OriginDistance,
            ),
            PretrainedMethod::PretrainedMahalanobisLogreg => (
                ReducerKind::PretrainedMahalanobisLogreg,
                DetectorKind::OriginDistance,
            ),
        }
    }

    /// Whether it learns from the labelled anomalies (the others ignore them).
    pub fn uses_labels(self) -> bool {
        !matches!(
            self,
            PretrainedMethod::PretrainedKnn | PretrainedMethod::PretrainedMahalanobis
        )
    }
}

impl std::fmt::Display for PretrainedMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
