//! `backup` of a config with `jobs:`: every job (or those `--job` names) in
//! order, each on a config derived from the shared one. A failing job does
//! not stop the others; the exit status is the worst of theirs.

use std::ffi::OsString;
use std::path::PathBuf;

use super::hooked;
use super::pick_source;
use super::record::run_job_summarized;
use super::summary::JobSummary;
use crate::cli::BackupArgs;
use crate::commands::Context;
use crate::config::{Config, Job};
use crate::exit::{self, Outcome, UsageError};
use crate::scan;

/// How bad a job's result is: 2 > 1 > 4 > 3 > 0 (`docs/config.md`).
pub(super) fn rank(code: u8) -> u8 {
    match code {
        exit::USAGE => 4,
        exit::FATAL => 3,
        4 => 2,
        3 => 1,
        _ => 0,
    }
}

/// The jobs a run with `jobs:` (or `--job`) runs, in order: each name with
/// its derived config (`None`: the top-level source, as it is). A usage
/// error (an unknown `--job`) runs nothing, hooks included.
pub(super) fn select(
    ctx: &Context<'_>,
    args: &BackupArgs,
) -> anyhow::Result<Vec<(String, Option<Config>)>> {
    let config = ctx.config();
    // The top-level source beside `jobs:` is one more job, named as today.
    let mut all: Vec<(String, Option<Config>)> = Vec::new();
    if let Some(path) = &config.source.path {
        // A source that cannot be picked (a glob matching nothing) fails as
        // this job, below, without stopping the others.
        let name: OsString = match pick_source(config) {
            Ok(source) => scan::backup_name(&source),
            Err(_) => path.into(),
        };
        all.push((name.to_string_lossy().into_owned(), None));
    }
    for job in &config.jobs {
        if let Some((first, _)) = all.iter().find(|(n, _)| *n == job.name) {
            return Err(UsageError(format!(
                "jobs: the job {first:?} (line {}) has the backup name of the top-level source.path",
                job.line
            ))
            .into());
        }
        all.push((job.name.clone(), Some(derive(config, job))));
    }
    for wanted in &args.job {
        if !all.iter().any(|(n, _)| n == wanted) && super::dumps::job_of(config, wanted).is_none() {
            let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
            return Err(UsageError(format!(
                "--job {wanted}: no such job (the config has: {})",
                names.join(", ")
            ))
            .into());
        }
    }
    // `--job JOB.DB` selects the dump job JOB (`dumps::run` keeps only DB).
    all.retain(|(name, _)| {
        args.job.is_empty()
            || args.job.contains(name)
            || args
                .job
                .iter()
                .any(|w| super::dumps::job_of(config, w) == Some(name.as_str()))
    });
    // One queue file named on the command line cannot serve several jobs.
    let given = [
        ("--queue-only", &args.queue_only),
        ("--reuse-queue", &args.reuse_queue),
    ];
    for (flag, value) in given {
        if matches!(value, Some(Some(_))) && all.len() > 1 {
            return Err(UsageError(format!(
                "{flag} PATH with a config of several jobs: name exactly one with --job                  (the config has: {})",
                all.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
            ))
            .into());
        }
    }
    Ok(all)
}

/// Runs the selected jobs, each inside its own hooks; returns the run's
/// result (the worst job's) and each job's summary.
pub(super) fn run(
    ctx: &Context<'_>,
    args: &BackupArgs,
    selected: Vec<(String, Option<Config>)>,
) -> (anyhow::Result<Outcome>, Vec<JobSummary>) {
    let config = ctx.config();
    let mut worst: (u8, Vec<String>) = (0, Vec::new());
    let mut summaries = Vec::new();
    for (name, derived) in selected {
        let of_job = match derived {
            Some(derived) => {
                let hooks = derived.hooks.clone();
                hooked::job(&ctx.with_config(derived), args, &name, &hooks)
            }
            None => vec![run_unhooked(ctx.with_config(config.clone()), args, &name)],
        };
        for summary in of_job {
            let code = summary.exit;
            // A dump job's databases are named by their backup names.
            let shown = match &summary.job {
                Some(job) if *job == name && !summary.name.is_empty() => summary.name.clone(),
                _ => name.clone(),
            };
            summaries.push(summary);
            if rank(code) > rank(worst.0) {
                worst = (code, vec![shown]);
            } else if rank(code) == rank(worst.0) && code != 0 {
                worst.1.push(shown);
            }
        }
    }
    let (code, names) = worst;
    let failed = || format!("job(s) failed: {}", names.join(", "));
    let result = match code {
        exit::USAGE => Err(UsageError(failed()).into()),
        exit::FATAL => Err(anyhow::anyhow!(failed())),
        4 => Ok(Outcome::Problems),
        3 => Ok(Outcome::Partial),
        _ => Ok(Outcome::Success),
    };
    (result, summaries)
}

/// One job without hooks of its own (the top-level source beside `jobs:`).
fn run_unhooked(ctx: Context<'_>, args: &BackupArgs, name: &str) -> JobSummary {
    let (result, summary) = run_job_summarized(ctx, args, Some(name));
    if let Err(err) = &result {
        eprintln!("lafs-backup: job {name}: {}", exit::message(err));
    }
    summary
}

/// The shared config with the job's keys in place of the top-level ones.
fn derive(config: &Config, job: &Job) -> Config {
    let mut c = config.clone();
    if job.kind.is_stream() {
        // A stream job: no source tree; the job's own entry tells the
        // backup what to store (`stream::source`).
        c.jobs = vec![job.clone()];
        c.source.path = None;
        if let Some(retention) = &job.retention {
            c.retention = retention.clone();
        }
        // Its own hooks, as for a tree job (the top-level ones wrap the run).
        c.hooks = job.hooks.clone();
        return c;
    }
    c.jobs = Vec::new();
    c.source.path = Some(job.path.clone());
    c.source.queue.path = match &job.queue_path {
        Some(path) => Some(path.clone()),
        None => config.source.queue.path.as_ref().map(|p| {
            let mut s = p.clone().into_os_string();
            s.push(format!(".{}", job.name));
            PathBuf::from(s)
        }),
    };
    if let Some(v) = job.check_mtime {
        c.source.queue.check_mtime = v;
    }
    if let Some(v) = job.max_resume_age {
        c.source.queue.max_resume_age = v;
    }
    if let Some(v) = job.one_file_system {
        c.source.one_file_system = v;
    }
    if let Some(v) = job.exclude_caches {
        c.source.exclude_caches = v;
    }
    if let Some(filter) = &job.filter {
        c.filter = filter.clone();
    }
    if let Some(retention) = &job.retention {
        c.retention = retention.clone();
    }
    // The job's hooks, for `hooked::job`; the top-level ones wrap the run.
    c.hooks = job.hooks.clone();
    c
}
