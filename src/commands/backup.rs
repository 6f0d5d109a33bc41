//! `backup`: scan the source into the queue (or reuse the queue), then
//! upload it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use tracing::{info, warn};

use super::context::{Context, Gateway};
use super::{schedule, show};

mod btrfs;
mod command;
mod dumps;
mod hooked;
mod jobs;
mod record;
mod stream;
mod summary;
pub(crate) use btrfs::send_date;
pub(crate) use record::JobReport;

use crate::cache::Cache;
use crate::cli::BackupArgs;
use crate::config::Config;
use crate::encode::Encoder;
use crate::escape;
use crate::exit::{Outcome, UsageError};
use crate::names;
use crate::progress;
use crate::queue;
use crate::ratelimit::{self, Limits};
use crate::result;
use crate::scan::{self, PickError};
use crate::tahoe::{CheckOptions, Client};
use crate::upload::{self, Uploader};

/// Where the queue for this run comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueuePlan {
    /// Scan the source into a new queue.
    Scan,
    /// Upload an existing queue because the user asked for it.
    Reuse,
    /// Upload an existing queue whose earlier upload did not complete.
    Resume,
}

/// Decides between scanning and reusing; see `docs/queue-format.md`.
///
/// The original tool reused any queue newer than the source's top directory,
/// so new files deep in a live tree were missed for as long as the top
/// directory did not change. Here only an unfinished queue is resumed, and
/// only one bound to this source (`current`, the binding a scan would write
/// now) that is younger than `source.queue.max_resume_age`. Returns the plan
/// and, when an unfinished queue is not resumed, why.
pub(crate) fn plan(
    config: &Config,
    queue_path: &Path,
    current: &queue::Binding,
) -> (QueuePlan, Option<String>) {
    if config.operation.reuse_queue {
        return (QueuePlan::Reuse, None);
    }
    if config.operation.queue_only
        || !config.source.queue.check_mtime
        || fs_absent(queue_path)
        || queue::is_done(queue_path)
    {
        return (QueuePlan::Scan, None);
    }
    match resumable(queue_path, current, config.source.queue.max_resume_age) {
        Ok(()) => (QueuePlan::Resume, None),
        Err(why) => (QueuePlan::Scan, Some(why)),
    }
}

fn fs_absent(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_err()
}

/// Whether the unfinished queue at `queue_path` may be resumed; if not, why.
/// Never fails otherwise: a damaged queue is simply scanned again.
fn resumable(queue_path: &Path, current: &queue::Binding, max_age: u64) -> Result<(), String> {
    if max_age == 0 {
        return Err("source.queue.max_resume_age is 0".into());
    }
    let reader = queue::Reader::open(queue_path).map_err(|e| format!("it cannot be read ({e})"))?;
    let Some(bound) = reader.binding() else {
        return Err("it does not record which source it was made from (an older format)".into());
    };
    if !bound.same_source(current) {
        return Err(format!(
            "it was made from another source ({})",
            String::from_utf8_lossy(&escape::escape(&bound.source))
        ));
    }
    let age = current.written.saturating_sub(bound.written);
    if age < 0 {
        return Err("it claims to be written in the future (was the clock moved?)".into());
    }
    if age.unsigned_abs() > max_age {
        return Err(format!(
            "it is {} old, more than source.queue.max_resume_age ({max_age} s)",
            human_age(age.unsigned_abs())
        ));
    }
    Ok(())
}

fn human_age(secs: u64) -> String {
    if secs >= 3600 {
        format!("{:.1} h", secs as f64 / 3600.0)
    } else if secs >= 60 {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    }
}

/// Applies the command-line flags on top of the configuration, as the
/// original tool did (each flag sets its config key).
fn apply_flags(args: &BackupArgs, config: &mut Config) {
    if let Some(path) = &args.queue_only {
        config.operation.queue_only = true;
        if let Some(path) = path {
            config.source.queue.path = Some(path.clone());
        }
    }
    if let Some(path) = &args.reuse_queue {
        config.operation.reuse_queue = true;
        if let Some(path) = path {
            config.source.queue.path = Some(path.clone());
        }
    }
    if args.force_queue_rebuild {
        config.source.queue.check_mtime = false;
    }
    if args.disable_deduplication {
        config.operation.disable_deduplication = true;
    }
    if args.try_resume {
        config.operation.try_resume = true;
    }
    if let Some(n) = args.concurrency {
        config.operation.concurrency = n;
    }
}

