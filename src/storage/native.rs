//! The facade of the native storage path (issue 17 item 3): from the
//! `destination.native` config, loads the node settings (convergence and
//! lease secrets, k/happy/N, the servers) and offers what backup needs:
//! [`Native::upload_file`], [`Native::upload_dir`] and [`Native::download`].
//!
//! [`setup`] decides between the native path and the gateway: no server
//! NURLs found is a [`Setup::Fallback`] (one warning, the gateway is used)
//! unless `destination.native.required`; a secret that cannot be read or
//! has the wrong length is always an error: it is a mistake in the config,
//! and falling back would hide it. Secrets are never in a message or in
//! `Debug` output.

use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::client::{StorageClient, with_deadline};
use super::immutable::{LeaseSecret, UploadError, Uploader};
use super::nurl::{Server, servers_of_node};
use super::read::Readers;
use crate::chk::cap::ChkCap;
use crate::chk::dirnode::{Child, pack};
use crate::chk::{ChkError, LIT_THRESHOLD, Params};
use crate::config::{Config, NativeStorage, StorageMode, Timeouts};
use crate::tahoe::{Cap, TahoeError, base32, show_secs};

/// After this many failures of the native path in one run (an unhappy
/// placement, a storage error, a timeout), the rest of the run's uploads
/// go through the gateway: a grid whose servers keep failing natively
/// would otherwise cost every object a failed native attempt first.
pub(crate) const MAX_NATIVE_FAILURES: usize = 3;

/// Tahoe's defaults when `tahoe.cfg` does not set them (`client.py`
/// `DEFAULT_ENCODING_PARAMETERS`): 3-of-10, happy 7.
const DEFAULT_NEEDED: u16 = 3;
const DEFAULT_HAPPY: u16 = 7;
const DEFAULT_TOTAL: u16 = 10;

/// The most bytes read of a secret file or `tahoe.cfg`: both are small, and
/// a wrong path (a device, a huge file) must not be read whole.
const MAX_SMALL_FILE: u64 = 1024 * 1024;

/// Why the native path cannot be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NativeError {
    /// A setting is missing or wrong (a secret file unreadable or of the
    /// wrong length, no node directory and no secret file, a bad
    /// `tahoe.cfg`).
    #[error("destination.native: {0}")]
    Config(String),
    /// `destination.native.required` is true and the native path cannot
    /// be used.
    #[error("destination.native.required is true, but {0}")]
    Required(String),
}

/// What [`setup`] decided.
#[derive(Debug)]
pub(crate) enum Setup {
    /// The native path is ready.
    Ready(Native),
    /// Use the gateway: the reason, for the one warning.
    Fallback(String),
}

/// The native storage path, ready to upload and download.
pub(crate) struct Native {
    uploader: Uploader,
    /// A client per server, kept for the run: reads reuse its connections.
    readers: Readers,
    /// Warnings about the settings (loose secret file permissions), for the
    /// caller to log once.
    pub(crate) warnings: Vec<String>,
}

impl std::fmt::Debug for Native {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Native")
            .field("servers", &self.uploader.servers.len())
            .field("params", &self.uploader.params)
            .field("happy", &self.uploader.happy)
            .finish_non_exhaustive()
    }
}

/// k, happy and N.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shares {
    /// `shares.needed`.
    pub(crate) needed: u16,
    /// `shares.happy`.
    pub(crate) happy: u16,
    /// `shares.total`.
    pub(crate) total: u16,
}

/// The native storage path as a run uses it (issue 17 item 3): the facade,
/// whether a failure may fall back to the gateway, and whether the one
/// fallback warning was given. Every command gets it from its gateway
/// client ([`crate::tahoe::Client::native`]), set by the one place that
/// opens the client (`commands::context`).
pub(crate) struct NativePath {
    native: Native,
    /// `destination.native.required`: a failure stops the work instead of
    /// falling back to the gateway.
    required: bool,
    /// Whether the one fallback warning was given.
    warned: AtomicBool,
    /// Native upload failures in this run (fallbacks to the gateway).
    failures: AtomicUsize,
    /// The rest of the run uploads through the gateway
    /// ([`MAX_NATIVE_FAILURES`] failures, or the grid probe found too few
    /// servers).
    off: AtomicBool,
}

impl std::fmt::Debug for NativePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativePath")
            .field("native", &self.native)
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

impl NativePath {
    pub(crate) fn new(native: Native, required: bool) -> NativePath {
        NativePath {
            native,
            required,
            warned: AtomicBool::new(false),
            failures: AtomicUsize::new(0),
            off: AtomicBool::new(false),
        }
    }

    /// The facade.
    pub(crate) fn native(&self) -> &Native {
        &self.native
    }

    /// `destination.native.required`.
    pub(crate) fn required(&self) -> bool {
        self.required
    }

    /// Logs, once per run, that the native path failed (`why`) and `doing`
    /// (e.g. `uploading`) goes through the gateway instead.
    pub(crate) fn warn_fallback(&self, why: &dyn std::fmt::Display, doing: &str) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the native storage path failed ({why}); {doing} through the gateway instead"
            );
        }
    }
}

