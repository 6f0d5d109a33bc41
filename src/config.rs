//! Layered YAML configuration.
//!
//! The built-in base config (`config/base.yaml`, compiled in) sets every key
//! to its default; each `-c FILE` is then applied in order. Later scalars
//! override earlier ones, lists replace lists (except `filter_files`, which
//! layers append to), mappings merge key by key, and
//! an explicit `null` overrides a scalar or list (`null` for a whole section
//! changes nothing). Configs of the original Python lafs-backup-tool load
//! unchanged: its keys that no longer apply are skipped with one warning each
//! (see [`IGNORED_KEYS`]).
//!
//! Every problem is reported as `FILE:LINE: ...` naming the dotted key; the
//! base config is the file `<built-in base config>`. `docs/config.md`
//! documents every key.
//!
//! How it works: each layer is parsed into a small positioned YAML tree
//! (`node`), then applied in place onto the typed [`Config`] by a schema walk
//! (`schema`): sections walk their mapping, leaves parse and validate their
//! value. [`Config::to_yaml`] writes the result back (`emit`).

mod btrfs;
mod chunking;
pub(crate) mod dumps;
mod emit;
mod hooks;
mod jobs;
pub(crate) mod node;
mod retention;
mod schema;
#[cfg(test)]
mod tests;
mod values;

use std::path::{Path, PathBuf};

pub(crate) use chunking::{ChunkRules, Chunking, ChunkingConfig, limits as chunk_limits};
pub(crate) use hooks::Hooks;
pub(crate) use jobs::{Job, JobKind};
pub(crate) use retention::Retention;
use schema::{Item, Layer, section};
use values::{
    at_least_one, attempts, catalog, count_limit, filter_rules, max_age, monitor_url, nurls,
    secs_limit, url,
};

pub(crate) use values::StorageMode;
pub(crate) use values::{
    CaFiles, LogLevel, MaxAge, RateSpec, RuleFiles, XzOptions, rules_choose, seconds,
};
pub use values::{Codec, RetryDelay, Timeouts, XzAction, XzRule};

/// The base config: every key with its default, commented for users.
pub(crate) const BASE_YAML: &str = include_str!("../config/base.yaml");

/// How the base config is named in messages.
pub(crate) const BASE_NAME: &str = "<built-in base config>";

/// Keys of the original tool that no longer apply, with why. Each is
/// accepted (with everything under it) and skipped with one warning.
pub(crate) const IGNORED_KEYS: &[(&str, &str)] = &[
    (
        "manhole",
        "the original tool's SSH debug shell is not part of lafs-backup",
    ),
    (
        "source.pick_policy",
        "the last match of a source.path glob in byte order is always used \
         (the original's only policy, alphasort_last)",
    ),
    (
        "http.debug_requests",
        "request logging follows logging.level, and capabilities are never logged",
    ),
    (
        "http.request_pool_options",
        "options of the original's Twisted connection pool do not apply",
    ),
    ("logging.version", DICT_CONFIG),
    ("logging.formatters", DICT_CONFIG),
    ("logging.handlers", DICT_CONFIG),
    ("logging.root", DICT_CONFIG),
    ("logging.loggers", DICT_CONFIG),
    ("logging.filters", DICT_CONFIG),
    ("logging.incremental", DICT_CONFIG),
    ("logging.disable_existing_loggers", DICT_CONFIG),
    (
        "logging.warnings",
        "Python's warnings capture does not apply",
    ),
    ("logging.tag", "log record tags are not supported"),
    (
        "logging.sql_queries",
        "SQL statements are never logged (they contain capabilities)",
    ),
];

const DICT_CONFIG: &str =
    "Python logging.config settings do not apply; set logging.level (or use --debug/--noise)";

