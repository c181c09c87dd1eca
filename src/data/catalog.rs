//! Dataset names and what they stand for: the three built-in datasets, and a user's own,
//! declared in a TOML file (`datasets.toml` in the data directory, or `--datasets FILE`) or
//! named inline on the command line as `idx:PATH` / `folder:PATH` / `mvtec:PATH`.
//!
//! A [`DatasetName`] is a `Copy` handle (an interned string), so protocols, records, cells
//! and maps keep using it by value; what a user's name stands for (kind, folder, options,
//! checksums) is looked up in a process-wide registry that the binary fills once at start-up,
//! before any command runs. A name read back from a record needs no declaration: only loading
//! the data does.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use serde::{Deserialize, Serialize};

use super::folder::FolderOptions;
use super::DataError;

/// A dataset's name: one of the built-in three, or one a user declared.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DatasetName(&'static str);

// The built-ins read as enum variants (`DatasetName::Mnist`), which they were before user
// datasets existed; `match` arms can still name them.
#[allow(non_upper_case_globals)]
impl DatasetName {
    pub const Mnist: DatasetName = DatasetName("mnist");
    pub const Cifar10: DatasetName = DatasetName("cifar10");
    pub const Concrete: DatasetName = DatasetName("concrete");
}

impl DatasetName {
    /// The datasets the paper evaluates on, in its order.
    pub const BUILTIN: [DatasetName; 3] = [
        DatasetName::Mnist,
        DatasetName::Cifar10,
        DatasetName::Concrete,
    ];

    /// Name used on the command line, in records and as the folder under the data dir.
    pub fn as_str(self) -> &'static str {
        self.0
    }

    pub fn is_builtin(self) -> bool {
        Self::BUILTIN.contains(&self)
    }

    /// A built-in or declared dataset by name.
    pub fn parse(s: &str) -> Option<Self> {
        let name = Self::BUILTIN.into_iter().find(|d| d.as_str() == s);
        name.or_else(|| registry().get_key_value(s).map(|(k, _)| DatasetName(k)))
    }

    /// A name as the command line or a profile gives it: a built-in or declared name, or an
    /// inline `idx:PATH` / `folder:PATH`, which declares the folder under its own name.
    pub fn resolve(s: &str) -> Result<Self, DataError> {
        let mut all = Self::resolve_all(s)?;
        if all.len() == 1 {
            return Ok(all.remove(0));
        }
        let names: Vec<&str> = all.iter().map(|n| n.as_str()).collect();
        Err(DataError::Declaration {
            origin: format!("{s} on the command line"),
            message: format!(
                "the folder holds {} MVTec categories ({}): name one category's folder, or \
                 declare the parent in datasets.toml and name its datasets",
                all.len(),
                names.join(", ")
            ),
        })
    }

    /// As [`Self::resolve`], but an inline MVTec parent folder gives every category.
    pub fn resolve_all(s: &str) -> Result<Vec<Self>, DataError> {
        if let Some(name) = Self::parse(s) {
            return Ok(vec![name]);
        }
        for (prefix, kind) in [
            ("idx:", KindName::Idx),
            ("folder:", KindName::Folder),
            ("mvtec:", KindName::Mvtec),
        ] {
            if let Some(path) = s.strip_prefix(prefix) {
                return declare_inline(kind, Path::new(path));
            }
        }
        let declared: Vec<&str> = registry().keys().copied().collect();
        Err(DataError::UnknownDataset {
            name: s.to_string(),
            known: Self::BUILTIN
                .iter()
                .map(|d| d.as_str())
                .chain(declared)
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Any name, unchecked: for names read back from records and saved profiles.
    pub fn intern(s: &str) -> Self {
        if let Some(b) = Self::BUILTIN.into_iter().find(|d| d.as_str() == s) {
            return b;
        }
        let mut names = INTERNED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = names.get(s) {
            return DatasetName(n);
        }
        // A handful of names per process: leaking them is what makes the handle `Copy`.
        let leaked: &'static str = Box::leak(s.to_string().into_boxed_str());
        names.insert(leaked);
        DatasetName(leaked)
    }

    /// The user's declaration behind this name (None for the built-ins and unknown names).
    pub fn declaration(self) -> Option<Declaration> {
        registry().get(self.0).cloned()
    }

    /// The declaration, or an error saying how to declare the name.
    pub fn declared(self) -> Result<Declaration, DataError> {
        self.declaration().ok_or_else(|| DataError::UnknownDataset {
            name: self.0.to_string(),
            known: "declare it in datasets.toml in the data directory, pass --datasets FILE, \
                        or name it inline as folder:PATH or idx:PATH"
                .into(),
        })
    }

    /// Folder of this dataset: under the data directory for the built-ins, the declared
    /// folder for a user's.
    pub fn dir(self, data_dir: &Path) -> PathBuf {
        match self.declaration() {
            Some(d) => d.path,
            None => data_dir.join(self.as_str()),
        }
    }

    /// How reports title the dataset.
    pub fn label(self) -> String {
        match self {
            DatasetName::Mnist => "MNIST".into(),
            DatasetName::Cifar10 => "CIFAR-10".into(),
            DatasetName::Concrete => "Concrete Cracks".into(),
            other => other.as_str().to_string(),
        }
    }

    /// Whether the dataset is an MVTec AD tree (class 0 `good`, defects in the test split only).
    pub fn is_mvtec(self) -> bool {
        self.declaration()
            .is_some_and(|d| matches!(d.kind, Kind::Folder(o) if o.mvtec))
    }

    /// Whether the train/test split depends on the seed (a seeded split of pooled images).
    pub fn split_uses_seed(self) -> bool {
        match self {
            DatasetName::Mnist | DatasetName::Cifar10 => false,
            DatasetName::Concrete => true,
            other => other
                .declaration()
                .is_none_or(|d| matches!(d.kind, Kind::Folder(_))),
        }
    }
}

impl PartialOrd for DatasetName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// The built-ins first, in the paper's order, then the user's by name: reports list them so.
impl Ord for DatasetName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let rank = |d: &DatasetName| Self::BUILTIN.iter().position(|b| b == d).unwrap_or(3);
        (rank(self), self.0).cmp(&(rank(other), other.0))
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl Serialize for DatasetName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for DatasetName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(DatasetName::intern(&s))
    }
}

