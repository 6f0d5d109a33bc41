//! `lafs_backup::Client` against the REAL local Tahoe grids that
//! `scripts/test` starts (`LAFS_TEST_GATEWAY`: 1-of-1, `LAFS_TEST_GATEWAY_3N`:
//! 2-of-3), plus a few fault-injection tests (at the end of the file) that
//! use a tiny fake HTTP server for failures a real grid cannot produce on
//! demand.
//!
//! Every test uploads data derived from its own seed: identical content
//! uploaded concurrently to one grid fails with UploadUnhappinessError.
//! Caps are never printed in assertion messages.

use crate::common;

use std::io::{self, BufRead, BufReader, Cursor, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use lafs_backup::{
    Cap, CheckOptions, Client, LIT_THRESHOLD, Retry, RetryDelay, TahoeError, Timeouts,
};
use serde_json::json;

fn retry() -> Retry {
    fixed_retry(3, 0.2)
}

/// `attempts` tries in all, `delay` seconds apart.
fn fixed_retry(attempts: u32, delay: f64) -> Retry {
    Retry {
        attempts,
        delay: RetryDelay::Fixed(delay),
    }
}

/// A `check` that adds a lease and nothing more.
fn with_lease() -> CheckOptions {
    CheckOptions {
        add_lease: true,
        ..CheckOptions::default()
    }
}

/// A `check` that adds a lease, verifies and repairs.
const CHECK_ALL: CheckOptions = CheckOptions {
    add_lease: true,
    verify: true,
    repair: true,
};

fn timeouts() -> Timeouts {
    Timeouts::PerAttempt(vec![120.0, 120.0])
}

/// A client for the fast (1-of-1) grid, with the original tool's URL form.
fn client() -> Client {
    Client::new(
        &format!("{}/uri", common::gateway_url()),
        &retry(),
        &timeouts(),
    )
    .expect("client for LAFS_TEST_GATEWAY")
}

/// A client for the 3-node (2-of-3) grid, with the bare node URL.
fn client_3n() -> Client {
    Client::new(&common::gateway_url_3n(), &retry(), &timeouts())
        .expect("client for LAFS_TEST_GATEWAY_3N")
}

fn prefix(cap: &Cap) -> &str {
    let s = cap.as_str();
    // "URI:KIND:" only: never the secret part.
    let end = s.match_indices(':').nth(1).map_or(s.len(), |(i, _)| i + 1);
    &s[..end]
}

fn reader_of(data: &[u8]) -> io::Result<Box<dyn Read + Send>> {
    Ok(Box::new(Cursor::new(data.to_vec())))
}

// ---------------------------------------------------------------- real grid

#[test]
fn upload_download_round_trip_1mib() {
    let data = common::pseudo_random_bytes(1 << 20, 0x7a_0001);
    let client = client();
    let cap = client.upload(|| reader_of(&data)).expect("upload");
    assert_eq!(prefix(&cap), "URI:CHK:");
    assert_eq!(cap.size(), Some(1 << 20));
    assert_eq!(cap.k_n(), Some((1, 1)));
    let back = client.download(&cap).expect("download");
    assert_eq!(back.len(), data.len());
    assert!(back == data, "downloaded bytes differ");
}

#[test]
fn round_trip_on_the_3n_grid_has_2_of_3_caps() {
    let data = common::pseudo_random_bytes(300_000, 0x7a_0002);
    let client = client_3n();
    let cap = client.upload_bytes(&data).expect("upload");
    assert_eq!(prefix(&cap), "URI:CHK:");
    assert_eq!(cap.k_n(), Some((2, 3)));
    assert!(client.download(&cap).expect("download") == data);
}

#[test]
fn same_bytes_give_the_same_cap() {
    let data = common::pseudo_random_bytes(200_000, 0x7a_0003);
    let client = client();
    let a = client.upload_bytes(&data).expect("first upload");
    let b = client.upload_bytes(&data).expect("second upload");
    let c = client.upload(|| reader_of(&data)).expect("streamed upload");
    assert!(a == b, "convergent uploads gave different caps");
    assert!(a == c, "streamed and in-memory uploads gave different caps");
    assert_eq!(a.short_id(), c.short_id());
}

#[test]
fn literal_threshold() {
    assert_eq!(LIT_THRESHOLD, 55);
    let client = client();
    for len in 0..=LIT_THRESHOLD as usize {
        let data = common::pseudo_random_bytes(len, 0x7a_0004 + len as u64);
        let cap = client.upload_bytes(&data).expect("upload");
        assert_eq!(prefix(&cap), "URI:LIT:", "{len} bytes");
        assert!(cap.is_literal());
        if len == 0 {
            assert!(cap == Cap::empty_literal());
        }
        if len % 11 == 0 {
            assert!(
                client.download(&cap).expect("download") == data,
                "{len} bytes"
            );
        }
    }
    let data = common::pseudo_random_bytes(56, 0x7a_0005);
    let cap = client.upload_bytes(&data).expect("upload 56");
    assert_eq!(prefix(&cap), "URI:CHK:");
    assert!(!cap.is_literal());
    assert_eq!(cap.size(), Some(56));
    assert!(client.download(&cap).expect("download 56") == data);
}

#[test]
fn mkdir_immutable_keeps_metadata() {
    let client = client();
    let big = client
        .upload_bytes(&common::pseudo_random_bytes(5000, 0x7a_0006))
        .expect("upload big");
    let small = client.upload_bytes(b"small file").expect("upload small");
    // Keys deliberately not in alphabetical order.
    let meta_big = json!({"mtime": 1700000000.5, "ctime": 1700000001, "uid": 1000, "gid": 100,
        "mode": 33188, "user": "alice", "caps": {"xattr": {"user.foo": "YmFy"}},
        "acl": ["u::rw-", "g::r--"], "zz": null, "aa": true});
    let meta_small = json!({"size": 10, "b": [1, 2.5, "x"], "a": {}});
    let body = format!(
        r#"{{"big.bin": ["filenode", {{"ro_uri": "{}", "metadata": {}}}],
            "caf\u00e9.txt": ["filenode", {{"ro_uri": "{}", "metadata": {}}}]}}"#,
        big.as_str(),
        raw_metadata_big(),
        small.as_str(),
        meta_small
    );
    let dir = client.mkdir_immutable(&body).expect("mkdir-immutable");
    assert!(dir.is_dir());
    assert!(prefix(&dir) == "URI:DIR2-CHK:" || prefix(&dir) == "URI:DIR2-LIT:");
    // Convergent: the same body gives the same dircap.
    assert!(client.mkdir_immutable(&body).expect("again") == dir);

    let info = client.info(&dir).expect("info");
    assert_eq!(info[0], "dirnode");
    assert_eq!(info[1]["mutable"], false);
    let children = info[1]["children"].as_object().expect("children");
    assert_eq!(children.len(), 2);
    assert_eq!(children["big.bin"][1]["metadata"], meta_big);
    assert_eq!(children["big.bin"][1]["ro_uri"], big.as_str());
    assert_eq!(children["big.bin"][1]["size"], 5000);
    assert_eq!(children["caf\u{e9}.txt"][1]["metadata"], meta_small);
    assert_eq!(children["caf\u{e9}.txt"][1]["ro_uri"], small.as_str());

    // serde_json sorts keys, so check the order in the gateway's raw text:
    // tahoe stores and re-serialises each edge's metadata in the order sent.
    let raw = common::http_agent()
        .get(format!(
            "{}/uri/{}?t=json",
            common::gateway_url(),
            dir.as_str()
        ))
        .header("Accept", "text/plain")
        .call()
        .expect("raw listing")
        .into_body()
        .read_to_string()
        .expect("raw listing text");
    let positions: Vec<usize> = [
        "\"mtime\"",
        "\"ctime\"",
        "\"uid\"",
        "\"gid\"",
        "\"mode\"",
        "\"zz\"",
        "\"aa\"",
    ]
    .iter()
    .map(|k| {
        raw.find(k)
            .unwrap_or_else(|| panic!("{k} missing from the listing"))
    })
    .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "metadata key order changed"
    );

    // A file cap's info: only parsed, not fetched.
    let file_info = client.info(&big).expect("file info");
    assert_eq!(file_info[0], "filenode");
    assert_eq!(file_info[1]["size"], 5000);

    // An empty directory is literal.
    let empty = client.mkdir_immutable("{}").expect("empty dir");
    assert_eq!(empty.as_str(), "URI:DIR2-LIT:");
    assert!(empty.is_literal() && empty.is_dir());
}

