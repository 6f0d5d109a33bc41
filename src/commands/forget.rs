//! `forget`: apply a retention policy (`docs/retention.md`) to the recorded
//! backups of each name, and forget the ones it does not keep, through the
//! same steps as `cleanup` (result-directory links, result-file lines, the
//! entry cache in one transaction). Objects a kept backup still reaches are
//! never forgotten. Shares are never deleted: the storage servers reclaim
//! them when their leases lapse, and only where lease expiry is enabled.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context as _;
use serde_json::json;

use super::Context;
use super::cleanup::{Carried, carry_out};
use super::show::{name as show_name, plural, time as iso_time};
use crate::btrfs;
use crate::cache::{BackupRow, Cache, RecordedMember};
use crate::cli::ForgetArgs;
use crate::exit::{Outcome, UsageError};
use crate::retention::{self, Candidate, Decision, Policy};
use crate::tahoe::Cap;

pub(crate) fn run(ctx: &Context<'_>, args: &ForgetArgs) -> anyhow::Result<Outcome> {
    let policies = policies_for(ctx, args)?;
    let cache = ctx.recorded_cache(args.lock_wait)?;
    let rows = cache.backups()?;
    let names = if args.names.is_empty() {
        None
    } else {
        Some(pick_names(&rows, &args.names)?)
    };
    apply(ctx, cache, &policies, names.as_ref(), args.dry_run)?;
    Ok(Outcome::Success)
}

/// Which policy applies to which backup name.
pub(crate) struct Policies {
    /// For every name without a policy of its own.
    default: Option<Policy>,
    /// A job's own `retention` (`None`: that job has no policy), by name.
    by_name: BTreeMap<Vec<u8>, Option<Policy>>,
    /// A dump job's own `retention`, for its `<job>.<database>` names.
    dump_jobs: Vec<(Vec<u8>, Option<Policy>)>,
}

impl Policies {
    /// One policy for every name.
    pub(crate) fn single(policy: Policy) -> Policies {
        Policies {
            default: Some(policy),
            by_name: BTreeMap::new(),
            dump_jobs: Vec::new(),
        }
    }

    fn for_name(&self, name: &[u8]) -> Option<&Policy> {
        if let Some(own) = self.by_name.get(name) {
            return own.as_ref();
        }
        // A dump job's backups are `<job>.<database>`: the longest job name
        // that prefixes the name (with its dot) gives the policy.
        let dump = self
            .dump_jobs
            .iter()
            .filter(|(job, _)| {
                name.len() > job.len() && name.starts_with(job) && name[job.len()] == b'.'
            })
            .max_by_key(|(job, _)| job.len());
        match dump {
            Some((_, own)) => own.as_ref(),
            None => self.default.as_ref(),
        }
    }
}

/// The policies: the `--keep-*` flags, for every name, when any is given;
/// else each job's own `retention` for its name and the config's
/// top-level `retention` for every other name. An empty policy (one that
/// could forget everything but the newest backup), or none at all, is
/// refused unless `--unsafe-allow-forget-all`.
fn policies_for(ctx: &Context<'_>, args: &ForgetArgs) -> anyhow::Result<Policies> {
    if let Some(rules) = keep_flags(args)? {
        let policy = Policy::Keep(rules);
        if retention::is_empty(&policy) && !args.unsafe_allow_forget_all {
            return Err(empty_policy().into());
        }
        return Ok(Policies::single(policy));
    }
    let config = ctx.config();
    let default = config.retention.as_ref().and_then(|r| r.policy.clone());
    let by_name: BTreeMap<Vec<u8>, Option<Policy>> = config
        .jobs
        .iter()
        .filter_map(|j| {
            let own = j.retention.as_ref()?;
            Some((
                j.name.as_bytes().to_vec(),
                own.as_ref().and_then(|r| r.policy.clone()),
            ))
        })
        .collect();
    let all = default.iter().chain(by_name.values().flatten());
    let mut any = false;
    for p in all {
        any = true;
        if retention::is_empty(p) && !args.unsafe_allow_forget_all {
            return Err(empty_policy().into());
        }
    }
    if !any {
        if !args.unsafe_allow_forget_all {
            return Err(empty_policy().into());
        }
        return Ok(Policies::single(Policy::Keep(
            retention::KeepRules::default(),
        )));
    }
    let dump_jobs = config
        .jobs
        .iter()
        .filter(|j| j.kind == crate::config::JobKind::Dump)
        .filter_map(|j| {
            Some((
                j.name.as_bytes().to_vec(),
                by_name.get(j.name.as_bytes())?.clone(),
            ))
        })
        .collect();
    Ok(Policies {
        default,
        by_name,
        dump_jobs,
    })
}

