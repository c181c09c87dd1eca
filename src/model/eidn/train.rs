//! Training EIDN: [`EidnValidParams::fit`] drives a [`Trainer`] for the run's steps.

use std::time::Instant;

use candle_core::{Device, Module};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};

use super::batch::BatchBuffer;
use super::encoder::{Encoder, EncoderConfig};
use super::loss::triplet_loss;
use super::model::{shape_of, Eidn, EidnConfig};
use super::params::{EidnValidParams, MAX_STEP_BYTES};
use super::sampler::TripletSampler;
use crate::data::protocol::Pools;
use crate::model::conv;
use crate::model::score::check_not_collapsed;
use crate::model::training::{progress_bar, TrainOptions};
use crate::model::ModelError;

/// A mean loss per triplet this many times (1 + margin) means training diverged: a fresh
/// network's loss is about the margin plus the squared distance between its outputs and the
/// targets, which start within a few units of each other.
const LOSS_BLOWUP: f64 = 1e3;

impl EidnValidParams {
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
        let model = Eidn {
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
                data_fingerprint: None,
                build: Some(crate::build_info::Build::current()),
            },
        };
        // A diverged network is an error, never a result.
        let mean_loss = model.config.epoch_loss.last().copied().unwrap_or(0.0);
        if mean_loss.is_nan() || mean_loss > LOSS_BLOWUP * (1.0 + p.margin) {
            return Err(ModelError::Collapsed {
                reason: format!("the last epoch's mean loss per triplet is {mean_loss:e}"),
            });
        }
        let mut scores = model.score(&pools.normal)?;
        scores.extend(model.score(&pools.anomalous)?);
        check_not_collapsed(&scores)?;
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
        Self::with_path(params, pools, device, conv::enabled(device))
    }

    /// `use_fast`: whether the conv blocks use [`conv::ConvBlock`] (ignored off CPU).
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
        let use_fast = use_fast && conv::enabled(device);
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

#[cfg(test)]
mod tests {
    use candle_core::Tensor;

    use super::*;
    use crate::data::ImageSet;
    use crate::model::eidn::params::EidnParams;
    use crate::model::max_gap;

    fn synthetic(n: usize, salt: usize) -> ImageSet {
        ImageSet::synthetic(n, [1, 28, 28], salt)
    }

    /// The two losses, and their gradients on every weight, are the same (and not zero).
    fn assert_same_step(t: &Trainer, loss: &Tensor, reference: &Tensor, what: &str) {
        let (a, b) = (
            loss.to_scalar::<f32>().unwrap(),
            reference.to_scalar::<f32>().unwrap(),
        );
        assert!(b > 0.0, "{what}: a zero loss would compare zero gradients");
        assert!(
            (a - b).abs() <= 1e-5 * b.abs().max(1.0),
            "{what}: loss {a} vs {b}"
        );
        let (ga, gb) = (loss.backward().unwrap(), reference.backward().unwrap());
        for var in t.varmap.all_vars() {
            let (d, s) = max_gap(ga.get(&var).unwrap(), gb.get(&var).unwrap());
            assert!(
                d <= 1e-4 * s.max(1e-6),
                "{what}: gradient differs by {d} (max {s})"
            );
        }
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
            assert_same_step(&t, &deduped, &plain, &format!("fast {fast}"));
        }
    }

    /// Issue 27 item 4: augmented, a pick repeated within the batch gets one draw per copy
    /// (not one augmentation shared by all its copies), and the step's loss and gradients are
    /// those of embedding the 2m augmented picks one by one.
    #[test]
    fn augmented_copies_are_their_own_draws_and_the_same_step() {
        use crate::model::eidn::augment::Augment;
        let pools = Pools {
            normal: synthetic(300, 1),
            anomalous: synthetic(3, 2),
        };
        let params = EidnParams {
            batch_size: 32,
            augment: Augment::Shift { max: 3 },
            ..EidnParams::default()
        }
        .check()
        .unwrap();
        let mut t = Trainer::with_path(&params, &pools, &Device::Cpu, true).unwrap();
        let triplets = t.sampler.sample(32);
        let (images, anchors, pos, neg) = t.batch.fill(&triplets, &pools, &Device::Cpu).unwrap();
        assert_eq!(images.dim(0).unwrap(), 64, "one row per pick");
        let rows = images.flatten_from(1).unwrap().to_vec2::<f32>().unwrap();
        let picks: Vec<_> = triplets
            .positives
            .iter()
            .chain(&triplets.negatives)
            .collect();
        let (mut same, mut differ) = (0, 0);
        for i in 0..64 {
            for j in i + 1..64 {
                if picks[i] == picks[j] {
                    if rows[i] == rows[j] {
                        same += 1;
                    } else {
                        differ += 1;
                    }
                }
            }
        }
        // 3 anomalies picked 32 times: many repeats; 49 shifts make equal draws rare.
        assert!(
            differ > 20 && same * 5 < differ,
            "{differ} differ, {same} same"
        );
        let z = t.encoder.forward(&images).unwrap();
        let gathered = triplet_loss(
            &anchors,
            &z.index_select(&pos, 0).unwrap(),
            &z.index_select(&neg, 0).unwrap(),
            0.2,
        )
        .unwrap();
        let plain = triplet_loss(
            &anchors,
            &z.narrow(0, 0, 32).unwrap(),
            &z.narrow(0, 32, 32).unwrap(),
            0.2,
        )
        .unwrap();
        assert_same_step(&t, &gathered, &plain, "augmented");
        // And a step trains: the loss is finite and the weights move.
        assert!(t.step(&pools).unwrap().is_finite());
    }
}
