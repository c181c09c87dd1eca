//! The EIDN model: an encoder trained with the refined triplet loss on randomly sampled
//! triplets (paper Section 3); anomaly score = Euclidean distance of f(x) from the origin.
//!
//! linfa-style: [`EidnParams`] holds the hyperparameters, [`EidnParams::check`] turns them
//! into [`EidnValidParams`] once, whose `fit` trains and returns a fitted [`Eidn`] that
//! embeds and scores images and saves/loads as safetensors plus a JSON config.

mod augment;
pub mod deep_sad;
mod encoder;
pub mod fast;
mod loss;
mod sampler;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use crate::data::protocol::{OneVsRest, Pools};
use crate::data::ImageSet;

pub use augment::Augment;
pub use encoder::{max_pool2x2, Arch, Encoder, EncoderConfig};
pub use loss::triplet_loss;
pub use sampler::{Pick, TripletBatch, TripletSampler};

/// File names inside a model directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const CONFIG_FILE: &str = "eidn.json";

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("invalid parameter: {0}")]
    InvalidParams(String),
    #[error("the loss became {loss} (or the embeddings non-finite) at step {step} (epoch {epoch}); lower the learning rate")]
    NonFiniteLoss {
        step: usize,
        epoch: usize,
        loss: f32,
    },
    #[error("images are {got:?} but the model takes {want:?}")]
    InputShape { got: [usize; 3], want: [usize; 3] },
    // Shown, not chained as a source, so `{:#}` prints it once.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {message}")]
    BadModelFile { path: PathBuf, message: String },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Hyperparameters, defaulting to the paper's: 50 epochs x 100 steps x 128 triplets, Adam
/// with lr 1e-3, margin alpha 0.2, l = 2.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EidnParams {
    pub embed_dim: usize,
    pub margin: f64,
    pub lr: f64,
    pub epochs: usize,
    pub steps_per_epoch: usize,
    /// Triplets per step (2x this many images go through f).
    pub batch_size: usize,
    pub seed: u64,
    /// Training-time augmentation (off, as in the paper).
    #[serde(default, skip_serializing_if = "Augment::is_none")]
    pub augment: Augment,
    /// The encoder's shape (the paper's by default).
    #[serde(default, skip_serializing_if = "Arch::is_paper")]
    pub arch: Arch,
}

impl Default for EidnParams {
    fn default() -> Self {
        EidnParams {
            embed_dim: 2,
            margin: 0.2,
            lr: 1e-3,
            epochs: 50,
            steps_per_epoch: 100,
            batch_size: 128,
            seed: 0,
            augment: Augment::None,
            arch: Arch::default(),
        }
    }
}

/// Parameters that passed [`EidnParams::check`].
#[derive(Clone, Debug, PartialEq)]
pub struct EidnValidParams(EidnParams);

/// Sane bounds, checked before anything is allocated: past them a run is a typo (an lr of
/// 1e30 trains to chance without a word; 2^64 epochs overflow the loss log).
pub const MAX_STEPS: usize = 100_000_000;
pub const MAX_BATCH_SIZE: usize = 65_536;
pub const MAX_EMBED_DIM: usize = 4_096;
pub const MAX_LR: f64 = 1.0;
pub const MAX_MARGIN: f64 = 1_000.0;
/// A training step that would need more memory than this is refused up front.
pub const MAX_STEP_BYTES: u64 = 16 << 30;

