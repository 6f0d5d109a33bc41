//! `completions SHELL`: a shell completion script, generated from the clap
//! definition in [`crate::cli`] so it can never drift from the real options.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::{Cli, CompletionShell};
use crate::exit::Outcome;

pub(crate) fn run(shell: CompletionShell) -> anyhow::Result<Outcome> {
    let shell = match shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_string();
    // Generated into memory first: clap_complete's writer panics on a write
    // error (a closed pipe), which must be an ordinary error here.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)?;
    out.flush()?;
    Ok(Outcome::Success)
}