/// A config problem. `Display` is the complete message for users.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A config file could not be read.
    #[error("cannot read config file {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        error: std::io::Error,
    },
    /// A file is not valid YAML.
    #[error("{file}:{}invalid YAML: {message}", line.map(|l| format!("{l}: ")).unwrap_or_else(|| " ".to_owned()))]
    Syntax {
        /// The file, as shown to users.
        file: String,
        /// The line of the error, when the parser knows it.
        line: Option<usize>,
        /// The parser's message.
        message: String,
    },
    /// A file's top level is not a mapping of keys.
    #[error(
        "{file}:{line}: a config file must be a mapping of keys (such as 'source:'), found {found}"
    )]
    NotAMapping {
        /// The file, as shown to users.
        file: String,
        /// The line of the value found.
        line: usize,
        /// What was found instead, in words.
        found: String,
    },
    /// A key the config does not have.
    #[error("{file}:{line}: unknown config key {key}")]
    UnknownKey {
        /// The file, as shown to users.
        file: String,
        /// The line of the key.
        line: usize,
        /// The dotted key.
        key: String,
    },
    /// A key given twice in one mapping.
    #[error("{file}:{line}: duplicate config key {key} (first given on line {first_line})")]
    DuplicateKey {
        /// The file, as shown to users.
        file: String,
        /// The line of the second key.
        line: usize,
        /// The dotted key.
        key: String,
        /// The line of the first key.
        first_line: usize,
    },
    /// A value of the wrong YAML type for its key.
    #[error("{file}:{line}: wrong type for {key}: expected {expected}, found {found}")]
    WrongType {
        /// The file, as shown to users.
        file: String,
        /// The line of the value.
        line: usize,
        /// The dotted key.
        key: String,
        /// The type the key takes, in words.
        expected: String,
        /// The value found, in words.
        found: String,
    },
    /// A value of the right type that the key does not allow.
    #[error("{file}:{line}: invalid value for {key}: {message}")]
    InvalidValue {
        /// The file, as shown to users.
        file: String,
        /// The line of the value.
        line: usize,
        /// The dotted key.
        key: String,
        /// What is wrong with the value.
        message: String,
    },
    /// A key the command needs is unset.
    #[error("missing required config key {key}: set it in a config file given with -c")]
    Missing {
        /// The dotted key.
        key: String,
    },
}

/// The result of loading: the merged config, and warnings (ignored keys of
/// the original tool, each naming the file and line) for the caller to log.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The merged config.
    pub config: Config,
    /// One message for each ignored key, naming its file and line.
    pub warnings: Vec<String>,
}

/// Loads the base config, then each file in order.
pub fn load(files: &[PathBuf]) -> Result<Loaded, ConfigError> {
    let mut loader = Loader::new()?;
    for path in files {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.clone(),
            error,
        })?;
        loader.apply(&path.display().to_string(), &text)?;
    }
    Ok(loader.finish())
}

/// Loads the base config, then each `(name, yaml)` layer in order; `name`
/// stands for the file name in messages.
pub(crate) fn load_from_strs(layers: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    let mut loader = Loader::new()?;
    for (name, text) in layers {
        loader.apply(name, text)?;
    }
    Ok(loader.finish())
}

struct Loader {
    config: Config,
    warnings: Vec<String>,
}

impl Loader {
    fn new() -> Result<Self, ConfigError> {
        let mut loader = Loader {
            config: Config::blank(),
            warnings: Vec::new(),
        };
        loader.apply(BASE_NAME, BASE_YAML)?;
        Ok(loader)
    }

    fn apply(&mut self, file: &str, text: &str) -> Result<(), ConfigError> {
        let root = node::parse(text).map_err(|err| ConfigError::Syntax {
            file: file.to_owned(),
            line: err.line,
            message: err.message,
        })?;
        let mut layer = Layer {
            file,
            warnings: &mut self.warnings,
        };
        self.config.apply(&root, "", &mut layer)
    }

    fn finish(self) -> Loaded {
        Loaded {
            config: self.config,
            warnings: self.warnings,
        }
    }
}

// The structs below mirror the YAML tree, in the order of config/base.yaml
// (which is also the order of `to_yaml`). docs/config.md explains each key.

