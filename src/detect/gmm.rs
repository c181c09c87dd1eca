//! Gaussian mixture density (full covariances), the number of components chosen by BIC over a
//! small range; the anomaly score is the negative log-likelihood, by log-sum-exp over the
//! components (stable at any distance from the data).
//!
//! EM is written here, as scikit-learn's `GaussianMixture` runs it (k-means labels as the
//! start, reg_covar 1e-6 on the diagonal, stop when the mean log-likelihood moves by less than
//! 1e-3, at most 100 iterations); the k-means is linfa-clustering's (k-means++ seeding).
//! linfa's own `GaussianMixtureModel` restarts that k-means 10 times per component count, which
//! was 90 % of its fit and 2x scikit-learn's time (scikit-learn runs it once), and cannot be
//! given another start; its `predict_proba` also returns inf far from the data.

use linfa::dataset::DatasetBase;
use linfa::traits::{Fit, Predict};
use linfa_clustering::KMeans;
use ndarray::Array2;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;
use serde::{Deserialize, Serialize};

use super::{check_dim, par_chunks, AnomalyScorer, DetectError};
use crate::kernels::vectorised;

/// scikit-learn's defaults for `GaussianMixture`.
const TOL: f64 = 1e-3;
const MAX_ITER: usize = 100;
const REG_COVAR: f64 = 1e-6;

/// Checked Gaussian mixture settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GmmValidParams {
    /// Component counts tried, `min_components..=max_components`; the lowest BIC wins.
    min_components: usize,
    max_components: usize,
    seed: u64,
    /// k-means runs for each mixture's start (scikit-learn: 1). Records before this field ran
    /// linfa's mixture, which restarts k-means 10 times.
    kmeans_runs: usize,
}

super::detector_params!(GmmParams, GmmValidParams, FittedGmm);

