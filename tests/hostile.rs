//! Never silently wrong, never losing a user's file (issue 28): each numbered case of the
//! hostile-user review, as a user meets it. Each test failed before its fix.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::run;
use eidn::data::mnist::encode_idx;
use eidn::data::ImageSet;

fn eidn(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_eidn"));
    c.current_dir(dir)
        .arg("--data-dir")
        .arg(dir.join("no-data"))
        .env_remove("EIDN_DATA_MIRROR")
        .env_remove("EIDN_DATA_DIR");
    c
}

/// `eidn data example` into `dir/name` (circles normal, squares and triangles defects).
fn example(dir: &Path, name: &str, counts: &str) -> PathBuf {
    let (code, _, err) = run(eidn(dir).args(["data", "example", name, "--counts", counts]));
    assert_eq!(code, Some(0), "{err}");
    dir.join(name)
}

fn verify_json(dir: &Path, dataset: &str) -> (Option<i32>, serde_json::Value, String) {
    let (code, out, err) = run(eidn(dir).args(["data", "verify", "--dataset", dataset, "--json"]));
    let v = serde_json::from_str(&out).unwrap_or(serde_json::Value::Null);
    (code, v, err)
}

/// A short training run on `folder:<data>`; extra flags appended.
fn train(dir: &Path, data: &Path, out: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let mut c = eidn(dir);
    c.args(["train", "--dataset"])
        .arg(format!("folder:{}", data.display()))
        .args(["--normal-class", "circle"])
        .args([
            "--epochs",
            "2",
            "--steps-per-epoch",
            "20",
            "--batch-size",
            "32",
        ])
        .args(["--quiet", "--json", "--out", out])
        .args(extra);
    if !extra.contains(&"--anomaly-ratio") {
        c.args(["--anomaly-ratio", "0.05"]);
    }
    run(&mut c)
}

/// Case 1: a symlink loop inside a dataset folder is not followed: the counts stay the
/// folder's own, and the link is named.
#[cfg(unix)]
#[test]
fn case_01_symlink_loops_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let data = example(dir.path(), "parts", "30,6,6");
    std::os::unix::fs::symlink("..", data.join("circle/loop")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", data.join("circle/outside.png")).unwrap();
    let (code, v, err) = verify_json(dir.path(), &format!("folder:{}", data.display()));
    assert_eq!(code, Some(0), "{err}");
    let total = v[0]["train"].as_u64().unwrap() + v[0]["test"].as_u64().unwrap();
    assert_eq!(total, 42, "{v}");
    assert!(
        err.contains("loop") && err.contains("not followed"),
        "{err}"
    );
    assert!(err.contains("outside.png"), "{err}");
}

/// Case 2: the decoded-image cache follows the files' contents: an image replaced by
/// another of the same size (its modification time kept) is decoded again, and flipped
/// bytes in the cache are never read as pixels.
#[test]
fn case_02_the_image_cache_is_keyed_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("bmp");
    for (class, grey) in [("a", 10u8), ("b", 200u8)] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        for i in 0..5 {
            image::GrayImage::from_pixel(8, 8, image::Luma([grey + i]))
                .save(data.join(class).join(format!("{i}.bmp")))
                .unwrap();
        }
    }
    let name = eidn::data::DatasetName::resolve(&format!("folder:{}", data.display())).unwrap();
    let all = |d: &eidn::data::Dataset| {
        let mut v = d.train.pixels.clone();
        v.extend(&d.test.pixels);
        v
    };
    let before = eidn::data::load(name, dir.path(), 0).unwrap();
    assert!(data.join(".eidn-cache.bin").is_file());
    // Same size, other pixels, the old modification time.
    let victim = data.join("a/0.bmp");
    let mtime = std::fs::metadata(&victim).unwrap().modified().unwrap();
    image::GrayImage::from_pixel(8, 8, image::Luma([99u8]))
        .save(&victim)
        .unwrap();
    std::fs::File::options()
        .write(true)
        .open(&victim)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let after = eidn::data::load(name, dir.path(), 0).unwrap();
    assert!(all(&after) != all(&before), "stale pixels were reused");
    assert!(all(&after).contains(&99));
    // Flipped bytes in the cache's payload: rebuilt, not decoded as pixels.
    let cache = data.join(".eidn-cache.bin");
    let mut bytes = std::fs::read(&cache).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x5A;
    std::fs::write(&cache, &bytes).unwrap();
    let again = eidn::data::load(name, dir.path(), 0).unwrap();
    assert!(all(&again) == all(&after), "the damaged cache was read");
}

