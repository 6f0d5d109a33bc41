//! btrfs send streams as stream backups (`docs/btrfs.md`): a job of
//! `kind: btrfs` (snapshot, send, store, expire, prune) and
//! `send --date DATE NAME`, btrsend's contract (the plan line on stdout,
//! the stream on stdin).
//!
//! Both plan from the members recorded in the cache (`backups.btrfs_date`,
//! `btrfs_parent`), store through the stream backups (`super::stream`,
//! whose record carries the member's facts, in the cache and in the
//! stream's index on the grid), and forget an expired chain through the
//! retention machinery (`forget`'s own path: catalog, cache, results).

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use jiff::civil::Date;

use super::stream::{self, Producer, Source};
use super::{JobReport, tag};
use crate::btrfs::frames::Frames;
use crate::btrfs::plan::{self, Kind, Member, Plan, Schedule};
use crate::btrfs::{Btrfs, SendStream, Snapshots};
use crate::cli::{BackupArgs, SendArgs};
use crate::commands::Context;
use crate::config::{Job, JobKind};
use crate::exit::{Outcome, UsageError};

/// One planned stream: the member it records and where its bytes come
/// from.
#[derive(Debug, Clone)]
pub(super) struct Planned {
    /// Its date and `c` or `i PARENT`.
    pub(super) member: Member,
    input: Input,
}

#[derive(Debug, Clone)]
enum Input {
    /// `btrfs send [-p PARENT] SNAPSHOT` (a job).
    Send {
        snapshot: PathBuf,
        parent: Option<PathBuf>,
    },
    /// Standard input (`send --date`).
    Stdin,
}

impl Planned {
    /// The source column of the result file and the catalog.
    pub(super) fn describe(&self) -> String {
        match &self.input {
            Input::Stdin => "-".to_owned(),
            Input::Send {
                snapshot,
                parent: Some(parent),
            } => format!("btrfs send -p {} {}", parent.display(), snapshot.display()),
            Input::Send {
                snapshot,
                parent: None,
            } => format!("btrfs send {}", snapshot.display()),
        }
    }

    /// Starts the stream: a `btrfs send`, or standard input. Either way
    /// its framing is checked as it passes: a stream cut short is a read
    /// error, so nothing is recorded.
    pub(super) fn start(&self) -> anyhow::Result<Box<dyn Producer>> {
        Ok(match &self.input {
            Input::Stdin => Box::new(StdinStream),
            Input::Send { snapshot, parent } => Box::new(Sending(Some(
                Btrfs::default().send(snapshot, parent.as_deref())?,
            ))),
        })
    }
}

/// `send --date`'s standard input.
struct StdinStream;

impl Producer for StdinStream {
    fn reader(&mut self) -> Box<dyn Read + '_> {
        Box::new(Frames::new(io::stdin().lock()))
    }

    fn finish(self: Box<Self>, _stored: bool) -> anyhow::Result<()> {
        Ok(())
    }
}

/// A running `btrfs send`: its end is its exit status (a failed send also
/// fails the read of its end, with the tool's stderr).
struct Sending(Option<SendStream>);

impl Producer for Sending {
    fn reader(&mut self) -> Box<dyn Read + '_> {
        match self.0.as_mut() {
            Some(send) => Box::new(Frames::new(send)),
            None => Box::new(io::empty()),
        }
    }

    fn finish(mut self: Box<Self>, stored: bool) -> anyhow::Result<()> {
        match self.0.take() {
            // Dropped unread, the send is killed: the storing error is the
            // one to report.
            Some(send) if stored => Ok(send.finish()?),
            _ => Ok(()),
        }
    }
}

/// `backup --plan` of a btrfs job: due or not, the plan line, and the
/// members the expiry would forget (`docs/btrfs.md`).
fn print_plan(ctx: &Context<'_>, name: &str, subvolume: &std::path::Path, plan: &Plan) {
    let send = plan.send.map(|k| k.to_string());
    let forget: Vec<String> = plan
        .forget
        .iter()
        .map(|d| d.strftime("%Y-%m-%d").to_string())
        .collect();
    let due = if send.is_some() { "due" } else { "not due" };
    if ctx.json() {
        println!(
            "{}",
            serde_json::json!({
                "type": "plan",
                "name": name,
                "source": subvolume.display().to_string(),
                "due": due,
                "send": send,
                "would_forget": forget,
            })
        );
        return;
    }
    let what = send.map(|s| format!(": send {s}")).unwrap_or_default();
    println!("{name} (btrfs {}): {due}{what}", subvolume.display());
    if !forget.is_empty() {
        println!(
            "  then forget the oldest chain, the members of {}",
            forget.join(", ")
        );
    }
}

