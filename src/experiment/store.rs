//! The results store: one JSON line per (cell, reducer, detector), appended and synced as it
//! finishes, so an interrupted run loses at most the cell in flight. Shards write their own
//! `records-K-of-N.jsonl`; readers merge every `records*.jsonl` in the folder (polars reads
//! them too: `pl.read_ndjson`), and `records*.jsonl.gz`, the copy a report carries
//! (`super::archive`).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ExperimentError;
use crate::build_info::{numerics_of, Build};
use crate::data::DatasetName;
use crate::detect::DetectorKind;
use crate::reduce::ReducerKind;

/// Bumped when a change to the harness makes old records incomparable; part of every hash.
/// Version 2: cells name every training setting, configs hold the checked reducer and
/// detector settings.
pub const RECORD_VERSION: u32 = 2;

/// One result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The cell id (see `Cell::id`).
    pub cell: String,
    /// SHA-256 (first 16 hex digits) of `config`: a rerun skips a record with the same hash.
    pub config_hash: String,
    pub dataset: DatasetName,
    /// "one-vs-rest" or "unseen".
    pub protocol: String,
    pub normal_class: u8,
    pub class_name: String,
    pub anomaly_ratio: f64,
    pub seed: u64,
    pub reducer: ReducerKind,
    pub detector: DetectorKind,
    pub auc: f64,
    pub ap: f64,
    /// EIDN training (0 when a saved encoder was reused) or PCA/LDA fitting.
    pub train_seconds: f64,
    /// Detector fitting on the embedded normal training images.
    pub fit_seconds: f64,
    /// Embedding and scoring the test set.
    pub score_seconds: f64,
    pub n_test: usize,
    pub n_test_anomalies: usize,
    /// The dataset copy's verification status (e.g. "variant jpeg-q75").
    pub data: String,
    /// Everything that determines the result.
    pub config: serde_json::Value,
    /// When the record was written (seconds since 1970): the newest of two records of the
    /// same cell and method is the one that counts.
    #[serde(default)]
    pub written_unix: u64,
    /// The build that computed it (absent in records of an eidn from before builds were
    /// recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
    /// What the detector's fit could not do as asked (see `AnomalyScorer::notes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The few-shot protocols' AUC of the normal test images against each anomaly type
    /// alone, by type name (empty elsewhere).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_type_auc: Vec<(String, f64)>,
}

/// Which stored records a run takes as done, by the build that wrote them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reuse {
    /// Records of any build with this build's numerics version (`reproduce`).
    SameNumerics,
    /// Only records of this very build (`regress`: a guard must see this build's numbers).
    SameBuild,
}

impl Reuse {
    pub fn accepts(self, build: Option<&Build>) -> bool {
        let current = Build::current();
        match self {
            Reuse::SameNumerics => numerics_of(build) == current.numerics,
            Reuse::SameBuild => build == Some(&current),
        }
    }
}

/// Whether the store holds a record for a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    Usable,
    /// Only from a build the run's [`Reuse`] does not accept: it is computed again.
    OtherBuild,
    Missing,
}

impl Record {
    /// AUC and AP are probabilities: anything else in a results file is damage, not a result.
    fn check(&self) -> Result<(), String> {
        for (name, v) in [("auc", self.auc), ("ap", self.ap)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} {v} is not in [0, 1]"));
            }
        }
        Ok(())
    }
}

/// A cell that could not run (too few anomalies, bad data, a diverged network): kept in
/// `failures*.jsonl` so the report and the next run can name it. Failed cells are retried.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub cell: String,
    pub reason: String,
    pub written_unix: u64,
}

pub(crate) fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Stable hash of a config value: keys are sorted first, so the hash does not depend on
/// field order (or on whether some dependency turns on serde_json's `preserve_order`).
pub fn config_hash(config: &serde_json::Value) -> String {
    let digest = Sha256::digest(canonical_json(config).as_bytes());
    hex::encode(&digest[..8])
}

/// JSON text with object keys sorted at every level: equal configs give equal text.
pub fn canonical_json(config: &serde_json::Value) -> String {
    let mut text = String::new();
    canonical(config, &mut text);
    text
}

fn canonical(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&map[k], out);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The records of one results folder, and where this run appends.
pub struct ResultStore {
    dir: PathBuf,
    file: PathBuf,
    failures: PathBuf,
    records: Vec<Record>,
    /// (method key, config hash) -> the builds that wrote such a record.
    done: HashMap<(String, String), Vec<Option<Build>>>,
    /// File locks held while the store is open (see [`lock`]).
    _locks: Vec<File>,
}

