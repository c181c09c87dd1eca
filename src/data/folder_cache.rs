//! The decoded-image cache of a folder dataset: every image decoded once, packed into one
//! file keyed by the listing (names, sizes, labels, classes, split, options) and by each
//! file's times and contents, with a checksum of its own payload. A stale or damaged cache
//! is rebuilt, never read.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::files::{warn_once, write_atomic};
use super::{DataError, ImageSet};

const CACHE_MAGIC: &[u8; 8] = b"EIDNIF02";
/// Magic, five sizes, the listing's fingerprint, the payload's SHA-256.
const CACHE_HEADER: usize = 8 + 5 * 4 + 32 + 32;
/// Per file: its modification and status-change times (ns) and the SHA-256 of its bytes.
const CACHE_ENTRY: usize = 8 + 8 + 32;
/// The header's `n_train` when the split is made per seed rather than given by folders.
const NO_SPLIT: u32 = u32::MAX;

/// An image file with its size in bytes and its label.
pub(super) type Listed = (PathBuf, u64, u8);

/// What a cache is for: the folder's listing and the options that shape its pixels.
pub(super) struct Key<'a> {
    pub root: &'a Path,
    pub files: &'a [Listed],
    pub class_names: &'a [String],
    /// Training files first when `train/` and `test/` give the split.
    pub n_train: Option<usize>,
    pub size: Option<[usize; 2]>,
    pub channels: Option<usize>,
}

/// Everything the cache's pixels depend on except the files' contents: the options, the
/// classes, the split and each file's name, label and size.
pub(super) fn fingerprint(key: &Key) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(format!(
        "{:?} {:?} {:?} {:?}\n",
        key.size, key.channels, key.class_names, key.n_train
    ));
    for (path, len, label) in key.files {
        let name = path
            .strip_prefix(key.root)
            .unwrap_or(path)
            .to_string_lossy();
        h.update(format!("{label}\t{name}\t{len}\n"));
    }
    h.finalize().into()
}

/// A file's modification and status-change times, in nanoseconds since the epoch (0 when
/// unknown). Why the status change too: a user can set a file's modification time back,
/// but not its status-change time, which any rewrite moves.
fn stamps(path: &Path) -> [u64; 2] {
    let Ok(meta) = std::fs::metadata(path) else {
        return [0, 0];
    };
    let modified = (meta.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64);
    #[cfg(unix)]
    let changed = {
        use std::os::unix::fs::MetadataExt;
        (meta.ctime() as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(meta.ctime_nsec() as u64)
    };
    #[cfg(not(unix))]
    let changed = 0;
    [modified, changed]
}

/// SHA-256 of a file's bytes.
fn content_hash(path: &Path) -> Result<[u8; 32], DataError> {
    let bytes = super::images::read_image_file(path)?;
    Ok(Sha256::digest(&bytes).into())
}

/// The cached images when the cache was written for these files with these contents:
/// files whose times changed are hashed again and compared with the hash taken when the
/// cache was written (an image replaced by another of the same size, its modification time
/// set back, is still caught). A damaged cache (its payload checksum fails) is rebuilt, never
/// read.
pub(super) fn read_cache(
    path: &Path,
    fingerprint: &[u8; 32],
    key: &Key,
) -> Result<Option<ImageSet>, DataError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(DataError::io(path, e)),
    };
    let rebuild = |why: &str| {
        warn_once(format!(
            "warning: {}: {why}; rebuilding it from the images",
            path.display()
        ));
        Ok(None)
    };
    if bytes.len() < CACHE_HEADER || &bytes[..8] != CACHE_MAGIC {
        return rebuild("not an image cache of this eidn version");
    }
    let word = |i: usize| u32::from_le_bytes(bytes[8 + 4 * i..12 + 4 * i].try_into().unwrap());
    let [c, h, w, n, n_train] = [0, 1, 2, 3, 4].map(|i| word(i) as usize);
    if &bytes[28..60] != fingerprint {
        // Files or options changed since the cache was written.
        return Ok(None);
    }
    let image_len = (c * h * w) as u64;
    let table = CACHE_HEADER + n * CACHE_ENTRY;
    if bytes.len() as u64 != table as u64 + n as u64 * (1 + image_len)
        || n != key.files.len()
        || key.n_train.map_or(NO_SPLIT as usize, |t| t) != n_train
    {
        return rebuild("its length does not match its header");
    }
    let payload = &bytes[table..];
    if Sha256::digest(payload).as_slice() != &bytes[60..92] {
        return rebuild("its checksum fails (the file is damaged)");
    }
    // Files touched but unchanged (copied, `touch`ed): the cache is still good, and written
    // again with their new times so the next load need not hash them.
    let mut restamp = false;
    for (i, (file, _, _)) in key.files.iter().enumerate() {
        let entry = &bytes[CACHE_HEADER + i * CACHE_ENTRY..][..CACHE_ENTRY];
        let stored = [0, 8].map(|at| u64::from_le_bytes(entry[at..at + 8].try_into().unwrap()));
        if stamps(file) != stored {
            if content_hash(file)?[..] != entry[16..] {
                // This image changed since the cache was written.
                return Ok(None);
            }
            restamp = true;
        }
    }
    let set = ImageSet {
        labels: payload[..n].to_vec(),
        pixels: payload[n..].to_vec(),
        channels: c,
        height: h,
        width: w,
        class_names: key.class_names.to_vec(),
    };
    set.check(path)?;
    if restamp {
        let _ = write_cache(path, fingerprint, key, &set);
    }
    Ok(Some(set))
}

pub(super) fn write_cache(
    path: &Path,
    fingerprint: &[u8; 32],
    key: &Key,
    set: &ImageSet,
) -> Result<(), DataError> {
    let n = set.len();
    let mut bytes = Vec::with_capacity(CACHE_HEADER + n * (CACHE_ENTRY + 1) + set.pixels.len());
    bytes.extend_from_slice(CACHE_MAGIC);
    let n_train = key.n_train.map_or(NO_SPLIT, |t| t as u32);
    for word in [
        set.channels as u32,
        set.height as u32,
        set.width as u32,
        n as u32,
        n_train,
    ] {
        bytes.extend_from_slice(&word.to_le_bytes());
    }
    bytes.extend_from_slice(fingerprint);
    let mut payload = Sha256::new();
    payload.update(&set.labels);
    payload.update(&set.pixels);
    bytes.extend_from_slice(&payload.finalize());
    for (file, _, _) in key.files {
        for stamp in stamps(file) {
            bytes.extend_from_slice(&stamp.to_le_bytes());
        }
        bytes.extend_from_slice(&content_hash(file)?);
    }
    bytes.extend_from_slice(&set.labels);
    bytes.extend_from_slice(&set.pixels);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
    }
    write_atomic(path, &bytes)
}