section! {
    /// The merged configuration.
    pub struct Config {
        /// `source`: what to back up, and the local state files.
        pub source: Source,
        /// `destination`: the grid, the results and the encoding.
        pub destination: Destination,
        /// Rule files whose rules follow `filter` (written before it, so that
        /// `filter` stays last before `operation` in dumps), in order; layers append
        /// to this list (see [`RuleFiles`]).
        pub filter_files: RuleFiles,
        /// Ordered `'+REGEX'`/`'-REGEX'` scan rules, already validated.
        pub filter: Vec<String> => filter_rules,
        /// `operation`: how a backup runs.
        pub operation: Operation,
        /// `lease`: how leases on the grid's shares are looked after.
        pub lease: Lease,
        /// `http`: requests to the gateway.
        pub http: Http,
        /// `logging`: what is logged on stderr (and to `logging.file`).
        pub logging: Logging,
        /// `monitor`: pings, metrics and the thresholds `status` checks.
        pub monitor: Monitor,
        /// `chunking`: how streams are cut into chunks (`docs/streams.md`).
        pub chunking: ChunkingConfig,
        /// `retention`: the policy `forget` applies (`docs/retention.md`);
        /// `None` when no policy is configured.
        pub retention: Option<Retention> => retention,
        /// `jobs`: named backups, each with its own source, filter and
        /// retention; empty when unset (`docs/config.md`).
        pub jobs: Vec<Job> => jobs,
        /// `hooks`: commands run around the whole `backup` run
        /// (`docs/hooks.md`); empty when unset.
        pub hooks: Hooks => hooks,
    }
}

section! {
    /// `lease`: how leases on the grid's shares are looked after.
    pub struct Lease {
        /// Objects whose leases this cache last renewed more than this many
        /// days ago are checked (and their leases renewed) before a dedup
        /// hit reuses them.
        pub reuse_check_days: u64,
        /// How long a lease lasts on the grid's servers (Tahoe's default is
        /// 31 days); the web API does not say, so this is our assumption.
        pub duration_days: u64,
        /// Objects whose lease this cache has not renewed for longer than
        /// `duration_days - warn_days` are named loudly by `check` and `list`.
        pub warn_days: u64,
        /// `backup` runs the `check --leases` renewal after its jobs when
        /// the last complete one is this many days old; `None`: never.
        pub renew_every_days: Option<u64> => count_limit,
    }
}

section! {
    /// `source`: what to back up, and the local state files.
    pub struct Source {
        /// A path or a glob (its last match in byte order is used).
        pub path: Option<String>,
        /// `source.queue`: the queue file between scan and upload.
        pub queue: Queue,
        /// `source.entry_cache`: the deduplication database.
        pub entry_cache: EntryCache,
        /// Do not cross into other file systems (mount points are kept as
        /// empty directories).
        pub one_file_system: bool,
        /// Skip the contents of directories tagged with `CACHEDIR.TAG`.
        pub exclude_caches: bool,
    }
}

section! {
    /// `source.queue`: the queue file between scan and upload.
    pub struct Queue {
        /// The queue file the scan writes and the upload reads (required
        /// for `backup`).
        pub path: Option<PathBuf>,
        /// Resume an unfinished queue instead of scanning again (`backup -f`
        /// sets it false).
        pub check_mtime: bool,
        /// Seconds: an unfinished queue older than this is scanned again,
        /// not resumed; 0 never resumes.
        pub max_resume_age: u64,
    }
}

section! {
    /// `source.entry_cache`: the deduplication database.
    pub struct EntryCache {
        /// The SQLite cache file (required for uploads).
        pub path: Option<PathBuf>,
        /// When the cache's transaction is committed.
        pub commit_after: CommitAfter,
    }
}

section! {
    /// `source.entry_cache.commit_after`; `None` means no limit.
    pub struct CommitAfter {
        /// Commit after this many queries.
        pub queries: Option<u64> => count_limit,
        /// Commit when this many seconds have passed.
        pub seconds: Option<f64> => secs_limit,
    }
}