impl ResultStore {
    /// Opens `dir` (created if missing), reading every `records*.jsonl` in it; this run will
    /// append to `records.jsonl`, or `records-<shard>.jsonl`.
    ///
    /// Two runs never write one folder's cells at once: an unsharded run holds the folder's
    /// lock exclusively; a shard holds it shared, plus its own shard's lock exclusively.
    pub fn open(dir: &Path, shard: Option<&str>) -> Result<ResultStore, ExperimentError> {
        std::fs::create_dir_all(dir).map_err(|e| ExperimentError::io(dir, e))?;
        let mut locks = vec![lock(&dir.join(".lock"), shard.is_none())?];
        if let Some(tag) = shard {
            locks.push(lock(&dir.join(format!(".lock-{tag}")), true)?);
        }
        let (file, failures) = match shard {
            Some(tag) => (
                dir.join(format!("records-{tag}.jsonl")),
                dir.join(format!("failures-{tag}.jsonl")),
            ),
            None => (dir.join("records.jsonl"), dir.join("failures.jsonl")),
        };
        let records = read_records(dir)?;
        repair_torn_tail(&file)?;
        let mut done: HashMap<(String, String), Vec<Option<Build>>> = HashMap::new();
        for r in &records {
            (done.entry((record_key(r), r.config_hash.clone())))
                .or_default()
                .push(r.build.clone());
        }
        repair_torn_tail(&failures)?;
        Ok(ResultStore {
            dir: dir.to_path_buf(),
            file,
            failures,
            records,
            done,
            _locks: locks,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// Whether a record with this key and config hash exists from a build `reuse` accepts.
    pub fn has(
        &self,
        cell: &str,
        reducer: ReducerKind,
        detector: DetectorKind,
        hash: &str,
        reuse: Reuse,
    ) -> Stored {
        match self
            .done
            .get(&(key(cell, reducer, detector), hash.to_string()))
        {
            None => Stored::Missing,
            Some(builds) if builds.iter().any(|b| reuse.accepts(b.as_ref())) => Stored::Usable,
            Some(_) => Stored::OtherBuild,
        }
    }

    /// Appends one record as a single write followed by a sync.
    pub fn append(&mut self, record: Record) -> Result<(), ExperimentError> {
        append_line(&self.file, &record)?;
        (self
            .done
            .entry((record_key(&record), record.config_hash.clone())))
        .or_default()
        .push(record.build.clone());
        self.records.push(record);
        Ok(())
    }

    /// Appends, in one write and one sync, the records this store lacks (same cell, method,
    /// config hash and build): a committed report's or another machine's. Returns how many.
    pub fn import(&mut self, records: &[Record]) -> Result<usize, ExperimentError> {
        let mut text = String::new();
        let mut added = 0;
        for r in records {
            let at = (record_key(r), r.config_hash.clone());
            if self.done.get(&at).is_some_and(|b| b.contains(&r.build)) {
                continue;
            }
            text.push_str(&serde_json::to_string(r).expect("records serialise"));
            text.push('\n');
            self.done.entry(at).or_default().push(r.build.clone());
            self.records.push(r.clone());
            added += 1;
        }
        if added > 0 {
            append_text(&self.file, &text)?;
        }
        Ok(added)
    }

    /// Notes a cell that could not run.
    pub fn append_failure(&mut self, failure: &Failure) -> Result<(), ExperimentError> {
        append_line(&self.failures, failure)
    }
}

/// One JSON line, written with a single write and synced.
fn append_line(path: &Path, value: &impl Serialize) -> Result<(), ExperimentError> {
    let mut line = serde_json::to_string(value).expect("records serialise");
    line.push('\n');
    append_text(path, &line)
}

/// Whole lines, written with a single write and synced.
fn append_text(path: &Path, line: &str) -> Result<(), ExperimentError> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| ExperimentError::io(path, e))?;
    f.write_all(line.as_bytes())
        .and_then(|_| f.sync_data())
        .map_err(|e| ExperimentError::io(path, e))
}

/// Locks `path` (created if missing) without waiting, exclusively or shared (std's file
/// locks: flock(2) on Linux); the lock lasts as long as the returned file is open, and the
/// kernel drops it when the process dies.
fn lock(path: &Path, exclusive: bool) -> Result<File, ExperimentError> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| ExperimentError::io(path, e))?;
    let taken = if exclusive {
        f.try_lock()
    } else {
        f.try_lock_shared()
    };
    match taken {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(path).unwrap_or_default();
            return Err(ExperimentError::Locked {
                dir: path.parent().unwrap_or(path).to_path_buf(),
                holder: holder.trim().to_string(),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(ExperimentError::io(path, e)),
    }
    if exclusive {
        let _ = f.set_len(0);
        let _ = (&f).write_all(format!("pid {}", std::process::id()).as_bytes());
    }
    Ok(f)
}

/// Every failure noted in `dir` (all shards), oldest first; unreadable lines are skipped
/// (they describe failures, not results).
pub fn read_failures(dir: &Path) -> Vec<Failure> {
    let mut out = Vec::new();
    for path in jsonl_files(dir, "failures") {
        let text = read_text(&path).unwrap_or_default();
        out.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
    }
    out.sort_by_key(|f: &Failure| f.written_unix);
    out
}

/// `<prefix>*.jsonl` and `<prefix>*.jsonl.gz` in `dir`, sorted by name.
fn jsonl_files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    files_named(dir, |n| {
        n.starts_with(prefix) && (n.ends_with(".jsonl") || n.ends_with(".jsonl.gz"))
    })
}

