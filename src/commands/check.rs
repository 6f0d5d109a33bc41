//! `check`: deep-check backups on the grid (`t=stream-deep-check`),
//! renewing leases, optionally verifying and repairing; and `check
//! --leases`: renew the lease of every object the recorded backups reach,
//! each once, from the cache's references. `docs/lifecycle.md` ("check")
//! documents the behaviour.
//!
//! Caps never reach the log or an error message: objects are named by their
//! path in the backup (the edge names, as the gateway streams them), or by
//! `#` and their short id where no path is known; a target given as a cap is
//! named by its backup's name, or by its short id. Stream lines that are not
//! check results are redacted before they are shown.

use std::io::{self, BufRead, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};
use tracing::{debug, error, info, trace, warn};

use super::list::show_name;
use crate::cache::{BackupRow, Cache, unix_now};
use crate::cli::{CheckArgs, Cli};
use crate::config::{Config, Timeouts};
use crate::escape;
use crate::exit::{Outcome, UsageError};
use crate::names::ROOT_META_NAME;
use crate::ratelimit::Limits;
use crate::selector::{BackupArg, quoted};
use crate::tahoe::{Cap, CheckOptions, CheckReport, Client, StreamItem, TahoeError};

/// Objects handed to the worker threads of `check --leases` at a time; the
/// cursor is saved (and committed) after each batch.
const LEASE_BATCH_PER_WORKER: usize = 16;

/// How often `check --leases` logs its progress at info level.
const LEASE_PROGRESS_EVERY_SECS: u64 = 30;

/// Backups named in the stale-lease warning before "and N more".
const WARN_NAMES: usize = 10;

pub(crate) fn run(cli: &Cli, args: &CheckArgs, config: &Config) -> anyhow::Result<Outcome> {
    let format = Template::parse(&args.format)
        .map_err(|e| UsageError(format!("--format {:?}: {e}", args.format)))?;
    let healthy_format = args
        .healthy_format
        .as_deref()
        .map(|t| Template::parse(t).map_err(|e| UsageError(format!("--healthy-format {t:?}: {e}"))))
        .transpose()?;
    if args.leases && !args.targets.is_empty() {
        return Err(UsageError(
            "check --leases renews the leases of every recorded backup and takes no \
             backups to check; leave out the CAP|NAME arguments"
                .into(),
        )
        .into());
    }
    if !args.leases && args.targets.is_empty() && !args.all && !args.least_recently_checked {
        return Err(UsageError(
            "nothing to check: give backups to check (root caps, backup names, or `-` to \
             read caps from stdin), or --all (every recorded backup), or -a (the one checked \
             longest ago), or --leases (renew the leases of every recorded backup's objects)"
                .into(),
        )
        .into());
    }
    let cache_path = config.source.entry_cache.path.as_deref().ok_or_else(|| {
        UsageError(
            "config key source.entry_cache.path is required for check \
             (the cache that records the backups)"
                .into(),
        )
    })?;
    if args.leases && config.operation.concurrency == 0 {
        return Err(UsageError("operation.concurrency must be at least 1".into()).into());
    }
    let (client, url) = super::gateway_client(config, None)?;
    // --max-duration: no single request may wait longer than the whole run.
    let deadline = args.max_duration.map(Deadline::new);
    let client = match args.max_duration {
        Some(limit) => {
            let clamped = clamp_timeouts(client.timeouts(), limit);
            client.with_timeouts(clamped)
        }
        None => client,
    };
    let stdin_caps = if args.targets.iter().any(|t| t == "-") {
        read_stdin_caps()?
    } else {
        Vec::new()
    };

    let mut cache = Cache::open_wait(
        cache_path,
        &config.source.entry_cache.commit_after,
        args.lock_wait,
    )?;
    let report = Reporter {
        json: cli.json,
        to_stderr: args.error_output,
        format,
        healthy_format,
    };
    let older_than = stale_threshold(config);
    if args.leases {
        check_grid(&client, url)?;
        return renew_leases(
            &client,
            &mut cache,
            config,
            &report,
            older_than,
            deadline.as_ref(),
        );
    }

    let mut targets = resolve(&cache, args, &stdin_caps)?;
    if targets.is_empty() {
        warn!(
            "the cache {} records no backups: nothing to check",
            cache.path().display()
        );
        return Ok(Outcome::Success);
    }
    if args.least_recently_checked {
        targets = vec![least_recently_checked(targets)];
    } else if deadline.is_some() {
        // A run that may stop early starts with what was checked longest
        // ago, so the next run continues with what this one did not reach.
        targets.sort_by_key(|t| t.ts_check.map_or((0, 0), |ts| (1, ts)));
    }
    check_grid(&client, url)?;
    let opts = CheckOptions {
        add_lease: !args.no_lease,
        verify: args.verify,
        repair: args.repair,
    };
    let mut outcome = Outcome::Success;
    let mut failed: Vec<String> = Vec::new();
    // Targets checked to their end (`None`: all were).
    let mut stopped_after: Option<usize> = None;
    for (done, target) in targets.iter().enumerate() {
        // The first target always starts, so every run makes progress.
        if done > 0 && deadline.as_ref().is_some_and(Deadline::passed) {
            stopped_after = Some(done);
            break;
        }
        match check_target(
            &client,
            &mut cache,
            target,
            opts,
            &report,
            deadline.as_ref(),
        )? {
            Checked::Done(result) => {
                if result.unhealthy > 0 || result.errors > 0 {
                    outcome = Outcome::Problems;
                }
            }
            Checked::Stopped(result) => {
                info!(
                    "{}: stopped after {} objects (--max-duration)",
                    target.label, result.objects
                );
                stopped_after = Some(done);
                break;
            }
            Checked::Failed(err) => {
                error!("the check of {} could not run: {err}", target.label);
                failed.push(target.label.clone());
                if matches!(err, TahoeError::Connect { .. }) {
                    break;
                }
            }
        }
    }
    cache.commit()?;
    warn_stale(&cache, &report, older_than, true)?;
    drop(cache);
    if let (Some(done), Some(deadline)) = (stopped_after, &deadline) {
        report.not_finished(
            deadline,
            &format!("{done} of {} backup(s) checked to their end", targets.len()),
            "the next run starts with the backups checked longest ago",
        )?;
        outcome = Outcome::Problems;
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "the check of {} of {} backup(s) could not run ({}); see the errors above",
            failed.len(),
            targets.len(),
            failed.join(", ")
        );
    }
    Ok(outcome)
}

