//! EIDN's hyperparameters, checked once into [`EidnValidParams`], which alone can fit.

use serde::{Deserialize, Serialize};

use super::augment::{self, Augment};
use super::encoder::Arch;
use crate::model::ModelError;

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
pub struct EidnValidParams(pub(super) EidnParams);

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

impl EidnValidParams {
    pub fn params(&self) -> &EidnParams {
        &self.0
    }
}
