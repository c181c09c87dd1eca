//! EfficientNet-Lite (Tan & Le 2019; the Lite variants drop squeeze-and-excitation, use
//! ReLU6 and keep the stem and head unscaled) in inference mode, as the package
//! `efficientnet-lite-pytorch` defines it for the released weights: TensorFlow's "SAME"
//! padding, batch norm with eps 1e-3.
//!
//! Batch norm is folded into each convolution once at load. The forward pass runs on the CPU
//! in channels-last layout: every 1x1 convolution (nine tenths of the multiplications) is one
//! matrix product over all positions of a chunk of images, the depthwise convolutions are
//! direct loops vectorised over channels. Why not candle's conv2d: its grouped convolution
//! runs one convolution per channel (1,152 of them in the last stages), far slower than
//! PyTorch on the same CPU.

use super::pth::PthTensor;
use super::BackboneError;
use crate::kernels::matmul;
use crate::kernels::vectorised;

/// Batch norm's epsilon in these models (TensorFlow's 1e-3, not PyTorch's default).
const BN_EPS: f32 = 1e-3;
/// Stem and head widths (not scaled in the Lite variants).
const STEM: usize = 32;
pub const HEAD: usize = 1280;

/// (repeats, kernel, stride, expansion, input filters, output filters) of the seven stages
/// (`efficientnet_lite_builder.py`).
const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];

/// Channels scaled by `width`, rounded to a multiple of 8 as the reference does.
fn round_filters(filters: usize, width: f64) -> usize {
    if width == 1.0 {
        return filters;
    }
    let f = filters as f64 * width;
    let mut n = (((f + 4.0) as usize) / 8 * 8).max(8);
    if (n as f64) < 0.9 * f {
        n += 8;
    }
    n
}

/// A 1x1 convolution with batch norm folded in: `x (m x cin) * w (cin x cout) + b`.
struct Pointwise {
    cin: usize,
    cout: usize,
    w: Vec<f32>,
    b: Vec<f32>,
}

/// A depthwise k x k convolution: `w` is `k * k x c` (tap-major, channels contiguous).
struct Depthwise {
    c: usize,
    k: usize,
    stride: usize,
    w: Vec<f32>,
    b: Vec<f32>,
}

struct Block {
    expand: Option<Pointwise>,
    depthwise: Depthwise,
    project: Pointwise,
    skip: bool,
}

/// A loaded EfficientNet-Lite: `features` maps normalised channels-last images to the global
/// average pool of its last convolution.
pub struct EfficientNetLite {
    /// 27 x 32: patch (ky, kx, input channel) by output channel.
    stem_w: Vec<f32>,
    stem_b: Vec<f32>,
    blocks: Vec<Block>,
    head: Pointwise,
}

/// The state dict's tensors by name, taken out as they are used.
struct Weights(std::collections::HashMap<String, PthTensor>);

impl Weights {
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, BackboneError> {
        let t = self
            .0
            .remove(name)
            .ok_or_else(|| BackboneError::Weights(format!("{name} is missing")))?;
        if t.shape != shape {
            return Err(BackboneError::Weights(format!(
                "{name} has shape {:?}, expected {shape:?}",
                t.shape
            )));
        }
        Ok(t.values)
    }

    /// Batch norm `prefix` as (scale, shift): y = x * scale + shift.
    fn batch_norm(
        &mut self,
        prefix: &str,
        c: usize,
    ) -> Result<(Vec<f32>, Vec<f32>), BackboneError> {
        let gamma = self.take(&format!("{prefix}.weight"), &[c])?;
        let beta = self.take(&format!("{prefix}.bias"), &[c])?;
        let mean = self.take(&format!("{prefix}.running_mean"), &[c])?;
        let var = self.take(&format!("{prefix}.running_var"), &[c])?;
        let scale: Vec<f32> = (0..c)
            .map(|i| gamma[i] / (var[i] + BN_EPS).sqrt())
            .collect();
        let shift = (0..c).map(|i| beta[i] - mean[i] * scale[i]).collect();
        Ok((scale, shift))
    }

