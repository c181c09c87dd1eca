//! Unrolling an image into the columns of a convolution's product (im2col) and folding the
//! columns' gradient back (col2im).

use super::dims::Dims;

/// Unrolls image `x` (C x H x W) into `cols` (C*K*K x OH*OW); padded positions are zero.
///
/// Why through a padded copy: every unrolled row is then `OH` whole slices of `OW` values,
/// copied at a width known when compiling for the layers here (see [`by_width`]); clipping
/// each slice at the borders made them calls to `memmove` of a few dozen bytes, which
/// took as long as the copying.
pub(super) fn im2col(x: &[f32], d: &Dims, cols: &mut [f32]) {
    if d.pad == 0 {
        return unroll(x, d.w, d, cols);
    }
    PADDED.with(|buf| {
        let mut buf = buf.borrow_mut();
        let (hp, wp) = (d.h + 2 * d.pad, d.w + 2 * d.pad);
        buf.clear();
        buf.resize(d.c * hp * wp, 0.0);
        for (plane, src) in buf.chunks_exact_mut(hp * wp).zip(x.chunks_exact(d.h * d.w)) {
            for (y, row) in src.chunks_exact(d.w).enumerate() {
                plane[(y + d.pad) * wp + d.pad..][..d.w].copy_from_slice(row);
            }
        }
        unroll(&buf, wp, d, cols);
    });
}

thread_local! {
    /// A padded copy of one image (or of its gradient), reused by [`im2col`] and [`col2im`].
    static PADDED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `f::<N>(...)` with `N` the output width when it is one the networks here use (Deep SAD's
/// 5x5 padded layers: 32, 16, 8; EIDN's 3x3 valid ones: 26 and 11 on MNIST, 30 and 13 on
/// CIFAR-10), else 0.
macro_rules! by_width {
    ($ow:expr, $f:ident($($arg:expr),*)) => {
        match $ow {
            8 => $f::<8>($($arg),*),
            11 => $f::<11>($($arg),*),
            13 => $f::<13>($($arg),*),
            16 => $f::<16>($($arg),*),
            26 => $f::<26>($($arg),*),
            30 => $f::<30>($($arg),*),
            32 => $f::<32>($($arg),*),
            _ => $f::<0>($($arg),*),
        }
    };
}

/// [`im2col`] from an image whose planes are `OH + K - 1` rows of `ws` values.
fn unroll(src: &[f32], ws: usize, d: &Dims, cols: &mut [f32]) {
    by_width!(d.ow, unroll_at(src, ws, d, cols))
}

/// [`unroll`] with rows `N` wide (0: `d.ow`, not known when compiling).
fn unroll_at<const N: usize>(src: &[f32], ws: usize, d: &Dims, cols: &mut [f32]) {
    let (p, kn, ow) = (d.p(), d.kernel, if N == 0 { d.ow } else { N });
    let hs = d.oh + kn - 1;
    for (c, plane) in src.chunks_exact(hs * ws).take(d.c).enumerate() {
        for ky in 0..kn {
            for kx in 0..kn {
                let row = &mut cols[((c * kn + ky) * kn + kx) * p..][..p];
                for (oy, dst) in row.chunks_exact_mut(ow).enumerate() {
                    let from = &plane[(oy + ky) * ws + kx..][..ow];
                    if N == 0 {
                        dst.copy_from_slice(from);
                    } else {
                        let dst: &mut [f32; N] = dst.try_into().expect("N wide");
                        *dst = from.try_into().expect("N wide");
                    }
                }
            }
        }
    }
}

/// Folds `dcols` (C*K*K x OH*OW) back onto the image gradient `dx` (C x H x W), adding;
/// padded positions are dropped. Through a padded buffer, as [`im2col`].
pub(super) fn col2im(dcols: &[f32], d: &Dims, dx: &mut [f32]) {
    PADDED.with(|buf| {
        let mut buf = buf.borrow_mut();
        let (hp, wp) = (d.h + 2 * d.pad, d.w + 2 * d.pad);
        buf.clear();
        buf.resize(d.c * hp * wp, 0.0);
        by_width!(d.ow, fold_at(dcols, wp, d, &mut buf));
        for (plane, dst) in buf
            .chunks_exact(hp * wp)
            .zip(dx.chunks_exact_mut(d.h * d.w))
        {
            for (y, row) in dst.chunks_exact_mut(d.w).enumerate() {
                let from = &plane[(y + d.pad) * wp + d.pad..][..d.w];
                for (t, s) in row.iter_mut().zip(from) {
                    *t += s;
                }
            }
        }
    });
}

/// Adds `dcols` onto padded planes `ws` wide, rows `N` wide (0: `d.ow`).
fn fold_at<const N: usize>(dcols: &[f32], ws: usize, d: &Dims, padded: &mut [f32]) {
    let (p, kn, ow) = (d.p(), d.kernel, if N == 0 { d.ow } else { N });
    let hs = d.oh + kn - 1;
    for (c, plane) in padded.chunks_exact_mut(hs * ws).take(d.c).enumerate() {
        for ky in 0..kn {
            for kx in 0..kn {
                let row = &dcols[((c * kn + ky) * kn + kx) * p..][..p];
                for (oy, from) in row.chunks_exact(ow).enumerate() {
                    let dst = &mut plane[(oy + ky) * ws + kx..][..ow];
                    if N == 0 {
                        for (t, s) in dst.iter_mut().zip(from) {
                            *t += s;
                        }
                    } else {
                        let dst: &mut [f32; N] = dst.try_into().expect("N wide");
                        let from: &[f32; N] = from.try_into().expect("N wide");
                        for i in 0..N {
                            dst[i] += from[i];
                        }
                    }
                }
            }
        }
    }
}