impl EidnParams {
    pub fn check(self) -> Result<EidnValidParams, ModelError> {
        let bad = |m: String| Err(ModelError::InvalidParams(m));
        if !(1..=MAX_EMBED_DIM).contains(&self.embed_dim) {
            return bad(format!(
                "embed_dim {} must be in 1..={MAX_EMBED_DIM}",
                self.embed_dim
            ));
        }
        if !(self.margin.is_finite() && self.margin > 0.0 && self.margin <= MAX_MARGIN) {
            return bad(format!(
                "margin {} must be in (0, {MAX_MARGIN}]",
                self.margin
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= MAX_LR) {
            return bad(format!("lr {} must be in (0, {MAX_LR}]", self.lr));
        }
        if self.epochs == 0 || self.steps_per_epoch == 0 || self.batch_size == 0 {
            return bad("epochs, steps_per_epoch and batch_size must be >= 1".into());
        }
        if self.batch_size > MAX_BATCH_SIZE {
            return bad(format!(
                "batch_size {} must be at most {MAX_BATCH_SIZE}",
                self.batch_size
            ));
        }
        if let Augment::Shift { max: n } | Augment::CropFlip { pad: n } = self.augment {
            if !(1..=augment::MAX_SHIFT).contains(&n) {
                return bad(format!(
                    "augmentation {} must shift by 1..={} pixels",
                    self.augment,
                    augment::MAX_SHIFT
                ));
            }
        }
        if let Err(m) = self.arch.check() {
            return bad(m);
        }
        match self.epochs.checked_mul(self.steps_per_epoch) {
            Some(steps) if steps <= MAX_STEPS => {}
            _ => {
                return bad(format!(
                    "epochs x steps_per_epoch ({} x {}) must be at most {MAX_STEPS} steps",
                    self.epochs, self.steps_per_epoch
                ))
            }
        }
        Ok(EidnValidParams(self))
    }
}

/// Everything needed to rebuild and describe a trained model; saved as `eidn.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EidnConfig {
    pub params: EidnParams,
    pub encoder: EncoderConfig,
    /// How the training pools were drawn (absent for pools built by hand).
    pub protocol: Option<OneVsRest>,
    pub n_normal: usize,
    pub n_anomalous: usize,
    pub steps: usize,
    pub train_seconds: f64,
    /// Mean loss per triplet of each epoch.
    pub epoch_loss: Vec<f64>,
    /// The training data copy's verification status ("exact", "variant jpeg-q75",
    /// "unverified", "checksum mismatch"); absent for pools built by hand.
    #[serde(default)]
    pub data: Option<String>,
    /// The score threshold `eidn train` sets (absent for the grid's encoders).
    #[serde(default)]
    pub calibration: Option<Calibration>,
    /// A user's dataset as declared when the model was trained, so that `evaluate` finds
    /// it again (absent for the built-in datasets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<crate::data::catalog::DatasetSpec>,
}

/// A score threshold calibrated on the normal training images: a new image scoring above
/// it is called anomalous. The training normals' score quantiles are kept so that another
/// false-positive rate can be chosen at scoring time without the training data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The target false-positive rate on the normal training images, and its threshold.
    pub fpr: f64,
    pub threshold: f64,
    /// Scores of the normal training images at quantiles 0, 1/1000, ..., 1.
    pub quantiles: Vec<f64>,
}

impl Calibration {
    /// From the normal training images' scores; `fpr` in (0, 1).
    pub fn new(mut normal_scores: Vec<f64>, fpr: f64) -> Result<Calibration, ModelError> {
        check_fpr(fpr)?;
        if normal_scores.is_empty() || normal_scores.iter().any(|s| !s.is_finite()) {
            return Err(ModelError::InvalidParams(
                "calibration needs finite scores of at least one normal image".into(),
            ));
        }
        normal_scores.sort_by(f64::total_cmp);
        let quantiles = (0..=1000)
            .map(|i| quantile(&normal_scores, i as f64 / 1000.0))
            .collect();
        let mut c = Calibration {
            fpr,
            threshold: 0.0,
            quantiles,
        };
        c.threshold = c.threshold_at(fpr)?;
        Ok(c)
    }

    /// The score above which a fraction `fpr` of the normal training images lie.
    pub fn threshold_at(&self, fpr: f64) -> Result<f64, ModelError> {
        check_fpr(fpr)?;
        Ok(quantile(&self.quantiles, 1.0 - fpr))
    }
}