/// The `--keep-*` flags as a `keep` policy, `None` when none is given.
fn keep_flags(args: &ForgetArgs) -> anyhow::Result<Option<retention::KeepRules>> {
    let counts = [
        ("--keep-last", args.keep_last),
        ("--keep-hourly", args.keep_hourly),
        ("--keep-daily", args.keep_daily),
        ("--keep-weekly", args.keep_weekly),
        ("--keep-monthly", args.keep_monthly),
        ("--keep-yearly", args.keep_yearly),
    ];
    if counts.iter().all(|(_, n)| n.is_none()) && args.keep_within.is_none() {
        return Ok(None);
    }
    for (flag, n) in counts {
        if n.is_some_and(|n| n < -1) {
            return Err(UsageError(format!("{flag}: a count is -1 (all) or more")).into());
        }
    }
    let within = match &args.keep_within {
        Some(text) => Some(text.parse::<retention::KeepDuration>().map_err(|e| {
            UsageError(format!(
                "--keep-within {}: {e}",
                crate::selector::quoted(text)
            ))
        })?),
        None => None,
    };
    Ok(Some(retention::KeepRules {
        last: args.keep_last.unwrap_or(0),
        hourly: args.keep_hourly.unwrap_or(0),
        daily: args.keep_daily.unwrap_or(0),
        weekly: args.keep_weekly.unwrap_or(0),
        monthly: args.keep_monthly.unwrap_or(0),
        yearly: args.keep_yearly.unwrap_or(0),
        within,
        ..retention::KeepRules::default()
    }))
}

fn empty_policy() -> UsageError {
    UsageError(
        "no retention policy: set `retention` in the config (docs/retention.md) or give \
         --keep-* flags; a policy that keeps nothing would forget every backup but the newest \
         of each name (--unsafe-allow-forget-all does that on purpose)"
            .into(),
    )
}

/// The raw names the arguments name (raw or escaped as `list` prints
/// them); an unknown one is a usage error naming it.
fn pick_names(rows: &[BackupRow], given: &[String]) -> anyhow::Result<BTreeSet<Vec<u8>>> {
    let mut names = BTreeSet::new();
    for g in given {
        let found: BTreeSet<Vec<u8>> = rows
            .iter()
            .filter(|r| r.name == g.as_bytes() || show_name(&r.name) == *g)
            .map(|r| r.name.clone())
            .collect();
        if found.is_empty() {
            return Err(UsageError(format!(
                "no backup named {} in the entry cache (`lafs-backup list` shows the names)",
                crate::selector::quoted(g)
            ))
            .into());
        }
        names.extend(found);
    }
    Ok(names)
}

/// Applies the policy of each name in `names` (all names when `None`) to
/// its backups, prints every decision and a summary, and forgets what it
/// does not keep (nothing when `dry`). A name without a policy keeps all.
pub(crate) fn apply(
    ctx: &Context<'_>,
    cache: Cache,
    policies: &Policies,
    names: Option<&BTreeSet<Vec<u8>>>,
    dry: bool,
) -> anyhow::Result<()> {
    let json = ctx.json();
    let tz = jiff::tz::TimeZone::system();
    let rows = cache.backups()?;
    let mut by_name: BTreeMap<&[u8], Vec<&BackupRow>> = BTreeMap::new();
    for r in &rows {
        if names.is_none_or(|n| n.contains(&r.name)) {
            by_name.entry(r.name.as_slice()).or_default().push(r);
        }
    }
    let mut forget_ids = BTreeSet::new();
    let mut generations = BTreeSet::new();
    let mut kept = 0usize;
    for (name, backups) in &by_name {
        let candidates: Vec<Candidate> = backups.iter().map(|b| candidate(b)).collect();
        let decisions = match policies.for_name(name) {
            Some(policy) => retention::decide(policy, &candidates, &tz),
            None => candidates
                .iter()
                .map(|c| Decision {
                    generation: c.generation,
                    keep: true,
                    reasons: vec!["no retention policy for this name".into()],
                })
                .collect(),
        };
        let by_generation: BTreeMap<u64, &Decision> =
            decisions.iter().map(|d| (d.generation, d)).collect();
        // A btrfs stream is received on top of its parent's: the parents
        // of what the policy keeps are kept too (`docs/btrfs.md`).
        let members = cache.btrfs_members(name)?;
        let parents = needed_parents(&members, |m| {
            by_generation.get(&m.generation).is_none_or(|d| d.keep)
        });
        for b in backups {
            // A backup the policy did not mention is kept: forgetting needs
            // a reason.
            let mut keep = by_generation.get(&b.generation).is_none_or(|d| d.keep);
            let mut reasons: Vec<String> = by_generation
                .get(&b.generation)
                .map(|d| d.reasons.clone())
                .unwrap_or_else(|| vec!["no decision (kept)".into()]);
            if !keep && parents.contains(&b.id) {
                keep = true;
                reasons
                    .push("the parent of a kept btrfs stream (receiving it needs this one)".into());
            }
            report(json, dry, name, b, keep, &reasons);
            if keep {
                kept += 1;
            } else {
                forget_ids.insert(b.id);
                generations.insert(b.generation);
            }
        }
    }
    forget_chosen(ctx, cache, &forget_ids, &generations, kept, dry)
}

