// Whether a built-in dataset's files are in a folder, by name alone (no hashing, no
// decoding): what `build.rs` and the tests ask before they use the real data. A folder
// without the files (a download that failed or was stopped) is not a dataset. Plain std,
// no crate paths: `build.rs` includes this file as it is.

/// Whether `dir` holds the files of the built-in dataset `name` ("mnist" or "cifar10") in a
/// layout eidn reads: MNIST's four IDX files (raw or gzipped, either spelling); CIFAR-10's
/// archive, or its six batches loose (raw or gzipped, here or in `cifar-10-batches-bin/`).
pub fn files_present(dir: &std::path::Path, name: &str) -> bool {
    let file = |folder: &std::path::Path, stem: &str| {
        [stem.to_string(), format!("{stem}.gz")]
            .iter()
            .any(|f| folder.join(f).is_file())
    };
    match name {
        "mnist" => [
            ["train-images-idx3-ubyte", "train-images.idx3-ubyte"],
            ["train-labels-idx1-ubyte", "train-labels.idx1-ubyte"],
            ["t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"],
            ["t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"],
        ]
        .iter()
        .all(|stems| stems.iter().any(|s| file(dir, s))),
        "cifar10" => {
            let batches = [
                "data_batch_1.bin",
                "data_batch_2.bin",
                "data_batch_3.bin",
                "data_batch_4.bin",
                "data_batch_5.bin",
                "test_batch.bin",
            ];
            dir.join("cifar-10-binary.tar.gz").is_file()
                || [dir.to_path_buf(), dir.join("cifar-10-batches-bin")]
                    .iter()
                    .any(|folder| batches.iter().all(|b| file(folder, b)))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_is_not_a_dataset_without_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(!files_present(d, "mnist") && !files_present(d, "cifar10"));
        for f in [
            "train-images-idx3-ubyte.gz",
            "train-labels.idx1-ubyte",
            "t10k-images-idx3-ubyte",
        ] {
            std::fs::write(d.join(f), b"x").unwrap();
        }
        assert!(!files_present(d, "mnist"), "three of four files");
        std::fs::write(d.join("t10k-labels-idx1-ubyte.gz"), b"x").unwrap();
        assert!(files_present(d, "mnist"));
        std::fs::write(d.join("cifar-10-binary.tar.gz.part"), b"x").unwrap();
        assert!(
            !files_present(d, "cifar10"),
            "a partial download is not the archive"
        );
        std::fs::create_dir(d.join("cifar-10-batches-bin")).unwrap();
        for b in 1..=5 {
            std::fs::write(
                d.join(format!("cifar-10-batches-bin/data_batch_{b}.bin")),
                b"x",
            )
            .unwrap();
        }
        assert!(!files_present(d, "cifar10"));
        std::fs::write(d.join("cifar-10-batches-bin/test_batch.bin.gz"), b"x").unwrap();
        assert!(files_present(d, "cifar10"));
    }
}