fn check_fpr(fpr: f64) -> Result<(), ModelError> {
    if fpr > 0.0 && fpr < 1.0 {
        Ok(())
    } else {
        Err(ModelError::InvalidParams(format!(
            "false-positive rate {fpr} must be in (0, 1)"
        )))
    }
}

/// The `p`-quantile of sorted values, linear between neighbours (numpy's default).
fn quantile(sorted: &[f64], p: f64) -> f64 {
    let at = p * (sorted.len() - 1) as f64;
    let (lo, frac) = (at.floor() as usize, at.fract());
    match sorted.get(lo + 1) {
        Some(&hi) => sorted[lo] + frac * (hi - sorted[lo]),
        None => sorted[lo],
    }
}

/// A trained EIDN encoder.
pub struct Eidn {
    encoder: Encoder,
    varmap: VarMap,
    device: Device,
    pub config: EidnConfig,
}

/// Options of a training run that do not change what is learned.
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    pub progress: bool,
    pub protocol: Option<OneVsRest>,
    /// Train the conv blocks with candle's own ops even on CPU (slower; the reference the
    /// fast path is checked against).
    pub reference_ops: bool,
    /// The data copy's verification status, recorded in `eidn.json`.
    pub data: Option<String>,
    /// Calibrate a score threshold at this false-positive rate on the normal training
    /// images (after training; it does not change the network).
    pub calibrate_fpr: Option<f64>,
}

impl EidnValidParams {
    pub fn params(&self) -> &EidnParams {
        &self.0
    }

    /// Trains an encoder on the two pools.
    pub fn fit(
        &self,
        pools: &Pools,
        device: &Device,
        options: &TrainOptions,
    ) -> Result<Eidn, ModelError> {
        let p = &self.0;
        let mut trainer = Trainer::with_path(self, pools, device, !options.reference_ops)?;
        let total = p.epochs * p.steps_per_epoch;
        let bar = progress_bar(options.progress, total as u64);
        let start = Instant::now();
        let mut epoch_loss = Vec::new();
        for epoch in 0..p.epochs {
            let mut sum = 0.0f64;
            for step in 0..p.steps_per_epoch {
                let global = epoch * p.steps_per_epoch + step;
                let value = trainer.step(pools).map_err(|e| {
                    bar.abandon();
                    match e {
                        ModelError::NonFiniteLoss { loss, .. } => ModelError::NonFiniteLoss {
                            step: global,
                            epoch,
                            loss,
                        },
                        e => e,
                    }
                })?;
                sum += value as f64;
                bar.inc(1);
                let rate = (global + 1) as f64 / start.elapsed().as_secs_f64();
                bar.set_message(format!(
                    "epoch {}/{} loss {:.4} {rate:.2} steps/s",
                    epoch + 1,
                    p.epochs,
                    value / p.batch_size as f32
                ));
            }
            epoch_loss.push(sum / (p.steps_per_epoch * p.batch_size) as f64);
        }
        bar.finish_and_clear();
        let Trainer {
            encoder,
            varmap,
            config: encoder_config,
            ..
        } = trainer;
        let mut model = Eidn {
            encoder,
            varmap,
            device: device.clone(),
            config: EidnConfig {
                params: p.clone(),
                encoder: encoder_config,
                protocol: options.protocol.clone(),
                n_normal: pools.normal.len(),
                n_anomalous: pools.anomalous.len(),
                steps: total,
                train_seconds: start.elapsed().as_secs_f64(),
                epoch_loss,
                data: options.data.clone(),
                calibration: None,
                dataset: None,
            },
        };
        if let Some(fpr) = options.calibrate_fpr {
            let scores = model.score(&pools.normal)?;
            model.config.calibration = Some(Calibration::new(scores, fpr)?);
        }
        Ok(model)
    }
}

/// One training run's state: the encoder, its optimiser, the sampler and reused buffers.
/// `fit` drives it; benches time [`Trainer::step`] alone.
pub struct Trainer {
    encoder: Encoder,
    varmap: VarMap,
    config: EncoderConfig,
    opt: AdamW,
    sampler: TripletSampler,
    batch: BatchBuffer,
    device: Device,
    margin: f64,
    batch_size: usize,
}

