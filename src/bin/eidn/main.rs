//! The `eidn` command line: parse (`cli`), call the library, print, map errors to exit codes.
//! One file per group of commands.
//!
//! Exit status: 0 success, 1 a check that failed (`regress` below a threshold, `verify`
//! found a missing or mismatched file), 2 an error. A closed stdout (`eidn ... | head`) ends
//! the program quietly with 0, as ripgrep does.

use std::process::ExitCode;

use clap::Parser;

/// `println!` that returns the write error instead of panicking on a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)
    };
}

mod cli;
mod data;
mod grid;
mod saved;
mod score;
mod train;

use cli::{Cli, Command, DataCommand, WeightsCommand};
use eidn::data::catalog::declare_all;
use eidn::data::resolve_data_dir;

/// A check failed (as opposed to an error, 2).
const CHECK_FAILED: u8 = 1;
const ERROR: u8 = 2;

fn main() -> ExitCode {
    eidn::kernels::buffers::keep_freed_memory();
    let cli = Cli::parse();
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

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // A grid fixes the threads itself once it knows how many cells run at once.
    if !matches!(&cli.command, Command::Reproduce(_) | Command::Regress(_)) {
        eidn::kernels::threads::init(1)?;
    }
    let (data_dir, source) = resolve_data_dir(cli.data_dir.as_deref());
    let mirror = cli.data_mirror.as_deref();
    // The user's datasets are known before any command looks a name up.
    declare_all(&data_dir, cli.datasets.as_deref())?;
    match cli.command {
        Command::Data(DataCommand::Verify(args)) => {
            data::verify_command(&args, &data_dir, &source.to_string())
        }
        Command::Data(DataCommand::Fetch(args)) => data::fetch(&args, &data_dir),
        Command::Data(DataCommand::Example(args)) => data::example(&args),
        Command::Weights(WeightsCommand::Verify(args)) => data::weights_verify(&args, &data_dir),
        Command::Weights(WeightsCommand::Fetch(args)) => {
            data::weights_fetch(&args, &data_dir, mirror)
        }
        Command::Train(args) => train::train(&args, &data_dir, mirror),
        Command::Evaluate(args) => train::evaluate(&args, &data_dir, mirror),
        Command::SelectRecipe(args) => train::select_recipe(&args, &data_dir, mirror),
        Command::SelectMethod(args) => train::select_method(&args, &data_dir, mirror),
        Command::Reproduce(args) => grid::reproduce(&args, &data_dir, mirror),
        Command::Report(args) => grid::report(&args),
        Command::Merge(args) => grid::merge(&args),
        Command::Regress(args) => grid::regress(&args, &data_dir, mirror),
        Command::Score(args) => score::score(&args, &data_dir, mirror),
    }
}
