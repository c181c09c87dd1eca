//! Experiment protocols: which training images are the normal pool X and the labelled
//! anomaly pool X^, and which test images count as anomalies (paper Section 4).

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use super::{DataError, Dataset, DatasetName, ImageSet};

/// One-vs-rest: class `normal_class` (and any `also_normal`) is normal, every other class
/// anomalous. Training keeps
/// every normal training image and `round(anomaly_ratio x |normal|)` anomalies drawn
/// uniformly without replacement (seeded) from the other classes' training images — or only
/// from `train_anomaly_classes` when given (the unseen-anomaly test). The test set is the
/// full test split, or only the normal class plus `test_anomaly_classes` when given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OneVsRest {
    pub dataset: DatasetName,
    pub normal_class: u8,
    /// Further normal classes (e.g. the good parts of several kinds); empty for the paper's
    /// one-class protocol, and then not written, so older records read the same.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_normal: Vec<u8>,
    pub anomaly_ratio: f64,
    pub seed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_anomaly_classes: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_anomaly_classes: Option<Vec<u8>>,
    /// Deep SAD's gamma_p: this fraction of the unlabelled (normal) pool is anomalies from
    /// every anomaly class, unlabelled, disjoint from the labelled ones. 0 (not written) in
    /// the paper's protocols.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pollution: f64,
    /// The Deep SAD protocol (Ruff et al. 2020): its tables give the labelled share as
    /// gamma_l = m / (n + m), so `anomaly_ratio` (m / n, EIDN's) may be 0 (no labelled
    /// anomalies: Deep SVDD's setting). False (not written) in the paper's protocols.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deep_sad: bool,
    /// The few-shot protocols (DevNet / DRA): exactly this many labelled anomalies, in place
    /// of `anomaly_ratio` (then 0). "General" draws them from every anomaly class, "hard"
    /// from `train_anomaly_classes` (one known type) and tests on `test_anomaly_classes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shots: Option<usize>,
    /// The labelled anomalies are drawn from the test split and leave it (an MVTec tree's
    /// training split holds good images only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shots_from_test: bool,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// The two training pools of the triplet sampler.
#[derive(Clone, Debug)]
pub struct Pools {
    pub normal: ImageSet,
    pub anomalous: ImageSet,
}

impl Pools {
    /// Every training image, normal first.
    pub fn both(&self) -> ImageSet {
        let mut all = self.normal.clone();
        all.pixels.extend_from_slice(&self.anomalous.pixels);
        all.labels.extend_from_slice(&self.anomalous.labels);
        all
    }

    /// Takes a share of the normal pool out (drawn with `seed`, at least one image when
    /// `share` > 0, at least one left) and returns it: normal images the network never sees,
    /// for calibrating its threshold.
    pub fn hold_out_normal(&mut self, share: f64, seed: u64) -> ImageSet {
        let n = self.normal.len();
        let k = if share > 0.0 {
            ((share * n as f64).round() as usize).clamp(1, n.saturating_sub(1))
        } else {
            0
        };
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(
            seed ^ 0x4341_4C49_4252_4154,
        ));
        let (held, kept) = order.split_at(k);
        let (mut held, mut kept) = (held.to_vec(), kept.to_vec());
        held.sort_unstable();
        kept.sort_unstable();
        let out = self.normal.select(&held);
        self.normal = self.normal.select(&kept);
        out
    }

    /// Every training image labelled 0 = normal, 1 = anomalous (the paper's binary LDA).
    pub fn labelled(&self) -> (ImageSet, Vec<usize>) {
        let y = std::iter::repeat_n(0, self.normal.len())
            .chain(std::iter::repeat_n(1, self.anomalous.len()))
            .collect();
        (self.both(), y)
    }
}

/// Test images with their ground truth (true = anomaly).
#[derive(Clone, Debug)]
pub struct TestSet {
    pub images: ImageSet,
    pub is_anomaly: Vec<bool>,
}

impl OneVsRest {
    pub fn new(dataset: DatasetName, normal_class: u8, anomaly_ratio: f64, seed: u64) -> Self {
        OneVsRest {
            dataset,
            normal_class,
            also_normal: Vec::new(),
            anomaly_ratio,
            seed,
            train_anomaly_classes: None,
            test_anomaly_classes: None,
            pollution: 0.0,
            deep_sad: false,
            shots: None,
            shots_from_test: false,
        }
    }

