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
use std::time::Instant;

use ureq::SendBody;

mod common;

const USAGE: &str = "usage: raw_put [--threads N] [--chunked] GATEWAY DIR\n\
    PUTs every regular file under DIR to GATEWAY/uri from N keep-alive connections \
    (default 4) and prints files/s and MiB/s as JSON.";

fn main() -> ExitCode {
    common::main("raw_put", run)
}

fn run() -> Result<bool, String> {
    let mut chunked = false;
    let parsed = common::parse_args(USAGE, |arg, _| {
        match arg {
            "--chunked" => chunked = true,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let Some((threads, [gateway, dir])) = parsed else {
        return Ok(true);
    };
    let url = common::uri_url(&gateway);

    let walk_start = Instant::now();
    let mut files = Vec::new();
    walk(Path::new(&dir), &mut files).map_err(|e| format!("walking {dir}: {e}"))?;
    // Largest first, then by path: a stable order for repeated runs.
    files.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let walk_seconds = walk_start.elapsed().as_secs_f64();
    let bytes: u64 = files.iter().map(|f| f.1).sum();

    let (seconds, ok) = common::for_each_parallel(
        "raw_put",
        threads,
        &files,
        Some("text/plain"),
        || (),
        |agent, (), (path, _)| {
            put(agent, &url, path, chunked).map_err(|msg| format!("{}: {msg}", path.display()))
        },
    );
    if ok {
        let extra = serde_json::json!({
            "chunked": chunked,
            "walk_seconds": common::round3(walk_seconds),
        });
        common::print_report(files.len(), bytes, threads, seconds, extra);
    }
    Ok(ok)
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
        return Err(common::gateway_error(status, &body));
    }
    Ok(())
}
