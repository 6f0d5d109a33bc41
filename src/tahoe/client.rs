//! [`Client`]: the requests `lafs-backup` makes to a Tahoe-LAFS gateway's
//! web API, with retries and per-attempt timeouts.
//!
//! # How retries and timeouts combine
//!
//! Every operation runs as a sequence of *attempts* governed by
//! `operation.timeouts.updates` ([`Timeouts`]); each attempt is a sequence
//! of HTTP *tries* governed by `http.retry` ([`Retry`]):
//!
//! * Attempt `n` (0-based) has a deadline `timeouts.timeout(n)` from its
//!   start, which bounds all of its tries, the delays between them
//!   included (the config documents the limit as "HTTP retries
//!   included"). Each try runs with ureq's `timeout_global` set to the time
//!   left, so a try that hits the deadline is abandoned and its connection
//!   dropped (never returned to the pool) before anything else starts.
//! * Within an attempt, a transient error ([`TahoeError::is_transient`]:
//!   connection failures, 5xx other than known permanent exceptions, 503,
//!   incomplete replies) is retried after `retry.delay.before_retry(i)`,
//!   up to `retry.attempts` tries in total. A permanent error, or a
//!   transient one on the last try, ends the operation with that error.
//!   If a delay would reach past the deadline, the attempt waits out its
//!   deadline and counts as timed out.
//! * When an attempt times out, the next attempt starts at once with a
//!   fresh deadline and a fresh try budget (an upload re-opens its body),
//!   up to `timeouts.attempts()` attempts: a list of N limits gives N
//!   attempts, a single number retries timeouts forever, `null` means no
//!   deadline (so no timeout can happen). After the last attempt the
//!   operation fails with [`TahoeError::Timeout`].
//!
//! So with the defaults (`[1200, 2400, 3600]`, 4 tries, delays
//! `[10, 60, 600]`) a gateway that hangs costs at most 1200 + 2400 + 3600
//! seconds, and one that refuses connections fails after 4 tries and
//! 10 + 60 + 600 seconds of waiting.
//!
//! All operations use this scheme (not only uploads). Two are not
//! idempotent: a retried [`Client::mkdir_mutable`] can leave an orphan
//! directory behind (harmless, never linked), and a retried
//! [`Client::unlink`] whose first try did reach the gateway returns
//! `Ok(None)`.
//!
//! Every reply body is read with a limit that fits what it is, enforced as
//! it streams in (never after buffering it): a directory listing
//! `http.max_listing_bytes` (parsed a child at a time, see
//! `tahoe/listing.rs`), a check report and the node status or statistics
//! 4 MiB, an error reply or a cap 64 KiB, a body held in memory (a symlink
//! target) what the caller allows, streamed file content the size its cap
//! (else the caller, else the Content-Length) states, a deep-check line 4
//! MiB. One byte more is [`TahoeError::TooLarge`], never retried.
//!
//! Requests carry `Accept: text/plain` (so 500s are plain tracebacks) and
//! `User-Agent: lafs-backup/VERSION`; proxies from the environment are
//! ignored and redirects are never followed (a 3xx is a
//! [`TahoeError::BadReply`]). ureq logs URLs (with caps) only at its
//! `trace` level through the `log` crate, which this program does not
//! forward.

use std::io::{self, Read};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use unicode_normalization::UnicodeNormalization;
use ureq::http::{Response, Uri};
use ureq::{Body, SendBody};

use super::{Cap, TahoeError, lit, redact};
use crate::chk::cap::ChkCap;
use crate::config::{Retry, Timeouts};
use crate::storage::native::{NativePath, Pass, Passes};
use crate::storage::read::{self, ReadFailure};

/// Most bytes read from an error reply or from a reply that should be a cap.
const SMALL_REPLY_LIMIT: u64 = 64 * 1024;

/// Most bytes read of a `t=check&output=JSON` reply. A report is a few
/// KiB (its share map names every server holding a share); 4 MiB leaves
/// room for grids of thousands of servers.
const CHECK_REPLY_LIMIT: u64 = 4 << 20;

/// Most bytes read of the node status (`/?t=json`) and statistics
/// (`/statistics?t=json`) JSON: a few KiB per storage server.
const STATUS_REPLY_LIMIT: u64 = 4 << 20;

/// The default of `http.max_listing_bytes`: most bytes read of one
/// directory listing (`t=json`). A listing of this tool's backups takes
/// about 500 bytes per entry, so 64 MiB holds a directory of well over
/// 100,000 entries.
pub(crate) const DEFAULT_MAX_LISTING_BYTES: u64 = 64 << 20;

/// Most bytes of a symlink target (`SYMLINK_TARGET_LIMIT`), whatever its
/// cap says: Linux's `PATH_MAX` is 4 KiB, so 64 KiB is generous.
pub(crate) const SYMLINK_TARGET_LIMIT: u64 = 64 * 1024;

/// Idle keep-alive connections kept per gateway (uploads may run in
/// parallel threads).
const POOL_SIZE: usize = 32;

/// Options of [`Client::check`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions {
    /// Renew this client's lease on every share (`add-lease=true`).
    pub add_lease: bool,
    /// Download and verify every share instead of only asking the servers
    /// (`verify=true`; slow: reads all the data).
    pub verify: bool,
    /// Repair an unhealthy object (`repair=true`).
    pub repair: bool,
}

impl CheckOptions {
    /// The query parameters of the options that are on
    /// (`&add-lease=true&verify=true&repair=true`), to follow a `t=`.
    pub(super) fn query(self) -> String {
        let mut query = String::new();
        for (on, flag) in [
            (self.add_lease, "&add-lease=true"),
            (self.verify, "&verify=true"),
            (self.repair, "&repair=true"),
        ] {
            if on {
                query.push_str(flag);
            }
        }
        query
    }
}

/// The result of [`Client::check`]. After a repair, the state fields
/// describe the object after the repair.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub healthy: bool,
    pub recoverable: bool,
    /// The gateway's summary, e.g. `Healthy` or
    /// `Not Healthy: 1 shares (enc 2-of-3)` (redacted).
    pub summary: String,
    pub shares_good: Option<u32>,
    pub shares_needed: Option<u32>,
    pub shares_expected: Option<u32>,
    pub repair_attempted: bool,
    pub repair_successful: bool,
}

impl CheckReport {
    /// The report of a literal object: healthy, nothing on the grid.
    pub fn literal() -> CheckReport {
        CheckReport {
            healthy: true,
            recoverable: true,
            summary: "Healthy (literal: the data is in the cap)".into(),
            shares_good: None,
            shares_needed: None,
            shares_expected: None,
            repair_attempted: false,
            repair_successful: false,
        }
    }
}

/// A Tahoe gateway's web API. Cheap to share between threads (`Send +
/// Sync`); requests reuse keep-alive connections from a pool.
pub struct Client {
    agent: ureq::Agent,
    /// The node root, e.g. `http://127.0.0.1:3456`, no trailing slash.
    node: String,
    /// `{node}/uri`.
    uri: String,
    /// `host:port` for messages.
    gateway: String,
    retry: Retry,
    timeouts: Timeouts,
    /// Most bytes of a directory listing (`http.max_listing_bytes`).
    max_listing_bytes: u64,
    /// The time limit of the first contact ([`Client::servers_once`]).
    first_contact: Option<Duration>,
    /// `destination.storage: native`: the path straight to the storage
    /// servers for CHK objects (issue 17), else `None`.
    native: Option<Arc<NativePath>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("gateway", &self.gateway)
            .finish_non_exhaustive()
    }
}

/// A request body.
pub(super) enum Payload<'a> {
    Empty,
    Bytes {
        data: &'a [u8],
        content_type: Option<&'static str>,
    },
    /// A streamed (chunked) body; read errors are recorded in `failed`.
    Stream(TrackedReader),
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Method {
    Get,
    Put,
    Post,
    Delete,
}

