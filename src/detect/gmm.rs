//! Gaussian mixture density (full covariances) via linfa-clustering, number of components
//! chosen by BIC over a small range. The anomaly score is the negative log-likelihood,
//! computed here with log-sum-exp over the fitted weights, means and covariances (linfa's
//! `predict_proba` returns inf far from the data, which ties every far anomaly).

use linfa::dataset::DatasetBase;
use linfa::traits::Fit;
use linfa_clustering::GaussianMixtureModel;
use ndarray::{Array1, Array2, ArrayView1};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;
use serde::{Deserialize, Serialize};

use super::{check_dim, AnomalyScorer, DetectError};

/// Checked Gaussian mixture settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GmmValidParams {
    /// Component counts tried, `min_components..=max_components`; the lowest BIC wins.
    min_components: usize,
    max_components: usize,
    seed: u64,
}

super::detector_params!(GmmParams, GmmValidParams, FittedGmm);

impl GmmParams {
    /// 1 to 5 components.
    pub fn new(seed: u64) -> Self {
        GmmParams(GmmValidParams {
            min_components: 1,
            max_components: 5,
            seed,
        })
    }

    pub fn components(mut self, range: std::ops::RangeInclusive<usize>) -> Self {
        self.0.min_components = *range.start();
        self.0.max_components = *range.end();
        self
    }
}

impl GmmValidParams {
    fn validate(&self) -> Result<(), DetectError> {
        if self.min_components == 0
            || self.min_components > self.max_components
            || self.max_components > 100
        {
            return Err(DetectError::InvalidParams(
                "GMM components must be a range within 1..=100".into(),
            ));
        }
        Ok(())
    }

    pub fn fit(&self, x: &Array2<f64>) -> Result<FittedGmm, DetectError> {
        check_dim(x, x.ncols())?;
        let (n, d) = (x.nrows(), x.ncols());
        let mut best: Option<(f64, FittedGmm)> = None;
        let mut last_error = None;
        for k in self.min_components..=self.max_components {
            if n < 2 * k {
                break;
            }
            let rng = Xoshiro256Plus::seed_from_u64(self.seed.wrapping_add(k as u64));
            let fitted = GaussianMixtureModel::params(k)
                .with_rng(rng)
                .fit(&DatasetBase::from(x.clone()));
            let model = match fitted {
                Ok(m) => m,
                Err(e) => {
                    // A component count the data cannot support (e.g. a collapsed
                    // covariance) is skipped; the others still compete.
                    last_error = Some(e.to_string());
                    continue;
                }
            };
            let components = Components::new(model.weights(), model.means(), model.covariances())?;
            let log_likelihood: f64 = x
                .rows()
                .into_iter()
                .map(|r| components.log_density(r))
                .sum();
            let params = (k - 1) + k * d + k * d * (d + 1) / 2;
            let bic = -2.0 * log_likelihood + params as f64 * (n as f64).ln();
            if best.as_ref().is_none_or(|(b, _)| bic < *b) {
                best = Some((
                    bic,
                    FittedGmm {
                        components,
                        dim: d,
                        bic,
                    },
                ));
            }
        }
        best.map(|(_, g)| g).ok_or_else(|| DetectError::Fit {
            detector: "GMM",
            message: last_error.unwrap_or_else(|| format!("{n} samples are too few")),
        })
    }
}

/// Per component: log weight, mean, Cholesky factor of the covariance, log determinant.
struct Components {
    log_weights: Vec<f64>,
    means: Vec<Array1<f64>>,
    chol: Vec<Array2<f64>>,
    log_dets: Vec<f64>,
}