static INTERNED: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
static REGISTRY: RwLock<BTreeMap<&'static str, Declaration>> = RwLock::new(BTreeMap::new());

fn registry() -> std::sync::RwLockReadGuard<'static, BTreeMap<&'static str, Declaration>> {
    REGISTRY.read().unwrap_or_else(|e| e.into_inner())
}

/// What a user's dataset is made of.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// The four MNIST-format IDX files; `classes` names the labels (default "0", "1", ...).
    Idx { classes: Option<Vec<String>> },
    /// torchvision's ImageFolder layout.
    Folder(FolderOptions),
}

/// A user's dataset as declared.
#[derive(Clone, Debug, PartialEq)]
pub struct Declaration {
    pub name: DatasetName,
    pub kind: Kind,
    /// The dataset's folder (relative paths are taken from the declaring file's folder).
    pub path: PathBuf,
    /// Expected SHA-256 per file, by path relative to `path`; without any, the data's status
    /// is "unverified".
    pub sha256: BTreeMap<String, String>,
    /// Where it was declared, for error messages.
    pub origin: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KindName {
    Idx,
    Folder,
    /// The MVTec AD layout (a folder dataset with `train/good`, `test/good`, `test/<type>`).
    Mvtec,
}

/// One `[[dataset]]` of a datasets file, as written; `eidn.json` keeps one (with an
/// absolute path) so that `evaluate` finds a model's data without the declaring file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    pub name: String,
    pub kind: KindName,
    pub path: PathBuf,
    /// Network input `[height, width]` (folder only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<[usize; 2]>,
    /// 1 (grey) or 3 (RGB) (folder only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<usize>,
    /// Share of each class held out for testing when there are no train/ and test/ folders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_fraction: Option<f64>,
    /// Class names by label (idx only; a folder's classes are its subfolders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sha256: BTreeMap<String, String>,
}

impl Declaration {
    /// The declaration as a datasets file would spell it.
    pub fn spec(&self) -> DatasetSpec {
        let (kind, size, channels, test_fraction, classes) = match &self.kind {
            Kind::Idx { classes } => (KindName::Idx, None, None, None, classes.clone()),
            Kind::Folder(o) if o.mvtec => (KindName::Mvtec, o.size, o.channels, None, None),
            Kind::Folder(o) => (
                KindName::Folder,
                o.size,
                o.channels,
                Some(o.test_fraction),
                None,
            ),
        };
        DatasetSpec {
            name: self.name.to_string(),
            kind,
            path: self.path.clone(),
            size,
            channels,
            test_fraction,
            classes,
            sha256: self.sha256.clone(),
        }
    }
}

/// Declares `spec` unless its name is already declared (the current declaration wins).
pub fn declare_spec(spec: &DatasetSpec, origin: &str) -> Result<DatasetName, DataError> {
    if let Some(name) = DatasetName::parse(&spec.name) {
        return Ok(name);
    }
    let decl = entry_declaration(spec.clone(), Path::new("."), origin)?;
    declare(decl)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DatasetsFile {
    #[serde(rename = "dataset", default)]
    datasets: Vec<DatasetSpec>,
}

/// The default datasets file inside a data directory.
pub const DATASETS_FILE: &str = "datasets.toml";

/// Declares every `[[dataset]]` of `path`; returns their names.
pub fn declare_file(path: &Path) -> Result<Vec<DatasetName>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let bad = |message: String| DataError::Declaration {
        origin: path.display().to_string(),
        message,
    };
    let file: DatasetsFile = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut names = Vec::new();
    for entry in file.datasets {
        let origin = format!("{} (dataset {:?})", path.display(), entry.name);
        let decl = entry_declaration(entry, base, &origin)?;
        for decl in categories(decl)? {
            names.push(declare(decl)?);
        }
    }
    Ok(names)
}

