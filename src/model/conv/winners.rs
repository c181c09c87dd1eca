//! The fused block's backward pass through the pool's winners alone.

use super::backward::over_images;
use super::dims::Dims;
use crate::kernels::{axpy, vectorised};

/// Marks a pooled output whose maximum was not positive (ReLU output 0: no gradient).
pub(super) const DEAD: u32 = u32::MAX;

/// The fused block's backward pass through the pool's winners alone; returns (dx, dW, db),
/// dx empty unless `need_dx`.
///
/// Why: the pooled gradient reaches one conv position per 2x2 window (none where ReLU gave
/// 0), a quarter or less of the conv map, so the dense products `dW = dConv * cols^T` and
/// `dcols = W^T * dConv` were three quarters (the CIFAR-10 second block: 131 of 169
/// positions) multiplications by zero. Here each winner adds its 3x3 input patch, times its
/// gradient, to its filter's gradient, and its filter, times the gradient, to the patch of
/// dx. With the image stored channels last (H x W x C, zero-padded), a patch is three
/// contiguous runs of `3 C` values, so no unrolling is needed: the weights and their
/// gradient are held in the same (O x 3 x 3 x C) order.
pub(super) fn backward(
    d: &Dims,
    x: &[f32],
    weight: &[f32],
    (argmax, g): (&[u32], &[f32]),
    threads: usize,
    need_dx: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (c, k, pooled) = (d.c, d.k(), d.pooled());
    let image = c * d.h * d.w;
    let padded = (d.h + 2 * d.pad) * (d.w + 2 * d.pad) * c;
    let wt = to_channels_last(weight, d.o, c, 9);
    let scratch = || {
        let dxt = vec![0f32; if need_dx { padded } else { 0 }];
        (vec![0f32; padded], dxt, Vec::new())
    };
    let (dx, dwt, db) = over_images(
        d,
        (d.o * k, need_dx),
        threads,
        (scratch, drop),
        |(xt, dxt, patches), img, dwt, db, dx| {
            image_to_hwc(&x[img * image..(img + 1) * image], d, xt);
            dxt.fill(0.0);
            let winners = (
                &argmax[img * pooled..(img + 1) * pooled],
                &g[img * pooled..(img + 1) * pooled],
            );
            winners_grad(xt, &wt, winners, d, (dwt, db), dxt, patches);
            if need_dx {
                hwc_to_image(dxt, d, dx);
            }
        },
    );
    (dx, from_channels_last(&dwt, d.o, c, 9), db)
}

/// `(o, c, s)` values (`s` per channel: the kernel's positions) reordered as `(o, s, c)`.
fn to_channels_last(v: &[f32], o: usize, c: usize, s: usize) -> Vec<f32> {
    let mut out = vec![0f32; o * c * s];
    for (src, dst) in v.chunks_exact(c * s).zip(out.chunks_exact_mut(c * s)) {
        for (ci, taps) in src.chunks_exact(s).enumerate() {
            for (si, &t) in taps.iter().enumerate() {
                dst[si * c + ci] = t;
            }
        }
    }
    out
}

/// The inverse of [`to_channels_last`].
fn from_channels_last(v: &[f32], o: usize, c: usize, s: usize) -> Vec<f32> {
    let mut out = vec![0f32; o * c * s];
    for (src, dst) in v.chunks_exact(c * s).zip(out.chunks_exact_mut(c * s)) {
        for (ci, taps) in dst.chunks_exact_mut(s).enumerate() {
            for (si, t) in taps.iter_mut().enumerate() {
                *t = src[si * c + ci];
            }
        }
    }
    out
}

/// Image `x` (C x H x W) as (H + 2 pad) x (W + 2 pad) x C, zero on the padding.
fn image_to_hwc(x: &[f32], d: &Dims, xt: &mut [f32]) {
    let (c, wp) = (d.c, d.w + 2 * d.pad);
    if d.pad > 0 {
        xt.fill(0.0);
    }
    // Read in order (the batch is in memory; `xt`, a few dozen kB, stays in L1).
    for (ci, plane) in x.chunks_exact(d.h * d.w).enumerate() {
        for (y, row) in plane.chunks_exact(d.w).enumerate() {
            let at = ((y + d.pad) * wp + d.pad) * c + ci;
            for (v, t) in row.iter().zip(xt[at..].iter_mut().step_by(c)) {
                *t = *v;
            }
        }
    }
}

/// The inverse of [`image_to_hwc`], padding dropped, written onto `dx` (C x H x W).
fn hwc_to_image(xt: &[f32], d: &Dims, dx: &mut [f32]) {
    let (c, wp) = (d.c, d.w + 2 * d.pad);
    // Written in order, as [`image_to_hwc`] reads.
    for (ci, plane) in dx.chunks_exact_mut(d.h * d.w).enumerate() {
        for (y, row) in plane.chunks_exact_mut(d.w).enumerate() {
            let at = ((y + d.pad) * wp + d.pad) * c + ci;
            for (t, v) in row.iter_mut().zip(xt[at..].iter().step_by(c)) {
                *t = *v;
            }
        }
    }
}

vectorised!(
    /// One image's winners (`argmax`, gradient `g`, both `o x ph x pw`) added to `grads`
    /// (the filters' gradients, channels last, and the bias gradient) and, unless it is
    /// empty, to the channels-last input gradient `dxt`, from the channels-last image `xt`
    /// and weights `wt`; `patches` is scratch space.
    fn winners_grad => winners_grad_body(
        xt: &[f32],
        wt: &[f32],
        winners: (&[u32], &[f32]),
        d: &Dims,
        grads: (&mut [f32], &mut [f32]),
        dxt: &mut [f32],
        patches: &mut Vec<f32>
    )
);

