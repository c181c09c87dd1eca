//! A checked profile expanded into cells: one trained network's worth of work each.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::spec::{StageId, TrainSpec, ValidProfile};
use crate::backbone::FeatureSpec;
use crate::data::protocol::OneVsRest;
use crate::data::DatasetName;
use crate::detect::DetectorKind;
use crate::experiment::recipe;
use crate::model::deep_sad::{DeepSadParams, DeepSadTrain};
use crate::reduce::ReducerKind;

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
    /// The pretrained features its feature-based methods read.
    pub features: FeatureSpec,
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
    /// The task a cell's methods are compared on: its data split (dataset, normal classes,
    /// ratio, seed, pollution, seen and test classes) without the training settings, so two
    /// stages that train differently on the same split pair up (`report::compare`).
    pub fn task_id(&self) -> String {
        let p = &self.protocol;
        let mut id = self.split_id();
        if let Some(k) = &p.train_anomaly_classes {
            id.push_str(&format!("-seen{}", join_classes(k)));
        }
        if let Some(k) = &p.test_anomaly_classes {
            id.push_str(&format!("-test{}", join_classes(k)));
        }
        id
    }

    /// How many labelled anomalies the cell trains with, as its id spells it: `r<m / n>`,
    /// `gl<gamma_l>` (Deep SAD's protocol) or `k<shots>` (few-shot).
    pub fn setting(&self) -> String {
        let p = &self.protocol;
        if let Some(k) = p.shots {
            format!("k{k}")
        } else if p.deep_sad {
            format!("gl{}", (p.gamma_l() * 1e6).round() / 1e6)
        } else {
            format!("r{}", p.anomaly_ratio)
        }
    }

    /// "<dataset>-c<classes>-<setting>-s<seed>[-p<pollution>]": how every id starts.
    fn split_id(&self) -> String {
        let p = &self.protocol;
        let ratio = self.setting();
        let mut id = format!(
            "{}-c{}-{ratio}-s{}",
            p.dataset,
            join_classes(&p.normal_classes()),
            p.seed
        );
        if p.pollution > 0.0 {
            id.push_str(&format!("-p{}", p.pollution));
        }
        id
    }

    /// Folder-safe name that spells out every setting that changes the trained network
    /// (protocol and training), so two cells share an id only when they would train the
    /// same encoder.
    pub fn id(&self) -> String {
        let p = &self.protocol;
        let t = &self.train;
        let mut id = self.split_id();
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
    /// The pretrained features of `dataset` in this profile: `backbone_size` when set, else
    /// the dataset's default.
    pub fn features(&self, dataset: DatasetName) -> FeatureSpec {
        FeatureSpec::for_dataset_at(dataset, self.backbone_size)
            .expect("backbone_size was checked with the profile")
    }

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
                let recipe = recipe::eidn_plus(s.dataset).apply(&train);
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
            } else if s.id.is_few_shot() {
                let n = s.dataset.class_names().map_or(0, |n| n.len()) as u8;
                let from_test = s.dataset.is_mvtec();
                for &k in s.shots.iter().flatten() {
                    for class in &classes {
                        // General: every anomaly class at once; hard: each type in turn.
                        let others: Vec<u8> = (0..n).filter(|c| !class.contains(c)).collect();
                        let known: Vec<Option<Vec<u8>>> = if s.id == StageId::FewShot {
                            vec![None]
                        } else {
                            others.iter().map(|&t| Some(vec![t])).collect()
                        };
                        for known in known {
                            let tested = known.as_ref().map(|t| {
                                others.iter().copied().filter(|c| !t.contains(c)).collect()
                            });
                            for &seed in &seeds {
                                protocols.push(
                                    OneVsRest::few_shot(
                                        s.dataset,
                                        class[0],
                                        k,
                                        known.clone(),
                                        tested.clone(),
                                        from_test,
                                        seed,
                                    )
                                    .with_normal(class),
                                );
                            }
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
                            && protocol.shots.is_none()
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
                            features: self.features(protocol.dataset),
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
                            features: self.features(protocol.dataset),
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
