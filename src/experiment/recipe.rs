//! EIDN+: EIDN trained past the paper's recipe, one recipe per dataset, chosen by
//! validation on the training pools only.
//!
//! `configs/eidn_plus.toml` (compiled in) holds the chosen recipe of each dataset (MNIST,
//! CIFAR-10) and of each kind of image for any other dataset (`grey`, `colour`); a profile's
//! `eidn_plus` reducer trains its cells with it. `configs/eidn_plus_candidates.toml` lists
//! what [`select`] tries: per (normal class, seed), the protocol's training pools are drawn
//! from the *training split* (the function is never given the test split), a share of the
//! normal and of the labelled anomalous images is held out, each candidate trains on the rest
//! and is scored by ROC AUC on the held-out images; the best mean wins, where a candidate
//! must beat the ones listed before it by more than a tolerance (list cheaper ones first).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use candle_core::Device;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use super::profile::{TrainOverride, TrainSpec};
use super::ExperimentError;
use crate::data::protocol::{OneVsRest, Pools};
use crate::data::{DatasetName, ImageSet};
use crate::metrics::roc_auc;
use crate::model::TrainOptions;

/// The committed recipes.
pub const EIDN_PLUS: &str = include_str!("../../configs/eidn_plus.toml");
/// The committed candidates.
pub const CANDIDATES: &str = include_str!("../../configs/eidn_plus_candidates.toml");

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipeFile {
    recipe: BTreeMap<String, TrainOverride>,
}

/// The committed recipes, parsed once (profiles ask for them per stage).
fn committed() -> &'static RecipeFile {
    static FILE: std::sync::OnceLock<RecipeFile> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        toml::from_str(EIDN_PLUS).expect("configs/eidn_plus.toml parses (a unit test checks it)")
    })
}

/// The EIDN+ recipe of `dataset`: its own, else that of its kind of image (`grey` for one
/// channel, `colour` for three).
pub fn eidn_plus(dataset: DatasetName) -> TrainOverride {
    let file = committed();
    if let Some(r) = file.recipe.get(dataset.as_str()) {
        return r.clone();
    }
    // A dataset whose images cannot be read fails when it loads; colour is the safe guess.
    let grey = dataset.input_shape().is_ok_and(|s| s[0] == 1);
    let kind = if grey { "grey" } else { "colour" };
    file.recipe.get(kind).cloned().unwrap_or_default()
}

/// One dataset's selection settings in the candidates file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectSpec {
    /// Labelled anomalies per normal image, as in the protocol being tuned for.
    pub ratio: f64,
    /// Normal classes (labels) and seeds to average over.
    pub classes: Vec<u8>,
    pub seeds: Vec<u64>,
    /// Share of each training pool held out for validation.
    #[serde(default = "default_holdout")]
    pub holdout: f64,
    /// A candidate must beat the best before it by more than this mean validation AUC to be
    /// chosen: a costlier recipe has to earn its cost beyond the validation noise.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// Training settings every candidate starts from.
    pub base: TrainSpec,
    #[serde(rename = "candidate")]
    pub candidates: Vec<Candidate>,
}

fn default_holdout() -> f64 {
    0.2
}