/// The metadata of big.bin exactly as sent (key order matters for the
/// test above; `json!` would sort it).
fn raw_metadata_big() -> &'static str {
    r#"{"mtime": 1700000000.5, "ctime": 1700000001, "uid": 1000, "gid": 100, "mode": 33188,
        "user": "alice", "caps": {"xattr": {"user.foo": "YmFy"}}, "acl": ["u::rw-", "g::r--"],
        "zz": null, "aa": true}"#
}

#[test]
fn mutable_dir_link_child_unlink() {
    let client = client();
    let root = client.mkdir_mutable().expect("mkdir");
    assert_eq!(prefix(&root), "URI:DIR2:");
    assert!(root.is_dir() && !root.is_literal());
    let file = client
        .upload_bytes(&common::pseudo_random_bytes(3000, 0x7a_0007))
        .expect("upload");

    // A name with a space, a non-ASCII letter and characters that need
    // percent-encoding.
    let name = "caf\u{e9} #1 50%?.txt";
    client.link(root.as_str(), name, &file).expect("link");
    assert!(client.child_cap(root.as_str(), name).expect("child_cap") == Some(file.clone()));
    assert!(
        client
            .child_cap(root.as_str(), "nope")
            .expect("child_cap nope")
            .is_none()
    );

    // Names are NFC-normalised by the gateway; child_cap normalises too.
    client
        .link(root.as_str(), "e\u{301}", &file)
        .expect("link NFD");
    assert!(
        client
            .child_cap(root.as_str(), "\u{e9}")
            .expect("child NFC")
            == Some(file.clone())
    );

    // A sub-path: DIRCAP/sub.
    let sub = client.mkdir_mutable().expect("mkdir sub");
    client
        .link(root.as_str(), "sub dir", &sub)
        .expect("link sub");
    let sub_path = format!("{}/sub dir", root.as_str());
    client.link(&sub_path, "inner", &file).expect("link inner");
    assert!(client.child_cap(&sub_path, "inner").expect("inner") == Some(file.clone()));
    // The mutable child is reported by its write cap.
    assert!(client.child_cap(root.as_str(), "sub dir").expect("sub") == Some(sub.clone()));

    let removed = client.unlink(root.as_str(), name).expect("unlink");
    assert!(removed == Some(file.clone()), "unlink returned another cap");
    assert!(
        client
            .child_cap(root.as_str(), name)
            .expect("after unlink")
            .is_none()
    );
    assert!(
        client
            .unlink(root.as_str(), name)
            .expect("unlink missing")
            .is_none()
    );
    assert!(client.unlink(&sub_path, "inner").expect("unlink inner") == Some(file));

    // Names the gateway would accept but no path could reach.
    for bad in ["", "a/b", ".."] {
        let err = client.link(root.as_str(), bad, &sub).unwrap_err();
        assert!(matches!(err, TahoeError::Invalid(_)), "{bad:?}: {err}");
    }
    // dir_path must start with a cap; the error does not quote it.
    let err = client.child_cap("notacap-secret/x", "y").unwrap_err();
    assert!(matches!(err, TahoeError::BadCap(_)), "{err}");
    assert!(!err.to_string().contains("secret"));
}