    /// A few-shot protocol: `shots` labelled anomalies from `known` (None: every anomaly
    /// class, "general"; one type: "hard", tested on `tested` only), from the test split
    /// when `from_test`.
    pub fn few_shot(
        dataset: DatasetName,
        normal: u8,
        shots: usize,
        known: Option<Vec<u8>>,
        tested: Option<Vec<u8>>,
        from_test: bool,
        seed: u64,
    ) -> Self {
        OneVsRest {
            train_anomaly_classes: known,
            test_anomaly_classes: tested,
            shots: Some(shots),
            shots_from_test: from_test,
            ..OneVsRest::new(dataset, normal, 0.0, seed)
        }
    }

    /// Deep SAD's protocol: `normal` against every other class, labelled anomalies (a share
    /// `gamma_l` of the training set) from `known` only, `pollution` (gamma_p) of the
    /// unlabelled images anomalies from every class; tested on the whole test split.
    pub fn deep_sad(
        dataset: DatasetName,
        normal: u8,
        known: &[u8],
        gamma_l: f64,
        pollution: f64,
        seed: u64,
    ) -> Self {
        OneVsRest {
            train_anomaly_classes: (gamma_l > 0.0).then(|| known.to_vec()),
            pollution,
            deep_sad: true,
            ..OneVsRest::new(dataset, normal, gamma_l / (1.0 - gamma_l), seed)
        }
    }

    /// Deep SAD's gamma_l = m / (n + m) of this protocol's m / n.
    pub fn gamma_l(&self) -> f64 {
        self.anomaly_ratio / (1.0 + self.anomaly_ratio)
    }

    /// `normal` (at least one label) as the normal set: the first is `normal_class`.
    pub fn with_normal(mut self, normal: &[u8]) -> Self {
        self.normal_class = normal[0];
        self.also_normal = normal[1..].to_vec();
        self
    }

    /// Every normal label, `normal_class` first.
    pub fn normal_classes(&self) -> Vec<u8> {
        std::iter::once(self.normal_class)
            .chain(self.also_normal.iter().copied())
            .collect()
    }

    pub fn is_normal(&self, label: u8) -> bool {
        label == self.normal_class || self.also_normal.contains(&label)
    }

    /// The normal set's name: its class names joined by `+` ("cat", or "screw+nut").
    pub fn normal_name(&self, class_names: &[String]) -> String {
        self.normal_classes()
            .iter()
            .map(|&c| {
                class_names
                    .get(c as usize)
                    .cloned()
                    .unwrap_or_else(|| c.to_string())
            })
            .collect::<Vec<_>>()
            .join("+")
    }

    /// One line for errors: "mnist, normal class 3, anomaly ratio 0.01, seed 0".
    pub fn describe(&self) -> String {
        let normal: Vec<String> = self.normal_classes().iter().map(u8::to_string).collect();
        let how = if let Some(k) = self.shots {
            let from = match &self.train_anomaly_classes {
                Some(t) => format!(" of type {}", join(t)),
                None => String::new(),
            };
            format!("{k} labelled anomalies{from}")
        } else if self.deep_sad {
            format!("gamma_l {}", self.gamma_l())
        } else {
            format!("anomaly ratio {}", self.anomaly_ratio)
        };
        format!(
            "{}, normal class {}, {how}, seed {}",
            self.dataset,
            normal.join("+"),
            self.seed
        )
    }

    fn invalid(&self, message: String) -> DataError {
        DataError::Protocol {
            protocol: self.describe(),
            message,
        }
    }

    fn check(&self, data: &Dataset) -> Result<(), DataError> {
        if data.name != self.dataset {
            return Err(self.invalid(format!("given the {} dataset", data.name)));
        }
        self.check_classes(data.train.class_names.len())
    }

