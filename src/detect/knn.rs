//! k-nearest-neighbour distance (the DN2 / PANDA line on pretrained features): the score of a
//! point is its mean Euclidean distance to its k nearest normal training points, as
//! scikit-learn's `NearestNeighbors(n_neighbors=k).kneighbors(x)[0].mean(axis=1)`. k = 2 by
//! default (DN2's choice); at most the number of training points.

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::neighbours::NeighbourIndex;
use super::{check_dim, check_training, AnomalyScorer, DetectError};

/// Checked kNN settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KnnValidParams {
    n_neighbors: usize,
}

super::detector_params!(KnnParams, KnnValidParams, FittedKnn);

impl Default for KnnParams {
    fn default() -> Self {
        KnnParams(KnnValidParams { n_neighbors: 2 })
    }
}

impl KnnParams {
    pub fn n_neighbors(mut self, k: usize) -> Self {
        self.0.n_neighbors = k;
        self
    }
}

impl KnnValidParams {
    fn validate(&self) -> Result<(), DetectError> {
        if self.n_neighbors == 0 || self.n_neighbors > 10_000 {
            return Err(DetectError::InvalidParams(
                "kNN needs 1 <= n_neighbors <= 10000".into(),
            ));
        }
        Ok(())
    }

    pub fn fit(&self, x: &Array2<f64>) -> Result<FittedKnn, DetectError> {
        check_training(x, "kNN", 1)?;
        Ok(FittedKnn {
            k: self.n_neighbors.min(x.nrows()),
            index: NeighbourIndex::new(x),
        })
    }
}

pub struct FittedKnn {
    k: usize,
    index: NeighbourIndex,
}

impl AnomalyScorer for FittedKnn {
    fn score(&self, x: &Array2<f64>) -> Result<Vec<f64>, DetectError> {
        check_dim(x, self.index.dim)?;
        Ok(self
            .index
            .query(x, self.k)
            .iter()
            .map(|list| list.iter().map(|&(d, _)| d).sum::<f64>() / list.len() as f64)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_worked_knn() {
        // Training 0, 1, 3 on a line; a query at 2 is 1 from both 1 and 3: mean 1 (k = 2).
        let x = Array2::from_shape_vec((3, 1), vec![0.0, 1.0, 3.0]).unwrap();
        let f = KnnParams::default().fit(&x).unwrap();
        let q = Array2::from_shape_vec((2, 1), vec![2.0, -1.0]).unwrap();
        assert_eq!(f.score(&q).unwrap(), [1.0, 1.5]);
        assert!(KnnParams::default().n_neighbors(0).fit(&x).is_err());
    }
}
