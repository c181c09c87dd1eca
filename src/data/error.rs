//! The data module's one error type. Every variant names the file (or URL) it is about, so
//! that a user with a damaged download knows which file to replace. Underlying errors are
//! shown in the message, not chained as sources, so `{:#}` prints each cause once.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: not a readable gzip stream: {error}")]
    Gzip {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "{path}: decompresses to more than {limit} bytes; refusing to go on (not a dataset file?)"
    )]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{path}: bad magic number {found:#010x}, expected {expected:#010x} ({what})")]
    BadMagic {
        path: PathBuf,
        expected: u32,
        found: u32,
        what: &'static str,
    },
    #[error("{path}: truncated: {actual} bytes, but at least {needed} are needed for the header")]
    Truncated {
        path: PathBuf,
        needed: u64,
        actual: u64,
    },
    #[error("{path}: header says {header}, i.e. {expected} bytes, but the file holds {actual}")]
    HeaderSizeMismatch {
        path: PathBuf,
        header: String,
        expected: u64,
        actual: u64,
    },
    #[error("{path}: unexpected header: {message}")]
    BadHeader { path: PathBuf, message: String },
    #[error("{images}: {n_images} images but {labels} has {n_labels} labels")]
    CountMismatch {
        images: PathBuf,
        labels: PathBuf,
        n_images: usize,
        n_labels: usize,
    },
    #[error("{path}: {len} bytes is not a whole number of {record_size}-byte records")]
    RecordSize {
        path: PathBuf,
        len: u64,
        record_size: usize,
    },
    #[error("{path}: record {index} has label {label}, but the dataset has {classes} classes")]
    BadLabel {
        path: PathBuf,
        index: usize,
        label: u8,
        classes: usize,
    },
    #[error("{path}: expected {expected} class names, found {found}")]
    BadClassNames {
        path: PathBuf,
        expected: usize,
        found: usize,
    },
    #[error("{path}: image does not decode: {error}")]
    Image {
        path: PathBuf,
        error: image::ImageError,
    },
    #[error("{archive}: member {member:?} escapes the archive (absolute path or '..'); refusing to read it")]
    UnsafeArchivePath { archive: PathBuf, member: String },
    #[error("{path}: {message}")]
    BadCache { path: PathBuf, message: String },
    #[error("{path}: holds no {what}; the file is empty or cut short")]
    Empty { path: PathBuf, what: &'static str },
    #[error("{archive}: member {member:?} {message}")]
    BadArchiveMember {
        archive: PathBuf,
        member: String,
        message: String,
    },
    #[error("{path}: not a complete JPEG ({message}); the file is cut short or damaged")]
    TruncatedImage { path: PathBuf, message: String },
    #[error("{dataset}: {what} not found under {dir}. {hint}")]
    Missing {
        dataset: &'static str,
        what: String,
        dir: PathBuf,
        hint: String,
    },
    #[error("{path}: {message}")]
    Layout { path: PathBuf, message: String },
    #[error("unknown dataset {name:?}: {known}")]
    UnknownDataset { name: String, known: String },
    #[error("{origin}: {message}")]
    Declaration { origin: String, message: String },
    #[error("protocol {protocol}: {message}")]
    Protocol { protocol: String, message: String },
    #[error("manifest {path}: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("{dataset} in {dir} does not load: {message}; delete the damaged file and rerun (it will be downloaded)")]
    Corrupt {
        dataset: String,
        dir: PathBuf,
        message: String,
    },
    #[error(
        "{dataset} is missing in {dir} and could not be downloaded ({error}).\nTried: {tried}.\n\
         Copy the files there by hand (see `eidn data verify --dataset {dataset}`), point --data-dir or \
         EIDN_DATA_DIR at a copy, or pass --data-mirror URL; a partial download resumes on the next run."
    )]
    FetchFailed {
        dataset: String,
        dir: PathBuf,
        error: String,
        tried: String,
    },
    #[error("{dataset} was downloaded into {dir} but does not verify: {message}")]
    NotVerified {
        dataset: String,
        dir: PathBuf,
        message: String,
    },
    #[error("download of {url} failed: {message}")]
    Download { url: String, message: String },
    #[error("{path}: SHA-256 {actual} does not match the expected {expected}")]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{path}: {actual} bytes, expected {expected}")]
    WrongSize {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            error,
        }
    }
}
