//! A profile as written in TOML: its training settings, stages and classes.

use serde::{Deserialize, Serialize};

use crate::data::protocol::parse_classes;
use crate::data::DatasetName;
use crate::detect::DetectorKind;
use crate::model::deep_sad::DeepSadTrain;
use crate::model::{Arch, Augment, EidnParams};
use crate::reduce::ReducerKind;

/// The profiles shipped in `configs/`, compiled in so the binary runs from any directory.
pub const BUILTIN: [(&str, &str); 7] = [
    ("paper", include_str!("../../../configs/paper.toml")),
    ("quick", include_str!("../../../configs/quick.toml")),
    ("ci", include_str!("../../../configs/ci.toml")),
    ("plus", include_str!("../../../configs/plus.toml")),
    ("deep_sad", include_str!("../../../configs/deep_sad.toml")),
    ("few_label", include_str!("../../../configs/few_label.toml")),
    (
        "few_label_224",
        include_str!("../../../configs/few_label_224.toml"),
    ),
];

/// EIDN training settings of a stage (the paper's: 50 x 100 steps of 128 triplets).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    pub epochs: usize,
    pub steps_per_epoch: usize,
    pub batch_size: usize,
    #[serde(default = "default_margin")]
    pub margin: f64,
    #[serde(default = "default_lr")]
    pub lr: f64,
    #[serde(default = "default_embed_dim")]
    pub embed_dim: usize,
    /// Training-time augmentation (`shift:N`, `crop-flip:N`); absent = none, as the paper.
    #[serde(default, skip_serializing_if = "Augment::is_none")]
    pub augment: Augment,
    /// The encoder's shape, e.g. `arch = { same_padding = true, width = 2, blocks = 3 }`;
    /// absent = the paper's.
    #[serde(default, skip_serializing_if = "Arch::is_paper")]
    pub arch: Arch,
}

fn default_margin() -> f64 {
    0.2
}
fn default_lr() -> f64 {
    1e-3
}
fn default_embed_dim() -> usize {
    2
}

/// A stage's `train` table: any field it sets replaces the profile's `[train]` value, the
/// rest are inherited (not reset to the defaults).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainOverride {
    pub epochs: Option<usize>,
    pub steps_per_epoch: Option<usize>,
    pub batch_size: Option<usize>,
    pub margin: Option<f64>,
    pub lr: Option<f64>,
    pub embed_dim: Option<usize>,
    pub augment: Option<Augment>,
    pub arch: Option<Arch>,
}

impl TrainOverride {
    /// `base` with this table's fields in place of its own.
    pub fn apply(&self, base: &TrainSpec) -> TrainSpec {
        TrainSpec {
            epochs: self.epochs.unwrap_or(base.epochs),
            steps_per_epoch: self.steps_per_epoch.unwrap_or(base.steps_per_epoch),
            batch_size: self.batch_size.unwrap_or(base.batch_size),
            margin: self.margin.unwrap_or(base.margin),
            lr: self.lr.unwrap_or(base.lr),
            embed_dim: self.embed_dim.unwrap_or(base.embed_dim),
            augment: self.augment.unwrap_or(base.augment),
            arch: self.arch.unwrap_or(base.arch),
        }
    }
}

impl TrainSpec {
    pub fn params(&self, seed: u64) -> EidnParams {
        EidnParams {
            embed_dim: self.embed_dim,
            margin: self.margin,
            lr: self.lr,
            epochs: self.epochs,
            steps_per_epoch: self.steps_per_epoch,
            augment: self.augment,
            arch: self.arch,
            batch_size: self.batch_size,
            seed,
        }
    }

    pub fn steps(&self) -> usize {
        self.epochs * self.steps_per_epoch
    }
}

/// What a stage reproduces; the report picks its records by these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageId {
    Table1,
    Table2,
    Table3,
    Fig5,
    Unseen,
    Fig7,
    /// Any dataset's per-class table (a user's own, which the paper has no table for).
    Classes,
    /// Deep SAD's protocol and table (Ruff et al. 2020), beside EIDN.
    #[serde(rename = "deep_sad")]
    DeepSad,
    /// DevNet / DRA's "general" few-shot protocol: k labelled anomalies of any type.
    #[serde(rename = "few_shot")]
    FewShot,
    /// Their "hard" protocol: k labelled anomalies of one type, tested on the others.
    #[serde(rename = "few_shot_hard")]
    FewShotHard,
}

impl StageId {
    pub fn as_str(self) -> &'static str {
        match self {
            StageId::Table1 => "table1",
            StageId::Table2 => "table2",
            StageId::Table3 => "table3",
            StageId::Fig5 => "fig5",
            StageId::Unseen => "unseen",
            StageId::Fig7 => "fig7",
            StageId::Classes => "classes",
            StageId::DeepSad => "deep_sad",
            StageId::FewShot => "few_shot",
            StageId::FewShotHard => "few_shot_hard",
        }
    }

    pub const ALL: [StageId; 10] = [
        StageId::Table1,
        StageId::Table2,
        StageId::Table3,
        StageId::Fig5,
        StageId::Unseen,
        StageId::Fig7,
        StageId::Classes,
        StageId::DeepSad,
        StageId::FewShot,
        StageId::FewShotHard,
    ];

    /// Whether the stage counts its labelled anomalies (`shots`) instead of a ratio.
    pub fn is_few_shot(self) -> bool {
        matches!(self, StageId::FewShot | StageId::FewShotHard)
    }

    pub fn parse(s: &str) -> Option<StageId> {
        Self::ALL.into_iter().find(|id| id.as_str() == s)
    }
}