#[test]
fn writing_into_an_immutable_dir_is_permanent() {
    let client = client();
    let file = client
        .upload_bytes(&common::pseudo_random_bytes(100, 0x7a_0008))
        .expect("upload");
    let dir = client
        .mkdir_immutable(&format!(
            r#"{{"f": ["filenode", {{"ro_uri": "{}"}}]}}"#,
            file.as_str()
        ))
        .expect("mkdir-immutable");
    let err = client.link(dir.as_str(), "g", &file).unwrap_err();
    assert!(!err.is_transient(), "{err}");
    common::assert_no_cap("the error", &err.to_string());
    assert_eq!(err.status(), Some(500), "{err}");
    assert_eq!(err.exception(), Some("NotWriteableError"), "{err}");
}

#[test]
fn mkdir_immutable_errors_are_permanent() {
    let client = client();
    let mutable = client.mkdir_mutable().expect("mkdir");
    let err = client
        .mkdir_immutable(&format!(
            r#"{{"m": ["dirnode", {{"rw_uri": "{}"}}]}}"#,
            mutable.as_str()
        ))
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert_eq!(err.exception(), Some("MustBeDeepImmutableError"), "{err}");
    assert!(!err.is_transient());
    common::assert_no_cap("the error", &err.to_string());

    let err = client.mkdir_immutable(r#"{"a": "#).unwrap_err();
    assert_eq!(err.status(), Some(500), "{err}");
    assert_eq!(err.exception(), Some("JSONDecodeError"), "{err}");
    assert!(!err.is_transient());
}

#[test]
fn check_with_lease_on_the_3n_grid() {
    let client = client_3n();
    let cap = client
        .upload_bytes(&common::pseudo_random_bytes(70_000, 0x7a_0009))
        .expect("upload");
    let report = client.check(&cap, with_lease()).expect("check");
    assert!(report.healthy && report.recoverable, "{}", report.summary);
    assert_eq!(report.shares_good, Some(3));
    assert_eq!(report.shares_needed, Some(2));
    assert_eq!(report.shares_expected, Some(3));
    assert!(!report.repair_attempted);
    assert!(report.summary.starts_with("Healthy"), "{}", report.summary);

    let report = client.check(&cap, CHECK_ALL).expect("check+verify+repair");
    assert!(report.healthy, "{}", report.summary);
    assert_eq!(report.shares_good, Some(3));
    assert!(!report.repair_attempted);

    // A literal cap: healthy without asking the gateway.
    let lit = client.upload_bytes(b"tiny").expect("upload lit");
    let report = client.check(&lit, CHECK_ALL).expect("check lit");
    assert!(report.healthy && report.recoverable);
    assert_eq!(report.shares_good, None);
}

#[test]
fn check_on_the_fast_grid() {
    let client = client();
    let cap = client
        .upload_bytes(&common::pseudo_random_bytes(1000, 0x7a_000a))
        .expect("upload");
    let report = client.check(&cap, with_lease()).expect("check");
    assert!(report.healthy);
    assert_eq!(
        (
            report.shares_good,
            report.shares_needed,
            report.shares_expected
        ),
        (Some(1), Some(1), Some(1))
    );
}

#[test]
fn missing_objects_are_not_found() {
    // A cap with shares on the fast grid only: the 3N grid has none.
    let cap = client()
        .upload_bytes(&common::pseudo_random_bytes(2000, 0x7a_000b))
        .expect("upload");
    let other = client_3n();
    let err = other.download(&cap).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(err.status(), Some(410));
    assert_eq!(err.exception(), Some("NoSharesError"));
    assert!(!err.is_transient());
    common::assert_no_cap("the error", &err.to_string());

    let report = other.check(&cap, CheckOptions::default()).expect("check");
    assert!(!report.healthy && !report.recoverable);
    assert_eq!(report.shares_good, Some(0));

    let err = other
        .check(
            &cap,
            CheckOptions {
                repair: true,
                ..CheckOptions::default()
            },
        )
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    common::assert_no_cap("the error", &err.to_string());
}

#[test]
fn bad_caps_give_clean_errors() {
    let client = client();
    let garbage = Cap::parse("URI:CHK:garbage").expect("parses: starts with URI:");
    let err = client.download(&garbage).unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(!err.is_transient() && !err.is_not_found());
    let text = err.to_string();
    common::assert_no_cap("the text", &text);
    assert!(!text.contains("garbage"), "{text}");

    let err = client.info(&garbage).unwrap_err();
    assert!(matches!(err, TahoeError::BadReply(_)), "{err}");

    let err = client.check(&garbage, CheckOptions::default()).unwrap_err();
    assert!(!err.is_transient(), "{err}");
    common::assert_no_cap("the error", &err.to_string());
}

#[test]
fn servers_on_both_grids() {
    assert_eq!(client().servers().expect("servers"), (1, 1));
    assert_eq!(client_3n().servers().expect("servers 3n"), (3, 3));
}

#[test]
fn statistics_count_uploads() {
    let client = client();
    client
        .upload_bytes(&common::pseudo_random_bytes(4000, 0x7a_000c))
        .expect("upload");
    let stats = client.statistics().expect("statistics");
    let uploaded = stats["counters"]["uploader.files_uploaded"]
        .as_u64()
        .expect("counters.uploader.files_uploaded");
    assert!(uploaded >= 1);
    assert!(
        stats["counters"]["uploader.bytes_uploaded"]
            .as_u64()
            .is_some()
    );
    assert!(stats["stats"].is_object());
}

#[test]
fn url_forms_are_accepted() {
    let base = common::gateway_url();
    for url in [
        format!("{base}/uri"),
        format!("{base}/uri/"),
        base.clone(),
        format!("{base}/"),
    ] {
        let client = Client::new(&url, &retry(), &timeouts()).expect("client");
        assert_eq!(client.node_url(), base);
        assert_eq!(client.servers().expect("servers"), (1, 1), "{url}");
    }
    // https:// is accepted since issue 13 (tests/it/https.rs talks TLS).
    let https = base.replace("http://", "https://");
    let client = Client::new(&format!("{https}/uri"), &retry(), &timeouts()).expect("client");
    assert_eq!(client.node_url(), https);
}

#[test]
fn too_few_servers_is_unhappy_and_not_retried() {
    // Stopping a node needs a grid of this test's own (10-20 s to start).
    let grid = common::PrivateGrid::start_3n();
    grid.stop_node("storage3");
    let retry = fixed_retry(4, 30.0);
    // Were it retried, the test would sit through 30 s delays (the try
    // count itself is checked with the fake gateway below).
    let client = Client::new(grid.url(), &retry, &timeouts()).expect("client");
    let data = common::pseudo_random_bytes(5000, 0x7a_0010);
    let err = client.upload(|| reader_of(&data)).unwrap_err();
    assert!(err.is_unhappy(), "{err}");
    assert!(!err.is_transient() && !err.is_not_found());
    assert_eq!(err.status(), Some(500));
    let text = err.to_string();
    assert!(
        text.contains("UploadUnhappinessError: server selection failed"),
        "{text}"
    );
    // A literal upload needs no servers.
    assert!(client.upload_bytes(b"tiny").expect("literal").is_literal());
}

/// A reader that yields `good` bytes, then fails like a vanished file.
struct FailingReader {
    left: usize,
}

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::new(io::ErrorKind::NotFound, "file vanished"));
        }
        let n = buf.len().min(self.left);
        buf[..n].fill(0x5a);
        self.left -= n;
        Ok(n)
    }
}