// ------------------------------------------------------------------ targets

/// One tree to check: a root cap, with every recorded backup that has it.
#[derive(Debug)]
struct Target {
    cap: Cap,
    /// How reports name it: the backup's name (escaped), or `#` and the
    /// cap's short id when the cache does not know it.
    label: String,
    /// The `backups` rows with this root cap; empty for an unknown cap.
    ids: Vec<i64>,
    /// The oldest check time of those rows (`None`: one was never checked).
    ts_check: Option<i64>,
}

fn read_stdin_caps() -> anyhow::Result<Vec<Cap>> {
    let mut caps = Vec::new();
    for (n, line) in io::stdin().lock().lines().enumerate() {
        let line = line.context("reading caps from stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        // The reason never quotes the text.
        let cap =
            Cap::parse(&line).map_err(|e| UsageError(format!("line {} of stdin: {e}", n + 1)))?;
        caps.push(cap);
    }
    Ok(caps)
}

/// The trees the arguments name, each once, in the order given (`--all`:
/// oldest backup first).
fn resolve(cache: &Cache, args: &CheckArgs, stdin_caps: &[Cap]) -> anyhow::Result<Vec<Target>> {
    let rows = cache.backups()?;
    // (cap, label if named) in order.
    let mut wanted: Vec<(Cap, Option<String>)> = Vec::new();
    // `--all`, or `-a` among all backups.
    if args.all || (args.least_recently_checked && args.targets.is_empty()) {
        wanted.extend(rows.iter().map(|r| (r.root_cap.clone(), None)));
    }
    for (i, arg) in args.targets.iter().enumerate() {
        if arg == "-" {
            wanted.extend(stdin_caps.iter().map(|c| (c.clone(), None)));
        } else {
            let arg = match BackupArg::parse(arg, &format!("argument {}", i + 1))? {
                BackupArg::Cap(cap) => {
                    wanted.push((cap, None));
                    continue;
                }
                BackupArg::Name(name) => name,
            };
            let row = find_by_name(&rows, arg).ok_or_else(|| {
                UsageError(format!(
                    "no backup named {} in the cache {} (`lafs-backup list` shows \
                     the recorded backups; a cap starts with the \"URI\" prefix and a colon)",
                    quoted(arg),
                    cache.path().display()
                ))
            })?;
            wanted.push((row.root_cap.clone(), Some(show_name(&row.name))));
        }
    }
    let mut targets: Vec<Target> = Vec::new();
    for (cap, label) in wanted {
        if targets.iter().any(|t| t.cap == cap) {
            continue;
        }
        let same: Vec<&BackupRow> = rows.iter().filter(|r| r.root_cap == cap).collect();
        let label = label
            .or_else(|| same.last().map(|r| show_name(&r.name)))
            .unwrap_or_else(|| format!("#{}", cap.short_id()));
        let ts_check = if same.iter().any(|r| r.ts_check.is_none()) {
            None
        } else {
            same.iter().filter_map(|r| r.ts_check).min()
        };
        targets.push(Target {
            ids: same.iter().map(|r| r.id).collect(),
            cap,
            label,
            ts_check,
        });
    }
    Ok(targets)
}

/// The latest backup called `name`: its raw bytes, or the escaped form
/// reports show.
fn find_by_name<'a>(rows: &'a [BackupRow], name: &str) -> Option<&'a BackupRow> {
    let exact = rows.iter().rev().find(|r| r.name == name.as_bytes());
    exact.or_else(|| {
        let raw = escape::unescape(name.as_bytes()).ok()?;
        rows.iter().rev().find(|r| r.name == raw)
    })
}

