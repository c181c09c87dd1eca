//! Helpers for the tests that check a fast path against candle's own ops.

use candle_core::Tensor;

/// The largest absolute difference between `a` and `b`, and the largest absolute entry of `b`.
pub(crate) fn max_gap(a: &Tensor, b: &Tensor) -> (f32, f32) {
    let max = |t: Tensor| {
        t.abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    (max((a - b).unwrap()), max(b.clone()))
}
