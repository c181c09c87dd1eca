//! What a run records about itself: where and how it ran, and which build ran it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::files::write_atomic;
use super::profile::Profile;
use super::ExperimentError;

/// Where and how a run happened; one JSON file per run under `<results>/runs/`, which the
/// report's header sums up.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunMeta {
    pub profile: String,
    pub only: Vec<String>,
    pub shard: Option<String>,
    pub commit: String,
    pub machine: String,
    pub device: String,
    pub seeds: Vec<u64>,
    pub started_unix: u64,
    pub wall_seconds: f64,
    pub cells: usize,
    pub cells_run: usize,
    pub records_written: usize,
    pub missing_data: Vec<String>,
    /// Cells that could not run, with the reason.
    #[serde(default)]
    pub failed: Vec<(String, String)>,
    /// The profile as it ran: the report counts only records this profile asks for.
    #[serde(default)]
    pub profile_spec: Option<Profile>,
    #[serde(default)]
    pub pid: u32,
    /// The build that ran (absent in runs of an eidn from before builds were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<crate::build_info::Build>,
}

impl RunMeta {
    /// Writes `<results>/runs/<started>-<shard>-<pid>.json` atomically (the pid keeps two
    /// runs started in the same second apart).
    pub fn save(&self, results: &Path) -> Result<PathBuf, ExperimentError> {
        let dir = results.join("runs");
        std::fs::create_dir_all(&dir).map_err(|e| ExperimentError::io(&dir, e))?;
        let path = dir.join(self.file_name());
        let json = serde_json::to_vec_pretty(self).expect("run meta serialises");
        write_atomic(&path, &json)?;
        Ok(path)
    }

    /// `<started>-<shard>-<pid>.json`: the same run keeps its name in every folder it is
    /// copied to.
    pub fn file_name(&self) -> String {
        let tag = self.shard.as_deref().unwrap_or("all").replace('/', "-of-");
        format!("{}-{tag}-{}.json", self.started_unix, self.pid)
    }

    /// Every run of a results folder (`runs/*.json`) or of a report (`runs.jsonl.gz`, see
    /// `super::archive`), in file-name order, oldest first; a run in both counts once.
    /// Unreadable entries are skipped with a warning: they describe runs, not results.
    pub fn read_all(results: &Path) -> Vec<RunMeta> {
        let paths = super::store::files_named(&results.join("runs"), |n| n.ends_with(".json"));
        let warn = |what: String| eprintln!("warning: {what} is not a run description; ignored");
        let mut runs: Vec<RunMeta> = paths
            .into_iter()
            .filter_map(|p| {
                let parsed = std::fs::read_to_string(&p)
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok());
                if parsed.is_none() {
                    warn(p.display().to_string());
                }
                parsed
            })
            .collect();
        let carried = results.join(super::archive::RUNS);
        if carried.is_file() {
            let text = super::store::read_text(&carried).unwrap_or_default();
            for (i, line) in text.lines().enumerate() {
                match serde_json::from_str::<RunMeta>(line) {
                    Ok(run) if !runs.iter().any(|r| r.file_name() == run.file_name()) => {
                        runs.push(run)
                    }
                    Ok(_) => {}
                    Err(_) => warn(format!("{} line {}", carried.display(), i + 1)),
                }
            }
            runs.sort_by_key(RunMeta::file_name);
        }
        runs
    }
}

/// CPU model and core count, e.g. "AMD EPYC 9654 96-Core Processor, 2 cores".
pub fn machine_description() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{model}, {cores} cores")
}
