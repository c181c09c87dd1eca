//! The reproduction grid: profiles (`configs/*.toml`) expand into cells; the runner trains,
//! reduces, detects and scores each cell and appends the results to a resumable store that
//! the `report` module reads.

pub mod archive;
mod artifacts;
mod cell;
pub mod cost;
mod data_cache;
mod error;
mod files;
pub mod grid;
mod meta;
pub mod method_choice;
mod networks;
pub mod profile;
pub mod recipe;
pub mod runner;
pub mod select;
pub mod store;

pub use cell::protocol_name;
pub use cost::Plan;
pub use error::ExperimentError;
pub use files::write_atomic;
pub(crate) use files::write_csv;
pub use meta::{machine_description, RunMeta};
pub use profile::{Cell, Profile, Shard, StageId, TrainOverride, TrainSpec, ValidProfile};
pub use runner::{run_profile, RunOptions, RunSummary};
pub use select::{select, select_from_build, Ignored, Selection};
pub use store::{read_failures, read_records, Failure, Record, ResultStore, Reuse};
