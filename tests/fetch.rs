//! `data fetch` against a server on 127.0.0.1: a good file, a wrong checksum, a truncated
//! body, and a whole dataset fetched through the CLI from a local mirror.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{part_files, real_data_dir, serve, Reply};
use eidn::data::fetch::{fetch_dataset, fetch_file, FetchOptions, FileOutcome};
use eidn::data::manifest::{DatasetEntry, FileEntry};
use eidn::data::{sha256_bytes, DataError};

fn quiet() -> FetchOptions {
    FetchOptions {
        progress: false,
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
        ..FetchOptions::default()
    }
}

fn entry(name: &str, url: String, body: &[u8]) -> FileEntry {
    FileEntry {
        name: name.to_string(),
        urls: vec![url],
        size: Some(body.len() as u64),
        sha256: Some(sha256_bytes(body)),
        raw_name: None,
        raw_size: None,
        raw_sha256: None,
    }
}

fn payload() -> Vec<u8> {
    (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn good_bad_and_truncated_downloads() {
    let body = payload();
    let mut tampered = body.clone();
    tampered[1234] ^= 0xff;
    let routes = HashMap::from([
        ("/good.bin".to_string(), Reply::Ok(body.clone())),
        ("/bad.bin".to_string(), Reply::Ok(tampered)),
        (
            "/trunc.bin".to_string(),
            Reply::Truncated {
                body: body[..50_000].to_vec(),
                announced: body.len(),
            },
        ),
    ]);
    let base = serve(routes, 20, Duration::from_secs(60));
    let dir = tempfile::tempdir().unwrap();

    let dest = dir.path().join("good.bin");
    let out = fetch_file(
        &entry("good.bin", format!("{base}/good.bin"), &body),
        &dest,
        &quiet(),
    )
    .unwrap();
    assert_eq!(
        out,
        FileOutcome::Downloaded {
            sha256: sha256_bytes(&body)
        }
    );
    assert_eq!(std::fs::read(&dest).unwrap(), body);

    // Served bytes differ from the manifest's checksum: nothing may appear under the name.
    let dest = dir.path().join("bad.bin");
    let err = fetch_file(
        &entry("bad.bin", format!("{base}/bad.bin"), &body),
        &dest,
        &quiet(),
    )
    .unwrap_err();
    assert!(matches!(err, DataError::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("bad.bin"), "{err}");
    assert!(!dest.exists());

    // The connection closes half-way, and again on the retry: an error, no file that looks
    // complete, and the bytes received kept in the .part file for a later resume.
    let dest = dir.path().join("trunc.bin");
    let err = fetch_file(
        &entry("trunc.bin", format!("{base}/trunc.bin"), &body),
        &dest,
        &quiet(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Download { .. } | DataError::WrongSize { .. }
        ),
        "{err}"
    );
    assert!(!dest.exists());

    // A 404 is an error naming the URL.
    let dest = dir.path().join("nope.bin");
    let err = fetch_file(
        &entry("nope.bin", format!("{base}/nope.bin"), &body),
        &dest,
        &quiet(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("/nope.bin"), "{err}");
    assert!(!dest.exists());

    assert_eq!(
        part_files(dir.path()),
        vec![".trunc.bin.part".to_string()],
        "only the interrupted download is kept, for resuming"
    );
    assert_eq!(
        std::fs::metadata(dir.path().join(".trunc.bin.part"))
            .unwrap()
            .len(),
        50_000
    );
}

/// Issue 10 item 11: a slow but flowing body finishes (the timeout is on silence, not on the
/// whole body), a stalled one fails within about the read timeout, an interrupted one resumes
/// with a Range request, a body without Content-Length is capped at the manifest's size, and
/// `force` re-downloads a file that has no checksum on record.
#[test]
fn slow_stalled_resumed_capped_and_forced_downloads() {
    let body = payload();
    let routes = HashMap::from([
        (
            "/slow.bin".to_string(),
            Reply::Slow {
                body: body.clone(),
                chunks: 6,
                gap: Duration::from_millis(400),
            },
        ),
        (
            "/stall.bin".to_string(),
            Reply::Stall {
                prefix: body[..1000].to_vec(),
                announced: body.len(),
                silence: Duration::from_secs(20),
            },
        ),
        (
            "/resume.bin".to_string(),
            Reply::Resumable {
                body: body.clone(),
                cut: 70_000,
            },
        ),
        (
            "/huge.bin".to_string(),
            Reply::NoLength(vec![7u8; body.len() * 3]),
        ),
        ("/junk.bin".to_string(), Reply::Ok(body.clone())),
    ]);
    let base = serve(routes, 30, Duration::from_secs(90));
    let dir = tempfile::tempdir().unwrap();
    let options = FetchOptions {
        read_timeout: Duration::from_secs(1),
        ..quiet()
    };

    // 6 x 0.4 s > the 1 s read timeout, but no silence is that long.
    let dest = dir.path().join("slow.bin");
    fetch_file(
        &entry("slow.bin", format!("{base}/slow.bin"), &body),
        &dest,
        &options,
    )
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);

    let dest = dir.path().join("stall.bin");
    let start = std::time::Instant::now();
    let err = fetch_file(
        &entry("stall.bin", format!("{base}/stall.bin"), &body),
        &dest,
        &options,
    )
    .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(err.to_string().contains("stall.bin"), "{err}");
    assert!(!dest.exists());

    let dest = dir.path().join("resume.bin");
    fetch_file(
        &entry("resume.bin", format!("{base}/resume.bin"), &body),
        &dest,
        &options,
    )
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);

    let dest = dir.path().join("huge.bin");
    let err = fetch_file(
        &entry("huge.bin", format!("{base}/huge.bin"), &body),
        &dest,
        &options,
    )
    .unwrap_err();
    assert!(matches!(err, DataError::WrongSize { .. }), "{err}");
    assert!(!dest.exists());

    // A junk file where an unverifiable one belongs: kept normally, replaced under force.
    let mut junk = entry("junk.bin", format!("{base}/junk.bin"), &body);
    junk.sha256 = None;
    junk.size = None;
    let dataset = DatasetEntry {
        name: "concrete".into(),
        title: "t".into(),
        homepage: "h".into(),
        how_to_get: "g".into(),
        after_fetch: None,
        files: vec![junk],
        variants: vec![],
    };
    std::fs::write(dir.path().join("junk.bin"), b"junk").unwrap();
    let kept = fetch_dataset(&dataset, dir.path(), &options).unwrap();
    assert_eq!(kept[0].1, FileOutcome::Present);
    let forced = FetchOptions {
        force: true,
        ..options.clone()
    };
    let again = fetch_dataset(&dataset, dir.path(), &forced).unwrap();
    assert!(
        matches!(again[0].1, FileOutcome::DownloadedUnverified { .. }),
        "{:?}",
        again[0].1
    );
    assert_eq!(std::fs::read(dir.path().join("junk.bin")).unwrap(), body);
}

#[test]
fn second_url_is_tried_and_intact_files_are_kept() {
    let body = payload();
    let routes = HashMap::from([("/mirror/f.bin".to_string(), Reply::Ok(body.clone()))]);
    let base = serve(routes, 10, Duration::from_secs(60));
    let mut file = entry("f.bin", format!("{base}/gone/f.bin"), &body);
    file.urls.push(format!("{base}/mirror/f.bin"));
    let dataset = DatasetEntry {
        name: "mnist".into(),
        title: "t".into(),
        homepage: "h".into(),
        how_to_get: "g".into(),
        after_fetch: None,
        files: vec![file],
        variants: vec![],
    };
    let dir = tempfile::tempdir().unwrap();
    let first = fetch_dataset(&dataset, dir.path(), &quiet()).unwrap();
    assert!(matches!(first[0].1, FileOutcome::Downloaded { .. }));
    let second = fetch_dataset(&dataset, dir.path(), &quiet()).unwrap();
    assert_eq!(second[0].1, FileOutcome::Present);
}

/// The whole CLI path: `eidn data fetch --base-url` from a local mirror of the real MNIST
/// files into an empty data dir, then `verify` says exact.
#[test]
#[cfg_attr(
    eidn_no_mnist,
    ignore = "needs the real MNIST: set EIDN_DATA_DIR (e.g. ../shared/datasets)"
)]
fn cli_fetches_mnist_from_a_local_mirror() {
    let Some(real) = real_data_dir("mnist") else {
        return;
    };
    let base = format!("{}/mnist", common::serve_mnist_mirror(&real));
    let data = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_eidn"))
            .arg("--data-dir")
            .arg(data.path())
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[
        "data",
        "fetch",
        "--dataset",
        "mnist",
        "--quiet",
        "--base-url",
        &base,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("now Exact"), "{stdout}");
    let out = run(&["data", "verify", "--dataset", "mnist", "--json"]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["status"], "exact");
    assert!(part_files(&data.path().join("mnist")).is_empty());
    assert!(Path::new(&data.path().join("mnist/train-images-idx3-ubyte.gz")).is_file());
}
