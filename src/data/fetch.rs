//! `eidn data fetch`: downloads the manifest's files that are missing, with a progress bar,
//! checking size and SHA-256 while streaming. Bytes go to a hidden `.part` file that is
//! renamed only after both checks pass, so an interrupted or bad download never leaves a
//! file under a name the loaders read.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use super::files::{part_path, sha256_file};
use super::manifest::{DatasetEntry, FileEntry};
use super::DataError;

#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Replaces each URL's directory part: `<base_url>/<file name>` (a local mirror).
    pub base_url: Option<String>,
    pub progress: bool,
    pub connect_timeout: Duration,
    /// Longest silence while receiving before a download is abandoned.
    pub read_timeout: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            base_url: None,
            progress: true,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileOutcome {
    /// Already there with the right checksum.
    Present,
    /// Downloaded and checked against the manifest's SHA-256.
    Downloaded { sha256: String },
    /// Downloaded, but the manifest has no checksum for it.
    DownloadedUnverified { sha256: String },
}

/// Fetches every original file of `entry` into `dir` that is not already there intact.
pub fn fetch_dataset(
    entry: &DatasetEntry,
    dir: &Path,
    options: &FetchOptions,
) -> Result<Vec<(String, FileOutcome)>, DataError> {
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let mut outcomes = Vec::new();
    for file in &entry.files {
        let dest = dir.join(&file.name);
        if is_intact(file, &dest)? {
            outcomes.push((file.name.clone(), FileOutcome::Present));
            continue;
        }
        let outcome = fetch_file(file, &dest, options)?;
        outcomes.push((file.name.clone(), outcome));
    }
    Ok(outcomes)
}

fn is_intact(file: &FileEntry, dest: &Path) -> Result<bool, DataError> {
    if !dest.is_file() {
        return Ok(false);
    }
    match &file.sha256 {
        Some(expected) => Ok(sha256_file(dest)?.0.eq_ignore_ascii_case(expected)),
        // Nothing to check against: a finished download (renamed from .part) is kept.
        None => Ok(true),
    }
}

/// The URLs to try for `file`, in order.
pub fn urls_for(file: &FileEntry, base_url: Option<&str>) -> Vec<String> {
    match base_url {
        Some(base) => vec![format!("{}/{}", base.trim_end_matches('/'), file.name)],
        None => file.urls.clone(),
    }
}

/// Downloads one file to `dest`, trying each URL until one gives the right bytes.
pub fn fetch_file(
    file: &FileEntry,
    dest: &Path,
    options: &FetchOptions,
) -> Result<FileOutcome, DataError> {
    let urls = urls_for(file, options.base_url.as_deref());
    let mut last = DataError::Download {
        url: file.name.clone(),
        message: "the manifest lists no URL for it".into(),
    };
    for url in urls {
        match download(&url, file, dest, options) {
            Ok(outcome) => return Ok(outcome),
            Err(e) => {
                if options.progress {
                    eprintln!("warning: {e}");
                }
                last = e;
            }
        }
    }
    Err(last)
}

fn download(
    url: &str,
    file: &FileEntry,
    dest: &Path,
    options: &FetchOptions,
) -> Result<FileOutcome, DataError> {
    let tmp = part_path(dest);
    let result = stream_to(url, file, &tmp, options).and_then(|sha256| {
        std::fs::rename(&tmp, dest).map_err(|e| DataError::io(dest, e))?;
        Ok(sha256)
    });
    match result {
        Ok(sha256) if file.sha256.is_some() => Ok(FileOutcome::Downloaded { sha256 }),
        Ok(sha256) => Ok(FileOutcome::DownloadedUnverified { sha256 }),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Streams `url` into `tmp`, hashing as it goes; checks size and SHA-256 at the end.
fn stream_to(
    url: &str,
    file: &FileEntry,
    tmp: &Path,
    options: &FetchOptions,
) -> Result<String, DataError> {
    let fail = |message: String| DataError::Download {
        url: url.to_string(),
        message,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(options.connect_timeout))
        .timeout_recv_response(Some(options.read_timeout))
        .timeout_recv_body(Some(options.read_timeout))
        .build()
        .into();
    let response = agent.get(url).call().map_err(|e| fail(e.to_string()))?;
    let body = response.into_body();
    let announced = body.content_length();
    if let (Some(a), Some(want)) = (announced, file.size) {
        if a != want {
            return Err(fail(format!(
                "server announces {a} bytes, the manifest says {want}"
            )));
        }
    }
    let bar = progress_bar(options.progress, announced.or(file.size), &file.name);
    let mut reader = body.into_reader();
    let mut out = File::create(tmp).map_err(|e| DataError::io(tmp, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut received = 0u64;
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| fail(format!("after {received} bytes: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| DataError::io(tmp, e))?;
        received += n as u64;
        bar.set_position(received);
    }
    out.sync_all().map_err(|e| DataError::io(tmp, e))?;
    bar.finish_and_clear();
    if let Some(want) = file.size.or(announced) {
        if received != want {
            return Err(DataError::WrongSize {
                path: PathBuf::from(url),
                expected: want,
                actual: received,
            });
        }
    }
    let sha256 = hex::encode(hasher.finalize());
    if let Some(expected) = &file.sha256 {
        if !expected.eq_ignore_ascii_case(&sha256) {
            return Err(DataError::Checksum {
                path: PathBuf::from(url),
                expected: expected.clone(),
                actual: sha256,
            });
        }
    }
    Ok(sha256)
}

fn progress_bar(visible: bool, len: Option<u64>, name: &str) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(l) => ProgressBar::new(l),
        None => ProgressBar::new_spinner(),
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    bar.set_message(name.to_string());
    bar
}
