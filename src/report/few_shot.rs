//! The "Few-shot protocols" section: DevNet / DRA's general (k labelled anomalies of any
//! type) and hard (k of one known type, tested on the other types) protocols, every method's
//! own score (see `frame::own_detector`) at each k, mean ± std over normal classes, known
//! types and seeds; then the AUC of each anomaly type alone.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::frame::{own_detector, Stat};
use super::Report;
use crate::data::DatasetName;
use crate::experiment::{ExperimentError, Record};
use crate::reduce::ReducerKind;

const PROTOCOLS: [(&str, &str); 2] = [
    (
        "few-shot-general",
        "k labelled anomalies drawn (seeded) from every anomaly type",
    ),
    (
        "few-shot-hard",
        "k labelled anomalies of one known type; the test set holds the normal images and the \
         other types only; each type is the known one in turn",
    ),
];

fn shots(r: &Record) -> u64 {
    r.config["protocol"]["shots"].as_u64().unwrap_or(0)
}

fn own(r: &Record) -> bool {
    r.detector.as_str() == own_detector(r.reducer)
}

impl Report {
    pub(super) fn few_shot(&self, md: &mut String) -> Result<(), ExperimentError> {
        for (protocol, what) in PROTOCOLS {
            let rows: Vec<&Record> = (self.selection.counted.iter())
                .filter(|r| r.protocol == protocol && own(r))
                .collect();
            if rows.is_empty() {
                continue;
            }
            let from_test = rows
                .iter()
                .any(|r| r.config["protocol"]["shots_from_test"].as_bool() == Some(true));
            let _ = writeln!(
                md,
                "## Few-shot protocol: {}\n\n{what}{}. Test ROC AUC of each method's own score \
                 (kNN for the pretrained features, the distance from the origin otherwise), \
                 mean ± std over normal classes, known types and seeds, `n` runs. No published \
                 numbers are shown: DevNet's and DRA's tables are on datasets not available \
                 here (MVTec AD, VisA).\n",
                protocol.trim_start_matches("few-shot-"),
                if from_test {
                    "; an MVTec tree's labelled anomalies come from its test split and leave it"
                } else {
                    ""
                }
            );
            let mut datasets: Vec<DatasetName> = rows.iter().map(|r| r.dataset).collect();
            datasets.sort();
            datasets.dedup();
            for d in datasets {
                let of_d: Vec<&Record> = rows.iter().copied().filter(|r| r.dataset == d).collect();
                let mut ks: Vec<u64> = of_d.iter().map(|r| shots(r)).collect();
                ks.sort_unstable();
                ks.dedup();
                let methods: Vec<ReducerKind> = ReducerKind::ALL
                    .into_iter()
                    .filter(|k| of_d.iter().any(|r| r.reducer == *k))
                    .collect();
                let _ = writeln!(md, "### {}\n", d.label());
                let header: Vec<String> = std::iter::once("method".to_string())
                    .chain(ks.iter().map(|k| format!("k = {k}")))
                    .collect();
                let _ = writeln!(
                    md,
                    "| {} |\n|{}",
                    header.join(" | "),
                    "---|".repeat(header.len())
                );
                for m in &methods {
                    let mut cells = vec![m.label().to_string()];
                    for k in &ks {
                        let v: Vec<f64> = (of_d.iter())
                            .filter(|r| r.reducer == *m && shots(r) == *k)
                            .map(|r| r.auc)
                            .collect();
                        cells.push(
                            Stat::of(&v)
                                .map_or("—".into(), |s| format!("{} (n = {})", s.show(), s.n)),
                        );
                    }
                    let _ = writeln!(md, "| {} |", cells.join(" | "));
                }
                let _ = writeln!(md);
                per_type(md, &of_d, &methods);
            }
        }
        Ok(())
    }
}

/// Per anomaly type and k: each method's mean AUC of that type against the normal images.
fn per_type(md: &mut String, rows: &[&Record], methods: &[ReducerKind]) {
    let mut by: BTreeMap<(u64, String), BTreeMap<ReducerKind, Vec<f64>>> = BTreeMap::new();
    for r in rows {
        for (t, auc) in &r.per_type_auc {
            by.entry((shots(r), t.clone()))
                .or_default()
                .entry(r.reducer)
                .or_default()
                .push(*auc);
        }
    }
    if by.is_empty() {
        return;
    }
    let _ = writeln!(md, "Per anomaly type (AUC of the normal test images against that type alone, mean over runs):\n");
    let header: Vec<String> = ["k".to_string(), "type".into()]
        .into_iter()
        .chain(methods.iter().map(|m| m.label().to_string()))
        .collect();
    let _ = writeln!(
        md,
        "| {} |\n|{}",
        header.join(" | "),
        "---|".repeat(header.len())
    );
    for ((k, t), per) in &by {
        let mut cells = vec![k.to_string(), t.clone()];
        for m in methods {
            cells.push(
                per.get(m)
                    .and_then(|v| Stat::of(v))
                    .map_or("—".into(), |s| format!("{:.4}", s.mean)),
            );
        }
        let _ = writeln!(md, "| {} |", cells.join(" | "));
    }
    let _ = writeln!(md);
}
