//! The HTTP requests of the storage protocol, one [`StorageClient`] per
//! server (`http-storage-node-protocol.rst`; tahoe-lafs 1.20's
//! `storage/http_client.py`).
//!
//! Every request carries `Authorization: Tahoe-LAFS BASE64(swissnum)`;
//! the lease and upload secrets go in `X-Tahoe-Authorization` headers, never
//! in URLs. Control replies are CBOR, read with a size limit: an oversized,
//! non-CBOR or ill-shaped reply is a [`StorageError::BadReply`], never a
//! panic. Errors name the server by nickname and address only.

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};
use std::io;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ciborium::Value;
use ureq::http::Response;
use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::{Connector as _, TcpConnector};
use ureq::{Agent, Body};

use super::StorageError;
use super::nurl::Server;
use super::tls::{PinnedConnector, pinned_config, tls_message};
use crate::tahoe::base32;

/// The largest CBOR control reply read (Tahoe's own replies are tiny; its
/// client caps replies at 30 MiB, far more than a control message needs).
pub(crate) const MAX_CBOR_REPLY: u64 = 1024 * 1024;

thread_local! {
    /// The deadline of the object this thread is storing ([`with_deadline`]).
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// How long an abort may take, whatever the object's deadline.
const ABORT_GRACE: Duration = Duration::from_secs(10);

/// Runs `work` with every storage request it makes on this thread bounded
/// by `deadline` (`operation.timeouts.updates` applies per object, as one
/// gateway `PUT` is bounded: docs/native-storage.md "Backups"). An
/// ambient setting rather than a parameter of every protocol call: an
/// upload is many requests (version, allocate, chunks, aborts) made on the
/// caller's thread, and only the caller knows the object's deadline. The
/// previous deadline is restored afterwards.
pub(crate) fn with_deadline<T>(deadline: Option<Instant>, work: impl FnOnce() -> T) -> T {
    let before = DEADLINE.with(|d| d.replace(deadline));
    let result = work();
    DEADLINE.with(|d| d.set(before));
    result
}

/// This thread's deadline ([`with_deadline`]), for the threads it starts
/// to make requests of the same object.
pub(crate) fn current_deadline() -> Option<Instant> {
    DEADLINE.with(Cell::get)
}

/// The time left before this thread's deadline: `None` without one,
/// `Some(ZERO)` once it passed.
fn time_left() -> Option<Duration> {
    DEADLINE
        .with(Cell::get)
        .map(|d| d.saturating_duration_since(Instant::now()))
}
/// Idle keep-alive connections kept per server (ureq's default is 3; a
/// restore runs `operation.concurrency` workers, each reading k shares).
const IDLE_CONNECTIONS: usize = 32;

/// The key of the version message's storage protocol map.
const V1: &[u8] = b"http://allmydata.org/tahoe/protocols/storage/v1";

/// What `GET /storage/v1/version` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Version {
    /// `maximum-immutable-share-size`.
    pub(crate) maximum_immutable_share_size: u64,
    /// `available-space`.
    pub(crate) available_space: u64,
    /// `application-version`, e.g. `tahoe-lafs/1.20.0`.
    pub(crate) application_version: String,
}

/// What `POST /storage/v1/immutable/:si` answers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Allocation {
    /// Shares the server already holds (complete).
    pub(crate) already_have: BTreeSet<u16>,
    /// Shares allocated for this upload.
    pub(crate) allocated: BTreeSet<u16>,
}

/// The lease secrets of one storage index on one server (32 bytes each).
#[derive(Clone)]
pub(crate) struct LeaseSecrets {
    /// `lease-renew-secret`.
    pub(crate) renew: [u8; 32],
    /// `lease-cancel-secret`.
    pub(crate) cancel: [u8; 32],
}

/// A client of one storage server.
pub(crate) struct StorageClient {
    label: String,
    base: String,
    auth: String,
    agent: Agent,
    /// The last `version()` answer (or failure) and when it came
    /// ([`StorageClient::version_cached`]).
    version: Mutex<Option<(Instant, Result<Version, StorageError>)>>,
}

/// How long a server's `version` answer is reused by
/// [`StorageClient::version_cached`]: its limits do not change, and its
/// free space is checked again by every allocation (a full server
/// allocates nothing), so asking before every upload only costs the
/// server a request per object.
const VERSION_REUSE: Duration = Duration::from_secs(60);

