//! Deep SAD's settings, checked once. Defaults are the authors' for MNIST and CIFAR-10
//! (lukasruff/Deep-SAD-PyTorch README and paper appendix): Adam (L2 weight decay, not
//! decoupled), batch 128; autoencoder pretraining 150 epochs at lr 1e-4 with weight decay
//! 5e-4; then 150 epochs at lr 1e-4, x0.1 from epoch 50, weight decay 5e-7; eta = 1.

use serde::{Deserialize, Serialize};

use crate::model::ModelError;

/// The training settings a profile gives (everything but the seed and the method).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeepSadTrain {
    pub ae_epochs: usize,
    pub ae_lr: f64,
    /// Epochs (0-based) from which the learning rate is multiplied by a further 0.1.
    pub ae_milestones: Vec<usize>,
    pub ae_weight_decay: f64,
    pub epochs: usize,
    pub lr: f64,
    pub milestones: Vec<usize>,
    pub weight_decay: f64,
    pub batch_size: usize,
    /// Weight of the labelled terms (the authors' eta).
    pub eta: f64,
}

impl Default for DeepSadTrain {
    fn default() -> Self {
        DeepSadTrain {
            ae_epochs: 150,
            ae_lr: 1e-4,
            ae_milestones: Vec::new(),
            ae_weight_decay: 0.5e-3,
            epochs: 150,
            lr: 1e-4,
            milestones: vec![50],
            weight_decay: 0.5e-6,
            batch_size: 128,
            eta: 1.0,
        }
    }
}

impl DeepSadTrain {
    /// Short, folder-safe summary for cell ids.
    pub fn id_suffix(&self) -> String {
        let ms = |m: &[usize]| {
            m.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("_")
        };
        format!(
            "ae{}m{}lr{}wd{}-e{}m{}lr{}wd{}-b{}-eta{}",
            self.ae_epochs,
            ms(&self.ae_milestones),
            self.ae_lr,
            self.ae_weight_decay,
            self.epochs,
            ms(&self.milestones),
            self.lr,
            self.weight_decay,
            self.batch_size,
            self.eta
        )
    }

    /// Training passes over the data (pretraining and training), for cost estimates.
    pub fn epochs_total(&self) -> usize {
        self.ae_epochs + self.epochs
    }

    /// The learning rate of epoch `epoch` under `milestones`.
    pub fn lr_at(base: f64, milestones: &[usize], epoch: usize) -> f64 {
        base * 0.1f64.powi(milestones.iter().filter(|&&m| epoch >= m).count() as i32)
    }
}

/// Everything one Deep SAD (or Deep SVDD) network's training depends on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeepSadParams {
    pub train: DeepSadTrain,
    /// false: Deep SVDD, which never sees the labelled anomalies (neither in pretraining nor
    /// in training), the unsupervised case of Deep SAD.
    pub supervised: bool,
    pub seed: u64,
}

/// Parameters that passed [`DeepSadParams::check`].
#[derive(Clone, Debug, PartialEq)]
pub struct DeepSadValidParams(pub(super) DeepSadParams);

impl DeepSadParams {
    pub fn check(self) -> Result<DeepSadValidParams, ModelError> {
        let t = &self.train;
        let bad = |m: String| Err(ModelError::InvalidParams(format!("deep_sad: {m}")));
        if t.epochs == 0 || t.epochs > 100_000 || t.ae_epochs > 100_000 {
            return bad(format!(
                "epochs {} must be 1..=100000 and ae_epochs {} at most 100000",
                t.epochs, t.ae_epochs
            ));
        }
        if !(1..=crate::model::eidn::MAX_BATCH_SIZE).contains(&t.batch_size) {
            return bad(format!("batch_size {} out of range", t.batch_size));
        }
        for (name, v) in [("lr", t.lr), ("ae_lr", t.ae_lr)] {
            if !(v.is_finite() && v > 0.0 && v <= crate::model::eidn::MAX_LR) {
                return bad(format!("{name} {v} must be in (0, 1]"));
            }
        }
        for (name, v) in [
            ("weight_decay", t.weight_decay),
            ("ae_weight_decay", t.ae_weight_decay),
        ] {
            if !(v.is_finite() && (0.0..1.0).contains(&v)) {
                return bad(format!("{name} {v} must be in [0, 1)"));
            }
        }
        if !(t.eta.is_finite() && t.eta > 0.0) {
            return bad(format!("eta {} must be > 0", t.eta));
        }
        for (name, m) in [
            ("milestones", &t.milestones),
            ("ae_milestones", &t.ae_milestones),
        ] {
            if m.windows(2).any(|w| w[0] >= w[1]) {
                return bad(format!("{name} {m:?} must be increasing"));
            }
        }
        Ok(DeepSadValidParams(self))
    }
}

impl DeepSadValidParams {
    pub fn params(&self) -> &DeepSadParams {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_check_and_bad_values_are_refused() {
        let ok = DeepSadParams {
            train: DeepSadTrain::default(),
            supervised: true,
            seed: 0,
        };
        assert!(ok.clone().check().is_ok());
        for change in [
            |t: &mut DeepSadTrain| t.epochs = 0,
            |t: &mut DeepSadTrain| t.lr = 0.0,
            |t: &mut DeepSadTrain| t.weight_decay = f64::NAN,
            |t: &mut DeepSadTrain| t.eta = -1.0,
            |t: &mut DeepSadTrain| t.milestones = vec![50, 10],
            |t: &mut DeepSadTrain| t.batch_size = 0,
        ] {
            let mut p = ok.clone();
            change(&mut p.train);
            assert!(p.check().is_err());
        }
        let lr = |e| DeepSadTrain::lr_at(1e-4, &[50, 100], e);
        assert_eq!(lr(0), 1e-4);
        assert!((lr(50) - 1e-5).abs() < 1e-12 && (lr(100) - 1e-6).abs() < 1e-13);
    }
}