    fn pointwise(
        &mut self,
        conv: &str,
        bn: &str,
        cin: usize,
        cout: usize,
    ) -> Result<Pointwise, BackboneError> {
        let w = self.take(&format!("{conv}.weight"), &[cout, cin, 1, 1])?;
        let (scale, b) = self.batch_norm(bn, cout)?;
        let mut wt = vec![0.0; cin * cout];
        for o in 0..cout {
            for i in 0..cin {
                wt[i * cout + o] = w[o * cin + i] * scale[o];
            }
        }
        Ok(Pointwise {
            cin,
            cout,
            w: wt,
            b,
        })
    }

    fn depthwise(
        &mut self,
        prefix: &str,
        c: usize,
        k: usize,
        stride: usize,
    ) -> Result<Depthwise, BackboneError> {
        let w = self.take(&format!("{prefix}._depthwise_conv.weight"), &[c, 1, k, k])?;
        let (scale, b) = self.batch_norm(&format!("{prefix}._bn1"), c)?;
        let mut wt = vec![0.0; k * k * c];
        for ch in 0..c {
            for tap in 0..k * k {
                wt[tap * c + ch] = w[ch * k * k + tap] * scale[ch];
            }
        }
        Ok(Depthwise {
            c,
            k,
            stride,
            w: wt,
            b,
        })
    }
}

impl EfficientNetLite {
    /// Builds the network of width and depth multipliers `(width, depth)` from a state dict,
    /// checking every tensor's name and shape (the classifier `_fc` is not used).
    pub fn from_state_dict(
        tensors: Vec<(String, PthTensor)>,
        (width, depth): (f64, f64),
    ) -> Result<EfficientNetLite, BackboneError> {
        let mut w = Weights(tensors.into_iter().collect());
        let stem = w.take("_conv_stem.weight", &[STEM, 3, 3, 3])?;
        let (scale, stem_b) = w.batch_norm("_bn0", STEM)?;
        let mut stem_w = vec![0.0; 27 * STEM];
        for o in 0..STEM {
            for ci in 0..3 {
                for tap in 0..9 {
                    stem_w[(tap * 3 + ci) * STEM + o] = stem[(o * 3 + ci) * 9 + tap] * scale[o];
                }
            }
        }
        let mut blocks = Vec::new();
        for (s, &(repeats, k, stride, expand, cin, cout)) in STAGES.iter().enumerate() {
            let fixed = s == 0 || s == STAGES.len() - 1;
            let repeats = if fixed {
                repeats
            } else {
                (depth * repeats as f64).ceil() as usize
            };
            let mut cin = if s == 0 {
                cin
            } else {
                round_filters(cin, width)
            };
            let cout = round_filters(cout, width);
            for r in 0..repeats {
                let i = blocks.len();
                let p = format!("_blocks.{i}");
                let mid = cin * expand;
                let expand_conv = if expand != 1 {
                    Some(w.pointwise(
                        &format!("{p}._expand_conv"),
                        &format!("{p}._bn0"),
                        cin,
                        mid,
                    )?)
                } else {
                    None
                };
                let stride = if r == 0 { stride } else { 1 };
                blocks.push(Block {
                    expand: expand_conv,
                    depthwise: w.depthwise(&p, mid, k, stride)?,
                    project: w.pointwise(
                        &format!("{p}._project_conv"),
                        &format!("{p}._bn2"),
                        mid,
                        cout,
                    )?,
                    skip: stride == 1 && cin == cout,
                });
                cin = cout;
            }
        }
        let last = blocks.last().expect("seven stages").project.cout;
        let head = w.pointwise("_conv_head", "_bn1", last, HEAD)?;
        let unused: Vec<&String> = w.0.keys().filter(|k| !k.starts_with("_fc.")).collect();
        if !unused.is_empty() {
            return Err(BackboneError::Weights(format!(
                "{} tensors this architecture does not have, e.g. {}",
                unused.len(),
                unused[0]
            )));
        }
        Ok(EfficientNetLite {
            stem_w,
            stem_b,
            blocks,
            head,
        })
    }

