//! Deep SAD's two training phases: autoencoder pretraining, then the hypersphere objective
//! on the pretrained encoder, each with Adam and L2 weight decay (PyTorch's `Adam(...,
//! weight_decay)` adds `wd * w` to the gradient; candle's AdamW decays decoupled, so it runs
//! with decay 0 and the term is added here).

use std::time::Instant;

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::net::sq_dist;
use super::{DeepSad, DeepSadConfig, DeepSadTrain, DeepSadValidParams, LeNet};
use crate::data::protocol::Pools;
use crate::data::ImageSet;
use crate::model::{ModelError, TrainOptions};

/// Their `eps` in `(dist + eps)^-1` and in the centre's near-zero push.
const DIST_EPS: f64 = 1e-6;
pub(crate) const CENTER_EPS: f32 = 0.1;

/// The images `idx` of `set`, scaled to [0, 1], as one `n x C x H x W` tensor.
pub(super) fn batch_tensor(
    set: &ImageSet,
    idx: &[usize],
    device: &Device,
) -> candle_core::Result<Tensor> {
    let len = set.image_len();
    let mut buf = vec![0f32; idx.len() * len];
    for (dst, &i) in buf.chunks_exact_mut(len).zip(idx) {
        set.image_f32_into(i, dst);
    }
    Tensor::from_vec(
        buf,
        (idx.len(), set.channels, set.height, set.width),
        device,
    )
}

/// The training set as Deep SAD sees it: unlabelled images (the normal pool, pollution
/// included) then the labelled anomalies (none for Deep SVDD).
struct TrainSet<'a> {
    unlabelled: &'a ImageSet,
    labelled: Option<&'a ImageSet>,
}

impl TrainSet<'_> {
    fn len(&self) -> usize {
        self.unlabelled.len() + self.labelled.map_or(0, ImageSet::len)
    }

    /// Batch `idx` (indices into unlabelled ++ labelled) and its labelled mask.
    fn batch(&self, idx: &[usize], device: &Device) -> candle_core::Result<(Tensor, Tensor)> {
        let n_u = self.unlabelled.len();
        let (c, h, w) = (
            self.unlabelled.channels,
            self.unlabelled.height,
            self.unlabelled.width,
        );
        let len = c * h * w;
        let mut buf = vec![0f32; idx.len() * len];
        let mut mask = vec![0f32; idx.len()];
        for ((dst, m), &i) in buf.chunks_exact_mut(len).zip(&mut mask).zip(idx) {
            match (i < n_u, self.labelled) {
                (true, _) => self.unlabelled.image_f32_into(i, dst),
                (false, Some(l)) => {
                    l.image_f32_into(i - n_u, dst);
                    *m = 1.0;
                }
                (false, None) => unreachable!("indices stop at the unlabelled images"),
            }
        }
        Ok((
            Tensor::from_vec(buf, (idx.len(), c, h, w), device)?,
            Tensor::from_vec(mask, idx.len(), device)?,
        ))
    }
}

/// One optimiser with PyTorch Adam's coupled L2 decay and a milestone schedule.
pub(crate) struct Adam {
    pub(crate) opt: AdamW,
    vars: Vec<Var>,
    weight_decay: f64,
}

impl Adam {
    pub(crate) fn new(vars: Vec<Var>, lr: f64, weight_decay: f64) -> candle_core::Result<Self> {
        let opt = AdamW::new(
            vars.clone(),
            ParamsAdamW {
                lr,
                weight_decay: 0.0,
                ..ParamsAdamW::default()
            },
        )?;
        Ok(Adam {
            opt,
            vars,
            weight_decay,
        })
    }

    pub(crate) fn step(&mut self, loss: &Tensor) -> candle_core::Result<()> {
        let mut grads: GradStore = loss.backward()?;
        if self.weight_decay > 0.0 {
            for v in &self.vars {
                if let Some(g) = grads.get(v.as_tensor()) {
                    let g = (g + (v.as_tensor().detach() * self.weight_decay)?)?;
                    grads.insert(v.as_tensor(), g);
                }
            }
        }
        self.opt.step(&grads)
    }
}

