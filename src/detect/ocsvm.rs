//! One-class SVM (Schölkopf et al. 2001) with an RBF kernel, via linfa-svm.
//!
//! linfa writes the kernel as exp(-||x - x'||^2 / eps), so eps = 1 / gamma of
//! scikit-learn. gamma defaults to scikit-learn's "scale": 1 / (n_features * Var(X)). The
//! anomaly score is rho - sum_i alpha_i K(x_i, x), the negated decision value.

use linfa::dataset::{DatasetBase, Pr};
use linfa::traits::Fit;
use linfa_svm::Svm;
use ndarray::Array2;

use super::{check_dim, check_training, AnomalyScorer, DetectError};

#[derive(Clone, Debug, PartialEq)]
pub struct OneClassSvm {
    /// Upper bound on the fraction of training outliers (scikit-learn's nu).
    pub nu: f64,
    /// RBF width; `None` = scikit-learn's "scale".
    pub gamma: Option<f64>,
}

impl Default for OneClassSvm {
    fn default() -> Self {
        OneClassSvm {
            nu: 0.1,
            gamma: None,
        }
    }
}

impl OneClassSvm {
    pub fn fit(&self, x: &Array2<f64>) -> Result<FittedOneClassSvm, DetectError> {
        if !(self.nu > 0.0 && self.nu <= 1.0) {
            return Err(DetectError::InvalidParams("nu must be in (0, 1]".into()));
        }
        check_training(x, "one-class SVM", 2)?;
        let gamma = match self.gamma {
            Some(g) if g > 0.0 && g.is_finite() => g,
            Some(_) => return Err(DetectError::InvalidParams("gamma must be > 0".into())),
            None => {
                let var = x.var(0.0);
                if var > 0.0 {
                    1.0 / (x.ncols() as f64 * var)
                } else {
                    1.0
                }
            }
        };
        let model = Svm::<f64, Pr>::params()
            .nu_weight(self.nu)
            .gaussian_kernel(1.0 / gamma)
            .fit(&DatasetBase::from(x.clone()))
            .map_err(|e| DetectError::Fit {
                detector: "one-class SVM",
                message: e.to_string(),
            })?;
        Ok(FittedOneClassSvm {
            model,
            dim: x.ncols(),
            gamma,
        })
    }
}

pub struct FittedOneClassSvm {
    model: Svm<f64, bool>,
    dim: usize,
    pub gamma: f64,
}

impl AnomalyScorer for FittedOneClassSvm {
    fn score(&self, x: &Array2<f64>) -> Result<Vec<f64>, DetectError> {
        check_dim(x, self.dim)?;
        Ok(x.rows()
            .into_iter()
            .map(|r| self.model.rho - self.model.weighted_sum(&r))
            .collect())
    }
}