/// Which read of an upload body a [`Client`](crate::tahoe::Client) upload
/// asks for: convergent encryption reads the body twice in native mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pass {
    /// The native path's first read: only hashed for the convergence key,
    /// nothing is sent (so neither rate-limited nor counted as progress).
    Key,
    /// A read whose bytes are sent: the native path's second read, or each
    /// try of a gateway upload.
    Send,
}

/// A body opened once per [`Pass`]: the first read is [`Pass::Key`], a
/// rewind to the start opens it again for [`Pass::Send`] (the native
/// uploader rewinds once, between its two passes).
pub(crate) struct Passes<'o> {
    inner: Box<dyn Read + Send>,
    open: &'o mut dyn FnMut(Pass) -> io::Result<Box<dyn Read + Send>>,
}

impl<'o> Passes<'o> {
    /// Opens the body for its first pass.
    pub(crate) fn new(
        open: &'o mut dyn FnMut(Pass) -> io::Result<Box<dyn Read + Send>>,
    ) -> Result<Passes<'o>, UploadError> {
        let inner = open(Pass::Key).map_err(|e| ChkError::io("opening the body", e))?;
        Ok(Passes { inner, open })
    }
}

impl Read for Passes<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl Seek for Passes<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        match pos {
            SeekFrom::Start(0) => {
                self.inner = (self.open)(Pass::Send)?;
                Ok(0)
            }
            _ => Err(io::Error::other("an upload body can only be rewound")),
        }
    }
}

impl NativePath {
    /// Stores one object natively: `attempt` uploads it (from its first
    /// byte) and returns its cap. `None`: upload it through the gateway
    /// instead (the native path failed, with the run's one warning, or the
    /// run switched to the gateway). A body that changed or could not be
    /// read is [`TahoeError::Body`] (that object alone is skipped, as on the
    /// gateway path); any other failure with `required` is
    /// [`TahoeError::Native`].
    ///
    /// `timeouts` (`operation.timeouts.updates`) bound each attempt as they
    /// bound one gateway upload: attempt n must store the whole object
    /// within the n-th limit (every request to the storage servers stops
    /// at that deadline, and the uploader aborts what it allocated). A
    /// timed-out attempt is a native failure; with `required` the next
    /// attempt starts at once with the next limit, as on the gateway path,
    /// until the list ends.
    pub(crate) fn upload(
        &self,
        timeouts: &Timeouts,
        mut attempt: impl FnMut(&Native) -> Result<String, UploadError>,
    ) -> Option<Result<Cap, TahoeError>> {
        if self.off.load(Ordering::Relaxed) {
            return None;
        }
        let mut round = 0usize;
        let mut blocked_waits = BLOCKED_WAITS.iter();
        let why = loop {
            let limit = timeouts.timeout(round);
            let deadline = limit.and_then(|l| Instant::now().checked_add(l));
            let err = match with_deadline(deadline, || attempt(&self.native)) {
                Ok(cap) => return Some(Cap::parse(&cap)),
                // The body's own error as it is (`encode::is_file_changed`
                // recognises a file that changed under the gateway path too).
                Err(UploadError::Chk(ChkError::Io { source, .. })) => {
                    return Some(Err(TahoeError::Body(source)));
                }
                Err(UploadError::Chk(e @ ChkError::Changed(_))) => {
                    return Some(Err(TahoeError::Body(io::Error::new(
                        io::ErrorKind::InvalidData,
                        e.to_string(),
                    ))));
                }
                Err(e @ UploadError::Blocked { .. }) => match blocked_waits.next() {
                    Some(wait) => {
                        tracing::debug!(
                            "the storage servers refused an object held by another upload; \
                             trying again in {} s",
                            wait.as_secs()
                        );
                        std::thread::sleep(*wait);
                        continue;
                    }
                    None => e,
                },
                Err(e) => e,
            };
            let timed_out = deadline.is_some_and(|d| Instant::now() >= d);
            if !timed_out {
                break err.to_string();
            }
            round += 1;
            let waited = show_secs(limit.unwrap_or_default());
            let why = format!(
                "the upload did not finish in time (waited {waited}, operation.timeouts.updates; \
                 {err})"
            );
            if !self.required || timeouts.attempts().is_some_and(|max| round >= max) {
                break why;
            }
            tracing::warn!(
                "a native upload did not finish in time (waited {waited}); trying again now \
                 (attempt {} of {})",
                round + 1,
                timeouts
                    .attempts()
                    .map_or_else(|| "unlimited".to_string(), |n| n.to_string())
            );
        };
        if self.required {
            return Some(Err(TahoeError::Native(format!(
                "the native storage path failed and destination.native.required is true: {why}"
            ))));
        }
        self.warn_fallback(&why, "uploading");
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= MAX_NATIVE_FAILURES && !self.off.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the native storage path failed {failures} times in this run; the rest of \
                 the run uploads through the gateway"
            );
        }
        None
    }

    /// Whether the run still uploads natively (not switched to the gateway).
    pub(crate) fn uploads_natively(&self) -> bool {
        !self.off.load(Ordering::Relaxed)
    }

    /// The grid probe of a native run: asks every storage server its
    /// version (in parallel; each with the storage client's own limits
    /// and tries) and logs how many answer. Fewer than `shares.happy`
    /// answering cannot give a happy upload: the run uploads through the
    /// gateway (one warning), or with `required` this is an error.
    pub(crate) fn probe_servers(&self) -> Result<(usize, usize), NativeError> {
        let servers = &self.native.uploader.servers;
        let answers: Vec<Result<(), String>> = std::thread::scope(|scope| {
            let asks: Vec<_> = servers
                .iter()
                .map(|server| {
                    scope.spawn(move || {
                        // The process's pooled client: its connection and
                        // this answer serve the run's first uploads.
                        StorageClient::shared(server)
                            .and_then(|c| c.version_cached())
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    })
                })
                .collect();
            asks.into_iter()
                .map(|ask| {
                    ask.join()
                        .unwrap_or_else(|_| Err("the probe thread panicked".into()))
                })
                .collect()
        });
        let total = servers.len();
        let answering = answers.iter().filter(|a| a.is_ok()).count();
        for problem in answers.iter().filter_map(|a| a.as_ref().err()) {
            tracing::debug!("grid probe: {problem}");
        }
        tracing::info!("{answering} of {total} storage server(s) answer the native storage path");
        let happy = self.native.uploader.happy;
        if answering >= happy {
            return Ok((answering, total));
        }
        let first = answers
            .iter()
            .find_map(|a| a.as_ref().err())
            .map(|e| format!("; {e}"))
            .unwrap_or_default();
        let why = format!(
            "only {answering} of {total} storage server(s) answer, {happy} needed \
             (shares.happy){first}"
        );
        if self.required {
            return Err(NativeError::Required(why));
        }
        self.off.store(true, Ordering::Relaxed);
        tracing::warn!("destination.storage is native, but {why}: using the gateway");
        Ok((answering, total))
    }
}