    /// Global-average-pooled features (`n x 1280`) of `n` images given channels last,
    /// `n x size x size x 3`, already normalised. `size` must be a multiple of 32 (checked by
    /// the caller's settings), so every stride-2 layer sees an even side and "SAME" padding is
    /// the same as the reference's (computed there for 224 px).
    pub fn features(&self, x: &[f32], n: usize, size: usize) -> Vec<f32> {
        assert_eq!(x.len(), n * size * size * 3, "features: input length");
        let (mut act, mut side) = self.stem(x, n, size);
        for block in &self.blocks {
            (act, side) = block.forward(act, n, side);
        }
        let m = n * side * side;
        let mut head = vec![0.0; m * HEAD];
        self.head.forward(&act, m, &mut head, true);
        let mut pooled = vec![0.0; n * HEAD];
        let inv = 1.0 / (side * side) as f32;
        for (img, out) in head
            .chunks_exact(side * side * HEAD)
            .zip(pooled.chunks_exact_mut(HEAD))
        {
            for pos in img.chunks_exact(HEAD) {
                add(out, pos);
            }
            out.iter_mut().for_each(|v| *v *= inv);
        }
        pooled
    }

    /// 3x3 stride-2 convolution 3 -> 32 (+ ReLU6) by patches and one matrix product.
    fn stem(&self, x: &[f32], n: usize, size: usize) -> (Vec<f32>, usize) {
        let out = size.div_ceil(2);
        let before = same_padding(size, 3, 2).0;
        let mut cols = vec![0.0; n * out * out * 27];
        for img in 0..n {
            let src = &x[img * size * size * 3..(img + 1) * size * size * 3];
            for oy in 0..out {
                for ox in 0..out {
                    let row = &mut cols[((img * out + oy) * out + ox) * 27..][..27];
                    for ky in 0..3 {
                        let Some(iy) = (oy * 2 + ky).checked_sub(before).filter(|&v| v < size)
                        else {
                            continue;
                        };
                        for kx in 0..3 {
                            let Some(ix) = (ox * 2 + kx).checked_sub(before).filter(|&v| v < size)
                            else {
                                continue;
                            };
                            let tap = ky * 3 + kx;
                            row[tap * 3..tap * 3 + 3]
                                .copy_from_slice(&src[(iy * size + ix) * 3..][..3]);
                        }
                    }
                }
            }
        }
        let m = n * out * out;
        let mut y = vec![0.0; m * STEM];
        matmul(
            (m, STEM, 27),
            &cols,
            (27, 1),
            &self.stem_w,
            (STEM, 1),
            &mut y,
            (STEM, 1),
            false,
        );
        bias_relu6(&mut y, &self.stem_b, true);
        (y, out)
    }
}

impl Block {
    fn forward(&self, x: Vec<f32>, n: usize, side: usize) -> (Vec<f32>, usize) {
        let m = n * side * side;
        let mid = match &self.expand {
            Some(e) => {
                let mut y = vec![0.0; m * e.cout];
                e.forward(&x, m, &mut y, true);
                y
            }
            None => x.clone(),
        };
        let (dw, out_side) = self.depthwise.forward(&mid, n, side);
        drop(mid);
        let mo = n * out_side * out_side;
        let mut y = vec![0.0; mo * self.project.cout];
        self.project.forward(&dw, mo, &mut y, false);
        if self.skip {
            add(&mut y, &x);
        }
        (y, out_side)
    }
}

impl Pointwise {
    fn forward(&self, x: &[f32], m: usize, y: &mut [f32], relu6: bool) {
        let (k, c) = (self.cin, self.cout);
        matmul((m, c, k), x, (k, 1), &self.w, (c, 1), y, (c, 1), false);
        bias_relu6(y, &self.b, relu6);
    }
}

