//! Fast CPU path for convolutions: the encoder's conv blocks
//! (`maxpool2x2(relu(conv3x3(x, W) + b))`, one candle `CustomOp3` with its own forward and
//! backward), plain bias-free convolutions ([`Conv`]), and the pieces the Deep SAD networks'
//! fused convolution + batch norm (`deep_sad::fused`) is built on ([`conv_forward`],
//! [`backward`]).
//!
//! Why: with candle's stock ops a training step spends ~80 % of its time in conv2d's
//! backward, and composing an im2col from candle tensor ops was not faster (see
//! `../shared/notes/stack.md`). Here, per image, the input is unrolled once (im2col,
//! `K = C*9` rows by `P = OH*OW` columns) and multiplied by the weights with the `gemm` crate
//! (the kernel candle uses under its matmul); bias, ReLU and the 2x2 max-pool are fused into
//! one pass over the result, which records for each pooled value the conv position that won
//! (or none when ReLU zeroed it). The fused block's backward pass works from those winners
//! alone ([`winners_backward`]: each adds its input patch to its filter's gradient and its
//! filter to its patch of dx, a quarter or less of the dense products' multiply-adds; the
//! EIDN step 1.2x faster). The plain convolution's backward pass ([`backward`], Deep SAD's)
//! unrolls each image again (keeping the unrolled batch from the forward pass, 100 MB for
//! the CIFAR-10 LeNet's second layer, made every gemm read it back from memory: recomputing
//! it into a buffer that stays in the core's cache made the Deep SAD step 4 % faster and
//! the MNIST one 30 %), then `dW += dConv * cols^T` and `dcols = W^T * dConv`, folded back
//! (col2im) into `dx`, again with `gemm`. Images are split
//! over the cores, one part each (on candle's thread pool, see [`crate::threads::run_parts`]),
//! every thread running single-threaded gemms on its own images (small matrices parallelise
//! badly inside gemm). The first block's input gradient is never computed (the input is
//! data). Ties in the pool send the gradient to the first maximum, where candle's
//! `max_pool2d` splits it across all tied maxima; ties have probability zero with
//! continuous weights, except in the all-zero ReLU region, which gets no gradient in both.
//!
//! Tried here and slower (2026-11-30, the CIFAR-10 LeNet's Deep SAD step): one gemm per chunk
//! of 16 images side by side (`dW = dConv * cols^T` over a long inner dimension ran at a
//! third of the per-image rate in the gemm crate: 64 against 170 GFLOP/s on one core for the
//! second layer), and unrolling into rows (`P x K`) instead of columns (the faster `dW` did
//! not pay for the slower unrolling and folding back; 8 % slower per step).

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Device, Layout, Result, Shape, Tensor};

/// Marks a pooled output whose maximum was not positive (ReLU output 0: no gradient).
const DEAD: u32 = u32::MAX;

/// Parts of a batch per thread. Why more than one: with one share of the batch each, the
/// first thread done waits for the slowest (candle's `BarrierGuard` spin, 4 % of a step on
/// 2 cores); on this 2-core machine 4 parts measured the same as 1 to within noise.
const PARTS_PER_THREAD: usize = 4;

/// Images per partial weight gradient (fixed, so that sums do not depend on thread count).
const GRAD_CHUNK: usize = 16;

/// Buffers handed back by finished ops (the unrolled inputs, tens of MB, conv outputs and
/// the pool winners), so that a training loop does not allocate and first-touch them every step:
/// page faults on fresh buffers cost as much as the arithmetic of the first block.
static COLS_POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());
static ARGMAX_POOL: Mutex<Vec<Vec<u32>>> = Mutex::new(Vec::new());
const POOL_MAX: usize = 8;

