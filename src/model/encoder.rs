//! The encoder f: image -> R^l. The paper's Fig 4 is not in its text and no code was
//! published, so this is the "simple network" the issue tracker settled on, sized like the
//! reference PyTorch model used for speed comparisons:
//!
//! | layer | output for 1x28x28 | output for 3x32x32 |
//! |---|---|---|
//! | conv 3x3, 32 filters, stride 1, no padding, ReLU | 32x26x26 | 32x30x30 |
//! | max-pool 2x2 | 32x13x13 | 32x15x15 |
//! | conv 3x3, 64 filters, no padding, ReLU | 64x11x11 | 64x13x13 |
//! | max-pool 2x2 (floor) | 64x5x5 | 64x6x6 |
//! | flatten, dense 128, ReLU | 128 | 128 |
//! | dense l (default 2), linear | l | l |
//!
//! The last layer is linear so that the embedding can reach both the origin and the
//! ones-vector. Weights are drawn from the run's seed (candle's CPU device cannot be
//! seeded), with PyTorch's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and
//! biases.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Linear, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use super::fast::ConvBlock;

/// Architecture of the encoder; saved beside the weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncoderConfig {
    /// Input C x H x W.
    pub input: [usize; 3],
    pub conv1: usize,
    pub conv2: usize,
    pub hidden: usize,
    pub embed_dim: usize,
}

impl EncoderConfig {
    pub fn new(input: [usize; 3], embed_dim: usize) -> Self {
        EncoderConfig {
            input,
            conv1: 32,
            conv2: 64,
            hidden: 128,
            embed_dim,
        }
    }

    /// Side lengths after the two conv+pool blocks, or `None` when the input is too small.
    pub fn feature_side(&self) -> Option<(usize, usize)> {
        let block = |s: usize| s.checked_sub(2).map(|s| s / 2).filter(|&s| s > 0);
        let h = block(self.input[1]).and_then(block)?;
        let w = block(self.input[2]).and_then(block)?;
        Some((h, w))
    }

    /// Values held per image in one forward pass (input and every layer's output), saturating:
    /// sizes a training step's memory before anything is allocated.
    pub fn activation_values(&self) -> u64 {
        let [c, h, w] = self.input.map(|v| v as u64);
        let (h1, w1) = (h.saturating_sub(2), w.saturating_sub(2));
        let (h2, w2) = ((h1 / 2).saturating_sub(2), (w1 / 2).saturating_sub(2));
        let conv1 = self.conv1 as u64;
        let conv2 = self.conv2 as u64;
        [
            c.saturating_mul(h).saturating_mul(w),
            conv1.saturating_mul(h1).saturating_mul(w1),
            conv2.saturating_mul(h2).saturating_mul(w2),
            (self.hidden + self.embed_dim) as u64,
        ]
        .iter()
        .fold(0u64, |a, &b| a.saturating_add(b))
    }

    /// Multiply-adds of one forward pass of one image (for FLOP counts in benches).
    pub fn forward_macs(&self) -> u64 {
        let [c, h, w] = self.input;
        let (h1, w1) = (h - 2, w - 2);
        let (p1h, p1w) = (h1 / 2, w1 / 2);
        let (h2, w2) = (p1h - 2, p1w - 2);
        let (fh, fw) = (h2 / 2, w2 / 2);
        let conv1 = (h1 * w1 * self.conv1 * c * 9) as u64;
        let conv2 = (h2 * w2 * self.conv2 * self.conv1 * 9) as u64;
        let fc1 = (fh * fw * self.conv2 * self.hidden) as u64;
        let fc2 = (self.hidden * self.embed_dim) as u64;
        conv1 + conv2 + fc1 + fc2
    }
}

#[derive(Clone, Debug)]
pub struct Encoder {
    conv1: Conv2d,
    conv2: Conv2d,
    fc1: Linear,
    fc2: Linear,
    /// Conv blocks through the fused CPU op of [`super::fast`] instead of candle's ops.
    fast: bool,
}

impl Encoder {
    /// Builds the layers with their variables in `varmap` (which then holds every trainable
    /// weight), initialised from `seed`. On CPU the conv blocks use the fast fused op.
    pub fn new(
        config: &EncoderConfig,
        varmap: &VarMap,
        device: &Device,
        seed: u64,
    ) -> Result<Self> {
        Self::with_path(config, varmap, device, seed, super::fast::enabled(device))
    }

