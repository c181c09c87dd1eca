//! Heads: small networks trained on frozen pretrained features (standardised by the caller)
//! with the normal training images and a handful of labelled anomalies. Each is a method of
//! the field's few-label protocols with its own loss:
//!
//! - [`HeadKind::Devnet`]: DevNet (Pang, Shen and van den Hengel, KDD 2019), a scoring MLP
//!   (one hidden layer of 20) trained with the deviation loss against an N(0, 1) reference
//!   score, confidence margin 5, batches half normal and half labelled anomalies, RMSprop at
//!   1e-3 with gradients clipped to norm 1, L2 0.01 on the hidden layer, 50 epochs of 20
//!   batches of 512: the authors' published code (`devnet.py`, `dev_network_s`).
//! - [`HeadKind::DeepSad`]: Deep SAD's objective (the LeNet's, `model::deep_sad`) on a
//!   bias-free MLP, centre the mean initial output of the normal images, Adam with L2 1e-6.
//! - [`HeadKind::Eidn`]: the paper's refined triplet loss on an MLP to R^l; the score is the
//!   distance from the origin. On frozen features its origin distance ranks the *known*
//!   anomaly type only: the hinge reaches zero (the loss's tail is 0) once every normal is
//!   closer to the origin than the anomalies by the margin, so nothing pulls the normals to
//!   the origin, and the anchor-1 triplets push them away from the ones-vector, past the
//!   origin (synthetic 64-d data, k = 5: normals at |z| 0.27-0.66 with mean (-0.46, -0.44)
//!   at margin 2). Anomalies of another type land near the MLP's untrained output, which can
//!   be nearer the origin than the normals: below-chance AUCs in `reports/few_label`.

mod mlp;
mod train;

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

pub use mlp::Mlp;

use super::ModelError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadKind {
    Devnet,
    DeepSad,
    Eidn,
}

impl HeadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HeadKind::Devnet => "devnet",
            HeadKind::DeepSad => "deep_sad",
            HeadKind::Eidn => "eidn",
        }
    }
}

/// Checked head settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadValidParams {
    pub kind: HeadKind,
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
    /// Output width: 1 for DevNet's score, the embedding's dimension otherwise.
    pub out: usize,
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    /// DevNet: L2 on the hidden layer's weight (a loss term); Deep SAD: Adam's coupled weight
    /// decay; EIDN: unused (0).
    pub l2: f64,
    /// DevNet's confidence margin, EIDN's triplet margin alpha, Deep SAD's eta.
    pub margin: f64,
    pub seed: u64,
}

crate::checked_params!(HeadParams, HeadValidParams, ModelError);

impl HeadParams {
    /// The published settings of each head (see the module's notes).
    pub fn new(kind: HeadKind, seed: u64) -> Self {
        let p = match kind {
            HeadKind::Devnet => HeadValidParams {
                kind,
                hidden: vec![20],
                out: 1,
                steps: 1000,
                batch: 512,
                lr: 1e-3,
                l2: 0.01,
                margin: 5.0,
                seed,
            },
            HeadKind::DeepSad => HeadValidParams {
                kind,
                hidden: vec![128],
                out: 32,
                steps: 1000,
                batch: 128,
                lr: 1e-3,
                l2: 1e-6,
                margin: 1.0,
                seed,
            },
            HeadKind::Eidn => HeadValidParams {
                kind,
                hidden: vec![128],
                out: 2,
                steps: 1000,
                batch: 128,
                lr: 1e-3,
                l2: 0.0,
                margin: 0.2,
                seed,
            },
        };
        HeadParams(p)
    }

    pub fn steps(mut self, steps: usize) -> Self {
        self.0.steps = steps;
        self
    }

    pub fn hidden(mut self, hidden: Vec<usize>) -> Self {
        self.0.hidden = hidden;
        self
    }
}

impl HeadValidParams {
    pub(crate) fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| {
            Err(ModelError::InvalidParams(format!(
                "{} head: {m}",
                self.kind.as_str()
            )))
        };
        if self.hidden.iter().any(|&h| h == 0 || h > 8192) {
            return bad(format!("hidden widths {:?} must be 1..=8192", self.hidden));
        }
        if self.out == 0 || self.out > 1024 || (self.kind == HeadKind::Devnet && self.out != 1) {
            return bad(format!("output width {} (DevNet scores: 1)", self.out));
        }
        if self.steps == 0 || self.batch == 0 {
            return bad("steps and batch must be > 0".into());
        }
        let finite = self.lr.is_finite() && self.l2.is_finite();
        if !(finite && self.lr > 0.0 && self.l2 >= 0.0) {
            return bad(format!(
                "lr {} must be > 0 and l2 {} >= 0",
                self.lr, self.l2
            ));
        }
        if !(self.margin > 0.0 && self.margin.is_finite()) {
            return bad(format!("margin {} must be > 0", self.margin));
        }
        Ok(())
    }

    /// Layer sizes from `dim` input features.
    fn sizes(&self, dim: usize) -> Vec<usize> {
        std::iter::once(dim)
            .chain(self.hidden.iter().copied())
            .chain(std::iter::once(self.out))
            .collect()
    }

    /// Deep SAD's network has no biases (a bias lets it map everything onto its centre).
    fn bias(&self) -> bool {
        self.kind != HeadKind::DeepSad
    }

    /// Trains on the (standardised) features of the normal images `x0` and of the labelled
    /// anomalies `x1`. Every draw flows from `seed`; the result is deterministic on a build.
    pub fn fit(&self, x0: &Array2<f64>, x1: &Array2<f64>) -> Result<FittedHead, ModelError> {
        train::fit(self, x0, x1)
    }
}

