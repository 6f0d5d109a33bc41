//! The `lafs-backup` binary: parse the command line, run, report.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;
use lafs_backup::{Cli, error_message, exit_code, is_broken_pipe, run};

fn main() -> ExitCode {
    install_panic_hook();
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli) {
        Ok(outcome) => ExitCode::from(outcome.code()),
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            let message = error_message(&err);
            let code = exit_code(&err);
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

/// A panic is a bug. It must end the process at once, with one clear
/// message and exit code 1: unwinding could leave upload threads waiting
/// for each other while the entry cache stays locked, and exiting lets the
/// kernel drop the lock (nothing half-written is committed: SQLite rolls an
/// unfinished transaction back). A panic from printing to a closed stdout
/// (`lafs-backup ... | head -1`) is not an error: a quiet exit 0, as
/// docs/exit-codes.md says.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned());
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        // Whatever the message quotes, no cap leaves the process.
        let message = lafs_backup::redact(&message);
        eprintln!("lafs-backup: internal error: {message}{place} (a bug; please report it)");
        std::process::exit(1);
    }));
}
