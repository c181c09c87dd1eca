//! Reading dataset files that may be gzipped, hashing them, and writing files atomically.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::DataError;

/// No dataset file here decompresses to more than ~180 MB; a stream that goes past this is
/// not one of ours (or is a decompression bomb), so stop before it eats the memory.
pub(crate) const MAX_DECOMPRESSED: u64 = 1 << 30;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Reads `path` whole, gunzipping it when it starts with the gzip magic bytes (whatever its
/// name says), so raw and `.gz` copies of the same file load alike. Neither a raw file nor a
/// decompressed stream may pass [`MAX_DECOMPRESSED`]: a raw file's size is checked before a
/// byte is read, a gzip stream is decompressed from disk and stopped at the limit.
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let io = |e| DataError::io(path, e);
    let mut file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut magic = [0u8; 2];
    let got = file.read(&mut magic).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    if got == 2 && magic == GZIP_MAGIC {
        return gunzip_from(path, std::io::BufReader::new(file), len);
    }
    if len > MAX_DECOMPRESSED {
        return Err(DataError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_DECOMPRESSED,
        });
    }
    let mut out = Vec::with_capacity(len as usize);
    file.read_to_end(&mut out).map_err(io)?;
    Ok(out)
}

fn gunzip_from(path: &Path, compressed: impl Read, len: u64) -> Result<Vec<u8>, DataError> {
    // Typical ratio for these files is 1-5x; reserve a guess, not a header's claim.
    let mut out = Vec::with_capacity(len.saturating_mul(4).min(256 << 20) as usize);
    let decoder = flate2::read::MultiGzDecoder::new(compressed);
    decoder
        .take(MAX_DECOMPRESSED + 1)
        .read_to_end(&mut out)
        .map_err(|error| DataError::Gzip {
            path: path.to_path_buf(),
            error,
        })?;
    if out.len() as u64 > MAX_DECOMPRESSED {
        return Err(DataError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_DECOMPRESSED,
        });
    }
    Ok(out)
}

/// Finds the first of `names` that exists in `dir`.
pub(crate) fn find_first(dir: &Path, names: &[String]) -> Option<PathBuf> {
    names.iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

/// `name` and `name.gz`, in that order: the raw and gzipped spellings of a dataset file.
pub(crate) fn raw_or_gz(name: &str) -> Vec<String> {
    vec![name.to_string(), format!("{name}.gz")]
}

/// Hex SHA-256 and length of a file, streamed so that big archives are not held in memory.
pub fn sha256_file(path: &Path) -> Result<(String, u64), DataError> {
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), len))
}

pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A temporary sibling name for `path`: hidden, and ending in `.part`, so a half-written
/// file never carries the name a loader looks for.
pub(crate) fn part_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.part", std::process::id()))
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a crash leaves either
/// the old file or the new one, never half of one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    let tmp = part_path(path);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(DataError::io(path, e));
    }
    Ok(())
}

/// Prints `message` on stderr once per process: a dataset is listed again by every step
/// that needs it (verify, the plan, the load), and its warnings need saying once.
pub fn warn_once(message: String) {
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    if !said.contains(&message) {
        eprintln!("{message}");
        said.push(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_and_raw_read_alike() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("a");
        let gz = dir.path().join("a.gz");
        std::fs::write(&raw, b"hello world").unwrap();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"hello world").unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        assert_eq!(read_maybe_gz(&raw).unwrap(), b"hello world");
        assert_eq!(read_maybe_gz(&gz).unwrap(), b"hello world");
    }

    #[test]
    fn broken_gzip_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("broken.gz");
        std::fs::write(&p, [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0x00]).unwrap();
        let err = read_maybe_gz(&p).unwrap_err();
        assert!(matches!(err, DataError::Gzip { .. }), "{err}");
        assert!(err.to_string().contains("broken.gz"));
    }

    /// Issue 10 item 10: a raw file past the limit is refused from its size, unread (a
    /// sparse file: no disk is used).
    #[test]
    fn oversized_raw_file_is_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("train-images-idx3-ubyte");
        let f = File::create(&p).unwrap();
        f.set_len(8 << 30).unwrap();
        let err = read_maybe_gz(&p).unwrap_err();
        assert!(matches!(err, DataError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn sha256_known_value() {
        // SHA-256("abc") from FIPS 180-2, appendix B.1.
        assert_eq!(
            sha256_bytes(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(sha256_file(&p).unwrap(), (sha256_bytes(b"abc"), 3));
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.bin");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