/// The files of `dir` whose name `wanted` accepts, sorted by name (none when `dir` is
/// missing).
pub(crate) fn files_named(dir: &Path, wanted: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(&wanted))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// A JSONL file's text, decompressed when its name ends in `.gz`.
pub(crate) fn read_text(path: &Path) -> Result<String, ExperimentError> {
    let bytes = std::fs::read(path).map_err(|e| ExperimentError::io(path, e))?;
    let bytes = if path.extension().is_some_and(|x| x == "gz") {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut out)
            .map_err(|e| ExperimentError::io(path, e))?;
        out
    } else {
        bytes
    };
    String::from_utf8(bytes).map_err(|e| {
        ExperimentError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()),
        )
    })
}

/// Cuts a record torn by a kill off the end of this run's own file, so the next append
/// starts on a fresh line (readers already skip it; other shards' files are left alone).
fn repair_torn_tail(path: &Path) -> Result<(), ExperimentError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ExperimentError::io(path, e)),
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(());
    }
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| ExperimentError::io(path, e))?;
    f.set_len(keep as u64)
        .and_then(|_| f.sync_data())
        .map_err(|e| ExperimentError::io(path, e))
}

fn key(cell: &str, reducer: ReducerKind, detector: DetectorKind) -> String {
    format!("{cell}/{}/{}", reducer.as_str(), detector.as_str())
}

/// "cell/reducer/detector": what a record is a result of.
pub(crate) fn record_key(r: &Record) -> String {
    key(&r.cell, r.reducer, r.detector)
}

