//! Issue 13 item 4 (pings) against the real grid: a Healthchecks-compatible
//! endpoint started by the test sees `/start`, then the plain URL on
//! success or `/fail` (naming the failed job in the summary body); an
//! unreachable endpoint only warns.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;

use crate::common::{self, Run, lafs};

/// One request the endpoint saw.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    body: String,
}

/// A tiny HTTP server on 127.0.0.1 answering every request `200 OK`.
struct Endpoint {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Endpoint {
    fn start() -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or("").to_owned();
                let path = parts.next().unwrap_or("").to_owned();
                let mut length = 0;
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = header.split_once(':')
                        && k.eq_ignore_ascii_case("content-length")
                    {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                record.lock().unwrap().push(Seen {
                    method,
                    path,
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK",
                );
            }
        });
        Endpoint { port, seen }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/ping/secret-uuid", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

struct Setup {
    _tmp: tempfile::TempDir,
    cfg: PathBuf,
}

/// Trees `a` and `b`; `body` (YAML, `DIR` for the test directory) follows
/// the shared keys and `monitor.healthchecks_url: URL`.
fn setup(url: &str, body: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    for name in ["a", "b"] {
        std::fs::create_dir(dir.join(name)).unwrap();
        std::fs::write(dir.join(name).join("f"), "x".repeat(5000)).unwrap();
    }
    let cfg = dir.join("cfg.yaml");
    std::fs::write(
        &cfg,
        format!(
            "source:\n  queue:\n    path: '{}'\n  entry_cache:\n    path: '{}'\n\
             destination:\n  url: '{}/uri'\n{}monitor:\n  healthchecks_url: '{url}'\n{}",
            dir.join("queue").display(),
            dir.join("cache.sqlite").display(),
            common::gateway_url(),
            common::QUICK_RETRY,
            body.replace("DIR", &dir.display().to_string()),
        ),
    )
    .unwrap();
    Setup { _tmp: tmp, cfg }
}

fn run(s: &Setup) -> Run {
    lafs()
        .arg("-c")
        .arg(&s.cfg)
        .args(["--json", "backup"])
        .caps_on_stdout()
        .run()
}

#[test]
fn start_then_success_with_the_summary_as_body() {
    let endpoint = Endpoint::start();
    let s = setup(
        &endpoint.url(),
        "jobs:\n  - name: alpha\n    source: {path: 'DIR/a'}\n",
    );
    let r = run(&s);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let seen = endpoint.seen();
    let paths: Vec<_> = seen
        .iter()
        .map(|s| (s.method.as_str(), s.path.as_str()))
        .collect();
    assert_eq!(
        paths,
        [
            ("POST", "/ping/secret-uuid/start"),
            ("POST", "/ping/secret-uuid")
        ]
    );
    let body: serde_json::Value = serde_json::from_str(&seen[1].body).unwrap();
    assert_eq!(body["exit"], 0);
    assert_eq!(body["jobs"][0]["name"], "alpha");
    assert_eq!(
        body["jobs"][0]["entries"],
        r.of_type("summary")[0]["entries"]
    );
    assert!(!seen[1].body.contains("URI:"), "{}", seen[1].body);
}

#[test]
fn a_failed_job_pings_fail_naming_it() {
    let endpoint = Endpoint::start();
    let s = setup(
        &endpoint.url(),
        "jobs:\n  - name: alpha\n    source: {path: 'DIR/a'}\n  - name: broken\n    source: {path: 'DIR/missing'}\n",
    );
    let r = run(&s);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let seen = endpoint.seen();
    let paths: Vec<_> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, ["/ping/secret-uuid/start", "/ping/secret-uuid/fail"]);
    let body: serde_json::Value = serde_json::from_str(&seen[1].body).unwrap();
    assert_eq!(body["exit"], 1);
    assert_eq!(body["jobs"][1]["name"], "broken");
    assert_eq!(body["jobs"][1]["exit"], 1);
    assert!(
        body["jobs"][1]["error"]
            .as_str()
            .unwrap()
            .contains("missing"),
        "{body}"
    );
}

#[test]
fn an_unreachable_endpoint_only_warns() {
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/ping/secret-uuid");
    let s = setup(
        &url,
        "jobs:\n  - name: alpha\n    source: {path: 'DIR/a'}\n",
    );
    let r = run(&s);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.of_type("summary").len(), 1, "{}", r.stdout);
    assert!(
        r.stderr.contains(&format!(
            "the ping /start to http://127.0.0.1:{port} failed"
        )),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("secret-uuid"),
        "the URL's secret is shown: {}",
        r.stderr
    );
}
