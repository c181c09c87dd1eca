//! Concrete Crack Images for Classification (Özgenel 2018, Mendeley Data
//! doi:10.17632/5y9wdsg2zt.2): `Negative/` (no crack, the normal class, label 0) and
//! `Positive/` (crack, label 1), 20,000 RGB JPEGs of 227x227 each.
//!
//! The paper shrinks them to 32x32 RGB without naming a filter. We use the `image` crate's
//! `Triangle` filter: bilinear weights whose support widens with the scale factor, i.e. an
//! antialiased bilinear downscale like Pillow's `BILINEAR` (a plain 2x2 bilinear sample at
//! a 7x reduction would alias crack edges away). Decoding 40,000 JPEGs takes minutes, so the
//! result is packed once into a cache file keyed by the folder listing (names and sizes)
//! and later loads read that. The paper's split is a seeded random 80/20 train/test split of
//! the pooled images.

use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use sha2::{Digest, Sha256};

use super::files::write_atomic;
use super::{DataError, Dataset, DatasetName, ImageSet};

/// Side of the square the images are resized to (the paper's 32x32).
pub const CONCRETE_SIDE: usize = 32;
const CHANNELS: usize = 3;
/// Class folders in label order.
pub const CLASS_DIRS: [&str; 2] = ["Negative", "Positive"];
const CACHE_MAGIC: &[u8; 8] = b"EIDNCC01";
const CACHE_HEADER: usize = 8 + 4 + 4 + 32;

#[derive(Clone, Debug)]
pub struct ConcreteOptions {
    /// Seed of the 80/20 split.
    pub seed: u64,
    /// Fraction of the pooled images that goes to training (the paper: 0.8).
    pub train_fraction: f64,
    /// Folder for the packed cache; `None` puts it beside the class folders.
    pub cache_dir: Option<PathBuf>,
}

impl ConcreteOptions {
    pub fn new(seed: u64) -> Self {
        ConcreteOptions {
            seed,
            train_fraction: 0.8,
            cache_dir: None,
        }
    }
}

pub fn class_names() -> Vec<String> {
    vec!["negative".into(), "positive".into()]
}

/// Cache file name for the current side length.
pub fn cache_file_name() -> String {
    format!("eidn-concrete-{CONCRETE_SIDE}x{CONCRETE_SIDE}.bin")
}

/// Loads the dataset from `dir` (holding `Negative/` and `Positive/`), from the cache when
/// it matches the folder listing, and splits it with `options.seed`.
pub fn load(dir: &Path, options: &ConcreteOptions) -> Result<Dataset, DataError> {
    let files = list_images(dir)?;
    let fingerprint = fingerprint(&files);
    let cache = options
        .cache_dir
        .as_deref()
        .unwrap_or(dir)
        .join(cache_file_name());
    let all = match read_cache(&cache, &fingerprint)? {
        Some(set) if set.len() == files.len() => set,
        _ => {
            let set = decode_all(&files)?;
            if let Err(e) = write_cache(&cache, &fingerprint, &set) {
                // The data is still good; only the next load will be slower.
                eprintln!("warning: could not write the Concrete Cracks cache: {e}");
            }
            set
        }
    };
    let (train_idx, test_idx) = split_indices(&all.labels, options.train_fraction, options.seed);
    Ok(Dataset {
        name: DatasetName::Concrete,
        train: all.select(&train_idx),
        test: all.select(&test_idx),
    })
}

/// Per class, a seeded shuffle of that class's indices cut at `train_fraction`: stratified,
/// so both splits keep the classes' proportions (an unstratified cut left the training split
/// with fewer cracked than uncracked images for about half of all seeds, and the 100 %
/// ratio cell could not draw its anomalies). Each part is sorted, keeping the folder order.
pub fn split_indices(labels: &[u8], train_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    let classes = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
    for class in 0..classes {
        let mut idx: Vec<usize> = (0..labels.len())
            .filter(|&i| labels[i] as usize == class)
            .collect();
        idx.shuffle(&mut rng);
        let n_train = ((idx.len() as f64) * train_fraction).round() as usize;
        test.extend(idx.split_off(n_train.min(idx.len())));
        train.extend(idx);
    }
    train.sort_unstable();
    test.sort_unstable();
    (train, test)
}

/// `(path, size, label)` of every JPEG, class by class, sorted by name.
pub(crate) fn list_images(dir: &Path) -> Result<Vec<(PathBuf, u64, u8)>, DataError> {
    let mut out = Vec::new();
    for (label, class) in CLASS_DIRS.iter().enumerate() {
        let folder = dir.join(class);
        let entries = std::fs::read_dir(&folder).map_err(|_| DataError::Missing {
            dataset: "concrete",
            what: format!("folder {class}/"),
            dir: dir.to_path_buf(),
            hint: missing_hint(),
        })?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| DataError::io(&folder, e))?;
            let path = entry.path();
            let is_jpeg = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"));
            if is_jpeg {
                let len = entry.metadata().map_err(|e| DataError::io(&path, e))?.len();
                files.push((path, len, label as u8));
            }
        }
        if files.is_empty() {
            return Err(DataError::Missing {
                dataset: "concrete",
                what: format!("JPEG files in {class}/"),
                dir: dir.to_path_buf(),
                hint: missing_hint(),
            });
        }
        files.sort();
        out.extend(files);
    }
    Ok(out)
}

pub(crate) fn missing_hint() -> String {
    "Download the archive with `eidn data fetch --dataset concrete` (or from \
     https://data.mendeley.com/datasets/5y9wdsg2zt/2) and extract it so that Negative/ and \
     Positive/ sit in this folder (e.g. `unrar x <archive>.rar`)."
        .into()
}