#[test]
fn body_read_error_is_the_body_variant() {
    let client = client();
    let opens = AtomicUsize::new(0);
    let err = client
        .upload(|| {
            opens.fetch_add(1, Ordering::SeqCst);
            Ok(Box::new(FailingReader { left: 300_000 }))
        })
        .unwrap_err();
    match &err {
        TahoeError::Body(e) => {
            assert_eq!(e.kind(), io::ErrorKind::NotFound);
            assert_eq!(e.to_string(), "file vanished");
        }
        other => panic!("expected TahoeError::Body, got {other:?}"),
    }
    assert!(!err.is_transient());
    assert_eq!(
        opens.load(Ordering::SeqCst),
        1,
        "a body error must not be retried"
    );

    // Failing to open is the same variant.
    let err = client
        .upload(|| Err(io::Error::new(io::ErrorKind::PermissionDenied, "no access")))
        .unwrap_err();
    assert!(matches!(err, TahoeError::Body(_)), "{err:?}");

    // The client still works afterwards (the broken connection was dropped).
    let cap = client
        .upload_bytes(b"still fine after a broken upload")
        .expect("upload");
    assert!(cap.is_literal());
}

#[test]
fn connection_refused_is_a_transient_connect_error() {
    // A port that was free a moment ago: nothing listens there.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let retry = fixed_retry(3, 0.01);
    let client =
        Client::new(&format!("http://127.0.0.1:{port}/uri"), &retry, &timeouts()).expect("client");
    let err = client.upload_bytes(&[7u8; 100]).unwrap_err();
    match &err {
        TahoeError::Connect { attempts, .. } => assert_eq!(*attempts, 3),
        other => panic!("expected TahoeError::Connect, got {other:?}"),
    }
    assert!(err.is_transient());
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("3 attempts"), "{text}");
    assert!(matches!(client.servers(), Err(TahoeError::Connect { .. })));
}

