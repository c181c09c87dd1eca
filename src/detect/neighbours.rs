//! Exact k nearest neighbours among training points (LOF's and kNN's): a kiddo k-d tree in
//! up to TREE_MAX_DIM dimensions, blocked exhaustive search (matrix products) above, where a
//! k-d tree prunes little (kiddo was 5x slower than scikit-learn in 16-D).

use std::num::NonZero;

use kiddo::{ImmutableKdTree, SquaredEuclidean};
use ndarray::Array2;

use super::par_fill;
use crate::kernels::{matmul, vectorised};

/// For each query: the k nearest training points as (distance, index), nearest first.
pub(crate) type Neighbours = Vec<Vec<(f64, usize)>>;

/// k-nearest-neighbour search over the training points.
pub(crate) struct NeighbourIndex {
    pub dim: usize,
    points: Array2<f64>,
    tree: Option<Tree>,
}

macro_rules! trees {
    ($($k:literal => $v:ident),*) => {
        enum Tree { $($v(ImmutableKdTree<f64, $k>)),* }

        impl Tree {
            fn build(x: &Array2<f64>) -> Option<Tree> {
                match x.ncols() {
                    $($k => Some(Tree::$v(
                        ImmutableKdTree::new_from_slice(&rows::<$k>(x)).ok()?
                    )),)*
                    _ => None,
                }
            }

            fn query(&self, x: &Array2<f64>, k: usize) -> Neighbours {
                let k = NonZero::new(k).expect("k >= 1");
                match self {
                    $(Tree::$v(t) => rows::<$k>(x)
                        .iter()
                        .map(|q| {
                            t.query(q)
                                .nearest_n::<SquaredEuclidean<f64>>(k)
                                .execute()
                                .into_iter()
                                .map(|r| (r.distance.sqrt(), r.item as usize))
                                .collect()
                        })
                        .collect(),)*
                }
            }
        }
    };
}

trees!(1 => D1, 2 => D2, 3 => D3, 4 => D4, 5 => D5, 6 => D6, 7 => D7, 8 => D8,
       9 => D9, 10 => D10, 11 => D11, 12 => D12, 13 => D13, 14 => D14, 15 => D15, 16 => D16);

fn rows<const K: usize>(x: &Array2<f64>) -> Vec<[f64; K]> {
    x.rows()
        .into_iter()
        .map(|r| std::array::from_fn(|i| r[i]))
        .collect()
}

impl NeighbourIndex {
    pub fn new(x: &Array2<f64>) -> Self {
        NeighbourIndex {
            dim: x.ncols(),
            points: x.as_standard_layout().into_owned(),
            tree: if x.ncols() <= TREE_MAX_DIM {
                Tree::build(x)
            } else {
                None
            },
        }
    }

    pub fn query(&self, x: &Array2<f64>, k: usize) -> Neighbours {
        match &self.tree {
            Some(t) => t.query(x, k),
            None => brute_force(&self.points, x, k),
        }
    }
}

/// Widest input searched with the k-d tree. Fitting 6,000 uniform points (detectors bench,
/// 2 cores): tree / blocked search 7 / 47 ms in 2-D, 13 / 42 ms in 4-D, 42 / 44 ms in 8-D,
/// 182 / 47 ms in 16-D.
const TREE_MAX_DIM: usize = 8;
/// Candidates kept beyond k while scanning, so that the product form's rounding cannot push a
/// true neighbour out before the exact distances are recomputed.
const SPARE: usize = 8;
/// Queries and points per block of the distance product (64 x 256 f64: 128 KiB, in L2).
const QUERY_BLOCK: usize = 64;
const POINT_BLOCK: usize = 256;

vectorised!(
    /// `row[c] = norms[c] - 2 row[c]`.
    fn norm_minus_twice => norm_minus_twice_body(row: &mut [f64], norms: &[f64])
);

#[inline(always)]
fn norm_minus_twice_body(row: &mut [f64], norms: &[f64]) {
    for (v, n) in row.iter_mut().zip(norms) {
        *v = n - 2.0 * *v;
    }
}

