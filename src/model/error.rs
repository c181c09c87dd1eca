//! The one error type of the networks.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("invalid parameter: {0}")]
    InvalidParams(String),
    #[error("the loss became {loss} (or the embeddings non-finite) at step {step} (epoch {epoch}); lower the learning rate")]
    NonFiniteLoss {
        step: usize,
        epoch: usize,
        loss: f32,
    },
    #[error(
        "training collapsed: {reason}; lower the learning rate (or the margin) and train again"
    )]
    Collapsed { reason: String },
    #[error("images are {got:?} but the model takes {want:?}")]
    InputShape { got: [usize; 3], want: [usize; 3] },
    // Shown, not chained as a source, so `{:#}` prints it once.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {message}")]
    BadModelFile { path: PathBuf, message: String },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}
