//! One-class SVM (Schölkopf et al. 2001) with an RBF kernel K(x, x') = exp(-gamma ||x - x'||^2),
//! solved as libsvm (and so scikit-learn's `OneClassSVM`) solves it.
//!
//! Written here rather than through linfa-svm: linfa's SMO fills the dense n x n kernel matrix
//! (288 MB at 6,000 points, ~20 GB for a 50,000-image normal pool) and was 6-9x slower than
//! libsvm on the detectors bench. This is libsvm's `Solver` for the one-class dual
//!
//!   min 1/2 a'Qa  s.t.  0 <= a_i <= 1,  sum a_i = nu * n
//!
//! with its initial point, its second-order working-set selection (Fan, Chen and Lin 2005), its
//! stopping rule (maximal violation < tol, 1e-3 as scikit-learn's default) and its rho; kernel columns are computed on demand
//! into a least-recently-used cache bounded in bytes (scikit-learn's `cache_size`, 200 MB by
//! default), so memory grows as n, not n^2. libsvm's shrinking is left out: it changes the
//! order of work, not the solution, and the column computations it cannot avoid dominate here.
//! The anomaly score is rho - sum_i a_i K(x_i, x), the negated `decision_function`.

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::{check_dim, check_training, par_fill, AnomalyScorer, DetectError};
use crate::kernels::vectorised;

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
    /// Stop when the largest KKT violation is below this (libsvm's eps, scikit-learn's `tol`).
    tol: f64,
    /// Kernel cache in MiB. Not part of a record's settings: it changes the speed, never the
    /// solution (a column is the same numbers whether cached or recomputed).
    #[serde(skip, default = "default_cache_mib")]
    cache_mib: usize,
}

fn default_cache_mib() -> usize {
    200
}

/// libsvm's floor for a non-positive curvature along the working pair.
const TAU: f64 = 1e-12;

super::detector_params!(OneClassSvmParams, OneClassSvmValidParams, FittedOneClassSvm);

