//! One module per subcommand; this one loads the configuration, builds the
//! command [`Context`] once and dispatches. Resources (caches, gateway
//! client, output mode, progress) come from the context
//! ([`context`]), backup arguments from [`crate::selector`], and names,
//! times and counts are shown by [`show`].

pub(crate) mod backup;
pub(crate) mod cache_rebuild;
pub(crate) mod cat;
pub(crate) mod check;
pub(crate) mod cleanup;
pub(crate) mod completions;
pub(crate) mod context;
pub(crate) mod diff;
pub(crate) mod dump_config;
pub(crate) mod files;
pub(crate) mod find;
pub(crate) mod forget;
pub(crate) mod list;
pub(crate) mod ls;
pub(crate) mod man;
pub(crate) mod mount;
pub(crate) mod pin;
pub(crate) mod receive;
pub(crate) mod restore;
pub(crate) mod schedule;
pub(crate) mod send;
pub(crate) mod show;
pub(crate) mod status;
pub(crate) mod verify;
pub(crate) mod versions;

use tracing::{Level, warn};

use crate::cli::{CacheCommand, Cli, Command};
use crate::config::{self, LogLevel};
use crate::exit::Outcome;

pub(crate) use context::Context;

/// A path that names nothing in a backup is a usage error (exit 2, naming
/// the path); a listing or download that fails is fatal (exit 1).
pub(crate) fn browse_error(e: crate::browse::BrowseError) -> anyhow::Error {
    use crate::browse::BrowseError as B;
    match e {
        B::NotFound { .. } | B::NotADirectory { .. } | B::Dotdot { .. } | B::TooDeep { .. } => {
            crate::exit::UsageError(e.to_string()).into()
        }
        B::List { .. } | B::Read { .. } | B::Chunks { .. } => e.into(),
    }
}

/// Runs the parsed command line to completion.
pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    // Generated from the command line alone: no config, cache or clock, so
    // they work on a machine that has none yet (packaging, first setup).
    match cli.command {
        Command::Completions(ref args) => return completions::run(args.shell),
        Command::Man(ref args) => return man::run(args),
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
        Command::Ls(ref args) => ls::run(&ctx, args),
        Command::Cat(ref args) => cat::run(&ctx, args),
        Command::Versions(ref args) => versions::run(&ctx, args),
        Command::Find(ref args) => find::run(&ctx, args),
        Command::Diff(ref args) => diff::run(&ctx, args),
        Command::Files(ref args) => files::run(&ctx, args),
        Command::Unpin(ref args) => pin::run(&ctx, args, false),
        Command::Status(ref args) => status::run(&ctx, args),
        Command::Send(ref args) => send::run(ctx, args),
        Command::Receive(ref args) => receive::run(&ctx, args),
        Command::DumpConfig => dump_config::run(ctx.config()),
        Command::Cache(CacheCommand::Rebuild(ref args)) => cache_rebuild::run(&ctx, args),
        // Handled before the config is loaded; the same call if ever here.
        Command::Completions(ref args) => completions::run(args.shell),
        Command::Man(ref args) => man::run(args),
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
