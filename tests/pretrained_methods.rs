//! `eidn train --method pretrained_* | head_*` on a user's own folder (generated shapes: normal
//! circles, anomalous squares and triangles), through train -> evaluate -> score; the saved
//! model scores as the fitted one did; a model whose weights are missing says how to get them.

mod common;

use common::run;
use eidn::data::example;

use common::eidn_in as eidn;

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// A temporary folder with the real weights in `models/` and a data folder declaring
/// generated shapes (`counts` circles, squares, triangles) as the dataset `shapes`.
fn shapes(
    counts: [usize; 3],
    seed: u64,
) -> Option<(tempfile::TempDir, std::path::PathBuf, std::path::PathBuf)> {
    let (dir, models) = common::temp_with_weights()?;
    let data = dir.path().join("data");
    example::write_shapes(&data.join("shapes"), counts, seed).unwrap();
    std::fs::write(
        data.join("datasets.toml"),
        "[[dataset]]\nname = \"shapes\"\nkind = \"folder\"\npath = \"shapes\"\n",
    )
    .unwrap();
    Some((dir, models, data))
}

#[test]
fn pretrained_methods_from_train_to_score_on_your_own_folder() {
    let Some((dir, models, data)) = shapes([120, 60, 60], 1) else {
        return;
    };
    let new = dir.path().join("new");
    example::write_shapes(&new, [20, 20, 0], 99).unwrap();

    for (method, floor) in [
        ("pretrained_knn", 0.9),
        ("pretrained_mahalanobis", 0.9),
        ("pretrained_logreg", 0.95),
        // Issue 30: the heads (their trained weights saved and loaded) and the combinations.
        ("head_devnet", 0.9),
        ("head_deep_sad", 0.9),
        ("head_eidn", 0.9),
        ("pretrained_knn_logreg", 0.95),
        ("pretrained_mahalanobis_logreg", 0.95),
    ] {
        let model = dir.path().join(method);
        let (code, out, err) = run(eidn(&data, &models)
            .args(["train", "--dataset", "shapes", "--normal-class", "circle"])
            .args(["--anomaly-ratio", "0.1", "--method", method])
            .args(["--quiet", "--json", "--out"])
            .arg(&model));
        assert_eq!(code, Some(0), "{method}: {err}");
        let trained = json(&out);
        let auc = trained["auc"].as_f64().unwrap();
        assert!(auc > floor, "{method}: circles vs the rest, AUC {auc}");
        assert_eq!(trained["method"], method);
        assert_eq!(trained["steps"], 0);
        assert!(
            model.join("pretrained.json").is_file() && model.join("features.safetensors").is_file()
        );
        if method.starts_with("head_") {
            let saved = std::fs::read(model.join("features.safetensors")).unwrap();
            assert!(
                String::from_utf8_lossy(&saved[..4096.min(saved.len())])
                    .contains("head.layer0.weight"),
                "{method}: the trained head's weights are saved"
            );
        }

        // Loaded again (fitted again on the saved features): the same AUC to the last digit.
        let (code, again, err) = run(eidn(&data, &models)
            .args(["evaluate", "--json", "--model"])
            .arg(&model));
        assert_eq!(code, Some(0), "{method}: {err}");
        assert_eq!(json(&again)["auc"], trained["auc"], "{method}");

        // New files: the calibrated threshold flags squares, not circles.
        let (code, csv, err) = run(eidn(&data, &models)
            .args(["score", "--quiet", "--format", "csv", "--model"])
            .arg(&model)
            .arg(&new));
        assert_eq!(code, Some(0), "{method}: {err}");
        let mut flagged = [0usize; 2];
        for row in csv.lines().skip(1) {
            let f: Vec<&str> = row.split(',').collect();
            flagged[usize::from(f[0].contains("/square/"))] += usize::from(f[3] == "anomaly");
        }
        // The EIDN head's 2-D embedding ranks well (AUC above its floor) but spreads the
        // held-out circles wide, so its calibrated threshold flags fewer squares.
        let least = if method == "head_eidn" { 8 } else { 15 };
        assert!(
            flagged[1] >= least && flagged[0] <= 5,
            "{method}: flagged circles / squares of 20 each: {flagged:?}\n{csv}"
        );
    }

    // The grid on the same folder: the pretrained embeddings under kNN and Mahalanobis, and
    // logistic regression, listed in the own-data report's Fig 7.
    let profile = dir.path().join("mine.toml");
    std::fs::write(
        &profile,
        "name = \"mine\"\ndescription = \"shapes\"\nseeds = [0]\n\
         [train]\nepochs = 1\nsteps_per_epoch = 20\nbatch_size = 32\nmargin = 0.2\nlr = 0.001\nembed_dim = 2\n\
         [[stage]]\nid = \"classes\"\ndataset = \"shapes\"\nclasses = [\"circle\"]\nratios = [0.05]\n\
         reducers = [\"eidn\", \"pretrained\", \"pretrained_logreg\"]\n\
         detectors = [\"origin_distance\", \"knn\", \"mahalanobis\"]\n",
    )
    .unwrap();
    let report = dir.path().join("report");
    let (code, out, err) = run(eidn(&data, &models)
        .args(["reproduce", "--quiet", "--profile"])
        .arg(&profile)
        .arg("--results")
        .arg(dir.path().join("results"))
        .arg("--out")
        .arg(&report));
    assert_eq!(code, Some(0), "{out}\n{err}");
    let md = std::fs::read_to_string(report.join("README.md")).unwrap();
    for row in [
        "| pretrained | kNN |",
        "| pretrained | Mahalanobis |",
        "| pretrained + LR | distance from origin |",
        "| EIDN | kNN |",
    ] {
        assert!(md.contains(row), "{row} missing from the report:\n{md}");
    }
    assert!(md.contains("EfficientNet-Lite0"), "{md}");

    // Another backbone input size: the saved model keeps it, so `evaluate` reads the same
    // features; a size the backbone cannot take, or one for the pixel network, is refused
    // before any work.
    let small = dir.path().join("small");
    let (code, out, err) = run(eidn(&data, &models)
        .args(["train", "--dataset", "shapes", "--normal-class", "circle"])
        .args(["--method", "pretrained_knn", "--backbone-size", "64"])
        .args(["--quiet", "--json", "--out"])
        .arg(&small));
    assert_eq!(code, Some(0), "{err}");
    let saved: serde_json::Value =
        json(&std::fs::read_to_string(small.join("pretrained.json")).unwrap());
    assert!(saved.to_string().contains(r#""size":64"#), "{saved}");
    let (code, again, err) = run(eidn(&data, &models)
        .args(["evaluate", "--json", "--model"])
        .arg(&small));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(json(&again)["auc"], json(&out)["auc"]);
    for (method, size, says) in [
        ("pretrained_knn", "100", "multiple of 32"),
        ("eidn", "224", "pretrained methods"),
    ] {
        let (code, _, err) = run(eidn(&data, &models)
            .args(["train", "--dataset", "shapes", "--normal-class", "circle"])
            .args(["--method", method, "--backbone-size", size, "--out"])
            .arg(dir.path().join("refused")));
        assert_eq!(code, Some(2), "{method} {size}: {err}");
        assert!(
            err.contains("--backbone-size") && err.contains(says),
            "{err}"
        );
        assert!(!dir.path().join("refused").exists());
    }

    // A model is never replaced unasked, whichever kind is there.
    let (code, _, err) = run(eidn(&data, &models)
        .args([
            "train",
            "--dataset",
            "shapes",
            "--normal-class",
            "circle",
            "--out",
        ])
        .arg(dir.path().join("pretrained_knn")));
    assert_eq!(code, Some(2));
    assert!(
        err.contains("already holds a model") && err.contains("--force"),
        "{err}"
    );

    // Weights missing and nowhere to download them from (a mirror on a port nothing listens
    // on): one error saying how to get them.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let empty = dir.path().join("no-models");
    let (code, _, err) = run(eidn(&data, &empty)
        .args(["--data-mirror", &format!("http://127.0.0.1:{port}")])
        .args(["score", "--quiet", "--model"])
        .arg(dir.path().join("pretrained_knn"))
        .arg(&new));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("efficientnet-lite0") && err.contains("Offline, copy"),
        "{err}"
    );
}

/// `eidn select-method` on a generated folder (circles normal, squares the known type,
/// triangles unseen): a choice by the rule, from the training split, the same on a rerun, and
/// every candidate's numbers written out; bad candidates are refused before any feature pass.
#[test]
fn select_method_chooses_on_the_training_split_of_your_own_folder() {
    let Some((dir, models, data)) = shapes([150, 80, 80], 3) else {
        return;
    };
    let candidates = dir.path().join("candidates.toml");
    std::fs::write(
        &candidates,
        "[shapes]\npairs = [[0, 1]]\ngamma_l = [0.1]\nseeds = [0, 1]\nper_class = 20\n\
         candidates = [\"pretrained_knn\", \"pretrained_logreg\", \"pretrained_knn_logreg\"]\n",
    )
    .unwrap();
    let select = |out: &std::path::Path| {
        run(eidn(&data, &models)
            .args([
                "select-method",
                "--dataset",
                "shapes",
                "--backbone-size",
                "64",
            ])
            .arg("--candidates")
            .arg(&candidates)
            .arg("--quiet")
            .arg("--out")
            .arg(out))
    };
    let first = dir.path().join("first");
    let (code, out, err) = select(&first);
    // Nothing is committed for this dataset, so the choice differs from the committed one.
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(out.contains("NOT the choice committed"), "{out}");
    let toml_text = std::fs::read_to_string(first.join("shapes-64.toml")).unwrap();
    let md = std::fs::read_to_string(first.join("shapes-64.md")).unwrap();
    assert!(md.contains("| 0/1/0.1/s0 | 0/1/0.1/s1 |"), "{md}");
    let parsed: toml::Value = toml::from_str(&toml_text).unwrap();
    let choice = &parsed["choice"][0];
    assert_eq!(choice["dataset"].as_str(), Some("shapes"));
    assert_eq!(choice["size"].as_integer(), Some(64));
    assert_eq!(choice["runs"].as_integer(), Some(2));
    let rows = choice["candidate"].as_array().unwrap();
    let auc = |i: usize, key: &str| rows[i][key].as_float().unwrap();
    assert_eq!(rows.len(), 3);
    for i in 0..3 {
        for key in ["auc", "known_auc"] {
            assert!((0.0..=1.0).contains(&auc(i, key)), "{toml_text}");
        }
    }
    // Logistic regression has seen squares: on them alone it is near perfect.
    assert!(auc(1, "known_auc") > 0.9, "{toml_text}");
    let means: Vec<f64> = (0..3).map(|i| auc(i, "auc")).collect();
    let best = eidn::experiment::method_choice::choose(&means, 0.002);
    assert_eq!(
        choice["method"].as_str(),
        rows[best]["method"].as_str(),
        "{toml_text}"
    );
    // Every random draw flows from the seeds: a second run chooses the same from the same AUCs.
    let second = dir.path().join("second");
    let (code, _, err) = select(&second);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(
        std::fs::read_to_string(second.join("shapes-64.toml")).unwrap(),
        toml_text
    );

    // A pair naming a class the dataset lacks: refused, naming the class, with no output.
    std::fs::write(
        &candidates,
        "[shapes]\npairs = [[0, 7]]\ngamma_l = [0.1]\nseeds = [0]\ncandidates = [\"pretrained_knn\"]\n",
    )
    .unwrap();
    let third = dir.path().join("third");
    let (code, _, err) = select(&third);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("class 7 out of range"), "{err}");
    assert!(!third.join("shapes-64.toml").exists());
}