/// The target checked longest ago: never checked first, then the oldest
/// check; ties go to the one given (or recorded) first.
fn least_recently_checked(targets: Vec<Target>) -> Target {
    let mut best: Option<Target> = None;
    for t in targets {
        let better = match &best {
            None => true,
            Some(b) => match (t.ts_check, b.ts_check) {
                (None, Some(_)) => true,
                (Some(x), Some(y)) => x < y,
                _ => false,
            },
        };
        if better {
            best = Some(t);
        }
    }
    best.expect("least_recently_checked is given at least one target")
}

/// The gateway must answer and see storage servers; seeing only some of
/// them is worth a warning, since every object then looks unhealthy.
fn check_grid(client: &Client, url: &str) -> anyhow::Result<()> {
    let (connected, known) = super::storage_servers(client, url, super::Contact::Retried)?;
    if connected < known {
        warn!(
            "the Tahoe gateway sees only {connected} of {known} storage servers: objects with \
             shares on the others will look unhealthy (and a repair places new shares on the \
             servers it sees)"
        );
    }
    Ok(())
}

// ------------------------------------------------------------------ check

/// What the check of one tree found.
#[derive(Debug, Default)]
struct TreeResult {
    objects: u64,
    literal: u64,
    unhealthy: u64,
    /// `ERROR:` lines, lines that are not check results.
    errors: u64,
    repaired: u64,
    leases: u64,
    /// The stream ended with its statistics line.
    complete: bool,
    /// `--max-duration` ran out before the stream ended.
    stopped: bool,
}

enum Checked {
    Done(TreeResult),
    /// `--max-duration` ran out during the check: what it found is
    /// recorded (leases), the check time is not.
    Stopped(TreeResult),
    /// The check could not run (or not to its end) for a reason other than
    /// the grid's state: the gateway, the connection.
    Failed(TahoeError),
}

/// Checks one tree: reports its unhealthy objects as they come, records
/// leases and, when all is well, the check time.
fn check_target(
    client: &Client,
    cache: &mut Cache,
    target: &Target,
    opts: CheckOptions,
    report: &Reporter,
    deadline: Option<&Deadline>,
) -> anyhow::Result<Checked> {
    if target.ids.is_empty() {
        warn!(
            "{} is not the root cap of a backup recorded in the cache {}: checking it anyway \
             (its check time is not recorded)",
            target.label,
            cache.path().display()
        );
    }
    info!(
        "checking {}{}{}{}",
        target.label,
        if opts.verify {
            ", verifying every share"
        } else {
            ""
        },
        if opts.repair { ", repairing" } else { "" },
        if opts.add_lease {
            ", renewing leases"
        } else {
            ""
        },
    );
    let started = Instant::now();
    let mut result = TreeResult::default();
    let failure = if target.cap.is_literal() {
        // An empty (or tiny) backup: everything is inside the cap.
        result.objects = 1;
        result.literal = 1;
        result.complete = true;
        None
    } else if !target.cap.is_dir() {
        check_single(client, cache, target, opts, report, &mut result)?
    } else {
        check_tree(client, cache, target, opts, report, &mut result, deadline)?
    };
    if let Some(err) = failure {
        cache.commit()?;
        return Ok(Checked::Failed(err));
    }
    let seconds = started.elapsed().as_secs_f64();
    if result.stopped {
        cache.commit()?;
        return Ok(Checked::Stopped(result));
    }
    if !result.complete {
        cache.commit()?;
        return Ok(Checked::Failed(TahoeError::Network {
            message: "the deep check ended before the gateway finished it (no statistics \
                      line)"
                .into(),
            attempts: 1,
        }));
    }
    if result.unhealthy == 0 && result.errors == 0 {
        let now = unix_now();
        for &id in &target.ids {
            cache.set_checked(id, now)?;
        }
    }
    cache.commit()?;
    report.backup_summary(target, &result, opts, seconds)?;
    Ok(Checked::Done(result))
}

/// A target that is a file cap: one `t=check`.
fn check_single(
    client: &Client,
    cache: &mut Cache,
    target: &Target,
    opts: CheckOptions,
    report: &Reporter,
    result: &mut TreeResult,
) -> anyhow::Result<Option<TahoeError>> {
    let checked = match client.check(&target.cap, opts) {
        Ok(r) => r,
        Err(err) if err.is_not_found() => not_found_report(&err),
        Err(err) => return Ok(Some(err)),
    };
    let object = Object {
        path: &[],
        kind: "file",
        cap: Some(&target.cap),
        literal: false,
        report: &checked,
    };
    record_object(cache, &target.label, &object, opts, report, result)?;
    result.complete = true;
    Ok(None)
}

/// A missing object under `repair=true`: the gateway answers 410 instead of
/// a report.
fn not_found_report(err: &TahoeError) -> CheckReport {
    failure_report(format!("Unrecoverable: {err}"), true)
}

