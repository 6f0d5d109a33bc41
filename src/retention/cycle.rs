//! `cycle`: s3napback's simple cycle of `fulls × (diffs + 1)` slots, one
//! backup every `frequency` days (day of the year, local time, from 0).

use jiff::tz::TimeZone;

use super::{Candidate, Decision, Due};

/// The `cycle` settings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CycleRules {
    /// Days between backups (≥ 1).
    pub(crate) frequency: u32,
    /// Shifts the due days (`0 ≤ phase < frequency`).
    pub(crate) phase: u32,
    /// DIFF slots after each FULL one.
    pub(crate) diffs: u32,
    /// FULL slots in the cycle (≥ 1).
    pub(crate) fulls: u32,
}

impl Default for CycleRules {
    fn default() -> Self {
        Self {
            frequency: 1,
            phase: 0,
            diffs: 6,
            fulls: 2,
        }
    }
}

impl CycleRules {
    /// The slot and its label for day of the year `n`, or `None` when not due.
    pub(crate) fn slot(&self, n: u32) -> Option<(u32, String)> {
        // Validated by the config; guarded so bad values never divide by zero.
        let frequency = self.frequency.max(1);
        let shifted = u64::from(n) + u64::from(self.phase);
        if shifted % u64::from(frequency) != 0 {
            return None;
        }
        let per_full = u64::from(self.diffs) + 1;
        let slots = u64::from(self.fulls.max(1)) * per_full;
        let s = (shifted / u64::from(frequency)) % slots;
        let kind = if s % per_full == 0 { "FULL" } else { "DIFF" };
        // s < slots ≤ u32::MAX × (u32::MAX + 1) may not fit u32 in theory; the
        // label carries it as u64 either way.
        Some((
            u32::try_from(s).unwrap_or(u32::MAX),
            format!("slot-{s}-{kind}"),
        ))
    }
}

/// The slot number of a `slot-S-FULL` / `slot-S-DIFF` label.
fn label_slot(label: &str) -> Option<u32> {
    let rest = label.strip_prefix("slot-")?;
    let (s, kind) = rest.split_once('-')?;
    if kind != "FULL" && kind != "DIFF" || s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The local day of the year counted from 0 (1 January = 0).
fn day_of_year(t: jiff::Timestamp, tz: &TimeZone) -> u32 {
    let day = t.to_zoned(tz.clone()).date().day_of_year();
    u32::try_from(day - 1).unwrap_or(0)
}

pub(super) fn due(
    rules: &CycleRules,
    now: jiff::Timestamp,
    existing: &[Candidate],
    tz: &TimeZone,
) -> Due {
    let Some((_, label)) = rules.slot(day_of_year(now, tz)) else {
        return Due::NotDue;
    };
    let today = now.to_zoned(tz.clone()).date();
    let done = existing.iter().any(|c| {
        c.label.as_deref() == Some(label.as_str())
            && jiff::Timestamp::from_second(c.start)
                .is_ok_and(|t| t.to_zoned(tz.clone()).date() == today)
    });
    if done {
        Due::AlreadyDone
    } else {
        Due::Due {
            label: Some(label),
            priority: None,
        }
    }
}

pub(super) fn decide(_rules: &CycleRules, sorted: &[&Candidate]) -> Vec<Decision> {
    super::newest_per_label(sorted, label_slot, |_| None)
}
