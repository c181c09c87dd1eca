//! `eidn score`'s path end to end (listing a folder of 10,000 28x28 PNG files, decoding,
//! preprocessing, forward pass) against training, in images per second, in one run:
//! training processes 256 images per step (128 triplets). Issue 12's target: scoring at least
//! as fast as training. Run with `cargo bench --bench score_throughput` (`just bench-score`).

use std::time::Instant;

use candle_core::Device;
use eidn::data::images::{decode_many, list_images};
use eidn::data::protocol::Pools;
use eidn::data::ImageSet;
use eidn::model::{EidnParams, TrainOptions, Trainer};

const FILES: usize = 10_000;

fn synthetic(n: usize, salt: usize) -> ImageSet {
    ImageSet::synthetic(n, [1, 28, 28], salt)
}

fn main() {
    eidn::kernels::threads::init(1).expect("threads fixed once, at start");
    eidn::kernels::buffers::keep_freed_memory();
    let pools = Pools {
        normal: synthetic(1000, 1),
        anomalous: synthetic(100, 2),
    };
    let params = EidnParams {
        epochs: 1,
        steps_per_epoch: 5,
        ..EidnParams::default()
    }
    .check()
    .unwrap();
    let model = params
        .fit(&pools, &Device::Cpu, &TrainOptions::default())
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let images = synthetic(FILES, 3);
    for i in 0..FILES {
        image::GrayImage::from_raw(28, 28, images.image(i).to_vec())
            .unwrap()
            .save(dir.path().join(format!("{i:05}.png")))
            .unwrap();
    }

    // Scoring as `eidn score` does it: list, decode in chunks of 1,024 on all cores, score.
    let start = Instant::now();
    let files = list_images(&[dir.path().to_path_buf()]).unwrap().images;
    let mut scored = 0;
    for chunk in files.chunks(1024) {
        let mut set = ImageSet {
            pixels: Vec::new(),
            labels: Vec::new(),
            ..synthetic(0, 0)
        };
        for pixels in decode_many(chunk, [1, 28, 28]) {
            set.pixels.extend(pixels.unwrap());
            set.labels.push(0);
        }
        scored += model.score(&set).unwrap().len();
    }
    let score_rate = scored as f64 / start.elapsed().as_secs_f64();

    // Training: steps of 128 triplets (256 images each).
    let mut trainer = Trainer::new(&params, &pools, &Device::Cpu).unwrap();
    for _ in 0..3 {
        trainer.step(&pools).unwrap();
    }
    let steps = 20;
    let start = Instant::now();
    for _ in 0..steps {
        trainer.step(&pools).unwrap();
    }
    let train_rate = (steps * 256) as f64 / start.elapsed().as_secs_f64();
    println!(
        "score: {scored} PNG files (28x28) in {:.0} images/s; training: {train_rate:.0} images/s \
         ({:.1} steps/s of 256); scoring / training = {:.2}x",
        score_rate,
        train_rate / 256.0,
        score_rate / train_rate
    );
}
