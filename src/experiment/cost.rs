//! What a grid will cost before it starts: the cells and networks left, their training
//! steps, and the wall time on this machine from a short calibration of the training step
//! (a few steps on synthetic images of each input shape; the step's cost does not depend on
//! the pixels).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use candle_core::Device;

use super::{Cell, ExperimentError, Record, Shard};
use crate::data::protocol::Pools;
use crate::data::ImageSet;
use crate::model::deep_sad::{DeepSadParams, DeepSadTrain};
use crate::model::{Arch, Trainer};

/// Scoring the test split and fitting the baselines, as a share of the training time (from a
/// measured run of the quick profile).
const SCORING_OVERHEAD: f64 = 0.07;

/// Reference costs of a cell's parts, in seconds on the machine that measured them (2 cores
/// of an AMD EPYC, one cell per core; reports/quick and reports/deep_sad): a training step of
/// 128 triplets on MNIST (28 x 28 x 1), a Deep SAD image-pass on MNIST, and fitting and
/// scoring one method. Only their ratios matter: they deal cells to shards.
const STEP_SECONDS: f64 = 0.048;
const DEEP_IMAGE_SECONDS: f64 = 0.68e-3;
const METHOD_SECONDS: f64 = 2.0;
/// Fitting a baseline reducer (PCA, LDA, logistic regression, a head) once per cell.
const BASELINE_SECONDS: f64 = 8.0;

/// A cell's estimated cost in reference seconds, the same on every machine (no calibration:
/// every shard of an array job must deal the same cells). A step scales with the batch and
/// the image area, plus a sixth per extra channel (CIFAR-10 measured 1.73 x MNIST's step);
/// a Deep SAD image-pass with the pixel count (CIFAR-10 measured 4.3 x MNIST's).
pub fn cell_cost(cell: &Cell) -> f64 {
    let [c, h, w] = cell.protocol.dataset.input_shape().unwrap_or([3, 32, 32]);
    let area = (h * w) as f64 / 784.0;
    let channels = 1.0 + (c as f64 - 1.0) / 6.0;
    let baselines = (cell.methods.iter().map(|(r, _)| *r))
        .filter(|r| !r.is_trained())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let mut cost = cell.methods.len() as f64 * METHOD_SECONDS + baselines as f64 * BASELINE_SECONDS;
    if let Some(deep) = &cell.deep {
        let images = cell.deep_images_per_epoch() * deep.train.epochs_total() as u64;
        cost += images as f64 * area * c as f64 * DEEP_IMAGE_SECONDS;
    } else if cell.needs_encoder() {
        let batches = cell.train.batch_size as f64 / 128.0;
        cost += cell.train.steps() as f64 * batches * area * channels * STEP_SECONDS;
    }
    cost
}

/// Deals `cells` to `shards` shares by cost: the most expensive first, each to the share
/// with the least so far (ties to the lower share, then the cell order), so the shares end
/// within one cell of each other. Returns each cell's share (0-based).
pub fn deal(cells: &[Cell], shards: usize) -> Vec<usize> {
    let costs: Vec<f64> = cells.iter().map(cell_cost).collect();
    let mut order: Vec<usize> = (0..cells.len()).collect();
    order.sort_by(|&a, &b| costs[b].total_cmp(&costs[a]).then(a.cmp(&b)));
    let mut load = vec![0f64; shards.max(1)];
    let mut share = vec![0; cells.len()];
    for i in order {
        let least = (0..load.len())
            .min_by(|&a, &b| load[a].total_cmp(&load[b]).then(a.cmp(&b)))
            .expect("at least one share");
        share[i] = least;
        load[least] += costs[i];
    }
    share
}

/// The cells of `cells` that `shard` runs (all of them without a shard).
pub fn shard_cells(cells: Vec<Cell>, shard: Option<Shard>) -> Vec<Cell> {
    let Some(shard) = shard else {
        return cells;
    };
    let share = deal(&cells, shard.count);
    (cells.into_iter().zip(share))
        .filter(|(_, s)| *s == shard.index - 1)
        .map(|(c, _)| c)
        .collect()
}

