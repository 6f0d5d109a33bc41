//! Retention: which backups of one name a policy keeps, and what the next
//! backup of a scheduled policy would be (`docs/retention.md`).
//!
//! Pure arithmetic, no I/O: the caller builds one [`Candidate`] per backup
//! of a name from the cache, and acts on the [`Decision`]s. One module per
//! kind: `keep` (restic's buckets), `cycle` and `hanoi` (s3napback's
//! schedules), `tiers` (Tardis). The safety rails live here so every kind
//! gets them: the newest backup and pinned backups are always kept.

mod cycle;
mod hanoi;
mod keep;
mod tiers;

use std::fmt;

pub(crate) use cycle::CycleRules;
pub(crate) use hanoi::HanoiRules;
pub(crate) use keep::KeepRules;
pub(crate) use tiers::{TierLevel, TierRules};

/// Seconds in a day, for day counts (a "day" of `keep_days` is 24 hours).
const DAY: i64 = 86_400;

/// From the config key `retention` (or the `forget` flags): exactly one kind.
// One policy per run, never in bulk: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Policy {
    /// restic-style counts per period.
    Keep(KeepRules),
    /// s3napback's simple cycle of slots.
    Cycle(CycleRules),
    /// s3napback's Tower of Hanoi schedule.
    Hanoi(HanoiRules),
    /// Tardis's prioritised, labelled tiers.
    Tiers(TierRules),
}

/// One backup of ONE name, as the policy sees it (built from a cache row by
/// the caller).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Candidate {
    /// The backup's generation (unique per name; ties between equal times
    /// are broken by it).
    pub(crate) generation: u64,
    /// Start, unix seconds (a backup's time for `keep` is its start).
    pub(crate) start: i64,
    /// End, unix seconds.
    pub(crate) end: i64,
    /// The label a scheduled policy gave it.
    pub(crate) label: Option<String>,
    /// The tier's priority (`tiers` only).
    pub(crate) priority: Option<i64>,
    /// Pinned: no policy forgets it.
    pub(crate) pinned: bool,
}

/// Whether one backup is kept, and why.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decision {
    /// The backup's generation.
    pub(crate) generation: u64,
    /// Kept (true) or to be forgotten.
    pub(crate) keep: bool,
    /// Why, for the report ("daily 2026-11-30", "slot 3", "pinned",
    /// "latest", "no rule keeps it", ...).
    pub(crate) reasons: Vec<String>,
}

/// What a backup of this name made now would be, for schedules.
// The names are the interface the schedules code against (`Due::NotDue`).
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Due {
    /// A backup is due; it gets this label and priority.
    Due {
        /// The label (`slot-3-DIFF`, `disc-2`, `Weekly-2024-01`; none for `keep`).
        label: Option<String>,
        /// The tier's priority (`tiers` only).
        priority: Option<i64>,
    },
    /// The schedule has no backup today.
    NotDue,
    /// Today's slot already has a backup made on this due day.
    AlreadyDone,
}

/// Which backups of one name to keep, newest first (by start, then
/// generation). The order of `candidates` does not matter. The newest
/// backup (highest generation) is always kept ("latest"), and so are pinned
/// ones ("pinned"). `tz` is the local time zone for calendar arithmetic.
pub(crate) fn decide(
    policy: &Policy,
    candidates: &[Candidate],
    tz: &jiff::tz::TimeZone,
) -> Vec<Decision> {
    let sorted = newest_first(candidates);
    let mut decisions = match policy {
        Policy::Keep(rules) => keep::decide(rules, &sorted, tz),
        Policy::Cycle(rules) => cycle::decide(rules, &sorted),
        Policy::Hanoi(rules) => hanoi::decide(rules, &sorted),
        Policy::Tiers(rules) => tiers::decide(rules, &sorted, tz),
    };
    let latest = candidates.iter().map(|c| c.generation).max();
    for (decision, candidate) in decisions.iter_mut().zip(&sorted) {
        for (rail, applies) in [
            ("pinned", candidate.pinned),
            ("latest", Some(candidate.generation) == latest),
        ] {
            if applies {
                if !decision.keep {
                    // The policy's reasons to forget no longer explain anything.
                    decision.keep = true;
                    decision.reasons.clear();
                }
                decision.reasons.push(rail.to_owned());
            }
        }
    }
    decisions
}

/// What a backup made at `now` would be: `cycle` and `hanoi` follow their
/// schedule; `keep` and `tiers` are always due (`tiers` with the label and
/// priority the backup gets).
pub(crate) fn due(
    policy: &Policy,
    now: jiff::Timestamp,
    existing: &[Candidate],
    tz: &jiff::tz::TimeZone,
) -> Due {
    match policy {
        Policy::Keep(_) => Due::Due {
            label: None,
            priority: None,
        },
        Policy::Cycle(rules) => cycle::due(rules, now, existing, tz),
        Policy::Hanoi(rules) => hanoi::due(rules, now, existing),
        Policy::Tiers(rules) => tiers::due(rules, now, existing, tz),
    }
}