fn shuffled_batches(n: usize, batch: usize, rng: &mut Xoshiro256PlusPlus) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    order.chunks(batch).map(<[usize]>::to_vec).collect()
}

fn finite(value: f32, epoch: usize) -> Result<f32, ModelError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(ModelError::NonFiniteLoss {
            step: 0,
            epoch,
            loss: value,
        })
    }
}

/// One pretraining step: mean over the batch of the summed squared reconstruction error.
/// Returns the loss; a non-finite one is returned before any update.
fn ae_step(net: &LeNet, adam: &mut Adam, x: &Tensor) -> candle_core::Result<f32> {
    let back = net.decode(&net.encode(x, true)?, true)?;
    let loss = (back - x)?.sqr()?.flatten_from(1)?.sum(1)?.mean(0)?;
    let value = loss.to_scalar::<f32>()?;
    if value.is_finite() {
        adam.step(&loss)?;
    }
    Ok(value)
}

/// One Deep SAD step: `|phi(x) - c|^2` for unlabelled images, `eta / (|phi(x) - c|^2 +
/// eps)` for labelled anomalies (`labelled` is 1 for them), averaged over the batch.
fn sad_step(
    net: &LeNet,
    adam: &mut Adam,
    x: &Tensor,
    labelled: &Tensor,
    c: &Tensor,
    eta: f64,
) -> candle_core::Result<f32> {
    let loss = sad_objective(&net.encode(x, true)?, labelled, c, eta)?;
    let value = loss.to_scalar::<f32>()?;
    if value.is_finite() {
        adam.step(&loss)?;
    }
    Ok(value)
}

/// Deep SAD's objective (Ruff et al. 2020, eq. 4 without the weight decay) on embeddings
/// `z`: the mean over the batch of `|z - c|^2` (unlabelled) or `eta / (|z - c|^2 + eps)`
/// (`labelled` 1: a labelled anomaly).
pub(crate) fn sad_objective(
    z: &Tensor,
    labelled: &Tensor,
    c: &Tensor,
    eta: f64,
) -> candle_core::Result<Tensor> {
    let dist = sq_dist(z, c)?;
    let inverse = ((&dist + DIST_EPS)?.recip()? * eta)?;
    let unlabelled = labelled.affine(-1.0, 1.0)?;
    ((dist * unlabelled)? + (inverse * labelled)?)?.mean(0)
}

/// A Deep SAD training step on a fixed batch of synthetic images, for `just
/// bench-train-step` and `just bench-vs-pytorch`: the authors' network for `input`, batch
/// `batch` with one labelled anomaly in ten, Adam at their learning rate and decay.
pub struct BenchStep {
    net: LeNet,
    adam: Adam,
    x: Tensor,
    labelled: Tensor,
    c: Tensor,
}

impl BenchStep {
    pub fn new(input: [usize; 3], batch: usize, device: &Device) -> Result<Self, ModelError> {
        let t = DeepSadTrain::default();
        let net = LeNet::new(input, 0, device).map_err(ModelError::InvalidParams)?;
        let images = ImageSet::synthetic(batch, input, 1);
        let idx: Vec<usize> = (0..batch).collect();
        let mask: Vec<f32> = idx.iter().map(|i| f32::from(i % 10 == 0)).collect();
        let adam = Adam::new(net.encoder_vars(), t.lr, t.weight_decay)?;
        Ok(BenchStep {
            x: batch_tensor(&images, &idx, device)?,
            labelled: Tensor::from_vec(mask, batch, device)?,
            c: Tensor::full(0.1f32, net.kind.rep_dim(), device)?,
            net,
            adam,
        })
    }

    pub fn step(&mut self) -> Result<f32, ModelError> {
        let (net, x, labelled, c) = (&self.net, &self.x, &self.labelled, &self.c);
        Ok(sad_step(net, &mut self.adam, x, labelled, c, 1.0)?)
    }
}

