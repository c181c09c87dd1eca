//! The MVTec AD layout and the few-shot protocols on a generated tree (circles good, squares
//! and triangles the defect types, a `ground_truth/` folder to skip): `data verify` counts
//! per split and type, `train --shots` labels test anomalies and takes them out of the test
//! set, `reproduce` runs both few-shot protocols with the heads and the report shows them,
//! per defect type too; bad trees and impossible protocols are refused, naming the folder.

mod common;

use std::path::Path;

use common::run;
use eidn::data::example;

use common::eidn_in as eidn;

#[test]
fn bad_mvtec_trees_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let verify = |root: &Path| {
        run(eidn(dir.path(), &models)
            .args(["data", "verify", "--dataset"])
            .arg(format!("mvtec:{}", root.display())))
    };
    // No train/good.
    let a = dir.path().join("a");
    example::write_mvtec(&a, [4, 2, 2, 2], 1).unwrap();
    std::fs::remove_dir_all(a.join("train/good")).unwrap();
    let (code, out, err) = verify(&a);
    assert_ne!(code, Some(0));
    assert!(format!("{out}{err}").contains("train/good"), "{out}{err}");
    // No defect type.
    let b = dir.path().join("b");
    example::write_mvtec(&b, [4, 2, 0, 0], 1).unwrap();
    for t in ["square", "triangle"] {
        std::fs::remove_dir_all(b.join("test").join(t)).unwrap();
    }
    let (code, out, err) = verify(&b);
    assert_ne!(code, Some(0));
    assert!(
        format!("{out}{err}").contains("no defect type"),
        "{out}{err}"
    );
    // A training image that is also a test image.
    let c = dir.path().join("c");
    example::write_mvtec(&c, [4, 2, 2, 2], 1).unwrap();
    std::fs::copy(c.join("train/good/001.png"), c.join("test/square/dup.png")).unwrap();
    let (code, out, err) = verify(&c);
    assert_ne!(code, Some(0));
    let all = format!("{out}{err}");
    assert!(
        all.contains("dup.png") && all.contains("same file"),
        "{all}"
    );
    // More shots than a type has: refused before training.
    let d = dir.path().join("d");
    example::write_mvtec(&d, [30, 10, 3, 3], 1).unwrap();
    let (code, _, err) = run(eidn(dir.path(), &models)
        .args(["train", "--dataset"])
        .arg(format!("mvtec:{}", d.display()))
        .args([
            "--normal-class",
            "good",
            "--shots",
            "7",
            "--epochs",
            "1",
            "--out",
        ])
        .arg(dir.path().join("m")));
    assert_ne!(code, Some(0));
    assert!(
        err.contains("needs 7 labelled anomalies") && err.contains("test split has only 6"),
        "{err}"
    );
    // Without --shots an MVTec tree has no labelled anomaly to train on: said so.
    let (code, _, err) = run(eidn(dir.path(), &models)
        .args(["train", "--dataset"])
        .arg(format!("mvtec:{}", d.display()))
        .args(["--normal-class", "good", "--out"])
        .arg(dir.path().join("m")));
    assert_ne!(code, Some(0));
    assert!(err.contains("--shots"), "{err}");
}

#[test]
fn an_mvtec_tree_through_verify_train_reproduce_and_report() {
    let Some((dir, models)) = common::temp_with_weights() else {
        return;
    };
    // A parent folder of two categories, declared once: one dataset per category.
    let parts = dir.path().join("parts");
    example::write_mvtec(&parts.join("bolt"), [80, 30, 12, 12], 1).unwrap();
    example::write_mvtec(&parts.join("nut"), [40, 10, 6, 6], 2).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("datasets.toml"),
        format!(
            "[[dataset]]\nname = \"parts\"\nkind = \"mvtec\"\npath = \"{}\"\n",
            parts.display()
        ),
    )
    .unwrap();

    let verify = |name: &str| {
        let (code, out, err) =
            run(eidn(&data, &models).args(["data", "verify", "--json", "--dataset", name]));
        assert_eq!(code, Some(0), "{out}{err}");
        out
    };
    let bolt = verify("parts-bolt");
    for want in [
        "\"good\"",
        "\"square\"",
        "\"triangle\"",
        "[\n      30,\n      12,\n      12\n    ]",
    ] {
        assert!(bolt.contains(want), "{want} not in {bolt}");
    }
    assert!(!bolt.contains("ground_truth"), "{bolt}");
    assert!(verify("parts-nut").contains("\"parts-nut\""));

    // Five labelled test anomalies: trained on, and no longer tested on.
    let model = dir.path().join("knn");
    let (code, out, err) = run(eidn(&data, &models)
        .args(["train", "--dataset", "parts-bolt", "--normal-class", "good"])
        .args([
            "--shots",
            "5",
            "--method",
            "pretrained_logreg",
            "--quiet",
            "--json",
            "--out",
        ])
        .arg(&model));
    assert_eq!(code, Some(0), "{err}");
    let trained: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(trained["n_test"], 30 + 24 - 5, "{out}");
    assert!(trained["auc"].as_f64().unwrap() > 0.8, "{out}");
    let (code, again, err) = run(eidn(&data, &models)
        .args(["evaluate", "--json", "--model"])
        .arg(&model));
    assert_eq!(code, Some(0), "{err}");
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["auc"], trained["auc"]);

    // Both few-shot protocols with the label-free, the supervised and the head methods.
    let profile = dir.path().join("few.toml");
    std::fs::write(
        &profile,
        r#"name = "few"
description = "both few-shot protocols"
seeds = [0]
[train]
epochs = 1
steps_per_epoch = 5
batch_size = 16
[[stage]]
id = "few_shot"
dataset = "parts-bolt"
shots = [1, 5]
reducers = ["pretrained", "pretrained_logreg", "head_devnet", "pretrained_knn_logreg"]
detectors = ["origin_distance", "knn"]
[[stage]]
id = "few_shot_hard"
dataset = "parts-bolt"
shots = [5]
reducers = ["pretrained", "pretrained_logreg", "head_deep_sad", "head_eidn"]
detectors = ["origin_distance", "knn"]
"#,
    )
    .unwrap();
    let results = dir.path().join("results");
    let report = dir.path().join("report");
    let (code, out, err) = run(eidn(&data, &models)
        .args(["reproduce", "--quiet", "--profile"])
        .arg(&profile)
        .arg("--results")
        .arg(&results)
        .arg("--out")
        .arg(&report));
    assert_eq!(code, Some(0), "{out}{err}");
    let md = std::fs::read_to_string(report.join("README.md")).unwrap();
    for want in [
        "## Few-shot protocol: general",
        "## Few-shot protocol: hard",
        "| k = 1 | k = 5 |",
        "DevNet head",
        "Deep SAD head",
        "EIDN head",
        "kNN + LR",
        "Per anomaly type",
        "| 5 | square |",
    ] {
        assert!(md.contains(want), "{want:?} not in\n{md}");
    }
    // Hard: two known types in turn, one seed: n = 2 per method.
    let hard = &md[md.find("## Few-shot protocol: hard").unwrap()..];
    assert!(hard.contains("(n = 2)"), "{hard}");
    // Records carry the protocol and the per-type AUCs.
    let records = std::fs::read_to_string(results.join("records.jsonl")).unwrap();
    assert!(records.contains("\"protocol\":\"few-shot-hard\""));
    assert!(records.contains("\"per_type_auc\""));
}
