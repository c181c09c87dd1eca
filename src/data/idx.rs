//! Datasets in MNIST's IDX format (LeCun et al.), gzipped or raw: MNIST itself and any user
//! dataset that ships the same four files (Fashion-MNIST, KMNIST, ...), of any image size and
//! number of classes.
//!
//! IDX: a big-endian `u32` magic (2051 for images, 2049 for labels), one big-endian `u32`
//! per dimension, then the `u8` values. Every length is checked against the bytes actually
//! read before anything is allocated from a header's claim.

use std::path::{Path, PathBuf};

use super::files::{find_first, raw_or_gz, read_maybe_gz};
use super::{DataError, Dataset, DatasetName, ImageSet};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// File stems of (train images, train labels, test images, test labels). The second
/// spelling is the one stored inside the original gzip headers.
const PARTS: [[&str; 2]; 4] = [
    ["train-images-idx3-ubyte", "train-images.idx3-ubyte"],
    ["train-labels-idx1-ubyte", "train-labels.idx1-ubyte"],
    ["t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"],
    ["t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"],
];

/// Names "0", "1", ... for `n` classes.
pub fn numbered_classes(n: usize) -> Vec<String> {
    (0..n).map(|d| d.to_string()).collect()
}

/// Loads the four IDX files in `dir` as dataset `name`. `classes` names the labels; without
/// it they are numbered up to the largest label found in either split.
pub fn load(
    dir: &Path,
    name: DatasetName,
    classes: Option<&[String]>,
) -> Result<Dataset, DataError> {
    let paths = PARTS
        .iter()
        .map(|stems| locate(dir, name, stems))
        .collect::<Result<Vec<_>, _>>()?;
    // Train and test decompress on two threads: gunzip dominates the load time.
    let (train, test) = std::thread::scope(|s| {
        let train = s.spawn(|| read_pair(&paths[0], &paths[1]));
        let test = read_pair(&paths[2], &paths[3]);
        (train.join().expect("IDX reader thread panicked"), test)
    });
    let (mut train, mut test) = (train?, test?);
    if (train.height, train.width) != (test.height, test.width) {
        return Err(DataError::BadHeader {
            path: paths[2].clone(),
            message: format!(
                "test images are {}x{} but the training images ({}) are {}x{}",
                test.height,
                test.width,
                paths[0].display(),
                train.height,
                train.width
            ),
        });
    }
    let names = match classes {
        Some(c) => c.to_vec(),
        None => {
            let top = train.labels.iter().chain(&test.labels).max().copied();
            let n = top.map_or(0, |m| m as usize + 1);
            // Classes are numbered up to the largest label: a stray label would make empty
            // classes that the grid then trains and reports on.
            let mut counts = vec![0usize; n];
            for &l in train.labels.iter().chain(&test.labels) {
                counts[l as usize] += 1;
            }
            let empty: Vec<String> = (0..n)
                .filter(|&c| counts[c] == 0)
                .map(|c| c.to_string())
                .collect();
            if !empty.is_empty() {
                return Err(DataError::BadHeader {
                    path: paths[1].clone(),
                    message: format!(
                        "labels run up to {} but {} of them ({}{}) have no image in either split: a stray \
                         label? declare classes = [...] for the dataset to name its real classes",
                        n - 1,
                        empty.len(),
                        empty[..empty.len().min(8)].join(", "),
                        if empty.len() > 8 { ", ..." } else { "" }
                    ),
                });
            }
            numbered_classes(n)
        }
    };
    train.class_names = names.clone();
    test.class_names = names;
    train.check(&paths[1])?;
    test.check(&paths[3])?;
    Ok(Dataset { name, train, test })
}