/// A buffer of exactly `len` values with arbitrary contents (callers overwrite it whole):
/// the smallest kept buffer that fits, so that a small request does not take the one a large
/// request then has to map afresh.
fn take<T: Copy + Default>(pool: &Mutex<Vec<Vec<T>>>, len: usize) -> Vec<T> {
    let mut pool = pool.lock().expect("buffer pool");
    let best = (pool.iter().enumerate())
        .filter(|(_, b)| b.capacity() >= len)
        .min_by_key(|(_, b)| b.capacity())
        .map(|(i, _)| i);
    let mut buf = best.map_or_else(Vec::new, |i| pool.swap_remove(i));
    drop(pool);
    buf.truncate(len);
    buf.resize(len, T::default());
    buf
}

/// Keeps `buf` for a later [`take`]; a full pool keeps its largest buffers.
fn give_back<T>(pool: &Mutex<Vec<Vec<T>>>, buf: Vec<T>) {
    let mut pool = pool.lock().expect("buffer pool");
    if pool.len() < POOL_MAX {
        pool.push(buf);
    } else if let Some(smallest) = pool.iter_mut().min_by_key(|b| b.capacity()) {
        if smallest.capacity() < buf.capacity() {
            *smallest = buf;
        }
    }
}

/// A float buffer of `len` values (arbitrary contents) from the pool this module's ops share.
pub(crate) fn take_f32(len: usize) -> Vec<f32> {
    take(&COLS_POOL, len)
}

/// Hands a buffer from [`take_f32`] back.
pub(crate) fn give_back_f32(buf: Vec<f32>) {
    give_back(&COLS_POOL, buf)
}

/// The same as [`take_f32`] for pool winners.
pub(crate) fn take_u32(len: usize) -> Vec<u32> {
    take(&ARGMAX_POOL, len)
}

/// Hands a buffer from [`take_u32`] back.
pub(crate) fn give_back_u32(buf: Vec<u32>) {
    give_back(&ARGMAX_POOL, buf)
}

impl Drop for ConvBlock {
    fn drop(&mut self) {
        let saved = self.saved.get_mut().map(Option::take).unwrap_or(None);
        if let Some(saved) = saved {
            give_back(&ARGMAX_POOL, saved.argmax);
        }
    }
}

/// What the forward pass keeps for the backward pass.
struct Saved {
    dims: Dims,
    /// For each pooled output, the winning index `o * p + q` in its image's conv map.
    argmax: Vec<u32>,
    /// The weights as `o x k`, row-major.
    weight: Vec<f32>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Dims {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub oh: usize,
    pub ow: usize,
    pub ph: usize,
    pub pw: usize,
    /// Zero padding on each side (0: valid conv, 1: same).
    pub pad: usize,
    /// The (square) kernel's side: 3 for EIDN's blocks, 5 for Deep SAD's convolutions.
    pub kernel: usize,
}

impl Dims {
    /// A stride-1 convolution of an input (N, C, H, W) by a weight (O, C, K, K) with an odd
    /// square kernel, zero-padded by `pad` (no pool: `ph`, `pw` are 0).
    pub fn conv(x: &Layout, weight: &Layout, pad: usize) -> Result<Dims> {
        let (n, c, h, w) = x.shape().dims4()?;
        let (o, wc, kh, kw) = weight.shape().dims4()?;
        if wc != c || kh != kw || kh % 2 == 0 || h + 2 * pad < kh || w + 2 * pad < kw {
            candle_core::bail!(
                "conv: input {:?} and weight {:?} do not fit an odd square kernel",
                x.shape(),
                weight.shape()
            );
        }
        let (oh, ow) = (h + 2 * pad + 1 - kh, w + 2 * pad + 1 - kw);
        Ok(Dims {
            n,
            c,
            h,
            w,
            o,
            oh,
            ow,
            ph: 0,
            pw: 0,
            pad,
            kernel: kh,
        })
    }

