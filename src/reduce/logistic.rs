//! `pretrained_logreg`: the supervised baseline with EIDN's labels. Logistic regression on the
//! standardised pretrained features of the normal and the labelled anomalous training images,
//! class-balanced (each class weighs half, scikit-learn's `class_weight="balanced"`), L2 penalty
//! with scikit-learn's default C = 1 (the intercept is not penalised), fitted by Newton's method
//! with a backtracking line search (faer's Cholesky on one thread).
//!
//! Its one-dimensional embedding is softplus(w.x + b), which is positive and increases with the
//! decision function: its distance from the origin ranks images exactly as the decision
//! function does, so Tables 1-2 score it like EIDN's embedding, and every detector can run on it.

use std::sync::Arc;

use faer::linalg::solvers::Solve;
use faer::{Mat, Side};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::pretrained::{lookup, FeatureReducer, Standardiser};
use super::{ReduceError, Reducer};
use crate::backbone::cache::FeatureTable;
use crate::backbone::FeatureSpec;
use crate::data::ImageSet;

/// Checked settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogisticValidParams {
    pub features: FeatureSpec,
    /// Inverse L2 strength, scikit-learn's C.
    pub c: f64,
}

crate::checked_params!(LogisticParams, LogisticValidParams, ReduceError);

impl LogisticParams {
    pub fn new(features: FeatureSpec) -> Self {
        LogisticParams(LogisticValidParams { features, c: 1.0 })
    }
}

/// Newton steps at most; it converges in 10-20 on pretrained features.
const MAX_ITER: usize = 100;

impl LogisticValidParams {
    fn validate(&self) -> Result<(), ReduceError> {
        self.features
            .validate()
            .map_err(|e| ReduceError::InvalidParams(e.to_string()))?;
        if !(self.c.is_finite() && self.c > 0.0) {
            return Err(ReduceError::InvalidParams(format!(
                "C = {}: must be > 0",
                self.c
            )));
        }
        Ok(())
    }

    pub fn fit(
        &self,
        table: Arc<FeatureTable>,
        normal: &ImageSet,
        anomalous: &ImageSet,
    ) -> Result<FittedLogistic, ReduceError> {
        if anomalous.is_empty() {
            return Err(ReduceError::InvalidParams(
                "logistic regression needs labelled anomalies (the ratio gives none)".into(),
            ));
        }
        let x0 = lookup(&table, normal)?;
        let x1 = lookup(&table, anomalous)?;
        self.fit_features(table, x0, x1)
    }

    /// The same fit on the features of the normal (`x0`) and the labelled anomalous (`x1`)
    /// images (`eidn train` keeps them with a saved model); `table` embeds the images
    /// `transform` is given.
    pub fn fit_features(
        &self,
        table: Arc<FeatureTable>,
        x0: Array2<f64>,
        x1: Array2<f64>,
    ) -> Result<FittedLogistic, ReduceError> {
        if x1.nrows() == 0 {
            return Err(ReduceError::InvalidParams(
                "logistic regression needs labelled anomalies (the ratio gives none)".into(),
            ));
        }
        let n0 = x0.nrows();
        let standard = Standardiser::fit(&x0)?;
        let x0 = standard.apply(x0);
        let n1 = x1.nrows() as f64;
        let x1 = standard.apply(x1);
        let x = ndarray::concatenate![ndarray::Axis(0), x0, x1];
        let t: Vec<f64> = (0..x.nrows())
            .map(|i| f64::from(u8::from(i >= n0)))
            .collect();
        let n = x.nrows() as f64;
        let weights: Vec<f64> = t
            .iter()
            .map(|&ti| {
                if ti > 0.5 {
                    n / (2.0 * n1)
                } else {
                    n / (2.0 * (n - n1))
                }
            })
            .collect();
        let (w, b) = newton(&x, &t, &weights, self.c)?;
        Ok(FittedLogistic {
            table,
            standard,
            w,
            b,
        })
    }
}

