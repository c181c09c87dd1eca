//! Mahalanobis distance to the normal training points under their Ledoit-Wolf shrunk
//! covariance: scikit-learn's `LedoitWolf().fit(x).mahalanobis(q)` (the squared distance).
//! The shrinkage is Ledoit and Wolf's (2004) estimate as scikit-learn computes it; the shrunk
//! covariance (1 - a) S + a (tr S / d) I is positive definite for a > 0, and its Cholesky
//! factor L gives the distance as |L^-1 (q - mean)|^2. faer on one thread, as LDA.

use faer::{Mat, Side};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::{check_dim, check_training, AnomalyScorer, DetectError};

/// Checked settings (none to choose: the shrinkage is estimated).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MahalanobisValidParams {}

super::detector_params!(MahalanobisParams, MahalanobisValidParams, FittedMahalanobis);

impl Default for MahalanobisParams {
    fn default() -> Self {
        MahalanobisParams(MahalanobisValidParams {})
    }
}

impl MahalanobisValidParams {
    fn validate(&self) -> Result<(), DetectError> {
        Ok(())
    }

    pub fn fit(&self, x: &Array2<f64>) -> Result<FittedMahalanobis, DetectError> {
        check_training(x, "Mahalanobis", 2)?;
        faer::set_global_parallelism(faer::Par::Seq);
        let (n, d) = x.dim();
        let mean: Vec<f64> = (0..d).map(|j| x.column(j).sum() / n as f64).collect();
        let centred = Mat::<f64>::from_fn(n, d, |i, j| x[[i, j]] - mean[j]);
        let mut cov = centred.transpose() * &centred;
        cov *= faer::Scale(1.0 / n as f64);
        let shrinkage = ledoit_wolf_shrinkage(&centred, &cov);
        let mu = (0..d).map(|j| cov[(j, j)]).sum::<f64>() / d as f64;
        cov *= faer::Scale(1.0 - shrinkage);
        for j in 0..d {
            cov[(j, j)] += shrinkage * mu;
        }
        let llt = cov.llt(Side::Lower).map_err(|e| DetectError::Fit {
            detector: "Mahalanobis",
            message: format!(
                "the shrunk covariance is not positive definite ({e:?}; shrinkage {shrinkage:.3e}): the training points may all be equal"
            ),
        })?;
        Ok(FittedMahalanobis {
            mean,
            l: llt.L().to_owned(),
            shrinkage,
        })
    }
}

/// scikit-learn's `ledoit_wolf_shrinkage` of centred data `x` (n x d) with covariance `cov`
/// (= x^T x / n): beta = (sum_k |x_k|^4 / n - |S|_F^2) / (d n), delta = |S - mu I|_F^2 / d,
/// shrinkage = min(beta, delta) / delta (0 when beta is 0).
fn ledoit_wolf_shrinkage(x: &Mat<f64>, cov: &Mat<f64>) -> f64 {
    let (n, d) = (x.nrows() as f64, x.ncols());
    let mut fourth = 0.0;
    for i in 0..x.nrows() {
        let sq: f64 = (0..d).map(|j| x[(i, j)] * x[(i, j)]).sum();
        fourth += sq * sq;
    }
    let trace: f64 = (0..d).map(|j| cov[(j, j)]).sum();
    let mu = trace / d as f64;
    let mut frob = 0.0;
    for j in 0..d {
        for i in 0..d {
            frob += cov[(i, j)] * cov[(i, j)];
        }
    }
    let beta = (fourth / n - frob) / (d as f64 * n);
    let delta = (frob - 2.0 * mu * trace + d as f64 * mu * mu) / d as f64;
    let beta = beta.min(delta);
    if beta == 0.0 {
        0.0
    } else {
        beta / delta
    }
}

pub struct FittedMahalanobis {
    mean: Vec<f64>,
    /// Cholesky factor of the shrunk covariance.
    l: Mat<f64>,
    pub shrinkage: f64,
}

impl AnomalyScorer for FittedMahalanobis {
    fn score(&self, x: &Array2<f64>) -> Result<Vec<f64>, DetectError> {
        check_dim(x, self.mean.len())?;
        let d = self.mean.len();
        // Columns are the centred queries; solve L z = q - mean for all at once.
        let mut z = Mat::<f64>::from_fn(d, x.nrows(), |j, i| x[[i, j]] - self.mean[j]);
        self.l.solve_lower_triangular_in_place(z.as_mut());
        Ok((0..x.nrows())
            .map(|i| (0..d).map(|j| z[(j, i)] * z[(j, i)]).sum())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isotropic_data_needs_the_distance_scaled_by_its_variance() {
        // Four points at (+-1, +-1): mean 0, covariance I (biased), no shrinkage needed to
        // be positive definite; a query at (2, 0) is at squared distance 4 / var = 4.
        let x = Array2::from_shape_vec((4, 2), vec![1.0, 1.0, 1.0, -1.0, -1.0, 1.0, -1.0, -1.0])
            .unwrap();
        let f = MahalanobisParams::default().fit(&x).unwrap();
        let s = f
            .score(&Array2::from_shape_vec((1, 2), vec![2.0, 0.0]).unwrap())
            .unwrap();
        // Shrinking an identity covariance toward mu I changes nothing.
        assert!((s[0] - 4.0).abs() < 1e-12, "{s:?}");
    }

    #[test]
    fn equal_points_are_an_error_not_a_number() {
        let x = Array2::from_elem((5, 3), 1.0);
        assert!(MahalanobisParams::default().fit(&x).is_err());
    }
}
