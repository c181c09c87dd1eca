//! The fused CPU conv block against candle's reference ops (forward and every gradient) and
//! against finite differences; the fast and reference encoders train alike.

mod common;

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::VarMap;
use eidn::model::conv::max_pool2x2;
use eidn::model::conv::ConvBlock;
use eidn::model::{Encoder, EncoderConfig};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

fn random(shape: &[usize], rng: &mut Xoshiro256PlusPlus, scale: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.gen_range(-scale..scale)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// candle's conv2d + bias + ReLU, and the reshape/max pool (candle's own `max_pool2d`
/// backward scales gradients by 1/4; see `max_pool2x2`).
fn reference(x: &Tensor, w: &Tensor, b: &Tensor, pad: usize) -> Tensor {
    let o = w.dim(0).unwrap();
    let conv = x
        .conv2d(w, pad, 1, 1, 1)
        .unwrap()
        .broadcast_add(&b.reshape((1, o, 1, 1)).unwrap())
        .unwrap()
        .relu()
        .unwrap();
    max_pool2x2(&conv).unwrap()
}

/// Documents the candle bug the reference avoids: a unique maximum gets 1/4 of the gradient.
#[test]
fn candle_max_pool2d_backward_quarters_the_gradient() {
    let x = Var::from_slice(&[1f32, 2., 3., 4.], (1, 1, 2, 2), &Device::Cpu).unwrap();
    let grad_of = |y: Tensor| {
        let g = y.sum_all().unwrap().backward().unwrap();
        let gx = g.get(x.as_tensor()).unwrap().flatten_all().unwrap();
        gx.to_vec1::<f32>().unwrap()
    };
    let candle = grad_of(x.as_tensor().max_pool2d(2).unwrap());
    let ours = grad_of(max_pool2x2(x.as_tensor()).unwrap());
    assert_eq!(ours, vec![0., 0., 0., 1.]);
    // If this starts failing, candle fixed its max_pool2d backward: the reference can use it.
    assert_eq!(candle, vec![0., 0., 0., 0.25]);
}

fn max_abs(a: &Tensor, b: &Tensor) -> (f32, f32) {
    let diff = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap();
    let scale = a.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    (
        diff.to_scalar::<f32>().unwrap(),
        scale.to_scalar::<f32>().unwrap().max(1e-6),
    )
}

/// Forward values and the gradients of `sum(y * r)` for x, W and b, by both paths.
#[test]
fn matches_candle_forward_and_backward() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(42);
    // (N, C, H, W, O, pad): the encoder's two real blocks at both input sizes, odd sizes, a
    // batch that does not divide into the gradient chunks, and same-padded convs (EIDN+).
    for (n, c, h, w, o, pad) in [
        (5, 1, 28, 28, 32, 0),
        (4, 32, 13, 13, 64, 0),
        (3, 3, 32, 32, 32, 0),
        (2, 32, 15, 15, 64, 0),
        (37, 2, 9, 7, 4, 0),
        (3, 3, 32, 32, 16, 1),
        (19, 5, 7, 6, 8, 1),
        (2, 4, 2, 3, 3, 1),
    ] {
        let x = Var::from_tensor(&random(&[n, c, h, w], &mut rng, 1.0)).unwrap();
        let wt = Var::from_tensor(&random(&[o, c, 3, 3], &mut rng, 0.3)).unwrap();
        let b = Var::from_tensor(&random(&[o], &mut rng, 0.1)).unwrap();
        let fast =
            ConvBlock::apply(x.as_tensor(), wt.as_tensor(), b.as_tensor(), true, pad).unwrap();
        let slow = reference(x.as_tensor(), wt.as_tensor(), b.as_tensor(), pad);
        assert_eq!(fast.dims(), slow.dims());
        let (d, s) = max_abs(&slow, &fast);
        assert!(
            d <= 1e-4 * s,
            "forward {n}x{c}x{h}x{w}->{o} pad {pad}: diff {d} scale {s}"
        );

        let r = random(fast.dims(), &mut rng, 1.0);
        let gf = (&fast * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gs = (&slow * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, var) in [("x", &x), ("W", &wt), ("b", &b)] {
            let a = gs.get(var.as_tensor()).unwrap();
            let f = gf.get(var.as_tensor()).unwrap();
            let (d, s) = max_abs(a, f);
            assert!(
                d <= 1e-4 * s,
                "d{name} {n}x{c}x{h}x{w}->{o} pad {pad}: diff {d} scale {s}"
            );
        }
    }
}

#[test]
fn first_block_skips_the_input_gradient() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let x = Var::from_tensor(&random(&[2, 1, 8, 8], &mut rng, 1.0)).unwrap();
    let w = Var::from_tensor(&random(&[3, 1, 3, 3], &mut rng, 0.5)).unwrap();
    let b = Var::from_tensor(&random(&[3], &mut rng, 0.1)).unwrap();
    let y = ConvBlock::apply(x.as_tensor(), w.as_tensor(), b.as_tensor(), false, 0).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    assert!(g.get(x.as_tensor()).is_none());
    assert!(g.get(w.as_tensor()).is_some());
}

