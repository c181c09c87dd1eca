//! Which method on pretrained features to trust on a dataset, chosen by validation on its
//! training split alone, as EIDN+'s recipe is (`recipe.rs`).
//!
//! The choice is for Deep SAD's protocol (one known anomaly class, the others unseen). A
//! hold-out of the labelled anomalies cannot make it: they are all of the known class, every
//! supervised method scores near 1 on them, and what separates the methods is the unseen
//! types. So each validation run mirrors the protocol's test inside the training split: per
//! (normal class, known class, gamma_l, seed) the cell's training pools are drawn from the
//! training split, `holdout` of the normal pool is held out, and the validation anomalies are
//! up to `per_class` training images of *every* anomaly class (the labelled ones excluded).
//! Each candidate trains on the rest and is scored by validation ROC AUC; the best mean wins,
//! where a candidate must beat every one listed before it by more than `tolerance`. The
//! test split is never given to [`select`]. The selection knows which classes a dataset's
//! anomalies come from (as EIDN+'s one-vs-rest validation does), never a test image; it is
//! one choice per dataset and feature size, for every pair.
//!
//! `configs/method_candidates.toml` lists what is tried; `configs/method_choice.toml` holds
//! the choices `eidn select-method` made, which the Deep SAD report shows beside the methods.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use super::ExperimentError;
use crate::backbone::cache::FeatureTable;
use crate::data::protocol::{OneVsRest, Pools};
use crate::data::{DatasetName, ImageSet};
use crate::metrics::roc_auc;
use crate::pipeline::{PretrainedMethod, PretrainedModel};

/// The committed candidates.
pub const CANDIDATES: &str = include_str!("../../configs/method_candidates.toml");
/// The committed choices.
pub const CHOICES: &str = include_str!("../../configs/method_choice.toml");

/// One dataset's selection settings in the candidates file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodSelectSpec {
    /// (normal class, known anomaly class) pairs to validate on.
    pub pairs: Vec<[u8; 2]>,
    pub gamma_l: Vec<f64>,
    pub seeds: Vec<u64>,
    /// Share of the normal pool held out.
    #[serde(default = "default_holdout")]
    pub holdout: f64,
    /// Validation anomalies per anomaly class (fewer where a class has fewer left).
    #[serde(default = "default_per_class")]
    pub per_class: usize,
    /// A candidate must beat the best before it by more than this mean validation AUC.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// Methods in the order tried: cheaper and simpler first.
    pub candidates: Vec<PretrainedMethod>,
}

fn default_holdout() -> f64 {
    0.2
}

fn default_per_class() -> usize {
    500
}

fn default_tolerance() -> f64 {
    0.002
}

/// Whether `method` is a column of the Deep SAD table (its own score there), so that the
/// report can show the choice.
fn is_table_method(method: PretrainedMethod) -> bool {
    let (reducer, detector) = method.grid_method();
    reducer.own_detector() == detector
}

/// The candidates file's section for `dataset`, checked.
pub fn select_spec(
    text: &str,
    origin: &Path,
    dataset: DatasetName,
) -> Result<MethodSelectSpec, ExperimentError> {
    let bad = |message: String| ExperimentError::Profile {
        path: origin.to_path_buf(),
        message,
    };
    let mut all: BTreeMap<String, MethodSelectSpec> =
        toml::from_str(text).map_err(|e| bad(e.to_string()))?;
    let spec = all
        .remove(dataset.as_str())
        .ok_or_else(|| bad(format!("no [{dataset}] section")))?;
    let at = |m: String| bad(format!("[{dataset}]: {m}"));
    if spec.pairs.is_empty()
        || spec.gamma_l.is_empty()
        || spec.seeds.is_empty()
        || spec.candidates.is_empty()
    {
        return Err(at(
            "pairs, gamma_l, seeds and candidates must not be empty".into()
        ));
    }
    if let Some([n, k]) = spec.pairs.iter().find(|[n, k]| n == k) {
        return Err(at(format!(
            "pair [{n}, {k}]: the known class must not be the normal one"
        )));
    }
    if let Some(g) = spec.gamma_l.iter().find(|g| !(**g > 0.0 && **g < 1.0)) {
        return Err(at(format!("gamma_l {g} must be in (0, 1)")));
    }
    if !(spec.holdout > 0.0 && spec.holdout < 1.0) {
        return Err(at(format!("holdout {} must be in (0, 1)", spec.holdout)));
    }
    if spec.per_class == 0 {
        return Err(at("per_class must be at least 1".into()));
    }
    for (i, m) in spec.candidates.iter().enumerate() {
        if spec.candidates[..i].contains(m) {
            return Err(at(format!("{m} is listed twice")));
        }
        if !m.uses_labels() && !is_table_method(*m) {
            return Err(at(format!(
                "{m} is not a column of the Deep SAD report (its label-free column is \
                 pretrained_knn)"
            )));
        }
    }
    Ok(spec)
}

