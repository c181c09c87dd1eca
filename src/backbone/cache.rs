//! Features of a whole dataset (both splits), computed once per (data copy, backbone, input
//! size) and kept in a file that every later cell and run reads: `<models dir>/features/
//! <dataset>-<backbone>-<size>-<key>.f32`, where the key hashes the data copy's fingerprint
//! (SHA-256 of its shapes, labels and pixels), the backbone, the size and the weights' SHA-256.
//! The file starts with a one-line JSON header naming all of these; one whose header, key or
//! length does not match is computed again, never read. Writes go to a temporary file renamed
//! into place.
//!
//! Cells look an image's features up by the hash of its pixels, so any subset or order of a
//! dataset's images (pools, test sets) finds its rows; an image not in the dataset (your own
//! files at `score` time) is computed on the spot.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::weights::{self, WeightsEntry};
use super::{Backbone, BackboneError, FeatureSpec, FEATURES};
use crate::data::{Dataset, ImageSet};

/// What a cache file holds; the first line of the file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    dataset: String,
    data_sha256: String,
    spec: FeatureSpec,
    weights_sha256: String,
    images: usize,
    dim: usize,
}

/// A dataset's features, by image content.
pub struct FeatureTable {
    pub spec: FeatureSpec,
    backbone: Backbone,
    rows: HashMap<u64, usize>,
    features: Array2<f32>,
}

fn pixel_key(images: &ImageSet, i: usize) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (images.channels, images.height, images.width).hash(&mut h);
    images.image(i).hash(&mut h);
    h.finish()
}

impl FeatureTable {
    /// A table of no dataset, for a saved model scoring new images: every image's features
    /// are computed. The weights come from `models_dir`, downloaded first when absent (from
    /// `mirror` when given); offline, the error says how to get them.
    pub fn for_new_images(
        spec: &FeatureSpec,
        models_dir: &Path,
        mirror: Option<&str>,
        progress: bool,
    ) -> Result<Arc<FeatureTable>, BackboneError> {
        spec.validate()?;
        let path = weights::ensure(spec.backbone, models_dir, mirror, progress)?;
        Ok(Arc::new(FeatureTable {
            spec: spec.clone(),
            backbone: Backbone::load(spec.backbone, &path)?,
            rows: HashMap::new(),
            features: Array2::zeros((0, FEATURES)),
        }))
    }

    /// Features (`n x 1280`, f64) of `images`: looked up where the dataset has them, computed
    /// for the others.
    pub fn features(&self, images: &ImageSet) -> Result<Array2<f64>, BackboneError> {
        let mut out = Array2::<f64>::zeros((images.len(), FEATURES));
        let mut missing = Vec::new();
        for i in 0..images.len() {
            match self.rows.get(&pixel_key(images, i)) {
                Some(&r) => out.row_mut(i).assign(&self.features.row(r).mapv(f64::from)),
                None => missing.push(i),
            }
        }
        if !missing.is_empty() {
            let subset = images.select(&missing);
            let computed = self.backbone.features(&subset, self.spec.size, None)?;
            for (k, &i) in missing.iter().enumerate() {
                out.row_mut(i).assign(&computed.row(k).mapv(f64::from));
            }
        }
        Ok(out)
    }
}

/// Tables already loaded in this process, by cache file: cells of one dataset share one.
type Loaded = Mutex<HashMap<PathBuf, Arc<FeatureTable>>>;

fn loaded() -> &'static Loaded {
    static LOADED: OnceLock<Loaded> = OnceLock::new();
    LOADED.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The feature table of `dataset` for `spec`: from this process's memory, else the cache
