//! Fit and score each detector on 6,000 points in 2 and in 16 dimensions (the normal pool
//! of one MNIST class, embedded). `just bench-vs-sklearn` runs scikit-learn on the same
//! points (benches/reference/detectors_sklearn.py) and prints the ratios.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use eidn::detect::{AnomalyScorer, GmmParams, IsolationForestParams, LofParams, OneClassSvmParams};
use ndarray::Array2;

/// Points in [0, 1)^d from a hash of (row, column): the same formula as the Python side, so
/// both time the same data without sharing a file.
pub fn points(n: usize, d: usize) -> Array2<f64> {
    Array2::from_shape_fn((n, d), |(i, j)| {
        let v = ((i as f64) * 12.9898 + (j as f64) * 78.233).sin() * 43758.5453;
        v - v.floor()
    })
}

fn bench_detectors(c: &mut Criterion) {
    let mut group = c.benchmark_group("detectors");
    group.sample_size(10);
    for d in [2usize, 16] {
        let x = points(6000, d);
        let id = |name: &str| BenchmarkId::new(name, format!("6000x{d}"));
        group.bench_function(id("isolation_forest_fit"), |b| {
            b.iter(|| IsolationForestParams::new(0).fit(&x).unwrap())
        });
        let f = IsolationForestParams::new(0).fit(&x).unwrap();
        group.bench_function(id("isolation_forest_score"), |b| {
            b.iter(|| f.score(&x).unwrap())
        });

        group.bench_function(id("lof_fit"), |b| {
            b.iter(|| LofParams::default().fit(&x).unwrap())
        });
        let f = LofParams::default().fit(&x).unwrap();
        group.bench_function(id("lof_score"), |b| b.iter(|| f.score(&x).unwrap()));

        group.bench_function(id("gmm_fit"), |b| {
            b.iter(|| GmmParams::new(0).fit(&x).unwrap())
        });
        let f = GmmParams::new(0).fit(&x).unwrap();
        group.bench_function(id("gmm_score"), |b| b.iter(|| f.score(&x).unwrap()));

        group.bench_function(id("one_class_svm_fit"), |b| {
            b.iter(|| OneClassSvmParams::default().fit(&x).unwrap())
        });
        let f = OneClassSvmParams::default().fit(&x).unwrap();
        group.bench_function(id("one_class_svm_score"), |b| {
            b.iter(|| f.score(&x).unwrap())
        });
    }
    group.finish();
}

// No plots: criterion draws them with system fonts, which a fresh machine lacks (it panics
// with FontUnavailable); the numbers are printed and saved under target/criterion anyway.
criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = bench_detectors
}
criterion_main!(benches);
