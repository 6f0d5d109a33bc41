//! What the raw ceiling clients (`raw_put`, `raw_get`) share: the command
//! line, the worker threads with one keep-alive connection each, the
//! gateway's error message and the JSON report. A module, not an example:
//! cargo only builds `examples/*.rs` and `examples/*/main.rs`.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Runs `run` as the whole program: `Ok(true)` exits 0, `Ok(false)` 1 (the
/// failure was reported already), `Err` prints `PROG: MESSAGE` and exits 2.
pub(crate) fn main(prog: &str, run: fn() -> Result<bool, String>) -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(msg) => {
            eprintln!("{prog}: {msg}");
            ExitCode::from(2)
        }
    }
}

/// The command line: `--threads N` (default 4), `-h`/`--help`, the
/// example's own options (`own` is given each other option and the
/// remaining arguments, and says whether it took it) and exactly two
/// positional arguments. `None`: the usage was printed for `--help`.
pub(crate) fn parse_args(
    usage: &str,
    mut own: impl FnMut(&str, &mut dyn Iterator<Item = String>) -> Result<bool, String>,
) -> Result<Option<(usize, [String; 2])>, String> {
    let mut threads = 4usize;
    let mut positional = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("{usage}");
                return Ok(None);
            }
            "--threads" => {
                let n = args.next().ok_or("--threads needs a number")?;
                threads = n
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("--threads: not a positive number: {n}"))?;
            }
            _ if arg.starts_with('-') => {
                if !own(&arg, &mut args)? {
                    return Err(format!("unknown option {arg}\n{usage}"));
                }
            }
            _ => positional.push(arg),
        }
    }
    let positional = positional.try_into().map_err(|_| usage.to_string())?;
    Ok(Some((threads, positional)))
}

/// GATEWAY with its trailing `/` and `/uri` removed, then `/uri`.
pub(crate) fn uri_url(gateway: &str) -> String {
    format!(
        "{}/uri",
        gateway.trim_end_matches('/').trim_end_matches("/uri")
    )
}

/// Hands `items` out in order from a shared counter to up to `threads`
/// threads, each with its own agent (so one keep-alive connection each)
/// and its own `state`, until they are all done or one failed; a failure
/// is printed as `PROG: MESSAGE` and stops the others. Returns the wall
/// seconds from starting the threads to the last one's end, and whether
/// every item succeeded.
pub(crate) fn for_each_parallel<T: Sync, S>(
    prog: &str,
    threads: usize,
    items: &[T],
    accept: Option<&str>,
    state: impl Fn() -> S + Sync,
    work: impl Fn(&ureq::Agent, &mut S, &T) -> Result<(), String> + Sync,
) -> (f64, bool) {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let worker = || {
        let agent = agent(accept);
        let mut state = state();
        while !failed.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else {
                return;
            };
            if let Err(msg) = work(&agent, &mut state, item) {
                eprintln!("{prog}: {msg}");
                failed.store(true, Ordering::Relaxed);
            }
        }
    };
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads.min(items.len().max(1)) {
            s.spawn(worker);
        }
    });
    (
        start.elapsed().as_secs_f64(),
        !failed.load(Ordering::Relaxed),
    )
}

/// An agent that keeps one idle connection, follows no redirects, uses no
/// proxy and does not turn HTTP errors into `Err`.
fn agent(accept: Option<&str>) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0);
    if let Some(accept) = accept {
        config = config.accept(accept);
    }
    let config = config
        .timeout_global(Some(Duration::from_secs(3600)))
        .max_idle_connections(1)
        .max_idle_connections_per_host(1)
        .build();
    ureq::Agent::new_with_config(config)
}

/// The error for an answer other than the expected one: the status and the
/// body's last non-blank line, caps redacted.
pub(crate) fn gateway_error(status: u16, body: &str) -> String {
    let last = body
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    format!(
        "the gateway answered {status}: {}",
        lafs_backup::redact(last)
    )
}

/// Prints the JSON report line: files, bytes, threads, seconds, files/s and
/// MiB/s, plus the example's own fields.
pub(crate) fn print_report(
    files: usize,
    bytes: u64,
    threads: usize,
    seconds: f64,
    extra: serde_json::Value,
) {
    let mut report = serde_json::json!({
        "files": files,
        "bytes": bytes,
        "threads": threads,
        "seconds": round3(seconds),
        "files_per_s": round3(files as f64 / seconds),
        "mib_per_s": round3(bytes as f64 / 1_048_576.0 / seconds),
    });
    if let (Some(report), serde_json::Value::Object(extra)) = (report.as_object_mut(), extra) {
        report.extend(extra);
    }
    println!("{report}");
}

pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
