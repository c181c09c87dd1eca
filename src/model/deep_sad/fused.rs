//! Convolution + training-mode batch norm (no affine parameters) + leaky ReLU (+ 2x2
//! max-pool) as one CPU op with its own backward: every convolution of the Deep SAD
//! networks is followed by that batch norm, except the decoder's last.
//!
//! Why one op: built from candle's tensor ops, the normalisation's strided reductions and
//! broadcasts took most of a Deep SAD step; as a separate op after the convolution it still
//! wrote the normalised map, and candle's backward pass added the conv output's gradient
//! onto a fresh zero tensor and copied it back out (a quarter of a CIFAR-10 LeNet step went
//! to the batch norms and that bookkeeping). Fused, the op keeps the conv output, recomputes
//! the normalised values where needed, and hands the convolution's backward its gradient
//! directly. With the pool, only the pools' winners get a gradient from above, so the
//! backward's per-channel sums run over the pooled outputs alone. Sums are taken per
//! (image, channel) in parallel and combined in image order, so results do not depend on
//! the thread count.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

use crate::kernels::buffers;
use crate::kernels::threads::{budget, ranges, run_parts, split_images};
use crate::model::conv::{self, Dims};

/// What the forward pass keeps for the backward pass.
struct Saved {
    dims: Dims,
    /// The conv output, `n x c x h x w` (the normalised values are recomputed from it).
    z: Vec<f32>,
    /// Pool winners: for each pooled value, its index in its image's `o x oh x ow` output.
    argmax: Vec<u32>,
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    weight: Vec<f32>,
}

/// `leaky(bn(conv(x, W)))`, max-pooled 2x2 when `pool`.
pub struct ConvBnAct {
    input_needs_grad: bool,
    pad: usize,
    pool: bool,
    eps: f64,
    slope: f32,
    threads: usize,
    /// The batch's per-channel mean and biased variance (for the running statistics), set
    /// by the forward pass.
    stats: Arc<Mutex<Option<BatchStats>>>,
    saved: Mutex<Option<Saved>>,
}

/// A batch's per-channel mean and biased variance, and how many values each is over.
pub struct BatchStats {
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub count: usize,
}

impl ConvBnAct {
    /// Applies the op to `x` (N, C, H, W) with `weight` (O, C, K, K), padding `pad`;
    /// `input_needs_grad` false for a first layer, whose input is data. Returns the output
    /// and the batch statistics.
    pub fn apply(
        x: &Tensor,
        weight: &Tensor,
        (input_needs_grad, pad, pool): (bool, usize, bool),
        eps: f64,
        slope: f64,
    ) -> Result<(Tensor, BatchStats)> {
        let stats = Arc::new(Mutex::new(None));
        let op = ConvBnAct {
            input_needs_grad,
            pad,
            pool,
            eps,
            slope: slope as f32,
            threads: budget(),
            stats: stats.clone(),
            saved: Mutex::new(None),
        };
        let y = x.apply_op2(weight, op)?;
        let stats =
            (stats.lock().expect("bn stats").take()).expect("the forward pass sets the statistics");
        Ok((y, stats))
    }
}

impl Drop for ConvBnAct {
    fn drop(&mut self) {
        if let Some(saved) = self.saved.get_mut().map(Option::take).unwrap_or(None) {
            buffers::give_back_f32(saved.z);
            buffers::give_back_u32(saved.argmax);
        }
    }
}

/// Runs `f(first image, images' slice of a, of b)` on contiguous image ranges in parallel,
/// `a` and `b` holding `per_a` and `per_b` values per image.
fn par_images<A: Send, B: Send>(
    n: usize,
    threads: usize,
    (a, per_a): (&mut [A], usize),
    (b, per_b): (&mut [B], usize),
    f: impl Fn(usize, &mut [A], &mut [B]) + Sync,
) {
    let parts = (ranges(n, threads).into_iter())
        .zip(split_images(n, threads, a, per_a))
        .zip(split_images(n, threads, b, per_b));
    run_parts(parts.collect(), |((r, a_t), b_t)| f(r.start, a_t, b_t));
}

