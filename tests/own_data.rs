//! A user's own images end to end (issue 12): generated shapes (normal circles, anomalous
//! squares and triangles) as PNG and JPEG folders in both layouts, and as IDX files, through
//! verify -> train -> evaluate -> score -> a tiny profile through `reproduce` -> report; and
//! the bad inputs a user's folder can hold.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use eidn::data::{example, mnist::encode_idx, ImageSet};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

const SIDE: u32 = example::SIDE;

fn shape(class: usize, rng: &mut Xoshiro256PlusPlus) -> image::GrayImage {
    example::shape(class, rng)
}

fn write_folder(dir: &Path, counts: [usize; 3], seed: u64) {
    example::write_shapes(dir, counts, seed).unwrap();
}

/// `n` shapes (labels cycling 0, 1, 2) as the IDX pair `<split>-{images,labels}-...` in `dir`.
fn write_idx_shapes(dir: &Path, split: &str, n: usize, rng: &mut Xoshiro256PlusPlus) {
    let mut set = ImageSet {
        pixels: Vec::new(),
        labels: Vec::new(),
        channels: 1,
        height: SIDE as usize,
        width: SIDE as usize,
        class_names: Vec::new(),
    };
    for i in 0..n {
        set.pixels.extend(shape(i % 3, rng).into_raw());
        set.labels.push((i % 3) as u8);
    }
    let (images, labels) = encode_idx(&set);
    std::fs::write(dir.join(format!("{split}-images-idx3-ubyte")), images).unwrap();
    std::fs::write(dir.join(format!("{split}-labels-idx1-ubyte")), labels).unwrap();
}

fn eidn(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_eidn"));
    c.arg("--data-dir").arg(data).env_remove("EIDN_DATA_DIR");
    c
}

use common::run;

const FAST: [&str; 8] = [
    "--epochs",
    "3",
    "--steps-per-epoch",
    "40",
    "--batch-size",
    "32",
    "--anomaly-ratio",
    "0.05",
];

fn auc_of(json: &str) -> f64 {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    v["auc"].as_f64().unwrap()
}

#[test]
fn a_folder_of_shapes_from_verify_to_report() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_folder(&data.join("shapes"), [300, 150, 150], 1);
    std::fs::write(data.join("shapes/circle/README.txt"), "not an image").unwrap();
    std::fs::write(
        data.join("datasets.toml"),
        "[[dataset]]\nname = \"shapes\"\nkind = \"folder\"\npath = \"shapes\"\n",
    )
    .unwrap();

    let (code, out, err) = run(eidn(&data).args(["data", "verify", "--dataset", "shapes"]));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("UNVERIFIED") && out.contains("1x28x28"),
        "{out}"
    );
    assert!(out.contains("circle") && out.contains("triangle"), "{out}");
    assert!(err.contains("README.txt"), "a skipped file is named: {err}");

    // Train on circles; squares and triangles are the anomalies.
    let model = dir.path().join("model");
    let (code, out, err) = run(eidn(&data)
        .args(["train", "--dataset", "shapes", "--normal-class", "circle"])
        .args(FAST)
        .args(["--seed", "3", "--quiet", "--json", "--out"])
        .arg(&model));
    assert_eq!(code, Some(0), "{err}");
    let auc = auc_of(&out);
    assert!(auc > 0.9, "circles vs squares and triangles: AUC {auc}");
    let (code, again, err) = run(eidn(&data)
        .args(["evaluate", "--json", "--model"])
        .arg(&model));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(auc_of(&again), auc, "evaluate reads the same split");

    // New images never seen in training: the recorded threshold flags the shapes that are
    // not circles.
    let new = dir.path().join("new");
    write_folder(&new, [20, 20, 0], 99);
    let (code, csv, err) = run(eidn(&data)
        .args(["score", "--quiet", "--format", "csv", "--model"])
        .arg(&model)
        .arg(&new));
    assert_eq!(code, Some(0), "{err}");
    let mut flagged = [0usize; 2];
    for row in csv.lines().skip(1) {
        let f: Vec<&str> = row.split(',').collect();
        let square = f[0].contains("/square/");
        flagged[usize::from(square)] += usize::from(f[3] == "anomaly");
    }
    assert!(
        flagged[1] >= 15 && flagged[0] <= 5,
        "flagged circles / squares of 20 each: {flagged:?}\n{csv}"
    );

    // A tiny profile through reproduce, inline folder name and class names, then the report.
    let profile = dir.path().join("mine.toml");
    std::fs::write(
        &profile,
        "name = \"mine\"\ndescription = \"shapes\"\nseeds = [0, 1]\n\
         [train]\nepochs = 2\nsteps_per_epoch = 30\nbatch_size = 32\nmargin = 0.2\nlr = 0.001\nembed_dim = 2\n\
         [[stage]]\nid = \"classes\"\ndataset = \"shapes\"\nclasses = [\"circle\", \"circle+triangle\"]\nratios = [0.05]\n\
         reducers = [\"eidn\", \"eidn_plus\", \"pca\"]\ndetectors = [\"origin_distance\", \"isolation_forest\"]\n",
    )
    .unwrap();
    let results = dir.path().join("results");
    let report = dir.path().join("report");
    let (code, out, err) = run(eidn(&data)
        .args(["reproduce", "--quiet", "--profile"])
        .arg(&profile)
        .arg("--results")
        .arg(&results)
        .arg("--out")
        .arg(&report));
    assert_eq!(code, Some(0), "{out}\n{err}");
    let md = std::fs::read_to_string(report.join("README.md")).unwrap();
    assert!(
        md.contains("## shapes: EIDN per normal class and anomaly ratio"),
        "{md}"
    );
    assert!(
        md.contains("| circle |") && md.contains("| circle+triangle |"),
        "{md}"
    );
    assert!(md.contains("Fig 7"), "{md}");
    // EIDN+ (the grey recipe: shifts) trained cells of its own, shown beside EIDN.
    assert!(md.contains("| EIDN+ | isolation forest |"), "{md}");
    assert!(md.contains("shapes EIDN+ ours"), "{md}");
    assert!(
        out.contains("shapes: EIDN test AUC per normal class"),
        "{out}"
    );
}

