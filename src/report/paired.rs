//! Statistics of paired differences (method A minus method B on the same cells): the mean
//! with a percentile-bootstrap 95 % confidence interval, the Wilcoxon signed-rank test and
//! wins / ties / losses. The Wilcoxon p-value follows scipy.stats.wilcoxon's defaults
//! exactly (zeros dropped, no continuity correction, two-sided, `method="auto"`), so the
//! report's p-values can be checked against scipy (tests/fixtures/paired_scipy.json).

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Bootstrap resamples: the interval's ends move by well under 0.001 AUC between seeds.
pub const RESAMPLES: usize = 10_000;
/// Differences smaller than this count as ties (AUCs are shown to 4 digits).
pub const TIE: f64 = 5e-4;

/// What a report says about one pair of methods.
#[derive(Clone, Debug, PartialEq)]
pub struct Paired {
    pub n: usize,
    pub mean: f64,
    /// The 95 % percentile-bootstrap interval of the mean difference.
    pub ci: (f64, f64),
    /// Two-sided Wilcoxon signed-rank p-value (None when every difference is zero).
    pub p: Option<f64>,
    pub wins: usize,
    pub ties: usize,
    pub losses: usize,
}

impl Paired {
    /// The statistics of `diffs` (A - B per cell); the bootstrap draws from `seed`.
    /// None for no differences.
    pub fn of(diffs: &[f64], seed: u64) -> Option<Paired> {
        if diffs.is_empty() {
            return None;
        }
        let n = diffs.len();
        let mean = diffs.iter().sum::<f64>() / n as f64;
        Some(Paired {
            n,
            mean,
            ci: bootstrap_ci(diffs, RESAMPLES, seed),
            p: wilcoxon(diffs),
            wins: diffs.iter().filter(|d| **d >= TIE).count(),
            ties: diffs.iter().filter(|d| d.abs() < TIE).count(),
            losses: diffs.iter().filter(|d| **d <= -TIE).count(),
        })
    }
}