/// Central differences in f64 of the f32 op: the block is piecewise linear, so away from
/// kinks the difference quotient is exact up to rounding.
#[test]
fn matches_finite_differences() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
    let (n, c, h, w, o) = (2, 2, 6, 6, 3);
    let xs: Vec<f32> = (0..n * c * h * w)
        .map(|_| rng.gen_range(-1.0..1.0))
        .collect();
    let ws: Vec<f32> = (0..o * c * 9).map(|_| rng.gen_range(-0.5..0.5)).collect();
    let bs: Vec<f32> = (0..o).map(|_| rng.gen_range(0.0..0.2)).collect();
    let r = random(&[n, o, 2, 2], &mut rng, 1.0);
    let dev = Device::Cpu;
    let loss = |xs: &[f32], ws: &[f32], bs: &[f32]| -> f64 {
        let x = Tensor::from_slice(xs, (n, c, h, w), &dev).unwrap();
        let wt = Tensor::from_slice(ws, (o, c, 3, 3), &dev).unwrap();
        let b = Tensor::from_slice(bs, o, &dev).unwrap();
        let y = ConvBlock::apply(&x, &wt, &b, true, 0).unwrap();
        (y * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64
    };
    let x = Var::from_slice(&xs, (n, c, h, w), &dev).unwrap();
    let wt = Var::from_slice(&ws, (o, c, 3, 3), &dev).unwrap();
    let b = Var::from_slice(&bs, o, &dev).unwrap();
    let y = ConvBlock::apply(x.as_tensor(), wt.as_tensor(), b.as_tensor(), true, 0).unwrap();
    let grads = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let flat = |v: &Var| {
        grads
            .get(v.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let (gx, gw, gb) = (flat(&x), flat(&wt), flat(&b));
    let eps = 1e-2f32;
    let mut checked = 0;
    for which in 0..3 {
        let (len, analytic) = match which {
            0 => (xs.len(), &gx),
            1 => (ws.len(), &gw),
            _ => (bs.len(), &gb),
        };
        for i in 0..len {
            let mut plus = [xs.clone(), ws.clone(), bs.clone()];
            let mut minus = plus.clone();
            plus[which][i] += eps;
            minus[which][i] -= eps;
            let numeric = (loss(&plus[0], &plus[1], &plus[2])
                - loss(&minus[0], &minus[1], &minus[2]))
                / (2.0 * eps as f64);
            let a = analytic[i] as f64;
            // A kink inside [-eps, eps] makes the quotient an average of two slopes; those
            // few points are skipped by the tolerance only when both sides disagree a lot.
            if (numeric - a).abs() > 1e-2 * (1.0 + a.abs()) {
                let half = (loss(&plus[0], &plus[1], &plus[2]) - loss(&xs, &ws, &bs)) / eps as f64;
                let other =
                    (loss(&xs, &ws, &bs) - loss(&minus[0], &minus[1], &minus[2])) / eps as f64;
                assert!(
                    (half - other).abs() > 1e-2,
                    "input {which} index {i}: analytic {a}, numeric {numeric}"
                );
                continue;
            }
            checked += 1;
        }
    }
    // Nearly every coordinate must have been checked (kinks are rare).
    assert!(
        checked as f64 > 0.9 * (xs.len() + ws.len() + bs.len()) as f64,
        "{checked}"
    );
}

/// The whole encoder: fast and reference paths give the same embeddings and gradients.
#[test]
fn encoder_paths_agree() {
    let dev = Device::Cpu;
    let cfg = EncoderConfig::new([1, 28, 28], 2);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    let x = random(&[6, 1, 28, 28], &mut rng, 1.0).abs().unwrap();
    let run = |fast: bool| {
        let vm = VarMap::new();
        let enc = Encoder::with_path(&cfg, &vm, &dev, 9, fast).unwrap();
        let z = enc.forward(&x).unwrap();
        let grads = z.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let data = vm.data().lock().unwrap();
        let g = grads.get(data["conv1.weight"].as_tensor()).unwrap().clone();
        (z, g)
    };
    let (zf, gf) = run(true);
    let (zs, gs) = run(false);
    let (d, s) = max_abs(&zs, &zf);
    assert!(d <= 1e-4 * s, "embeddings: {d} vs {s}");
    let (d, s) = max_abs(&gs, &gf);
    assert!(d <= 1e-4 * s, "conv1 weight gradient: {d} vs {s}");
    assert_eq!(zf.dtype(), DType::F32);
}