/// Case 3: a training run that blew up is an error, never "AUC 0.5000", and writes no model.
#[test]
fn case_03_a_diverged_network_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = example(dir.path(), "parts", "60,10,10");
    let (code, stdout, err) = train(dir.path(), &data, "lr1", &["--lr", "1"]);
    assert_eq!(code, Some(2), "{stdout}\n{err}");
    assert!(err.contains("training collapsed"), "{err}");
    assert!(!stdout.contains("auc"), "{stdout}");
    assert!(!dir.path().join("lr1").join("eidn.json").exists());
}

/// Case 4: `evaluate` after images were added to the folder says the data changed.
#[test]
fn case_04_evaluate_refuses_changed_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = example(dir.path(), "parts", "60,10,10");
    let (code, _, err) = train(dir.path(), &data, "m", &[]);
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = run(eidn(dir.path()).args(["evaluate", "--model", "m", "--json"]));
    assert_eq!(code, Some(0), "{out}{err}");
    let extra = example(dir.path(), "more", "10,0,0");
    for f in std::fs::read_dir(extra.join("circle")).unwrap() {
        let f = f.unwrap().path();
        let to = data
            .join("circle")
            .join(format!("new-{}", f.file_name().unwrap().to_string_lossy()));
        std::fs::copy(&f, to).unwrap();
    }
    let (code, out, err) = run(eidn(dir.path()).args(["evaluate", "--model", "m"]));
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("changed since the model was trained"), "{err}");
}

/// Cases 5, 9 and 11: `score` refuses a NaN threshold, and a hand-edited `eidn.json` with
/// reversed calibration scores or an absurd input shape is refused on load, naming the file.
#[test]
fn case_05_09_11_bad_thresholds_and_edited_models_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = example(dir.path(), "parts", "60,10,10");
    let (code, _, err) = train(dir.path(), &data, "m", &[]);
    assert_eq!(code, Some(0), "{err}");
    let circle = data.join("circle/0000.png");
    let score = |extra: &[&str]| {
        let mut c = eidn(dir.path());
        c.args(["score", "--model", "m"]).arg(&circle).args(extra);
        run(&mut c)
    };
    let (code, out, err) = score(&["--threshold", "NaN"]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("not a finite number"), "{err}");

    let config = dir.path().join("m/eidn.json");
    let original = std::fs::read_to_string(&config).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&original).unwrap();
    let q = v["calibration"]["scores"].as_array_mut().unwrap();
    q.reverse();
    std::fs::write(&config, serde_json::to_string(&v).unwrap()).unwrap();
    let (code, _, err) = score(&[]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("eidn.json") && err.contains("scores must be finite and ascending"),
        "{err}"
    );
    v["calibration"]["scores"] = serde_json::json!([]);
    std::fs::write(&config, serde_json::to_string(&v).unwrap()).unwrap();
    let (code, _, err) = score(&["--fpr", "0.05"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("scores must be"), "{err}");

    let mut v: serde_json::Value = serde_json::from_str(&original).unwrap();
    v["encoder"]["input"] = serde_json::json!([1, 100000, 100000]);
    std::fs::write(&config, serde_json::to_string(&v).unwrap()).unwrap();
    let (code, _, err) = score(&[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("eidn.json") && err.contains("input"), "{err}");
}

/// Case 6: new weights beside old metadata (a save killed between its two renames) are
/// refused by `score` and `evaluate`, not scored with the wrong calibration.
#[test]
fn case_06_weights_and_metadata_must_belong_together() {
    let dir = tempfile::tempdir().unwrap();
    let data = example(dir.path(), "parts", "60,10,10");
    for (out, seed) in [("a", "0"), ("b", "1")] {
        let (code, _, err) = train(dir.path(), &data, out, &["--seed", seed]);
        assert_eq!(code, Some(0), "{err}");
    }
    std::fs::copy(
        dir.path().join("b/model.safetensors"),
        dir.path().join("a/model.safetensors"),
    )
    .unwrap();
    let (code, _, err) = run(eidn(dir.path())
        .args(["score", "--model", "a"])
        .arg(data.join("circle")));
    assert_eq!(code, Some(2));
    assert!(
        err.contains("not the weights this config was saved with"),
        "{err}"
    );
    let (code, _, err) = run(eidn(dir.path()).args(["evaluate", "--model", "a"]));
    assert_eq!(code, Some(2));
    assert!(err.contains("model.safetensors"), "{err}");
}

/// Case 7: a ratio that rounds to one anomaly says so, and the effective ratio is recorded.
#[test]
fn case_07_the_effective_anomaly_count_is_printed_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let data = example(dir.path(), "parts", "60,10,10");
    let mut c = eidn(dir.path());
    c.args(["train", "--dataset"])
        .arg(format!("folder:{}", data.display()))
        .args(["--normal-class", "circle", "--anomaly-ratio", "1e-9"])
        .args([
            "--epochs",
            "1",
            "--steps-per-epoch",
            "20",
            "--batch-size",
            "32",
        ])
        .args(["--json", "--out", "m"]);
    let (code, out, err) = run(&mut c);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("+ 1 anomalous images"), "{err}");
    assert!(err.contains("rounds to this count"), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["n_anomalous"], 1);
    assert!(v["effective_anomaly_ratio"].as_f64().unwrap() > 0.02, "{v}");
}

