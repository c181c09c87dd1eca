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

use crate::model::conv::{self, max_pool2x2, ConvBlock};

/// The encoder's shape beyond the paper's network (EIDN+ options); the default is the
/// paper's, and then nothing of it is written to `eidn.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arch {
    /// Zero-pad every 3x3 conv by one pixel ("same" convs), where the paper's are "valid".
    #[serde(default)]
    pub same_padding: bool,
    /// Multiplies every conv width (32, 64, and 128 for a third block) and the dense layer.
    #[serde(default = "Arch::one")]
    pub width: usize,
    /// Conv + pool blocks: 2 (the paper) or 3.
    #[serde(default = "Arch::two")]
    pub blocks: usize,
}

impl Default for Arch {
    fn default() -> Self {
        Arch {
            same_padding: false,
            width: 1,
            blocks: 2,
        }
    }
}

impl Arch {
    fn one() -> usize {
        1
    }
    fn two() -> usize {
        2
    }

    pub fn is_paper(&self) -> bool {
        *self == Arch::default()
    }

    /// What a setting may get wrong, as a message.
    pub fn check(&self) -> std::result::Result<(), String> {
        if !(1..=8).contains(&self.width) {
            return Err(format!("width multiplier {} must be in 1..=8", self.width));
        }
        if !(2..=3).contains(&self.blocks) {
            return Err(format!(
                "{} conv blocks: use 2 (the paper) or 3",
                self.blocks
            ));
        }
        Ok(())
    }

