//! Tells the test suite which real datasets are absent (decided by their files, as the
//! loaders read them: an empty folder left by a failed download is absent), so that tests needing them are
//! marked `ignored` (with the reason) and `cargo test`'s closing line counts them, instead
//! of passing without doing anything. Under `CI=true` nothing is marked: CI always has the
//! data, and a test that finds it missing fails loudly.

use std::path::{Path, PathBuf};

include!("src/data/present.rs");

fn main() {
    println!("cargo::rerun-if-env-changed=EIDN_DATA_DIR");
    println!("cargo::rerun-if-env-changed=CI");
    for name in ["mnist", "cifar10"] {
        println!("cargo::rustc-check-cfg=cfg(eidn_no_{name})");
    }
    let dir = std::env::var_os("EIDN_DATA_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets"));
    // Watch the data folder, or its parent so that creating it triggers a rerun. Never a
    // folder higher up: cargo scans a watched folder recursively, and for a data directory
    // whose parents are missing that would be `/` (with /proc and /sys): a build that never
    // ends. A change of EIDN_DATA_DIR itself is caught by rerun-if-env-changed.
    let watched = [Some(dir.as_path()), dir.parent()]
        .into_iter()
        .flatten()
        .find(|p| p.is_dir() && p.parent().is_some());
    if let Some(w) = watched {
        println!("cargo::rerun-if-changed={}", w.display());
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        return;
    }
    for name in ["mnist", "cifar10"] {
        if !files_present(&dir.join(name), name) {
            println!("cargo::rustc-cfg=eidn_no_{name}");
        }
    }
}
