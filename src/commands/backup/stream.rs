//! `backup --stdin NAME` and jobs of `kind: command`: a stream backup
//! (`docs/streams.md`).
//!
//! Failure is never success: the backup is recorded only when the source
//! ended well (stdin read to its end without an error; the command exited
//! 0) and every chunk is stored. A command that exits non-zero or dies by a
//! signal records nothing, shows its last stderr lines and fails the run
//! (exit 1); the chunks it did store stay in the content index, so a retry
//! uploads only what is new.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use tracing::{debug, info};

use super::{JobReport, Label, check_grid, deliver, forget_after_backup, schedule, skipped, tag};
use crate::cache::BackupKind;
use crate::cli::BackupArgs;
use crate::commands::Context;
use crate::config::{Config, JobKind};
use crate::encode::Encoder;
use crate::exit::UsageError;
use crate::progress;
use crate::stream::store::{self, StreamError};
use crate::upload;

/// How many of a failed command's last stderr lines are shown.
const STDERR_LINES: usize = 20;

/// The longest stderr line kept (longer ones are cut).
const STDERR_LINE_MAX: usize = 1000;

/// Where a stream comes from.
#[derive(Debug, Clone)]
pub(super) enum Source {
    /// Standard input (`backup --stdin NAME`).
    Stdin,
    /// The standard output of this program and its arguments.
    Command(Vec<String>),
    /// One database or repository of a dump job (`super::dumps`).
    Dump(crate::dump::DumpSource),
}

impl Source {
    /// What the recovery catalog and result targets name as the source.
    fn describe(&self) -> String {
        match self {
            Source::Stdin => "-".to_owned(),
            Source::Command(argv) => argv.join(" "),
            Source::Dump(dump) => dump.describe(),
        }
    }