/// Case 8: an IDX label file with one stray label (200) and no classes declared is refused
/// instead of becoming a 201-class dataset.
#[test]
fn case_08_a_stray_idx_label_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let idx = dir.path().join("digits");
    std::fs::create_dir_all(&idx).unwrap();
    for (prefix, n) in [("train", 50), ("t10k", 20)] {
        let mut labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        if prefix == "train" {
            labels[7] = 200;
        }
        let set = ImageSet {
            pixels: (0..n * 784).map(|i| (i % 251) as u8).collect(),
            labels,
            channels: 1,
            height: 28,
            width: 28,
            class_names: Vec::new(),
        };
        let (images, labels) = encode_idx(&set);
        std::fs::write(idx.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
        std::fs::write(idx.join(format!("{prefix}-labels-idx1-ubyte")), labels).unwrap();
    }
    let (code, _, err) = verify_json(dir.path(), &format!("idx:{}", idx.display()));
    assert_ne!(code, Some(0));
    let (_, out, _) = run(eidn(dir.path())
        .args(["data", "verify", "--dataset"])
        .arg(format!("idx:{}", idx.display())));
    assert!(
        (out.clone() + &err).contains("stray") && (out + &err).contains("train-labels"),
        "{err}"
    );
}

/// Case 10: special files named like images are never opened: a FIFO (which would hang)
/// and a link to /dev/zero (which would fill memory).
#[cfg(unix)]
#[test]
fn case_10_special_files_are_skipped_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let data = example(dir.path(), "parts", "30,6,6");
    let fifo = data.join("circle/fifo.png");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    std::os::unix::fs::symlink("/dev/zero", data.join("square/zero.png")).unwrap();
    let (code, v, err) = verify_json(dir.path(), &format!("folder:{}", data.display()));
    assert_eq!(code, Some(0), "{err}");
    let total = v[0]["train"].as_u64().unwrap() + v[0]["test"].as_u64().unwrap();
    assert_eq!(total, 42);
    assert!(
        err.contains("fifo.png") && err.contains("zero.png"),
        "{err}"
    );
    // Given directly to `score`, a special file is an error naming it, not a hang.
    let (code, _, err) = train(dir.path(), &data, "m", &[]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = run(eidn(dir.path()).args(["score", "--model", "m"]).arg(&fifo));
    assert_eq!(code, Some(2));
    assert!(
        err.contains("fifo.png") && err.contains("not a regular file"),
        "{err}"
    );
}

