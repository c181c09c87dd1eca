//! The head's network: fully connected layers with ReLU between them, linear at the end,
//! initialised as PyTorch's `nn.Linear` (`U(-b, b)`, `b = 1/sqrt(fan_in)`) from a seed.

use std::collections::HashMap;

use candle_core::{Device, Result, Tensor, Var};
use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;

pub struct Mlp {
    /// Per layer its `in x out` weight and, unless bias-free, its bias.
    layers: Vec<(Var, Option<Var>)>,
}

fn uniform(
    shape: &[usize],
    bound: f32,
    rng: &mut Xoshiro256PlusPlus,
    device: &Device,
) -> Result<Var> {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.gen_range(-bound..bound)).collect();
    Var::from_tensor(&Tensor::from_vec(values, shape, device)?)
}

impl Mlp {
    /// Layers `sizes[0] -> sizes[1] -> ... -> sizes[last]`.
    pub fn new(
        sizes: &[usize],
        bias: bool,
        rng: &mut Xoshiro256PlusPlus,
        device: &Device,
    ) -> Result<Mlp> {
        let mut layers = Vec::new();
        for pair in sizes.windows(2) {
            let bound = 1.0 / (pair[0] as f32).sqrt();
            let w = uniform(&[pair[0], pair[1]], bound, rng, device)?;
            let b = bias
                .then(|| uniform(&[pair[1]], bound, rng, device))
                .transpose()?;
            layers.push((w, b));
        }
        Ok(Mlp { layers })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        let last = self.layers.len() - 1;
        for (i, (w, b)) in self.layers.iter().enumerate() {
            h = h.matmul(w.as_tensor())?;
            if let Some(b) = b {
                h = h.broadcast_add(b.as_tensor())?;
            }
            if i < last {
                h = h.relu()?;
            }
        }
        Ok(h)
    }

    pub fn vars(&self) -> Vec<Var> {
        let mut vars = Vec::new();
        for (w, b) in &self.layers {
            vars.push(w.clone());
            vars.extend(b.clone());
        }
        vars
    }

    /// The first layer's weight (DevNet penalises it).
    pub fn first_weight(&self) -> &Var {
        &self.layers[0].0
    }

    /// `layer{i}.weight` / `layer{i}.bias`, for safetensors.
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        let mut map = HashMap::new();
        for (i, (w, b)) in self.layers.iter().enumerate() {
            map.insert(format!("layer{i}.weight"), w.as_tensor().clone());
            if let Some(b) = b {
                map.insert(format!("layer{i}.bias"), b.as_tensor().clone());
            }
        }
        map
    }

    /// The network `tensors` wrote, checked against the sizes it must have.
    pub fn from_tensors(
        map: &HashMap<String, Tensor>,
        sizes: &[usize],
        bias: bool,
    ) -> std::result::Result<Mlp, String> {
        let mut layers = Vec::new();
        for (i, pair) in sizes.windows(2).enumerate() {
            let get = |name: String, shape: &[usize]| -> std::result::Result<Var, String> {
                let t = map.get(&name).ok_or_else(|| format!("no tensor {name}"))?;
                if t.dims() != shape {
                    return Err(format!("{name} is {:?}, expected {shape:?}", t.dims()));
                }
                Var::from_tensor(t).map_err(|e| e.to_string())
            };
            let w = get(format!("layer{i}.weight"), &[pair[0], pair[1]])?;
            let b = bias
                .then(|| get(format!("layer{i}.bias"), &[pair[1]]))
                .transpose()?;
            layers.push((w, b));
        }
        Ok(Mlp { layers })
    }
}
