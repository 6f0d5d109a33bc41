//! The command context: built once per run from the command line and the
//! configuration, it hands every command its resources — the recorded
//! cache, the cache of a backup run, the gateway client, the output mode and
//! the progress reporter — so that each is opened the same way everywhere.
//!
//! Only `backup` may create a cache ([`Context::backup_cache`]). Every other
//! command opens the recorded one ([`Context::read_cache`],
//! [`Context::recorded_cache`]), which must exist: a mistyped
//! `source.entry_cache.path` is an error naming it (exit 1), never a new
//! empty cache that would make `check --all` find nothing and succeed
//! (`docs/exit-codes.md`).

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;

use crate::cache::Cache;
use crate::cli::Cli;
use crate::config::{Config, Timeouts};
use crate::exit::UsageError;
use crate::progress::{self, Progress};
use crate::selector::Selector;
use crate::storage::native::NativePath;
use crate::tahoe::{Cap, Client};

/// What a command runs with; see the module doc.
#[derive(Debug)]
pub(crate) struct Context<'a> {
    cli: &'a Cli,
    config: Config,
    /// The native storage path, set up by the first client
    /// ([`Context::gateway`]) and shared by the later ones.
    native: OnceLock<Option<Arc<NativePath>>>,
}

impl<'a> Context<'a> {
    pub(crate) fn new(cli: &'a Cli, config: Config) -> Context<'a> {
        Context {
            cli,
            config,
            native: OnceLock::new(),
        }
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// The same command line with another config (a job of `backup`).
    pub(crate) fn with_config(&self, config: Config) -> Context<'a> {
        Context {
            cli: self.cli,
            config,
            native: OnceLock::new(),
        }
    }

    /// For `backup`, whose flags set config keys (`--concurrency`, …).
    pub(crate) fn config_mut(&mut self) -> &mut Config {
        // The native path is set up from the config: again after a change.
        self.native = OnceLock::new();
        &mut self.config
    }

    /// `--json`: the output is JSON lines.
    pub(crate) fn json(&self) -> bool {
        self.cli.json
    }

    /// A progress reporter: a bar on a terminal, JSON lines with
    /// `json_progress`, nothing otherwise (and never a bar with `--json`).
    pub(crate) fn progress(&self, json_progress: bool) -> Progress {
        Progress::new(progress::Mode::choose(self.cli.json, json_progress))
    }

    /// `source.entry_cache.path`; its absence is a usage error saying what
    /// the cache is `for_what`.
    fn cache_path(&self, for_what: &str) -> anyhow::Result<&Path> {
        let path = self.config.source.entry_cache.path.as_deref();
        Ok(path.ok_or_else(|| {
            UsageError(format!(
                "config key source.entry_cache.path is required {for_what}"
            ))
        })?)
    }

    /// The path of the recorded cache, which must exist (checked before any
    /// open, since the writer's open creates a missing cache).
    fn recorded_path(&self) -> anyhow::Result<&Path> {
        let path = self.cache_path("(the entry cache that records the backups)")?;
        if !path.exists() {
            anyhow::bail!(
                "there is no entry cache at {} (source.entry_cache.path): no backup was \
                 recorded with this configuration; check source.entry_cache.path",
                path.display()
            );
        }
        Ok(path)
    }

    /// The cache at `path` with the run lock, waiting up to `lock_wait`.
    fn open_locked(&self, path: &Path, lock_wait: Duration) -> anyhow::Result<Cache> {
        let commit_after = &self.config.source.entry_cache.commit_after;
        Ok(Cache::open_wait(path, commit_after, lock_wait)?)
    }

    /// The recorded cache, read-only and without the run lock (`list`,
    /// `restore NAME`, `verify NAME`): it works while a backup runs.
    pub(crate) fn read_cache(&self) -> anyhow::Result<Cache> {
        Ok(Cache::open_read_only(self.recorded_path()?)?)
    }

    /// The recorded cache with the run lock, waiting up to `lock_wait` for
    /// it (`check`, `cleanup`): they write to it, but never create it.
    pub(crate) fn recorded_cache(&self, lock_wait: Duration) -> anyhow::Result<Cache> {
        self.open_locked(self.recorded_path()?, lock_wait)
    }

    /// The cache of a backup run, created (with its directory) when absent,
    /// with the run lock, waiting up to `lock_wait` for it.
    pub(crate) fn backup_cache(&self, lock_wait: Duration) -> anyhow::Result<Cache> {
        self.open_locked(self.backup_cache_path()?, lock_wait)
    }

    /// Where a backup run keeps its cache (a usage error when not set).
    pub(crate) fn backup_cache_path(&self) -> anyhow::Result<&Path> {
        self.cache_path("for backup (the deduplication database)")
    }

    /// The client of the gateway at `gateway` (`--gateway`) when given,
    /// else at the config's `destination.url`; an invalid URL is a usage
    /// error naming where it came from. Requests use the configured retries.
    pub(crate) fn gateway<'s>(&'s self, gateway: Option<&'s str>) -> anyhow::Result<Gateway<'s>> {
        let config = &self.config;
        let (url, key) = match gateway {
            Some(url) => (url, "--gateway"),
            None => (config.destination.url.as_str(), "destination.url"),
        };
        let client = Client::with_ca_files(
            url,
            &config.http.retry,
            &config.operation.timeouts.updates,
            &config.http.ca_certs_files.paths,
        )
        .map_err(|e| UsageError(format!("{key}: {e}")))?
        .with_max_listing_bytes(config.http.max_listing_bytes);
        let client = match self.native_path()? {
            Some(native) => client.with_native(native),
            None => client,
        };
        Ok(Gateway {
            client,
            url,
            contact: Contact::Retried,
        })
    }

    /// The native storage path (`destination.storage: native`), set up once
    /// per run and shared by every client of it; `None` for the gateway. A
    /// bad secret or `tahoe.cfg` is a usage error (exit 2); a required
    /// native path that cannot be used, exit 1.
    fn native_path(&self) -> anyhow::Result<Option<Arc<NativePath>>> {
        use crate::storage::native::{NativeError, from_config};
        if let Some(done) = self.native.get() {
            return Ok(done.clone());
        }
        let path = match from_config(&self.config) {
            Ok(path) => path.map(Arc::new),
            Err(e @ NativeError::Config(_)) => return Err(UsageError(e.to_string()).into()),
            Err(e @ NativeError::Required(_)) => return Err(e.into()),
        };
        Ok(self.native.get_or_init(|| path).clone())
    }

    /// The client of an interactive command (`restore`, `verify`): its
    /// first contact is a single try that waits at most `--timeout` (else
    /// [`FIRST_CONTACT_TIMEOUT`]); with `--timeout`, every request (its
    /// retries included) gets one attempt of that long.
    pub(crate) fn interactive_gateway<'s>(
        &'s self,
        gateway: Option<&'s str>,
        timeout: Option<Duration>,
    ) -> anyhow::Result<Gateway<'s>> {
        let Gateway { client, url, .. } = self.gateway(gateway)?;
        let client = match timeout {
            Some(limit) => client
                .with_timeouts(Timeouts::PerAttempt(vec![limit.as_secs_f64()]))
                .with_first_contact_timeout(limit),
            None => client.with_first_contact_timeout(FIRST_CONTACT_TIMEOUT),
        };
        Ok(Gateway {
            client,
            url,
            contact: Contact::Once,
        })
    }
}

