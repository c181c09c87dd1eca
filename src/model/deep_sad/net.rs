//! The LeNet-type encoders and decoders of Deep SVDD / Deep SAD (Ruff et al.;
//! lukasruff/Deep-SAD-PyTorch `src/networks/{mnist,cifar10}_LeNet.py`): 5x5 convolutions with
//! zero padding 2 and no bias, batch norm without affine parameters (eps 1e-4), leaky ReLU
//! (slope 0.01), 2x2 max-pool, and a bias-free linear map to the representation. No bias
//! anywhere, so the network cannot map everything onto the centre c by a constant (the
//! "hypersphere collapse" the authors rule out).
//!
//! The decoders use nearest-neighbour upsampling and `ConvTranspose2d(k = 5, stride 1,
//! padding p)`; a stride-1 transposed convolution is a convolution with padding `k - 1 - p`
//! (and a flipped, transposed kernel, which only relabels freshly initialised weights), so
//! they are written as convolutions here.

use std::collections::HashMap;
use std::sync::Mutex;

use candle_core::{DType, Device, Result, Tensor, Var, D};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::fused::{BatchStats, ConvBnAct};
use crate::model::conv::max_pool2x2;

const KERNEL: usize = 5;
const BN_EPS: f64 = 1e-4;
/// PyTorch's batch-norm momentum: running = 0.9 running + 0.1 batch.
const BN_MOMENTUM: f64 = 0.1;
const LEAKY_SLOPE: f64 = 0.01;

/// Which of the authors' two networks an input shape gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeNetKind {
    /// 1x28x28: conv 8, conv 4, representation 32.
    Mnist,
    /// Cx32x32: conv 32, 64, 128, representation 128.
    Cifar,
}

impl LeNetKind {
    pub fn for_input(input: [usize; 3]) -> std::result::Result<LeNetKind, String> {
        match input {
            [1, 28, 28] => Ok(LeNetKind::Mnist),
            [_, 32, 32] => Ok(LeNetKind::Cifar),
            other => Err(format!(
                "Deep SAD's LeNet encoders take 1x28x28 (MNIST) or Cx32x32 (CIFAR-10) images, \
                 not {other:?}; declare the dataset with size = 32"
            )),
        }
    }

    pub fn rep_dim(self) -> usize {
        match self {
            LeNetKind::Mnist => 32,
            LeNetKind::Cifar => 128,
        }
    }

    fn widths(self) -> &'static [usize] {
        match self {
            LeNetKind::Mnist => &[8, 4],
            LeNetKind::Cifar => &[32, 64, 128],
        }
    }

    /// Decoder convolutions: (in, out, conv padding, upsample x2 before it).
    fn decoder(self, channels: usize) -> Vec<(usize, usize, usize, bool)> {
        match self {
            // ConvTranspose2d paddings 2, 3, 2.
            LeNetKind::Mnist => vec![(2, 4, 2, true), (4, 8, 1, true), (8, 1, 2, true)],
            LeNetKind::Cifar => vec![
                (8, 128, 2, false),
                (128, 64, 2, true),
                (64, 32, 2, true),
                (32, channels, 2, true),
            ],
        }
    }
}

/// Batch norm without affine parameters: batch statistics in training (updating the running
/// ones), running statistics in evaluation, as PyTorch's `BatchNorm2d(affine=False)`.
struct BatchNorm {
    mean: Mutex<Tensor>,
    var: Mutex<Tensor>,
}

impl BatchNorm {
    /// `leaky(bn(x))`, max-pooled 2x2 when `pool` (candle's ops).
    fn forward_act(&self, x: &Tensor, train: bool, pool: bool) -> Result<Tensor> {
        let y = leaky(&self.forward(x, train)?)?;
        if pool {
            max_pool2x2(&y)
        } else {
            Ok(y)
        }
    }