impl Client {
    /// A client for the gateway at `destination_url`, the config's
    /// `destination.url`: `http://HOST:PORT/uri` by the original tool's
    /// convention; `http://HOST:PORT` and trailing slashes are accepted
    /// too (a path prefix before `/uri`, for a gateway behind a reverse
    /// proxy, is kept). `https://` trusts the system's store only.
    pub fn new(
        destination_url: &str,
        retry: &Retry,
        timeouts: &Timeouts,
    ) -> Result<Client, TahoeError> {
        Client::with_ca_files(destination_url, retry, timeouts, &[])
    }

    /// [`Client::new`], and for an `https://` gateway the certificates of
    /// `ca_files` (PEM, `http.ca_certs_files`) are trusted roots beside the
    /// system's store (which honours `SSL_CERT_FILE` and `SSL_CERT_DIR`).
    pub(crate) fn with_ca_files(
        destination_url: &str,
        retry: &Retry,
        timeouts: &Timeouts,
        ca_files: &[std::path::PathBuf],
    ) -> Result<Client, TahoeError> {
        let (node, gateway) = normalise_url(destination_url)?;
        let mut config = ureq::Agent::config_builder();
        if node.starts_with("https://") {
            config = config.tls_config(tls_config(ca_files)?);
        }
        let config = config
            .http_status_as_error(false)
            .proxy(None)
            .max_redirects(0)
            .user_agent(format!("lafs-backup/{}", env!("CARGO_PKG_VERSION")))
            .accept("text/plain")
            .max_idle_connections(POOL_SIZE)
            .max_idle_connections_per_host(POOL_SIZE)
            .build();
        Ok(Client {
            agent: ureq::Agent::new_with_config(config),
            uri: format!("{node}/uri"),
            node,
            gateway,
            retry: retry.clone(),
            timeouts: timeouts.clone(),
            max_listing_bytes: DEFAULT_MAX_LISTING_BYTES,
            first_contact: None,
            native: None,
        })
    }

    /// Sets the most bytes read of one directory listing
    /// (`http.max_listing_bytes`; at least 1 KiB).
    pub fn with_max_listing_bytes(mut self, limit: u64) -> Client {
        self.max_listing_bytes = limit.max(1024);
        self
    }

    /// Sends CHK objects through the native storage path
    /// (`destination.storage: native`) instead of the gateway.
    pub(crate) fn with_native(mut self, native: Arc<NativePath>) -> Client {
        self.native = Some(native);
        self
    }

    /// The native storage path, when configured and set up.
    pub(crate) fn native(&self) -> Option<&NativePath> {
        self.native.as_deref()
    }

    /// The native path and the parsed cap, when the run is in native mode
    /// and `cap` is a `URI:CHK:` file (the only file caps it reads: LIT
    /// caps are decoded locally in either mode, mutable ones stay on the
    /// gateway). A cap that does not parse is left to the gateway too.
    fn native_file(&self, cap: &Cap) -> Option<(&NativePath, ChkCap)> {
        let path = self.native()?;
        if !cap.as_str().starts_with("URI:CHK:") {
            return None;
        }
        ChkCap::parse(cap.as_str()).ok().map(|chk| (path, chk))
    }

    /// What a native read that did not succeed comes to: the sink's own
    /// error and a sink that stopped early are the caller's errors, as on
    /// the gateway path; a failure of the native path is `Ok(())` (go on
    /// through the gateway; one warning per run) unless
    /// `destination.native.required` makes it [`TahoeError::Native`].
    pub(super) fn native_read_failed(
        &self,
        path: &NativePath,
        failure: ReadFailure,
    ) -> Result<(), TahoeError> {
        match failure {
            ReadFailure::Sink(e) => Err(TahoeError::Sink(e)),
            ReadFailure::Incomplete { expected, got } => {
                Err(TahoeError::Incomplete { expected, got })
            }
            ReadFailure::Native(e) if path.required() => Err(TahoeError::Native(format!(
                "the native storage path failed and destination.native.required is true: {e}"
            ))),
            ReadFailure::Native(e) => {
                path.warn_fallback(&e, "reading");
                Ok(())
            }
        }
    }