/// A trained head.
pub struct FittedHead {
    pub params: HeadValidParams,
    pub dim: usize,
    mlp: Mlp,
    /// Deep SAD's centre c (empty for the others).
    pub centre: Vec<f32>,
    /// The loss over the last tenth of the steps, for the record's notes.
    pub final_loss: f32,
}

impl FittedHead {
    /// The embedding of features `x`: DevNet's softplus(score) (positive, and ranked as the
    /// score), Deep SAD's `phi(x) - c`, EIDN's f(x). Its distance from the origin is the
    /// head's anomaly score.
    pub fn embed(&self, x: &Array2<f64>) -> Result<Array2<f64>, ModelError> {
        let (n, d) = x.dim();
        if d != self.dim {
            return Err(ModelError::InvalidParams(format!(
                "features have {d} values, the head was trained on {}",
                self.dim
            )));
        }
        let mut out = Vec::with_capacity(n * self.params.out);
        let rows: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        for chunk in rows.chunks(4096 * d) {
            let t = Tensor::from_slice(chunk, (chunk.len() / d, d), &Device::Cpu)?;
            let y = self.mlp.forward(&t)?.flatten_all()?.to_vec1::<f32>()?;
            out.extend(y);
        }
        let k = self.params.out;
        let values: Vec<f64> = match self.params.kind {
            HeadKind::Devnet => out
                .iter()
                .map(|&s| f64::from(s).max(0.0) + (-f64::from(s).abs()).exp().ln_1p())
                .collect(),
            HeadKind::DeepSad => out
                .chunks(k)
                .flat_map(|z| z.iter().zip(&self.centre).map(|(a, c)| f64::from(a - c)))
                .collect(),
            HeadKind::Eidn => out.iter().map(|&v| f64::from(v)).collect(),
        };
        Ok(Array2::from_shape_vec((n, k), values).expect("n x out"))
    }

    /// The weights (and Deep SAD's centre as `centre`) for safetensors.
    pub fn tensors(&self) -> Result<HashMap<String, Tensor>, ModelError> {
        let mut map = self.mlp.tensors();
        if !self.centre.is_empty() {
            map.insert(
                "centre".into(),
                Tensor::from_slice(&self.centre, self.centre.len(), &Device::Cpu)?,
            );
        }
        Ok(map)
    }

    /// The head `tensors` wrote, for `params` on `dim` features.
    pub fn from_tensors(
        params: HeadValidParams,
        dim: usize,
        map: &HashMap<String, Tensor>,
    ) -> Result<FittedHead, String> {
        params.validate().map_err(|e| e.to_string())?;
        let mlp = Mlp::from_tensors(map, &params.sizes(dim), params.bias())?;
        let centre = match (params.kind, map.get("centre")) {
            (HeadKind::DeepSad, Some(c)) if c.dims() == [params.out] => {
                c.to_vec1::<f32>().map_err(|e| e.to_string())?
            }
            (HeadKind::DeepSad, _) => return Err(format!("no centre of {} values", params.out)),
            _ => Vec::new(),
        };
        Ok(FittedHead {
            params,
            dim,
            mlp,
            centre,
            final_loss: f32::NAN,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use linfa::ParamGuard;
    use rand::{Rng, SeedableRng};

    /// Normal features around 0, anomalies shifted along the first 4 of 16 dimensions.
    fn data(n: usize, shift: f64, seed: u64) -> Array2<f64> {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
        Array2::from_shape_fn((n, 16), |(_, j)| {
            rng.gen_range(-1.0..1.0) + if j < 4 { shift } else { 0.0 }
        })
    }

    fn norms(z: &Array2<f64>) -> Vec<f64> {
        z.rows().into_iter().map(|r| r.dot(&r).sqrt()).collect()
    }

    #[test]
    fn every_head_learns_the_labelled_anomalies_and_is_deterministic() {
        let (x0, x1) = (data(300, 0.0, 1), data(10, 2.0, 2));
        let (t0, t1) = (data(100, 0.0, 3), data(100, 2.0, 4));
        for kind in [HeadKind::Devnet, HeadKind::DeepSad, HeadKind::Eidn] {
            let p = HeadParams::new(kind, 7).steps(150).check().unwrap();
            let head = p.fit(&x0, &x1).unwrap();
            let (s0, s1) = (
                norms(&head.embed(&t0).unwrap()),
                norms(&head.embed(&t1).unwrap()),
            );
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            assert!(
                mean(&s1) > mean(&s0) + 0.1,
                "{kind:?}: {} vs {}",
                mean(&s1),
                mean(&s0)
            );
            // The same seed trains the same head; its tensors load back to the same scores.
            let again = p.fit(&x0, &x1).unwrap();
            assert_eq!(
                again.embed(&t1).unwrap(),
                head.embed(&t1).unwrap(),
                "{kind:?}"
            );
            let loaded = FittedHead::from_tensors(p.clone(), 16, &head.tensors().unwrap()).unwrap();
            assert_eq!(
                loaded.embed(&t1).unwrap(),
                head.embed(&t1).unwrap(),
                "{kind:?}"
            );
        }
        let none = Array2::<f64>::zeros((0, 16));
        let err = HeadParams::new(HeadKind::Devnet, 0)
            .check()
            .unwrap()
            .fit(&x0, &none);
        assert!(err.is_err());
        assert!(HeadParams::new(HeadKind::Devnet, 0)
            .hidden(vec![0])
            .check()
            .is_err());
    }
}