#[test]
fn idx_files_and_a_split_folder_train() {
    let dir = tempfile::tempdir().unwrap();
    // IDX: 600 train and 300 test images of the three shapes, labels 0..2.
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
    let idx = dir.path().join("idx-shapes");
    std::fs::create_dir_all(&idx).unwrap();
    write_idx_shapes(&idx, "train", 600, &mut rng);
    write_idx_shapes(&idx, "t10k", 300, &mut rng);
    let inline = format!("idx:{}", idx.display());
    let (code, out, err) = run(eidn(dir.path())
        .args(["train", "--dataset", &inline, "--normal-class", "0"])
        .args(FAST)
        .args(["--quiet", "--json", "--out"])
        .arg(dir.path().join("m1")));
    assert_eq!(code, Some(0), "{err}");
    assert!(auc_of(&out) > 0.9, "{out}");
    // eidn.json keeps the inline declaration: evaluate finds the data without it.
    let (code, again, err) = run(eidn(dir.path())
        .args(["evaluate", "--json", "--model"])
        .arg(dir.path().join("m1")));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(auc_of(&again), auc_of(&out));

    // train/ and test/ folders give the split; two normal classes by name.
    let split = dir.path().join("split");
    write_folder(&split.join("train"), [200, 200, 100], 7);
    write_folder(&split.join("test"), [40, 40, 40], 8);
    let inline = format!("folder:{}", split.display());
    let (code, out, err) = run(eidn(dir.path())
        .args([
            "train",
            "--dataset",
            &inline,
            "--normal-class",
            "circle,square",
        ])
        .args(FAST)
        .args(["--quiet", "--json", "--out"])
        .arg(dir.path().join("m2")));
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["n_test"], 120, "{out}");
    assert_eq!(v["n_test_anomalies"], 40, "{out}");
    assert_eq!(v["normal_name"], "circle+square", "{out}");
    assert!(v["auc"].as_f64().unwrap() > 0.85, "{out}");
    // The second load reads the packed cache the first one wrote.
    assert!(split.join(".eidn-cache.bin").is_file());
}

/// A PNG whose header claims `w` x `h` (the pixel data is a 1x1 image's): enough for every
/// check that must refuse it before decoding.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::GrayImage::new(1, 1)
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    // IHDR: length (4) at 8, type at 12, width at 16, height at 20, CRC after 13 data bytes.
    bytes[16..20].copy_from_slice(&w.to_be_bytes());
    bytes[20..24].copy_from_slice(&h.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    bytes
}