impl Depthwise {
    fn forward(&self, x: &[f32], n: usize, side: usize) -> (Vec<f32>, usize) {
        let out = side.div_ceil(self.stride);
        let before = same_padding(side, self.k, self.stride).0;
        let c = self.c;
        let mut y = vec![0.0; n * out * out * c];
        for (src, dst) in x
            .chunks_exact(side * side * c)
            .zip(y.chunks_exact_mut(out * out * c))
        {
            depthwise_image(self, src, dst, side, out, before);
        }
        (y, out)
    }
}

/// TensorFlow's "SAME" padding of one side: (before, after).
fn same_padding(size: usize, k: usize, stride: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out - 1) * stride + k).saturating_sub(size);
    (total / 2, total - total / 2)
}

vectorised! {
    /// One image's depthwise convolution + bias + ReLU6, channels last.
    fn depthwise_image => depthwise_image_body(
        d: &Depthwise, src: &[f32], dst: &mut [f32], side: usize, out: usize, before: usize
    )
}

#[inline(always)]
fn depthwise_image_body(
    d: &Depthwise,
    src: &[f32],
    dst: &mut [f32],
    side: usize,
    out: usize,
    before: usize,
) {
    let (c, k, s) = (d.c, d.k, d.stride);
    for oy in 0..out {
        for ox in 0..out {
            let acc = &mut dst[(oy * out + ox) * c..][..c];
            acc.copy_from_slice(&d.b);
            for ky in 0..k {
                let Some(iy) = (oy * s + ky).checked_sub(before).filter(|&v| v < side) else {
                    continue;
                };
                for kx in 0..k {
                    let Some(ix) = (ox * s + kx).checked_sub(before).filter(|&v| v < side) else {
                        continue;
                    };
                    let w = &d.w[(ky * k + kx) * c..][..c];
                    let v = &src[(iy * side + ix) * c..][..c];
                    for ((a, &wi), &vi) in acc.iter_mut().zip(w).zip(v) {
                        *a = vi.mul_add(wi, *a);
                    }
                }
            }
            for a in acc.iter_mut() {
                *a = a.clamp(0.0, 6.0);
            }
        }
    }
}

vectorised! {
    /// Adds the per-channel bias to every row of `y` (channels last), then ReLU6 if asked.
    fn bias_relu6 => bias_relu6_body(y: &mut [f32], b: &[f32], relu6: bool)
}

#[inline(always)]
fn bias_relu6_body(y: &mut [f32], b: &[f32], relu6: bool) {
    for row in y.chunks_exact_mut(b.len()) {
        for (v, &bi) in row.iter_mut().zip(b) {
            *v += bi;
            if relu6 {
                *v = v.clamp(0.0, 6.0);
            }
        }
    }
}

vectorised! {
    /// `y += x`.
    fn add => add_body(y: &mut [f32], x: &[f32])
}

#[inline(always)]
fn add_body(y: &mut [f32], x: &[f32]) {
    for (a, &b) in y.iter_mut().zip(x) {
        *a += b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_is_tensorflows() {
        // Even sides at stride 2 pad after more than before; odd sides symmetrically.
        assert_eq!(same_padding(224, 3, 2), (0, 1));
        assert_eq!(same_padding(14, 5, 2), (1, 2));
        assert_eq!(same_padding(7, 3, 2), (1, 1));
        assert_eq!(same_padding(8, 5, 1), (2, 2));
    }

    #[test]
    fn filters_round_as_the_reference() {
        assert_eq!(round_filters(40, 1.0), 40);
        // Lite2 (width 1.1): 16 -> 17.6 -> 16; 24 -> 26.4 -> 24; 112 -> 123.2 -> 120.
        assert_eq!(round_filters(16, 1.1), 16);
        assert_eq!(round_filters(24, 1.1), 24);
        assert_eq!(round_filters(112, 1.1), 120);
        assert_eq!(round_filters(320, 1.1), 352);
    }
}