/// One validation run: a cell of Deep SAD's protocol drawn from the training split.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub normal: u8,
    pub known: u8,
    pub gamma_l: f64,
    pub seed: u64,
}

/// One candidate's validation AUCs, one per run.
#[derive(Clone, Debug, Serialize)]
pub struct CandidateRow {
    pub method: PretrainedMethod,
    /// Held-out normal images against every anomaly class: what chooses.
    pub auc: Vec<f64>,
    /// Held-out normal images against the known class alone: shown to say why it cannot
    /// choose.
    pub known_auc: Vec<f64>,
    pub seconds: f64,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Validation AUCs of every candidate, and the winner.
#[derive(Clone, Debug, Serialize)]
pub struct MethodSelection {
    pub dataset: DatasetName,
    /// The backbone's input side the features were computed at.
    pub size: usize,
    pub runs: Vec<Run>,
    pub rows: Vec<CandidateRow>,
    /// Index into `rows`.
    pub chosen: usize,
}

/// The validation images of one run and which are anomalies (and of the known class).
struct Validation {
    images: ImageSet,
    anomalous: Vec<bool>,
    known: Vec<bool>,
}

/// Draws run `run`'s training pools and validation images from `train`.
fn draw(
    train: &ImageSet,
    dataset: DatasetName,
    run: Run,
    spec: &MethodSelectSpec,
) -> Result<(Pools, Validation), ExperimentError> {
    let protocol = OneVsRest::deep_sad(
        dataset,
        run.normal,
        &[run.known],
        run.gamma_l,
        0.0,
        run.seed,
    );
    let (mut normal, labelled) = protocol.pool_indices(train)?;
    let cell = || {
        format!(
            "{dataset} normal {} known {} gamma_l {} seed {}",
            run.normal, run.known, run.gamma_l, run.seed
        )
    };
    // The draw depends on the run alone: every candidate sees the same images.
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(
        run.seed ^ 0x3e7_40d5 ^ (u64::from(run.normal) << 32) ^ (u64::from(run.known) << 40),
    );
    normal.shuffle(&mut rng);
    let held = ((normal.len() as f64 * spec.holdout).round() as usize)
        .clamp(1, normal.len().saturating_sub(1));
    let kept = {
        let mut k = normal.split_off(held);
        k.sort_unstable();
        k
    };
    let mut val = normal;
    val.sort_unstable();
    let n_normal = val.len();
    let mut classes: Vec<u8> = train.labels.clone();
    classes.sort_unstable();
    classes.dedup();
    for c in classes.into_iter().filter(|&c| !protocol.is_normal(c)) {
        let mut pool: Vec<usize> = (0..train.len())
            .filter(|&i| train.labels[i] == c && labelled.binary_search(&i).is_err())
            .collect();
        pool.shuffle(&mut rng);
        pool.truncate(spec.per_class);
        pool.sort_unstable();
        val.extend(pool);
    }
    if val.len() == n_normal || kept.len() < 3 {
        return Err(ExperimentError::Cell {
            cell: cell(),
            message: format!(
                "{} normal training images to train on and {} anomalous ones to validate with: \
                 too few",
                kept.len(),
                val.len() - n_normal
            ),
        });
    }
    let images = train.select(&val);
    let anomalous = images
        .labels
        .iter()
        .map(|&l| !protocol.is_normal(l))
        .collect();
    let known = images.labels.iter().map(|&l| l == run.known).collect();
    let pools = Pools {
        normal: train.select(&kept),
        anomalous: train.select(&labelled),
    };
    Ok((
        pools,
        Validation {
            images,
            anomalous,
            known,
        },
    ))
}

/// ROC AUC of the normal images against the anomalies where `keep` holds.
fn auc_where(scores: &[f64], v: &Validation, keep: &[bool]) -> Result<f64, ExperimentError> {
    let (mut s, mut t) = (Vec::new(), Vec::new());
    for i in 0..scores.len() {
        if !v.anomalous[i] || keep[i] {
            s.push(scores[i]);
            t.push(v.anomalous[i]);
        }
    }
    Ok(roc_auc(&s, &t)?)
}

/// Every validation run of `spec`, in table order.
fn runs(spec: &MethodSelectSpec) -> Vec<Run> {
    let mut runs = Vec::new();
    for &[normal, known] in &spec.pairs {
        for &gamma_l in &spec.gamma_l {
            for &seed in &spec.seeds {
                runs.push(Run {
                    normal,
                    known,
                    gamma_l,
                    seed,
                });
            }
        }
    }
    runs
}

/// Draws every run's images from `train` and drops them: a class the dataset lacks, or too
/// few images, is refused before the feature pass.
pub fn check(
    train: &ImageSet,
    dataset: DatasetName,
    spec: &MethodSelectSpec,
) -> Result<(), ExperimentError> {
    for run in runs(spec) {
        draw(train, dataset, run, spec)?;
    }
    Ok(())
}

/// Runs the selection on a dataset's training split alone; `table` holds (or computes) the
/// features.
pub fn select(
    train: &ImageSet,
    table: Arc<FeatureTable>,
    dataset: DatasetName,
    spec: &MethodSelectSpec,
    progress: bool,
) -> Result<MethodSelection, ExperimentError> {
    let runs = runs(spec);
    let mut rows: Vec<CandidateRow> = spec
        .candidates
        .iter()
        .map(|&method| CandidateRow {
            method,
            auc: Vec::new(),
            known_auc: Vec::new(),
            seconds: 0.0,
        })
        .collect();
    for &run in &runs {
        let (pools, val) = draw(train, dataset, run, spec)?;
        for row in &mut rows {
            let start = std::time::Instant::now();
            let model = PretrainedModel::fit(row.method, table.clone(), &pools, run.seed)?;
            let scores = model.score(&val.images)?;
            let all = vec![true; scores.len()];
            row.auc.push(auc_where(&scores, &val, &all)?);
            row.known_auc.push(auc_where(&scores, &val, &val.known)?);
            row.seconds += start.elapsed().as_secs_f64();
            if progress {
                eprintln!(
                    "{dataset} {}: normal {} known {} gamma_l {} seed {}: validation AUC {:.4} \
                     (known class alone {:.4})",
                    row.method,
                    run.normal,
                    run.known,
                    run.gamma_l,
                    run.seed,
                    row.auc.last().expect("pushed"),
                    row.known_auc.last().expect("pushed"),
                );
            }
        }
    }
    let chosen = choose(
        &rows.iter().map(|r| mean(&r.auc)).collect::<Vec<_>>(),
        spec.tolerance,
    );
    Ok(MethodSelection {
        dataset,
        size: table.spec.size,
        runs,
        rows,
        chosen,
    })
}

/// The index of the best of `means`, where a later one must beat the best before it by more
/// than `tolerance`.
pub fn choose(means: &[f64], tolerance: f64) -> usize {
    let mut best = 0;
    for i in 1..means.len() {
        if means[i] > means[best] + tolerance {
            best = i;
        }
    }
    best
}

/// A committed choice: `[[choice]]` in `configs/method_choice.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodChoice {
    pub dataset: DatasetName,
    pub size: usize,
    pub method: PretrainedMethod,
    /// Validation runs the means are over.
    pub runs: usize,
    pub tolerance: f64,
    /// Every candidate in the order tried, with its mean validation AUCs.
    pub candidate: Vec<ChoiceScore>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChoiceScore {
    pub method: PretrainedMethod,
    /// Against every anomaly class.
    pub auc: f64,
    /// Against the known class alone.
    pub known_auc: f64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChoiceFile {
    #[serde(default)]
    choice: Vec<MethodChoice>,
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

impl MethodSelection {
    pub fn choice(&self, spec: &MethodSelectSpec) -> MethodChoice {
        MethodChoice {
            dataset: self.dataset,
            size: self.size,
            method: self.rows[self.chosen].method,
            runs: self.runs.len(),
            tolerance: spec.tolerance,
            candidate: self
                .rows
                .iter()
                .map(|r| ChoiceScore {
                    method: r.method,
                    auc: round4(mean(&r.auc)),
                    known_auc: round4(mean(&r.known_auc)),
                })
                .collect(),
        }
    }

    /// The choice as `configs/method_choice.toml` spells it.
    pub fn choice_toml(&self, spec: &MethodSelectSpec) -> String {
        let file = ChoiceFile {
            choice: vec![self.choice(spec)],
        };
        toml::to_string(&file).expect("a choice is plain TOML")
    }

    /// Whether the committed choice of this dataset and size names the method chosen here.
    pub fn matches_committed(&self) -> bool {
        committed(self.dataset, self.size)
            .is_some_and(|c| c.method == self.rows[self.chosen].method)
    }

    pub fn markdown(&self, spec: &MethodSelectSpec) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "## Method selection: {} at {} px\n\n\
             Deep SAD's protocol drawn from the training split alone: per run (normal class / \
             known class / gamma_l / seed), {:.0} % of the normal pool is held out, and the \
             validation anomalies are up to {} training images of every anomaly class, the \
             labelled ones excluded. Validation ROC AUC; \"known\" is against the known class \
             alone: it rewards fitting the labelled class and says nothing of the unseen ones, \
             so it does not choose. A candidate is chosen over \
             the ones before it only when its mean is higher by more than {}. The test split \
             is never read.\n",
            self.dataset.label(),
            self.size,
            spec.holdout * 100.0,
            spec.per_class,
            spec.tolerance
        );
        let mut header = vec!["candidate".to_string()];
        header.extend(
            self.runs
                .iter()
                .map(|r| format!("{}/{}/{}/s{}", r.normal, r.known, r.gamma_l, r.seed)),
        );
        header.extend(["mean".into(), "known (mean)".into(), "seconds".into()]);
        let _ = writeln!(md, "| {} |", header.join(" | "));
        let _ = writeln!(md, "|{}", "---|".repeat(header.len()));
        for (i, r) in self.rows.iter().enumerate() {
            let mark = if i == self.chosen {
                " **(chosen)**"
            } else {
                ""
            };
            let mut cells = vec![format!("{}{mark}", r.method)];
            cells.extend(r.auc.iter().map(|a| format!("{a:.4}")));
            cells.push(format!("{:.4}", mean(&r.auc)));
            cells.push(format!("{:.4}", mean(&r.known_auc)));
            cells.push(format!("{:.0}", r.seconds));
            let _ = writeln!(md, "| {} |", cells.join(" | "));
        }
        md
    }
}

/// The committed choices, parsed once.
fn committed_file() -> &'static ChoiceFile {
    static FILE: std::sync::OnceLock<ChoiceFile> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        toml::from_str(CHOICES).expect("configs/method_choice.toml parses (a unit test checks it)")
    })
}

