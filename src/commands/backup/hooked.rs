//! `backup` inside its hooks and monitor pings (`docs/hooks.md`): the
//! top-level `hooks` around the whole run, each job's `hooks` around it,
//! the Healthchecks pings around everything, and the lease renewal after
//! the jobs.
//!
//! A `before` hook exiting 75 skips (exit 0, recorded as skipped); any other
//! `before` failure fails (exit 1) without backing up. `after` runs on exit
//! 0 or 3, `on_error` on 1, 2 or 4 (or a failed `before`), `finally`
//! always. A failing `after`, `on_error` or `finally` hook turns exit 0 into
//! 3: the backup is done, something around it is not.

use super::jobs;
use super::record::{record_hook_gate, run_job_summarized};
use super::summary::{JobSummary, SummaryFile, document};
use crate::cli::BackupArgs;
use crate::commands::Context;
use crate::commands::check::renew_if_due;
use crate::config::Hooks;
use crate::exit::{self, Outcome};
use crate::healthchecks::Pinger;
use crate::hooks::{self, Ended, Env, Gate};

/// The whole `backup` run.
pub(super) fn run(ctx: Context<'_>, args: &BackupArgs) -> anyhow::Result<Outcome> {
    let config = ctx.config().clone();
    // `--stdin NAME` is one backup of its own, whatever jobs the config has.
    let with_jobs =
        (!config.jobs.is_empty() || !args.job.is_empty()) && args.stdin_name().is_none();
    // A usage error (an unknown --job) runs nothing, hooks and pings included.
    let selected = if with_jobs {
        Some(jobs::select(&ctx, args)?)
    } else {
        None
    };
    // `--plan` only prints: no hooks, no pings, no renewal.
    if args.plan {
        return match selected {
            None => super::record::run_job(ctx, args, None).map(|r| r.outcome),
            Some(selected) => jobs::run(&ctx, args, selected).0,
        };
    }
    let pinger = Pinger::new(
        config.monitor.healthchecks_url.as_deref(),
        &config.http.ca_certs_files.paths,
    );
    if let Some(pinger) = &pinger {
        pinger.start();
    }
    let global = &config.hooks;
    let gate = hooks::before(global, Env::default());
    let skipped = matches!(gate, Gate::Skip(_));
    let (mut result, summaries) = match gate {
        Gate::Go => {
            let (result, summaries) = match selected {
                None => {
                    let (result, summary) =
                        run_job_summarized(ctx.with_config(config.clone()), args, None);
                    (result.map(|r| r.outcome), vec![summary])
                }
                Some(selected) => jobs::run(&ctx, args, selected),
            };
            (renew(&ctx, args, result), summaries)
        }
        Gate::Skip(why) => {
            announce_skip(&ctx, None, &why);
            let summaries = match &selected {
                None => vec![record_hook_gate(&config, args, None, Some(why), None)],
                Some(selected) => selected
                    .iter()
                    .map(|(name, _)| {
                        record_hook_gate(&config, args, Some(name), Some(why.clone()), None)
                    })
                    .collect(),
            };
            (Ok(Outcome::Success), summaries)
        }
        Gate::Fail(why) => {
            let message = format!("{why}; nothing was backed up");
            let summaries = match &selected {
                None => vec![record_hook_gate(
                    &config,
                    args,
                    None,
                    None,
                    Some(message.clone()),
                )],
                Some(_) => Vec::new(),
            };
            (Err(anyhow::anyhow!(message)), summaries)
        }
    };
    let code = code_of(&result);
    let summary = document(code, &summaries);
    if !after(global, None, code, skipped, &summary) && code == 0 {
        result = Ok(Outcome::Partial);
    }
    // `monitor.prometheus_textfile`, from the runs just recorded (jobs,
    // hooks and the renewal are done); never fails the run.
    crate::commands::status::write_textfile(&config);
    if let Some(pinger) = &pinger {
        let code = code_of(&result);
        pinger.finish(
            code == 0 || code == 3,
            &document(code, &summaries).to_string(),
        );
    }
    result
}

