//! The `lafs-backup` binary: parse the command line, run, report.

use std::process::ExitCode;

use clap::Parser as _;
use lafs_backup::{cli::Cli, commands, exit};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match commands::run(cli) {
        Ok(outcome) => ExitCode::from(outcome.code()),
        Err(err) if exit::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lafs-backup: error: {err:#}");
            ExitCode::from(exit::code_for(&err))
        }
    }
}