/// How long a server that did not answer `version` (after the client's
/// retries) is taken as down by [`StorageClient::version_cached`] without
/// asking again: with one node of a grid down, every object would
/// otherwise wait for its retries (seconds) before being placed on the
/// others. Short, so a node that comes back is used again soon.
const DOWN_REUSE: Duration = Duration::from_secs(20);

/// The clients of [`StorageClient::shared`], one per server (NURL) for
/// the whole process.
static POOL: OnceLock<Mutex<HashMap<String, Arc<StorageClient>>>> = OnceLock::new();

impl std::fmt::Debug for StorageClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageClient")
            .field("server", &self.label)
            .finish_non_exhaustive()
    }
}

/// The URL form of a storage index: lowercase unpadded base32.
fn si_text(si: &[u8; 16]) -> String {
    base32::encode(si)
}

impl StorageClient {
    /// A client for `server`, TLS pinned by its NURL.
    pub(crate) fn new(server: &Server) -> Result<StorageClient, StorageError> {
        let label = server.label();
        let tls = pinned_config(&server.nurl.spki_hash).map_err(|e| StorageError::Network {
            server: label.clone(),
            what: format!("TLS setup: {e}"),
        })?;
        let connector = ().chain(TcpConnector::default()).chain(PinnedConnector::new(tls));
        let config = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(20)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .timeout_recv_body(Some(Duration::from_secs(120)))
            .timeout_send_body(Some(Duration::from_secs(120)))
            // A storage server is reached directly, never through a proxy.
            .proxy(None)
            // A client is kept for the run (reads): parallel workers reuse
            // their TLS connections instead of a handshake per request.
            .max_idle_connections(IDLE_CONNECTIONS)
            .max_idle_connections_per_host(IDLE_CONNECTIONS)
            .build();
        Ok(StorageClient {
            base: server.nurl.base_url(),
            auth: format!(
                "Tahoe-LAFS {}",
                BASE64.encode(server.nurl.swissnum.as_bytes())
            ),
            agent: Agent::with_parts(config, connector, DefaultResolver::default()),
            label,
            version: Mutex::new(None),
        })
    }

    /// The process's one client of `server` (made on first use): its
    /// agent keeps the TLS connections to the server open between objects,
    /// so uploading or reading many small objects costs no handshake each
    /// (a Python storage server spends milliseconds of CPU on one).
    pub(crate) fn shared(server: &Server) -> Result<Arc<StorageClient>, StorageError> {
        let n = &server.nurl;
        let key = format!("{} {} {} {}", n.spki_hash, n.host, n.port, n.swissnum);
        let pool = POOL.get_or_init(|| Mutex::new(HashMap::new()));
        let mut pool = pool.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(client) = pool.get(&key) {
            return Ok(Arc::clone(client));
        }
        let client = Arc::new(StorageClient::new(server)?);
        pool.insert(key, Arc::clone(&client));
        Ok(client)
    }

