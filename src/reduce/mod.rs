//! Reducers: map images to a low-dimensional embedding on which the detectors run (paper
//! Fig 7). Each is fitted on training data and then transforms any [`ImageSet`] into an
//! `n x dim` matrix.
//!
//! - a trained network (EIDN's f(x), Deep SAD's `phi(x) - c`), wrapped by the experiment
//!   that trained it;
//! - [`PcaParams`]: linfa-reduction's PCA of the flattened pixels.
//! - [`LdaParams`]: Fisher LDA with shrinkage, written here (linfa has none), solved as a
//!   symmetric generalised eigenproblem with faer.
//! - [`PretrainedParams`]: a pretrained ImageNet backbone's features, standardised (`backbone`).
//! - [`LogisticParams`]: logistic regression on those features with the labelled anomalies,
//!   as a one-dimensional embedding (the supervised baseline).
//! - [`HeadReducerParams`]: a head (DevNet, Deep SAD or EIDN's loss on an MLP,
//!   `model::head`) trained on those features with the labelled anomalies.
//! - [`ComboParams`]: kNN (no labels) and logistic regression combined.

mod combo;
mod head;
mod lda;
mod logistic;
mod pca;
mod pretrained;

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::data::ImageSet;

pub use combo::{ComboParams, ComboValidParams, FittedCombo, LabelFree};
pub use head::{FittedHeadReducer, HeadReducerParams, HeadReducerValidParams};
pub use lda::{FittedLda, LdaParams, LdaValidParams};
pub use logistic::{FittedLogistic, LogisticParams, LogisticValidParams};
pub use pca::{FittedPca, PcaParams, PcaValidParams};
pub use pretrained::{FeatureReducer, FittedPretrained, PretrainedParams, PretrainedValidParams};

#[derive(Debug, thiserror::Error)]
pub enum ReduceError {
    #[error("invalid parameter: {0}")]
    InvalidParams(String),
    #[error("images have {got} values each but the reducer was fitted on {want}")]
    Dimension { got: usize, want: usize },
    #[error("{0} labels for {1} images")]
    Labels(usize, usize),
    #[error("{reducer} failed: {message}")]
    Fit {
        reducer: &'static str,
        message: String,
    },
    /// A trained network failed to embed the images.
    #[error("{0}")]
    Embed(String),
}

/// The reducers of the harness, by name (profiles and result records use these names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReducerKind {
    Eidn,
    /// EIDN trained with the validated EIDN+ recipe of its dataset (`configs/eidn_plus.toml`).
    EidnPlus,
    Pca,
    Lda,
    /// Deep SAD's trained encoder, `phi(x) - c` (Ruff et al. 2020).
    DeepSad,
    /// Deep SVDD: Deep SAD's network trained without the labelled anomalies.
    DeepSvdd,
    /// A pretrained ImageNet backbone's standardised features (no labels).
    Pretrained,
    /// Logistic regression on those features with the cell's labelled anomalies.
    PretrainedLogreg,
    /// DevNet's scoring MLP on those features.
    HeadDevnet,
    /// Deep SAD's objective on an MLP over those features.
    HeadDeepSad,
    /// EIDN's refined triplet loss on an MLP over those features.
    HeadEidn,
    /// kNN (no labels) and logistic regression, each standardised on the normal training
    /// images, averaged.
    PretrainedKnnLogreg,
    /// The same with the Mahalanobis distance in place of kNN.
    PretrainedMahalanobisLogreg,
}

impl ReducerKind {
    pub const ALL: [ReducerKind; 13] = [
        ReducerKind::Eidn,
        ReducerKind::EidnPlus,
        ReducerKind::Pca,
        ReducerKind::Lda,
        ReducerKind::DeepSad,
        ReducerKind::DeepSvdd,
        ReducerKind::Pretrained,
        ReducerKind::PretrainedLogreg,
        ReducerKind::HeadDevnet,
        ReducerKind::HeadDeepSad,
        ReducerKind::HeadEidn,
        ReducerKind::PretrainedKnnLogreg,
        ReducerKind::PretrainedMahalanobisLogreg,
    ];

    /// Whether the method is a trained EIDN encoder (either recipe).
    pub fn is_trained(self) -> bool {
        matches!(self, ReducerKind::Eidn | ReducerKind::EidnPlus)
    }

