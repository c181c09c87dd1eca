//! The "Deep SAD protocol" section: EIDN, Deep SAD and Deep SVDD trained here under Ruff et
//! al.'s protocol, beside the published Deep SAD and ESAD numbers
//! (`reports/published_deep_sad.toml`, compiled in).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use polars::prelude::*;
use serde::Deserialize;

use super::frame::{f64s, is, is_own_score, polars_error, stat_at, strs, summarise, Stat};
use super::{Report, NOT_RUN};
use crate::data::DatasetName;
use crate::experiment::method_choice::{self, MethodChoice};
use crate::experiment::ExperimentError;
use crate::pipeline::PretrainedMethod;
use crate::reduce::ReducerKind;

const PUBLISHED: &str = include_str!("../../reports/published_deep_sad.toml");

#[derive(Clone, Debug, Deserialize)]
pub struct PublishedDeepSad {
    /// Method key -> citation.
    pub sources: BTreeMap<String, String>,
    pub row: Vec<PublishedRow>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct PublishedRow {
    pub method: String,
    pub dataset: DatasetName,
    /// (gamma_l, AUC %, std %).
    pub values: Vec<[f64; 3]>,
}

impl PublishedDeepSad {
    pub fn builtin() -> PublishedDeepSad {
        toml::from_str(PUBLISHED)
            .expect("reports/published_deep_sad.toml parses (checked by a test)")
    }

    /// The published AUC (as a fraction) ± std of `method` on `dataset` at `gamma_l`.
    fn at(&self, method: &str, dataset: DatasetName, gamma_l: f64) -> Option<(f64, f64)> {
        let row = self
            .row
            .iter()
            .find(|r| r.method == method && r.dataset == dataset)?;
        row.values
            .iter()
            .find(|v| (v[0] - gamma_l).abs() < 1e-9)
            .map(|v| (v[1] / 100.0, v[2] / 100.0))
    }
}

/// Our methods in the table, in column order.
const OURS: [ReducerKind; 11] = [
    ReducerKind::Eidn,
    ReducerKind::EidnPlus,
    ReducerKind::DeepSad,
    ReducerKind::DeepSvdd,
    ReducerKind::Pretrained,
    ReducerKind::PretrainedLogreg,
    ReducerKind::HeadDevnet,
    ReducerKind::HeadDeepSad,
    ReducerKind::HeadEidn,
    ReducerKind::PretrainedKnnLogreg,
    ReducerKind::PretrainedMahalanobisLogreg,
];

/// Per (dataset, reducer, gamma_l): the methods' own scores over every (pair, seed).
type Rows = Vec<(DatasetName, ReducerKind, f64, Stat)>;

impl Report {
    fn deep_sad_rows(&self) -> Result<Rows, ExperimentError> {
        let query = || -> PolarsResult<Rows> {
            let f = &self.frame;
            let mut own = is_own_score(f, OURS[0])?;
            for r in &OURS[1..] {
                own = &own | &is_own_score(f, *r)?;
            }
            let mut rows = f.filter(&(&is(f, "protocol", "deep-sad")? & &own))?;
            // Deep SAD's gamma_l from EIDN's m / n, rounded so that groups match.
            let gamma: Vec<f64> = f64s(&rows, "anomaly_ratio")?
                .iter()
                .map(|r| (r / (1.0 + r) * 1e6).round() / 1e6)
                .collect();
            rows.with_column(Column::new("gamma_l".into(), gamma))?;
            let stats = summarise(&rows, &["dataset", "reducer", "gamma_l"], "auc")?;
            let (datasets, reducers, gammas) = (
                strs(&stats, "dataset")?,
                strs(&stats, "reducer")?,
                f64s(&stats, "gamma_l")?,
            );
            let mut out = Vec::new();
            for i in 0..stats.height() {
                let (Some(d), Some(r)) = (
                    DatasetName::parse(&datasets[i]),
                    ReducerKind::ALL
                        .into_iter()
                        .find(|k| k.as_str() == reducers[i]),
                ) else {
                    continue;
                };
                out.push((d, r, gammas[i], stat_at(&stats, i)?));
            }
            Ok(out)
        };
        query().map_err(polars_error("the Deep SAD protocol"))
    }

