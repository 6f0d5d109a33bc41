//! btrsend's backup planner: which stream (if any) a date calls for, and
//! which recorded members expire (`docs/btrfs.md`).
//!
//! The rules are btrsend's `backup-planner`, evaluated on the members
//! recorded before the call:
//!
//! - A *chain* is a complete member (`c`) and every member that descends
//!   from it through `i` parents, in date order; its *newest member* is the
//!   last of them.
//! - A stream is due when nothing is recorded at all (whatever the day), or
//!   when the day of the month is one of `backup_days` and no member is
//!   recorded for that date.
//! - A due stream is `i NEWEST` against the newest member of the latest
//!   chain (the one whose complete member is newest) while that chain's
//!   length, counting its `c`, is at most `max_incrementals`; otherwise it
//!   is `c`. So a full chain is one `c` and `max_incrementals` `i`s.
//! - Expiry: when the newest member of the oldest chain is on or before
//!   `date - chain_lifetime_days`, every member dated on or before that
//!   newest member goes (btrsend's `delete-backups-before`: with chains
//!   made by this planner, that is exactly the oldest chain).
//!
//! One deviation, on purpose: btrsend decides the stream and the expiry
//! from the same, earlier state, so when the only chain expires on a due
//! day it still emits `i` against a member it deletes in the same call;
//! that stream could never be restored. Here the stream is `c` instead
//! ([`Plan::complete_instead`] says so).

use std::fmt;

use jiff::ToSpan;
use jiff::civil::Date;

/// The schedule of a btrfs job (config keys of the same names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Schedule {
    /// Days of the month a stream is due (1..=31).
    pub(crate) backup_days: Vec<u8>,
    /// Incrementals a chain holds after its complete member.
    pub(crate) max_incrementals: u32,
    /// A chain expires when its newest member is this many days old.
    pub(crate) chain_lifetime_days: u32,
}

impl Default for Schedule {
    /// btrsend's constants.
    fn default() -> Self {
        Schedule {
            backup_days: vec![1, 7, 14, 21],
            max_incrementals: 11,
            chain_lifetime_days: 90,
        }
    }
}

/// What a stream is: complete, or incremental against a parent's snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `c`: a full `btrfs send`.
    Complete,
    /// `i PARENT`: `btrfs send -p` against the snapshot of date `parent`.
    Incremental {
        /// The date of the parent member.
        parent: Date,
    },
}

/// The plan line's text, without its newline: `c` or `i YYYY-MM-DD`.
impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Complete => f.write_str("c"),
            Kind::Incremental { parent } => write!(f, "i {}", parent.strftime("%Y-%m-%d")),
        }
    }
}

/// One recorded stream of a btrfs backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Member {
    /// The date it was sent for (its snapshot's date).
    pub(crate) date: Date,
    /// Complete, or incremental against which date.
    pub(crate) kind: Kind,
}

impl Kind {
    /// Reads a plan line's text back (`c`, `i YYYY-MM-DD`), as the stream
    /// index stores it.
    pub(crate) fn parse(text: &str) -> Option<Kind> {
        match text.split_once(' ') {
            None if text == "c" => Some(Kind::Complete),
            Some(("i", date)) => Some(Kind::Incremental {
                parent: parse_date(date)?,
            }),
            _ => None,
        }
    }
}

/// A date written exactly `YYYY-MM-DD` (no other form jiff would take).
pub(crate) fn parse_date(text: &str) -> Option<Date> {
    let date: Date = text.parse().ok()?;
    (text.len() == 10 && date.strftime("%Y-%m-%d").to_string() == text).then_some(date)
}

impl Member {
    /// A member from its stored facts: its date and its plan text.
    pub(crate) fn parse(date: &str, send: &str) -> Option<Member> {
        Some(Member {
            date: parse_date(date)?,
            kind: Kind::parse(send)?,
        })
    }
}

/// What one call of the planner decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The stream to send for the date, if one is due.
    pub(crate) send: Option<Kind>,
    /// The dates of the members to forget, oldest first (empty: none).
    pub(crate) forget: Vec<Date>,
    /// btrsend would have sent `i` against a member forgotten in this very
    /// call; `send` is `c` instead.
    pub(crate) complete_instead: bool,
}

impl Plan {
    /// The plan line of `send --date`: empty when nothing is due, else `c`
    /// or `i YYYY-MM-DD` and a newline.
    pub(crate) fn line(&self) -> String {
        self.send.map(|k| format!("{k}\n")).unwrap_or_default()
    }
}

/// Plans the stream for `date` from the `members` recorded so far (in any
/// order).
pub(crate) fn plan(members: &[Member], date: Date, schedule: &Schedule) -> Plan {
    let mut sorted: Vec<&Member> = members.iter().collect();
    // Stable, so members of one date keep their recorded order, as
    // btrsend's `ORDER BY date` keeps SQLite's row order.
    sorted.sort_by_key(|m| m.date);

    let completes = || sorted.iter().filter(|m| m.kind == Kind::Complete);
    let earliest = completes().next();
    let latest = completes().next_back();

    let due_day = u8::try_from(date.day()).is_ok_and(|d| schedule.backup_days.contains(&d));
    let create = sorted.is_empty() || (due_day && !sorted.iter().any(|m| m.date == date));

    // btrsend's `(sql-date-subtract-days current-date lifetime)`; a date
    // so early that the subtraction leaves the calendar expires nothing.
    let cutoff = date.checked_sub(i64::from(schedule.chain_lifetime_days).days());
    let forget_through = match (earliest, cutoff) {
        (Some(root), Ok(cutoff)) => {
            let newest = newest_of_chain(&sorted, root);
            (newest <= cutoff).then_some(newest)
        }
        _ => None,
    };

    let parent = latest.and_then(|root| {
        let length = chain_length(&sorted, root);
        (length <= schedule.max_incrementals as usize).then(|| newest_of_chain(&sorted, root))
    });

    let mut complete_instead = false;
    let send = create.then(|| match parent {
        Some(p) if forget_through.is_some_and(|f| p <= f) => {
            complete_instead = true;
            Kind::Complete
        }
        Some(parent) => Kind::Incremental { parent },
        None => Kind::Complete,
    });

    let forget = forget_through
        .map(|f| {
            sorted
                .iter()
                .filter(|m| m.date <= f)
                .map(|m| m.date)
                .collect()
        })
        .unwrap_or_default();

    Plan {
        send,
        forget,
        complete_instead,
    }
}

/// The members of the chain rooted at `root`: `root` and every member whose
/// parent is already in the chain, scanning in date order (btrsend's
/// `children-of`). `sorted` is in date order.
fn chain<'a>(sorted: &[&'a Member], root: &'a Member) -> Vec<&'a Member> {
    let mut chain = vec![root];
    for m in sorted {
        if let Kind::Incremental { parent } = m.kind
            && chain.iter().any(|c| c.date == parent)
            && !chain.iter().any(|c| std::ptr::eq(*c, *m))
        {
            chain.push(m);
        }
    }
    chain
}

fn chain_length(sorted: &[&Member], root: &Member) -> usize {
    chain(sorted, root).len()
}

/// The date of the chain's last member in date order.
fn newest_of_chain(sorted: &[&Member], root: &Member) -> Date {
    chain(sorted, root)
        .iter()
        .map(|m| m.date)
        .max()
        .unwrap_or(root.date)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