    /// Replaces the timeouts (`operation.timeouts.updates`) of every
    /// request: `--timeout` of the interactive commands, `check
    /// --max-duration`.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Client {
        self.timeouts = timeouts;
        self
    }

    /// The timeouts every request follows.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Sets the time limit of [`Client::servers_once`] (the first contact of
    /// an interactive command), instead of the first attempt's limit of the
    /// timeouts.
    pub fn with_first_contact_timeout(mut self, limit: Duration) -> Client {
        self.first_contact = Some(limit);
        self
    }

    /// The time limit of the first attempt of a request
    /// (`operation.timeouts.updates`); `None`: no limit.
    pub(super) fn first_attempt_limit(&self) -> Option<Duration> {
        self.timeouts.timeout(0)
    }

    /// `{node}/uri`.
    pub(super) fn uri(&self) -> &str {
        &self.uri
    }

    /// Most bytes read of one directory listing.
    pub fn max_listing_bytes(&self) -> u64 {
        self.max_listing_bytes
    }

    /// The node root URL (`http://HOST:PORT`, no trailing slash).
    pub fn node_url(&self) -> &str {
        &self.node
    }

    /// Uploads an immutable file: `PUT /uri` with a streamed (chunked)
    /// body. `open` is called once per try, so each try sends the data from
    /// the beginning (a file is re-opened, a compressor rebuilt). An error
    /// from `open` or from reading the body is [`TahoeError::Body`], never
    /// retried. See the module doc for retries and timeouts.
    ///
    /// In native mode ([`Client::native`]) the body is read once more
    /// first, to learn its size ([`Client::upload_sized`] avoids that).
    pub fn upload<F>(&self, mut open: F) -> Result<Cap, TahoeError>
    where
        F: FnMut() -> io::Result<Box<dyn Read + Send>>,
    {
        if self.native().is_some_and(NativePath::uploads_natively) {
            let size = io::copy(&mut open().map_err(TahoeError::Body)?, &mut io::sink())
                .map_err(TahoeError::Body)?;
            return self.upload_sized(size, |_| open());
        }
        self.put_stream(open)
    }

    /// [`Client::upload`] of a body of `size` bytes. `open` is told which
    /// read it serves ([`Pass`]): in native mode the body is read twice,
    /// first only to hash it (convergent encryption), then to send it; a
    /// body that changed between the two fails as [`TahoeError::Body`]. A
    /// native failure goes to the gateway (one warning) unless
    /// `destination.native.required` ([`TahoeError::Native`]).
    pub(crate) fn upload_sized<F>(&self, size: u64, mut open: F) -> Result<Cap, TahoeError>
    where
        F: FnMut(Pass) -> io::Result<Box<dyn Read + Send>>,
    {
        if let Some(native) = self.native()
            && let Some(result) = native.upload(&self.timeouts, |n| {
                n.upload_file(&mut Passes::new(&mut open)?, size)
            })
        {
            return result;
        }
        self.put_stream(|| open(Pass::Send))
    }

    /// `PUT /uri` of a streamed body.
    fn put_stream<F>(&self, mut open: F) -> Result<Cap, TahoeError>
    where
        F: FnMut() -> io::Result<Box<dyn Read + Send>>,
    {
        self.with_retries("upload", None, |deadline| {
            let reader = open().map_err(TahoeError::Body)?;
            let tracked = TrackedReader::new(reader);
            let failed = Arc::clone(&tracked.failed);
            let reply = self.exchange(Method::Put, &self.uri, Payload::Stream(tracked), deadline);
            if let Some(err) = take_error(&failed) {
                return Err(TahoeError::Body(err));
            }
            self.read_cap(reply?)
        })
    }

    /// Uploads `data` as an immutable file (`PUT /uri` with a
    /// Content-Length body; natively in native mode, see
    /// [`Client::upload_sized`]).
    pub fn upload_bytes(&self, data: &[u8]) -> Result<Cap, TahoeError> {
        if let Some(native) = self.native()
            && let Some(result) = native.upload(&self.timeouts, |n| {
                n.upload_file(&mut io::Cursor::new(data), data.len() as u64)
            })
        {
            return result;
        }
        self.with_retries("upload", None, |deadline| {
            let payload = Payload::Bytes {
                data,
                content_type: None,
            };
            let reply = self.exchange(Method::Put, &self.uri, payload, deadline)?;
            self.read_cap(reply)
        })
    }

    /// Creates an immutable directory: `POST /uri?t=mkdir-immutable` with
    /// the children as a JSON body (`{name: [type, {"ro_uri": cap,
    /// "metadata": {…}}]}`), sent as `application/json`. In native mode
    /// the directory is packed as the gateway packs it and stored natively
    /// (the same cap; see [`Client::upload_sized`] for the fallback).
    pub fn mkdir_immutable(&self, children_json: &str) -> Result<Cap, TahoeError> {
        if let Some(native) = self.native()
            && let Some(result) =
                native.upload(&self.timeouts, |n| n.upload_dir_json(children_json))
        {
            return result;
        }
        let url = format!("{}?t=mkdir-immutable", self.uri);
        self.with_retries("mkdir-immutable", None, |deadline| {
            let payload = Payload::Bytes {
                data: children_json.as_bytes(),
                content_type: Some("application/json"),
            };
            let reply = self.exchange(Method::Post, &url, payload, deadline)?;
            self.read_cap(reply)
        })
    }

    /// `GET /uri/CAP?t=json`: a directory listing (`["dirnode", {…}]`) or
    /// file info (`["filenode", {…}]`). For a file this only parses the cap
    /// (no existence check: use [`Client::check`]). A cap the gateway does
    /// not know (`["unknown", …]`) is a [`TahoeError::BadReply`].
    ///
    /// The reply is parsed as it streams in and may have at most
    /// [`Client::max_listing_bytes`] bytes ([`TahoeError::TooLarge`]).
    pub fn info(&self, cap: &Cap) -> Result<Value, TahoeError> {
        let url = format!("{}/{}?t=json", self.uri, cap_segment(cap));
        let value = self.get_json("info", Some(cap), &url, self.listing_limit())?;
        if value.get(0).and_then(Value::as_str) == Some("unknown") {
            return Err(TahoeError::BadReply(
                "the gateway does not recognise this capability".into(),
            ));
        }
        Ok(value)
    }

    /// Streams the content of `cap` to `sink` without holding it in memory.
    /// `sink` gets a reader of the whole body once per attempt, so after a
    /// transient failure it must start its output over. A body shorter or
    /// longer than its Content-Length or the cap's size is an error, never a
    /// short result; an error of `sink`'s own (writing) is
    /// [`TahoeError::Sink`] and not retried. A `URI:LIT:` cap's content is
    /// decoded locally, without a request.
    ///
    /// The body may not go past the cap's size (or, for a cap that states
    /// none, its Content-Length): the first byte more ends the download
    /// with [`TahoeError::TooLarge`] while it streams.
    pub fn download_with<T>(
        &self,
        cap: &Cap,
        sink: impl FnMut(&mut dyn Read) -> io::Result<T>,
    ) -> Result<T, TahoeError> {
        self.download_with_max(cap, None, sink)
    }

    /// [`Client::download_with`] with a limit for a body whose cap states no
    /// size (a mutable file): at most `max` bytes when given (else its
    /// Content-Length, when the reply has one).
    pub fn download_with_max<T>(
        &self,
        cap: &Cap,
        max: Option<u64>,
        mut sink: impl FnMut(&mut dyn Read) -> io::Result<T>,
    ) -> Result<T, TahoeError> {
        if let Some(data) = lit::lit_data(cap) {
            let mut rest = data.as_slice();
            let value = sink(&mut rest).map_err(TahoeError::Sink)?;
            if !rest.is_empty() {
                return Err(TahoeError::Incomplete {
                    expected: data.len() as u64,
                    got: (data.len() - rest.len()) as u64,
                });
            }
            return Ok(value);
        }
        if let Some((path, chk)) = self.native_file(cap) {
            match read::with_reader(path.native().readers(), &chk, &mut sink) {
                Ok(value) => return Ok(value),
                Err(failure) => self.native_read_failed(path, failure)?,
            }
        }
        let (url, expected) = self.content_url(cap);
        self.with_retries("download", Some(cap), |deadline| {
            let reply = self.exchange(Method::Get, &url, Payload::Empty, deadline)?;
            let announced = reply.body().content_length();
            // The cap's word first, then the caller's (the listing's size),
            // then the gateway's.
            let limit = expected.or(max).or(announced);
            let mut reader = CheckedBody {
                inner: reply.into_body().into_reader(),
                got: 0,
                limit,
                too_long: false,
                net_error: None,
            };
            let result = sink(&mut reader);
            if reader.too_long {
                return Err(TahoeError::TooLarge {
                    what: "the file's content",
                    limit: limit.unwrap_or_default(),
                    hint: None,
                });
            }
            if let Some(err) = reader.net_error.take() {
                return Err(self.map_ureq(ureq::Error::from(err)));
            }
            let value = result.map_err(TahoeError::Sink)?;
            // The sink may stop early: whatever is left must be nothing.
            let mut rest = [0u8; 1];
            let extra = match reader.read(&mut rest) {
                Err(_) if reader.too_long => {
                    return Err(TahoeError::TooLarge {
                        what: "the file's content",
                        limit: limit.unwrap_or_default(),
                        hint: None,
                    });
                }
                other => other.map_err(|e| self.map_ureq(ureq::Error::from(e)))?,
            };
            whole_body(reader.got + extra as u64, announced, expected)?;
            Ok(value)
        })
    }

    /// Downloads the whole content of a file cap (`GET /uri/CAP`; a
    /// `URI:LIT:` cap is decoded locally) into memory, so at most `max`
    /// bytes: a cap that states a larger size, or a body that goes past
    /// `max`, is [`TahoeError::TooLarge`] (`what` names the object's kind
    /// in it), noticed while the body streams in. A body shorter or longer
    /// than its Content-Length, or than the size in a `URI:CHK:` cap, is
    /// [`TahoeError::Incomplete`], never a short result.
    pub fn download_at_most(
        &self,
        cap: &Cap,
        max: u64,
        what: &'static str,
    ) -> Result<Vec<u8>, TahoeError> {
        let too_large = || TahoeError::TooLarge {
            what,
            limit: max,
            hint: None,
        };
        if let Some(data) = lit::lit_data(cap) {
            if data.len() as u64 > max {
                return Err(too_large());
            }
            return Ok(data);
        }
        let (url, expected) = self.content_url(cap);
        if expected.is_some_and(|size| size > max) {
            return Err(too_large());
        }
        if let Some((path, chk)) = self.native_file(cap) {
            match read::read_all(path.native().readers(), &chk) {
                Ok(data) => return Ok(data),
                Err(failure) => self.native_read_failed(path, failure)?,
            }
        }
        self.with_retries("download", Some(cap), |deadline| {
            let reply = self.exchange(Method::Get, &url, Payload::Empty, deadline)?;
            let announced = reply.body().content_length();
            if expected.is_none() && announced.is_some_and(|n| n > max) {
                return Err(too_large());
            }
            // One byte more than expected, to notice a longer body; never
            // more than `max` (a Content-Length is the gateway's word only).
            let limit = expected.map_or(max, |n| n.saturating_add(1).min(max));
            let data = self.read_body_bounded(reply, limit, what, None)?;
            whole_body(data.len() as u64, announced, expected)?;
            Ok(data)
        })
    }

    /// [`Client::download_at_most`] with the size the cap states as the
    /// limit; a cap that states no size (a mutable file) may have at most
    /// 64 KiB (`SYMLINK_TARGET_LIMIT`). For large files use
    /// [`Client::download_with`], which streams.
    pub fn download(&self, cap: &Cap) -> Result<Vec<u8>, TahoeError> {
        let max = cap
            .size()
            .filter(|_| !cap.is_dir())
            .unwrap_or(SYMLINK_TARGET_LIMIT);
        self.download_at_most(cap, max, "the file")
    }

    /// Bytes `offset .. offset + len` of a file cap whose content is
    /// `size` bytes (`GET /uri/CAP` with `Range: bytes=A-B`; a `URI:LIT:`
    /// cap is sliced locally), for `mount`'s reads of a file stored as it
    /// is. The range is clipped to `size`; an empty one makes no request.
    /// The reply is read with the range's length as its limit (one byte
    /// more is [`TahoeError::TooLarge`]); a shorter body, or a `200` whole
    /// body when only part was asked for, is [`TahoeError::Incomplete`] /
    /// [`TahoeError::BadReply`], never a short result.
    pub fn download_range(
        &self,
        cap: &Cap,
        size: u64,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, TahoeError> {
        let end = offset.saturating_add(len).min(size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let want = end - offset;
        if let Some(data) = lit::lit_data(cap) {
            let (from, to) = (
                usize::try_from(offset).unwrap_or(usize::MAX),
                usize::try_from(end).unwrap_or(usize::MAX),
            );
            return data
                .get(from..to)
                .map(<[u8]>::to_vec)
                .ok_or(TahoeError::Incomplete {
                    expected: end,
                    got: data.len() as u64,
                });
        }
        if let Some((path, chk)) = self.native_file(cap) {
            // Only the segments the range covers are fetched and decoded.
            match read::range(path.native().readers(), &chk, offset, end) {
                Ok(data) if data.len() as u64 == want => return Ok(data),
                Ok(data) => {
                    return Err(TahoeError::Incomplete {
                        expected: want,
                        got: data.len() as u64,
                    });
                }
                Err(e) => self.native_read_failed(path, ReadFailure::Native(e))?,
            }
        }
        let (url, _) = self.content_url(cap);
        let range = format!("bytes={offset}-{}", end - 1);
        self.with_retries("ranged download", Some(cap), |deadline| {
            let timeout = time_left(deadline)?;
            let result = self
                .agent
                .get(&url)
                .header("Range", &range)
                .config()
                .timeout_global(timeout)
                .build()
                .call();
            let reply = self.accept(result)?;
            let status = reply.status().as_u16();
            // A 200 is the whole file: fine only when that is the range.
            if status != 206 && !(status == 200 && offset == 0 && end == size) {
                return Err(TahoeError::BadReply(format!(
                    "the gateway answered a ranged download with HTTP {status}"
                )));
            }
            let data = self.read_body_bounded(reply, want, "the range of the file", None)?;
            whole_body(data.len() as u64, None, Some(want))?;
            Ok(data)
        })
    }

    /// Checks an object: `POST /uri/CAP?t=check&output=JSON` with
    /// `add-lease`, `verify`, `repair` as asked. Literal caps are healthy
    /// without a request. A missing object checked with `repair` is an
    /// error for which [`TahoeError::is_not_found`] holds (the gateway
    /// answers 410); without `repair` it is a report with
    /// `recoverable: false`.
    ///
    /// In native mode ([`Client::native`]) a CHK object (`URI:CHK:`,
    /// `URI:DIR2-CHK:`) is checked on the storage servers themselves
    /// (`storage::check`, the same report; there a missing object under
    /// `repair` is a report too, unrecoverable with the repair failed); a
    /// native failure falls back to the gateway with one warning, unless
    /// `destination.native.required`.
    pub fn check(&self, cap: &Cap, opts: CheckOptions) -> Result<CheckReport, TahoeError> {
        if cap.is_literal() {
            return Ok(CheckReport::literal());
        }
        if let Some(path) = self.native()
            && ["URI:CHK:", "URI:DIR2-CHK:"]
                .iter()
                .any(|p| cap.as_str().starts_with(p))
        {
            // One attempt, bounded as the gateway request's first one
            // (`operation.timeouts.updates`, clamped by `--max-duration`).
            let deadline = self
                .timeouts
                .timeout(0)
                .and_then(|limit| Instant::now().checked_add(limit));
            let checked = crate::storage::client::with_deadline(deadline, || {
                path.native().check(cap.as_str(), opts)
            });
            match checked {
                Ok(report) => {
                    tracing::debug!(
                        "#{}: checked on the storage servers: {}",
                        cap.short_id(),
                        report.summary
                    );
                    return Ok(report);
                }
                Err(e) if path.required() => {
                    return Err(TahoeError::Native(format!(
                        "the native check failed and destination.native.required is true: {e}"
                    )));
                }
                Err(e) => path.warn_fallback(&e, "checking"),
            }
        }
        let url = format!(
            "{}/{}?t=check&output=JSON{}",
            self.uri,
            cap_segment(cap),
            opts.query()
        );
        let value = self.with_retries("check", Some(cap), |deadline| {
            let reply = self.exchange(Method::Post, &url, Payload::Empty, deadline)?;
            self.read_json(
                reply,
                Self::fixed_limit(CHECK_REPLY_LIMIT, "the check report"),
            )
        })?;
        parse_check(&value)
    }

    /// Links `cap` as child `name` of the directory at `dir_path`
    /// (`PUT /uri/DIR_PATH/NAME?t=uri`, replacing an existing child).
    /// `dir_path` is `DIRCAP` or `DIRCAP/sub/path`; the path segments and
    /// `name` are percent-encoded. The directory must be mutable.
    pub fn link(&self, dir_path: &str, name: &str, cap: &Cap) -> Result<(), TahoeError> {
        let url = format!("{}/{}?t=uri", self.dir_url(dir_path)?, encode_name(name)?);
        self.with_retries("link", Some(cap), |deadline| {
            let payload = Payload::Bytes {
                data: cap.as_str().as_bytes(),
                content_type: Some("text/plain"),
            };
            let reply = self.exchange(Method::Put, &url, payload, deadline)?;
            // The gateway echoes the cap; read it so the connection can be
            // reused.
            self.read_body(reply, Some(SMALL_REPLY_LIMIT)).map(drop)
        })
    }

    /// Removes child `name` of the directory at `dir_path` (`DELETE`):
    /// `Ok(Some(cap))` with the removed child's cap, `Ok(None)` when there
    /// was no such child (404, not retried). Data is never deleted: the
    /// shares stay until their leases expire.
    pub fn unlink(&self, dir_path: &str, name: &str) -> Result<Option<Cap>, TahoeError> {
        let url = format!("{}/{}", self.dir_url(dir_path)?, encode_name(name)?);
        let result = self.with_retries("unlink", None, |deadline| {
            let reply = self.exchange(Method::Delete, &url, Payload::Empty, deadline)?;
            self.read_cap(reply)
        });
        match result {
            Ok(cap) => Ok(Some(cap)),
            Err(err) if err.status() == Some(404) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The cap of child `name` (NFC-normalised, as the gateway stores
    /// names) of the directory at `dir_path`, `None` if there is no such
    /// child: its `rw_uri` when it has one (a mutable child through a
    /// writable parent), else its `ro_uri`. Reads the whole listing
    /// (`GET …?t=json`), which is as fast as asking for one child.
    pub fn child_cap(&self, dir_path: &str, name: &str) -> Result<Option<Cap>, TahoeError> {
        let wanted = check_name(name)?.nfc().collect::<String>();
        let url = format!("{}?t=json", self.dir_url(dir_path)?);
        let listing = self.get_json("list", None, &url, self.listing_limit())?;
        if listing.get(0).and_then(Value::as_str) != Some("dirnode") {
            return Err(TahoeError::BadReply(
                "the path does not name a directory".into(),
            ));
        }
        let Some(child) = listing
            .get(1)
            .and_then(|d| d.get("children"))
            .and_then(|c| c.get(&wanted))
        else {
            return Ok(None);
        };
        let edge = child.get(1);
        let text = ["rw_uri", "ro_uri"]
            .iter()
            .find_map(|key| edge.and_then(|e| e.get(*key)).and_then(Value::as_str))
            .ok_or_else(|| TahoeError::BadReply("a child entry without a cap".into()))?;
        Cap::parse(text)
            .map(Some)
            .map_err(|_| TahoeError::BadReply("a child entry with an invalid cap".into()))
    }

    /// Creates an empty mutable directory (`POST /uri?t=mkdir`) and
    /// returns its write cap (`URI:DIR2:…`).
    pub fn mkdir_mutable(&self) -> Result<Cap, TahoeError> {
        let url = format!("{}?t=mkdir", self.uri);
        self.with_retries("mkdir", None, |deadline| {
            let reply = self.exchange(Method::Post, &url, Payload::Empty, deadline)?;
            self.read_cap(reply)
        })
    }

    /// The node's statistics (`GET /statistics?t=json`): `counters` (e.g.
    /// `uploader.files_uploaded`, `uploader.bytes_uploaded`, present once
    /// something was uploaded) and `stats`.
    pub fn statistics(&self) -> Result<Value, TahoeError> {
        let url = format!("{}/statistics?t=json", self.node);
        self.get_json(
            "statistics",
            None,
            &url,
            Self::fixed_limit(STATUS_REPLY_LIMIT, "the node statistics"),
        )
    }

    /// `(connected, known)` storage servers from `GET /?t=json`. A server
    /// counts as connected when its `connection_status`, lower-cased,
    /// starts with `connected` (`connected` with the HTTPS storage
    /// protocol, `Connected to tcp:… via tcp` with foolscap).
    pub fn servers(&self) -> Result<(usize, usize), TahoeError> {
        let url = format!("{}/?t=json", self.node);
        let value = self.get_json(
            "servers",
            None,
            &url,
            Self::fixed_limit(STATUS_REPLY_LIMIT, "the node status"),
        )?;
        count_servers(&value)
    }

    /// [`Client::servers`] in a single try, without the retry policy: the
    /// first contact of an interactive command (`restore`, `verify`), so a
    /// mistyped `--gateway` or a stopped node is an error at once rather
    /// than after the retry delays (minutes by default). Later requests
    /// retry as configured.
    pub fn servers_once(&self) -> Result<(usize, usize), TahoeError> {
        let url = format!("{}/?t=json", self.node);
        let limit = self.first_contact.or_else(|| self.timeouts.timeout(0));
        let deadline = limit.and_then(|l| Instant::now().checked_add(l));
        let started = Instant::now();
        let value = self
            .exchange(Method::Get, &url, Payload::Empty, deadline)
            .and_then(|reply| {
                self.read_json(
                    reply,
                    Self::fixed_limit(STATUS_REPLY_LIMIT, "the node status"),
                )
            })
            .map_err(|err| match err {
                // Say how long it really waited (the error of one try does
                // not know its limit).
                TahoeError::Timeout { attempts, .. } => TahoeError::Timeout {
                    after: limit.unwrap_or_else(|| started.elapsed()),
                    attempts,
                },
                other => other,
            })?;
        count_servers(&value)
    }
}

/// `(connected, known)` storage servers in the node status JSON.
fn count_servers(value: &Value) -> Result<(usize, usize), TahoeError> {
    let servers = value
        .get("servers")
        .and_then(Value::as_array)
        .ok_or_else(|| TahoeError::BadReply("no server list in the node status".into()))?;
    let connected = servers
        .iter()
        .filter(|s| {
            s.get("connection_status")
                .and_then(Value::as_str)
                .is_some_and(|st| st.to_lowercase().starts_with("connected"))
        })
        .count();
    Ok((connected, servers.len()))
}

impl Client {
    // ------------------------------------------------------------ plumbing

    /// A GET whose reply is JSON of at most `limit` bytes, with retries.
    fn get_json(
        &self,
        op: &'static str,
        cap: Option<&Cap>,
        url: &str,
        limit: Limit,
    ) -> Result<Value, TahoeError> {
        self.with_retries(op, cap, |deadline| {
            let reply = self.exchange(Method::Get, url, Payload::Empty, deadline)?;
            self.read_json(reply, limit)
        })
    }

    /// The limit of a directory listing.
    fn listing_limit(&self) -> Limit {
        Limit {
            bytes: self.max_listing_bytes,
            what: "the directory listing",
            hint: Some("http.max_listing_bytes"),
        }
    }

    fn fixed_limit(bytes: u64, what: &'static str) -> Limit {
        Limit {
            bytes,
            what,
            hint: None,
        }
    }

    /// Runs `attempt` (one HTTP try, given the current attempt's deadline)
    /// under the retry and timeout scheme of the module doc.
    pub(super) fn with_retries<T>(
        &self,
        op: &'static str,
        cap: Option<&Cap>,
        mut attempt: impl FnMut(Option<Instant>) -> Result<T, TahoeError>,
    ) -> Result<T, TahoeError> {
        let object = cap
            .map(|c| format!(" of #{}", c.short_id()))
            .unwrap_or_default();
        let max_tries = self.retry.attempts.max(1);
        let mut round: usize = 0;
        loop {
            let limit = self.timeouts.timeout(round);
            let deadline = limit.and_then(|l| Instant::now().checked_add(l));
            let mut tries: u32 = 0;
            // Runs tries until one succeeds, fails for good, or the
            // attempt's deadline passes (then falls through).
            loop {
                tries += 1;
                let err = match attempt(deadline) {
                    Ok(value) => return Ok(value),
                    Err(err) => err,
                };
                if err.is_timeout() && deadline.is_some() {
                    break;
                }
                if !err.is_transient() || tries >= max_tries {
                    return Err(err.with_attempts(tries));
                }
                let delay = self.retry.delay.before_retry((tries - 1) as usize);
                // A warning, not debug: a run that waits minutes between
                // tries must say why it is silent. `err` is already redacted.
                tracing::warn!(
                    "gateway request failed ({err}); trying again in {} (try {} of {max_tries}; \
                     {op}{object})",
                    show_secs(delay),
                    tries + 1
                );
                if let Some(deadline) = deadline {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if delay >= left {
                        thread::sleep(left);
                        break;
                    }
                }
                thread::sleep(delay);
            }
            round += 1;
            let after = limit.unwrap_or_default();
            if self.timeouts.attempts().is_some_and(|max| round >= max) {
                return Err(TahoeError::Timeout {
                    after,
                    attempts: u32::try_from(round).unwrap_or(u32::MAX),
                });
            }
            // A new attempt is a retry too: say so at the same level.
            tracing::warn!(
                "gateway request did not finish in time (waited {}); trying again now \
                 (attempt {} of {}; {op}{object})",
                show_secs(after),
                round + 1,
                self.timeouts
                    .attempts()
                    .map_or_else(|| "unlimited".to_string(), |n| n.to_string())
            );
        }
    }

    /// One HTTP exchange. 2xx replies are returned; error statuses become
    /// [`TahoeError::Http`] (their body read and parsed), redirects
    /// [`TahoeError::BadReply`].
    pub(super) fn exchange(
        &self,
        method: Method,
        url: &str,
        payload: Payload<'_>,
        deadline: Option<Instant>,
    ) -> Result<Response<Body>, TahoeError> {
        let timeout = time_left(deadline)?;
        let result = match method {
            Method::Get => self
                .agent
                .get(url)
                .config()
                .timeout_global(timeout)
                .build()
                .call(),
            Method::Delete => self
                .agent
                .delete(url)
                .config()
                .timeout_global(timeout)
                .build()
                .call(),
            Method::Put | Method::Post => {
                let builder = if matches!(method, Method::Put) {
                    self.agent.put(url)
                } else {
                    self.agent.post(url)
                };
                let builder = builder.config().timeout_global(timeout).build();
                match payload {
                    Payload::Empty => builder.send_empty(),
                    Payload::Bytes { data, content_type } => match content_type {
                        Some(ct) => builder.content_type(ct).send(data),
                        None => builder.send(data),
                    },
                    Payload::Stream(reader) => builder.send(SendBody::from_owned_reader(reader)),
                }
            }
        };
        self.accept(result)
    }

    /// `POST {uri}/CAP?QUERY` without a body, for a reply read as a stream
    /// (`t=stream-deep-check`): the retries of the module doc apply until
    /// the reply's headers arrive; instead of an overall deadline, every
    /// read from the connection (the body's included) may take at most the
    /// attempt's time limit, so a long stream is fine as long as the gateway
    /// keeps sending.
    pub(super) fn post_stream(
        &self,
        op: &'static str,
        cap: &Cap,
        query: &str,
    ) -> Result<Response<Body>, TahoeError> {
        let url = format!("{}/{}?{query}", self.uri, cap_segment(cap));
        self.with_retries(op, Some(cap), |deadline| {
            let per_read = time_left(deadline)?;
            let result = self
                .agent
                .post(&url)
                .config()
                .timeout_per_read(per_read)
                .timeout_connect(per_read)
                .build()
                .send_empty();
            self.accept(result)
        })
    }

    /// A reply as [`Client::exchange`] returns it: 2xx passed on, error
    /// statuses read and turned into errors.
    fn accept(
        &self,
        result: Result<Response<Body>, ureq::Error>,
    ) -> Result<Response<Body>, TahoeError> {
        let reply = result.map_err(|e| self.map_ureq(e))?;
        let status = reply.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(reply);
        }
        if (300..400).contains(&status) {
            return Err(TahoeError::BadReply(format!(
                "an unexpected redirect (HTTP {status})"
            )));
        }
        let content_type = reply
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        // The error text is best effort: a failure to read it leaves the
        // status alone.
        let mut body = Vec::new();
        let _ = reply
            .into_body()
            .into_reader()
            .take(SMALL_REPLY_LIMIT)
            .read_to_end(&mut body);
        Err(TahoeError::from_reply(
            status,
            content_type.as_deref(),
            &body,
        ))
    }

    /// Reads a reply body, at most `limit` bytes (the rest is left
    /// unread; for replies whose length does not matter).
    fn read_body(&self, reply: Response<Body>, limit: Option<u64>) -> Result<Vec<u8>, TahoeError> {
        let mut data = Vec::new();
        let mut reader = reply.into_body().into_reader();
        let result = match limit {
            Some(limit) => reader.take(limit).read_to_end(&mut data),
            None => reader.read_to_end(&mut data),
        };
        result.map_err(|e| self.map_ureq(ureq::Error::from(e)))?;
        Ok(data)
    }

    /// Reads a whole reply body of at most `limit` bytes: one byte more is
    /// [`TahoeError::TooLarge`], noticed as it arrives (never after
    /// buffering the rest).
    fn read_body_bounded(
        &self,
        reply: Response<Body>,
        limit: u64,
        what: &'static str,
        hint: Option<&'static str>,
    ) -> Result<Vec<u8>, TahoeError> {
        let mut bounded = Bounded::new(reply.into_body().into_reader(), limit);
        let mut data = Vec::new();
        if let Err(e) = bounded.read_to_end(&mut data) {
            if bounded.exceeded {
                return Err(TahoeError::TooLarge { what, limit, hint });
            }
            return Err(self.map_ureq(ureq::Error::from(e)));
        }
        Ok(data)
    }

    /// A reply that must be a cap (uploads, mkdirs, unlink).
    fn read_cap(&self, reply: Response<Body>) -> Result<Cap, TahoeError> {
        let body = self.read_body(reply, Some(SMALL_REPLY_LIMIT))?;
        let text = std::str::from_utf8(&body)
            .map_err(|_| TahoeError::BadReply("the reply is not a capability".into()))?;
        Cap::parse(text).map_err(|_| TahoeError::BadReply("the reply is not a capability".into()))
    }

    /// A reply that must be JSON of at most `limit.bytes` bytes. It is
    /// parsed as it streams in (the text is never held whole), and a byte
    /// past the limit ends the read with [`TahoeError::TooLarge`].
    fn read_json(&self, reply: Response<Body>, limit: Limit) -> Result<Value, TahoeError> {
        let mut bounded = Bounded::new(reply.into_body().into_reader(), limit.bytes);
        let parsed = serde_json::from_reader::<_, Value>(io::BufReader::with_capacity(
            64 * 1024,
            &mut bounded,
        ));
        match parsed {
            Ok(value) => Ok(value),
            Err(_) if bounded.exceeded => Err(TahoeError::TooLarge {
                what: limit.what,
                limit: limit.bytes,
                hint: limit.hint,
            }),
            Err(e) if e.is_io() => Err(self.map_ureq(ureq::Error::from(io::Error::from(e)))),
            Err(e) => Err(TahoeError::BadReply(format!(
                "the reply is not valid JSON ({})",
                redact(&e.to_string())
            ))),
        }
    }

    /// Maps a ureq error to ours (attempt counts are set by the retry
    /// loop).
    pub(super) fn map_ureq(&self, err: ureq::Error) -> TahoeError {
        use io::ErrorKind as K;
        let connect = |message: String| TahoeError::Connect {
            gateway: self.gateway.clone(),
            message,
            attempts: 1,
        };
        let network = |message: String| TahoeError::Network {
            message: redact(&message),
            attempts: 1,
        };
        if let Some(tls) = tls_error(&err) {
            // Permanent: retrying cannot make an untrusted certificate
            // trusted, and a generic connection error would hide why.
            return TahoeError::Invalid(format!(
                "the TLS certificate of the Tahoe gateway at {} was refused: {} (to trust \
                 its CA, list its PEM file in http.ca_certs_files, or add it to the system's \
                 store, e.g. through SSL_CERT_FILE)",
                self.gateway,
                redact(&tls.to_string())
            ));
        }
        match err {
            ureq::Error::Timeout(_) => TahoeError::Timeout {
                after: Duration::ZERO,
                attempts: 1,
            },
            ureq::Error::Io(e) => match e.kind() {
                K::ConnectionRefused
                | K::HostUnreachable
                | K::NetworkUnreachable
                | K::AddrNotAvailable => connect(e.to_string()),
                K::TimedOut => network(format!("{e} (from the operating system)")),
                K::UnexpectedEof => network(format!("the connection closed early ({e})")),
                _ => network(e.to_string()),
            },
            ureq::Error::HostNotFound => connect("host not found".into()),
            ureq::Error::ConnectionFailed => connect("connection failed".into()),
            ureq::Error::Protocol(e) => network(format!("bad HTTP: {e}")),
            ureq::Error::BadUri(e) => {
                TahoeError::Invalid(format!("invalid request URL: {}", redact(&e)))
            }
            ureq::Error::Http(e) => {
                TahoeError::Invalid(format!("invalid request: {}", redact(&e.to_string())))
            }
            ureq::Error::LargeResponseHeader(..) | ureq::Error::BodyExceedsLimit(_) => {
                TahoeError::BadReply(redact(&err.to_string()))
            }
            other => network(other.to_string()),
        }
    }

    /// `{uri}/CAP`, the URL of a file's content, and the size the cap
    /// says the content has (`None` for a directory cap).
    fn content_url(&self, cap: &Cap) -> (String, Option<u64>) {
        let url = format!("{}/{}", self.uri, cap_segment(cap));
        (url, cap.size().filter(|_| !cap.is_dir()))
    }

    /// `{uri}/DIRCAP[/seg…]` for a `DIRCAP[/sub/path]` argument: the cap is
    /// validated, the path segments percent-encoded.
    fn dir_url(&self, dir_path: &str) -> Result<String, TahoeError> {
        let (cap_text, rest) = dir_path
            .trim()
            .split_once('/')
            .unwrap_or((dir_path.trim(), ""));
        let cap = Cap::parse(cap_text)?;
        let mut url = format!("{}/{}", self.uri, cap_segment(&cap));
        for segment in rest.split('/').filter(|s| !s.is_empty()) {
            url.push('/');
            url.push_str(&encode_name(segment)?);
        }
        Ok(url)
    }
}

/// How much of a reply may be read, and how an error names it.
#[derive(Debug, Clone, Copy)]
struct Limit {
    bytes: u64,
    what: &'static str,
    hint: Option<&'static str>,
}

/// A reader that yields at most `limit` bytes and fails (setting
/// `exceeded`) as soon as one more arrives.
pub(super) struct Bounded<R> {
    inner: R,
    left: u64,
    pub(super) exceeded: bool,
}

impl<R: Read> Bounded<R> {
    pub(super) fn new(inner: R, limit: u64) -> Self {
        Bounded {
            inner,
            left: limit,
            exceeded: false,
        }
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            // At the limit: the body must end here.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? == 0 {
                return Ok(0);
            }
            self.exceeded = true;
            return Err(io::Error::other("the reply is larger than its limit"));
        }
        let max = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.inner.read(&mut buf[..max])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// A duration for messages: whole seconds when it is whole, else to the
/// millisecond (`60 s`, `0.5 s`).
pub(crate) fn show_secs(d: Duration) -> String {
    let text = format!("{:.3}", d.as_secs_f64());
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} s")
}

/// A downloaded body of `got` bytes must be as long as its Content-Length
/// (`announced`) and the cap's size (`expected`) say.
fn whole_body(got: u64, announced: Option<u64>, expected: Option<u64>) -> Result<(), TahoeError> {
    for want in [announced, expected].into_iter().flatten() {
        if got != want {
            return Err(TahoeError::Incomplete {
                expected: want,
                got,
            });
        }
    }
    Ok(())
}

/// Time left before `deadline`; an error when it has passed.
fn time_left(deadline: Option<Instant>) -> Result<Option<Duration>, TahoeError> {
    match deadline {
        None => Ok(None),
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                Err(TahoeError::Timeout {
                    after: Duration::ZERO,
                    attempts: 1,
                })
            } else {
                Ok(Some(left))
            }
        }
    }
}