fn default_tolerance() -> f64 {
    0.001
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Candidate {
    pub name: String,
    #[serde(default)]
    pub train: TrainOverride,
}

/// The candidates file's section for `dataset`.
pub fn select_spec(
    text: &str,
    origin: &Path,
    dataset: DatasetName,
) -> Result<SelectSpec, ExperimentError> {
    let bad = |message: String| ExperimentError::Profile {
        path: origin.to_path_buf(),
        message,
    };
    let mut all: BTreeMap<String, SelectSpec> =
        toml::from_str(text).map_err(|e| bad(e.to_string()))?;
    let spec = all
        .remove(dataset.as_str())
        .ok_or_else(|| bad(format!("no [{dataset}] section of candidates")))?;
    if spec.candidates.is_empty() || spec.classes.is_empty() || spec.seeds.is_empty() {
        return Err(bad(format!(
            "[{dataset}]: candidates, classes and seeds must not be empty"
        )));
    }
    if !(spec.holdout > 0.0 && spec.holdout < 1.0) {
        return Err(bad(format!(
            "[{dataset}]: holdout {} must be in (0, 1)",
            spec.holdout
        )));
    }
    for c in &spec.candidates {
        if let Err(e) = c.train.apply(&spec.base).params(0).check() {
            return Err(bad(format!("[{dataset}] candidate {}: {e}", c.name)));
        }
    }
    Ok(spec)
}

/// Validation AUCs of every candidate, and the winner.
#[derive(Clone, Debug, Serialize)]
pub struct Selection {
    pub dataset: DatasetName,
    /// `(class, seed)` in the order of `auc`'s columns.
    pub runs: Vec<(u8, u64)>,
    /// Per candidate: its name, its full training settings, and one AUC per run.
    pub rows: Vec<(String, TrainSpec, Vec<f64>)>,
    /// Index into `rows` of the best mean.
    pub chosen: usize,
}

impl Selection {
    pub fn mean(&self, row: usize) -> f64 {
        let aucs = &self.rows[row].2;
        aucs.iter().sum::<f64>() / aucs.len() as f64
    }

    /// The chosen settings as a recipe table.
    pub fn recipe(&self) -> TrainOverride {
        let t = &self.rows[self.chosen].1;
        TrainOverride {
            epochs: Some(t.epochs),
            steps_per_epoch: Some(t.steps_per_epoch),
            batch_size: Some(t.batch_size),
            margin: Some(t.margin),
            lr: Some(t.lr),
            embed_dim: Some(t.embed_dim),
            augment: Some(t.augment),
            arch: Some(t.arch),
        }
    }

    /// The chosen recipe as `configs/eidn_plus.toml` spells it (`[recipe.<dataset>]`).
    pub fn recipe_toml(&self) -> String {
        let file = RecipeFile {
            recipe: BTreeMap::from([(self.dataset.to_string(), self.recipe())]),
        };
        toml::to_string(&file).expect("a recipe is plain TOML")
    }

    /// Whether the committed recipe of this dataset, over the first candidate's settings,
    /// is the one chosen here.
    pub fn matches_committed(&self) -> bool {
        committed()
            .recipe
            .get(self.dataset.as_str())
            .is_some_and(|r| r.apply(&self.rows[0].1) == self.rows[self.chosen].1)
    }

    pub fn markdown(&self, spec: &SelectSpec) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "## EIDN+ recipe selection: {}\n\nValidation ROC AUC on held-out training images \
             ({:.0} % of the normal and of the labelled anomalous pool, at anomaly ratio {}), \
             never the test split. Columns: normal class / seed. A candidate is chosen over the \
             ones before it only when its mean is higher by more than {}.\n",
            self.dataset.label(),
            spec.holdout * 100.0,
            spec.ratio,
            spec.tolerance
        );
        let mut header = vec!["candidate".to_string(), "settings".into()];
        header.extend(self.runs.iter().map(|(c, s)| format!("{c}/s{s}")));
        header.push("mean".into());
        let _ = writeln!(md, "| {} |", header.join(" | "));
        let _ = writeln!(md, "|{}", "---|".repeat(header.len()));
        for (i, (name, train, aucs)) in self.rows.iter().enumerate() {
            let mark = if i == self.chosen {
                " **(chosen)**"
            } else {
                ""
            };
            let mut cells = vec![format!("{name}{mark}"), describe(train)];
            cells.extend(aucs.iter().map(|a| format!("{a:.4}")));
            cells.push(format!("{:.4}", self.mean(i)));
            let _ = writeln!(md, "| {} |", cells.join(" | "));
        }
        md
    }
}

/// "2000 steps of 128, crop-flip:4, same, x2" for tables.
pub fn describe(t: &TrainSpec) -> String {
    let mut parts = vec![format!("{} steps of {}", t.steps(), t.batch_size)];
    if !t.augment.is_none() {
        parts.push(t.augment.to_string());
    }
    if t.arch.same_padding {
        parts.push("same padding".into());
    }
    if t.arch.width != 1 {
        parts.push(format!("width x{}", t.arch.width));
    }
    if t.arch.blocks != 2 {
        parts.push(format!("{} conv blocks", t.arch.blocks));
    }
    if t.embed_dim != 2 {
        parts.push(format!("l = {}", t.embed_dim));
    }
    if t.lr != 1e-3 {
        parts.push(format!("lr {}", t.lr));
    }
    parts.join(", ")
}

