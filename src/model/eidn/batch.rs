//! The host-side batch of one training step.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::augment::Augment;
use super::sampler::{Pick, TripletBatch};
use crate::data::protocol::Pools;

/// Reused host buffers for one step: the distinct images its triplets pick (at 1 %
/// anomalies, 128 anomaly picks from a pool of ~60 images repeat most of them; augmented,
/// every pick is a distinct image), the anchors, and each positive's and negative's row.
pub(super) struct BatchBuffer {
    images: Vec<f32>,
    anchors: Vec<f32>,
    rows: HashMap<Pick, u32>,
    positives: Vec<u32>,
    negatives: Vec<u32>,
    input: [usize; 3],
    embed_dim: usize,
    augment: Augment,
    /// Augmentation draws: a stream of its own, from the run's seed.
    rng: Xoshiro256PlusPlus,
}

impl BatchBuffer {
    pub(super) fn new(
        m: usize,
        input: [usize; 3],
        embed_dim: usize,
        augment: Augment,
        seed: u64,
    ) -> Self {
        let image_len = input.iter().product::<usize>();
        BatchBuffer {
            images: Vec::with_capacity(2 * m * image_len),
            anchors: vec![0.0; m * embed_dim],
            rows: HashMap::with_capacity(2 * m),
            positives: Vec::with_capacity(m),
            negatives: Vec::with_capacity(m),
            input,
            embed_dim,
            augment,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed ^ 0xA5A5_5A5A_C3C3_3C3C),
        }
    }

    /// (distinct images, anchors, positive rows, negative rows) as tensors on `device`.
    pub(super) fn fill(
        &mut self,
        t: &TripletBatch,
        pools: &Pools,
        device: &Device,
    ) -> candle_core::Result<(Tensor, Tensor, Tensor, Tensor)> {
        let image_len = self.input.iter().product::<usize>();
        self.rows.clear();
        self.images.clear();
        self.positives.clear();
        self.negatives.clear();
        for (picks, rows) in [
            (&t.positives, &mut self.positives),
            (&t.negatives, &mut self.negatives),
        ] {
            for &pick in picks {
                // Without augmentation a pick repeated within the batch is the same image,
                // embedded once; with it, every copy is its own draw.
                let row = match self.rows.get(&pick) {
                    Some(&row) if self.augment.is_none() => row,
                    _ => {
                        let row = (self.images.len() / image_len) as u32;
                        let pool = if pick.anomalous {
                            &pools.anomalous
                        } else {
                            &pools.normal
                        };
                        self.images.resize((row as usize + 1) * image_len, 0.0);
                        self.augment.apply(
                            pool.image(pick.index),
                            self.input,
                            &mut self.rng,
                            &mut self.images[row as usize * image_len..],
                        );
                        self.rows.insert(pick, row);
                        row
                    }
                };
                rows.push(row);
            }
        }
        for (a, out) in t
            .anchor_anomalous
            .iter()
            .zip(self.anchors.chunks_exact_mut(self.embed_dim))
        {
            out.fill(if *a { 1.0 } else { 0.0 });
        }
        let [c, h, w] = self.input;
        let n = self.images.len() / image_len;
        let m = self.positives.len();
        let images = Tensor::from_slice(&self.images, (n, c, h, w), device)?;
        let anchors = Tensor::from_slice(&self.anchors, (m, self.embed_dim), device)?;
        let positives = Tensor::from_slice(&self.positives, m, device)?;
        let negatives = Tensor::from_slice(&self.negatives, m, device)?;
        Ok((images, anchors, positives, negatives))
    }
}
