//! The `eidn` command line: what each command does (the flags live in `cli`).
//!
//! Exit status: 0 success, 1 a check that failed (`regress` below a threshold, `verify`
//! found a missing or mismatched file), 2 an error. A closed stdout (`eidn ... | head`) ends
//! the program quietly with 0, as ripgrep does.

mod cli;
mod score;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use comfy_table::{presets, Cell, Table};

use cli::{datasets_named, Cli, Command, DataCommand, FetchArgs, GridArgs, TrainArgs};
use eidn::data::catalog::{declare_all, declare_spec};
use eidn::data::fetch::{fetch_dataset, urls_for, FetchOptions, FileOutcome};
use eidn::data::manifest::Manifest;
use eidn::data::protocol::{parse_classes, OneVsRest};
use eidn::data::verify::{verify, DatasetReport, FileVerdict, Status};
use eidn::data::{load, resolve_data_dir, DatasetName};
use eidn::experiment::{
    current_commit, machine_description, read_records, run_profile, select, Plan, Profile,
    ResultStore, RunMeta, RunOptions, RunSummary, ValidProfile,
};
use eidn::metrics::{average_precision, roc_auc};
use eidn::model::{parse_device, Arch, Eidn, EidnParams, TrainOptions};
use eidn::report::{records_frame, Report, Thresholds};

/// A check failed (as opposed to an error, 2).
const CHECK_FAILED: u8 = 1;
const ERROR: u8 = 2;

/// `println!` that returns the write error instead of panicking on a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)
    };
}