    /// The running statistics' update from the fused op's batch statistics.
    fn update_from(&self, stats: BatchStats, device: &Device) -> Result<()> {
        let count = stats.count as f64;
        let shape = (1, stats.mean.len(), 1, 1);
        let mean = Tensor::from_vec(stats.mean, shape, device)?;
        let unbiased =
            (Tensor::from_vec(stats.var, shape, device)? * (count / (count - 1.0).max(1.0)))?;
        self.update(&mean, &unbiased)
    }

    /// Running statistics: 0.9 old + 0.1 batch (the variance unbiased).
    fn update(&self, mean: &Tensor, unbiased_var: &Tensor) -> Result<()> {
        let mut rm = self.mean.lock().expect("bn stats");
        *rm = ((&*rm * (1.0 - BN_MOMENTUM))? + (mean * BN_MOMENTUM)?)?;
        let mut rv = self.var.lock().expect("bn stats");
        *rv = ((&*rv * (1.0 - BN_MOMENTUM))? + (unbiased_var * BN_MOMENTUM)?)?;
        Ok(())
    }

    fn new(channels: usize, device: &Device) -> Result<Self> {
        Ok(BatchNorm {
            mean: Mutex::new(Tensor::zeros((1, channels, 1, 1), DType::F32, device)?),
            var: Mutex::new(Tensor::ones((1, channels, 1, 1), DType::F32, device)?),
        })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (mean, var) = if train {
            let (n, _, h, w) = x.dims4()?;
            let mean = x.mean_keepdim((0, 2, 3))?;
            let centred = x.broadcast_sub(&mean)?;
            let var = centred.sqr()?.mean_keepdim((0, 2, 3))?;
            // The running variance is the unbiased one, as PyTorch keeps it.
            let count = (n * h * w) as f64;
            let unbiased = (var.detach() * (count / (count - 1.0).max(1.0)))?;
            self.update(&mean.detach(), &unbiased)?;
            return centred.broadcast_div(&(var + BN_EPS)?.sqrt()?);
        } else {
            (
                self.mean.lock().expect("bn stats").clone(),
                self.var.lock().expect("bn stats").clone(),
            )
        };
        x.broadcast_sub(&mean)?
            .broadcast_div(&(var + BN_EPS)?.sqrt()?)
    }
}

/// `max(x, 0.01 x)`: two ops where candle_nn's `leaky_relu` takes five.
fn leaky(x: &Tensor) -> Result<Tensor> {
    x.maximum(&(x * LEAKY_SLOPE)?)
}

/// Nearest-neighbour x2 upsampling as a broadcast, whose backward is a sum: candle's
/// `upsample_nearest2d` backward runs a grouped convolution, the slowest op of a step.
fn upsample2(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    x.reshape((n, c, h, 1, w, 1))?
        .broadcast_as((n, c, h, 2, w, 2))?
        .reshape((n, c, 2 * h, 2 * w))
}

/// A bias-free 5x5 convolution's weight, `U(-b, b)` with `b = 1/sqrt(fan_in)` (PyTorch's
/// default), `fan_in` given because a transposed convolution counts its outputs.
fn weight(
    shape: &[usize],
    fan_in: usize,
    rng: &mut Xoshiro256PlusPlus,
    device: &Device,
) -> Result<Var> {
    let bound = 1.0 / (fan_in as f32).sqrt();
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.gen_range(-bound..bound)).collect();
    Var::from_tensor(&Tensor::from_vec(values, shape, device)?)
}

/// The encoder phi (and, for pretraining, its decoder).
pub struct LeNet {
    pub kind: LeNetKind,
    pub input: [usize; 3],
    convs: Vec<Var>,
    bns: Vec<BatchNorm>,
    fc: Var,
    decoder: Vec<(Var, usize, bool)>,
    dec_bns: Vec<BatchNorm>,
    /// Convolutions through [`crate::model::conv::Conv`] (CPU) instead of candle's conv2d.
    fast: bool,
}

impl LeNet {
    /// Weights drawn from `seed` (encoder first, then decoder), running statistics at
    /// (0, 1).
    pub fn new(input: [usize; 3], seed: u64, device: &Device) -> std::result::Result<Self, String> {
        let kind = LeNetKind::for_input(input)?;
        Self::build(kind, input, seed, device).map_err(|e| e.to_string())
    }

