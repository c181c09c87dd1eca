//! Methods that `eidn train --method` fits on pretrained features and saves whole, beside the
//! EIDN encoder: a backbone's features, the grid's reducer for them, and the grid's detector,
//! with the same settings as the grid's cells (so a saved method is the method a report
//! measured).
//!
//! - `method`: which methods, and the reducer and detector each one is;
//! - `pretrained`: fitting, scoring, saving and loading one.

mod error;
mod method;
mod pretrained;

pub use error::PipelineError;
pub use method::PretrainedMethod;
pub use pretrained::{
    PretrainedConfig, PretrainedModel, PRETRAINED_CONFIG_FILE, PRETRAINED_FEATURES_FILE,
};
