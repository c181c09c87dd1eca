//! Loaders on fixtures written to disk: raw and gzipped MNIST, loose and archived CIFAR-10,
//! and every kind of bad file, each giving an error that names the file.

use std::io::Write;
use std::path::{Path, PathBuf};

use eidn::data::cifar10::{encode_batch, train_batches, ARCHIVE, META, TEST_BATCH};
use eidn::data::mnist::encode_idx;
use eidn::data::{load_cifar10, load_mnist, DataError, ImageSet};

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn synthetic(n: usize, c: usize, side: usize, classes: usize, salt: u8) -> ImageSet {
    ImageSet {
        pixels: (0..n * c * side * side)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt))
            .collect(),
        labels: (0..n).map(|i| (i % classes) as u8).collect(),
        channels: c,
        height: side,
        width: side,
        class_names: (0..classes).map(|i| i.to_string()).collect(),
    }
}

const MNIST_STEMS: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Writes a small MNIST (train 20, test 10) into `dir`, gzipped or raw.
fn write_mnist(dir: &Path, gzipped: bool) -> (ImageSet, ImageSet) {
    let train = synthetic(20, 1, 28, 10, 1);
    let test = synthetic(10, 1, 28, 10, 2);
    let (ti, tl) = encode_idx(&train);
    let (si, sl) = encode_idx(&test);
    for (stem, bytes) in MNIST_STEMS.iter().zip([ti, tl, si, sl]) {
        let (name, bytes) = if gzipped {
            (format!("{stem}.gz"), gz(&bytes))
        } else {
            (stem.to_string(), bytes)
        };
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    (train, test)
}

fn cifar_names() -> Vec<String> {
    [
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
    ]
    .map(String::from)
    .to_vec()
}

fn cifar_parts() -> Vec<(String, ImageSet)> {
    let mut parts: Vec<(String, ImageSet)> = train_batches()
        .into_iter()
        .enumerate()
        .map(|(i, n)| (n, synthetic(4, 3, 32, 10, i as u8)))
        .collect();
    parts.push((TEST_BATCH.to_string(), synthetic(3, 3, 32, 10, 9)));
    for (_, p) in parts.iter_mut() {
        p.class_names = cifar_names();
    }
    parts
}

fn meta() -> String {
    cifar_names().join("\n") + "\n"
}

fn write_cifar_loose(dir: &Path, gzipped: bool) {
    for (name, set) in cifar_parts() {
        let bytes = encode_batch(&set);
        if gzipped {
            std::fs::write(dir.join(format!("{name}.gz")), gz(&bytes)).unwrap();
        } else {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    std::fs::write(dir.join(META), meta()).unwrap();
}

/// A tar.gz shaped like the official one, plus an optional extra member with a raw name.
fn write_cifar_archive(path: &Path, extra_member: Option<&str>) {
    let file = std::fs::File::create(path).unwrap();
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        file,
        flate2::Compression::fast(),
    ));
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        // Write the name bytes directly: tar's own setter refuses '..', and we need to
        // build exactly such a hostile archive.
        let old = h.as_old_mut();
        old.name.fill(0);
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        builder.append(&h, data).unwrap();
    };
    if let Some(m) = extra_member {
        add(m, b"nope");
    }
    add("cifar-10-batches-bin/readme.html", b"<html></html>");
    add(&format!("cifar-10-batches-bin/{META}"), meta().as_bytes());
    for (name, set) in cifar_parts() {
        add(&format!("cifar-10-batches-bin/{name}"), &encode_batch(&set));
    }
    builder.into_inner().unwrap().finish().unwrap();
}

fn expected_cifar() -> (ImageSet, ImageSet) {
    let parts = cifar_parts();
    let mut train = parts[0].1.clone();
    for (_, p) in &parts[1..5] {
        train.pixels.extend_from_slice(&p.pixels);
        train.labels.extend_from_slice(&p.labels);
    }
    (train, parts[5].1.clone())
}

#[test]
fn mnist_gzipped_and_raw_load_identically() {
    for gzipped in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let (train, test) = write_mnist(dir.path(), gzipped);
        let d = load_mnist(dir.path()).unwrap();
        assert_eq!(d.train, train);
        assert_eq!(d.test, test);
    }
}

#[test]
fn cifar_loose_gzipped_and_archive_load_identically() {
    let (train, test) = expected_cifar();
    for mode in ["raw", "gz", "archive"] {
        let dir = tempfile::tempdir().unwrap();
        match mode {
            "raw" => write_cifar_loose(dir.path(), false),
            "gz" => write_cifar_loose(dir.path(), true),
            _ => write_cifar_archive(&dir.path().join(ARCHIVE), None),
        }
        let d = load_cifar10(dir.path()).unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert_eq!(d.train, train, "{mode}");
        assert_eq!(d.test, test, "{mode}");
    }
}

#[test]
fn archive_member_escaping_the_target_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join(ARCHIVE);
    write_cifar_archive(&archive, Some("../../etc/evil.bin"));
    let err = load_cifar10(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::UnsafeArchivePath { .. }), "{err}");
    assert!(
        err.to_string().contains(ARCHIVE) && err.to_string().contains("evil"),
        "{err}"
    );
}

/// Asserts `err` is the expected variant and names `file`.
fn names_file(err: &DataError, file: &Path) {
    let name = file.file_name().unwrap().to_string_lossy();
    assert!(
        err.to_string().contains(name.as_ref()),
        "error does not name {name}: {err}"
    );
}

fn mnist_with(mutate: impl FnOnce(&Path) -> PathBuf) -> (DataError, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    write_mnist(dir.path(), false);
    let file = mutate(dir.path());
    (load_mnist(dir.path()).unwrap_err(), file)
}

