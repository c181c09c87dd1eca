//! The 2x2 max-pool (stride 2, floor) as candle ops, and its one-window kernel for the
//! custom ops.

use candle_core::{Result, Tensor};

/// 2x2 max-pool, stride 2, floor, from reshapes and `max`, whose backward sends the whole
/// gradient to the maximum. Not candle's `max_pool2d`: its backward (candle 0.11) multiplies
/// the gradient by (number of maxima)/4 instead of dividing by the number of maxima, so a
/// unique maximum gets a quarter of its gradient.
pub fn max_pool2x2(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (ph, pw) = (h / 2, w / 2);
    x.narrow(2, 0, 2 * ph)?
        .narrow(3, 0, 2 * pw)?
        .reshape((n, c, ph, 2, pw, 2))?
        .max(5)?
        .max(3)
}

/// The largest of the 2x2 window at `top` of a map `width` wide, and its index (the first
/// on ties). Branch-free: which of the four wins is data-dependent and unpredictable.
pub(crate) fn max4(map: &[f32], top: usize, width: usize) -> (f32, usize) {
    let (i0, i1, i2, i3) = (top, top + 1, top + width, top + width + 1);
    let (a, ia) = if map[i1] > map[i0] {
        (map[i1], i1)
    } else {
        (map[i0], i0)
    };
    let (c, ic) = if map[i3] > map[i2] {
        (map[i3], i3)
    } else {
        (map[i2], i2)
    };
    if c > a {
        (c, ic)
    } else {
        (a, ia)
    }
}
