//! Reducers: LDA against scikit-learn (tests/reference/lda_reference.py), PCA and LDA on
//! image sets.

use eidn::data::ImageSet;
use eidn::reduce::{LdaParams, PcaParams, Reducer};
use ndarray::Array2;
use serde_json::Value;

fn corr(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

#[test]
fn lda_matches_scikit_learn_up_to_sign_and_scale() {
    let json: Value = serde_json::from_str(include_str!("fixtures/lda_sklearn.json")).unwrap();
    let shrinkage = json["shrinkage"].as_f64().unwrap();
    for case in json["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let rows: Vec<Vec<f64>> = serde_json::from_value(case["x"].clone()).unwrap();
        let (n, d) = (rows.len(), rows[0].len());
        let x = Array2::from_shape_vec((n, d), rows.into_iter().flatten().collect()).unwrap();
        let y: Vec<usize> = serde_json::from_value(case["y"].clone()).unwrap();
        let want: Vec<Vec<f64>> = serde_json::from_value(case["projection"].clone()).unwrap();
        let lda = LdaParams::default()
            .shrinkage(shrinkage)
            .fit_matrix(&x, &y)
            .unwrap();
        let got = lda.transform_matrix(&x).unwrap();
        assert_eq!(got.ncols(), want[0].len(), "{name}: components");
        for j in 0..got.ncols() {
            let ours: Vec<f64> = got.column(j).to_vec();
            let theirs: Vec<f64> = want.iter().map(|r| r[j]).collect();
            let r = corr(&ours, &theirs);
            assert!(r.abs() > 0.99999, "{name} component {j}: correlation {r}");
        }
    }
}

fn images(n: usize, labels: impl Fn(usize) -> u8) -> ImageSet {
    ImageSet {
        pixels: (0..n * 16)
            .map(|i| {
                let img = i / 16;
                let bright = labels(img) == 1 && i % 16 < 4;
                ((i * 37 % 101) as u8).wrapping_add(if bright { 120 } else { 0 })
            })
            .collect(),
        labels: (0..n).map(&labels).collect(),
        channels: 1,
        height: 4,
        width: 4,
        class_names: vec!["normal".into(), "anomalous".into()],
    }
}

#[test]
fn pca_and_lda_on_image_sets() {
    let set = images(120, |i| (i % 6 == 0) as u8);
    let pca = PcaParams::new(2).fit(&set).unwrap();
    let z = pca.transform(&set).unwrap();
    assert_eq!(z.dim(), (120, 2));
    let y: Vec<usize> = set.labels.iter().map(|&l| l as usize).collect();
    let lda = LdaParams::default().fit(&set, &y).unwrap();
    assert_eq!(lda.dim(), 1);
    let z = lda.transform(&set).unwrap();
    // The discriminant separates the two classes on their training data.
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for (i, &l) in y.iter().enumerate() {
        if l == 1 {
            a.push(z[[i, 0]])
        } else {
            b.push(z[[i, 0]])
        }
    }
    let (amin, amax) = (
        a.iter().cloned().fold(f64::MAX, f64::min),
        a.iter().cloned().fold(f64::MIN, f64::max),
    );
    let (bmin, bmax) = (
        b.iter().cloned().fold(f64::MAX, f64::min),
        b.iter().cloned().fold(f64::MIN, f64::max),
    );
    assert!(
        amin > bmax || bmin > amax,
        "classes overlap: [{amin}, {amax}] vs [{bmin}, {bmax}]"
    );
    // Wrong sizes are errors, not panics.
    let other = ImageSet {
        channels: 2,
        ..images(3, |_| 0)
    };
    let other = ImageSet {
        pixels: vec![0; 3 * 32],
        ..other
    };
    assert!(pca.transform(&other).is_err());
    assert!(lda.transform(&other).is_err());
    assert!(LdaParams::default().fit(&set, &y[..10]).is_err());
    assert!(LdaParams::default().fit(&set, &vec![0; 120]).is_err());
}