/// Per channel, two sums over every image: `f(first image, pairs)` fills a thread's
/// per-(image, channel) pairs, `c` per image, in parallel; they are added in image order.
fn channel_sums(
    n: usize,
    c: usize,
    threads: usize,
    f: impl Fn(usize, &mut [(f64, f64)]) + Sync,
) -> Vec<(f64, f64)> {
    let mut partial = vec![(0f64, 0f64); n * c];
    let mut unused = vec![0u8; n];
    par_images(
        n,
        threads,
        (&mut partial, c),
        (&mut unused, 1),
        |first, part, _| f(first, part),
    );
    add_by_channel(&partial, c)
}

/// Per channel, the sums of per-(image, channel) pairs, added in image order.
fn add_by_channel(partial: &[(f64, f64)], c: usize) -> Vec<(f64, f64)> {
    let mut out = vec![(0.0, 0.0); c];
    for chunk in partial.chunks_exact(c) {
        for (o, p) in out.iter_mut().zip(chunk) {
            o.0 += p.0;
            o.1 += p.1;
        }
    }
    out
}

/// Sums over a plane of `a` and of `a * b`, in 16 f32 lanes then f64. Why: one f64
/// accumulator is a chain of dependent adds that does not vectorise; lanes of at most a few
/// hundred values keep f32 exact enough, and the order is fixed by the plane alone.
fn lane_sums(a: &[f32], b: &[f32]) -> (f64, f64) {
    const LANES: usize = 16;
    let (mut s, mut t) = ([0f32; LANES], [0f32; LANES]);
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for i in 0..LANES {
            s[i] += x[i];
            t[i] += x[i] * y[i];
        }
    }
    for (i, (x, y)) in ar.iter().zip(br).enumerate() {
        s[i] += x;
        t[i] += x * y;
    }
    let wide = |v: [f32; LANES]| v.iter().map(|&x| f64::from(x)).sum::<f64>();
    (wide(s), wide(t))
}

