//! The command line as a shell user meets it: exit codes (0 ok, 1 a failed check, 2 an
//! error), each cause printed once, typed flags, bounds checked before any work, a closed
//! pipe, checks that come before training, damaged data, and the main job fetching its data.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use eidn::data::mnist::encode_idx;
use eidn::data::ImageSet;

fn eidn(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_eidn"));
    c.arg("--data-dir").arg(data);
    c.env_remove("EIDN_DATA_MIRROR");
    c
}

use common::run;

/// A small MNIST-format folder (raw IDX, so its checksums match nothing on record).
fn tiny_mnist(dir: &Path) {
    let set = |n: usize| ImageSet {
        pixels: (0..n * 784)
            .map(|i| {
                let img = i / 784;
                if (i % 784) % 28 < 14 && img % 10 == 0 {
                    200
                } else {
                    ((i * 31 + img * 7) % 97) as u8
                }
            })
            .collect(),
        labels: (0..n).map(|i| (i % 10) as u8).collect(),
        channels: 1,
        height: 28,
        width: 28,
        class_names: (0..10).map(|d| d.to_string()).collect(),
    };
    let mnist = dir.join("mnist");
    std::fs::create_dir_all(&mnist).unwrap();
    for (prefix, n) in [("train", 300), ("t10k", 60)] {
        let (images, labels) = encode_idx(&set(n));
        std::fs::write(mnist.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
        std::fs::write(mnist.join(format!("{prefix}-labels-idx1-ubyte")), labels).unwrap();
    }
}

/// Items 10 and 16: absurd parameters are errors (exit 2) before any data is touched; an
/// error's cause is printed once; typed flags list the valid values.
#[test]
fn bad_parameters_and_errors_exit_2_with_one_message() {
    let empty = tempfile::tempdir().unwrap();
    let train = |extra: &[&str]| {
        let mut c = eidn(empty.path());
        c.args([
            "train",
            "--dataset",
            "mnist",
            "--normal-class",
            "0",
            "--out",
        ])
        .arg(empty.path().join("m"))
        .args(extra);
        run(&mut c)
    };
    for (args, says) in [
        (vec!["--epochs", "18446744073709551615"], "steps"),
        (vec!["--embed-dim", "1000000000"], "embed_dim"),
        (vec!["--batch-size", "1000000000"], "batch_size"),
        (vec!["--lr", "1e30"], "lr"),
        (vec!["--anomaly-ratio", "0"], "anomaly-ratio"),
    ] {
        let (code, _, err) = train(&args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(
            err.contains(says) && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }

    let (code, _, err) = run(eidn(empty.path()).args(["evaluate", "--model", "/nonexistent"]));
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err.matches("/nonexistent: no such folder").count(),
        1,
        "{err}"
    );
    let (code, _, err) = run(eidn(empty.path())
        .arg("evaluate")
        .arg("--model")
        .arg(empty.path()));
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err.matches("not a folder written by `eidn train`").count(),
        1,
        "{err}"
    );
    let (code, _, err) = run(eidn(empty.path())
        .args(["report", "--results", "/nonexistent", "--out"])
        .arg(empty.path()));
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.matches("no such results folder").count(), 1, "{err}");

    // clap's usage errors (exit 2) list what is valid.
    let (code, _, err) = run(eidn(empty.path()).args(["reproduce", "--only", "tabel1"]));
    assert_eq!(code, Some(2));
    assert!(err.contains("table1") && err.contains("fig7"), "{err}");
    let (code, _, err) = run(eidn(empty.path()).args(["reproduce", "--shard", "3/2"]));
    assert_eq!(code, Some(2));
    assert!(err.contains("K/N"), "{err}");
    let (code, _, err) = run(eidn(empty.path()).args(["reproduce", "--device", "gpu"]));
    assert_eq!(code, Some(2));
    assert!(err.contains("cpu, cuda or cuda:N"), "{err}");
    // A class by name or label; an unknown one lists the dataset's classes.
    let class = |name: &str| {
        run(eidn(empty.path())
            .args([
                "train",
                "--dataset",
                "cifar10",
                "--normal-class",
                name,
                "--out",
            ])
            .arg(empty.path().join("c")))
    };
    let (code, _, err) = class("kitten");
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("\"kitten\"") && err.contains("airplane, automobile"),
        "{err}"
    );
    let (_, _, err) = class("Cat");
    assert!(
        !err.contains("--normal-class"),
        "a class name is accepted: {err}"
    );
    let (_, _, err) = class("10");
    assert!(err.contains("labels 0-9"), "{err}");
    // --dry-run: the plan and the estimate, nothing fetched or written (no data here).
    let results = empty.path().join("dry");
    let (code, _, err) = run(eidn(empty.path())
        .args(["reproduce", "--profile", "ci", "--dry-run", "--results"])
        .arg(&results));
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("plan: ") && err.contains("networks to train"),
        "{err}"
    );
    assert!(
        err.contains("ms (calibrated here)") && err.contains("estimate: "),
        "{err}"
    );
    assert!(!results.exists(), "a dry run wrote {}", results.display());
    // A seed the profile does not have would run nothing: an error naming the profile's seeds.
    let (code, _, err) =
        run(eidn(empty.path()).args(["reproduce", "--profile", "ci", "--seeds", "7"]));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("seed 7 is not one of profile ci's seeds"),
        "{err}"
    );
}