/// The report of an object whose check failed: unhealthy, unrecoverable,
/// with `summary` saying why.
fn failure_report(summary: String, repair_attempted: bool) -> CheckReport {
    CheckReport {
        healthy: false,
        recoverable: false,
        summary,
        shares_good: None,
        shares_needed: None,
        shares_expected: None,
        repair_attempted,
        repair_successful: false,
    }
}

/// A directory target: the streaming deep check.
fn check_tree(
    client: &Client,
    cache: &mut Cache,
    target: &Target,
    opts: CheckOptions,
    report: &Reporter,
    result: &mut TreeResult,
    deadline: Option<&Deadline>,
) -> anyhow::Result<Option<TahoeError>> {
    let stream = match client.deep_check(&target.cap, opts) {
        Ok(stream) => stream,
        Err(err) if err.is_not_found() => {
            // The root itself cannot be read.
            let checked = not_found_report(&err);
            let object = Object {
                path: &[],
                kind: "directory",
                cap: Some(&target.cap),
                literal: false,
                report: &checked,
            };
            record_object(cache, &target.label, &object, opts, report, result)?;
            result.errors += 1;
            result.complete = true;
            return Ok(None);
        }
        Err(err) => return Ok(Some(err)),
    };
    for item in stream {
        let item = match item {
            Ok(item) => item,
            // A read that ran into --max-duration's limit is a stop, not
            // a failure of the gateway.
            Err(err) if err.is_timeout() && deadline.is_some_and(Deadline::passed) => {
                result.stopped = true;
                return Ok(None);
            }
            Err(err) => return Ok(Some(err)),
        };
        match item {
            StreamItem::Object(line) => {
                // The reserved entry carrying the root's own metadata is a
                // literal file, not part of the user's tree.
                if line.literal && line.path.len() == 1 && line.path[0] == ROOT_META_NAME {
                    continue;
                }
                let object = Object {
                    path: &line.path,
                    kind: &line.kind,
                    cap: line.cap.as_ref(),
                    literal: line.literal,
                    report: &line.report,
                };
                record_object(cache, &target.label, &object, opts, report, result)?;
            }
            StreamItem::Stats(_) => result.complete = true,
            StreamItem::Error(text) => {
                result.errors += 1;
                result.complete = true;
                error!(
                    "{}: the gateway stopped the deep check: {text} (a directory that cannot \
                     be read; what is below it was not checked)",
                    target.label
                );
            }
            StreamItem::Garbage(text) => {
                result.errors += 1;
                error!(
                    "{}: the gateway sent a line that is not a check result, counted as a \
                     failure: {text}",
                    target.label
                );
            }
        }
        if !result.complete && deadline.is_some_and(Deadline::passed) {
            // Dropping the stream closes the connection: the gateway stops.
            result.stopped = true;
            break;
        }
    }
    Ok(None)
}

/// One object as the stream (or a single check) reported it.
struct Object<'a> {
    path: &'a [String],
    kind: &'a str,
    cap: Option<&'a Cap>,
    literal: bool,
    report: &'a CheckReport,
}

/// Counts, reports and records (its lease) one object.
fn record_object(
    cache: &mut Cache,
    backup: &str,
    object: &Object<'_>,
    opts: CheckOptions,
    report: &Reporter,
    result: &mut TreeResult,
) -> anyhow::Result<()> {
    let r = object.report;
    result.objects += 1;
    if object.literal {
        result.literal += 1;
    }
    let path = show_path(object.path);
    if r.repair_attempted && r.repair_successful {
        result.repaired += 1;
        info!("{backup} {path}: repaired");
    }
    trace!(path = %path, "{}", r.summary);
    if !r.healthy {
        result.unhealthy += 1;
    }
    report.object(backup, object, &path)?;
    // add-lease renewed the lease on every share found; a repair placed
    // new shares with fresh leases. An unrecoverable object keeps nothing
    // worth recording.
    if let Some(cap) = object.cap
        && opts.add_lease
        && !object.literal
        && r.recoverable
    {
        cache.set_lease_renewed(cap, unix_now())?;
        result.leases += 1;
        cache.maybe_commit()?;
    }
    Ok(())
}

