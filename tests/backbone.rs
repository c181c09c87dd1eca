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
