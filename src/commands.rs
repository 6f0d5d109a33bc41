//! One module per subcommand; this one loads the configuration and
//! dispatches.

pub(crate) mod backup;
pub(crate) mod check;
pub(crate) mod cleanup;
pub(crate) mod dump_config;
pub(crate) mod list;
pub(crate) mod restore;
pub(crate) mod verify;

use std::time::Duration;

use anyhow::Context as _;
use tracing::{Level, warn};

use crate::cli::{Cli, Command};
use crate::config::{self, Config, LogLevel, Timeouts};
use crate::exit::{Outcome, UsageError};
use crate::tahoe::Client;

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

/// The client of the gateway at `gateway` (`--gateway`) when given, else at
/// the config's `destination.url`, and the URL it uses; an invalid URL is a
/// usage error naming where it came from.
fn gateway_client<'a>(
    config: &'a Config,
    gateway: Option<&'a str>,
) -> anyhow::Result<(Client, &'a str)> {
    let (url, key) = match gateway {
        Some(url) => (url, "--gateway"),
        None => (config.destination.url.as_str(), "destination.url"),
    };
    let client = Client::new(url, &config.http.retry, &config.operation.timeouts.updates)
        .map_err(|e| UsageError(format!("{key}: {e}")))?
        .with_max_listing_bytes(config.http.max_listing_bytes);
    Ok((client, url))
}

/// The most the first request of `restore` and `verify` waits without
/// `--timeout`: a person is waiting, and a gateway that does not answer
/// its node status this fast is not going to serve a restore.
const FIRST_CONTACT_TIMEOUT: Duration = Duration::from_secs(15);

/// The client of an interactive command (`restore`, `verify`): its first
/// contact waits at most `--timeout` (else [`FIRST_CONTACT_TIMEOUT`]); with
/// `--timeout`, every request (its retries included) gets one attempt of
/// that long.
fn interactive_client(client: Client, timeout: Option<Duration>) -> Client {
    match timeout {
        Some(limit) => client
            .with_timeouts(Timeouts::PerAttempt(vec![limit.as_secs_f64()]))
            .with_first_contact_timeout(limit),
        None => client.with_first_contact_timeout(FIRST_CONTACT_TIMEOUT),
    }
}

/// How [`storage_servers`] asks the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contact {
    /// The first contact of an interactive command (`restore`, `verify`), in
    /// a single try: a wrong URL or a stopped node is a clear error now, not
    /// after minutes of retry delays.
    Once,
    /// With the configured retries (`backup`, `check`).
    Retried,
}

/// `(connected, known)`: the storage servers the gateway at `url` sees; an
/// error when it cannot be reached or sees none (the grid is down).
fn storage_servers(client: &Client, url: &str, contact: Contact) -> anyhow::Result<(usize, usize)> {
    let (connected, known) = match contact {
        Contact::Once => client
            .servers_once()
            .context("first contact with the Tahoe gateway")?,
        Contact::Retried => client
            .servers()
            .context("the Tahoe gateway cannot be reached")?,
    };
    if connected == 0 {
        anyhow::bail!(
            "the Tahoe gateway at {url} sees none of its {known} storage server(s): the grid is down"
        );
    }
    Ok((connected, known))
}