impl Components {
    fn new(
        weights: &Array1<f64>,
        means: &Array2<f64>,
        covs: &ndarray::Array3<f64>,
    ) -> Result<Self, DetectError> {
        let k = weights.len();
        let mut chol = Vec::with_capacity(k);
        let mut log_dets = Vec::with_capacity(k);
        for c in 0..k {
            let l =
                cholesky(&covs.index_axis(ndarray::Axis(0), c).to_owned()).ok_or_else(|| {
                    DetectError::Fit {
                        detector: "GMM",
                        message: format!("covariance of component {c} is not positive definite"),
                    }
                })?;
            log_dets.push(2.0 * l.diag().iter().map(|v| v.ln()).sum::<f64>());
            chol.push(l);
        }
        Ok(Components {
            log_weights: weights.iter().map(|w| w.ln()).collect(),
            means: means.rows().into_iter().map(|r| r.to_owned()).collect(),
            chol,
            log_dets,
        })
    }

    /// log sum_k w_k N(x | mu_k, Sigma_k), stable for any distance from the data.
    fn log_density(&self, x: ArrayView1<f64>) -> f64 {
        let d = x.len() as f64;
        let terms: Vec<f64> = (0..self.means.len())
            .map(|c| {
                let diff = &x - &self.means[c];
                let z = forward_substitute(&self.chol[c], &diff);
                let maha: f64 = z.iter().map(|v| v * v).sum();
                self.log_weights[c]
                    - 0.5 * (d * (2.0 * std::f64::consts::PI).ln() + self.log_dets[c] + maha)
            })
            .collect();
        let m = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        m + terms.iter().map(|t| (t - m).exp()).sum::<f64>().ln()
    }
}

/// Lower Cholesky factor of a small symmetric positive definite matrix.
fn cholesky(a: &Array2<f64>) -> Option<Array2<f64>> {
    let n = a.nrows();
    let mut l = Array2::<f64>::zeros((n, n));
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[[i, k]] * l[[j, k]]).sum();
            if i == j {
                let v = a[[i, i]] - s;
                if v <= 0.0 || !v.is_finite() {
                    return None;
                }
                l[[i, i]] = v.sqrt();
            } else {
                l[[i, j]] = (a[[i, j]] - s) / l[[j, j]];
            }
        }
    }
    Some(l)
}

/// Solves L z = b for lower-triangular L.
fn forward_substitute(l: &Array2<f64>, b: &Array1<f64>) -> Vec<f64> {
    let n = b.len();
    let mut z = vec![0.0; n];
    for i in 0..n {
        let s: f64 = (0..i).map(|k| l[[i, k]] * z[k]).sum();
        z[i] = (b[i] - s) / l[[i, i]];
    }
    z
}

pub struct FittedGmm {
    components: Components,
    dim: usize,
    /// BIC of the chosen model on the training data.
    pub bic: f64,
}

impl FittedGmm {
    pub fn n_components(&self) -> usize {
        self.components.means.len()
    }
}

impl AnomalyScorer for FittedGmm {
    fn score(&self, x: &Array2<f64>) -> Result<Vec<f64>, DetectError> {
        check_dim(x, self.dim)?;
        Ok(x.rows()
            .into_iter()
            .map(|r| -self.components.log_density(r))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_density_of_a_standard_normal() {
        let c = Components::new(
            &Array1::from(vec![1.0]),
            &Array2::zeros((1, 2)),
            &ndarray::Array3::from_shape_fn((1, 2, 2), |(_, i, j)| if i == j { 1.0 } else { 0.0 }),
        )
        .unwrap();
        let x = Array1::from(vec![1.0, 2.0]);
        // log N = -(log 2 pi) - 0.5 * 5.
        let want = -(2.0 * std::f64::consts::PI).ln() - 2.5;
        assert!((c.log_density(x.view()) - want).abs() < 1e-12);
        // Far away: finite, not -inf.
        let far = Array1::from(vec![1e4, 1e4]);
        assert!(c.log_density(far.view()).is_finite());
    }

    #[test]
    fn cholesky_solves() {
        let a = Array2::from_shape_vec((2, 2), vec![4.0, 2.0, 2.0, 3.0]).unwrap();
        let l = cholesky(&a).unwrap();
        assert!((l.dot(&l.t()) - &a).iter().all(|v| v.abs() < 1e-12));
        assert!(cholesky(&Array2::from_shape_vec((1, 1), vec![-1.0]).unwrap()).is_none());
    }
}
