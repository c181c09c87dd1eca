//! The trained networks of a cell: a saved one reused when it was trained with the same
//! settings on the same copy of the data, else a new one, saved before it is used (so a
//! later crash does not lose it); and either as a reducer.

use std::path::Path;

use candle_core::Device;
use ndarray::Array2;

use super::profile::Cell;
use super::ExperimentError;
use crate::build_info::{numerics_of, Build, NUMERICS};
use crate::data::protocol::{OneVsRest, Pools};
use crate::data::ImageSet;
use crate::model::deep_sad::{self, DeepSad};
use crate::model::{Eidn, ModelError, TrainOptions};
use crate::reduce::{ReduceError, Reducer};

/// What the grid needs of a trained network to reuse a saved one and to embed with it.
pub(super) trait Network: Sized {
    type Params: PartialEq;
    /// The config file whose presence marks a saved network of this kind.
    const CONFIG_FILE: &'static str;
    fn train(
        params: &Self::Params,
        pools: &Pools,
        device: &Device,
        options: &TrainOptions,
    ) -> Result<Self, ModelError>;
    fn load(dir: &Path, device: &Device) -> Result<Self, ModelError>;
    fn save(&self, dir: &Path) -> Result<(), ModelError>;
    /// Its settings, the protocol its pools came from and its data copy, as recorded.
    fn recorded(&self) -> (&Self::Params, Option<&OneVsRest>, Option<&str>);
    /// The build that trained it.
    fn build(&self) -> Option<&Build>;
    fn embed(&self, images: &ImageSet) -> Result<Vec<f32>, ModelError>;
    fn dim(&self) -> usize;
}

impl Network for Eidn {
    type Params = crate::model::EidnParams;
    const CONFIG_FILE: &'static str = crate::model::CONFIG_FILE;

    fn train(
        params: &Self::Params,
        pools: &Pools,
        device: &Device,
        options: &TrainOptions,
    ) -> Result<Self, ModelError> {
        params.clone().check()?.fit(pools, device, options)
    }

    fn load(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        Eidn::load(dir, device)
    }
    fn save(&self, dir: &Path) -> Result<(), ModelError> {
        Eidn::save(self, dir)
    }
    fn recorded(&self) -> (&Self::Params, Option<&OneVsRest>, Option<&str>) {
        let c = &self.config;
        (&c.params, c.protocol.as_ref(), c.data.as_deref())
    }
    fn build(&self) -> Option<&Build> {
        self.config.build.as_ref()
    }
    fn embed(&self, images: &ImageSet) -> Result<Vec<f32>, ModelError> {
        Eidn::embed(self, images)
    }
    fn dim(&self) -> usize {
        self.config.encoder.embed_dim
    }
}

impl Network for DeepSad {
    type Params = deep_sad::DeepSadParams;
    const CONFIG_FILE: &'static str = deep_sad::CONFIG_FILE;

    fn train(
        params: &Self::Params,
        pools: &Pools,
        device: &Device,
        options: &TrainOptions,
    ) -> Result<Self, ModelError> {
        params.clone().check()?.fit(pools, device, options)
    }

    fn load(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        DeepSad::load(dir, device)
    }
    fn save(&self, dir: &Path) -> Result<(), ModelError> {
        DeepSad::save(self, dir)
    }
    fn recorded(&self) -> (&Self::Params, Option<&OneVsRest>, Option<&str>) {
        let c = &self.config;
        (&c.params, c.protocol.as_ref(), c.data.as_deref())
    }
    fn build(&self) -> Option<&Build> {
        self.config.build.as_ref()
    }
    fn embed(&self, images: &ImageSet) -> Result<Vec<f32>, ModelError> {
        DeepSad::embed(self, images)
    }
    fn dim(&self) -> usize {
        self.rep_dim()
    }
}

/// The cell's saved network under `<results>/encoders/<cell id>/` when it was trained with
/// `params` on the cell's protocol and data copy (`at`: the data's status, the results
/// folder, the device), else a new one, saved before it is used.
pub(super) fn load_or_train<N: Network>(
    cell: &Cell,
    params: &N::Params,
    pools: &Pools,
    (data_status, results, device): (&str, &Path, &Device),
) -> Result<N, ExperimentError> {
    let dir = results.join("encoders").join(cell.id());
    if dir.join(N::CONFIG_FILE).exists() {
        if let Ok(model) = N::load(&dir, device) {
            if model.recorded() == (params, Some(&cell.protocol), Some(data_status)) {
                // Same settings; reused only when its arithmetic is this build's.
                if numerics_of(model.build()) == NUMERICS {
                    return Ok(model);
                }
                eprintln!(
                    "{}: the saved network was trained by {}, whose numerics differ from this build's; training it again",
                    cell.id(),
                    Build::label_of(model.build())
                );
            }
        }
    }
    let options = TrainOptions {
        protocol: Some(cell.protocol.clone()),
        data: Some(data_status.to_string()),
        ..TrainOptions::default()
    };
    let model = N::train(params, pools, device, &options)?;
    model.save(&dir)?;
    Ok(model)
}

/// A trained network as a reducer: EIDN's f(x), Deep SAD's `phi(x) - c`.
pub(super) struct NetworkReducer<'a, N: Network>(pub &'a N);

impl<N: Network> Reducer for NetworkReducer<'_, N> {
    fn dim(&self) -> usize {
        self.0.dim()
    }

    fn transform(&self, images: &ImageSet) -> Result<Array2<f64>, ReduceError> {
        let z = self
            .0
            .embed(images)
            .map_err(|e| ReduceError::Embed(e.to_string()))?;
        let values = z.into_iter().map(f64::from).collect();
        Ok(Array2::from_shape_vec((images.len(), self.dim()), values)
            .expect("dim values per image"))
    }
}
