//! What every saved network shares: the atomic save of weights and config, and the device
//! a model runs on.

use std::path::Path;

use candle_core::Device;
use serde::Serialize;

use super::ModelError;

/// a temporary file and a rename, so a crash never leaves half a model.
pub(crate) fn save_model<C: Serialize>(
    dir: &Path,
    weights_file: &str,
    write_weights: impl FnOnce(&Path) -> candle_core::Result<()>,
    config_file: &str,
    config: &C,
) -> Result<(), ModelError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| ModelError::Io { path, error }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let weights = dir.join(weights_file);
    let tmp = dir.join(format!(".{weights_file}.part"));
    write_weights(&tmp)?;
    std::fs::rename(&tmp, &weights).map_err(io(&weights))?;
    let path = dir.join(config_file);
    let tmp = dir.join(format!(".{config_file}.part"));
    let json = serde_json::to_vec_pretty(config).expect("config serialises");
    std::fs::write(&tmp, json).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(())
}

/// `cpu`, or `cuda` / `cuda:N` (needs the `cuda` feature).
pub fn parse_device(name: &str) -> Result<Device, ModelError> {
    match name {
        "cpu" => Ok(Device::Cpu),
        _ => {
            let ordinal = match name.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| ModelError::InvalidParams(format!("bad device {name:?}")))?,
                None => {
                    return Err(ModelError::InvalidParams(format!(
                        "unknown device {name:?} (cpu, cuda, cuda:N)"
                    )))
                }
            };
            Ok(Device::new_cuda(ordinal)?)
        }
    }
}