/// The plan for `date` from the members recorded under `name`.
fn plan_for(
    ctx: &Context<'_>,
    lock_wait: Duration,
    name: &str,
    date: Date,
    schedule: &Schedule,
) -> anyhow::Result<Plan> {
    let cache = ctx.backup_cache(lock_wait)?;
    let members: Vec<Member> = cache
        .btrfs_members(name.as_bytes())?
        .into_iter()
        .map(|m| m.member)
        .collect();
    Ok(plan::plan(&members, date, schedule))
}

/// Forgets the members the plan expires (the oldest chain), through the
/// retention machinery.
fn expire(ctx: &Context<'_>, lock_wait: Duration, name: &str, plan: &Plan) -> anyhow::Result<()> {
    let Some(newest) = plan.forget.last() else {
        return Ok(());
    };
    let cache = ctx.recorded_cache(lock_wait)?;
    let chosen: Vec<_> = cache
        .btrfs_members(name.as_bytes())?
        .into_iter()
        .filter(|m| plan.forget.contains(&m.member.date))
        .collect();
    if chosen.is_empty() {
        return Ok(());
    }
    let ids: BTreeSet<i64> = chosen.iter().map(|m| m.id).collect();
    let generations: BTreeSet<u64> = chosen.iter().map(|m| m.generation).collect();
    let kept = cache
        .backups()?
        .iter()
        .filter(|b| b.name == name.as_bytes() && !ids.contains(&b.id))
        .count();
    eprintln!(
        "lafs-backup: {name}: the oldest btrfs chain expired (its newest member, {}, is \
         chain_lifetime_days old): forgetting its {} member(s)",
        newest.strftime("%Y-%m-%d"),
        ids.len()
    );
    crate::commands::forget::forget_chosen(ctx, cache, &ids, &generations, kept, false)
}

/// A job of `kind: btrfs` on the run's local date: checks the subvolume,
/// plans, and when a stream is due snapshots, sends and stores it; then
/// expires the oldest chain if its time has come, and deletes the
/// snapshots no longer needed as parents.
pub(super) fn run_job(
    ctx: &Context<'_>,
    args: &BackupArgs,
    job: Option<&str>,
    name: &str,
    config: &Job,
) -> anyhow::Result<JobReport> {
    let report = JobReport::new(name.as_bytes());
    let Some(keys) = &config.btrfs else {
        return Err(anyhow::anyhow!(
            "job {name}: internal error: a btrfs job without its keys"
        ));
    };
    if ctx.config().operation.queue_only {
        return Ok(report.not_a_run());
    }
    if args.plan {
        // What a run today would do; the cache is read, nothing changes.
        let date = crate::clock::now_local().date();
        let plan = plan_for(ctx, args.lock_wait, name, date, &keys.schedule)?;
        print_plan(ctx, name, &keys.subvolume, &plan);
        return Ok(report.not_a_run());
    }
    let btrfs = Btrfs::default();
    btrfs.check_subvolume(&keys.subvolume)?;
    let date = crate::clock::now_local().date();
    let plan = plan_for(ctx, args.lock_wait, name, date, &keys.schedule)?;
    let snapshots = Snapshots::new(btrfs, &keys.snapshot_dir, name);
    let report = match plan.send {
        None => nothing_due(ctx, job, report, name, date),
        Some(kind) => {
            let snapshot = snapshots.take(&keys.subvolume, date)?;
            let parent = match kind {
                Kind::Incremental { parent } => Some(snapshots.path(parent)),
                Kind::Complete => None,
            };
            if plan.complete_instead {
                eprintln!(
                    "lafs-backup: {name}: the only chain expires today: sending a complete \
                     stream instead of an incremental one against it"
                );
            }
            let planned = Planned {
                member: Member { date, kind },
                input: Input::Send { snapshot, parent },
            };
            stream::run(ctx, args, job, name, Source::Btrfs(planned))?
        }
    };
    expire(ctx, args.lock_wait, name, &plan)?;
    if plan.send.is_some() && report.generation.is_some() {
        let deleted = snapshots.prune(date)?;
        if !deleted.is_empty() {
            eprintln!(
                "lafs-backup: {name}: deleted {} snapshot(s) no longer needed as a parent",
                deleted.len()
            );
        }
    }
    Ok(report)
}

