//! ROC AUC and average precision of anomaly scores (higher = more anomalous).
//!
//! Written here rather than taken from linfa: linfa 0.8's `BinaryClassification::roc` takes
//! `Pr` probabilities (f32 in [0, 1], negatives dropped), while our scores are unbounded
//! distances and log-likelihoods that need f64, and linfa has no average precision. Both are
//! checked against hand-worked values and scikit-learn's output (tests/reference/).

/// Errors of the metrics module.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MetricsError {
    #[error("{scores} scores but {labels} labels")]
    LengthMismatch { scores: usize, labels: usize },
    #[error("needs both classes: {positives} anomalies and {negatives} normal samples")]
    OneClass { positives: usize, negatives: usize },
    #[error("score {index} is not finite ({value})")]
    NonFinite { index: usize, value: f64 },
}

/// Indices of `scores` in ascending score order, after checking the inputs.
fn checked_order(scores: &[f64], labels: &[bool]) -> Result<(Vec<usize>, usize), MetricsError> {
    if scores.len() != labels.len() {
        return Err(MetricsError::LengthMismatch {
            scores: scores.len(),
            labels: labels.len(),
        });
    }
    if let Some(index) = scores.iter().position(|s| !s.is_finite()) {
        return Err(MetricsError::NonFinite {
            index,
            value: scores[index],
        });
    }
    let positives = labels.iter().filter(|&&l| l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return Err(MetricsError::OneClass {
            positives,
            negatives,
        });
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    Ok((order, positives))
}

/// Mid-ranks of `values` (1-based; equal values share the mean of their ranks), and the
/// size of each group of equal values, smallest values first.
pub fn mid_ranks(values: &[f64]) -> (Vec<f64>, Vec<usize>) {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    ranks_in_order(values, &order)
}

/// [`mid_ranks`], with `order` the indices of `values` in ascending order.
fn ranks_in_order(values: &[f64], order: &[usize]) -> (Vec<f64>, Vec<usize>) {
    let mut ranks = vec![0.0; values.len()];
    let mut sizes = Vec::new();
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        sizes.push(j - i + 1);
        i = j + 1;
    }
    (ranks, sizes)
}

/// Area under the ROC curve, exact with ties: the Mann-Whitney U statistic with mid-ranks,
/// i.e. P(score of an anomaly > score of a normal sample) + 0.5 P(equal). `labels[i]` is
/// true for an anomaly.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Result<f64, MetricsError> {
    let (order, positives) = checked_order(scores, labels)?;
    let negatives = labels.len() - positives;
    // Sum of the anomalies' mid-ranks: half-integers, so the sum is exact in any order.
    let (ranks, _) = ranks_in_order(scores, &order);
    let rank_sum: f64 = order
        .iter()
        .filter(|&&k| labels[k])
        .map(|&k| ranks[k])
        .sum();
    let p = positives as f64;
    Ok((rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

/// Average precision as scikit-learn's `average_precision_score` defines it: the step-wise
/// sum over distinct thresholds (descending) of (R_k - R_{k-1}) P_k, not a trapezoid.
pub fn average_precision(scores: &[f64], labels: &[bool]) -> Result<f64, MetricsError> {
    let (mut order, positives) = checked_order(scores, labels)?;
    order.reverse();
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut prev_recall = 0.0;
    let mut ap = 0.0;
    let mut i = 0;
    while i < order.len() {
        // All samples tied at this score cross the threshold together.
        let score = scores[order[i]];
        while i < order.len() && scores[order[i]] == score {
            if labels[order[i]] {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        let recall = tp as f64 / positives as f64;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
    }
    Ok(ap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_average_over_ties() {
        let (r, t) = mid_ranks(&[3.0, 1.0, 3.0, 2.0]);
        assert_eq!(r, [3.5, 1.0, 3.5, 2.0]);
        assert_eq!(t, [1, 1, 2]);
    }

    #[test]
    fn hand_worked_values() {
        // Perfect and reversed rankings.
        let labels = [false, false, true, true];
        assert_eq!(roc_auc(&[0.1, 0.2, 0.8, 0.9], &labels), Ok(1.0));
        assert_eq!(roc_auc(&[0.9, 0.8, 0.2, 0.1], &labels), Ok(0.0));
        assert_eq!(average_precision(&[0.1, 0.2, 0.8, 0.9], &labels), Ok(1.0));
        // Pairs (pos, neg): scores pos {0.35, 0.8}, neg {0.1, 0.4}: pos>neg in 3 of 4 pairs.
        let s = [0.1, 0.4, 0.35, 0.8];
        assert_eq!(roc_auc(&s, &labels), Ok(0.75));
        // Descending: 0.8 (P) -> P=1, R=.5; 0.4 (N); 0.35 (P) -> P=2/3, R=1.
        // AP = 0.5 * 1 + 0.5 * 2/3 = 0.8333...
        let ap = average_precision(&s, &labels).unwrap();
        assert!((ap - 5.0 / 6.0).abs() < 1e-15, "{ap}");
    }

    #[test]
    fn ties_count_half() {
        // Every score equal: AUC exactly 0.5 whatever the order; AP = prevalence.
        let labels = [true, false, false, true, false];
        let s = [1.0; 5];
        assert_eq!(roc_auc(&s, &labels), Ok(0.5));
        assert!((average_precision(&s, &labels).unwrap() - 0.4).abs() < 1e-15);
        // One tied pair among 4: pos {2, 1}, neg {1, 0} -> pairs: (2>1) (2>0) (1=1 -> .5) (1>0).
        let labels = [true, true, false, false];
        assert_eq!(roc_auc(&[2.0, 1.0, 1.0, 0.0], &labels), Ok(3.5 / 4.0));
        // Order of tied samples must not matter.
        assert_eq!(
            roc_auc(&[1.0, 2.0, 0.0, 1.0], &[false, true, false, true]),
            Ok(3.5 / 4.0)
        );
    }

    #[test]
    fn bad_inputs() {
        assert_eq!(
            roc_auc(&[1.0], &[true, false]),
            Err(MetricsError::LengthMismatch {
                scores: 1,
                labels: 2
            })
        );
        assert!(matches!(
            roc_auc(&[1.0, 2.0], &[true, true]),
            Err(MetricsError::OneClass { negatives: 0, .. })
        ));
        assert!(matches!(
            average_precision(&[1.0, f64::NAN], &[true, false]),
            Err(MetricsError::NonFinite { index: 1, .. })
        ));
    }
}
