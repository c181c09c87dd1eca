//! A grid command end to end: the results folder, the thread set-up, the plan, the data
//! fetched and verified, then the run. The binary's `reproduce` and `regress` call it.

use std::path::{Path, PathBuf};

use super::archive;
use super::cost::{self, Plan};
use super::meta::{machine_description, RunMeta};
use super::profile::{Cell, Shard, StageId, ValidProfile, BUILTIN};
use super::runner::{run_profile, RunOptions, RunSummary};
use super::select::select;
use super::store::{read_records, Record, ResultStore, Reuse};
use super::ExperimentError;
use crate::build_info::Build;
use crate::data::ensure::ensure;
use crate::data::DatasetName;
use crate::kernels::threads;
use crate::model::{deep_sad, parse_device, CONFIG_FILE};

/// What a grid command asks for.
#[derive(Clone, Debug)]
pub struct GridRequest {
    /// The profile as the user named it (a built-in name or a file).
    pub profile_arg: String,
    /// Results folder (default: `results/<profile name>`).
    pub results: Option<PathBuf>,
    pub shard: Option<Shard>,
    /// Stages to run; empty = all.
    pub only: Vec<StageId>,
    /// Seeds to run; empty = all.
    pub seeds: Vec<u64>,
    pub device: String,
    pub quiet: bool,
    /// Cells at once (default: one per core on CPU, one on a GPU).
    pub jobs: Option<usize>,
    /// Print the plan and stop.
    pub dry_run: bool,
    /// Which stored records count as done (`reproduce`: same numerics; `regress`: same build).
    pub reuse: Reuse,
    pub data_dir: PathBuf,
    pub mirror: Option<String>,
    /// A report (or results) folder whose records seed the results folder first
    /// (`--resume-from`), so a grid continues where another machine or day left it.
    pub resume_from: Option<PathBuf>,
}

/// `<root>/<profile name>`, unless the profile is a file named like a built-in profile:
/// then its results or report would overwrite the built-in's, so the folder must be given.
pub fn default_folder(
    root: &str,
    profile_arg: &str,
    profile: &ValidProfile,
) -> Result<PathBuf, ExperimentError> {
    let builtin = BUILTIN.iter().any(|(n, _)| *n == profile.name);
    if builtin && profile_arg != profile.name {
        return Err(ExperimentError::Usage(format!(
            "{profile_arg} is named {:?} like the built-in profile, so its default {root}/{} would overwrite the built-in's; \
             rename it, or pass --results and --out",
            profile.name, profile.name
        )));
    }
    Ok(PathBuf::from(root).join(&profile.name))
}

