//! A folder written by `eidn train`: an EIDN encoder (`eidn.json`) or a method on pretrained
//! features (`pretrained.json`), behind one face for `evaluate` and `score`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Result};
use candle_core::Device;
use eidn::backbone::cache::{self, FeatureTable};
use eidn::data::catalog::DatasetSpec;
use eidn::data::protocol::OneVsRest;
use eidn::data::{DataFingerprint, Dataset, ImageSet};
use eidn::model::{Calibration, CalibrationSource, Eidn, CONFIG_FILE};
use eidn::pipeline::{PretrainedModel, PRETRAINED_CONFIG_FILE};

pub enum Saved {
    Eidn(Eidn),
    Pretrained(PretrainedModel),
}

/// Where a pretrained model's backbone weights are, and how to fetch them when absent.
pub struct Weights<'a> {
    pub models_dir: &'a Path,
    pub mirror: Option<&'a str>,
    pub progress: bool,
}

impl Saved {
    /// The model in `dir`, whichever kind it is. A pretrained model embeds new images with
    /// the backbone, whose weights are fetched first when absent.
    pub fn load(dir: &Path, device: &Device, weights: &Weights) -> Result<Saved> {
        if !dir.is_dir() {
            bail!(
                "{}: no such folder (a model is the --out of `eidn train`)",
                dir.display()
            );
        }
        if dir.join(CONFIG_FILE).is_file() {
            return Ok(Saved::Eidn(Eidn::load(dir, device)?));
        }
        if dir.join(PRETRAINED_CONFIG_FILE).is_file() {
            let model = PretrainedModel::load(dir, |config| {
                Ok(FeatureTable::for_new_images(
                    &config.features,
                    weights.models_dir,
                    weights.mirror,
                    weights.progress,
                )?)
            })?;
            return Ok(Saved::Pretrained(model));
        }
        bail!(
            "{}: no {CONFIG_FILE} or {PRETRAINED_CONFIG_FILE}: not a folder written by `eidn train`",
            dir.display()
        )
    }

    /// For a pretrained model, `data`'s features from the feature cache (computed once)
    /// instead of the backbone per image: what `evaluate` scores the test split with.
    pub fn use_dataset_features(
        self,
        data: &Dataset,
        models_dir: &Path,
        quiet: bool,
    ) -> Result<Saved> {
        Ok(match self {
            Saved::Pretrained(m) => {
                let table: Arc<FeatureTable> =
                    cache::table(data, &m.config.features, models_dir, quiet)?;
                Saved::Pretrained(m.with_table(table)?)
            }
            eidn => eidn,
        })
    }

    pub fn score(&self, images: &ImageSet) -> Result<Vec<f64>> {
        Ok(match self {
            Saved::Eidn(m) => m.score(images)?,
            Saved::Pretrained(m) => m.score(images)?,
        })
    }

    /// The method's name, as `train --method` takes it.
    pub fn method(&self) -> &'static str {
        match self {
            Saved::Eidn(_) => "eidn",
            Saved::Pretrained(m) => m.config.method.as_str(),
        }
    }

    pub fn protocol(&self) -> Option<&OneVsRest> {
        match self {
            Saved::Eidn(m) => m.config.protocol.as_ref(),
            Saved::Pretrained(m) => m.config.protocol.as_ref(),
        }
    }

    pub fn calibration(&self) -> Option<&Calibration> {
        match self {
            Saved::Eidn(m) => m.config.calibration.as_ref(),
            Saved::Pretrained(m) => m.config.calibration.as_ref(),
        }
    }

    pub fn dataset(&self) -> Option<&DatasetSpec> {
        match self {
            Saved::Eidn(m) => m.config.dataset.as_ref(),
            Saved::Pretrained(m) => m.config.dataset.as_ref(),
        }
    }

    pub fn data_fingerprint(&self) -> Option<&DataFingerprint> {
        match self {
            Saved::Eidn(m) => m.config.data_fingerprint.as_ref(),
            Saved::Pretrained(m) => m.config.data_fingerprint.as_ref(),
        }
    }

    /// Channels, height and width that image files are decoded to.
    pub fn input(&self) -> [usize; 3] {
        match self {
            Saved::Eidn(m) => m.config.encoder.input,
            Saved::Pretrained(m) => m.config.input,
        }
    }

    /// Training images: normal, labelled anomalous.
    pub fn counts(&self) -> (usize, usize) {
        match self {
            Saved::Eidn(m) => (m.config.n_normal, m.config.n_anomalous),
            Saved::Pretrained(m) => (m.config.n_normal, m.config.n_anomalous),
        }
    }

    /// Training steps (0 for a method on pretrained features) and seconds of training or
    /// fitting.
    pub fn training(&self) -> (usize, f64) {
        match self {
            Saved::Eidn(m) => (m.config.steps, m.config.train_seconds),
            Saved::Pretrained(m) => (0, m.config.fit_seconds),
        }
    }

    /// Calibrates the score threshold at false-positive rate `fpr` on normal images.
    pub fn calibrate(
        &mut self,
        normals: &ImageSet,
        fpr: f64,
        source: CalibrationSource,
    ) -> Result<()> {
        match self {
            Saved::Eidn(m) => m.calibrate(normals, fpr, source)?,
            Saved::Pretrained(m) => m.calibrate(normals, fpr, source)?,
        }
        Ok(())
    }

    /// Records the data the model was trained on, so that `evaluate` finds it again (a
    /// user's dataset's declaration) and refuses it once it changed.
    pub fn set_data(&mut self, dataset: Option<DatasetSpec>, fingerprint: DataFingerprint) {
        match self {
            Saved::Eidn(m) => {
                m.config.dataset = dataset;
                m.config.data_fingerprint = Some(fingerprint);
            }
            Saved::Pretrained(m) => {
                m.config.dataset = dataset;
                m.config.data_fingerprint = Some(fingerprint);
            }
        }
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        match self {
            Saved::Eidn(m) => m.save(dir)?,
            Saved::Pretrained(m) => m.save(dir)?,
        }
        Ok(())
    }

    /// Says how the model was made, for the evaluation line.
    pub fn describe_training(&self) -> String {
        match self {
            Saved::Eidn(m) => format!(
                "{} steps in {:.1} s",
                m.config.steps, m.config.train_seconds
            ),
            Saved::Pretrained(m) => format!(
                "{} on {} features at {} px, fitted in {:.1} s",
                m.config.method,
                m.config.features.backbone,
                m.config.features.size,
                m.config.fit_seconds
            ),
        }
    }
}
