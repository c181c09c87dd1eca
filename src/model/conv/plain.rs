//! A plain convolution without bias as one candle op, on the conv block's im2col path.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

use super::backward::backward;
use super::dims::Dims;
use super::im2col::im2col;
use super::tensor::f32_slice;
use crate::kernels::threads::{budget, ranges, run_parts, split_images};
use crate::kernels::{buffers, small};

/// A plain convolution without bias (stride 1, odd square kernel, zero padding) on the same
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
                threads: budget(),
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
fn conv_forward(x: &[f32], weight: &[f32], d: &Dims, threads: usize, y: &mut [f32]) {
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
    run_parts(parts.collect(), |((r, y_t), e_t)| {
        let x_t = &x[r.start * image..r.end * image];
        let mut cols = buffers::take_f32(k * p);
        for i in 0..r.len() {
            im2col(&x_t[i * image..(i + 1) * image], d, &mut cols);
            let y_i = &mut y_t[i * o * p..(i + 1) * o * p];
            small::forward(weight, &cols, d.product(), y_i);
            then(y_i, &mut e_t[i * per..(i + 1) * per]);
        }
        buffers::give_back_f32(cols);
    });
}
