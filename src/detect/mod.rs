//! Classical anomaly detectors run on an embedding (paper Fig 7): each is fitted on the
//! embedded *normal* training samples and scores any embedded sample, higher = more
//! anomalous. linfa-style: `XParams` (unchecked, with builder methods) wraps `XValidParams`;
//! `ParamGuard::check` validates once, and `fit` on the valid params returns a fitted
//! detector that `score`s. The valid params serialise, so a result record names every setting.
//!
//! - [`IsolationForest`]: a seeded classic isolation forest (written here: the
//!   `extended-isolation-forest` crate draws from `thread_rng` and cannot be seeded, and
//!   every random choice of a run must flow from its seed; tests check it against that
//!   crate and scikit-learn).
//! - [`OneClassSvm`]: libsvm's nu one-class SVM solver with an RBF kernel and a bounded
//!   kernel cache (written here: linfa-svm's kernel matrix is dense, n^2 memory).
//! - [`Gmm`]: a Gaussian mixture (EM as scikit-learn's, from linfa-clustering's k-means),
//!   components chosen by BIC, scored by the negative log-likelihood with log-sum-exp.
//! - [`Lof`]: local outlier factor in scikit-learn's novelty mode, on a kiddo k-d tree.
//! - [`OriginDistance`]: EIDN's own score, the distance from the origin.
//! - [`Knn`](KnnParams): mean distance to the k nearest normal training points (DN2).
//! - [`Mahalanobis`](MahalanobisParams): squared Mahalanobis distance under the Ledoit-Wolf
//!   shrunk covariance of the normal training points.

/// `crate::checked_params!` for a detector, plus `fit` on the unchecked params (checks first).
macro_rules! detector_params {
    ($params:ident, $valid:ident, $fitted:ty) => {
        crate::checked_params!($params, $valid, DetectError);

        impl $params {
            pub fn fit(&self, x: &ndarray::Array2<f64>) -> Result<$fitted, DetectError> {
                linfa::ParamGuard::check_ref(self)?.fit(x)
            }
        }
    };
}
use detector_params;

mod gmm;
mod iforest;
mod knn;
mod lof;
mod mahalanobis;
mod neighbours;
mod ocsvm;

use linfa::ParamGuard;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

pub use gmm::{FittedGmm, GmmParams, GmmValidParams};
pub use iforest::{FittedIsolationForest, IsolationForestParams, IsolationForestValidParams};
pub use knn::{FittedKnn, KnnParams, KnnValidParams};
pub use lof::{FittedLof, LofParams, LofValidParams};
pub use mahalanobis::{FittedMahalanobis, MahalanobisParams, MahalanobisValidParams};
pub use ocsvm::{FittedOneClassSvm, Gamma, OneClassSvmParams, OneClassSvmValidParams};

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("invalid parameter: {0}")]
    InvalidParams(String),
    #[error("{detector} needs at least {needed} training samples, got {got}")]
    TooFewSamples {
        detector: &'static str,
        needed: usize,
        got: usize,
    },
    #[error("samples have {got} features but the detector was fitted on {want}")]
    Dimension { got: usize, want: usize },
    #[error("non-finite value in the input at row {row}")]
    NonFinite { row: usize },
    #[error("{detector} failed to fit: {message}")]
    Fit {
        detector: &'static str,
        message: String,
    },
}

/// A fitted detector: higher score = more anomalous.
pub trait AnomalyScorer {
    fn score(&self, x: &Array2<f64>) -> Result<Vec<f64>, DetectError>;

    /// What the fit could not do as asked (a solver stopped at its iteration cap, a
    /// component count EM could not fit): recorded with the result and printed, never
    /// silent.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The detectors of the harness, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKind {
    IsolationForest,
    OneClassSvm,
    Gmm,
    Lof,
    OriginDistance,
    Knn,
    Mahalanobis,
}

impl DetectorKind {
    pub const ALL: [DetectorKind; 7] = [
        DetectorKind::IsolationForest,
        DetectorKind::OneClassSvm,
        DetectorKind::Gmm,
        DetectorKind::Lof,
        DetectorKind::OriginDistance,
        DetectorKind::Knn,
        DetectorKind::Mahalanobis,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DetectorKind::IsolationForest => "isolation_forest",
            DetectorKind::OneClassSvm => "one_class_svm",
            DetectorKind::Gmm => "gmm",
            DetectorKind::Lof => "lof",
            DetectorKind::OriginDistance => "origin_distance",
            DetectorKind::Knn => "knn",
            DetectorKind::Mahalanobis => "mahalanobis",
        }
    }

    /// Name in reports.
    pub fn label(self) -> &'static str {
        match self {
            DetectorKind::IsolationForest => "isolation forest",
            DetectorKind::OneClassSvm => "one-class SVM",
            DetectorKind::Gmm => "GMM",
            DetectorKind::Lof => "LOF",
            DetectorKind::OriginDistance => "distance from origin",
            DetectorKind::Knn => "kNN",
            DetectorKind::Mahalanobis => "Mahalanobis",
        }
    }

    /// This detector's default settings with `seed`, checked: what every profile runs.
    pub fn default_params(self, seed: u64) -> Result<Detector, DetectError> {
        Ok(match self {
            DetectorKind::IsolationForest => {
                Detector::IsolationForest(IsolationForestParams::new(seed).check()?)
            }
            DetectorKind::OneClassSvm => {
                Detector::OneClassSvm(OneClassSvmParams::default().check()?)
            }
            DetectorKind::Gmm => Detector::Gmm(GmmParams::new(seed).check()?),
            DetectorKind::Lof => Detector::Lof(LofParams::default().check()?),
            DetectorKind::OriginDistance => Detector::OriginDistance,
            DetectorKind::Knn => Detector::Knn(KnnParams::default().check()?),
            DetectorKind::Mahalanobis => {
                Detector::Mahalanobis(MahalanobisParams::default().check()?)
            }
        })
    }
}