/// A policy is empty when it could forget everything: `keep` with no rule set.
pub(crate) fn is_empty(policy: &Policy) -> bool {
    match policy {
        Policy::Keep(rules) => rules.is_empty(),
        Policy::Cycle(_) | Policy::Hanoi(_) | Policy::Tiers(_) => false,
    }
}

/// The most `hanoi` discs (for the config's check).
pub(crate) fn hanoi_max_discs() -> u32 {
    hanoi::MAX_DISCS
}

/// A `tiers` label format rendered at a unix time (UTC), `None` when the
/// format is invalid (for the config's check).
pub(crate) fn render_label(format: &str, secs: i64) -> Option<String> {
    tiers::render(format, secs, &jiff::tz::TimeZone::UTC)
}

/// The candidates sorted newest first: by start, then generation.
fn newest_first(candidates: &[Candidate]) -> Vec<&Candidate> {
    let mut sorted: Vec<&Candidate> = candidates.iter().collect();
    sorted.sort_by_key(|c| std::cmp::Reverse((c.start, c.generation)));
    sorted
}

/// Decisions for policies that keep the newest backup of each label of
/// their kind (`cycle`, `hanoi`). `slot` says whether a label is of the
/// kind, and names its slot for the report; `always` keeps every backup of
/// a slot with its reason (`hanoi`'s `archive_oldest`).
fn newest_per_label(
    sorted: &[&Candidate],
    slot: impl Fn(&str) -> Option<u32>,
    always: impl Fn(u32) -> Option<&'static str>,
) -> Vec<Decision> {
    let mut newest: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    sorted
        .iter()
        .map(|c| {
            let Some((label, s)) = c.label.as_deref().and_then(|l| Some((l, slot(l)?))) else {
                return Decision::kept(c, "not labelled by this policy");
            };
            if let Some(reason) = always(s) {
                return Decision::kept(c, reason);
            }
            match newest.get(label) {
                // Newest first: the first backup seen with a label is its newest.
                None => {
                    newest.insert(label, c.generation);
                    Decision::kept(c, format!("slot {s}"))
                }
                Some(g) => {
                    Decision::forgotten(c, format!("slot {s} has a newer backup (generation {g})"))
                }
            }
        })
        .collect()
}

impl Decision {
    fn kept(c: &Candidate, reason: impl Into<String>) -> Self {
        Self {
            generation: c.generation,
            keep: true,
            reasons: vec![reason.into()],
        }
    }

    fn forgotten(c: &Candidate, reason: impl Into<String>) -> Self {
        Self {
            generation: c.generation,
            keep: false,
            reasons: vec![reason.into()],
        }
    }
}

/// A `within` duration: years, months, days and hours, as restic writes it
/// (`14d`, `6m`, `1y2m3d4h`), measured back from the newest backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct KeepDuration {
    pub(crate) years: i64,
    pub(crate) months: i64,
    pub(crate) days: i64,
    pub(crate) hours: i64,
}

impl KeepDuration {
    /// restic treats a zero duration as an unset rule.
    pub(crate) fn is_zero(&self) -> bool {
        *self == Self::default()
    }

    /// The instant this duration before `latest` (calendar arithmetic in `tz`).
    pub(crate) fn before(&self, latest: i64, tz: &jiff::tz::TimeZone) -> Option<jiff::Timestamp> {
        let zoned = jiff::Timestamp::from_second(latest)
            .ok()?
            .to_zoned(tz.clone());
        let span = jiff::Span::new()
            .try_years(self.years)
            .ok()?
            .try_months(self.months)
            .ok()?
            .try_days(self.days)
            .ok()?
            .try_hours(self.hours)
            .ok()?;
        Some(zoned.checked_sub(span).ok()?.timestamp())
    }
}

impl std::str::FromStr for KeepDuration {
    type Err = String;

    /// restic's syntax: one or more `<digits><unit>` with units y, m, d, h.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid duration {s:?}: expected numbers with units y, m, d, h such as 14d, 6m or 1y2m3d4h"
            )
        };
        let mut d = Self::default();
        let mut digits = String::new();
        for ch in s.chars() {
            if ch.is_ascii_digit() {
                digits.push(ch);
                continue;
            }
            let n: i64 = digits.parse().map_err(|_| bad())?;
            digits.clear();
            let field = match ch {
                'y' => &mut d.years,
                'm' => &mut d.months,
                'd' => &mut d.days,
                'h' => &mut d.hours,
                _ => return Err(bad()),
            };
            *field = field.checked_add(n).ok_or_else(bad)?;
        }
        if !digits.is_empty() || s.is_empty() {
            return Err(bad());
        }
        Ok(d)
    }
}

impl fmt::Display for KeepDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut any = false;
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
                any = true;
            }
        }
        if !any {
            f.write_str("0h")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
