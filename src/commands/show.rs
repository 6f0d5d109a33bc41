//! How every command shows names, times and counts, and the lease-warning
//! window, in one place so that the commands agree.

use crate::config::Lease;
use crate::escape;

/// A backup name as text: raw bytes escaped like queue paths (`\\`,
/// `\xNN`), so control bytes and invalid UTF-8 are visible and lossless.
/// The selector accepts this form back ([`crate::selector`]).
pub(crate) fn name(raw: &[u8]) -> String {
    String::from_utf8_lossy(&escape::escape(raw)).into_owned()
}

/// Unix seconds as ISO 8601 local time with its offset, the one time format
/// of the output (`list`, `cleanup`, `check`); `@SECONDS` when out of range.
pub(crate) fn time(ts: i64) -> String {
    jiff::Timestamp::from_second(ts).map_or_else(
        |_| format!("@{ts}"),
        |t| {
            t.to_zoned(jiff::tz::TimeZone::system())
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string()
        },
    )
}

/// The plural ending of a count: `""` for one, else `"s"`.
pub(crate) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Seconds as the `--json` lines give them: rounded to the millisecond.
pub(crate) fn json_seconds(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}

/// The short id of a cap read from the cache as text (the same as
/// [`crate::tahoe::Cap::short_id`]; `?` for a text that is not a cap).
pub(crate) fn short_id(cap: &str) -> String {
    crate::tahoe::Cap::parse(cap).map_or_else(|_| "?".to_owned(), |c| c.short_id())
}

/// The lease warning's window (`list`, `check`): a lease this cache has not
/// renewed within `lease.duration_days - lease.warn_days` days is about to
/// lapse (`docs/lifecycle.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeaseWindow {
    /// `duration_days - warn_days` (0 when warn_days is larger).
    pub days: u64,
    /// Unix seconds: renewals before this are stale.
    pub cutoff: i64,
}

impl LeaseWindow {
    /// The window for `lease` as of `now` (Unix seconds).
    pub(crate) fn at(lease: &Lease, now: i64) -> LeaseWindow {
        let days = lease.duration_days.saturating_sub(lease.warn_days);
        let secs = i64::try_from(days.saturating_mul(86_400)).unwrap_or(i64::MAX);
        LeaseWindow {
            days,
            cutoff: now.saturating_sub(secs),
        }
    }

    /// The window as of now.
    pub(crate) fn now(lease: &Lease) -> LeaseWindow {
        LeaseWindow::at(lease, crate::cache::unix_now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_losslessly() {
        assert_eq!(name(b"weekly"), "weekly");
        assert_eq!(name(b"a\nb\xff\\"), "a\\x0ab\\xff\\\\");
    }

    #[test]
    fn times_are_iso_with_offset() {
        let t = time(1_700_000_000);
        let parsed = jiff::Timestamp::strptime("%Y-%m-%dT%H:%M:%S%:z", &t);
        assert_eq!(
            parsed.map(|p| p.as_second()).ok(),
            Some(1_700_000_000),
            "{t}"
        );
        assert_eq!(time(i64::MAX), format!("@{}", i64::MAX));
    }

    #[test]
    fn the_lease_window_saturates() {
        let mut lease = crate::config::Config::default().lease;
        lease.duration_days = 31;
        lease.warn_days = 10;
        assert_eq!(
            LeaseWindow::at(&lease, 100 * 86_400),
            LeaseWindow {
                days: 21,
                cutoff: 79 * 86_400
            }
        );
        lease.warn_days = 40;
        assert_eq!(LeaseWindow::at(&lease, 5).days, 0);
        lease.duration_days = u64::MAX;
        lease.warn_days = 0;
        assert_eq!(LeaseWindow::at(&lease, 5).cutoff, 5 - i64::MAX);
    }
}