/// `/dir/name`: the edge names from the root, `/` for the root itself.
/// Names are shown as the grid stores them: this tool's trees store a name
/// that is not plain NFC UTF-8 free of `\` and control characters in its
/// escaped form (`\\`, `\xNN`), which already names the raw bytes exactly;
/// control characters of foreign trees are shown as `\xNN` too.
fn show_path(path: &[String]) -> String {
    if path.is_empty() {
        return "/".into();
    }
    let mut out = String::new();
    for name in path {
        out.push('/');
        for c in name.chars() {
            if c.is_control() {
                let mut buf = [0; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            } else {
                out.push(c);
            }
        }
    }
    out
}

// ------------------------------------------------------------------ leases

/// Seconds since the epoch before which a lease renewal counts as stale:
/// `lease.duration_days - lease.warn_days` ago.
fn stale_threshold(config: &Config) -> i64 {
    let days = config
        .lease
        .duration_days
        .saturating_sub(config.lease.warn_days);
    let secs = i64::try_from(days.saturating_mul(86_400)).unwrap_or(i64::MAX);
    unix_now().saturating_sub(secs)
}

/// Warns about the objects of the recorded backups whose leases this cache
/// has not renewed lately; returns how many there are. In `--json` mode a
/// `stale_leases` line is written too, when `json_line`.
fn warn_stale(
    cache: &Cache,
    report: &Reporter,
    older_than: i64,
    json_line: bool,
) -> anyhow::Result<u64> {
    let stale = cache.stale_leases(older_than)?;
    let days = unix_now().saturating_sub(older_than) / 86_400;
    if report.json && json_line {
        let names: Vec<String> = stale.backups.iter().map(|b| show_name(&b.name)).collect();
        report.summary_line(&json!({
            "type": "stale_leases",
            "objects": stale.objects,
            "never": stale.never,
            "days": days,
            "backups": names,
        }))?;
    }
    if stale.objects > 0 {
        let mut names: Vec<String> = stale
            .backups
            .iter()
            .take(WARN_NAMES)
            .map(|b| format!("{} ({})", show_name(&b.name), b.objects))
            .collect();
        if stale.backups.len() > WARN_NAMES {
            names.push(format!("and {} more", stale.backups.len() - WARN_NAMES));
        }
        warn!(
            "LEASES: {} object(s) of the recorded backups have not had their leases renewed \
             by this cache for more than {days} days{}: the grid may delete their shares when \
             their leases lapse (lease.duration_days). Backups affected (objects): {}. Run \
             `lafs-backup check --leases` to renew them",
            stale.objects,
            if stale.never > 0 {
                format!(" ({} never)", stale.never)
            } else {
                String::new()
            },
            names.join(", ")
        );
    }
    Ok(stale.objects)
}

/// The result of one object's check in `check --leases`.
struct LeaseOutcome {
    index: usize,
    result: Result<CheckReport, TahoeError>,
    at: i64,
}

/// `check --leases`: renews the lease of every object reachable from the
/// recorded backups, each once, in cap order, resuming an interrupted run.
fn renew_leases(
    client: &Client,
    cache: &mut Cache,
    config: &Config,
    report: &Reporter,
    older_than: i64,
    deadline: Option<&Deadline>,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let stale_before = cache.stale_leases(older_than)?.objects;
    let set = cache.lease_renewal_set()?;
    // An interrupted run is continued, unless it began so long ago that
    // what it renewed is due again soon: then everything is renewed now.
    let max_age = unix_now().saturating_sub(older_than) / 2;
    let cursor = cache
        .lease_cursor()?
        .filter(|c| unix_now().saturating_sub(c.started) <= max_age);
    let (first, run_started) = match cursor {
        Some(cursor) => {
            let done = set.partition_point(|c| c.as_str() <= cursor.last.as_str());
            info!(
                "continuing the lease renewal begun at {} ({done} of {} objects done then; \
                 {} now)",
                show_time(cursor.started),
                cursor.total,
                set.len()
            );
            (done, cursor.started)
        }
        None => (0, unix_now()),
    };
    info!(
        "renewing the leases of {} object(s) reachable from the recorded backups",
        set.len() - first
    );
    let limits = Limits::new(None, config.operation.rate_limit.objects.as_ref());
    let workers = usize::try_from(config.operation.concurrency)
        .unwrap_or(1)
        .clamp(1, 64);
    let batch = workers * LEASE_BATCH_PER_WORKER;
    let requests = AtomicU64::new(0);
    let (mut renewed, mut unhealthy, mut errors) = (0u64, 0u64, 0u64);
    let mut last_progress = Instant::now();
    let mut next = first;
    let mut fatal: Option<TahoeError> = None;
    let mut stopped = false;
    while next < set.len() && fatal.is_none() {
        // The first batch always runs, so every run makes progress.
        if next > first && deadline.is_some_and(Deadline::passed) {
            // The cursor was saved after the last batch: the next run
            // continues from there.
            stopped = true;
            break;
        }
        let chunk = &set[next..(next + batch).min(set.len())];
        let outcomes = check_batch(client, &limits, &requests, chunk, workers);
        // Results in cap order. The cursor only covers the objects before
        // the first failure of the gateway; leases renewed after it are
        // recorded all the same (the next run checks those objects again).
        let mut done = 0;
        for outcome in outcomes {
            let in_prefix = fatal.is_none() && outcome.index == done;
            let cap = &chunk[outcome.index];
            match outcome.result {
                Ok(r) => {
                    if r.recoverable {
                        cache.set_lease_renewed(cap, outcome.at)?;
                        renewed += 1;
                    }
                    if !r.healthy && in_prefix {
                        unhealthy += 1;
                        report.lease_object(cache, cap, &r)?;
                    }
                }
                Err(err) if err.is_transient() => {
                    if fatal.is_none() {
                        fatal = Some(err);
                    }
                    continue;
                }
                Err(err) => {
                    if !in_prefix {
                        continue;
                    }
                    errors += 1;
                    let failed = failure_report(format!("check failed: {err}"), false);
                    report.lease_object(cache, cap, &failed)?;
                }
            }
            if in_prefix {
                done += 1;
            }
        }
        if done > 0 {
            cache.set_lease_cursor(run_started, set.len() as u64, &chunk[done - 1])?;
            cache.commit()?;
        }
        next += done;
        if last_progress.elapsed().as_secs() >= LEASE_PROGRESS_EVERY_SECS {
            last_progress = Instant::now();
            info!("lease renewal: {next} of {} objects done", set.len());
        }
    }
    if fatal.is_none() && !stopped {
        cache.clear_lease_cursor()?;
    }
    cache.commit()?;
    let requests = requests.load(Ordering::Relaxed);
    let stale_after = warn_stale(cache, report, older_than, false)?;
    let seconds = started.elapsed().as_secs_f64();
    if report.json {
        report.summary_line(&json!({
            "type": "leases",
            "objects": set.len(),
            "resumed_at": first,
            "renewed": renewed,
            "unhealthy": unhealthy,
            "errors": errors,
            "requests": requests,
            "stale_before": stale_before,
            "stale_after": stale_after,
            "complete": fatal.is_none() && !stopped,
            "seconds": (seconds * 1000.0).round() / 1000.0,
        }))?;
    } else {
        eprintln!(
            "lafs-backup: check --leases: {} objects{}, {renewed} leases renewed, \
             {unhealthy} unhealthy, {errors} failed; {requests} requests; stale before {}, \
             after {}; {seconds:.1}s",
            set.len(),
            if first > 0 {
                format!(" ({first} done by the interrupted run)")
            } else {
                String::new()
            },
            stale_before,
            stale_after,
        );
    }
    if let Some(err) = fatal {
        return Err(anyhow::Error::new(err).context(format!(
            "renewing leases stopped after {next} of {} objects (the next \
             `check --leases` continues from there)",
            set.len()
        )));
    }
    if let (true, Some(deadline)) = (stopped, deadline) {
        report.not_finished(
            deadline,
            &format!("{next} of {} objects done", set.len()),
            "the next `check --leases` continues from there",
        )?;
        return Ok(Outcome::Problems);
    }
    Ok(if unhealthy > 0 || errors > 0 {
        Outcome::Problems
    } else {
        Outcome::Success
    })
}

/// The end of a `check --max-duration` run.
#[derive(Debug)]
struct Deadline {
    at: Instant,
    started: Instant,
    limit: Duration,
}

impl Deadline {
    fn new(limit: Duration) -> Deadline {
        let started = Instant::now();
        Deadline {
            // A limit too far away to add is no limit in practice.
            at: started
                .checked_add(limit)
                .unwrap_or(started + Duration::from_secs(1 << 32)),
            started,
            limit,
        }
    }

    fn passed(&self) -> bool {
        Instant::now() >= self.at
    }
}

/// The timeouts of `check --max-duration LIMIT`: no attempt of a request may
/// take longer than the whole run may (but at least a second, so that a
/// tiny limit still lets the gateway answer).
fn clamp_timeouts(timeouts: &Timeouts, limit: Duration) -> Timeouts {
    let max = limit.as_secs_f64().max(1.0);
    match timeouts {
        Timeouts::None => Timeouts::Fixed(max),
        Timeouts::Fixed(secs) => Timeouts::Fixed(secs.min(max)),
        Timeouts::PerAttempt(list) => {
            Timeouts::PerAttempt(list.iter().map(|secs| secs.min(max)).collect())
        }
    }
}

/// Checks `chunk` with `add-lease` on `workers` threads; the outcomes come
/// back sorted by index. A transient failure (the gateway is gone) stops
/// the workers from taking more.
fn check_batch(
    client: &Client,
    limits: &Limits,
    requests: &AtomicU64,
    chunk: &[Cap],
    workers: usize,
) -> Vec<LeaseOutcome> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let out = Mutex::new(Vec::with_capacity(chunk.len()));
    let opts = CheckOptions {
        add_lease: true,
        ..CheckOptions::default()
    };
    std::thread::scope(|scope| {
        for _ in 0..workers.min(chunk.len()) {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(cap) = chunk.get(index) else {
                        break;
                    };
                    limits.before_object();
                    requests.fetch_add(1, Ordering::Relaxed);
                    let result = client.check(cap, opts);
                    if let Err(err) = &result {
                        debug!("lease renewal of #{}: {err}", cap.short_id());
                        if err.is_transient() {
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                    let outcome = LeaseOutcome {
                        index,
                        result,
                        at: unix_now(),
                    };
                    out.lock().unwrap_or_else(|p| p.into_inner()).push(outcome);
                }
            });
        }
    });
    let mut outcomes = out.into_inner().unwrap_or_else(|p| p.into_inner());
    outcomes.sort_by_key(|o| o.index);
    outcomes
}

