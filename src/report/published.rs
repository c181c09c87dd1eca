//! The paper's published numbers (`reports/published.toml`, compiled in), as data and as
//! frames to join our numbers with.

use polars::prelude::*;
use serde::Deserialize;

use crate::data::DatasetName;

const PUBLISHED: &str = include_str!("../../reports/published.toml");

#[derive(Clone, Debug, Deserialize)]
pub struct Published {
    pub source: String,
    pub unseen_auc: f64,
    pub table: Vec<PublishedTable>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct PublishedTable {
    pub id: String,
    pub title: String,
    pub dataset: DatasetName,
    pub anomaly_ratio: f64,
    pub columns: Vec<String>,
    pub eidn_column: String,
    pub rows: Vec<PublishedRow>,
    pub mean: Vec<f64>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct PublishedRow {
    pub paper_row: String,
    /// Our loaders' name for the class.
    pub class: String,
    pub values: Vec<f64>,
}

impl PublishedTable {
    pub fn eidn(&self, values: &[f64]) -> f64 {
        let j = self
            .columns
            .iter()
            .position(|c| *c == self.eidn_column)
            .expect("published.toml: eidn_column is one of the columns (checked by a test)");
        values[j]
    }

    /// One row per class: `class`, `paper_row`, then `published_<j>` per published column
    /// (named by index: the paper's column names may repeat ours).
    pub fn rows_frame(&self) -> PolarsResult<DataFrame> {
        let mut columns = vec![
            Column::new(
                "class".into(),
                self.rows
                    .iter()
                    .map(|r| r.class.clone())
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "paper_row".into(),
                self.rows
                    .iter()
                    .map(|r| r.paper_row.clone())
                    .collect::<Vec<_>>(),
            ),
        ];
        for j in 0..self.columns.len() {
            columns.push(Column::new(
                format!("published_{j}").into(),
                self.rows.iter().map(|r| r.values[j]).collect::<Vec<f64>>(),
            ));
        }
        DataFrame::new_infer_height(columns)
    }
}

impl Published {
    pub fn builtin() -> Published {
        toml::from_str(PUBLISHED).expect("reports/published.toml parses (checked by a test)")
    }

    pub fn table_for(&self, dataset: DatasetName) -> Option<&PublishedTable> {
        self.table.iter().find(|t| t.dataset == dataset)
    }

    /// The only EIDN points of Fig 5 the paper gives in numbers: each table's EIDN mean, as
    /// `dataset`, `anomaly_ratio`, `paper`.
    pub fn fig5_frame(&self) -> PolarsResult<DataFrame> {
        df!(
            "dataset" => self.table.iter().map(|t| t.dataset.to_string()).collect::<Vec<_>>(),
            "anomaly_ratio" => self.table.iter().map(|t| t.anomaly_ratio).collect::<Vec<_>>(),
            "paper" => self.table.iter().map(|t| t.eidn(&t.mean)).collect::<Vec<_>>(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_numbers_parse_and_their_means_match_their_rows() {
        let p = Published::builtin();
        assert_eq!(p.table.len(), 3);
        for t in &p.table {
            assert!(t.columns.contains(&t.eidn_column), "{}", t.id);
            assert_eq!(t.mean.len(), t.columns.len());
            for (j, &m) in t.mean.iter().enumerate() {
                assert!(t.rows.iter().all(|r| r.values.len() == t.columns.len()));
                let mean = t.rows.iter().map(|r| r.values[j]).sum::<f64>() / t.rows.len() as f64;
                // The paper's means are rounded to 4-7 digits.
                assert!(
                    (mean - m).abs() < 6e-4,
                    "{} column {j}: {mean} vs {m}",
                    t.id
                );
            }
            let df = t.rows_frame().unwrap();
            assert_eq!(df.height(), t.rows.len());
            assert_eq!(df.width(), 2 + t.columns.len());
        }
        let t2 = p.table_for(DatasetName::Cifar10).unwrap();
        assert_eq!(t2.rows[5].paper_row, "frog");
        assert_eq!(t2.rows[9].class, "dog");
        assert!((t2.eidn(&t2.mean) - 0.791246).abs() < 1e-9);
        assert_eq!(p.fig5_frame().unwrap().height(), 3);
    }
}
