//! The datasets of a run, loaded once each, with their verification status.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::ExperimentError;
use crate::data::manifest::Manifest;
use crate::data::verify::{verify, DatasetReport};
use crate::data::{load, Dataset, DatasetName};

/// The status the grid records for a dataset, or None when the grid cannot use it (a
/// checksum mismatch is not the data the tables are about).
fn grid_status(report: &DatasetReport) -> Option<String> {
    report
        .status
        .usable()
        .then(|| report.status.label(report.variant.as_deref()))
        .flatten()
}

/// Datasets loaded once per run, and their verification status.
pub(super) struct DataCache {
    dir: PathBuf,
    loaded: HashMap<(DatasetName, u64), Arc<Dataset>>,
    status: HashMap<DatasetName, Option<String>>,
}

impl DataCache {
    /// `verified`: reports the caller already made, so those datasets are not hashed and
    /// loaded a second time just to learn their status.
    pub(super) fn new(dir: &Path, verified: &[DatasetReport]) -> Self {
        let status = verified
            .iter()
            .filter_map(|r| Some((DatasetName::parse(&r.name)?, grid_status(r))))
            .collect();
        DataCache {
            dir: dir.to_path_buf(),
            loaded: HashMap::new(),
            status,
        }
    }

    /// "exact", "variant <name>" or "unverified"; None when the dataset is missing or corrupt.
    pub(super) fn status(&mut self, name: DatasetName) -> Option<String> {
        let dir = self.dir.clone();
        self.status
            .entry(name)
            .or_insert_with(|| grid_status(&verify(name, &dir, &Manifest::builtin())))
            .clone()
    }

    /// Loaded once per seed only where the split depends on it (Concrete, split folders).
    pub(super) fn get(
        &mut self,
        name: DatasetName,
        seed: u64,
    ) -> Result<Arc<Dataset>, ExperimentError> {
        let key = (name, if name.split_uses_seed() { seed } else { 0 });
        if !self.loaded.contains_key(&key) {
            let data = load(name, &self.dir, key.1)?;
            self.loaded.insert(key, Arc::new(data));
        }
        Ok(self.loaded[&key].clone())
    }
}
