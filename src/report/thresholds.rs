//! CI's regression guard: `tests/regression/thresholds.toml`, a minimum mean AUC per cell,
//! checked against the counted records' frame.

use std::path::Path;

use comfy_table::Table;
use polars::prelude::{ChunkCompareEq, DataFrame};
use serde::Deserialize;

use super::frame::{f64s, is, polars_error, ratio_is, Stat};
use super::{new_table, pct};
use crate::data::DatasetName;
use crate::detect::DetectorKind;
use crate::experiment::ExperimentError;
use crate::reduce::ReducerKind;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    #[serde(rename = "cell")]
    pub cells: Vec<ThresholdCell>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdCell {
    pub dataset: DatasetName,
    #[serde(default = "one_vs_rest")]
    pub protocol: String,
    pub normal_class: u8,
    /// Labelled anomalies per normal training image; a `deep-sad` cell may give Deep SAD's
    /// `gamma_l` = m / (n + m) instead.
    #[serde(default)]
    pub anomaly_ratio: Option<f64>,
    #[serde(default)]
    pub gamma_l: Option<f64>,
    pub reducer: ReducerKind,
    pub detector: DetectorKind,
    pub min_auc: f64,
}

fn one_vs_rest() -> String {
    "one-vs-rest".into()
}

impl ThresholdCell {
    /// The cell's anomalies per normal training image (m / n).
    fn ratio(&self) -> f64 {
        match (self.anomaly_ratio, self.gamma_l) {
            (Some(r), _) => r,
            (None, Some(g)) => g / (1.0 - g),
            (None, None) => f64::NAN,
        }
    }

    fn name(&self) -> String {
        format!(
            "{} {} class {} @ {} {}/{}",
            self.dataset,
            self.protocol,
            self.normal_class,
            match self.gamma_l {
                Some(g) => format!("gamma_l {g}"),
                None => pct(self.ratio()),
            },
            self.reducer.as_str(),
            self.detector.as_str()
        )
    }

    /// Mean AUC over the cell's records (one per seed).
    fn stat(&self, df: &DataFrame) -> Result<Option<Stat>, ExperimentError> {
        let query = || {
            let class = df.column("normal_class")?.u32()?;
            let masks = [
                is(df, "dataset", &self.dataset.to_string())?,
                is(df, "protocol", &self.protocol)?,
                class.equal(u32::from(self.normal_class)),
                ratio_is(df, self.ratio())?,
                is(df, "reducer", self.reducer.as_str())?,
                is(df, "detector", self.detector.as_str())?,
            ];
            let mask = masks.iter().skip(1).fold(masks[0].clone(), |m, x| &m & x);
            f64s(&df.filter(&mask)?, "auc")
        };
        Ok(Stat::of(&query().map_err(polars_error(&self.name()))?))
    }
}

impl Thresholds {
    pub fn load(path: &Path) -> Result<Thresholds, ExperimentError> {
        let text = std::fs::read_to_string(path).map_err(|e| ExperimentError::io(path, e))?;
        let t: Thresholds = toml::from_str(&text).map_err(|e| ExperimentError::Profile {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let bad = |message: String| {
            Err(ExperimentError::Profile {
                path: path.to_path_buf(),
                message,
            })
        };
        if t.cells.is_empty() {
            return bad("no [[cell]]".into());
        }
        for (i, c) in t.cells.iter().enumerate() {
            // NaN fails every comparison: a NaN threshold would pass nothing and fail nothing.
            if !(0.0..=1.0).contains(&c.min_auc) {
                return bad(format!(
                    "cell {} ({}): min_auc {} is not in [0, 1]",
                    i + 1,
                    c.name(),
                    c.min_auc
                ));
            }
            match (c.anomaly_ratio, c.gamma_l) {
                (Some(r), None) if r > 0.0 && r.is_finite() => {}
                (None, Some(g)) if (0.0..1.0).contains(&g) => {}
                (r, g) => {
                    return bad(format!(
                        "cell {}: give anomaly_ratio (> 0) or gamma_l (in [0, 1)), one of them \
                         (found {r:?}, {g:?})",
                        i + 1
                    ))
                }
            }
        }
        Ok(t)
    }

    /// One message per cell whose mean AUC is below its threshold or that has no records.
    pub fn check(&self, df: &DataFrame) -> Result<Vec<String>, ExperimentError> {
        let mut failures = Vec::new();
        for c in &self.cells {
            match c.stat(df)? {
                None => failures.push(format!("{}: no records (did the cell run?)", c.name())),
                // A NaN mean fails (a plain `<` would let it through).
                Some(s) if s.mean.is_nan() || s.mean < c.min_auc => failures.push(format!(
                    "{}: mean AUC {:.4} over {} seed(s) < threshold {:.4}",
                    c.name(),
                    s.mean,
                    s.n,
                    c.min_auc
                )),
                Some(_) => {}
            }
        }
        Ok(failures)
    }

    pub fn table(&self, df: &DataFrame) -> Result<Table, ExperimentError> {
        let mut t = new_table(["cell", "mean AUC", "seeds", "threshold", "ok"]);
        for c in &self.cells {
            let s = c.stat(df)?;
            t.add_row([
                c.name(),
                s.map_or("—".into(), |s| format!("{:.4}", s.mean)),
                s.map_or("0".into(), |s| s.n.to_string()),
                format!("{:.4}", c.min_auc),
                if s.is_some_and(|s| s.mean >= c.min_auc) {
                    "yes"
                } else {
                    "NO"
                }
                .into(),
            ]);
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 10 item 4: a NaN or out-of-range threshold is an error, not a silent pass.
    #[test]
    fn bad_thresholds_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        for bad in ["nan", "1.5", "-0.1"] {
            std::fs::write(
                &path,
                format!(
                    "[[cell]]\ndataset = \"mnist\"\nnormal_class = 0\nanomaly_ratio = 0.01\n\
                     reducer = \"eidn\"\ndetector = \"origin_distance\"\nmin_auc = {bad}\n"
                ),
            )
            .unwrap();
            let err = Thresholds::load(&path).unwrap_err().to_string();
            assert!(
                err.contains("min_auc") && err.contains("t.toml"),
                "{bad}: {err}"
            );
        }
        assert!(Thresholds::load(&dir.path().join("missing.toml")).is_err());
    }
}