fn show_time(ts: i64) -> String {
    jiff::Timestamp::from_second(ts)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| ts.to_string())
}

// ------------------------------------------------------------------ output

/// Where and how reports go.
struct Reporter {
    json: bool,
    /// `-e`: object reports on stderr.
    to_stderr: bool,
    format: Template,
    healthy_format: Option<Template>,
}

impl Reporter {
    /// Reports one object of a tree: always when unhealthy, when healthy
    /// only with `--healthy-format`.
    fn object(&self, backup: &str, object: &Object<'_>, path: &str) -> anyhow::Result<()> {
        let r = object.report;
        let template = if r.healthy {
            match &self.healthy_format {
                Some(t) => t,
                None => return Ok(()),
            }
        } else {
            &self.format
        };
        let kind = kind_name(object.kind);
        let line = if self.json {
            let mut v = json!({
                "type": "object",
                "backup": backup,
                "path": object.path,
                "kind": kind,
                "healthy": r.healthy,
                "recoverable": r.recoverable,
                "summary": r.summary,
                "good": r.shares_good,
                "needed": r.shares_needed,
                "expected": r.shares_expected,
            });
            if r.repair_attempted {
                v["repaired"] = Value::Bool(r.repair_successful);
            }
            v.to_string()
        } else {
            template.render(&Fields {
                backup,
                path,
                kind,
                report: r,
            })
        };
        self.object_line(&line)
    }

