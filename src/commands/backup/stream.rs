//! `backup --stdin NAME` and jobs of `kind: command`: a stream backup
//! (`docs/streams.md`).
//!
//! Failure is never success: the backup is recorded only when the source
//! ended well (stdin read to its end without an error; the command exited
//! 0) and every chunk is stored. A command that exits non-zero or dies by a
//! signal records nothing, shows its last stderr lines and fails the run
//! (exit 1); the chunks it did store stay in the content index, so a retry
//! uploads only what is new.

use std::io::{self, Read};
use std::time::Instant;

use tracing::{info, warn};

use super::command;
use super::{JobReport, Label, check_grid, deliver, forget_after_backup, schedule, skipped, tag};
use crate::cache::BackupKind;
use crate::cli::BackupArgs;
use crate::commands::Context;
use crate::config::{Config, JobKind};
use crate::encode::Encoder;
use crate::exit::UsageError;
use crate::progress;
use crate::stream::store::{self, StreamError};
use crate::stream::tar::{self, TarStats, TarStored};
use crate::tahoe::Cap;
use crate::upload;

/// Where a stream comes from.
#[derive(Debug, Clone)]
pub(super) enum Source {
    /// Standard input (`backup --stdin NAME`).
    Stdin,
    /// The standard output of this program and its arguments.
    Command(Vec<String>),
    /// A job of `kind: btrfs`: planned, snapshotted and sent by
    /// `super::btrfs` (`docs/btrfs.md`), which comes back with `Btrfs`.
    BtrfsJob(Box<crate::config::Job>),
    /// One planned btrfs send stream, recorded with its plan facts.
    Btrfs(super::btrfs::Planned),
    /// One database or repository of a dump job (`super::dumps`).
    Dump(crate::dump::DumpSource),
}

impl Source {
    /// What the recovery catalog and result targets name as the source.
    fn describe(&self) -> String {
        match self {
            Source::Stdin => "-".to_owned(),
            Source::Command(argv) => argv.join(" "),
            Source::BtrfsJob(job) => job.name.clone(),
            Source::Btrfs(planned) => planned.describe(),
            Source::Dump(dump) => dump.describe(),
        }
    }

    /// Starts the source (a command is spawned here).
    fn start(&self, name: &str) -> anyhow::Result<Box<dyn Producer>> {
        Ok(match self {
            Source::Stdin => Box::new(StdinProducer),
            Source::Command(argv) => Box::new(command::Running::start(argv, name)?),
            Source::Btrfs(planned) => planned.start()?,
            Source::BtrfsJob(_) => {
                return Err(anyhow::anyhow!(
                    "internal error: a btrfs job is started through its plan"
                ));
            }
            Source::Dump(dump) => super::dumps::producer(dump)?,
        })
    }

    /// A btrfs stream's plan facts, recorded with it.
    fn btrfs_member(&self) -> Option<crate::btrfs::plan::Member> {
        match self {
            Source::Btrfs(planned) => Some(planned.member),
            _ => None,
        }
    }
}

/// A started source of stream bytes: read it to its end, then ask it
/// whether it ended well. Failure is never success: a backup is recorded
/// only when [`Producer::finish`] says so after every byte is stored.
pub(super) trait Producer {
    /// The bytes to store (taken once).
    fn reader(&mut self) -> Box<dyn Read + '_>;
    /// Whether the source ended well; `stored` is false when storing
    /// failed (the source may then be stopped: nobody reads it any more,
    /// and the storing error is the one to report).
    fn finish(self: Box<Self>, stored: bool) -> anyhow::Result<()>;
    /// Storing stopped early (not a valid tar): give the source a moment to
    /// end by itself, so that its own failure, if any, is what is reported.
    fn settle(&mut self) {}
}

/// Standard input: it ended well when it was read to its end without an
/// error (a read error fails the storing itself).
struct StdinProducer;

