//! `datasets/manifest.toml`: every file of every dataset with its canonical URLs, size and
//! SHA-256, plus known re-encoded variants (the shared CIFAR-10 copy). The manifest is
//! compiled into the binary so that `verify` and `fetch` work from any data directory.

use std::path::Path;

use serde::Deserialize;

use super::{DataError, DatasetName};

const BUILTIN: &str = include_str!("../../datasets/manifest.toml");

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(rename = "dataset")]
    pub datasets: Vec<DatasetEntry>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetEntry {
    pub name: String,
    pub title: String,
    pub homepage: String,
    /// Shown when the dataset is missing.
    pub how_to_get: String,
    /// Optional step after download (e.g. unpacking a RAR archive).
    #[serde(default)]
    pub after_fetch: Option<String>,
    #[serde(rename = "file")]
    pub files: Vec<FileEntry>,
    #[serde(default, rename = "variant")]
    pub variants: Vec<Variant>,
}

/// A re-encoded copy that is accepted, and reported, as not the original.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub name: String,
    pub description: String,
    #[serde(rename = "file")]
    pub files: Vec<FileEntry>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub name: String,
    /// Tried in order; empty for variant files, which cannot be downloaded.
    #[serde(default)]
    pub urls: Vec<String>,
    pub size: Option<u64>,
    /// `None` where no checksum has been published (the file is then reported unverified).
    pub sha256: Option<String>,
    /// Name, size and SHA-256 of the decompressed file, so a gunzipped copy verifies too.
    pub raw_name: Option<String>,
    pub raw_size: Option<u64>,
    pub raw_sha256: Option<String>,
}

impl Manifest {
    pub fn builtin() -> Manifest {
        Manifest::parse(Path::new("datasets/manifest.toml (built in)"), BUILTIN)
            .expect("the built-in manifest is checked by a unit test")
    }

    pub fn from_file(path: &Path) -> Result<Manifest, DataError> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        Manifest::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Manifest, DataError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| DataError::Manifest {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        for d in &manifest.datasets {
            if DatasetName::parse(&d.name).is_none() {
                return Err(DataError::Manifest {
                    path: path.to_path_buf(),
                    message: format!("unknown dataset {:?}", d.name),
                });
            }
            let all = d
                .files
                .iter()
                .chain(d.variants.iter().flat_map(|v| &v.files));
            for f in all {
                for h in f.sha256.iter().chain(&f.raw_sha256) {
                    if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(DataError::Manifest {
                            path: path.to_path_buf(),
                            message: format!("{}: {h:?} is not a SHA-256 hex digest", f.name),
                        });
                    }
                }
            }
        }
        Ok(manifest)
    }

    pub fn dataset(&self, name: DatasetName) -> Option<&DatasetEntry> {
        self.datasets.iter().find(|d| d.name == name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_manifest_lists_every_dataset() {
        let m = Manifest::parse(Path::new("builtin"), BUILTIN).unwrap();
        for name in DatasetName::BUILTIN {
            let d = m.dataset(name).unwrap_or_else(|| panic!("{name} missing"));
            assert!(!d.files.is_empty());
            assert!(
                d.files.iter().all(|f| !f.urls.is_empty()),
                "{name}: a file without URL"
            );
        }
        let mnist = m.dataset(DatasetName::Mnist).unwrap();
        assert_eq!(mnist.files.len(), 4);
        assert!(mnist
            .files
            .iter()
            .all(|f| f.sha256.is_some() && f.raw_sha256.is_some()));
        let cifar = m.dataset(DatasetName::Cifar10).unwrap();
        assert_eq!(cifar.variants.len(), 1);
        assert_eq!(cifar.variants[0].files.len(), 7);
    }

    #[test]
    fn bad_digest_is_refused() {
        let text = r#"
[[dataset]]
name = "mnist"
title = "t"
homepage = "h"
how_to_get = "g"
[[dataset.file]]
name = "a"
sha256 = "xyz"
"#;
        let err = Manifest::parse(Path::new("m.toml"), text).unwrap_err();
        assert!(err.to_string().contains("not a SHA-256"), "{err}");
    }
}