/// The btrfs members (ids) that members `kept` says are kept need as
/// parents, directly or through other parents: a chain is received from
/// its `c` up, so forgetting a parent breaks every member after it.
fn needed_parents(
    members: &[RecordedMember],
    kept: impl Fn(&RecordedMember) -> bool,
) -> BTreeSet<i64> {
    let by_date: BTreeMap<_, &RecordedMember> =
        members.iter().map(|m| (m.member.date, m)).collect();
    let mut needed = BTreeSet::new();
    let mut todo: Vec<&RecordedMember> = members.iter().filter(|m| kept(m)).collect();
    while let Some(m) = todo.pop() {
        if let btrfs::plan::Kind::Incremental { parent } = m.member.kind
            && let Some(p) = by_date.get(&parent)
            && needed.insert(p.id)
        {
            todo.push(p);
        }
    }
    needed
}

/// Forgets the backups `forget_ids` (of `generations`) that a policy, or
/// the btrfs chain expiry (`docs/btrfs.md`), chose, with `kept` kept:
/// the catalog, the cache, the result targets, and the summary.
pub(crate) fn forget_chosen(
    ctx: &Context<'_>,
    cache: Cache,
    forget_ids: &BTreeSet<i64>,
    generations: &BTreeSet<u64>,
    kept: usize,
    dry: bool,
) -> anyhow::Result<()> {
    let json = ctx.json();
    let plan = cache.plan_forget(forget_ids, generations, None)?;
    let unreferenced: Vec<&str> = plan.unreferenced().collect();
    let bytes: u64 = unreferenced
        .iter()
        .filter_map(|c| Cap::parse(c).ok().and_then(|c| c.size()))
        .sum();
    let last_renewal = cache.last_lease_time(&unreferenced)?;
    let lease_days = ctx.config().lease.duration_days;
    let lease_secs = i64::try_from(lease_days)
        .unwrap_or(i64::MAX)
        .saturating_mul(86_400);
    let reclaimable = last_renewal.map(|t| t.saturating_add(lease_secs));
    let forgotten = plan.backups.len();
    let catalog = unlink_from_catalog(ctx, &cache, &plan.backups, dry)?;
    let Carried {
        result_lines,
        links,
    } = carry_out(ctx, cache, &plan, dry)?;
    if json {
        let mut line = json!({
            "type": "retention",
            "dry_run": dry,
            "kept": kept,
            "forgotten": forgotten,
            "objects": unreferenced.len(),
            "bytes": bytes,
            "reclaimable_after": reclaimable.map(iso_time),
            "result_lines": result_lines,
            "links": links,
        });
        // Only with a catalog: the line is otherwise as it always was.
        if let (Some(n), Some(map)) = (catalog, line.as_object_mut()) {
            map.insert("catalog_links".into(), json!(n));
        }
        println!("{line}");
    } else {
        let verb = if dry { "would forget" } else { "forgot" };
        let mut line = format!(
            "lafs-backup: forget: {verb} {forgotten} backup{}, kept {kept}; {} object{} \
             ({}) no longer referenced by any kept backup",
            plural(forgotten),
            unreferenced.len(),
            plural(unreferenced.len()),
            crate::progress::human_bytes(bytes),
        );
        match reclaimable {
            Some(t) => line.push_str(&format!(
                ", reclaimable after {} on servers with lease expiry enabled (last lease \
                 renewal + lease.duration_days {lease_days})",
                iso_time(t)
            )),
            None => line.push_str(", none of them stored on the grid"),
        }
        line.push_str(if dry {
            ". Nothing was changed (--dry-run)."
        } else {
            ". No share is deleted: the storage servers reclaim space when leases lapse."
        });
        eprintln!("{line}");
    }
    Ok(())
}