    /// The server's label (nickname and address), for messages.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    fn network(&self, what: &str, err: ureq::Error) -> StorageError {
        StorageError::Network {
            server: self.label.clone(),
            what: format!("{what}: {}", describe(&err)),
        }
    }

    fn bad_reply(&self, what: &str, problem: impl Into<String>) -> StorageError {
        StorageError::BadReply {
            server: self.label.clone(),
            what: what.to_owned(),
            problem: problem.into(),
        }
    }

    fn status(&self, what: &str, status: u16) -> StorageError {
        StorageError::Status {
            server: self.label.clone(),
            what: what.to_owned(),
            status,
        }
    }

    /// Sends one request, retried after a network failure (a refused or
    /// broken connection, a timeout; not a TLS refusal, nor any HTTP
    /// answer). Retrying is safe for every request of the protocol: a
    /// repeated allocation with the same upload secret gets the same answer,
    /// a chunk written again with the same bytes is accepted, aborts and
    /// leases are idempotent. `what` names it in errors; `secrets` are
    /// `(kind, value)` pairs for `X-Tahoe-Authorization`.
    fn send(
        &self,
        what: &str,
        method: &str,
        path: &str,
        secrets: &[(&str, &[u8])],
        headers: &[(&str, String)],
        body: Option<(&str, &[u8])>,
    ) -> Result<Response<Body>, StorageError> {
        let mut delays = RETRY_DELAYS.iter();
        loop {
            match self.send_once(method, path, secrets, headers, body) {
                Ok(resp) => return Ok(resp),
                Err(e) => match delays.next() {
                    // Past the object's deadline another try cannot help.
                    Some(_) if time_left() == Some(Duration::ZERO) => {
                        return Err(self.network(what, e));
                    }
                    Some(delay) if transient(&e) => std::thread::sleep(*delay),
                    _ => return Err(self.network(what, e)),
                },
            }
        }
    }

    fn send_once(
        &self,
        method: &str,
        path: &str,
        secrets: &[(&str, &[u8])],
        headers: &[(&str, String)],
        body: Option<(&str, &[u8])>,
    ) -> Result<Response<Body>, ureq::Error> {
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path))
            .header("Authorization", &self.auth)
            .header("Accept", "application/cbor");
        for (kind, value) in secrets {
            req = req.header(
                "X-Tahoe-Authorization",
                format!("{kind} {}", BASE64.encode(value)),
            );
        }
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        // The object's deadline bounds the whole exchange, besides the
        // agent's own connect and reply limits.
        let left = time_left();
        if left == Some(Duration::ZERO) {
            return Err(ureq::Error::Timeout(ureq::Timeout::Global));
        }
        match body {
            Some((content_type, data)) => {
                let r = req.header("Content-Type", content_type).body(data)?;
                let r = self.agent.configure_request(r).timeout_global(left).build();
                self.agent.run(r)
            }
            None => {
                let r = self.agent.configure_request(req.body(())?);
                self.agent.run(r.timeout_global(left).build())
            }
        }
    }

    /// The status of a reply whose body does not matter, after reading
    /// that body (a few bytes; at most `MAX_CBOR_REPLY`): only a reply read
    /// to its end gives its keep-alive connection back to the agent's pool.
    /// Dropped unread, the connection is closed, and the next request to
    /// the server pays a new TCP and TLS handshake (a Python storage server
    /// spends about a millisecond of CPU on one: once per small file).
    fn status_of(mut resp: Response<Body>) -> u16 {
        let status = resp.status().as_u16();
        let _ = io::copy(
            &mut resp.body_mut().with_config().limit(MAX_CBOR_REPLY).reader(),
            &mut io::sink(),
        );
        status
    }

    /// The CBOR body of a `200 OK` reply; another status is an error.
    fn cbor_200(&self, what: &str, resp: Response<Body>) -> Result<Value, StorageError> {
        match resp.status().as_u16() {
            200 => self.cbor(what, resp),
            status => Err(self.status(what, status)),
        }
    }

    /// The CBOR body of a successful reply, size-limited.
    fn cbor(&self, what: &str, mut resp: Response<Body>) -> Result<Value, StorageError> {
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if content_type.split(';').next().map(str::trim) != Some("application/cbor") {
            return Err(self.bad_reply(
                what,
                format!("content type {content_type:?}, not application/cbor"),
            ));
        }
        let data = resp
            .body_mut()
            .with_config()
            .limit(MAX_CBOR_REPLY + 1)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => {
                    self.bad_reply(what, format!("reply larger than {MAX_CBOR_REPLY} bytes"))
                }
                e => self.network(what, e),
            })?;
        if data.len() as u64 > MAX_CBOR_REPLY {
            return Err(self.bad_reply(what, format!("reply larger than {MAX_CBOR_REPLY} bytes")));
        }
        decode_cbor(&data).map_err(|p| self.bad_reply(what, p))
    }

    /// `GET /storage/v1/version`.
    pub(crate) fn version(&self) -> Result<Version, StorageError> {
        let what = "GET version";
        let resp = self.send(what, "GET", "/storage/v1/version", &[], &[], None)?;
        let value = self.cbor_200(what, resp)?;
        parse_version(&value).map_err(|p| self.bad_reply(what, p))
    }

    /// [`StorageClient::version`], reusing an answer younger than a minute
    /// (`VERSION_REUSE`) and a failure younger than `DOWN_REUSE`.
    pub(crate) fn version_cached(&self) -> Result<Version, StorageError> {
        let mut cached = self
            .version
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((at, answer)) = cached.as_ref() {
            let reuse = if answer.is_ok() {
                VERSION_REUSE
            } else {
                DOWN_REUSE
            };
            if at.elapsed() < reuse {
                return answer.clone();
            }
        }
        let answer = self.version();
        *cached = Some((Instant::now(), answer.clone()));
        answer
    }

    /// `POST /storage/v1/immutable/:si`: allocates `shares` of
    /// `allocated_size` bytes each.
    pub(crate) fn allocate(
        &self,
        si: &[u8; 16],
        lease: &LeaseSecrets,
        upload_secret: &[u8; 32],
        shares: &BTreeSet<u16>,
        allocated_size: u64,
    ) -> Result<Allocation, StorageError> {
        let what = "allocate";
        let body = encode_cbor(&Value::Map(vec![
            (
                Value::Text("share-numbers".into()),
                Value::Tag(
                    258,
                    Box::new(Value::Array(
                        shares.iter().map(|&s| Value::Integer(s.into())).collect(),
                    )),
                ),
            ),
            (
                Value::Text("allocated-size".into()),
                Value::Integer(allocated_size.into()),
            ),
        ]));
        let resp = self.send(
            what,
            "POST",
            &format!("/storage/v1/immutable/{}", si_text(si)),
            &[
                ("lease-renew-secret", &lease.renew),
                ("lease-cancel-secret", &lease.cancel),
                ("upload-secret", upload_secret),
            ],
            &[],
            Some(("application/cbor", &body)),
        )?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(self.status(what, status));
        }
        let value = self.cbor(what, resp)?;
        let get = |key: &str| {
            map_get(&value, &Value::Text(key.into()))
                .ok_or_else(|| format!("no {key:?}"))
                .and_then(share_set)
        };
        Ok(Allocation {
            already_have: get("already-have").map_err(|p| self.bad_reply(what, p))?,
            allocated: get("allocated").map_err(|p| self.bad_reply(what, p))?,
        })
    }

    /// `PATCH /storage/v1/immutable/:si/:shnum`: writes `data` at `offset`.
    /// `Ok(true)` when this chunk completed the share.
    pub(crate) fn write_chunk(
        &self,
        si: &[u8; 16],
        shnum: u16,
        upload_secret: &[u8; 32],
        offset: u64,
        data: &[u8],
    ) -> Result<bool, StorageError> {
        let what = "upload share chunk";
        if data.is_empty() {
            return Err(self.bad_reply(what, "empty chunk (a bug)"));
        }
        let end = offset + data.len() as u64 - 1;
        let resp = self.send(
            what,
            "PATCH",
            &format!("/storage/v1/immutable/{}/{shnum}", si_text(si)),
            &[("upload-secret", upload_secret)],
            &[("Content-Range", format!("bytes {offset}-{end}/*"))],
            Some(("application/octet-stream", data)),
        )?;
        match Self::status_of(resp) {
            201 => Ok(true),
            200 => Ok(false),
            s => Err(self.status(what, s)),
        }
    }

    /// `PUT /storage/v1/immutable/:si/:shnum/abort`. Aborting an upload
    /// that is not in progress (405) is not an error: nothing is left over.
    pub(crate) fn abort(
        &self,
        si: &[u8; 16],
        shnum: u16,
        upload_secret: &[u8; 32],
    ) -> Result<(), StorageError> {
        let what = "abort upload";
        // An abort follows a failure, often the object's deadline: it gets
        // a short time of its own, so the servers free the space at once.
        let grace = Instant::now().checked_add(ABORT_GRACE);
        let resp = with_deadline(grace, || {
            self.send(
                what,
                "PUT",
                &format!("/storage/v1/immutable/{}/{shnum}/abort", si_text(si)),
                &[("upload-secret", upload_secret)],
                &[],
                None,
            )
        })?;
        match Self::status_of(resp) {
            200 | 405 => Ok(()),
            s => Err(self.status(what, s)),
        }
    }

    /// `GET /storage/v1/immutable/:si/shares`.
    pub(crate) fn list_shares(&self, si: &[u8; 16]) -> Result<BTreeSet<u16>, StorageError> {
        let what = "list shares";
        let resp = self.send(
            what,
            "GET",
            &format!("/storage/v1/immutable/{}/shares", si_text(si)),
            &[],
            &[],
            None,
        )?;
        let value = self.cbor_200(what, resp)?;
        share_set(&value).map_err(|p| self.bad_reply(what, p))
    }

    /// `GET /storage/v1/immutable/:si/:shnum` with `Range`: up to `len`
    /// bytes at `offset` (fewer at the end of the share).
    pub(crate) fn read_share(
        &self,
        si: &[u8; 16],
        shnum: u16,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StorageError> {
        let what = "read share";
        if len == 0 {
            return Ok(Vec::new());
        }
        let mut resp = self.send(
            what,
            "GET",
            &format!("/storage/v1/immutable/{}/{shnum}", si_text(si)),
            &[],
            &[("Range", format!("bytes={offset}-{}", offset + len - 1))],
            None,
        )?;
        match resp.status().as_u16() {
            204 => return Ok(Vec::new()),
            200 | 206 => {}
            s => return Err(self.status(what, s)),
        }
        // ureq's limit refuses a body that reaches it: one byte of slack,
        // then the exact check.
        let too_long = || self.bad_reply(what, format!("more than the {len} bytes asked for"));
        let data = resp
            .body_mut()
            .with_config()
            .limit(len.saturating_add(1))
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => too_long(),
                e => self.network(what, e),
            })?;
        if data.len() as u64 > len {
            return Err(too_long());
        }
        Ok(data)
    }

    /// `PUT /storage/v1/lease/:si`: adds or renews our lease. `Ok(false)`
    /// when the server holds no share of `si` (404).
    pub(crate) fn add_lease(
        &self,
        si: &[u8; 16],
        lease: &LeaseSecrets,
    ) -> Result<bool, StorageError> {
        let what = "add lease";
        let resp = self.send(
            what,
            "PUT",
            &format!("/storage/v1/lease/{}", si_text(si)),
            &[
                ("lease-renew-secret", &lease.renew),
                ("lease-cancel-secret", &lease.cancel),
            ],
            &[],
            None,
        )?;
        match Self::status_of(resp) {
            204 | 200 => Ok(true),
            404 => Ok(false),
            s => Err(self.status(what, s)),
        }
    }
}

