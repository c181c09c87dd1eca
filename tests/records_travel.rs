//! Issue 31 item 1: a report carries its records, so a fresh clone re-renders every
//! committed report identically, continues its grid elsewhere (`--resume-from`) and merges
//! several machines' folders (`eidn merge`), refusing results that disagree. Item 2: the
//! SLURM scripts, run with a fake array task id.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{real_data_dir, run};

const FIXTURE: &str = "tests/fixtures/report_small";
const FIXTURE_PROFILE: &str = "tests/fixtures/small_grid.toml";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn eidn() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_eidn"));
    c.current_dir(root());
    c
}

/// Every file under `dir` (relative path -> bytes), `skip` folders left out.
fn files(dir: &Path, skip: &[&str]) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if skip.contains(&rel.as_str()) {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

fn assert_same_files(expected: &Path, got: &Path, skip: &[&str]) {
    let (want, have) = (files(expected, skip), files(got, skip));
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        have.keys().collect::<Vec<_>>(),
        "{} against {}",
        expected.display(),
        got.display()
    );
    for (name, bytes) in &want {
        if have[name] != *bytes {
            let show = |b: &[u8]| {
                String::from_utf8_lossy(b)
                    .chars()
                    .take(3000)
                    .collect::<String>()
            };
            panic!(
                "{name} differs between {} and its re-render {}:\n--- committed\n{}\n--- re-rendered\n{}",
                expected.display(),
                got.display(),
                show(bytes),
                show(&have[name])
            );
        }
    }
}

/// The committed reports that carry their records (reports/*/ and the fixture).
fn carrying_reports() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("reports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("records.jsonl.gz").is_file())
        .collect();
    dirs.sort();
    dirs.push(root().join(FIXTURE));
    dirs
}

#[test]
fn every_committed_report_re_renders_identically() {
    let reports = carrying_reports();
    assert!(
        root().join(FIXTURE).join("records.jsonl.gz").is_file(),
        "the fixture carries its records"
    );
    for dir in reports {
        let out = tempfile::tempdir().unwrap();
        let (code, _, err) = run(eidn()
            .args(["report", "--results"])
            .arg(&dir)
            .arg("--out")
            .arg(out.path()));
        assert_eq!(code, Some(0), "{}: {err}", dir.display());
        assert_same_files(&dir, out.path(), &[]);
    }
}

#[test]
fn a_committed_report_merges_and_conflicting_results_are_refused() {
    let fixture = root().join(FIXTURE);
    let tmp = tempfile::tempdir().unwrap();
    let merged = tmp.path().join("merged");
    let (code, out, err) = run(eidn().args(["merge", "--into"]).arg(&merged).arg(&fixture));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("records added"), "{out}");
    // Rendered from the merged results folder: the same tables.
    let report = tmp.path().join("report");
    let (code, _, err) = run(eidn()
        .args(["report", "--profile", FIXTURE_PROFILE, "--results"])
        .arg(&merged)
        .arg("--out")
        .arg(&report));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        std::fs::read(report.join("results.csv")).unwrap(),
        std::fs::read(fixture.join("results.csv")).unwrap()
    );
    // Written over a report that compared extra pairs, the report keeps comparing them.
    let copy = tmp.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    for (name, bytes) in files(&fixture, &[]) {
        std::fs::write(copy.join(name), bytes).unwrap();
    }
    let (code, _, err) = run(eidn()
        .args(["report", "--profile", FIXTURE_PROFILE, "--results"])
        .arg(&merged)
        .arg("--out")
        .arg(&copy));
    assert_eq!(code, Some(0), "{err}");
    let md = std::fs::read_to_string(copy.join("README.md")).unwrap();
    assert!(md.contains("| EIDN | PCA + kNN |"), "{md}");

    // Another machine's copy with one AUC changed: refused, naming the record, nothing added.
    let bad = tmp.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let text = {
        let gz = std::fs::read(fixture.join("records.jsonl.gz")).unwrap();
        let mut s = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut s).unwrap();
        s
    };
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let mut changed = first.clone();
    changed["auc"] = serde_json::json!(first["auc"].as_f64().unwrap() * 0.5);
    std::fs::write(bad.join("records.jsonl"), format!("{changed}\n")).unwrap();
    let fresh = tmp.path().join("fresh");
    let (code, _, err) = run(eidn()
        .args(["merge", "--into"])
        .arg(&fresh)
        .arg(&fixture)
        .arg(&bad));
    assert_ne!(code, Some(0));
    let cell = first["cell"].as_str().unwrap();
    assert!(err.contains("disagree") && err.contains(cell), "{err}");
    assert!(!fresh.join("records.jsonl").is_file(), "nothing merged");

    // A folder without records (a report from before records travelled) is named.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (code, _, err) = run(eidn().args(["merge", "--into"]).arg(&fresh).arg(&empty));
    assert_ne!(code, Some(0));
    assert!(err.contains("holds no eidn records"), "{err}");
}