    /// As [`Encoder::new`], choosing the conv path: `fast = false` forces candle's own ops
    /// (the reference the fast path is tested against).
    pub fn with_path(
        config: &EncoderConfig,
        varmap: &VarMap,
        device: &Device,
        seed: u64,
        fast: bool,
    ) -> Result<Self> {
        if fast && !super::fast::enabled(device) {
            candle_core::bail!("the fast conv path runs on CPU only");
        }
        let (fh, fw) = config.feature_side().ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "input {:?} is too small for the encoder",
                config.input
            ))
        })?;
        let vb = VarBuilder::from_varmap(varmap, DType::F32, device);
        let conv = Conv2dConfig::default();
        let encoder = Encoder {
            conv1: candle_nn::conv2d(config.input[0], config.conv1, 3, conv, vb.pp("conv1"))?,
            conv2: candle_nn::conv2d(config.conv1, config.conv2, 3, conv, vb.pp("conv2"))?,
            fc1: candle_nn::linear(fh * fw * config.conv2, config.hidden, vb.pp("fc1"))?,
            fc2: candle_nn::linear(config.hidden, config.embed_dim, vb.pp("fc2"))?,
            fast,
        };
        seeded_init(varmap, seed)?;
        Ok(encoder)
    }
}

/// Overwrites every variable, in sorted name order, from one seeded stream, so the same seed
/// gives the same weights on every machine and thread count.
fn seeded_init(varmap: &VarMap, seed: u64) -> Result<()> {
    let vars = varmap.data().lock().expect("varmap lock");
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    for name in names {
        let var = &vars[name];
        let dims = var.dims().to_vec();
        // Biases take the fan-in of their layer's weight.
        let weight_dims = if name.ends_with(".bias") {
            let w = name.trim_end_matches(".bias").to_string() + ".weight";
            vars[&w].dims().to_vec()
        } else {
            dims.clone()
        };
        let fan_in: usize = weight_dims[1..].iter().product();
        let bound = 1.0 / (fan_in as f32).sqrt();
        let values: Vec<f32> = (0..var.elem_count())
            .map(|_| rng.gen_range(-bound..bound))
            .collect();
        var.set(&Tensor::from_vec(values, dims, var.device())?)?;
    }
    Ok(())
}

impl Module for Encoder {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let features = if self.fast {
            let bias = |c: &Conv2d| c.bias().cloned().expect("conv layers have a bias");
            let h = ConvBlock::apply(x, self.conv1.weight(), &bias(&self.conv1), false)?;
            ConvBlock::apply(&h, self.conv2.weight(), &bias(&self.conv2), true)?
        } else {
            let h = max_pool2x2(&x.apply(&self.conv1)?.relu()?)?;
            max_pool2x2(&h.apply(&self.conv2)?.relu()?)?
        };
        features
            .flatten_from(1)?
            .apply(&self.fc1)?
            .relu()?
            .apply(&self.fc2)
    }
}

/// 2x2 max-pool, stride 2, floor, from reshapes and `max`, whose backward sends the whole
/// gradient to the maximum. Not candle's `max_pool2d`: its backward (candle 0.11) multiplies
/// the gradient by (number of maxima)/4 instead of dividing by the number of maxima, so a
/// unique maximum gets a quarter of its gradient.
pub fn max_pool2x2(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (ph, pw) = (h / 2, w / 2);
    x.narrow(2, 0, 2 * ph)?
        .narrow(3, 0, 2 * pw)?
        .reshape((n, c, ph, 2, pw, 2))?
        .max(5)?
        .max(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_seeded_weights() {
        for (input, flat) in [([1, 28, 28], 64 * 5 * 5), ([3, 32, 32], 64 * 6 * 6)] {
            let cfg = EncoderConfig::new(input, 2);
            let (fh, fw) = cfg.feature_side().unwrap();
            assert_eq!(fh * fw * 64, flat);
            let vm = VarMap::new();
            let enc = Encoder::new(&cfg, &vm, &Device::Cpu, 1).unwrap();
            let x =
                Tensor::zeros((4, input[0], input[1], input[2]), DType::F32, &Device::Cpu).unwrap();
            assert_eq!(enc.forward(&x).unwrap().dims(), &[4, 2]);
        }
        let weights = |seed| {
            let vm = VarMap::new();
            Encoder::new(&EncoderConfig::new([1, 28, 28], 2), &vm, &Device::Cpu, seed).unwrap();
            let data = vm.data().lock().unwrap();
            data["fc2.weight"]
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(weights(7), weights(7));
        assert_ne!(weights(7), weights(8));
        assert!(EncoderConfig::new([1, 5, 5], 2).feature_side().is_none());
    }
}