/// The native storage path when `destination.storage: native` can be set
/// up; `None` for the gateway (configured, or the fallback, with one
/// warning). The settings' own warnings (loose secret file permissions)
/// are logged here.
pub(crate) fn from_config(config: &Config) -> Result<Option<NativePath>, NativeError> {
    if config.destination.storage != StorageMode::Native {
        return Ok(None);
    }
    let native = &config.destination.native;
    match setup(native)? {
        Setup::Ready(n) => {
            for warning in &n.warnings {
                tracing::warn!("{warning}");
            }
            Ok(Some(NativePath::new(n, native.required)))
        }
        Setup::Fallback(why) => {
            tracing::warn!("destination.storage is native, but {why}: using the gateway");
            Ok(None)
        }
    }
}

/// How long to wait before trying again an upload whose content the grid
/// refuses while it accepts other objects (both paths). Another upload of
/// the same bytes may be under way (a backup of the same files running at
/// the same time, through this or another client): its shares are "in
/// progress" on the servers until it finishes, seconds later, and then
/// this upload finds them in place.
pub(crate) const BLOCKED_WAITS: [Duration; 3] = [
    Duration::from_secs(2),
    Duration::from_secs(10),
    Duration::from_secs(30),
];

/// Loads the native settings of `cfg`.
pub(crate) fn setup(cfg: &NativeStorage) -> Result<Setup, NativeError> {
    let mut warnings = Vec::new();
    let node = cfg.node_dir.as_deref();
    let secret_path = |explicit: &Option<PathBuf>, name: &str, key: &str| match (explicit, node) {
        (Some(path), _) => Ok(path.clone()),
        (None, Some(node)) => Ok(node.join("private").join(name)),
        (None, None) => Err(NativeError::Config(format!(
            "neither {key} nor node_dir is set"
        ))),
    };
    let conv_path = secret_path(&cfg.convergence_file, "convergence", "convergence_file")?;
    let lease_path = secret_path(&cfg.lease_secret_file, "secret", "lease_secret_file")?;
    let convergence = read_secret(&conv_path, "convergence secret", &mut warnings)?;
    let lease_text = read_secret_text(&lease_path, &mut warnings)?;
    let lease = LeaseSecret::parse(&lease_text).ok_or_else(|| {
        NativeError::Config(format!(
            "{}: not a lease secret (32 bytes in base32, as Tahoe writes private/secret)",
            lease_path.display()
        ))
    })?;
    let shares = match node {
        Some(node) => shares_of_node(node)?,
        None => Shares {
            needed: DEFAULT_NEEDED,
            happy: DEFAULT_HAPPY,
            total: DEFAULT_TOTAL,
        },
    };
    let params =
        Params::new(shares.needed, shares.total).map_err(|e| NativeError::Config(e.to_string()))?;
    let servers = match servers_of(cfg) {
        Ok(servers) if !servers.is_empty() => servers,
        Ok(_) => return fallback(cfg, "no storage server NURLs were found".into()),
        Err(why) => return fallback(cfg, why),
    };
    let readers = match Readers::new(&servers) {
        Ok(readers) => readers,
        Err(e) => return fallback(cfg, e.to_string()),
    };
    Ok(Setup::Ready(Native {
        readers,
        uploader: Uploader {
            servers,
            params,
            happy: usize::from(shares.happy),
            convergence,
            lease,
        },
        warnings,
    }))
}

/// The fallback decision: the gateway with a warning, or an error when
/// the native path is required.
fn fallback(cfg: &NativeStorage, why: String) -> Result<Setup, NativeError> {
    if cfg.required {
        Err(NativeError::Required(why))
    } else {
        Ok(Setup::Fallback(why))
    }
}

