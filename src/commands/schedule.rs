//! Whether `backup` runs today, under the configured retention schedule
//! (`cycle`, `hanoi`; `keep` and `tiers` are always due), the label the new
//! backup gets, and `backup --plan`. Decided from the entry cache alone,
//! before any gateway is contacted, so a day that is not due costs nothing.
//! `docs/retention.md` has the rules.

use std::path::Path;

use super::Context;
use super::forget::candidate;
use super::show::{name as show_name, time as iso_time};
use std::time::Duration;

use crate::cache::{Cache, CacheError};
use crate::clock;
use crate::retention::{self, Candidate, Due, Policy};

/// What the schedule says about a backup now.
pub(crate) enum Verdict {
    /// Back up; the new backup gets this label (and priority).
    Run {
        label: Option<String>,
        priority: Option<i64>,
    },
    /// Not today: the message says why (exit 0, nothing contacted).
    Skip(String),
}

/// The retention policy of the config, if any.
pub(crate) fn policy<'c>(ctx: &'c Context<'_>) -> Option<&'c Policy> {
    ctx.config()
        .retention
        .as_ref()
        .and_then(|r| r.policy.as_ref())
}

/// The recorded backups of `name`, as the policy sees them (none when the
/// cache does not exist yet). Read without the lock; with `upgrade` (the
/// lock wait), a cache of an older schema is upgraded here, as the backup
/// about to run would (a reader cannot, and the schedule must not stop the
/// one command that upgrades); `--plan`, which changes nothing, refuses it.
fn existing(
    ctx: &Context<'_>,
    name: &[u8],
    upgrade: Option<Duration>,
) -> anyhow::Result<Vec<Candidate>> {
    let Some(path) = ctx.config().source.entry_cache.path.as_deref() else {
        return Ok(Vec::new());
    };
    if !path.exists() {
        return Ok(Vec::new());
    }
    let cache = match Cache::open_read_only(path) {
        Err(CacheError::NeedsUpgrade { .. }) if upgrade.is_some() => {
            ctx.backup_cache(upgrade.unwrap_or_default())?
        }
        other => other?,
    };
    Ok(cache
        .backups()?
        .iter()
        .filter(|b| b.name == name)
        .map(candidate)
        .collect())
}

/// The verdict for a backup of `name` now; `ignore` (`--ignore-schedule`)
/// runs a day the schedule skips (the backup then carries no label, so no
/// policy of this kind ever forgets it).
pub(crate) fn verdict(
    ctx: &Context<'_>,
    name: &[u8],
    ignore: bool,
    lock_wait: Duration,
) -> anyhow::Result<Verdict> {
    let Some(policy) = policy(ctx) else {
        return Ok(Verdict::Run {
            label: None,
            priority: None,
        });
    };
    // `keep` is always due and labels nothing: no need to read the cache.
    if matches!(policy, Policy::Keep(_)) {
        return Ok(Verdict::Run {
            label: None,
            priority: None,
        });
    }
    let tz = jiff::tz::TimeZone::system();
    let existing = existing(ctx, name, Some(lock_wait))?;
    let now = clock::now();
    let due = retention::due(policy, now, &existing, &tz);
    if ignore && !matches!(due, Due::Due { .. }) {
        return Ok(Verdict::Run {
            label: None,
            priority: None,
        });
    }
    Ok(match due {
        Due::Due { label, priority } => Verdict::Run { label, priority },
        Due::NotDue => Verdict::Skip(format!(
            "not due: the retention schedule makes no backup of {} on {}",
            show_name(name),
            now.to_zoned(tz).strftime("%Y-%m-%d")
        )),
        Due::AlreadyDone => Verdict::Skip(format!(
            "already done: today's backup of {} is recorded",
            show_name(name)
        )),
    })
}

/// `backup --plan`: whether a backup is due, its label, and what the policy
/// would forget after it. Changes nothing, contacts no gateway.
pub(crate) fn print_plan(ctx: &Context<'_>, source: &Path, name: &[u8]) -> anyhow::Result<()> {
    let json = ctx.json();
    let tz = jiff::tz::TimeZone::system();
    let now = clock::now();
    let mut existing = existing(ctx, name, None)?;
    let policy = policy(ctx);
    let due = match policy {
        Some(p) => retention::due(p, now, &existing, &tz),
        None => Due::Due {
            label: None,
            priority: None,
        },
    };
    let (state, label, priority) = match &due {
        Due::Due { label, priority } => ("due", label.clone(), *priority),
        Due::NotDue => ("not due", None, None),
        Due::AlreadyDone => ("already done", None, None),
    };
    // What the policy would forget once this backup is recorded.
    let mut would_forget = Vec::new();
    if let (Some(p), Due::Due { .. }) = (policy, &due) {
        let next = existing.iter().map(|c| c.generation).max().unwrap_or(0) + 1;
        existing.push(Candidate {
            generation: next,
            start: now.as_second(),
            end: now.as_second(),
            label: label.clone(),
            priority,
            pinned: false,
        });
        if !retention::is_empty(p) {
            for d in retention::decide(p, &existing, &tz) {
                if !d.keep
                    && let Some(c) = existing.iter().find(|c| c.generation == d.generation)
                {
                    would_forget.push((c.generation, c.end, d.reasons.join(", ")));
                }
            }
        }
    }
    if json {
        let forget: Vec<_> = would_forget
            .iter()
            .map(|(g, end, why)| {
                serde_json::json!({"generation": g, "finished": iso_time(*end), "reasons": why})
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "type": "plan",
                "name": show_name(name),
                "source": source.display().to_string(),
                "due": state,
                "label": label,
                "priority": priority,
                "would_forget": forget,
            })
        );
    } else {
        let label_text = label
            .as_deref()
            .map(|l| format!(", label {l}"))
            .unwrap_or_default();
        println!(
            "{} ({}): {state}{label_text}",
            show_name(name),
            source.display()
        );
        for (g, end, why) in &would_forget {
            println!(
                "  then forget generation {g} (finished {}): {why}",
                iso_time(*end)
            );
        }
    }
    Ok(())
}
