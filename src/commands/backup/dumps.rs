//! Dump jobs (`kind: postgresql`, `mysql`, `sqlite`, `subversion`,
//! `subversion_dir`; `docs/dumps.md`): one stream backup per database or
//! repository, each under its own backup name `<job>.<database>`.
//!
//! The job's hooks run once around all its dumps (`hooked::job`). The
//! databases are listed when the job runs; a listing that fails fails the
//! job (recorded under the job's name) and dumps nothing. Each dump is then
//! a stream backup of its own (`stream::run`: schedule, storing, record,
//! result targets, catalog, retention) and a run of its own in the `runs`
//! table, so status, metrics and retention work per backup name. A dump
//! that fails records no backup for its name and fails the job, but the
//! job's other databases are still dumped.

use std::io::Read;
use std::time::Instant;

use super::record::recorded;
use super::stream::{self, Producer, Source};
use super::summary::JobSummary;
use super::{JobReport, apply_flags};
use crate::cli::BackupArgs;
use crate::commands::Context;
use crate::config::{Config, JobKind};
use crate::dump::{DumpSource, DumpStream};
use crate::exit::{self, UsageError};

/// Whether `job` is one of the config's dump jobs.
pub(super) fn is_dump(config: &Config, job: &str) -> bool {
    config
        .jobs
        .iter()
        .any(|j| j.name == job && j.kind == JobKind::Dump)
}

/// The dump job a `--job JOB.DB` names: the longest dump job name that
/// prefixes it with a dot, unless it is a job's own name.
pub(super) fn job_of<'a>(config: &'a Config, wanted: &str) -> Option<&'a str> {
    if config.jobs.iter().any(|j| j.name == wanted) {
        return None;
    }
    config
        .jobs
        .iter()
        .filter(|j| j.kind == JobKind::Dump)
        .map(|j| j.name.as_str())
        .filter(|job| {
            wanted
                .strip_prefix(job)
                .is_some_and(|rest| rest.len() > 1 && rest.starts_with('.'))
        })
        .max_by_key(|job| job.len())
}

/// The backup names of `job` that `--job JOB.DB` asks for (none: all).
fn wanted_names<'a>(config: &Config, args: &'a BackupArgs, job: &str) -> Vec<&'a str> {
    if args.job.iter().any(|w| w == job) {
        return Vec::new();
    }
    args.job
        .iter()
        .filter(|w| job_of(config, w) == Some(job))
        .map(String::as_str)
        .collect()
}

/// Runs the dump job `job` of the (derived) config: lists its databases,
/// then backs each up; one summary per backup name (or one for the job,
/// when it failed before any dump ran or is not a backup run).
pub(super) fn run(mut ctx: Context<'_>, args: &BackupArgs, job: &str) -> Vec<JobSummary> {
    apply_flags(args, ctx.config_mut());
    let config = ctx.config().clone();
    let started = Instant::now();
    let whole_job = |result: anyhow::Result<JobReport>, seconds: f64| {
        JobSummary::of(job, Some(job), &result, seconds)
    };
    if args.plan || config.operation.queue_only {
        // No scan and no queue: nothing to plan or queue, and no database
        // server is asked for its list.
        return vec![whole_job(
            Ok(JobReport::new(job.as_bytes()).not_a_run()),
            0.0,
        )];
    }
    let dump = config
        .jobs
        .iter()
        .find(|j| j.name == job)
        .and_then(|j| j.dump.clone());
    let listed = match dump {
        Some(dump) => crate::dump::sources(job, &dump).map_err(anyhow::Error::new),
        None => Err(anyhow::anyhow!("job {job}: not a dump job")),
    };
    let sources = match listed {
        Ok(sources) => sources,
        Err(err) => {
            // Nothing was dumped: the failure is the job's, under its name.
            let job_name = || Some(job.as_bytes().to_vec());
            let result = recorded(&config, args, Some(job), job_name, || Err(err));
            print_error(job, &result);
            return vec![whole_job(result, started.elapsed().as_secs_f64())];
        }
    };
    let sources = match pick(&config, args, job, sources) {
        Ok(sources) => sources,
        Err(err) => {
            // A mistyped `--job JOB.DB` is not a run of the job: not recorded.
            let result = Err(err);
            print_error(job, &result);
            return vec![whole_job(result, started.elapsed().as_secs_f64())];
        }
    };
    let mut summaries = Vec::with_capacity(sources.len());
    for source in sources {
        let name = source.name().to_owned();
        let started = Instant::now();
        let name_on_error = || Some(name.as_bytes().to_vec());
        let result = recorded(&config, args, Some(job), name_on_error, || {
            stream::run(&ctx, args, Some(job), &name, Source::Dump(source))
        });
        print_error(job, &result);
        summaries.push(JobSummary::of(
            &name,
            Some(job),
            &result,
            started.elapsed().as_secs_f64(),
        ));
    }
    summaries
}

/// The sources `--job JOB.DB` asks for (all when none is named); a name
/// the job does not have is a usage error.
fn pick(
    config: &Config,
    args: &BackupArgs,
    job: &str,
    sources: Vec<DumpSource>,
) -> anyhow::Result<Vec<DumpSource>> {
    let wanted = wanted_names(config, args, job);
    for name in &wanted {
        if !sources.iter().any(|s| s.name() == *name) {
            let have: Vec<&str> = sources.iter().map(DumpSource::name).collect();
            return Err(UsageError(format!(
                "--job {name}: the job {job} has no such database or repository (it has: {})",
                have.join(", ")
            ))
            .into());
        }
    }
    Ok(sources
        .into_iter()
        .filter(|s| wanted.is_empty() || wanted.contains(&s.name()))
        .collect())
}

fn print_error(job: &str, result: &anyhow::Result<JobReport>) {
    if let Err(err) = result {
        eprintln!("lafs-backup: job {job}: {}", exit::message(err));
    }
}

/// Starts one dump: its stream is what the stream backup stores.
pub(super) fn producer(source: &DumpSource) -> anyhow::Result<Box<dyn Producer>> {
    let stream = source.open()?;
    Ok(Box::new(Dumping {
        name: source.name().to_owned(),
        stream,
    }))
}

/// A running dump, as a stream backup's source.
struct Dumping {
    name: String,
    stream: DumpStream,
}

impl Producer for Dumping {
    fn reader(&mut self) -> Box<dyn Read + '_> {
        Box::new(&mut self.stream)
    }

    /// The dump's own verdict (its program's exit status and stderr tail).
    /// When the storing failed, its error is the one reported: the dump is
    /// dropped, which stops its program.
    fn finish(self: Box<Self>, stored: bool) -> anyhow::Result<()> {
        if !stored {
            return Ok(());
        }
        let name = self.name;
        self.stream.finish().map_err(|err| {
            anyhow::Error::new(err).context(format!(
                "the dump of {name} failed and nothing was recorded for it"
            ))
        })
    }
}
