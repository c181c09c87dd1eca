//! EIDN's conv block as one candle op: `maxpool2x2(relu(conv3x3(x, W) + b))`, forward by
//! im2col and a product per image with bias, ReLU and the pool fused into one pass that
//! records each pooled value's winning position, backward from those winners alone
//! ([`super::winners`]). The first block's input gradient is never computed (the input is
//! data). Ties in the pool send the gradient to the first maximum, where candle's
//! `max_pool2d` splits it across all tied maxima; ties have probability zero with
//! continuous weights, except in the all-zero ReLU region, which gets no gradient in both.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use super::dims::Dims;
use super::im2col::im2col;
use super::tensor::{f32_slice, on_values};
use super::winners::{self, DEAD};
use crate::kernels::threads::{budget, ranges, run_parts, split_images};
use crate::kernels::vectorised;
use crate::kernels::{buffers, small};

impl Drop for ConvBlock {
    fn drop(&mut self) {
        let saved = self.saved.get_mut().map(Option::take).unwrap_or(None);
        if let Some(saved) = saved {
            buffers::give_back_u32(saved.argmax);
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
            threads: budget(),
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
        let mut argmax = buffers::take_u32(n * pooled);
        let t = self.threads;
        let parts = (ranges(n, t).into_iter())
            .zip(split_images(n, t, &mut y, pooled))
            .zip(split_images(n, t, &mut argmax, pooled));
        run_parts(parts.collect(), |((r, y_t), arg_t)| {
            let x_t = &x[r.start * c * h * w..r.end * c * h * w];
            let mut conv = vec![0f32; o * p];
            let mut cols = buffers::take_f32(k * p);
            for i in 0..r.len() {
                im2col(&x_t[i * c * h * w..(i + 1) * c * h * w], &d, &mut cols);
                small::forward(weight, &cols, d.product(), &mut conv);
                pool_forward(
                    &conv,
                    bias,
                    &d,
                    &mut y_t[i * pooled..(i + 1) * pooled],
                    &mut arg_t[i * pooled..(i + 1) * pooled],
                );
            }
            buffers::give_back_f32(cols);
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
            winners::backward(&d, xs, &saved.weight, winners, self.threads, need_dx)
        })?;
        let device = x.device();
        let dw = Tensor::from_vec(dw, weight.shape(), device)?;
        let db = Tensor::from_vec(db, bias.shape(), device)?;
        Ok((dx, Some(dw), Some(db)))
    }
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
                // On ties the first (left, then top) wins, as in [`super::pool::max4`].
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
