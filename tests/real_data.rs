//! The real datasets (../shared/datasets in CI): exact per-class counts, verify statuses
//! and the CLI's exit codes. Fail under CI=true when the data is absent.

mod common;

use std::process::Command;

use common::real_data_dir;
use eidn::data::manifest::Manifest;
use eidn::data::verify::{verify, Status};
use eidn::data::{load, DatasetName};

const MNIST_TRAIN: [usize; 10] = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949];
const MNIST_TEST: [usize; 10] = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009];

#[test]
#[cfg_attr(
    eidn_no_mnist,
    ignore = "needs the real MNIST: set EIDN_DATA_DIR (e.g. ../shared/datasets)"
)]
fn mnist_real_counts_and_pixels() {
    let Some(dir) = real_data_dir("mnist") else {
        return;
    };
    let d = load(DatasetName::Mnist, &dir, 0).unwrap();
    assert_eq!(d.train.class_counts(), MNIST_TRAIN);
    assert_eq!(d.test.class_counts(), MNIST_TEST);
    assert_eq!(
        (d.train.channels, d.train.height, d.train.width),
        (1, 28, 28)
    );
    // Pixel statistics from the datasets README: train mean 0.1307, std 0.3081.
    let x = d.train.to_f32();
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / x.len() as f64;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / x.len() as f64;
    assert!((mean - 0.1307).abs() < 1e-4, "mean {mean}");
    assert!((var.sqrt() - 0.3081).abs() < 1e-4, "std {}", var.sqrt());
    // The first training label of MNIST is a 5.
    assert_eq!(d.train.labels[0], 5);
}

#[test]
#[cfg_attr(
    eidn_no_cifar10,
    ignore = "needs the real CIFAR-10: set EIDN_DATA_DIR (e.g. ../shared/datasets)"
)]
fn cifar10_real_counts_and_names() {
    let Some(dir) = real_data_dir("cifar10") else {
        return;
    };
    let d = load(DatasetName::Cifar10, &dir, 0).unwrap();
    assert_eq!(d.train.class_counts(), [5000; 10]);
    assert_eq!(d.test.class_counts(), [1000; 10]);
    assert_eq!(
        (d.train.channels, d.train.height, d.train.width),
        (3, 32, 32)
    );
    assert_eq!(d.train.class_names[5], "dog");
    assert_eq!(d.train.class_names[6], "frog");
    // Per-channel train mean from the datasets README: (0.4913, 0.4821, 0.4465).
    let plane = 32 * 32;
    let mut sums = [0u64; 3];
    for i in 0..d.train.len() {
        let img = d.train.image(i);
        for (c, s) in sums.iter_mut().enumerate() {
            *s += img[c * plane..(c + 1) * plane]
                .iter()
                .map(|&v| v as u64)
                .sum::<u64>();
        }
    }
    let n = (d.train.len() * plane) as f64 * 255.0;
    for (c, want) in [0.4913, 0.4821, 0.4465].iter().enumerate() {
        let got = sums[c] as f64 / n;
        assert!((got - want).abs() < 2e-4, "channel {c}: {got}");
    }
}

#[test]
#[cfg_attr(
    any(eidn_no_mnist, eidn_no_cifar10),
    ignore = "needs the real MNIST and CIFAR-10: set EIDN_DATA_DIR (e.g. ../shared/datasets)"
)]
fn verify_reports_exact_variant_and_missing() {
    let (Some(dir), Some(_)) = (real_data_dir("mnist"), real_data_dir("cifar10")) else {
        return;
    };
    let m = Manifest::builtin();
    let mnist = verify(DatasetName::Mnist, &dir, &m);
    assert_eq!(mnist.status, Status::Exact, "{:?}", mnist.message);
    assert_eq!(mnist.files.len(), 4);
    // Any valid copy passes: the original archive (exact), the batches unpacked from it
    // (unverified: no checksum of loose batches is published) or the known JPEG variant.
    let cifar = verify(DatasetName::Cifar10, &dir, &m);
    match cifar.status {
        Status::Exact | Status::Unverified => assert_eq!(cifar.variant, None),
        Status::Variant => assert_eq!(cifar.variant.as_deref(), Some("jpeg-q75")),
        other => panic!("CIFAR-10 is {other:?}: {:?}", cifar.message),
    }
    assert_eq!(cifar.train + cifar.test, 60_000);
    // Concrete Cracks may or may not be there; if it is, it must load.
    let concrete = verify(DatasetName::Concrete, &dir, &m);
    assert!(
        concrete.status == Status::Missing || concrete.status.usable(),
        "{:?}: {:?}",
        concrete.status,
        concrete.message
    );
    assert!(concrete
        .how_to_get
        .contains("eidn data fetch --dataset concrete"));
}

#[test]
#[cfg_attr(
    eidn_no_mnist,
    ignore = "needs the real MNIST: set EIDN_DATA_DIR (e.g. ../shared/datasets)"
)]
fn cli_verify_exit_codes_and_json() {
    let Some(dir) = real_data_dir("mnist") else {
        return;
    };
    let run = |which: &str| {
        Command::new(env!("CARGO_BIN_EXE_eidn"))
            .args(["--data-dir"])
            .arg(&dir)
            .args(["data", "verify", "--json", "--dataset", which])
            .output()
            .unwrap()
    };
    let all = run("all");
    let json: serde_json::Value = serde_json::from_slice(&all.stdout).unwrap();
    let arr = json.as_array().unwrap();
    // `all` fails (exit 1, a check) exactly when some dataset is not usable.
    let all_usable = arr
        .iter()
        .all(|o| ["exact", "variant", "unverified"].contains(&o["status"].as_str().unwrap()));
    assert_eq!(
        all.status.code(),
        Some(if all_usable { 0 } else { 1 }),
        "{json}"
    );
    assert_eq!(arr.len(), 3);
    let by_name = |n: &str| arr.iter().find(|o| o["name"] == n).unwrap();
    assert_eq!(by_name("mnist")["status"], "exact");
    assert_eq!(by_name("mnist")["train"], 60_000);
    assert_eq!(by_name("mnist")["test"], 10_000);
    assert_eq!(
        by_name("mnist")["train_per_class"],
        serde_json::json!(MNIST_TRAIN)
    );
    assert_eq!(
        by_name("cifar10")["train_per_class"],
        serde_json::to_value([5000; 10]).unwrap()
    );

    for which in ["mnist", "cifar10"] {
        let out = run(which);
        assert!(
            out.status.success(),
            "{which}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // The table form names the variant and prints per-class counts.
    let out = Command::new(env!("CARGO_BIN_EXE_eidn"))
        .arg("--data-dir")
        .arg(&dir)
        .args(["data", "verify", "--dataset", "cifar10"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let cifar_status = by_name("cifar10")["status"]
        .as_str()
        .unwrap()
        .to_uppercase();
    assert!(
        text.contains(&cifar_status) && text.contains("| train | 50000"),
        "{text}"
    );
}
