//! Dataset load times on the real data (EIDN_DATA_DIR, else datasets/). Targets: all of
//! MNIST well under 1 s, all of CIFAR-10 under 3 s (release, 2 cores).

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use eidn::data::{load, resolve_data_dir, DatasetName};

fn bench_load(c: &mut Criterion) {
    let (dir, _) = resolve_data_dir(None);
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    for name in [DatasetName::Mnist, DatasetName::Cifar10] {
        if !name.dir(&dir).is_dir() {
            eprintln!(
                "SKIPPED load/{name}: {} not found",
                name.dir(&dir).display()
            );
            continue;
        }
        group.bench_function(name.as_str(), |b| {
            b.iter(|| load(name, &PathBuf::from(&dir), 0).expect("load"))
        });
    }
    group.finish();
}

// No plots: criterion draws them with system fonts, which a fresh machine lacks (it panics
// with FontUnavailable); the numbers are printed and saved under target/criterion anyway.
criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = bench_load
}
criterion_main!(benches);
