//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The real datasets' directory, or `None` (with a loud message) when they are absent
/// outside CI. Under `CI=true` absence is a failure: CI always has the data.
pub fn real_data_dir(needs: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("EIDN_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("datasets"));
    if eidn::data::present::files_present(&dir.join(needs), needs) {
        return Some(dir);
    }
    let msg = format!(
        "the real {needs} files are not in {} (set EIDN_DATA_DIR, e.g. to ../shared/datasets)",
        dir.join(needs).display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}: CI must have the real data");
    }
    eprintln!("SKIPPED (not in CI): {msg}");
    None
}

/// What the test server answers for one path.
#[derive(Clone)]
pub enum Reply {
    /// 200 with the body and its true Content-Length.
    Ok(Vec<u8>),
    /// 200 announcing `announced` bytes, sending only the body, then closing.
    Truncated { body: Vec<u8>, announced: usize },
    /// Honours `Range: bytes=N-` with a 206; a request without a Range gets a 200 that
    /// announces the whole body but closes after `cut` bytes.
    Resumable { body: Vec<u8>, cut: usize },
    /// Sends `prefix` of an announced `announced` bytes, then goes silent for `silence`.
    Stall {
        prefix: Vec<u8>,
        announced: usize,
        silence: Duration,
    },
    /// Sends the body in `chunks` pieces with `gap` between them (slow, never silent for long).
    Slow {
        body: Vec<u8>,
        chunks: usize,
        gap: Duration,
    },
    /// 200 without a Content-Length: the body, then the connection closes.
    NoLength(Vec<u8>),
}

/// A tiny HTTP/1.1 server on 127.0.0.1 for download tests. It serves at most
/// `max_requests` requests and stops by itself after `lifetime`.
pub fn serve(routes: HashMap<String, Reply>, max_requests: usize, lifetime: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let routes = Arc::new(routes);
    std::thread::spawn(move || {
        let deadline = Instant::now() + lifetime;
        let mut served = 0;
        while served < max_requests && Instant::now() < deadline {
            let (stream, _) = match listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                Err(_) => break,
            };
            served += 1;
            let routes = Arc::clone(&routes);
            // One thread per connection: a stalled reply must not hold up the next request.
            std::thread::spawn(move || {
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    return;
                }
                // Drain the headers, keeping a Range's start.
                let mut range_start: Option<usize> = None;
                loop {
                    let mut line = String::new();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if line == "\r\n" || line == "\n" => break,
                        Ok(_) => {
                            let lower = line.to_ascii_lowercase();
                            if let Some(v) = lower.strip_prefix("range: bytes=") {
                                range_start = v.trim().trim_end_matches('-').parse().ok();
                            }
                        }
                    }
                }
                let path = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .to_string();
                let mut stream = stream;
                let _ = match routes.get(&path) {
                Some(Reply::Ok(body)) => stream
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|_| stream.write_all(body)),
                Some(Reply::Truncated { body, announced }) => stream
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {announced}\r\nConnection: close\r\n\r\n"
                        )
                        .as_bytes(),
                    )
                    .and_then(|_| stream.write_all(body)),
                Some(Reply::Resumable { body, cut }) => match range_start {
                    Some(n) if n <= body.len() => stream
                        .write_all(
                            format!(
                                "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {n}-{}/{}\r\nConnection: close\r\n\r\n",
                                body.len() - n,
                                body.len() - 1,
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .and_then(|_| stream.write_all(&body[n..])),
                    _ => stream
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .and_then(|_| stream.write_all(&body[..*cut])),
                },
                Some(Reply::Stall {
                    prefix,
                    announced,
                    silence,
                }) => {
                    let r = stream
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {announced}\r\nConnection: close\r\n\r\n"
                            )
                            .as_bytes(),
                        )
                        .and_then(|_| stream.write_all(prefix))
                        .and_then(|_| stream.flush());
                    std::thread::sleep(*silence);
                    r
                }
                Some(Reply::Slow { body, chunks, gap }) => {
                    let mut r = stream.write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    );
                    for piece in body.chunks(body.len().div_ceil(*chunks)) {
                        std::thread::sleep(*gap);
                        r = r
                            .and_then(|_| stream.write_all(piece))
                            .and_then(|_| stream.flush());
                    }
                    r
                }
                Some(Reply::NoLength(body)) => stream
                    .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
                    .and_then(|_| stream.write_all(body)),
                None => stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                ),
            };
                let _ = stream.flush();
                let _ = stream.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    format!("http://{addr}")
}

/// A mirror on 127.0.0.1 of the real MNIST files under `<real>/mnist`, laid out as
/// `<base>/mnist/<file>`; returns the base URL.
pub fn serve_mnist_mirror(real: &std::path::Path) -> String {
    let mut routes = HashMap::new();
    for name in [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ] {
        let bytes = std::fs::read(real.join("mnist").join(name)).unwrap();
        routes.insert(format!("/mnist/{name}"), Reply::Ok(bytes));
    }
    serve(routes, 10, Duration::from_secs(120))
}

/// Files in `dir` whose names end in `.part` (left-over partial downloads).
pub fn part_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect()
}

/// Runs a command: its exit code, stdout and stderr.
pub fn run(c: &mut Command) -> (Option<i32>, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = c.output().unwrap();
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// The weights file of `kind` (models folder: `$EIDN_MODELS_DIR`, else `models/` in the data
/// directory), or `None` with a loud message outside CI. Under `CI=true` absence is a failure:
/// `.ci/run` fetches the weights before the tests.
pub fn real_weights(kind: eidn::backbone::BackboneKind) -> Option<PathBuf> {
    let data = std::env::var_os("EIDN_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("datasets"));
    let dir = eidn::backbone::weights::models_dir(&data);
    match eidn::backbone::weights::find(kind, &dir) {
        Ok(Some(path)) => return Some(path),
        Ok(None) => {}
        Err(e) => panic!("{e}"),
    }
    let msg = format!(
        "the {kind} weights are not in {} (run `eidn weights fetch`, or set EIDN_MODELS_DIR)",
        dir.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}: CI fetches them first");
    }
    eprintln!("SKIPPED (not in CI): {msg}");
    None
}

/// The eidn binary on data directory `data` and models folder `models`, nothing from the
/// caller's environment.
pub fn eidn_in(data: &std::path::Path, models: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_eidn"));
    c.arg("--data-dir")
        .arg(data)
        .env_remove("EIDN_DATA_DIR")
        .env_remove("EIDN_DATA_MIRROR")
        .env("EIDN_MODELS_DIR", models);
    c
}

/// A temporary folder with a `models/` folder of its own holding the real EfficientNet-Lite0
/// weights (its features cache then holds only the test's data), or None where
/// [`real_weights`] skips.
pub fn temp_with_weights() -> Option<(tempfile::TempDir, PathBuf)> {
    let weights = real_weights(eidn::backbone::BackboneKind::EfficientNetLite0)?;
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::copy(&weights, models.join(weights.file_name().unwrap())).unwrap();
    Some((dir, models))
}
