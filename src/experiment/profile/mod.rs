//! Profiles: the grids of `configs/*.toml`, parsed and checked once ([`check`]), then
//! expanded into cells ([`cells`]), one trained network each at most.

mod cells;
mod check;
mod shard;
mod spec;
#[cfg(test)]
mod tests;

pub use cells::{Cell, DeepSadCell};
pub use shard::Shard;
pub use spec::{
    ClassRef, Profile, StageId, StageSpec, TrainOverride, TrainSpec, ValidProfile, BUILTIN,
};