section! {
    /// `destination`: the grid, what to do with the result, and encoding.
    pub struct Destination {
        /// The Tahoe web API base, including `/uri`.
        pub url: String => url,
        /// `destination.result`: where the root cap of a backup goes.
        pub result: ResultTargets,
        /// The recovery catalog: a mutable directory's cap, or `auto`
        /// (created on the first run); `None`: no catalog.
        pub catalog: Option<String> => catalog,
        /// `destination.encoding`: which files are compressed, and how.
        pub encoding: Encoding,
        /// `gateway` (the web API) or `native` (straight to the storage
        /// servers, `docs/native-storage.md`) for CHK objects.
        pub storage: StorageMode,
        /// `destination.native`: what `storage: native` needs.
        pub native: NativeStorage,
    }
}

section! {
    /// `destination.native`: the node settings of the native storage path.
    pub struct NativeStorage {
        /// The gateway's node directory (`private/convergence`,
        /// `private/secret`, the announcement cache, `tahoe.cfg`).
        pub node_dir: Option<PathBuf>,
        /// The convergence secret file (0600), instead of the node's.
        pub convergence_file: Option<PathBuf>,
        /// The lease secret file (0600), instead of the node's.
        pub lease_secret_file: Option<PathBuf>,
        /// Storage server NURLs, instead of the announcement cache.
        pub servers: Vec<String> => nurls,
        /// Fail instead of falling back to the gateway.
        pub required: bool,
    }
}

section! {
    /// `destination.result`: where the root cap of a finished backup goes.
    pub struct ResultTargets {
        /// Print the root cap on stdout.
        pub print_to_stdout: bool,
        /// Append `<time> <source path> <root cap>` to this file.
        pub append_to_file: Option<PathBuf>,
        /// A dircap, optionally followed by `/sub/path`.
        pub append_to_lafs_dir: Option<String>,
    }
}

section! {
    /// `destination.encoding`.
    pub struct Encoding {
        /// The codec for the files the `xz` rules select.
        pub codec: Codec,
        /// `destination.encoding.xz`: the rules that select files.
        pub xz: Xz,
        /// `destination.encoding.zstd`: settings of the zstd codec.
        pub zstd: Zstd,
    }
}

section! {
    /// `destination.encoding.zstd`: settings of the zstd codec.
    pub struct Zstd {
        /// Compression level, 1 (fast) to 19 (small).
        pub level: u64,
    }
}

section! {
    /// `destination.encoding.xz`: which files are stored xz-compressed.
    pub struct Xz {
        /// Store files compressed where the rules say so.
        pub enabled: bool,
        /// Files smaller than this are not compressed unless a path_filter
        /// rule says so; `None`: only `[N, REGEX]` rules compress.
        pub min_size: Option<u64>,
        /// Settings of the xz codec (level, extreme).
        pub options: Option<XzOptions>,
        /// How many xz encoders may run at the same time in the process
        /// (each takes ~94 MiB at preset 6).
        pub max_parallel: u64,
        /// Ordered rules; empty when null.
        pub path_filter: Vec<XzRule>,
    }
}

section! {
    /// `operation`.
    pub struct Operation {
        /// Only build the queue file; do not upload (`--queue-only`).
        pub queue_only: bool,
        /// Upload the existing queue as it is, without scanning
        /// (`--reuse-queue`).
        pub reuse_queue: bool,
        /// Upload everything, ignoring (but still filling) the entry cache.
        pub disable_deduplication: bool,
        /// Continue the generation of an unfinished previous backup.
        pub try_resume: bool,
        /// Objects uploaded at the same time (at least 1: the config
        /// refuses 0).
        pub concurrency: u64 => at_least_one,
        /// `operation.timeouts`: time limits of uploads.
        pub timeouts: OperationTimeouts,
        /// `operation.rate_limit`: limits on uploads.
        pub rate_limit: RateLimit,
    }
}

section! {
    /// `operation.timeouts`.
    pub struct OperationTimeouts {
        /// The time limit of each attempt to upload one object.
        pub updates: Timeouts,
    }
}

section! {
    /// `operation.rate_limit`: token buckets for uploads; `None`: unlimited.
    pub struct RateLimit {
        /// Limit on bytes uploaded (sizes before compression).
        pub bytes: Option<RateSpec>,
        /// Limit on objects uploaded (deduplicated ones are free).
        pub objects: Option<RateSpec>,
    }
}