/// Any detector with its checked settings; serialised into every result record's config
/// (and so into its hash).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Detector {
    IsolationForest(IsolationForestValidParams),
    OneClassSvm(OneClassSvmValidParams),
    Gmm(GmmValidParams),
    Lof(LofValidParams),
    OriginDistance,
    Knn(KnnValidParams),
    Mahalanobis(MahalanobisValidParams),
}

impl Detector {
    pub fn kind(&self) -> DetectorKind {
        match self {
            Detector::IsolationForest(_) => DetectorKind::IsolationForest,
            Detector::OneClassSvm(_) => DetectorKind::OneClassSvm,
            Detector::Gmm(_) => DetectorKind::Gmm,
            Detector::Lof(_) => DetectorKind::Lof,
            Detector::OriginDistance => DetectorKind::OriginDistance,
            Detector::Knn(_) => DetectorKind::Knn,
            Detector::Mahalanobis(_) => DetectorKind::Mahalanobis,
        }
    }

    /// Fits on the normal samples `x`.
    pub fn fit(&self, x: &Array2<f64>) -> Result<Box<dyn AnomalyScorer>, DetectError> {
        Ok(match self {
            Detector::IsolationForest(p) => Box::new(p.fit(x)?),
            Detector::OneClassSvm(p) => Box::new(p.fit(x)?),
            Detector::Gmm(p) => Box::new(p.fit(x)?),
            Detector::Lof(p) => Box::new(p.fit(x)?),
            Detector::Knn(p) => Box::new(p.fit(x)?),
            Detector::Mahalanobis(p) => Box::new(p.fit(x)?),
            Detector::OriginDistance => {
                check_finite(x)?;
                Box::new(OriginDistance)
            }
        })
    }
}

/// Distance from the origin; needs no fitting.
#[derive(Clone, Copy, Debug, Default)]
pub struct OriginDistance;

impl AnomalyScorer for OriginDistance {
    fn score(&self, x: &Array2<f64>) -> Result<Vec<f64>, DetectError> {
        check_finite(x)?;
        Ok(x.rows()
            .into_iter()
            .map(|r| r.iter().map(|v| v * v).sum::<f64>().sqrt())
            .collect())
    }
}

/// Fills `out` in one contiguous chunk per thread (`f(first index, chunk)`), or on this
/// thread when `out.len() * work_per_item` is too little to pay for spawning (~1 M operations).
pub(crate) fn par_fill<T: Send>(
    out: &mut [T],
    work_per_item: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    par_chunks(out, 1, work_per_item, f)
}

/// [`par_fill`] over rows of `unit` items: chunks hold whole rows, and `f` gets the first row's
/// index.
pub(crate) fn par_chunks<T: Send>(
    out: &mut [T],
    unit: usize,
    work_per_row: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let threads = crate::kernels::threads::budget();
    let rows = out.len() / unit.max(1);
    if threads == 1 || rows.saturating_mul(work_per_row) < (1 << 20) || rows < 2 * threads {
        f(0, out);
        return;
    }
    let per_thread = rows.div_ceil(threads);
    std::thread::scope(|scope| {
        for (t, part) in out.chunks_mut(per_thread * unit).enumerate() {
            let f = &f;
            scope.spawn(move || f(t * per_thread, part));
        }
    });
}

pub(crate) fn check_finite(x: &Array2<f64>) -> Result<(), DetectError> {
    match x
        .rows()
        .into_iter()
        .position(|r| r.iter().any(|v| !v.is_finite()))
    {
        Some(row) => Err(DetectError::NonFinite { row }),
        None => Ok(()),
    }
}

/// Training data: at least `needed` rows, all finite.
pub(crate) fn check_training(
    x: &Array2<f64>,
    detector: &'static str,
    needed: usize,
) -> Result<(), DetectError> {
    if x.nrows() < needed {
        return Err(DetectError::TooFewSamples {
            detector,
            needed,
            got: x.nrows(),
        });
    }
    check_finite(x)
}

pub(crate) fn check_dim(x: &Array2<f64>, want: usize) -> Result<(), DetectError> {
    if x.ncols() != want {
        return Err(DetectError::Dimension {
            got: x.ncols(),
            want,
        });
    }
    check_finite(x)
}