impl Trainer {
    /// A trainer on the default path (the fast conv blocks on CPU).
    pub fn new(
        params: &EidnValidParams,
        pools: &Pools,
        device: &Device,
    ) -> Result<Trainer, ModelError> {
        Self::with_path(params, pools, device, fast::enabled(device))
    }

    /// `use_fast`: whether the conv blocks use [`fast::ConvBlock`] (ignored off CPU).
    pub fn with_path(
        params: &EidnValidParams,
        pools: &Pools,
        device: &Device,
        use_fast: bool,
    ) -> Result<Trainer, ModelError> {
        let p = &params.0;
        if pools.normal.is_empty() || pools.anomalous.is_empty() {
            return Err(ModelError::InvalidParams(
                "both the normal and the anomaly pool need at least one image".into(),
            ));
        }
        let input = shape_of(&pools.normal);
        if shape_of(&pools.anomalous) != input {
            return Err(ModelError::InputShape {
                got: shape_of(&pools.anomalous),
                want: input,
            });
        }
        let config = EncoderConfig::with_arch(input, p.embed_dim, p.arch);
        // Activations, their gradients and the unrolled conv inputs: about 4 copies.
        let step_bytes = config
            .activation_values()
            .saturating_mul(2 * p.batch_size as u64)
            .saturating_mul(4 * 4);
        if step_bytes > MAX_STEP_BYTES {
            return Err(ModelError::InvalidParams(format!(
                "a training step of {} triplets of {input:?} images would need about {} GiB \
                 (limit {} GiB); lower the batch size",
                p.batch_size,
                step_bytes >> 30,
                MAX_STEP_BYTES >> 30
            )));
        }
        let varmap = VarMap::new();
        let use_fast = use_fast && fast::enabled(device);
        let encoder = Encoder::with_path(&config, &varmap, device, p.seed, use_fast)?;
        let opt = AdamW::new(
            varmap.all_vars(),
            ParamsAdamW {
                lr: p.lr,
                // candle has only AdamW: decay 0 makes it the paper's plain Adam.
                weight_decay: 0.0,
                ..ParamsAdamW::default()
            },
        )?;
        // The sampler's stream is separate from the init stream but flows from the same seed.
        let sampler = TripletSampler::new(
            pools.normal.len(),
            pools.anomalous.len(),
            p.seed.wrapping_add(0x9E37_79B9_7F4A_7C15),
        );
        Ok(Trainer {
            encoder,
            varmap,
            config,
            opt,
            sampler,
            batch: BatchBuffer::new(p.batch_size, input, p.embed_dim, p.augment, p.seed),
            device: device.clone(),
            margin: p.margin,
            batch_size: p.batch_size,
        })
    }

    /// Samples a batch of triplets, takes one optimiser step, returns the batch's loss (a
    /// sum over its triplets). A non-finite loss is an error and no step is taken.
    pub fn step(&mut self, pools: &Pools) -> Result<f32, ModelError> {
        let m = self.batch_size;
        let triplets = self.sampler.sample(m);
        let (images, anchors, positives, negatives) =
            self.batch.fill(&triplets, pools, &self.device)?;
        // Each distinct image is embedded once; the triplets gather their rows (the gather's
        // backward sums the gradients of repeated picks, so the step is the same).
        let z = self.encoder.forward(&images)?;
        let loss = triplet_loss(
            &anchors,
            &z.index_select(&positives, 0)?,
            &z.index_select(&negatives, 0)?,
            self.margin,
        )?;
        let value = loss.to_scalar::<f32>()?;
        // The hinge's ReLU can turn NaN embeddings into a finite loss, so check them too.
        let z_sum = z.sum_all()?.to_scalar::<f32>()?;
        if !value.is_finite() || !z_sum.is_finite() {
            return Err(ModelError::NonFiniteLoss {
                step: 0,
                epoch: 0,
                loss: value,
            });
        }
        self.opt.backward_step(&loss)?;
        Ok(value)
    }
}

