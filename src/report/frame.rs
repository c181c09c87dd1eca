//! The counted records as one polars `DataFrame`, and the queries every table and figure is
//! built from. Which records count (one per cell, seed and method of the current profile) is
//! decided before, in `experiment::select`; here they are only grouped and averaged.
//!
//! polars is built without its lazy API (it would double its compile time): the queries are
//! eager `filter` / `group_by` / `join` calls.

use std::path::Path;

use polars::prelude::*;

use crate::reduce::ReducerKind;

use crate::experiment::{write_atomic, write_csv, ExperimentError, Record, Selection, StageId};

/// Mean, sample standard deviation (None below 2 values) and count.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stat {
    pub mean: f64,
    pub std: Option<f64>,
    pub n: usize,
}

impl Stat {
    pub fn of(values: &[f64]) -> Option<Stat> {
        if values.is_empty() {
            return None;
        }
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n as f64;
        let std = (n > 1).then(|| {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        });
        Some(Stat { mean, std, n })
    }

    /// "0.9912 ± 0.0021" (no ± for a single value).
    pub fn show(&self) -> String {
        match self.std {
            Some(s) => format!("{:.4} ± {:.4}", self.mean, s),
            None => format!("{:.4}", self.mean),
        }
    }
}

/// The column saying whether a record's cell belongs to `stage` in the current profile.
pub fn stage_column(stage: StageId) -> String {
    format!("stage_{}", stage.as_str())
}

/// One typed row per counted record: what `results.csv` / `results.parquet` hold.
pub fn records_frame(records: &[Record], selection: &Selection) -> PolarsResult<DataFrame> {
    let r = records;
    let s = |f: fn(&Record) -> String| r.iter().map(f).collect::<Vec<String>>();
    let f = |f: fn(&Record) -> f64| r.iter().map(f).collect::<Vec<f64>>();
    let u = |f: fn(&Record) -> u64| r.iter().map(f).collect::<Vec<u64>>();
    let train = |key: &'static str| {
        r.iter()
            .map(|x| x.config.get("train").and_then(|t| t.get(key))?.as_u64())
            .collect::<Vec<Option<u64>>>()
    };
    let mut columns = vec![
        Column::new("cell".into(), s(|x| x.cell.clone())),
        Column::new(
            "task".into(),
            r.iter()
                .map(|x| {
                    selection
                        .tasks
                        .get(&x.cell)
                        .map_or(&x.cell, |t| &t.0)
                        .clone()
                })
                .collect::<Vec<String>>(),
        ),
        Column::new(
            "setting".into(),
            r.iter()
                .map(|x| {
                    selection
                        .tasks
                        .get(&x.cell)
                        .map_or("", |t| &t.1)
                        .to_string()
                })
                .collect::<Vec<String>>(),
        ),
        Column::new("config_hash".into(), s(|x| x.config_hash.clone())),
        Column::new("dataset".into(), s(|x| x.dataset.to_string())),
        Column::new("protocol".into(), s(|x| x.protocol.clone())),
        Column::new(
            "normal_class".into(),
            r.iter()
                .map(|x| u32::from(x.normal_class))
                .collect::<Vec<_>>(),
        ),
        Column::new("class_name".into(), s(|x| x.class_name.clone())),
        Column::new("anomaly_ratio".into(), f(|x| x.anomaly_ratio)),
        Column::new("seed".into(), u(|x| x.seed)),
        Column::new("reducer".into(), s(|x| x.reducer.as_str().to_string())),
        Column::new("detector".into(), s(|x| x.detector.as_str().to_string())),
        Column::new("auc".into(), f(|x| x.auc)),
        Column::new("ap".into(), f(|x| x.ap)),
        Column::new("train_seconds".into(), f(|x| x.train_seconds)),
        Column::new("fit_seconds".into(), f(|x| x.fit_seconds)),
        Column::new("score_seconds".into(), f(|x| x.score_seconds)),
        Column::new("data".into(), s(|x| x.data.clone())),
        Column::new("n_test".into(), u(|x| x.n_test as u64)),
        Column::new("n_test_anomalies".into(), u(|x| x.n_test_anomalies as u64)),
        Column::new("epochs".into(), train("epochs")),
        Column::new("steps_per_epoch".into(), train("steps_per_epoch")),
        Column::new("batch_size".into(), train("batch_size")),
        Column::new("written_unix".into(), u(|x| x.written_unix)),
    ];
    for stage in StageId::ALL {
        columns.push(Column::new(
            stage_column(stage).into(),
            r.iter()
                .map(|x| selection.in_stage(x, stage))
                .collect::<Vec<bool>>(),
        ));
    }
    DataFrame::new_infer_height(columns)
}