/// The certificate error behind a failed request, if TLS refused the
/// gateway's certificate (ureq hands rustls' errors on directly or inside an
/// I/O error).
fn tls_error(err: &ureq::Error) -> Option<&rustls::Error> {
    let tls = match err {
        ureq::Error::Rustls(e) => Some(e),
        ureq::Error::Io(e) => e.get_ref().and_then(|inner| inner.downcast_ref()),
        _ => None,
    }?;
    matches!(tls, rustls::Error::InvalidCertificate(_)).then_some(tls)
}

/// The TLS settings for an `https://` gateway: rustls with the ring
/// provider; the roots are the system's store plus `ca_files`.
pub(crate) fn tls_config(
    ca_files: &[std::path::PathBuf],
) -> Result<ureq::tls::TlsConfig, TahoeError> {
    // Errors of single entries of the system's store are skipped, as every
    // TLS client does: one bad file there must not stop backups.
    let mut roots: Vec<ureq::tls::Certificate<'static>> = rustls_native_certs::load_native_certs()
        .certs
        .iter()
        .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
        .collect();
    for path in ca_files {
        roots.extend(read_ca_file(path).map_err(|e| {
            TahoeError::Invalid(format!("invalid value for http.ca_certs_files: {e}"))
        })?);
    }
    if roots.is_empty() {
        return Err(TahoeError::Invalid(
            "no trusted TLS root certificate for the https:// gateway: the system's store \
             is empty; give a CA with http.ca_certs_files or SSL_CERT_FILE"
                .into(),
        ));
    }
    Ok(ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
        .build())
}

