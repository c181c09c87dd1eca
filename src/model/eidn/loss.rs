//! The refined triplet loss of the paper (Eq. 2-5):
//! `L = sum_i [ ||y_i - f(xp_i)||^2 - ||y_i - f(xn_i)||^2 + alpha ]_+`, with `y_i` the zero
//! vector for a normal anchor and the ones-vector for an anomalous one. A sum over the
//! batch, as written in the paper (not a mean).

use candle_core::{Result, Tensor};

/// `anchors`, `positives`, `negatives`: (M, l) tensors of anchor points y_i and the
/// embeddings f(xp_i), f(xn_i). Returns a scalar.
pub fn triplet_loss(
    anchors: &Tensor,
    positives: &Tensor,
    negatives: &Tensor,
    alpha: f64,
) -> Result<Tensor> {
    let d_pos = (anchors - positives)?.sqr()?.sum(1)?;
    let d_neg = (anchors - negatives)?.sqr()?.sum(1)?;
    ((d_pos - d_neg)? + alpha)?.relu()?.sum_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[f32], m: usize) -> Tensor {
        Tensor::from_slice(v, (m, v.len() / m), &Device::Cpu).unwrap()
    }

    fn loss(y: &[f32], p: &[f32], n: &[f32], m: usize) -> f32 {
        triplet_loss(&t(y, m), &t(p, m), &t(n, m), 0.2)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn four_cases_of_the_hinge() {
        // Normal anchor (0,0), hinge active: ||p||^2 = 0.5, ||n||^2 = 0.25 -> 0.5-0.25+0.2.
        assert!((loss(&[0., 0.], &[0.5, 0.5], &[0.5, 0.], 1) - 0.45).abs() < 1e-6);
        // Normal anchor, hinge inactive: p at origin, n at (1,1): 0 - 2 + 0.2 < 0 -> 0.
        assert_eq!(loss(&[0., 0.], &[0., 0.], &[1., 1.], 1), 0.0);
        // Anomalous anchor (1,1), active: p=(0,1) -> 1; n=(1,0.5) -> 0.25: 1-0.25+0.2.
        assert!((loss(&[1., 1.], &[0., 1.], &[1., 0.5], 1) - 0.95).abs() < 1e-6);
        // Anomalous anchor, inactive: p=(1,1) -> 0; n=(0,0) -> 2: 0-2+0.2 -> 0.
        assert_eq!(loss(&[1., 1.], &[1., 1.], &[0., 0.], 1), 0.0);
        // A batch sums its triplets: the four above together.
        let y = [0., 0., 0., 0., 1., 1., 1., 1.];
        let p = [0.5, 0.5, 0., 0., 0., 1., 1., 1.];
        let n = [0.5, 0., 1., 1., 1., 0.5, 0., 0.];
        assert!((loss(&y, &p, &n, 4) - 1.4).abs() < 1e-6);
        // Inside the margin: d_pos - d_neg = -0.1 > -alpha -> 0.1.
        assert!((loss(&[0.], &[0.3], &[0.4], 1) - (0.09 - 0.16 + 0.2)).abs() < 1e-6);
    }
}