/// `lease.renew_every_days`: the renewal, when due, after the jobs; its
/// problems count into the run's exit status as `check --leases`'s would.
fn renew(
    ctx: &Context<'_>,
    args: &BackupArgs,
    result: anyhow::Result<Outcome>,
) -> anyhow::Result<Outcome> {
    let queue_only = args.queue_only.is_some() || ctx.config().operation.queue_only;
    if queue_only {
        return result;
    }
    let renewal = renew_if_due(ctx, args.lock_wait);
    let renewal = match renewal {
        Ok(None) => return result,
        Ok(Some(outcome)) => Ok(outcome),
        Err(err) => Err(err.context("the lease renewal after the backup (lease.renew_every_days)")),
    };
    if jobs::rank(code_of(&renewal)) > jobs::rank(code_of(&result)) {
        return renewal;
    }
    if let Err(err) = &renewal {
        // The run's own (worse) error is what is returned and printed.
        eprintln!("lafs-backup: {}", exit::message(err));
    }
    result
}

/// One job of `jobs:` inside its own hooks; errors are printed naming it.
/// One summary per backup name: a dump job gives one per database.
pub(super) fn job(
    ctx: &Context<'_>,
    args: &BackupArgs,
    name: &str,
    hooks: &Hooks,
) -> Vec<JobSummary> {
    // `--plan` only prints: no hooks.
    let none = Hooks::default();
    let hooks = if args.plan { &none } else { hooks };
    let env = Env {
        job: Some(name),
        ..Env::default()
    };
    let gate = hooks::before(hooks, env);
    let skipped = matches!(gate, Gate::Skip(_));
    let mut summaries = match gate {
        Gate::Go if super::dumps::is_dump(ctx.config(), name) => {
            super::dumps::run(ctx.with_config(ctx.config().clone()), args, name)
        }
        Gate::Go => {
            let job_ctx = ctx.with_config(ctx.config().clone());
            let (result, summary) = run_job_summarized(job_ctx, args, Some(name));
            if let Err(err) = &result {
                eprintln!("lafs-backup: job {name}: {}", exit::message(err));
            }
            vec![summary]
        }
        Gate::Skip(why) => {
            announce_skip(ctx, Some(name), &why);
            vec![record_hook_gate(
                ctx.config(),
                args,
                Some(name),
                Some(why),
                None,
            )]
        }
        Gate::Fail(why) => {
            let message = format!("{why}; nothing was backed up");
            eprintln!("lafs-backup: job {name}: {message}");
            vec![record_hook_gate(
                ctx.config(),
                args,
                Some(name),
                None,
                Some(message),
            )]
        }
    };
    let code = summaries
        .iter()
        .map(|s| s.exit)
        .max_by_key(|code| jobs::rank(*code))
        .unwrap_or(0);
    let doc = document(code, &summaries);
    if !after(hooks, Some(name), code, skipped, &doc) && code == 0 {
        for summary in &mut summaries {
            summary.exit = Outcome::Partial.code();
        }
    }
    summaries
}

/// Runs `after` or `on_error`, then `finally`, with the summary file;
/// false if one of them failed.
fn after(
    hooks: &Hooks,
    job: Option<&str>,
    code: u8,
    skipped: bool,
    summary: &serde_json::Value,
) -> bool {
    if hooks.after.is_empty() && hooks.on_error.is_empty() && hooks.finally.is_empty() {
        return true;
    }
    let file = match SummaryFile::write(summary) {
        Ok(file) => Some(file),
        Err(e) => {
            tracing::warn!("could not write the summary file for the hooks: {e}");
            None
        }
    };
    let env = Env {
        job,
        exit: Some(code),
        summary: file.as_ref().map(SummaryFile::path),
    };
    let ended = match code {
        _ if skipped => Ended::Skipped,
        0 | 3 => Ended::Success,
        _ => Ended::Failure,
    };
    hooks::after(hooks, ended, env).is_empty()
}

/// Says that a `before` hook skipped a job (or the run), as a schedule
/// skip is said: a `skipped` line with `--json`, else one line on stderr.
fn announce_skip(ctx: &Context<'_>, job: Option<&str>, why: &str) {
    if ctx.json() {
        let mut line = serde_json::json!({"type": "skipped", "reason": why});
        if let (Some(job), Some(map)) = (job, line.as_object_mut()) {
            map.insert("job".into(), job.into());
        }
        println!("{line}");
    } else {
        match job {
            Some(job) => eprintln!("lafs-backup: job {job}: skipped: {why}"),
            None => eprintln!("lafs-backup: skipped: {why}"),
        }
    }
}

fn code_of(result: &anyhow::Result<Outcome>) -> u8 {
    match result {
        Ok(outcome) => outcome.code(),
        Err(err) => exit::code_for(err),
    }
}