/// No stream is due: say so (a `skipped` line with `--json`), exit 0.
fn nothing_due(
    ctx: &Context<'_>,
    job: Option<&str>,
    mut report: JobReport,
    name: &str,
    date: Date,
) -> JobReport {
    let why = format!(
        "backup {name}: no btrfs stream is due on {}",
        date.strftime("%Y-%m-%d")
    );
    if ctx.json() {
        let line = serde_json::json!({"type": "skipped", "reason": why});
        println!("{}", tag(line, job));
    } else {
        eprintln!("lafs-backup: {why}");
    }
    report.skipped = Some(why);
    report
}

/// The arguments of a stream backup run on `send`'s behalf: the defaults,
/// built by the parser so that new backup flags need no change here.
fn backup_args(lock_wait: Duration) -> anyhow::Result<BackupArgs> {
    use clap::{Args as _, FromArgMatches as _};
    let matches =
        BackupArgs::augment_args(clap::Command::new("backup")).try_get_matches_from(["backup"])?;
    let mut args = BackupArgs::from_arg_matches(&matches)?;
    args.lock_wait = lock_wait;
    // btrsend's schedule is the schedule: a retention schedule does not
    // skip a stream whose plan line is already printed.
    args.ignore_schedule = true;
    Ok(args)
}

/// `send --date DATE NAME`: the plan line on stdout (flushed), then the
/// stream on stdin, stored; the expiry on every call.
pub(crate) fn send_date(ctx: Context<'_>, args: &SendArgs) -> anyhow::Result<Outcome> {
    let date = plan::parse_date(&args.date).ok_or_else(|| {
        UsageError(format!(
            "--date {:?}: not a date (give YYYY-MM-DD, e.g. 2000-01-07)",
            args.date
        ))
    })?;
    let name = args.name.as_str();
    if name.is_empty() || name.contains('/') || name.contains('\0') {
        return Err(UsageError(format!(
            "send {name:?}: a backup name must be non-empty, without '/'"
        ))
        .into());
    }
    if ctx.json() {
        return Err(UsageError(
            "send: --json cannot be used: stdout carries only the plan line (btrsend's contract)"
                .into(),
        )
        .into());
    }
    let job = ctx
        .config()
        .jobs
        .iter()
        .find(|j| j.name == name && j.kind == JobKind::Btrfs);
    let schedule = job
        .and_then(|j| j.btrfs.as_ref())
        .map(|b| b.schedule.clone())
        .unwrap_or_default();
    let job = job.map(|j| j.name.clone());
    // The root cap never goes to stdout: it is the plan line's.
    let mut config = ctx.config().clone();
    config.destination.result.print_to_stdout = false;
    let ctx = ctx.with_config(config);
    let backup_args = backup_args(args.lock_wait)?;

    let plan = plan_for(&ctx, args.lock_wait, name, date, &schedule)?;
    // Flushed before stdin is read: btrsend's wrapper starts `btrfs send`
    // once it has read the line.
    let mut out = io::stdout().lock();
    out.write_all(plan.line().as_bytes())?;
    out.flush()?;
    drop(out);

    let mut outcome = Outcome::Success;
    if let Some(kind) = plan.send {
        let planned = Planned {
            member: Member { date, kind },
            input: Input::Stdin,
        };
        let report = stream::run(
            &ctx,
            &backup_args,
            job.as_deref(),
            name,
            Source::Btrfs(planned),
        )?;
        outcome = report.outcome;
    }
    expire(&ctx, args.lock_wait, name, &plan)?;
    Ok(outcome)
}
