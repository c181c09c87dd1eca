use std::path::PathBuf;

use crate::backbone::BackboneError;
use crate::detect::DetectError;
use crate::model::ModelError;
use crate::reduce::ReduceError;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Backbone(#[from] BackboneError),
    #[error(transparent)]
    Reduce(#[from] ReduceError),
    #[error(transparent)]
    Detect(#[from] DetectError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{path}: {message}")]
    BadModelFile { path: PathBuf, message: String },
    #[error("invalid parameter: {0}")]
    InvalidParams(String),
}