fn entry_declaration(e: DatasetSpec, base: &Path, origin: &str) -> Result<Declaration, DataError> {
    let bad = |message: String| {
        Err(DataError::Declaration {
            origin: origin.to_string(),
            message,
        })
    };
    check_name(&e.name, origin)?;
    let kind = match e.kind {
        KindName::Idx => {
            if e.size.is_some() || e.channels.is_some() || e.test_fraction.is_some() {
                return bad("size, channels and test_fraction apply to folder datasets only (IDX files carry their own size and split)".into());
            }
            Kind::Idx { classes: e.classes }
        }
        KindName::Folder | KindName::Mvtec => {
            if e.kind == KindName::Mvtec && e.test_fraction.is_some() {
                return bad("test_fraction does not apply to mvtec datasets (train/ and test/ give the split)".into());
            }
            if e.classes.is_some() {
                return bad(
                    "classes applies to idx datasets only (a folder's classes are its subfolders)"
                        .into(),
                );
            }
            let options = FolderOptions {
                size: e.size,
                channels: e.channels,
                test_fraction: e
                    .test_fraction
                    .unwrap_or(FolderOptions::DEFAULT_TEST_FRACTION),
                mvtec: e.kind == KindName::Mvtec,
                ..FolderOptions::default()
            };
            if let Err(message) = options.check() {
                return bad(message);
            }
            Kind::Folder(options)
        }
    };
    for (file, hash) in &e.sha256 {
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return bad(format!("sha256 of {file:?} is not 64 hex digits"));
        }
    }
    let path = if e.path.is_absolute() {
        e.path
    } else {
        base.join(e.path)
    };
    Ok(Declaration {
        name: DatasetName::intern(&e.name),
        kind,
        path,
        sha256: e
            .sha256
            .into_iter()
            .map(|(f, h)| (f, h.to_ascii_lowercase()))
            .collect(),
        origin: origin.to_string(),
    })
}

/// An `mvtec` declaration of a parent folder (`PATH/<category>/train/good/...`, as MVTec AD
/// and VisA ship) becomes one dataset per category, named `<name>-<category>`; any other
/// declaration stays itself.
fn categories(decl: Declaration) -> Result<Vec<Declaration>, DataError> {
    let is_parent = matches!(&decl.kind, Kind::Folder(o) if o.mvtec)
        && decl.path.is_dir()
        && !decl.path.join("train").exists();
    if !is_parent {
        return Ok(vec![decl]);
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&decl.path).map_err(|e| DataError::io(&decl.path, e))? {
        let entry = entry.map_err(|e| DataError::io(&decl.path, e))?;
        let sub = entry.path();
        let Some(category) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !category.starts_with('.') && sub.join("train").join("good").is_dir() {
            found.push((category, sub));
        }
    }
    if found.is_empty() {
        // The loader names what is missing.
        return Ok(vec![decl]);
    }
    found.sort();
    let mut out = Vec::new();
    for (category, path) in found {
        let name = format!("{}-{}", decl.name, sanitise(&category));
        check_name(&name, &decl.origin)?;
        out.push(Declaration {
            name: DatasetName::intern(&name),
            path,
            sha256: BTreeMap::new(),
            origin: format!("{} (category {category})", decl.origin),
            kind: decl.kind.clone(),
        });
    }
    Ok(out)
}

/// A folder name as part of a dataset name: lower case, anything but letters, digits, `-`
/// and `_` as `_`.
fn sanitise(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Letters, digits, `-` and `_`: the name becomes part of folder names and cell ids.
fn check_name(name: &str, origin: &str) -> Result<(), DataError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(DataError::Declaration {
            origin: origin.to_string(),
            message: format!("name {name:?} must be letters, digits, - or _"),
        });
    }
    if DatasetName::BUILTIN.iter().any(|b| b.as_str() == name) {
        return Err(DataError::Declaration {
            origin: origin.to_string(),
            message: format!(
                "{name:?} is a built-in dataset; give yours another name (e.g. my-{name})"
            ),
        });
    }
    Ok(())
}

