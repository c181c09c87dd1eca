//! The Concrete Cracks loader on a small folder of generated JPEGs (the real data is not
//! available offline): resize to 32x32 RGB, 80/20 seeded split, packed cache, bad JPEGs.

use std::path::Path;

use eidn::data::concrete::{cache_file_name, CLASS_DIRS};
use eidn::data::{load_concrete, ConcreteOptions, DataError, CONCRETE_SIDE};

/// Writes `per_class` 227x227 JPEGs per class; negatives are flat grey-ish, positives carry
/// a dark diagonal "crack". Colours vary by index so that images differ.
fn write_jpegs(dir: &Path, per_class: usize) {
    for (label, class) in CLASS_DIRS.iter().enumerate() {
        let folder = dir.join(class);
        std::fs::create_dir_all(&folder).unwrap();
        for i in 0..per_class {
            let base = 150 + (i as u8) * 5;
            let img = image::RgbImage::from_fn(227, 227, |x, y| {
                let on_crack = label == 1 && (x as i32 - y as i32).abs() < 6;
                if on_crack {
                    image::Rgb([20, 20, 20])
                } else {
                    image::Rgb([base, base - 10, base - 20])
                }
            });
            img.save(folder.join(format!("{:05}.jpg", i + 1))).unwrap();
        }
    }
}

#[test]
fn loads_resizes_splits_and_caches() {
    let dir = tempfile::tempdir().unwrap();
    write_jpegs(dir.path(), 10);
    let d = load_concrete(dir.path(), &ConcreteOptions::new(3)).unwrap();
    assert_eq!((d.train.len(), d.test.len()), (16, 4));
    for set in [&d.train, &d.test] {
        assert_eq!(
            (set.channels, set.height, set.width),
            (3, CONCRETE_SIDE, CONCRETE_SIDE)
        );
        assert_eq!(set.class_names, vec!["negative", "positive"]);
    }
    let total: Vec<usize> = d
        .train
        .class_counts()
        .iter()
        .zip(d.test.class_counts())
        .map(|(a, b)| a + b)
        .collect();
    assert_eq!(total, vec![10, 10]);

    // Resizing keeps colour (JPEG error aside) and channel order: a flat negative image of
    // (150, 140, 130) must come out near those values, R plane first.
    let neg = d
        .train
        .labels
        .iter()
        .position(|&l| l == 0)
        .expect("a negative image in train");
    let img = d.train.image(neg);
    let plane = CONCRETE_SIDE * CONCRETE_SIDE;
    let mean = |c: usize| {
        img[c * plane..(c + 1) * plane]
            .iter()
            .map(|&v| v as f64)
            .sum::<f64>()
            / plane as f64
    };
    assert!(mean(0) > mean(1) && mean(1) > mean(2), "channel order");
    assert!(
        (mean(0) - mean(2) - 20.0).abs() < 6.0,
        "R-B {}",
        mean(0) - mean(2)
    );
    // A positive image keeps a dark diagonal after the 7x reduction (antialiased, not lost).
    let pos = d.train.labels.iter().position(|&l| l == 1).unwrap();
    let p = d.train.image(pos);
    let diag: f64 = (0..CONCRETE_SIDE)
        .map(|i| p[i * CONCRETE_SIDE + i] as f64)
        .sum::<f64>()
        / 32.0;
    let corner = p[CONCRETE_SIDE - 1] as f64;
    assert!(
        diag + 40.0 < corner,
        "crack lost: diagonal {diag}, corner {corner}"
    );

    // Same seed, same split; other seed, other split.
    let again = load_concrete(dir.path(), &ConcreteOptions::new(3)).unwrap();
    assert_eq!(again.train, d.train);
    let other = load_concrete(dir.path(), &ConcreteOptions::new(4)).unwrap();
    assert_ne!(other.train.pixels, d.train.pixels);

    // The cache exists and is what later loads read, while the files are the ones it was
    // made from: a JPEG replaced by same-size garbage is decoded again (and refused, named).
    let cache = dir.path().join(cache_file_name());
    assert!(cache.is_file());
    let cached = load_concrete(dir.path(), &ConcreteOptions::new(3)).unwrap();
    assert_eq!(cached.train, d.train);
    let victim = dir.path().join("Positive/00003.jpg");
    let len = std::fs::metadata(&victim).unwrap().len() as usize;
    std::fs::write(&victim, vec![0x42; len]).unwrap();
    let err = load_concrete(dir.path(), &ConcreteOptions::new(3)).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Image { .. } | DataError::TruncatedImage { .. }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("00003.jpg"), "{err}");
}