/// Every record of every `records*.jsonl` in `dir`, files in name order. A last line without
/// its newline is a write cut short by a kill: it is skipped with a warning. Any other bad
/// line is an error naming the file and line. A record repeated (same key and hash, e.g. two
/// shards that overlapped) is kept once: the newest, as the counting rule would pick (a
/// seeded rerun may still differ where a detector is not deterministic).
pub fn read_records(dir: &Path) -> Result<Vec<Record>, ExperimentError> {
    if let Err(e) = std::fs::read_dir(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(ExperimentError::io(dir, e));
        }
    }
    let files = jsonl_files(dir, "records");
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let mut out: Vec<Record> = Vec::new();
    for path in files {
        let text = read_text(&path)?;
        let complete = text.ends_with('\n');
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let parsed = serde_json::from_str::<Record>(line)
                .map_err(|e| e.to_string())
                .and_then(|r| r.check().map(|_| r));
            match parsed {
                Ok(r) => match seen.entry((record_key(&r), r.config_hash.clone())) {
                    Entry::Occupied(at) => {
                        if r.written_unix >= out[*at.get()].written_unix {
                            out[*at.get()] = r;
                        }
                    }
                    Entry::Vacant(at) => {
                        at.insert(out.len());
                        out.push(r);
                    }
                },
                Err(_) if i + 1 == lines.len() && !complete => {
                    eprintln!(
                        "warning: {} line {}: incomplete last record (a run was interrupted while writing it); ignored",
                        path.display(),
                        i + 1
                    );
                }
                Err(message) => {
                    return Err(ExperimentError::BadRecord {
                        path: path.clone(),
                        line: i + 1,
                        message,
                    })
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A record of `cell` (EIDN's own score on MNIST) with this AUC and AP, for store tests.
    pub(crate) fn record(cell: &str, auc: f64) -> Record {
        let config = serde_json::json!({"cell": cell});
        Record {
            cell: cell.into(),
            config_hash: config_hash(&config),
            dataset: DatasetName::Mnist,
            protocol: "one-vs-rest".into(),
            normal_class: 0,
            class_name: "0".into(),
            anomaly_ratio: 0.01,
            seed: 0,
            reducer: ReducerKind::Eidn,
            detector: DetectorKind::OriginDistance,
            auc,
            ap: auc,
            train_seconds: 1.0,
            fit_seconds: 0.0,
            score_seconds: 0.1,
            n_test: 10,
            n_test_anomalies: 9,
            data: "exact".into(),
            config,
            written_unix: 0,
            build: Some(Build::current()),
            notes: Vec::new(),
            per_type_auc: Vec::new(),
        }
    }

    #[test]
    fn appended_records_survive_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ResultStore::open(dir.path(), None).unwrap();
        store.append(record("a", 0.9)).unwrap();
        store.append(record("b", 0.8)).unwrap();
        let hash = record("a", 0.0).config_hash;
        let has =
            |r, hash: &str| store.has("a", r, DetectorKind::OriginDistance, hash, Reuse::SameBuild);
        assert_eq!(has(ReducerKind::Eidn, &hash), Stored::Usable);
        assert_eq!(has(ReducerKind::Pca, &hash), Stored::Missing);
        assert_eq!(has(ReducerKind::Eidn, "other"), Stored::Missing);
        // A kill in the middle of the third write (the kill also drops the run's lock).
        drop(store);
        let path = dir.path().join("records.jsonl");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"cell\":\"c\",\"config_h").unwrap();
        let again = ResultStore::open(dir.path(), Some("1-of-2")).unwrap();
        assert_eq!(again.records().len(), 2);
        assert_eq!(again.records()[1].auc, 0.8);
        drop(again);
        // Reopening as the file's owner cuts the torn record off; appends stay parseable.
        let mut owner = ResultStore::open(dir.path(), None).unwrap();
        owner.append(record("c", 0.7)).unwrap();
        let all = read_records(dir.path()).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[2].cell, "c");
    }

    #[test]
    fn a_corrupt_line_in_the_middle_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records-1-of-2.jsonl");
        let good = serde_json::to_string(&record("a", 0.9)).unwrap();
        std::fs::write(&path, format!("{good}\nnot json\n{good}\n")).unwrap();
        let err = read_records(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("records-1-of-2.jsonl") && err.contains("line 2"),
            "{err}"
        );
    }

    /// Issue 10 item 4: an AUC outside [0, 1] in a results file is an error naming the line.
    #[test]
    fn out_of_range_aucs_are_errors() {
        for bad in [5.0, -3.0, f64::NAN] {
            let dir = tempfile::tempdir().unwrap();
            let mut r = record("a", 0.9);
            r.auc = bad;
            // serde_json writes NaN as null: that too must not read as a result.
            let line = serde_json::to_string(&r).unwrap();
            std::fs::write(dir.path().join("records.jsonl"), format!("{line}\n")).unwrap();
            let err = read_records(dir.path()).unwrap_err().to_string();
            assert!(
                err.contains("records.jsonl") && err.contains("line 1"),
                "{bad}: {err}"
            );
        }
    }

    /// Issue 10 item 8: a second run on the same folder (or shard) is refused while the first
    /// holds it; shards of one folder run side by side; the lock goes with the store.
    #[test]
    fn one_writer_per_folder_or_shard() {
        let dir = tempfile::tempdir().unwrap();
        let first = ResultStore::open(dir.path(), None).unwrap();
        let err = ResultStore::open(dir.path(), None).err().unwrap();
        assert!(matches!(err, ExperimentError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("another eidn run"), "{err}");
        assert!(ResultStore::open(dir.path(), Some("1-of-2")).is_err());
        drop(first);
        let a = ResultStore::open(dir.path(), Some("1-of-2")).unwrap();
        let b = ResultStore::open(dir.path(), Some("2-of-2")).unwrap();
        assert!(ResultStore::open(dir.path(), Some("2-of-2")).is_err());
        assert!(ResultStore::open(dir.path(), None).is_err());
        drop((a, b));
        assert!(ResultStore::open(dir.path(), None).is_ok());
    }

    #[test]
    fn shards_are_merged_without_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let mut s1 = ResultStore::open(dir.path(), Some("1-of-2")).unwrap();
        s1.append(record("a", 0.9)).unwrap();
        let mut s2 = ResultStore::open(dir.path(), Some("2-of-2")).unwrap();
        s2.append(record("b", 0.7)).unwrap();
        s2.append(record("a", 0.9)).unwrap();
        let all = read_records(dir.path()).unwrap();
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn hashes_depend_on_every_field() {
        let a = serde_json::json!({"x": 1, "y": [1, 2]});
        let b = serde_json::json!({"y": [1, 2], "x": 1});
        let c = serde_json::json!({"x": 1, "y": [1, 3]});
        assert_eq!(config_hash(&a), config_hash(&b));
        assert_ne!(config_hash(&a), config_hash(&c));
        assert_eq!(config_hash(&a).len(), 16);
    }
}