impl DeepSadValidParams {
    /// Pretrains, initialises c and trains on `pools` (normal pool = the unlabelled images,
    /// anomalous pool = the labelled anomalies, ignored by Deep SVDD).
    pub fn fit(
        &self,
        pools: &Pools,
        device: &Device,
        options: &TrainOptions,
    ) -> Result<DeepSad, ModelError> {
        let p = &self.0;
        let t: &DeepSadTrain = &p.train;
        let set = TrainSet {
            unlabelled: &pools.normal,
            labelled: (p.supervised && !pools.anomalous.is_empty()).then_some(&pools.anomalous),
        };
        if pools.normal.is_empty() {
            return Err(ModelError::InvalidParams(
                "deep_sad: no unlabelled training images".into(),
            ));
        }
        let input = [
            pools.normal.channels,
            pools.normal.height,
            pools.normal.width,
        ];
        if let Some(l) = set.labelled {
            let got = [l.channels, l.height, l.width];
            if got != input {
                return Err(ModelError::InputShape { got, want: input });
            }
        }
        let net = LeNet::new(input, p.seed, device).map_err(ModelError::InvalidParams)?;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(p.seed ^ 0x5EED_DEE9_5AD0_0001);
        let start = Instant::now();

        // Phase 1: the autoencoder, mean over images of the summed squared error.
        let mut ae_loss = Vec::with_capacity(t.ae_epochs);
        let mut adam = Adam::new(net.all_vars(), t.ae_lr, t.ae_weight_decay)?;
        for epoch in 0..t.ae_epochs {
            adam.opt
                .set_learning_rate(DeepSadTrain::lr_at(t.ae_lr, &t.ae_milestones, epoch));
            let mut sum = 0.0f64;
            for idx in shuffled_batches(set.len(), t.batch_size, &mut rng) {
                let (x, _) = set.batch(&idx, device)?;
                let value = finite(ae_step(&net, &mut adam, &x)?, epoch)?;
                sum += f64::from(value) * idx.len() as f64;
            }
            ae_loss.push(sum / set.len() as f64);
        }

        // The centre: mean of phi over the training images, in evaluation mode.
        let all: Vec<usize> = (0..set.len()).collect();
        let mut center = vec![0f64; net.kind.rep_dim()];
        for idx in all.chunks(super::EMBED_CHUNK) {
            let (x, _) = set.batch(idx, device)?;
            let z = net.encode(&x, false)?.sum(0)?.to_vec1::<f32>()?;
            for (c, v) in center.iter_mut().zip(z) {
                *c += f64::from(v);
            }
        }
        let center: Vec<f32> = center
            .iter()
            .map(|&c| {
                let c = (c / set.len() as f64) as f32;
                match c {
                    c if c.abs() < CENTER_EPS && c < 0.0 => -CENTER_EPS,
                    c if c.abs() < CENTER_EPS && c > 0.0 => CENTER_EPS,
                    c => c,
                }
            })
            .collect();
        let c = Tensor::from_slice(&center, center.len(), device)?;

        // Phase 2: the Deep SAD objective on the encoder alone.
        let mut loss_log = Vec::with_capacity(t.epochs);
        let mut adam = Adam::new(net.encoder_vars(), t.lr, t.weight_decay)?;
        for epoch in 0..t.epochs {
            adam.opt
                .set_learning_rate(DeepSadTrain::lr_at(t.lr, &t.milestones, epoch));
            let mut sum = 0.0f64;
            for idx in shuffled_batches(set.len(), t.batch_size, &mut rng) {
                let (x, labelled) = set.batch(&idx, device)?;
                let value = sad_step(&net, &mut adam, &x, &labelled, &c, t.eta)?;
                sum += f64::from(finite(value, epoch)?) * idx.len() as f64;
            }
            loss_log.push(sum / set.len() as f64);
        }

        let model = DeepSad {
            net,
            center: c,
            device: device.clone(),
            config: DeepSadConfig {
                params: p.clone(),
                input,
                center,
                protocol: options.protocol.clone(),
                n_unlabelled: set.unlabelled.len(),
                n_labelled: set.labelled.map_or(0, ImageSet::len),
                ae_loss,
                loss: loss_log,
                train_seconds: start.elapsed().as_secs_f64(),
                data: options.data.clone(),
                build: Some(crate::build_info::Build::current()),
            },
        };
        // A collapsed network (every image at one distance from c) is an error, not a result.
        let mut scores = model.score(&pools.normal)?;
        scores.extend(model.score(&pools.anomalous)?);
        crate::model::score::check_not_collapsed(&scores)?;
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::deep_sad::DeepSadParams;

    /// Issue 27 item 4: the objective by hand. c = (1, 1); z = (1, 0), (0, 2), (3, 4) have
    /// squared distances 1, 2 and 13; the last two are labelled anomalies, eta = 2:
    /// (1 + 2 / (2 + 1e-6) + 2 / (13 + 1e-6)) / 3 = 0.717948...
    #[test]
    fn objective_by_hand() {
        let d = Device::Cpu;
        let z = Tensor::new(&[[1f32, 0.], [0., 2.], [3., 4.]], &d).unwrap();
        let labelled = Tensor::new(&[0f32, 1., 1.], &d).unwrap();
        let c = Tensor::new(&[1f32, 1.], &d).unwrap();
        let got = sad_objective(&z, &labelled, &c, 2.0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let want = (1.0 + 2.0 / (2.0 + 1e-6) + 2.0 / (13.0 + 1e-6)) / 3.0;
        assert!((f64::from(got) - want).abs() < 1e-6, "{got} vs {want}");
        // eta 0 and no labels: the mean squared distance (Deep SVDD's one-class objective).
        let none = Tensor::zeros(3, candle_core::DType::F32, &d).unwrap();
        let svdd = sad_objective(&z, &none, &c, 0.0).unwrap();
        assert!((svdd.to_scalar::<f32>().unwrap() - 16.0 / 3.0).abs() < 1e-5);
    }

    /// A few epochs on synthetic images: the reconstruction and the Deep SAD losses fall,
    /// the labelled anomalies end up farther from c than the unlabelled images, the same
    /// seed gives the same network, and a saved model scores as the trained one.
    #[test]
    fn trains_deterministically_and_separates_labelled_anomalies() {
        let pools = Pools {
            normal: ImageSet::synthetic(160, [1, 28, 28], 1),
            anomalous: ImageSet::synthetic(16, [1, 28, 28], 2),
        };
        let params = DeepSadParams {
            train: DeepSadTrain {
                ae_epochs: 3,
                epochs: 4,
                lr: 1e-3,
                ae_lr: 1e-3,
                milestones: vec![3],
                batch_size: 32,
                ..DeepSadTrain::default()
            },
            supervised: true,
            seed: 7,
        }
        .check()
        .unwrap();
        let dev = Device::Cpu;
        let model = params.fit(&pools, &dev, &TrainOptions::default()).unwrap();
        let cfg = &model.config;
        assert!(cfg.ae_loss[2] < cfg.ae_loss[0], "{:?}", cfg.ae_loss);
        assert!(
            cfg.center.iter().all(|c| c.abs() >= CENTER_EPS),
            "{:?}",
            cfg.center
        );
        let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
        let normal = mean(model.score(&pools.normal).unwrap());
        let anomalous = mean(model.score(&pools.anomalous).unwrap());
        assert!(
            anomalous > normal,
            "labelled {anomalous} vs unlabelled {normal}"
        );
        let again = params.fit(&pools, &dev, &TrainOptions::default()).unwrap();
        assert_eq!(again.config.center, model.config.center);
        let dir = tempfile::tempdir().unwrap();
        model.save(dir.path()).unwrap();
        let loaded = DeepSad::load(dir.path(), &dev).unwrap();
        assert_eq!(
            loaded.score(&pools.normal).unwrap(),
            model.score(&pools.normal).unwrap()
        );
        // Deep SVDD never sees the labelled anomalies.
        let svdd = DeepSadParams {
            supervised: false,
            ..params.params().clone()
        }
        .check()
        .unwrap()
        .fit(&pools, &dev, &TrainOptions::default())
        .unwrap();
        assert_eq!(svdd.config.n_labelled, 0);
    }
}
