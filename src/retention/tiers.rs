//! `tiers`: Tardis's labelled tiers. A new backup takes the first level
//! whose format, rendered at its start (local time), no backup of the name
//! has yet; after it, every backup of priority ≤ its own that ended more
//! than its level's `keep_days` before it is forgotten.

use jiff::tz::TimeZone;

use super::{Candidate, DAY, Decision, Due};

/// The label format when every level's label is taken (priority 0).
pub(crate) const FALLBACK_FORMAT: &str = "Backup_%Y-%m-%d_%H:%M:%S";

/// One tier.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TierLevel {
    /// strftime format of the label (`Weekly-%Y-%U`).
    pub(crate) format: String,
    /// Higher outlives lower.
    pub(crate) priority: i64,
    /// Days a backup of this tier lets lower-or-equal ones live; 0 = forever.
    pub(crate) keep_days: u32,
}

/// The `tiers` settings: levels in the order labels are tried.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TierRules {
    pub(crate) levels: Vec<TierLevel>,
}

impl Default for TierRules {
    fn default() -> Self {
        let level = |format: &str, priority, keep_days| TierLevel {
            format: format.to_owned(),
            priority,
            keep_days,
        };
        Self {
            levels: vec![
                level("Monthly-%Y-%m", 40, 0),
                level("Weekly-%Y-%U", 20, 180),
                level("Daily-%Y-%m-%d", 10, 30),
            ],
        }
    }
}

/// A format rendered at a unix time, `None` when the format is invalid.
pub(crate) fn render(format: &str, secs: i64, tz: &TimeZone) -> Option<String> {
    let zoned = jiff::Timestamp::from_second(secs)
        .ok()?
        .to_zoned(tz.clone());
    jiff::fmt::strtime::format(format, &zoned).ok()
}

/// The tier name in reports: the format's text before its first `%`.
fn tier_name(format: &str) -> &str {
    let head = format.split('%').next().unwrap_or(format);
    let name = head.trim_end_matches(['-', '_', ' ']);
    if name.is_empty() { format } else { name }
}

pub(super) fn due(
    rules: &TierRules,
    now: jiff::Timestamp,
    existing: &[Candidate],
    tz: &TimeZone,
) -> Due {
    let taken = |label: &str| existing.iter().any(|c| c.label.as_deref() == Some(label));
    let secs = now.as_second();
    for level in &rules.levels {
        if let Some(label) = render(&level.format, secs, tz).filter(|l| !taken(l)) {
            return Due::Due {
                label: Some(label),
                priority: Some(level.priority),
            };
        }
    }
    Due::Due {
        label: render(FALLBACK_FORMAT, secs, tz),
        priority: Some(0),
    }
}

/// The level a tiered backup was labelled by: the one whose format renders
/// its label at its start, else the first with its priority.
fn level_of<'r>(rules: &'r TierRules, c: &Candidate, tz: &TimeZone) -> Option<&'r TierLevel> {
    let label = c.label.as_deref()?;
    rules
        .levels
        .iter()
        .find(|l| render(&l.format, c.start, tz).as_deref() == Some(label))
        .or_else(|| rules.levels.iter().find(|l| Some(l.priority) == c.priority))
}

fn kept_reason(rules: &TierRules, c: &Candidate, priority: i64, tz: &TimeZone) -> String {
    match level_of(rules, c, tz) {
        Some(level) => {
            let kept = match level.keep_days {
                0 => "kept forever".to_owned(),
                k => format!("kept {k} days"),
            };
            format!(
                "tier {} (priority {priority}, {kept})",
                tier_name(&level.format)
            )
        }
        None => format!("priority {priority}"),
    }
}

pub(super) fn decide(rules: &TierRules, sorted: &[&Candidate], tz: &TimeZone) -> Vec<Decision> {
    // Tiered backups are the ones with a priority and a label; the newest of
    // them (highest generation) sets the cut.
    let tiered = |c: &Candidate| c.label.is_some() && c.priority.is_some();
    let newest = sorted
        .iter()
        .filter(|c| tiered(c))
        .max_by_key(|c| c.generation);
    let cut = newest.and_then(|n| {
        let p = n.priority?;
        let k = level_of(rules, n, tz).map_or(0, |l| l.keep_days);
        (k > 0).then_some((n, p, i64::from(k)))
    });
    sorted
        .iter()
        .map(|c| {
            let Some(priority) = c.priority.filter(|_| tiered(c)) else {
                return Decision::kept(c, "not labelled by this policy");
            };
            if let Some((n, p, k)) = cut {
                let before = n.end.saturating_sub(c.end);
                if c.generation != n.generation && priority <= p && before > k.saturating_mul(DAY) {
                    return Decision::forgotten(
                        c,
                        format!(
                            "priority {priority} ≤ {p} and ended {} days before generation {}",
                            before / DAY,
                            n.generation
                        ),
                    );
                }
            }
            Decision::kept(c, kept_reason(rules, c, priority, tz))
        })
        .collect()
}