/// The certificates of a PEM file (`http.ca_certs_files`); an error (naming
/// the file) if it cannot be read or holds none.
pub(crate) fn read_ca_file(
    path: &std::path::Path,
) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {}
            Err(e) => return Err(format!("{shown} is not a valid PEM file: {e}")),
        }
    }
    if certs.is_empty() {
        return Err(format!("{shown} holds no PEM certificate"));
    }
    Ok(certs)
}

/// Validates and normalises a gateway URL: `(node root, host:port)`.
fn normalise_url(url: &str) -> Result<(String, String), TahoeError> {
    let url = url.trim();
    let invalid =
        |why: &str| TahoeError::Invalid(format!("invalid gateway URL {:?}: {why}", redact(url)));
    let lower = url.to_ascii_lowercase();
    if !lower.starts_with("http://") && !lower.starts_with("https://") {
        return Err(invalid("it must start with http:// or https://"));
    }
    if url.contains(['?', '#']) {
        return Err(invalid("it must not have a query or fragment"));
    }
    let parsed: Uri = url.parse().map_err(|_| invalid("it is not a valid URL"))?;
    let authority = parsed
        .authority()
        .ok_or_else(|| invalid("it has no host"))?;
    if authority.host().is_empty() {
        return Err(invalid("it has no host"));
    }
    let gateway = match authority.port_u16() {
        Some(port) => format!("{}:{port}", authority.host()),
        None => authority.host().to_string(),
    };
    let mut path = parsed.path().trim_end_matches('/');
    if let Some(prefix) = path.strip_suffix("/uri") {
        path = prefix;
    }
    if path
        .split('/')
        .any(|seg| seg == "uri" || seg.starts_with("URI:") || seg.starts_with("URI%3A"))
    {
        return Err(invalid(
            "it must end at the web API's /uri (no capability or path after it)",
        ));
    }
    let scheme = if lower.starts_with("https://") {
        "https"
    } else {
        "http"
    };
    Ok((
        format!("{scheme}://{}{}", authority.as_str(), path),
        gateway,
    ))
}