fn fingerprint(files: &[(PathBuf, u64, u8)]) -> [u8; 32] {
    let mut h = Sha256::new();
    for (path, len, label) in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        h.update(format!("{label}\t{name}\t{len}\n"));
    }
    h.finalize().into()
}

/// Decodes and resizes every image on all cores; the first bad file is the error.
fn decode_all(files: &[(PathBuf, u64, u8)]) -> Result<ImageSet, DataError> {
    let paths: Vec<PathBuf> = files.iter().map(|f| f.0.clone()).collect();
    let shape = [CHANNELS, CONCRETE_SIDE, CONCRETE_SIDE];
    let mut pixels = Vec::with_capacity(files.len() * shape.iter().product::<usize>());
    for image in super::images::decode_many(&paths, shape) {
        pixels.extend(image?);
    }
    Ok(ImageSet {
        pixels,
        labels: files.iter().map(|f| f.2).collect(),
        channels: CHANNELS,
        height: CONCRETE_SIDE,
        width: CONCRETE_SIDE,
        class_names: class_names(),
    })
}

/// The `image` crate decodes a JPEG cut short without complaint (it pads the missing scan),
/// as libjpeg does only with a warning; a complete file has an end-of-image marker (FF D9)
/// after its last start-of-scan (FF DA). Entropy-coded data cannot contain FF D9 (0xFF bytes
/// are stuffed as FF 00), so the marker cannot be faked by image data.
pub(crate) fn check_jpeg_complete(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    let bad = |message: &str| {
        Err(DataError::TruncatedImage {
            path: path.to_path_buf(),
            message: message.into(),
        })
    };
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return bad("no start-of-image marker");
    }
    let find_last = |marker: u8| bytes.windows(2).rposition(|w| w == [0xFF, marker]);
    match (find_last(0xDA), find_last(0xD9)) {
        (None, _) => bad("no image scan"),
        (Some(sos), Some(eoi)) if eoi > sos => Ok(()),
        _ => bad("no end-of-image marker after the last scan"),
    }
}

fn read_cache(path: &Path, fingerprint: &[u8; 32]) -> Result<Option<ImageSet>, DataError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(DataError::io(path, e)),
    };
    let bad = |message: &str| DataError::BadCache {
        path: path.to_path_buf(),
        message: format!("{message}; delete it and it will be rebuilt from the JPEGs"),
    };
    if bytes.len() < CACHE_HEADER || &bytes[..8] != CACHE_MAGIC {
        return Err(bad("not an eidn Concrete Cracks cache"));
    }
    let side = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
    let n = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    if &bytes[16..48] != fingerprint || side != CONCRETE_SIDE {
        // Files changed since the cache was written: rebuild it.
        return Ok(None);
    }
    let image_len = CHANNELS * side * side;
    if bytes.len() as u64 != CACHE_HEADER as u64 + n as u64 * (1 + image_len as u64) {
        return Err(bad("length does not match its header"));
    }
    let labels = bytes[CACHE_HEADER..CACHE_HEADER + n].to_vec();
    let pixels = bytes[CACHE_HEADER + n..].to_vec();
    let set = ImageSet {
        pixels,
        labels,
        channels: CHANNELS,
        height: side,
        width: side,
        class_names: class_names(),
    };
    set.check(path)?;
    Ok(Some(set))
}

fn write_cache(path: &Path, fingerprint: &[u8; 32], set: &ImageSet) -> Result<(), DataError> {
    let mut bytes = Vec::with_capacity(CACHE_HEADER + set.labels.len() + set.pixels.len());
    bytes.extend_from_slice(CACHE_MAGIC);
    bytes.extend_from_slice(&(set.height as u32).to_le_bytes());
    bytes.extend_from_slice(&(set.len() as u32).to_le_bytes());
    bytes.extend_from_slice(fingerprint);
    bytes.extend_from_slice(&set.labels);
    bytes.extend_from_slice(&set.pixels);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
    }
    write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_seeded_disjoint_stratified_and_80_20() {
        // 700 negatives, 300 positives, interleaved.
        let labels: Vec<u8> = (0..1000).map(|i| u8::from(i % 10 >= 7)).collect();
        let (a_train, a_test) = split_indices(&labels, 0.8, 7);
        let (b_train, b_test) = split_indices(&labels, 0.8, 7);
        let (c_train, _) = split_indices(&labels, 0.8, 8);
        assert_eq!((a_train.len(), a_test.len()), (800, 200));
        assert_eq!((&a_train, &a_test), (&b_train, &b_test));
        assert_ne!(a_train, c_train);
        let mut all: Vec<usize> = a_train.iter().chain(&a_test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        // Issue 10 item 7: every seed keeps 80 % of each class in training.
        for seed in 0..50 {
            let (train, _) = split_indices(&labels, 0.8, seed);
            let positives = train.iter().filter(|&&i| labels[i] == 1).count();
            assert_eq!(
                (train.len() - positives, positives),
                (560, 240),
                "seed {seed}"
            );
        }
    }

    #[test]
    fn cut_jpegs_are_refused() {
        let mut jpeg = Vec::new();
        image::RgbImage::from_fn(24, 24, |x, y| {
            image::Rgb([(x * 9) as u8, (y * 9) as u8, 90])
        })
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
        let p = Path::new("a.jpg");
        assert!(check_jpeg_complete(p, &jpeg).is_ok());
        let cut = &jpeg[..jpeg.len() / 3];
        // The decoder alone takes the cut file; the marker check does not.
        let err = check_jpeg_complete(p, cut).unwrap_err();
        assert!(err.to_string().contains("a.jpg"), "{err}");
        assert!(check_jpeg_complete(p, b"not a jpeg").is_err());
    }
}
