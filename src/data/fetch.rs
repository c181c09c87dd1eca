//! `eidn data fetch`: downloads the manifest's files that are missing, with a progress bar,
//! checking size and SHA-256 while streaming. Bytes go to a hidden `.part` file that is
//! renamed only after both checks pass, so an interrupted or bad download never leaves a
//! file under a name the loaders read.
//!
//! A connection is abandoned when it stalls (no byte for `read_timeout`), never because the
//! link is slow; an interrupted download resumes from its `.part` file with an HTTP Range
//! request where the server allows it (else it starts over).

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use super::files::sha256_file;
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
    /// Download again files that have no checksum on record even when present.
    pub force: bool,
    /// Requests per URL while each one brings new bytes (resuming where the last stopped).
    pub attempts: usize,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            base_url: None,
            progress: true,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            force: false,
            attempts: 5,
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
        if is_intact(file, &dest, options.force)? {
            outcomes.push((file.name.clone(), FileOutcome::Present));
            continue;
        }
        let outcome = fetch_file(file, &dest, options)?;
        outcomes.push((file.name.clone(), outcome));
    }
    Ok(outcomes)
}

fn is_intact(file: &FileEntry, dest: &Path, force: bool) -> Result<bool, DataError> {
    if !dest.is_file() {
        return Ok(false);
    }
    let (sha256, len) = sha256_file(dest)?;
    if file.size.is_some_and(|want| want != len) {
        return Ok(false);
    }
    match &file.sha256 {
        Some(expected) => Ok(sha256.eq_ignore_ascii_case(expected)),
        // Nothing to check against: kept, unless the user asked for a fresh copy.
        None => Ok(!force),
    }
}

/// The URLs to try for `file`, in order.
pub fn urls_for(file: &FileEntry, base_url: Option<&str>) -> Vec<String> {
    match base_url {
        Some(base) => vec![format!("{}/{}", base.trim_end_matches('/'), file.name)],
        None => file.urls.clone(),
    }
}

/// Downloads one file to `dest`, trying each URL until one gives the right bytes. The error
/// lists every URL tried and why it failed.
pub fn fetch_file(
    file: &FileEntry,
    dest: &Path,
    options: &FetchOptions,
) -> Result<FileOutcome, DataError> {
    let urls = urls_for(file, options.base_url.as_deref());
    let mut failures = Vec::new();
    let mut last = None;
    for url in &urls {
        match download(url, file, dest, options) {
            Ok(outcome) => return Ok(outcome),
            Err(e) => {
                if options.progress {
                    eprintln!("warning: {e}");
                }
                failures.push(e.to_string());
                last = Some(e);
            }
        }
    }
    match (last, failures.len()) {
        (Some(e), 1) => Err(e),
        (_, 0) => Err(DataError::Download {
            url: file.name.clone(),
            message: "the manifest lists no URL for it".into(),
        }),
        _ => Err(DataError::Download {
            url: file.name.clone(),
            message: format!("every source failed: {}", failures.join("; ")),
        }),
    }
}

/// The resumable partial download beside `dest`.
fn download_part(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.part"))
}

/// Requests `url` until the file is complete, resuming after each interruption that brought
/// new bytes; a bad file (wrong size or checksum) is deleted, an interrupted one is kept for
/// the next run to resume.
fn download(
    url: &str,
    file: &FileEntry,
    dest: &Path,
    options: &FetchOptions,
) -> Result<FileOutcome, DataError> {
    let tmp = download_part(dest);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let before = std::fs::metadata(&tmp).map_or(0, |m| m.len());
        match stream_to(url, file, &tmp, options) {
            Ok(sha256) => {
                std::fs::rename(&tmp, dest).map_err(|e| DataError::io(dest, e))?;
                return Ok(match file.sha256 {
                    Some(_) => FileOutcome::Downloaded { sha256 },
                    None => FileOutcome::DownloadedUnverified { sha256 },
                });
            }
            Err(Interrupted::Bad(e)) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            Err(Interrupted::Network(e)) => {
                let after = std::fs::metadata(&tmp).map_or(0, |m| m.len());
                if after <= before || attempt >= options.attempts.max(1) {
                    return Err(e);
                }
                if options.progress {
                    eprintln!("warning: {e}; resuming at byte {after}");
                }
            }
        }
    }
}