    /// Short and folder-safe, for cell ids: "" for the paper's, else e.g. "-same-x2-blk3".
    pub fn id_suffix(&self) -> String {
        let mut s = String::new();
        if self.same_padding {
            s.push_str("-same");
        }
        if self.width != 1 {
            s.push_str(&format!("-x{}", self.width));
        }
        if self.blocks != 2 {
            s.push_str(&format!("-blk{}", self.blocks));
        }
        s
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Architecture of the encoder; saved beside the weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncoderConfig {
    /// Input C x H x W.
    pub input: [usize; 3],
    pub conv1: usize,
    pub conv2: usize,
    /// A third conv block's width (EIDN+ only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conv3: Option<usize>,
    /// Convs padded by one pixel (EIDN+ only).
    #[serde(default, skip_serializing_if = "is_false")]
    pub same_padding: bool,
    pub hidden: usize,
    pub embed_dim: usize,
}

impl EncoderConfig {
    /// The paper's network.
    pub fn new(input: [usize; 3], embed_dim: usize) -> Self {
        Self::with_arch(input, embed_dim, Arch::default())
    }

    pub fn with_arch(input: [usize; 3], embed_dim: usize, arch: Arch) -> Self {
        let w = arch.width;
        EncoderConfig {
            input,
            conv1: 32 * w,
            conv2: 64 * w,
            conv3: (arch.blocks >= 3).then_some(128 * w),
            same_padding: arch.same_padding,
            hidden: 128 * w,
            embed_dim,
        }
    }

    /// Output channels of each conv block.
    pub fn widths(&self) -> Vec<usize> {
        let mut w = vec![self.conv1, self.conv2];
        w.extend(self.conv3);
        w
    }

    fn pad(&self) -> usize {
        usize::from(self.same_padding)
    }

    /// `(conv output side, pooled side)` of each block along one input side; `None` when
    /// the input is too small for the blocks.
    fn sides(&self, mut s: usize) -> Option<Vec<(usize, usize)>> {
        let mut out = Vec::new();
        for _ in 0..self.widths().len() {
            let conv = (s + 2 * self.pad()).checked_sub(2).filter(|&c| c >= 2)?;
            s = conv / 2;
            out.push((conv, s));
        }
        Some(out)
    }

    /// Side lengths after the conv+pool blocks, or `None` when the input is too small.
    pub fn feature_side(&self) -> Option<(usize, usize)> {
        let h = self.sides(self.input[1])?.last()?.1;
        let w = self.sides(self.input[2])?.last()?.1;
        Some((h, w))
    }

    /// Values held per image in one forward pass (input and every layer's output), saturating:
    /// sizes a training step's memory before anything is allocated.
    pub fn activation_values(&self) -> u64 {
        let [c, h, w] = self.input.map(|v| v as u64);
        let mut total = c.saturating_mul(h).saturating_mul(w);
        if let (Some(hs), Some(ws)) = (self.sides(self.input[1]), self.sides(self.input[2])) {
            for ((o, (hc, _)), (wc, _)) in self.widths().into_iter().zip(hs).zip(ws) {
                total = total.saturating_add((o * hc * wc) as u64);
            }
        } else {
            // Too small to run: the constructor refuses it; count the input many times over.
            total = total.saturating_mul(64);
        }
        total.saturating_add((self.hidden + self.embed_dim) as u64)
    }

    /// Multiply-adds of one forward pass of one image (for FLOP counts in benches).
    pub fn forward_macs(&self) -> u64 {
        let (Some(hs), Some(ws)) = (self.sides(self.input[1]), self.sides(self.input[2])) else {
            return 0;
        };
        let mut c = self.input[0];
        let mut macs = 0u64;
        for ((o, (hc, _)), (wc, _)) in self.widths().into_iter().zip(&hs).zip(&ws) {
            macs += (hc * wc * o * c * 9) as u64;
            c = o;
        }
        let (fh, fw) = (hs.last().unwrap().1, ws.last().unwrap().1);
        macs + (fh * fw * c * self.hidden + self.hidden * self.embed_dim) as u64
    }
}

#[derive(Clone, Debug)]
pub struct Encoder {
    convs: Vec<Conv2d>,
    pad: usize,
    fc1: Linear,
    fc2: Linear,
    /// Conv blocks through the fused CPU op of [`conv`] instead of candle's ops.
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
        Self::with_path(config, varmap, device, seed, conv::enabled(device))
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
        if fast && !conv::enabled(device) {
            candle_core::bail!("the fast conv path runs on CPU only");
        }
        let (fh, fw) = config.feature_side().ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "input {:?} is too small for the encoder",
                config.input
            ))
        })?;
        let vb = VarBuilder::from_varmap(varmap, DType::F32, device);
        let conv = Conv2dConfig {
            padding: config.pad(),
            ..Conv2dConfig::default()
        };
        let mut convs = Vec::new();
        let mut c = config.input[0];
        for (i, o) in config.widths().into_iter().enumerate() {
            let name = format!("conv{}", i + 1);
            convs.push(candle_nn::conv2d(c, o, 3, conv, vb.pp(name))?);
            c = o;
        }
        let encoder = Encoder {
            convs,
            pad: config.pad(),
            fc1: candle_nn::linear(fh * fw * c, config.hidden, vb.pp("fc1"))?,
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
        let mut h = x.clone();
        for (i, conv) in self.convs.iter().enumerate() {
            h = if self.fast {
                let bias = conv.bias().cloned().expect("conv layers have a bias");
                // The first block's input is data: no gradient for it.
                ConvBlock::apply(&h, conv.weight(), &bias, i > 0, self.pad)?
            } else {
                max_pool2x2(&h.apply(conv)?.relu()?)?
            };
        }
        h.flatten_from(1)?
            .apply(&self.fc1)?
            .relu()?
            .apply(&self.fc2)
    }
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

    /// Same padding keeps the side through each conv; a third block halves it once more.
    #[test]
    fn arch_options_shape_the_network() {
        let arch = Arch {
            same_padding: true,
            width: 2,
            blocks: 3,
        };
        let cfg = EncoderConfig::with_arch([3, 32, 32], 2, arch);
        assert_eq!(cfg.widths(), [64, 128, 256]);
        assert_eq!(cfg.feature_side(), Some((4, 4)));
        let valid3 = EncoderConfig::with_arch(
            [1, 28, 28],
            2,
            Arch {
                blocks: 3,
                ..Arch::default()
            },
        );
        assert_eq!(valid3.feature_side(), Some((1, 1)));
        let paper = EncoderConfig::new([1, 28, 28], 2);
        assert_eq!(
            paper.forward_macs(),
            26 * 26 * 32 * 9 + 11 * 11 * 64 * 32 * 9 + 5 * 5 * 64 * 128 + 128 * 2
        );
        let json = serde_json::to_string(&paper).unwrap();
        assert!(
            !json.contains("conv3") && !json.contains("same_padding"),
            "{json}"
        );
        for fast in [true, false] {
            let vm = VarMap::new();
            let enc = Encoder::with_path(&cfg, &vm, &Device::Cpu, 1, fast).unwrap();
            let x = Tensor::zeros((2, 3, 32, 32), DType::F32, &Device::Cpu).unwrap();
            assert_eq!(enc.forward(&x).unwrap().dims(), &[2, 2]);
        }
        assert!(Arch {
            blocks: 4,
            ..Arch::default()
        }
        .check()
        .is_err());
    }
}
