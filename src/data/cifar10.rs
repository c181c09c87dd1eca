//! CIFAR-10, binary version (Krizhevsky 2009): five training batches and one test batch of
//! 3073-byte records (a label byte, then 1024 R, 1024 G, 1024 B bytes, each plane row-major
//! 32x32), plus `batches.meta.txt` with the class names.
//!
//! Read from loose batch files (raw or gzipped, in the folder or in its
//! `cifar-10-batches-bin/`), or straight from the official `cifar-10-binary.tar.gz` without
//! unpacking it. A record is already CHW, so loading is a copy that skips the label bytes.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use super::files::{find_first, raw_or_gz, read_maybe_gz, MAX_DECOMPRESSED};
use super::{DataError, Dataset, DatasetName, ImageSet};

pub const SIDE: usize = 32;
pub const CHANNELS: usize = 3;
const IMAGE_BYTES: usize = CHANNELS * SIDE * SIDE;
pub const RECORD_BYTES: usize = 1 + IMAGE_BYTES;
pub const CLASSES: usize = 10;
/// The class names by label, as `batches.meta.txt` lists them.
pub const CLASS_NAMES: [&str; CLASSES] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];
pub const ARCHIVE: &str = "cifar-10-binary.tar.gz";
pub const META: &str = "batches.meta.txt";
const ARCHIVE_FOLDER: &str = "cifar-10-batches-bin";

pub fn train_batches() -> Vec<String> {
    (1..=5).map(|i| format!("data_batch_{i}.bin")).collect()
}

pub const TEST_BATCH: &str = "test_batch.bin";

/// Loads CIFAR-10 from `dir`: loose batches when all six are there, else the archive.
pub fn load(dir: &Path) -> Result<Dataset, DataError> {
    let mut names = train_batches();
    names.push(TEST_BATCH.to_string());
    for folder in [dir.to_path_buf(), dir.join(ARCHIVE_FOLDER)] {
        let found: Vec<Option<PathBuf>> = names
            .iter()
            .map(|n| find_first(&folder, &raw_or_gz(n)))
            .collect();
        if found.iter().all(Option::is_some) {
            let paths: Vec<PathBuf> = found.into_iter().flatten().collect();
            return load_loose(&folder, &paths);
        }
    }
    let archive = dir.join(ARCHIVE);
    if archive.is_file() {
        return load_archive(&archive);
    }
    Err(DataError::Missing {
        dataset: "cifar10",
        what: format!("{ARCHIVE} or data_batch_1..5.bin[.gz] + {TEST_BATCH}[.gz]"),
        dir: dir.to_path_buf(),
        hint: "Run `eidn data fetch --dataset cifar10`.".into(),
    })
}

fn load_loose(folder: &Path, paths: &[PathBuf]) -> Result<Dataset, DataError> {
    let meta_path = folder.join(META);
    let meta = std::fs::read(&meta_path).map_err(|e| DataError::io(&meta_path, e))?;
    let class_names = parse_meta(&meta_path, &meta)?;
    // One thread per batch: gunzip of six 29 MB files is the whole cost of a load.
    let batches: Vec<Result<Vec<u8>, DataError>> = std::thread::scope(|s| {
        let handles: Vec<_> = paths.iter().map(|p| s.spawn(|| read_maybe_gz(p))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("CIFAR-10 reader thread panicked"))
            .collect()
    });
    let mut bytes = Vec::with_capacity(paths.len());
    for (p, b) in paths.iter().zip(batches) {
        bytes.push((p.clone(), b?));
    }
    assemble(bytes, class_names)
}