/// The labels of both splits (without the images): enough to name a dataset's classes.
pub fn class_names(dir: &Path, name: DatasetName) -> Result<Vec<String>, DataError> {
    let mut top = None;
    for stems in [&PARTS[1], &PARTS[3]] {
        let path = locate(dir, name, stems)?;
        let bytes = read_maybe_gz(&path)?;
        let dims = parse_header(&path, &bytes, LABELS_MAGIC, 1, "IDX1 labels")?;
        debug_assert_eq!(dims[0], bytes.len() - 8);
        top = top.max(bytes[8..].iter().max().copied());
    }
    Ok(numbered_classes(top.map_or(0, |m| m as usize + 1)))
}

/// `[1, rows, cols]` from the training images' header.
pub fn input_shape(dir: &Path, name: DatasetName) -> Result<[usize; 3], DataError> {
    let path = locate(dir, name, &PARTS[0])?;
    let bytes = read_maybe_gz(&path)?;
    let dims = parse_header(&path, &bytes, IMAGES_MAGIC, 3, "IDX3 images")?;
    Ok([1, dims[1], dims[2]])
}

fn locate(dir: &Path, name: DatasetName, stems: &[&str; 2]) -> Result<PathBuf, DataError> {
    let names: Vec<String> = stems.iter().flat_map(|s| raw_or_gz(s)).collect();
    find_first(dir, &names).ok_or_else(|| DataError::Missing {
        dataset: name.as_str(),
        what: format!("{}[.gz]", stems[0]),
        dir: dir.to_path_buf(),
        hint: if name == DatasetName::Mnist {
            "Run `eidn data fetch --dataset mnist`.".into()
        } else {
            "An IDX dataset is a folder with train-images-idx3-ubyte, train-labels-idx1-ubyte, \
             t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each raw or .gz)."
                .into()
        },
    })
}

fn read_pair(images_path: &Path, labels_path: &Path) -> Result<ImageSet, DataError> {
    let images = read_maybe_gz(images_path)?;
    let labels = read_maybe_gz(labels_path)?;
    parse_pair(images_path, images, labels_path, &labels)
}

/// Parses an IDX image file and its label file into an [`ImageSet`] (class names not yet set).
pub(crate) fn parse_pair(
    images_path: &Path,
    mut images: Vec<u8>,
    labels_path: &Path,
    labels: &[u8],
) -> Result<ImageSet, DataError> {
    let dims = parse_header(images_path, &images, IMAGES_MAGIC, 3, "IDX3 images")?;
    let (n, rows, cols) = (dims[0], dims[1], dims[2]);
    let ldims = parse_header(labels_path, labels, LABELS_MAGIC, 1, "IDX1 labels")?;
    if ldims[0] != n {
        return Err(DataError::CountMismatch {
            images: images_path.to_path_buf(),
            labels: labels_path.to_path_buf(),
            n_images: n,
            n_labels: ldims[0],
        });
    }
    // Drop the 16-byte header in place instead of copying 47 MB.
    images.drain(..16);
    Ok(ImageSet {
        pixels: images,
        labels: labels[8..].to_vec(),
        channels: 1,
        height: rows,
        width: cols,
        class_names: Vec::new(),
    })
}

/// Checks magic and dimensions of an IDX header and that the body has exactly the bytes the
/// dimensions claim; returns the dimensions.
fn parse_header(
    path: &Path,
    bytes: &[u8],
    magic: u32,
    ndims: usize,
    what: &'static str,
) -> Result<Vec<usize>, DataError> {
    let header_len = 4 * (1 + ndims);
    if bytes.len() < header_len {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            needed: header_len as u64,
            actual: bytes.len() as u64,
        });
    }
    let word = |i: usize| u32::from_be_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap());
    let found = word(0);
    if found != magic {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            expected: magic,
            found,
            what,
        });
    }
    let dims: Vec<usize> = (1..=ndims).map(|i| word(i) as usize).collect();
    // u64 arithmetic: 3 x u32 can overflow usize on 32-bit targets, never u64 here.
    let expected = dims
        .iter()
        .fold(1u64, |acc, &d| acc.saturating_mul(d as u64));
    let actual = (bytes.len() - header_len) as u64;
    if expected != actual {
        let header = dims
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(" x ");
        return Err(DataError::HeaderSizeMismatch {
            path: path.to_path_buf(),
            header: format!("{what} {header}"),
            expected: expected.saturating_add(header_len as u64),
            actual: bytes.len() as u64,
        });
    }
    Ok(dims)
}

