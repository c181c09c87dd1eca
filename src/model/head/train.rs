//! The three heads' training loops: one batch sampler and one optimiser per head, as their
//! authors train them.

use candle_core::{Device, Tensor, Var};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::{FittedHead, HeadKind, HeadValidParams, Mlp};
use crate::model::deep_sad::{sad_objective, Adam, CENTER_EPS};
use crate::model::{triplet_loss, ModelError, TripletSampler};

/// DevNet's reference scores: l = 5,000 draws of N(0, 1) (their Algorithm 1).
const REFERENCE_DRAWS: usize = 5000;

fn tensor(x: &Array2<f64>) -> candle_core::Result<Tensor> {
    let values: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    Tensor::from_vec(values, x.dim(), &Device::Cpu)
}

fn rows(x: &Tensor, idx: &[u32]) -> candle_core::Result<Tensor> {
    x.index_select(&Tensor::from_slice(idx, idx.len(), &Device::Cpu)?, 0)
}

/// Keras' RMSprop (rho 0.9, epsilon 1e-7) with `clipnorm`: each gradient scaled to norm at
/// most 1 before the update, as DevNet's `RMSprop(clipnorm=1.)`.
struct RmsProp {
    vars: Vec<Var>,
    acc: Vec<Tensor>,
    lr: f64,
}

impl RmsProp {
    fn new(vars: Vec<Var>, lr: f64) -> candle_core::Result<Self> {
        let acc = vars
            .iter()
            .map(|v| v.as_tensor().zeros_like())
            .collect::<candle_core::Result<_>>()?;
        Ok(RmsProp { vars, acc, lr })
    }

    fn step(&mut self, loss: &Tensor) -> candle_core::Result<()> {
        let grads = loss.backward()?;
        for (v, a) in self.vars.iter().zip(&mut self.acc) {
            let Some(g) = grads.get(v.as_tensor()) else {
                continue;
            };
            let norm = g.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?;
            let g = if norm > 1.0 {
                (g / f64::from(norm))?
            } else {
                g.clone()
            };
            *a = ((&*a * 0.9)? + (g.sqr()? * 0.1)?)?;
            let update = (g / (a.sqrt()? + 1e-7)?)?;
            v.set(&(v.as_tensor() - (update * self.lr)?)?)?;
        }
        Ok(())
    }
}

fn normal_draws(n: usize, rng: &mut Xoshiro256PlusPlus) -> Vec<f64> {
    (0..n)
        .map(|_| {
            // Box-Muller.
            let (u, v): (f64, f64) = (rng.gen_range(f64::EPSILON..1.0), rng.gen());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        })
        .collect()
}