/// The work left in a grid (or shard).
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub cells: usize,
    /// Cells with a counted record for every method.
    pub done: usize,
    /// (input shape, batch size, encoder shape) -> training steps left.
    pub steps: BTreeMap<([usize; 3], usize, Arch), u64>,
    /// Input shape -> Deep SAD image-passes left (images x epochs, pretraining included).
    pub deep_images: BTreeMap<[usize; 3], u64>,
    /// Cells left whose encoder is not saved yet.
    pub networks: usize,
    /// Cells left that train nothing (methods on pretrained features, baselines alone)...
    pub untrained: usize,
    /// ...and their fitting and scoring, in the reference seconds of [`cell_cost`] (not
    /// calibrated here: a method's fit is not one repeated step).
    pub untrained_seconds: f64,
}

impl Plan {
    /// `cells` against the counted records; `has_encoder` says whether a cell's encoder is
    /// already saved (then it is not trained again).
    /// Fails only when a dataset's input shape cannot be read (a user's folder is missing).
    pub fn new(
        cells: &[Cell],
        counted: &[Record],
        has_encoder: impl Fn(&Cell) -> bool,
    ) -> Result<Plan, ExperimentError> {
        let mut records: HashMap<&str, usize> = HashMap::new();
        for r in counted {
            *records.entry(r.cell.as_str()).or_default() += 1;
        }
        let mut plan = Plan {
            cells: cells.len(),
            ..Plan::default()
        };
        for cell in cells {
            let id = cell.id();
            if records.get(id.as_str()).copied().unwrap_or(0) >= cell.methods.len() {
                plan.done += 1;
                continue;
            }
            // None to train (baselines only: PCA, LDA, pretrained features): only fitted and
            // scored, which the training overhead below does not cover.
            if cell.deep.is_none() && !cell.needs_encoder() {
                plan.untrained += 1;
                plan.untrained_seconds += cell_cost(cell);
                continue;
            }
            // Saved already: scored again, not trained again.
            if has_encoder(cell) {
                continue;
            }
            plan.networks += 1;
            let shape = cell.protocol.dataset.input_shape()?;
            if let Some(deep) = &cell.deep {
                *plan.deep_images.entry(shape).or_default() +=
                    cell.deep_images_per_epoch() * deep.train.epochs_total() as u64;
                continue;
            }
            *plan
                .steps
                .entry((shape, cell.train.batch_size, cell.train.arch))
                .or_default() += cell.train.steps() as u64;
        }
        Ok(plan)
    }

    /// Seconds per training step for each (shape, batch) of the plan, then per Deep SAD
    /// image-pass for each shape of `deep_images`, measured here.
    pub fn calibrate(&self, device: &Device) -> Result<Vec<f64>, ExperimentError> {
        let steps = self
            .steps
            .keys()
            .map(|&(shape, batch, arch)| step_seconds(shape, batch, arch, device));
        let deep = self
            .deep_images
            .keys()
            .map(|&shape| deep_image_seconds(shape, device));
        steps.chain(deep).collect()
    }

    /// `per_step` (measured by `calibrated.calibrate`, whose keys hold all of this plan's)
    /// in the order of this plan's keys, as [`Plan::describe`] takes them.
    pub fn rates_from(&self, calibrated: &Plan, per_step: &[f64]) -> Vec<f64> {
        let at = |i: Option<usize>| i.and_then(|i| per_step.get(i)).copied().unwrap_or(0.0);
        let steps = (self.steps.keys()).map(|k| at(calibrated.steps.keys().position(|c| c == k)));
        let deep = self.deep_images.keys().map(|k| {
            let i = calibrated.deep_images.keys().position(|c| c == k);
            at(i.map(|i| i + calibrated.steps.len()))
        });
        steps.chain(deep).collect()
    }