/// Exact k nearest neighbours by scanning every training point in blocks: squared distances
/// as |q|^2 + |p|^2 - 2 q.p (one matrix product per block), the k + SPARE smallest kept per
/// query, then those candidates' distances recomputed from the differences (the product
/// form loses digits between near points) and sorted, ties by index.
fn brute_force(points: &Array2<f64>, x: &Array2<f64>, k: usize) -> Neighbours {
    let (n, d) = points.dim();
    let k = k.min(n);
    let keep = (k + SPARE).min(n);
    let points = points.as_standard_layout();
    let p = points.as_slice().expect("standard layout");
    let queries = x.as_standard_layout();
    let q = queries.as_slice().expect("standard layout");
    let sq_norm = |r: &[f64]| r.iter().map(|v| v * v).sum::<f64>();
    let p_norm: Vec<f64> = p.chunks_exact(d).map(sq_norm).collect();
    let mut out: Neighbours = vec![Vec::new(); x.nrows()];
    par_fill(&mut out, n * (d + 2), |start, out| {
        let mut product = vec![0.0; QUERY_BLOCK * POINT_BLOCK];
        for (b, lists) in out.chunks_mut(QUERY_BLOCK).enumerate() {
            let first = start + b * QUERY_BLOCK;
            let rows = lists.len();
            let block = &q[first * d..(first + rows) * d];
            let q_norm: Vec<f64> = block.chunks_exact(d).map(sq_norm).collect();
            let mut candidates: Vec<Vec<(f64, usize)>> = vec![Vec::with_capacity(keep + 1); rows];
            for from in (0..n).step_by(POINT_BLOCK) {
                let cols = POINT_BLOCK.min(n - from);
                let product = &mut product[..rows * cols];
                // product (rows x cols) = block (rows x d) * points[from..]^T (d x cols).
                matmul(
                    (rows, cols, d),
                    block,
                    (d, 1),
                    &p[from * d..(from + cols) * d],
                    (1, d),
                    product,
                    (cols, 1),
                    false,
                );
                for (r, list) in candidates.iter_mut().enumerate() {
                    let row = &mut product[r * cols..(r + 1) * cols];
                    // row = |p|^2 - 2 q.p, so that d^2 = |q|^2 + row.
                    norm_minus_twice(row, &p_norm[from..from + cols]);
                    let mut bound = list.get(keep - 1).map_or(f64::INFINITY, |c| c.0);
                    for (b, chunk) in row.chunks(16).enumerate() {
                        // Most chunks hold no candidate: one vectorised test skips them.
                        let below = bound - q_norm[r];
                        if !chunk.iter().fold(false, |hit, &v| hit | (v < below)) {
                            continue;
                        }
                        for (c, &v) in chunk.iter().enumerate() {
                            let d2 = q_norm[r] + v;
                            if d2 < bound {
                                let at = list.partition_point(|e| e.0 <= d2);
                                list.insert(at, (d2, from + b * 16 + c));
                                list.truncate(keep);
                                if list.len() == keep {
                                    bound = list[keep - 1].0;
                                }
                            }
                        }
                    }
                }
            }
            for (r, (list, found)) in lists.iter_mut().zip(candidates).enumerate() {
                let query = &block[r * d..(r + 1) * d];
                let mut exact: Vec<(f64, usize)> = found
                    .into_iter()
                    .map(|(_, j)| {
                        let point = &p[j * d..(j + 1) * d];
                        let d2: f64 = point
                            .iter()
                            .zip(query)
                            .map(|(a, b)| (a - b) * (a - b))
                            .sum();
                        (d2.sqrt(), j)
                    })
                    .collect();
                exact.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                exact.truncate(k);
                *list = exact;
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_and_brute_force_agree() {
        let v: Vec<f64> = (0..300)
            .map(|i| ((i * 7919) % 997) as f64 / 997.0)
            .collect();
        let x = Array2::from_shape_vec((100, 3), v).unwrap();
        let q = x.slice(ndarray::s![..10, ..]).to_owned();
        let tree = NeighbourIndex::new(&x).query(&q, 5);
        let brute = brute_force(&x, &q, 5);
        for (a, b) in tree.iter().zip(&brute) {
            for (p, r) in a.iter().zip(b) {
                assert!((p.0 - r.0).abs() < 1e-12);
            }
        }
    }
}