impl CustomOp2 for ConvBnAct {
    fn name(&self) -> &'static str {
        "eidn-conv-bn-leaky"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = conv::f32_slice(s1, l1, "input")?;
        let weight = conv::f32_slice(s2, l2, "weight")?;
        let d = Dims::conv(l1, l2, self.pad)?;
        let (n, c, p) = (d.n, d.o, d.p());
        if n == 0 || (self.pool && (d.oh < 2 || d.ow < 2)) {
            candle_core::bail!("conv-bn: input {:?} too small", l1.shape());
        }
        let mut z = buffers::take_f32(n * c * p);
        // Per (image, channel): sum and sum of squares, taken as each image's output is
        // computed; then per channel, added in image order.
        let mut partial = vec![(0f64, 0f64); n * c];
        conv::conv_forward_then(
            x,
            weight,
            &d,
            self.threads,
            &mut z,
            (&mut partial, c),
            |img, sums| {
                for (s, plane) in sums.iter_mut().zip(img.chunks_exact(p)) {
                    *s = lane_sums(plane, plane);
                }
            },
        );
        let sums = add_by_channel(&partial, c);
        let m = (n * p) as f64;
        let mean: Vec<f32> = sums.iter().map(|s| (s.0 / m) as f32).collect();
        let var: Vec<f32> = (sums.iter())
            .map(|s| (s.1 / m - (s.0 / m).powi(2)).max(0.0) as f32)
            .collect();
        let inv_std: Vec<f32> = (var.iter())
            .map(|&v| (1.0 / (f64::from(v) + self.eps).sqrt()) as f32)
            .collect();
        let (ph, pw) = if self.pool {
            (d.oh / 2, d.ow / 2)
        } else {
            (d.oh, d.ow)
        };
        let out = c * ph * pw;
        let mut y = vec![0f32; n * out];
        let mut argmax = buffers::take_u32(if self.pool { n * out } else { 0 });
        let slope = self.slope;
        let leaky = |v: f32| if v > 0.0 { v } else { slope * v };
        par_images(
            n,
            self.threads,
            (&mut y, out),
            (&mut argmax, if self.pool { out } else { 0 }),
            |first, yt, at| {
                for i in 0..yt.len() / out {
                    for ch in 0..c {
                        let plane = &z[((first + i) * c + ch) * p..][..p];
                        let (mu, is) = (mean[ch], inv_std[ch]);
                        let dst = &mut yt[(i * c + ch) * ph * pw..][..ph * pw];
                        if !self.pool {
                            for (o, &v) in dst.iter_mut().zip(plane) {
                                *o = leaky((v - mu) * is);
                            }
                            continue;
                        }
                        // Normalising and leaky ReLU are increasing: the pool's winner is
                        // the largest conv output.
                        let arg = &mut at[(i * c + ch) * ph * pw..][..ph * pw];
                        for py in 0..ph {
                            for px in 0..pw {
                                let (v, k) = conv::max4(plane, 2 * py * d.ow + 2 * px, d.ow);
                                dst[py * pw + px] = leaky((v - mu) * is);
                                arg[py * pw + px] = (ch * p + k) as u32;
                            }
                        }
                    }
                }
            },
        );
        *self.stats.lock().expect("bn stats") = Some(BatchStats {
            mean: mean.clone(),
            var,
            count: n * p,
        });
        *self.saved.lock().expect("conv-bn state") = Some(Saved {
            dims: d,
            z,
            argmax,
            mean,
            inv_std,
            weight: weight.to_vec(),
        });
        Ok((CpuStorage::F32(y), Shape::from((n, c, ph, pw))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let guard = self.saved.lock().expect("conv-bn state");
        let Some(s) = guard.as_ref() else {
            candle_core::bail!("conv-bn: backward before forward");
        };
        let d = s.dims;
        let (n, c, p) = (d.n, d.o, d.p());
        let g = grad_res.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let out = g.len() / n;
        let slope = self.slope;
        // The gradient at the normalised value xh from the output's gradient gv.
        let dxh = |gv: f32, xh: f32| if xh > 0.0 { gv } else { gv * slope };
        // Per channel: the sums of that gradient and of it times xh. With the pool it is
        // zero except at the winners.
        let sums = channel_sums(n, c, self.threads, |first, part| {
            let plane = if self.pool { 0 } else { p };
            let (mut dv, mut xh) = (vec![0f32; plane], vec![0f32; plane]);
            for (i, sums) in part.chunks_exact_mut(c).enumerate() {
                let img = first + i;
                let per = out / c;
                for (ch, sum) in sums.iter_mut().enumerate() {
                    let (mu, is) = (s.mean[ch], s.inv_std[ch]);
                    let gi = &g[img * out + ch * per..][..per];
                    let z = &s.z[img * c * p..][..c * p];
                    if self.pool {
                        let am = &s.argmax[img * out + ch * per..][..per];
                        let (mut a, mut b) = (0f32, 0f32);
                        for (&k, &gv) in am.iter().zip(gi) {
                            let xh = (z[k as usize] - mu) * is;
                            let dv = dxh(gv, xh);
                            a += dv;
                            b += dv * xh;
                        }
                        *sum = (f64::from(a), f64::from(b));
                    } else {
                        let zp = &z[ch * p..(ch + 1) * p];
                        for (((d, x), &gv), &zv) in dv.iter_mut().zip(&mut xh).zip(gi).zip(zp) {
                            *x = (zv - mu) * is;
                            *d = dxh(gv, *x);
                        }
                        *sum = lane_sums(&dv, &xh);
                    }
                }
            }
        });
        let m = (n * p) as f64;
        let sums: Vec<(f32, f32)> = (sums.into_iter())
            .map(|(a, b)| ((a / m) as f32, (b / m) as f32))
            .collect();
        let (dx, dw, _) = conv::backward(
            &d,
            x,
            &s.weight,
            self.threads,
            self.input_needs_grad,
            |img, dconv, _| {
                // dconv = is * (dxh - mean(dxh) - xh * mean(dxh * xh)), dxh as above.
                let z = &s.z[img * c * p..][..c * p];
                let gi = &g[img * out..][..out];
                for (ch, row) in dconv.chunks_exact_mut(p).enumerate() {
                    let (mu, is) = (s.mean[ch], s.inv_std[ch]);
                    let (s1, s2) = sums[ch];
                    let zp = &z[ch * p..(ch + 1) * p];
                    if self.pool {
                        for (o, &zv) in row.iter_mut().zip(zp) {
                            *o = -is * (s1 + (zv - mu) * is * s2);
                        }
                    } else {
                        let gp = &gi[ch * p..(ch + 1) * p];
                        for ((o, &zv), &gv) in row.iter_mut().zip(zp).zip(gp) {
                            let xh = (zv - mu) * is;
                            *o = is * (dxh(gv, xh) - s1 - xh * s2);
                        }
                    }
                }
                if self.pool {
                    let am = &s.argmax[img * out..][..out];
                    for (&k, &gv) in am.iter().zip(gi) {
                        let ch = k as usize / p;
                        let xh = (z[k as usize] - s.mean[ch]) * s.inv_std[ch];
                        dconv[k as usize] += s.inv_std[ch] * dxh(gv, xh);
                    }
                }
            },
        )?;
        Ok((dx, Some(Tensor::from_vec(dw, weight.shape(), x.device())?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    fn random(shape: &[usize], rng: &mut Xoshiro256PlusPlus, scale: f32) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.gen_range(-scale..scale)).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// Against the same function from candle's ops (conv2d, batch statistics, leaky ReLU,
    /// max-pool): output, statistics, and the gradients of a random weighting of the output
    /// for the input and the weights; with and without the pool, a first layer (no input
    /// gradient), one input channel (the small-kernel product), and batches that do not
    /// divide into the weight-gradient chunks.
    #[test]
    fn matches_candle_ops() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
        for ((n, c, h, w, o), pad, pool, first) in [
            ((5, 3, 8, 8, 4), 2, true, false),
            ((19, 2, 6, 7, 3), 2, true, true),
            ((3, 4, 6, 6, 5), 1, false, false),
            ((37, 1, 9, 9, 2), 2, true, true),
            ((4, 8, 5, 5, 3), 3, false, false),
        ] {
            let case = format!("{n}x{c}x{h}x{w} -> {o}, pad {pad}, pool {pool}");
            let x = Var::from_tensor(&random(&[n, c, h, w], &mut rng, 1.0)).unwrap();
            let wt = Var::from_tensor(&random(&[o, c, 5, 5], &mut rng, 0.3)).unwrap();
            let (y, stats) = ConvBnAct::apply(&x, &wt, (!first, pad, pool), 1e-4, 0.01).unwrap();
            let z = x.conv2d(&wt, pad, 1, 1, 1).unwrap();
            let m = z.mean_keepdim((0, 2, 3)).unwrap();
            let centred = z.broadcast_sub(&m).unwrap();
            let v = centred.sqr().unwrap().mean_keepdim((0, 2, 3)).unwrap();
            let xhat = centred
                .broadcast_div(&(v.clone() + 1e-4).unwrap().sqrt().unwrap())
                .unwrap();
            let a = xhat.maximum(&(&xhat * 0.01).unwrap()).unwrap();
            let r = if pool {
                crate::model::conv::max_pool2x2(&a).unwrap()
            } else {
                a
            };
            let close = |p: &Tensor, q: &Tensor, what: &str| {
                let (d, s) = crate::model::max_gap(p, q);
                assert!(
                    d <= 1e-4 * s.max(1e-3),
                    "{case}: {what} differs by {d} (max {s})"
                );
            };
            close(&y, &r, "output");
            let dev = Device::Cpu;
            let vm = Tensor::from_vec(stats.mean, o, &dev).unwrap();
            close(&vm, &m.flatten_all().unwrap(), "mean");
            let vv = Tensor::from_vec(stats.var, o, &dev).unwrap();
            close(&vv, &v.flatten_all().unwrap(), "variance");
            assert_eq!(stats.count, n * z.dim(2).unwrap() * z.dim(3).unwrap());
            let wgt = random(y.dims(), &mut rng, 1.0);
            let ga = (y * &wgt).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = (r * &wgt).unwrap().sum_all().unwrap().backward().unwrap();
            close(
                ga.get(&wt).unwrap(),
                gb.get(&wt).unwrap(),
                "weight gradient",
            );
            if first {
                assert!(
                    ga.get(&x).is_none(),
                    "{case}: a first layer's input gradient"
                );
            } else {
                close(ga.get(&x).unwrap(), gb.get(&x).unwrap(), "input gradient");
            }
        }
    }
}