#[test]
fn a_changed_folder_or_a_damaged_cache_rebuilds_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    write_jpegs(dir.path(), 5);
    let first = load_concrete(dir.path(), &ConcreteOptions::new(1)).unwrap();
    assert_eq!(first.train.len() + first.test.len(), 10);
    // Removing an image changes the listing: the cache is rebuilt, not trusted.
    std::fs::remove_file(dir.path().join("Negative/00001.jpg")).unwrap();
    let second = load_concrete(dir.path(), &ConcreteOptions::new(1)).unwrap();
    assert_eq!(second.train.len() + second.test.len(), 9);

    // A damaged cache is rebuilt from the images, never read.
    let cache = dir.path().join(cache_file_name());
    let b = std::fs::read(&cache).unwrap();
    std::fs::write(&cache, &b[..b.len() - 10]).unwrap();
    let third = load_concrete(dir.path(), &ConcreteOptions::new(1)).unwrap();
    assert_eq!(third.train, second.train);
    assert_eq!(std::fs::read(&cache).unwrap().len(), b.len());
    let mut flipped = std::fs::read(&cache).unwrap();
    let last = flipped.len() - 1;
    flipped[last] ^= 0xFF;
    std::fs::write(&cache, &flipped).unwrap();
    let fourth = load_concrete(dir.path(), &ConcreteOptions::new(1)).unwrap();
    assert_eq!(fourth.test, second.test);
}

#[test]
fn missing_folders_explain_how_to_get_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_concrete(dir.path(), &ConcreteOptions::new(0)).unwrap_err();
    assert!(matches!(err, DataError::Missing { .. }), "{err}");
    assert!(err.to_string().contains("Negative/"), "{err}");
    assert!(err.to_string().contains("5y9wdsg2zt"), "{err}");
}

/// Issue 10 item 7: a Concrete-shaped folder through `reproduce` at every ratio of Fig 5 and
/// three seeds (the 100 % cell needs as many cracked as uncracked training images, which the
/// stratified split guarantees); a cell that cannot run (200 %) is recorded as failed with
/// its reason, the other cells still run, and the run exits 2 naming it.
#[test]
fn reproduce_runs_every_ratio_and_names_failed_cells() {
    let data = tempfile::tempdir().unwrap();
    write_jpegs(&data.path().join("concrete"), 15);
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("concrete.toml");
    std::fs::write(
        &profile,
        r#"
name = "concrete-test"
description = "every ratio, three seeds"
seeds = [0, 1, 2]
[train]
epochs = 1
steps_per_epoch = 3
batch_size = 4
[[stage]]
id = "fig5"
dataset = "concrete"
ratios = [1.0, 0.5, 0.1, 0.05, 0.01]
[[stage]]
id = "table3"
dataset = "concrete"
ratios = [2.0]
seeds = [0]
"#,
    )
    .unwrap();
    let results = dir.path().join("results");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eidn"))
        .arg("--data-dir")
        .arg(data.path())
        .arg("reproduce")
        .arg("--profile")
        .arg(&profile)
        .arg("--results")
        .arg(&results)
        .arg("--out")
        .arg(dir.path().join("report"))
        .arg("--quiet")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("1 of 16 cells failed"), "{stderr}");
    assert!(
        stderr.contains("concrete-c0-r2-s0") && stderr.contains("needs 24 labelled anomalies"),
        "{stderr}"
    );
    let records = eidn::experiment::read_records(&results).unwrap();
    assert_eq!(records.len(), 15, "every ratio x seed cell ran");
    let failures = eidn::experiment::read_failures(&results);
    assert_eq!(failures.len(), 1);
    let md = std::fs::read_to_string(dir.path().join("report/README.md")).unwrap();
    assert!(
        md.contains("Failed cells") && md.contains("concrete-c0-r2-s0"),
        "{md}"
    );
}
