//! The paper's random triplet generator g(X, X^): for each triplet the anchor is normal or
//! anomalous with probability 1/2; the positive comes from the anchor's pool and the
//! negative from the other, both uniformly with replacement. Only indices are drawn: the
//! |X| x |X^| triplet set is never built.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// An image of one of the two pools.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pick {
    pub anomalous: bool,
    pub index: usize,
}

/// One batch of triplets; the anchor of triplet i is the ones-vector when
/// `anchor_anomalous[i]`, else the origin.
#[derive(Clone, Debug, PartialEq)]
pub struct TripletBatch {
    pub anchor_anomalous: Vec<bool>,
    pub positives: Vec<Pick>,
    pub negatives: Vec<Pick>,
}

#[derive(Clone, Debug)]
pub struct TripletSampler {
    n_normal: usize,
    n_anomalous: usize,
    rng: Xoshiro256PlusPlus,
}

impl TripletSampler {
    /// Both pools must be non-empty (checked by the training params).
    pub fn new(n_normal: usize, n_anomalous: usize, seed: u64) -> Self {
        assert!(n_normal > 0 && n_anomalous > 0, "empty pool");
        TripletSampler {
            n_normal,
            n_anomalous,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
        }
    }

    fn pick(&mut self, anomalous: bool) -> Pick {
        let n = if anomalous {
            self.n_anomalous
        } else {
            self.n_normal
        };
        Pick {
            anomalous,
            index: self.rng.gen_range(0..n),
        }
    }

    pub fn sample(&mut self, m: usize) -> TripletBatch {
        let mut batch = TripletBatch {
            anchor_anomalous: Vec::with_capacity(m),
            positives: Vec::with_capacity(m),
            negatives: Vec::with_capacity(m),
        };
        for _ in 0..m {
            let anomalous: bool = self.rng.gen();
            batch.anchor_anomalous.push(anomalous);
            let p = self.pick(anomalous);
            let n = self.pick(!anomalous);
            batch.positives.push(p);
            batch.negatives.push(n);
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proportions_pools_and_seed() {
        let mut s = TripletSampler::new(1000, 7, 3);
        let mut anomalous_anchors = 0;
        let mut seen_anomalies = [0usize; 7];
        let draws = 200_000;
        let batch = s.sample(draws);
        for i in 0..draws {
            let a = batch.anchor_anomalous[i];
            let (p, n) = (batch.positives[i], batch.negatives[i]);
            // Positive from the anchor's pool, negative from the other.
            assert_eq!(p.anomalous, a);
            assert_eq!(n.anomalous, !a);
            let anomaly = if a { p } else { n };
            let normal = if a { n } else { p };
            assert!(anomaly.index < 7 && normal.index < 1000);
            seen_anomalies[anomaly.index] += 1;
            anomalous_anchors += a as usize;
        }
        // P(anomalous anchor) = 1/2: 200k draws, sd ~ 224, so +-1500 is > 6 sd.
        assert!(
            (anomalous_anchors as i64 - 100_000).abs() < 1500,
            "{anomalous_anchors}"
        );
        // Every anomaly appears in every triplet once: uniform over 7 -> ~28,571 each.
        for c in seen_anomalies {
            assert!(
                (c as f64 - draws as f64 / 7.0).abs() < 1500.0,
                "{seen_anomalies:?}"
            );
        }
        let a = TripletSampler::new(50, 5, 9).sample(64);
        let b = TripletSampler::new(50, 5, 9).sample(64);
        let c = TripletSampler::new(50, 5, 10).sample(64);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
