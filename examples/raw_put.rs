//! The raw upload ceiling of a Tahoe gateway, for `scripts/bench`.
//!
//! ```text
//! cargo build --release --example raw_put
//! target/release/examples/raw_put [--threads N] GATEWAY DIR
//! ```
//!
//! Sends every regular file under DIR (recursively, symlinks not followed)
//! to `GATEWAY/uri` with `PUT`, from N threads (default 4), each with its
//! own keep-alive HTTP/1.1 connection (one `ureq::Agent` per thread, the
//! HTTP stack lafs-backup uses). Files are handed out largest first from a
//! shared counter, so a big file does not start last and leave the other
//! threads idle. No directories are created, no cache is kept, nothing is
//! compressed: this is the most a client can get out of the gateway for
//! these files, and what lafs-backup's first backup is measured against.
//!
//! `--chunked` sends each body as a stream of unknown length (HTTP/1.1
//! chunked transfer encoding, as lafs-backup streams files) instead of
//! with a `Content-Length`.
//!
//! Prints one JSON line on stdout:
//! `{"files":…, "bytes":…, "threads":…, "seconds":…, "files_per_s":…,
//! "mib_per_s":…, "walk_seconds":…}` (`seconds` counts the uploads only,
//! from the first request to the last answer). Exits 1 if any upload fails
//! (the gateway's last error line goes to stderr; caps are never printed).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ureq::SendBody;

const USAGE: &str = "usage: raw_put [--threads N] [--chunked] GATEWAY DIR\n\
    PUTs every regular file under DIR to GATEWAY/uri from N keep-alive connections \
    (default 4) and prints files/s and MiB/s as JSON.";

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(msg) => {
            eprintln!("raw_put: {msg}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<bool, String> {
    let mut threads = 4usize;
    let mut chunked = false;
    let mut positional = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(true);
            }
            "--chunked" => chunked = true,
            "--threads" => {
                let n = args.next().ok_or("--threads needs a number")?;
                threads = n
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("--threads: not a positive number: {n}"))?;
            }
            _ if arg.starts_with('-') => return Err(format!("unknown option {arg}\n{USAGE}")),
            _ => positional.push(arg),
        }
    }
    let [gateway, dir] = positional.try_into().map_err(|_| USAGE.to_string())?;
    let url = format!(
        "{}/uri",
        gateway.trim_end_matches('/').trim_end_matches("/uri")
    );

    let walk_start = Instant::now();
    let mut files = Vec::new();
    walk(Path::new(&dir), &mut files).map_err(|e| format!("walking {dir}: {e}"))?;
    // Largest first, then by path: a stable order for repeated runs.
    files.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let walk_seconds = walk_start.elapsed().as_secs_f64();
    let bytes: u64 = files.iter().map(|f| f.1).sum();

    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads.min(files.len().max(1)) {
            s.spawn(|| worker(&url, &files, &next, &failed, chunked));
        }
    });
    let seconds = start.elapsed().as_secs_f64();
    if failed.load(Ordering::Relaxed) {
        return Ok(false);
    }
    let report = serde_json::json!({
        "files": files.len(),
        "bytes": bytes,
        "threads": threads,
        "chunked": chunked,
        "seconds": round3(seconds),
        "files_per_s": round3(files.len() as f64 / seconds),
        "mib_per_s": round3(bytes as f64 / 1_048_576.0 / seconds),
        "walk_seconds": round3(walk_seconds),
    });
    println!("{report}");
    Ok(true)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Regular files under `dir` with their sizes; symlinks are not followed.
fn walk(dir: &Path, out: &mut Vec<(PathBuf, u64)>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&entry.path(), out)?;
        } else if kind.is_file() {
            out.push((entry.path(), entry.metadata()?.len()));
        }
    }
    Ok(())
}

/// Uploads files from the shared list until it is exhausted or another
/// thread failed. One agent per thread, so one keep-alive connection each.
fn worker(
    url: &str,
    files: &[(PathBuf, u64)],
    next: &AtomicUsize,
    failed: &AtomicBool,
    chunked: bool,
) {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .accept("text/plain")
        .timeout_global(Some(Duration::from_secs(3600)))
        .max_idle_connections(1)
        .max_idle_connections_per_host(1)
        .build();
    let agent = ureq::Agent::new_with_config(config);
    while !failed.load(Ordering::Relaxed) {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some((path, _)) = files.get(i) else {
            return;
        };
        if let Err(msg) = put(&agent, url, path, chunked) {
            eprintln!("raw_put: {}: {msg}", path.display());
            failed.store(true, Ordering::Relaxed);
        }
    }
}

fn put(agent: &ureq::Agent, url: &str, path: &Path, chunked: bool) -> Result<(), String> {
    let sent = if chunked {
        let file = fs::File::open(path).map_err(|e| e.to_string())?;
        agent.put(url).send(SendBody::from_owned_reader(file))
    } else {
        let data = fs::read(path).map_err(|e| e.to_string())?;
        agent.put(url).send(&data[..])
    };
    let mut resp = sent.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    // Reading the whole answer lets the connection be reused.
    let body = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    if status != 200 || !body.trim_start().starts_with("URI:") {
        let last = body
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(format!(
            "the gateway answered {status}: {}",
            lafs_backup::tahoe::redact(last)
        ));
    }
    Ok(())
}