/// Encodes images and labels as IDX files: used by tests and benches to build fixtures.
pub fn encode_idx(set: &ImageSet) -> (Vec<u8>, Vec<u8>) {
    let n = set.len() as u32;
    let mut images = Vec::with_capacity(16 + set.pixels.len());
    for w in [IMAGES_MAGIC, n, set.height as u32, set.width as u32] {
        images.extend_from_slice(&w.to_be_bytes());
    }
    images.extend_from_slice(&set.pixels);
    let mut labels = Vec::with_capacity(8 + set.labels.len());
    for w in [LABELS_MAGIC, n] {
        labels.extend_from_slice(&w.to_be_bytes());
    }
    labels.extend_from_slice(&set.labels);
    (images, labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ImageSet {
        ImageSet {
            pixels: (0..3 * 4).map(|v| v as u8).collect(),
            labels: vec![3, 1, 4],
            channels: 1,
            height: 2,
            width: 2,
            class_names: Vec::new(),
        }
    }

    #[test]
    fn round_trip() {
        let set = tiny();
        let (images, labels) = encode_idx(&set);
        let back = parse_pair(Path::new("i"), images, Path::new("l"), &labels).unwrap();
        assert_eq!(back, set);
    }

    #[test]
    fn header_claiming_more_than_the_file_holds() {
        let (mut images, labels) = encode_idx(&tiny());
        // Claim 4 billion images: must be refused from the header alone, no allocation.
        images[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        let err = parse_pair(Path::new("imgs"), images, Path::new("l"), &labels).unwrap_err();
        assert!(matches!(err, DataError::HeaderSizeMismatch { .. }), "{err}");
        assert!(err.to_string().contains("imgs"), "{err}");
    }

    /// Issue 10 item 10: 3 x (2^32 - 1) in a header is reported, not overflowed.
    #[test]
    fn huge_dimensions_are_reported_without_overflow() {
        let (mut images, labels) = encode_idx(&tiny());
        for w in 1..4 {
            images[4 * w..4 * w + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        }
        let err = parse_pair(Path::new("imgs"), images, Path::new("l"), &labels).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("4294967295 x 4294967295"), "{text}");
        assert!(text.contains("18446744073709551615 bytes"), "{text}");
    }

    #[test]
    fn bad_magic_truncated_and_count_mismatch() {
        let (images, labels) = encode_idx(&tiny());
        let mut bad = images.clone();
        bad[3] = 0x01;
        let err = parse_pair(Path::new("i"), bad, Path::new("l"), &labels).unwrap_err();
        assert!(
            matches!(err, DataError::BadMagic { found: 0x0801, .. }),
            "{err}"
        );

        let err = parse_pair(
            Path::new("i"),
            images[..10].to_vec(),
            Path::new("l"),
            &labels,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                DataError::Truncated {
                    needed: 16,
                    actual: 10,
                    ..
                }
            ),
            "{err}"
        );

        let err = parse_pair(
            Path::new("i"),
            images[..20].to_vec(),
            Path::new("l"),
            &labels,
        )
        .unwrap_err();
        assert!(matches!(err, DataError::HeaderSizeMismatch { .. }), "{err}");

        let mut short = tiny();
        short.labels.pop();
        short.pixels.truncate(8);
        let (_, two_labels) = encode_idx(&short);
        let err = parse_pair(Path::new("i"), images, Path::new("l"), &two_labels).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::CountMismatch {
                    n_images: 3,
                    n_labels: 2,
                    ..
                }
            ),
            "{err}"
        );
    }
}
