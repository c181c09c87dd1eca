//! Profiles: the grids of `configs/*.toml`, parsed and checked once, then expanded into
//! cells (one trained encoder each at most).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ExperimentError;
use crate::data::protocol::{parse_classes, OneVsRest};
use crate::data::DatasetName;
use crate::detect::DetectorKind;
use crate::model::deep_sad::{DeepSadParams, DeepSadTrain};
use crate::model::{Arch, Augment, EidnParams};
use crate::reduce::ReducerKind;

/// The profiles shipped in `configs/`, compiled in so the binary runs from any directory.
pub const BUILTIN: [(&str, &str); 5] = [
    ("paper", include_str!("../../configs/paper.toml")),
    ("quick", include_str!("../../configs/quick.toml")),
    ("ci", include_str!("../../configs/ci.toml")),
    ("plus", include_str!("../../configs/plus.toml")),
    ("deep_sad", include_str!("../../configs/deep_sad.toml")),
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
        }
    }

    pub const ALL: [StageId; 8] = [
        StageId::Table1,
        StageId::Table2,
        StageId::Table3,
        StageId::Fig5,
        StageId::Unseen,
        StageId::Fig7,
        StageId::Classes,
        StageId::DeepSad,
    ];

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
    fn labels(&self, names: Option<&[String]>) -> Result<Vec<u8>, String> {
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
    fn of_labels(labels: &[u8]) -> ClassRef {
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
    #[serde(rename = "stage")]
    pub stages: Vec<StageSpec>,
}

/// A profile that passed [`Profile::check`].
#[derive(Clone, Debug)]
pub struct ValidProfile(Profile);

impl std::ops::Deref for ValidProfile {
    type Target = Profile;
    fn deref(&self) -> &Profile {
        &self.0
    }
}

impl Profile {
    /// A built-in profile by name, or a TOML file by path.
    pub fn resolve(name_or_path: &str) -> Result<ValidProfile, ExperimentError> {
        if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            return Profile::parse(text, Path::new(&format!("configs/{name_or_path}.toml")));
        }
        let path = Path::new(name_or_path);
        if !path.exists() {
            let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
            return Err(ExperimentError::Profile {
                path: path.to_path_buf(),
                message: format!(
                    "no such file, and not a built-in profile ({})",
                    names.join(", ")
                ),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| ExperimentError::io(path, e))?;
        Profile::parse(&text, path)
    }

    /// Parses and checks; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<ValidProfile, ExperimentError> {
        let profile: Profile = toml::from_str(text).map_err(|e| ExperimentError::Profile {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        profile.check(path)
    }

    /// Checks every setting and resolves each stage's dataset (declaring inline ones) and
    /// classes (names to labels, the default to every class), so the checked profile, which
    /// runs record, needs no dataset declaration to be read back.
    pub fn check(mut self, path: &Path) -> Result<ValidProfile, ExperimentError> {
        let bad = |message: String| {
            Err(ExperimentError::Profile {
                path: path.to_path_buf(),
                message,
            })
        };
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return bad(format!(
                "name {:?} must be non-empty letters, digits, - or _ (it names the results folder)",
                self.name
            ));
        }
        if self.seeds.is_empty() {
            return bad("seeds is empty".into());
        }
        if self.stages.is_empty() {
            return bad("no [[stage]]".into());
        }
        let train = self.train.clone();
        let deep_sad = self.deep_sad.clone();
        for (i, s) in self.stages.iter_mut().enumerate() {
            let at = format!("stage {} ({})", i + 1, s.id.as_str());
            if let Err(e) = s.train_spec(&train).params(0).check() {
                return bad(format!("{at}: {e}"));
            }
            if s.id == StageId::DeepSad {
                let g = s.gamma_l.as_deref().unwrap_or_default();
                if !s.ratios.is_empty() || g.is_empty() || g.iter().any(|g| !(0.0..1.0).contains(g))
                {
                    return bad(format!(
                        "{at}: a deep_sad stage takes gamma_l (a non-empty list in [0, 1)) instead of ratios"
                    ));
                }
                if !(0.0..1.0).contains(&s.pollution.unwrap_or(0.0)) {
                    return bad(format!("{at}: pollution must be in [0, 1)"));
                }
                if let Some(p) = s.pairs.iter().flatten().find(|[n, k]| n == k) {
                    return bad(format!(
                        "{at}: pair {p:?}: the known anomaly class is the normal one"
                    ));
                }
            } else {
                if s.ratios.is_empty() || s.ratios.iter().any(|r| !(*r > 0.0 && r.is_finite())) {
                    return bad(format!(
                        "{at}: ratios must be a non-empty list of numbers > 0"
                    ));
                }
                if s.gamma_l.is_some() || s.pollution.is_some() || s.pairs.is_some() {
                    return bad(format!(
                        "{at}: gamma_l, pollution and pairs belong to deep_sad stages"
                    ));
                }
            }
            if s.reducers.iter().any(|r| r.is_deep_sad()) {
                let p = DeepSadParams {
                    train: deep_sad.clone(),
                    supervised: true,
                    seed: 0,
                };
                if let Err(e) = p.check() {
                    return bad(format!("[deep_sad]: {e}"));
                }
            }
            if s.seeds.as_ref().is_some_and(|v| v.is_empty()) {
                return bad(format!("{at}: seeds is empty"));
            }
            if s.reducers.is_empty() || s.detectors.is_empty() {
                return bad(format!("{at}: reducers and detectors must not be empty"));
            }
            if s.dataset.as_str().contains(':') {
                s.dataset = DatasetName::resolve(s.dataset.as_str()).map_err(|e| {
                    ExperimentError::Profile {
                        path: path.to_path_buf(),
                        message: format!("{at}: {e}"),
                    }
                })?;
            }
            // Names are needed only to read class names or to list every class.
            let names = s.dataset.class_names();
            let needs_names = match &s.classes {
                None => s.dataset != DatasetName::Concrete,
                Some(c) => c.iter().any(|c| {
                    matches!(c, ClassRef::Names(n) if n.split(['+', ',']).any(|p| p.trim().parse::<u8>().is_err()))
                }),
            };
            let names = match names {
                Ok(n) => Some(n),
                Err(e) if needs_names => return bad(format!("{at}: {e}")),
                Err(_) => None,
            };
            let classes: Vec<ClassRef> = match &s.classes {
                None if s.dataset == DatasetName::Concrete => vec![ClassRef::Label(0)],
                None => (0..names.as_ref().map_or(0, |n| n.len()) as u8)
                    .map(ClassRef::Label)
                    .collect(),
                Some(c) => {
                    let mut out = Vec::new();
                    for class in c {
                        match class.labels(names.as_deref()) {
                            Ok(l) => out.push(ClassRef::of_labels(&l)),
                            Err(e) => return bad(format!("{at}: {e}")),
                        }
                    }
                    out
                }
            };
            s.classes = Some(classes);
            if let Some(n) = &names {
                let others = s
                    .train_anomaly_classes
                    .iter()
                    .flatten()
                    .chain(s.test_anomaly_classes.iter().flatten())
                    .chain(s.pairs.iter().flatten().flatten());
                for &c in others {
                    if c as usize >= n.len() {
                        return bad(format!("{at}: class {c} out of range for {}", s.dataset));
                    }
                }
            }
        }
        Ok(ValidProfile(self))
    }
}

/// One trained encoder's worth of work: a protocol, a training setting and the
/// (reducer, detector) pairs wanted on it.
#[derive(Clone, Debug)]
pub struct Cell {
    pub protocol: OneVsRest,
    /// EIDN's training (the profile's, unused by a Deep SAD cell).
    pub train: TrainSpec,
    /// Set when the cell trains a Deep SAD / Deep SVDD network instead of an EIDN one.
    pub deep: Option<DeepSadCell>,
    pub methods: Vec<(ReducerKind, DetectorKind)>,
    pub stages: Vec<StageId>,
}

/// A Deep SAD cell's network: its settings, and whether it sees the labelled anomalies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeepSadCell {
    pub train: DeepSadTrain,
    pub supervised: bool,
}

impl DeepSadCell {
    pub fn params(&self, seed: u64) -> DeepSadParams {
        DeepSadParams {
            train: self.train.clone(),
            supervised: self.supervised,
            seed,
        }
    }
}

/// How a cell's network is trained.
enum Training {
    Eidn(TrainSpec),
    Deep(DeepSadCell),
}

impl Cell {
    /// Folder-safe name that spells out every setting that changes the trained network
    /// (protocol and training), so two cells share an id only when they would train the
    /// same encoder.
    pub fn id(&self) -> String {
        let p = &self.protocol;
        let t = &self.train;
        let ratio = if p.deep_sad {
            format!("gl{}", (p.gamma_l() * 1e6).round() / 1e6)
        } else {
            format!("r{}", p.anomaly_ratio)
        };
        let mut id = format!(
            "{}-c{}-{ratio}-s{}",
            p.dataset,
            join_classes(&p.normal_classes()),
            p.seed
        );
        if p.pollution > 0.0 {
            id.push_str(&format!("-p{}", p.pollution));
        }
        if let Some(deep) = &self.deep {
            if let Some(k) = &p.train_anomaly_classes {
                id.push_str(&format!("-seen{}", join_classes(k)));
            }
            let method = if deep.supervised { "dsad" } else { "dsvdd" };
            return format!("{id}-{method}-{}", deep.train.id_suffix());
        }
        id.push_str(&format!(
            "-e{}x{}-b{}-m{}-lr{}-l{}",
            t.epochs, t.steps_per_epoch, t.batch_size, t.margin, t.lr, t.embed_dim
        ));
        if !t.augment.is_none() {
            id.push_str(&format!("-aug{}", t.augment.to_string().replace(':', "")));
        }
        id.push_str(&t.arch.id_suffix());
        if let Some(k) = &p.train_anomaly_classes {
            id.push_str(&format!("-seen{}", join_classes(k)));
        }
        if let Some(k) = &p.test_anomaly_classes {
            id.push_str(&format!("-test{}", join_classes(k)));
        }
        id
    }

    pub fn needs_encoder(&self) -> bool {
        self.methods.iter().any(|(r, _)| r.is_trained())
    }

    /// The input images a Deep SAD cell trains on per epoch, roughly (for cost estimates):
    /// one class of a ten-class dataset of 6,000 images each, plus its anomalies.
    pub fn deep_images_per_epoch(&self) -> u64 {
        let p = &self.protocol;
        let unlabelled = 6000.0 / (1.0 - p.pollution);
        (unlabelled * (1.0 + p.anomaly_ratio)) as u64
    }
}

fn join_classes(k: &[u8]) -> String {
    k.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join("_")
}

impl ValidProfile {
    /// Every cell of the stages whose id is in `only` (all when empty), in profile order;
    /// a cell named by several stages appears once, with the union of their methods.
    pub fn cells(&self, only: &[StageId]) -> Vec<Cell> {
        let mut order: Vec<String> = Vec::new();
        let mut cells: BTreeMap<String, Cell> = BTreeMap::new();
        for s in self
            .stages
            .iter()
            .filter(|s| only.is_empty() || only.contains(&s.id))
        {
            let train = s.train_spec(&self.train);
            // A checked profile lists its classes as labels.
            let classes: Vec<Vec<u8>> = s
                .classes
                .iter()
                .flatten()
                .map(|c| c.labels(None).expect("a checked profile holds labels"))
                .collect();
            let seeds = s.seeds.clone().unwrap_or_else(|| self.seeds.clone());
            // EIDN+ trains its own network (its dataset's recipe), so it gets cells of its own.
            let of = |keep: fn(ReducerKind) -> bool| -> Vec<ReducerKind> {
                s.reducers.iter().copied().filter(|r| keep(*r)).collect()
            };
            let mut trainings: Vec<(Training, Vec<ReducerKind>)> = Vec::new();
            let paper = of(|r| !r.is_deep_sad() && r != ReducerKind::EidnPlus);
            if !paper.is_empty() {
                trainings.push((Training::Eidn(train.clone()), paper));
            }
            let plus = of(|r| r == ReducerKind::EidnPlus);
            if !plus.is_empty() {
                let recipe = super::recipe::eidn_plus(s.dataset).apply(&train);
                trainings.push((Training::Eidn(recipe), plus));
            }
            for (kind, supervised) in [(ReducerKind::DeepSad, true), (ReducerKind::DeepSvdd, false)]
            {
                if s.reducers.contains(&kind) {
                    let deep = DeepSadCell {
                        train: self.deep_sad.clone(),
                        supervised,
                    };
                    trainings.push((Training::Deep(deep), vec![kind]));
                }
            }
            // The protocols of the stage, in the order its cells run.
            let mut protocols = Vec::new();
            if s.id == StageId::DeepSad {
                let pairs: Vec<[u8; 2]> = s.pairs.clone().unwrap_or_else(|| {
                    let n = s.dataset.class_names().map_or(0, |n| n.len()) as u8;
                    classes
                        .iter()
                        .flat_map(|c| (0..n).filter(|k| !c.contains(k)).map(|k| [c[0], k]))
                        .collect()
                });
                for &gamma in s.gamma_l.iter().flatten() {
                    for &[normal, known] in &pairs {
                        for &seed in &seeds {
                            let pollution = s.pollution.unwrap_or(0.0);
                            protocols.push(OneVsRest::deep_sad(
                                s.dataset,
                                normal,
                                &[known],
                                gamma,
                                pollution,
                                seed,
                            ));
                        }
                    }
                }
            } else {
                for &ratio in &s.ratios {
                    for class in &classes {
                        for &seed in &seeds {
                            protocols.push(OneVsRest {
                                train_anomaly_classes: s.train_anomaly_classes.clone(),
                                test_anomaly_classes: s.test_anomaly_classes.clone(),
                                ..OneVsRest::new(s.dataset, class[0], ratio, seed)
                                    .with_normal(class)
                            });
                        }
                    }
                }
            }
            for protocol in protocols {
                for (training, reducers) in &trainings {
                    let cell = match training {
                        // Without labelled anomalies only Deep SVDD trains (Deep SAD is
                        // then the same network, and EIDN has no anomaly pool).
                        _ if protocol.anomaly_ratio == 0.0
                            && !matches!(training, Training::Deep(d) if !d.supervised) =>
                        {
                            continue
                        }
                        Training::Eidn(t) => Cell {
                            protocol: protocol.clone(),
                            train: t.clone(),
                            deep: None,
                            methods: Vec::new(),
                            stages: Vec::new(),
                        },
                        Training::Deep(d) => Cell {
                            // Deep SVDD never sees labelled anomalies: one network serves
                            // every gamma_l and known class of the Deep SAD protocol.
                            protocol: if d.supervised || !protocol.deep_sad {
                                protocol.clone()
                            } else {
                                OneVsRest::deep_sad(
                                    protocol.dataset,
                                    protocol.normal_class,
                                    &[],
                                    0.0,
                                    protocol.pollution,
                                    protocol.seed,
                                )
                            },
                            train: train.clone(),
                            deep: Some(d.clone()),
                            methods: Vec::new(),
                            stages: Vec::new(),
                        },
                    };
                    let id = cell.id();
                    let entry = cells.entry(id.clone()).or_insert_with(|| {
                        order.push(id);
                        cell
                    });
                    for &r in reducers {
                        for &d in &s.detectors {
                            if !entry.methods.contains(&(r, d)) {
                                entry.methods.push((r, d));
                            }
                        }
                    }
                    if !entry.stages.contains(&s.id) {
                        entry.stages.push(s.id);
                    }
                }
            }
        }
        order
            .into_iter()
            .map(|id| cells.remove(&id).expect("every id was inserted"))
            .collect()
    }

    /// The cells of `cells(only)` whose seed is in `seeds` (all when empty).
    pub fn cells_of(&self, only: &[StageId], seeds: &[u64]) -> Vec<Cell> {
        self.cells(only)
            .into_iter()
            .filter(|c| seeds.is_empty() || seeds.contains(&c.protocol.seed))
            .collect()
    }

    /// Every seed any stage uses, sorted.
    pub fn all_seeds(&self) -> Vec<u64> {
        let mut seeds: Vec<u64> = self
            .stages
            .iter()
            .flat_map(|s| s.seeds.clone().unwrap_or_else(|| self.seeds.clone()))
            .collect();
        seeds.sort_unstable();
        seeds.dedup();
        seeds
    }
}

/// `K/N` (1-based K): this run does every N-th cell starting at the K-th.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub fn parse(s: &str) -> Result<Shard, ExperimentError> {
        let bad = || ExperimentError::Shard(s.to_string());
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = k.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    pub fn takes(&self, cell_index: usize) -> bool {
        cell_index % self.count == self.index - 1
    }

    /// Suffix of this shard's records file.
    pub fn tag(&self) -> String {
        format!("{}-of-{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_parse_and_list_their_cells() {
        for (name, _) in BUILTIN {
            let p = Profile::resolve(name).unwrap();
            assert_eq!(p.name, name);
            assert!(!p.cells(&[]).is_empty());
        }
        let quick = Profile::resolve("quick").unwrap();
        assert!(quick.seeds.len() >= 3);
        let paper = Profile::resolve("paper").unwrap();
        assert!(paper.seeds.len() >= 3);
        assert_eq!(paper.train.steps(), 5000);
        assert_eq!(paper.train.batch_size, 128);
    }

    /// The Deep SAD protocol's cells: per gamma_l > 0 and pair one EIDN and one Deep SAD
    /// network; one Deep SVDD network per normal class, shared by every gamma_l; nothing
    /// supervised at gamma_l = 0.
    #[test]
    fn deep_sad_stage_cells() {
        let text = r#"
            name = "d"
            description = "x"
            seeds = [0, 1]
            [train]
            epochs = 1
            steps_per_epoch = 10
            batch_size = 8
            [deep_sad]
            ae_epochs = 1
            epochs = 2
            [[stage]]
            id = "deep_sad"
            dataset = "mnist"
            pairs = [[0, 1], [3, 2]]
            gamma_l = [0.0, 0.05]
            pollution = 0.1
            reducers = ["eidn", "deep_sad", "deep_svdd"]
            detectors = ["origin_distance", "gmm"]
        "#;
        let p = Profile::parse(text, Path::new("d.toml")).unwrap();
        let cells = p.cells(&[]);
        let count = |f: fn(&Cell) -> bool| cells.iter().filter(|c| f(c)).count();
        // 2 pairs x 2 seeds at gamma_l 0.05: EIDN and Deep SAD; Deep SVDD: 2 classes x 2 seeds.
        assert_eq!(count(|c| c.deep.is_none()), 4);
        assert_eq!(count(|c| c.deep.as_ref().is_some_and(|d| d.supervised)), 4);
        assert_eq!(count(|c| c.deep.as_ref().is_some_and(|d| !d.supervised)), 4);
        assert_eq!(cells.len(), 12);
        for c in &cells {
            let p = &c.protocol;
            assert!(p.deep_sad && p.pollution == 0.1, "{}", c.id());
            assert_eq!(c.methods.len(), 2);
            match &c.deep {
                Some(d) if !d.supervised => {
                    assert_eq!(p.anomaly_ratio, 0.0);
                    assert!(
                        c.id().contains("-gl0-") && c.id().contains("-dsvdd-"),
                        "{}",
                        c.id()
                    );
                }
                _ => {
                    assert!((p.gamma_l() - 0.05).abs() < 1e-12);
                    let known = if p.normal_class == 0 { 1 } else { 2 };
                    assert_eq!(p.train_anomaly_classes, Some(vec![known]));
                    assert!(c.id().contains("-gl0.05-"), "{}", c.id());
                }
            }
        }
        // A checked profile checks again (runs save it and reports re-read it).
        let again = toml::to_string(&*p).unwrap();
        assert!(
            Profile::parse(&again, Path::new("again.toml")).is_ok(),
            "{again}"
        );
        for bad in [
            text.replace("gamma_l = [0.0, 0.05]", "ratios = [0.05]"),
            text.replace("gamma_l = [0.0, 0.05]", "gamma_l = [1.0]"),
            text.replace("[3, 2]", "[2, 2]"),
            text.replace("ae_epochs = 1", "ae_epochs = 1\nlr = -1.0"),
            text.replace(r#"id = "deep_sad""#, "id = \"table1\"\nratios = [0.1]"),
        ] {
            assert!(
                Profile::parse(&bad, Path::new("bad.toml")).is_err(),
                "{bad}"
            );
        }
    }

    const TINY: &str = r#"
        name = "tiny"
        description = "test"
        seeds = [0, 1]
        [train]
        epochs = 1
        steps_per_epoch = 5
        batch_size = 4
        [[stage]]
        id = "fig5"
        dataset = "mnist"
        classes = [0, 1]
        ratios = [0.05, 0.01]
        [[stage]]
        id = "fig7"
        dataset = "mnist"
        classes = [0]
        ratios = [0.05]
        seeds = [0]
        reducers = ["eidn", "pca"]
        detectors = ["lof", "origin_distance"]
    "#;

    #[test]
    fn shared_cells_are_merged() {
        let p = Profile::parse(TINY, Path::new("tiny.toml")).unwrap();
        let cells = p.cells(&[]);
        assert_eq!(cells.len(), 8);
        let c0 = cells
            .iter()
            .find(|c| c.id() == "mnist-c0-r0.05-s0-e1x5-b4-m0.2-lr0.001-l2")
            .unwrap();
        assert_eq!(c0.methods.len(), 4);
        assert_eq!(c0.stages, vec![StageId::Fig5, StageId::Fig7]);
        assert_eq!(p.cells(&[StageId::Fig7]).len(), 1);
    }

    #[test]
    fn bad_profiles_name_the_problem() {
        let err = |text: &str| {
            Profile::parse(text, Path::new("x.toml"))
                .unwrap_err()
                .to_string()
        };
        assert!(err(&TINY.replace("classes = [0, 1]", "classes = [0, 12]")).contains("class 12"));
        assert!(err(&TINY.replace("ratios = [0.05, 0.01]", "ratios = []")).contains("ratios"));
        assert!(err(&TINY.replace("\"lof\"", "\"knn\"")).contains("x.toml"));
        assert!(err(&TINY.replace("batch_size = 4", "batch_size = 0")).contains("batch_size"));
    }

    /// Issue 15: augmentation is part of a cell's id and training record when on, and
    /// absent when off (ids and record hashes of existing results do not change).
    #[test]
    fn augmentation_in_ids_only_when_on() {
        let text = r#"
            name = "a"
            description = "x"
            seeds = [0]
            [train]
            epochs = 1
            steps_per_epoch = 10
            batch_size = 8
            [[stage]]
            id = "table2"
            dataset = "cifar10"
            classes = [3]
            ratios = [0.1]
            [[stage]]
            id = "fig5"
            dataset = "cifar10"
            classes = [3]
            ratios = [0.1]
            train = { augment = "crop-flip:4" }
        "#;
        let p = Profile::parse(text, Path::new("a.toml")).unwrap();
        let ids: Vec<String> = p.cells(&[]).iter().map(Cell::id).collect();
        assert_eq!(
            ids,
            [
                "cifar10-c3-r0.1-s0-e1x10-b8-m0.2-lr0.001-l2",
                "cifar10-c3-r0.1-s0-e1x10-b8-m0.2-lr0.001-l2-augcrop-flip4"
            ]
        );
        let plain = serde_json::to_value(&p.cells(&[])[0].train).unwrap();
        assert!(plain.get("augment").is_none(), "{plain}");
        let on = &p.cells(&[])[1];
        assert_eq!(on.train.params(0).augment, Augment::CropFlip { pad: 4 });
        assert!(Profile::parse(
            &text.replace("crop-flip:4", "crop-flip:99"),
            Path::new("a.toml")
        )
        .is_err());
    }

    /// Issue 15: `eidn_plus` trains its own cells, at its dataset's recipe, with only its
    /// methods; the paper-recipe cells keep their ids and methods.
    #[test]
    fn eidn_plus_gets_cells_of_its_own() {
        let text = TINY.replace(
            "reducers = [\"eidn\", \"pca\"]",
            "reducers = [\"eidn\", \"eidn_plus\", \"pca\"]",
        );
        let p = Profile::parse(&text, Path::new("tiny.toml")).unwrap();
        let cells = p.cells(&[StageId::Fig7]);
        assert_eq!(cells.len(), 2);
        assert_eq!(cells[0].id(), "mnist-c0-r0.05-s0-e1x5-b4-m0.2-lr0.001-l2");
        assert!(cells[0]
            .methods
            .iter()
            .all(|(r, _)| *r != ReducerKind::EidnPlus));
        let plus = &cells[1];
        assert!(plus
            .methods
            .iter()
            .all(|(r, _)| *r == ReducerKind::EidnPlus));
        assert_eq!(plus.methods.len(), 2);
        let recipe = super::super::recipe::eidn_plus(DatasetName::Mnist).apply(&p.train);
        assert_eq!(plus.train, recipe);
        assert!(
            !plus.train.augment.is_none() && plus.id().contains("-aug"),
            "{}",
            plus.id()
        );
        assert!(plus.needs_encoder());
        let arch = Arch {
            same_padding: true,
            width: 2,
            blocks: 3,
        };
        let t = TrainSpec { arch, ..recipe };
        assert!(Cell {
            train: t,
            ..plus.clone()
        }
        .id()
        .ends_with("-same-x2-blk3"));
    }

    /// Issue 10 item 1: stages that differ only in a training setting are different cells,
    /// each with its own settings, and a stage's `train` table inherits what it leaves out.
    #[test]
    fn every_training_setting_is_part_of_the_cell() {
        let base = r#"
            name = "t"
            description = "x"
            seeds = [0]
            [train]
            epochs = 2
            steps_per_epoch = 5
            batch_size = 4
            margin = 0.5
            lr = 0.002
            embed_dim = 3
            [[stage]]
            id = "table1"
            dataset = "mnist"
            classes = [0]
            ratios = [0.05]
        "#;
        let p = Profile::parse(base, Path::new("t.toml")).unwrap();
        let plain = p.cells(&[]);
        assert_eq!(plain.len(), 1);
        assert_eq!(plain[0].train, p.train);
        for (over, check) in [
            (
                "lr = 0.01",
                Box::new(|t: &TrainSpec| t.lr == 0.01) as Box<dyn Fn(&TrainSpec) -> bool>,
            ),
            ("margin = 1.0", Box::new(|t: &TrainSpec| t.margin == 1.0)),
            (
                "embed_dim = 16",
                Box::new(|t: &TrainSpec| t.embed_dim == 16),
            ),
            (
                "epochs = 1\nsteps_per_epoch = 10",
                Box::new(|t: &TrainSpec| t.epochs == 1),
            ),
        ] {
            let text = format!(
                "{base}\n[[stage]]\nid = \"fig5\"\ndataset = \"mnist\"\nclasses = [0]\nratios = [0.05]\n[stage.train]\n{over}\n"
            );
            let q = Profile::parse(&text, Path::new("t.toml")).unwrap();
            let cells = q.cells(&[]);
            assert_eq!(cells.len(), 2, "{over}: one cell per setting");
            assert_ne!(cells[0].id(), cells[1].id(), "{over}");
            let other = &cells[1];
            assert!(check(&other.train), "{over}: {:?}", other.train);
            // Inherited, not reset to the defaults.
            assert_eq!(other.train.batch_size, 4, "{over}");
            if !over.starts_with("margin") {
                assert_eq!(other.train.margin, 0.5, "{over}");
            }
            if !over.starts_with("embed_dim") {
                assert_eq!(other.train.embed_dim, 3, "{over}");
            }
        }
    }

    #[test]
    fn shards_split_the_cells() {
        let s = Shard::parse("2/3").unwrap();
        assert!(s.takes(1) && s.takes(4) && !s.takes(0) && !s.takes(2));
        assert!(Shard::parse("0/3").is_err());
        assert!(Shard::parse("4/3").is_err());
        assert!(Shard::parse("x").is_err());
    }
}