/// What the upload needs, made ready (and the gateway, the grid probe and
/// the cache lock checked) before the scan, so that an unreachable gateway
/// or a busy cache fails within seconds instead of after a long scan.
struct Ready {
    client: Client,
    cache: Cache,
    encoder: Encoder,
    limits: Limits,
    source: PathBuf,
}

fn get_ready(args: &BackupArgs, ctx: &Context<'_>) -> anyhow::Result<Ready> {
    let config = ctx.config();
    // Before the gateway is asked: a config error is found first.
    ctx.backup_cache_path()?;
    let source = pick_source(config)?;
    let encoder = Encoder::new(&config.destination.encoding).map_err(UsageError)?;
    upload::ChunkedFiles::from_config(&config.chunking).map_err(UsageError)?;
    let bytes_limit = match &args.limit_upload {
        Some(text) => Some(ratelimit::parse_rate(text).map_err(UsageError)?),
        None => config.operation.rate_limit.bytes,
    };
    let limits = Limits::new(
        bytes_limit.as_ref(),
        config.operation.rate_limit.objects.as_ref(),
    );
    let gateway = ctx.gateway(None)?;
    // The gateway first: it needs no lock, and a wrong URL is the most
    // common mistake.
    gateway.storage_servers()?;
    let mut cache = ctx.backup_cache(args.lock_wait)?;
    check_grid(&gateway, &mut cache, args.allow_foreign_cache)?;
    Ok(Ready {
        client: gateway.client,
        cache,
        encoder,
        limits,
        source,
    })
}

pub(crate) fn run(ctx: Context<'_>, args: &BackupArgs) -> anyhow::Result<Outcome> {
    hooked::run(ctx, args)
}