/// Why a request did not finish the file.
enum Interrupted {
    /// The connection failed or stalled: what arrived is kept and can be resumed.
    Network(DataError),
    /// The bytes are wrong: start over.
    Bad(DataError),
}

/// Continues `tmp` from `url` (a Range request when `tmp` has bytes), hashing everything;
/// checks size and SHA-256 at the end.
fn stream_to(
    url: &str,
    file: &FileEntry,
    tmp: &Path,
    options: &FetchOptions,
) -> Result<String, Interrupted> {
    let fail = |message: String| DataError::Download {
        url: url.to_string(),
        message,
    };
    let io = |e| Interrupted::Bad(DataError::io(tmp, e));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(options.connect_timeout))
        .timeout_recv_response(Some(options.read_timeout))
        // A slow link may take hours; only silence ends a download.
        .timeout_recv_body(None)
        .timeout_per_read(Some(options.read_timeout))
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                .build(),
        )
        .build()
        .into();
    let have = std::fs::metadata(tmp).map_or(0, |m| m.len());
    let mut request = agent.get(url);
    if have > 0 {
        request = request.header("Range", &format!("bytes={have}-"));
    }
    let response = request
        .call()
        .map_err(|e| Interrupted::Network(fail(e.to_string())))?;
    // 206: the server continues our bytes; anything else sends the whole file again.
    let resumed = have > 0 && response.status().as_u16() == 206;
    let start = if resumed { have } else { 0 };
    let body = response.into_body();
    let announced = body.content_length().map(|n| n + start);
    if let (Some(a), Some(want)) = (announced, file.size) {
        if a != want {
            return Err(Interrupted::Bad(fail(format!(
                "server announces {a} bytes, the manifest says {want}"
            ))));
        }
    }
    let mut hasher = Sha256::new();
    let mut out = if resumed {
        let mut f = File::open(tmp).map_err(io)?;
        std::io::copy(&mut f, &mut hasher).map_err(io)?;
        std::fs::OpenOptions::new()
            .append(true)
            .open(tmp)
            .map_err(io)?
    } else {
        File::create(tmp).map_err(io)?
    };
    // Without a Content-Length, the manifest's size caps what is read.
    let cap = file.size.or(announced);
    let bar = progress_bar(options.progress, cap, &file.name);
    let mut reader = body.into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut received = start;
    bar.set_position(received);
    loop {
        let n = match reader.read(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                let _ = out.sync_all();
                bar.abandon();
                return Err(Interrupted::Network(fail(format!(
                    "after {received} bytes: {e}"
                ))));
            }
        };
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(io)?;
        received += n as u64;
        bar.set_position(received);
        if cap.is_some_and(|c| received > c) {
            break;
        }
    }
    out.sync_all().map_err(io)?;
    bar.finish_and_clear();
    if let Some(want) = cap {
        if received > want {
            return Err(Interrupted::Bad(DataError::WrongSize {
                path: PathBuf::from(url),
                expected: want,
                actual: received,
            }));
        }
        if received < want {
            return Err(Interrupted::Network(DataError::WrongSize {
                path: PathBuf::from(url),
                expected: want,
                actual: received,
            }));
        }
    }
    let sha256 = hex::encode(hasher.finalize());
    if let Some(expected) = &file.sha256 {
        if !expected.eq_ignore_ascii_case(&sha256) {
            return Err(Interrupted::Bad(DataError::Checksum {
                path: PathBuf::from(url),
                expected: expected.clone(),
                actual: sha256,
            }));
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
