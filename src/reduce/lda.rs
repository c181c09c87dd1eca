//! Fisher linear discriminant analysis with shrinkage, as scikit-learn's
//! `LinearDiscriminantAnalysis(solver="eigen", shrinkage=alpha)` computes it:
//!
//! - within-class scatter Sw = sum_c prior_c * shrunk(cov_c), total scatter St = shrunk(cov),
//!   between-class scatter Sb = St - Sw, with cov the biased (1/n) covariance and
//!   shrunk(S) = (1 - alpha) S + alpha (tr S / d) I — shrinkage is what makes Sw invertible
//!   on MNIST, whose border pixels are constant;
//! - the directions solve Sb v = lambda Sw v, largest lambda first, at most C - 1 of them
//!   (one in the paper's normal-vs-anomaly setting). With Sw = L L^T this is the ordinary
//!   symmetric problem of L^-1 Sb L^-T, whose eigenvectors u give v = L^-T u.
//!
//! faer does the Cholesky factorisation and the eigendecomposition (linfa-linalg's `eigh`
//! takes minutes at CIFAR-10's 3072 dimensions, faer seconds). Projection: x v, uncentred,
//! as scikit-learn's eigen solver does.

use faer::{Mat, Side};
use linfa::ParamGuard;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::{flatten, ReduceError, Reducer};
use crate::data::ImageSet;

/// Checked LDA settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LdaValidParams {
    /// Shrinkage alpha in [0, 1].
    shrinkage: f64,
    /// Components kept; `None` = C - 1.
    n_components: Option<usize>,
}

crate::checked_params!(LdaParams, LdaValidParams, ReduceError);

impl Default for LdaParams {
    /// Shrinkage 0.1, C - 1 components.
    fn default() -> Self {
        LdaParams(LdaValidParams {
            shrinkage: 0.1,
            n_components: None,
        })
    }
}

impl LdaParams {
    pub fn shrinkage(mut self, alpha: f64) -> Self {
        self.0.shrinkage = alpha;
        self
    }

    pub fn n_components(mut self, m: Option<usize>) -> Self {
        self.0.n_components = m;
        self
    }

    /// Checks, then fits on images with class labels `y` (0..C).
    pub fn fit(&self, images: &ImageSet, y: &[usize]) -> Result<FittedLda, ReduceError> {
        self.check_ref()?.fit(images, y)
    }

    /// Checks, then fits on the rows of `x` with labels `y`.
    pub fn fit_matrix(&self, x: &Array2<f64>, y: &[usize]) -> Result<FittedLda, ReduceError> {
        self.check_ref()?.fit_matrix(x, y)
    }
}

impl LdaValidParams {
    fn validate(&self) -> Result<(), ReduceError> {
        if !(0.0..=1.0).contains(&self.shrinkage) {
            return Err(ReduceError::InvalidParams(
                "shrinkage must be in [0, 1]".into(),
            ));
        }
        if self.n_components == Some(0) {
            return Err(ReduceError::InvalidParams(
                "LDA needs at least one component".into(),
            ));
        }
        Ok(())
    }

    /// Fits on images with class labels `y` (0..C).
    pub fn fit(&self, images: &ImageSet, y: &[usize]) -> Result<FittedLda, ReduceError> {
        self.fit_matrix(&flatten(images), y)
    }