/// Case 12: a class folder whose name is not UTF-8 is named as such.
#[cfg(target_os = "linux")]
#[test]
fn case_12_a_non_utf8_class_folder_is_named() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let data = example(dir.path(), "parts", "30,6,6");
    let odd = data.join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
    std::fs::rename(data.join("square"), &odd).unwrap();
    let (code, _, err) = verify_json(dir.path(), &format!("folder:{}", data.display()));
    assert_ne!(code, Some(0));
    let (_, out, _) = run(eidn(dir.path())
        .args(["data", "verify", "--dataset"])
        .arg(format!("folder:{}", data.display())));
    let all = out + &err;
    assert!(all.contains("not valid UTF-8"), "{all}");
}

/// Case 13: a test split with only the normal class is refused before training, and no
/// model is written.
#[test]
fn case_13_a_test_split_without_anomalies_fails_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let src = example(dir.path(), "src", "40,10,10");
    let data = dir.path().join("split");
    for (split, classes) in [
        ("train", &["circle", "square"][..]),
        ("test", &["circle"][..]),
    ] {
        for class in ["circle", "square"] {
            std::fs::create_dir_all(data.join(split).join(class)).unwrap();
        }
        for class in classes {
            for f in std::fs::read_dir(src.join(class)).unwrap() {
                let f = f.unwrap().path();
                std::fs::copy(
                    &f,
                    data.join(split).join(class).join(f.file_name().unwrap()),
                )
                .unwrap();
            }
        }
    }
    let (code, out, err) = train(dir.path(), &data, "m", &[]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        err.contains("0 anomalous") && err.contains("needs both"),
        "{err}"
    );
    assert!(!dir.path().join("m").exists());
}

/// Cases 14 and 15: one image per class, and an empty normal class, get errors that say so
/// (not "the file is empty", not a Rust struct).
#[test]
fn case_14_15_tiny_and_empty_classes_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let data = example(dir.path(), "one", "1,1,1");
    let (code, _, err) = train(dir.path(), &data, "m", &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("circle: 1") && err.contains("split"), "{err}");

    let (code, _, err) = train(
        dir.path(),
        &example(dir.path(), "p", "40,10,10"),
        "n",
        &["--anomaly-ratio", "5"],
    );
    assert_eq!(code, Some(2));
    assert!(!err.contains("OneVsRest"), "{err}");
    assert!(err.contains("normal class 0"), "{err}");
}

/// Case 16: `--dataset folder:` without a path.
#[test]
fn case_16_an_inline_dataset_without_a_path() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(eidn(dir.path()).args(["data", "verify", "--dataset", "folder:"]));
    assert_eq!(code, Some(2));
    assert!(err.contains("no path after the colon"), "{err}");
}

/// Case 17: a profile that selects no cells is an error, not a run of nothing.
#[test]
fn case_17_profiles_that_select_nothing_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = example(dir.path(), "parts", "30,6,6");
    let profile = |classes: &str| {
        format!(
            "name = \"p\"\ndescription = \"d\"\nseeds = [0]\n[train]\nepochs = 1\nsteps_per_epoch = 5\nbatch_size = 8\n\
             margin = 0.2\nlr = 0.001\nembed_dim = 2\n[[stage]]\nid = \"classes\"\n\
             dataset = \"folder:{}\"\n{classes}ratios = [0.1]\nreducers = [\"eidn\"]\n\
             detectors = [\"origin_distance\"]\n",
            data.display()
        )
    };
    std::fs::write(dir.path().join("empty.toml"), profile("classes = []\n")).unwrap();
    let (code, _, err) =
        run(eidn(dir.path()).args(["reproduce", "--profile", "empty.toml", "--dry-run"]));
    assert_eq!(code, Some(2));
    assert!(err.contains("classes = []"), "{err}");
    std::fs::write(dir.path().join("ok.toml"), profile("")).unwrap();
    let (code, _, err) = run(eidn(dir.path()).args([
        "reproduce",
        "--profile",
        "ok.toml",
        "--only",
        "table1",
        "--dry-run",
    ]));
    assert_eq!(code, Some(2));
    assert!(
        err.contains("no such stage") && err.contains("classes"),
        "{err}"
    );
}

