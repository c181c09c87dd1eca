//! Detectors and PCA against scikit-learn point by point, not only through an AUC
//! (tests/reference/pointwise_reference.py wrote tests/fixtures/pointwise_sklearn.json):
//! one-class SVM decision values, GMM log-likelihoods (far-away points included) and PCA
//! projections up to sign, each on an easy and a hard case.

use eidn::data::ImageSet;
use eidn::detect::{AnomalyScorer, Gamma, GmmParams, OneClassSvmParams};
use eidn::reduce::{PcaParams, Reducer};
use ndarray::Array2;
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/pointwise_sklearn.json")).unwrap()
}

fn matrix(v: &Value) -> Array2<f64> {
    let rows: Vec<Vec<f64>> = serde_json::from_value(v.clone()).unwrap();
    let (n, d) = (rows.len(), rows[0].len());
    Array2::from_shape_vec((n, d), rows.into_iter().flatten().collect()).unwrap()
}

fn vector(v: &Value) -> Vec<f64> {
    serde_json::from_value(v.clone()).unwrap()
}

/// Largest |a - b| over the points, and the scale of b (its largest |value|).
fn max_diff(a: &[f64], b: &[f64]) -> (f64, f64) {
    assert_eq!(a.len(), b.len());
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    let scale = b.iter().map(|y| y.abs()).fold(0.0, f64::max);
    (diff, scale)
}

#[test]
fn one_class_svm_decision_values_match_scikit_learn() {
    for case in fixture()["ocsvm"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let gamma = case["gamma"].as_f64().map_or(Gamma::Scale, Gamma::Fixed);
        let svm = OneClassSvmParams::default()
            .nu(case["nu"].as_f64().unwrap())
            .gamma(gamma)
            // The fixture's scikit-learn ran at tol = 1e-6, close to the exact optimum.
            .tol(1e-6)
            .fit(&matrix(&case["train"]))
            .unwrap();
        // Our score is the negated decision value.
        let ours: Vec<f64> = svm
            .score(&matrix(&case["test"]))
            .unwrap()
            .iter()
            .map(|s| -s)
            .collect();
        let (diff, scale) = max_diff(&ours, &vector(&case["decision_function"]));
        eprintln!("one-class SVM {name}: max |ours - sklearn| {diff:.2e} (scale {scale:.2e})");
        assert!(
            diff <= 1e-4 * scale.max(1.0),
            "{name}: {diff} vs scale {scale}"
        );
    }
}

#[test]
fn gmm_log_likelihoods_match_scikit_learn() {
    for case in fixture()["gmm"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let k = case["components"].as_u64().unwrap() as usize;
        let gmm = GmmParams::new(0)
            .components(k..=k)
            .fit(&matrix(&case["train"]))
            .unwrap();
        let ours: Vec<f64> = gmm
            .score(&matrix(&case["test"]))
            .unwrap()
            .iter()
            .map(|s| -s)
            .collect();
        let want = vector(&case["score_samples"]);
        for (i, (o, w)) in ours.iter().zip(&want).enumerate() {
            // Relative for the far points, whose log-likelihoods are in the millions.
            let tol = 1e-6 * (1.0 + w.abs());
            assert!(
                (o - w).abs() <= tol,
                "{name} point {i}: ours {o}, sklearn {w}"
            );
        }
        let (diff, _) = max_diff(&ours, &want);
        eprintln!("GMM {name}: max |ours - sklearn| {diff:.2e}");
    }
}

#[test]
fn pca_projections_match_scikit_learn_up_to_sign() {
    for case in fixture()["pca"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let rows: Vec<Vec<u8>> = serde_json::from_value(case["pixels"].clone()).unwrap();
        let (n, d) = (rows.len(), rows[0].len());
        let set = ImageSet {
            pixels: rows.into_iter().flatten().collect(),
            labels: vec![0; n],
            channels: 1,
            height: 1,
            width: d,
            class_names: vec!["x".into()],
        };
        let m = case["components"].as_u64().unwrap() as usize;
        let ours = PcaParams::new(m)
            .fit(&set)
            .unwrap()
            .transform(&set)
            .unwrap();
        let want = matrix(&case["projection"]);
        for j in 0..m {
            let a: Vec<f64> = ours.column(j).to_vec();
            let b: Vec<f64> = want.column(j).to_vec();
            let flipped: Vec<f64> = b.iter().map(|v| -v).collect();
            let (same, scale) = max_diff(&a, &b);
            let (opposite, _) = max_diff(&a, &flipped);
            let diff = same.min(opposite);
            assert!(
                diff <= 1e-6 * scale.max(1.0),
                "{name} component {j}: {diff}"
            );
        }
    }
}