    fn check_classes(&self, classes: usize) -> Result<(), DataError> {
        let all = std::iter::once(&self.normal_class)
            .chain(&self.also_normal)
            .chain(self.train_anomaly_classes.iter().flatten())
            .chain(self.test_anomaly_classes.iter().flatten());
        for &c in all {
            if c as usize >= classes {
                return Err(self.invalid(format!("class {c} out of range (0..{classes})")));
            }
        }
        if (0..classes as u8).all(|c| self.is_normal(c)) {
            return Err(self.invalid(format!(
                "every class of {} is normal: nothing is left to be an anomaly",
                self.dataset
            )));
        }
        if self.shots == Some(0) {
            return Err(
                self.invalid("a few-shot protocol needs at least 1 labelled anomaly".into())
            );
        }
        let least = if self.deep_sad || self.shots.is_some() {
            0.0
        } else {
            f64::MIN_POSITIVE
        };
        if !(self.anomaly_ratio >= least && self.anomaly_ratio.is_finite()) {
            return Err(self.invalid("anomaly ratio must be > 0".into()));
        }
        if !(0.0..1.0).contains(&self.pollution) {
            return Err(self.invalid(format!("pollution {} must be in [0, 1)", self.pollution)));
        }
        Ok(())
    }

    /// Training pools for the triplet sampler.
    pub fn pools(&self, data: &Dataset) -> Result<Pools, DataError> {
        self.check(data)?;
        if !self.shots_from_test {
            return self.pools_from(&data.train);
        }
        let normal: Vec<usize> = (0..data.train.len())
            .filter(|&i| self.is_normal(data.train.labels[i]))
            .collect();
        if normal.is_empty() {
            return Err(self.invalid("the normal class has no training images".into()));
        }
        Ok(Pools {
            normal: data.train.select(&normal),
            anomalous: data.test.select(&self.labelled_from_test(&data.test)?),
        })
    }

    /// The test images the labelled anomalies are when they come from the test split.
    fn labelled_from_test(&self, test: &ImageSet) -> Result<Vec<usize>, DataError> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(self.seed);
        self.draw_labelled(test, self.shots.unwrap_or(0), &mut rng)
    }

    /// The images of `split` that may be labelled anomalies.
    fn candidates(&self, split: &ImageSet) -> Vec<usize> {
        (0..split.len())
            .filter(|&i| {
                let l = split.labels[i];
                !self.is_normal(l)
                    && self
                        .train_anomaly_classes
                        .as_ref()
                        .is_none_or(|k| k.contains(&l))
            })
            .collect()
    }

    /// `wanted` candidates of `split`, drawn uniformly without replacement, sorted.
    fn draw_labelled(
        &self,
        split: &ImageSet,
        wanted: usize,
        rng: &mut Xoshiro256PlusPlus,
    ) -> Result<Vec<usize>, DataError> {
        let candidates = self.candidates(split);
        if wanted > candidates.len() {
            let which = match &self.train_anomaly_classes {
                Some(k) => format!("of class {} ", join_names(k, &split.class_names)),
                None => String::new(),
            };
            return Err(self.invalid(format!(
                "needs {wanted} labelled anomalies but the {} split has only {} {which}(and {} normal)",
                if self.shots_from_test { "test" } else { "training" },
                candidates.len(),
                split.labels.iter().filter(|&&l| self.is_normal(l)).count()
            )));
        }
        let mut picked: Vec<usize> = rand::seq::index::sample(rng, candidates.len(), wanted)
            .into_iter()
            .map(|k| candidates[k])
            .collect();
        picked.sort_unstable();
        Ok(picked)
    }

    /// The pools drawn from a training split alone: what recipe selection uses, so that it
    /// cannot see a test image.
    pub fn pools_from(&self, train: &ImageSet) -> Result<Pools, DataError> {
        let (normal, labelled) = self.pool_indices(train)?;
        Ok(Pools {
            normal: train.select(&normal),
            anomalous: train.select(&labelled),
        })
    }

    /// [`OneVsRest::pools_from`]'s pools as indices into `train` (each sorted): the normal
    /// pool and the labelled anomalies. Selection uses them to validate on the training
    /// images a cell does not train on.
    pub fn pool_indices(&self, train: &ImageSet) -> Result<(Vec<usize>, Vec<usize>), DataError> {
        self.check_classes(train.class_names.len())?;
        let labels = &train.labels;
        let normal: Vec<usize> = (0..labels.len())
            .filter(|&i| self.is_normal(labels[i]))
            .collect();
        // Unlabelled anomalies: gamma_p of the unlabelled pool, so p / (n + p) = gamma_p.
        let polluting =
            ((normal.len() as f64) * self.pollution / (1.0 - self.pollution)).round() as usize;
        let unlabelled = normal.len() + polluting;
        let wanted = match self.shots {
            Some(k) => k,
            None => match ((unlabelled as f64) * self.anomaly_ratio).round() as usize {
                0 if self.anomaly_ratio > 0.0 => 1,
                n => n,
            },
        };
        if normal.is_empty() {
            return Err(self.invalid(
                "the normal class has no training images (an empty class folder or label?)".into(),
            ));
        }
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(self.seed);
        let picked = self.draw_labelled(train, wanted, &mut rng)?;
        let mut normal = normal;
        if polluting > 0 {
            // From every anomaly class, never an image already labelled.
            let rest: Vec<usize> = (0..labels.len())
                .filter(|&i| !self.is_normal(labels[i]) && picked.binary_search(&i).is_err())
                .collect();
            if polluting > rest.len() {
                return Err(self.invalid(format!(
                    "needs {polluting} polluting anomalies but only {} images are left",
                    rest.len()
                )));
            }
            normal.extend(
                rand::seq::index::sample(&mut rng, rest.len(), polluting)
                    .into_iter()
                    .map(|k| rest[k]),
            );
            normal.sort_unstable();
        }
        Ok((normal, picked))
    }

    /// The test images and which of them are anomalies.
    pub fn test_set(&self, data: &Dataset) -> Result<TestSet, DataError> {
        self.check(data)?;
        let labels = &data.test.labels;
        let labelled = if self.shots_from_test {
            self.labelled_from_test(&data.test)?
        } else {
            Vec::new()
        };
        let keep: Vec<usize> = (0..labels.len())
            .filter(|&i| labelled.binary_search(&i).is_err())
            .filter(|&i| {
                self.is_normal(labels[i])
                    || self
                        .test_anomaly_classes
                        .as_ref()
                        .is_none_or(|k| k.contains(&labels[i]))
            })
            .collect();
        let images = data.test.select(&keep);
        let is_anomaly: Vec<bool> = images.labels.iter().map(|&l| !self.is_normal(l)).collect();
        let anomalies = is_anomaly.iter().filter(|&&a| a).count();
        if anomalies == 0 || anomalies == is_anomaly.len() {
            return Err(self.invalid(format!(
                "the test split has {} normal and {anomalies} anomalous images; an AUC needs both",
                is_anomaly.len() - anomalies
            )));
        }
        Ok(TestSet { images, is_anomaly })
    }
}

