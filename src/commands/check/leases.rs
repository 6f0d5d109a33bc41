//! `check --leases`: renew the lease of every object the recorded backups
//! reach, each once, in cap order, resuming an interrupted run; and the
//! stale-lease warning.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::{debug, info};

use super::Deadline;
use super::report::{LeasesSummary, Reporter};
use super::templates::Template;
use super::tree::failure_report;
use crate::cache::{Cache, unix_now};
use crate::commands::Context;
use crate::commands::show::LeaseWindow;
use crate::config::Config;
use crate::exit::Outcome;
use crate::ratelimit::Limits;
use crate::tahoe::{Cap, CheckOptions, CheckReport, Client, TahoeError};

/// Objects handed to the worker threads of `check --leases` at a time; the
/// cursor is saved (and committed) after each batch.
pub(super) const LEASE_BATCH_PER_WORKER: usize = 16;

/// How often `check --leases` logs its progress at info level.
pub(super) const LEASE_PROGRESS_EVERY_SECS: u64 = 30;

/// Warns about the objects of the recorded backups whose leases this cache
/// has not renewed lately; returns how many there are. In `--json` mode a
/// `stale_leases` line is written too, when `json_line`.
pub(super) fn warn_stale(
    cache: &Cache,
    report: &Reporter,
    older_than: i64,
    json_line: bool,
) -> anyhow::Result<u64> {
    let stale = cache.stale_leases(older_than)?;
    let days = unix_now().saturating_sub(older_than) / 86_400;
    report.stale_leases(&stale, days, json_line)?;
    Ok(stale.objects)
}

/// `check`'s default `--format` for an object report.
const DEFAULT_FORMAT: &str = "{backup} {path} ({type}): {summary}";

/// `lease.renew_every_days` for `backup`, after its jobs: when the last
/// complete renewal began that many days ago or more (or never was), runs
/// the `check --leases` renewal (resuming an interrupted one). `None`: not
/// configured, not due, or no cache yet. Its reports go to stderr (or are
/// `--json` lines), as `check --leases -e` would print them.
pub(crate) fn renew_if_due(
    ctx: &Context<'_>,
    lock_wait: Duration,
) -> anyhow::Result<Option<Outcome>> {
    let config = ctx.config();
    let Some(days) = config.lease.renew_every_days.filter(|d| *d > 0) else {
        return Ok(None);
    };
    let Some(path) = &config.source.entry_cache.path else {
        return Ok(None);
    };
    if !path.exists() {
        // Every job failed before the cache was made: nothing to renew.
        return Ok(None);
    }
    let mut cache = ctx.recorded_cache(lock_wait)?;
    let every = i64::try_from(days.saturating_mul(86_400)).unwrap_or(i64::MAX);
    if let Some(last) = cache.last_lease_renewal()?
        && unix_now().saturating_sub(last) < every
    {
        info!(
            "lease renewal not due (the last complete one began at {}; lease.renew_every_days: {days})",
            crate::commands::show::time(last)
        );
        return Ok(None);
    }
    info!("lease.renew_every_days ({days}): renewing the leases of the recorded backups");
    let gateway = ctx.gateway(None)?;
    super::check_grid(&gateway)?;
    let report = Reporter {
        json: ctx.json(),
        to_stderr: true,
        format: Template::parse(DEFAULT_FORMAT).map_err(|e| anyhow::anyhow!("{e}"))?,
        healthy_format: None,
    };
    let older_than = LeaseWindow::now(&config.lease).cutoff;
    renew_leases(
        &gateway.client,
        &mut cache,
        config,
        &report,
        older_than,
        None,
    )
    .map(Some)
}

/// The result of one object's check in `check --leases`.
pub(super) struct LeaseOutcome {
    pub(super) index: usize,
    pub(super) result: Result<CheckReport, TahoeError>,
    pub(super) at: i64,
}