/// Case 18: `report` on an empty folder says there are no records.
#[test]
fn case_18_report_on_an_empty_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("empty")).unwrap();
    let (code, _, err) = run(eidn(dir.path()).args(["report", "--results", "empty", "--out", "r"]));
    assert_eq!(code, Some(2));
    assert!(err.contains("holds no eidn results"), "{err}");
    assert!(!err.contains("older eidn"), "{err}");
}

/// Case 19: `train --out` over an existing model is refused without `--force`.
#[test]
fn case_19_train_never_replaces_a_model_silently() {
    let dir = tempfile::tempdir().unwrap();
    let data = example(dir.path(), "parts", "60,10,10");
    let (code, _, err) = train(dir.path(), &data, "m", &[]);
    assert_eq!(code, Some(0), "{err}");
    let before = std::fs::read(dir.path().join("m/eidn.json")).unwrap();
    let (code, _, err) = train(dir.path(), &data, "m", &["--seed", "3"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("already holds a model") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("m/eidn.json")).unwrap(),
        before
    );
    let (code, _, err) = train(dir.path(), &data, "m", &["--seed", "3", "--force"]);
    assert_eq!(code, Some(0), "{err}");
    assert_ne!(
        std::fs::read(dir.path().join("m/eidn.json")).unwrap(),
        before
    );
}

/// Case 20: `reproduce --out .` and `report --out DIR` never replace a user's README.md.
#[test]
fn case_20_reports_never_overwrite_a_users_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("README.md"), "my notes").unwrap();
    let (code, _, err) = run(eidn(dir.path()).args([
        "reproduce",
        "--profile",
        "ci",
        "--out",
        ".",
        "--results",
        "res",
    ]));
    assert_eq!(code, Some(2));
    assert!(
        err.contains("did not write") && err.contains("--force"),
        "{err}"
    );
    let (code, _, err) = run(eidn(dir.path()).args(["report", "--results", "res", "--out", "."]));
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("README.md")).unwrap(),
        "my notes"
    );
}

/// Case 21: `data example` into a folder that holds files is refused.
#[test]
fn case_21_example_data_never_mixes_into_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = example(dir.path(), "parts", "5,2,2");
    let keep = data.join("circle/0000.png");
    let before = std::fs::read(&keep).unwrap();
    let (code, _, err) = run(eidn(dir.path()).args(["data", "example", "parts", "--seed", "9"]));
    assert_eq!(code, Some(2));
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(std::fs::read(&keep).unwrap(), before);
}

/// The small ones: a warning said once, the declared size named as such, image kinds named
/// in full, one CMYK-like colour image does not make a grey dataset RGB.
#[test]
fn small_messages_are_said_once_and_right() {
    let dir = tempfile::tempdir().unwrap();
    let data = example(dir.path(), "parts", "30,6,6");
    std::fs::write(data.join("circle/notes.txt"), "x").unwrap();
    image::RgbImage::from_pixel(28, 28, image::Rgb([200, 10, 10]))
        .save(data.join("circle/red.png"))
        .unwrap();
    let (code, out, err) = train(dir.path(), &data, "m", &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(err.matches("notes.txt").count(), 1, "{err}");
    assert!(
        err.contains("1 of 43 images are in colour: read as grey"),
        "{err}"
    );
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("m/eidn.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["encoder"]["input"][0], 1);
    let (_, _, err) = run(eidn(dir.path()).args(["score", "--model", "m"]).arg(&data));
    assert!(
        err.contains("not an image file: png, jpg, jpeg, bmp, tif, tiff"),
        "{err}"
    );
}