#[inline(always)]
fn winners_grad_body(
    xt: &[f32],
    wt: &[f32],
    winners: (&[u32], &[f32]),
    d: &Dims,
    (dwt, db): (&mut [f32], &mut [f32]),
    dxt: &mut [f32],
    patches: &mut Vec<f32>,
) {
    // Runs of 3 C at a length known when compiling for the networks' widths (EIDN's second
    // and third blocks read 32 and 64 channels).
    match 3 * d.c {
        3 => winners_grad_at::<3>(xt, wt, winners, d, (dwt, db), dxt, patches),
        9 => winners_grad_at::<9>(xt, wt, winners, d, (dwt, db), dxt, patches),
        96 => winners_grad_at::<96>(xt, wt, winners, d, (dwt, db), dxt, patches),
        192 => winners_grad_at::<192>(xt, wt, winners, d, (dwt, db), dxt, patches),
        _ => winners_grad_at::<0>(xt, wt, winners, d, (dwt, db), dxt, patches),
    }
}

/// [`winners_grad`] with runs `N` long (0: `3 C`, not known when compiling).
#[inline(always)]
fn winners_grad_at<const N: usize>(
    xt: &[f32],
    wt: &[f32],
    (argmax, g): (&[u32], &[f32]),
    d: &Dims,
    (dwt, db): (&mut [f32], &mut [f32]),
    dxt: &mut [f32],
    patches: &mut Vec<f32>,
) {
    let (c, p, per) = (d.c, d.p(), d.ph * d.pw);
    let run = if N == 0 { 3 * c } else { N };
    let row = (d.w + 2 * d.pad) * c;
    let need_dx = !dxt.is_empty();
    // With 1 to 3 channels (the first block) a patch's runs are too short for vector lanes:
    // every position's whole patch is copied once into a row of `PATCH` values (zero past
    // `9 C`), which each of its winners then adds in two or so vector operations.
    // (Lanes past `9 C` may hold an earlier call's values: they only reach sums dropped.)
    let small = 3 * run <= PATCH;
    // Where each conv position's patch starts in `xt`.
    let starts: Vec<usize> = (0..p).map(|q| (q / d.ow) * row + (q % d.ow) * c).collect();
    if small {
        if patches.len() < p * PATCH {
            patches.resize(p * PATCH, 0.0);
        }
        for (dst, &at) in patches.chunks_exact_mut(PATCH).zip(&starts) {
            for ky in 0..3 {
                let (to, from) = (&mut dst[ky * run..][..run], &xt[at + ky * row..][..run]);
                to.copy_from_slice(from);
            }
        }
    }
    let mut winners = vec![(0usize, 0f32); per];
    for o in 0..d.o {
        let dw_o = &mut dwt[o * 3 * run..][..3 * run];
        let (a_o, g_o) = (&argmax[o * per..][..per], &g[o * per..][..per]);
        db[o] += live_sum(a_o, g_o);
        // The channel's live winners (conv position, gradient), compacted without branches
        // (whether ReLU let one through is unpredictable).
        let mut n = 0;
        for (&a, &gv) in a_o.iter().zip(g_o) {
            winners[n] = ((a as usize).wrapping_sub(o * p), gv);
            n += usize::from(a != DEAD);
        }
        let list = &winners[..n];
        if small {
            let mut acc = [0f32; PATCH];
            for &(q, gv) in list {
                axpy::<PATCH>(&mut acc, &patches[q * PATCH..][..PATCH], gv);
            }
            axpy::<0>(dw_o, &acc[..3 * run], 1.0);
        }
        if need_dx {
            let w_o = &wt[o * 3 * run..][..3 * run];
            for &(q, gv) in list {
                let at = starts[q];
                for ky in 0..3 {
                    axpy::<N>(
                        &mut dxt[at + ky * row..][..run],
                        &w_o[ky * run..][..run],
                        gv,
                    );
                }
            }
        }
        if small {
            continue;
        }
        // One kernel row at a time, so that its `3 C` sums stay in registers.
        for ky in 0..3 {
            let dw_row = &mut dw_o[ky * run..][..run];
            if N == 0 {
                for &(q, gv) in list {
                    axpy::<N>(dw_row, &xt[starts[q] + ky * row..][..run], gv);
                }
            } else {
                let mut acc = [0f32; N];
                for &(q, gv) in list {
                    axpy::<N>(&mut acc, &xt[starts[q] + ky * row..][..run], gv);
                }
                axpy::<N>(dw_row, &acc, 1.0);
            }
        }
    }
}

/// Values in one row of `patches` ([`winners_grad`]): a 3x3 patch of up to 3 channels, padded to two vectors.
const PATCH: usize = 32;

/// The sum of the gradients `g` whose winner `a` is live: the bias gradient of one channel.
/// In 16 lanes, then across them, so that it is not one long chain of dependent additions.
#[inline(always)]
fn live_sum(a: &[u32], g: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let (a_main, g_main) = (a.chunks_exact(LANES), g.chunks_exact(LANES));
    let tail: f32 = (a_main.remainder().iter().zip(g_main.remainder()))
        .map(|(&a, &g)| if a == DEAD { 0.0 } else { g })
        .sum();
    for (ac, gc) in a_main.zip(g_main) {
        for l in 0..LANES {
            acc[l] += if ac[l] == DEAD { 0.0 } else { gc[l] };
        }
    }
    acc.iter().sum::<f32>() + tail
}