/// Minimises C sum_i s_i logloss_i + |w|^2 / 2 over (w, b).
fn newton(x: &Array2<f64>, t: &[f64], s: &[f64], c: f64) -> Result<(Vec<f64>, f64), ReduceError> {
    faer::set_global_parallelism(faer::Par::Seq);
    let (n, d) = x.dim();
    // Columns 0..d the features, column d the intercept's 1.
    let xa = Mat::<f64>::from_fn(n, d + 1, |i, j| if j < d { x[[i, j]] } else { 1.0 });
    let objective = |theta: &[f64]| -> f64 {
        let mut f = 0.5 * theta[..d].iter().map(|v| v * v).sum::<f64>();
        for i in 0..n {
            let m: f64 = (0..=d).map(|j| xa[(i, j)] * theta[j]).sum();
            // log(1 + e^m) - t m, stably.
            let softplus = m.max(0.0) + (-m.abs()).exp().ln_1p();
            f += c * s[i] * (softplus - t[i] * m);
        }
        f
    };
    let mut theta = vec![0.0; d + 1];
    let mut f = objective(&theta);
    for _ in 0..MAX_ITER {
        let th = Mat::<f64>::from_fn(d + 1, 1, |j, _| theta[j]);
        let margins = &xa * &th;
        // Gradient and Hessian: C X^T (s (p - t)) + (w, 0); C X^T diag(s p (1 - p)) X + diag(1.., 0).
        let mut r = Mat::<f64>::zeros(n, 1);
        let mut weighted = Mat::<f64>::zeros(n, d + 1);
        for i in 0..n {
            let p = 1.0 / (1.0 + (-margins[(i, 0)]).exp());
            r[(i, 0)] = c * s[i] * (p - t[i]);
            let h = (c * s[i] * p * (1.0 - p)).sqrt();
            for j in 0..=d {
                weighted[(i, j)] = xa[(i, j)] * h;
            }
        }
        let mut grad = xa.transpose() * &r;
        let mut hess = weighted.transpose() * &weighted;
        for j in 0..d {
            grad[(j, 0)] += theta[j];
            hess[(j, j)] += 1.0;
        }
        // The intercept's curvature can vanish on separable data: a floor keeps it definite.
        hess[(d, d)] += 1e-10;
        let gnorm: f64 = (0..=d).map(|j| grad[(j, 0)].abs()).fold(0.0, f64::max);
        if gnorm < 1e-6 {
            break;
        }
        let llt = hess.llt(Side::Lower).map_err(|e| ReduceError::Fit {
            reducer: "logistic regression",
            message: format!("Hessian not positive definite: {e:?}"),
        })?;
        let step = llt.solve(&grad);
        let mut alpha = 1.0;
        loop {
            let trial: Vec<f64> = (0..=d).map(|j| theta[j] - alpha * step[(j, 0)]).collect();
            let ft = objective(&trial);
            if ft <= f || alpha < 1e-8 {
                theta = trial;
                f = ft;
                break;
            }
            alpha *= 0.5;
        }
        if alpha * (0..=d).map(|j| step[(j, 0)].abs()).fold(0.0, f64::max) < 1e-10 {
            break;
        }
    }
    let b = theta[d];
    theta.truncate(d);
    Ok((theta, b))
}

pub struct FittedLogistic {
    table: Arc<FeatureTable>,
    standard: Standardiser,
    pub w: Vec<f64>,
    pub b: f64,
}

impl FittedLogistic {
    /// The decision function w.z + b of raw features `x`.
    pub fn decision_of(&self, x: Array2<f64>) -> Vec<f64> {
        self.decision(&self.standard.apply(x))
    }

    /// w.x + b of standardised features `z`.
    fn decision(&self, z: &Array2<f64>) -> Vec<f64> {
        z.rows()
            .into_iter()
            .map(|r| r.iter().zip(&self.w).map(|(a, b)| a * b).sum::<f64>() + self.b)
            .collect()
    }
}

impl Reducer for FittedLogistic {
    fn dim(&self) -> usize {
        1
    }

    fn transform(&self, images: &ImageSet) -> Result<Array2<f64>, ReduceError> {
        Ok(self.embed_features(lookup(&self.table, images)?))
    }
}

impl FeatureReducer for FittedLogistic {
    fn embed_features(&self, x: Array2<f64>) -> Array2<f64> {
        let n = x.nrows();
        let values = self
            .decision(&self.standard.apply(x))
            .into_iter()
            .map(|m| m.max(0.0) + (-m.abs()).exp().ln_1p())
            .collect();
        Array2::from_shape_vec((n, 1), values).expect("n x 1")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newton_reaches_scikit_learns_solution() {
        // scikit-learn 1.9.1: LogisticRegression(class_weight="balanced", C=1.0) on
        // x = [[0], [1], [2], [3], [4]], y = [0, 0, 0, 1, 1] gives coef 1.060469, intercept
        // -2.445749 (tests/reference/logistic_reference.py).
        let x = Array2::from_shape_vec((5, 1), vec![0.0, 1.0, 2.0, 3.0, 4.0]).unwrap();
        let t = [0.0, 0.0, 0.0, 1.0, 1.0];
        let s: Vec<f64> = t
            .iter()
            .map(|&v| if v > 0.5 { 5.0 / 4.0 } else { 5.0 / 6.0 })
            .collect();
        let (w, b) = newton(&x, &t, &s, 1.0).unwrap();
        assert!((w[0] - 1.060469).abs() < 1e-5, "{w:?}");
        assert!((b + 2.445749).abs() < 1e-5, "{b}");
    }
}