impl GmmParams {
    /// 1 to 5 components, one k-means run each.
    pub fn new(seed: u64) -> Self {
        GmmParams(GmmValidParams {
            min_components: 1,
            max_components: 5,
            seed,
            kmeans_runs: 1,
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
        if self.kmeans_runs == 0 {
            return Err(DetectError::InvalidParams(
                "GMM needs at least one k-means run".into(),
            ));
        }
        Ok(())
    }

    pub fn fit(&self, x: &Array2<f64>) -> Result<FittedGmm, DetectError> {
        check_dim(x, x.ncols())?;
        let (n, d) = (x.nrows(), x.ncols());
        let x = x.as_standard_layout().into_owned();
        let data = DatasetBase::from(x.clone());
        let mut best: Option<(f64, FittedGmm)> = None;
        let mut last_error = None;
        let mut skipped = Vec::new();
        for k in self.min_components..=self.max_components {
            if n < 2 * k {
                break;
            }
            let components = match self.em(&data, k) {
                Ok(c) => c,
                Err(e) => {
                    // A component count the data cannot support (e.g. a collapsed
                    // covariance) is skipped, and said so; the others still compete.
                    skipped.push(format!("GMM: {k} component(s) not fitted ({e})"));
                    last_error = Some(e);
                    continue;
                }
            };
            let log_likelihood: f64 = components.log_densities(&x).iter().sum();
            let params = (k - 1) + k * d + k * d * (d + 1) / 2;
            let bic = -2.0 * log_likelihood + params as f64 * (n as f64).ln();
            if best.as_ref().is_none_or(|(b, _)| bic < *b) {
                best = Some((
                    bic,
                    FittedGmm {
                        components,
                        dim: d,
                        bic,
                        skipped: Vec::new(),
                    },
                ));
            }
        }
        best.map(|(_, g)| FittedGmm { skipped, ..g })
            .ok_or_else(|| DetectError::Fit {
                detector: "GMM",
                message: last_error.unwrap_or_else(|| format!("{n} samples are too few")),
            })
    }

    /// EM for `k` components from k-means labels (`data` in standard layout).
    fn em(
        &self,
        data: &DatasetBase<Array2<f64>, ndarray::Array1<()>>,
        k: usize,
    ) -> Result<Components, String> {
        let x = data.records();
        let n = x.nrows();
        let rng = Xoshiro256Plus::seed_from_u64(self.seed.wrapping_add(k as u64));
        let labels = KMeans::params_with_rng(k, rng)
            .n_runs(self.kmeans_runs)
            .fit(data)
            .map_err(|e| e.to_string())?
            .predict(x);
        // Per point: its k responsibilities, then its log-likelihood (written by the E-step).
        let mut resp = vec![0.0; n * (k + 1)];
        for (row, &label) in resp.chunks_exact_mut(k + 1).zip(labels.iter()) {
            row[label] = 1.0;
        }
        let x = x.as_slice().expect("standard layout");
        let mut components = Components::m_step(x, &resp, k)?;
        let mut lower_bound = f64::NEG_INFINITY;
        for _ in 0..MAX_ITER {
            let mean_log_likelihood = components.e_step(x, &mut resp);
            components = Components::m_step(x, &resp, k)?;
            let change = mean_log_likelihood - lower_bound;
            lower_bound = mean_log_likelihood;
            if change.abs() < TOL {
                break;
            }
        }
        Ok(components)
    }
}

/// Per component: log weight, mean, inverse of the covariance's Cholesky factor (row-major,
/// lower: the Mahalanobis distance is |L^-1 (x - mu)|^2, as scikit-learn's
/// `precisions_cholesky_`), log determinant.
struct Components {
    dim: usize,
    log_weights: Vec<f64>,
    means: Vec<Vec<f64>>,
    inv_chol: Vec<Vec<f64>>,
    log_dets: Vec<f64>,
}

/// Points evaluated together: one vector register of f64 on AVX-512.
const LANES: usize = 8;

impl Components {
    fn new(weights: &[f64], means: Vec<Vec<f64>>, covs: &[Vec<f64>]) -> Result<Self, String> {
        let d = means[0].len();
        let (mut inv_chol, mut log_dets) = (Vec::new(), Vec::new());
        for (c, cov) in covs.iter().enumerate() {
            let l = cholesky(cov, d)
                .ok_or_else(|| format!("covariance of component {c} is not positive definite"))?;
            log_dets.push(2.0 * (0..d).map(|i| l[i * d + i].ln()).sum::<f64>());
            inv_chol.push(lower_inverse(&l, d));
        }
        Ok(Components {
            dim: d,
            log_weights: weights.iter().map(|w| w.ln()).collect(),
            means,
            inv_chol,
            log_dets,
        })
    }

    /// Weights, means and covariances (+ REG_COVAR on the diagonal) from responsibilities
    /// (rows of k + 1: the k responsibilities, then the E-step's log-likelihood), as
    /// scikit-learn's `_estimate_gaussian_parameters`.
    fn m_step(x: &[f64], resp: &[f64], k: usize) -> Result<Self, String> {
        let d = x.len() / (resp.len() / (k + 1));
        let mut nk = vec![10.0 * f64::EPSILON; k];
        let mut means = vec![vec![0.0; d]; k];
        for (p, r) in x.chunks_exact(d).zip(resp.chunks_exact(k + 1)) {
            for c in 0..k {
                nk[c] += r[c];
                for (m, v) in means[c].iter_mut().zip(p) {
                    *m += r[c] * v;
                }
            }
        }
        for (mean, n) in means.iter_mut().zip(&nk) {
            mean.iter_mut().for_each(|m| *m /= n);
        }
        let mut covs = vec![vec![0.0; d * d]; k];
        let mut diff = vec![0.0; d];
        for (p, r) in x.chunks_exact(d).zip(resp.chunks_exact(k + 1)) {
            for c in 0..k {
                for ((t, v), m) in diff.iter_mut().zip(p).zip(&means[c]) {
                    *t = v - m;
                }
                let cov = &mut covs[c];
                for i in 0..d {
                    let w = r[c] * diff[i];
                    for j in 0..=i {
                        cov[i * d + j] += w * diff[j];
                    }
                }
            }
        }
        for (cov, n) in covs.iter_mut().zip(&nk) {
            for i in 0..d {
                for j in 0..=i {
                    let v = cov[i * d + j] / n + if i == j { REG_COVAR } else { 0.0 };
                    cov[i * d + j] = v;
                    cov[j * d + i] = v;
                }
            }
        }
        let total: f64 = nk.iter().sum();
        let weights: Vec<f64> = nk.iter().map(|v| v / total).collect();
        Components::new(&weights, means, &covs)
    }

    /// Replaces each row of `resp` (k + 1 wide) by the point's responsibilities and its
    /// log-likelihood; returns the mean log-likelihood (summed in point order, so the same on
    /// any number of threads).
    fn e_step(&self, x: &[f64], resp: &mut [f64]) -> f64 {
        let (d, k) = (self.dim, self.means.len());
        let n = resp.len() / (k + 1);
        par_chunks(resp, k + 1, k * d * d, |first, out| {
            let rows = out.len() / (k + 1);
            let points = &x[first * d..(first + rows) * d];
            self.log_likelihoods(points, &mut vec![0.0; rows], |p, terms, total| {
                let row = &mut out[p * (k + 1)..(p + 1) * (k + 1)];
                for (r, t) in row.iter_mut().zip(terms) {
                    *r = (t - total).exp();
                }
                row[k] = total;
            });
        });
        resp.chunks_exact(k + 1).map(|r| r[k]).sum::<f64>() / n as f64
    }

    /// log sum_c w_c N(p | mu_c, Sigma_c) of each row p of `points` (row-major) into `out`,
    /// handing each point's per-component terms and their log-sum to `each(row, terms, sum)`.
    fn log_likelihoods(
        &self,
        points: &[f64],
        out: &mut [f64],
        mut each: impl FnMut(usize, &[f64], f64),
    ) {
        let (d, k) = (self.dim, self.means.len());
        let half_log_2pi = 0.5 * d as f64 * (2.0 * std::f64::consts::PI).ln();
        let mut diff = vec![0.0; d * LANES];
        let mut maha = [0.0; LANES];
        let mut terms = vec![0.0; k * LANES];
        for (b, out) in out.chunks_mut(LANES).enumerate() {
            let block = &points[b * LANES * d..(b * LANES + out.len()) * d];
            for c in 0..k {
                mahalanobis(
                    block,
                    &self.means[c],
                    &self.inv_chol[c],
                    &mut diff,
                    &mut maha,
                );
                let constant = self.log_weights[c] - half_log_2pi - 0.5 * self.log_dets[c];
                for (p, m) in maha.iter().enumerate() {
                    terms[p * k + c] = constant - 0.5 * m;
                }
            }
            for (p, o) in out.iter_mut().enumerate() {
                let terms = &terms[p * k..(p + 1) * k];
                let max = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                *o = max + terms.iter().map(|t| (t - max).exp()).sum::<f64>().ln();
                each(b * LANES + p, terms, *o);
            }
        }
    }

    /// Log-likelihood of every row of `x`.
    fn log_densities(&self, x: &Array2<f64>) -> Vec<f64> {
        let d = self.dim;
        let x = x.as_standard_layout();
        let rows = x.as_slice().expect("standard layout");
        let mut out = vec![0.0; x.nrows()];
        par_chunks(&mut out, 1, self.means.len() * d * d, |first, out| {
            self.log_likelihoods(&rows[first * d..(first + out.len()) * d], out, |_, _, _| {});
        });
        out
    }
}

vectorised!(
    /// |L^-1 (p - mean)|^2 for up to LANES rows p of `block` into `maha` (the rest: 0), with
    /// the points side by side in the vector lanes. `diff` is scratch of d x LANES.
    fn mahalanobis => mahalanobis_body(
        block: &[f64],
        mean: &[f64],
        inv_chol: &[f64],
        diff: &mut [f64],
        maha: &mut [f64; LANES]
    )
);

#[inline(always)]
fn mahalanobis_body(
    block: &[f64],
    mean: &[f64],
    inv_chol: &[f64],
    diff: &mut [f64],
    maha: &mut [f64; LANES],
) {
    let d = mean.len();
    diff.fill(0.0);
    for (p, point) in block.chunks_exact(d).enumerate() {
        for (j, (v, m)) in point.iter().zip(mean).enumerate() {
            diff[j * LANES + p] = v - m;
        }
    }
    *maha = [0.0; LANES];
    for i in 0..d {
        let mut z = [0.0; LANES];
        for (j, &w) in inv_chol[i * d..i * d + i + 1].iter().enumerate() {
            let column = &diff[j * LANES..(j + 1) * LANES];
            for (z, v) in z.iter_mut().zip(column) {
                *z += w * v;
            }
        }
        for (m, z) in maha.iter_mut().zip(&z) {
            *m += z * z;
        }
    }
}

/// Inverse of a lower-triangular matrix (row-major), by forward substitution on the identity.
fn lower_inverse(l: &[f64], d: usize) -> Vec<f64> {
    let mut inv = vec![0.0; d * d];
    for col in 0..d {
        for i in col..d {
            let s: f64 = (col..i).map(|k| l[i * d + k] * inv[k * d + col]).sum();
            let e = if i == col { 1.0 } else { 0.0 };
            inv[i * d + col] = (e - s) / l[i * d + i];
        }
    }
    inv
}

/// Lower Cholesky factor (row-major) of a small symmetric positive definite matrix.
fn cholesky(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum();
            if i == j {
                let v = a[i * n + i] - s;
                if v <= 0.0 || !v.is_finite() {
                    return None;
                }
                l[i * n + i] = v.sqrt();
            } else {
                l[i * n + j] = (a[i * n + j] - s) / l[j * n + j];
            }
        }
    }
    Some(l)
}

