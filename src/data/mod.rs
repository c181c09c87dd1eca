//! Datasets: loading MNIST, CIFAR-10, Concrete Cracks and a user's own (IDX files or folders
//! of images, see `catalog`) into one in-memory type, checking them against the manifest or
//! the declared checksums, and fetching missing built-in files.
//!
//! Everything downstream (training, reducers, detectors) sees only [`ImageSet`]: `u8` pixels
//! in NCHW order plus labels and class names. Pixels stay `u8` until a consumer asks for `f32`
//! ([`ImageSet::to_f32`]), which keeps CIFAR-10 at 180 MB rather than 720 MB.

pub mod catalog;
pub mod cifar10;
pub mod concrete;
pub mod ensure;
mod error;
pub mod example;
pub mod fetch;
pub(crate) mod files;
pub mod folder;
mod folder_cache;
pub mod idx;
pub mod images;
pub mod manifest;
pub mod mnist;
pub mod present;
pub mod protocol;
pub mod verify;

use std::fmt;
use std::path::{Path, PathBuf};

pub use catalog::{DatasetName, Declaration, Kind};
pub use cifar10::load as load_cifar10;
pub use concrete::{load as load_concrete, ConcreteOptions, CONCRETE_SIDE};
pub use error::DataError;
pub use files::{sha256_bytes, sha256_file};
pub use folder::FolderOptions;
pub use mnist::load as load_mnist;

impl DatasetName {
    /// The class names by label, known without loading the images (CIFAR-10's are those of
    /// its `batches.meta.txt`, which the loader checks; a folder's are its subfolders).
    pub fn class_names(self) -> Result<Vec<String>, DataError> {
        match self {
            DatasetName::Mnist => Ok(mnist::class_names()),
            DatasetName::Cifar10 => {
                Ok(cifar10::CLASS_NAMES.iter().map(|s| s.to_string()).collect())
            }
            DatasetName::Concrete => Ok(concrete::class_names()),
            user => {
                let d = user.declared()?;
                match &d.kind {
                    Kind::Idx { classes: Some(c) } => Ok(c.clone()),
                    Kind::Idx { classes: None } => idx::class_names(&d.path, user),
                    Kind::Folder(options) => folder::class_names(&d.path, user, options),
                }
            }
        }
    }

    /// The network input of the dataset's images, `[channels, height, width]` (a folder
    /// without a declared size reads its image headers).
    pub fn input_shape(self) -> Result<[usize; 3], DataError> {
        match self {
            DatasetName::Mnist => Ok([1, 28, 28]),
            DatasetName::Cifar10 => Ok([3, 32, 32]),
            DatasetName::Concrete => Ok([3, CONCRETE_SIDE, CONCRETE_SIDE]),
            user => {
                // Read once per process: a folder without a declared size scans its image
                // headers, and plans and EIDN+ recipes ask per cell.
                static SHAPES: std::sync::Mutex<Vec<(DatasetName, [usize; 3])>> =
                    std::sync::Mutex::new(Vec::new());
                let known = |s: &[(DatasetName, [usize; 3])]| {
                    s.iter().find(|(n, _)| *n == user).map(|(_, shape)| *shape)
                };
                if let Some(shape) = known(&SHAPES.lock().unwrap_or_else(|e| e.into_inner())) {
                    return Ok(shape);
                }
                let d = user.declared()?;
                let shape = match &d.kind {
                    Kind::Idx { .. } => idx::input_shape(&d.path, user)?,
                    Kind::Folder(options) => folder::input_shape(&d.path, user, options)?,
                };
                SHAPES
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((user, shape));
                Ok(shape)
            }
        }
    }
}

