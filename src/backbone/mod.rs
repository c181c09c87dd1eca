//! Pretrained ImageNet backbones: images in, one feature vector per image out (the global
//! average pool of the last convolution), for the `pretrained` reducer and the methods built
//! on it.
//!
//! - `weights`: which file, where it lives, fetching and checking it;
//! - `pth`: PyTorch's legacy `.pth` format, in which the weights were released;
//! - `efficientnet`: EfficientNet-Lite's forward pass on the CPU;
//! - `preprocess`: resizing and ImageNet normalisation;
//! - `cache`: a dataset's features computed once, kept on disk, looked up by image.

pub mod cache;
mod efficientnet;
pub mod preprocess;
pub mod pth;
pub mod weights;

use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::data::{DataError, ImageSet};
use crate::kernels::threads;

pub use efficientnet::{EfficientNetLite, HEAD as FEATURES};

#[derive(Debug, thiserror::Error)]
pub enum BackboneError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Pth(#[from] pth::PthError),
    #[error("{path}: {message}")]
    Checksum { path: PathBuf, message: String },
    #[error("the {kind} weights are not in {dir}: {message}")]
    Missing {
        kind: BackboneKind,
        dir: PathBuf,
        message: String,
    },
    #[error(transparent)]
    Fetch(DataError),
    #[error("the weights do not fit the architecture: {0}")]
    Weights(String),
    #[error("invalid parameter: {0}")]
    InvalidParams(String),
    #[error("{what}: {message}")]
    Input { what: String, message: String },
}

impl BackboneError {
    fn io(path: &Path, source: std::io::Error) -> BackboneError {
        BackboneError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The backbones eidn can load, by the names the weights list and records use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum BackboneKind {
    #[serde(rename = "efficientnet-lite0")]
    EfficientNetLite0,
}

impl BackboneKind {
    pub const ALL: [BackboneKind; 1] = [BackboneKind::EfficientNetLite0];

    pub fn as_str(self) -> &'static str {
        match self {
            BackboneKind::EfficientNetLite0 => "efficientnet-lite0",
        }
    }

    pub fn parse(s: &str) -> Option<BackboneKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// EfficientNet's (width, depth) multipliers.
    fn multipliers(self) -> (f64, f64) {
        match self {
            BackboneKind::EfficientNetLite0 => (1.0, 1.0),
        }
    }
}

impl std::fmt::Display for BackboneKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which features: the backbone and the side images are resized to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    pub backbone: BackboneKind,
    /// Input side in pixels: a multiple of 32 from 32 to 512 (five stride-2 layers; each
    /// then sees an even side, so the padding is the reference's).
    pub size: usize,
}

impl FeatureSpec {
    pub fn validate(&self) -> Result<(), BackboneError> {
        if self.size < 32 || self.size > 512 || !self.size.is_multiple_of(32) {
            return Err(BackboneError::InvalidParams(format!(
                "backbone input size {}: must be a multiple of 32 from 32 to 512",
                self.size
            )));
        }
        Ok(())
    }
}

impl FeatureSpec {
    /// What the grid uses for `dataset`: EfficientNet-Lite0 at 128 px for the built-in 28-32 px
    /// datasets (upsampled 4x: measured 0.927 mean AUC with logistic regression on CIFAR-10 at
    /// 10 % in PyTorch; 60,000 images in under 3 min on 2 cores), 224 px (ImageNet's) for
    /// your own images.
    pub fn for_dataset(dataset: crate::data::DatasetName) -> FeatureSpec {
        FeatureSpec {
            backbone: BackboneKind::EfficientNetLite0,
            size: if dataset.is_builtin() { 128 } else { 224 },
        }
    }

    /// [`FeatureSpec::for_dataset`] at side `size` when given (a profile's `backbone_size`,
    /// `train --backbone-size`), checked.
    pub fn for_dataset_at(
        dataset: crate::data::DatasetName,
        size: Option<usize>,
    ) -> Result<FeatureSpec, BackboneError> {
        let default = FeatureSpec::for_dataset(dataset);
        let spec = FeatureSpec {
            size: size.unwrap_or(default.size),
            ..default
        };
        spec.validate()?;
        Ok(spec)
    }
}

/// A backbone with its weights loaded.
pub struct Backbone {
    pub kind: BackboneKind,
    net: EfficientNetLite,
}

/// Images per matrix product: enough rows for the late 4x4 stages, little memory per thread.
const CHUNK: usize = 16;

impl Backbone {
    /// Loads `kind` from its weights file (checked against its SHA-256 first).
    pub fn load(kind: BackboneKind, path: &Path) -> Result<Backbone, BackboneError> {
        let entry = weights::WeightsEntry::of(kind);
        let (sha, _) = crate::data::sha256_file(path).map_err(BackboneError::Fetch)?;
        if !sha.eq_ignore_ascii_case(&entry.sha256) {
            return Err(BackboneError::Checksum {
                path: path.to_path_buf(),
                message: format!(
                    "SHA-256 {sha} is not the {kind} weights' {}; refusing to load it",
                    entry.sha256
                ),
            });
        }
        let dict = pth::read_state_dict(path)?;
        let net = EfficientNetLite::from_state_dict(dict, kind.multipliers())?;
        Ok(Backbone { kind, net })
    }

    /// Features (`n x 1280`) of every image, resized to `size` (see [`FeatureSpec`]), on the
    /// threads this job may use; `progress` advances by images.
    pub fn features(
        &self,
        images: &ImageSet,
        size: usize,
        progress: Option<&ProgressBar>,
    ) -> Result<Array2<f32>, BackboneError> {
        FeatureSpec {
            backbone: self.kind,
            size,
        }
        .validate()?;
        if images.channels != 1 && images.channels != 3 {
            return Err(BackboneError::Input {
                what: format!("{} images", images.channels),
                message: "the backbone takes grey or RGB images (1 or 3 channels)".into(),
            });
        }
        let n = images.len();
        let chunks: Vec<std::ops::Range<usize>> = (0..n)
            .step_by(CHUNK)
            .map(|s| s..(s + CHUNK).min(n))
            .collect();
        let parts = threads::run_parts(chunks, |range| {
            let x = preprocess::prepare(images, range.clone(), size);
            let f = self.net.features(&x, range.len(), size);
            if let Some(p) = progress {
                p.inc(range.len() as u64);
            }
            f
        });
        let values: Vec<f32> = parts.into_iter().flatten().collect();
        Ok(Array2::from_shape_vec((n, FEATURES), values).expect("n x 1280 features"))
    }
}
