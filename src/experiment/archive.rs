//! What a report carries so that it outlives its results folder: every record the folder
//! held (`records.jsonl.gz`), the runs' descriptions (`runs.jsonl.gz`), the failed cells
//! (`failures.jsonl`), the Fig 6 points (`artifacts/`) and the profile it counted
//! (`report.json`). A report folder is thereby a results folder too: `eidn report` re-renders
//! it, `eidn reproduce --resume-from` seeds a results folder from it, and `eidn merge` joins
//! several of either kind, refusing records that contradict each other.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::meta::RunMeta;
use super::profile::Profile;
use super::store::{files_named, read_records, record_key, Failure, Record, ResultStore};
use super::{write_atomic, ExperimentError};

pub const RECORDS: &str = "records.jsonl.gz";
pub const RUNS: &str = "runs.jsonl.gz";
pub const FAILURES: &str = "failures.jsonl";
pub const REPORT: &str = "report.json";
/// Run artifacts a report shows (Fig 6's points), under the same name as in a results folder.
pub const ARTIFACTS: &str = "artifacts";

/// How a report counted its records: re-rendering it counts them the same way.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReportSpec {
    pub profile: Profile,
    pub mix_builds: bool,
    /// Pairs of methods compared besides the default ones, `A:B` (`eidn report --compare`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compare: Vec<String>,
}

/// Everything a report folder carries besides its tables and charts.
pub struct Carried<'a> {
    pub records: &'a [Record],
    pub runs: &'a [RunMeta],
    pub failures: &'a [Failure],
    pub spec: &'a ReportSpec,
    /// Files of the results folder's `artifacts/` the report shows.
    pub artifacts: Vec<PathBuf>,
}

/// Writes `carried` into the report folder `out`, each file atomically. Records and runs
/// keep the order they were read in, so a report re-rendered from them is byte-identical.
pub fn write(out: &Path, carried: &Carried) -> Result<(), ExperimentError> {
    write_atomic(&out.join(RECORDS), &gzip_lines(out, carried.records)?)?;
    write_atomic(&out.join(RUNS), &gzip_lines(out, carried.runs)?)?;
    let failures = out.join(FAILURES);
    if carried.failures.is_empty() {
        if failures.is_file() {
            std::fs::remove_file(&failures).map_err(|e| ExperimentError::io(&failures, e))?;
        }
    } else {
        write_atomic(&failures, jsonl(carried.failures).as_bytes())?;
    }
    let spec = serde_json::to_vec_pretty(carried.spec).expect("report spec serialises");
    write_atomic(&out.join(REPORT), &spec)?;
    copy_artifacts(&carried.artifacts, out)
}

/// The profile and setting a report folder was rendered with (None for a results folder).
pub fn read_spec(dir: &Path) -> Result<Option<ReportSpec>, ExperimentError> {
    let path = dir.join(REPORT);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| ExperimentError::Profile {
                path,
                message: format!("not a report description: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ExperimentError::io(&path, e)),
    }
}

/// What an import brought into a results folder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Imported {
    /// Records new to the folder.
    pub records: usize,
    /// Records the folder already held.
    pub present: usize,
    pub runs: usize,
}

/// Seeds the results folder of `store` from `from` (a report folder or another results
/// folder): its records the store lacks, its runs' descriptions and its artifacts.
pub fn import(from: &Path, store: &mut ResultStore) -> Result<Imported, ExperimentError> {
    let records = records_of(from)?;
    let added = store.import(&records)?;
    let dir = store.dir().to_path_buf();
    let runs = import_runs(from, &dir)?;
    copy_artifacts(&artifact_files(from), &dir)?;
    Ok(Imported {
        records: added,
        present: records.len() - added,
        runs,
    })
}

