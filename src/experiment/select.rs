//! What a result record's config is, and which records count: the one place that decides
//! whether a record is a current result of a profile.
//!
//! The rule: a (cell, reducer, detector) counts once, from the current configuration. A
//! record is ignored, and the report says so, when it was written by another record
//! version, with settings the current profile does not ask for, on another copy of the
//! data than the newest records of its dataset, or when a newer record of the same cell
//! and method exists.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::profile::{Cell, StageId, ValidProfile};
use super::store::{canonical_json, config_hash, Record, RECORD_VERSION};
use super::ExperimentError;
use crate::build_info::Build;
use crate::data::DatasetName;
use crate::detect::{Detector, DetectorKind};
use crate::model::head::HeadKind;
use crate::reduce::{
    ComboParams, HeadReducerParams, LabelFree, LdaParams, LogisticParams, PcaParams,
    PretrainedParams, ReducerKind, ReducerSettings,
};
use linfa::ParamGuard;

/// LDA's shrinkage in every profile (scikit-learn's eigen solver with a fixed alpha).
pub const LDA_SHRINKAGE: f64 = 0.1;

/// PCA components of the pretrained features under GMM, whose full covariances (with BIC's
/// search over component counts) are out of reach in 1,280 dimensions; every other detector
/// gets all 1,280.
pub const GMM_COMPONENTS: usize = 32;

/// The checked reducer and detector settings a cell runs for one method.
pub fn method_settings(
    cell: &Cell,
    reducer: ReducerKind,
    detector: DetectorKind,
) -> Result<(ReducerSettings, Detector), ExperimentError> {
    let bad = |message: String| ExperimentError::Cell {
        cell: format!("{} {}/{}", cell.id(), reducer.as_str(), detector.as_str()),
        message,
    };
    let reducer = match reducer {
        ReducerKind::Eidn => ReducerSettings::Eidn,
        ReducerKind::EidnPlus => ReducerSettings::EidnPlus,
        ReducerKind::Pca => ReducerSettings::Pca(
            PcaParams::new(cell.train.embed_dim)
                .check()
                .map_err(|e| bad(e.to_string()))?,
        ),
        ReducerKind::DeepSad => ReducerSettings::DeepSad,
        ReducerKind::DeepSvdd => ReducerSettings::DeepSvdd,
        ReducerKind::Pretrained => ReducerSettings::Pretrained(
            PretrainedParams::new(cell.features.clone())
                .components((detector == DetectorKind::Gmm).then_some(GMM_COMPONENTS))
                .check()
                .map_err(|e| bad(e.to_string()))?,
        ),
        ReducerKind::PretrainedLogreg => ReducerSettings::PretrainedLogreg(
            LogisticParams::new(cell.features.clone())
                .check()
                .map_err(|e| bad(e.to_string()))?,
        ),
        ReducerKind::HeadDevnet | ReducerKind::HeadDeepSad | ReducerKind::HeadEidn => {
            let features = cell.features.clone();
            let kind = match reducer {
                ReducerKind::HeadDevnet => HeadKind::Devnet,
                ReducerKind::HeadDeepSad => HeadKind::DeepSad,
                _ => HeadKind::Eidn,
            };
            let p = HeadReducerParams::new(features, kind, cell.protocol.seed)
                .check()
                .map_err(|e| bad(e.to_string()))?;
            match kind {
                HeadKind::Devnet => ReducerSettings::HeadDevnet(p),
                HeadKind::DeepSad => ReducerSettings::HeadDeepSad(p),
                HeadKind::Eidn => ReducerSettings::HeadEidn(p),
            }
        }
        ReducerKind::PretrainedKnnLogreg | ReducerKind::PretrainedMahalanobisLogreg => {
            let logistic = LogisticParams::new(cell.features.clone())
                .check()
                .map_err(|e| bad(e.to_string()))?;
            let params = ComboParams::new(logistic);
            if reducer == ReducerKind::PretrainedKnnLogreg {
                ReducerSettings::PretrainedKnnLogreg(
                    params.check().map_err(|e| bad(e.to_string()))?,
                )
            } else {
                ReducerSettings::PretrainedMahalanobisLogreg(
                    (params.label_free(LabelFree::Mahalanobis).check())
                        .map_err(|e| bad(e.to_string()))?,
                )
            }
        }
        ReducerKind::Lda => ReducerSettings::Lda(
            LdaParams::default()
                .shrinkage(LDA_SHRINKAGE)
                .check()
                .map_err(|e| bad(e.to_string()))?,
        ),
    };
    let detector = detector
        .default_params(cell.protocol.seed)
        .map_err(|e| bad(e.to_string()))?;
    Ok((reducer, detector))
}