/// The static list, else the node's announcement cache.
fn servers_of(cfg: &NativeStorage) -> Result<Vec<Server>, String> {
    if !cfg.servers.is_empty() {
        // Checked when the config was read; an error here names no NURL.
        return cfg
            .servers
            .iter()
            .map(|text| Server::from_nurl(text))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string());
    }
    match &cfg.node_dir {
        Some(node) => servers_of_node(node).map_err(|e| e.to_string()),
        None => Ok(Vec::new()),
    }
}

/// Reads a small file as text, warning when others may read it.
fn read_secret_text(path: &Path, warnings: &mut Vec<String>) -> Result<String, NativeError> {
    let err = |what: String| NativeError::Config(format!("{}: {what}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| err(format!("cannot open it: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| err(format!("cannot stat it: {e}")))?;
    if !meta.is_file() {
        return Err(err("not a regular file".into()));
    }
    if let Some(warning) = loose_permissions(path, &meta) {
        warnings.push(warning);
    }
    let mut text = String::new();
    file.take(MAX_SMALL_FILE)
        .read_to_string(&mut text)
        .map_err(|e| err(format!("cannot read it as text: {e}")))?;
    Ok(text)
}

/// Reads a 32-byte base32 secret (`private/convergence`).
fn read_secret(
    path: &Path,
    what: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<u8>, NativeError> {
    let text = read_secret_text(path, warnings)?;
    match base32::decode(text.trim()) {
        Some(bytes) if bytes.len() == 32 => Ok(bytes),
        Some(bytes) => Err(NativeError::Config(format!(
            "{}: the {what} is {} bytes long; Tahoe's is 32 (52 characters of base32)",
            path.display(),
            bytes.len()
        ))),
        None => Err(NativeError::Config(format!(
            "{}: the {what} is not base32 text (as Tahoe writes it)",
            path.display()
        ))),
    }
}

/// A warning when group or others may read the secret file *and* its
/// directory lets them reach it. The node's own `private/` is 0700 with
/// files Tahoe writes 0644 inside: that is safe and not warned about. The
/// file is not changed: it may be the node's own.
fn loose_permissions(path: &Path, meta: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return None;
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    let dir_mode = std::fs::metadata(parent.unwrap_or(Path::new(".")))
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0o755);
    if dir_mode & 0o011 == 0 {
        return None;
    }
    Some(format!(
        "{}: a secret file others may read (mode {mode:04o}); chmod 600 it",
        path.display()
    ))
}

/// `[client] shares.needed`, `shares.happy` and `shares.total` of the
/// node's `tahoe.cfg`, with Tahoe's defaults for those not set.
pub(crate) fn shares_of_node(node: &Path) -> Result<Shares, NativeError> {
    let path = node.join("tahoe.cfg");
    let err = |what: String| NativeError::Config(format!("{}: {what}", path.display()));
    let file = std::fs::File::open(&path).map_err(|e| err(format!("cannot open it: {e}")))?;
    let mut text = String::new();
    file.take(MAX_SMALL_FILE)
        .read_to_string(&mut text)
        .map_err(|e| err(format!("cannot read it: {e}")))?;
    shares_of_cfg(&text).map_err(err)
}

/// The `[client]` share settings of a `tahoe.cfg` text (configparser
/// syntax: `key = value` or `key: value`, `#`/`;` comments).
pub(crate) fn shares_of_cfg(text: &str) -> Result<Shares, String> {
    let mut shares = Shares {
        needed: DEFAULT_NEEDED,
        happy: DEFAULT_HAPPY,
        total: DEFAULT_TOTAL,
    };
    let mut in_client = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_client = section.trim() == "client";
            continue;
        }
        if !in_client {
            continue;
        }
        let Some((key, value)) = line.split_once(['=', ':']) else {
            continue;
        };
        let slot = match key.trim() {
            "shares.needed" => &mut shares.needed,
            "shares.happy" => &mut shares.happy,
            "shares.total" => &mut shares.total,
            _ => continue,
        };
        *slot = value
            .trim()
            .parse()
            .map_err(|_| format!("line {}: {} is not a number", i + 1, key.trim()))?;
    }
    if shares.needed == 0
        || shares.needed > shares.total
        || shares.happy == 0
        || shares.happy > shares.total
    {
        return Err(format!(
            "[client] shares.needed {}, shares.happy {}, shares.total {}: need \
             1 <= needed <= total and 1 <= happy <= total",
            shares.needed, shares.happy, shares.total
        ));
    }
    Ok(shares)
}

impl Native {
    /// Uploads `size` bytes of `reader` (read twice: convergent
    /// encryption) and returns the `URI:CHK:` or `URI:LIT:` cap.
    pub(crate) fn upload_file<R: Read + Seek>(
        &self,
        reader: &mut R,
        size: u64,
    ) -> Result<String, UploadError> {
        Ok(self.uploader.upload(reader, size)?.cap)
    }

