//! Products of one image's convolution (weights, unrolled input, output gradient), each by
//! whichever kernel is faster at its size: the gemm crate for large matrices, vector loops
//! where a side is small (the first conv block's 9 or 27 unrolled rows, Deep SAD's MNIST
//! LeNet's 8 and 4 filters), where gemm's packing and tiling cost more than the arithmetic.

use super::gemm::matmul;
use super::vector::vectorised;

/// Below this many unrolled rows (the first block has 9 or 27) or output channels (Deep SAD's
/// MNIST LeNet has 8 and 4) the gemm crate's packing and tiling cost more than the
/// arithmetic, so plain vectorisable loops do the products instead.
const SMALL_K: usize = 32;
const SMALL_O: usize = 8;

/// One image's convolution as a matrix product: `o` filters, `k` unrolled rows (C x K x K
/// taps), `p` output positions (OH x OW). The weights are `o x k`, the unrolled image `k x p`,
/// the output and its gradient `o x p`, all row-major.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Product {
    pub o: usize,
    pub k: usize,
    pub p: usize,
}

/// `out (o x p) = w (o x k) * cols (k x p)`: a convolution's forward product, by whichever
/// kernel is faster at this size.
pub fn forward(w: &[f32], cols: &[f32], s: Product, out: &mut [f32]) {
    if s.k <= SMALL_K || s.o <= SMALL_O {
        conv_small(w, cols, s, out);
    } else {
        let Product { o, k, p } = s;
        matmul((o, p, k), w, (k, 1), cols, (p, 1), out, (p, 1), false);
    }
}

/// `dcols (k x p) = w^T (k x o) * dconv (o x p)`: the gradient at the unrolled input.
pub fn input_grad(w: &[f32], dconv: &[f32], s: Product, dcols: &mut [f32]) {
    if s.o <= SMALL_O {
        input_grad_small(w, dconv, s, dcols);
    } else {
        let Product { o, k, p } = s;
        matmul((k, p, o), w, (1, k), dconv, (p, 1), dcols, (p, 1), false);
    }
}

vectorised!(
    /// `out (o x p) = w (o x k) * cols (k x p)` as rows of axpys, for small `k` or `o`.
    fn conv_small => conv_small_body(w: &[f32], cols: &[f32], s: Product, out: &mut [f32])
);

/// Eight (then four) output channels at a time, 16 positions per step, so each unrolled
/// value is loaded once for eight fused multiply-adds (one axpy per row loaded and stored
/// the output row for every one: the first block's forward pass was memory-bound, 4x
/// slower), and eight independent sums hide the multiply-add's latency (four left the
/// first block at a third of the core's peak).
#[inline(always)]
fn conv_small_body(w: &[f32], cols: &[f32], Product { o, k, p }: Product, out: &mut [f32]) {
    let o8 = o / 8 * 8;
    let o4 = o8 + (o - o8) / 4 * 4;
    for ob in (0..o8).step_by(8) {
        conv_small_block::<8>(w, cols, ob, Product { o, k, p }, out);
    }
    for ob in (o8..o4).step_by(4) {
        conv_small_block::<4>(w, cols, ob, Product { o, k, p }, out);
    }
    for (oi, row) in out.chunks_exact_mut(p).enumerate().take(o).skip(o4) {
        row.fill(0.0);
        for (kk, col) in cols.chunks_exact(p).enumerate().take(k) {
            let wv = w[oi * k + kk];
            for (r, c) in row.iter_mut().zip(col) {
                *r += wv * c;
            }
        }
    }
}

/// Output channels `ob..ob + B` of [`conv_small`].
#[inline(always)]
fn conv_small_block<const B: usize>(
    w: &[f32],
    cols: &[f32],
    ob: usize,
    Product { k, p, .. }: Product,
    out: &mut [f32],
) {
    const LANES: usize = 16;
    let main = p / LANES * LANES;
    let wb: [&[f32]; B] = std::array::from_fn(|a| &w[(ob + a) * k..(ob + a + 1) * k]);
    for q in (0..main).step_by(LANES) {
        let mut acc = [[0f32; LANES]; B];
        for (kk, col) in cols.chunks_exact(p).enumerate().take(k) {
            let c: &[f32; LANES] = col[q..q + LANES].try_into().expect("16 lanes");
            for (acc_a, wa) in acc.iter_mut().zip(&wb) {
                let wv = wa[kk];
                for l in 0..LANES {
                    acc_a[l] = wv.mul_add(c[l], acc_a[l]);
                }
            }
        }
        for (a, acc_a) in acc.iter().enumerate() {
            out[(ob + a) * p + q..][..LANES].copy_from_slice(acc_a);
        }
    }
    for q in main..p {
        for (a, wa) in wb.iter().enumerate() {
            let mut v = 0f32;
            for (kk, &wv) in wa.iter().enumerate() {
                v = wv.mul_add(cols[kk * p + q], v);
            }
            out[(ob + a) * p + q] = v;
        }
    }
}