/// Reads the batches straight out of the official tar.gz.
fn load_archive(archive: &Path) -> Result<Dataset, DataError> {
    let file = std::fs::File::open(archive).map_err(|e| DataError::io(archive, e))?;
    let gz = flate2::read::GzDecoder::new(std::io::BufReader::new(file));
    let mut tar = tar::Archive::new(gz.take(MAX_DECOMPRESSED));
    let gz_err = |error| DataError::Gzip {
        path: archive.to_path_buf(),
        error,
    };
    let mut names = train_batches();
    names.push(TEST_BATCH.to_string());
    let mut batches: Vec<Option<Vec<u8>>> = vec![None; names.len()];
    let mut meta = None;
    for entry in tar.entries().map_err(gz_err)? {
        let mut entry = entry.map_err(gz_err)?;
        let member = entry.path().map_err(gz_err)?.into_owned();
        check_member_path(archive, &member)?;
        let Some(file_name) = member.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let slot = if file_name == META {
            &mut meta
        } else if let Some(i) = names.iter().position(|n| n == file_name) {
            &mut batches[i]
        } else {
            continue;
        };
        // A link or folder under a batch's name would read as an empty batch.
        let kind = entry.header().entry_type();
        if !kind.is_file() {
            return Err(DataError::BadArchiveMember {
                archive: archive.to_path_buf(),
                member: member.display().to_string(),
                message: format!("is a {kind:?} entry, not a regular file"),
            });
        }
        let mut buf = Vec::with_capacity((entry.size() as usize).min(64 << 20));
        entry.read_to_end(&mut buf).map_err(gz_err)?;
        *slot = Some(buf);
    }
    let missing = |what: &str| DataError::Missing {
        dataset: "cifar10",
        what: format!("member {what}"),
        dir: archive.to_path_buf(),
        hint: "The archive is incomplete: delete it and run `eidn data fetch --dataset cifar10`."
            .into(),
    };
    let meta = meta.ok_or_else(|| missing(META))?;
    let class_names = parse_meta(&archive.join(META), &meta)?;
    let mut bytes = Vec::with_capacity(names.len());
    for (name, b) in names.iter().zip(batches) {
        let b = b.ok_or_else(|| missing(name))?;
        bytes.push((archive.join(name), b));
    }
    assemble(bytes, class_names)
}

/// Refuses members that would land outside the archive's folder if it were unpacked.
pub(crate) fn check_member_path(archive: &Path, member: &Path) -> Result<(), DataError> {
    let escapes = member.components().any(|c| {
        matches!(
            c,
            Component::ParentDir | Component::RootDir | Component::Prefix(_)
        )
    });
    if escapes {
        return Err(DataError::UnsafeArchivePath {
            archive: archive.to_path_buf(),
            member: member.display().to_string(),
        });
    }
    Ok(())
}

/// Five training batches then the test batch, each `(path, bytes)`.
fn assemble(
    batches: Vec<(PathBuf, Vec<u8>)>,
    class_names: Vec<String>,
) -> Result<Dataset, DataError> {
    let (test_path, test_bytes) = batches.last().expect("six batches");
    let test = parse_records(&[(test_path.clone(), test_bytes.as_slice())], &class_names)?;
    let train_parts: Vec<(PathBuf, &[u8])> = batches[..batches.len() - 1]
        .iter()
        .map(|(p, b)| (p.clone(), b.as_slice()))
        .collect();
    let train = parse_records(&train_parts, &class_names)?;
    Ok(Dataset {
        name: DatasetName::Cifar10,
        train,
        test,
    })
}

/// Parses concatenated batches of 3073-byte records.
pub(crate) fn parse_records(
    parts: &[(PathBuf, &[u8])],
    class_names: &[String],
) -> Result<ImageSet, DataError> {
    let total: usize = parts.iter().map(|(_, b)| b.len() / RECORD_BYTES).sum();
    let mut pixels = Vec::with_capacity(total * IMAGE_BYTES);
    let mut labels = Vec::with_capacity(total);
    for (path, bytes) in parts {
        if bytes.is_empty() {
            return Err(DataError::Empty {
                path: path.clone(),
                what: "CIFAR-10 records",
            });
        }
        if bytes.len() % RECORD_BYTES != 0 {
            return Err(DataError::RecordSize {
                path: path.clone(),
                len: bytes.len() as u64,
                record_size: RECORD_BYTES,
            });
        }
        for (index, record) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
            if record[0] as usize >= class_names.len() {
                return Err(DataError::BadLabel {
                    path: path.clone(),
                    index,
                    label: record[0],
                    classes: class_names.len(),
                });
            }
            labels.push(record[0]);
            pixels.extend_from_slice(&record[1..]);
        }
    }
    Ok(ImageSet {
        pixels,
        labels,
        channels: CHANNELS,
        height: SIDE,
        width: SIDE,
        class_names: class_names.to_vec(),
    })
}