impl Producer for StdinProducer {
    fn reader(&mut self) -> Box<dyn Read + '_> {
        Box::new(io::stdin().lock())
    }

    fn finish(self: Box<Self>, _stored: bool) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The stream this run backs up, if it is a stream backup: `--stdin NAME`,
/// or a job of `kind: command` (whose derived config keeps its own entry
/// in `jobs`, see `jobs::derive`). Returns the backup name and the source.
pub(super) fn source(
    config: &Config,
    args: &BackupArgs,
    job: Option<&str>,
) -> anyhow::Result<Option<(String, Source)>> {
    if let Some(name) = args.stdin_name() {
        if name.is_empty() {
            return Err(UsageError(
                "--stdin needs the backup NAME (--stdin NAME, or NAME last)".into(),
            )
            .into());
        }
        if name.contains('/') || name.contains('\0') {
            return Err(UsageError(format!(
                "--stdin {name:?}: a backup name must be non-empty, without '/'"
            ))
            .into());
        }
        return Ok(Some((name.to_owned(), Source::Stdin)));
    }
    let Some(job) = job else {
        return Ok(None);
    };
    let Some(job) = config.jobs.iter().find(|j| j.name == job) else {
        return Ok(None);
    };
    match job.kind {
        JobKind::Tree => Ok(None),
        JobKind::Command => Ok(Some((
            job.name.clone(),
            Source::Command(job.command.clone()),
        ))),
        JobKind::Btrfs => Ok(Some((
            job.name.clone(),
            Source::BtrfsJob(Box::new(job.clone())),
        ))),
        // A dump job gives one stream per database: `hooked::job` runs it
        // through `dumps::run`, never as one stream.
        JobKind::Dump => Err(anyhow::anyhow!(
            "job {}: a dump job is backed up one database at a time (dumps::run)",
            job.name
        )),
    }
}

