//! The `eidn` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use comfy_table::{presets, Cell, Table};

use eidn::data::fetch::{fetch_dataset, FetchOptions, FileOutcome};
use eidn::data::manifest::Manifest;
use eidn::data::protocol::OneVsRest;
use eidn::data::verify::{verify, DatasetReport, FileVerdict, Status};
use eidn::data::{load, resolve_data_dir, DatasetName};
use eidn::experiment::{
    current_commit, machine_description, read_records, run_profile, Profile, ResultStore, RunMeta,
    RunOptions, Shard, StageId, ValidProfile,
};
use eidn::metrics::{average_precision, roc_auc};
use eidn::model::{parse_device, Eidn, EidnParams, TrainOptions};
use eidn::report::{Report, Thresholds};

#[derive(Parser)]
#[command(
    name = "eidn",
    version,
    about = "Enforced Isolation Deep Network: anomaly detection in images with a few labelled anomalies"
)]
struct Cli {
    /// Data directory (default: $EIDN_DATA_DIR, else datasets/ in the repository).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check, describe and download the datasets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Train an EIDN encoder on one-vs-rest pools and save it (safetensors + eidn.json).
    Train(TrainArgs),
    /// Score the test set of a saved model's protocol: ROC AUC and average precision.
    Evaluate(EvaluateArgs),
    /// Run a profile's grid (resuming where a previous run stopped), then write its report.
    Reproduce(ReproduceArgs),
    /// Write the markdown report and charts from a results folder (all shards merged).
    Report(ReportArgs),
    /// Run a profile and fail, naming each cell, when a mean AUC is below its threshold.
    Regress(RegressArgs),
}

