//! CI's second check: golden AUCs. A build and a CPU family compute the same numbers on every
//! run, so the mean AUC of each (cell, method) of the `ci` profile is kept per CPU family in
//! `tests/regression/golden/ci-<family>.toml` and a run must land within a tight tolerance of
//! it. The floors (`thresholds`) say what any correct build must reach; the golden values say
//! that nothing moved unannounced. A change that moves numbers on purpose bumps
//! `build_info::NUMERICS` and refreshes the file (`eidn regress ... --refresh-golden`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use comfy_table::Table;
use serde::{Deserialize, Serialize};

use super::new_table;
use crate::build_info::Build;
use crate::experiment::{write_atomic, ExperimentError, Record};

/// How far a mean AUC may sit from its golden value on the same build and CPU family. Runs
/// are deterministic there, so this only absorbs the file's rounding.
pub const TOLERANCE: f64 = 0.001;

/// The golden values of one CPU family.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Golden {
    /// The profile whose cells these are (its `name`), and the CPU family key (see
    /// `CpuFamily`): the file is `<profile>-<cpu>.toml`.
    pub profile: String,
    pub cpu: String,
    /// The CPU's model name, for people.
    pub cpu_name: String,
    /// The day the values were measured (UTC, YYYY-MM-DD).
    pub measured: String,
    /// The build that measured them: values of another numerics version are not checked.
    pub build: Build,
    pub tolerance: f64,
    #[serde(rename = "cell")]
    pub cells: Vec<GoldenCell>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenCell {
    /// The cell id without its seed, then the method: `<cell> <reducer>/<detector>`.
    pub key: String,
    /// Mean AUC over the cell's seeds.
    pub auc: f64,
    pub seeds: usize,
}

/// What a golden check found.
pub struct GoldenCheck {
    pub failures: Vec<String>,
    pub table: Table,
}

/// The CPU family a golden file belongs to: vendor, family and model number, as
/// `/proc/cpuinfo` gives them (the instruction set the kernels pick follows from these).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuFamily {
    pub key: String,
    pub name: String,
}

impl CpuFamily {
    pub fn current() -> CpuFamily {
        let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            info.lines()
                .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        };
        let arch = std::env::consts::ARCH;
        match (field("vendor_id"), field("cpu family"), field("model")) {
            (Some(v), Some(f), Some(m)) => CpuFamily {
                key: format!("{arch}-{v}-{f}-{m}"),
                name: field("model name").unwrap_or_else(|| v.clone()),
            },
            _ => CpuFamily {
                key: format!("{arch}-{}", std::env::consts::OS),
                name: arch.to_string(),
            },
        }
    }
}

impl Golden {
    pub fn path(dir: &Path, profile: &str, cpu: &CpuFamily) -> PathBuf {
        dir.join(format!("{profile}-{}.toml", cpu.key))
    }

    /// The golden values at `path`, or None when there is no file.
    pub fn load(path: &Path) -> Result<Option<Golden>, ExperimentError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ExperimentError::io(path, e)),
        };
        let bad = |message: String| ExperimentError::Profile {
            path: path.to_path_buf(),
            message,
        };
        let g: Golden = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if !(g.tolerance >= 0.0 && g.tolerance < 0.1) {
            return Err(bad(format!("tolerance {} is not in [0, 0.1)", g.tolerance)));
        }
        if let Some(c) = g.cells.iter().find(|c| !(0.0..=1.0).contains(&c.auc)) {
            return Err(bad(format!("{}: auc {} is not in [0, 1]", c.key, c.auc)));
        }
        Ok(Some(g))
    }

    /// The mean AUC of every (cell, method) among `records` of `profile`, as golden values
    /// of `cpu`.
    pub fn measure(
        records: &[Record],
        profile: &str,
        cpu: &CpuFamily,
        build: Build,
        day: String,
    ) -> Golden {
        let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
        for r in records {
            let s = sums.entry(key(r)).or_default();
            s.0 += r.auc;
            s.1 += 1;
        }
        Golden {
            profile: profile.to_string(),
            cpu: cpu.key.clone(),
            cpu_name: cpu.name.clone(),
            measured: day,
            build,
            tolerance: TOLERANCE,
            cells: sums
                .into_iter()
                .map(|(key, (sum, n))| GoldenCell {
                    key,
                    // Rounded so the file reads well; the tolerance is ten times coarser.
                    auc: (sum / n as f64 * 1e5).round() / 1e5,
                    seeds: n,
                })
                .collect(),
        }
    }

    /// `measured` against these values: a cell off by more than the tolerance, one with
    /// another seed count, one missing from either side.
    pub fn check(&self, measured: &Golden) -> GoldenCheck {
        let mut failures = Vec::new();
        let mut table = new_table(["cell / method", "golden", "measured", "diff", "ok"]);
        let now: BTreeMap<&str, &GoldenCell> =
            measured.cells.iter().map(|c| (c.key.as_str(), c)).collect();
        for g in &self.cells {
            let (shown, ok) = match now.get(g.key.as_str()) {
                None => {
                    failures.push(format!("{}: no records (golden {:.4})", g.key, g.auc));
                    (("—".to_string(), "—".to_string()), false)
                }
                Some(m) => {
                    let diff = m.auc - g.auc;
                    // Written so that a NaN difference fails.
                    let ok = diff.abs() <= self.tolerance + 1e-12 && m.seeds == g.seeds;
                    if !ok {
                        failures.push(format!(
                            "{}: mean AUC {:.5} over {} seed(s), golden {:.5} over {} (diff {diff:+.5}, tolerance {})",
                            g.key, m.auc, m.seeds, g.auc, g.seeds, self.tolerance
                        ));
                    }
                    ((format!("{:.5}", m.auc), format!("{diff:+.5}")), ok)
                }
            };
            table.add_row([
                g.key.clone(),
                format!("{:.5}", g.auc),
                shown.0,
                shown.1,
                if ok { "yes" } else { "NO" }.to_string(),
            ]);
        }
        let known: Vec<&str> = self.cells.iter().map(|c| c.key.as_str()).collect();
        for m in measured
            .cells
            .iter()
            .filter(|m| !known.contains(&m.key.as_str()))
        {
            failures.push(format!(
                "{}: no golden value (a new cell: refresh the golden file)",
                m.key
            ));
        }
        GoldenCheck { failures, table }
    }

    /// Writes the file (atomically), with a header saying how to refresh it.
    pub fn write(&self, path: &Path) -> Result<(), ExperimentError> {
        let body = toml::to_string(self).map_err(|e| ExperimentError::Profile {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let text = format!(
            "# Golden mean AUCs of the `{p}` profile on this CPU family (docs/regression.md).\n\
             # Written by `eidn regress --profile {p} --results results/{p} --thresholds \
             tests/regression/thresholds.toml --refresh-golden`; do not edit by hand.\n\n{body}",
            p = self.profile
        );
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| ExperimentError::io(dir, e))?;
        }
        write_atomic(path, text.as_bytes())
    }
}

