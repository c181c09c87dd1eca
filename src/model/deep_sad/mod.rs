//! Deep SAD (Ruff et al., "Deep Semi-Supervised Anomaly Detection", ICLR 2020) and its
//! unsupervised case Deep SVDD (Ruff et al., ICML 2018), as the authors train them
//! (lukasruff/Deep-SAD-PyTorch): an autoencoder is pretrained on the training images, its
//! encoder phi initialises the network, the centre c is the mean of phi over the training
//! images (coordinates within 0.1 of zero pushed to +-0.1), then phi is trained to bring
//! unlabelled images close to c and labelled anomalies far from it:
//! `mean(|phi(x) - c|^2)` over unlabelled images plus `eta / (|phi(x~) - c|^2 + 1e-6)`
//! over labelled anomalies. The score is the distance to c.
//!
//! Departures from their code, each for reproducibility or because the harness needs it:
//! one seeded stream drives the weights and the batch order (their seed does too, through
//! PyTorch); a milestone lowers the learning rate from that epoch on (their pre-1.1-style
//! `scheduler.step()` at the top of each epoch lowers it one epoch earlier); the labelled
//! and the polluting anomalies are drawn disjoint (theirs may overlap). The embedding this
//! module hands to the detectors is `phi(x) - c`, so that every detector of Fig 7 sees the
//! centre at the origin and `origin_distance` is Deep SAD's own score.

mod fused;
mod hyperparams;
mod net;
mod train;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::data::protocol::OneVsRest;
use crate::data::ImageSet;

use crate::model::ModelError;

pub use hyperparams::{DeepSadParams, DeepSadTrain, DeepSadValidParams};
pub use net::{LeNet, LeNetKind};
pub use train::BenchStep;
pub(crate) use train::{sad_objective, Adam, CENTER_EPS};

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const CONFIG_FILE: &str = "deep_sad.json";

/// What a trained network records beside its weights.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeepSadConfig {
    pub params: DeepSadParams,
    pub input: [usize; 3],
    pub center: Vec<f32>,
    pub protocol: Option<OneVsRest>,
    /// Images trained on: unlabelled (normal and polluting) and labelled anomalies.
    pub n_unlabelled: usize,
    pub n_labelled: usize,
    /// Mean loss per epoch: pretraining (reconstruction) and training.
    pub ae_loss: Vec<f64>,
    pub loss: Vec<f64>,
    pub train_seconds: f64,
    /// The data copy's verification status.
    pub data: Option<String>,
    /// The build that trained it (absent from before builds were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<crate::build_info::Build>,
}

/// A trained Deep SAD / Deep SVDD network.
pub struct DeepSad {
    net: LeNet,
    center: Tensor,
    device: Device,
    pub config: DeepSadConfig,
}

/// Images per forward pass when embedding a whole set (bounds memory, not results).
const EMBED_CHUNK: usize = 1024;

impl DeepSad {
    pub fn rep_dim(&self) -> usize {
        self.config.center.len()
    }

    /// `phi(x) - c` for every image: `len x rep_dim` values, row-major.
    pub fn embed(&self, images: &ImageSet) -> Result<Vec<f32>, ModelError> {
        let want = self.config.input;
        let got = [images.channels, images.height, images.width];
        if got != want {
            return Err(ModelError::InputShape { got, want });
        }
        let mut out = Vec::with_capacity(images.len() * self.rep_dim());
        for start in (0..images.len()).step_by(EMBED_CHUNK) {
            let idx: Vec<usize> = (start..images.len().min(start + EMBED_CHUNK)).collect();
            let x = train::batch_tensor(images, &idx, &self.device)?;
            let z = self.net.encode(&x, false)?.broadcast_sub(&self.center)?;
            out.extend(z.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }

    /// Deep SAD's anomaly score, as a distance: `|phi(x) - c|`.
    pub fn score(&self, images: &ImageSet) -> Result<Vec<f64>, ModelError> {
        Ok(crate::model::row_norms(
            &self.embed(images)?,
            self.rep_dim(),
        ))
    }

    /// Writes the encoder's weights and running statistics and `deep_sad.json`, each through
    /// a temporary file and a rename.
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        let tensors = self.net.encoder_tensors();
        let write = |tmp: &Path| candle_core::safetensors::save(&tensors, tmp);
        crate::model::save_model(dir, WEIGHTS_FILE, write, CONFIG_FILE, &self.config)
    }

    pub fn load(dir: &Path, device: &Device) -> Result<DeepSad, ModelError> {
        let bad = |path: PathBuf, message: String| ModelError::BadModelFile { path, message };
        let config_path = dir.join(CONFIG_FILE);
        let config: DeepSadConfig = crate::model::io::load_config(dir, CONFIG_FILE, WEIGHTS_FILE)?;
        let net = LeNet::new(config.input, 0, device).map_err(|e| bad(config_path.clone(), e))?;
        if config.center.len() != net.kind.rep_dim() {
            return Err(bad(
                config_path,
                "the centre's length is not the network's".into(),
            ));
        }
        let weights = dir.join(WEIGHTS_FILE);
        let tensors = candle_core::safetensors::load(&weights, device)
            .map_err(|e| bad(weights.clone(), e.to_string()))?;
        net.load_encoder(&tensors).map_err(|e| bad(weights, e))?;
        let center = Tensor::from_slice(&config.center, config.center.len(), device)?;
        Ok(DeepSad {
            net,
            center,
            device: device.clone(),
            config,
        })
    }
}