fn main() -> ExitCode {
    eidn::model::fast::keep_freed_memory();
    let cli = Cli::parse();
    // A grid fixes candle's thread count when it knows how many cells run at once.
    if !matches!(&cli.command, Command::Reproduce(_) | Command::Regress(_)) {
        eidn::threads::fix_count();
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(ERROR)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(CHECK_FAILED)
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let (data_dir, source) = resolve_data_dir(cli.data_dir.as_deref());
    let mirror = cli.data_mirror.as_deref();
    // The user's datasets are known before any command looks a name up.
    declare_all(&data_dir, cli.datasets.as_deref())?;
    match cli.command {
        Command::Data(DataCommand::Verify(args)) => {
            let manifest = Manifest::builtin();
            let reports: Vec<DatasetReport> = datasets_named(&args.dataset)?
                .into_iter()
                .map(|d| verify(d, &data_dir, &manifest))
                .collect();
            if args.json {
                out!("{}", serde_json::to_string_pretty(&reports)?)?;
            } else {
                out!("data directory: {} ({source})", data_dir.display())?;
                for r in &reports {
                    print_report(r)?;
                }
            }
            Ok(code(reports.iter().all(|r| r.status.usable())))
        }
        Command::Data(DataCommand::Fetch(args)) => fetch(&args, &data_dir),
        Command::Data(DataCommand::Example(args)) => {
            let counts = args.counts;
            eidn::data::example::write_shapes(&args.dir, counts, args.seed)?;
            out!(
                "wrote {} circles, {} squares and {} triangles (28x28 grey) under {}",
                counts[0],
                counts[1],
                counts[2],
                args.dir.display()
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Train(args) => train(&args, &data_dir, mirror),
        Command::Reproduce(args) => {
            let profile = Profile::resolve(&args.grid.profile)?;
            let out = match args.out {
                Some(out) => out,
                None => default_folder("reports", &args.grid, &profile)?,
            };
            // Found before any training, not after it.
            if !args.grid.dry_run {
                check_writable(&out)?;
            }
            let Some((summary, results)) = run_grid(&args.grid, &profile, &data_dir, mirror)?
            else {
                return Ok(ExitCode::SUCCESS);
            };
            write_report(&results, &out, Some(profile))?;
            if summary.failed.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                for (cell, why) in &summary.failed {
                    eprintln!("failed: {cell}: {why}");
                }
                bail!(
                    "{} of {} cells failed (listed above and in the report); fix the cause and rerun to retry them",
                    summary.failed.len(),
                    summary.cells
                )
            }
        }
        Command::Report(args) => {
            let profile = args.profile.as_deref().map(Profile::resolve).transpose()?;
            write_report(&args.results, &args.out, profile)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Regress(args) => {
            // Loaded and checked before any training.
            let thresholds = Thresholds::load(&args.thresholds)?;
            let profile = Profile::resolve(&args.grid.profile)?;
            let Some((summary, results)) = run_grid(&args.grid, &profile, &data_dir, mirror)?
            else {
                return Ok(ExitCode::SUCCESS);
            };
            let selection = select(&read_records(&results)?, &profile)?;
            for line in selection.ignored_lines() {
                eprintln!("regress: {line}");
            }
            let frame = records_frame(&selection.counted, &selection)?;
            let failures = thresholds.check(&frame)?;
            out!("{}", thresholds.table(&frame)?)?;
            for (cell, why) in &summary.failed {
                eprintln!("regress: FAILED CELL {cell}: {why}");
            }
            if failures.is_empty() && summary.failed.is_empty() {
                out!("regress: every cell at or above its threshold")?;
                Ok(ExitCode::SUCCESS)
            } else {
                for f in &failures {
                    eprintln!("regress: FAIL {f}");
                }
                Ok(ExitCode::from(CHECK_FAILED))
            }
        }
        Command::Score(args) => score::score(&args),
        Command::SelectRecipe(args) => select_recipe(&args, &data_dir, mirror),
        Command::Evaluate(args) => {
            let device = parse_device(&args.device)?;
            let model = Eidn::load(&args.model, &device)?;
            report_evaluation(&model, &data_dir, args.json)
        }
    }
}

/// `<root>/<profile name>`, unless the profile is a file named like a built-in profile:
/// then its results or report would overwrite the built-in's, so the folder must be given.
fn default_folder(root: &str, grid: &GridArgs, profile: &ValidProfile) -> Result<PathBuf> {
    let builtin = eidn::experiment::profile::BUILTIN
        .iter()
        .any(|(n, _)| *n == profile.name);
    if builtin && grid.profile != profile.name {
        bail!(
            "{} is named {:?} like the built-in profile, so its default {root}/{} would overwrite the built-in's; \
             rename it, or pass --results and --out",
            grid.profile,
            profile.name,
            profile.name
        );
    }
    Ok(PathBuf::from(root).join(&profile.name))
}

/// Creates `dir` and writes a probe file into it, so an unwritable folder is an error now.
fn check_writable(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create it", dir.display()))?;
    let probe = dir.join(format!(".eidn-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .with_context(|| format!("{}: cannot write into it", dir.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// Makes sure each built-in dataset the run needs is here, fetching missing ones
/// (checksummed, resumable) from their sources or `mirror`; returns their verification
/// reports. Concrete Cracks is left alone (it needs unpacking by hand, and the grid skips
/// its cells when it is absent), and so are the user's own datasets.
fn ensure_data(
    datasets: &[DatasetName],
    data_dir: &Path,
    mirror: Option<&str>,
    quiet: bool,
) -> Result<Vec<DatasetReport>> {
    let manifest = Manifest::builtin();
    let mut reports = Vec::new();
    for &name in datasets {
        if name == DatasetName::Concrete || !name.is_builtin() {
            continue;
        }
        let report = verify(name, data_dir, &manifest);
        match report.status {
            Status::Exact | Status::Variant | Status::Unverified | Status::Mismatch => {
                reports.push(report);
                continue;
            }
            Status::Corrupt => bail!(
                "{name} in {} does not load: {}; delete the damaged file and rerun (it will be downloaded)",
                report.dir.display(),
                report.message.unwrap_or_default()
            ),
            Status::Missing => {}
        }
        let entry = manifest
            .dataset(name)
            .with_context(|| format!("{name} is not in the manifest"))?;
        let base = mirror.map(|m| format!("{}/{name}", m.trim_end_matches('/')));
        eprintln!("{name} is not in {}: downloading it", report.dir.display());
        let options = FetchOptions {
            base_url: base.clone(),
            progress: !quiet,
            ..FetchOptions::default()
        };
        if let Err(e) = fetch_dataset(entry, &name.dir(data_dir), &options) {
            // Files are fetched in order and the first failure stops the fetch: the first
            // file still absent is the one whose sources were tried.
            let dir = name.dir(data_dir);
            let tried: Vec<String> = entry
                .files
                .iter()
                .find(|f| !dir.join(&f.name).is_file())
                .map(|f| urls_for(f, base.as_deref()))
                .unwrap_or_default();
            bail!(
                "{name} is missing in {} and could not be downloaded ({e}).\nTried: {}.\n\
                 Copy the files there by hand (see `eidn data verify --dataset {name}`), point --data-dir or \
                 EIDN_DATA_DIR at a copy, or pass --data-mirror URL; a partial download resumes on the next run.",
                report.dir.display(),
                tried.join(", ")
            );
        }
        let after = verify(name, data_dir, &manifest);
        if !after.status.usable() {
            bail!(
                "{name} was downloaded into {} but does not verify: {}",
                after.dir.display(),
                after.message.unwrap_or_default()
            );
        }
        reports.push(after);
    }
    Ok(reports)
}

/// Runs a profile's grid into its results folder; returns what the run did and the folder
/// (None for `--dry-run`, which only prints the plan).
fn run_grid(
    args: &GridArgs,
    profile: &ValidProfile,
    data_dir: &Path,
    mirror: Option<&str>,
) -> Result<Option<(RunSummary, PathBuf)>> {
    let results = match &args.results {
        Some(r) => r.clone(),
        None => default_folder("results", args, profile)?,
    };
    let only = args.only.clone();
    let shard = args.shard;
    let device = parse_device(&args.device)?;
    if let Some(s) = args.seeds.iter().find(|s| !profile.all_seeds().contains(s)) {
        bail!(
            "seed {s} is not one of profile {}'s seeds {:?}",
            profile.name,
            profile.all_seeds()
        );
    }
    let cells = profile.cells_of(&only, &args.seeds);
    // One cell per core by default, each on one thread (see `fix_count_for_jobs`); one cell
    // at a time on a GPU.
    let jobs = match args.jobs {
        Some(n) => n as usize,
        None if device.is_cpu() => eidn::threads::cores(),
        None => 1,
    }
    .clamp(1, cells.len().max(1));
    eidn::threads::fix_count_for_jobs(jobs);
    print_plan(args, profile, &results, &cells, jobs)?;
    if args.dry_run {
        return Ok(None);
    }
    let mut datasets: Vec<DatasetName> = cells.iter().map(|c| c.protocol.dataset).collect();
    datasets.sort_unstable();
    datasets.dedup();
    let mut store = ResultStore::open(&results, shard.map(|s| s.tag()).as_deref())?;
    let verified = ensure_data(&datasets, data_dir, mirror, args.quiet)?;
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let meta = RunMeta {
        profile: profile.name.clone(),
        only: only.iter().map(|s| s.as_str().to_string()).collect(),
        shard: shard.map(|s| format!("{}/{}", s.index, s.count)),
        commit: current_commit(),
        machine: machine_description(),
        device: args.device.clone(),
        seeds: if args.seeds.is_empty() {
            profile.all_seeds()
        } else {
            args.seeds.clone()
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
    };
    let options = RunOptions {
        data_dir: data_dir.to_path_buf(),
        verified,
        device,
        shard,
        only,
        seeds: args.seeds.clone(),
        verbose: !args.quiet,
        jobs,
        meta: Some(meta),
    };
    eprintln!(
        "profile {}: {} cells{}{}; results in {}",
        profile.name,
        cells.len(),
        shard.map_or(String::new(), |s| format!(
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

/// The cells and networks left (of this shard) and the wall time they will take here.
fn print_plan(
    args: &GridArgs,
    profile: &ValidProfile,
    results: &Path,
    cells: &[eidn::experiment::Cell],
    jobs: usize,
) -> Result<()> {
    let mine: Vec<_> = cells
        .iter()
        .enumerate()
        .filter(|(i, _)| args.shard.is_none_or(|s| s.takes(*i)))
        .map(|(_, c)| c.clone())
        .collect();
    let counted = select(&read_records(results)?, profile)?.counted;
    let plan = Plan::new(&mine, &counted, |c| {
        let dir = results.join("encoders").join(c.id());
        dir.join(eidn::model::CONFIG_FILE).is_file()
            || dir.join(eidn::model::deep_sad::CONFIG_FILE).is_file()
    })?;
    let per_step = plan.calibrate(&parse_device(&args.device)?)?;
    for line in plan.describe(&per_step, &args.profile, jobs) {
        eprintln!("{line}");
    }
    Ok(())
}

fn write_report(results: &Path, out: &Path, profile: Option<ValidProfile>) -> Result<()> {
    let report = Report::build(results, profile)?;
    report.write(out)?;
    for line in report.selection.ignored_lines() {
        eprintln!("report: {line}");
    }
    out!("{}", report.terminal_tables()?)?;
    eprintln!("report written to {}", out.join("README.md").display());
    Ok(())
}

fn train(args: &TrainArgs, data_dir: &Path, mirror: Option<&str>) -> Result<ExitCode> {
    let device = parse_device(&args.device)?;
    let params = EidnParams {
        embed_dim: args.embed_dim,
        margin: args.margin,
        lr: args.lr,
        epochs: args.epochs,
        steps_per_epoch: args.steps_per_epoch,
        batch_size: args.batch_size,
        seed: args.seed,
        augment: args.augment,
        arch: Arch {
            same_padding: args.same_padding,
            width: args.width,
            blocks: args.blocks,
        },
    }
    .check()?;
    if !(args.anomaly_ratio > 0.0 && args.anomaly_ratio <= 100.0) {
        bail!(
            "--anomaly-ratio {} must be in (0, 100] (labelled anomalies per normal training image)",
            args.anomaly_ratio
        );
    }
    let dataset = DatasetName::resolve(&args.dataset)?;
    let names = dataset.class_names()?;
    let normal = parse_classes(&args.normal_class, &names)
        .map_err(|e| anyhow::anyhow!("--normal-class {:?}: {e}", args.normal_class))?;
    let protocol =
        OneVsRest::new(dataset, normal[0], args.anomaly_ratio, args.seed).with_normal(&normal);
    let report = match ensure_data(&[protocol.dataset], data_dir, mirror, args.quiet)?.pop() {
        Some(report) => report,
        // Concrete Cracks and the user's own: not fetched, only checked.
        None => verify(protocol.dataset, data_dir, &Manifest::builtin()),
    };
    // A mismatch only warns (below); data that does not load is an error now.
    if matches!(report.status, Status::Missing | Status::Corrupt) {
        bail!(
            "{dataset} in {}: {}",
            report.dir.display(),
            report.message.as_deref().unwrap_or("does not load")
        );
    }
    let status = report.status.label(report.variant.as_deref());
    if report.status == Status::Mismatch {
        eprintln!(
            "WARNING: {}\nWARNING: training on data that is not the published {}: the result is not comparable \
             (recorded as \"checksum mismatch\" in eidn.json)",
            report.message.as_deref().unwrap_or("a file does not match its checksum"),
            protocol.dataset
        );
    }
    let data = load(protocol.dataset, data_dir, args.seed)?;
    let pools = protocol.pools(&data)?;
    if !args.quiet {
        eprintln!(
            "training on {} normal ({}) + {} anomalous images, {} steps of {} triplets",
            pools.normal.len(),
            protocol.normal_name(&data.train.class_names),
            pools.anomalous.len(),
            args.epochs * args.steps_per_epoch,
            args.batch_size
        );
    }
    let options = TrainOptions {
        progress: !args.quiet,
        protocol: Some(protocol),
        reference_ops: args.reference_ops,
        data: status,
        calibrate_fpr: Some(args.fpr),
    };
    let mut model = params.fit(&pools, &device, &options)?;
    model.config.dataset = dataset.declaration().map(|d| d.spec());
    model.save(&args.out)?;
    if !args.quiet {
        eprintln!(
            "saved {} ({:.1} s)",
            args.out.display(),
            model.config.train_seconds
        );
    }
    report_evaluation(&model, data_dir, args.json)
}

/// `eidn select-recipe`: validation of the EIDN+ candidates on a dataset's training split.
fn select_recipe(
    args: &cli::SelectRecipeArgs,
    data_dir: &Path,
    mirror: Option<&str>,
) -> Result<ExitCode> {
    use eidn::experiment::recipe;
    let dataset = DatasetName::resolve(&args.dataset)?;
    let (text, origin) = match &args.candidates {
        Some(f) => (
            std::fs::read_to_string(f).with_context(|| format!("{}", f.display()))?,
            f.clone(),
        ),
        None => (
            recipe::CANDIDATES.to_string(),
            PathBuf::from("configs/eidn_plus_candidates.toml"),
        ),
    };
    let spec = recipe::select_spec(&text, &origin, dataset)?;
    ensure_data(&[dataset], data_dir, mirror, args.quiet)?;
    let device = parse_device(&args.device)?;
    // Only the training split goes in: the selection has no way to read the test split.
    let train = load(dataset, data_dir, 0)?.train;
    let selection = recipe::select(&train, dataset, &spec, &device, !args.quiet)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create it", args.out.display()))?;
    let md = selection.markdown(&spec);
    eidn::experiment::write_atomic(&args.out.join(format!("{dataset}.md")), md.as_bytes())?;
    eidn::experiment::write_atomic(
        &args.out.join(format!("{dataset}.toml")),
        selection.recipe_toml().as_bytes(),
    )?;
    out!("{md}")?;
    let name = &selection.rows[selection.chosen].0;
    if selection.matches_committed() {
        out!("chosen: {name}, the recipe committed in configs/eidn_plus.toml")?;
        Ok(ExitCode::SUCCESS)
    } else {
        out!(
            "chosen: {name}, which is NOT the recipe committed in configs/eidn_plus.toml; \
             the chosen one is in {}",
            args.out.join(format!("{dataset}.toml")).display()
        )?;
        Ok(ExitCode::from(CHECK_FAILED))
    }
}

/// Test ROC AUC and AP of `model` on its protocol's test set.
fn report_evaluation(model: &Eidn, data_dir: &Path, json: bool) -> Result<ExitCode> {
    let protocol = model
        .config
        .protocol
        .clone()
        .context("the model records no data protocol, so its test set is unknown")?;
    if let Some(spec) = &model.config.dataset {
        declare_spec(spec, "the model's eidn.json")?;
    }
    let data = load(protocol.dataset, data_dir, protocol.seed)?;
    let test = protocol.test_set(&data)?;
    let start = Instant::now();
    let scores = model.score(&test.images)?;
    let score_seconds = start.elapsed().as_secs_f64();
    let auc = roc_auc(&scores, &test.is_anomaly)?;
    let ap = average_precision(&scores, &test.is_anomaly)?;
    if json {
        let out = serde_json::json!({
            "auc": auc,
            "ap": ap,
            "train_seconds": model.config.train_seconds,
            "score_seconds": score_seconds,
            "steps": model.config.steps,
            "dataset": protocol.dataset,
            "normal_class": protocol.normal_class,
            "normal_classes": protocol.normal_classes(),
            "normal_name": protocol.normal_name(&data.test.class_names),
            "anomaly_ratio": protocol.anomaly_ratio,
            "seed": protocol.seed,
            "n_test": test.images.len(),
            "n_test_anomalies": test.is_anomaly.iter().filter(|&&a| a).count(),
        });
        out!("{}", serde_json::to_string_pretty(&out)?)?;
    } else {
        out!(
            "{} normal {} at anomaly ratio {}: test ROC AUC {auc:.4}, AP {ap:.4} ({} test images; {} steps in {:.1} s)",
            protocol.dataset,
            protocol.normal_name(&data.test.class_names),
            protocol.anomaly_ratio,
            test.images.len(),
            model.config.steps,
            model.config.train_seconds
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn fetch(args: &FetchArgs, data_dir: &Path) -> Result<ExitCode> {
    let manifest = Manifest::builtin();
    let options = FetchOptions {
        base_url: args.base_url.clone(),
        progress: !args.quiet,
        force: args.force,
        ..FetchOptions::default()
    };
    let mut failed = false;
    for name in datasets_named(&args.dataset)? {
        if !name.is_builtin() {
            out!("{name}: your own dataset (declared, not downloaded); `eidn data verify --dataset {name}` checks it")?;
            continue;
        }
        let before = verify(name, data_dir, &manifest);
        if before.status.usable() && !args.force {
            out!("{name}: present ({:?}); nothing to fetch", before.status)?;
            continue;
        }
        let entry = manifest
            .dataset(name)
            .with_context(|| format!("{name} is not in the manifest"))?;
        let dir = name.dir(data_dir);
        match fetch_dataset(entry, &dir, &options) {
            Ok(outcomes) => {
                for (file, outcome) in outcomes {
                    match outcome {
                        FileOutcome::Present => out!("{name}: {file} already present")?,
                        FileOutcome::Downloaded { sha256 } => {
                            out!("{name}: {file} downloaded, SHA-256 {sha256} ok")?
                        }
                        FileOutcome::DownloadedUnverified { sha256 } => out!(
                            "{name}: {file} downloaded; no checksum on record, its SHA-256 is {sha256}"
                        )?,
                    }
                }
                if let Some(step) = &entry.after_fetch {
                    out!("{name}: next, {step}")?;
                }
                let after = verify(name, data_dir, &manifest);
                out!("{name}: now {:?}", after.status)?;
                failed |= !after.status.usable() && entry.after_fetch.is_none();
            }
            Err(e) => {
                eprintln!("{name}: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(ERROR)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_report(r: &DatasetReport) -> std::io::Result<()> {
    let status = match r.status {
        Status::Exact => "EXACT: original distribution".to_string(),
        Status::Variant => format!(
            "VARIANT {}: {}",
            r.variant.as_deref().unwrap_or("?"),
            r.variant_description.as_deref().unwrap_or("")
        ),
        Status::Unverified => {
            "UNVERIFIED: loads, but not every file has a checksum on record".into()
        }
        Status::Missing => "MISSING".into(),
        Status::Mismatch => "CHECKSUM MISMATCH: loads, but is not the published data".into(),
        Status::Corrupt => "CORRUPT".into(),
    };
    out!("\n== {} ({}) — {status}", r.name, r.dir.display())?;
    // A variant's message repeats its description, already on the status line.
    if let (Some(m), false) = (&r.message, r.status == Status::Variant) {
        out!("   {m}")?;
    }
    if matches!(r.status, Status::Missing) {
        out!("   how to get it: {}", r.how_to_get)?;
    }
    if !r.files.is_empty() {
        let mut t = Table::new();
        t.load_style(presets::ASCII_MARKDOWN);
        t.set_header(["file", "bytes", "SHA-256", "check"]);
        for f in &r.files {
            let check = match &f.verdict {
                FileVerdict::Original => "ok (original)".to_string(),
                FileVerdict::Variant { variant } => format!("known variant {variant}"),
                FileVerdict::Mismatch { expected } => {
                    format!("MISMATCH (expected {})", &expected[..16])
                }
                FileVerdict::Unknown => "no checksum on record".into(),
            };
            t.add_row([
                Cell::new(&f.name),
                Cell::new(f.bytes),
                Cell::new(format!("{}…", &f.sha256[..16])),
                Cell::new(check),
            ]);
        }
        out!("{t}")?;
    }
    if r.train + r.test > 0 {
        let mut t = Table::new();
        t.load_style(presets::ASCII_MARKDOWN);
        let mut header = vec!["split".to_string(), "records".to_string()];
        header.extend(r.class_names.iter().cloned());
        t.set_header(header);
        for (split, n, per_class) in [
            ("train", r.train, &r.train_per_class),
            ("test", r.test, &r.test_per_class),
        ] {
            let mut row = vec![split.to_string(), n.to_string()];
            row.extend(per_class.iter().map(|c| c.to_string()));
            t.add_row(row);
        }
        if let Some([c, h, w]) = r.shape {
            out!("   images: {c}x{h}x{w}")?;
        }
        out!("{t}")?;
    }
    Ok(())
}