/// Backs up one stream.
pub(super) fn run(
    ctx: &Context<'_>,
    args: &BackupArgs,
    job: Option<&str>,
    name: &str,
    source: Source,
) -> anyhow::Result<JobReport> {
    if let Source::BtrfsJob(btrfs) = &source {
        return super::btrfs::run_job(ctx, args, job, name, btrfs);
    }
    let config = ctx.config();
    let mut report = JobReport::new(name.as_bytes());
    if args.plan || config.operation.queue_only {
        // No scan and no queue: there is nothing to plan or queue.
        return Ok(report.not_a_run());
    }
    config.chunking.check().map_err(UsageError)?;
    let label = match schedule::verdict(ctx, name.as_bytes(), args.ignore_schedule, args.lock_wait)?
    {
        schedule::Verdict::Run { label, priority } => Label { label, priority },
        schedule::Verdict::Skip(why) => return Ok(skipped(ctx, job, report, why)),
    };
    ctx.backup_cache_path()?;
    let encoder = Encoder::new(&config.destination.encoding).map_err(UsageError)?;
    let gateway = ctx.gateway(None)?;
    gateway.storage_servers()?;
    let mut cache = ctx.backup_cache(args.lock_wait)?;
    check_grid(&gateway, &mut cache, args.allow_foreign_cache)?;
    let client = gateway.client;

    // The source starts only once the gateway and the cache are ready: a
    // dump is not made for nothing.
    let mut producer = source.start(name)?;
    let generation = cache.begin_run(config.operation.try_resume)?;
    info!("storing the stream {name} (generation {generation})");
    let options = store::Options {
        dedup: !config.operation.disable_deduplication,
        concurrency: usize::try_from(config.operation.concurrency).unwrap_or(usize::MAX),
        btrfs: source.btrfs_member(),
    };
    let tar = tar_mode(config, args, job);
    let started = Instant::now();
    let stored = {
        let input = producer.reader();
        match tar {
            TarMode::Off => store::store(
                &client,
                &mut cache,
                &encoder,
                &config.chunking,
                name.as_bytes(),
                input,
                options,
            )
            .map(Summary::Plain),
            TarMode::Strict | TarMode::Lenient => tar::store_tar(
                &client,
                &mut cache,
                &encoder,
                &config.chunking,
                name.as_bytes(),
                input,
                options,
                tar == TarMode::Lenient,
            )
            .map(|stored| match stored {
                TarStored::Tar { root, stats } => Summary::Tar { root, stats },
                TarStored::Plain { stored, why } => {
                    warn!(
                        "the stream {name} is not a valid tar ({why}); \
                         it was stored as a plain stream (--tar-lenient)"
                    );
                    Summary::Plain(stored)
                }
            }),
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    // The source's end decides before anything is recorded.
    if matches!(stored, Err(StreamError::NotTar(_))) {
        // A tar that ends too early is most often a command that failed:
        // then its failure (and stderr) is the error to show.
        producer.settle();
    }
    producer.finish(stored.is_ok())?;
    let stored = stored.map_err(|e| match e {
        StreamError::Read(err) => {
            anyhow::anyhow!("reading the stream {name}: {err}; nothing was recorded")
        }
        StreamError::NotTar(why) => anyhow::anyhow!(
            "the stream {name} is {why} (--tar; --tar-lenient stores such a stream \
             as a plain stream); nothing was recorded"
        ),
        other => anyhow::Error::new(other)
            .context(format!("storing the stream {name}; nothing was recorded")),
    })?;
    let root = stored.root().clone();
    let (objects, bytes) = stored.recorded();
    let id = match source.btrfs_member() {
        Some(member) => {
            cache.finish_btrfs_backup(name.as_bytes(), &root, objects, bytes, &member)?
        }
        None => {
            cache.finish_backup_of(BackupKind::Stream, name.as_bytes(), &root, objects, bytes)?
        }
    };
    if label.label.is_some() {
        cache.set_label(id, label.label.as_deref(), label.priority)?;
        cache.commit()?;
    }
    drop(cache);

    let what = source.describe();
    // The result targets and the recovery catalog (a lagging catalog: exit 4).
    let catalog = deliver(ctx, &client, id, name.as_bytes(), what.as_bytes(), &root)?;
    let common = Common {
        name,
        generation,
        label: label.label.as_deref(),
        root: &root,
        seconds,
    };
    let stats = match &stored {
        Summary::Plain(stored) => {
            show_plain(ctx, job, &common, &stored.stats);
            stored.stats
        }
        Summary::Tar { stats, .. } => {
            show_tar(ctx, job, &common, stats);
            let (p, i) = (stats.payloads, stats.index);
            store::Stats {
                chunks: p.chunks + i.chunks,
                bytes: stats.size,
                chunks_uploaded: p.chunks_uploaded + i.chunks_uploaded,
                bytes_uploaded: p.bytes_uploaded.saturating_add(i.bytes_uploaded),
                chunks_reused: p.chunks_reused + i.chunks_reused,
                dirs_created: p.dirs_created + i.dirs_created,
                dirs_reused: p.dirs_reused + i.dirs_reused,
            }
        }
    };
    report.entries = Some(objects);
    report.generation = Some(generation);
    report.upload = Some(upload::Stats {
        entries: objects,
        files_uploaded: stats.chunks_uploaded,
        dirs_created: stats.dirs_created,
        unchanged: 0,
        content_reused: stats.chunks_reused,
        skipped: 0,
        bytes_read: stats.bytes_uploaded,
        bytes_total: bytes,
    });
    report.outcome = report.outcome.max(catalog);
    // As for trees: the policy runs only after a complete backup.
    if report.outcome == crate::exit::Outcome::Success {
        forget_after_backup(ctx, args, name.as_bytes())?;
    }
    Ok(report)
}

/// Whether, and how, the stream is split as a tar (`--tar`,
/// `--tar-lenient`, a command job's `tar: true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TarMode {
    Off,
    Strict,
    Lenient,
}

fn tar_mode(config: &Config, args: &BackupArgs, job: Option<&str>) -> TarMode {
    if args.tar_lenient {
        return TarMode::Lenient;
    }
    if args.tar {
        return TarMode::Strict;
    }
    let job_tar = args.stdin_name().is_none()
        && job.is_some_and(|job| {
            config
                .jobs
                .iter()
                .any(|j| j.name == job && j.kind == JobKind::Command && j.tar)
        });
    if job_tar {
        TarMode::Strict
    } else {
        TarMode::Off
    }
}

/// What was stored: a plain stream, or a tar stream.
enum Summary {
    Plain(store::Stored),
    Tar { root: Cap, stats: TarStats },
}

impl Summary {
    fn root(&self) -> &Cap {
        match self {
            Summary::Plain(stored) => &stored.root,
            Summary::Tar { root, .. } => root,
        }
    }

    /// What the backup record counts: its objects (chunks; payloads and
    /// index chunks) and the stream's length.
    fn recorded(&self) -> (u64, u64) {
        match self {
            Summary::Plain(stored) => (stored.stats.chunks, stored.stats.bytes),
            Summary::Tar { stats, .. } => (stats.payloads.chunks + stats.index.chunks, stats.size),
        }
    }
}

/// What every summary line says.
struct Common<'a> {
    name: &'a str,
    generation: u64,
    label: Option<&'a str>,
    root: &'a Cap,
    seconds: f64,
}