// ---------------------------------------------------------------- fault injection
//
// FAULT INJECTION, not a grid: a tiny HTTP/1.1 server on 127.0.0.1 that
// answers each request as the test's script says (an error status, a hang,
// a short body). A real gateway cannot be made to fail like this on demand.

/// What the fake server does with request number `n` (0-based).
enum Action {
    /// Send this status, extra headers and body, then close.
    Reply(u16, &'static str, Vec<u8>),
    /// Send raw bytes as the whole response, then close.
    Raw(Vec<u8>),
    /// Never answer (hold the connection for 20 s).
    Hang,
}

/// Each request's head (request line and headers, lower-cased) and body.
type Seen = Vec<(String, Vec<u8>)>;

struct FakeGateway {
    url: String,
    requests: Arc<AtomicUsize>,
    seen: Arc<Mutex<Seen>>,
}

impl FakeGateway {
    fn seen(&self, n: usize) -> (String, Vec<u8>) {
        self.seen.lock().expect("lock")[n].clone()
    }
}

/// Starts a fake gateway; the accept loop runs until the test process ends.
fn fake_gateway(script: impl Fn(usize) -> Action + Send + Sync + 'static) -> FakeGateway {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake gateway");
    let url = format!("http://{}/uri", listener.local_addr().expect("addr"));
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&requests);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let script = Arc::new(script);
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let counter = Arc::clone(&counter);
            let log = Arc::clone(&log);
            let script = Arc::clone(&script);
            thread::spawn(move || {
                let _ = serve(stream, &counter, &log, &*script);
            });
        }
    });
    FakeGateway {
        url,
        requests,
        seen,
    }
}

