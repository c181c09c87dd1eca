//! How much of the profile's grid the counted records cover, per stage and dataset: a report
//! of a partly finished grid says so per table and figure, instead of passing off what ran
//! as the whole.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use polars::prelude::DataFrame;

use super::frame::strs;
use crate::data::DatasetName;
use crate::experiment::{StageId, ValidProfile};

/// One stage of the profile on one dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct StageCoverage {
    pub stage: StageId,
    pub dataset: DatasetName,
    /// Cells the profile asks for, and those with a counted record for every method.
    pub cells: usize,
    pub done: usize,
    pub classes: BTreeSet<u8>,
    pub classes_done: BTreeSet<u8>,
    pub seeds: BTreeSet<u64>,
    /// Seeds whose every cell is done.
    pub seeds_done: BTreeSet<u64>,
}

impl StageCoverage {
    pub fn complete(&self) -> bool {
        self.done == self.cells
    }

    /// e.g. "10 of 30 cells: 10 of 10 classes, 1 of 3 seeds complete (0)".
    pub fn line(&self) -> String {
        let seeds = |s: &BTreeSet<u64>| {
            s.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "{} of {} cells: {} of {} classes, {} of {} seeds complete{}",
            self.done,
            self.cells,
            self.classes_done.len(),
            self.classes.len(),
            self.seeds_done.len(),
            self.seeds.len(),
            if self.seeds_done.is_empty() {
                String::new()
            } else {
                format!(" ({})", seeds(&self.seeds_done))
            }
        )
    }
}

/// Every (stage, dataset) of `profile`, in stage order.
pub fn coverage(profile: &ValidProfile, counted: &DataFrame) -> Vec<StageCoverage> {
    let mut records_per_cell: HashMap<String, usize> = HashMap::new();
    for cell in strs(counted, "cell").unwrap_or_default() {
        *records_per_cell.entry(cell).or_default() += 1;
    }
    let mut out: BTreeMap<(StageId, DatasetName), StageCoverage> = BTreeMap::new();
    let mut incomplete_seeds: BTreeSet<(StageId, DatasetName, u64)> = BTreeSet::new();
    for cell in profile.cells(&[]) {
        let p = &cell.protocol;
        let done = records_per_cell.get(&cell.id()).copied().unwrap_or(0) >= cell.methods.len();
        for &stage in &cell.stages {
            let c = out
                .entry((stage, p.dataset))
                .or_insert_with(|| StageCoverage {
                    stage,
                    dataset: p.dataset,
                    cells: 0,
                    done: 0,
                    classes: BTreeSet::new(),
                    classes_done: BTreeSet::new(),
                    seeds: BTreeSet::new(),
                    seeds_done: BTreeSet::new(),
                });
            c.cells += 1;
            c.classes.insert(p.normal_class);
            c.seeds.insert(p.seed);
            if done {
                c.done += 1;
                c.classes_done.insert(p.normal_class);
            } else {
                incomplete_seeds.insert((stage, p.dataset, p.seed));
            }
        }
    }
    for (key, c) in &mut out {
        c.seeds_done = c
            .seeds
            .iter()
            .copied()
            .filter(|&s| !incomplete_seeds.contains(&(key.0, key.1, s)))
            .collect();
    }
    out.into_values().collect()
}

/// The coverage of `stage` on `dataset`, if the profile has it.
pub fn of(all: &[StageCoverage], stage: StageId, dataset: DatasetName) -> Option<&StageCoverage> {
    all.iter()
        .find(|c| c.stage == stage && c.dataset == dataset)
}