/// The committed choice for `dataset` with features at `size` px, if one was made.
pub fn committed(dataset: DatasetName, size: usize) -> Option<&'static MethodChoice> {
    committed_file()
        .choice
        .iter()
        .find(|c| c.dataset == dataset && c.size == size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_choices_follow_their_own_numbers() {
        let file = committed_file();
        assert!(!file.choice.is_empty());
        for c in &file.choice {
            let means: Vec<f64> = c.candidate.iter().map(|s| s.auc).collect();
            let best = choose(&means, c.tolerance);
            assert_eq!(
                c.candidate[best].method, c.method,
                "{} at {} px: the rule picks {}",
                c.dataset, c.size, c.candidate[best].method
            );
            assert!(is_table_method(c.method), "{}", c.method);
        }
        for d in [DatasetName::Mnist, DatasetName::Cifar10] {
            let spec = select_spec(CANDIDATES, Path::new("c"), d).unwrap();
            assert!(spec.candidates.contains(&PretrainedMethod::PretrainedKnn));
        }
    }

    #[test]
    fn choose_needs_more_than_the_tolerance() {
        assert_eq!(choose(&[0.80, 0.801, 0.79], 0.002), 0);
        assert_eq!(choose(&[0.80, 0.803, 0.804], 0.002), 1);
        assert_eq!(choose(&[0.80, 0.803, 0.806], 0.002), 2);
    }

    #[test]
    fn bad_candidates_are_refused_with_the_file_and_section() {
        let d = DatasetName::Mnist;
        let base = "pairs = [[0, 1]]\ngamma_l = [0.01]\nseeds = [0]\n";
        for (body, want) in [
            (
                format!("{base}candidates = []"),
                "must not be empty".to_string(),
            ),
            (
                "pairs = [[1, 1]]\ngamma_l = [0.01]\nseeds = [0]\ncandidates = [\"pretrained_knn\"]"
                    .into(),
                "pair [1, 1]".into(),
            ),
            (
                "pairs = [[0, 1]]\ngamma_l = [1.5]\nseeds = [0]\ncandidates = [\"pretrained_knn\"]"
                    .into(),
                "gamma_l 1.5".into(),
            ),
            (
                format!("{base}candidates = [\"pretrained_knn\", \"pretrained_knn\"]"),
                "listed twice".into(),
            ),
            (
                format!("{base}candidates = [\"pretrained_mahalanobis\"]"),
                "not a column".into(),
            ),
            (
                format!("{base}candidates = [\"no_such\"]"),
                "no_such".into(),
            ),
        ] {
            let text = format!("[mnist]\n{body}\n");
            let e = select_spec(&text, Path::new("cands.toml"), d)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("cands.toml: ") && e.contains(&want), "{e}");
        }
        let other = format!("[cifar10]\n{base}candidates = [\"pretrained_knn\"]\n");
        let e = select_spec(&other, Path::new("x.toml"), d)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no [mnist] section"), "{e}");
    }
}