/// Splits `set` into (kept, held out) with a seeded shuffle: `holdout` of it, at least one
/// image each side.
fn split(set: &ImageSet, holdout: f64, rng: &mut Xoshiro256PlusPlus) -> (ImageSet, ImageSet) {
    let mut idx: Vec<usize> = (0..set.len()).collect();
    idx.shuffle(rng);
    let held =
        ((set.len() as f64 * holdout).round() as usize).clamp(1, set.len().saturating_sub(1));
    let (mut out, mut keep) = (idx[..held].to_vec(), idx[held..].to_vec());
    out.sort_unstable();
    keep.sort_unstable();
    (set.select(&keep), set.select(&out))
}

/// Runs the selection on a dataset's training split alone.
pub fn select(
    train: &ImageSet,
    dataset: DatasetName,
    spec: &SelectSpec,
    device: &Device,
    progress: bool,
) -> Result<Selection, ExperimentError> {
    let runs: Vec<(u8, u64)> = spec
        .classes
        .iter()
        .flat_map(|&c| spec.seeds.iter().map(move |&s| (c, s)))
        .collect();
    let mut rows = Vec::new();
    for cand in &spec.candidates {
        let settings = cand.train.apply(&spec.base);
        let mut aucs = Vec::new();
        for &(class, seed) in &runs {
            let protocol = OneVsRest::new(dataset, class, spec.ratio, seed);
            let pools = protocol.pools_from(train)?;
            if pools.anomalous.len() < 2 {
                return Err(ExperimentError::Cell {
                    cell: format!("{dataset} class {class} seed {seed}"),
                    message: "fewer than 2 labelled anomalies: nothing to hold out".into(),
                });
            }
            // The hold-out draw depends on (class, seed) only: every candidate sees the same.
            let mut rng =
                Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x5e1ec7 ^ u64::from(class) << 32);
            let (normal, val_normal) = split(&pools.normal, spec.holdout, &mut rng);
            let (anomalous, val_anomalous) = split(&pools.anomalous, spec.holdout, &mut rng);
            let params = settings.params(seed).check()?;
            let options = TrainOptions {
                progress: false,
                protocol: None,
                reference_ops: false,
                data: None,
            };
            let model = params.fit(&Pools { normal, anomalous }, device, &options)?;
            let mut scores = model.score(&val_normal)?;
            scores.extend(model.score(&val_anomalous)?);
            let truth: Vec<bool> = (0..scores.len()).map(|i| i >= val_normal.len()).collect();
            let auc = roc_auc(&scores, &truth)?;
            if progress {
                eprintln!(
                    "{dataset} {}: class {class} seed {seed}: validation AUC {auc:.4} ({:.0} s)",
                    cand.name, model.config.train_seconds
                );
            }
            aucs.push(auc);
        }
        rows.push((cand.name.clone(), settings, aucs));
    }
    let mut selection = Selection {
        dataset,
        runs,
        rows,
        chosen: 0,
    };
    for i in 1..selection.rows.len() {
        if selection.mean(i) > selection.mean(selection.chosen) + spec.tolerance {
            selection.chosen = i;
        }
    }
    Ok(selection)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_files_parse() {
        let file = committed();
        for kind in ["mnist", "cifar10", "grey", "colour"] {
            assert!(file.recipe.contains_key(kind), "{kind}");
        }
        for d in [DatasetName::Mnist, DatasetName::Cifar10] {
            let spec = select_spec(CANDIDATES, Path::new("c"), d).unwrap();
            assert_eq!(
                spec.candidates[0].name, "paper",
                "the paper's recipe is the baseline"
            );
        }
        assert!(!eidn_plus(DatasetName::Cifar10).augment.unwrap().is_none());
    }
}