/// One backup picked by a [`Selector`]: its root cap, and how messages
/// name it.
#[derive(Debug)]
pub(crate) struct Picked {
    /// The root cap. Never log it.
    pub(crate) cap: Cap,
    /// `NAME generation G`, or `#` and the cap's short id.
    pub(crate) shown: String,
}

impl Context<'_> {
    /// The one backup `selector` picks: a cap as it is (no cache needed),
    /// else the latest backup the selector matches in the recorded cache.
    pub(crate) fn pick(&self, selector: &Selector<'_>) -> anyhow::Result<Picked> {
        if let Some(cap) = selector.cap() {
            return Ok(Picked {
                cap: cap.clone(),
                shown: format!("#{}", cap.short_id()),
            });
        }
        let cache = self.read_cache()?;
        let rows = cache.backups()?;
        let selected = selector
            .select(&rows, cache.path())
            .map_err(UsageError::from)?;
        let shown = match selected.latest() {
            Some(r) => format!("{} generation {}", super::show::name(&r.name), r.generation),
            None => format!("#{}", selected.cap().short_id()),
        };
        Ok(Picked {
            cap: selected.cap().clone(),
            shown,
        })
    }
}

/// The most the first request of `restore` and `verify` waits without
/// `--timeout`: a person is waiting, and a gateway that does not answer
/// its node status this fast is not going to serve a restore.
pub(crate) const FIRST_CONTACT_TIMEOUT: Duration = Duration::from_secs(15);

/// How [`Gateway::storage_servers`] asks the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contact {
    /// The first contact of an interactive command (`restore`, `verify`), in
    /// a single try: a wrong URL or a stopped node is a clear error now, not
    /// after minutes of retry delays.
    Once,
    /// With the configured retries (`backup`, `check`, `cleanup`).
    Retried,
}

/// A gateway client, the URL it uses, and how it makes first contact.
#[derive(Debug)]
pub(crate) struct Gateway<'u> {
    pub client: Client,
    pub url: &'u str,
    contact: Contact,
}

impl Gateway<'_> {
    /// `(connected, known)`: the storage servers the gateway sees; an error
    /// when it cannot be reached or sees none (the grid is down).
    pub(crate) fn storage_servers(&self) -> anyhow::Result<(usize, usize)> {
        let (connected, known) = match self.contact {
            Contact::Once => self
                .client
                .servers_once()
                .context("first contact with the Tahoe gateway")?,
            Contact::Retried => self
                .client
                .servers()
                .context("the Tahoe gateway cannot be reached")?,
        };
        if connected == 0 {
            anyhow::bail!(
                "the Tahoe gateway at {} sees none of its {known} storage server(s): the grid \
                 is down",
                self.url
            );
        }
        Ok((connected, known))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[test]
    fn only_the_backup_cache_is_ever_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("cache.sqlite");
        let mut config = Config::default();
        config.source.entry_cache.path = Some(path.clone());
        let cli = Cli::parse_from(["lafs-backup", "list"]);
        let ctx = Context::new(&cli, config);
        let wait = Duration::ZERO;
        for err in [
            ctx.read_cache().unwrap_err(),
            ctx.recorded_cache(wait).unwrap_err(),
        ] {
            let text = crate::exit::message(&err);
            assert!(
                text.starts_with(&format!("there is no entry cache at {}", path.display())),
                "{text}"
            );
            assert_eq!(crate::exit::code_for(&err), crate::exit::FATAL);
        }
        assert!(!path.parent().unwrap().exists());
        ctx.backup_cache(wait).unwrap();
        assert!(path.exists());
        // Once there, the others open it.
        ctx.recorded_cache(wait).unwrap();

        let mut unset = Context::new(&cli, Config::default());
        unset.config_mut().source.entry_cache.path = None;
        let err = unset.read_cache().unwrap_err();
        assert_eq!(crate::exit::code_for(&err), crate::exit::USAGE);
    }
}
