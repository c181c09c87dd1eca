//! Files a grid writes beside its records: Fig 6's embedded points.

use std::path::Path;

use ndarray::Array2;
use polars::prelude::{Column, DataFrame};

use super::networks::NetworkReducer;
use super::profile::Cell;
use super::ExperimentError;
use crate::data::protocol::Pools;
use crate::data::Dataset;
use crate::model::Eidn;
use crate::reduce::{PcaParams, Reducer};

/// Fig 6's points: the whole test split embedded by the EIDN encoder and by a 2-D PCA fitted
/// on the same training pools, each image tagged normal / seen / unseen.
pub(super) fn write_fig6_points(
    cell: &Cell,
    dataset: &Dataset,
    model: &Eidn,
    pools: &Pools,
    results: &Path,
) -> Result<(), ExperimentError> {
    let p = &cell.protocol;
    let test = &dataset.test;
    let eidn = NetworkReducer(model).transform(test)?;
    let pca = PcaParams::new(2).fit(&pools.both())?.transform(test)?;
    let group: Vec<&str> = test
        .labels
        .iter()
        .map(|&l| {
            if p.is_normal(l) {
                "normal"
            } else if p
                .train_anomaly_classes
                .as_ref()
                .is_none_or(|k| k.contains(&l))
            {
                "seen"
            } else {
                "unseen"
            }
        })
        .collect();
    let col = |name: &str, m: &Array2<f64>, j: usize| {
        Column::new(name.into(), m.column(j.min(m.ncols() - 1)).to_vec())
    };
    let mut df = DataFrame::new_infer_height(vec![
        Column::new(
            "label".into(),
            test.labels.iter().map(|&l| l as u32).collect::<Vec<_>>(),
        ),
        Column::new("group".into(), group),
        col("eidn_x", &eidn, 0),
        col("eidn_y", &eidn, 1),
        col("pca_x", &pca, 0),
        col("pca_y", &pca, 1),
    ])
    .map_err(|e| ExperimentError::Polars(e.to_string()))?;
    let dir = results.join("artifacts");
    std::fs::create_dir_all(&dir).map_err(|e| ExperimentError::io(&dir, e))?;
    super::files::write_csv(&dir.join(format!("fig6-{}.csv", cell.id())), &mut df)
}
