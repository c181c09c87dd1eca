//! `eidn reproduce`, `report` and `regress`: a profile's grid and its report.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use eidn::build_info::{Build, NUMERICS};
use eidn::experiment::archive;
use eidn::experiment::grid::{default_folder, run_grid, GridRequest};
use eidn::experiment::{read_records, select_from_build, Profile, Record, Reuse, ValidProfile};
use eidn::report::{
    check_out, parse_pair, records_frame, today, CpuFamily, Golden, Method, Report, Thresholds,
};

use crate::cli::{GridArgs, MergeArgs, RegressArgs, ReportArgs, ReproduceArgs};
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
        resume_from: None,
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
    let req = GridRequest {
        resume_from: args.resume_from.clone(),
        ..request(&args.grid, data_dir, mirror, Reuse::SameNumerics)
    };
    let Some((summary, results)) = run_grid(&req, &profile)? else {
        return Ok(ExitCode::SUCCESS);
    };
    write_report(&results, &out, Some(profile), false, &[])?;
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
    write_report(
        &args.results,
        &args.out,
        profile,
        args.mix_builds,
        &args.compare,
    )?;
    Ok(ExitCode::SUCCESS)
}

pub fn merge(args: &MergeArgs) -> Result<ExitCode> {
    let got = archive::merge(&args.sources, &args.into)?;
    out!(
        "merged {} folder(s) into {}: {} records added ({} were there), {} runs",
        args.sources.len(),
        args.into.display(),
        got.records,
        got.present,
        got.runs
    )?;
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
    let mut failures = thresholds.check(&frame)?;
    out!("{}", thresholds.table(&frame)?)?;
    for (cell, why) in &summary.failed {
        eprintln!("regress: FAILED CELL {cell}: {why}");
    }
    let floors_hold = failures.is_empty() && summary.failed.is_empty();
    let golden = check_golden(args, &profile.name, &selection.counted, floors_hold)?;
    let checked = golden.is_some();
    failures.extend(golden.into_iter().flatten());
    if failures.is_empty() && summary.failed.is_empty() {
        out!(
            "regress: every cell at or above its floor{}",
            if checked {
                " and at its golden value"
            } else {
                " (golden values not checked: see above)"
            }
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    for f in &failures {
        eprintln!("regress: FAIL {f}");
    }
    Ok(ExitCode::from(CHECK_FAILED))
}

/// The golden values of this CPU family against this run, or (`--refresh-golden`) this run
/// written as them. Returns the failures, or None when there were no values to check.
fn check_golden(
    args: &RegressArgs,
    profile: &str,
    records: &[Record],
    floors_hold: bool,
) -> Result<Option<Vec<String>>> {
    let cpu = CpuFamily::current();
    let path = Golden::path(&args.golden, profile, &cpu);
    let measured = Golden::measure(records, profile, &cpu, Build::current(), today());
    let refresh = format!(
        "eidn regress --profile {}{} --thresholds {} --refresh-golden",
        args.grid.profile,
        (args.grid.results.as_ref())
            .map(|r| format!(" --results {}", r.display()))
            .unwrap_or_default(),
        args.thresholds.display()
    );
    if args.refresh_golden {
        if !floors_hold {
            bail!(
                "golden values not written to {}: the floors fail (above)",
                path.display()
            );
        }
        measured.write(&path)?;
        out!(
            "regress: golden values of {} cells for {} ({}) written to {}",
            measured.cells.len(),
            cpu.key,
            cpu.name,
            path.display()
        )?;
        return Ok(Some(Vec::new()));
    }
    match Golden::load(&path)? {
        None => eprintln!(
            "regress: no golden values for profile {profile} on this CPU family, {} ({}): no {}, \
             floors only. Record them with `{refresh}`",
            cpu.key,
            cpu.name,
            path.display()
        ),
        Some(g) if g.build.numerics != NUMERICS => eprintln!(
            "regress: the golden values in {} are of numerics version {} (build {}), this build \
             computes version {NUMERICS}: not checked; refresh them with `{refresh}`",
            path.display(),
            g.build.numerics,
            g.build.commit
        ),
        Some(g) => {
            let check = g.check(&measured);
            out!(
                "golden values of {} (measured {} by {}, tolerance {}):\n{}",
                path.display(),
                g.measured,
                g.build.commit,
                g.tolerance,
                check.table
            )?;
            if !check.failures.is_empty() {
                eprintln!(
                    "regress: a golden value moved; if the change meant to move it, bump \
                     build_info::NUMERICS and run `{refresh}`"
                );
            }
            return Ok(Some(check.failures));
        }
    }
    Ok(None)
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
    compare: &[(Method, Method)],
) -> Result<()> {
    let mut report = Report::build(results, profile, mix_builds)?;
    // A report written again keeps the pairs it compared before, then adds the new ones.
    let kept = (archive::read_spec(out)?.into_iter().flat_map(|s| s.compare))
        .map(|pair| parse_pair(&pair).map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()
        .with_context(|| format!("{}", out.join(archive::REPORT).display()))?;
    for pair in kept.iter().chain(compare) {
        if !report.compare.contains(pair) {
            report.compare.push(*pair);
        }
    }
    report.write(out)?;
    for line in report.selection.ignored_lines() {
        eprintln!("report: {line}");
    }
    out!("{}", report.terminal_tables()?)?;
    eprintln!("report written to {}", out.join("README.md").display());
    Ok(())
}
