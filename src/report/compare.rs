//! "Which method is better here": two methods on the same tasks (same data split, class and
//! seed), their paired AUC differences and the statistics of those (`paired`): is a gap more
//! than seed noise? Also ours against the paper's per-class EIDN numbers.

use std::fmt::Write as _;

use polars::prelude::*;

use super::frame::{f64s, group_means, is, polars_error, strs};
use super::paired::{Paired, RESAMPLES, TIE};
use super::Report;
use crate::data::DatasetName;
use crate::detect::DetectorKind;
use crate::experiment::ExperimentError;
use crate::reduce::ReducerKind;

/// The bootstrap's seed: the report's intervals are the same on every render.
const BOOTSTRAP_SEED: u64 = 0;
/// Fewer common tasks than this say nothing about a difference: such pairs are left out.
const MIN_PAIRS: usize = 3;

/// A method as the tables name it: a reducer's embedding under a detector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Method {
    pub reducer: ReducerKind,
    pub detector: DetectorKind,
}

impl Method {
    /// A reducer under its own score (the tables' choice: `frame::own_detector`).
    pub fn own(reducer: ReducerKind) -> Method {
        Method {
            reducer,
            detector: reducer.own_detector(),
        }
    }

    /// `reducer` or `reducer/detector`, by the names records use (e.g. `eidn`,
    /// `pca/isolation_forest`).
    pub fn parse(s: &str) -> Result<Method, String> {
        let (r, d) = match s.split_once('/') {
            Some((r, d)) => (r, Some(d)),
            None => (s, None),
        };
        let reducer = (ReducerKind::ALL.into_iter())
            .find(|k| k.as_str() == r)
            .ok_or_else(|| {
                let names: Vec<&str> = ReducerKind::ALL.iter().map(|k| k.as_str()).collect();
                format!("{r:?} is not a method; one of {}", names.join(", "))
            })?;
        let Some(d) = d else {
            return Ok(Method::own(reducer));
        };
        let detector = (DetectorKind::ALL.into_iter())
            .find(|k| k.as_str() == d)
            .ok_or_else(|| {
                let names: Vec<&str> = DetectorKind::ALL.iter().map(|k| k.as_str()).collect();
                format!("{d:?} is not a detector; one of {}", names.join(", "))
            })?;
        Ok(Method { reducer, detector })
    }

    /// `reducer/detector`, as [`Method::parse`] reads it.
    pub fn spec(&self) -> String {
        format!("{}/{}", self.reducer.as_str(), self.detector.as_str())
    }

    fn label(&self) -> String {
        if self.detector == self.reducer.own_detector() {
            self.reducer.label().to_string()
        } else {
            format!("{} + {}", self.reducer.label(), self.detector.label())
        }
    }
}

/// Parses `A:B` (`--compare`): method A against method B.
pub fn parse_pair(s: &str) -> Result<(Method, Method), String> {
    let (a, b) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: expected A:B, e.g. eidn:pca/isolation_forest"))?;
    Ok((Method::parse(a)?, Method::parse(b)?))
}

/// The pairs every report compares wherever both methods ran on at least [`MIN_PAIRS`]
/// common tasks: EIDN against its validated recipe, the Deep SAD baseline and the pretrained
/// features with and without the labels.
fn default_pairs() -> Vec<(Method, Method)> {
    use ReducerKind::*;
    [EidnPlus, DeepSad, PretrainedLogreg, Pretrained]
        .into_iter()
        .map(|b| (Method::own(Eidn), Method::own(b)))
        .collect()
}

/// "k5" before "k10": the settings' text before their number, then the number.
fn setting_order(a: &str, b: &str) -> std::cmp::Ordering {
    let key = |s: &str| {
        let at = s.find(|c: char| c.is_ascii_digit()).unwrap_or(s.len());
        (s[..at].to_string(), s[at..].parse::<f64>().ok())
    };
    let ((pa, na), (pb, nb)) = (key(a), key(b));
    pa.cmp(&pb)
        .then_with(|| match (na, nb) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            _ => std::cmp::Ordering::Equal,
        })
        .then_with(|| a.cmp(b))
}

/// One compared pair in one setting.
struct Row {
    dataset: String,
    protocol: String,
    setting: String,
    a: Method,
    b: Method,
    stat: Paired,
}

impl Report {
    /// Per (dataset, protocol, setting) of the frame and per pair: A - B on their common tasks.
    fn paired_rows(&self, pairs: &[(Method, Method)]) -> Result<Vec<Row>, ExperimentError> {
        let f = &self.frame;
        let groups = group_means(f, &["dataset", "protocol", "setting"], &["auc"])
            .and_then(|g| g.sort(["dataset", "protocol", "setting"], Default::default()))
            .map_err(polars_error("comparison groups"))?;
        let col = |n| strs(&groups, n).map_err(polars_error("comparison groups"));
        let (datasets, protocols, settings) = (col("dataset")?, col("protocol")?, col("setting")?);
        // Settings by their number ("k1, k5, k10"), not as strings ("k1, k10, k5").
        let mut order: Vec<usize> = (0..groups.height()).collect();
        order.sort_by(|&i, &j| {
            (&datasets[i], &protocols[i])
                .cmp(&(&datasets[j], &protocols[j]))
                .then_with(|| setting_order(&settings[i], &settings[j]))
        });
        let mut rows = Vec::new();
        for i in order {
            for &(a, b) in pairs {
                let per_task = |m: Method| -> PolarsResult<DataFrame> {
                    let mask = &(&(&is(f, "dataset", &datasets[i])?
                        & &is(f, "protocol", &protocols[i])?)
                        & &is(f, "setting", &settings[i])?)
                        & &(&is(f, "reducer", m.reducer.as_str())?
                            & &is(f, "detector", m.detector.as_str())?);
                    // A method in two stages of one task (other training settings) counts
                    // once: the mean of its records.
                    group_means(&f.filter(&mask)?, &["task"], &["auc"])
                };
                let diffs = || -> PolarsResult<Vec<f64>> {
                    let joined = per_task(a)?.inner_join(&per_task(b)?, ["task"], ["task"])?;
                    let joined = joined.sort(["task"], Default::default())?;
                    let (x, y) = (f64s(&joined, "auc_mean")?, f64s(&joined, "auc_mean_right")?);
                    Ok(x.iter().zip(&y).map(|(x, y)| x - y).collect())
                };
                let diffs = diffs().map_err(polars_error("paired differences"))?;
                if diffs.len() < MIN_PAIRS {
                    continue;
                }
                if let Some(stat) = Paired::of(&diffs, BOOTSTRAP_SEED) {
                    rows.push(Row {
                        dataset: datasets[i].clone(),
                        protocol: protocols[i].clone(),
                        setting: settings[i].clone(),
                        a,
                        b,
                        stat,
                    });
                }
            }
        }
        Ok(rows)
    }