impl Default for OneClassSvmParams {
    /// nu = 0.1 (see the README's "where the paper is silent"), gamma "scale", and
    /// scikit-learn's tol = 1e-3 and 200 MiB cache.
    fn default() -> Self {
        OneClassSvmParams(OneClassSvmValidParams {
            nu: 0.1,
            gamma: Gamma::Scale,
            tol: 1e-3,
            cache_mib: default_cache_mib(),
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

    pub fn tol(mut self, tol: f64) -> Self {
        self.0.tol = tol;
        self
    }

    /// Memory for cached kernel columns; at least two columns are always kept.
    pub fn cache_mib(mut self, mib: usize) -> Self {
        self.0.cache_mib = mib;
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
        if !(self.tol > 0.0 && self.tol.is_finite()) {
            return Err(DetectError::InvalidParams("tol must be > 0".into()));
        }
        if self.cache_mib == 0 {
            return Err(DetectError::InvalidParams(
                "the kernel cache needs at least 1 MiB".into(),
            ));
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
        let kernel = Rbf::new(
            x.as_standard_layout().iter().copied().collect(),
            x.ncols(),
            gamma,
        );
        let max_iter = (100 * x.nrows()).max(10_000_000);
        let (alpha, rho, converged) =
            solve(&kernel, self.nu, self.tol, self.cache_mib << 20, max_iter);
        let (mut support, mut coef) = (Vec::new(), Vec::new());
        for (i, &a) in alpha.iter().enumerate() {
            if a > 0.0 {
                support.extend_from_slice(kernel.row(i));
                coef.push(a);
            }
        }
        Ok(FittedOneClassSvm {
            support: Rbf::new(support, x.ncols(), gamma),
            coef,
            rho,
            gamma,
            converged,
        })
    }
}

/// Points and the kernel's width. The points are kept twice: by row (a query) and by
/// feature (so a kernel column is a loop over points, which vectorises).
struct Rbf {
    points: Vec<f64>,
    by_feature: Vec<f64>,
    dim: usize,
    gamma: f64,
}

impl Rbf {
    fn new(points: Vec<f64>, dim: usize, gamma: f64) -> Self {
        let n = points.len() / dim;
        let by_feature = (0..dim * n)
            .map(|at| points[(at % n) * dim + at / n])
            .collect();
        Rbf {
            points,
            by_feature,
            dim,
            gamma,
        }
    }

    fn len(&self) -> usize {
        self.points.len() / self.dim
    }

    fn row(&self, i: usize) -> &[f64] {
        &self.points[i * self.dim..(i + 1) * self.dim]
    }

    /// K(x_j, q) for the points j = start, start + 1, ... into `out`.
    fn column_into(&self, q: &[f64], start: usize, out: &mut [f32]) {
        let n = self.len();
        let mut d2 = [0.0f64; 256];
        for (b, out) in out.chunks_mut(d2.len()).enumerate() {
            let from = start + b * d2.len();
            let d2 = &mut d2[..out.len()];
            d2.fill(0.0);
            for (k, &qk) in q.iter().enumerate() {
                let feature = &self.by_feature[k * n + from..k * n + from + out.len()];
                squared_distance_add(feature, qk, d2);
            }
            rbf_of_squared(d2, self.gamma, out);
        }
    }

    /// sum_j coef_j K(x_j, q).
    fn weighted_sum(&self, coef: &[f64], q: &[f64]) -> f64 {
        self.points
            .chunks_exact(self.dim)
            .zip(coef)
            .map(|(p, c)| {
                let d2: f64 = p.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum();
                c * (-self.gamma * d2).exp()
            })
            .sum()
    }
}

vectorised!(
    /// `d2[j] += (feature[j] - q)^2`.
    fn squared_distance_add => squared_distance_add_body(feature: &[f64], q: f64, d2: &mut [f64])
);

#[inline(always)]
fn squared_distance_add_body(feature: &[f64], q: f64, d2: &mut [f64]) {
    for (acc, &x) in d2.iter_mut().zip(feature) {
        let t = x - q;
        *acc += t * t;
    }
}

vectorised!(
    /// `out[j] = exp(-gamma d2[j])` rounded to f32.
    fn rbf_of_squared => rbf_of_squared_body(d2: &[f64], gamma: f64, out: &mut [f32])
);

#[inline(always)]
fn rbf_of_squared_body(d2: &[f64], gamma: f64, out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(d2) {
        *o = exp_nonpositive(-gamma * v) as f32;
    }
}

/// e^x for x <= 0, to ~1e-11 relative (far below the f32 the cache keeps), in plain
/// arithmetic so that a loop over it vectorises (std's `exp` is a call per value). Below -110
/// the result is e^-110, which rounds to 0 in f32.
#[inline(always)]
fn exp_nonpositive(x: f64) -> f64 {
    // Adding and subtracting 1.5 * 2^52 rounds to an integer; the sum's low bits hold it.
    const ROUND: f64 = 6755399441055744.0;
    const LN2_HI: f64 = 0.693_147_180_369_123_8;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    let x = x.max(-110.0);
    let shifted = x * std::f64::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    // x = n ln 2 + r with |r| <= ln(2) / 2; e^r by Taylor to r^10 / 10!.
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 3_628_800.0;
    for c in [
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    // 2^n: n + 1023 in the exponent field (n is in [-159, 0], so the shift drops ROUND's bits).
    let exponent = (shifted + 1023.0).to_bits() << 52;
    p * f64::from_bits(exponent)
}

/// Kernel columns by index, least recently used evicted first once `capacity` are held.
/// Columns are f32, as libsvm's `Qfloat`.
struct KernelCache<'a> {
    kernel: &'a Rbf,
    column: Vec<Option<Box<[f32]>>>,
    last_use: Vec<u64>,
    held: Vec<usize>,
    capacity: usize,
    clock: u64,
}

impl<'a> KernelCache<'a> {
    fn new(kernel: &'a Rbf, bytes: usize) -> Self {
        let n = kernel.len();
        let capacity = (bytes / (4 * n)).clamp(2, n);
        KernelCache {
            kernel,
            column: vec![None; n],
            last_use: vec![0; n],
            held: Vec::with_capacity(capacity),
            capacity,
            clock: 0,
        }
    }

    /// Makes column `i` present, never evicting column `keep`.
    fn load(&mut self, i: usize, keep: usize) {
        self.clock += 1;
        self.last_use[i] = self.clock;
        if self.column[i].is_some() {
            return;
        }
        let n = self.kernel.len();
        let mut buffer = if self.held.len() < self.capacity {
            vec![0f32; n].into_boxed_slice()
        } else {
            let (at, _) = self
                .held
                .iter()
                .enumerate()
                .filter(|&(_, &c)| c != keep)
                .min_by_key(|&(_, &c)| self.last_use[c])
                .expect("capacity >= 2");
            let victim = self.held.swap_remove(at);
            self.column[victim]
                .take()
                .expect("held columns are present")
        };
        let q = self.kernel.row(i);
        par_fill(&mut buffer, self.kernel.dim + 8, |start, out| {
            self.kernel.column_into(q, start, out)
        });
        self.column[i] = Some(buffer);
        self.held.push(i);
    }

    fn get(&self, i: usize) -> &[f32] {
        self.column[i].as_deref().expect("loaded before use")
    }
}

/// libsvm's one-class solver with C = 1: the multipliers and rho.
/// The multipliers, rho, and whether the stopping tolerance was met before the iteration
/// cap.
fn solve(
    kernel: &Rbf,
    nu: f64,
    tol: f64,
    cache_bytes: usize,
    max_iter: usize,
) -> (Vec<f64>, f64, bool) {
    let n = kernel.len();
    // libsvm's start: the first floor(nu n) multipliers at 1, the next one the remainder.
    let total = nu * n as f64;
    let full = (total as usize).min(n);
    let mut alpha = vec![0.0; n];
    alpha[..full].fill(1.0);
    if full < n {
        alpha[full] = total - full as f64;
    }
    let mut cache = KernelCache::new(kernel, cache_bytes);
    // Gradient Q a (the linear term is zero).
    let mut grad = vec![0.0f64; n];
    for (i, &a) in alpha.iter().enumerate() {
        if a != 0.0 {
            cache.load(i, i);
            for (g, &q) in grad.iter_mut().zip(cache.get(i)) {
                *g += a * q as f64;
            }
        }
    }
    let mut converged = false;
    for _ in 0..max_iter {
        // i: the most violating multiplier that can grow.
        let mut g_max = f64::NEG_INFINITY;
        let mut i = usize::MAX;
        for (t, (&a, &g)) in alpha.iter().zip(&grad).enumerate() {
            if a < 1.0 && -g >= g_max {
                g_max = -g;
                i = t;
            }
        }
        if i == usize::MAX {
            converged = true;
            break;
        }
        cache.load(i, i);
        let q_i = cache.get(i);
        // j: among those that can shrink, the largest second-order decrease of the objective.
        let (mut g_max2, mut j, mut best) = (f64::NEG_INFINITY, usize::MAX, f64::INFINITY);
        for (t, (&a, &g)) in alpha.iter().zip(&grad).enumerate() {
            if a > 0.0 {
                g_max2 = g_max2.max(g);
                let diff = g_max + g;
                if diff > 0.0 {
                    let curvature = 2.0 - 2.0 * q_i[t] as f64;
                    let curvature = if curvature > 0.0 { curvature } else { TAU };
                    let decrease = -diff * diff / curvature;
                    if decrease <= best {
                        best = decrease;
                        j = t;
                    }
                }
            }
        }
        if g_max + g_max2 < tol || j == usize::MAX {
            converged = true;
            break;
        }
        cache.load(j, i);
        let (q_i, q_j) = (cache.get(i), cache.get(j));
        // The pair's update along sum a = const, clipped to the box (libsvm's y_i = y_j case).
        let curvature = (2.0 - 2.0 * q_i[j] as f64).max(0.0);
        let curvature = if curvature > 0.0 { curvature } else { TAU };
        let delta = (grad[i] - grad[j]) / curvature;
        let (old_i, old_j) = (alpha[i], alpha[j]);
        let sum = old_i + old_j;
        let (mut a_i, mut a_j) = (old_i - delta, old_j + delta);
        if sum > 1.0 {
            if a_i > 1.0 {
                a_i = 1.0;
                a_j = sum - 1.0;
            }
        } else if a_j < 0.0 {
            a_j = 0.0;
            a_i = sum;
        }
        if sum > 1.0 {
            if a_j > 1.0 {
                a_j = 1.0;
                a_i = sum - 1.0;
            }
        } else if a_i < 0.0 {
            a_i = 0.0;
            a_j = sum;
        }
        alpha[i] = a_i;
        alpha[j] = a_j;
        let (d_i, d_j) = (a_i - old_i, a_j - old_j);
        for ((g, &qi), &qj) in grad.iter_mut().zip(q_i).zip(q_j) {
            *g += qi as f64 * d_i + qj as f64 * d_j;
        }
    }
    let rho = rho(&alpha, &grad);
    (alpha, rho, converged)
}

/// libsvm's rho: the mean gradient over free multipliers, else the middle of the feasible range.
fn rho(alpha: &[f64], grad: &[f64]) -> f64 {
    let (mut upper, mut lower) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut free_sum, mut free) = (0.0, 0usize);
    for (&a, &g) in alpha.iter().zip(grad) {
        if a >= 1.0 {
            lower = lower.max(g);
        } else if a <= 0.0 {
            upper = upper.min(g);
        } else {
            free += 1;
            free_sum += g;
        }
    }
    if free > 0 {
        free_sum / free as f64
    } else {
        (upper + lower) / 2.0
    }
}

pub struct FittedOneClassSvm {
    support: Rbf,
    coef: Vec<f64>,
    rho: f64,
    pub gamma: f64,
    /// Whether the solver met its tolerance before the iteration cap.
    pub converged: bool,
}

impl FittedOneClassSvm {
    pub fn n_support(&self) -> usize {
        self.coef.len()
    }
}

impl AnomalyScorer for FittedOneClassSvm {
    fn score(&self, x: &Array2<f64>) -> Result<Vec<f64>, DetectError> {
        check_dim(x, self.support.dim)?;
        let x = x.as_standard_layout();
        let rows = x.as_slice().expect("standard layout");
        let mut out = vec![0.0; x.nrows()];
        par_fill(
            &mut out,
            self.coef.len() * (self.support.dim + 8),
            |start, out| {
                let queries = rows[start * self.support.dim..].chunks_exact(self.support.dim);
                for (o, q) in out.iter_mut().zip(queries) {
                    *o = self.rho - self.support.weighted_sum(&self.coef, q);
                }
            },
        );
        Ok(out)
    }

    fn notes(&self) -> Vec<String> {
        if self.converged {
            Vec::new()
        } else {
            vec![
                "one-class SVM: the solver stopped at its iteration cap before its tolerance"
                    .into(),
            ]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(n: usize, d: usize) -> Array2<f64> {
        Array2::from_shape_fn((n, d), |(i, j)| {
            let v = ((i as f64) * 12.9898 + (j as f64) * 78.233).sin() * 43758.5453;
            v - v.floor()
        })
    }

    #[test]
    fn exp_matches_std() {
        let mut worst: f64 = 0.0;
        for i in 0..=200_000 {
            let x = -(i as f64) * 5e-4;
            let (ours, want) = (exp_nonpositive(x), x.exp());
            worst = worst.max((ours - want).abs() / want);
        }
        assert!(worst < 1e-12, "relative error {worst}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-1e6) as f32, 0.0);
    }

    #[test]
    fn a_small_cache_gives_the_same_solution() {
        // A cache of two columns recomputes nearly every column; the numbers must not move.
        let x = points(300, 3);
        let big = OneClassSvmParams::default().fit(&x).unwrap();
        let kernel = Rbf::new(x.iter().copied().collect(), 3, big.gamma);
        let (a_big, rho_big, done) = solve(&kernel, 0.1, 1e-3, 1 << 30, 1_000_000);
        let (a_small, rho_small, _) = solve(&kernel, 0.1, 1e-3, 2 * 4 * 300, 1_000_000);
        assert!(done, "converges well within the cap");
        // Stopped at its cap, the solver says so (and the fitted model notes it).
        let (_, _, capped) = solve(&kernel, 0.1, 1e-3, 1 << 30, 2);
        assert!(!capped);
        assert_eq!(a_big, a_small);
        assert_eq!(rho_big, rho_small);
        assert_eq!(rho_big, big.rho);
    }

    #[test]
    fn multipliers_are_feasible_and_nu_bounds_the_outliers() {
        let x = points(500, 2);
        let svm = OneClassSvmParams::default().nu(0.2).fit(&x).unwrap();
        let sum: f64 = svm.coef.iter().sum();
        assert!((sum - 0.2 * 500.0).abs() < 1e-9, "sum of multipliers {sum}");
        assert!(svm.coef.iter().all(|&a| a > 0.0 && a <= 1.0));
        // nu is at most the fraction of training points outside (score > 0) ... and at least
        // the fraction of support vectors is >= nu.
        assert!(svm.n_support() as f64 >= 0.2 * 500.0);
        let outside = svm.score(&x).unwrap().iter().filter(|&&s| s > 1e-6).count();
        assert!(outside as f64 <= 0.2 * 500.0 + 1.0, "{outside} outliers");
    }
}
