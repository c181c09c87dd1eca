//! EfficientNet-Lite0 feature extraction, in ms per image, on synthetic 32x32 RGB images
//! upsampled to `EIDN_BENCH_SIZE` px (default 128, the profiles' size for CIFAR-10), on the
//! threads RAYON_NUM_THREADS allows. `just bench-vs-pytorch` runs it beside PyTorch's
//! extraction of the same number of images (tests/reference/efficientnet_lite_reference.py
//! --bench). Needs the weights (`eidn weights fetch`).

use std::time::Instant;

use eidn::backbone::{weights, Backbone, BackboneKind};
use eidn::data::ImageSet;

fn main() {
    eidn::kernels::threads::init(1).expect("threads fixed once, at start");
    let size: usize =
        std::env::var("EIDN_BENCH_SIZE").map_or(128, |s| s.parse().expect("EIDN_BENCH_SIZE"));
    let n: usize =
        std::env::var("EIDN_BENCH_IMAGES").map_or(512, |s| s.parse().expect("EIDN_BENCH_IMAGES"));
    let (data, _) = eidn::data::resolve_data_dir(None);
    let dir = weights::models_dir(&data);
    let kind = BackboneKind::EfficientNetLite0;
    let Some(path) = weights::find(kind, &dir).expect("weights check") else {
        eprintln!(
            "the {kind} weights are not in {}: run `eidn weights fetch` first",
            dir.display()
        );
        std::process::exit(2);
    };
    let backbone = Backbone::load(kind, &path).expect("weights load");
    let images = ImageSet::synthetic(n, [3, 32, 32], 7);
    backbone
        .features(&ImageSet::synthetic(32, [3, 32, 32], 8), size, None)
        .unwrap();
    let start = Instant::now();
    let f = backbone.features(&images, size, None).unwrap();
    let ms = start.elapsed().as_secs_f64() * 1000.0 / n as f64;
    assert!(f.iter().all(|v| v.is_finite()));
    println!(
        "{{\"size\": {size}, \"threads\": {}, \"images\": {n}, \"ms_per_image\": {ms:.3}}}",
        eidn::kernels::threads::available()
    );
}
