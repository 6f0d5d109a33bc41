//! What one job did ([`JobReport`]), and its record in the cache's `runs`
//! table, which `status` and the monitors read.
//!
//! A run is recorded whatever its end (success, partial, failure, a skip
//! by the schedule), so that "the last run failed" is known; a `--plan`, a
//! `--queue-only` scan or a run that never reached a backup name records
//! nothing. Recording is best effort: a cache that cannot be opened (it is
//! what failed, or another run holds its lock) costs a warning, never the
//! job's own result.

use std::time::{Duration, Instant};

use tracing::warn;

use super::summary::JobSummary;
use super::{job_name, run_one};
use crate::cache::{Cache, RunRecord};
use crate::cli::BackupArgs;
use crate::clock;
use crate::commands::Context;
use crate::config::Config;
use crate::exit::{self, Outcome};
use crate::upload;

/// What one job did: never a capability (it goes to hooks and monitors).
#[derive(Debug, Clone)]
pub(crate) struct JobReport {
    /// The backup name.
    pub(crate) name: Vec<u8>,
    pub(crate) outcome: Outcome,
    /// Why the job did not run, when it was skipped.
    pub(crate) skipped: Option<String>,
    /// Entries of the queue, then of the finished tree.
    pub(crate) entries: Option<u64>,
    /// The upload's counts, when it ran to the end.
    pub(crate) upload: Option<upload::Stats>,
    /// The cache generation of the upload.
    pub(crate) generation: Option<u64>,
    /// False for runs that are not backups (`--plan`, `--queue-only`).
    pub(crate) is_run: bool,
}

impl JobReport {
    pub(crate) fn new(name: &[u8]) -> JobReport {
        JobReport {
            name: name.to_vec(),
            outcome: Outcome::Success,
            skipped: None,
            entries: None,
            upload: None,
            generation: None,
            is_run: true,
        }
    }

    /// Marks a report as not a backup run: nothing is recorded.
    pub(crate) fn not_a_run(mut self) -> JobReport {
        self.is_run = false;
        self
    }

    /// The row of the `runs` table for this report.
    fn record(&self, job: Option<&str>, ts_start: i64, ts_end: i64) -> RunRecord {
        let upload = self.upload.as_ref();
        RunRecord {
            name: self.name.clone(),
            job: job.map(str::to_owned),
            ts_start,
            ts_end,
            exit: self.outcome.code(),
            skipped: self.skipped.clone(),
            entries: self.entries,
            bytes_uploaded: upload.map(|s| s.bytes_read),
            objects_reused: upload.map(|s| s.unchanged + s.content_reused),
        }
    }
}

/// Runs one job ([`run_one`]) and records its run.
pub(crate) fn run_job(
    ctx: Context<'_>,
    args: &BackupArgs,
    job: Option<&str>,
) -> anyhow::Result<JobReport> {
    let config = ctx.config().clone();
    // On an error, the name is the job's, else the basename rule's (which
    // fails when the source glob matched nothing: then nothing is known to
    // record under).
    let name_on_error = || match job {
        Some(name) => Some(name.as_bytes().to_vec()),
        None => job_name(&config, None)
            .ok()
            .map(|n| n.as_encoded_bytes().to_vec()),
    };
    recorded(&config, args, job, name_on_error, || {
        run_one(ctx, args, job)
    })
}

/// Runs `run` and records it in the `runs` table under the report's name
/// (an error: under `name_on_error`'s), for the job `job`.
pub(super) fn recorded(
    config: &Config,
    args: &BackupArgs,
    job: Option<&str>,
    name_on_error: impl FnOnce() -> Option<Vec<u8>>,
    run: impl FnOnce() -> anyhow::Result<JobReport>,
) -> anyhow::Result<JobReport> {
    let ts_start = clock::unix_now();
    let not_a_run = args.plan || args.queue_only.is_some() || config.operation.queue_only;
    let result = run();
    let ts_end = clock::unix_now();
    let record = match &result {
        Ok(report) if report.is_run => Some(report.record(job, ts_start, ts_end)),
        Ok(_) => None,
        Err(err) if !not_a_run => name_on_error().map(|name| RunRecord {
            name,
            job: job.map(str::to_owned),
            ts_start,
            ts_end,
            exit: exit::code_for(err),
            ..RunRecord::default()
        }),
        Err(_) => None,
    };
    if let Some(record) = record {
        store(config, args, &record);
    }
    result
}

/// Writes one row of the `runs` table (best effort: a warning on failure).
fn store(config: &Config, args: &BackupArgs, record: &RunRecord) {
    let Some(path) = &config.source.entry_cache.path else {
        return;
    };
    // A short wait: the lock is free unless another run holds it.
    let opened = Cache::open_wait(
        path,
        &config.source.entry_cache.commit_after,
        args.lock_wait.max(Duration::from_secs(5)),
    );
    if let Err(e) = opened.and_then(|mut cache| {
        cache.record_run(record)?;
        cache.close()
    }) {
        warn!("could not record this run in the entry cache: {e}");
    }
}

/// The backup name of a job: its own, else the basename rule's (`None`
/// when the source glob matches nothing).
pub(super) fn name_of(config: &Config, job: Option<&str>) -> Option<String> {
    match job {
        Some(name) => Some(name.to_owned()),
        None => job_name(config, None)
            .ok()
            .map(|n| n.to_string_lossy().into_owned()),
    }
}

/// [`run_job`], timed, with its summary for hooks and monitors.
pub(crate) fn run_job_summarized(
    ctx: Context<'_>,
    args: &BackupArgs,
    job: Option<&str>,
) -> (anyhow::Result<JobReport>, JobSummary) {
    let name = name_of(ctx.config(), job).unwrap_or_default();
    let started = Instant::now();
    let result = run_job(ctx, args, job);
    let summary = JobSummary::of(&name, job, &result, started.elapsed().as_secs_f64());
    (result, summary)
}

/// Records a job that a `before` hook skipped (`skipped`, exit 0) or
/// failed (exit 1, nothing backed up), and returns its summary. `--plan`
/// runs no hooks, so this is always a backup run.
pub(crate) fn record_hook_gate(
    config: &Config,
    args: &BackupArgs,
    job: Option<&str>,
    skipped: Option<String>,
    error: Option<String>,
) -> JobSummary {
    let name = name_of(config, job);
    let exit = if error.is_some() { exit::FATAL } else { 0 };
    if let Some(name) = &name {
        let now = clock::unix_now();
        let not_a_run = args.queue_only.is_some() || config.operation.queue_only;
        if !not_a_run {
            store(
                config,
                args,
                &RunRecord {
                    name: name.as_bytes().to_vec(),
                    job: job.map(str::to_owned),
                    ts_start: now,
                    ts_end: now,
                    exit,
                    skipped: skipped.clone(),
                    ..RunRecord::default()
                },
            );
        }
    }
    JobSummary {
        name: name.unwrap_or_default(),
        job: job.map(str::to_owned),
        exit,
        skipped,
        error,
        ..JobSummary::default()
    }
}