/// One backup: of the config's `source`, named by `job` when it is one of
/// the config's `jobs` (else by the basename rule).
pub(crate) fn run_one(
    mut ctx: Context<'_>,
    args: &BackupArgs,
    job: Option<&str>,
) -> anyhow::Result<JobReport> {
    apply_flags(args, ctx.config_mut());
    let ctx = ctx;
    let config = ctx.config();
    if let Some((name, source)) = stream::source(config, args, job)? {
        return stream::run(&ctx, args, job, &name, source);
    }
    if config.operation.queue_only && config.operation.reuse_queue {
        return Err(UsageError(
            "operation.queue_only and operation.reuse_queue are both set: \
             that would neither scan nor upload"
                .into(),
        )
        .into());
    }
    let queue_path = config.source.queue.path.clone().ok_or_else(|| {
        UsageError(
            "config key source.queue.path is required for backup \
             (where the queue file is written; or give --queue-only PATH)"
                .into(),
        )
    })?;

    // The retention schedule first: a day that is not due contacts no
    // gateway and changes nothing.
    let name = job_name(config, job)?;
    let mut report = JobReport::new(name.as_encoded_bytes());
    if args.plan {
        schedule::print_plan(&ctx, &pick_source(config)?, name.as_encoded_bytes())?;
        return Ok(report.not_a_run());
    }
    let label = if config.operation.queue_only {
        Label::default()
    } else {
        match schedule::verdict(
            &ctx,
            name.as_encoded_bytes(),
            args.ignore_schedule,
            args.lock_wait,
        )? {
            schedule::Verdict::Run { label, priority } => Label { label, priority },
            schedule::Verdict::Skip(why) => return Ok(skipped(&ctx, job, report, why)),
        }
    };
    let ready = if config.operation.queue_only {
        None
    } else {
        Some(get_ready(args, &ctx)?)
    };
    let source = pick_source(config)?;
    let current = queue::Binding::of(&source)
        .with_context(|| format!("reading the source root {}", source.display()))?;
    let (mut plan, not_resumed) = plan(config, &queue_path, &current);
    if plan != QueuePlan::Scan
        && let Some(ready) = &ready
        && let Some(gone) = subtree_gone(config, &queue_path, &ready.cache)?
    {
        // The cache changed since the queue was written (a cleanup, an
        // unhealthy object, leases due a check): the reused directory must be
        // listed entry by entry again, so the whole queue is made again.
        warn!(
            "the queue {} reuses {gone} whole, which the cache no longer vouches for; \
             scanning again",
            queue_path.display()
        );
        plan = QueuePlan::Scan;
    }
    if let Some(why) = not_resumed {
        info!(
            "not resuming the unfinished queue {}: {why}; scanning again",
            queue_path.display()
        );
    }
    let mut outcome = Outcome::Success;
    let entries = match plan {
        QueuePlan::Scan => {
            let cache = ready.as_ref().map(|r| &r.cache);
            let report = scan_source(config, &queue_path, &current, cache)?;
            if report.stats.problems > 0 {
                outcome = Outcome::Partial;
            }
            report.print(ctx.json(), job);
            report.stats.entries
        }
        QueuePlan::Reuse | QueuePlan::Resume => {
            let (entries, bound) = count_entries(&queue_path)?;
            if let Some(bound) = &bound
                && !bound.same_source(&current)
            {
                // Uploading another tree's list under this source would
                // warn about every path and back up a mix of both.
                return Err(UsageError(format!(
                    "the queue {} was made from another source ({}), not from {}; \
                     scan again (without --reuse-queue)",
                    queue_path.display(),
                    String::from_utf8_lossy(&escape::escape(&bound.source)),
                    source.display()
                ))
                .into());
            }
            if plan == QueuePlan::Resume {
                let written = bound
                    .as_ref()
                    .map_or_else(|| "an unknown time".to_owned(), |b| show::time(b.written));
                warn!(
                    "resuming the queue {} written at {written}, {entries} entries left \
                     (its upload did not complete; use -f to scan again)",
                    queue_path.display()
                );
            }
            entries
        }
    };
    info!("queue {} holds {entries} entries", queue_path.display());
    report.entries = Some(entries);

    if config.operation.queue_only {
        report.outcome = outcome;
        return Ok(report.not_a_run());
    }
    let Some(ready) = ready else {
        report.outcome = outcome;
        return Ok(report.not_a_run());
    };
    let uploaded = upload_queue(&ctx, args, &queue_path, ready, label, job)?;
    report.outcome = outcome.max(uploaded.outcome);
    report.entries = Some(uploaded.stats.entries);
    report.generation = Some(uploaded.generation);
    report.upload = Some(uploaded.stats);
    // The policy runs only after a complete backup is recorded: a failed,
    // interrupted or partial run (exit 3) forgets nothing.
    if report.outcome == Outcome::Success {
        forget_after_backup(&ctx, args, name.as_encoded_bytes())?;
    }
    Ok(report)
}

/// What an upload did.
struct Uploaded {
    outcome: Outcome,
    stats: upload::Stats,
    generation: u64,
}

/// The backup name: the job's, else the basename of the source.
fn job_name(config: &Config, job: Option<&str>) -> anyhow::Result<std::ffi::OsString> {
    Ok(match job {
        Some(name) => name.into(),
        None => scan::backup_name(&pick_source(config)?),
    })
}

/// Adds `"job": NAME` to a `--json` line of a job's run.
fn tag(mut line: serde_json::Value, job: Option<&str>) -> serde_json::Value {
    if let (Some(job), Some(map)) = (job, line.as_object_mut()) {
        map.insert("job".into(), job.into());
    }
    line
}

/// A run the schedule skips: says why (a `skipped` line with `--json`).
fn skipped(ctx: &Context<'_>, job: Option<&str>, mut report: JobReport, why: String) -> JobReport {
    if ctx.json() {
        let line = serde_json::json!({"type": "skipped", "reason": why});
        println!("{}", tag(line, job));
    } else {
        eprintln!("lafs-backup: {why} (--ignore-schedule backs up anyway)");
    }
    report.skipped = Some(why);
    report
}

/// The retention label (and tiers' priority) a new backup gets.
#[derive(Debug, Default)]
struct Label {
    label: Option<String>,
    priority: Option<i64>,
}

