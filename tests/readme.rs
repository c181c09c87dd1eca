//! The README's "Your own images" walk-through, run as written: the shell block between the
//! `walkthrough` markers, in an empty folder, with this build's `eidn` first on the PATH.

mod common;

use std::path::Path;
use std::process::Command;

/// The walk-through without its step 3b (from its comment to the next blank line).
fn without_step_3b(script: &str) -> String {
    let mut out = Vec::new();
    let mut skipping = false;
    for line in script.lines() {
        if line.starts_with("# 3b.") {
            skipping = true;
            eprintln!("SKIPPED (not in CI): step 3b of the walk-through, no backbone weights here");
        } else if skipping && line.trim().is_empty() {
            skipping = false;
        }
        if !skipping {
            out.push(line);
        }
    }
    out.join("\n")
}

#[test]
fn the_own_images_walkthrough_runs_as_written() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let block = readme
        .split("<!-- walkthrough:start -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- walkthrough:end -->").next())
        .expect("README.md has a walkthrough block");
    let script = block
        .trim()
        .strip_prefix("```sh")
        .and_then(|s| s.strip_suffix("```"))
        .expect("the walkthrough is one ```sh block");
    // Step 3b needs the backbone's weights: the ones `.ci/run` fetched (or a checkout's), else,
    // outside CI, the walk-through runs without that step rather than downloading them.
    let weights = common::real_weights(eidn::backbone::BackboneKind::EfficientNetLite0);
    let script = match &weights {
        Some(_) => script.to_string(),
        None => without_step_3b(script),
    };
    let dir = tempfile::tempdir().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_eidn")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut bash = Command::new("bash");
    bash.args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .env_remove("EIDN_DATA_DIR")
        .env("XDG_DATA_HOME", dir.path().join("xdg"));
    if let Some(w) = &weights {
        bash.env("EIDN_MODELS_DIR", w.parent().unwrap());
    }
    let out = bash.output().unwrap();
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the walkthrough failed:\n{log}");
    assert!(log.contains("test ROC AUC"), "train prints its AUC:\n{log}");
    let scores = std::fs::read_to_string(dir.path().join("scores.csv")).unwrap();
    assert_eq!(scores.lines().count(), 21, "{scores}");
    let flagged_squares = scores
        .lines()
        .filter(|l| l.contains("/square/") && l.ends_with(",anomaly"))
        .count();
    assert!(flagged_squares >= 7, "{scores}");
    if weights.is_some() {
        let knn = std::fs::read_to_string(dir.path().join("scores-knn.csv")).unwrap();
        let flagged: Vec<&str> = knn.lines().filter(|l| l.ends_with(",anomaly")).collect();
        assert_eq!(knn.lines().count(), 21, "{knn}");
        assert!(
            flagged.iter().filter(|l| l.contains("/square/")).count() >= 7
                && flagged.iter().filter(|l| l.contains("/circle/")).count() <= 2,
            "pretrained kNN flags squares, not circles:\n{knn}"
        );
    }
    let md = std::fs::read_to_string(dir.path().join("reports/parts/README.md")).unwrap();
    assert!(
        md.contains("## parts: EIDN per normal class") && md.contains("| circle |"),
        "{md}"
    );
    assert!(dir.path().join("reports/parts/fig7.png").is_file());
}

/// README's headline table types no number by hand: each row's figures (ours and the
/// paper's) appear in the committed report it links.
#[test]
fn headline_numbers_come_from_the_linked_reports() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let table = readme
        .split("<!-- headline:start -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- headline:end -->").next())
        .expect("README.md has a headline table");
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("| what") && !l.starts_with("|---"))
        .collect();
    assert!(rows.len() >= 4, "{table}");
    for row in rows {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        let [_, ours, paper, link] = cells[..] else {
            panic!("a headline row has four cells: {row}");
        };
        let target = link
            .split("](")
            .nth(1)
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or_else(|| panic!("no link in {row}"));
        let report =
            std::fs::read_to_string(root.join(target)).unwrap_or_else(|e| panic!("{target}: {e}"));
        for number in [ours, paper] {
            assert!(
                number.chars().any(|c| c.is_ascii_digit()) && report.contains(number),
                "README's {number:?} ({row}) is not in {target}"
            );
        }
    }
}
