//! Tells the test suite which real datasets are absent (decided by their files, as the
//! loaders read them: an empty folder left by a failed download is absent), so that tests needing them are
//! marked `ignored` (with the reason) and `cargo test`'s closing line counts them, instead
//! of passing without doing anything. Under `CI=true` nothing is marked: CI always has the
//! data, and a test that finds it missing fails loudly.

use std::path::{Path, PathBuf};

include!("src/data/present.rs");

/// `EIDN_COMMIT` for `build_info::Build`: the commit (short), `-dirty.<hash of the diff>`
/// with uncommitted changes to tracked files, "unknown" outside a git checkout. Rerun when HEAD moves, the
/// index changes (a commit, an add) or a source file changes (dirty or not).
fn commit() {
    for watched in [".git/HEAD", ".git/index", "src", "Cargo.toml", "configs"] {
        if Path::new(watched).exists() {
            println!("cargo::rerun-if-changed={watched}");
        }
    }
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = match git(&["rev-parse", "--short", "HEAD"]) {
        Some(head)
            if git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty()) =>
        {
            // The diff's hash tells two dirty builds apart, so that `regress` (which counts
            // only its own build's records) never takes an edited tree's numbers for another's.
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            git(&["diff", "HEAD"]).hash(&mut h);
            format!("{head}-dirty.{:08x}", h.finish() as u32)
        }
        Some(head) => head,
        None => "unknown".into(),
    };
    println!("cargo::rustc-env=EIDN_COMMIT={commit}");
}

fn main() {
    commit();
    println!("cargo::rerun-if-env-changed=EIDN_DATA_DIR");
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rerun-if-env-changed=EIDN_MODELS_DIR");
    for name in ["mnist", "cifar10", "weights"] {
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
    // The EfficientNet-Lite0 weights (src/backbone/weights.toml), by name only.
    let models = std::env::var_os("EIDN_MODELS_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("models"));
    if !models.join("efficientnet-lite0-57934424.pth").is_file() {
        println!("cargo::rustc-cfg=eidn_no_weights");
    }
}
