//! The grid end to end on real MNIST with a tiny profile: a run killed mid-way resumes
//! without redoing finished cells, the report renders, and `regress` fails on a threshold
//! above the measured AUC.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eidn::experiment::{read_records, RunMeta};

const TINY: &str = r#"
name = "tiny"
description = "integration test"
seeds = [0, 1]

[train]
epochs = 2
steps_per_epoch = 40
batch_size = 32

[[stage]]
id = "table1"
dataset = "mnist"
classes = [0, 1, 2]
ratios = [0.01]

[[stage]]
id = "unseen"
dataset = "mnist"
classes = [0]
ratios = [0.05]
seeds = [0]
train_anomaly_classes = [1, 2, 3, 4, 5]
test_anomaly_classes = [6, 7, 8, 9]
reducers = ["eidn", "pca"]
detectors = ["origin_distance", "gmm"]
"#;

fn eidn(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_eidn"));
    c.env("EIDN_DATA_DIR", data);
    c
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
#[cfg_attr(
    eidn_no_mnist,
    ignore = "needs the real MNIST: set EIDN_DATA_DIR (e.g. ../shared/datasets)"
)]
fn killed_run_resumes_report_renders_and_regress_guards() {
    let Some(data) = common::real_data_dir("mnist") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("tiny.toml");
    std::fs::write(&profile, TINY).unwrap();
    let results = dir.path().join("results");
    let out = dir.path().join("report");
    let records = results.join("records.jsonl");
    let args = |c: &mut Command| {
        c.arg("reproduce")
            .arg("--profile")
            .arg(&profile)
            .arg("--results")
            .arg(&results)
            .arg("--out")
            .arg(&out)
            .arg("--quiet");
    };

    // First run: killed (SIGKILL) as soon as the first record is on disk.
    let mut cmd = eidn(&data);
    args(&mut cmd);
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while lines(&records).is_empty() {
        assert!(Instant::now() < deadline, "no record after 300 s");
        assert!(
            child.try_wait().unwrap().is_none(),
            "run ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = read_records(&results).unwrap();
    let total_cells = 3 * 2 + 1;
    assert!(
        !before.is_empty() && before.len() < total_cells + 3,
        "{} records before the kill",
        before.len()
    );

    // Second run: finishes the rest, leaves the finished records untouched.
    let mut cmd = eidn(&data);
    args(&mut cmd);
    let status = cmd.stdout(Stdio::null()).status().unwrap();
    assert!(status.success());
    let after = read_records(&results).unwrap();
    // 6 one-vs-rest cells with one record each, the unseen cell with 2 x 2.
    assert_eq!(after.len(), 6 + 4, "{after:#?}");
    for r in &before {
        let again = after
            .iter()
            .find(|a| a.cell == r.cell && a.reducer == r.reducer && a.detector == r.detector)
            .unwrap();
        assert_eq!(again, r, "a finished record was redone");
    }
    // Both runs are on record (the killed one up to its last finished cell).
    let runs = RunMeta::read_all(&results);
    assert_eq!(runs.len(), 2, "{runs:#?}");
    let cells_done_before: std::collections::HashSet<&str> =
        before.iter().map(|r| r.cell.as_str()).collect();
    assert!(runs[1].cells_run <= total_cells - cells_done_before.len() + 1);
    assert_eq!(runs[1].cells, total_cells);
    assert!(after.iter().all(|r| r.auc > 0.5), "{after:#?}");

    // The report: tables beside the paper, charts that decode as PNG.
    let md = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(md.contains("## Table 1: MNIST"), "{md}");
    assert!(md.contains("| 0 (Class 0) |"), "{md}");
    // Only the datasets the profile or the records name: this profile is MNIST's alone.
    assert!(
        !md.contains("## Table 2") && !md.contains("## Table 3"),
        "no CIFAR-10 or Concrete table for an MNIST-only profile: {md}"
    );
    assert!(md.contains("Paper: EIDN AUC 0.9945"), "{md}");
    for png in ["fig5.png", "fig6.png"] {
        let img = image::open(out.join(png)).unwrap();
        assert!(img.width() > 400 && img.height() > 300, "{png}");
    }
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + after.len());

    // regress: passes below the measured mean, fails (naming the cell) above it.
    let class0: Vec<f64> = after
        .iter()
        .filter(|r| r.protocol == "one-vs-rest" && r.normal_class == 0)
        .map(|r| r.auc)
        .collect();
    let mean = class0.iter().sum::<f64>() / class0.len() as f64;
    for (min_auc, ok) in [(mean - 0.01, true), ((mean + 0.001).min(1.0), false)] {
        let thresholds = dir.path().join("thresholds.toml");
        std::fs::write(
            &thresholds,
            format!(
                "[[cell]]\ndataset = \"mnist\"\nnormal_class = 0\nanomaly_ratio = 0.01\n\
                 reducer = \"eidn\"\ndetector = \"origin_distance\"\nmin_auc = {min_auc}\n"
            ),
        )
        .unwrap();
        let output = eidn(&data)
            .arg("regress")
            .arg("--profile")
            .arg(&profile)
            .arg("--results")
            .arg(&results)
            .arg("--thresholds")
            .arg(&thresholds)
            .arg("--quiet")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.success(), ok, "min_auc {min_auc}: {stderr}");
        if !ok {
            assert!(
                stderr.contains("FAIL mnist one-vs-rest class 0 @ 1% eidn/origin_distance"),
                "{stderr}"
            );
        }
    }
}

/// `--jobs 2` runs two cells at once, each on its share of the cores: every record's AUC and
/// AP must equal a one-job run's (issue 14: the computations never depend on thread count).
#[test]
#[cfg_attr(
    eidn_no_mnist,
    ignore = "needs the real MNIST: set EIDN_DATA_DIR (e.g. ../shared/datasets)"
)]
fn two_jobs_write_the_same_records_as_one_on_the_ci_profile() {
    let Some(data) = common::real_data_dir("mnist") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut by_jobs = Vec::new();
    // Seed 0 of the MNIST stages: EIDN, EIDN+, every detector on three embeddings, Deep SAD
    // and Deep SVDD (each of them threaded differently), at a third of the whole profile's
    // cost, which `.ci/run` pays once more in `regress`.
    for jobs in ["1", "2"] {
        let results = dir.path().join(format!("results-{jobs}"));
        let (code, _, err) = common::run(
            eidn(&data)
                .args(["reproduce", "--profile", "ci", "--quiet", "--jobs", jobs])
                .args(["--only", "table1,fig7,deep_sad", "--seeds", "0"])
                .arg("--results")
                .arg(&results)
                .arg("--out")
                .arg(dir.path().join(format!("report-{jobs}"))),
        );
        assert_eq!(code, Some(0), "--jobs {jobs}: {err}");
        let mut records: Vec<_> = read_records(&results)
            .unwrap()
            .into_iter()
            .map(|r| {
                let key = format!("{} {} {}", r.cell, r.reducer.as_str(), r.detector.as_str());
                (key, r.auc, r.ap)
            })
            .collect();
        records.sort_by(|a, b| a.0.cmp(&b.0));
        by_jobs.push(records);
    }
    assert!(by_jobs[0].len() >= 20, "{} records", by_jobs[0].len());
    assert_eq!(by_jobs[0].len(), by_jobs[1].len());
    for (one, two) in by_jobs[0].iter().zip(&by_jobs[1]) {
        assert_eq!(one, two, "--jobs 1 vs --jobs 2");
    }
}