    /// Starts the source (a command is spawned here).
    fn start(&self, name: &str) -> anyhow::Result<Box<dyn Producer>> {
        Ok(match self {
            Source::Stdin => Box::new(StdinProducer),
            Source::Command(argv) => Box::new(Running::start(argv, name)?),
            Source::Dump(dump) => super::dumps::producer(dump)?,
        })
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
    if let Some(name) = &args.stdin {
        if name.is_empty() || name.contains('/') || name.contains('\0') {
            return Err(UsageError(format!(
                "--stdin {name:?}: a backup name must be non-empty, without '/'"
            ))
            .into());
        }
        return Ok(Some((name.clone(), Source::Stdin)));
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
        // A dump job gives one stream per database: `hooked::job` runs it
        // through `dumps::run`, never as one stream.
        JobKind::Dump => Err(anyhow::anyhow!(
            "job {}: a dump job is backed up one database at a time (dumps::run)",
            job.name
        )),
        // Wired by the btrfs work of issue 15 (in progress).
        JobKind::Btrfs => Err(UsageError(format!(
            "job {}: this kind of job cannot be backed up by this build yet",
            job.name
        ))
        .into()),
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
    };
    let started = Instant::now();
    let stored = store::store(
        &client,
        &mut cache,
        &encoder,
        &config.chunking,
        name.as_bytes(),
        producer.reader(),
        options,
    );
    let seconds = started.elapsed().as_secs_f64();
    // The source's end decides before anything is recorded.
    producer.finish(stored.is_ok())?;
    let stored = stored.map_err(|e| match e {
        StreamError::Read(err) => {
            anyhow::anyhow!("reading the stream {name}: {err}; nothing was recorded")
        }
        other => anyhow::Error::new(other)
            .context(format!("storing the stream {name}; nothing was recorded")),
    })?;
    let stats = stored.stats;
    let id = cache.finish_backup_of(
        BackupKind::Stream,
        name.as_bytes(),
        &stored.root,
        stats.chunks,
        stats.bytes,
    )?;
    if label.label.is_some() {
        cache.set_label(id, label.label.as_deref(), label.priority)?;
        cache.commit()?;
    }
    drop(cache);

    let what = source.describe();
    // The result targets and the recovery catalog (a lagging catalog: exit 4).
    let catalog = deliver(
        ctx,
        &client,
        id,
        name.as_bytes(),
        what.as_bytes(),
        &stored.root,
    )?;
    if ctx.json() {
        let line = serde_json::json!({
            "type": "summary",
            "kind": "stream",
            "name": name,
            "generation": generation,
            "label": label.label,
            "root_cap": stored.root.as_str(),
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
    report.entries = Some(stats.chunks);
    report.generation = Some(generation);
    report.upload = Some(upload::Stats {
        entries: stats.chunks,
        files_uploaded: stats.chunks_uploaded,
        dirs_created: stats.dirs_created,
        unchanged: 0,
        content_reused: stats.chunks_reused,
        skipped: 0,
        bytes_read: stats.bytes_uploaded,
        bytes_total: stats.bytes,
    });
    report.outcome = report.outcome.max(catalog);
    // As for trees: the policy runs only after a complete backup.
    if report.outcome == crate::exit::Outcome::Success {
        forget_after_backup(ctx, args, name.as_bytes())?;
    }
    Ok(report)
}

/// A running command whose stdout is the stream.
struct Running {
    child: Child,
    program: String,
    /// Its last stderr lines, collected by a thread.
    stderr: Arc<Mutex<VecDeque<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(argv: &[String], name: &str) -> anyhow::Result<Running> {
        let Some((program, rest)) = argv.split_first().filter(|(p, _)| !p.is_empty()) else {
            return Err(UsageError(format!("job {name}: the command is empty")).into());
        };
        let mut child = Command::new(program)
            .args(rest)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                let why = if e.kind() == io::ErrorKind::NotFound {
                    "no such program".to_owned()
                } else {
                    e.to_string()
                };
                UsageError(format!(
                    "job {name}: the command {program:?} cannot be run: {why}"
                ))
            })?;
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let reader = child.stderr.take().map(|pipe| {
            let lines = Arc::clone(&stderr);
            std::thread::spawn(move || keep_last_lines(pipe, &lines))
        });
        debug!("started the command {program:?} of job {name}");
        Ok(Running {
            child,
            program: program.clone(),
            stderr,
            reader,
        })
    }
}

impl Producer for Running {
    fn reader(&mut self) -> Box<dyn Read + '_> {
        match self.child.stdout.as_mut() {
            Some(stdout) => Box::new(stdout),
            None => Box::new(io::empty()),
        }
    }

    /// Waits for the command (killing it first when the stream could not be
    /// stored: nobody reads its output any more) and fails unless it exited
    /// 0, showing its last stderr lines.
    fn finish(mut self: Box<Self>, stored: bool) -> anyhow::Result<()> {
        // Closed first: a writer still holding the pipe gets EPIPE instead
        // of blocking on it.
        drop(self.child.stdout.take());
        if !stored {
            // It may be blocked writing into the pipe nobody reads.
            let _ = self.child.kill();
        }
        let status = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let status =
            status.with_context(|| format!("waiting for the command {:?}", self.program))?;
        if status.success() || !stored {
            // When the storing failed, its error is the one to report.
            return Ok(());
        }
        let lines: Vec<String> = self
            .stderr
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default();
        if !lines.is_empty() {
            eprintln!(
                "lafs-backup: the last {} line(s) the command {:?} wrote on stderr:",
                lines.len(),
                self.program
            );
            for line in &lines {
                eprintln!("  | {line}");
            }
        }
        Err(anyhow::anyhow!(
            "the command {:?} {}: the stream is incomplete and nothing was recorded",
            self.program,
            describe(status)
        ))
    }
}

/// "exited with status 3", "was killed by signal 9 (SIGKILL)".
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    match status.signal() {
        Some(signal) => {
            let name = match signal {
                1 => " (SIGHUP)",
                2 => " (SIGINT)",
                3 => " (SIGQUIT)",
                6 => " (SIGABRT)",
                9 => " (SIGKILL)",
                11 => " (SIGSEGV)",
                13 => " (SIGPIPE)",
                15 => " (SIGTERM)",
                _ => "",
            };
            format!("was killed by signal {signal}{name}")
        }
        None => format!("ended abnormally ({status})"),
    }
}

/// Reads `pipe` to its end, keeping the last [`STDERR_LINES`] lines.
fn keep_last_lines(pipe: ChildStderr, lines: &Mutex<VecDeque<String>>) {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&buf);
        let mut line: String = text.trim_end_matches(['\n', '\r']).to_owned();
        if line.len() > STDERR_LINE_MAX {
            let mut cut = STDERR_LINE_MAX;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        debug!(line = %line, "command stderr");
        if let Ok(mut lines) = lines.lock() {
            if lines.len() == STDERR_LINES {
                lines.pop_front();
            }
            lines.push_back(line);
        }
    }
}