/// A cap as a URL path segment. Parsed caps are printable ASCII; anything
/// that is not safe in a path segment is percent-encoded (the gateway
/// decodes it).
pub(super) fn cap_segment(cap: &Cap) -> String {
    percent_encode(cap.as_str(), |b| {
        b.is_ascii_alphanumeric() || b"-._~:".contains(&b)
    })
}

/// A child name as a URL path segment: UTF-8, percent-encoded except for
/// unreserved characters. Empty names, `.`, `..` and names with `/` are
/// refused (the gateway would accept some of them, creating entries that
/// no path can reach).
fn encode_name(name: &str) -> Result<String, TahoeError> {
    Ok(percent_encode(check_name(name)?, |b| {
        b.is_ascii_alphanumeric() || b"-._~".contains(&b)
    }))
}

fn check_name(name: &str) -> Result<&str, TahoeError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(TahoeError::Invalid(format!(
            "invalid child name {:?}: empty, \".\", \"..\" or containing \"/\"",
            redact(name)
        )));
    }
    Ok(name)
}

fn percent_encode(text: &str, keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reads the JSON of `t=check&output=JSON`: `{summary, results}` without
/// repair, `{repair-attempted, repair-successful, pre-repair-results,
/// post-repair-results}` with it.
pub(super) fn parse_check(value: &Value) -> Result<CheckReport, TahoeError> {
    let bad = |what: &str| TahoeError::BadReply(format!("check reply: {what}"));
    if !value.is_object() {
        return Err(bad("not a JSON object"));
    }
    let flag = |key: &str| value.get(key).and_then(Value::as_bool).unwrap_or(false);
    let section = ["post-repair-results", "pre-repair-results"]
        .iter()
        .find_map(|key| value.get(*key).filter(|s| s.is_object()))
        .unwrap_or(value);
    let results = section
        .get("results")
        .filter(|r| r.is_object())
        .ok_or_else(|| bad("no results"))?;
    let healthy = results
        .get("healthy")
        .and_then(Value::as_bool)
        .ok_or_else(|| bad("no healthy flag"))?;
    let recoverable = results
        .get("recoverable")
        .and_then(Value::as_bool)
        .unwrap_or(healthy);
    let count = |key: &str| {
        results
            .get(key)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
    };
    let summary = section
        .get("summary")
        .and_then(Value::as_str)
        .map(redact)
        .unwrap_or_else(|| if healthy { "Healthy" } else { "Not Healthy" }.to_string());
    Ok(CheckReport {
        healthy,
        recoverable,
        summary,
        shares_good: count("count-shares-good"),
        shares_needed: count("count-shares-needed"),
        shares_expected: count("count-shares-expected"),
        repair_attempted: flag("repair-attempted"),
        repair_successful: flag("repair-successful"),
    })
}

/// An upload body that remembers its own read error, so the client can tell
/// "the local file failed" ([`TahoeError::Body`]) from a network error,
/// whatever ureq makes of the error it is handed.
pub(super) struct TrackedReader {
    inner: Box<dyn Read + Send>,
    failed: Arc<Mutex<Option<io::Error>>>,
}

impl TrackedReader {
    fn new(inner: Box<dyn Read + Send>) -> TrackedReader {
        TrackedReader {
            inner,
            failed: Arc::new(Mutex::new(None)),
        }
    }
}

impl Read for TrackedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let kind = e.kind();
                    let mut slot = self.failed.lock().unwrap_or_else(|p| p.into_inner());
                    *slot = Some(e);
                    return Err(io::Error::new(kind, "reading the upload body failed"));
                }
                Ok(n) => return Ok(n),
            }
        }
    }
}

