//! `eidn reproduce`, `report` and `regress`: a profile's grid and its report.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use eidn::build_info::Build;
use eidn::experiment::grid::{default_folder, run_grid, GridRequest};
use eidn::experiment::{read_records, select_from_build, Profile, Reuse, ValidProfile};
use eidn::report::{check_out, records_frame, Report, Thresholds};

use crate::cli::{GridArgs, RegressArgs, ReportArgs, ReproduceArgs};
use crate::CHECK_FAILED;

fn request(args: &GridArgs, data_dir: &Path, mirror: Option<&str>, reuse: Reuse) -> GridRequest {
    GridRequest {
        profile_arg: args.profile.clone(),
        results: args.results.clone(),
        shard: args.shard,
        only: args.only.clone(),
        seeds: args.seeds.clone(),
        device: args.device.clone(),
        quiet: args.quiet,
        jobs: args.jobs.map(|n| n as usize),
        dry_run: args.dry_run,
        data_dir: data_dir.to_path_buf(),
        mirror: mirror.map(str::to_string),
        reuse,
    }
}

pub fn reproduce(args: &ReproduceArgs, data_dir: &Path, mirror: Option<&str>) -> Result<ExitCode> {
    let profile = Profile::resolve(&args.grid.profile)?;
    let out = match &args.out {
        Some(out) => out.clone(),
        None => default_folder("reports", &args.grid.profile, &profile)?,
    };
    // Found before any training, not after it.
    if !args.grid.dry_run {
        check_out(&out, args.force)?;
        check_writable(&out)?;
    }
    let req = request(&args.grid, data_dir, mirror, Reuse::SameNumerics);
    let Some((summary, results)) = run_grid(&req, &profile)? else {
        return Ok(ExitCode::SUCCESS);
    };
    write_report(&results, &out, Some(profile), false)?;
    if summary.failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for (cell, why) in &summary.failed {
        eprintln!("failed: {cell}: {why}");
    }
    bail!(
        "{} of {} cells failed (listed above and in the report); fix the cause and rerun to retry them",
        summary.failed.len(),
        summary.cells
    )
}

pub fn report(args: &ReportArgs) -> Result<ExitCode> {
    check_out(&args.out, args.force)?;
    let profile = args.profile.as_deref().map(Profile::resolve).transpose()?;
    write_report(&args.results, &args.out, profile, args.mix_builds)?;
    Ok(ExitCode::SUCCESS)
}

pub fn regress(args: &RegressArgs, data_dir: &Path, mirror: Option<&str>) -> Result<ExitCode> {
    // Loaded and checked before any training.
    let thresholds = Thresholds::load(&args.thresholds)?;
    let profile = Profile::resolve(&args.grid.profile)?;
    let req = request(&args.grid, data_dir, mirror, Reuse::SameBuild);
    let Some((summary, results)) = run_grid(&req, &profile)? else {
        return Ok(ExitCode::SUCCESS);
    };
    // Only this build's numbers: a guard that counted an older build's would not guard.
    let selection = select_from_build(&read_records(&results)?, &profile, &Build::current())?;
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
        return Ok(ExitCode::SUCCESS);
    }
    for f in &failures {
        eprintln!("regress: FAIL {f}");
    }
    Ok(ExitCode::from(CHECK_FAILED))
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

fn write_report(
    results: &Path,
    out: &Path,
    profile: Option<ValidProfile>,
    mix_builds: bool,
) -> Result<()> {
    let report = Report::build(results, profile, mix_builds)?;
    report.write(out)?;
    for line in report.selection.ignored_lines() {
        eprintln!("report: {line}");
    }
    out!("{}", report.terminal_tables()?)?;
    eprintln!("report written to {}", out.join("README.md").display());
    Ok(())
}