section! {
    /// `http`.
    pub struct Http {
        /// `http.retry`: how failed requests are retried.
        pub retry: Retry,
        /// Most bytes read of one directory listing (`t=json`) reply.
        pub max_listing_bytes: u64,
        /// PEM files whose certificates are trusted as roots for an
        /// `https://` gateway, beside the system's store.
        pub ca_certs_files: CaFiles,
    }
}

section! {
    /// `http.retry`.
    pub struct Retry {
        /// Total attempts per request, at least 1.
        pub attempts: u32 => attempts,
        /// Seconds to wait before each retry.
        pub delay: RetryDelay,
    }
}

section! {
    /// `logging`.
    pub struct Logging {
        /// The least severe level logged (`--debug`, `--noise` override it).
        pub level: LogLevel,
        /// A file the log lines are also appended to (created 0600, never
        /// through a symlink); `None`: stderr only.
        pub file: Option<PathBuf>,
    }
}

section! {
    /// `monitor`: pings, metrics and the thresholds `status` checks
    /// (`docs/monitoring.md`); every key is off when `null`.
    pub struct Monitor {
        /// A Healthchecks-compatible ping URL (`/start`, `/fail` appended).
        pub healthchecks_url: Option<String> => monitor_url,
        /// A node_exporter textfile-collector file written after each run.
        pub prometheus_textfile: Option<PathBuf>,
        /// `status` fails when a job's last success is older than this.
        pub max_backup_age: Option<MaxAge> => max_age,
        /// `status` fails when the lease horizon is fewer days away.
        pub min_lease_days: Option<u64>,
        /// `status` fails when an object was not verified for this long.
        pub max_unverified_days: Option<u64>,
    }
}

impl Config {
    /// The built-in base config alone.
    pub fn builtin() -> Config {
        // The base is compiled in and a unit test loads it, so this cannot
        // fail at run time.
        load_from_strs(&[])
            .expect("the built-in base config is valid")
            .config
    }

    /// The config as YAML: every key in the order of the base config, `null`
    /// where unset, no comments. `-c` reads it back to an identical config.
    pub fn to_yaml(&self) -> String {
        emit::document(&self.emit())
    }

    /// Every dotted key, in order.
    pub fn keys() -> Vec<String> {
        let mut keys = Vec::new();
        <Config as Item>::keys("", &mut keys);
        keys
    }

    /// Errors naming `key` (a dotted key such as `source.queue.path`) if it
    /// is null, an empty list or not a key at all.
    pub fn require(&self, key: &str) -> Result<(), ConfigError> {
        let mut out = self.emit();
        for part in key.split('.') {
            out = match out {
                emit::Out::Map(entries) => entries
                    .into_iter()
                    .find(|(k, _)| *k == part)
                    .map_or(emit::Out::Null, |(_, value)| value),
                // Not a key: below a leaf.
                _ => emit::Out::Null,
            };
        }
        match out {
            emit::Out::Null => Err(missing(key)),
            emit::Out::Seq(items) if items.is_empty() => Err(missing(key)),
            _ => Ok(()),
        }
    }

    /// `source.path`, which `backup` needs.
    pub fn source_path(&self) -> Result<&str, ConfigError> {
        required(&self.source.path, "source.path").map(String::as_str)
    }

    /// `source.queue.path`, which `backup` needs.
    pub fn queue_path(&self) -> Result<&Path, ConfigError> {
        required(&self.source.queue.path, "source.queue.path").map(PathBuf::as_path)
    }

    /// `source.entry_cache.path`, which uploads need.
    pub fn entry_cache_path(&self) -> Result<&Path, ConfigError> {
        required(&self.source.entry_cache.path, "source.entry_cache.path").map(PathBuf::as_path)
    }
}

/// The built-in base config.
impl Default for Config {
    fn default() -> Self {
        Config::builtin()
    }
}

/// The value of an optional key, or an error naming it.
pub(crate) fn required<'a, T>(value: &'a Option<T>, key: &str) -> Result<&'a T, ConfigError> {
    value.as_ref().ok_or_else(|| missing(key))
}

fn missing(key: &str) -> ConfigError {
    ConfigError::Missing {
        key: key.to_owned(),
    }
}