/// Merges the results or report folders `sources` into the results folder `into`, after
/// checking that no two of them (or `into`) hold the same result of the same build with
/// different values; conflicts are refused before anything is written, each named.
pub fn merge(sources: &[PathBuf], into: &Path) -> Result<Imported, ExperimentError> {
    let mut all: Vec<(PathBuf, Vec<Record>)> = vec![(into.to_path_buf(), read_records(into)?)];
    for source in sources {
        if source == into {
            continue;
        }
        all.push((source.clone(), records_of(source)?));
    }
    let clashes = conflicts(&all);
    if !clashes.is_empty() {
        let shown = clashes.len().min(20);
        return Err(ExperimentError::Usage(format!(
            "{} record(s) disagree between the folders (same cell, method, settings and build, \
             different results); nothing was merged. Keep one folder's copy (e.g. leave the other \
             folder out):\n  {}{}",
            clashes.len(),
            clashes[..shown].join("\n  "),
            if shown < clashes.len() {
                format!("\n  ... and {} more", clashes.len() - shown)
            } else {
                String::new()
            }
        )));
    }
    let mut store = ResultStore::open(into, None)?;
    let mut total = Imported::default();
    for source in sources.iter().filter(|s| *s != into) {
        let got = import(source, &mut store)?;
        total.records += got.records;
        total.present += got.present;
        total.runs += got.runs;
    }
    Ok(total)
}

/// The records of `dir`, refusing a folder that holds none: a resume or merge from the wrong
/// folder (or from a report written before reports carried their records) says so.
pub fn records_of(dir: &Path) -> Result<Vec<Record>, ExperimentError> {
    if !dir.is_dir() {
        return Err(ExperimentError::io(
            dir,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder"),
        ));
    }
    let records = read_records(dir)?;
    if records.is_empty() {
        return Err(ExperimentError::Usage(format!(
            "{} holds no eidn records (records*.jsonl, or {RECORDS} in a report folder); a report \
             written before reports carried their records cannot be resumed or merged",
            dir.display()
        )));
    }
    Ok(records)
}

/// "cell/method (hash, build): auc a in X, b in Y" for each result two folders disagree on.
fn conflicts(folders: &[(PathBuf, Vec<Record>)]) -> Vec<String> {
    type Key = (String, String, String);
    let mut first: HashMap<Key, (&Path, &Record)> = HashMap::new();
    let mut out = Vec::new();
    for (dir, records) in folders {
        for r in records {
            let build = crate::build_info::Build::label_of(r.build.as_ref());
            let key = (record_key(r), r.config_hash.clone(), build);
            match first.get(&key) {
                None => {
                    first.insert(key, (dir, r));
                }
                Some((other_dir, other)) if !same_result(other, r) => out.push(format!(
                    "{} (config {}, {}): AUC {} in {}, {} in {}",
                    key.0,
                    key.1,
                    key.2,
                    other.auc,
                    other_dir.display(),
                    r.auc,
                    dir.display()
                )),
                Some(_) => {}
            }
        }
    }
    out
}

/// Two records of one result agree when everything measured (not timed) is equal.
fn same_result(a: &Record, b: &Record) -> bool {
    a.auc.to_bits() == b.auc.to_bits()
        && a.ap.to_bits() == b.ap.to_bits()
        && a.n_test == b.n_test
        && a.n_test_anomalies == b.n_test_anomalies
        && a.per_type_auc == b.per_type_auc
}

/// Copies the runs of `from` missing in `results/runs/`; returns how many.
fn import_runs(from: &Path, results: &Path) -> Result<usize, ExperimentError> {
    let mut added = 0;
    for run in RunMeta::read_all(from) {
        if !results.join("runs").join(run.file_name()).is_file() {
            run.save(results)?;
            added += 1;
        }
    }
    Ok(added)
}

/// The files of `dir/artifacts/` a report shows (Fig 6's points), sorted.
pub fn artifact_files(dir: &Path) -> Vec<PathBuf> {
    files_named(&dir.join(ARTIFACTS), |n| {
        n.starts_with("fig6-") && n.ends_with(".csv")
    })
}

/// Copies `files` into `dir/artifacts/` (skipping a file already there).
fn copy_artifacts(files: &[PathBuf], dir: &Path) -> Result<(), ExperimentError> {
    for file in files {
        let Some(name) = file.file_name() else {
            continue;
        };
        let to = dir.join(ARTIFACTS).join(name);
        if to == *file || to.is_file() {
            continue;
        }
        let to_dir = dir.join(ARTIFACTS);
        std::fs::create_dir_all(&to_dir).map_err(|e| ExperimentError::io(&to_dir, e))?;
        let bytes = std::fs::read(file).map_err(|e| ExperimentError::io(file, e))?;
        write_atomic(&to, &bytes)?;
    }
    Ok(())
}

fn jsonl<T: Serialize>(items: &[T]) -> String {
    let mut text = String::new();
    for item in items {
        text.push_str(&serde_json::to_string(item).expect("records serialise"));
        text.push('\n');
    }
    text
}