fn shape_of(set: &ImageSet) -> [usize; 3] {
    [set.channels, set.height, set.width]
}

/// Reused host buffers for one step: the distinct images its triplets pick (at 1 %
/// anomalies, 128 anomaly picks from a pool of ~60 images repeat most of them), the anchors,
/// and each positive's and negative's row among the distinct images.
struct BatchBuffer {
    images: Vec<f32>,
    anchors: Vec<f32>,
    rows: HashMap<Pick, u32>,
    positives: Vec<u32>,
    negatives: Vec<u32>,
    input: [usize; 3],
    embed_dim: usize,
    augment: Augment,
    /// Augmentation draws: a stream of its own, from the run's seed.
    rng: Xoshiro256PlusPlus,
}

impl BatchBuffer {
    fn new(m: usize, input: [usize; 3], embed_dim: usize, augment: Augment, seed: u64) -> Self {
        let image_len = input.iter().product::<usize>();
        BatchBuffer {
            images: Vec::with_capacity(2 * m * image_len),
            anchors: vec![0.0; m * embed_dim],
            rows: HashMap::with_capacity(2 * m),
            positives: Vec::with_capacity(m),
            negatives: Vec::with_capacity(m),
            input,
            embed_dim,
            augment,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed ^ 0xA5A5_5A5A_C3C3_3C3C),
        }
    }

    /// (distinct images, anchors, positive rows, negative rows) as tensors on `device`.
    fn fill(
        &mut self,
        t: &TripletBatch,
        pools: &Pools,
        device: &Device,
    ) -> candle_core::Result<(Tensor, Tensor, Tensor, Tensor)> {
        let image_len = self.input.iter().product::<usize>();
        self.rows.clear();
        self.images.clear();
        self.positives.clear();
        self.negatives.clear();
        for (picks, rows) in [
            (&t.positives, &mut self.positives),
            (&t.negatives, &mut self.negatives),
        ] {
            for &pick in picks {
                let next = self.rows.len() as u32;
                let (input, augment, rng) = (self.input, self.augment, &mut self.rng);
                let row = *self.rows.entry(pick).or_insert_with(|| {
                    let pool = if pick.anomalous {
                        &pools.anomalous
                    } else {
                        &pools.normal
                    };
                    let start = self.images.len();
                    self.images.resize(start + image_len, 0.0);
                    augment.apply(
                        pool.image(pick.index),
                        input,
                        rng,
                        &mut self.images[start..],
                    );
                    next
                });
                rows.push(row);
            }
        }
        for (a, out) in t
            .anchor_anomalous
            .iter()
            .zip(self.anchors.chunks_exact_mut(self.embed_dim))
        {
            out.fill(if *a { 1.0 } else { 0.0 });
        }
        let [c, h, w] = self.input;
        let n = self.rows.len();
        let m = self.positives.len();
        let images = Tensor::from_slice(&self.images, (n, c, h, w), device)?;
        let anchors = Tensor::from_slice(&self.anchors, (m, self.embed_dim), device)?;
        let positives = Tensor::from_slice(&self.positives, m, device)?;
        let negatives = Tensor::from_slice(&self.negatives, m, device)?;
        Ok((images, anchors, positives, negatives))
    }
}

fn progress_bar(visible: bool, total: u64) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("[{elapsed_precise}] [{bar:30}] {pos}/{len} {msg} eta {eta}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar
}

/// Images per forward pass when embedding a whole set (bounds memory, not results).
const EMBED_CHUNK: usize = 1024;

