//! One module per subcommand; this one loads the configuration and
//! dispatches.

pub mod backup;
pub mod check;
pub mod cleanup;
pub mod dump_config;
pub mod list;
pub mod restore;
pub mod verify;

use tracing::{Level, warn};

use crate::cli::{Cli, Command};
use crate::config::{self, LogLevel};
use crate::exit::Outcome;

/// Runs the parsed command line to completion.
pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let loaded = config::load(&cli.config)?;
    crate::logging::init(log_level(&cli, loaded.config.logging.level));
    for warning in &loaded.warnings {
        warn!("{warning}");
    }
    let config = loaded.config;
    match cli.command {
        Command::Backup(ref args) => backup::run(&cli, args, config),
        Command::List(ref args) => list::run(&cli, args, &config),
        Command::Check(ref args) => check::run(&cli, args, &config),
        Command::Cleanup(ref args) => cleanup::run(&cli, args, &config),
        Command::Restore(ref args) => restore::run(&cli, args, &config),
        Command::Verify(ref args) => verify::run(&cli, args, &config),
        Command::DumpConfig => dump_config::run(&config),
    }
}

fn log_level(cli: &Cli, configured: LogLevel) -> Level {
    if cli.noise {
        return Level::TRACE;
    }
    if cli.debug {
        return Level::DEBUG;
    }
    match configured {
        LogLevel::Error => Level::ERROR,
        LogLevel::Warning => Level::WARN,
        LogLevel::Info => Level::INFO,
        LogLevel::Debug => Level::DEBUG,
        LogLevel::Noise => Level::TRACE,
    }
}

/// The first contact of an interactive command with the gateway at `url`,
/// in a single try: a wrong URL, a stopped node or a grid without storage
/// servers is a clear error now, not after minutes of retry delays.
fn reach_gateway(client: &crate::tahoe::Client, url: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let (connected, known) = client
        .servers_once()
        .context("first contact with the Tahoe gateway")?;
    if connected == 0 {
        anyhow::bail!(
            "the Tahoe gateway at {url} sees none of its {known} storage server(s): the grid is down"
        );
    }
    Ok(())
}
