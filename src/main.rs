//! The `eidn` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use comfy_table::{presets, Cell, Table};

use eidn::data::fetch::{fetch_dataset, FetchOptions, FileOutcome};
use eidn::data::manifest::Manifest;
use eidn::data::verify::{verify, DatasetReport, FileVerdict, Status};
use eidn::data::{resolve_data_dir, DatasetName};

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
    }
}

fn fetch(args: &FetchArgs, data_dir: &std::path::Path) -> Result<ExitCode> {
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