/// `retention.forget_after_backup`: the policy, applied to this backup's
/// name right after it was recorded (so a policy of one slot is safe).
fn forget_after_backup(ctx: &Context<'_>, args: &BackupArgs, name: &[u8]) -> anyhow::Result<()> {
    let Some(retention) = ctx.config().retention.as_ref() else {
        return Ok(());
    };
    if !retention.forget_after_backup {
        return Ok(());
    }
    let Some(policy) = retention.policy.as_ref() else {
        return Ok(());
    };
    if crate::retention::is_empty(policy) {
        warn!(
            "retention.forget_after_backup is set but the policy keeps nothing:              nothing is forgotten (see docs/retention.md)"
        );
        return Ok(());
    }
    let cache = ctx.recorded_cache(args.lock_wait)?;
    let names = std::collections::BTreeSet::from([name.to_vec()]);
    super::forget::apply(
        ctx,
        cache,
        &super::forget::Policies::single(policy.clone()),
        Some(&names),
        false,
    )
        .context("applying the retention policy after the backup (retention.forget_after_backup); the backup itself is recorded")?;
    Ok(())
}

/// Resolves `source.path` the same way the scan does: the queue's paths are
/// relative to it.
fn pick_source(config: &Config) -> anyhow::Result<PathBuf> {
    let pattern = config.source.path.as_deref().ok_or_else(|| {
        UsageError("config key source.path is required for backup (the tree to back up)".into())
    })?;
    scan::pick_source(pattern).map_err(|e| match e {
        PickError::BadPattern { .. } => anyhow::Error::new(UsageError(e.to_string())),
        other => anyhow::Error::new(other),
    })
}

/// Makes sure the cache's caps are worth something on this grid: a new cache
/// gets a probe object; an existing one must find its probe recoverable.
///
/// In native mode (`destination.storage: native`) the storage servers are
/// probed too, after the gateway (which is still needed: the result
/// directory and the catalog are mutable, and it is the fallback): each is
/// asked its version, and fewer answering than `shares.happy` sends the
/// run's uploads to the gateway with a warning, or fails the run (exit 1)
/// when `destination.native.required`. The probe object then goes the way
/// the run's objects go.
fn check_grid(gateway: &Gateway<'_>, cache: &mut Cache, allow_foreign: bool) -> anyhow::Result<()> {
    let (connected, known) = gateway.storage_servers()?;
    let client = &gateway.client;
    if let Some(native) = client.native() {
        native.probe_servers()?;
    }
    match cache.probe()? {
        None => {
            let cap = client
                .upload_bytes(&upload::random_probe())
                .context("uploading the grid probe for a new cache")?;
            let (k, n) = cap.k_n().unwrap_or((0, 0));
            cache.set_probe(&cap, k, n)?;
            cache.commit()?;
        }
        Some(probe) => {
            let report = client
                .check(&probe.cap, CheckOptions::default())
                .context("checking the cache's grid probe")?;
            if !report.recoverable {
                let reason = format!(
                    "the entry cache's probe object is not recoverable on this grid \
                     ({}; the gateway sees {connected} of {known} storage servers): \
                     the cache was probably made against another grid, whose caps \
                     would point at shares this grid lacks, or the servers holding \
                     the probe are down",
                    report.summary
                );
                if !allow_foreign {
                    return Err(UsageError(format!(
                        "{reason}. Refusing to deduplicate through it; use another \
                         source.entry_cache.path, or --allow-foreign-cache to use it anyway"
                    ))
                    .into());
                }
                tracing::warn!("{reason}; using it anyway (--allow-foreign-cache)");
            }
        }
    }
    Ok(())
}