    fn build(kind: LeNetKind, input: [usize; 3], seed: u64, device: &Device) -> Result<Self> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut convs = Vec::new();
        let mut bns = Vec::new();
        let mut c = input[0];
        for &o in kind.widths() {
            convs.push(weight(
                &[o, c, KERNEL, KERNEL],
                c * KERNEL * KERNEL,
                &mut rng,
                device,
            )?);
            bns.push(BatchNorm::new(o, device)?);
            c = o;
        }
        let side = input[1] >> kind.widths().len();
        let flat = c * side * side;
        let rep = kind.rep_dim();
        let fc = weight(&[rep, flat], flat, &mut rng, device)?;
        let mut decoder = Vec::new();
        let mut dec_bns = Vec::new();
        let layers = kind.decoder(input[0]);
        let last = layers.len() - 1;
        for (i, (cin, cout, pad, up)) in layers.into_iter().enumerate() {
            let w = weight(
                &[cout, cin, KERNEL, KERNEL],
                cout * KERNEL * KERNEL,
                &mut rng,
                device,
            )?;
            decoder.push((w, pad, up));
            if i < last {
                dec_bns.push(BatchNorm::new(cout, device)?);
            }
        }
        Ok(LeNet {
            kind,
            input,
            convs,
            bns,
            fc,
            decoder,
            dec_bns,
            fast: crate::model::conv::enabled(device),
        })
    }

    /// Candle's own convolutions even on CPU: the reference the fast path is tested against.
    pub fn with_reference_ops(mut self) -> Self {
        self.fast = false;
        self
    }

    /// `leaky(bn(conv(x)))`, max-pooled when `pool`: in training on CPU one fused op.
    #[allow(clippy::too_many_arguments)]
    fn conv_bn_act(
        &self,
        x: &Tensor,
        w: &Var,
        bn: &BatchNorm,
        (pad, input_needs_grad): (usize, bool),
        train: bool,
        pool: bool,
    ) -> Result<Tensor> {
        if train && self.fast {
            let flags = (input_needs_grad, pad, pool);
            let (y, stats) = ConvBnAct::apply(x, w, flags, BN_EPS, LEAKY_SLOPE)?;
            bn.update_from(stats, x.device())?;
            return Ok(y);
        }
        let z = self.conv(x, w, pad, input_needs_grad)?;
        bn.forward_act(&z, train, pool)
    }

    fn conv(&self, x: &Tensor, w: &Var, pad: usize, input_needs_grad: bool) -> Result<Tensor> {
        if self.fast {
            crate::model::conv::Conv::apply(x, w, input_needs_grad, pad)
        } else {
            x.conv2d(w, pad, 1, 1, 1)
        }
    }

    /// phi(x): `n x rep_dim`. `train`: batch statistics (and running-statistics updates).
    pub fn encode(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut h = x.clone();
        for (i, (w, bn)) in self.convs.iter().zip(&self.bns).enumerate() {
            // The first convolution's input is data: no gradient for it.
            h = self.conv_bn_act(&h, w, bn, (KERNEL / 2, i > 0), train, true)?;
        }
        h.flatten_from(1)?.matmul(&self.fc.t()?)
    }

    /// The reconstruction of the images whose representations are `z`.
    pub fn decode(&self, z: &Tensor, train: bool) -> Result<Tensor> {
        let n = z.dim(0)?;
        let c0 = self.decoder[0].0.dim(1)?;
        let mut h = leaky(&z.reshape((n, c0, 4, 4))?)?;
        let last = self.decoder.len() - 1;
        for (i, (w, pad, up)) in self.decoder.iter().enumerate() {
            if *up {
                h = upsample2(&h)?;
            }
            h = if i < last {
                self.conv_bn_act(&h, w, &self.dec_bns[i], (*pad, true), train, false)?
            } else {
                candle_nn::ops::sigmoid(&self.conv(&h, w, *pad, true)?)?
            };
        }
        Ok(h)
    }

    pub fn encoder_vars(&self) -> Vec<Var> {
        let mut v = self.convs.clone();
        v.push(self.fc.clone());
        v
    }

    pub fn all_vars(&self) -> Vec<Var> {
        let mut v = self.encoder_vars();
        v.extend(self.decoder.iter().map(|(w, _, _)| w.clone()));
        v
    }

    /// The encoder's weights and running statistics by name (what a saved model keeps).
    pub fn encoder_tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, (w, bn)) in self.convs.iter().zip(&self.bns).enumerate() {
            out.insert(format!("conv{}.weight", i + 1), w.as_tensor().clone());
            out.insert(
                format!("bn{}.running_mean", i + 1),
                bn.mean.lock().expect("bn stats").clone(),
            );
            out.insert(
                format!("bn{}.running_var", i + 1),
                bn.var.lock().expect("bn stats").clone(),
            );
        }
        out.insert("fc1.weight".into(), self.fc.as_tensor().clone());
        out
    }

    /// Sets the encoder from [`LeNet::encoder_tensors`]'s names, checking every shape.
    pub fn load_encoder(
        &self,
        tensors: &HashMap<String, Tensor>,
    ) -> std::result::Result<(), String> {
        let get = |name: &str, want: &[usize]| -> std::result::Result<Tensor, String> {
            let t = tensors
                .get(name)
                .ok_or_else(|| format!("no tensor {name:?}"))?;
            if t.dims() != want {
                return Err(format!(
                    "{name} is {:?}, the network needs {want:?}",
                    t.dims()
                ));
            }
            t.to_dtype(DType::F32).map_err(|e| e.to_string())
        };
        let set = |var: &Var, name: &str| -> std::result::Result<(), String> {
            var.set(&get(name, var.dims())?).map_err(|e| e.to_string())
        };
        for (i, (w, bn)) in self.convs.iter().zip(&self.bns).enumerate() {
            set(w, &format!("conv{}.weight", i + 1))?;
            let dims = bn.mean.lock().expect("bn stats").dims().to_vec();
            *bn.mean.lock().expect("bn stats") = get(&format!("bn{}.running_mean", i + 1), &dims)?;
            *bn.var.lock().expect("bn stats") = get(&format!("bn{}.running_var", i + 1), &dims)?;
        }
        set(&self.fc, "fc1.weight")
    }
}