    pub(super) fn deep_sad(&self, md: &mut String) -> Result<(), ExperimentError> {
        let rows = self.deep_sad_rows()?;
        let stage = self
            .profile
            .stages
            .iter()
            .find(|s| s.id == crate::experiment::StageId::DeepSad);
        if rows.is_empty() {
            if stage.is_some() {
                let _ = writeln!(md, "## Deep SAD protocol\n\n{NOT_RUN}.\n");
            }
            return Ok(());
        }
        let published = PublishedDeepSad::builtin();
        let _ = writeln!(
            md,
            "## Deep SAD protocol\n\n\
             Ruff et al.'s semi-supervised protocol (ICLR 2020, scenario (i)): one normal class, \
             labelled anomalies from one known anomaly class at gamma_l = m / (n + m) of the \
             training set (EIDN's tables count m / n), pollution gamma_p = {}, the whole test \
             split with every other class anomalous. Test ROC AUC of each method's own score \
             (EIDN, the heads and LR: distance from the origin; Deep SAD / Deep SVDD: distance \
             from the centre c; pretrained: kNN on the EfficientNet-Lite0 features, no labels), \
             mean ± std over every (normal class, known class) pair and seed that ran, `n` \
             runs. Deep SVDD never sees the labelled anomalies (gamma_l = 0 is its setting; at \
             gamma_l = 0 Deep SAD is Deep SVDD). Deep SAD training here: {}. Published: {}; {}.\n",
            stage.and_then(|s| s.pollution).unwrap_or(0.0),
            deep_settings(self),
            published.sources.get("deep_sad").map_or("", String::as_str),
            published.sources.get("esad").map_or("", String::as_str),
        );
        let mut datasets: Vec<DatasetName> = rows.iter().map(|r| r.0).collect();
        datasets.sort();
        datasets.dedup();
        for d in datasets {
            let mut gammas: Vec<f64> = rows.iter().filter(|r| r.0 == d).map(|r| r.2).collect();
            gammas.sort_by(f64::total_cmp);
            gammas.dedup();
            let methods: Vec<ReducerKind> = OURS
                .into_iter()
                .filter(|k| rows.iter().any(|r| r.0 == d && r.1 == *k))
                .collect();
            let _ = writeln!(md, "### {}\n", d.label());
            if methods.iter().any(|k| k.uses_features()) {
                let _ = writeln!(
                    md,
                    "Pretrained features: EfficientNet-Lite0 at {} px.\n",
                    self.profile.features(d).size
                );
            }
            // The method validation chose for this dataset and feature size, when it ran here.
            let size = self.profile.features(d).size;
            let choice = method_choice::committed(d, size)
                .filter(|c| methods.contains(&c.method.grid_method().0));
            let mut header = vec!["gamma_l".to_string()];
            header.extend(methods.iter().map(|k| format!("{} (ours)", k.label())));
            if let Some(c) = choice {
                header.push(format!(
                    "chosen by validation: {} (ours)",
                    c.method.grid_method().0.label()
                ));
            }
            header.extend(["Deep SAD (published)".into(), "ESAD (published)".into()]);
            let _ = writeln!(md, "| {} |", header.join(" | "));
            let _ = writeln!(md, "|{}", "---|".repeat(header.len()));
            for g in gammas {
                let mut cells = vec![format!("{g}")];
                let chosen = choice.map(|c| c.method.grid_method().0);
                for k in methods.iter().chain(&chosen) {
                    let cell = rows
                        .iter()
                        .find(|r| r.0 == d && r.1 == *k && r.2 == g)
                        .map_or("—".into(), |r| format!("{} (n = {})", r.3.show(), r.3.n));
                    cells.push(cell);
                }
                for m in ["deep_sad", "esad"] {
                    cells.push(
                        published
                            .at(m, d, g)
                            .map_or("—".into(), |(a, s)| format!("{a:.3} ± {s:.3}")),
                    );
                }
                let _ = writeln!(md, "| {} |", cells.join(" | "));
            }
            let _ = writeln!(md);
            if let Some(c) = choice {
                md.push_str(&chosen_paragraph(c));
            }
        }
        Ok(())
    }
}

/// A candidate's name in the paragraph below ("pretrained" alone would not say kNN).
fn candidate_label(m: PretrainedMethod) -> &'static str {
    match m {
        PretrainedMethod::PretrainedKnn => "pretrained kNN",
        _ => m.grid_method().0.label(),
    }
}

/// How the chosen column was chosen, with every candidate's validation AUC.
fn chosen_paragraph(c: &MethodChoice) -> String {
    let scores = |known: bool| {
        c.candidate
            .iter()
            .map(|s| {
                let auc = if known { s.known_auc } else { s.auc };
                format!("{} {auc:.3}", candidate_label(s.method))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "Chosen by validation: **{}**, by `eidn select-method` on the training split alone \
         (configs/method_candidates.toml; the test split is never read): Deep SAD's protocol \
         drawn from training images on other (normal, known) pairs, held-out normal images \
         against training images of every anomaly class, mean validation AUC over {} runs: \
         {}. A later candidate had to beat the earlier ones by more than {}. Against the \
         known class alone (what a hold-out of the labelled anomalies measures) the same rule \
         would choose {}: {}. Its table: reports/method_selection/{}-{}.md.\n\n",
        candidate_label(c.method),
        c.runs,
        scores(false),
        c.tolerance,
        candidate_label(
            c.candidate[method_choice::choose(
                &c.candidate.iter().map(|s| s.known_auc).collect::<Vec<_>>(),
                c.tolerance,
            )]
            .method
        ),
        scores(true),
        c.dataset,
        c.size
    )
}

/// The profile's Deep SAD settings in one line.
fn deep_settings(report: &Report) -> String {
    let t = &report.profile.deep_sad;
    format!(
        "pretraining {} epochs (lr {}, weight decay {}), training {} epochs (lr {}, x0.1 from \
         epochs {:?}, weight decay {}), batch {}, eta {} (the authors': 150 + 150 epochs, \
         milestone 50)",
        t.ae_epochs,
        t.ae_lr,
        t.ae_weight_decay,
        t.epochs,
        t.lr,
        t.milestones,
        t.weight_decay,
        t.batch_size,
        t.eta
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_numbers_parse() {
        let p = PublishedDeepSad::builtin();
        for (m, d, g, want) in [
            ("deep_sad", DatasetName::Mnist, 0.01, (0.964, 0.027)),
            ("esad", DatasetName::Cifar10, 0.1, (0.878, 0.067)),
            ("deep_sad", DatasetName::Cifar10, 0.0, (0.609, 0.094)),
        ] {
            let (a, s) = p.at(m, d, g).unwrap();
            assert!(
                (a - want.0).abs() < 1e-12 && (s - want.1).abs() < 1e-12,
                "{m} {d} {g}"
            );
        }
        assert!(p.at("esad", DatasetName::Mnist, 0.5).is_none());
        for r in &p.row {
            assert!(p.sources.contains_key(&r.method), "{}", r.method);
            assert_eq!(r.values.len(), 5);
        }
    }
}