fn upload_queue(
    ctx: &Context<'_>,
    args: &BackupArgs,
    queue_path: &Path,
    ready: Ready,
    label: Label,
    job: Option<&str>,
) -> anyhow::Result<Uploaded> {
    let config = ctx.config();
    let Ready {
        client,
        mut cache,
        encoder,
        limits,
        source,
    } = ready;
    let generation = cache.begin_run(config.operation.try_resume)?;
    let name = job_name(config, job)?;
    info!(
        "uploading {} (generation {generation}) from {}",
        String::from_utf8_lossy(name.as_encoded_bytes()),
        queue_path.display()
    );
    let options = upload::Options {
        dedup: !config.operation.disable_deduplication,
        reuse_check_secs: reuse_check_secs(config),
        concurrency: usize::try_from(config.operation.concurrency).unwrap_or(usize::MAX),
        subtrees: subtree_fingerprint(config),
    };
    let progress = Arc::new(ctx.progress(args.json_progress));
    let mut uploader = Uploader::new(
        &client,
        &mut cache,
        &encoder,
        limits,
        Arc::clone(&progress),
        &source,
        options,
    );
    if let Some(files) = upload::ChunkedFiles::from_config(&config.chunking).map_err(UsageError)? {
        uploader = uploader.with_chunked_files(files);
    }
    if progress.mode() != progress::Mode::Off {
        let (objects, bytes) = uploader
            .estimate(queue_path)
            .with_context(|| format!("reading the queue {}", queue_path.display()))?;
        progress.set_total(objects, bytes);
    }
    let finished = uploader.run(queue_path);
    progress.finish();
    let finished =
        finished.with_context(|| format!("uploading the queue {}", queue_path.display()))?;
    let stats = finished.stats;
    let id = cache.finish_backup(
        name.as_encoded_bytes(),
        &finished.root,
        stats.entries,
        stats.bytes_total,
    )?;
    if label.label.is_some() {
        cache.set_label(id, label.label.as_deref(), label.priority)?;
        cache.commit()?;
    }
    drop(cache);

    // The result targets, then the recovery catalog (docs/recovery.md: a
    // failure there only warns, exit 4).
    let catalog = deliver(
        ctx,
        &client,
        id,
        name.as_encoded_bytes(),
        source.as_os_str().as_encoded_bytes(),
        &finished.root,
    )?;
    queue::mark_done(queue_path)?;

    let name_text = String::from_utf8_lossy(name.as_encoded_bytes()).into_owned();
    let label_text = label.label;
    if ctx.json() {
        let line = serde_json::json!({
            "type": "summary",
            "name": name_text,
            "generation": generation,
            "label": label_text,
            "root_cap": finished.root.as_str(),
            "entries": stats.entries,
            "files_uploaded": stats.files_uploaded,
            "dirs_created": stats.dirs_created,
            "unchanged": stats.unchanged,
            "content_reused": stats.content_reused,
            "skipped": stats.skipped,
            "bytes_read": stats.bytes_read,
            "bytes_total": stats.bytes_total,
            "seconds": show::json_seconds(finished.seconds),
        });
        println!("{}", tag(line, job));
    } else {
        eprintln!(
            "lafs-backup: backup {name_text} (generation {generation}): {} entries, \
             {} uploaded ({} files, {} dirs), {} unchanged, {} found by content, {} skipped; \
             read {}; {:.1}s",
            stats.entries,
            stats.files_uploaded + stats.dirs_created,
            stats.files_uploaded,
            stats.dirs_created,
            stats.unchanged,
            stats.content_reused,
            stats.skipped,
            progress::human_bytes(stats.bytes_read),
            finished.seconds,
        );
    }
    let outcome = if catalog != Outcome::Success {
        catalog
    } else if stats.skipped > 0 {
        Outcome::Partial
    } else {
        Outcome::Success
    };
    Ok(Uploaded {
        outcome,
        stats,
        generation,
    })
}

/// Sends a recorded backup's root cap where `destination.result` says:
/// stdout, the result file (with `source` as its source column), the
/// result directory (linked as the backup `name`).
fn deliver(
    ctx: &Context<'_>,
    client: &Client,
    id: i64,
    name: &[u8],
    source: &[u8],
    root: &crate::tahoe::Cap,
) -> anyhow::Result<Outcome> {
    let results = &ctx.config().destination.result;
    if results.print_to_stdout && !ctx.json() {
        println!("{}", root.as_str());
    }
    if let Some(file) = &results.append_to_file {
        result::append_to_file(file, source, root)
            .with_context(|| format!("appending the result to {}", file.display()))?;
    }
    if let Some(dir) = &results.append_to_lafs_dir {
        let link = names::edge_name(name, false).name;
        client
            .link(dir.trim_matches('/'), &link, root)
            .with_context(|| {
                format!("linking the backup as {link:?} into destination.result.append_to_lafs_dir")
            })?;
    }
    // The recovery catalog (row `id` of the cache): a failure only warns.
    Ok(crate::catalog::after_backup(ctx, client, id))
}