impl Eidn {
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// f(x) for every image: `len x embed_dim` values, row-major.
    pub fn embed(&self, images: &ImageSet) -> Result<Vec<f32>, ModelError> {
        let want = self.config.encoder.input;
        if shape_of(images) != want {
            return Err(ModelError::InputShape {
                got: shape_of(images),
                want,
            });
        }
        let [c, h, w] = want;
        let image_len = images.image_len();
        let mut out = Vec::with_capacity(images.len() * self.config.encoder.embed_dim);
        let mut buf = Vec::new();
        for start in (0..images.len()).step_by(EMBED_CHUNK) {
            let n = EMBED_CHUNK.min(images.len() - start);
            buf.resize(n * image_len, 0.0);
            for (i, dst) in buf.chunks_exact_mut(image_len).enumerate() {
                images.image_f32_into(start + i, dst);
            }
            let x = Tensor::from_slice(&buf, (n, c, h, w), &self.device)?;
            let z = self.encoder.forward(&x)?.detach();
            out.extend(z.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }

    /// Anomaly scores: Euclidean distance of f(x) from the origin.
    pub fn score(&self, images: &ImageSet) -> Result<Vec<f64>, ModelError> {
        Ok(row_norms(
            &self.embed(images)?,
            self.config.encoder.embed_dim,
        ))
    }

    /// Writes `model.safetensors` and `eidn.json` into `dir`, each through a temporary file
    /// and a rename.
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        save_model(
            dir,
            WEIGHTS_FILE,
            |tmp| self.varmap.save(tmp),
            CONFIG_FILE,
            &self.config,
        )
    }

    /// Loads a model saved by [`Eidn::save`] onto `device`.
    pub fn load(dir: &Path, device: &Device) -> Result<Eidn, ModelError> {
        let config_path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&config_path).map_err(|error| ModelError::Io {
            path: config_path.clone(),
            error,
        })?;
        let config: EidnConfig =
            serde_json::from_str(&text).map_err(|e| ModelError::BadModelFile {
                path: config_path.clone(),
                message: e.to_string(),
            })?;
        let mut varmap = VarMap::new();
        let encoder = Encoder::new(&config.encoder, &varmap, device, 0)?;
        let weights = dir.join(WEIGHTS_FILE);
        varmap
            .load(&weights)
            .map_err(|e| ModelError::BadModelFile {
                path: weights.clone(),
                message: e.to_string(),
            })?;
        Ok(Eidn {
            encoder,
            varmap,
            device: device.clone(),
            config,
        })
    }
}

/// For tests of a fast path against candle's ops: the largest absolute difference between
/// `a` and `b`, and the largest absolute entry of `b`.
#[cfg(test)]
pub(crate) fn max_gap(a: &Tensor, b: &Tensor) -> (f32, f32) {
    let max = |t: Tensor| {
        t.abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    (max((a - b).unwrap()), max(b.clone()))
}

/// Euclidean norm of each `dim`-long row of `z`.
pub(crate) fn row_norms(z: &[f32], dim: usize) -> Vec<f64> {
    z.chunks_exact(dim)
        .map(|v| v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt())
        .collect()
}

/// Writes a model's weights (by `write_weights`) and its JSON config into `dir`, each through
/// a temporary file and a rename, so a crash never leaves half a model.
pub(crate) fn save_model<C: Serialize>(
    dir: &Path,
    weights_file: &str,
    write_weights: impl FnOnce(&Path) -> candle_core::Result<()>,
    config_file: &str,
    config: &C,
) -> Result<(), ModelError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| ModelError::Io { path, error }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let weights = dir.join(weights_file);
    let tmp = dir.join(format!(".{weights_file}.part"));
    write_weights(&tmp)?;
    std::fs::rename(&tmp, &weights).map_err(io(&weights))?;
    let path = dir.join(config_file);
    let tmp = dir.join(format!(".{config_file}.part"));
    let json = serde_json::to_vec_pretty(config).expect("config serialises");
    std::fs::write(&tmp, json).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(())
}