/// Runs a profile's grid into its results folder; returns what the run did and the folder
/// (None for a dry run, which only prints the plan). Fixes the process's threads for the
/// number of cells run at once ([`threads::init`]) before any compute.
pub fn run_grid(
    req: &GridRequest,
    profile: &ValidProfile,
) -> Result<Option<(RunSummary, PathBuf)>, ExperimentError> {
    let results = match &req.results {
        Some(r) => r.clone(),
        None => default_folder("results", &req.profile_arg, profile)?,
    };
    let device = parse_device(&req.device)?;
    if let Some(s) = req.seeds.iter().find(|s| !profile.all_seeds().contains(s)) {
        return Err(ExperimentError::Usage(format!(
            "seed {s} is not one of profile {}'s seeds {:?}",
            profile.name,
            profile.all_seeds()
        )));
    }
    if let Some(s) = req
        .only
        .iter()
        .find(|s| !profile.stages.iter().any(|st| st.id == **s))
    {
        let have: Vec<&str> = profile.stages.iter().map(|st| st.id.as_str()).collect();
        return Err(ExperimentError::Usage(format!(
            "--only {}: profile {} has no such stage (its stages: {})",
            s.as_str(),
            profile.name,
            have.join(", ")
        )));
    }
    let cells = profile.cells_of(&req.only, &req.seeds);
    if cells.is_empty() {
        return Err(ExperimentError::Usage(format!(
            "profile {} selects no cells{}",
            profile.name,
            if req.only.is_empty() {
                ""
            } else {
                " with this --only"
            }
        )));
    }
    // One cell per core by default, each on one thread; one cell at a time on a GPU.
    let jobs = match req.jobs {
        Some(n) => n,
        None if device.is_cpu() => threads::cores(),
        None => 1,
    }
    .clamp(1, cells.len().max(1));
    threads::init(jobs)?;
    // The folder's lock comes first: a second run is refused before it calibrates anything.
    let mut store = if req.dry_run {
        None
    } else {
        Some(ResultStore::open(
            &results,
            req.shard.map(|s| s.tag()).as_deref(),
        )?)
    };
    if let (Some(from), Some(store)) = (&req.resume_from, store.as_mut()) {
        let got = archive::import(from, store)?;
        eprintln!(
            "resumed from {}: {} records added to {} ({} were there), {} runs",
            from.display(),
            got.records,
            results.display(),
            got.present,
            got.runs
        );
    }
    // What is done: the store's records (a dry run opens no store: read them, and a resumed
    // report's, here).
    let read;
    let known: &[Record] = match &store {
        Some(store) => store.records(),
        None => {
            let mut records = read_records(&results)?;
            if let Some(from) = &req.resume_from {
                records.extend(archive::records_of(from)?);
            }
            read = records;
            &read
        }
    };
    print_plan(req, profile, known, &results, &cells, jobs)?;
    let Some(mut store) = store else {
        return Ok(None);
    };
    let mut datasets: Vec<DatasetName> = cells.iter().map(|c| c.protocol.dataset).collect();
    datasets.sort_unstable();
    datasets.dedup();
    let verified = ensure(&datasets, &req.data_dir, req.mirror.as_deref(), req.quiet)?;
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let meta = RunMeta {
        profile: profile.name.clone(),
        only: req.only.iter().map(|s| s.as_str().to_string()).collect(),
        shard: req.shard.map(|s| format!("{}/{}", s.index, s.count)),
        commit: Build::current().commit,
        machine: machine_description(),
        device: req.device.clone(),
        seeds: if req.seeds.is_empty() {
            profile.all_seeds()
        } else {
            req.seeds.clone()
        },
        started_unix,
        wall_seconds: 0.0,
        cells: cells.len(),
        cells_run: 0,
        records_written: 0,
        missing_data: Vec::new(),
        failed: Vec::new(),
        profile_spec: Some((**profile).clone()),
        pid: std::process::id(),
        build: Some(Build::current()),
    };
    // Pretrained weights before any long work: downloaded now, or one clear error.
    let models_dir = crate::backbone::weights::models_dir(&req.data_dir);
    let mut backbones: Vec<_> = (cells.iter().flat_map(|c| &c.methods))
        .filter(|(r, _)| r.uses_features())
        .map(|_| crate::backbone::BackboneKind::EfficientNetLite0)
        .collect();
    backbones.dedup();
    for kind in backbones {
        crate::backbone::weights::ensure(kind, &models_dir, req.mirror.as_deref(), !req.quiet)?;
    }
    let options = RunOptions {
        data_dir: req.data_dir.clone(),
        models_dir,
        verified,
        device,
        shard: req.shard,
        only: req.only.clone(),
        seeds: req.seeds.clone(),
        verbose: !req.quiet,
        jobs,
        meta: Some(meta),
        reuse: req.reuse,
    };
    eprintln!(
        "profile {}: {} cells{}{}; results in {}",
        profile.name,
        cells.len(),
        req.shard.map_or(String::new(), |s| format!(
            " (shard {}/{})",
            s.index, s.count
        )),
        match options.jobs {
            1 => String::new(),
            n => format!(", {n} at a time"),
        },
        results.display()
    );
    let summary = run_profile(profile, &mut store, &options)?;
    eprintln!(
        "{} cells: {} run, {} already done, {} without data, {} failed; {} records written in {:.0} s",
        summary.cells,
        summary.cells_run,
        summary.cells_already_done,
        summary.missing_data.len(),
        summary.failed.len(),
        summary.records_written,
        summary.wall_seconds
    );
    Ok(Some((summary, results)))
}

/// The cells and networks left (of this shard) and the wall time they will take here; with
/// `--shard K/N`, every shard's estimate too (an array job's shares should end together).
fn print_plan(
    req: &GridRequest,
    profile: &ValidProfile,
    known: &[Record],
    results: &Path,
    cells: &[Cell],
    jobs: usize,
) -> Result<(), ExperimentError> {
    let counted = select(known, profile)?.counted;
    let plan_of = |cells: &[Cell]| {
        Plan::new(cells, &counted, |c| {
            let dir = results.join("encoders").join(c.id());
            dir.join(CONFIG_FILE).is_file() || dir.join(deep_sad::CONFIG_FILE).is_file()
        })
    };
    let all = plan_of(cells)?;
    let per_step = all.calibrate(&parse_device(&req.device)?)?;
    let Some(shard) = req.shard else {
        for line in all.describe(&per_step, &req.profile_arg, jobs) {
            eprintln!("{line}");
        }
        return Ok(());
    };
    let share = cost::deal(cells, shard.count);
    let of_share = |k: usize| -> Vec<Cell> {
        (cells.iter().zip(&share))
            .filter(|(_, s)| **s == k)
            .map(|(c, _)| c.clone())
            .collect()
    };
    let mine = plan_of(&of_share(shard.index - 1))?;
    for line in mine.describe(&mine.rates_from(&all, &per_step), &req.profile_arg, jobs) {
        eprintln!("{line}");
    }
    eprintln!(
        "shards (cells dealt by estimated cost; wall time left here, {jobs} cell(s) at a time):"
    );
    for k in 0..shard.count {
        let plan = plan_of(&of_share(k))?;
        let seconds = plan.seconds(&plan.rates_from(&all, &per_step), jobs);
        eprintln!(
            "  shard {}/{}: {} cells ({} left), {} training steps, {}{}",
            k + 1,
            shard.count,
            plan.cells,
            plan.cells - plan.done,
            plan.steps.values().sum::<u64>(),
            cost::duration(seconds),
            if k + 1 == shard.index {
                " <- this one"
            } else {
                ""
            }
        );
    }
    Ok(())
}