/// Reads the whole queue once, so that a damaged queue is refused before any
/// work starts; returns its entry count and its binding (v2).
fn count_entries(queue_path: &Path) -> anyhow::Result<(u64, Option<queue::Binding>)> {
    let mut count = 0u64;
    let mut reader = queue::Reader::open(queue_path)?;
    let binding = reader.binding().cloned();
    for entry in reader.by_ref() {
        entry?;
        count = count.saturating_add(1);
    }
    Ok((count, binding))
}

struct ScanReport {
    source: PathBuf,
    queue: PathBuf,
    stats: scan::Stats,
    seconds: f64,
}

/// The subtree signatures' settings fingerprint (`crate::subtree`): the
/// settings that shape what a tree's objects are. `None` when deduplication
/// is off (nothing is looked up, so nothing is reused whole either).
fn subtree_fingerprint(config: &Config) -> Option<[u8; 32]> {
    if config.operation.disable_deduplication {
        return None;
    }
    Some(crate::subtree::fingerprint(&format!(
        "encoding {:?}; chunking {:?}",
        config.destination.encoding, config.chunking
    )))
}

/// How old the oldest lease beneath a reused directory may be: the age at
/// which an object is checked before reuse (`lease.reuse_check_days`).
fn reuse_check_secs(config: &Config) -> i64 {
    i64::try_from(config.lease.reuse_check_days.saturating_mul(86_400)).unwrap_or(i64::MAX)
}

/// Whether the cache holds a subtree for `sig` that may be reused now.
fn subtree_fresh(cache: &Cache, sig: &crate::cache::ObjectKey, max_age: i64) -> bool {
    match cache.subtree(sig) {
        Ok(found) => {
            found.is_some_and(|s| crate::clock::unix_now().saturating_sub(s.leased) < max_age)
        }
        Err(e) => {
            // Not reusing costs time, never data; the upload phase reports
            // a cache that really is broken.
            tracing::debug!("looking up a subtree: {e}");
            false
        }
    }
}

/// The first reused line of the queue whose subtree the cache no longer
/// vouches for, as a display path.
fn subtree_gone(
    config: &Config,
    queue_path: &Path,
    cache: &Cache,
) -> anyhow::Result<Option<String>> {
    let max_age = reuse_check_secs(config);
    let Ok(reader) = queue::Reader::open(queue_path) else {
        // A missing or unreadable queue is reported where it is read.
        return Ok(None);
    };
    for entry in reader {
        let Ok(entry) = entry else {
            return Ok(None);
        };
        if let Some(reused) = &entry.reused
            && (subtree_fingerprint(config).is_none()
                || !subtree_fresh(cache, &reused.sig, max_age))
        {
            return Ok(Some(scan::display_path(&entry.path)));
        }
    }
    Ok(None)
}

fn scan_source(
    config: &Config,
    queue_path: &Path,
    binding: &queue::Binding,
    cache: Option<&Cache>,
) -> anyhow::Result<ScanReport> {
    let source = pick_source(config)?;
    let filter = crate::filter::source_filter(config)?;
    let options = scan::Options {
        one_file_system: config.source.one_file_system,
        exclude_caches: config.source.exclude_caches,
    };
    let started = Instant::now();
    info!(
        "scanning {} into {}",
        source.display(),
        queue_path.display()
    );
    let mut writer = queue::Writer::create_bound(queue_path, binding)?;
    let max_age = reuse_check_secs(config);
    let known = |sig: &crate::cache::ObjectKey| {
        cache.is_some_and(|cache| subtree_fresh(cache, sig, max_age))
    };
    let reuse = match (cache, subtree_fingerprint(config)) {
        (Some(_), Some(fingerprint)) => Some(scan::Reuse {
            fingerprint,
            known: &known,
        }),
        _ => None,
    };
    let stats = scan::scan_reusing(&source, &filter, options, &mut writer, reuse.as_ref())
        .with_context(|| format!("scanning {}", source.display()))?;
    if stats.reused_dirs > 0 {
        info!(
            "{} unchanged director{} reused whole",
            stats.reused_dirs,
            if stats.reused_dirs == 1 { "y" } else { "ies" }
        );
    }
    writer.finish()?;
    Ok(ScanReport {
        source,
        queue: queue_path.to_owned(),
        stats,
        seconds: started.elapsed().as_secs_f64(),
    })
}