/// `check --leases`: renews the lease of every object reachable from the
/// recorded backups, each once, in cap order, resuming an interrupted run.
pub(super) fn renew_leases(
    client: &Client,
    cache: &mut Cache,
    config: &Config,
    report: &Reporter,
    older_than: i64,
    deadline: Option<&Deadline>,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let stale_before = cache.stale_leases(older_than)?.objects;
    // The set lives in a temporary table of the cache, read a batch at a
    // time in cap order: memory does not grow with the number of objects.
    let set = cache.lease_set()?;
    let total = usize::try_from(set.len()).unwrap_or(usize::MAX);
    // An interrupted run is continued, unless it began so long ago that
    // what it renewed is due again soon: then everything is renewed now.
    let max_age = unix_now().saturating_sub(older_than) / 2;
    let cursor = cache
        .lease_cursor()?
        .filter(|c| unix_now().saturating_sub(c.started) <= max_age);
    // The last cap done: the next batch starts after it.
    let mut after: Option<String> = None;
    let (first, run_started) = match cursor {
        Some(cursor) => {
            let done = cache.lease_set_rank(&set, cursor.last.as_str())?;
            let done = usize::try_from(done).unwrap_or(usize::MAX);
            info!(
                "continuing the lease renewal begun at {} ({done} of {} objects done then; \
                 {total} now)",
                crate::commands::show::time(cursor.started),
                cursor.total,
            );
            after = Some(cursor.last);
            (done, cursor.started)
        }
        None => (0, unix_now()),
    };
    info!(
        "renewing the leases of {} object(s) reachable from the recorded backups",
        total - first
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
    while next < total && fatal.is_none() {
        // The first batch always runs, so every run makes progress.
        if next > first && deadline.is_some_and(Deadline::passed) {
            // The cursor was saved after the last batch: the next run
            // continues from there.
            stopped = true;
            break;
        }
        let chunk = cache.lease_set_page(&set, after.as_deref(), batch)?;
        if chunk.is_empty() {
            break;
        }
        let chunk = &chunk[..];
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
            cache.set_lease_cursor(run_started, total as u64, &chunk[done - 1])?;
            cache.commit()?;
            after = Some(chunk[done - 1].as_str().to_owned());
        }
        next += done;
        if last_progress.elapsed().as_secs() >= LEASE_PROGRESS_EVERY_SECS {
            last_progress = Instant::now();
            info!("lease renewal: {next} of {total} objects done");
        }
    }
    if fatal.is_none() && !stopped {
        cache.clear_lease_cursor()?;
        // `lease.renew_every_days` counts from here.
        cache.set_last_lease_renewal(run_started)?;
    }
    cache.commit()?;
    let requests = requests.load(Ordering::Relaxed);
    let stale_after = warn_stale(cache, report, older_than, false)?;
    report.leases_summary(&LeasesSummary {
        objects: total,
        resumed_at: first,
        renewed,
        unhealthy,
        errors,
        requests,
        stale_before,
        stale_after,
        complete: fatal.is_none() && !stopped,
        seconds: started.elapsed().as_secs_f64(),
    })?;
    if let Some(err) = fatal {
        return Err(anyhow::Error::new(err).context(format!(
            "renewing leases stopped after {next} of {total} objects (the next \
             `check --leases` continues from there)"
        )));
    }
    if let (true, Some(deadline)) = (stopped, deadline) {
        report.not_finished(
            deadline,
            &format!("{next} of {total} objects done"),
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

/// Checks `chunk` with `add-lease` on `workers` threads; the outcomes come
/// back sorted by index. A transient failure (the gateway is gone) stops
/// the workers from taking more.
pub(super) fn check_batch(
    client: &Client,
    limits: &Limits,
    requests: &AtomicU64,
    chunk: &[Cap],
    workers: usize,
) -> Vec<LeaseOutcome> {
    let opts = CheckOptions {
        add_lease: true,
        ..CheckOptions::default()
    };
    let results = crate::parallel::ordered_map(
        chunk,
        workers,
        |cap| {
            limits.before_object();
            requests.fetch_add(1, Ordering::Relaxed);
            let result = client.check(cap, opts);
            if let Err(err) = &result {
                debug!("lease renewal of #{}: {err}", cap.short_id());
            }
            (result, unix_now())
        },
        |(result, _)| result.as_ref().is_err_and(TahoeError::is_transient),
    );
    results
        .into_iter()
        .enumerate()
        .filter_map(|(index, r)| r.map(|(result, at)| LeaseOutcome { index, result, at }))
        .collect()
}