/// The delays before the second and third attempts of a request.
const RETRY_DELAYS: [Duration; 2] = [Duration::from_millis(500), Duration::from_millis(1500)];

/// The TLS error inside a ureq error, if any.
fn tls_of(err: &ureq::Error) -> Option<&rustls::Error> {
    match err {
        ureq::Error::Rustls(e) => Some(e),
        ureq::Error::Io(e) => e.get_ref().and_then(|inner| inner.downcast_ref()),
        _ => None,
    }
}

/// Whether another attempt may succeed: the connection failed or broke
/// or timed out. A TLS refusal (a wrong pin) will not change.
fn transient(err: &ureq::Error) -> bool {
    match err {
        ureq::Error::Io(_) => tls_of(err).is_none(),
        ureq::Error::ConnectionFailed | ureq::Error::Timeout(_) => true,
        _ => false,
    }
}

/// A ureq error in words; a pin mismatch says so plainly.
fn describe(err: &ureq::Error) -> String {
    match tls_of(err) {
        Some(e) => format!("TLS: {}", tls_message(e)),
        None => err.to_string(),
    }
}

/// CBOR bytes of `value`.
fn encode_cbor(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail; an error here would be a ciborium bug,
    // and it would show as an empty body the server refuses.
    let _ = ciborium::into_writer(value, &mut out);
    out
}