fn serve(
    stream: TcpStream,
    counter: &AtomicUsize,
    log: &Mutex<Seen>,
    script: &dyn Fn(usize) -> Action,
) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let request = read_request(&mut reader)?;
    let n = {
        // Count and log under one lock, so `seen[n]` is request `n`.
        let mut log = log.lock().expect("lock");
        log.push(request);
        counter.fetch_add(1, Ordering::SeqCst)
    };
    match script(n) {
        Action::Reply(status, headers, body) => {
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n",
                body.len()
            );
            writer.write_all(head.as_bytes())?;
            writer.write_all(&body)?;
        }
        Action::Raw(bytes) => writer.write_all(&bytes)?,
        Action::Hang => thread::sleep(Duration::from_secs(20)),
    }
    writer.flush()
}

/// Reads one request: its head (lower-cased) and its Content-Length or
/// chunked body.
fn read_request(reader: &mut impl BufRead) -> io::Result<(String, Vec<u8>)> {
    let mut content_length = 0usize;
    let mut chunked = false;
    let mut head = String::new();
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end().to_ascii_lowercase();
        if line.is_empty() {
            break;
        }
        head.push_str(&line);
        head.push('\n');
        if let Some(v) = line.strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
        if line.starts_with("transfer-encoding:") && line.contains("chunked") {
            chunked = true;
        }
    }
    if !chunked {
        reader.take(content_length as u64).read_to_end(&mut body)?;
        return Ok((head, body));
    }
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line)?;
        let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                    return Ok((head, body));
                }
            }
        }
        let mut chunk = Vec::new();
        reader.take(size as u64 + 2).read_to_end(&mut chunk)?;
        body.extend_from_slice(chunk.get(..size).unwrap_or(&chunk));
    }
}

const FAKE_CAP: &str = "URI:CHK:aaaaaaaaaaaaaaaaaaaaaaaaaa:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb:1:1:4096";

const FAKE_DIR: &str =
    "URI:DIR2:aaaaaaaaaaaaaaaaaaaaaaaaaa:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn traceback(exception: &str) -> Vec<u8> {
    format!(
        "Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n    g()\n{exception}: it broke while handling {FAKE_CAP}\n"
    )
    .into_bytes()
}

/// A 500 whose plain-text traceback ends in `exception`.
fn reply_500(exception: &str) -> Action {
    Action::Reply(500, "Content-Type: text/plain\r\n", traceback(exception))
}

/// A successful upload's reply: [`FAKE_CAP`], as the gateway sends it.
fn reply_cap() -> Action {
    Action::Reply(
        200,
        "Content-Type: text/html\r\n",
        FAKE_CAP.as_bytes().to_vec(),
    )
}

#[test]
fn fault_500_twice_then_success_is_retried_with_delays() {
    let fake = fake_gateway(|n| match n {
        0 | 1 => reply_500("builtins.RuntimeError"),
        _ => reply_cap(),
    });
    let retry = Retry {
        attempts: 3,
        delay: RetryDelay::PerRetry(vec![0.2, 0.3]),
    };
    let client = Client::new(&fake.url, &retry, &timeouts()).expect("client");
    let data = common::pseudo_random_bytes(4096, 0x7a_000d);
    let opens = AtomicUsize::new(0);
    let started = Instant::now();
    let cap = client
        .upload(|| {
            opens.fetch_add(1, Ordering::SeqCst);
            reader_of(&data)
        })
        .expect("third try succeeds");
    assert_eq!(cap.as_str(), FAKE_CAP);
    assert_eq!(fake.requests.load(Ordering::SeqCst), 3);
    assert_eq!(
        opens.load(Ordering::SeqCst),
        3,
        "each try re-opens the body"
    );
    // Both delays were waited (a lower bound only: sleeps never end early).
    assert!(started.elapsed() >= Duration::from_millis(500));
}

