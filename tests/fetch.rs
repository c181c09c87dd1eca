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

    // The connection closes half-way: an error, and no file that looks complete.
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

    assert!(
        part_files(dir.path()).is_empty(),
        "{:?}",
        part_files(dir.path())
    );
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
fn cli_fetches_mnist_from_a_local_mirror() {
    let Some(real) = real_data_dir("mnist") else {
        return;
    };
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
    let base = serve(routes, 10, Duration::from_secs(120));
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
        &format!("{base}/mnist"),
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