/// `cpu`, or `cuda` / `cuda:N` (needs the `cuda` feature).
pub fn parse_device(name: &str) -> Result<Device, ModelError> {
    match name {
        "cpu" => Ok(Device::Cpu),
        _ => {
            let ordinal = match name.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| ModelError::InvalidParams(format!("bad device {name:?}")))?,
                None => {
                    return Err(ModelError::InvalidParams(format!(
                        "unknown device {name:?} (cpu, cuda, cuda:N)"
                    )))
                }
            };
            Ok(Device::new_cuda(ordinal)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synthetic(n: usize, salt: usize) -> ImageSet {
        ImageSet::synthetic(n, [1, 28, 28], salt)
    }

    /// Issue 14 item 1: embedding each distinct image once and gathering gives the loss and
    /// gradients of embedding all 2m picks (here 5 anomalies, so most picks repeat).
    #[test]
    fn distinct_images_once_is_the_same_step() {
        let pools = Pools {
            normal: synthetic(300, 1),
            anomalous: synthetic(5, 2),
        };
        let params = EidnParams {
            batch_size: 32,
            ..EidnParams::default()
        }
        .check()
        .unwrap();
        for fast in [true, false] {
            let mut t = Trainer::with_path(&params, &pools, &Device::Cpu, fast).unwrap();
            let triplets = t.sampler.sample(32);
            let (images, anchors, pos, neg) =
                t.batch.fill(&triplets, &pools, &Device::Cpu).unwrap();
            assert!(
                images.dim(0).unwrap() < 64 - 20,
                "picks repeat: {:?}",
                images.shape()
            );
            let z = t.encoder.forward(&images).unwrap();
            let deduped = triplet_loss(
                &anchors,
                &z.index_select(&pos, 0).unwrap(),
                &z.index_select(&neg, 0).unwrap(),
                0.2,
            )
            .unwrap();
            // The old way: every pick embedded, positives then negatives.
            let mut all = Vec::new();
            for pick in triplets.positives.iter().chain(&triplets.negatives) {
                let pool = if pick.anomalous {
                    &pools.anomalous
                } else {
                    &pools.normal
                };
                let mut img = vec![0.0; 784];
                pool.image_f32_into(pick.index, &mut img);
                all.extend(img);
            }
            let x = Tensor::from_slice(&all, (64, 1, 28, 28), &Device::Cpu).unwrap();
            let z_all = t.encoder.forward(&x).unwrap();
            let plain = triplet_loss(
                &anchors,
                &z_all.narrow(0, 0, 32).unwrap(),
                &z_all.narrow(0, 32, 32).unwrap(),
                0.2,
            )
            .unwrap();
            let (a, b) = (
                deduped.to_scalar::<f32>().unwrap(),
                plain.to_scalar::<f32>().unwrap(),
            );
            assert!(b > 0.0, "a zero loss would compare zero gradients");
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "loss {a} vs {b}");
            let (ga, gb) = (deduped.backward().unwrap(), plain.backward().unwrap());
            for var in t.varmap.all_vars() {
                let (d, s) = max_gap(ga.get(&var).unwrap(), gb.get(&var).unwrap());
                assert!(
                    d <= 1e-4 * s.max(1e-6),
                    "fast {fast}: gradient differs by {d} (max {s})"
                );
            }
        }
    }

    /// numpy: np.quantile(np.arange(1, 101), [0.99, 0.5, 0.0]) = [99.01, 50.5, 1.0].
    #[test]
    fn calibration_is_numpy_linear_quantile() {
        let scores: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let c = Calibration::new(scores, 0.01).unwrap();
        assert!((c.threshold - 99.01).abs() < 1e-9, "{}", c.threshold);
        assert!((c.threshold_at(0.5).unwrap() - 50.5).abs() < 1e-9);
        assert_eq!(c.quantiles[0], 1.0);
        assert_eq!(c.quantiles[1000], 100.0);
        for bad in [0.0, 1.0, f64::NAN, -0.5] {
            assert!(c.threshold_at(bad).is_err(), "{bad}");
        }
        assert!(Calibration::new(vec![], 0.01).is_err());
        assert!(Calibration::new(vec![f64::NAN], 0.01).is_err());
    }
}