    /// Reports an object of `check --leases` (known only by its cap): the
    /// backups that reach it stand for `{backup}`, `#` and its short id for
    /// `{path}`.
    fn lease_object(&self, cache: &Cache, cap: &Cap, r: &CheckReport) -> anyhow::Result<()> {
        let names: Vec<String> = cache
            .backups_reaching(cap)?
            .iter()
            .map(|(_, name)| show_name(name))
            .collect();
        let id = format!("#{}", cap.short_id());
        let kind = if cap.is_dir() { "directory" } else { "file" };
        let line = if self.json {
            json!({
                "type": "object",
                "backups": names,
                "object": id,
                "path": Value::Null,
                "kind": kind,
                "healthy": r.healthy,
                "recoverable": r.recoverable,
                "summary": r.summary,
                "good": r.shares_good,
                "needed": r.shares_needed,
                "expected": r.shares_expected,
            })
            .to_string()
        } else {
            self.format.render(&Fields {
                backup: &if names.is_empty() {
                    "(no recorded backup)".to_owned()
                } else {
                    names.join(", ")
                },
                path: &id,
                kind,
                report: r,
            })
        };
        self.object_line(&line)
    }

    fn object_line(&self, line: &str) -> anyhow::Result<()> {
        if self.to_stderr {
            let mut err = io::stderr().lock();
            writeln!(err, "{line}")?;
            err.flush()?;
        } else {
            let mut out = io::stdout().lock();
            writeln!(out, "{line}")?;
            out.flush()?;
        }
        Ok(())
    }

    /// A JSON summary line on stdout.
    fn summary_line(&self, value: &Value) -> anyhow::Result<()> {
        let mut out = io::stdout().lock();
        writeln!(out, "{value}")?;
        out.flush()?;
        Ok(())
    }

    /// The note of a run that `--max-duration` stopped: on stderr, and as a
    /// `not_finished` line with `--json`.
    fn not_finished(&self, deadline: &Deadline, done: &str, next: &str) -> anyhow::Result<()> {
        let limit = show_duration(deadline.limit);
        let ran = show_duration(deadline.started.elapsed());
        if self.json {
            self.summary_line(&json!({
                "type": "not_finished",
                "max_duration_seconds": deadline.limit.as_secs_f64(),
                "seconds": (deadline.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
                "done": done,
            }))?;
        }
        eprintln!(
            "lafs-backup: check not finished: --max-duration {limit} reached after {ran} \
             ({done}); what was checked is recorded, {next}"
        );
        Ok(())
    }

    fn backup_summary(
        &self,
        target: &Target,
        r: &TreeResult,
        opts: CheckOptions,
        seconds: f64,
    ) -> anyhow::Result<()> {
        if self.json {
            return self.summary_line(&json!({
                "type": "backup",
                "name": target.label,
                "known": !target.ids.is_empty(),
                "objects": r.objects,
                "literal": r.literal,
                "unhealthy": r.unhealthy,
                "errors": r.errors,
                "repaired": r.repaired,
                "leases_renewed": r.leases,
                "seconds": (seconds * 1000.0).round() / 1000.0,
            }));
        }
        let mut text = format!(
            "lafs-backup: check {}: {} objects ({} literal), {} unhealthy",
            target.label, r.objects, r.literal, r.unhealthy
        );
        if r.errors > 0 {
            text.push_str(&format!(", {} failed", r.errors));
        }
        if opts.repair {
            text.push_str(&format!(", {} repaired", r.repaired));
        }
        if opts.add_lease {
            text.push_str(&format!("; {} leases renewed", r.leases));
        }
        text.push_str(&format!("; {seconds:.1}s"));
        eprintln!("{text}");
        Ok(())
    }
}

/// `file` or `directory` (the stream's names), anything else as it came.
fn kind_name(kind: &str) -> &str {
    match kind {
        "dir" => "directory",
        other => other,
    }
}

// ------------------------------------------------------------------ templates

/// The values a template can show.
struct Fields<'a> {
    backup: &'a str,
    path: &'a str,
    kind: &'a str,
    report: &'a CheckReport,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Backup,
    Path,
    Type,
    Summary,
    Good,
    Needed,
    Expected,
}

