//! EfficientNet-Lite0 features against PyTorch's (tests/reference/efficientnet_lite_reference.py
//! wrote the fixture: 20 images of 32 px, upsampled to 64 px, through the package
//! `efficientnet-lite-pytorch` with the released weights).

mod common;

use std::path::Path;

use eidn::backbone::{Backbone, BackboneKind, FEATURES};
use eidn::data::ImageSet;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

#[test]
fn efficientnet_lite0_features_equal_pytorchs() {
    let Some(weights) = common::real_weights(BackboneKind::EfficientNetLite0) else {
        return;
    };
    let backbone = Backbone::load(BackboneKind::EfficientNetLite0, &weights).unwrap();
    let pixels = fixture("efficientnet_lite0_images.bin");
    let n = pixels.len() / (3 * 32 * 32);
    assert_eq!(n, 20);
    let images = ImageSet {
        pixels,
        labels: vec![0; n],
        channels: 3,
        height: 32,
        width: 32,
        class_names: vec!["fixture".into()],
    };
    let ours = backbone.features(&images, 64, None).unwrap();
    let theirs: Vec<f32> = fixture("efficientnet_lite0_features.bin")
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(theirs.len(), n * FEATURES);
    let mut worst = 0.0f64;
    for i in 0..n {
        let t = &theirs[i * FEATURES..(i + 1) * FEATURES];
        let o = ours.row(i);
        let diff: f64 = o
            .iter()
            .zip(t)
            .map(|(a, b)| f64::from(a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        let norm: f64 = t.iter().map(|&b| f64::from(b).powi(2)).sum::<f64>().sqrt();
        worst = worst.max(diff / norm);
    }
    eprintln!("worst relative error per image: {worst:.2e}");
    assert!(
        worst <= 1e-4,
        "worst relative error per image {worst:.2e} > 1e-4"
    );
}

/// The feature cache: a dataset's features are computed once, written with an exact length,
/// looked up by image for any subset, and images outside the dataset are computed on the spot;
/// the `pretrained` and `pretrained_logreg` reducers read them.
#[test]
#[cfg_attr(
    eidn_no_weights,
    ignore = "needs the EfficientNet-Lite0 weights: eidn weights fetch (or EIDN_MODELS_DIR)"
)]
fn features_are_cached_per_dataset_and_looked_up_by_image() {
    use eidn::backbone::{cache, FeatureSpec};
    use eidn::data::{Dataset, DatasetName};
    use eidn::reduce::{LogisticParams, PretrainedParams, Reducer};
    use linfa::ParamGuard;

    let Some(weights) = common::real_weights(BackboneKind::EfficientNetLite0) else {
        return;
    };
    let models = tempfile::tempdir().unwrap();
    std::fs::copy(&weights, models.path().join(weights.file_name().unwrap())).unwrap();
    let mut train = ImageSet::synthetic(40, [3, 32, 32], 1);
    train.labels = (0..40).map(|i| u8::from(i % 4 == 0)).collect();
    let test = ImageSet::synthetic(10, [3, 32, 32], 2);
    let dataset = Dataset {
        name: DatasetName::Cifar10,
        train,
        test,
    };
    let spec = FeatureSpec {
        backbone: BackboneKind::EfficientNetLite0,
        size: 32,
    };
    let table = cache::table(&dataset, &spec, models.path(), true).unwrap();
    let files: Vec<_> = std::fs::read_dir(models.path().join("features"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let header = std::fs::read(&files[0]).unwrap();
    let line = header.iter().position(|&b| b == b'\n').unwrap() + 1;
    assert_eq!(header.len(), line + 50 * FEATURES * 4);

    let backbone = Backbone::load(BackboneKind::EfficientNetLite0, &weights).unwrap();
    let direct = backbone.features(&dataset.test, 32, None).unwrap();
    // A subset in another order, and an image not in the dataset.
    let picked = dataset.test.select(&[7, 2]);
    let looked_up = table.features(&picked).unwrap();
    for (row, i) in [(0, 7), (1, 2)] {
        for j in 0..FEATURES {
            assert_eq!(looked_up[[row, j]], f64::from(direct[[i, j]]));
        }
    }
    let outside = ImageSet::synthetic(2, [3, 32, 32], 3);
    let computed = table.features(&outside).unwrap();
    let expected = backbone.features(&outside, 32, None).unwrap();
    assert_eq!(computed[[1, 5]], f64::from(expected[[1, 5]]));

    // The reducers on top: standardised on the normal images, logistic regression one-dimensional.
    let normal = dataset
        .train
        .select(&(0..40).filter(|i| i % 4 != 0).collect::<Vec<_>>());
    let anomalous = dataset
        .train
        .select(&(0..40).filter(|i| i % 4 == 0).collect::<Vec<_>>());
    let p = PretrainedParams::new(spec.clone()).check().unwrap();
    let fitted = p.fit(table.clone(), &normal).unwrap();
    let z = fitted.transform(&normal).unwrap();
    assert_eq!(z.ncols(), FEATURES);
    let mean0: f64 = z.column(0).sum() / z.nrows() as f64;
    assert!(mean0.abs() < 1e-9, "{mean0}");
    let pca = PretrainedParams::new(spec.clone())
        .components(Some(4))
        .check()
        .unwrap();
    assert_eq!(
        pca.fit(table.clone(), &normal)
            .unwrap()
            .transform(&dataset.test)
            .unwrap()
            .ncols(),
        4
    );
    let lr = LogisticParams::new(spec).check().unwrap();
    let fitted = lr.fit(table, &normal, &anomalous).unwrap();
    let (s0, s1) = (
        fitted.transform(&normal).unwrap(),
        fitted.transform(&anomalous).unwrap(),
    );
    assert_eq!(s0.ncols(), 1);
    // Training images are separable in 1,280 dimensions: every anomaly above every normal.
    let max0 = s0.iter().cloned().fold(f64::MIN, f64::max);
    let min1 = s1.iter().cloned().fold(f64::MAX, f64::min);
    assert!(min1 > max0, "anomalies {min1} vs normal {max0}");
    assert!(s0.iter().all(|&v| v > 0.0));
}

#[test]
#[cfg_attr(
    eidn_no_weights,
    ignore = "needs the EfficientNet-Lite0 weights: eidn weights fetch (or EIDN_MODELS_DIR)"
)]
fn a_saved_pretrained_method_scores_as_the_fitted_one() {
    use eidn::backbone::cache::FeatureTable;
    use eidn::backbone::FeatureSpec;
    use eidn::data::protocol::Pools;
    use eidn::model::CalibrationSource;
    use eidn::pipeline::{PretrainedMethod, PretrainedModel};

    let Some(weights) = common::real_weights(BackboneKind::EfficientNetLite0) else {
        return;
    };
    let models = weights.parent().unwrap();
    let spec = FeatureSpec {
        backbone: BackboneKind::EfficientNetLite0,
        size: 32,
    };
    let pools = Pools {
        normal: ImageSet::synthetic(30, [3, 32, 32], 1),
        anomalous: ImageSet::synthetic(3, [3, 32, 32], 2),
    };
    let new = ImageSet::synthetic(6, [3, 32, 32], 3);
    let table = || FeatureTable::for_new_images(&spec, models, None, false).unwrap();
    for method in PretrainedMethod::ALL {
        let mut fitted = PretrainedModel::fit(method, table(), &pools, 0).unwrap();
        fitted
            .calibrate(&new, 0.1, CalibrationSource::Training)
            .unwrap();
        let before = fitted.score(&new).unwrap();
        let dir = tempfile::tempdir().unwrap();
        fitted.save(dir.path()).unwrap();
        let loaded = PretrainedModel::load(dir.path(), |_| Ok(table())).unwrap();
        assert_eq!(loaded.score(&new).unwrap(), before, "{method}");
        assert_eq!(loaded.config.calibration, fitted.config.calibration);
        assert_eq!((loaded.config.n_normal, loaded.config.n_anomalous), (30, 3));

        // Another table of the same features (what `evaluate` swaps in) scores the same;
        // features of another size are refused.
        let loaded = loaded.with_table(table()).unwrap();
        assert_eq!(loaded.score(&new).unwrap(), before, "{method}");
        let other = FeatureSpec {
            size: 64,
            ..spec.clone()
        };
        let other = FeatureTable::for_new_images(&other, models, None, false).unwrap();
        let err = loaded.with_table(other).err().unwrap().to_string();
        assert!(err.contains("size: 64"), "{err}");

        // A features file that is not the one saved is refused, naming it.
        std::fs::write(dir.path().join("features.safetensors"), b"not this").unwrap();
        let err = PretrainedModel::load(dir.path(), |_| Ok(table()))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("features.safetensors"), "{err}");
    }
    // Logistic regression without labelled anomalies is refused before any work.
    let none = Pools {
        normal: pools.normal.clone(),
        anomalous: pools.normal.select(&[]),
    };
    let err = PretrainedModel::fit(PretrainedMethod::PretrainedLogreg, table(), &none, 0)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("labelled anomalies"), "{err}");
}