/// `idx:PATH` / `folder:PATH` / `mvtec:PATH`: the folder's own name names the dataset (an
/// MVTec parent folder gives one per category).
fn declare_inline(kind: KindName, path: &Path) -> Result<Vec<DatasetName>, DataError> {
    let prefix = match kind {
        KindName::Idx => "idx",
        KindName::Folder => "folder",
        KindName::Mvtec => "mvtec",
    };
    let origin = format!("{prefix}:{} on the command line", path.display());
    if path.as_os_str().is_empty() {
        return Err(DataError::Declaration {
            origin,
            message: format!(
                "no path after the colon: name the dataset's folder, e.g. {prefix}:./parts"
            ),
        });
    }
    let abs = std::path::absolute(path).map_err(|e| DataError::io(path, e))?;
    let stem = sanitise(
        &abs.file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
    );
    let entry = DatasetSpec {
        name: stem,
        kind,
        path: abs,
        size: None,
        channels: None,
        test_fraction: None,
        classes: None,
        sha256: BTreeMap::new(),
    };
    let decl = entry_declaration(entry, Path::new("."), &origin)?;
    categories(decl)?.into_iter().map(declare).collect()
}

/// Registers a declaration; declaring the same dataset twice is fine, two different ones
/// under one name are an error naming both places.
pub fn declare(decl: Declaration) -> Result<DatasetName, DataError> {
    let mut reg = REGISTRY.write().unwrap_or_else(|e| e.into_inner());
    let name = decl.name;
    if let Some(old) = reg.get(name.as_str()) {
        if old.kind != decl.kind || old.path != decl.path || old.sha256 != decl.sha256 {
            return Err(DataError::Declaration {
                origin: decl.origin,
                message: format!(
                    "dataset {name:?} is already declared differently in {}",
                    old.origin
                ),
            });
        }
        return Ok(name);
    }
    reg.insert(name.as_str(), decl);
    Ok(name)
}

/// Declares `datasets.toml` of the data directory (when there is one) and `extra` (when
/// given): what the binary calls before running a command.
pub fn declare_all(data_dir: &Path, extra: Option<&Path>) -> Result<Vec<DatasetName>, DataError> {
    let mut names = Vec::new();
    let default = data_dir.join(DATASETS_FILE);
    if default.is_file() {
        names.extend(declare_file(&default)?);
    }
    if let Some(file) = extra {
        names.extend(declare_file(file)?);
    }
    Ok(names)
}

/// Every declared dataset, by name.
pub fn declared() -> Vec<DatasetName> {
    registry().keys().map(|k| DatasetName(k)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_match_and_order_before_users() {
        let user = DatasetName::intern("zzz-parts");
        let a = DatasetName::intern("aaa");
        let mut all = vec![user, DatasetName::Concrete, a, DatasetName::Mnist];
        all.sort();
        assert_eq!(all, [DatasetName::Mnist, DatasetName::Concrete, a, user]);
        assert_eq!(DatasetName::intern("mnist"), DatasetName::Mnist);
        assert!(matches!(DatasetName::Cifar10, DatasetName::Cifar10));
        let json = serde_json::to_string(&user).unwrap();
        assert_eq!(json, "\"zzz-parts\"");
        assert_eq!(serde_json::from_str::<DatasetName>(&json).unwrap(), user);
    }

    #[test]
    fn declarations_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("datasets.toml");
        let write = |text: &str| std::fs::write(&file, text).unwrap();
        write("[[dataset]]\nname = \"mnist\"\nkind = \"folder\"\npath = \"x\"\n");
        let err = declare_file(&file).unwrap_err().to_string();
        assert!(
            err.contains("built-in") && err.contains("datasets.toml"),
            "{err}"
        );
        write("[[dataset]]\nname = \"parts\"\nkind = \"folder\"\npath = \"x\"\nchannels = 2\n");
        let err = declare_file(&file).unwrap_err().to_string();
        assert!(err.contains("channels"), "{err}");
        write("[[dataset]]\nname = \"cat-unit-test\"\nkind = \"folder\"\npath = \"imgs\"\nsize = [16, 16]\n");
        let names = declare_file(&file).unwrap();
        let decl = names[0].declaration().unwrap();
        assert_eq!(decl.path, dir.path().join("imgs"));
        assert_eq!(DatasetName::parse("cat-unit-test"), Some(names[0]));
        // The same again is fine; a different folder under the same name is not.
        declare_file(&file).unwrap();
        write("[[dataset]]\nname = \"cat-unit-test\"\nkind = \"folder\"\npath = \"other\"\n");
        let err = declare_file(&file).unwrap_err().to_string();
        assert!(err.contains("already declared"), "{err}");
        let err = DatasetName::resolve("nope-unit-test")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mnist") && err.contains("cat-unit-test"),
            "{err}"
        );
        let inline = DatasetName::resolve(&format!("folder:{}/My Parts", dir.path().display()));
        assert_eq!(inline.unwrap().as_str(), "my_parts");
    }
}