/// One `[[stage]]` of a profile: a grid over classes x ratios x seeds.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    pub id: StageId,
    /// A built-in or declared dataset, or inline `folder:PATH` / `idx:PATH`.
    pub dataset: DatasetName,
    /// The normal class of each cell, by label or name; `"a+b"` makes a and b normal
    /// together. Default: every class in turn (Concrete: 0, the uncracked images).
    #[serde(default)]
    pub classes: Option<Vec<ClassRef>>,
    /// Anomalies as a fraction of the normal training images (every stage but `deep_sad`).
    #[serde(default)]
    pub ratios: Vec<f64>,
    /// `deep_sad` stages: labelled anomalies as Deep SAD counts them, gamma_l = m / (n + m);
    /// 0 is the unsupervised setting (Deep SVDD alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gamma_l: Option<Vec<f64>>,
    /// `deep_sad` stages: gamma_p, the share of unlabelled anomalies in the unlabelled pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pollution: Option<f64>,
    /// `deep_sad` stages: the (normal class, known anomaly class) pairs, in place of
    /// `classes`; default every class of `classes` with every other class (the authors' 90
    /// pairs on a ten-class dataset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairs: Option<Vec<[u8; 2]>>,
    /// `few_shot` / `few_shot_hard` stages: the numbers k of labelled anomalies, e.g. [1, 5, 10].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shots: Option<Vec<usize>>,
    /// Default: the profile's seeds.
    #[serde(default)]
    pub seeds: Option<Vec<u64>>,
    /// The unseen-anomaly test: training anomalies only from these classes...
    #[serde(default)]
    pub train_anomaly_classes: Option<Vec<u8>>,
    /// ...and test anomalies only from these.
    #[serde(default)]
    pub test_anomaly_classes: Option<Vec<u8>>,
    #[serde(default = "default_reducers")]
    pub reducers: Vec<ReducerKind>,
    #[serde(default = "default_detectors")]
    pub detectors: Vec<DetectorKind>,
    /// Overrides some of the profile's `[train]` settings.
    #[serde(default)]
    pub train: Option<TrainOverride>,
}

impl StageSpec {
    /// This stage's training settings: the profile's, with the stage's overrides.
    pub fn train_spec(&self, profile: &TrainSpec) -> TrainSpec {
        self.train
            .as_ref()
            .map_or_else(|| profile.clone(), |o| o.apply(profile))
    }
}

/// A cell's normal class(es) as a profile names them: a label, or a string of labels or
/// names joined by `+`. A checked profile holds labels only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClassRef {
    Label(u8),
    Names(String),
}

impl ClassRef {
    /// The labels, given the dataset's class names (needed only for names).
    pub(super) fn labels(&self, names: Option<&[String]>) -> Result<Vec<u8>, String> {
        match (self, names) {
            (ClassRef::Label(l), Some(n)) if *l as usize >= n.len() => Err(format!(
                "class {l} out of range (0..{})",
                n.len()
            )),
            (ClassRef::Label(l), _) => Ok(vec![*l]),
            (ClassRef::Names(s), Some(n)) => parse_classes(s, n),
            (ClassRef::Names(s), None) => s
                .split(['+', ','])
                .map(|p| {
                    p.trim()
                        .parse::<u8>()
                        .map_err(|_| format!("class {p:?}: the dataset is not declared here, so only labels can be read"))
                })
                .collect(),
        }
    }

    /// The checked form: a label, or labels joined by `+`.
    pub(super) fn of_labels(labels: &[u8]) -> ClassRef {
        match labels {
            [one] => ClassRef::Label(*one),
            many => ClassRef::Names(
                many.iter()
                    .map(|l| l.to_string())
                    .collect::<Vec<_>>()
                    .join("+"),
            ),
        }
    }
}

fn default_reducers() -> Vec<ReducerKind> {
    vec![ReducerKind::Eidn]
}
fn default_detectors() -> Vec<DetectorKind> {
    vec![DetectorKind::OriginDistance]
}

/// A profile file as written.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    pub description: String,
    pub seeds: Vec<u64>,
    pub train: TrainSpec,
    /// Deep SAD / Deep SVDD training (the authors' settings unless given).
    #[serde(default)]
    pub deep_sad: DeepSadTrain,
    /// The pretrained backbone's input side in pixels for every dataset of the profile
    /// (default: 128 for MNIST and CIFAR-10, 224 for your own images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backbone_size: Option<usize>,
    #[serde(rename = "stage")]
    pub stages: Vec<StageSpec>,
}

/// A profile that passed [`Profile::check`].
#[derive(Clone, Debug)]
pub struct ValidProfile(pub(super) Profile);

impl std::ops::Deref for ValidProfile {
    type Target = Profile;
    fn deref(&self) -> &Profile {
        &self.0
    }
}
