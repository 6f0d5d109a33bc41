//! The raw download ceiling of a Tahoe gateway, for `scripts/bench`.
//!
//! ```text
//! cargo build --release --example raw_get
//! target/release/examples/raw_get [--threads N] [--out DIR] GATEWAY LIST
//! ```
//!
//! LIST is a file with one object per line: `CAP` or `CAP<TAB>PATH` (a
//! relative path). Every cap is fetched with `GET GATEWAY/uri/CAP` from N
//! threads (default 4), each with its own keep-alive HTTP/1.1 connection
//! (one `ureq::Agent` per thread, the HTTP stack lafs-backup uses), and its
//! body read to the end. With `--out DIR`, each body is written to DIR/PATH
//! (DIR/LINE-NUMBER without a path; the directories are made before the
//! clock starts; existing files are truncated), so the ceiling pays for
//! writing files as a restore does; without it the bodies are discarded.
//! Objects are handed out largest first (the size in a `URI:CHK:` cap),
//! then in list order. No listing, no metadata, no checks beyond the
//! length: this is the most a client can get out of the gateway for these
//! files, and what lafs-backup's restore is measured against.
//!
//! Prints one JSON line on stdout:
//! `{"files":…, "bytes":…, "threads":…, "seconds":…, "files_per_s":…,
//! "mib_per_s":…, "written":…}` (`seconds` counts the downloads only, from
//! the first request to the last byte). Exits 1 if any download fails or
//! has the wrong length (the object's line and path go to stderr; caps are
//! never printed).

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

mod common;

const USAGE: &str = "usage: raw_get [--threads N] [--out DIR] GATEWAY LIST\n\
    GETs every cap listed in LIST (one a line: CAP or CAP<TAB>PATH) from GATEWAY/uri over N \
    keep-alive connections (default 4), writing the bodies under DIR if given, and prints \
    files/s and MiB/s as JSON.";

/// One object to fetch.
struct Item {
    /// 1-based line in LIST, for messages (the cap is never shown).
    line: usize,
    cap: String,
    /// The size the cap promises (`URI:CHK:…:SIZE`), if it says.
    size: Option<u64>,
    /// Where to write the body, with `--out`.
    dest: Option<PathBuf>,
    /// What to call it in messages.
    shown: String,
}

fn main() -> ExitCode {
    common::main("raw_get", run)
}

fn run() -> Result<bool, String> {
    let mut out: Option<PathBuf> = None;
    let parsed = common::parse_args(USAGE, |arg, args| {
        match arg {
            "--out" => out = Some(args.next().ok_or("--out needs a directory")?.into()),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let Some((threads, [gateway, list])) = parsed else {
        return Ok(true);
    };
    let url = common::uri_url(&gateway);

    let text = fs::read_to_string(&list).map_err(|e| format!("reading {list}: {e}"))?;
    let mut items = parse_list(&text, out.as_deref())?;
    if let Some(dir) = &out {
        for item in &items {
            if let Some(parent) = item.dest.as_deref().and_then(Path::parent) {
                fs::create_dir_all(parent)
                    .map_err(|e| format!("creating {}: {e}", parent.display()))?;
            }
        }
        fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    // Largest first, then in list order: a stable order for repeated runs.
    items.sort_by(|a, b| b.size.cmp(&a.size).then(a.line.cmp(&b.line)));

    let bytes = AtomicU64::new(0);
    let (seconds, ok) = common::for_each_parallel(
        "raw_get",
        threads,
        &items,
        None,
        || vec![0u8; 256 * 1024],
        |agent, buf, item| {
            let n = get(agent, &url, item, buf).map_err(|msg| format!("{}: {msg}", item.shown))?;
            bytes.fetch_add(n, Ordering::Relaxed);
            Ok(())
        },
    );
    if ok {
        let extra = serde_json::json!({ "written": out.is_some() });
        common::print_report(items.len(), bytes.into_inner(), threads, seconds, extra);
    }
    Ok(ok)
}

/// Reads LIST. A path must be relative and must not climb out of DIR.
fn parse_list(text: &str, out: Option<&Path>) -> Result<Vec<Item>, String> {
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let (cap, path) = match line.split_once('\t') {
            Some((c, p)) => (c.trim(), Some(p)),
            None => (line.trim(), None),
        };
        if !cap.starts_with("URI:") {
            return Err(format!("LIST line {line_no}: not a capability"));
        }
        if let Some(p) = path {
            let bad = p.is_empty()
                || Path::new(p).is_absolute()
                || p.split('/').any(|c| c == ".." || c.is_empty());
            if bad {
                return Err(format!("LIST line {line_no}: bad path {p:?}"));
            }
        }
        let size = if cap.starts_with("URI:CHK:") {
            cap.rsplit(':').next().and_then(|s| s.parse().ok())
        } else {
            None
        };
        let name = path.map_or_else(|| line_no.to_string(), str::to_owned);
        items.push(Item {
            line: line_no,
            cap: cap.to_owned(),
            size,
            dest: out.map(|d| d.join(&name)),
            shown: path.map_or_else(|| format!("line {line_no}"), |p| format!("{p:?}")),
        });
    }
    Ok(items)
}

fn get(agent: &ureq::Agent, url: &str, item: &Item, buf: &mut [u8]) -> Result<u64, String> {
    let url = format!("{url}/{}", item.cap);
    let mut resp = agent.get(&url).call().map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    if status != 200 {
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        return Err(common::gateway_error(status, &body));
    }
    let mut file = match &item.dest {
        Some(p) => Some(fs::File::create(p).map_err(|e| format!("creating: {e}"))?),
        None => None,
    };
    let mut reader = resp.body_mut().as_reader();
    let mut got = 0u64;
    loop {
        let n = reader.read(buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        got += n as u64;
        if let Some(f) = file.as_mut() {
            f.write_all(&buf[..n])
                .map_err(|e| format!("writing: {e}"))?;
        }
    }
    if let Some(want) = item.size
        && want != got
    {
        return Err(format!("got {got} bytes, the cap promises {want}"));
    }
    Ok(got)
}
