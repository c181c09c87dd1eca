//! One-class SVM (Schölkopf et al. 2001) with an RBF kernel, via linfa-svm.
//!
//! linfa writes the kernel as exp(-||x - x'||^2 / eps), so eps = 1 / gamma of
//! scikit-learn. gamma defaults to scikit-learn's "scale": 1 / (n_features * Var(X)). The
//! anomaly score is rho - sum_i alpha_i K(x_i, x), the negated decision value.

use linfa::dataset::{DatasetBase, Pr};
use linfa::traits::Fit;
use linfa_svm::Svm;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::{check_dim, check_training, AnomalyScorer, DetectError};

/// How the RBF width gamma is set.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gamma {
    /// scikit-learn's "scale": 1 / (n_features * Var(X)) of the training data.
    Scale,
    Fixed(f64),
}

/// Checked one-class SVM settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OneClassSvmValidParams {
    /// Upper bound on the fraction of training outliers (scikit-learn's nu).
    nu: f64,
    gamma: Gamma,
}

super::detector_params!(OneClassSvmParams, OneClassSvmValidParams, FittedOneClassSvm);

impl Default for OneClassSvmParams {
    /// nu = 0.1 (see the README's "where the paper is silent"), gamma "scale".
    fn default() -> Self {
        OneClassSvmParams(OneClassSvmValidParams {
            nu: 0.1,
            gamma: Gamma::Scale,
        })
    }
}

impl OneClassSvmParams {
    pub fn nu(mut self, nu: f64) -> Self {
        self.0.nu = nu;
        self
    }

    pub fn gamma(mut self, gamma: Gamma) -> Self {
        self.0.gamma = gamma;
        self
    }
}

impl OneClassSvmValidParams {
    fn validate(&self) -> Result<(), DetectError> {
        if !(self.nu > 0.0 && self.nu <= 1.0) {
            return Err(DetectError::InvalidParams("nu must be in (0, 1]".into()));
        }
        if let Gamma::Fixed(g) = self.gamma {
            if !(g > 0.0 && g.is_finite()) {
                return Err(DetectError::InvalidParams("gamma must be > 0".into()));
            }
        }
        Ok(())
    }

    pub fn fit(&self, x: &Array2<f64>) -> Result<FittedOneClassSvm, DetectError> {
        check_training(x, "one-class SVM", 2)?;
        let gamma = match self.gamma {
            Gamma::Fixed(g) => g,
            Gamma::Scale => {
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