fn join(k: &[u8]) -> String {
    k.iter().map(u8::to_string).collect::<Vec<_>>().join("+")
}

fn join_names(k: &[u8], names: &[String]) -> String {
    k.iter()
        .map(|&c| {
            names
                .get(c as usize)
                .cloned()
                .unwrap_or_else(|| c.to_string())
        })
        .collect::<Vec<_>>()
        .join("+")
}

/// Labels from `spec`: labels or class names (any case), several joined by `,` or `+`.
pub fn parse_classes(spec: &str, class_names: &[String]) -> Result<Vec<u8>, String> {
    let mut labels: Vec<u8> = Vec::new();
    for part in spec.split([',', '+']).map(str::trim) {
        let label = match part.parse::<usize>() {
            Ok(label) => Some(label),
            Err(_) => class_names
                .iter()
                .position(|n| n.eq_ignore_ascii_case(part)),
        };
        match label {
            Some(l) if l < class_names.len() => {
                if !labels.contains(&(l as u8)) {
                    labels.push(l as u8);
                }
            }
            _ => {
                return Err(format!(
                    "{part:?} is not a class: labels 0-{} or names {}",
                    class_names.len().saturating_sub(1),
                    class_names.join(", ")
                ))
            }
        }
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Dataset {
        let set = |n: usize| ImageSet {
            pixels: (0..n).map(|i| i as u8).collect(),
            labels: (0..n).map(|i| (i % 4) as u8).collect(),
            channels: 1,
            height: 1,
            width: 1,
            class_names: (0..4).map(|i| i.to_string()).collect(),
        };
        Dataset {
            name: DatasetName::Mnist,
            train: set(400),
            test: set(40),
        }
    }

    #[test]
    fn pools_follow_the_ratio_and_seed() {
        let d = toy();
        let p = OneVsRest::new(DatasetName::Mnist, 2, 0.1, 5);
        let pools = p.pools(&d).unwrap();
        assert_eq!(pools.normal.len(), 100);
        assert!(pools.normal.labels.iter().all(|&l| l == 2));
        assert_eq!(pools.anomalous.len(), 10);
        assert!(pools.anomalous.labels.iter().all(|&l| l != 2));
        assert_eq!(p.pools(&d).unwrap().anomalous, pools.anomalous);
        let other = OneVsRest {
            seed: 6,
            ..p.clone()
        };
        assert_ne!(other.pools(&d).unwrap().anomalous, pools.anomalous);
        let test = p.test_set(&d).unwrap();
        assert_eq!(test.images.len(), 40);
        assert_eq!(test.is_anomaly.iter().filter(|&&a| a).count(), 30);
    }

    #[test]
    fn restricted_classes_for_the_unseen_test() {
        let d = toy();
        let p = OneVsRest {
            train_anomaly_classes: Some(vec![1]),
            test_anomaly_classes: Some(vec![3]),
            ..OneVsRest::new(DatasetName::Mnist, 0, 0.5, 1)
        };
        let pools = p.pools(&d).unwrap();
        assert!(pools.anomalous.labels.iter().all(|&l| l == 1));
        let test = p.test_set(&d).unwrap();
        assert!(test.images.labels.iter().all(|&l| l == 0 || l == 3));
        assert_eq!(test.images.len(), 20);
    }

    #[test]
    fn bad_protocols_are_refused() {
        let d = toy();
        assert!(OneVsRest::new(DatasetName::Mnist, 9, 0.1, 0)
            .pools(&d)
            .is_err());
        assert!(OneVsRest::new(DatasetName::Mnist, 0, 0.0, 0)
            .pools(&d)
            .is_err());
        assert!(OneVsRest::new(DatasetName::Mnist, 0, 5.0, 0)
            .pools(&d)
            .is_err());
        assert!(OneVsRest::new(DatasetName::Cifar10, 0, 0.1, 0)
            .pools(&d)
            .is_err());
        let everything = OneVsRest::new(DatasetName::Mnist, 0, 0.1, 0).with_normal(&[0, 1, 2, 3]);
        assert!(everything.pools(&d).is_err());
    }

    /// Deep SAD's counts (their `create_semisupervised_setting` with no labelled normals):
    /// n normal, p = gamma_p / (1 - gamma_p) n polluting, m = gamma_l (n + p + m) labelled.
    #[test]
    fn deep_sad_protocol_counts() {
        let d = toy();
        // 100 normal (class 0); gamma_p 0.2 -> 25 polluting; gamma_l 0.1 -> m / 125 = 1/9.
        let p = OneVsRest::deep_sad(DatasetName::Mnist, 0, &[1], 0.1, 0.2, 3);
        assert!((p.gamma_l() - 0.1).abs() < 1e-12);
        let pools = p.pools(&d).unwrap();
        assert_eq!(pools.normal.len(), 125);
        assert_eq!(pools.normal.labels.iter().filter(|&&l| l == 0).count(), 100);
        assert_eq!(pools.anomalous.len(), 14);
        assert!(pools.anomalous.labels.iter().all(|&l| l == 1));
        // Polluting images come from every anomaly class.
        let polluting: Vec<u8> = pools
            .normal
            .labels
            .iter()
            .copied()
            .filter(|&l| l != 0)
            .collect();
        assert!(
            polluting.contains(&2) && polluting.contains(&3),
            "{polluting:?}"
        );
        // The whole test split, all nine others anomalous.
        assert_eq!(p.test_set(&d).unwrap().images.len(), 40);
        // gamma_l = 0: no labelled anomalies (Deep SVDD), not one forced in.
        let svdd = OneVsRest::deep_sad(DatasetName::Mnist, 0, &[1], 0.0, 0.0, 3);
        let pools = svdd.pools(&d).unwrap();
        assert_eq!((pools.normal.len(), pools.anomalous.len()), (100, 0));
        assert!(OneVsRest::new(DatasetName::Mnist, 0, 0.0, 0)
            .pools(&d)
            .is_err());
    }

    #[test]
    fn several_normal_classes() {
        let d = toy();
        let p = OneVsRest::new(DatasetName::Mnist, 0, 0.1, 2).with_normal(&[1, 3]);
        let pools = p.pools(&d).unwrap();
        assert_eq!(pools.normal.len(), 200);
        assert!(pools.normal.labels.iter().all(|&l| l == 1 || l == 3));
        assert!(pools.anomalous.labels.iter().all(|&l| l == 0 || l == 2));
        assert_eq!(pools.anomalous.len(), 20);
        let test = p.test_set(&d).unwrap();
        assert_eq!(test.is_anomaly.iter().filter(|&&a| a).count(), 20);
        assert_eq!(p.normal_name(&d.train.class_names), "1+3");
        let names: Vec<String> = ["good", "scratch", "dent"].map(String::from).to_vec();
        assert_eq!(parse_classes("good", &names).unwrap(), [0]);
        assert_eq!(parse_classes("Good,2", &names).unwrap(), [0, 2]);
        assert_eq!(
            parse_classes("scratch+good+scratch", &names).unwrap(),
            [1, 0]
        );
        let err = parse_classes("bent", &names).unwrap_err();
        assert!(err.contains("good, scratch, dent"), "{err}");
        assert!(parse_classes("3", &names).is_err());
    }

    /// Issue 28 case 15: an empty normal class is named as such, and the protocol reads as
    /// words, not as a Rust struct.
    #[test]
    fn an_empty_normal_class_is_named() {
        let d = toy();
        let mut train = d.train.clone();
        train.labels.iter_mut().for_each(|l| *l = (*l).max(1));
        let p = OneVsRest::new(d.name, 0, 0.5, 3);
        let err = p.pools_from(&train).unwrap_err().to_string();
        assert!(err.contains("normal class has no training images"), "{err}");
        assert!(
            err.contains("mnist, normal class 0, anomaly ratio 0.5, seed 3"),
            "{err}"
        );
        assert!(!err.contains("OneVsRest"), "{err}");
    }

    /// The few-shot protocols: exactly k labelled anomalies; "hard" from one type, tested on
    /// the others; from the test split (an MVTec tree's) they leave the test set.
    #[test]
    fn few_shot_protocols() {
        let d = toy();
        let general = OneVsRest::few_shot(DatasetName::Mnist, 0, 5, None, None, false, 4);
        let pools = general.pools(&d).unwrap();
        assert_eq!((pools.normal.len(), pools.anomalous.len()), (100, 5));
        assert_eq!(general.test_set(&d).unwrap().images.len(), 40);
        let hard = OneVsRest::few_shot(
            DatasetName::Mnist,
            0,
            3,
            Some(vec![2]),
            Some(vec![1, 3]),
            false,
            4,
        );
        assert!(hard
            .pools(&d)
            .unwrap()
            .anomalous
            .labels
            .iter()
            .all(|&l| l == 2));
        let test = hard.test_set(&d).unwrap();
        assert!(test.images.labels.iter().all(|&l| l != 2));
        // From the test split: 10 images of class 1 there; 4 labelled leave it.
        let from_test = OneVsRest::few_shot(DatasetName::Mnist, 0, 4, Some(vec![1]), None, true, 4);
        let pools = from_test.pools(&d).unwrap();
        assert_eq!(pools.anomalous.len(), 4);
        assert_eq!(from_test.test_set(&d).unwrap().images.len(), 36);
        for i in 0..pools.anomalous.len() {
            let img = pools.anomalous.image(i);
            let test = from_test.test_set(&d).unwrap();
            assert!((0..test.images.len()).all(|j| test.images.image(j) != img));
        }
        let err = OneVsRest::few_shot(DatasetName::Mnist, 0, 11, Some(vec![1]), None, true, 4)
            .pools(&d)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("needs 11 labelled anomalies but the test split has only 10 of class 1"),
            "{err}"
        );
        assert!(
            OneVsRest::few_shot(DatasetName::Mnist, 0, 0, None, None, false, 4)
                .pools(&d)
                .is_err()
        );
    }
}
