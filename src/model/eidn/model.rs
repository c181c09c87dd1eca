//! A trained EIDN encoder: embedding, scoring, saving and loading.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::data::protocol::OneVsRest;
use crate::data::ImageSet;
use crate::model::io::{load_config, save_model};
use crate::model::score::{row_norms, Calibration, CalibrationSource};
use crate::model::ModelError;

use super::encoder::{Encoder, EncoderConfig};
use super::params::EidnParams;

/// File names inside a model directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const CONFIG_FILE: &str = "eidn.json";

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
    /// The build that trained it (absent from before builds were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<crate::build_info::Build>,
    /// The loaded dataset as `eidn train` saw it; `evaluate` refuses data that changed since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_fingerprint: Option<crate::data::DataFingerprint>,
}

/// A trained EIDN encoder.
pub struct Eidn {
    pub(super) encoder: Encoder,
    pub(super) varmap: VarMap,
    pub(super) device: Device,
    pub config: EidnConfig,
}

pub(super) fn shape_of(set: &ImageSet) -> [usize; 3] {
    [set.channels, set.height, set.width]
}

/// Images per forward pass when embedding a whole set: at most this many, and fewer where
/// their activations would pass [`EMBED_BYTES`] (bounds memory, not results).
const EMBED_CHUNK: usize = 1024;
const EMBED_BYTES: u64 = 1 << 30;
/// Largest input side a saved model may declare (folder datasets declare at most 512).
const MAX_INPUT_SIDE: usize = 1024;

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
        let per_image = 4 * self.config.encoder.activation_values().max(1);
        let chunk = (EMBED_BYTES / per_image).clamp(1, EMBED_CHUNK as u64) as usize;
        for start in (0..images.len()).step_by(chunk) {
            let n = chunk.min(images.len() - start);
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

    /// Calibrates the score threshold at false-positive rate `fpr` on `normals`: normal
    /// images held out of training, or (`CalibrationSource::Training`) the training ones.
    pub fn calibrate(
        &mut self,
        normals: &ImageSet,
        fpr: f64,
        source: CalibrationSource,
    ) -> Result<(), ModelError> {
        let scores = self.score(normals)?;
        self.config.calibration = Some(Calibration::new(scores, fpr, source)?);
        Ok(())
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

    /// Loads a model saved by [`Eidn::save`] onto `device`, after checking its config:
    /// settings, input shape and calibration in range, weights the ones it was saved with.
    pub fn load(dir: &Path, device: &Device) -> Result<Eidn, ModelError> {
        let config: EidnConfig = load_config(dir, CONFIG_FILE, WEIGHTS_FILE)?;
        config.check().map_err(|message| ModelError::BadModelFile {
            path: dir.join(CONFIG_FILE),
            message,
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

impl EidnConfig {
    /// What a hand-edited or damaged `eidn.json` may get wrong, as a message.
    fn check(&self) -> Result<(), String> {
        self.params.clone().check().map_err(|e| e.to_string())?;
        let [c, h, w] = self.encoder.input;
        if !matches!(c, 1 | 3)
            || !(1..=MAX_INPUT_SIDE).contains(&h)
            || !(1..=MAX_INPUT_SIDE).contains(&w)
        {
            return Err(format!(
                "input {:?}: channels must be 1 or 3 and each side 1..={MAX_INPUT_SIDE}",
                self.encoder.input
            ));
        }
        if self.encoder.embed_dim != self.params.embed_dim {
            return Err(format!(
                "the encoder's embed_dim {} differs from the parameters' {}",
                self.encoder.embed_dim, self.params.embed_dim
            ));
        }
        if let Some(c) = &self.calibration {
            c.check()?;
        }
        Ok(())
    }
}