#[test]
fn fault_500_until_tries_run_out() {
    let fake = fake_gateway(|_| reply_500("builtins.RuntimeError"));
    let retry = fixed_retry(2, 0.01);
    let client = Client::new(&fake.url, &retry, &timeouts()).expect("client");
    let err = client.upload_bytes(&[1u8; 100]).unwrap_err();
    assert_eq!(fake.requests.load(Ordering::SeqCst), 2);
    assert_eq!(err.status(), Some(500));
    assert_eq!(err.exception(), Some("RuntimeError"));
    assert!(err.is_transient());
    let text = err.to_string();
    common::assert_no_cap("the text", &text);
    assert!(text.contains("it broke while handling <cap #"), "{text}");
}

#[test]
fn fault_permanent_errors_are_not_retried() {
    let fake = fake_gateway(|n| {
        match n {
        0 => reply_500("allmydata.interfaces.UploadUnhappinessError"),
        1 => Action::Reply(
            404,
            "Content-Type: text/html; charset=utf-8\r\n",
            b"\n<html>\n  <head><title>404 - Error</title></head>\n  <body>\n    <h1>Error</h1>\n    <p>No such child: nope</p>\n  </body>\n</html>\n".to_vec(),
        ),
        2 => Action::Reply(200, "", b"this is not a cap".to_vec()),
        _ => Action::Reply(302, "Location: http://127.0.0.1:1/elsewhere\r\n", Vec::new()),
    }
    });
    let retry = fixed_retry(5, 0.01);
    let client = Client::new(&fake.url, &retry, &timeouts()).expect("client");

    let err = client.upload_bytes(&[2u8; 100]).unwrap_err();
    assert!(err.is_unhappy(), "{err}");
    assert!(!err.is_transient());
    assert_eq!(fake.requests.load(Ordering::SeqCst), 1);

    let dir = FAKE_DIR;
    assert!(
        client
            .unlink(dir, "nope")
            .expect("404 is no child")
            .is_none()
    );
    assert_eq!(fake.requests.load(Ordering::SeqCst), 2);

    let err = client.mkdir_mutable().unwrap_err();
    assert!(matches!(err, TahoeError::BadReply(_)), "{err}");
    assert_eq!(fake.requests.load(Ordering::SeqCst), 3);

    let err = client.mkdir_immutable("{}").unwrap_err();
    assert!(matches!(err, TahoeError::BadReply(_)), "{err}");
    assert_eq!(
        fake.requests.load(Ordering::SeqCst),
        4,
        "redirects are not followed"
    );
}

#[test]
fn fault_hang_times_out_and_the_next_attempt_reopens_the_body() {
    let fake = fake_gateway(|n| match n {
        0 => Action::Hang,
        _ => reply_cap(),
    });
    let timeouts = Timeouts::PerAttempt(vec![0.5, 30.0]);
    let client = Client::new(&fake.url, &retry(), &timeouts).expect("client");
    let data = common::pseudo_random_bytes(10_000, 0x7a_000e);
    let opens = AtomicUsize::new(0);
    let cap = client
        .upload(|| {
            opens.fetch_add(1, Ordering::SeqCst);
            reader_of(&data)
        })
        .expect("second attempt succeeds");
    assert_eq!(cap.as_str(), FAKE_CAP);
    assert_eq!(opens.load(Ordering::SeqCst), 2);
    assert_eq!(fake.requests.load(Ordering::SeqCst), 2);
}

#[test]
fn fault_hang_on_every_attempt_is_a_timeout() {
    let fake = fake_gateway(|_| Action::Hang);
    let timeouts = Timeouts::PerAttempt(vec![0.3, 0.4]);
    let client = Client::new(&fake.url, &retry(), &timeouts).expect("client");
    let opens = AtomicUsize::new(0);
    let err = client
        .upload(|| {
            opens.fetch_add(1, Ordering::SeqCst);
            reader_of(b"some data that never gets an answer")
        })
        .unwrap_err();
    match &err {
        TahoeError::Timeout { attempts, after } => {
            assert_eq!(*attempts, 2);
            assert_eq!(*after, Duration::from_millis(400));
        }
        other => panic!("expected TahoeError::Timeout, got {other:?}"),
    }
    assert!(err.is_transient());
    assert_eq!(opens.load(Ordering::SeqCst), 2);
    assert_eq!(fake.requests.load(Ordering::SeqCst), 2);
}