/// Item 16: `verify` on a missing dataset is a failed check (1), not an error; a closed
/// stdout ends the program quietly with 0.
#[test]
fn verify_exit_code_and_closed_pipe() {
    let empty = tempfile::tempdir().unwrap();
    let (code, out, _) = run(eidn(empty.path()).args(["data", "verify", "--dataset", "mnist"]));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("MISSING"), "{out}");
    let mut child = eidn(empty.path())
        .args(["data", "verify"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(1),
        "{:?}: {stderr}",
        out.status
    );
}

/// Item 9: an unwritable --out, a missing --thresholds and a profile file named like a
/// built-in one are refused at once, before any data is fetched or network trained.
#[test]
fn late_checks_come_first() {
    let empty = tempfile::tempdir().unwrap();
    let file = empty.path().join("not-a-folder");
    std::fs::write(&file, b"x").unwrap();
    let (code, _, err) = run(eidn(empty.path())
        .args(["reproduce", "--profile", "ci", "--out"])
        .arg(&file));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("not-a-folder") && !err.contains("downloading"),
        "{err}"
    );

    let (code, _, err) = run(eidn(empty.path())
        .args(["regress", "--profile", "ci", "--thresholds"])
        .arg(empty.path().join("missing.toml")));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("missing.toml") && !err.contains("downloading"),
        "{err}"
    );

    let clash = empty.path().join("mine.toml");
    std::fs::write(
        &clash,
        eidn::experiment::profile::BUILTIN
            .iter()
            .find(|(n, _)| *n == "quick")
            .unwrap()
            .1,
    )
    .unwrap();
    let (code, _, err) = run(eidn(empty.path())
        .args(["reproduce", "--profile"])
        .arg(&clash));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("like the built-in profile"), "{err}");
}

/// Item 5: training on files whose checksums match nothing on record warns loudly and
/// records the data status in eidn.json; an empty CIFAR-10 batch is an error naming it.
#[test]
fn mismatched_data_warns_and_empty_data_is_named() {
    let data = tempfile::tempdir().unwrap();
    tiny_mnist(data.path());
    let model = data.path().join("model");
    let (code, _, err) = run(eidn(data.path())
        .args([
            "train",
            "--dataset",
            "mnist",
            "--normal-class",
            "0",
            "--anomaly-ratio",
            "0.1",
            "--epochs",
            "1",
            "--steps-per-epoch",
            "2",
            "--batch-size",
            "4",
            "--quiet",
            "--out",
        ])
        .arg(&model));
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("WARNING") && err.contains("not comparable"),
        "{err}"
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("eidn.json")).unwrap()).unwrap();
    assert_eq!(config["data"], "checksum mismatch");

    let cifar = data.path().join("cifar10");
    std::fs::create_dir_all(&cifar).unwrap();
    let record = vec![1u8; 3073];
    for i in 1..=5 {
        std::fs::write(cifar.join(format!("data_batch_{i}.bin")), &record).unwrap();
    }
    std::fs::write(cifar.join("test_batch.bin"), b"").unwrap();
    std::fs::write(
        cifar.join("batches.meta.txt"),
        "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n",
    )
    .unwrap();
    let (code, out, _) = run(eidn(data.path()).args(["data", "verify", "--dataset", "cifar10"]));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("CORRUPT") && out.contains("test_batch.bin"),
        "{out}"
    );
}

/// Item 12: the main job on a fresh machine: `reproduce` from an empty data directory
/// fetches MNIST from a mirror on 127.0.0.1 and trains; with no reachable source, one error
/// lists what was tried and what to do.
#[test]
#[cfg_attr(
    eidn_no_mnist,
    ignore = "needs the real MNIST: set EIDN_DATA_DIR (e.g. ../shared/datasets)"
)]
fn reproduce_fetches_missing_data_first() {
    let Some(real) = common::real_data_dir("mnist") else {
        return;
    };
    let base = common::serve_mnist_mirror(&real);
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("fresh.toml");
    std::fs::write(
        &profile,
        "name = \"fresh\"\ndescription = \"x\"\nseeds = [0]\n[train]\nepochs = 1\nsteps_per_epoch = 5\n\
         batch_size = 8\n[[stage]]\nid = \"table1\"\ndataset = \"mnist\"\nclasses = [0]\nratios = [0.01]\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let grid = |c: &mut Command| {
        c.arg("reproduce")
            .arg("--profile")
            .arg(&profile)
            .arg("--results")
            .arg(dir.path().join("results"))
            .arg("--out")
            .arg(dir.path().join("report"))
            .arg("--quiet");
    };
    // Offline: nothing listens on port 9 of 127.0.0.1.
    let mut offline = eidn(&data);
    grid(offline.args(["--data-mirror", "http://127.0.0.1:9"]));
    let (code, _, err) = run(&mut offline);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("could not be downloaded") && err.contains("Tried: http://127.0.0.1:9/mnist/"),
        "{err}"
    );
    // Issue 27 item 5: the failed download leaves no empty folder that looks like data.
    assert!(
        !data.join("mnist").exists(),
        "an empty mnist/ was left behind"
    );
    let mut online = eidn(&data);
    grid(online.arg("--data-mirror").arg(&base));
    let (code, _, err) = run(&mut online);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("downloading"), "{err}");
    let records = eidn::experiment::read_records(&dir.path().join("results")).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].data, "exact");
}