pub struct FittedGmm {
    components: Components,
    dim: usize,
    /// BIC of the chosen model on the training data.
    pub bic: f64,
    /// The component counts EM could not fit, with why.
    pub skipped: Vec<String>,
}

impl FittedGmm {
    pub fn n_components(&self) -> usize {
        self.components.means.len()
    }
}

impl AnomalyScorer for FittedGmm {
    fn score(&self, x: &Array2<f64>) -> Result<Vec<f64>, DetectError> {
        check_dim(x, self.dim)?;
        Ok(self
            .components
            .log_densities(x)
            .into_iter()
            .map(|l| -l)
            .collect())
    }

    fn notes(&self) -> Vec<String> {
        self.skipped.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_density_of_a_standard_normal() {
        let c = Components::new(&[1.0], vec![vec![0.0, 0.0]], &[vec![1.0, 0.0, 0.0, 1.0]]).unwrap();
        let x = Array2::from_shape_vec((2, 2), vec![1.0, 2.0, 1e4, 1e4]).unwrap();
        let l = c.log_densities(&x);
        // log N = -(log 2 pi) - 0.5 * 5.
        let want = -(2.0 * std::f64::consts::PI).ln() - 2.5;
        assert!((l[0] - want).abs() < 1e-12);
        // Far away: finite, not -inf.
        assert!(l[1].is_finite());
    }

    #[test]
    fn cholesky_solves() {
        let a = [4.0, 2.0, 2.0, 3.0];
        let l = cholesky(&a, 2).unwrap();
        let l = Array2::from_shape_vec((2, 2), l).unwrap();
        let a = Array2::from_shape_vec((2, 2), a.to_vec()).unwrap();
        assert!((l.dot(&l.t()) - &a).iter().all(|v| v.abs() < 1e-12));
        assert!(cholesky(&[-1.0], 1).is_none());
        let inv = Array2::from_shape_vec((2, 2), lower_inverse(l.as_slice().unwrap(), 2)).unwrap();
        assert!((inv.dot(&l) - Array2::<f64>::eye(2))
            .iter()
            .all(|v| v.abs() < 1e-12));
    }

    #[test]
    fn em_finds_two_separated_clusters() {
        // Two tight square clusters at (0, 0) and (10, 10), 300 points each: two components
        // with equal weights and the clusters' means.
        let x = Array2::from_shape_fn((600, 2), |(i, j)| {
            let centre = if i < 300 { 0.0 } else { 10.0 };
            let v = ((i as f64) * 12.9898 + (j as f64) * 78.233).sin() * 43758.5453;
            centre + (v - v.floor()) - 0.5
        });
        let g = GmmParams::new(0).components(2..=2).fit(&x).unwrap();
        let mut means: Vec<f64> = g.components.means.iter().map(|m| m[0]).collect();
        means.sort_by(f64::total_cmp);
        assert!(
            (means[0] - 0.0).abs() < 0.1 && (means[1] - 10.0).abs() < 0.1,
            "{means:?}"
        );
        for w in &g.components.log_weights {
            assert!((w.exp() - 0.5).abs() < 1e-3);
        }
    }

    /// Issue 27 item 4: the component counts EM could not fit travel with the fitted model
    /// as notes (the record and the log print them), none when every count fitted.
    #[test]
    fn component_counts_that_fail_are_noted() {
        let x = Array2::from_shape_fn((30, 2), |(i, j)| {
            ((i % 3) * (j + 1)) as f64 + 0.01 * i as f64
        });
        let fitted = GmmParams::new(0).fit(&x).unwrap();
        assert!(fitted.notes().is_empty(), "{:?}", fitted.notes());
        let noted = FittedGmm {
            skipped: vec!["GMM: 5 component(s) not fitted (why)".into()],
            ..fitted
        };
        assert_eq!(noted.notes(), ["GMM: 5 component(s) not fitted (why)"]);
    }
}