    pub fn k(&self) -> usize {
        self.c * self.kernel * self.kernel
    }
    pub fn p(&self) -> usize {
        self.oh * self.ow
    }
    fn pooled(&self) -> usize {
        self.o * self.ph * self.pw
    }
}

/// The fused conv3x3 (stride 1, valid or zero-padded by `pad`) + bias + ReLU + max-pool
/// 2x2 (floor) block.
pub struct ConvBlock {
    input_needs_grad: bool,
    pad: usize,
    threads: usize,
    saved: Mutex<Option<Saved>>,
}

impl ConvBlock {
    /// `input_needs_grad`: false for the first block, whose input is data; `pad`: 0 (the
    /// paper's valid convs) or 1 (same).
    pub fn new(input_needs_grad: bool, pad: usize) -> Self {
        ConvBlock {
            input_needs_grad,
            pad,
            // The job's share of candle's thread count (RAYON_NUM_THREADS or cores).
            threads: crate::threads::budget(),
            saved: Mutex::new(None),
        }
    }

    /// Applies the block: `x` (N, C, H, W), `weight` (O, C, 3, 3), `bias` (O).
    pub fn apply(
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        input_needs_grad: bool,
        pad: usize,
    ) -> Result<Tensor> {
        x.apply_op3(weight, bias, ConvBlock::new(input_needs_grad, pad))
    }
}

pub(crate) fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(v) => v.as_slice(),
        _ => candle_core::bail!("conv block: {what} must be f32"),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("conv block: {what} must be contiguous"),
    }
}

/// Runs `f` on a CPU tensor's contiguous f32 values, without copying them.
fn with_f32<R>(t: &Tensor, what: &str, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(s) => Ok(f(f32_slice(s, layout, what)?)),
        _ => candle_core::bail!("conv: {what} is not on the CPU"),
    }
}

/// `c (m x n) = [c +] a (m x k) * b (k x n)`, each matrix given with its row and column
/// strides. Bounds are checked here so the unsafe call cannot read or write outside the
/// slices.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul<T: Copy + From<f32> + 'static>(
    (m, n, k): (usize, usize, usize),
    a: &[T],
    (a_rs, a_cs): (usize, usize),
    b: &[T],
    (b_rs, b_cs): (usize, usize),
    c: &mut [T],
    (c_rs, c_cs): (usize, usize),
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    if k > 0 {
        assert!(
            last(m, k, a_rs, a_cs) < a.len(),
            "matmul: lhs out of bounds"
        );
        assert!(
            last(k, n, b_rs, b_cs) < b.len(),
            "matmul: rhs out of bounds"
        );
    }
    assert!(
        last(m, n, c_rs, c_cs) < c.len(),
        "matmul: dst out of bounds"
    );
    // SAFETY: every index the kernel touches is within the slices (asserted above); the
    // slices do not alias (one is &mut).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_cs as isize,
            c_rs as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            T::from(1.0),
            T::from(1.0),
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// Below this many unrolled rows (the first block has 9 or 27) or output channels (Deep SAD's
/// MNIST LeNet has 8 and 4) the gemm crate's packing and tiling cost more than the
/// arithmetic, so plain vectorisable loops do the products instead.
const SMALL_K: usize = 32;
const SMALL_O: usize = 8;

