//! MNIST in its original IDX format (LeCun et al.), gzipped or raw.
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

pub fn class_names() -> Vec<String> {
    (0..10).map(|d| d.to_string()).collect()
}

/// Loads MNIST from `dir` (the folder holding the four IDX files).
pub fn load(dir: &Path) -> Result<Dataset, DataError> {
    let paths = PARTS
        .iter()
        .map(|stems| locate(dir, stems))
        .collect::<Result<Vec<_>, _>>()?;
    // Train and test decompress on two threads: gunzip dominates the load time.
    let (train, test) = std::thread::scope(|s| {
        let train = s.spawn(|| read_pair(&paths[0], &paths[1]));
        let test = read_pair(&paths[2], &paths[3]);
        (train.join().expect("MNIST reader thread panicked"), test)
    });
    Ok(Dataset {
        name: DatasetName::Mnist,
        train: train?,
        test: test?,
    })
}

fn locate(dir: &Path, stems: &[&str; 2]) -> Result<PathBuf, DataError> {
    let names: Vec<String> = stems.iter().flat_map(|s| raw_or_gz(s)).collect();
    find_first(dir, &names).ok_or_else(|| DataError::Missing {
        dataset: "mnist",
        what: format!("{}[.gz]", stems[0]),
        dir: dir.to_path_buf(),
        hint: "Run `eidn data fetch --dataset mnist`.".into(),
    })
}

fn read_pair(images_path: &Path, labels_path: &Path) -> Result<ImageSet, DataError> {
    let images = read_maybe_gz(images_path)?;
    let labels = read_maybe_gz(labels_path)?;
    let set = parse_pair(images_path, images, labels_path, &labels)?;
    set.check(labels_path)?;
    Ok(set)
}

/// Parses an IDX image file and its label file into an [`ImageSet`].
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
        class_names: class_names(),
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
            class_names: class_names(),
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