/// One CBOR item that is the whole of `data`.
pub(crate) fn decode_cbor(data: &[u8]) -> Result<Value, String> {
    let mut cursor = std::io::Cursor::new(data);
    // The recursion limit bounds nesting: hostile replies cannot blow the stack.
    let value: Value = ciborium::de::from_reader_with_recursion_limit(&mut cursor, 32)
        .map_err(|e| format!("invalid CBOR: {e}"))?;
    if (cursor.position() as usize) != data.len() {
        return Err("trailing bytes after the CBOR item".into());
    }
    Ok(value)
}

fn map_get<'a>(value: &'a Value, key: &Value) -> Option<&'a Value> {
    match value {
        Value::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
        _ => None,
    }
}

fn uint(value: &Value) -> Option<u64> {
    match value {
        Value::Integer(i) => u64::try_from(*i).ok(),
        _ => None,
    }
}

/// A set of share numbers: `#6.258([uint])` (a plain array is accepted too).
fn share_set(value: &Value) -> Result<BTreeSet<u16>, String> {
    let items = match value {
        Value::Tag(258, inner) => match inner.as_ref() {
            Value::Array(items) => items,
            _ => return Err("a tagged set that is not an array".into()),
        },
        Value::Array(items) => items,
        _ => return Err("not a set of share numbers".into()),
    };
    items
        .iter()
        .map(|v| {
            uint(v)
                .and_then(|n| u16::try_from(n).ok())
                .filter(|&n| n < 256)
                .ok_or_else(|| "a share number that is not 0-255".to_string())
        })
        .collect()
}