    /// Estimated wall seconds with `jobs` cells at once, at `per_step` (this plan's order).
    pub fn seconds(&self, per_step: &[f64], jobs: usize) -> f64 {
        let rates = self.steps.values().chain(self.deep_images.values());
        let training: f64 = rates.zip(per_step).map(|(&n, &s)| n as f64 * s).sum();
        self.wall(training, jobs)
    }

    /// Wall seconds of `training` seconds of steps (plus their cells' scoring) and the
    /// untrained cells' fits, `jobs` cells at a time.
    fn wall(&self, training: f64, jobs: usize) -> f64 {
        (training * (1.0 + SCORING_OVERHEAD) + self.untrained_seconds) / jobs.max(1) as f64
    }

    /// The lines printed before a run (and by `--dry-run`): what is left and how long it
    /// will take, with `per_step` from `calibrate` and `jobs` cells at once (each calibrated
    /// on the threads it will have).
    pub fn describe(&self, per_step: &[f64], profile: &str, jobs: usize) -> Vec<String> {
        let total_steps: u64 = self.steps.values().sum();
        let mut lines = vec![format!(
            "plan: {} cells ({} done, {} left), {} networks to train, {} training steps",
            self.cells,
            self.done,
            self.cells - self.done,
            self.networks,
            total_steps
        )];
        let mut training = 0.0;
        for ((&(shape, batch, arch), &steps), &s) in self.steps.iter().zip(per_step) {
            training += steps as f64 * s;
            let net = match arch.id_suffix() {
                tag if tag.is_empty() => String::new(),
                tag => format!(" (encoder {})", &tag[1..]),
            };
            lines.push(format!(
                "  {}x{}x{}{net}, {batch} triplets: {steps} steps x {:.1} ms (calibrated here) = {:.1} min",
                shape[0],
                shape[1],
                shape[2],
                s * 1e3,
                steps as f64 * s / 60.0
            ));
        }
        let deep_rates = per_step.get(self.steps.len()..).unwrap_or_default();
        for ((shape, &images), &s) in self.deep_images.iter().zip(deep_rates) {
            training += images as f64 * s;
            lines.push(format!(
                "  Deep SAD / SVDD {}x{}x{}: {images} image-passes x {:.2} ms (calibrated here) = {:.1} min",
                shape[0],
                shape[1],
                shape[2],
                s * 1e3,
                images as f64 * s / 60.0
            ));
        }
        if self.untrained > 0 {
            lines.push(format!(
                "  {} cells with nothing to train (pretrained features, baselines): ~{} of fitting \
                 and scoring (reference costs on an AMD EPYC core, not calibrated here)",
                self.untrained,
                duration(self.untrained_seconds)
            ));
        }
        let jobs = jobs.max(1);
        let total = self.wall(training, jobs);
        let at_once = match jobs {
            1 => String::new(),
            n => format!(", {n} cells at a time"),
        };
        lines.push(format!(
            "estimate: {} on this machine (training, plus ~{:.0} % for scoring and baselines{}{at_once})",
            duration(total),
            SCORING_OVERHEAD * 100.0,
            if self.untrained > 0 { ", plus the fits above" } else { "" }
        ));
        if total > 3600.0 {
            let n = (total / 3600.0).ceil().min(64.0) as usize;
            lines.push(format!(
                "to split it over {n} machines (~{} each): eidn reproduce --profile {profile} --shard K/{n}, K = 1..{n}",
                duration(total / n as f64)
            ));
        }
        lines
    }
}

