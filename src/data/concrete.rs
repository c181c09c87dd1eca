//! Concrete Crack Images for Classification (Özgenel 2018, Mendeley Data
//! doi:10.17632/5y9wdsg2zt.2): `Negative/` (no crack, the normal class, label 0) and
//! `Positive/` (crack, label 1), 20,000 RGB JPEGs of 227x227 each.
//!
//! The paper shrinks them to 32x32 RGB without naming a filter. We use the `image` crate's
//! `Triangle` filter: bilinear weights whose support widens with the scale factor, i.e. an
//! antialiased bilinear downscale like Pillow's `BILINEAR` (a plain 2x2 bilinear sample at
//! a 7x reduction would alias crack edges away). The dataset is a [`folder`](super::folder)
//! dataset with two declared class folders: decoded once into a cache keyed by the listing,
//! split by a seeded, stratified 80/20 cut of the pooled images, as the paper does.

use std::path::{Path, PathBuf};

use super::folder::{self, FolderOptions};
use super::{DataError, Dataset, DatasetName};

/// Side of the square the images are resized to (the paper's 32x32).
pub const CONCRETE_SIDE: usize = 32;
/// Class folders in label order.
pub const CLASS_DIRS: [&str; 2] = ["Negative", "Positive"];

#[derive(Clone, Debug)]
pub struct ConcreteOptions {
    /// Seed of the 80/20 split.
    pub seed: u64,
    /// Fraction of the pooled images that goes to training (the paper: 0.8).
    pub train_fraction: f64,
    /// Folder for the packed cache; `None` puts it beside the class folders.
    pub cache_dir: Option<PathBuf>,
}

impl ConcreteOptions {
    pub fn new(seed: u64) -> Self {
        ConcreteOptions {
            seed,
            train_fraction: 0.8,
            cache_dir: None,
        }
    }

    /// The folder declaration Concrete Cracks amounts to.
    pub fn folder(&self) -> FolderOptions {
        FolderOptions {
            size: Some([CONCRETE_SIDE, CONCRETE_SIDE]),
            channels: Some(3),
            test_fraction: 1.0 - self.train_fraction,
            classes: Some(
                CLASS_DIRS
                    .iter()
                    .zip(class_names())
                    .map(|(d, n)| (d.to_string(), n))
                    .collect(),
            ),
            cache_name: Some(cache_file_name()),
            cache_dir: self.cache_dir.clone(),
            missing_hint: Some(missing_hint()),
            mvtec: false,
        }
    }
}

pub fn class_names() -> Vec<String> {
    vec!["negative".into(), "positive".into()]
}

/// Cache file name for the current side length.
pub fn cache_file_name() -> String {
    format!("eidn-concrete-{CONCRETE_SIDE}x{CONCRETE_SIDE}.bin")
}

/// Loads the dataset from `dir` (holding `Negative/` and `Positive/`), from the cache when
/// it matches the folder listing, and splits it with `options.seed`.
pub fn load(dir: &Path, options: &ConcreteOptions) -> Result<Dataset, DataError> {
    folder::load(dir, DatasetName::Concrete, &options.folder(), options.seed)
}

pub(crate) fn missing_hint() -> String {
    "Download the archive with `eidn data fetch --dataset concrete` (or from \
     https://data.mendeley.com/datasets/5y9wdsg2zt/2) and extract it so that Negative/ and \
     Positive/ sit in this folder (e.g. `unrar x <archive>.rar`)."
        .into()
}