/// Images as `u8` NCHW with one label each.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSet {
    /// `len() * channels * height * width` bytes, image after image, each channel plane
    /// row-major.
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub class_names: Vec<String>,
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per image (C x H x W).
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// `n` images of `shape` filled with a fixed hash pattern (different per `salt`), label 0:
    /// for timing a training step, where the pixels do not change the cost.
    pub fn synthetic(n: usize, shape: [usize; 3], salt: usize) -> ImageSet {
        ImageSet {
            pixels: (0..n * shape.iter().product::<usize>())
                .map(|i| ((i * 2654435761 + salt) >> 7) as u8)
                .collect(),
            labels: vec![0; n],
            channels: shape[0],
            height: shape[1],
            width: shape[2],
            class_names: vec!["synthetic".into()],
        }
    }

    /// All pixels scaled to [0, 1], NCHW.
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.pixels.len()];
        pixels_to_f32(&self.pixels, &mut out);
        out
    }

    /// Writes image `i` scaled to [0, 1] into `out` (length [`Self::image_len`]); lets a
    /// batch builder reuse one buffer instead of converting the whole set.
    pub fn image_f32_into(&self, i: usize, out: &mut [f32]) {
        pixels_to_f32(self.image(i), out);
    }

    /// Number of images of each class, indexed by label.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.class_names.len()];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// A new set holding the given images, in the given order.
    pub fn select(&self, indices: &[usize]) -> ImageSet {
        let n = self.image_len();
        let mut pixels = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
        }
        ImageSet {
            pixels,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            channels: self.channels,
            height: self.height,
            width: self.width,
            class_names: self.class_names.clone(),
        }
    }

    /// Checks the invariants every loader promises; loaders call it before returning.
    fn check(&self, path: &Path) -> Result<(), DataError> {
        debug_assert_eq!(self.pixels.len(), self.labels.len() * self.image_len());
        if self.is_empty() {
            return Err(DataError::Empty {
                path: path.to_path_buf(),
                what: "images",
            });
        }
        let classes = self.class_names.len();
        match self.labels.iter().position(|&l| l as usize >= classes) {
            Some(index) => Err(DataError::BadLabel {
                path: path.to_path_buf(),
                index,
                label: self.labels[index],
                classes,
            }),
            None => Ok(()),
        }
    }
}

fn pixels_to_f32(src: &[u8], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "pixel buffer length");
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = f32::from(s) * (1.0 / 255.0);
    }
}

/// A dataset's train and test splits.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub name: DatasetName,
    pub train: ImageSet,
    pub test: ImageSet,
}

/// What a dataset held when a model was trained on it, so that a later evaluation can tell
/// whether it still holds the same images.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DataFingerprint {
    /// SHA-256 of both splits' shapes, labels and pixels.
    pub sha256: String,
    pub train: usize,
    pub test: usize,
}

impl Dataset {
    pub fn fingerprint(&self) -> DataFingerprint {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for set in [&self.train, &self.test] {
            h.update(format!(
                "{}x{}x{} {}\n",
                set.channels,
                set.height,
                set.width,
                set.len()
            ));
            h.update(&set.labels);
            h.update(&set.pixels);
        }
        DataFingerprint {
            sha256: hex::encode(h.finalize()),
            train: self.train.len(),
            test: self.test.len(),
        }
    }
}

/// Loads a dataset: a built-in one from its folder under `data_dir`, a user's from its
/// declared folder. `seed` draws the split where the dataset has none of its own (Concrete
/// Cracks, folders without train/ and test/); MNIST, CIFAR-10 and IDX sets ignore it.
pub fn load(name: DatasetName, data_dir: &Path, seed: u64) -> Result<Dataset, DataError> {
    let dir = name.dir(data_dir);
    match name {
        DatasetName::Mnist => load_mnist(&dir),
        DatasetName::Cifar10 => load_cifar10(&dir),
        DatasetName::Concrete => load_concrete(&dir, &ConcreteOptions::new(seed)),
        user => {
            let d = user.declared()?;
            match &d.kind {
                Kind::Idx { classes } => idx::load(&d.path, user, classes.as_deref()),
                Kind::Folder(options) => folder::load(&d.path, user, options, seed),
            }
        }
    }
}

/// Where the data directory came from; `verify` prints it so a user can tell why a
/// dataset was not found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataDirSource {
    Flag,
    Env,
    /// `datasets/` in the working directory (a checkout of this repository).
    WorkingDir,
    /// The per-user data folder (`$XDG_DATA_HOME/eidn/datasets`, else
    /// `~/.local/share/eidn/datasets`).
    User,
}