#[derive(Args)]
struct GridArgs {
    /// A built-in profile (paper, quick, ci) or a TOML file.
    #[arg(long, default_value = "quick")]
    profile: String,
    /// Results folder (default: results/<profile name>).
    #[arg(long, value_name = "DIR")]
    results: Option<PathBuf>,
    /// Run every N-th cell starting at the K-th (1-based), e.g. for a SLURM array job.
    #[arg(long, value_name = "K/N")]
    shard: Option<String>,
    /// Only these stages (table1, table2, table3, fig5, unseen, fig7), comma-separated.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// cpu, or cuda[:N] with the `cuda` feature.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// No per-cell lines.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct ReproduceArgs {
    #[command(flatten)]
    grid: GridArgs,
    /// Report folder (default: reports/<profile name>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct ReportArgs {
    /// A results folder written by `eidn reproduce`.
    #[arg(long, value_name = "DIR")]
    results: PathBuf,
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

#[derive(Args)]
struct RegressArgs {
    #[command(flatten)]
    grid: GridArgs,
    /// TOML file of per-cell minimum mean AUCs.
    #[arg(long, value_name = "FILE")]
    thresholds: PathBuf,
}

#[derive(Args)]
struct TrainArgs {
    #[arg(long, value_enum)]
    dataset: DatasetArg,
    /// The normal class (label); every other class is anomalous.
    #[arg(long)]
    normal_class: u8,
    /// Labelled training anomalies as a fraction of the normal training images.
    #[arg(long, default_value_t = 0.01)]
    anomaly_ratio: f64,
    #[arg(long, default_value_t = 50)]
    epochs: usize,
    #[arg(long, default_value_t = 100)]
    steps_per_epoch: usize,
    /// Triplets per step.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// The loss margin alpha.
    #[arg(long, default_value_t = 0.2)]
    margin: f64,
    /// Embedding dimension l.
    #[arg(long, default_value_t = 2)]
    embed_dim: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Seeds the anomaly draw, the weights and the triplet sampler.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// cpu, or cuda[:N] with the `cuda` feature.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Folder for model.safetensors and eidn.json.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Train the conv blocks with candle's own ops instead of the fast CPU path (slower;
    /// for checking the fast path).
    #[arg(long)]
    reference_ops: bool,
    /// Print the evaluation as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct EvaluateArgs {
    /// A folder written by `eidn train`.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DatasetArg {
    Mnist,
    Cifar10,
    Concrete,
}

impl From<DatasetArg> for DatasetName {
    fn from(d: DatasetArg) -> Self {
        match d {
            DatasetArg::Mnist => DatasetName::Mnist,
            DatasetArg::Cifar10 => DatasetName::Cifar10,
            DatasetArg::Concrete => DatasetName::Concrete,
        }
    }
}

#[derive(Subcommand)]
enum DataCommand {
    /// Check every file against the manifest's SHA-256 and count records per split and class;
    /// exits non-zero when a requested dataset is missing or corrupt.
    Verify(VerifyArgs),
    /// Download missing files from their canonical sources, checking size and SHA-256.
    Fetch(FetchArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    Mnist,
    Cifar10,
    Concrete,
    All,
}

impl Which {
    fn datasets(self) -> Vec<DatasetName> {
        match self {
            Which::Mnist => vec![DatasetName::Mnist],
            Which::Cifar10 => vec![DatasetName::Cifar10],
            Which::Concrete => vec![DatasetName::Concrete],
            Which::All => DatasetName::ALL.to_vec(),
        }
    }
}

#[derive(Args)]
struct VerifyArgs {
    #[arg(long, value_enum, default_value = "all")]
    dataset: Which,
    /// Print one JSON array (an object per dataset) instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct FetchArgs {
    #[arg(long, value_enum, default_value = "all")]
    dataset: Which,
    /// Download from this mirror instead (files are fetched as <URL>/<file name>).
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// Download the original files even when a usable copy (e.g. a variant) is present.
    #[arg(long)]
    force: bool,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    eidn::model::fast::keep_freed_memory();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let (data_dir, source) = resolve_data_dir(cli.data_dir.as_deref());
    match cli.command {
        Command::Data(DataCommand::Verify(args)) => {
            let manifest = Manifest::builtin();
            let reports: Vec<DatasetReport> = args
                .dataset
                .datasets()
                .into_iter()
                .map(|d| verify(d, &data_dir, &manifest))
                .collect();
            if args.json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
            } else {
                println!("data directory: {} (from {source})", data_dir.display());
                for r in &reports {
                    print_report(r);
                }
            }
            let failed = reports
                .iter()
                .any(|r| matches!(r.status, Status::Missing | Status::Corrupt));
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Data(DataCommand::Fetch(args)) => fetch(&args, &data_dir),
        Command::Train(args) => train(&args, &data_dir),
        Command::Reproduce(args) => {
            let (profile, results) = run_grid(&args.grid, &data_dir)?;
            let out = args
                .out
                .unwrap_or_else(|| PathBuf::from("reports").join(&profile.name));
            write_report(&results, &out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Report(args) => {
            write_report(&args.results, &args.out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Regress(args) => {
            let (_, results) = run_grid(&args.grid, &data_dir)?;
            let thresholds = Thresholds::load(&args.thresholds)?;
            let records = read_records(&results)?;
            let failures = thresholds.check(&records);
            println!("{}", thresholds.table(&records));
            if failures.is_empty() {
                println!("regress: every cell at or above its threshold");
                Ok(ExitCode::SUCCESS)
            } else {
                for f in &failures {
                    eprintln!("regress: FAIL {f}");
                }
                Ok(ExitCode::FAILURE)
            }
        }
        Command::Evaluate(args) => {
            let device = parse_device(&args.device)?;
            let model = Eidn::load(&args.model, &device)
                .with_context(|| format!("loading {}", args.model.display()))?;
            report_evaluation(&model, &data_dir, args.json)
        }
    }
}

/// Runs a profile's grid into its results folder; returns the profile and the folder.
fn run_grid(args: &GridArgs, data_dir: &Path) -> Result<(ValidProfile, PathBuf)> {
    let profile = Profile::resolve(&args.profile)?;
    let results = args
        .results
        .clone()
        .unwrap_or_else(|| PathBuf::from("results").join(&profile.name));
    let shard = args.shard.as_deref().map(Shard::parse).transpose()?;
    let only = args
        .only
        .iter()
        .map(|s| StageId::parse(s).with_context(|| format!("--only: no stage named {s:?}")))
        .collect::<Result<Vec<_>>>()?;
    let mut store = ResultStore::open(&results, shard.map(|s| s.tag()).as_deref())?;
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let cells = profile.cells(&only).len();
    let meta = RunMeta {
        profile: profile.name.clone(),
        only: only.iter().map(|s| s.as_str().to_string()).collect(),
        shard: shard.map(|s| format!("{}/{}", s.index, s.count)),
        commit: current_commit(),
        machine: machine_description(),
        device: args.device.clone(),
        seeds: profile.all_seeds(),
        started_unix,
        wall_seconds: 0.0,
        cells,
        cells_run: 0,
        records_written: 0,
        missing_data: Vec::new(),
    };
    let options = RunOptions {
        data_dir: data_dir.to_path_buf(),
        device: parse_device(&args.device)?,
        shard,
        only,
        verbose: !args.quiet,
        meta: Some(meta),
    };
    eprintln!(
        "profile {}: {cells} cells{}; results in {}",
        profile.name,
        shard.map_or(String::new(), |s| format!(
            " (shard {}/{})",
            s.index, s.count
        )),
        results.display()
    );
    let summary = run_profile(&profile, &mut store, &options)?;
    eprintln!(
        "{} cells: {} run, {} already done, {} without data; {} records written in {:.0} s",
        summary.cells,
        summary.cells_run,
        summary.cells_already_done,
        summary.missing_data.len(),
        summary.records_written,
        summary.wall_seconds
    );
    Ok((profile, results))
}

fn write_report(results: &Path, out: &Path) -> Result<()> {
    let report = Report::build(results)?;
    report.write(out)?;
    println!("{}", report.terminal_tables());
    eprintln!("report written to {}", out.join("README.md").display());
    Ok(())
}

fn train(args: &TrainArgs, data_dir: &Path) -> Result<ExitCode> {
    let device = parse_device(&args.device)?;
    let params = EidnParams {
        embed_dim: args.embed_dim,
        margin: args.margin,
        lr: args.lr,
        epochs: args.epochs,
        steps_per_epoch: args.steps_per_epoch,
        batch_size: args.batch_size,
        seed: args.seed,
    }
    .check()?;
    let protocol = OneVsRest::new(
        args.dataset.into(),
        args.normal_class,
        args.anomaly_ratio,
        args.seed,
    );
    let data = load(protocol.dataset, data_dir, args.seed)?;
    let pools = protocol.pools(&data)?;
    if !args.quiet {
        eprintln!(
            "training on {} normal ({}) + {} anomalous images, {} steps of {} triplets",
            pools.normal.len(),
            data.train.class_names[args.normal_class as usize],
            pools.anomalous.len(),
            args.epochs * args.steps_per_epoch,
            args.batch_size
        );
    }
    let options = TrainOptions {
        progress: !args.quiet,
        protocol: Some(protocol),
        reference_ops: args.reference_ops,
    };
    let model = params.fit(&pools, &device, &options)?;
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

/// Test ROC AUC and AP of `model` on its protocol's test set.
fn report_evaluation(model: &Eidn, data_dir: &Path, json: bool) -> Result<ExitCode> {
    let protocol = model
        .config
        .protocol
        .clone()
        .context("the model records no data protocol, so its test set is unknown")?;
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
            "anomaly_ratio": protocol.anomaly_ratio,
            "seed": protocol.seed,
            "n_test": test.images.len(),
            "n_test_anomalies": test.is_anomaly.iter().filter(|&&a| a).count(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{} class {} ({}) at anomaly ratio {}: test ROC AUC {auc:.4}, AP {ap:.4} ({} test images; {} steps in {:.1} s)",
            protocol.dataset,
            protocol.normal_class,
            data.test.class_names[protocol.normal_class as usize],
            protocol.anomaly_ratio,
            test.images.len(),
            model.config.steps,
            model.config.train_seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn fetch(args: &FetchArgs, data_dir: &Path) -> Result<ExitCode> {
    let manifest = Manifest::builtin();
    let options = FetchOptions {
        base_url: args.base_url.clone(),
        progress: !args.quiet,
        ..FetchOptions::default()
    };
    let mut failed = false;
    for name in args.dataset.datasets() {
        let before = verify(name, data_dir, &manifest);
        if before.status.usable() && !args.force {
            println!("{name}: present ({:?}); nothing to fetch", before.status);
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
                        FileOutcome::Present => println!("{name}: {file} already present"),
                        FileOutcome::Downloaded { sha256 } => {
                            println!("{name}: {file} downloaded, SHA-256 {sha256} ok")
                        }
                        FileOutcome::DownloadedUnverified { sha256 } => println!(
                            "{name}: {file} downloaded; no checksum on record, its SHA-256 is {sha256}"
                        ),
                    }
                }
                if let Some(step) = &entry.after_fetch {
                    println!("{name}: next, {step}");
                }
                let after = verify(name, data_dir, &manifest);
                println!("{name}: now {:?}", after.status);
                failed |= !after.status.usable() && entry.after_fetch.is_none();
            }
            Err(e) => {
                eprintln!("{name}: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_report(r: &DatasetReport) {
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
        Status::Corrupt => "CORRUPT".into(),
    };
    println!("\n== {} ({}) — {status}", r.name, r.dir.display());
    // A variant's message repeats its description, already on the status line.
    if let (Some(m), false) = (&r.message, r.status == Status::Variant) {
        println!("   {m}");
    }
    if matches!(r.status, Status::Missing) {
        println!("   how to get it: {}", r.how_to_get);
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
        println!("{t}");
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
            println!("   images: {c}x{h}x{w}");
        }
        println!("{t}");
    }
}
