//! `man`: the manual page in roff, generated from the clap definition in
//! [`crate::cli`] (options, subcommands, exit codes from the long help).

use std::io::Write;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::exit::Outcome;

pub(crate) fn run() -> anyhow::Result<Outcome> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&page)?;
    out.flush()?;
    Ok(Outcome::Success)
}