pub fn duration(seconds: f64) -> String {
    if seconds < 90.0 {
        format!("{seconds:.0} s")
    } else if seconds < 5400.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

/// Seconds per training step at `shape`, `batch` and `arch`: two warm-up steps, then the
/// mean of three. (The pools' sizes set how many distinct images a step embeds: 256
/// anomalies, between the grids' ~60 at 1 % and ~550 at 10 %.)
fn step_seconds(
    shape: [usize; 3],
    batch: usize,
    arch: Arch,
    device: &Device,
) -> Result<f64, ExperimentError> {
    let pools = Pools {
        normal: ImageSet::synthetic(1024, shape, 1),
        anomalous: ImageSet::synthetic(256, shape, 2),
    };
    let params = crate::model::EidnParams {
        batch_size: batch,
        arch,
        ..Default::default()
    }
    .check()?;
    let mut trainer = Trainer::new(&params, &pools, device)?;
    for _ in 0..2 {
        trainer.step(&pools)?;
    }
    let start = Instant::now();
    for _ in 0..3 {
        trainer.step(&pools)?;
    }
    Ok(start.elapsed().as_secs_f64() / 3.0)
}

/// Seconds per image per epoch of Deep SAD training at `shape`: one epoch of pretraining and
/// one of training on 256 synthetic images, over the 512 image-passes.
fn deep_image_seconds(shape: [usize; 3], device: &Device) -> Result<f64, ExperimentError> {
    let pools = Pools {
        normal: ImageSet::synthetic(256, shape, 1),
        anomalous: ImageSet::synthetic(0, shape, 2),
    };
    let params = DeepSadParams {
        train: DeepSadTrain {
            ae_epochs: 1,
            epochs: 1,
            ..DeepSadTrain::default()
        },
        supervised: false,
        seed: 0,
    }
    .check()?;
    let start = Instant::now();
    params.fit(&pools, device, &Default::default())?;
    Ok(start.elapsed().as_secs_f64() / 512.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::Profile;
    use std::path::Path;

    const PROFILE: &str = r#"
        name = "t"
        description = "x"
        seeds = [0]
        [train]
        epochs = 2
        steps_per_epoch = 50
        batch_size = 16
        [[stage]]
        id = "table1"
        dataset = "mnist"
        classes = [0, 1, 2]
        ratios = [0.01]
        [[stage]]
        id = "table2"
        dataset = "cifar10"
        classes = [0]
        ratios = [0.1]
        train = { epochs = 3 }
    "#;

    #[test]
    fn the_plan_counts_what_is_left() {
        let p = Profile::parse(PROFILE, Path::new("t.toml")).unwrap();
        let cells = p.cells(&[]);
        let done = &cells[0];
        let (r, d) = done.methods[0];
        let record: Record = serde_json::from_value(serde_json::json!({
            "cell": done.id(), "config_hash": "x", "dataset": "mnist", "protocol": "one-vs-rest",
            "normal_class": 0, "class_name": "0", "anomaly_ratio": 0.01, "seed": 0,
            "reducer": r, "detector": d, "auc": 0.9, "ap": 0.9, "train_seconds": 1.0,
            "fit_seconds": 0.0, "score_seconds": 0.0, "n_test": 1, "n_test_anomalies": 1,
            "data": "exact", "config": {}
        }))
        .unwrap();
        // Class 1's encoder is saved: scored again, not trained again.
        let plan = Plan::new(&cells, &[record], |c| c.protocol.normal_class == 1).unwrap();
        assert_eq!((plan.cells, plan.done, plan.networks), (4, 1, 2));
        let paper = Arch::default();
        assert_eq!(plan.steps[&([1, 28, 28], 16, paper)], 100);
        assert_eq!(plan.steps[&([3, 32, 32], 16, paper)], 150);
        let lines = plan.describe(&[0.06, 0.4], "t", 1);
        assert!(
            lines[0].contains("4 cells (1 done, 3 left), 2 networks"),
            "{lines:?}"
        );
        // 100 x 0.06 + 150 x 0.4 = 66 s of training, + 7 %.
        assert!(lines[3].contains("estimate: 71 s"), "{lines:?}");
        assert_eq!(lines.len(), 4, "no --shard advice under an hour: {lines:?}");
        // Two cells at a time: half the wall time.
        let two = plan.describe(&[0.06, 0.4], "t", 2);
        assert!(two[3].contains("estimate: 35 s"), "{two:?}");
        assert!(two[3].contains("2 cells at a time"), "{two:?}");
    }

    /// A cell with nothing to train is still work: its fits and scoring count, at the
    /// reference costs (a plan of them alone used to read "0 s").
    #[test]
    fn cells_that_train_nothing_count_their_fits() {
        let text = format!(
            "{PROFILE}
        [[stage]]
        id = \"fig7\"
        dataset = \"mnist\"
        classes = [5, 6]
        ratios = [0.05]
        reducers = [\"pca\", \"lda\"]
        detectors = [\"origin_distance\", \"gmm\"]
"
        );
        let p = Profile::parse(&text, Path::new("t.toml")).unwrap();
        let cells = p.cells(&[]);
        let plan = Plan::new(&cells, &[], |_| false).unwrap();
        assert_eq!((plan.cells, plan.networks, plan.untrained), (6, 4, 2));
        // Per cell: 4 methods x 2 s + 2 reducers fitted x 8 s = 24 s.
        assert!((plan.untrained_seconds - 48.0).abs() < 1e-9, "{plan:?}");
        let lines = plan.describe(&[0.06, 0.4], "t", 1);
        assert!(
            lines[3].contains("2 cells with nothing to train") && lines[3].contains("48 s"),
            "{lines:?}"
        );
        // 300 x 0.06 + 150 x 0.4 = 78 s of training, + 7 %, + 48 s = 131.46 s.
        assert!((plan.seconds(&[0.06, 0.4], 1) - 131.46).abs() < 1e-6);
        assert!((plan.seconds(&[0.06, 0.4], 2) - 131.46 / 2.0).abs() < 1e-6);
        assert!(lines[4].contains("estimate: 2 min"), "{lines:?}");
        assert!(lines[4].contains("plus the fits above"), "{lines:?}");
    }

    /// Shards get cells by cost, not by count: the paper-sized CIFAR-10 cells spread out
    /// and every share ends near the mean; every cell goes to exactly one share, the same
    /// on every call.
    #[test]
    fn shards_are_dealt_by_cost() {
        let text = PROFILE.replace("classes = [0]", "classes = [0, 1, 2, 3, 4, 5]");
        let p = Profile::parse(&text, Path::new("t.toml")).unwrap();
        let cells = p.cells(&[]);
        let costs: Vec<f64> = cells.iter().map(cell_cost).collect();
        // CIFAR-10's 3 epochs cost more than MNIST's 2 (steps of the same batch cost 2.6 x).
        assert!(costs[3] > costs[0], "{costs:?}");
        for n in [2, 3, 4] {
            let share = deal(&cells, n);
            assert_eq!(share, deal(&cells, n));
            let mut load = vec![0.0; n];
            for (c, s) in costs.iter().zip(&share) {
                load[*s] += c;
            }
            let lo = load.iter().cloned().fold(f64::MAX, f64::min);
            let hi = load.iter().cloned().fold(0.0, f64::max);
            let biggest = costs.iter().cloned().fold(0.0, f64::max);
            assert!(hi - lo <= biggest + 1e-9, "{n}: {load:?}");
            let taken: usize = (1..=n)
                .map(|k| shard_cells(cells.clone(), Some(Shard { index: k, count: n })).len())
                .sum();
            assert_eq!(taken, cells.len());
        }
    }

    /// Issue 31: the paper profile over 8 machines, each share's estimate within 25 % of
    /// the others (by count, the last shares got the unseen test's and Fig 5's long cells).
    #[test]
    fn the_paper_grid_deals_into_even_shares() {
        let p = Profile::resolve("paper").unwrap();
        let cells = p.cells(&[]);
        let costs: Vec<f64> = cells.iter().map(cell_cost).collect();
        for n in [4, 8, 16] {
            let share = deal(&cells, n);
            let mut load = vec![0.0; n];
            for (c, s) in costs.iter().zip(&share) {
                load[*s] += c;
            }
            let lo = load.iter().cloned().fold(f64::MAX, f64::min);
            let hi = load.iter().cloned().fold(0.0, f64::max);
            assert!(hi <= 1.25 * lo, "{n} shares: {load:?}");
        }
    }
}
