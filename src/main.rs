//! The `lafs-backup` binary: parse the command line, run, report.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;
use lafs_backup::{cli::Cli, commands, exit};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match commands::run(cli) {
        Ok(outcome) => ExitCode::from(outcome.code()),
        Err(err) if exit::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            let message = exit::message(&err);
            let code = exit::code_for(&err);
            eprintln!("lafs-backup: error: {message}");
            if json {
                // Scripts reading --json get the failure on stdout too; a
                // closed stdout changes nothing about the exit code.
                let line = serde_json::json!({"type": "error", "code": code, "message": message});
                let _ = writeln!(std::io::stdout(), "{line}");
            }
            ExitCode::from(code)
        }
    }
}
