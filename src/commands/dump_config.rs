//! `dump-config`: the merged configuration, as YAML that `-c` reads back.

use std::io::Write;

use crate::config::Config;
use crate::exit::Outcome;

pub(crate) fn run(config: &Config) -> anyhow::Result<Outcome> {
    let mut out = std::io::stdout().lock();
    out.write_all(config.to_yaml().as_bytes())?;
    out.flush()?;
    Ok(Outcome::Success)
}