impl ScanReport {
    fn print(&self, json: bool, job: Option<&str>) {
        let s = &self.stats;
        if json {
            let line = serde_json::json!({
                "type": "scan",
                "source": self.source.to_string_lossy(),
                "queue": self.queue.to_string_lossy(),
                "entries": s.entries,
                "excluded": s.excluded,
                "problems": s.problems,
                "other_filesystems": s.other_filesystems,
                "caches": s.caches,
                "seconds": show::json_seconds(self.seconds),
            });
            println!("{}", tag(line, job));
        } else {
            eprintln!(
                "lafs-backup: scanned {} into {}: {} entries, {} excluded, {} problem{} ({:.1}s)",
                self.source.display(),
                self.queue.display(),
                s.entries,
                s.excluded,
                s.problems,
                if s.problems == 1 { "" } else { "s" },
                self.seconds,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::EntryMeta;

    fn write_queue(path: &Path, binding: &queue::Binding) {
        let mut w = queue::Writer::create_bound(path, binding).unwrap();
        w.push(b"", &EntryMeta::parse_queue_field(b"0:0:40755").unwrap())
            .unwrap();
        w.finish().unwrap();
    }

    #[test]
    fn only_unfinished_queues_of_this_source_are_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join("queue");
        let now = queue::Binding::of(dir.path()).unwrap();
        let mut config = Config::default();
        assert!(config.source.queue.check_mtime);
        assert_eq!(config.source.queue.max_resume_age, 72_000);
        let decide = |config: &Config, current: &queue::Binding| plan(config, &q, current).0;
        // No queue yet: scan.
        assert_eq!(decide(&config, &now), QueuePlan::Scan);
        // A queue whose upload never completed: resume it.
        write_queue(&q, &now);
        assert_eq!(decide(&config, &now), QueuePlan::Resume);
        // ... but not once it is older than max_resume_age,
        let later = queue::Binding {
            written: now.written + 72_001,
            ..now.clone()
        };
        let (p, why) = plan(&config, &q, &later);
        assert_eq!(p, QueuePlan::Scan);
        assert!(why.unwrap().contains("max_resume_age"));
        // nor with max_resume_age 0,
        config.source.queue.max_resume_age = 0;
        assert_eq!(decide(&config, &now), QueuePlan::Scan);
        config.source.queue.max_resume_age = 72_000;
        // nor for another source (another root directory or path),
        let other = tempfile::tempdir().unwrap();
        let elsewhere = queue::Binding::of(other.path()).unwrap();
        let (p, why) = plan(&config, &q, &elsewhere);
        assert_eq!(p, QueuePlan::Scan);
        assert!(why.unwrap().contains("another source"));
        // nor a v1 queue, which does not say where it came from,
        let mut w = queue::Writer::create(&q).unwrap();
        w.push(b"", &EntryMeta::parse_queue_field(b"0:0:40755").unwrap())
            .unwrap();
        w.finish().unwrap();
        assert_eq!(decide(&config, &now), QueuePlan::Scan);
        // nor a damaged one (never a panic).
        std::fs::write(&q, b"#lafs-backup-queue v2 written=x\n").unwrap();
        assert_eq!(decide(&config, &now), QueuePlan::Scan);
        std::fs::write(&q, b"\xff\x00garbage").unwrap();
        assert_eq!(decide(&config, &now), QueuePlan::Scan);
        // Completed: scan again, however fresh the queue is.
        write_queue(&q, &now);
        queue::mark_done(&q).unwrap();
        assert_eq!(decide(&config, &now), QueuePlan::Scan);
        // --reuse-queue always reuses, even a completed queue.
        config.operation.reuse_queue = true;
        assert_eq!(decide(&config, &now), QueuePlan::Reuse);
        config.operation.reuse_queue = false;
        // -f (check_mtime false) and --queue-only always scan.
        write_queue(&q, &now);
        config.source.queue.check_mtime = false;
        assert_eq!(decide(&config, &now), QueuePlan::Scan);
        config.source.queue.check_mtime = true;
        config.operation.queue_only = true;
        assert_eq!(decide(&config, &now), QueuePlan::Scan);
    }
}
