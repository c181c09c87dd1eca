//! The README's "Your own images" walk-through, run as written: the shell block between the
//! `walkthrough` markers, in an empty folder, with this build's `eidn` first on the PATH.

use std::path::Path;
use std::process::Command;

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
    let dir = tempfile::tempdir().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_eidn")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir.path())
        .env("PATH", path)
        .env_remove("EIDN_DATA_DIR")
        .env("XDG_DATA_HOME", dir.path().join("xdg"))
        .output()
        .unwrap();
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