vectorised!(
    /// `dcols (k x p) = w^T (k x o) * dconv (o x p)` as rows of axpys, for small `o`.
    fn input_grad_small => input_grad_small_body(
        w: &[f32],
        dconv: &[f32],
        s: Product,
        dcols: &mut [f32]
    )
);

#[inline(always)]
fn input_grad_small_body(
    w: &[f32],
    dconv: &[f32],
    Product { o, k, p }: Product,
    dcols: &mut [f32],
) {
    for (kk, row) in dcols.chunks_exact_mut(p).enumerate().take(k) {
        row.fill(0.0);
        for (oi, g) in dconv.chunks_exact(p).enumerate().take(o) {
            let wv = w[oi * k + kk];
            for (r, c) in row.iter_mut().zip(g) {
                *r += wv * c;
            }
        }
    }
}

/// Up to this many unrolled rows, weight gradients are summed as blocked dot products
/// ([`dot_block`]) where the CPU has the vector units for it, instead of by the gemm crate.
const SMALL_DW_K: usize = 128;

/// `dW (o x k) += dConv (o x p) * cols^T (p x k)`. Why not always gemm: with few rows
/// (`k` = 75 for the CIFAR-10 LeNet's first layer, 9 or 27 for EIDN's) the product is two
/// thin matrices with a long inner dimension, which the gemm crate's 64x6 tiles half fill
/// and whose packing strides across rows: 37 GFLOP/s on one core here, a fifth of its rate
/// on the other layers. Both operands run along `p`, so dot products of their rows, four
/// filters by three rows at a time in vector lanes, do it at about twice that (77).
pub fn weight_grad(dconv: &[f32], cols: &[f32], s: Product, dw: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if s.k <= SMALL_DW_K && is_x86_feature_detected!("fma") && is_x86_feature_detected!("avx2") {
        // Never the as-built fallback: its `mul_add`s would be calls to libm's fmaf.
        dots(dconv, cols, s, dw);
        return;
    }
    let Product { o, k, p } = s;
    matmul((o, k, p), dconv, (p, 1), cols, (1, p), dw, (k, 1), true);
}

vectorised!(
    /// [`weight_grad`] as dot products, blocked 4 x 3 (then the leftovers one by one).
    fn dots => dots_body(dconv: &[f32], cols: &[f32], s: Product, dw: &mut [f32])
);

#[inline(always)]
fn dots_body(dconv: &[f32], cols: &[f32], Product { o, k, p }: Product, dw: &mut [f32]) {
    let (o4, k3) = (o / 4 * 4, k / 3 * 3);
    let mut add = |oi: usize, kk: usize, v: f32| dw[oi * k + kk] += v;
    for oi in (0..o4).step_by(4) {
        let d = [0, 1, 2, 3].map(|a| rows(dconv, oi + a, p));
        for kk in (0..k3).step_by(3) {
            let s = dot_block(d, [0, 1, 2].map(|b| rows(cols, kk + b, p)));
            for (a, row) in s.iter().enumerate() {
                for (b, &v) in row.iter().enumerate() {
                    add(oi + a, kk + b, v);
                }
            }
        }
        for kk in k3..k {
            let s = dot_block(d, [rows(cols, kk, p)]);
            for (a, row) in s.iter().enumerate() {
                add(oi + a, kk, row[0]);
            }
        }
    }
    for oi in o4..o {
        for kk in 0..k {
            add(
                oi,
                kk,
                dot_block([rows(dconv, oi, p)], [rows(cols, kk, p)])[0][0],
            );
        }
    }
}

/// Row `r` of a row-major matrix whose rows are `p` long.
#[inline(always)]
fn rows(m: &[f32], r: usize, p: usize) -> &[f32] {
    &m[r * p..(r + 1) * p]
}

/// The dot products of `A` rows by `B` rows (all of one length) in 16 lanes each.
#[inline(always)]
fn dot_block<const A: usize, const B: usize>(a: [&[f32]; A], b: [&[f32]; B]) -> [[f32; B]; A] {
    const LANES: usize = 16;
    let len = a[0].len();
    let main = len / LANES * LANES;
    let mut acc = [[[0f32; LANES]; B]; A];
    for q in (0..main).step_by(LANES) {
        let av = a.map(|r| <[f32; LANES]>::try_from(&r[q..q + LANES]).expect("16 lanes"));
        let bv = b.map(|r| <[f32; LANES]>::try_from(&r[q..q + LANES]).expect("16 lanes"));
        for (acc_a, x) in acc.iter_mut().zip(&av) {
            for (acc_ab, y) in acc_a.iter_mut().zip(&bv) {
                for l in 0..LANES {
                    acc_ab[l] = x[l].mul_add(y[l], acc_ab[l]);
                }
            }
        }
    }
    let mut out = [[0f32; B]; A];
    for (i, (o, acc_a)) in out.iter_mut().zip(&acc).enumerate() {
        for (j, (v, lanes)) in o.iter_mut().zip(acc_a).enumerate() {
            let tail: f32 = (main..len).map(|q| a[i][q] * b[j][q]).sum();
            *v = lanes.iter().sum::<f32>() + tail;
        }
    }
    out
}