/// A record's (cell without seed, method).
fn key(r: &Record) -> String {
    let seed = format!("-s{}", r.seed);
    let cell = match r.cell.find(&format!("{seed}-")) {
        Some(at) => format!("{}{}", &r.cell[..at], &r.cell[at + seed.len()..]),
        None => r.cell.strip_suffix(&seed).unwrap_or(&r.cell).to_string(),
    };
    format!("{cell} {}/{}", r.reducer.as_str(), r.detector.as_str())
}

/// Today (UTC) as YYYY-MM-DD.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    civil_date(secs / 86_400)
}

/// Days since 1970-01-01 as a Gregorian date (Howard Hinnant's `civil_from_days`).
fn civil_date(days: u64) -> String {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(11_016), "2000-02-29");
        assert_eq!(civil_date(20_792), "2026-12-05");
    }

    fn golden(cells: &[(&str, f64, usize)]) -> Golden {
        Golden {
            profile: "ci".into(),
            cpu: "x86_64-Test-1-2".into(),
            cpu_name: "Test CPU".into(),
            measured: "2026-12-05".into(),
            build: Build::current(),
            tolerance: TOLERANCE,
            cells: cells
                .iter()
                .map(|&(key, auc, seeds)| GoldenCell {
                    key: key.into(),
                    auc,
                    seeds,
                })
                .collect(),
        }
    }

    /// A drift past the tolerance, a NaN, a lost seed, a missing and a new cell all fail;
    /// the file round-trips.
    #[test]
    fn drifts_and_missing_cells_fail() {
        let g = golden(&[("a eidn/origin_distance", 0.99, 2), ("b pca/gmm", 0.6, 1)]);
        assert!(g.check(&g).failures.is_empty());
        let near = golden(&[("a eidn/origin_distance", 0.9905, 2), ("b pca/gmm", 0.6, 1)]);
        assert!(g.check(&near).failures.is_empty());
        for (bad, what) in [
            (
                golden(&[("a eidn/origin_distance", 0.988, 2), ("b pca/gmm", 0.6, 1)]),
                "a eidn",
            ),
            (
                golden(&[
                    ("a eidn/origin_distance", f64::NAN, 2),
                    ("b pca/gmm", 0.6, 1),
                ]),
                "a eidn",
            ),
            (
                golden(&[("a eidn/origin_distance", 0.99, 1), ("b pca/gmm", 0.6, 1)]),
                "a eidn",
            ),
            (
                golden(&[("a eidn/origin_distance", 0.99, 2)]),
                "b pca/gmm: no records",
            ),
            (
                golden(&[
                    ("a eidn/origin_distance", 0.99, 2),
                    ("b pca/gmm", 0.6, 1),
                    ("c lda/lof", 0.8, 1),
                ]),
                "c lda/lof: no golden",
            ),
        ] {
            let f = g.check(&bad).failures;
            assert!(f.len() == 1 && f[0].contains(what), "{f:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = Golden::path(dir.path(), "ci", &CpuFamily::current());
        assert_eq!(Golden::load(&path).unwrap(), None);
        g.write(&path).unwrap();
        assert_eq!(Golden::load(&path).unwrap(), Some(g));
    }
}
