//! One EIDN training step (sample 128 triplets, forward 256 images, triplet loss, backward,
//! Adam) at 1x28x28 and 3x32x32. Criterion's throughput line reads as steps/s; the FLOP
//! estimate (forward multiply-adds x 2 x 3 for forward + backward, x 256 images) turns it
//! into GFLOP/s.

use candle_core::Device;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use eidn::data::protocol::Pools;
use eidn::data::ImageSet;
use eidn::model::deep_sad::BenchStep;
use eidn::model::{Augment, EidnParams, EncoderConfig, Trainer};

fn pools(input: [usize; 3]) -> Pools {
    Pools {
        normal: ImageSet::synthetic(1000, input, 1),
        anomalous: ImageSet::synthetic(100, input, 2),
    }
}

fn bench_train_step(c: &mut Criterion) {
    // As the eidn binary does at start.
    eidn::kernels::threads::init(1).expect("threads fixed once, at start");
    eidn::kernels::buffers::keep_freed_memory();
    let mut group = c.benchmark_group("train_step");
    group.sample_size(10);
    group.throughput(Throughput::Elements(1));
    // Each shape plain, then with its augmentation (issue 15: within 1.1x of plain).
    for (input, augment) in [
        ([1, 28, 28], Augment::None),
        ([3, 32, 32], Augment::None),
        ([1, 28, 28], Augment::Shift { max: 2 }),
        ([3, 32, 32], Augment::CropFlip { pad: 4 }),
    ] {
        let params = EidnParams {
            augment,
            ..EidnParams::default()
        }
        .check()
        .unwrap();
        let pools = pools(input);
        let mut trainer = Trainer::new(&params, &pools, &Device::Cpu).unwrap();
        let flops = EncoderConfig::new(input, 2).forward_macs() as f64 * 2.0 * 3.0 * 256.0;
        if augment.is_none() {
            eprintln!(
                "train_step {}x{}x{}: ~{:.2} GFLOP per step (divide by the time per step for GFLOP/s)",
                input[0],
                input[1],
                input[2],
                flops / 1e9
            );
        }
        let mut name = format!("{}x{}x{}", input[0], input[1], input[2]);
        if !augment.is_none() {
            name.push_str(&format!("-{augment}"));
        }
        group.bench_function(name, |b| b.iter(|| trainer.step(&pools).unwrap()));
    }
    // Deep SAD's step on the authors' CIFAR-10 and MNIST LeNets (issue 13: >= 1.0x PyTorch).
    for input in [[3, 32, 32], [1, 28, 28]] {
        let mut step = BenchStep::new(input, 128, &Device::Cpu).unwrap();
        let name = format!("deep_sad-{}x{}x{}", input[0], input[1], input[2]);
        group.bench_function(name, |b| b.iter(|| step.step().unwrap()));
    }
    group.finish();
}

// No plots: criterion draws them with system fonts, which a fresh machine lacks (it panics
// with FontUnavailable); the numbers are printed and saved under target/criterion anyway.
criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = bench_train_step
}
criterion_main!(benches);