impl fmt::Display for DataDirSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataDirSource::Flag => "--data-dir",
            DataDirSource::Env => "EIDN_DATA_DIR",
            DataDirSource::WorkingDir => "default: datasets/ in the working directory",
            DataDirSource::User => "default: the per-user data folder",
        })
    }
}

/// Name of the environment variable that points at the data directory.
pub const DATA_DIR_ENV: &str = "EIDN_DATA_DIR";

/// `--data-dir`, else `EIDN_DATA_DIR`, else `datasets/` in the working directory when it
/// exists (a checkout), else the per-user data folder. Nothing is compiled in: a copied or
/// installed binary looks where its user is, not where it was built.
pub fn resolve_data_dir(flag: Option<&Path>) -> (PathBuf, DataDirSource) {
    resolve_data_dir_from(
        flag,
        std::env::var_os(DATA_DIR_ENV).map(PathBuf::from),
        Path::new("datasets"),
    )
}

fn resolve_data_dir_from(
    flag: Option<&Path>,
    env: Option<PathBuf>,
    working: &Path,
) -> (PathBuf, DataDirSource) {
    if let Some(p) = flag {
        return (p.to_path_buf(), DataDirSource::Flag);
    }
    match env {
        Some(p) if !p.as_os_str().is_empty() => (p, DataDirSource::Env),
        _ if working.is_dir() => (working.to_path_buf(), DataDirSource::WorkingDir),
        _ => (user_data_dir(), DataDirSource::User),
    }
}

/// `$XDG_DATA_HOME/eidn/datasets`, else `$HOME/.local/share/eidn/datasets`, else
/// `datasets` (no home at all).
pub fn user_data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local/share"))
        });
    match base {
        Some(b) => b.join("eidn").join("datasets"),
        None => PathBuf::from("datasets"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_precedence() {
        let flag = Path::new("/from/flag");
        let env = Some(PathBuf::from("/from/env"));
        let here = tempfile::tempdir().unwrap();
        let working = here.path().join("datasets");
        assert_eq!(
            resolve_data_dir_from(Some(flag), env.clone(), &working),
            (flag.to_path_buf(), DataDirSource::Flag)
        );
        assert_eq!(
            resolve_data_dir_from(None, env, &working),
            (PathBuf::from("/from/env"), DataDirSource::Env)
        );
        // Issue 10 item 12: no compiled-in path; a missing ./datasets means the user's folder.
        assert_eq!(
            resolve_data_dir_from(None, Some(PathBuf::new()), &working),
            (user_data_dir(), DataDirSource::User)
        );
        std::fs::create_dir(&working).unwrap();
        assert_eq!(
            resolve_data_dir_from(None, None, &working),
            (working.clone(), DataDirSource::WorkingDir)
        );
        assert!(!user_data_dir().starts_with(env!("CARGO_MANIFEST_DIR")));
    }

    #[test]
    fn image_set_helpers() {
        let set = ImageSet {
            pixels: vec![0, 255, 51, 102, 1, 2],
            labels: vec![1, 0, 1],
            channels: 1,
            height: 1,
            width: 2,
            class_names: vec!["a".into(), "b".into()],
        };
        assert_eq!(set.class_counts(), vec![1, 2]);
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);
        assert!(close(&set.to_f32()[..4], &[0.0, 1.0, 0.2, 0.4]));
        let sub = set.select(&[2, 0]);
        assert_eq!(sub.pixels, vec![1, 2, 0, 255]);
        assert_eq!(sub.labels, vec![1, 1]);
        let mut buf = [0.0; 2];
        set.image_f32_into(1, &mut buf);
        assert!(close(&buf, &[0.2, 0.4]));
        let bad = ImageSet {
            labels: vec![1, 0, 2],
            ..set
        };
        assert!(matches!(
            bad.check(Path::new("x")),
            Err(DataError::BadLabel {
                index: 2,
                label: 2,
                ..
            })
        ));
    }
}