/// Unlinks the forgotten backups from the recovery catalog
/// (`destination.catalog`, docs/recovery.md) before anything else changes,
/// so that a failure leaves them all recorded and running `forget` again
/// completes it. Returns how many dated links went (`None` without a
/// catalog; 0 when `dry`: the catalog is not read then).
fn unlink_from_catalog(
    ctx: &Context<'_>,
    cache: &Cache,
    forgotten: &[BackupRow],
    dry: bool,
) -> anyhow::Result<Option<usize>> {
    let setting = ctx.config().destination.catalog.as_deref();
    if setting.is_none() {
        return Ok(None);
    }
    if dry || forgotten.is_empty() {
        return Ok(Some(0));
    }
    unlink_configured(ctx, cache, setting, forgotten).map(Some)
}

fn unlink_configured(
    ctx: &Context<'_>,
    cache: &Cache,
    setting: Option<&str>,
    forgotten: &[BackupRow],
) -> anyhow::Result<usize> {
    let Some(catalog) = crate::catalog::configured(setting, cache)? else {
        return Ok(0);
    };
    let gateway = ctx.gateway(None)?;
    let n = crate::catalog::remove(&gateway.client, &catalog, forgotten).context(
        "unlinking the forgotten backups from the recovery catalog (destination.catalog); \
         nothing was forgotten yet",
    )?;
    if n > 0 || !ctx.json() {
        eprintln!(
            "lafs-backup: recovery catalog: unlinked {n} backup{}",
            plural(n)
        );
    }
    Ok(n)
}

/// A recorded backup as the policy sees it.
pub(crate) fn candidate(b: &BackupRow) -> Candidate {
    Candidate {
        generation: b.generation,
        start: b.ts_start,
        end: b.ts_end,
        label: b.label.clone(),
        priority: b.priority,
        pinned: b.pinned,
    }
}

/// One decision: stderr text, or a `decision` JSON line.
fn report(json: bool, dry: bool, name: &[u8], b: &BackupRow, keep: bool, reasons: &[String]) {
    if json {
        println!(
            "{}",
            json!({
                "type": "decision",
                "name": show_name(name),
                "generation": b.generation,
                "finished": iso_time(b.ts_end),
                "label": b.label,
                "keep": keep,
                "reasons": reasons,
            })
        );
    } else {
        let verb = match (keep, dry) {
            (true, _) => "keep",
            (false, true) => "would forget",
            (false, false) => "forget",
        };
        eprintln!(
            "lafs-backup: {verb} {} generation {} (finished {}{}): {}",
            show_name(name),
            b.generation,
            iso_time(b.ts_end),
            b.label
                .as_deref()
                .map(|l| format!(", {l}"))
                .unwrap_or_default(),
            reasons.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btrfs::plan::{Kind, Member};

    fn member(id: i64, day: &str, parent: Option<&str>) -> RecordedMember {
        let date = |s: &str| s.parse().unwrap();
        RecordedMember {
            id,
            generation: id as u64,
            member: Member {
                date: date(day),
                kind: match parent {
                    None => Kind::Complete,
                    Some(p) => Kind::Incremental { parent: date(p) },
                },
            },
        }
    }

    #[test]
    fn the_parents_of_kept_btrfs_members_are_kept() {
        // Chain 1: 1 <- 2 <- 3; chain 2: 4 <- 5.
        let members = [
            member(1, "2000-01-01", None),
            member(2, "2000-01-07", Some("2000-01-01")),
            member(3, "2000-01-14", Some("2000-01-07")),
            member(4, "2000-02-01", None),
            member(5, "2000-02-07", Some("2000-02-01")),
        ];
        let ids = |kept: &[i64]| {
            needed_parents(&members, |m| kept.contains(&m.id))
                .into_iter()
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&[3]), [1, 2]);
        assert_eq!(ids(&[2, 5]), [1, 4]);
        assert_eq!(ids(&[1, 4]), Vec::<i64>::new());
        assert_eq!(ids(&[]), Vec::<i64>::new());
    }
}
