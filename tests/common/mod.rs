//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The real datasets' directory, or `None` (with a loud message) when they are absent
/// outside CI. Under `CI=true` absence is a failure: CI always has the data.
pub fn real_data_dir(needs: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("EIDN_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("datasets"));
    if dir.join(needs).is_dir() {
        return Some(dir);
    }
    let msg = format!(
        "real dataset folder {} not found (set EIDN_DATA_DIR, e.g. to ../shared/datasets)",
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
            stream.set_nonblocking(false).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            // Drain the headers.
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if line == "\r\n" || line == "\n" => break,
                    Ok(_) => {}
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
                None => stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                ),
            };
            let _ = stream.flush();
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    });
    format!("http://{addr}")
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