    /// Packs and uploads an immutable directory as `mkdir-immutable` does;
    /// returns its `URI:DIR2-CHK:` or `URI:DIR2-LIT:` cap.
    pub(crate) fn upload_dir(&self, children: &[Child<'_>]) -> Result<String, UploadError> {
        let packed = pack(children)?;
        if packed.len() as u64 <= LIT_THRESHOLD {
            return Ok(format!("URI:DIR2-LIT:{}", base32::encode(&packed)));
        }
        let size = packed.len() as u64;
        let cap = self.uploader.upload(&mut Cursor::new(packed), size)?.cap;
        // The same object as a file: only the cap's prefix says directory.
        let mut cap = ChkCap::parse(&cap)?;
        cap.dir = true;
        Ok(cap.to_uri())
    }

    /// [`Native::upload_dir`] of a `mkdir-immutable` request body.
    pub(crate) fn upload_dir_json(&self, body: &str) -> Result<String, UploadError> {
        let children = children_of_mkdir_body(body)
            .map_err(|e| ChkError::Dir(format!("a directory body that does not parse: {e}")))?;
        let children: Vec<Child<'_>> = children
            .iter()
            .map(|c| Child {
                name: &c.name,
                cap: &c.cap,
                metadata: c.metadata,
            })
            .collect();
        self.upload_dir(&children)
    }

    /// Checks the object of a `URI:CHK:` or `URI:DIR2-CHK:` cap on the
    /// storage servers (verifying, repairing, renewing the lease as `opts`
    /// asks), giving the report the gateway's `t=check` gives.
    pub(crate) fn check(
        &self,
        cap: &str,
        opts: crate::tahoe::CheckOptions,
    ) -> Result<crate::tahoe::CheckReport, super::check::CheckError> {
        let cap = ChkCap::parse(cap)?;
        super::check::check(&self.uploader.servers, &self.uploader.lease, &cap, opts)
    }

    /// The readers of the storage servers ([`super::read`]).
    pub(crate) fn readers(&self) -> &Readers {
        &self.readers
    }
}

/// One child of a `mkdir-immutable` request body, as spans of it.
#[derive(Debug, PartialEq)]
pub(crate) struct BodyChild<'a> {
    /// The name, unescaped.
    pub(crate) name: String,
    /// The read cap, unescaped.
    pub(crate) cap: String,
    /// The metadata object's JSON text exactly as in the body (its key order
    /// is what the gateway keeps, so it must not go through a map).
    pub(crate) metadata: &'a str,
}

/// The children of a `POST /uri?t=mkdir-immutable` body
/// (`{NAME: [TYPE, {"ro_uri": CAP, "metadata": {...}}], ...}`, as
/// `edge::children_json` writes it), so the native path packs exactly what
/// the gateway would.
pub(crate) fn children_of_mkdir_body(body: &str) -> Result<Vec<BodyChild<'_>>, String> {
    let mut p = Scan { s: body, i: 0 };
    let mut out = Vec::new();
    p.expect(b'{')?;
    if p.peek() == Some(b'}') {
        return Ok(out);
    }
    loop {
        let name = p.string()?;
        p.expect(b':')?;
        p.expect(b'[')?;
        let _kind = p.string()?;
        p.expect(b',')?;
        p.expect(b'{')?;
        let (mut cap, mut metadata) = (None, None);
        loop {
            let key = p.string()?;
            p.expect(b':')?;
            let value = p.value()?;
            match key.as_str() {
                "ro_uri" => {
                    cap = Some(serde_json::from_str::<String>(value).map_err(|e| e.to_string())?)
                }
                "metadata" => metadata = Some(value),
                _ => {}
            }
            if p.next_of(b',', b'}')? == b'}' {
                break;
            }
        }
        p.expect(b']')?;
        out.push(BodyChild {
            name,
            cap: cap.ok_or("a child without ro_uri")?,
            metadata: metadata.unwrap_or("{}"),
        });
        if p.next_of(b',', b'}')? == b'}' {
            break;
        }
    }
    match p.peek() {
        None => Ok(out),
        Some(_) => Err(format!("trailing bytes at byte {}", p.i)),
    }
}