/// `batches.meta.txt`: one class name per line, in label order.
pub(crate) fn parse_meta(path: &Path, bytes: &[u8]) -> Result<Vec<String>, DataError> {
    let names: Vec<String> = String::from_utf8_lossy(bytes)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if names.len() != CLASSES {
        return Err(DataError::BadClassNames {
            path: path.to_path_buf(),
            expected: CLASSES,
            found: names.len(),
        });
    }
    Ok(names)
}

/// Encodes an image set as one binary batch: used by tests and benches to build fixtures.
pub fn encode_batch(set: &ImageSet) -> Vec<u8> {
    let mut out = Vec::with_capacity(set.len() * RECORD_BYTES);
    for i in 0..set.len() {
        out.push(set.labels[i]);
        out.extend_from_slice(set.image(i));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        (0..10).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn records_round_trip_and_errors() {
        let set = ImageSet {
            pixels: (0..2 * IMAGE_BYTES).map(|v| (v % 251) as u8).collect(),
            labels: vec![7, 2],
            channels: 3,
            height: 32,
            width: 32,
            class_names: names(),
        };
        let bytes = encode_batch(&set);
        let parsed = parse_records(&[(PathBuf::from("b"), &bytes)], &names()).unwrap();
        assert_eq!(parsed, set);

        let err = parse_records(
            &[(PathBuf::from("short.bin"), &bytes[..RECORD_BYTES + 5])],
            &names(),
        )
        .unwrap_err();
        assert!(matches!(err, DataError::RecordSize { len, .. } if len == RECORD_BYTES as u64 + 5));
        assert!(err.to_string().contains("short.bin"));

        let mut bad = bytes.clone();
        bad[RECORD_BYTES] = 10;
        let err = parse_records(&[(PathBuf::from("b"), &bad)], &names()).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::BadLabel {
                    index: 1,
                    label: 10,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn meta_needs_ten_names() {
        let ok = b"airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";
        assert_eq!(parse_meta(Path::new("m"), ok).unwrap()[5], "dog");
        let err = parse_meta(Path::new("m"), b"a\nb\n").unwrap_err();
        assert!(matches!(err, DataError::BadClassNames { found: 2, .. }));
    }

    /// Issue 10 item 5: a member named like a batch that is a link or a folder is an error
    /// naming it, not an empty batch.
    #[test]
    fn batch_members_must_be_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        for kind in [tar::EntryType::Symlink, tar::EntryType::Directory] {
            let archive = dir.path().join(ARCHIVE);
            let gz = flate2::write::GzEncoder::new(
                std::fs::File::create(&archive).unwrap(),
                flate2::Compression::fast(),
            );
            let mut builder = tar::Builder::new(gz);
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_size(0);
            if kind == tar::EntryType::Symlink {
                builder
                    .append_link(
                        &mut header,
                        "cifar-10-batches-bin/test_batch.bin",
                        "/dev/null",
                    )
                    .unwrap();
            } else {
                builder
                    .append_data(&mut header, "cifar-10-batches-bin/test_batch.bin", &[][..])
                    .unwrap();
            }
            builder.into_inner().unwrap().finish().unwrap();
            let err = load(dir.path()).unwrap_err();
            assert!(
                matches!(err, DataError::BadArchiveMember { .. }),
                "{kind:?}: {err}"
            );
            assert!(err.to_string().contains("test_batch.bin"), "{err}");
        }
    }

    #[test]
    fn member_paths_that_escape_are_refused() {
        let a = Path::new("x.tar.gz");
        assert!(check_member_path(a, Path::new("cifar-10-batches-bin/data_batch_1.bin")).is_ok());
        for bad in ["../evil.bin", "a/../../b", "/etc/passwd"] {
            assert!(
                matches!(
                    check_member_path(a, Path::new(bad)),
                    Err(DataError::UnsafeArchivePath { .. })
                ),
                "{bad}"
            );
        }
    }
}
