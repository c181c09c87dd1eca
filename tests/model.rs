//! EIDN training: loss gradients, learning on a separable toy problem, seed determinism,
//! save/load, the NaN guard, and the real-MNIST accuracy floor.

mod common;

use candle_core::{Device, Tensor, Var};
use eidn::data::protocol::{OneVsRest, Pools};
use eidn::data::{load, DatasetName, ImageSet};
use eidn::metrics::roc_auc;
use eidn::model::{triplet_loss, Augment, Eidn, EidnParams, ModelError, TrainOptions};

/// Normal images are dark noise, anomalies carry a bright square: separable, but only by
/// learning where to look.
fn toy_pools(n_normal: usize, n_anomalous: usize) -> Pools {
    let side = 12;
    let make = |n: usize, anomalous: bool, salt: usize| {
        let mut pixels = Vec::with_capacity(n * side * side);
        for i in 0..n {
            for p in 0..side * side {
                let noise = ((i * 131 + p * 71 + salt) % 97) as u8;
                let (y, x) = (p / side, p % side);
                let bright = anomalous && (3..7).contains(&y) && (4..8).contains(&x);
                pixels.push(if bright { 200 + noise / 2 } else { noise });
            }
        }
        ImageSet {
            pixels,
            labels: vec![anomalous as u8; n],
            channels: 1,
            height: side,
            width: side,
            class_names: vec!["normal".into(), "anomalous".into()],
        }
    };
    Pools {
        normal: make(n_normal, false, 1),
        anomalous: make(n_anomalous, true, 2),
    }
}

fn small(seed: u64, steps: usize) -> EidnParams {
    EidnParams {
        epochs: 1,
        steps_per_epoch: steps,
        batch_size: 16,
        seed,
        ..EidnParams::default()
    }
}

fn fit(params: EidnParams, pools: &Pools) -> Eidn {
    params
        .check()
        .unwrap()
        .fit(pools, &Device::Cpu, &TrainOptions::default())
        .unwrap()
}