/// Squared distances of the rows of `z` (n x d) to `c` (d).
pub fn sq_dist(z: &Tensor, c: &Tensor) -> Result<Tensor> {
    z.broadcast_sub(c)?.sqr()?.sum(D::Minus1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsampling_is_candles_nearest_neighbour() {
        let x = Tensor::rand(0f32, 1f32, (2, 3, 4, 5), &Device::Cpu).unwrap();
        let a = upsample2(&x).unwrap();
        let b = x.upsample_nearest2d(8, 10).unwrap();
        let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0);
    }

    #[test]
    fn shapes_follow_the_authors_networks() {
        let dev = Device::Cpu;
        for (input, rep) in [([1, 28, 28], 32), ([3, 32, 32], 128), ([1, 32, 32], 128)] {
            let net = LeNet::new(input, 0, &dev).unwrap();
            let x = Tensor::rand(0f32, 1f32, (5, input[0], input[1], input[2]), &dev).unwrap();
            let z = net.encode(&x, true).unwrap();
            assert_eq!(z.dims(), [5, rep]);
            let back = net.decode(&z, true).unwrap();
            assert_eq!(back.dims(), x.dims());
            let max = back.max_all().unwrap().to_scalar::<f32>().unwrap();
            let min = back.min_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(min > 0.0 && max < 1.0, "sigmoid output: {min}..{max}");
        }
        assert!(LeNet::new([3, 28, 28], 0, &dev).is_err());
        assert!(LeNet::new([1, 64, 64], 0, &dev).is_err());
    }

    /// The fast CPU path (convolutions, and batch norm + leaky ReLU + pool fused) gives
    /// candle's outputs, gradients and running statistics (5x5, paddings 2 and 1, one and
    /// several input channels).
    #[test]
    fn fast_convolutions_match_candle() {
        let dev = Device::Cpu;
        for input in [[1, 28, 28], [3, 32, 32]] {
            // Fixed images: a tolerance checked on random ones would fail now and then.
            let images = crate::data::ImageSet::synthetic(6, input, 5);
            let x = super::super::train::batch_tensor(&images, &[0, 1, 2, 3, 4, 5], &dev).unwrap();
            let fast = LeNet::new(input, 3, &dev).unwrap();
            let slow = LeNet::new(input, 3, &dev).unwrap().with_reference_ops();
            let loss = |net: &LeNet| {
                let z = net.encode(&x, true).unwrap();
                let back = net.decode(&z, true).unwrap();
                ((back - &x).unwrap().sqr().unwrap().sum_all().unwrap() + z.sum_all().unwrap())
                    .unwrap()
            };
            let (a, b) = (loss(&fast), loss(&slow));
            let (va, vb) = (a.to_scalar::<f32>().unwrap(), b.to_scalar::<f32>().unwrap());
            assert!(
                (va - vb).abs() <= 1e-4 * vb.abs(),
                "{input:?}: {va} vs {vb}"
            );
            let (ga, gb) = (a.backward().unwrap(), b.backward().unwrap());
            for (v, w) in fast.all_vars().iter().zip(slow.all_vars()) {
                let (d, s) = crate::model::max_gap(ga.get(v).unwrap(), gb.get(&w).unwrap());
                // Sums in another order through three batch norms and a decoder (the fused
                // op sums in f64, candle in f32): agreement to 0.5 % of the largest entry;
                // a wrong gradient is off by its own size.
                assert!(
                    d <= 5e-3 * s.max(1e-6),
                    "{input:?}: gradient differs by {d} (max {s})"
                );
            }
            // The running statistics the training passes left: the same evaluation output.
            let (ea, eb) = (
                fast.encode(&x, false).unwrap(),
                slow.encode(&x, false).unwrap(),
            );
            let diff = (ea - &eb).unwrap().abs().unwrap().max_all().unwrap();
            let scale = eb.abs().unwrap().max_all().unwrap();
            let (d, s) = (
                diff.to_scalar::<f32>().unwrap(),
                scale.to_scalar::<f32>().unwrap(),
            );
            assert!(
                d <= 1e-4 * s,
                "{input:?}: evaluation differs by {d} (max {s})"
            );
        }
    }

    /// torch: `bn = nn.BatchNorm2d(1, eps=1e-4, affine=False); bn(x)` on x = [1, 2, 3, 6]
    /// (shape 4x1x1x1) gives (x - 3) / sqrt(3.5 + 1e-4), running_mean 0.3, running_var
    /// 0.9 + 0.1 * 14/3.
    #[test]
    fn batch_norm_matches_pytorch() {
        let dev = Device::Cpu;
        let bn = BatchNorm::new(1, &dev).unwrap();
        let x = Tensor::from_vec(vec![1f32, 2., 3., 6.], (4, 1, 1, 1), &dev).unwrap();
        let y: Vec<f32> = bn
            .forward(&x, true)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let s = (3.5f32 + 1e-4).sqrt();
        for (got, want) in y.iter().zip([-2.0 / s, -1.0 / s, 0.0, 3.0 / s]) {
            assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        }
        let rm = bn
            .mean
            .lock()
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[0];
        let rv = bn
            .var
            .lock()
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[0];
        assert!((rm - 0.3).abs() < 1e-6, "{rm}");
        assert!((rv - (0.9 + 0.1 * 14.0 / 3.0)).abs() < 1e-5, "{rv}");
        // Evaluation uses the running statistics.
        let e: Vec<f32> = bn
            .forward(&x, false)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!((e[0] - (1.0 - rm) / (rv + 1e-4).sqrt()).abs() < 1e-5);
    }
}
