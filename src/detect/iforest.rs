//! Isolation forest (Liu, Ting, Zhou 2008), classic axis-parallel splits, seeded.
//!
//! Each tree isolates a subsample of `sample_size` points (without replacement) by random
//! splits: a feature chosen uniformly among those not constant in the node, a threshold
//! uniform between its min and max, down to depth ceil(log2 sample_size). A point's path
//! length is its leaf depth plus c(leaf size), the expected depth of an unbuilt subtree;
//! the score is 2^(-mean path / c(sample_size)), as in the paper and scikit-learn.

use ndarray::{Array2, ArrayView1};
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use serde::{Deserialize, Serialize};

use super::{check_dim, check_training, par_fill, AnomalyScorer, DetectError};

/// Checked isolation forest settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IsolationForestValidParams {
    n_trees: usize,
    sample_size: usize,
    seed: u64,
}

super::detector_params!(
    IsolationForestParams,
    IsolationForestValidParams,
    FittedIsolationForest
);

impl IsolationForestParams {
    /// 100 trees of 256-point subsamples (the paper's and scikit-learn's defaults).
    pub fn new(seed: u64) -> Self {
        IsolationForestParams(IsolationForestValidParams {
            n_trees: 100,
            sample_size: 256,
            seed,
        })
    }

    pub fn n_trees(mut self, n: usize) -> Self {
        self.0.n_trees = n;
        self
    }

    pub fn sample_size(mut self, n: usize) -> Self {
        self.0.sample_size = n;
        self
    }
}

impl IsolationForestValidParams {
    fn validate(&self) -> Result<(), DetectError> {
        if self.n_trees == 0 || self.n_trees > 100_000 || self.sample_size < 2 {
            return Err(DetectError::InvalidParams(
                "isolation forest needs 1 <= n_trees <= 100000 and sample_size >= 2".into(),
            ));
        }
        Ok(())
    }

    pub fn fit(&self, x: &Array2<f64>) -> Result<FittedIsolationForest, DetectError> {
        check_training(x, "isolation forest", 2)?;
        let psi = self.sample_size.min(x.nrows());
        let max_depth = (psi as f64).log2().ceil() as usize;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(self.seed);
        let trees = (0..self.n_trees)
            .map(|_| {
                let mut rows: Vec<usize> = sample(&mut rng, x.nrows(), psi).into_vec();
                let mut nodes = Vec::new();
                build(x, &mut rows, 0, max_depth, &mut rng, &mut nodes);
                nodes
            })
            .collect();
        Ok(FittedIsolationForest {
            trees,
            dim: x.ncols(),
            c_psi: average_path(psi),
        })
    }
}

#[derive(Clone, Debug)]
enum Node {
    Split {
        feature: usize,
        threshold: f64,
        left: usize,
        right: usize,
    },
    Leaf {
        size: usize,
    },
}

/// Builds the subtree of `rows`, appending nodes; returns the subtree root's index.
fn build(
    x: &Array2<f64>,
    rows: &mut [usize],
    depth: usize,
    max_depth: usize,
    rng: &mut Xoshiro256PlusPlus,
    nodes: &mut Vec<Node>,
) -> usize {
    let at = nodes.len();
    if depth >= max_depth || rows.len() <= 1 {
        nodes.push(Node::Leaf { size: rows.len() });
        return at;
    }
    // Features that still vary in this node, with their ranges.
    let ranges: Vec<(usize, f64, f64)> = (0..x.ncols())
        .filter_map(|f| {
            let (lo, hi) = rows
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &r| {
                    (lo.min(x[[r, f]]), hi.max(x[[r, f]]))
                });
            (hi > lo).then_some((f, lo, hi))
        })
        .collect();
    if ranges.is_empty() {
        nodes.push(Node::Leaf { size: rows.len() });
        return at;
    }
    let (feature, lo, hi) = ranges[rng.gen_range(0..ranges.len())];
    let threshold = rng.gen_range(lo..hi);
    // Partition in place: < threshold left.
    let mut split = 0;
    for i in 0..rows.len() {
        if x[[rows[i], feature]] < threshold {
            rows.swap(i, split);
            split += 1;
        }
    }
    nodes.push(Node::Leaf { size: 0 }); // placeholder, replaced below
    let (left_rows, right_rows) = rows.split_at_mut(split);
    let left = build(x, left_rows, depth + 1, max_depth, rng, nodes);
    let right = build(x, right_rows, depth + 1, max_depth, rng, nodes);
    nodes[at] = Node::Split {
        feature,
        threshold,
        left,
        right,
    };
    at
}

/// c(n): the average path length of an unsuccessful search in a binary search tree of n
/// points, which normalises path lengths.
fn average_path(n: usize) -> f64 {
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + 0.577_215_664_901_532_9) - 2.0 * (n - 1.0) / n
        }
    }
}

pub struct FittedIsolationForest {
    trees: Vec<Vec<Node>>,
    dim: usize,
    c_psi: f64,
}

impl FittedIsolationForest {
    fn path_length(tree: &[Node], row: ArrayView1<f64>) -> f64 {
        let mut node = 0;
        let mut depth = 0.0;
        loop {
            match tree[node] {
                Node::Leaf { size } => return depth + average_path(size),
                Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    node = if row[feature] < threshold {
                        left
                    } else {
                        right
                    };
                    depth += 1.0;
                }
            }
        }
    }
}

impl AnomalyScorer for FittedIsolationForest {
    fn score(&self, x: &Array2<f64>) -> Result<Vec<f64>, DetectError> {
        check_dim(x, self.dim)?;
        let mut out = vec![0.0; x.nrows()];
        // ~20 node visits per tree and point.
        par_fill(&mut out, 20 * self.trees.len(), |first, out| {
            for (o, row) in out.iter_mut().zip(x.rows().into_iter().skip(first)) {
                let mean = self
                    .trees
                    .iter()
                    .map(|t| Self::path_length(t, row))
                    .sum::<f64>()
                    / self.trees.len() as f64;
                *o = 2f64.powf(-mean / self.c_psi);
            }
        });
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_of_n() {
        assert_eq!(average_path(1), 0.0);
        assert_eq!(average_path(2), 1.0);
        // c(256) = 2 (ln 255 + gamma) - 2 * 255/256 = 10.2448...
        assert!((average_path(256) - 10.244_770_920_116_851).abs() < 1e-9);
    }

    #[test]
    fn outlier_scores_higher_and_seed_reproduces() {
        let mut pts: Vec<f64> = (0..400).map(|i| ((i * 37) % 101) as f64 / 101.0).collect();
        pts.extend_from_slice(&[8.0, 8.0]);
        let x = Array2::from_shape_vec((201, 2), pts).unwrap();
        let f = IsolationForestParams::new(3).fit(&x).unwrap();
        let s = f.score(&x).unwrap();
        let max_inlier = s[..200].iter().cloned().fold(f64::MIN, f64::max);
        assert!(s[200] > max_inlier, "outlier {} vs {}", s[200], max_inlier);
        assert_eq!(
            IsolationForestParams::new(3)
                .fit(&x)
                .unwrap()
                .score(&x)
                .unwrap(),
            s
        );
        assert_ne!(
            IsolationForestParams::new(4)
                .fit(&x)
                .unwrap()
                .score(&x)
                .unwrap(),
            s
        );
    }
}
