//! `eidn data verify`: which files of a dataset are present, whether their SHA-256 matches the
//! original, a known variant or nothing on record, and whether the data loads with the
//! expected records per split and class.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::files::sha256_file;
use super::manifest::{DatasetEntry, FileEntry, Manifest};
use super::{load, DataError, Dataset, DatasetName, Declaration};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every file matches the original distribution's checksum and the data loads.
    Exact,
    /// Every file matches a known re-encoded copy (named in `variant`) and the data loads.
    Variant,
    /// The data loads, but some files have no checksum on record (e.g. Concrete Cracks, or
    /// CIFAR-10 batches unpacked by hand).
    Unverified,
    Missing,
    /// The data loads, but a file's SHA-256 matches neither the original nor a known
    /// variant: not the data the numbers are about. `train` warns and goes on; the grid
    /// refuses it.
    Mismatch,
    /// The data does not load.
    Corrupt,
}

impl Status {
    /// Whether a run may use the data.
    pub fn usable(self) -> bool {
        matches!(self, Status::Exact | Status::Variant | Status::Unverified)
    }

    /// The status as result records and `eidn.json` name it ("exact", "variant jpeg-q75",
    /// "unverified", "checksum mismatch"); None when the data cannot be used at all.
    pub fn label(self, variant: Option<&str>) -> Option<String> {
        match self {
            Status::Exact => Some("exact".into()),
            Status::Variant => Some(format!("variant {}", variant.unwrap_or("?"))),
            Status::Unverified => Some("unverified".into()),
            Status::Mismatch => Some("checksum mismatch".into()),
            Status::Missing | Status::Corrupt => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "check")]
pub enum FileVerdict {
    Original,
    Variant {
        variant: String,
    },
    Mismatch {
        expected: String,
    },
    /// A known file name whose checksum is recorded only for a variant it does not match.
    Unknown,
}

#[derive(Clone, Debug, Serialize)]
pub struct FileCheck {
    pub name: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
    #[serde(flatten)]
    pub verdict: FileVerdict,
}

#[derive(Clone, Debug, Serialize)]
pub struct DatasetReport {
    pub name: String,
    pub status: Status,
    /// Which known variant the files are, when `status` is `variant`.
    pub variant: Option<String>,
    pub variant_description: Option<String>,
    pub dir: PathBuf,
    pub files: Vec<FileCheck>,
    pub train: usize,
    pub test: usize,
    pub train_per_class: Vec<usize>,
    pub test_per_class: Vec<usize>,
    pub class_names: Vec<String>,
    pub shape: Option<[usize; 3]>,
    /// What went wrong, or what the user should know.
    pub message: Option<String>,
    pub how_to_get: String,
}

/// Verifies one dataset under `data_dir`. Never fails: problems become the report's status.
pub fn verify(name: DatasetName, data_dir: &Path, manifest: &Manifest) -> DatasetReport {
    let entry = manifest.dataset(name);
    let dir = name.dir(data_dir);
    let files = match (entry, name.declaration()) {
        (Some(e), _) => check_files(e, &dir),
        (None, Some(d)) => check_declared(&d),
        (None, None) => Ok(Vec::new()),
    };
    // The split seed only matters for Concrete Cracks, and counts do not depend on it.
    let loaded = load(name, data_dir, 0);
    build_report(name, entry, dir, files, loaded)
}

fn build_report(
    name: DatasetName,
    entry: Option<&DatasetEntry>,
    dir: PathBuf,
    files: Result<Vec<FileCheck>, DataError>,
    loaded: Result<Dataset, DataError>,
) -> DatasetReport {
    let mut report = DatasetReport {
        name: name.to_string(),
        status: Status::Missing,
        variant: None,
        variant_description: None,
        dir,
        files: Vec::new(),
        train: 0,
        test: 0,
        train_per_class: Vec::new(),
        test_per_class: Vec::new(),
        class_names: Vec::new(),
        shape: None,
        message: None,
        how_to_get: match (entry, name.declaration()) {
            (Some(e), _) => e.how_to_get.clone(),
            (None, Some(d)) => format!("your own dataset, declared in {}", d.origin),
            (None, None) => String::new(),
        },
    };
    let files = match files {
        Ok(f) => f,
        Err(e) => {
            report.status = Status::Corrupt;
            report.message = Some(e.to_string());
            return report;
        }
    };
    report.files = files;
    let data = match loaded {
        Ok(d) => d,
        Err(e @ DataError::Missing { .. }) => {
            report.status = Status::Missing;
            report.message = Some(e.to_string());
            return report;
        }
        Err(e) => {
            report.status = Status::Corrupt;
            report.message = Some(e.to_string());
            return report;
        }
    };
    report.train = data.train.len();
    report.test = data.test.len();
    report.train_per_class = data.train.class_counts();
    report.test_per_class = data.test.class_counts();
    report.class_names = data.train.class_names.clone();
    report.shape = Some([data.train.channels, data.train.height, data.train.width]);

    let verdicts: Vec<&FileVerdict> = report.files.iter().map(|f| &f.verdict).collect();
    if let Some(bad) = report
        .files
        .iter()
        .find(|f| matches!(f.verdict, FileVerdict::Mismatch { .. }))
    {
        report.status = Status::Mismatch;
        report.message = Some(format!(
            "{}: SHA-256 does not match {}",
            bad.path.display(),
            if name.is_builtin() {
                format!("the original; delete it and run `eidn data fetch --dataset {name}`")
            } else {
                "the one declared for it".into()
            }
        ));
    } else if !verdicts.is_empty() && verdicts.iter().all(|v| **v == FileVerdict::Original) {
        report.status = Status::Exact;
    } else if let Some(v) = single_variant(&verdicts) {
        report.status = Status::Variant;
        report.variant_description = entry
            .and_then(|e| e.variants.iter().find(|x| x.name == v))
            .map(|x| x.description.clone());
        report.message = Some(format!(
            "known variant {v:?}, not the original distribution: {}",
            report.variant_description.clone().unwrap_or_default()
        ));
        report.variant = Some(v);
    } else {
        report.status = Status::Unverified;
        report.message = Some(if verdicts.is_empty() && !name.is_builtin() {
            "the data loads; no sha256 is declared for it, so its files are not checked".into()
        } else if verdicts.is_empty() {
            "the data loads, but no file with a recorded checksum was found".into()
        } else {
            "the data loads, but some files match no recorded checksum".into()
        });
    }
    report
}

fn single_variant(verdicts: &[&FileVerdict]) -> Option<String> {
    let mut name = None;
    for v in verdicts {
        match v {
            FileVerdict::Variant { variant } if name.is_none_or(|n| n == variant) => {
                name = Some(variant)
            }
            _ => return None,
        }
    }
    name.cloned()
}

/// Hashes every file under `dir` (and CIFAR-10's `cifar-10-batches-bin/`) whose name the
/// manifest knows, and judges it against the original and the variants.
fn check_files(entry: &DatasetEntry, dir: &Path) -> Result<Vec<FileCheck>, DataError> {
    let mut checks = Vec::new();
    for folder in [dir.to_path_buf(), dir.join("cifar-10-batches-bin")] {
        if !folder.is_dir() {
            continue;
        }
        for name in known_names(entry) {
            let path = folder.join(&name);
            if !path.is_file() {
                continue;
            }
            let (sha256, bytes) = sha256_file(&path)?;
            let verdict = judge(entry, &name, &sha256);
            checks.push(FileCheck {
                name,
                path,
                bytes,
                sha256,
                verdict,
            });
        }
    }
    Ok(checks)
}

/// Hashes each file a user's declaration gives a SHA-256 for; a listed file that is gone
/// is an error naming it.
fn check_declared(decl: &Declaration) -> Result<Vec<FileCheck>, DataError> {
    if !decl.path.is_dir() {
        // The folder itself is missing: loading says so, with the hint.
        return Ok(Vec::new());
    }
    let mut checks = Vec::new();
    for (name, expected) in &decl.sha256 {
        let path = decl.path.join(name);
        let (sha256, bytes) = sha256_file(&path)?;
        let verdict = if sha256 == *expected {
            FileVerdict::Original
        } else {
            FileVerdict::Mismatch {
                expected: expected.clone(),
            }
        };
        checks.push(FileCheck {
            name: name.clone(),
            path,
            bytes,
            sha256,
            verdict,
        });
    }
    Ok(checks)
}

fn known_names(entry: &DatasetEntry) -> Vec<String> {
    let mut names: Vec<String> = all_files(entry)
        .flat_map(|(_, f)| std::iter::once(f.name.clone()).chain(f.raw_name.clone()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// `(variant name or None for the original, file)` for every file the manifest lists.
fn all_files(entry: &DatasetEntry) -> impl Iterator<Item = (Option<&str>, &FileEntry)> {
    let originals = entry.files.iter().map(|f| (None, f));
    let variants = entry
        .variants
        .iter()
        .flat_map(|v| v.files.iter().map(move |f| (Some(v.name.as_str()), f)));
    originals.chain(variants)
}

fn judge(entry: &DatasetEntry, name: &str, sha256: &str) -> FileVerdict {
    let digest_for = |f: &FileEntry| {
        if f.name == name {
            f.sha256.clone()
        } else if f.raw_name.as_deref() == Some(name) {
            f.raw_sha256.clone()
        } else {
            None
        }
    };
    let mut original_digest = None;
    for (variant, f) in all_files(entry) {
        let Some(expected) = digest_for(f) else {
            continue;
        };
        if expected.eq_ignore_ascii_case(sha256) {
            return match variant {
                None => FileVerdict::Original,
                Some(v) => FileVerdict::Variant {
                    variant: v.to_string(),
                },
            };
        }
        if variant.is_none() {
            original_digest = Some(expected);
        }
    }
    match original_digest {
        Some(expected) => FileVerdict::Mismatch { expected },
        None => FileVerdict::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest::builtin()
    }

    #[test]
    fn judge_original_variant_mismatch_unknown() {
        let m = manifest();
        let mnist = m.dataset(DatasetName::Mnist).unwrap();
        let ok = "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609";
        assert_eq!(
            judge(mnist, "train-images-idx3-ubyte.gz", ok),
            FileVerdict::Original
        );
        let raw = "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db";
        assert_eq!(
            judge(mnist, "train-images-idx3-ubyte", raw),
            FileVerdict::Original
        );
        assert_eq!(
            judge(mnist, "train-images-idx3-ubyte.gz", &"0".repeat(64)),
            FileVerdict::Mismatch {
                expected: ok.into()
            }
        );
        let cifar = m.dataset(DatasetName::Cifar10).unwrap();
        let v = "8386af9b1b4baab63ba785c5ffa24a1b07085070c87a575e8b73f7425f776bb1";
        assert_eq!(
            judge(cifar, "data_batch_1.bin.gz", v),
            FileVerdict::Variant {
                variant: "jpeg-q75".into()
            }
        );
        // An unpacked original batch: no checksum of it on record, so not called corrupt.
        assert_eq!(
            judge(cifar, "data_batch_1.bin", &"0".repeat(64)),
            FileVerdict::Unknown
        );
    }

    #[test]
    fn variant_needs_one_variant_throughout() {
        let a = FileVerdict::Variant {
            variant: "a".into(),
        };
        let b = FileVerdict::Variant {
            variant: "b".into(),
        };
        assert_eq!(single_variant(&[&a, &a]), Some("a".into()));
        assert_eq!(single_variant(&[&a, &b]), None);
        assert_eq!(single_variant(&[&a, &FileVerdict::Unknown]), None);
    }
}
