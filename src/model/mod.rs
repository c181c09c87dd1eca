//! The networks: EIDN ([`eidn`]), Deep SAD and Deep SVDD ([`deep_sad`]), the CPU
//! convolutions both train with ([`conv`]), and what every saved network shares.

pub mod conv;
pub mod deep_sad;
pub mod eidn;
mod error;
pub mod head;
mod io;
mod score;
#[cfg(test)]
mod testing;
mod training;

pub use eidn::{
    triplet_loss, Arch, Augment, Eidn, EidnConfig, EidnParams, EidnValidParams, Encoder,
    EncoderConfig, Pick, Trainer, TripletBatch, TripletSampler, CONFIG_FILE, WEIGHTS_FILE,
};
pub use error::ModelError;
pub use io::parse_device;
pub(crate) use io::{load_config, save_model};
pub(crate) use score::row_norms;
pub use score::{Calibration, CalibrationSource};
#[cfg(test)]
pub(crate) use testing::max_gap;
pub use training::TrainOptions;
