//! PCA of the flattened pixels, by linfa-reduction: the paper's linear baseline embedding.

use linfa::dataset::DatasetBase;
use linfa::traits::{Fit, Predict};
use linfa::ParamGuard;
use linfa_reduction::Pca as LinfaPca;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::{flatten, ReduceError, Reducer};
use crate::data::ImageSet;

/// Checked PCA settings: `n_components` dimensions, no whitening.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PcaValidParams {
    n_components: usize,
}

crate::checked_params!(PcaParams, PcaValidParams, ReduceError);

impl PcaParams {
    pub fn new(n_components: usize) -> Self {
        PcaParams(PcaValidParams { n_components })
    }

    /// Checks, then fits.
    pub fn fit(&self, images: &ImageSet) -> Result<FittedPca, ReduceError> {
        self.check_ref()?.fit(images)
    }
}

impl PcaValidParams {
    fn validate(&self) -> Result<(), ReduceError> {
        if self.n_components == 0 || self.n_components > 4096 {
            return Err(ReduceError::InvalidParams(format!(
                "PCA to {} components: must be in 1..=4096",
                self.n_components
            )));
        }
        Ok(())
    }

    pub fn fit(&self, images: &ImageSet) -> Result<FittedPca, ReduceError> {
        let x = flatten(images);
        if self.n_components > x.ncols().min(x.nrows()) {
            return Err(ReduceError::InvalidParams(format!(
                "PCA to {} components from {} x {}",
                self.n_components,
                x.nrows(),
                x.ncols()
            )));
        }
        let model = LinfaPca::params(self.n_components)
            .whiten(false)
            .fit(&DatasetBase::from(x))
            .map_err(|e| ReduceError::Fit {
                reducer: "PCA",
                message: e.to_string(),
            })?;
        Ok(FittedPca {
            model,
            input: images.image_len(),
            dim: self.n_components,
        })
    }
}

pub struct FittedPca {
    model: linfa_reduction::Pca<f64>,
    input: usize,
    dim: usize,
}

impl Reducer for FittedPca {
    fn dim(&self) -> usize {
        self.dim
    }

    fn transform(&self, images: &ImageSet) -> Result<Array2<f64>, ReduceError> {
        if images.image_len() != self.input {
            return Err(ReduceError::Dimension {
                got: images.image_len(),
                want: self.input,
            });
        }
        Ok(self.model.predict(&flatten(images)))
    }
}