/// file in `models_dir/features`, else computed (with a progress bar unless `quiet`) and
/// written there. The weights must be in `models_dir` (see `weights::ensure`). One caller
/// at a time computes; others wait for its table.
pub fn table(
    dataset: &Dataset,
    spec: &FeatureSpec,
    models_dir: &Path,
    quiet: bool,
) -> Result<Arc<FeatureTable>, BackboneError> {
    spec.validate()?;
    let entry = WeightsEntry::of(spec.backbone);
    let weights_path =
        weights::find(spec.backbone, models_dir)?.ok_or_else(|| BackboneError::Missing {
            kind: spec.backbone,
            dir: models_dir.to_path_buf(),
            message: "run `eidn weights fetch` (or pass --data-mirror)".into(),
        })?;
    let fingerprint = dataset.fingerprint();
    let header = Header {
        dataset: dataset.name.to_string(),
        data_sha256: fingerprint.sha256.clone(),
        spec: spec.clone(),
        weights_sha256: entry.sha256.clone(),
        images: dataset.train.len() + dataset.test.len(),
        dim: FEATURES,
    };
    let key = {
        let mut h = Sha256::new();
        h.update(serde_json::to_vec(&header).expect("header serialises"));
        hex::encode(&h.finalize()[..8])
    };
    let path = models_dir.join("features").join(format!(
        "{}-{}-{}-{key}.f32",
        sanitize(&header.dataset),
        spec.backbone,
        spec.size
    ));
    let mut memo = loaded().lock().expect("not poisoned");
    if let Some(t) = memo.get(&path) {
        return Ok(Arc::clone(t));
    }
    let backbone = Backbone::load(spec.backbone, &weights_path)?;
    let features = match read(&path, &header) {
        Some(f) => f,
        None => {
            let f = compute(&backbone, dataset, spec, quiet)?;
            write(&path, &header, &f)?;
            f
        }
    };
    let mut rows = HashMap::new();
    let mut at = 0;
    for set in [&dataset.train, &dataset.test] {
        for i in 0..set.len() {
            rows.entry(pixel_key(set, i)).or_insert(at);
            at += 1;
        }
    }
    let table = Arc::new(FeatureTable {
        spec: spec.clone(),
        backbone,
        rows,
        features,
    });
    memo.insert(path, Arc::clone(&table));
    Ok(table)
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn compute(
    backbone: &Backbone,
    dataset: &Dataset,
    spec: &FeatureSpec,
    quiet: bool,
) -> Result<Array2<f32>, BackboneError> {
    let n = dataset.train.len() + dataset.test.len();
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(n as u64)
    };
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{} features ({}, {} px) {{bar:30}} {{pos}}/{{len}} images, {{elapsed}} (eta {{eta}})",
            dataset.name, spec.backbone, spec.size
        ))
        .expect("template"),
    );
    let start = std::time::Instant::now();
    // Every core: cells that need these features wait for them anyway (see `table`).
    let (train, test) = crate::kernels::threads::with_budget(
        crate::kernels::threads::cores(),
        || -> Result<_, BackboneError> {
            Ok((
                backbone.features(&dataset.train, spec.size, Some(&bar))?,
                backbone.features(&dataset.test, spec.size, Some(&bar))?,
            ))
        },
    )?;
    bar.finish_and_clear();
    if !quiet {
        eprintln!(
            "{} features ({}, {} px): {n} images in {:.0} s",
            dataset.name,
            spec.backbone,
            spec.size,
            start.elapsed().as_secs_f64()
        );
    }
    Ok(ndarray::concatenate![ndarray::Axis(0), train, test])
}

/// The cached features if the file's header is `header` and its length exactly right.
fn read(path: &Path, header: &Header) -> Option<Array2<f32>> {
    let mut r = BufReader::new(std::fs::File::open(path).ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let found: Header = serde_json::from_str(line.trim_end()).ok()?;
    if &found != header {
        return None;
    }
    let want = header.images * header.dim * 4;
    let mut bytes = Vec::with_capacity(want + 1);
    r.take(want as u64 + 1).read_to_end(&mut bytes).ok()?;
    if bytes.len() != want {
        return None;
    }
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if values.iter().any(|v| !v.is_finite()) {
        return None;
    }
    Array2::from_shape_vec((header.images, header.dim), values).ok()
}

fn write(path: &Path, header: &Header, features: &Array2<f32>) -> Result<(), BackboneError> {
    let dir = path.parent().expect("features/ folder");
    std::fs::create_dir_all(dir).map_err(|e| BackboneError::io(dir, e))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let io = |e| BackboneError::io(&tmp, e);
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
    let line = serde_json::to_string(header).expect("header serialises");
    writeln!(f, "{line}").map_err(io)?;
    for v in features.iter() {
        f.write_all(&v.to_le_bytes()).map_err(io)?;
    }
    f.into_inner()
        .map_err(|e| io(e.into_error()))?
        .sync_all()
        .map_err(io)?;
    std::fs::rename(&tmp, path).map_err(|e| BackboneError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            dataset: "d".into(),
            data_sha256: "x".into(),
            spec: FeatureSpec {
                backbone: super::super::BackboneKind::EfficientNetLite0,
                size: 64,
            },
            weights_sha256: "w".into(),
            images: 3,
            dim: 2,
        }
    }

    #[test]
    fn a_cache_is_read_only_when_header_and_length_match() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("features/t.f32");
        let f = Array2::from_shape_vec((3, 2), vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        write(&path, &header(), &f).unwrap();
        assert_eq!(read(&path, &header()).unwrap(), f);
        // Another size, data copy or image count: not read.
        let mut other = header();
        other.spec.size = 128;
        assert!(read(&path, &other).is_none());
        let mut other = header();
        other.data_sha256 = "y".into();
        assert!(read(&path, &other).is_none());
        // Truncated, or with bytes after the end: not read.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(read(&path, &header()).is_none());
        let mut longer = bytes.clone();
        longer.push(0);
        std::fs::write(&path, &longer).unwrap();
        assert!(read(&path, &header()).is_none());
    }
}