/// Defines `$name`, which runs `$body` (an `#[inline(always)]` function of the same
/// arguments) compiled for the widest vector units this CPU has (AVX-512 or AVX2, with FMA),
/// else as built. Why: the crate is built for baseline x86-64, whose 4-lane SSE2 leaves the
/// plain loops below at a quarter or less of what the core can do.
macro_rules! vectorised {
    ($(#[$doc:meta])* fn $name:ident => $body:ident($($arg:ident: $ty:ty),*)) => {
        $(#[$doc])*
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,fma")]
                unsafe fn avx512($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if is_x86_feature_detected!("fma") {
                    if is_x86_feature_detected!("avx512f") {
                        // SAFETY: the CPU has the features `avx512` is compiled for.
                        return unsafe { avx512($($arg),*) };
                    }
                    if is_x86_feature_detected!("avx2") {
                        // SAFETY: as above, for `avx2`.
                        return unsafe { avx2($($arg),*) };
                    }
                }
            }
            $body($($arg),*)
        }
    };
}

pub(crate) use vectorised;

type Dims3 = (usize, usize, usize);

vectorised!(
    /// `out (o x p) = w (o x k) * cols (k x p)` as rows of axpys, for small `k` or `o`.
    fn conv_small => conv_small_body(w: &[f32], cols: &[f32], dims: Dims3, out: &mut [f32])
);

/// Eight (then four) output channels at a time, 16 positions per step, so each unrolled
/// value is loaded once for eight fused multiply-adds (one axpy per row loaded and stored
/// the output row for every one: the first block's forward pass was memory-bound, 4x
/// slower), and eight independent sums hide the multiply-add's latency (four left the
/// first block at a third of the core's peak).
#[inline(always)]
fn conv_small_body(w: &[f32], cols: &[f32], (o, p, k): Dims3, out: &mut [f32]) {
    let o8 = o / 8 * 8;
    let o4 = o8 + (o - o8) / 4 * 4;
    for ob in (0..o8).step_by(8) {
        conv_small_block::<8>(w, cols, (ob, p, k), out);
    }
    for ob in (o8..o4).step_by(4) {
        conv_small_block::<4>(w, cols, (ob, p, k), out);
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
fn conv_small_block<const B: usize>(w: &[f32], cols: &[f32], (ob, p, k): Dims3, out: &mut [f32]) {
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
        dims: Dims3,
        dcols: &mut [f32]
    )
);

#[inline(always)]
fn input_grad_small_body(w: &[f32], dconv: &[f32], (o, p, k): Dims3, dcols: &mut [f32]) {
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
fn weight_grad(dconv: &[f32], cols: &[f32], (o, k, p): Dims3, dw: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if k <= SMALL_DW_K && is_x86_feature_detected!("fma") && is_x86_feature_detected!("avx2") {
        // Never the as-built fallback: its `mul_add`s would be calls to libm's fmaf.
        dots(dconv, cols, (o, k, p), dw);
        return;
    }
    matmul((o, k, p), dconv, (p, 1), cols, (1, p), dw, (k, 1), true);
}

vectorised!(
    /// [`weight_grad`] as dot products, blocked 4 x 3 (then the leftovers one by one).
    fn dots => dots_body(dconv: &[f32], cols: &[f32], dims: Dims3, dw: &mut [f32])
);

#[inline(always)]
fn dots_body(dconv: &[f32], cols: &[f32], (o, k, p): (usize, usize, usize), dw: &mut [f32]) {
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

/// Unrolls image `x` (C x H x W) into `cols` (C*K*K x OH*OW); padded positions are zero.
///
/// Why through a padded copy: every unrolled row is then `OH` whole slices of `OW` values,
/// copied at a width known when compiling for the layers here (see [`by_width`]); clipping
/// each slice at the borders made them calls to `memmove` of a few dozen bytes, which
/// took as long as the copying.
fn im2col(x: &[f32], d: &Dims, cols: &mut [f32]) {
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
fn col2im(dcols: &[f32], d: &Dims, dx: &mut [f32]) {
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

/// Splits `0..n` images into contiguous ranges for `threads`: one when single-threaded, else
/// up to [`PARTS_PER_THREAD`] per thread, which take them as they go
/// ([`crate::threads::run_parts`]).
pub(crate) fn ranges(n: usize, threads: usize) -> Vec<std::ops::Range<usize>> {
    let parts = if threads > 1 {
        threads * PARTS_PER_THREAD
    } else {
        1
    };
    let per = n.div_ceil(parts).max(1);
    (0..n).step_by(per).map(|s| s..(s + per).min(n)).collect()
}

impl CustomOp3 for ConvBlock {
    fn name(&self) -> &'static str {
        "eidn-conv3x3-relu-maxpool2"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, "input")?;
        let weight = f32_slice(s2, l2, "weight")?;
        let bias = f32_slice(s3, l3, "bias")?;
        let d = match Dims::conv(l1, l2, self.pad) {
            Ok(d) if d.kernel == 3 && bias.len() == d.o && d.oh >= 2 && d.ow >= 2 => Dims {
                ph: d.oh / 2,
                pw: d.ow / 2,
                ..d
            },
            _ => candle_core::bail!(
                "conv block: input {:?}, weight {:?}, bias {} do not fit a 3x3 conv + 2x2 pool",
                l1.shape(),
                l2.shape(),
                bias.len()
            ),
        };
        let (n, c, h, w, o) = (d.n, d.c, d.h, d.w, d.o);
        let (k, p, pooled) = (d.k(), d.p(), d.pooled());
        let mut y = vec![0f32; n * pooled];
        let mut argmax = take(&ARGMAX_POOL, n * pooled);
        let t = self.threads;
        let parts = (ranges(n, t).into_iter())
            .zip(split_images(n, t, &mut y, pooled))
            .zip(split_images(n, t, &mut argmax, pooled));
        crate::threads::run_parts(parts.collect(), |((r, y_t), arg_t)| {
            let x_t = &x[r.start * c * h * w..r.end * c * h * w];
            let mut conv = vec![0f32; o * p];
            let mut cols = take(&COLS_POOL, k * p);
            for i in 0..r.len() {
                im2col(&x_t[i * c * h * w..(i + 1) * c * h * w], &d, &mut cols);
                conv_image(weight, &cols, (o, p, k), &mut conv);
                pool_forward(
                    &conv,
                    bias,
                    &d,
                    &mut y_t[i * pooled..(i + 1) * pooled],
                    &mut arg_t[i * pooled..(i + 1) * pooled],
                );
            }
            give_back(&COLS_POOL, cols);
        });
        *self.saved.lock().expect("conv block state") = Some(Saved {
            dims: d,
            argmax,
            weight: weight.to_vec(),
        });
        Ok((CpuStorage::F32(y), Shape::from((n, o, d.ph, d.pw))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let guard = self.saved.lock().expect("conv block state");
        let Some(saved) = guard.as_ref() else {
            candle_core::bail!("conv block: backward before forward");
        };
        let d = saved.dims;
        let g = grad_res.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let need_dx = self.input_needs_grad;
        let (dx, dw, db) = on_values(x, need_dx, |xs| {
            let winners = (saved.argmax.as_slice(), g.as_slice());
            winners_backward(&d, xs, &saved.weight, winners, self.threads, need_dx)
        })?;
        let device = x.device();
        let dw = Tensor::from_vec(dw, weight.shape(), device)?;
        let db = Tensor::from_vec(db, bias.shape(), device)?;
        Ok((dx, Some(dw), Some(db)))
    }
}

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

/// Runs a backward pass `f` on the input's values; makes its dx a tensor when `need_dx`.
fn on_values(
    x: &Tensor,
    need_dx: bool,
    f: impl FnOnce(&[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>),
) -> Result<(Option<Tensor>, Vec<f32>, Vec<f32>)> {
    let (dx, dw, db) = with_f32(x, "input", f)?;
    let dx = if need_dx {
        Some(Tensor::from_vec(dx, x.shape(), x.device())?)
    } else {
        None
    };
    Ok((dx, dw, db))
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
        (vec![0f32; d.o * p], dcols, take(&COLS_POOL, k * p))
    };
    let done = |(_, _, cols)| give_back(&COLS_POOL, cols);
    over_images(
        d,
        (d.o * k, need_dx),
        threads,
        (scratch, done),
        |(dconv, dcols, cols), img, dw, db, dx| {
            fill(img, dconv, db);
            im2col(&x[img * image..(img + 1) * image], d, cols);
            weight_grad(dconv, cols, (d.o, k, p), dw);
            if need_dx {
                // dcols (k x p) = W^T (k x o) * dConv (o x p), folded onto dx.
                if d.o <= SMALL_O {
                    input_grad_small(weight, dconv, (d.o, p, k), dcols);
                } else {
                    let (wl, gl) = ((1, k), (p, 1));
                    matmul((k, p, d.o), weight, wl, dconv, gl, dcols, (p, 1), false);
                }
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
fn over_images<S>(
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
    let partial = crate::threads::run_parts(parts, |(group, dx_t)| {
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
fn winners_backward(
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

/// `y += a x`, `N` long (0: as long as `y`).
#[inline(always)]
fn axpy<const N: usize>(y: &mut [f32], x: &[f32], a: f32) {
    if N == 0 {
        for (t, s) in y.iter_mut().zip(x) {
            *t = a.mul_add(*s, *t);
        }
    } else {
        let y: &mut [f32; N] = y.try_into().expect("N long");
        let x: &[f32; N] = x.try_into().expect("N long");
        for i in 0..N {
            y[i] = a.mul_add(x[i], y[i]);
        }
    }
}

/// A plain convolution without bias (stride 1, odd square kernel, zero padding) on the same
/// im2col + gemm path as [`ConvBlock`]: Deep SAD's 5x5 convolutions, whose batch norm sits
/// between the convolution and the activation, so the two cannot be fused. candle's own
/// conv2d backward is what made a step ~10x slower than PyTorch's before the fast path.
pub struct Conv {
    input_needs_grad: bool,
    pad: usize,
    threads: usize,
    saved: Mutex<Option<ConvSaved>>,
}

struct ConvSaved {
    dims: Dims,
    weight: Vec<f32>,
}

impl Conv {
    /// `x` (N, C, H, W) convolved with `weight` (O, C, K, K), padded by `pad`.
    pub fn apply(
        x: &Tensor,
        weight: &Tensor,
        input_needs_grad: bool,
        pad: usize,
    ) -> Result<Tensor> {
        x.apply_op2(
            weight,
            Conv {
                input_needs_grad,
                pad,
                threads: crate::threads::budget(),
                saved: Mutex::new(None),
            },
        )
    }
}

impl CustomOp2 for Conv {
    fn name(&self) -> &'static str {
        "eidn-conv"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, "input")?;
        let weight = f32_slice(s2, l2, "weight")?;
        let d = Dims::conv(l1, l2, self.pad)?;
        let mut y = vec![0f32; d.n * d.o * d.p()];
        conv_forward(x, weight, &d, self.threads, &mut y);
        *self.saved.lock().expect("conv state") = Some(ConvSaved {
            dims: d,
            weight: weight.to_vec(),
        });
        Ok((CpuStorage::F32(y), Shape::from((d.n, d.o, d.oh, d.ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let guard = self.saved.lock().expect("conv state");
        let Some(saved) = guard.as_ref() else {
            candle_core::bail!("conv: backward before forward");
        };
        let d = saved.dims;
        let op = d.o * d.p();
        let g = grad_res.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let (dx, dw, _) = backward(
            &d,
            x,
            &saved.weight,
            self.threads,
            self.input_needs_grad,
            |img, dconv, _| dconv.copy_from_slice(&g[img * op..(img + 1) * op]),
        )?;
        Ok((dx, Some(Tensor::from_vec(dw, weight.shape(), x.device())?)))
    }
}

/// Convolves every image (images split over `threads`), writing each one's `o x p` output to
/// `y`.
pub(crate) fn conv_forward(x: &[f32], weight: &[f32], d: &Dims, threads: usize, y: &mut [f32]) {
    let mut none: [(); 0] = [];
    conv_forward_then(x, weight, d, threads, y, (&mut none, 0), |_, _| {});
}

/// [`conv_forward`], then `then(output, extra)` on each image's output while it is still in
/// the core's cache, with that image's `per` values of `extra` (a second pass over the whole
/// batch's output would read it back from memory).
pub(crate) fn conv_forward_then<E: Send>(
    x: &[f32],
    weight: &[f32],
    d: &Dims,
    threads: usize,
    y: &mut [f32],
    (extra, per): (&mut [E], usize),
    then: impl Fn(&[f32], &mut [E]) + Sync,
) {
    let (k, p, o, image) = (d.k(), d.p(), d.o, d.c * d.h * d.w);
    let parts = (ranges(d.n, threads).into_iter())
        .zip(split_images(d.n, threads, y, o * p))
        .zip(split_images(d.n, threads, extra, per));
    crate::threads::run_parts(parts.collect(), |((r, y_t), e_t)| {
        let x_t = &x[r.start * image..r.end * image];
        let mut cols = take(&COLS_POOL, k * p);
        for i in 0..r.len() {
            im2col(&x_t[i * image..(i + 1) * image], d, &mut cols);
            let y_i = &mut y_t[i * o * p..(i + 1) * o * p];
            conv_image(weight, &cols, (o, p, k), y_i);
            then(y_i, &mut e_t[i * per..(i + 1) * per]);
        }
        give_back(&COLS_POOL, cols);
    });
}

/// One image's convolution, `out (o x p) = w (o x k) * cols (k x p)`.
fn conv_image(w: &[f32], cols: &[f32], (o, p, k): Dims3, out: &mut [f32]) {
    if k <= SMALL_K || o <= SMALL_O {
        conv_small(w, cols, (o, p, k), out);
    } else {
        matmul((o, p, k), w, (k, 1), cols, (p, 1), out, (p, 1), false);
    }
}

/// `buf` cut into the [`ranges`] of `n` images over `threads`, `per` values per image.
pub(crate) fn split_images<T>(
    n: usize,
    threads: usize,
    buf: &mut [T],
    per: usize,
) -> Vec<&mut [T]> {
    let mut rest = buf;
    let mut parts = Vec::new();
    for r in ranges(n, threads) {
        let (part, tail) = std::mem::take(&mut rest).split_at_mut(r.len() * per);
        rest = tail;
        parts.push(part);
    }
    parts
}

vectorised!(
    /// Adds the bias, applies ReLU and the 2x2 max-pool to one image's conv map (`o x p`),
    /// writing the pooled values and the winners' indices.
    fn pool_forward => pool_forward_body(
        conv: &[f32],
        bias: &[f32],
        d: &Dims,
        y: &mut [f32],
        argmax: &mut [u32]
    )
);

/// Branch-free over a row of windows, so that it runs in vector lanes (which of the four
/// wins is unpredictable; one at a time it was 8 % of a training step).
#[inline(always)]
fn pool_forward_body(conv: &[f32], bias: &[f32], d: &Dims, y: &mut [f32], argmax: &mut [u32]) {
    let (p, ow, pw) = (d.p(), d.ow, d.pw);
    for o in 0..d.o {
        let map = &conv[o * p..(o + 1) * p];
        let b = bias[o];
        for py in 0..d.ph {
            let y_row = &mut y[(o * d.ph + py) * pw..][..pw];
            let a_row = &mut argmax[(o * d.ph + py) * pw..][..pw];
            let top = 2 * py * ow;
            let (r0, r1) = (&map[top..][..2 * pw], &map[top + ow..][..2 * pw]);
            let first = (o * p + top) as u32;
            for px in 0..pw {
                let (a, b0, c, e) = (r0[2 * px], r0[2 * px + 1], r1[2 * px], r1[2 * px + 1]);
                // On ties the first (left, then top) wins, as in [`max4`].
                let (m1, i1) = if b0 > a { (b0, 1) } else { (a, 0) };
                let (m2, i2) = if e > c {
                    (e, ow as u32 + 1)
                } else {
                    (c, ow as u32)
                };
                let (m, i) = if m2 > m1 { (m2, i2) } else { (m1, i1) };
                let v = m + b;
                y_row[px] = v.max(0.0);
                a_row[px] = if v > 0.0 {
                    first + 2 * px as u32 + i
                } else {
                    DEAD
                };
            }
        }
    }
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

/// Whether the fast path applies on this device (CPU only; CUDA keeps candle's kernels).
pub fn enabled(device: &Device) -> bool {
    device.is_cpu()
}

/// Asks glibc's malloc to keep freed memory instead of unmapping it: every training step
/// frees and reallocates buffers of several MB (activations, gradients) that candle owns, and
/// with glibc's defaults each comes back as fresh pages whose first-touch faults cost ~20 %
/// of a 3x32x32 step. Process-wide, so binaries call it once at start; a no-op elsewhere.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning parameters; called before heavy use.
    unsafe {
        // 32 MiB is glibc's largest mmap threshold on 64-bit; above it mallopt refuses.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
