//! A tiny fake Tahoe gateway on 127.0.0.1 for replies a real grid cannot
//! produce (endless or huge listings, endless bodies, a gateway that never
//! answers), and a runner that measures a child's peak memory.
//!
//! Allowed only beside a real-grid test of the same path (docs/test-grid.md):
//! each hostile test names its real-grid twin.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

use super::Lafs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Makes the `i`-th piece of an endless or sized body.
pub(crate) type Piece = Arc<dyn Fn(u64) -> Vec<u8> + Send + Sync>;

/// How the fake answers one request.
#[derive(Clone)]
pub(crate) enum Reply {
    /// 200 with this body and its Content-Length.
    Body(Vec<u8>),
    /// 200, chunked: `head`, then `piece(0)`, `piece(1)`, … until the client
    /// goes away.
    Endless { head: Vec<u8>, piece: Piece },
    /// 200 with a Content-Length of `len`: `head`, then pieces until `len`
    /// bytes are sent (the last piece cut), unless the client goes first.
    Sized {
        len: u64,
        head: Vec<u8>,
        piece: Piece,
    },
    /// Never answers; the connection stays open until the fake is dropped.
    Stall,
    /// 404 Not Found.
    NotFound,
}

/// The node status of a gateway that sees one connected storage server.
pub(crate) fn node_status() -> Reply {
    Reply::Body(
        br#"{"servers": [{"nodeid": "v0-fake", "nickname": "fake", "connection_status": "Connected to tcp:127.0.0.1:1 via tcp"}]}"#
            .to_vec(),
    )
}

/// A running fake gateway; stops (and releases stalled connections) when
/// dropped.
pub(crate) struct FakeGateway {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Requests answered or stalled so far.
    pub requests: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl FakeGateway {
    /// Serves every request with `answer(request target)`, e.g.
    /// `answer("/uri/URI%3A...?t=json")`. Use [`node_status`] for `/?t=json`
    /// (the first contact).
    pub(crate) fn start(answer: impl Fn(&str) -> Reply + Send + Sync + 'static) -> FakeGateway {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let answer = Arc::new(answer);
        {
            let stop = Arc::clone(&stop);
            let requests = Arc::clone(&requests);
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (stop, requests, answer) = (
                                Arc::clone(&stop),
                                Arc::clone(&requests),
                                Arc::clone(&answer),
                            );
                            thread::spawn(move || {
                                serve(stream, &stop, &requests, answer.as_ref());
                            });
                        }
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
            });
        }
        FakeGateway {
            url,
            requests,
            stop,
        }
    }
}

impl Drop for FakeGateway {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Answers the requests of one connection until it closes.
fn serve(
    stream: TcpStream,
    stop: &AtomicBool,
    requests: &AtomicU64,
    answer: &(dyn Fn(&str) -> Reply + Send + Sync),
) {
    stream.set_nonblocking(false).ok();
    // Heads and bodies go out in separate writes: without this, Nagle's
    // algorithm and delayed ACKs cost 40 ms a request.
    stream.set_nodelay(true).ok();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut content_length = 0u64;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let lower = line.trim().to_ascii_lowercase();
            if lower.is_empty() {
                break;
            }
            if let Some(v) = lower.strip_prefix("content-length:") {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
        // A request body (none of the requests answered here have one).
        let _ = std::io::copy(
            &mut (&mut reader).take(content_length),
            &mut std::io::sink(),
        );
        requests.fetch_add(1, Ordering::Relaxed);
        let target = request_line.split(' ').nth(1).unwrap_or("/").to_string();
        let done = match answer(&target) {
            Reply::Body(body) => send_whole(&mut out, 200, &body),
            Reply::NotFound => send_whole(&mut out, 404, b"Not Found"),
            Reply::Stall => {
                while !stop.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(50));
                }
                false
            }
            Reply::Endless { head, piece } => send_endless(&mut out, &head, piece.as_ref()),
            Reply::Sized { len, head, piece } => send_sized(&mut out, len, &head, piece.as_ref()),
        };
        if !done {
            return;
        }
    }
}

fn send_whole(out: &mut TcpStream, status: u16, body: &[u8]) -> bool {
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    out.write_all(head.as_bytes()).is_ok() && out.write_all(body).is_ok()
}

fn send_endless(
    out: &mut TcpStream,
    head: &[u8],
    piece: &(dyn Fn(u64) -> Vec<u8> + Send + Sync),
) -> bool {
    let status =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";
    if out.write_all(status).is_err() {
        return false;
    }
    let mut chunk = head.to_vec();
    let mut i = 0u64;
    loop {
        while chunk.len() < 64 * 1024 {
            chunk.extend_from_slice(&piece(i));
            i += 1;
        }
        let frame = format!("{:x}\r\n", chunk.len());
        if out.write_all(frame.as_bytes()).is_err()
            || out.write_all(&chunk).is_err()
            || out.write_all(b"\r\n").is_err()
        {
            // The client went away: what the test wants.
            return false;
        }
        chunk.clear();
    }
}

