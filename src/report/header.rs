//! The report's header: which runs, commits, machines and data made these numbers, which
//! records were left out and why, and how much of the profile's grid is done.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::frame::{strs, u64s};
use super::Report;

impl Report {
    pub(super) fn header(&self, md: &mut String) {
        let profiles: BTreeSet<&str> = self.runs.iter().map(|r| r.profile.as_str()).collect();
        let commits: BTreeSet<&str> = self.runs.iter().map(|r| r.commit.as_str()).collect();
        let machines: BTreeSet<&str> = self.runs.iter().map(|r| r.machine.as_str()).collect();
        let devices: BTreeSet<&str> = self.runs.iter().map(|r| r.device.as_str()).collect();
        let seeds: BTreeSet<u64> = u64s(&self.frame, "seed")
            .unwrap_or_default()
            .into_iter()
            .collect();
        let wall: f64 = self.runs.iter().map(|r| r.wall_seconds).sum();
        let join = |s: &BTreeSet<&str>| {
            if s.is_empty() {
                "unknown".to_string()
            } else {
                s.iter().copied().collect::<Vec<_>>().join(", ")
            }
        };
        let _ = writeln!(
            md,
            "# EIDN reproduction report: profile {}\n",
            join(&profiles)
        );
        let _ = writeln!(md, "| | |\n|---|---|");
        let _ = writeln!(md, "| profile | {} |", join(&profiles));
        let _ = writeln!(md, "| commit(s) | {} |", join(&commits));
        let _ = writeln!(md, "| machine(s) | {} |", join(&machines));
        let _ = writeln!(md, "| device | {} |", join(&devices));
        let _ = writeln!(
            md,
            "| seeds | {} |",
            seeds
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = write!(
            md,
            "| wall time | {:.0} s ({:.1} min) over {} run(s) (interrupted and resumed runs add up)",
            wall,
            wall / 60.0,
            self.runs.len()
        );
        // Runs side by side (shards, a second stage in its own folder) would otherwise read as
        // one long run: say how long some run was going as well.
        let busy = busy_seconds(&self.runs);
        if busy + 1.0 < wall {
            let _ = write!(
                md,
                "; they overlapped: {:.0} s ({:.1} min) with at least one running",
                busy,
                busy / 60.0
            );
        }
        let _ = writeln!(md, " |");
        let _ = writeln!(
            md,
            "| records | {} counted (one per cell, seed and method of the current profile){} |",
            self.frame.height(),
            if self.selection.ignored_total() == 0 {
                String::new()
            } else {
                format!("; {}", self.selection.ignored_lines().join("; "))
            }
        );
        let _ = writeln!(
            md,
            "| EIDN training | {} (paper: 50 x 100 steps of 128) |",
            self.training_lines().join("; ")
        );
        let data: BTreeSet<String> = strs(&self.frame, "dataset")
            .unwrap_or_default()
            .into_iter()
            .zip(strs(&self.frame, "data").unwrap_or_default())
            .map(|(d, status)| format!("{d} {status}"))
            .collect();
        let _ = writeln!(
            md,
            "| data | {} |",
            data.iter().cloned().collect::<Vec<_>>().join("; ")
        );
        let (complete, partial): (Vec<_>, Vec<_>) =
            self.coverage.iter().partition(|c| c.complete());
        let names = |cs: &[&super::StageCoverage]| {
            if cs.is_empty() {
                "none".to_string()
            } else {
                cs.iter()
                    .map(|c| format!("{} {}", c.stage.as_str(), c.dataset))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let _ = writeln!(md, "| stages complete | {} |", names(&complete));
        let _ = writeln!(md, "| stages not complete | {} |\n", names(&partial));
        if !partial.is_empty() {
            let _ = writeln!(
                md,
                "**Partial grid.** Each table and figure below says how much of its stage has run; cells of \
                 the profile without a record show as \"not yet run\", and means are over what ran.\n"
            );
        }
        if data.iter().any(|d| d.contains("variant")) {
            let _ = writeln!(
                md,
                "**Data note.** A dataset marked `variant` is not the original distribution: the CIFAR-10 copy \
                 here is `jpeg-q75` (every image re-encoded as JPEG at quality 75, same images, labels and \
                 split; see `eidn data verify`). Numbers on it may differ slightly from the original files.\n"
            );
        }
        let missing: BTreeSet<&str> = self
            .runs
            .iter()
            .flat_map(|r| {
                r.missing_data
                    .iter()
                    .map(|c| c.split('-').next().unwrap_or(""))
            })
            .collect();
        if !missing.is_empty() {
            let _ = writeln!(
                md,
                "**Data missing:** {} (not in the data directory when the grid ran; its cells were skipped).\n",
                missing.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
        if !self.failures.is_empty() {
            let _ = writeln!(md, "**Failed cells** (no result; rerun to retry):\n");
            for f in &self.failures {
                let _ = writeln!(md, "- `{}`: {}", f.cell, f.reason);
            }
            md.push('\n');
        }
        let datasets = self.datasets();
        if datasets.iter().any(|d| d.is_builtin()) {
            let _ = writeln!(
                md,
                "Published numbers: {} (`reports/published.toml`). Ours: mean ± sample standard deviation over \
                 seeds; ROC AUC of the test split.\n",
                self.published.source
            );
        } else {
            let _ = writeln!(
                md,
                "Mean ± sample standard deviation over seeds; ROC AUC of the test split.\n"
            );
        }
    }

    /// "mnist: 4 x 100 steps of 128 triplets", one per dataset and setting.
    fn training_lines(&self) -> Vec<String> {
        let col = |name: &str| u64s(&self.frame, name).unwrap_or_default();
        let (epochs, steps, batch) = (col("epochs"), col("steps_per_epoch"), col("batch_size"));
        let lines: BTreeSet<String> = strs(&self.frame, "dataset")
            .unwrap_or_default()
            .iter()
            .enumerate()
            // Deep SAD records have no EIDN training (their settings are in their section).
            .filter(|&(i, _)| epochs[i] > 0)
            .map(|(i, d)| {
                format!(
                    "{d}: {} x {} steps of {} triplets",
                    epochs[i], steps[i], batch[i]
                )
            })
            .collect();
        lines.into_iter().collect()
    }
}

/// Seconds during which at least one run was going: the length of the union of the runs'
/// intervals `[started, started + wall]`.
fn busy_seconds(runs: &[crate::experiment::RunMeta]) -> f64 {
    let mut spans: Vec<(f64, f64)> = runs
        .iter()
        .map(|r| {
            (
                r.started_unix as f64,
                r.started_unix as f64 + r.wall_seconds,
            )
        })
        .collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    // In start order, count only the part of each span past the latest end seen so far.
    let mut total = 0.0;
    let mut reach = f64::NEG_INFINITY;
    for (start, end) in spans {
        let from = start.max(reach);
        if end > from {
            total += end - from;
            reach = end;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::busy_seconds;
    use crate::experiment::RunMeta;

    fn run(started_unix: u64, wall_seconds: f64) -> RunMeta {
        serde_json::from_value(serde_json::json!({
            "profile": "quick", "only": [], "shard": null, "commit": "x", "machine": "m",
            "device": "cpu", "seeds": [0], "started_unix": started_unix,
            "wall_seconds": wall_seconds, "cells": 1, "cells_run": 1, "records_written": 1,
            "missing_data": []
        }))
        .expect("a run description")
    }

    #[test]
    fn overlapping_runs_count_once_and_apart_runs_add_up() {
        assert_eq!(busy_seconds(&[]), 0.0);
        // 0-100 and 50-150 overlap: 150 s; 1000-1010 is apart: 10 s more.
        let runs = [run(1000, 10.0), run(0, 100.0), run(50, 100.0)];
        assert_eq!(busy_seconds(&runs), 160.0);
        // One run inside another adds nothing.
        assert_eq!(busy_seconds(&[run(0, 100.0), run(10, 5.0)]), 100.0);
    }
}
