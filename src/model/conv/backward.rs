//! The backward pass of a plain convolution (Deep SAD's networks): each image unrolled again
//! into a buffer that stays in cache (keeping the forward pass's unrolled batch made every
//! product read it back from memory), then `dW += dConv * cols^T` and `dcols = W^T * dConv`,
//! folded back onto dx. Images go in fixed chunks so that sums never depend on thread count.

use candle_core::{Result, Tensor};

use super::dims::Dims;
use super::im2col::{col2im, im2col};
use super::tensor::on_values;
use crate::kernels::threads::{ranges, run_parts};
use crate::kernels::{buffers, small};

/// Images per partial weight gradient (fixed, so that sums do not depend on thread count).
const GRAD_CHUNK: usize = 16;

/// The backward pass of a convolution of the images `x`: `fill(image, dconv, db)` writes
/// that image's gradient at the conv output (`o x p`) and may add to the bias gradient;
/// returns (dx, dW, db), dx only when `need_dx`. Weight gradients are summed per fixed chunk
/// of images, then over chunks in order, so the result does not depend on how many threads
/// ran.
pub(crate) fn backward(
    d: &Dims,
    x: &Tensor,
    weight: &[f32],
    threads: usize,
    need_dx: bool,
    fill: impl Fn(usize, &mut [f32], &mut [f32]) + Sync,
) -> Result<(Option<Tensor>, Vec<f32>, Vec<f32>)> {
    on_values(x, need_dx, |xs| {
        backward_images(d, xs, weight, threads, need_dx, fill)
    })
}

/// [`backward`] on the images' values; dx empty unless `need_dx`.
fn backward_images(
    d: &Dims,
    x: &[f32],
    weight: &[f32],
    threads: usize,
    need_dx: bool,
    fill: impl Fn(usize, &mut [f32], &mut [f32]) + Sync,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (k, p) = (d.k(), d.p());
    let image = d.c * d.h * d.w;
    let scratch = || {
        let dcols = vec![0f32; if need_dx { k * p } else { 0 }];
        (vec![0f32; d.o * p], dcols, buffers::take_f32(k * p))
    };
    let done = |(_, _, cols)| buffers::give_back_f32(cols);
    over_images(
        d,
        (d.o * k, need_dx),
        threads,
        (scratch, done),
        |(dconv, dcols, cols), img, dw, db, dx| {
            fill(img, dconv, db);
            im2col(&x[img * image..(img + 1) * image], d, cols);
            small::weight_grad(dconv, cols, d.product(), dw);
            if need_dx {
                small::input_grad(weight, dconv, d.product(), dcols);
                col2im(dcols, d, dx);
            }
        },
    )
}

/// Runs `per_image(scratch, image, dw, db, dx)` on every image, with that image's part of
/// dx (empty unless `need_dx`) and its chunk's weight (`dw_len` values) and bias gradients.
/// Why chunks: the images go in fixed chunks of [`GRAD_CHUNK`], each summing its own
/// gradients, and the chunks are added in order at the end, so that the sums do not depend
/// on how many threads ran. Each thread takes contiguous chunks, with one `scratch()` made
/// for them and handed to `done` after.
#[allow(clippy::type_complexity)]
pub(super) fn over_images<S>(
    d: &Dims,
    (dw_len, need_dx): (usize, bool),
    threads: usize,
    (scratch, done): (impl Fn() -> S + Sync, impl Fn(S) + Sync),
    per_image: impl Fn(&mut S, usize, &mut [f32], &mut [f32], &mut [f32]) + Sync,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let chunks: Vec<std::ops::Range<usize>> = (0..d.n)
        .step_by(GRAD_CHUNK)
        .map(|s| s..(s + GRAD_CHUNK).min(d.n))
        .collect();
    let image = if need_dx { d.c * d.h * d.w } else { 0 };
    let mut dx = vec![0f32; d.n * image];
    // Contiguous groups of chunks, one group per part, each with its images' part of dx.
    let mut parts = Vec::new();
    let mut dx_rest = dx.as_mut_slice();
    for group in ranges(chunks.len(), threads) {
        let group = &chunks[group];
        let images: usize = group.iter().map(|r| r.len()).sum();
        let (dx_t, rest) = std::mem::take(&mut dx_rest).split_at_mut(images * image);
        dx_rest = rest;
        parts.push((group, dx_t));
    }
    let partial = run_parts(parts, |(group, dx_t)| {
        let first = group.first().map_or(0, |r| r.start);
        let mut s = scratch();
        let mut out = Vec::with_capacity(group.len());
        for r in group {
            let mut dw = vec![0f32; dw_len];
            let mut db = vec![0f32; d.o];
            for img in r.clone() {
                let i = img - first;
                let dx_i = &mut dx_t[i * image..(i + 1) * image];
                per_image(&mut s, img, &mut dw, &mut db, dx_i);
            }
            out.push((dw, db));
        }
        done(s);
        out
    });
    let mut dw = vec![0f32; dw_len];
    let mut db = vec![0f32; d.o];
    for (pw, pb) in partial.iter().flatten() {
        dw.iter_mut().zip(pw).for_each(|(a, b)| *a += b);
        db.iter_mut().zip(pb).for_each(|(a, b)| *a += b);
    }
    (dx, dw, db)
}
