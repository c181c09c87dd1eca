//! Atomic writes of the files a grid and its report produce.

use std::path::Path;

use polars::prelude::{CsvWriter, DataFrame, SerWriter};

use super::ExperimentError;

/// Writes `bytes` with the data layer's temporary file + rename: a crash leaves the old file
/// or the new one, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ExperimentError> {
    Ok(crate::data::files::write_atomic(path, bytes)?)
}

/// A polars table as CSV, written atomically.
pub(crate) fn write_csv(path: &Path, df: &mut DataFrame) -> Result<(), ExperimentError> {
    let mut buf = Vec::new();
    CsvWriter::new(&mut buf)
        .finish(df)
        .map_err(|e| ExperimentError::Polars(format!("{}: {e}", path.display())))?;
    write_atomic(path, &buf)
}