    /// Ours minus the paper's EIDN per class, for each published table with our numbers.
    fn against_paper(&self) -> Result<Vec<(String, Paired)>, ExperimentError> {
        let mut out = Vec::new();
        for t in self.shown_tables() {
            let joined = self.join_published(t, ReducerKind::Eidn)?;
            let mut diffs = Vec::new();
            for (i, row) in t.rows.iter().enumerate() {
                let ours = joined.ours(i).map_err(polars_error(&t.title))?;
                if let Some(ours) = ours {
                    diffs.push(ours.mean - t.eidn(&row.values));
                }
            }
            if diffs.len() >= MIN_PAIRS {
                if let Some(stat) = Paired::of(&diffs, BOOTSTRAP_SEED) {
                    out.push((t.title.clone(), stat));
                }
            }
        }
        Ok(out)
    }

    /// The "Which method is better here" section (nothing when no pair has common tasks).
    pub(super) fn comparisons(&self, md: &mut String) -> Result<(), ExperimentError> {
        let mut pairs = default_pairs();
        pairs.extend(self.compare.iter().copied());
        pairs.dedup();
        let rows = self.paired_rows(&pairs)?;
        let paper = self.against_paper()?;
        if rows.is_empty() && paper.is_empty() {
            return Ok(());
        }
        let _ = writeln!(
            md,
            "## Which method is better here\n\n\
             Paired differences A − B of test ROC AUC on the same tasks (same data split, \
             class and seed; a method run in several stages of one task counts once, their \
             mean). `n` pairs; the mean difference with its 95 % percentile-bootstrap interval \
             ({RESAMPLES} resamples, seed {BOOTSTRAP_SEED}); the two-sided Wilcoxon \
             signed-rank p-value (as scipy.stats.wilcoxon: exact up to 50 pairs without ties or \
             zeros, exact over sign flips up to 13 with them, else the normal approximation); \
             wins / ties / losses of A (a tie: |difference| < \
             {TIE}). Pairs with fewer than {MIN_PAIRS} common tasks are left out. More pairs: \
             `eidn report --compare A:B` (e.g. `eidn:pca/isolation_forest`).\n"
        );
        if !rows.is_empty() {
            let _ = writeln!(
                md,
                "| dataset | protocol | setting | A | B | n | mean A − B [95 % CI] | Wilcoxon p | A wins / ties / losses |\n\
                 |---|---|---|---|---|---|---|---|---|"
            );
            for r in &rows {
                let label = DatasetName::parse(&r.dataset)
                    .map_or(r.dataset.clone(), |d| d.label().to_string());
                let _ = writeln!(
                    md,
                    "| {label} | {} | {} | {} | {} | {} | {} | {} | {} / {} / {} |",
                    r.protocol,
                    r.setting,
                    r.a.label(),
                    r.b.label(),
                    r.stat.n,
                    show_interval(&r.stat),
                    show_p(r.stat.p),
                    r.stat.wins,
                    r.stat.ties,
                    r.stat.losses
                );
            }
            md.push('\n');
        }
        if !paper.is_empty() {
            let _ = writeln!(
                md,
                "Ours (EIDN, mean over seeds per class) against the paper's EIDN column, paired \
                 by class:\n\n\
                 | table | classes | mean ours − paper [95 % CI] | Wilcoxon p | ours higher / ties / lower |\n\
                 |---|---|---|---|---|"
            );
            for (title, s) in &paper {
                let _ = writeln!(
                    md,
                    "| {title} | {} | {} | {} | {} / {} / {} |",
                    s.n,
                    show_interval(s),
                    show_p(s.p),
                    s.wins,
                    s.ties,
                    s.losses
                );
            }
            md.push('\n');
        }
        Ok(())
    }
}

fn show_interval(s: &Paired) -> String {
    format!("{:+.4} [{:+.4}, {:+.4}]", s.mean, s.ci.0, s.ci.1)
}

fn show_p(p: Option<f64>) -> String {
    match p {
        None => "—".into(),
        Some(p) if p < 1e-4 => format!("{p:.1e}"),
        Some(p) => format!("{p:.4}"),
    }
}

#[cfg(test)]
mod tests {
    use super::setting_order;

    #[test]
    fn settings_sort_by_their_number() {
        let mut s = vec!["k10", "k5", "gl0.1", "k1", "gl0.01", "", "seen2"];
        s.sort_by(|a, b| setting_order(a, b));
        assert_eq!(s, ["", "gl0.01", "gl0.1", "k1", "k5", "k10", "seen2"]);
    }
}
