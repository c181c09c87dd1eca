//! `eidn score` end to end on real MNIST: `train` calibrates a threshold, `score` reads PNG
//! files of test images and gives each the score the model gives the same pixels, flags
//! anomalies at the recorded threshold, names an unreadable file and scores the rest.

mod common;

use std::path::Path;
use std::process::Command;

use candle_core::Device;
use eidn::data::{load, DatasetName};
use eidn::model::{CalibrationSource, Eidn};

fn eidn(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_eidn"));
    c.env("EIDN_DATA_DIR", data);
    c
}

#[test]
#[cfg_attr(
    eidn_no_mnist,
    ignore = "needs the real MNIST: set EIDN_DATA_DIR (e.g. ../shared/datasets)"
)]
fn train_calibrates_and_score_flags_anomalies_in_image_files() {
    let Some(data) = common::real_data_dir("mnist") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("model");
    let status = eidn(&data)
        .args(["train", "--dataset", "mnist", "--normal-class", "0"])
        .args([
            "--anomaly-ratio",
            "0.05",
            "--epochs",
            "2",
            "--steps-per-epoch",
            "60",
        ])
        .args(["--batch-size", "32", "--fpr", "0.05", "--quiet", "--out"])
        .arg(&model_dir)
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let model = Eidn::load(&model_dir, &Device::Cpu).unwrap();
    let c = model.config.calibration.clone().expect("train calibrates");
    assert_eq!(c.fpr, 0.05);
    // Calibrated on a tenth of the 5,923 normal training images, held out of training.
    assert_eq!(c.scores.len(), 592);
    assert_eq!(c.source, CalibrationSource::HeldOut { share: 0.1 });
    assert_eq!(model.config.n_normal, 5923 - 592);
    assert!(c.threshold_at(0.5).unwrap() < c.threshold, "{c:?}");

    // 30 normal (0) and 30 anomalous (7) test images as PNG, a broken PNG and a text file.
    let mnist = load(DatasetName::Mnist, &data, 0).unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir_all(images.join("sub")).unwrap();
    let mut picked = Vec::new();
    for (label, n) in [(0u8, 30), (7u8, 30)] {
        let idx: Vec<usize> = (0..mnist.test.len())
            .filter(|&i| mnist.test.labels[i] == label)
            .take(n)
            .collect();
        for i in idx {
            let name = images.join("sub").join(format!("{label}-{i:05}.png"));
            image::GrayImage::from_raw(28, 28, mnist.test.image(i).to_vec())
                .unwrap()
                .save(&name)
                .unwrap();
            picked.push((name, i, label));
        }
    }
    std::fs::write(images.join("broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    std::fs::write(images.join("notes.txt"), "not an image").unwrap();

    let run = |format: &str| {
        let out = eidn(&data)
            .args(["score", "--quiet", "--format", format, "--model"])
            .arg(&model_dir)
            .arg(&images)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (code, csv, err) = run("csv");
    assert_eq!(
        code,
        Some(2),
        "an unreadable image is an error at the end: {err}"
    );
    assert!(
        err.contains("broken.png") && err.contains("1 of 61 images"),
        "{err}"
    );
    assert!(
        err.contains("skipped") && err.contains("notes.txt"),
        "{err}"
    );
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(csv.lines().next(), Some("path,score,percentile,verdict"));
    assert_eq!(rows.len(), 60, "{csv}");

    // Same pixels, same score: the PNGs score as the model scores the test images (to f32
    // rounding: the matrix products block differently for a batch of 60 and of 10,000).
    let reference = model.score(&mnist.test).unwrap();
    let mut flagged = [0usize; 2];
    for (path, i, label) in &picked {
        let row = rows
            .iter()
            .find(|r| r.starts_with(&path.display().to_string()))
            .unwrap_or_else(|| panic!("{} not scored", path.display()));
        let fields: Vec<&str> = row.split(',').collect();
        let score: f64 = fields[1].parse().unwrap();
        assert!(
            (score - reference[*i]).abs() < 1e-6,
            "{row} vs {}",
            reference[*i]
        );
        let percentile: f64 = fields[2].parse().unwrap();
        assert!((percentile - c.percentile(score)).abs() <= 0.05, "{row}");
        assert_eq!(fields[3] == "anomaly", score > c.threshold, "{row}");
        assert!(
            fields[3] == "normal" || percentile >= 95.0,
            "{row}: flagged at fpr 0.05"
        );
        flagged[usize::from(*label == 7)] += usize::from(fields[3] == "anomaly");
    }
    assert!(
        flagged[1] >= 20 && flagged[0] <= 10,
        "flagged normal/anomalous: {flagged:?}"
    );

    // JSON lines, and the same output on a second run; --threshold overrides.
    let (_, json, _) = run("json");
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert!(
        first["score"].is_f64() && first["verdict"].is_string(),
        "{first}"
    );
    assert_eq!(run("csv").1, csv, "scores differ between runs");
    let out = eidn(&data)
        .args([
            "score",
            "--quiet",
            "--format",
            "csv",
            "--threshold",
            "1e9",
            "--model",
        ])
        .arg(&model_dir)
        .arg(images.join("sub"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let all_normal = String::from_utf8(out.stdout).unwrap();
    assert_eq!(all_normal.matches(",normal").count(), 60, "{all_normal}");
}

/// Issue 27 item 3: the threshold `train` records holds out of sample. On a generated folder
/// dataset (1,500 good parts, 80/20 split: 1,200 to train of which a fifth is held out, 300
/// to test), the share of the test's good parts flagged at `--fpr 0.05` is within 0.035 of
/// 0.05 (the binomial spread over 300 test images is 0.013, the calibration's over 240 about
/// as much: 0.035 is nearly two of both together).
#[test]
fn held_out_calibration_flags_the_requested_share_of_new_normal_images() {
    let dir = tempfile::tempdir().unwrap();
    let parts = dir.path().join("parts");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_eidn"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    run(&[
        "data",
        "example",
        parts.to_str().unwrap(),
        "--counts",
        "1500,40,40",
    ]);
    let dataset = format!("folder:{}", parts.display());
    let json = run(&[
        "train",
        "--dataset",
        &dataset,
        "--normal-class",
        "circle",
        "--anomaly-ratio",
        "0.05",
        "--epochs",
        "3",
        "--steps-per-epoch",
        "40",
        "--batch-size",
        "64",
        "--fpr",
        "0.05",
        "--calibration-share",
        "0.2",
        "--quiet",
        "--json",
        "--out",
        dir.path().join("model").to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["n_calibration"], 240, "{v}");
    assert_eq!(v["calibration"]["kind"], "held_out", "{v}");
    assert_eq!(v["requested_fpr"], 0.05);
    let fpr = v["test_fpr"].as_f64().unwrap();
    assert!(
        (fpr - 0.05).abs() <= 0.035,
        "test FPR {fpr} at --fpr 0.05: {v}"
    );
    assert!(v["test_tpr"].as_f64().unwrap() > 0.5, "{v}");
}