impl Field {
    const ALL: [(&'static str, Field); 7] = [
        ("backup", Field::Backup),
        ("path", Field::Path),
        ("type", Field::Type),
        ("summary", Field::Summary),
        ("good", Field::Good),
        ("needed", Field::Needed),
        ("expected", Field::Expected),
    ];
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(Field),
}

/// A `--format` template: text with `{placeholder}`s; `{{` and `}}` are
/// literal braces.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Template(Vec<Part>);

impl Template {
    fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => {
                                return Err(
                                    "a \"{\" is not closed (write \"{{\" for a brace)".into()
                                );
                            }
                        }
                    }
                    let field = Field::ALL
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, f)| *f)
                        .ok_or_else(|| {
                            format!(
                                "unknown placeholder {{{name}}}; the placeholders are {}",
                                Field::ALL
                                    .iter()
                                    .map(|(n, _)| format!("{{{n}}}"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        })?;
                    if !lit.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Field(field));
                }
                '}' => return Err("a lone \"}\" (write \"}}\" for a brace)".into()),
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Text(lit));
        }
        Ok(Template(parts))
    }

    fn render(&self, f: &Fields<'_>) -> String {
        let count = |n: Option<u32>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field(Field::Backup) => out.push_str(f.backup),
                Part::Field(Field::Path) => out.push_str(f.path),
                Part::Field(Field::Type) => out.push_str(f.kind),
                Part::Field(Field::Summary) => out.push_str(&f.report.summary),
                Part::Field(Field::Good) => out.push_str(&count(f.report.shares_good)),
                Part::Field(Field::Needed) => out.push_str(&count(f.report.shares_needed)),
                Part::Field(Field::Expected) => out.push_str(&count(f.report.shares_expected)),
            }
        }
        out
    }
}

/// A duration for messages: `0.001 s`, `1.5 s`, `90 s`.
fn show_duration(d: Duration) -> String {
    let text = format!("{:.3}", d.as_secs_f64());
    format!("{} s", text.trim_end_matches('0').trim_end_matches('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(healthy: bool) -> CheckReport {
        CheckReport {
            healthy,
            recoverable: healthy,
            summary: "Not Healthy: 1 shares (enc 2-of-3)".into(),
            shares_good: Some(1),
            shares_needed: Some(2),
            shares_expected: None,
            repair_attempted: false,
            repair_successful: false,
        }
    }

    #[test]
    fn templates_render_and_refuse_unknown_placeholders() {
        let t =
            Template::parse("{backup} {path} ({type}): {summary} {good}/{needed}/{expected} {{x}}")
                .unwrap();
        let r = report(false);
        let line = t.render(&Fields {
            backup: "home",
            path: "/a/b",
            kind: "file",
            report: &r,
        });
        assert_eq!(
            line,
            "home /a/b (file): Not Healthy: 1 shares (enc 2-of-3) 1/2/- {x}"
        );
        for bad in ["{0[path]}", "{backup", "x }", "{cap}"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
        let err = Template::parse("{cap}").unwrap_err();
        assert!(
            err.contains("{backup}") && err.contains("{expected}"),
            "{err}"
        );
    }

    #[test]
    fn paths_are_edge_names_from_the_root() {
        assert_eq!(show_path(&[]), "/");
        assert_eq!(
            show_path(&["d".into(), "caf\\xcc\\x81".into()]),
            "/d/caf\\xcc\\x81"
        );
        assert_eq!(show_path(&["new\nline".into()]), "/new\\x0aline");
    }

    fn target(label: &str, ts: Option<i64>) -> Target {
        Target {
            cap: Cap::parse(&format!("URI:DIR2-CHK:{label}:x:1:1:10")).unwrap(),
            label: label.into(),
            ids: vec![1],
            ts_check: ts,
        }
    }

    #[test]
    fn least_recently_checked_prefers_never_then_oldest_then_first() {
        let pick = |ts: &[Option<i64>]| {
            let targets = ts
                .iter()
                .enumerate()
                .map(|(i, t)| target(&format!("t{i}"), *t))
                .collect();
            least_recently_checked(targets).label
        };
        assert_eq!(pick(&[Some(5), None, Some(1), None]), "t1");
        assert_eq!(pick(&[Some(5), Some(1), Some(1)]), "t1");
        assert_eq!(pick(&[Some(5)]), "t0");
    }
}