fn show_plain(ctx: &Context<'_>, job: Option<&str>, c: &Common<'_>, stats: &store::Stats) {
    let Common {
        name,
        generation,
        seconds,
        ..
    } = *c;
    if ctx.json() {
        let line = serde_json::json!({
            "type": "summary",
            "kind": "stream",
            "name": name,
            "generation": generation,
            "label": c.label,
            "root_cap": c.root.as_str(),
            "chunks": stats.chunks,
            "chunks_uploaded": stats.chunks_uploaded,
            "chunks_reused": stats.chunks_reused,
            "bytes_total": stats.bytes,
            "bytes_uploaded": stats.bytes_uploaded,
            "seconds": super::show::json_seconds(seconds),
        });
        println!("{}", tag(line, job));
    } else {
        eprintln!(
            "lafs-backup: backup {name} (generation {generation}): stream of {} in {} chunks, \
             {} uploaded ({}), {} found by content; {seconds:.1}s",
            progress::human_bytes(stats.bytes),
            stats.chunks,
            stats.chunks_uploaded,
            progress::human_bytes(stats.bytes_uploaded),
            stats.chunks_reused,
        );
    }
}

fn show_tar(ctx: &Context<'_>, job: Option<&str>, c: &Common<'_>, stats: &TarStats) {
    let Common {
        name,
        generation,
        seconds,
        ..
    } = *c;
    let (p, i) = (&stats.payloads, &stats.index);
    if ctx.json() {
        let line = serde_json::json!({
            "type": "summary",
            "kind": "stream",
            "layout": "tar",
            "name": name,
            "generation": generation,
            "label": c.label,
            "root_cap": c.root.as_str(),
            "payloads": p.chunks,
            "payloads_uploaded": p.chunks_uploaded,
            "payloads_reused": p.chunks_reused,
            "payload_bytes": p.bytes,
            "chunks": i.chunks,
            "chunks_uploaded": i.chunks_uploaded,
            "chunks_reused": i.chunks_reused,
            "index_bytes": i.bytes,
            "bytes_total": stats.size,
            "bytes_uploaded": p.bytes_uploaded.saturating_add(i.bytes_uploaded),
            "seconds": super::show::json_seconds(seconds),
        });
        println!("{}", tag(line, job));
    } else {
        eprintln!(
            "lafs-backup: backup {name} (generation {generation}): tar stream of {}: \
             {} payloads, {} uploaded ({}), {} found by content; index of {} in {} chunks, \
             {} uploaded; {seconds:.1}s",
            progress::human_bytes(stats.size),
            p.chunks,
            p.chunks_uploaded,
            progress::human_bytes(p.bytes_uploaded),
            p.chunks_reused,
            progress::human_bytes(i.bytes),
            i.chunks,
            i.chunks_uploaded,
        );
    }
}