pub(super) fn fit(
    p: &HeadValidParams,
    x0: &Array2<f64>,
    x1: &Array2<f64>,
) -> Result<FittedHead, ModelError> {
    let dim = x0.ncols();
    if x0.nrows() == 0 || x1.ncols() != dim {
        return Err(ModelError::InvalidParams(format!(
            "{} head: {} normal feature rows, anomalies of {} values for {dim}",
            p.kind.as_str(),
            x0.nrows(),
            x1.ncols()
        )));
    }
    if x1.nrows() == 0 {
        return Err(ModelError::InvalidParams(format!(
            "the {} head needs labelled anomalies (the protocol gives none)",
            p.kind.as_str()
        )));
    }
    let device = Device::Cpu;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(p.seed ^ 0x4845_4144_0000_0001);
    let mlp = Mlp::new(&p.sizes(dim), p.bias(), &mut rng, &device)?;
    let (t0, t1) = (tensor(x0)?, tensor(x1)?);
    let (n0, n1) = (x0.nrows() as u32, x1.nrows() as u32);
    let mut losses = Vec::with_capacity(p.steps);
    let mut centre = Vec::new();
    match p.kind {
        HeadKind::Devnet => {
            let reference = normal_draws(REFERENCE_DRAWS, &mut rng);
            let mean = reference.iter().sum::<f64>() / REFERENCE_DRAWS as f64;
            let std = (reference.iter().map(|r| (r - mean).powi(2)).sum::<f64>()
                / (REFERENCE_DRAWS - 1) as f64)
                .sqrt();
            let mut opt = RmsProp::new(mlp.vars(), p.lr)?;
            // Even positions normal, odd ones labelled anomalies, each drawn with replacement.
            let half = p.batch / 2;
            let y: Vec<f32> = (0..2 * half).map(|i| (i >= half) as u8 as f32).collect();
            let y = Tensor::from_vec(y, 2 * half, &device)?;
            for step in 0..p.steps {
                let i0: Vec<u32> = (0..half).map(|_| rng.gen_range(0..n0)).collect();
                let i1: Vec<u32> = (0..half).map(|_| rng.gen_range(0..n1)).collect();
                let x = Tensor::cat(&[rows(&t0, &i0)?, rows(&t1, &i1)?], 0)?;
                let dev = ((mlp.forward(&x)?.squeeze(1)? - mean)? / std)?;
                let inlier = dev.abs()?;
                let outlier = dev.affine(-1.0, p.margin)?.relu()?;
                let per = ((inlier * y.affine(-1.0, 1.0)?)? + (outlier * &y)?)?;
                let penalty = (mlp.first_weight().as_tensor().sqr()?.sum_all()? * p.l2)?;
                let loss = (per.mean(0)? + penalty)?;
                losses.push(finite(loss.to_scalar::<f32>()?, step)?);
                opt.step(&loss)?;
            }
        }
        HeadKind::DeepSad => {
            let z = mlp.forward(&t0)?.mean(0)?.to_vec1::<f32>()?;
            centre = z
                .into_iter()
                .map(|c| match c {
                    c if c.abs() < CENTER_EPS && c < 0.0 => -CENTER_EPS,
                    c if c.abs() < CENTER_EPS => CENTER_EPS,
                    c => c,
                })
                .collect();
            let c = Tensor::from_slice(&centre, centre.len(), &device)?;
            let mut adam = Adam::new(mlp.vars(), p.lr, p.l2)?;
            let all = Tensor::cat(&[&t0, &t1], 0)?;
            for step in 0..p.steps {
                // Uniform over the training set, as their data loader: the labelled
                // anomalies come in their own proportion.
                let idx: Vec<u32> = (0..p.batch).map(|_| rng.gen_range(0..n0 + n1)).collect();
                let mask: Vec<f32> = idx.iter().map(|&i| (i >= n0) as u8 as f32).collect();
                let mask = Tensor::from_vec(mask, idx.len(), &device)?;
                let z = mlp.forward(&rows(&all, &idx)?)?;
                let loss = sad_objective(&z, &mask, &c, p.margin)?;
                losses.push(finite(loss.to_scalar::<f32>()?, step)?);
                adam.step(&loss)?;
            }
        }
        HeadKind::Eidn => {
            let mut sampler = TripletSampler::new(n0 as usize, n1 as usize, rng.gen());
            let mut adam = Adam::new(mlp.vars(), p.lr, 0.0)?;
            let all = Tensor::cat(&[&t0, &t1], 0)?;
            let ones = Tensor::ones((1, p.out), candle_core::DType::F32, &device)?;
            for step in 0..p.steps {
                let b = sampler.sample(p.batch);
                // Rows of normal ++ anomalous.
                let pick = |picks: &[crate::model::Pick]| -> candle_core::Result<Tensor> {
                    let idx: Vec<u32> = picks
                        .iter()
                        .map(|q| q.index as u32 + if q.anomalous { n0 } else { 0 })
                        .collect();
                    rows(&all, &idx)
                };
                let anchors: Vec<f32> =
                    b.anchor_anomalous.iter().map(|&a| a as u8 as f32).collect();
                let anchors =
                    Tensor::from_vec(anchors, (p.batch, 1), &device)?.broadcast_mul(&ones)?;
                let fp = mlp.forward(&pick(&b.positives)?)?;
                let fn_ = mlp.forward(&pick(&b.negatives)?)?;
                let loss = triplet_loss(&anchors, &fp, &fn_, p.margin)?;
                losses.push(finite(loss.to_scalar::<f32>()?, step)?);
                adam.step(&loss)?;
            }
        }
    }
    let tail = &losses[losses.len() - (losses.len() / 10).max(1)..];
    let final_loss = tail.iter().sum::<f32>() / tail.len() as f32;
    Ok(FittedHead {
        params: p.clone(),
        dim,
        mlp,
        centre,
        final_loss,
    })
}

fn finite(loss: f32, step: usize) -> Result<f32, ModelError> {
    if loss.is_finite() {
        Ok(loss)
    } else {
        Err(ModelError::NonFiniteLoss {
            step,
            epoch: 0,
            loss,
        })
    }
}