fn take_error(slot: &Mutex<Option<io::Error>>) -> Option<io::Error> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// A download body that counts what it yields and keeps network errors
/// apart from the sink's own.
struct CheckedBody<R> {
    inner: R,
    got: u64,
    /// Most bytes the body may have; one more sets `too_long` and fails.
    limit: Option<u64>,
    too_long: bool,
    net_error: Option<io::Error>,
}

impl<R: Read> Read for CheckedBody<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.got += n as u64;
                if self.limit.is_some_and(|limit| self.got > limit) {
                    self.too_long = true;
                    return Err(io::Error::other("the body is longer than its stated size"));
                }
                Ok(n)
            }
            Err(e) => {
                let kind = e.kind();
                let message = e.to_string();
                self.net_error = Some(e);
                Err(io::Error::new(kind, message))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalised() {
        for (input, node) in [
            ("http://127.0.0.1:3456/uri", "http://127.0.0.1:3456"),
            ("http://127.0.0.1:3456/uri/", "http://127.0.0.1:3456"),
            (" http://127.0.0.1:3456 ", "http://127.0.0.1:3456"),
            ("http://127.0.0.1:3456/", "http://127.0.0.1:3456"),
            ("HTTP://localhost/tahoe/uri", "http://localhost/tahoe"),
        ] {
            let (got, _) = normalise_url(input).unwrap();
            assert_eq!(got, node, "{input}");
        }
        let (_, gateway) = normalise_url("http://127.0.0.1:3456/uri").unwrap();
        assert_eq!(gateway, "127.0.0.1:3456");
    }

    #[test]
    fn bad_urls_are_refused_clearly() {
        let (node, gateway) = normalise_url("https://gw.example/uri").unwrap();
        assert_eq!(
            (node.as_str(), gateway.as_str()),
            ("https://gw.example", "gw.example")
        );
        for bad in [
            "ftp://x/uri",
            "127.0.0.1:3456/uri",
            "http:///uri",
            "http://h:1/uri?x=1",
            "http://h:1/uri/URI:DIR2:abc:def",
        ] {
            let err = normalise_url(bad).unwrap_err();
            assert!(matches!(err, TahoeError::Invalid(_)), "{bad}");
            assert!(!err.to_string().contains("URI:"), "{err}");
        }
    }

    #[test]
    fn names_and_caps_in_paths() {
        assert_eq!(
            encode_name("caf\u{e9} x+y%").unwrap(),
            "caf%C3%A9%20x%2By%25"
        );
        assert_eq!(encode_name("a.b-c_d~").unwrap(), "a.b-c_d~");
        for bad in ["", ".", "..", "a/b"] {
            assert!(encode_name(bad).is_err(), "{bad:?}");
        }
        let cap = Cap::parse("URI:X:a?b#c/d%").unwrap();
        assert_eq!(cap_segment(&cap), "URI:X:a%3Fb%23c%2Fd%25");
    }

    #[test]
    fn check_json_shapes() {
        let plain: Value = serde_json::from_str(
            r#"{"storage-index": "x", "summary": "Healthy", "results": {"healthy": true,
               "recoverable": true, "count-shares-good": 3, "count-shares-needed": 2,
               "count-shares-expected": 3}}"#,
        )
        .unwrap();
        let r = parse_check(&plain).unwrap();
        assert!(r.healthy && r.recoverable && !r.repair_attempted);
        assert_eq!(
            (r.shares_good, r.shares_needed, r.shares_expected),
            (Some(3), Some(2), Some(3))
        );
        assert_eq!(r.summary, "Healthy");

        let repaired: Value = serde_json::from_str(
            r#"{"repair-attempted": true, "repair-successful": true,
               "pre-repair-results": {"summary": "Not Healthy: 2 shares (enc 2-of-3)",
                  "results": {"healthy": false, "recoverable": true, "count-shares-good": 2}},
               "post-repair-results": {"summary": "healthy",
                  "results": {"healthy": true, "recoverable": true, "count-shares-good": 3}}}"#,
        )
        .unwrap();
        let r = parse_check(&repaired).unwrap();
        assert!(r.healthy && r.repair_attempted && r.repair_successful);
        assert_eq!(r.shares_good, Some(3));

        let missing: Value = serde_json::from_str(
            r#"{"summary": "Not Healthy: 0 shares (enc 2-of-3)",
               "results": {"healthy": false, "recoverable": false, "count-shares-good": 0}}"#,
        )
        .unwrap();
        let r = parse_check(&missing).unwrap();
        assert!(!r.healthy && !r.recoverable);

        for bad in [
            "[]",
            "{}",
            r#"{"results": {}}"#,
            r#"{"results": {"healthy": "yes"}}"#,
        ] {
            let v: Value = serde_json::from_str(bad).unwrap();
            assert!(
                matches!(parse_check(&v), Err(TahoeError::BadReply(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn tracked_reader_keeps_the_error() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::NotFound, "vanished"))
            }
        }
        let mut r = TrackedReader::new(Box::new(Failing));
        let failed = Arc::clone(&r.failed);
        assert!(r.read(&mut [0; 4]).is_err());
        let err = take_error(&failed).unwrap();
        assert_eq!(err.to_string(), "vanished");
    }

    #[test]
    fn bounded_reads_up_to_the_limit_and_fails_past_it() {
        let mut exact = Bounded::new(&b"12345"[..], 5);
        let mut out = Vec::new();
        exact.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"12345");
        assert!(!exact.exceeded);

        let mut long = Bounded::new(io::repeat(b'x'), 1000);
        let mut out = Vec::new();
        assert!(long.read_to_end(&mut out).is_err());
        assert!(long.exceeded);
        assert_eq!(out.len(), 1000);
    }

    #[test]
    fn durations_in_messages() {
        assert_eq!(show_secs(Duration::from_secs(15)), "15 s");
        assert_eq!(show_secs(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(show_secs(Duration::from_millis(10)), "0.01 s");
        assert_eq!(show_secs(Duration::ZERO), "0 s");
    }

    #[test]
    fn client_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Client>();
    }
}
