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

/// Where a calibration's normal images came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum CalibrationSource {
    /// Normal training images held out of training (a `share` of them): the network never
    /// pulled them to the origin, so they score as new normal images do.
    HeldOut { share: f64 },
    /// The normal training images themselves (an older eidn, or `--calibration-share 0`):
    /// the network was trained to pull them in, so new normal images score higher and more
    /// of them than the requested rate are flagged.
    #[default]
    Training,
}

/// A score threshold calibrated on normal images: a new image scoring above it is called
/// anomalous. The calibration images' sorted scores are kept, so that another
/// false-positive rate can be chosen, and an image's percentile found, at scoring time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The requested false-positive rate, and its threshold.
    pub fpr: f64,
    pub threshold: f64,
    #[serde(default)]
    pub source: CalibrationSource,
    /// The calibration images' scores, ascending (an older eidn kept 1001 quantiles of the
    /// training normals' scores instead; they serve the same way).
    #[serde(alias = "quantiles")]
    pub scores: Vec<f64>,
}

impl Calibration {
    /// From normal images' scores; `fpr` in (0, 1).
    pub fn new(
        mut normal_scores: Vec<f64>,
        fpr: f64,
        source: CalibrationSource,
    ) -> Result<Calibration, ModelError> {
        check_fpr(fpr)?;
        if normal_scores.is_empty() || normal_scores.iter().any(|s| !s.is_finite()) {
            return Err(ModelError::InvalidParams(
                "calibration needs finite scores of at least one normal image".into(),
            ));
        }
        normal_scores.sort_by(f64::total_cmp);
        let mut c = Calibration {
            fpr,
            threshold: 0.0,
            source,
            scores: normal_scores,
        };
        c.threshold = c.threshold_at(fpr)?;
        Ok(c)
    }

    /// What a hand-edited or damaged calibration may get wrong, as a message.
    pub fn check(&self) -> Result<(), String> {
        let q = &self.scores;
        if !(self.fpr > 0.0 && self.fpr < 1.0 && self.threshold.is_finite()) {
            return Err(format!(
                "calibration: fpr {} must be in (0, 1) and threshold {} finite",
                self.fpr, self.threshold
            ));
        }
        if q.is_empty() || q.iter().any(|v| !v.is_finite()) || q.windows(2).any(|w| w[0] > w[1]) {
            return Err(format!(
                "calibration: scores must be finite and ascending, at least one (found {})",
                q.len()
            ));
        }
        Ok(())
    }

    /// The threshold that flags at most a fraction `fpr` of new normal images: the k-th
    /// smallest of the n calibration scores with k = ceil((n + 1)(1 - fpr)), the split
    /// conformal rule. For scores exchangeable with new normal images' the rate flagged is
    /// then between fpr - 1/(n + 1) and fpr; with too few images for `fpr` (k > n) it is
    /// their highest score, see [`Calibration::resolves`].
    pub fn threshold_at(&self, fpr: f64) -> Result<f64, ModelError> {
        check_fpr(fpr)?;
        let n = self.scores.len();
        // The epsilon keeps float noise (100 x 0.99 = 99.000...01) from moving k up by one.
        let k = ((n + 1) as f64 * (1.0 - fpr) - 1e-9).ceil() as usize;
        Ok(self.scores[k.clamp(1, n) - 1])
    }

    /// Whether the calibration holds enough images to resolve `fpr`: (n + 1) fpr >= 1.
    pub fn resolves(&self, fpr: f64) -> bool {
        (self.scores.len() + 1) as f64 * fpr >= 1.0
    }

    /// The percentage of calibration images scoring below `score` (ties count half): how
    /// unusual an image is among normal ones.
    pub fn percentile(&self, score: f64) -> f64 {
        let below = self.scores.partition_point(|&s| s < score);
        let at_most = self.scores.partition_point(|&s| s <= score);
        100.0 * (below + at_most) as f64 / (2 * self.scores.len()) as f64
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformal_threshold_and_percentiles() {
        // Scores 1..=99: k = ceil(100 x 0.99) = 99 -> 99; fpr 0.5: k = 50 -> 50.
        let scores: Vec<f64> = (1..=99).rev().map(f64::from).collect();
        let c = Calibration::new(scores, 0.01, CalibrationSource::HeldOut { share: 0.1 }).unwrap();
        assert_eq!(c.threshold, 99.0);
        assert_eq!(c.threshold_at(0.5).unwrap(), 50.0);
        assert_eq!(c.threshold_at(0.1).unwrap(), 90.0);
        assert!(c.resolves(0.01) && !c.resolves(0.005));
        assert_eq!(
            c.threshold_at(0.001).unwrap(),
            99.0,
            "too few: the highest score"
        );
        assert_eq!(c.scores[0], 1.0);
        assert_eq!(c.percentile(0.5), 0.0);
        assert_eq!(c.percentile(1000.0), 100.0);
        assert!((c.percentile(50.0) - 100.0 * 49.5 / 99.0).abs() < 1e-9);
        for bad in [0.0, 1.0, f64::NAN, -0.5] {
            assert!(c.threshold_at(bad).is_err(), "{bad}");
        }
        let source = CalibrationSource::Training;
        assert!(Calibration::new(vec![], 0.01, source).is_err());
        assert!(Calibration::new(vec![f64::NAN], 0.01, source).is_err());
    }

    /// An older eidn.json (1001 quantiles, no source) still loads, as a training calibration.
    #[test]
    fn older_calibrations_load_as_training_ones() {
        let q: Vec<f64> = (0..=1000).map(|i| f64::from(i) / 1000.0).collect();
        let json = serde_json::json!({"fpr": 0.01, "threshold": 0.99, "quantiles": q});
        let c: Calibration = serde_json::from_value(json).unwrap();
        assert_eq!(c.source, CalibrationSource::Training);
        assert_eq!(c.scores.len(), 1001);
        assert!(c.check().is_ok());
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