/// The config a record's hash covers: record version, protocol, training, the reducer's and
/// the detector's checked settings, and the data copy's status (None: left out, for
/// comparing settings across data copies).
pub fn record_config(
    cell: &Cell,
    reducer: &ReducerSettings,
    detector: &Detector,
    data: Option<&str>,
) -> (Value, String) {
    let mut config = serde_json::json!({
        "version": RECORD_VERSION,
        "protocol": cell.protocol,
        "reducer": reducer,
        "detector": detector,
    });
    // A cell's network: EIDN's training, or Deep SAD's.
    match &cell.deep {
        None => config["train"] = serde_json::json!(cell.train),
        Some(deep) => config["deep_sad"] = serde_json::json!(deep),
    }
    if let Some(data) = data {
        config["data"] = Value::String(data.to_string());
    }
    let hash = config_hash(&config);
    (config, hash)
}

/// Why a record does not count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ignored {
    OtherBuild,
    OlderVersion,
    OtherSettings,
    OtherDataCopy,
    Superseded,
}

impl Ignored {
    pub fn describe(self) -> &'static str {
        match self {
            Ignored::OtherBuild => {
                "written by another build of eidn (regress counts only this one's)"
            }
            Ignored::OlderVersion => "written by an older record version of eidn",
            Ignored::OtherSettings => "settings the current profile does not ask for",
            Ignored::OtherDataCopy => {
                "computed on another copy of the data than the newest records"
            }
            Ignored::Superseded => "superseded by a newer record of the same cell, seed and method",
        }
    }
}

/// The records that count, the stages of each counted record's cell, and what was left out.
#[derive(Debug, Default)]
pub struct Selection {
    pub counted: Vec<Record>,
    /// Cell id -> the stages of the current profile that cell belongs to.
    pub stages: HashMap<String, Vec<StageId>>,
    /// Cell id -> its task and setting (`Cell::task_id`, `Cell::setting`): cells of one
    /// task pair up in comparisons.
    pub tasks: HashMap<String, (String, String)>,
    pub ignored: BTreeMap<Ignored, usize>,
}

impl Selection {
    pub fn ignored_total(&self) -> usize {
        self.ignored.values().sum()
    }

    /// One line per reason, e.g. "3 ignored: settings the current profile does not ask for".
    pub fn ignored_lines(&self) -> Vec<String> {
        self.ignored
            .iter()
            .map(|(why, n)| format!("{n} ignored: {}", why.describe()))
            .collect()
    }

    /// Whether the record's cell belongs to `stage` in the current profile.
    pub fn in_stage(&self, r: &Record, stage: StageId) -> bool {
        self.stages.get(&r.cell).is_some_and(|s| s.contains(&stage))
    }
}

/// Applies the counting rule to `records` (in the order they were read) for `profile`.
pub fn select(records: &[Record], profile: &ValidProfile) -> Result<Selection, ExperimentError> {
    select_where(records, profile, None)
}

/// [`select`] counting only the records `build` wrote (what `regress` guards).
pub fn select_from_build(
    records: &[Record],
    profile: &ValidProfile,
    build: &Build,
) -> Result<Selection, ExperimentError> {
    select_where(records, profile, Some(build))
}