fn send_sized(
    out: &mut TcpStream,
    len: u64,
    head: &[u8],
    piece: &(dyn Fn(u64) -> Vec<u8> + Send + Sync),
) -> bool {
    let status =
        format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len}\r\n\r\n");
    if out.write_all(status.as_bytes()).is_err() {
        return false;
    }
    let mut sent = 0u64;
    let mut chunk = head.to_vec();
    let mut i = 0u64;
    while sent < len {
        while chunk.len() < 64 * 1024 {
            chunk.extend_from_slice(&piece(i));
            i += 1;
        }
        let take = usize::try_from((len - sent).min(chunk.len() as u64)).unwrap();
        if out.write_all(&chunk[..take]).is_err() {
            return false;
        }
        sent += take as u64;
        chunk.clear();
    }
    true
}

/// A `t=json` listing that never ends: `["dirnode", {"children": {` and
/// then distinct file entries, forever.
pub(crate) fn endless_listing() -> Reply {
    Reply::Endless {
        head: listing_head(),
        piece: listing_piece(),
    }
}

/// A `t=json` listing of `len` bytes, announced by its Content-Length (it
/// is cut off mid-entry at the end: only its size matters).
pub(crate) fn sized_listing(len: u64) -> Reply {
    Reply::Sized {
        len,
        head: listing_head(),
        piece: listing_piece(),
    }
}

fn listing_head() -> Vec<u8> {
    br#"["dirnode", {"ro_uri": "URI:DIR2-CHK:x:y:1:1:1", "children": {"#.to_vec()
}

/// Entries shaped like those of a real backup (a file cap, a size, edge
/// metadata), about 300 bytes each, all names distinct.
fn listing_piece() -> Piece {
    Arc::new(|i| {
        format!(
            r#""file-{i:012}": ["filenode", {{"format": "CHK", "mutable": false, "ro_uri": "URI:CHK:aaaaaaaaaaaaaaaaaaaaaaaaaa:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb:1:1:{i}", "size": {i}, "metadata": {{"mode": "100644", "uid": "1000", "gid": "1000", "mtime_ns": "1700000000000000000"}}}}], "#
        )
        .into_bytes()
    })
}

/// A body that never ends (`x` bytes), for symlink targets and check
/// replies.
pub(crate) fn endless_bytes() -> Reply {
    Reply::Endless {
        head: Vec::new(),
        piece: Arc::new(|_| vec![b'x'; 4096]),
    }
}

/// A JSON reply that never ends: `{"summary": "` and then a string
/// without end (so a parser must keep reading, and buffer, until a limit).
pub(crate) fn endless_json_string() -> Reply {
    Reply::Endless {
        head: br#"{"summary": ""#.to_vec(),
        piece: Arc::new(|_| vec![b'x'; 4096]),
    }
}

/// What a measured run of the binary did.
#[derive(Debug)]
pub(crate) struct Measured {
    /// The exit code (-1: killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The highest `VmHWM` (peak resident memory) seen, in KiB.
    pub peak_kib: u64,
    pub elapsed: Duration,
}

/// Runs `cmd` (a [`Lafs`] run, checked like every run), sampling its peak
/// resident memory (`VmHWM` in `/proc/PID/status`) every 20 ms while it
/// runs. A run longer than `max` is killed, and the test fails saying so.
pub(crate) fn run_measured(cmd: Lafs, max: Duration) -> Measured {
    let mut running = cmd.spawn();
    let status_file = format!("/proc/{}/status", running.id());
    let started = Instant::now();
    let mut peak_kib = 0;
    loop {
        if let Some(kib) = std::fs::read_to_string(&status_file)
            .ok()
            .and_then(|text| vm_hwm_kib(&text))
        {
            peak_kib = peak_kib.max(kib);
        }
        if running.try_wait().is_some() {
            break;
        }
        if started.elapsed() > max {
            let run = running.kill();
            panic!(
                "the run did not end within {max:?} (peak {peak_kib} KiB); stderr:\n{}",
                super::redact(&run.stderr)
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
    let run = running.wait();
    Measured {
        code: run.code,
        stdout: run.stdout,
        stderr: run.stderr,
        peak_kib,
        elapsed: started.elapsed(),
    }
}

/// `VmHWM:   12345 kB` of a `/proc/PID/status` text.
fn vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