/// The 2.5th and 97.5th percentiles (linear interpolation, as numpy's default) of the means
/// of `resamples` resamples of `diffs` with replacement.
pub fn bootstrap_ci(diffs: &[f64], resamples: usize, seed: u64) -> (f64, f64) {
    let n = diffs.len();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| (0..n).map(|_| diffs[rng.gen_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    (percentile(&means, 2.5), percentile(&means, 97.5))
}

/// numpy's `percentile(sorted, q)` with linear interpolation.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let at = q / 100.0 * (sorted.len() - 1) as f64;
    let lo = at.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (at - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Two-sided p-value of the Wilcoxon signed-rank test of `diffs` against a median of zero,
/// as `scipy.stats.wilcoxon(diffs)` computes it: zero differences are dropped from the
/// ranks; up to 50 differences without ties or zeros use the exact null distribution, up to
/// 13 with ties or zeros the exact sign-flip permutation distribution, anything else the
/// normal approximation with the tie correction. None when every difference is zero.
pub fn wilcoxon(diffs: &[f64]) -> Option<f64> {
    let nonzero: Vec<f64> = diffs.iter().copied().filter(|d| *d != 0.0).collect();
    let m = nonzero.len();
    if m == 0 {
        return None;
    }
    let abs: Vec<f64> = nonzero.iter().map(|d| d.abs()).collect();
    let (ranks, tie_sizes) = crate::metrics::mid_ranks(&abs);
    let r_plus: f64 = (nonzero.iter().zip(&ranks))
        .filter(|(d, _)| **d > 0.0)
        .map(|(_, r)| r)
        .sum();
    let has_ties = tie_sizes.iter().any(|&t| t > 1);
    let zeros = diffs.len() - m;
    let p = if diffs.len() <= 50 && !has_ties && zeros == 0 {
        exact_p(m, r_plus)
    } else if diffs.len() <= 13 {
        sign_flip_p(&ranks, r_plus)
    } else {
        normal_p(m, r_plus, &tie_sizes)
    };
    Some(p.clamp(0.0, 1.0))
}

/// 2 min(P(T >= floor r), P(T <= ceil r)) under the exact null distribution of the sum of
/// positive ranks of 1..=m (each sign equally likely).
fn exact_p(m: usize, r_plus: f64) -> f64 {
    let max = m * (m + 1) / 2;
    // counts[s] = number of sign patterns with positive-rank sum s.
    let mut counts = vec![0f64; max + 1];
    counts[0] = 1.0;
    for rank in 1..=m {
        for s in (rank..=max).rev() {
            counts[s] += counts[s - rank];
        }
    }
    let total = 2f64.powi(m as i32);
    let lo = r_plus.floor() as usize;
    let hi = (r_plus.ceil() as usize).min(max);
    let sf: f64 = counts[lo.min(max)..].iter().sum::<f64>() / total;
    let cdf: f64 = counts[..=hi].iter().sum::<f64>() / total;
    2.0 * sf.min(cdf)
}

/// The exact permutation test over every sign pattern of the ranked differences, as scipy's
/// `permutation_test` (relative tolerance 100 eps on the observed statistic).
fn sign_flip_p(ranks: &[f64], r_plus: f64) -> f64 {
    let m = ranks.len();
    let gamma = (f64::EPSILON * 100.0 * r_plus).abs();
    let (mut less, mut greater) = (0u64, 0u64);
    for pattern in 0u64..(1 << m) {
        let s: f64 = (0..m)
            .filter(|i| pattern >> i & 1 == 1)
            .map(|i| ranks[i])
            .sum();
        less += u64::from(s <= r_plus + gamma);
        greater += u64::from(s >= r_plus - gamma);
    }
    let total = (1u64 << m) as f64;
    2.0 * (less as f64 / total).min(greater as f64 / total)
}

/// The normal approximation: z = (R+ - m(m+1)/4) / se with the tie-corrected se,
/// p = 2 P(Z <= -|z|).
fn normal_p(m: usize, r_plus: f64, tie_sizes: &[usize]) -> f64 {
    let m = m as f64;
    let mean = m * (m + 1.0) / 4.0;
    let ties: f64 = tie_sizes.iter().map(|&t| (t * t * t - t) as f64).sum();
    let se = ((m * (m + 1.0) * (2.0 * m + 1.0) - ties / 2.0) / 24.0).sqrt();
    let z = (r_plus - mean) / se;
    // 2 Phi(-|z|) = erfc(|z| / sqrt 2)
    statrs::function::erf::erfc(z.abs() / std::f64::consts::SQRT_2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// By hand: 4 positive differences of distinct size: R+ = 10, the one pattern in 16 that
    /// reaches it; two-sided p = 2/16.
    #[test]
    fn exact_null_by_hand() {
        assert_eq!(wilcoxon(&[0.1, 0.2, 0.3, 0.4]), Some(0.125));
        assert_eq!(wilcoxon(&[0.0, 0.0]), None);
        // Symmetric around zero: p = 1.
        assert_eq!(wilcoxon(&[-0.1, 0.1 + 1e-9]).map(|p| p > 0.99), Some(true));
    }

    #[test]
    fn wins_ties_losses_and_a_seeded_interval() {
        let d = [0.02, 0.01, 0.0001, -0.03, 0.05];
        let p = Paired::of(&d, 0).unwrap();
        assert_eq!((p.wins, p.ties, p.losses), (3, 1, 1));
        assert!(p.ci.0 < p.mean && p.mean < p.ci.1, "{p:?}");
        assert_eq!(
            Paired::of(&d, 0),
            Some(p.clone()),
            "the same seed, the same interval"
        );
        assert!(Paired::of(&[], 0).is_none());
    }

    /// scipy 1.17.1's p-values to 1e-12 (every branch: exact, sign flips, normal), and its
    /// percentile-bootstrap interval (200,000 resamples) within a tenth of a standard error
    /// (tests/reference/paired_reference.py wrote the fixture).
    #[test]
    fn p_values_and_intervals_match_scipy() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/paired_scipy.json")).unwrap();
        let cases = doc["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 9);
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let diffs: Vec<f64> = (case["diffs"].as_array().unwrap().iter())
                .map(|v| v.as_f64().unwrap())
                .collect();
            let want = case["wilcoxon_p"].as_f64().unwrap();
            let got = wilcoxon(&diffs).unwrap();
            assert!(
                (got - want).abs() <= 1e-12 + 1e-9 * want,
                "{name}: p {got} against scipy's {want}"
            );
            let se = case["standard_error"].as_f64().unwrap();
            let (lo, hi) = bootstrap_ci(&diffs, RESAMPLES, 0);
            let ci = &case["bootstrap_ci"];
            for (got, want) in [(lo, ci[0].as_f64().unwrap()), (hi, ci[1].as_f64().unwrap())] {
                assert!(
                    (got - want).abs() <= 0.1 * se,
                    "{name}: interval end {got} against scipy's {want} (se {se})"
                );
            }
        }
    }
}