/// A cursor over JSON text that finds the spans of values.
struct Scan<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Scan<'a> {
    fn skip_ws(&mut self) {
        while matches!(
            self.s.as_bytes().get(self.i),
            Some(b' ' | b'\n' | b'\r' | b'\t')
        ) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.as_bytes().get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", c as char, self.i))
        }
    }

    fn next_of(&mut self, a: u8, b: u8) -> Result<u8, String> {
        match self.peek() {
            Some(c) if c == a || c == b => {
                self.i += 1;
                Ok(c)
            }
            _ => Err(format!(
                "expected '{}' or '{}' at byte {}",
                a as char, b as char, self.i
            )),
        }
    }

    /// A JSON string, unescaped.
    fn string(&mut self) -> Result<String, String> {
        let raw = self.value()?;
        if !raw.starts_with('"') {
            return Err(format!("expected a string before byte {}", self.i));
        }
        serde_json::from_str(raw).map_err(|e| e.to_string())
    }

    /// The text of the next value (a string, object, array or scalar).
    fn value(&mut self) -> Result<&'a str, String> {
        self.skip_ws();
        let bytes = self.s.as_bytes();
        let start = self.i;
        let mut depth = 0usize;
        let mut in_string = false;
        while let Some(&c) = bytes.get(self.i) {
            self.i += 1;
            if in_string {
                match c {
                    b'\\' => self.i += 1,
                    b'"' => {
                        in_string = false;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                continue;
            }
            match c {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' if depth > 0 => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t' if depth == 0 => {
                    self.i -= 1;
                    break;
                }
                _ => {}
            }
        }
        if in_string || depth > 0 || self.i == start || self.i > bytes.len() {
            return Err(format!("a value cut short at byte {start}"));
        }
        self.s
            .get(start..self.i)
            .ok_or_else(|| format!("a value cut short at byte {start}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    /// A node directory with the given files (relative path, content).
    fn node(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("private")).expect("mkdir");
        std::fs::set_permissions(
            dir.path().join("private"),
            std::fs::Permissions::from_mode(0o700),
        )
        .expect("chmod");
        for (path, content) in files {
            std::fs::write(dir.path().join(path), content).expect("write");
        }
        dir
    }

    fn secret() -> String {
        format!("{}\n", base32::encode(&[7u8; 32]))
    }

    const NURL: &str =
        "pb://AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA@127.0.0.1:9999/swissnum#v=1";

    fn cfg(node: Option<&Path>) -> NativeStorage {
        NativeStorage {
            node_dir: node.map(Path::to_path_buf),
            convergence_file: None,
            lease_secret_file: None,
            servers: Vec::new(),
            required: false,
        }
    }

    fn config_error(result: Result<Setup, NativeError>) -> String {
        match result {
            Err(NativeError::Config(e)) => e,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn a_node_dir_gives_secrets_shares_and_servers() {
        let s = secret();
        let dir = node(&[
            ("private/convergence", &s),
            ("private/secret", &s),
            (
                "tahoe.cfg",
                "[node]\nnickname = x\n[client]\nshares.needed = 2\nshares.happy: 3\nshares.total = 3\n",
            ),
        ]);
        let mut c = cfg(Some(dir.path()));
        c.servers = vec![NURL.to_owned()];
        let Setup::Ready(native) = setup(&c).expect("setup") else {
            panic!("expected the native path");
        };
        assert_eq!(native.uploader.params, Params::new(2, 3).expect("params"));
        assert_eq!(native.uploader.happy, 3);
        assert_eq!(native.uploader.convergence, vec![7u8; 32]);
        assert_eq!(native.uploader.servers.len(), 1);
        assert!(native.warnings.is_empty(), "{:?}", native.warnings);
        // Nothing secret in Debug output.
        let debug = format!("{native:?}");
        assert!(
            !debug.contains("swissnum") && !debug.contains(s.trim()),
            "{debug}"
        );
    }

    #[test]
    fn missing_nurls_fall_back_unless_required() {
        let s = secret();
        // A node with no announcement cache: no servers.
        let dir = node(&[
            ("private/convergence", &s),
            ("private/secret", &s),
            ("tahoe.cfg", ""),
        ]);
        let mut c = cfg(Some(dir.path()));
        match setup(&c).expect("setup") {
            Setup::Fallback(why) => assert!(why.contains("no storage server"), "{why}"),
            other => panic!("expected the fallback, got {other:?}"),
        }
        c.required = true;
        let err = setup(&c).expect_err("required");
        assert!(matches!(err, NativeError::Required(_)), "{err}");
        assert!(
            err.to_string()
                .starts_with("destination.native.required is true, but "),
            "{err}"
        );
    }

    #[test]
    fn a_bad_secret_is_an_error_never_a_fallback() {
        let s = secret();
        let short = base32::encode(&[1u8; 16]);
        let dir = node(&[
            ("private/convergence", &short),
            ("private/secret", &s),
            ("tahoe.cfg", ""),
        ]);
        let e = config_error(setup(&cfg(Some(dir.path()))));
        assert!(e.contains("is 16 bytes long; Tahoe's is 32"), "{e}");
        assert!(!e.contains(&short), "the secret is not quoted: {e}");

        let dir = node(&[
            ("private/convergence", "not base32!\n"),
            ("private/secret", &s),
        ]);
        let e = config_error(setup(&cfg(Some(dir.path()))));
        assert!(e.contains("not base32"), "{e}");

        let dir = node(&[("private/convergence", &s), ("private/secret", "AAAA\n")]);
        let e = config_error(setup(&cfg(Some(dir.path()))));
        assert!(e.contains("not a lease secret"), "{e}");

        // Unreadable: missing, and a directory.
        let dir = node(&[("private/secret", &s)]);
        let e = config_error(setup(&cfg(Some(dir.path()))));
        assert!(
            e.contains("convergence") && e.contains("cannot open it"),
            "{e}"
        );
        let mut c = cfg(Some(dir.path()));
        c.convergence_file = Some(dir.path().join("private"));
        let e = config_error(setup(&c));
        assert!(e.contains("not a regular file"), "{e}");

        // Neither node_dir nor the secret files.
        let e = config_error(setup(&cfg(None)));
        assert!(
            e.contains("neither convergence_file nor node_dir is set"),
            "{e}"
        );
    }

    #[test]
    fn explicit_files_without_a_node_use_tahoe_defaults_and_warn_when_loose() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let conv = dir.path().join("conv");
        let lease = dir.path().join("lease");
        std::fs::write(&conv, secret()).expect("write");
        std::fs::write(&lease, secret()).expect("write");
        std::fs::set_permissions(&conv, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::fs::set_permissions(&lease, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let mut c = cfg(None);
        c.convergence_file = Some(conv);
        c.lease_secret_file = Some(lease);
        c.servers = vec![NURL.to_owned()];
        let Setup::Ready(native) = setup(&c).expect("setup") else {
            panic!("expected the native path");
        };
        assert_eq!(native.uploader.params, Params::new(3, 10).expect("params"));
        assert_eq!(native.uploader.happy, 7);
        assert_eq!(native.warnings.len(), 1, "{:?}", native.warnings);
        assert!(native.warnings[0].contains("lease") && native.warnings[0].contains("0644"));
    }

    #[test]
    fn tahoe_cfg_share_settings() {
        let s = shares_of_cfg("# c\n[client]\n; x\nshares.needed=2\n[storage]\nshares.total = 9\n")
            .expect("parse");
        assert_eq!(
            s,
            Shares {
                needed: 2,
                happy: 7,
                total: 10
            }
        );
        let e = shares_of_cfg("[client]\nshares.needed = two\n").expect_err("bad");
        assert!(e.contains("line 2: shares.needed is not a number"), "{e}");
        let e = shares_of_cfg("[client]\nshares.needed = 4\nshares.total = 3\n").expect_err("bad");
        assert!(e.contains("need 1 <= needed <= total"), "{e}");
    }

    #[test]
    fn mkdir_bodies_split_into_children_keeping_metadata_text() {
        let body = r#"{"a\"b":["filenode",{"ro_uri":"URI:LIT:x","metadata":{"z":1,"a":{"k":"}]"}}}],"d":["dirnode",{"ro_uri":"URI:DIR2-LIT:","metadata":{}}]}"#;
        let children = children_of_mkdir_body(body).expect("parses");
        assert_eq!(
            children,
            vec![
                BodyChild {
                    name: "a\"b".into(),
                    cap: "URI:LIT:x".into(),
                    metadata: r#"{"z":1,"a":{"k":"}]"}}"#,
                },
                BodyChild {
                    name: "d".into(),
                    cap: "URI:DIR2-LIT:".into(),
                    metadata: "{}",
                },
            ]
        );
        assert_eq!(children_of_mkdir_body("{}").expect("empty"), vec![]);
        for bad in [
            "",
            "{",
            r#"{"a":["filenode",{"metadata":{}}]}"#,
            r#"{"a":["filenode",{"ro_uri":"x""#,
        ] {
            assert!(children_of_mkdir_body(bad).is_err(), "{bad}");
        }
    }
}

/// The upload routing of a [`crate::tahoe::Client`] in native mode against
/// a real TLS storage server that answers as a 1-of-1 grid would (or
/// stalls, or fails), and a gateway that is not there: which path an
/// object took shows in the result.
#[cfg(test)]
mod routing_tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use ciborium::Value;

    use super::*;
    use crate::config::Retry;
    use crate::storage::client::hostile_tests::{reply, serve_with};
    use crate::storage::client::tests::version_reply;
    use crate::tahoe::Client;

    /// How the fake server answers share uploads.
    #[derive(Clone, Copy)]
    enum Chunks {
        /// 201: the share is complete.
        Accept,
        /// No answer for this long (then the connection closes).
        Stall(Duration),
        /// HTTP 500.
        Fail,
    }

    /// A storage server for one share per object; the requests it got.
    fn server(chunks: Chunks) -> (String, Arc<AtomicUsize>) {
        let requests = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&requests);
        let nurl = serve_with(move |_, head, _| {
            seen.fetch_add(1, Ordering::Relaxed);
            let set = |items: Vec<u64>| {
                Value::Tag(
                    258,
                    Box::new(Value::Array(
                        items
                            .into_iter()
                            .map(|i| Value::Integer(i.into()))
                            .collect(),
                    )),
                )
            };
            if head.starts_with("GET /storage/v1/version") {
                Some(reply("200 OK", "application/cbor", &version_reply(1 << 40)))
            } else if head.starts_with("POST /storage/v1/immutable/") {
                let mut body = Vec::new();
                let allocation = Value::Map(vec![
                    (Value::Text("already-have".into()), set(vec![])),
                    (Value::Text("allocated".into()), set(vec![0])),
                ]);
                ciborium::into_writer(&allocation, &mut body).expect("cbor");
                Some(reply("201 Created", "application/cbor", &body))
            } else if head.starts_with("PATCH ") {
                match chunks {
                    Chunks::Accept => Some(reply("201 Created", "text/plain", b"")),
                    Chunks::Stall(d) => {
                        std::thread::sleep(d);
                        None
                    }
                    Chunks::Fail => Some(reply("500 Internal Server Error", "text/plain", b"")),
                }
            } else if head.contains("/abort") {
                Some(reply("200 OK", "text/plain", b""))
            } else {
                Some(reply("404 Not Found", "text/plain", b""))
            }
        });
        (nurl, requests)
    }

    /// A 1-of-1 (happy 1) native path to `nurl`.
    fn path(dir: &Path, nurl: &str, required: bool) -> NativePath {
        let secret = format!("{}\n", base32::encode(&[7u8; 32]));
        std::fs::create_dir_all(dir.join("private")).expect("mkdir");
        std::fs::write(dir.join("private/convergence"), &secret).expect("write");
        std::fs::write(dir.join("private/secret"), &secret).expect("write");
        std::fs::write(
            dir.join("tahoe.cfg"),
            "[client]\nshares.needed = 1\nshares.happy = 1\nshares.total = 1\n",
        )
        .expect("write");
        let cfg = NativeStorage {
            node_dir: Some(dir.to_path_buf()),
            convergence_file: None,
            lease_secret_file: None,
            servers: vec![nurl.to_owned()],
            required,
        };
        match setup(&cfg).expect("setup") {
            Setup::Ready(native) => NativePath::new(native, required),
            Setup::Fallback(why) => panic!("fallback: {why}"),
        }
    }

    /// A client whose gateway is not there (a refused port, one try), in
    /// native mode, with `timeouts`.
    fn client(path: NativePath, timeouts: Timeouts) -> Client {
        let retry = Retry {
            attempts: 1,
            ..crate::config::Config::builtin().http.retry
        };
        Client::new("http://127.0.0.1:1/uri", &retry, &timeouts)
            .expect("client")
            .with_native(Arc::new(path))
    }

    fn data() -> Vec<u8> {
        (0..5000u32).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn uploads_go_native_and_give_the_cap_without_the_gateway() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (nurl, requests) = server(Chunks::Accept);
        let client = client(path(dir.path(), &nurl, false), Timeouts::None);
        let cap = client.upload_bytes(&data()).expect("native upload");
        assert!(cap.as_str().starts_with("URI:CHK:"));
        assert!(cap.as_str().ends_with(":1:1:5000"));
        // The same content by every upload method gives the same cap.
        let sized = client
            .upload_sized(5000, |_| Ok(Box::new(io::Cursor::new(data()))))
            .expect("sized");
        assert!(sized == cap);
        let streamed = client
            .upload(|| Ok(Box::new(io::Cursor::new(data()))))
            .expect("upload");
        assert!(streamed == cap);
        // The version once (reused for a minute), then an allocation and
        // a chunk per upload: the storage server, not the gateway.
        assert!(requests.load(Ordering::Relaxed) >= 7, "3 native uploads");
        // A body that changes between the two passes is a body error
        // (the object is skipped), never a cap.
        let mut pass = 0u8;
        let err = client
            .upload_sized(5000, |_| {
                pass += 1;
                let mut d = data();
                d[0] = pass;
                Ok(Box::new(io::Cursor::new(d)))
            })
            .expect_err("changed");
        assert!(matches!(err, TahoeError::Body(_)), "{err}");
    }

    #[test]
    fn a_stalled_server_times_out_per_object() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (nurl, _) = server(Chunks::Stall(Duration::from_secs(4)));
        // Required: the error names the timeout, after about the limit
        // (not the storage client's own 120 s reply limit).
        let client = client(
            path(dir.path(), &nurl, true),
            Timeouts::PerAttempt(vec![0.5]),
        );
        let started = Instant::now();
        let err = client.upload_bytes(&data()).expect_err("stalled");
        assert!(matches!(err, TahoeError::Native(_)), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("destination.native.required is true")
                && text.contains("did not finish in time (waited 0.5 s"),
            "{text}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn failures_fall_back_to_the_gateway_and_three_switch_the_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (nurl, requests) = server(Chunks::Fail);
        let native = path(dir.path(), &nurl, false);
        let client = client(native, Timeouts::None);
        for _ in 0..MAX_NATIVE_FAILURES {
            // The native path fails, the gateway (not there) is tried.
            let err = client.upload_bytes(&data()).expect_err("no gateway");
            assert!(matches!(err, TahoeError::Connect { .. }), "{err}");
        }
        let native = client.native().expect("native");
        assert!(!native.uploads_natively(), "switched to the gateway");
        let before = requests.load(Ordering::Relaxed);
        let err = client.mkdir_immutable("{}").expect_err("no gateway");
        assert!(matches!(err, TahoeError::Connect { .. }), "{err}");
        assert_eq!(
            requests.load(Ordering::Relaxed),
            before,
            "no native request once switched"
        );

        // Required: the storage error itself, no gateway.
        let dir = tempfile::tempdir().expect("tempdir");
        let client = client_required(dir.path(), &nurl);
        let err = client.upload_bytes(&data()).expect_err("required");
        let text = err.to_string();
        assert!(
            matches!(err, TahoeError::Native(_)) && text.contains("HTTP 500"),
            "{text}"
        );
        assert!(!text.contains("swissnum"), "{text}");
    }

    fn client_required(dir: &Path, nurl: &str) -> Client {
        client(path(dir, nurl, true), Timeouts::None)
    }

    #[test]
    fn the_probe_counts_the_servers_that_answer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (nurl, _) = server(Chunks::Accept);
        let native = path(dir.path(), &nurl, false);
        assert_eq!(native.probe_servers().expect("probe"), (1, 1));
        assert!(native.uploads_natively());

        // A dead server (a port nobody listens on): the run goes to the
        // gateway, or with `required` an error.
        let dead = nurl.replace(
            &nurl[nurl.find('@').expect("@")..nurl.rfind('/').expect("/")],
            "@127.0.0.1:1",
        );
        let native = path(dir.path(), &dead, false);
        assert_eq!(native.probe_servers().expect("probe"), (0, 1));
        assert!(!native.uploads_natively());
        let native = path(dir.path(), &dead, true);
        let err = native.probe_servers().expect_err("required");
        assert!(
            err.to_string().starts_with(
                "destination.native.required is true, but only 0 of 1 storage server(s) \
                 answer, 1 needed (shares.happy)"
            ),
            "{err}"
        );
        assert!(!err.to_string().contains("swissnum"), "{err}");
    }
}
