//! What every saved network shares: the atomic save of weights and config, and the device
//! a model runs on.

use std::path::Path;

use candle_core::Device;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::ModelError;

/// The config field that ties a config to its weights file.
const WEIGHTS_SHA256: &str = "weights_sha256";

/// Writes a model's weights (by `write_weights`) and its JSON config into `dir`, each through
/// a temporary file and a rename, so a crash never leaves half a file. The config records the
/// weights' SHA-256, so a crash between the two renames (new weights, old config) is caught
/// by [`load_config`] instead of scoring with a mismatched pair.
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
    let hash = sha256_hex(&tmp)?;
    std::fs::rename(&tmp, &weights).map_err(io(&weights))?;
    let path = dir.join(config_file);
    let tmp = dir.join(format!(".{config_file}.part"));
    let mut value = serde_json::to_value(config).expect("config serialises");
    if let Some(map) = value.as_object_mut() {
        map.insert(WEIGHTS_SHA256.into(), hash.into());
    }
    let json = serde_json::to_vec_pretty(&value).expect("config serialises");
    std::fs::write(&tmp, json).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(())
}

/// Reads a config written by [`save_model`], checking that `weights_file` is the one it was
/// saved with (configs written before the hash was recorded are taken as they are).
pub(crate) fn load_config<C: DeserializeOwned>(
    dir: &Path,
    config_file: &str,
    weights_file: &str,
) -> Result<C, ModelError> {
    let path = dir.join(config_file);
    let bad = |message: String| ModelError::BadModelFile {
        path: path.clone(),
        message,
    };
    let text = std::fs::read_to_string(&path).map_err(|error| ModelError::Io {
        path: path.clone(),
        error,
    })?;
    let mut value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let recorded = value.as_object_mut().and_then(|m| m.remove(WEIGHTS_SHA256));
    if let Some(recorded) = recorded {
        let weights = dir.join(weights_file);
        let actual = sha256_hex(&weights)?;
        if recorded.as_str() != Some(actual.as_str()) {
            return Err(bad(format!(
                "{weights_file} is not the weights this config was saved with (SHA-256 {actual}, \
                 recorded {recorded}); an interrupted save? retrain, or restore both files together"
            )));
        }
    }
    serde_json::from_value(value).map_err(|e| bad(e.to_string()))
}

fn sha256_hex(path: &Path) -> Result<String, ModelError> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).map_err(|error| ModelError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    Ok(hex::encode(Sha256::digest(&bytes)))
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