    /// Whether the method is Deep SAD's network (either way of training it).
    pub fn is_deep_sad(self) -> bool {
        matches!(self, ReducerKind::DeepSad | ReducerKind::DeepSvdd)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ReducerKind::Eidn => "eidn",
            ReducerKind::EidnPlus => "eidn_plus",
            ReducerKind::Pca => "pca",
            ReducerKind::Lda => "lda",
            ReducerKind::DeepSad => "deep_sad",
            ReducerKind::DeepSvdd => "deep_svdd",
            ReducerKind::Pretrained => "pretrained",
            ReducerKind::PretrainedLogreg => "pretrained_logreg",
            ReducerKind::HeadDevnet => "head_devnet",
            ReducerKind::HeadDeepSad => "head_deep_sad",
            ReducerKind::HeadEidn => "head_eidn",
            ReducerKind::PretrainedKnnLogreg => "pretrained_knn_logreg",
            ReducerKind::PretrainedMahalanobisLogreg => "pretrained_mahalanobis_logreg",
        }
    }

    /// Name in reports.
    pub fn label(self) -> &'static str {
        match self {
            ReducerKind::Eidn => "EIDN",
            ReducerKind::EidnPlus => "EIDN+",
            ReducerKind::Pca => "PCA",
            ReducerKind::Lda => "LDA",
            ReducerKind::DeepSad => "Deep SAD",
            ReducerKind::DeepSvdd => "Deep SVDD",
            ReducerKind::Pretrained => "pretrained",
            ReducerKind::PretrainedLogreg => "pretrained + LR",
            ReducerKind::HeadDevnet => "DevNet head",
            ReducerKind::HeadDeepSad => "Deep SAD head",
            ReducerKind::HeadEidn => "EIDN head",
            ReducerKind::PretrainedKnnLogreg => "kNN + LR",
            ReducerKind::PretrainedMahalanobisLogreg => "Mahalanobis + LR",
        }
    }

    /// The detector that is the method's own score in the tables: kNN for the pretrained
    /// features (no labels), the distance from the origin for everything else (EIDN's and
    /// logistic regression's embeddings are built for it).
    pub fn own_detector(self) -> crate::detect::DetectorKind {
        match self {
            ReducerKind::Pretrained => crate::detect::DetectorKind::Knn,
            _ => crate::detect::DetectorKind::OriginDistance,
        }
    }

    /// Whether the method reads pretrained backbone features.
    pub fn uses_features(self) -> bool {
        matches!(
            self,
            ReducerKind::Pretrained
                | ReducerKind::PretrainedLogreg
                | ReducerKind::HeadDevnet
                | ReducerKind::HeadDeepSad
                | ReducerKind::HeadEidn
                | ReducerKind::PretrainedKnnLogreg
                | ReducerKind::PretrainedMahalanobisLogreg
        )
    }
}

/// A fitted reducer.
pub trait Reducer {
    /// Output dimension.
    fn dim(&self) -> usize;
    fn transform(&self, images: &ImageSet) -> Result<Array2<f64>, ReduceError>;
}

/// Pixels scaled to [0, 1], one image per row.
pub fn flatten(images: &ImageSet) -> Array2<f64> {
    let d = images.image_len();
    let values: Vec<f64> = images
        .pixels
        .iter()
        .map(|&p| f64::from(p) / 255.0)
        .collect();
    Array2::from_shape_vec((images.len(), d), values).expect("pixels are len x image_len")
}

/// Any reducer with its checked settings; serialised into every result record's config.
/// EIDN's settings are the cell's training settings, recorded beside it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReducerSettings {
    Eidn,
    EidnPlus,
    Pca(PcaValidParams),
    Lda(LdaValidParams),
    /// The network's settings are the cell's, recorded beside it.
    DeepSad,
    DeepSvdd,
    Pretrained(PretrainedValidParams),
    PretrainedLogreg(LogisticValidParams),
    HeadDevnet(HeadReducerValidParams),
    HeadDeepSad(HeadReducerValidParams),
    HeadEidn(HeadReducerValidParams),
    PretrainedKnnLogreg(ComboValidParams),
    PretrainedMahalanobisLogreg(ComboValidParams),
}

impl ReducerSettings {
    pub fn kind(&self) -> ReducerKind {
        match self {
            ReducerSettings::Eidn => ReducerKind::Eidn,
            ReducerSettings::EidnPlus => ReducerKind::EidnPlus,
            ReducerSettings::Pca(_) => ReducerKind::Pca,
            ReducerSettings::Lda(_) => ReducerKind::Lda,
            ReducerSettings::DeepSad => ReducerKind::DeepSad,
            ReducerSettings::DeepSvdd => ReducerKind::DeepSvdd,
            ReducerSettings::Pretrained(_) => ReducerKind::Pretrained,
            ReducerSettings::PretrainedLogreg(_) => ReducerKind::PretrainedLogreg,
            ReducerSettings::HeadDevnet(_) => ReducerKind::HeadDevnet,
            ReducerSettings::HeadDeepSad(_) => ReducerKind::HeadDeepSad,
            ReducerSettings::HeadEidn(_) => ReducerKind::HeadEidn,
            ReducerSettings::PretrainedKnnLogreg(_) => ReducerKind::PretrainedKnnLogreg,
            ReducerSettings::PretrainedMahalanobisLogreg(_) => {
                ReducerKind::PretrainedMahalanobisLogreg
            }
        }
    }

    /// The backbone features the reducer reads, if any.
    pub fn features(&self) -> Option<&crate::backbone::FeatureSpec> {
        match self {
            ReducerSettings::Pretrained(p) => Some(&p.features),
            ReducerSettings::PretrainedLogreg(p) => Some(&p.features),
            ReducerSettings::HeadDevnet(p)
            | ReducerSettings::HeadDeepSad(p)
            | ReducerSettings::HeadEidn(p) => Some(&p.features),
            ReducerSettings::PretrainedKnnLogreg(p)
            | ReducerSettings::PretrainedMahalanobisLogreg(p) => Some(&p.logistic.features),
            _ => None,
        }
    }
}
