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
//!
//! The command is split along its seams: `targets` (what to check),
//! `tree` (the check of one tree), `leases` (`--leases` and the
//! stale-lease warning), `report` (what is printed, text or JSON) and
//! `templates` (`--format`). This module runs them.

mod leases;
mod report;
mod sample;
mod targets;
mod templates;
mod tree;

use std::io;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tracing::{error, info, warn};

use super::context::{Context, Gateway};
use super::show::LeaseWindow;
use crate::cli::CheckArgs;
use crate::config::Timeouts;
use crate::exit::{Outcome, UsageError};
use crate::selector;
use crate::tahoe::{CheckOptions, TahoeError};
pub(crate) use leases::renew_if_due;
use leases::{renew_leases, warn_stale};
use report::Reporter;
use sample::{Budget, verify_sample};
use targets::{least_recently_checked, resolve};
use templates::Template;
use tree::{Checked, check_target};

pub(crate) fn run(ctx: &Context<'_>, args: &CheckArgs) -> anyhow::Result<Outcome> {
    let config = ctx.config();
    let format = Template::parse(&args.format)
        .map_err(|e| UsageError(format!("--format {:?}: {e}", args.format)))?;
    let healthy_format = args
        .healthy_format
        .as_deref()
        .map(|t| Template::parse(t).map_err(|e| UsageError(format!("--healthy-format {t:?}: {e}"))))
        .transpose()?;
    let sample = args
        .verify_sample
        .as_deref()
        .map(|t| Budget::parse(t).map_err(|e| UsageError(format!("--verify-sample {e}"))))
        .transpose()?;
    if sample.is_some() && !args.targets.is_empty() {
        return Err(UsageError(
            "check --verify-sample verifies a sample of every recorded backup's objects and \
             takes no backups to check; leave out the CAP|NAME arguments"
                .into(),
        )
        .into());
    }
    if args.leases && !args.targets.is_empty() {
        return Err(UsageError(
            "check --leases renews the leases of every recorded backup and takes no \
             backups to check; leave out the CAP|NAME arguments"
                .into(),
        )
        .into());
    }
    if !args.leases
        && sample.is_none()
        && args.targets.is_empty()
        && !args.all
        && !args.least_recently_checked
    {
        return Err(UsageError(
            "nothing to check: give backups to check (root caps, backup names, or `-` to \
             read caps from stdin), or --all (every recorded backup), or -a (the one checked \
             longest ago), or --leases (renew the leases of every recorded backup's objects)"
                .into(),
        )
        .into());
    }
    let mut gateway = ctx.gateway(None)?;
    // --max-duration: no single request may wait longer than the whole run.
    let deadline = args.max_duration.map(Deadline::new);
    if let Some(limit) = args.max_duration {
        let clamped = clamp_timeouts(gateway.client.timeouts(), limit);
        gateway.client = gateway.client.with_timeouts(clamped);
    }
    let given = selector::targets(&args.targets, io::stdin().lock())
        .context("reading targets from stdin")?;

    let mut cache = ctx.recorded_cache(args.lock_wait)?;
    let client = &gateway.client;
    let report = Reporter {
        json: ctx.json(),
        to_stderr: args.error_output,
        format,
        healthy_format,
    };
    let older_than = LeaseWindow::now(&config.lease).cutoff;
    if args.leases {
        check_grid(&gateway)?;
        return renew_leases(
            client,
            &mut cache,
            config,
            &report,
            older_than,
            deadline.as_ref(),
        );
    }

    if let Some(budget) = sample {
        check_grid(&gateway)?;
        return verify_sample(client, &mut cache, &report, budget, deadline.as_ref());
    }

    let mut targets = resolve(&cache, args, &given)?;
    if targets.is_empty() {
        warn!(
            "the cache {} records no backups: nothing to check",
            cache.path().display()
        );
        return Ok(Outcome::Success);
    }
    if args.least_recently_checked {
        targets = least_recently_checked(targets).into_iter().collect();
    } else if deadline.is_some() {
        // A run that may stop early starts with what was checked longest
        // ago, so the next run continues with what this one did not reach.
        targets.sort_by_key(|t| t.ts_check.map_or((0, 0), |ts| (1, ts)));
    }
    check_grid(&gateway)?;
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
        match check_target(client, &mut cache, target, opts, &report, deadline.as_ref())? {
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

/// The gateway must answer and see storage servers; seeing only some of
/// them is worth a warning, since every object then looks unhealthy.
fn check_grid(gateway: &Gateway<'_>) -> anyhow::Result<()> {
    let (connected, known) = gateway.storage_servers()?;
    if connected < known {
        warn!(
            "the Tahoe gateway sees only {connected} of {known} storage servers: objects with \
             shares on the others will look unhealthy (and a repair places new shares on the \
             servers it sees)"
        );
    }
    Ok(())
}

/// The end of a `check --max-duration` run.
#[derive(Debug)]
pub(super) struct Deadline {
    pub(super) at: Instant,
    pub(super) started: Instant,
    pub(super) limit: Duration,
}

impl Deadline {
    pub(super) fn new(limit: Duration) -> Deadline {
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

    pub(super) fn passed(&self) -> bool {
        Instant::now() >= self.at
    }
}

/// The timeouts of `check --max-duration LIMIT`: no attempt of a request may
/// take longer than the whole run may (but at least a second, so that a
/// tiny limit still lets the gateway answer).
pub(super) fn clamp_timeouts(timeouts: &Timeouts, limit: Duration) -> Timeouts {
    let max = limit.as_secs_f64().max(1.0);
    match timeouts {
        Timeouts::None => Timeouts::Fixed(max),
        Timeouts::Fixed(secs) => Timeouts::Fixed(secs.min(max)),
        Timeouts::PerAttempt(list) => {
            Timeouts::PerAttempt(list.iter().map(|secs| secs.min(max)).collect())
        }
    }
}
