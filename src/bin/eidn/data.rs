//! `eidn data verify | fetch | example` and `eidn weights verify | fetch`: the data directory's
//! datasets and the backbones' weights, checked, fetched or made up.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use comfy_table::{presets, Cell, Table};
use eidn::backbone::{weights, BackboneKind};
use eidn::data::fetch::{fetch_dataset, FetchOptions, FileOutcome};
use eidn::data::manifest::Manifest;
use eidn::data::verify::{verify, DatasetReport, FileVerdict, Status};

use crate::cli::{datasets_named, ExampleArgs, FetchArgs, VerifyArgs, WeightsArgs};
use crate::{code, ERROR};

pub fn verify_command(args: &VerifyArgs, data_dir: &Path, source: &str) -> Result<ExitCode> {
    let manifest = Manifest::builtin();
    let reports: Vec<DatasetReport> = datasets_named(&args.dataset)?
        .into_iter()
        .map(|d| verify(d, data_dir, &manifest))
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

pub fn example(args: &ExampleArgs) -> Result<ExitCode> {
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

pub fn fetch(args: &FetchArgs, data_dir: &Path) -> Result<ExitCode> {
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

fn backbones(args: &WeightsArgs) -> Vec<BackboneKind> {
    match &args.backbone {
        Some(name) => vec![BackboneKind::parse(name).expect("clap admits only known names")],
        None => BackboneKind::ALL.to_vec(),
    }
}

pub fn weights_verify(args: &WeightsArgs, data_dir: &Path) -> Result<ExitCode> {
    let dir = weights::models_dir(data_dir);
    let mut ok = true;
    for kind in backbones(args) {
        match weights::find(kind, &dir) {
            Ok(Some(path)) => out!("{kind}: ok ({})", path.display())?,
            Ok(None) => {
                ok = false;
                out!("{kind}: missing in {} (eidn weights fetch)", dir.display())?;
            }
            Err(e) => {
                ok = false;
                out!("{kind}: {e}")?;
            }
        }
    }
    Ok(code(ok))
}

pub fn weights_fetch(
    args: &WeightsArgs,
    data_dir: &Path,
    mirror: Option<&str>,
) -> Result<ExitCode> {
    let dir = weights::models_dir(data_dir);
    for kind in backbones(args) {
        let path = weights::ensure(kind, &dir, mirror, !args.quiet)?;
        if !args.quiet {
            out!("{kind}: {}", path.display())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