/// `results.csv` and `results.parquet` (same rows, typed), each written atomically.
pub fn write_results(df: &DataFrame, out: &Path) -> Result<(), ExperimentError> {
    let mut df = df.clone();
    write_csv(&out.join("results.csv"), &mut df)?;
    let path = out.join("results.parquet");
    let mut buf = Vec::new();
    ParquetWriter::new(&mut buf)
        .finish(&mut df)
        .map_err(|e| ExperimentError::Polars(format!("{}: {e}", path.display())))?;
    write_atomic(&path, &buf)
}

/// Rows where string column `name` equals `value`.
pub fn is(df: &DataFrame, name: &str, value: &str) -> PolarsResult<BooleanChunked> {
    Ok(df.column(name)?.str()?.equal(value))
}

/// Rows whose anomaly ratio is `ratio` (to 1e-9: ratios are parsed from TOML on both sides,
/// but a tolerance costs nothing).
pub fn ratio_is(df: &DataFrame, ratio: f64) -> PolarsResult<BooleanChunked> {
    let c = df.column("anomaly_ratio")?.f64()?;
    Ok(BooleanChunked::from_iter_values(
        "ratio".into(),
        c.iter()
            .map(|v| v.is_some_and(|v| (v - ratio).abs() < 1e-9)),
    ))
}

/// EIDN's own score: the encoder and the distance from the origin.
pub fn is_eidn(df: &DataFrame) -> PolarsResult<BooleanChunked> {
    is_own_score(df, ReducerKind::Eidn)
}

/// Rows of a trained reducer (EIDN or EIDN+) scored by its own distance from the origin.
pub fn is_own_score(df: &DataFrame, reducer: ReducerKind) -> PolarsResult<BooleanChunked> {
    Ok(&is(df, "reducer", reducer.as_str())? & &is(df, "detector", own_detector(reducer))?)
}

/// The detector that is a method's own score in the tables ([`ReducerKind::own_detector`]).
pub fn own_detector(reducer: ReducerKind) -> &'static str {
    reducer.own_detector().as_str()
}

// polars marks its eager group-by aggregations deprecated in favour of the lazy API, which
// would double polars' compile time (the larger part of a clean build). The eager ones are
// still in 0.55 and do the job; every use is in this file, so a polars upgrade that removes
// them changes this file only.

/// `keys`, then `mean`, `std` (sample; null below two values) and `n` of `value` per group,
/// sorted by `keys`.
#[allow(deprecated)]
pub fn summarise(df: &DataFrame, keys: &[&str], value: &str) -> PolarsResult<DataFrame> {
    let g = df.group_by_stable(keys.iter().copied())?.select([value]);
    let mut out = g.mean()?;
    out.rename(&format!("{value}_mean"), "mean".into())?;
    let std = g.std(1)?;
    out.with_column(
        std.column(&format!("{value}_agg_std"))?
            .clone()
            .with_name("std".into()),
    )?;
    let n = g.count()?;
    out.with_column(
        n.column(&format!("{value}_count"))?
            .cast(&DataType::UInt64)?
            .with_name("n".into()),
    )?;
    out.sort(keys.to_vec(), SortMultipleOptions::default())
}

/// Per group of `keys`: AUC mean ± std over seeds (two records of one seed are averaged
/// first, so a seed counts once), with `n` the number of seeds.
pub fn over_seeds(rows: &DataFrame, keys: &[&str]) -> PolarsResult<DataFrame> {
    let with_seed: Vec<&str> = keys.iter().copied().chain(["seed"]).collect();
    let mut per_seed = summarise(rows, &with_seed, "auc")?;
    per_seed.rename("mean", "auc".into())?;
    summarise(&per_seed, keys, "auc")
}

/// `keys`, then `<value>_mean` for each of `values`, per group in first-seen order.
#[allow(deprecated)]
pub fn group_means(df: &DataFrame, keys: &[&str], values: &[&str]) -> PolarsResult<DataFrame> {
    df.group_by_stable(keys.iter().copied())?
        .select(values.iter().copied())
        .mean()
}

/// Per group of `keys`: each class's mean over seeds, then their mean ± std across classes;
/// `n` is the number of classes and `seeds` the number of distinct seeds.
#[allow(deprecated)]
pub fn over_classes(rows: &DataFrame, keys: &[&str]) -> PolarsResult<DataFrame> {
    // By class name, not label: a normal set of several classes ("screw+nut") shares its
    // first label with the single class.
    let with_class: Vec<&str> = keys.iter().copied().chain(["class_name"]).collect();
    let mut per_class = over_seeds(rows, &with_class)?;
    per_class.rename("mean", "class_mean".into())?;
    let mut out = summarise(&per_class, keys, "class_mean")?;
    let seeds = rows
        .group_by_stable(keys.iter().copied())?
        .select(["seed"])
        .n_unique()?
        .sort(keys.to_vec(), SortMultipleOptions::default())?;
    out.with_column(
        seeds
            .column("seed_n_unique")?
            .cast(&DataType::UInt64)?
            .with_name("seeds".into()),
    )?;
    Ok(out)
}