fn select_where(
    records: &[Record],
    profile: &ValidProfile,
    only: Option<&Build>,
) -> Result<Selection, ExperimentError> {
    let mut expected: HashMap<(String, ReducerKind, DetectorKind), String> = HashMap::new();
    let mut stages = HashMap::new();
    let mut tasks = HashMap::new();
    for cell in profile.cells(&[]) {
        for &(r, d) in &cell.methods {
            let (reducer, detector) = method_settings(&cell, r, d)?;
            let (config, _) = record_config(&cell, &reducer, &detector, None);
            expected.insert((cell.id(), r, d), canonical_json(&config));
        }
        tasks.insert(cell.id(), (cell.task_id(), cell.setting()));
        stages.insert(cell.id(), cell.stages.clone());
    }
    let mut ignored: BTreeMap<Ignored, usize> = BTreeMap::new();
    // Newest first: by write time, then by read order.
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse((records[i].written_unix, i)));
    let mut candidates = Vec::new();
    for i in order {
        let r = &records[i];
        if only.is_some_and(|b| r.build.as_ref() != Some(b)) {
            *ignored.entry(Ignored::OtherBuild).or_default() += 1;
            continue;
        }
        if r.config.get("version").and_then(Value::as_u64) != Some(u64::from(RECORD_VERSION)) {
            *ignored.entry(Ignored::OlderVersion).or_default() += 1;
            continue;
        }
        let mut settings = r.config.clone();
        if let Some(map) = settings.as_object_mut() {
            map.remove("data");
        }
        let key = (r.cell.clone(), r.reducer, r.detector);
        if expected.get(&key) != Some(&canonical_json(&settings)) {
            *ignored.entry(Ignored::OtherSettings).or_default() += 1;
            continue;
        }
        candidates.push((key, r));
    }
    // The newest record of each dataset names its current data copy.
    let mut copy: HashMap<DatasetName, &str> = HashMap::new();
    for (_, r) in &candidates {
        copy.entry(r.dataset).or_insert(r.data.as_str());
    }
    let mut seen = std::collections::HashSet::new();
    let mut counted = Vec::new();
    for (key, r) in candidates {
        if copy[&r.dataset] != r.data {
            *ignored.entry(Ignored::OtherDataCopy).or_default() += 1;
        } else if !seen.insert(key) {
            *ignored.entry(Ignored::Superseded).or_default() += 1;
        } else {
            counted.push(r.clone());
        }
    }
    // Back to read order, so tables list records as they were written.
    counted.reverse();
    Ok(Selection {
        counted,
        stages,
        tasks,
        ignored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::profile::Profile;
    use crate::reduce::ReducerKind;
    use std::path::Path;

    const PROFILE: &str = r#"
        name = "t"
        description = "x"
        seeds = [0]
        [train]
        epochs = 1
        steps_per_epoch = 60
        batch_size = 8
        [[stage]]
        id = "table1"
        dataset = "mnist"
        classes = [0]
        ratios = [0.01]
    "#;

    fn record(cell: &Cell, data: &str, auc: f64, written: u64) -> Record {
        let (r, d) =
            method_settings(cell, ReducerKind::Eidn, DetectorKind::OriginDistance).unwrap();
        let (config, config_hash) = record_config(cell, &r, &d, Some(data));
        Record {
            cell: cell.id(),
            config_hash,
            dataset: cell.protocol.dataset,
            protocol: "one-vs-rest".into(),
            normal_class: 0,
            class_name: "0".into(),
            anomaly_ratio: cell.protocol.anomaly_ratio,
            seed: 0,
            reducer: ReducerKind::Eidn,
            detector: DetectorKind::OriginDistance,
            auc,
            ap: auc,
            train_seconds: 0.0,
            fit_seconds: 0.0,
            score_seconds: 0.0,
            n_test: 10,
            n_test_anomalies: 9,
            data: data.into(),
            config,
            written_unix: written,
            build: Some(crate::build_info::Build::current()),
            notes: Vec::new(),
            per_type_auc: Vec::new(),
        }
    }

    /// Issue 10 item 2: a 20-step and a 60-step record of seed 0 are not two seeds; an older
    /// version, another data copy and an older duplicate are ignored, each with its reason.
    #[test]
    fn one_record_counts_per_cell_seed_and_method() {
        let current = Profile::parse(PROFILE, Path::new("t.toml")).unwrap();
        let old = Profile::parse(
            &PROFILE.replace("steps_per_epoch = 60", "steps_per_epoch = 20"),
            Path::new("t.toml"),
        )
        .unwrap();
        let cell = &current.cells(&[])[0];
        let old_cell = &old.cells(&[])[0];
        let mut older_version = record(cell, "exact", 0.5, 1);
        older_version.config["version"] = serde_json::json!(1);
        let records = vec![
            record(old_cell, "exact", 0.7, 1),
            older_version,
            record(cell, "variant x", 0.6, 2),
            record(cell, "exact", 0.8, 3),
            record(cell, "exact", 0.9, 4),
        ];
        let s = select(&records, &current).unwrap();
        assert_eq!(s.counted.len(), 1, "{:?}", s.counted);
        assert_eq!(s.counted[0].auc, 0.9);
        assert!(s.in_stage(&s.counted[0], StageId::Table1));
        let n = |why| s.ignored.get(&why).copied().unwrap_or(0);
        assert_eq!(n(Ignored::OtherSettings), 1);
        assert_eq!(n(Ignored::OlderVersion), 1);
        assert_eq!(n(Ignored::OtherDataCopy), 1);
        assert_eq!(n(Ignored::Superseded), 1);
        assert_eq!(s.ignored_lines().len(), 4);
    }

    /// Issue 10 item 3: detector and reducer settings, the data copy and the record version
    /// are all in the hash.
    #[test]
    fn the_hash_covers_every_input() {
        let p = Profile::parse(PROFILE, Path::new("t.toml")).unwrap();
        let cell = &p.cells(&[])[0];
        let (r, d) = method_settings(cell, ReducerKind::Pca, DetectorKind::OneClassSvm).unwrap();
        let hash =
            |r: &ReducerSettings, d: &Detector, data: &str| record_config(cell, r, d, Some(data)).1;
        let base = hash(&r, &d, "exact");
        assert_ne!(base, hash(&r, &d, "variant jpeg-q75"));
        let nu = Detector::OneClassSvm(
            crate::detect::OneClassSvmParams::default()
                .nu(0.5)
                .check()
                .unwrap(),
        );
        assert_ne!(base, hash(&r, &nu, "exact"));
        let pca3 = ReducerSettings::Pca(PcaParams::new(3).check().unwrap());
        assert_ne!(base, hash(&pca3, &d, "exact"));
        let (config, _) = record_config(cell, &r, &d, None);
        assert_eq!(config["version"], serde_json::json!(RECORD_VERSION));
        assert_eq!(config["detector"]["nu"], serde_json::json!(0.1));
        assert_eq!(config["reducer"]["n_components"], serde_json::json!(2));
        for kind in DetectorKind::ALL {
            let (_, g) = method_settings(cell, ReducerKind::Eidn, kind).unwrap();
            assert_eq!(g.kind(), kind);
        }
    }
}
