//! One module per subcommand; this one loads the configuration, builds the
//! command [`Context`] once and dispatches. Resources (caches, gateway
//! client, output mode, progress) come from the context
//! ([`context`]), backup arguments from [`crate::selector`], and names,
//! times and counts are shown by [`show`].

pub(crate) mod backup;
pub(crate) mod check;
pub(crate) mod cleanup;
pub(crate) mod completions;
pub(crate) mod context;
pub(crate) mod dump_config;
pub(crate) mod forget;
pub(crate) mod list;
pub(crate) mod man;
pub(crate) mod mount;
pub(crate) mod pin;
pub(crate) mod restore;
pub(crate) mod schedule;
pub(crate) mod show;
pub(crate) mod verify;

use tracing::{Level, warn};

use crate::cli::{Cli, Command};
use crate::config::{self, LogLevel};
use crate::exit::Outcome;

pub(crate) use context::Context;

/// Runs the parsed command line to completion.
pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    // Generated from the command line alone: no config, cache or clock, so
    // they work on a machine that has none yet (packaging, first setup).
    match cli.command {
        Command::Completions(ref args) => return completions::run(args.shell),
        Command::Man => return man::run(),
        _ => {}
    }
    crate::clock::init().map_err(|e| crate::exit::UsageError(e.to_string()))?;
    let loaded = config::load(&cli.config)?;
    let log_file = match loaded.config.logging.file {
        Some(ref path) => Some(crate::logging::open_log_file(path)?),
        None => None,
    };
    crate::logging::init(log_level(&cli, loaded.config.logging.level), log_file);
    for warning in &loaded.warnings {
        warn!("{warning}");
    }
    let ctx = Context::new(&cli, loaded.config);
    match cli.command {
        Command::Backup(ref args) => backup::run(ctx, args),
        Command::List(ref args) => list::run(&ctx, args),
        Command::Check(ref args) => check::run(&ctx, args),
        Command::Cleanup(ref args) => cleanup::run(&ctx, args),
        Command::Forget(ref args) => forget::run(&ctx, args),
        Command::Restore(ref args) => restore::run(&ctx, args),
        Command::Verify(ref args) => verify::run(&ctx, args),
        Command::Mount(ref args) => mount::run(&ctx, args),
        Command::Pin(ref args) => pin::run(&ctx, args, true),
        Command::Unpin(ref args) => pin::run(&ctx, args, false),
        Command::DumpConfig => dump_config::run(ctx.config()),
        // Handled before the config is loaded; the same call if ever here.
        Command::Completions(ref args) => completions::run(args.shell),
        Command::Man => man::run(),
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