/// A table's mean over classes with its spread over seeds: per seed that has every class,
/// the mean over classes, then mean ± std of those. Without such a seed: the mean of the
/// class means, without ±.
pub fn mean_over_classes(rows: &DataFrame) -> PolarsResult<Option<Stat>> {
    let classes = rows.column("class_name")?.n_unique()? as u64;
    let per_class_seed = summarise(rows, &["class_name", "seed"], "auc")?;
    let per_seed = summarise(&per_class_seed, &["seed"], "mean")?;
    let complete = per_seed.filter(&per_seed.column("n")?.u64()?.equal(classes))?;
    let means = f64s(&complete, "mean")?;
    if !means.is_empty() {
        return Ok(Stat::of(&means));
    }
    let class_means = f64s(&over_seeds(rows, &["class_name"])?, "mean")?;
    Ok(Stat::of(&class_means).map(|s| Stat { std: None, ..s }))
}

/// The stat of row `i` of a frame from `summarise` / `over_seeds` / `over_classes`.
pub fn stat_at(df: &DataFrame, i: usize) -> PolarsResult<Stat> {
    Ok(Stat {
        mean: df.column("mean")?.f64()?.get(i).unwrap_or(f64::NAN),
        std: df.column("std")?.f64()?.get(i),
        n: df.column("n")?.u64()?.get(i).unwrap_or(0) as usize,
    })
}

pub fn f64s(df: &DataFrame, name: &str) -> PolarsResult<Vec<f64>> {
    let c = df.column(name)?.f64()?;
    Ok(c.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

pub fn u64s(df: &DataFrame, name: &str) -> PolarsResult<Vec<u64>> {
    let c = df.column(name)?.cast(&DataType::UInt64)?;
    Ok(c.u64()?.iter().map(|v| v.unwrap_or(0)).collect())
}

pub fn strs(df: &DataFrame, name: &str) -> PolarsResult<Vec<String>> {
    let c = df.column(name)?.str()?;
    Ok(c.iter().map(|v| v.unwrap_or("").to_string()).collect())
}

/// Polars errors as the report's errors, naming what was being computed.
pub fn polars_error(what: &str) -> impl Fn(PolarsError) -> ExperimentError + '_ {
    move |e| ExperimentError::Polars(format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> DataFrame {
        df!(
            "normal_class" => [0u32, 0, 1, 1, 1],
            "class_name" => ["0", "0", "1", "1", "1"],
            "seed" => [0u64, 1, 0, 1, 1],
            "auc" => [0.9, 0.7, 0.6, 0.8, 1.0],
        )
        .unwrap()
    }

    #[test]
    fn stats_are_sample_statistics() {
        let s = Stat::of(&[0.9, 0.8, 1.0]).unwrap();
        assert!((s.mean - 0.9).abs() < 1e-12);
        assert!((s.std.unwrap() - 0.1).abs() < 1e-12);
        assert_eq!(Stat::of(&[0.5]).unwrap().std, None);
        assert!(Stat::of(&[]).is_none());
    }

    /// Class 1 seed 1 has two records (0.8, 1.0): averaged to 0.9 before the seeds are.
    #[test]
    fn a_seed_counts_once_and_classes_average_their_seeds() {
        let by_class = over_seeds(&frame(), &["normal_class"]).unwrap();
        assert_eq!(u64s(&by_class, "normal_class").unwrap(), [0, 1]);
        let means = f64s(&by_class, "mean").unwrap();
        assert!((means[0] - 0.8).abs() < 1e-12 && (means[1] - 0.75).abs() < 1e-12);
        assert_eq!(u64s(&by_class, "n").unwrap(), [2, 2]);
        let s = stat_at(&by_class, 0).unwrap();
        assert!((s.std.unwrap() - 0.2 / 2f64.sqrt()).abs() < 1e-12);
        // Seed 0: (0.9 + 0.6) / 2 = 0.75; seed 1: (0.7 + 0.9) / 2 = 0.8.
        let m = mean_over_classes(&frame()).unwrap().unwrap();
        assert!((m.mean - 0.775).abs() < 1e-12 && m.n == 2);
        assert!((m.std.unwrap() - 0.05 / 2f64.sqrt()).abs() < 1e-12);
    }
}
