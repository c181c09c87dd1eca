//! From embeddings to anomaly scores, and from scores to a threshold.

use serde::{Deserialize, Serialize};

use super::ModelError;

/// Euclidean norm of each `dim`-long row of `z`: the distance from the origin (EIDN) or from
/// the centre (Deep SAD, whose embedding is `phi(x) - c`).
/// Refuses a network that cannot rank: the scores of its training images are not all finite,
/// or are all the same (a diverged or dead network gives every image one score, which a
/// test would report as an AUC of 0.5).
pub(crate) fn check_not_collapsed(scores: &[f64]) -> Result<(), ModelError> {
    let collapsed = |reason: String| Err(ModelError::Collapsed { reason });
    if let Some(bad) = scores.iter().find(|s| !s.is_finite()) {
        return collapsed(format!("a training image scores {bad}"));
    }
    let (lo, hi) = (scores.iter()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &s| {
        (lo.min(s), hi.max(s))
    });
    if scores.len() > 1 && hi - lo <= 1e-6 * hi.abs().max(1e-12) {
        return collapsed(format!(
            "all {} training images score {hi} (the network gives every image the same score)",
            scores.len()
        ));
    }
    Ok(())
}

pub(crate) fn row_norms(z: &[f32], dim: usize) -> Vec<f64> {
    z.chunks_exact(dim)
        .map(|v| v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt())
        .collect()
}

/// A score threshold calibrated on the normal training images: a new image scoring above
/// it is called anomalous. The training normals' score quantiles are kept so that another
/// false-positive rate can be chosen at scoring time without the training data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The target false-positive rate on the normal training images, and its threshold.
    pub fpr: f64,
    pub threshold: f64,
    /// Scores of the normal training images at quantiles 0, 1/1000, ..., 1.
    pub quantiles: Vec<f64>,
}

impl Calibration {
    /// From the normal training images' scores; `fpr` in (0, 1).
    pub fn new(mut normal_scores: Vec<f64>, fpr: f64) -> Result<Calibration, ModelError> {
        check_fpr(fpr)?;
        if normal_scores.is_empty() || normal_scores.iter().any(|s| !s.is_finite()) {
            return Err(ModelError::InvalidParams(
                "calibration needs finite scores of at least one normal image".into(),
            ));
        }
        normal_scores.sort_by(f64::total_cmp);
        let quantiles = (0..=1000)
            .map(|i| quantile(&normal_scores, i as f64 / 1000.0))
            .collect();
        let mut c = Calibration {
            fpr,
            threshold: 0.0,
            quantiles,
        };
        c.threshold = c.threshold_at(fpr)?;
        Ok(c)
    }

    /// What a hand-edited or damaged calibration may get wrong, as a message.
    pub fn check(&self) -> Result<(), String> {
        let q = &self.quantiles;
        if !(self.fpr > 0.0 && self.fpr < 1.0 && self.threshold.is_finite()) {
            return Err(format!(
                "calibration: fpr {} must be in (0, 1) and threshold {} finite",
                self.fpr, self.threshold
            ));
        }
        if q.len() != 1001 || q.iter().any(|v| !v.is_finite()) || q.windows(2).any(|w| w[0] > w[1])
        {
            return Err(format!(
                "calibration: quantiles must be 1001 finite, non-decreasing scores (found {})",
                q.len()
            ));
        }
        Ok(())
    }

    /// The score above which a fraction `fpr` of the normal training images lie.
    pub fn threshold_at(&self, fpr: f64) -> Result<f64, ModelError> {
        check_fpr(fpr)?;
        Ok(quantile(&self.quantiles, 1.0 - fpr))
    }
}

fn check_fpr(fpr: f64) -> Result<(), ModelError> {
    if fpr > 0.0 && fpr < 1.0 {
        Ok(())
    } else {
        Err(ModelError::InvalidParams(format!(
            "false-positive rate {fpr} must be in (0, 1)"
        )))
    }
}

/// The `p`-quantile of sorted values, linear between neighbours (numpy's default).
fn quantile(sorted: &[f64], p: f64) -> f64 {
    let at = p * (sorted.len() - 1) as f64;
    let (lo, frac) = (at.floor() as usize, at.fract());
    match sorted.get(lo + 1) {
        Some(&hi) => sorted[lo] + frac * (hi - sorted[lo]),
        None => sorted[lo],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_is_numpy_linear_quantile() {
        let scores: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let c = Calibration::new(scores, 0.01).unwrap();
        assert!((c.threshold - 99.01).abs() < 1e-9, "{}", c.threshold);
        assert!((c.threshold_at(0.5).unwrap() - 50.5).abs() < 1e-9);
        assert_eq!(c.quantiles[0], 1.0);
        assert_eq!(c.quantiles[1000], 100.0);
        for bad in [0.0, 1.0, f64::NAN, -0.5] {
            assert!(c.threshold_at(bad).is_err(), "{bad}");
        }
        assert!(Calibration::new(vec![], 0.01).is_err());
        assert!(Calibration::new(vec![f64::NAN], 0.01).is_err());
    }

    /// Issue 28 case 3: one score for every image, or a non-finite one, is a collapse.
    #[test]
    fn constant_or_non_finite_scores_are_a_collapse() {
        assert!(check_not_collapsed(&[0.3, 0.1, 2.0]).is_ok());
        for bad in [
            vec![0.7; 50],
            vec![0.0; 3],
            vec![0.1, f64::NAN],
            vec![f64::INFINITY, 1.0],
        ] {
            let err = check_not_collapsed(&bad).unwrap_err().to_string();
            assert!(err.contains("training collapsed"), "{bad:?}: {err}");
        }
    }
}
