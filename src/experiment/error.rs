//! The one error type of the experiment layer.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error("{path}: {message}")]
    Profile { path: PathBuf, message: String },
    #[error("bad shard {0:?}: expected K/N with 1 <= K <= N")]
    Shard(String),
    // The io error is shown, not chained as a source, so `{:#}` prints it once.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{dir} is in use by another eidn run ({holder}); wait for it to finish, or give this run another --results folder or --shard")]
    Locked { dir: PathBuf, holder: String },
    #[error("{path} line {line}: not a result record: {message}")]
    BadRecord {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{dataset} is missing or corrupt in {dir} (run `eidn data verify`)")]
    MissingData { dataset: String, dir: PathBuf },
    /// A request that contradicts its profile or the command's other flags.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Threads(#[from] crate::kernels::threads::AlreadyFixed),
    #[error("cell {cell}: {message}")]
    Cell { cell: String, message: String },
    #[error("writing a table: {0}")]
    Polars(String),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Reduce(#[from] crate::reduce::ReduceError),
    #[error(transparent)]
    Backbone(#[from] crate::backbone::BackboneError),
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
}

impl ExperimentError {
    pub(crate) fn io(path: &Path, error: std::io::Error) -> Self {
        ExperimentError::Io {
            path: path.to_path_buf(),
            error,
        }
    }
}