/// A second machine (a temp folder) continues the fixture's grid from the committed report:
/// every cell is done, nothing trains, and the report it writes has the same tables.
#[test]
fn a_committed_report_resumes_elsewhere() {
    let Some(data) = real_data_dir("mnist") else {
        return;
    };
    let fixture = root().join(FIXTURE);
    let tmp = tempfile::tempdir().unwrap();
    let (code, _, err) = run(eidn()
        .arg("--data-dir")
        .arg(&data)
        .args([
            "reproduce",
            "--quiet",
            "--profile",
            FIXTURE_PROFILE,
            "--results",
        ])
        .arg(tmp.path().join("results"))
        .arg("--resume-from")
        .arg(&fixture)
        .arg("--out")
        .arg(tmp.path().join("report")));
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("resumed from"), "{err}");
    assert!(
        err.contains("0 run, 6 already done"),
        "the fixture's records count as done here (a numerics bump makes them another \
         build's: re-run the fixture, see {FIXTURE_PROFILE}): {err}"
    );
    assert_eq!(
        std::fs::read(tmp.path().join("report/results.csv")).unwrap(),
        std::fs::read(fixture.join("results.csv")).unwrap()
    );
}

/// cluster/grid.sbatch as two array tasks (SLURM's variables set by hand), then
/// cluster/report.sbatch: the shards' records together are the whole grid.
#[test]
fn the_slurm_scripts_run_a_sharded_grid_and_its_report() {
    let Some(data) = real_data_dir("mnist") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("results");
    for k in ["1", "2"] {
        let (code, _, err) = run(Command::new("bash")
            .current_dir(root())
            .arg("cluster/grid.sbatch")
            .arg(FIXTURE_PROFILE)
            .arg(&results)
            .env("EIDN", env!("CARGO_BIN_EXE_eidn"))
            .env("EIDN_DATA_DIR", &data)
            .env("SLURM_ARRAY_TASK_ID", k)
            .env("SLURM_ARRAY_TASK_COUNT", "2")
            .env("SLURM_ARRAY_TASK_MIN", "1")
            .env("SLURM_CPUS_PER_TASK", "1"));
        assert_eq!(code, Some(0), "task {k}: {err}");
        assert!(results.join(format!("records-{k}-of-2.jsonl")).is_file());
    }
    let report = tmp.path().join("report");
    let (code, _, err) = run(Command::new("bash")
        .current_dir(root())
        .arg("cluster/report.sbatch")
        .arg(FIXTURE_PROFILE)
        .arg(&results)
        .arg(&report)
        .env("EIDN", env!("CARGO_BIN_EXE_eidn")));
    assert_eq!(code, Some(0), "{err}");
    let csv = std::fs::read_to_string(report.join("results.csv")).unwrap();
    let fixture = std::fs::read_to_string(root().join(FIXTURE).join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), fixture.lines().count(), "{csv}");
    // Without an array task id the script says how to submit it.
    let (code, _, err) = run(Command::new("bash")
        .current_dir(root())
        .arg("cluster/grid.sbatch")
        .arg(FIXTURE_PROFILE)
        .arg(&results)
        .env_remove("SLURM_ARRAY_TASK_ID"));
    assert_ne!(code, Some(0));
    assert!(err.contains("sbatch --array"), "{err}");
}
