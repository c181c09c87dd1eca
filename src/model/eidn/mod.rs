//! The EIDN model: an encoder trained with the refined triplet loss on randomly sampled
//! triplets (paper Section 3); anomaly score = Euclidean distance of f(x) from the origin.
//!
//! linfa-style: [`EidnParams`] holds the hyperparameters, [`EidnParams::check`] turns them
//! into [`EidnValidParams`] once, whose `fit` trains and returns a fitted [`Eidn`]
//! that embeds and scores images and saves / loads as safetensors plus a JSON config.

mod augment;
mod batch;
mod encoder;
mod loss;
mod model;
mod params;
mod sampler;
mod train;

pub use augment::Augment;
pub use encoder::{Arch, Encoder, EncoderConfig};
pub use loss::triplet_loss;
pub use model::{Eidn, EidnConfig, CONFIG_FILE, WEIGHTS_FILE};
pub use params::{
    EidnParams, EidnValidParams, MAX_BATCH_SIZE, MAX_EMBED_DIM, MAX_LR, MAX_MARGIN, MAX_STEPS,
    MAX_STEP_BYTES,
};
pub use sampler::{Pick, TripletBatch, TripletSampler};
pub use train::Trainer;