#[test]
fn loss_gradient_pulls_positives_to_the_anchor_and_pushes_negatives_away() {
    let dev = Device::Cpu;
    // Triplet 0: normal anchor (origin), active. Triplet 1: anomalous anchor (ones), active.
    // Triplet 2: normal anchor, inactive (already satisfied): no gradient.
    let y = Tensor::from_slice(&[0f32, 0., 1., 1., 0., 0.], (3, 2), &dev).unwrap();
    let p = Var::from_slice(&[0.5f32, 0.4, 0.2, 0.3, 0.0, 0.1], (3, 2), &dev).unwrap();
    let n = Var::from_slice(&[0.6f32, 0.5, 0.5, 0.6, 1.0, 1.0], (3, 2), &dev).unwrap();
    let loss = triplet_loss(&y, p.as_tensor(), n.as_tensor(), 0.2).unwrap();
    let grads = loss.backward().unwrap();
    let gp = grads.get(p.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
    let gn = grads.get(n.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
    let yv = y.to_vec2::<f32>().unwrap();
    let pv = p.as_tensor().to_vec2::<f32>().unwrap();
    let nv = n.as_tensor().to_vec2::<f32>().unwrap();
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    for i in 0..2 {
        let to_anchor_p: Vec<f32> = (0..2).map(|k| yv[i][k] - pv[i][k]).collect();
        let to_anchor_n: Vec<f32> = (0..2).map(|k| yv[i][k] - nv[i][k]).collect();
        // A descent step (-grad) moves the positive toward its anchor...
        assert!(dot(&gp[i], &to_anchor_p) < 0.0, "triplet {i}: {:?}", gp[i]);
        // ...and the negative away from it.
        assert!(dot(&gn[i], &to_anchor_n) > 0.0, "triplet {i}: {:?}", gn[i]);
    }
    assert_eq!(gp[2], vec![0.0, 0.0]);
    assert_eq!(gn[2], vec![0.0, 0.0]);
}

#[test]
fn training_separates_a_toy_problem() {
    let pools = toy_pools(64, 16);
    let params = EidnParams {
        epochs: 4,
        steps_per_epoch: 50,
        ..small(0, 0)
    };
    let model = fit(params, &pools);
    let normal = model.score(&pools.normal).unwrap();
    let anomalous = model.score(&pools.anomalous).unwrap();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    // The hinge stops pulling once the margin holds, so normals need not reach the origin;
    // what must hold is the ordering (anomalies far out, near |1| = sqrt 2) and a falling loss.
    let (mn, ma) = (mean(&normal), mean(&anomalous));
    assert!(ma > mn + 0.3, "normal {mn}, anomalous {ma}");
    assert!((ma - 2f64.sqrt()).abs() < 0.3, "anomalous {ma}");
    let losses = &model.config.epoch_loss;
    assert!(losses[3] < losses[0] / 2.0, "{losses:?}");
    let scores: Vec<f64> = normal.iter().chain(&anomalous).copied().collect();
    let labels: Vec<bool> = (0..scores.len()).map(|i| i >= normal.len()).collect();
    assert!(roc_auc(&scores, &labels).unwrap() > 0.99);
}

#[test]
fn same_seed_same_model_and_save_load_round_trip() {
    let pools = toy_pools(32, 8);
    let a = fit(small(5, 5), &pools);
    let b = fit(small(5, 5), &pools);
    let c = fit(small(6, 5), &pools);
    let sa = a.score(&pools.normal).unwrap();
    assert_eq!(
        sa,
        b.score(&pools.normal).unwrap(),
        "same seed must be bit-identical"
    );
    assert_ne!(sa, c.score(&pools.normal).unwrap());

    let dir = tempfile::tempdir().unwrap();
    a.save(dir.path()).unwrap();
    let back = Eidn::load(dir.path(), &Device::Cpu).unwrap();
    assert_eq!(back.score(&pools.normal).unwrap(), sa);
    assert_eq!(back.config.params, a.config.params);
    assert_eq!(back.config.encoder, a.config.encoder);

    // A damaged weights file is an error naming it, not a panic.
    std::fs::write(dir.path().join("model.safetensors"), b"garbage").unwrap();
    let err = Eidn::load(dir.path(), &Device::Cpu).err().unwrap();
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}

/// Issue 15 item 1: augmentation is seeded (same seed, same model), changes what is learned,
/// still learns the toy problem, and is recorded in eidn.json (absent when off).
#[test]
fn augmentation_is_seeded_recorded_and_still_learns() {
    let pools = toy_pools(64, 16);
    let aug = |seed| EidnParams {
        epochs: 4,
        steps_per_epoch: 50,
        augment: Augment::Shift { max: 1 },
        ..small(seed, 50)
    };
    let a = fit(aug(3), &pools);
    let b = fit(aug(3), &pools);
    let plain = fit(
        EidnParams {
            epochs: 4,
            ..small(3, 50)
        },
        &pools,
    );
    let sa = a.score(&pools.normal).unwrap();
    assert_eq!(
        sa,
        b.score(&pools.normal).unwrap(),
        "same seed must be bit-identical"
    );
    assert_ne!(sa, plain.score(&pools.normal).unwrap());
    let scores: Vec<f64> = sa
        .iter()
        .copied()
        .chain(a.score(&pools.anomalous).unwrap())
        .collect();
    let labels: Vec<bool> = (0..scores.len()).map(|i| i >= pools.normal.len()).collect();
    assert!(roc_auc(&scores, &labels).unwrap() > 0.95);
    let dir = tempfile::tempdir().unwrap();
    a.save(dir.path()).unwrap();
    let json = std::fs::read_to_string(dir.path().join("eidn.json")).unwrap();
    assert!(json.contains("\"augment\": \"shift:1\""), "{json}");
    plain.save(dir.path()).unwrap();
    let json = std::fs::read_to_string(dir.path().join("eidn.json")).unwrap();
    assert!(!json.contains("augment"), "off is not written: {json}");
    let too_far = EidnParams {
        augment: Augment::CropFlip { pad: 40 },
        ..EidnParams::default()
    };
    assert!(too_far.check().is_err());
}

#[test]
fn an_absurd_learning_rate_is_refused_before_training() {
    // lr 1e30 used to train to a diverged (NaN) network; issue 10 item 10 bounds lr to
    // (0, 1], so it is refused up front, naming the setting.
    let params = EidnParams {
        lr: 1e30,
        ..small(0, 20)
    };
    let err = params.check().expect_err("lr 1e30 must be refused");
    assert!(matches!(err, ModelError::InvalidParams(_)), "{err}");
    assert!(err.to_string().contains("lr"), "{err}");
}

#[test]
fn invalid_params_and_shapes_are_refused() {
    for bad in [
        EidnParams {
            embed_dim: 0,
            ..EidnParams::default()
        },
        EidnParams {
            margin: -1.0,
            ..EidnParams::default()
        },
        EidnParams {
            lr: f64::NAN,
            ..EidnParams::default()
        },
        EidnParams {
            batch_size: 0,
            ..EidnParams::default()
        },
    ] {
        assert!(matches!(bad.check(), Err(ModelError::InvalidParams(_))));
    }
    let pools = toy_pools(8, 2);
    let model = fit(small(0, 1), &pools);
    let wrong = ImageSet {
        pixels: vec![0; 3 * 12 * 12],
        labels: vec![0],
        channels: 3,
        height: 12,
        width: 12,
        class_names: vec!["x".into()],
    };
    assert!(matches!(
        model.score(&wrong),
        Err(ModelError::InputShape { .. })
    ));
}

/// The accuracy floor: MNIST class 0 at 5 % anomalies, 200 steps of 128 triplets, test ROC
/// AUC >= 0.99 (an independent reference implementation reached 0.9989); and the fast CPU
/// conv path lands within 0.005 of candle's reference ops on the same run.
#[test]
#[cfg_attr(
    eidn_no_mnist,
    ignore = "needs the real MNIST: set EIDN_DATA_DIR (e.g. ../shared/datasets)"
)]
fn real_mnist_class0_5pct_200_steps_reaches_099_on_both_paths() {
    let Some(dir) = common::real_data_dir("mnist") else {
        return;
    };
    let data = load(DatasetName::Mnist, &dir, 0).unwrap();
    let protocol = OneVsRest::new(DatasetName::Mnist, 0, 0.05, 0);
    let pools = protocol.pools(&data).unwrap();
    let test = protocol.test_set(&data).unwrap();
    let params = EidnParams {
        epochs: 2,
        steps_per_epoch: 100,
        ..EidnParams::default()
    }
    .check()
    .unwrap();
    let run = |reference_ops: bool| {
        let options = TrainOptions {
            reference_ops,
            ..TrainOptions::default()
        };
        let model = params.fit(&pools, &Device::Cpu, &options).unwrap();
        let auc = roc_auc(&model.score(&test.images).unwrap(), &test.is_anomaly).unwrap();
        eprintln!(
            "MNIST class 0, 5 %, 200 steps, {} path: AUC {auc:.4} in {:.1} s",
            if reference_ops { "reference" } else { "fast" },
            model.config.train_seconds
        );
        auc
    };
    let fast = run(false);
    assert!(fast >= 0.99, "fast path AUC {fast}");
    let reference = run(true);
    assert!(reference >= 0.99, "reference path AUC {reference}");
    assert!(
        (fast - reference).abs() <= 0.005,
        "fast {fast} vs reference {reference}"
    );
}
