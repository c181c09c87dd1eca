//! The `pretrained` reducer: a pretrained ImageNet backbone's features (`backbone`),
//! standardised on the normal training images' features (each of the 1,280 values to mean
//! 0 and standard deviation 1 over them). Most detectors work on all 1,280 dimensions; where
//! one cannot in reasonable time (GMM's full covariances), `components` adds a PCA of the
//! standardised normal features to that many dimensions.

use std::sync::Arc;

use faer::Mat;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::{ReduceError, Reducer};
use crate::backbone::cache::FeatureTable;
use crate::backbone::{FeatureSpec, FEATURES};
use crate::data::ImageSet;

/// Checked settings: which features, and the PCA step if any.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PretrainedValidParams {
    pub features: FeatureSpec,
    pub components: Option<usize>,
}

crate::checked_params!(PretrainedParams, PretrainedValidParams, ReduceError);

impl PretrainedParams {
    pub fn new(features: FeatureSpec) -> Self {
        PretrainedParams(PretrainedValidParams {
            features,
            components: None,
        })
    }

    pub fn components(mut self, m: Option<usize>) -> Self {
        self.0.components = m;
        self
    }
}

impl PretrainedValidParams {
    fn validate(&self) -> Result<(), ReduceError> {
        self.features
            .validate()
            .map_err(|e| ReduceError::InvalidParams(e.to_string()))?;
        if self.components.is_some_and(|m| m == 0 || m > FEATURES) {
            return Err(ReduceError::InvalidParams(format!(
                "pretrained PCA components must be 1..={FEATURES}"
            )));
        }
        Ok(())
    }

    /// Fits the standardisation (and PCA) on the features of `normal` from `table`.
    pub fn fit(
        &self,
        table: Arc<FeatureTable>,
        normal: &ImageSet,
    ) -> Result<FittedPretrained, ReduceError> {
        if table.spec != self.features {
            return Err(ReduceError::InvalidParams(format!(
                "features of {:?} given for {:?}",
                table.spec, self.features
            )));
        }
        let x = lookup(&table, normal)?;
        self.fit_features(table, x)
    }

    /// The same fit on the features `x` of the normal images (`eidn train` keeps them with a
    /// saved model); `table` embeds the images `transform` is given.
    pub fn fit_features(
        &self,
        table: Arc<FeatureTable>,
        x: Array2<f64>,
    ) -> Result<FittedPretrained, ReduceError> {
        let standard = Standardiser::fit(&x)?;
        let projection = match self.components {
            Some(m) => Some(pca(&standard.apply(x), m)?),
            None => None,
        };
        Ok(FittedPretrained {
            table,
            standard,
            projection,
        })
    }
}

pub(super) fn lookup(table: &FeatureTable, images: &ImageSet) -> Result<Array2<f64>, ReduceError> {
    table
        .features(images)
        .map_err(|e| ReduceError::Embed(e.to_string()))
}

/// Per-feature mean and scale of the normal training features.
pub(super) struct Standardiser {
    mean: Vec<f64>,
    /// 1 / standard deviation (1 where a feature is constant).
    inv_std: Vec<f64>,
}

impl Standardiser {
    pub(super) fn fit(x: &Array2<f64>) -> Result<Standardiser, ReduceError> {
        let n = x.nrows();
        if n < 2 {
            return Err(ReduceError::InvalidParams(format!(
                "standardising features needs at least 2 normal images, got {n}"
            )));
        }
        let mean: Vec<f64> = x
            .columns()
            .into_iter()
            .map(|c| c.sum() / n as f64)
            .collect();
        let inv_std = x
            .columns()
            .into_iter()
            .zip(&mean)
            .map(|(c, m)| {
                let var = c.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n as f64;
                if var > 1e-12 {
                    1.0 / var.sqrt()
                } else {
                    1.0
                }
            })
            .collect();
        Ok(Standardiser { mean, inv_std })
    }

    pub(super) fn apply(&self, mut x: Array2<f64>) -> Array2<f64> {
        for mut row in x.rows_mut() {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.inv_std) {
                *v = (*v - m) * s;
            }
        }
        x
    }
}

/// The top `m` principal directions (`d x m`) of centred-by-construction data `z`: the right
/// singular vectors of its largest singular values (an SVD of the data, which copes with fewer
/// images than dimensions, where the 1,280 x 1,280 covariance's eigensolver did not converge).
fn pca(z: &Array2<f64>, m: usize) -> Result<Array2<f64>, ReduceError> {
    faer::set_global_parallelism(faer::Par::Seq);
    let (n, d) = z.dim();
    if m > n.min(d) {
        return Err(ReduceError::InvalidParams(format!(
            "{m} PCA components from {n} normal images of {d} features"
        )));
    }
    let zm = Mat::<f64>::from_fn(n, d, |i, j| z[[i, j]]);
    let svd = zm.thin_svd().map_err(|e| ReduceError::Fit {
        reducer: "pretrained PCA",
        message: format!("{e:?}"),
    })?;
    let (s, v) = (svd.S(), svd.V());
    let mut order: Vec<usize> = (0..s.dim()).collect();
    order.sort_by(|&a, &b| s[b].total_cmp(&s[a]).then(a.cmp(&b)));
    Ok(Array2::from_shape_fn((d, m), |(i, j)| v[(i, order[j])]))
}

pub struct FittedPretrained {
    table: Arc<FeatureTable>,
    standard: Standardiser,
    projection: Option<Array2<f64>>,
}

/// A reducer of backbone features: `transform` looks the images' features up (or computes
/// them) and embeds them; `embed_features` embeds features already at hand.
pub trait FeatureReducer: Reducer {
    fn embed_features(&self, x: Array2<f64>) -> Array2<f64>;
}

impl FeatureReducer for FittedPretrained {
    fn embed_features(&self, x: Array2<f64>) -> Array2<f64> {
        let z = self.standard.apply(x);
        match &self.projection {
            Some(p) => z.dot(p),
            None => z,
        }
    }
}

impl Reducer for FittedPretrained {
    fn dim(&self) -> usize {
        self.projection.as_ref().map_or(FEATURES, |p| p.ncols())
    }

    fn transform(&self, images: &ImageSet) -> Result<Array2<f64>, ReduceError> {
        Ok(self.embed_features(lookup(&self.table, images)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standardised_columns_have_mean_0_and_std_1() {
        let x =
            Array2::from_shape_vec((4, 2), vec![1.0, 5.0, 2.0, 5.0, 3.0, 5.0, 4.0, 5.0]).unwrap();
        let s = Standardiser::fit(&x).unwrap();
        let z = s.apply(x);
        let col0: Vec<f64> = z.column(0).to_vec();
        assert!((col0.iter().sum::<f64>()).abs() < 1e-12);
        assert!((col0.iter().map(|v| v * v).sum::<f64>() / 4.0 - 1.0).abs() < 1e-12);
        // A constant feature stays finite (scale 1).
        assert!(z.column(1).iter().all(|&v| v == 0.0));
    }

    #[test]
    fn pca_finds_the_long_axis() {
        // Points along (1, 1) with a little spread across: the first direction is +-(1, 1)/sqrt 2.
        let x = Array2::from_shape_vec((4, 2), vec![-2.0, -2.1, -1.0, -0.9, 1.0, 1.1, 2.0, 1.9])
            .unwrap();
        let p = pca(&x, 1).unwrap();
        assert!((p[[0, 0]].abs() - 0.5f64.sqrt()).abs() < 0.01, "{p:?}");
        assert!((p[[0, 0]] - p[[1, 0]]).abs() < 0.02);
    }
}