#[test]
fn mnist_bad_files_give_errors_naming_the_file() {
    // Bad magic number.
    let (err, f) = mnist_with(|d| {
        let p = d.join(MNIST_STEMS[0]);
        let mut b = std::fs::read(&p).unwrap();
        b[2] = 0x09;
        std::fs::write(&p, b).unwrap();
        p
    });
    assert!(matches!(err, DataError::BadMagic { .. }), "{err}");
    names_file(&err, &f);

    // Truncated inside the header.
    let (err, f) = mnist_with(|d| {
        let p = d.join(MNIST_STEMS[2]);
        std::fs::write(&p, [0, 0, 8, 3, 0, 0]).unwrap();
        p
    });
    assert!(matches!(err, DataError::Truncated { .. }), "{err}");
    names_file(&err, &f);

    // Truncated body: the header claims more bytes than the file holds.
    let (err, f) = mnist_with(|d| {
        let p = d.join(MNIST_STEMS[0]);
        let b = std::fs::read(&p).unwrap();
        std::fs::write(&p, &b[..b.len() - 100]).unwrap();
        p
    });
    assert!(matches!(err, DataError::HeaderSizeMismatch { .. }), "{err}");
    names_file(&err, &f);

    // A header claiming 2^32-1 images of 65535x65535: refused without allocating.
    let (err, f) = mnist_with(|d| {
        let p = d.join(MNIST_STEMS[0]);
        let mut b = std::fs::read(&p).unwrap();
        b[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        b[8..12].copy_from_slice(&65535u32.to_be_bytes());
        b[12..16].copy_from_slice(&65535u32.to_be_bytes());
        std::fs::write(&p, b).unwrap();
        p
    });
    assert!(matches!(err, DataError::HeaderSizeMismatch { .. }), "{err}");
    names_file(&err, &f);

    // Image and label counts disagree.
    let (err, f) = mnist_with(|d| {
        let p = d.join(MNIST_STEMS[3]);
        let (_, labels) = encode_idx(&synthetic(7, 1, 28, 10, 0));
        std::fs::write(&p, labels).unwrap();
        d.join(MNIST_STEMS[2])
    });
    assert!(
        matches!(
            err,
            DataError::CountMismatch {
                n_images: 10,
                n_labels: 7,
                ..
            }
        ),
        "{err}"
    );
    names_file(&err, &f);

    // A label outside 0..9.
    let (err, f) = mnist_with(|d| {
        let p = d.join(MNIST_STEMS[1]);
        let mut b = std::fs::read(&p).unwrap();
        b[8 + 3] = 12;
        std::fs::write(&p, b).unwrap();
        p
    });
    assert!(
        matches!(
            err,
            DataError::BadLabel {
                index: 3,
                label: 12,
                ..
            }
        ),
        "{err}"
    );
    names_file(&err, &f);

    // Unreadable gzip: right magic bytes, garbage stream.
    let (err, f) = mnist_with(|d| {
        std::fs::remove_file(d.join(MNIST_STEMS[1])).unwrap();
        let p = d.join(format!("{}.gz", MNIST_STEMS[1]));
        let mut b = gz(&std::fs::read(d.join(MNIST_STEMS[3])).unwrap());
        let n = b.len();
        b[12..n - 8].fill(0xAB);
        std::fs::write(&p, b).unwrap();
        p
    });
    assert!(matches!(err, DataError::Gzip { .. }), "{err}");
    names_file(&err, &f);

    // A file missing altogether: says which and how to get it.
    let (err, _) = mnist_with(|d| {
        let p = d.join(MNIST_STEMS[2]);
        std::fs::remove_file(&p).unwrap();
        p
    });
    assert!(matches!(err, DataError::Missing { .. }), "{err}");
    assert!(err.to_string().contains("t10k-images-idx3-ubyte"), "{err}");
    assert!(err.to_string().contains("eidn data fetch"), "{err}");
}

#[test]
fn cifar_bad_files_give_errors_naming_the_file() {
    // Wrong record size.
    let dir = tempfile::tempdir().unwrap();
    write_cifar_loose(dir.path(), false);
    let p = dir.path().join("data_batch_3.bin");
    let mut b = std::fs::read(&p).unwrap();
    b.truncate(b.len() - 1);
    std::fs::write(&p, b).unwrap();
    let err = load_cifar10(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::RecordSize { .. }), "{err}");
    names_file(&err, &p);

    // Bad label byte.
    let dir = tempfile::tempdir().unwrap();
    write_cifar_loose(dir.path(), false);
    let p = dir.path().join(TEST_BATCH);
    let mut b = std::fs::read(&p).unwrap();
    b[3073] = 200;
    std::fs::write(&p, b).unwrap();
    let err = load_cifar10(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::BadLabel {
                index: 1,
                label: 200,
                ..
            }
        ),
        "{err}"
    );
    names_file(&err, &p);

    // Class-name file with the wrong number of names.
    let dir = tempfile::tempdir().unwrap();
    write_cifar_loose(dir.path(), true);
    let p = dir.path().join(META);
    std::fs::write(&p, "cat\ndog\n").unwrap();
    let err = load_cifar10(dir.path()).unwrap_err();
    assert!(
        matches!(err, DataError::BadClassNames { found: 2, .. }),
        "{err}"
    );
    names_file(&err, &p);

    // A truncated archive: the gzip stream ends early.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(ARCHIVE);
    write_cifar_archive(&p, None);
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..b.len() / 2]).unwrap();
    let err = load_cifar10(dir.path()).unwrap_err();
    assert!(
        matches!(err, DataError::Gzip { .. } | DataError::Missing { .. }),
        "{err}"
    );
    names_file(&err, &p);

    // Nothing there at all.
    let dir = tempfile::tempdir().unwrap();
    let err = load_cifar10(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::Missing { .. }), "{err}");
}