#[test]
fn bad_folders_give_clear_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let verify = |root: &PathBuf| {
        let inline = format!("folder:{}", root.display());
        let (code, out, err) = run(eidn(dir.path()).args(["data", "verify", "--dataset", &inline]));
        assert_eq!(code, Some(1), "verify must fail: {out}{err}");
        assert!(!err.contains("panicked"), "{err}");
        out
    };
    let fresh = |name: &str| {
        let root = dir.path().join(name);
        write_folder(&root, [4, 4, 0], 1);
        std::fs::remove_dir(root.join("triangle")).unwrap();
        root
    };

    let mixed = fresh("mixed");
    image::GrayImage::new(40, 30)
        .save(mixed.join("square/big.png"))
        .unwrap();
    let out = verify(&mixed);
    assert!(
        out.contains("big.png") && out.contains("40x30") && out.contains("size = [32, 32]"),
        "{out}"
    );

    let empty = fresh("empty");
    std::fs::create_dir(empty.join("dent")).unwrap();
    std::fs::write(empty.join("dent/notes.txt"), "x").unwrap();
    let out = verify(&empty);
    assert!(
        out.contains("dent") && out.contains("no image files"),
        "{out}"
    );

    let single = fresh("single");
    std::fs::remove_dir_all(single.join("square")).unwrap();
    let out = verify(&single);
    assert!(out.contains("only one class folder (circle)"), "{out}");

    let broken = fresh("broken");
    std::fs::write(broken.join("square/cut.png"), b"\x89PNG\r\n\x1a\nnope").unwrap();
    let out = verify(&broken);
    assert!(out.contains("cut.png"), "{out}");

    let huge = fresh("huge");
    std::fs::write(huge.join("square/huge.png"), png_claiming(20000, 20000)).unwrap();
    let out = verify(&huge);
    assert!(
        out.contains("huge.png") && out.contains("20000x20000"),
        "{out}"
    );

    // An IDX label file one short of its images.
    let idx = dir.path().join("idx");
    std::fs::create_dir_all(&idx).unwrap();
    let set = |n: usize| ImageSet {
        pixels: vec![7; n * 4],
        labels: (0..n).map(|i| (i % 2) as u8).collect(),
        channels: 1,
        height: 2,
        width: 2,
        class_names: Vec::new(),
    };
    for (split, n) in [("train", 6), ("t10k", 4)] {
        let (images, _) = encode_idx(&set(n));
        let (_, labels) = encode_idx(&set(n - usize::from(split == "t10k")));
        std::fs::write(idx.join(format!("{split}-images-idx3-ubyte")), images).unwrap();
        std::fs::write(idx.join(format!("{split}-labels-idx1-ubyte")), labels).unwrap();
    }
    let (code, out, _) = run(eidn(dir.path()).args([
        "data",
        "verify",
        "--dataset",
        &format!("idx:{}", idx.display()),
    ]));
    assert_eq!(code, Some(1));
    assert!(
        out.contains("t10k-images-idx3-ubyte")
            && out.contains("4 images")
            && out.contains("3 labels"),
        "{out}"
    );

    // A declared name that is a built-in's.
    std::fs::write(
        dir.path().join("clash.toml"),
        "[[dataset]]\nname = \"cifar10\"\nkind = \"folder\"\npath = \"mixed\"\n",
    )
    .unwrap();
    let (code, _, err) = run(eidn(dir.path())
        .arg("--datasets")
        .arg(dir.path().join("clash.toml"))
        .args(["data", "verify"]));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("clash.toml") && err.contains("built-in"),
        "{err}"
    );
}

/// Issue 15: `select-recipe` reads the training split only. An IDX dataset's test files are
/// replaced by other valid images and labels: the validation table and the chosen recipe are
/// byte for byte the same.
#[test]
fn recipe_selection_never_reads_the_test_split() {
    let dir = tempfile::tempdir().unwrap();
    let idx = dir.path().join("sel");
    std::fs::create_dir_all(&idx).unwrap();
    let write = |split: &str, n: usize, seed: u64| {
        write_idx_shapes(&idx, split, n, &mut Xoshiro256PlusPlus::seed_from_u64(seed));
    };
    write("train", 300, 1);
    write("t10k", 60, 2);
    let candidates = dir.path().join("candidates.toml");
    std::fs::write(
        &candidates,
        "[sel]\nratio = 0.1\nclasses = [0, 1]\nseeds = [0]\n\
         base = { epochs = 1, steps_per_epoch = 15, batch_size = 16 }\n\
         [[sel.candidate]]\nname = \"paper\"\n\
         [[sel.candidate]]\nname = \"shift\"\ntrain = { augment = \"shift:2\" }\n",
    )
    .unwrap();
    let select = |out: &str| {
        let (code, stdout, err) = run(eidn(dir.path())
            .args(["select-recipe", "--quiet", "--dataset"])
            .arg(format!("idx:{}", idx.display()))
            .arg("--candidates")
            .arg(&candidates)
            .arg("--out")
            .arg(dir.path().join(out)));
        // 1: the chosen recipe is not the committed one (there is none for this dataset).
        assert_eq!(code, Some(1), "{stdout}{err}");
        assert!(
            stdout.contains("| paper |") || stdout.contains("| paper **(chosen)** |"),
            "{stdout}"
        );
        let md = std::fs::read_to_string(dir.path().join(out).join("sel.md")).unwrap();
        let toml = std::fs::read_to_string(dir.path().join(out).join("sel.toml")).unwrap();
        (md, toml)
    };
    let first = select("a");
    write("t10k", 90, 77);
    let second = select("b");
    assert_eq!(first, second, "the selection changed with the test split");
    assert!(first.1.contains("[recipe.sel]"), "{}", first.1);
}
