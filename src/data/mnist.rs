//! MNIST (LeCun et al.): the four IDX files, ten digit classes named "0" to "9".

use std::path::Path;

use super::{idx, DataError, Dataset, DatasetName};

pub use super::idx::encode_idx;

pub fn class_names() -> Vec<String> {
    idx::numbered_classes(10)
}

/// Loads MNIST from `dir` (the folder holding the four IDX files).
pub fn load(dir: &Path) -> Result<Dataset, DataError> {
    idx::load(dir, DatasetName::Mnist, Some(&class_names()))
}
