//! Local outlier factor (Breunig et al. 2000) in scikit-learn's novelty mode
//! (`LocalOutlierFactor(novelty=True)`), written here because no maintained Rust crate has it.
//!
//! Fit: for every training point p, its k nearest *other* training points N(p) and its
//! k-distance; lrd(p) = 1 / (mean over o in N(p) of max(k-distance(o), d(p, o)) + 1e-10).
//! Score of a new point q: its k nearest training points, lrd(q) likewise, and
//! LOF(q) = mean lrd(o) over N(q) / lrd(q) (scikit-learn's `-score_samples`). k =
//! min(n_neighbors, n - 1). Neighbours come from `neighbours` (exact search).

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::neighbours::{NeighbourIndex, Neighbours};
use super::{check_dim, check_training, AnomalyScorer, DetectError};

/// Checked LOF settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LofValidParams {
    n_neighbors: usize,
}

super::detector_params!(LofParams, LofValidParams, FittedLof);

impl Default for LofParams {
    /// k = 20, scikit-learn's default.
    fn default() -> Self {
        LofParams(LofValidParams { n_neighbors: 20 })
    }
}

impl LofParams {
    pub fn n_neighbors(mut self, k: usize) -> Self {
        self.0.n_neighbors = k;
        self
    }
}

impl LofValidParams {
    fn validate(&self) -> Result<(), DetectError> {
        if self.n_neighbors == 0 || self.n_neighbors > 10_000 {
            return Err(DetectError::InvalidParams(
                "LOF needs 1 <= n_neighbors <= 10000".into(),
            ));
        }
        Ok(())
    }

    pub fn fit(&self, x: &Array2<f64>) -> Result<FittedLof, DetectError> {
        check_training(x, "LOF", 2)?;
        let k = self.n_neighbors.min(x.nrows() - 1);
        let index = NeighbourIndex::new(x);
        // k + 1 neighbours of each training point, then drop the point itself.
        let mut neighbours = index.query(x, k + 1);
        for (i, list) in neighbours.iter_mut().enumerate() {
            match list.iter().position(|&(_, j)| j == i) {
                Some(at) => {
                    list.remove(at);
                }
                None => {
                    list.pop();
                }
            }
        }
        let k_distance: Vec<f64> = neighbours.iter().map(|l| l[k - 1].0).collect();
        let lrd = local_reachability(&neighbours, &k_distance);
        Ok(FittedLof {
            index,
            k,
            k_distance,
            lrd,
        })
    }
}

fn local_reachability(neighbours: &Neighbours, k_distance: &[f64]) -> Vec<f64> {
    neighbours
        .iter()
        .map(|list| {
            let reach: f64 = list.iter().map(|&(d, j)| d.max(k_distance[j])).sum();
            1.0 / (reach / list.len() as f64 + 1e-10)
        })
        .collect()
}

pub struct FittedLof {
    index: NeighbourIndex,
    k: usize,
    k_distance: Vec<f64>,
    lrd: Vec<f64>,
}

impl AnomalyScorer for FittedLof {
    fn score(&self, x: &Array2<f64>) -> Result<Vec<f64>, DetectError> {
        check_dim(x, self.index.dim)?;
        let neighbours = self.index.query(x, self.k);
        let lrd_q = local_reachability(&neighbours, &self.k_distance);
        Ok(neighbours
            .iter()
            .zip(lrd_q)
            .map(|(list, lq)| {
                let mean: f64 =
                    list.iter().map(|&(_, j)| self.lrd[j]).sum::<f64>() / list.len() as f64;
                mean / lq
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_worked_lof() {
        // 1-D points 0, 1, 2 and k = 1: each point's nearest other point is at distance 1,
        // so every k-distance is 1, every lrd 1. A query at 5: nearest is 2 at distance 3,
        // reach = max(1, 3) = 3, lrd = 1/3, LOF = 1 / (1/3) = 3 (up to the 1e-10 guard).
        let x = Array2::from_shape_vec((3, 1), vec![0.0, 1.0, 2.0]).unwrap();
        let f = LofParams::default().n_neighbors(1).fit(&x).unwrap();
        let q = Array2::from_shape_vec((2, 1), vec![5.0, 1.0]).unwrap();
        let s = f.score(&q).unwrap();
        assert!((s[0] - 3.0).abs() < 1e-8, "{s:?}");
        assert!((s[1] - 1.0).abs() < 1e-8, "{s:?}");
    }
}
