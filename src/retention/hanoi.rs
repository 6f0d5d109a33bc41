//! `hanoi`: s3napback's Tower of Hanoi schedule. With E the days since the
//! Unix epoch (UTC), a backup is due when `E mod frequency = 0`; its slot is
//! the lowest set bit of `(E / frequency mod 2^(discs−1)) + 1`, so slot K
//! comes round every 2^(K+1) runs and old backups thin out exponentially.

use super::{Candidate, DAY, Decision, Due};

/// Most discs: the cycle of 2^(discs−1) runs must fit the arithmetic.
pub(crate) const MAX_DISCS: u32 = 32;

/// The `hanoi` settings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HanoiRules {
    /// Slots, 1..=32.
    pub(crate) discs: u32,
    /// Days between backups (≥ 1).
    pub(crate) frequency: u32,
    /// Keep every backup of the last slot (`discs − 1`), not only its newest.
    pub(crate) archive_oldest: bool,
}

impl Default for HanoiRules {
    fn default() -> Self {
        Self {
            discs: 5,
            frequency: 1,
            archive_oldest: false,
        }
    }
}

impl HanoiRules {
    /// The slot for `days` since the epoch, or `None` when not due.
    pub(crate) fn slot(&self, days: i64) -> Option<u32> {
        // Validated by the config; clamped so bad values never panic.
        let frequency = i64::from(self.frequency.max(1));
        let discs = self.discs.clamp(1, MAX_DISCS);
        if days.rem_euclid(frequency) != 0 {
            return None;
        }
        let cycle = 1_i64 << (discs - 1);
        let c = days.div_euclid(frequency).rem_euclid(cycle) + 1;
        Some(c.trailing_zeros())
    }
}

/// Days since the Unix epoch (UTC) of a unix time.
fn epoch_day(secs: i64) -> i64 {
    secs.div_euclid(DAY)
}

fn label_slot(label: &str) -> Option<u32> {
    let k = label.strip_prefix("disc-")?;
    if k.is_empty() || !k.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    k.parse().ok()
}

pub(super) fn due(rules: &HanoiRules, now: jiff::Timestamp, existing: &[Candidate]) -> Due {
    let today = epoch_day(now.as_second());
    let Some(slot) = rules.slot(today) else {
        return Due::NotDue;
    };
    let label = format!("disc-{slot}");
    if existing
        .iter()
        .any(|c| c.label.as_deref() == Some(label.as_str()) && epoch_day(c.start) == today)
    {
        return Due::AlreadyDone;
    }
    Due::Due {
        label: Some(label),
        priority: None,
    }
}

pub(super) fn decide(rules: &HanoiRules, sorted: &[&Candidate]) -> Vec<Decision> {
    let archive = rules.discs.clamp(1, MAX_DISCS) - 1;
    super::newest_per_label(sorted, label_slot, |s| {
        (rules.archive_oldest && s == archive).then_some("archive")
    })
}