fn parse_version(value: &Value) -> Result<Version, String> {
    let v1 = map_get(value, &Value::Bytes(V1.to_vec())).ok_or("no storage protocol v1 entry")?;
    let field = |name: &str| {
        map_get(v1, &Value::Bytes(name.as_bytes().to_vec()))
            .and_then(uint)
            .ok_or_else(|| format!("no {name}"))
    };
    let application_version = match map_get(value, &Value::Bytes(b"application-version".to_vec())) {
        Some(Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
        _ => return Err("no application-version".into()),
    };
    Ok(Version {
        maximum_immutable_share_size: field("maximum-immutable-share-size")?,
        available_space: field("available-space")?,
        application_version,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A version message with `available-space` of `space`.
    pub(crate) fn version_reply(space: u64) -> Vec<u8> {
        let field = |k: &str, v: u64| {
            (
                Value::Bytes(k.as_bytes().to_vec()),
                Value::Integer(v.into()),
            )
        };
        encode_cbor(&Value::Map(vec![
            (
                Value::Bytes(V1.to_vec()),
                Value::Map(vec![
                    field("maximum-immutable-share-size", 1 << 40),
                    field("maximum-mutable-share-size", 1 << 40),
                    field("available-space", space),
                ]),
            ),
            (
                Value::Bytes(b"application-version".to_vec()),
                Value::Bytes(b"tahoe-lafs/1.20.0".to_vec()),
            ),
        ]))
    }

    #[test]
    fn cbor_replies_are_checked() {
        // {'v1' => {...}, 'application-version' => b"tahoe-lafs/1.20.0"}
        let good = Value::Map(vec![
            (
                Value::Bytes(V1.to_vec()),
                Value::Map(vec![
                    (
                        Value::Bytes(b"maximum-immutable-share-size".to_vec()),
                        Value::Integer(1000u64.into()),
                    ),
                    (
                        Value::Bytes(b"maximum-mutable-share-size".to_vec()),
                        Value::Integer(1000u64.into()),
                    ),
                    (
                        Value::Bytes(b"available-space".to_vec()),
                        Value::Integer(5u64.into()),
                    ),
                ]),
            ),
            (
                Value::Bytes(b"application-version".to_vec()),
                Value::Bytes(b"tahoe-lafs/1.20.0".to_vec()),
            ),
        ]);
        let bytes = encode_cbor(&good);
        let v = parse_version(&decode_cbor(&bytes).unwrap()).unwrap();
        assert_eq!(v.available_space, 5);
        assert_eq!(v.application_version, "tahoe-lafs/1.20.0");

        assert!(decode_cbor(b"").unwrap_err().contains("invalid CBOR"));
        assert!(decode_cbor(b"\xff\x00garbage").is_err());
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode_cbor(&trailing).unwrap_err().contains("trailing"));
        // Deep nesting is refused, not a stack overflow.
        let deep = [vec![0x81u8; 100_000], vec![0]].concat();
        assert!(decode_cbor(&deep).is_err());
        assert!(parse_version(&Value::Integer(1u64.into())).is_err());

        let set = Value::Tag(
            258,
            Box::new(Value::Array(vec![
                Value::Integer(1u64.into()),
                Value::Integer(7u64.into()),
            ])),
        );
        assert_eq!(share_set(&set).unwrap(), BTreeSet::from([1, 7]));
        assert!(share_set(&Value::Array(vec![Value::Integer(300u64.into())])).is_err());
        assert!(share_set(&Value::Text("x".into())).is_err());
    }
}

/// A real TLS server answering canned replies: the client's handling of
/// hostile servers, end to end.
#[cfg(test)]
pub(super) mod hostile_tests {
    use std::io::{Read as _, Write as _};
    use std::net::TcpListener;
    use std::sync::Arc;

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    use super::*;
    use crate::chk::spki::spki_hash;
    use crate::storage::nurl::Server;

    /// Serves `reply` (the whole HTTP response) to every request; the
    /// server's NURL.
    pub(crate) fn serve(reply: Vec<u8>) -> String {
        serve_each(vec![Some(reply)])
    }

    /// Serves the n-th connection `replies[n]` (the last one from then on);
    /// `None` closes the connection after the request, without an answer.
    fn serve_each(replies: Vec<Option<Vec<u8>>>) -> String {
        serve_with(move |n, _, _| replies[n.min(replies.len() - 1)].clone())
    }

    /// Serves each connection (one request each: every reply says
    /// `Connection: close`) what `handler(n, request head, request body)`
    /// returns; `None` closes the connection without an answer.
    pub(crate) fn serve_with(
        handler: impl Fn(usize, &str, &[u8]) -> Option<Vec<u8>> + Send + 'static,
    ) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["x".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap().der().to_vec();
        let pin = spki_hash(&cert).unwrap();
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(
                    vec![CertificateDer::from(cert)],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
                )
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for (n, sock) in listener.incoming().enumerate() {
                let Ok(sock) = sock else { continue };
                let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, sock);
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                let head_end = loop {
                    if let Some(p) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                        break Some(p + 4);
                    }
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => break None,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                };
                let Some(head_end) = head_end else { continue };
                let head = String::from_utf8_lossy(&req[..head_end]).into_owned();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while req.len() < head_end + length {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let body = &req[head_end..req.len().min(head_end + length)];
                let Some(reply) = handler(n, &head, body) else {
                    continue;
                };
                let _ = tls.write_all(&reply);
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        });
        format!("pb://{pin}@127.0.0.1:{port}/swissnum#v=1")
    }

    pub(crate) fn reply(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
        let mut r = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    }

    fn version_error(reply: Vec<u8>) -> String {
        let server = Server::from_nurl(&serve(reply)).unwrap();
        StorageClient::new(&server)
            .unwrap()
            .version()
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_broken_connection_is_retried() {
        let ok = reply(
            "200 OK",
            "application/cbor",
            &super::tests::version_reply(9),
        );
        let nurl = serve_each(vec![None, None, Some(ok)]);
        let client = StorageClient::new(&Server::from_nurl(&nurl).unwrap()).unwrap();
        assert_eq!(client.version().unwrap().available_space, 9);
        // Three failures in a row: the error says what failed.
        let nurl = serve_each(vec![None]);
        let client = StorageClient::new(&Server::from_nurl(&nurl).unwrap()).unwrap();
        let err = client.version().unwrap_err().to_string();
        assert!(
            err.starts_with("storage server https://127.0.0.1:"),
            "{err}"
        );
        assert!(err.contains("GET version: "), "{err}");
    }

    #[test]
    fn hostile_replies_are_clear_errors() {
        let big = vec![0x40u8; 2 * 1024 * 1024];
        let cases: [(Vec<u8>, &str); 5] = [
            (
                reply("200 OK", "application/cbor", b"\xff\xfe garbage"),
                "bad reply to GET version: invalid CBOR",
            ),
            (
                reply("200 OK", "application/cbor", &big),
                "reply larger than 1048576 bytes",
            ),
            (
                reply("200 OK", "text/html", b"<html>"),
                "not application/cbor",
            ),
            (
                reply("200 OK", "application/cbor", b"\x01"),
                "no storage protocol v1 entry",
            ),
            (
                reply("500 Internal Server Error", "text/plain", b"x"),
                "HTTP 500",
            ),
        ];
        for (canned, want) in cases {
            let err = version_error(canned);
            assert!(err.contains(want), "{err} lacks {want}");
            // The swissnum of the NURL ("swissnum") never shows.
            assert!(!err.contains("swissnum"), "{err}");
        }
    }
}