#[test]
fn fault_short_download_is_an_error() {
    let cap = Cap::parse(FAKE_CAP).expect("cap"); // size field: 4096
    let fake = fake_gateway(|n| match n {
        // Content-Length says 4096, 100 bytes come, then the connection closes.
        0 => {
            let mut raw =
                b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\nConnection: close\r\n\r\n".to_vec();
            raw.extend_from_slice(&[b'x'; 100]);
            Action::Raw(raw)
        }
        // A consistent reply that disagrees with the cap's size field.
        1 => Action::Reply(200, "", vec![b'y'; 100]),
        _ => Action::Reply(200, "", vec![b'z'; 4096]),
    });
    let retry = fixed_retry(1, 0.0);
    let client = Client::new(&fake.url, &retry, &timeouts()).expect("client");
    let err = client.download(&cap).unwrap_err();
    assert!(err.is_transient(), "{err}");
    let err = client.download(&cap).unwrap_err();
    assert!(
        matches!(
            err,
            TahoeError::Incomplete {
                expected: 4096,
                got: 100
            }
        ),
        "{err:?}"
    );
    assert_eq!(client.download(&cap).expect("full body"), vec![b'z'; 4096]);
}

#[test]
fn fault_requests_have_the_documented_shape() {
    let fake = fake_gateway(|n| match n {
        // link, unlink: the removed cap; check: a JSON report.
        4 => Action::Reply(
            200,
            "",
            br#"{"summary": "Healthy", "results": {"healthy": true}}"#.to_vec(),
        ),
        _ => Action::Reply(200, "", FAKE_CAP.as_bytes().to_vec()),
    });
    let client = Client::new(&fake.url, &retry(), &timeouts()).expect("client");
    let data = common::pseudo_random_bytes(5000, 0x7a_000f);
    client.upload(|| reader_of(&data)).expect("upload");
    client.upload_bytes(&data).expect("upload_bytes");
    client.mkdir_immutable("{}").expect("mkdir-immutable");
    let cap = Cap::parse(FAKE_CAP).expect("cap");
    let dir = FAKE_DIR;
    client
        .link(&format!("{dir}/sub dir/\u{e9}"), "a b%?#\u{e9}", &cap)
        .expect("link");
    assert!(client.check(&cap, CHECK_ALL).expect("check").healthy);

    let version = env!("CARGO_PKG_VERSION");
    for n in 0..5 {
        let (head, _) = fake.seen(n);
        assert!(
            head.contains(&format!("\nuser-agent: lafs-backup/{version}\n")),
            "{head}"
        );
        assert!(head.contains("\naccept: text/plain\n"), "{head}");
    }
    let (head, body) = fake.seen(0);
    assert!(head.starts_with("put /uri http/1.1\n"), "{head}");
    assert!(
        head.contains("\ntransfer-encoding: chunked\n"),
        "streamed upload: {head}"
    );
    assert!(body == data);
    let (head, body) = fake.seen(1);
    assert!(head.starts_with("put /uri http/1.1\n"), "{head}");
    assert!(head.contains("\ncontent-length: 5000\n"), "{head}");
    assert!(body == data);
    let (head, body) = fake.seen(2);
    assert!(
        head.starts_with("post /uri?t=mkdir-immutable http/1.1\n"),
        "{head}"
    );
    assert!(
        head.contains("\ncontent-type: application/json\n"),
        "{head}"
    );
    assert!(!head.contains("multipart"), "{head}");
    assert_eq!(body, b"{}");
    let (head, body) = fake.seen(3);
    let want = format!(
        "put /uri/{}/sub%20dir/%c3%a9/a%20b%25%3f%23%c3%a9?t=uri http/1.1\n",
        dir.to_lowercase()
    );
    assert!(head.starts_with(&want), "link request line");
    assert_eq!(body, FAKE_CAP.as_bytes());
    let (head, _) = fake.seen(4);
    let want = format!(
        "post /uri/{}?t=check&output=json&add-lease=true&verify=true&repair=true http/1.1\n",
        FAKE_CAP.to_lowercase()
    );
    assert!(head.starts_with(&want), "check request line");
}