    /// Fits on the rows of `x` with labels `y`.
    pub fn fit_matrix(&self, x: &Array2<f64>, y: &[usize]) -> Result<FittedLda, ReduceError> {
        let (n, d) = (x.nrows(), x.ncols());
        if y.len() != n {
            return Err(ReduceError::Labels(y.len(), n));
        }
        let classes = y.iter().max().map_or(0, |m| m + 1);
        let counts: Vec<usize> = (0..classes)
            .map(|c| y.iter().filter(|&&l| l == c).count())
            .collect();
        if classes < 2 || counts.contains(&0) {
            return Err(ReduceError::InvalidParams(format!(
                "LDA needs at least two classes, each with samples (counts {counts:?})"
            )));
        }
        let max_components = (classes - 1).min(d);
        let m = self.n_components.unwrap_or(max_components);
        if m == 0 || m > max_components {
            return Err(ReduceError::InvalidParams(format!(
                "{m} components; at most {max_components} for {classes} classes"
            )));
        }
        // faer splits its products and its eigensolver by the threads it is given, and the
        // last digits of the directions moved with them (LOF on the 1-D projection then
        // ranked a few ties differently with one thread than with two): one thread always, so
        // that records do not depend on the core count or on `--jobs`. faer is used here only.
        faer::set_global_parallelism(faer::Par::Seq);
        let xm = Mat::<f64>::from_fn(n, d, |i, j| x[[i, j]]);
        let mut sw = Mat::<f64>::zeros(d, d);
        for (c, &count) in counts.iter().enumerate() {
            let rows: Vec<usize> = (0..n).filter(|&i| y[i] == c).collect();
            let xc = Mat::<f64>::from_fn(rows.len(), d, |i, j| xm[(rows[i], j)]);
            let cov = self.shrunk_cov(&xc);
            let prior = count as f64 / n as f64;
            sw += cov * faer::Scale(prior);
        }
        let st = self.shrunk_cov(&xm);
        let sb = &st - &sw;
        let fail = |message: String| ReduceError::Fit {
            reducer: "LDA",
            message,
        };
        let llt = sw.llt(Side::Lower).map_err(|e| {
            fail(format!(
                "within-class scatter is not positive definite ({e:?}); raise the shrinkage"
            ))
        })?;
        let l = llt.L();
        // C = L^-1 Sb L^-T: solve L A = Sb, then L C = A^T (C is symmetric).
        let mut a = sb.clone();
        l.solve_lower_triangular_in_place(a.as_mut());
        let mut c = a.transpose().to_owned();
        l.solve_lower_triangular_in_place(c.as_mut());
        let eig = c
            .self_adjoint_eigen(Side::Lower)
            .map_err(|e| fail(format!("eigendecomposition failed: {e:?}")))?;
        // Eigenvalues ascend: take the last m, largest first; v = L^-T u.
        let u = eig.U();
        let mut v = Mat::<f64>::from_fn(d, m, |i, j| u[(i, d - 1 - j)]);
        l.transpose().solve_upper_triangular_in_place(v.as_mut());
        let s = eig.S();
        let eigenvalues = (0..m).map(|j| s[d - 1 - j]).collect();
        Ok(FittedLda {
            scalings: Array2::from_shape_fn((d, m), |(i, j)| v[(i, j)]),
            eigenvalues,
        })
    }

    /// Biased covariance of the rows of `x`, shrunk toward (tr S / d) I.
    fn shrunk_cov(&self, x: &Mat<f64>) -> Mat<f64> {
        let (n, d) = (x.nrows(), x.ncols());
        let means: Vec<f64> = (0..d)
            .map(|j| (0..n).map(|i| x[(i, j)]).sum::<f64>() / n as f64)
            .collect();
        let centred = Mat::<f64>::from_fn(n, d, |i, j| x[(i, j)] - means[j]);
        let mut cov = centred.transpose() * &centred;
        cov *= faer::Scale(1.0 / n as f64);
        let mu = (0..d).map(|j| cov[(j, j)]).sum::<f64>() / d as f64;
        let a = self.shrinkage;
        cov *= faer::Scale(1.0 - a);
        for j in 0..d {
            cov[(j, j)] += a * mu;
        }
        cov
    }
}

pub struct FittedLda {
    /// `d x m` projection, columns by decreasing eigenvalue.
    pub scalings: Array2<f64>,
    pub eigenvalues: Vec<f64>,
}

impl FittedLda {
    pub fn transform_matrix(&self, x: &Array2<f64>) -> Result<Array2<f64>, ReduceError> {
        if x.ncols() != self.scalings.nrows() {
            return Err(ReduceError::Dimension {
                got: x.ncols(),
                want: self.scalings.nrows(),
            });
        }
        Ok(x.dot(&self.scalings))
    }
}

impl Reducer for FittedLda {
    fn dim(&self) -> usize {
        self.scalings.ncols()
    }

    fn transform(&self, images: &ImageSet) -> Result<Array2<f64>, ReduceError> {
        self.transform_matrix(&flatten(images))
    }
}