/// JSON lines, gzip-compressed; the gzip header carries no time, so equal items give equal
/// bytes.
fn gzip_lines<T: Serialize>(out: &Path, items: &[T]) -> Result<Vec<u8>, ExperimentError> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(jsonl(items).as_bytes())
        .and_then(|_| gz.finish())
        .map_err(|e| ExperimentError::io(out, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::store::tests::record;

    fn folder(records: &[Record]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ResultStore::open(dir.path(), None).unwrap();
        for r in records {
            store.append(r.clone()).unwrap();
        }
        dir
    }

    #[test]
    fn merging_joins_folders_and_keeps_one_copy_of_a_shared_result() {
        let a = folder(&[record("a", 0.9), record("b", 0.8)]);
        let b = folder(&[record("b", 0.8), record("c", 0.7)]);
        let into = tempfile::tempdir().unwrap();
        let got = merge(&[a.path().into(), b.path().into()], into.path()).unwrap();
        assert_eq!((got.records, got.present), (3, 1));
        let cells: Vec<String> = (read_records(into.path()).unwrap().into_iter())
            .map(|r| r.cell)
            .collect();
        assert_eq!(cells, ["a", "b", "c"]);
        // Merging again adds nothing.
        let again = merge(&[a.path().into()], into.path()).unwrap();
        assert_eq!((again.records, again.present), (0, 2));
    }

    #[test]
    fn a_result_two_folders_disagree_on_is_refused_by_name() {
        let a = folder(&[record("a", 0.9), record("b", 0.8)]);
        let b = folder(&[record("b", 0.75)]);
        let into = tempfile::tempdir().unwrap();
        let err = merge(&[a.path().into(), b.path().into()], into.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("1 record(s) disagree"), "{err}");
        assert!(err.contains("b/eidn/origin_distance"), "{err}");
        assert!(err.contains("0.8") && err.contains("0.75"), "{err}");
        assert!(
            read_records(into.path()).unwrap().is_empty(),
            "nothing merged"
        );
        // Another build's different value is no conflict: builds may differ.
        let mut other = record("b", 0.75);
        other.build.as_mut().unwrap().commit = "0000000".into();
        let c = folder(&[other]);
        let got = merge(&[a.path().into(), c.path().into()], into.path()).unwrap();
        assert_eq!(got.records, 3);
    }

    #[test]
    fn a_folder_without_records_is_named() {
        let empty = tempfile::tempdir().unwrap();
        let into = tempfile::tempdir().unwrap();
        let err = merge(&[empty.path().into()], into.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds no eidn records"), "{err}");
        assert!(err.contains(&empty.path().display().to_string()), "{err}");
    }

    #[test]
    fn carried_records_read_back_in_order_and_import_once() {
        let records = [record("b", 0.8), record("a", 0.9)];
        let out = tempfile::tempdir().unwrap();
        let spec = ReportSpec {
            profile: (*Profile::parse(
                "name = \"t\"\ndescription = \"x\"\nseeds = [0]\n[train]\nepochs = 1\nsteps_per_epoch = 10\nbatch_size = 8\n[[stage]]\nid = \"table1\"\ndataset = \"mnist\"\nclasses = [0]\nratios = [0.01]\n",
                Path::new("t.toml"),
            )
            .unwrap())
            .clone(),
            mix_builds: false,
            compare: Vec::new(),
        };
        let carried = Carried {
            records: &records,
            runs: &[],
            failures: &[],
            spec: &spec,
            artifacts: Vec::new(),
        };
        write(out.path(), &carried).unwrap();
        let first = std::fs::read(out.path().join(RECORDS)).unwrap();
        write(out.path(), &carried).unwrap();
        assert_eq!(first, std::fs::read(out.path().join(RECORDS)).unwrap());
        assert_eq!(read_records(out.path()).unwrap(), records);
        assert!(read_spec(out.path()).unwrap().is_some());
        let results = tempfile::tempdir().unwrap();
        let mut store = ResultStore::open(results.path(), None).unwrap();
        let got = import(out.path(), &mut store).unwrap();
        assert_eq!((got.records, got.present), (2, 0));
        let again = import(out.path(), &mut store).unwrap();
        assert_eq!((again.records, again.present), (0, 2));
        assert_eq!(super::super::store::read_failures(out.path()), Vec::new());
    }
}
