//! The one wall clock of a run.
//!
//! Every time lafs-backup records or compares — a backup's start and end,
//! lease renewals, checks, the result file's time stamps, retention
//! arithmetic — comes from here. Normally that is the system clock. With
//! `LAFS_BACKUP_NOW` set (an RFC 3339 time with its offset, e.g.
//! `2024-01-07T03:00:00+01:00`), it is that instant, frozen for the whole
//! run: tests and the replay of a schedule set the date this way. Durations
//! (timeouts, rates, progress) never come from here: they use the
//! monotonic clock, which a frozen wall clock must not stop.
//!
//! Calendar arithmetic (days, ISO weeks, months) is done in the system's
//! local time zone (`TZ`), as the user reads dates.

use std::sync::OnceLock;

/// The environment variable that sets (and freezes) the clock.
pub(crate) const NOW_VAR: &str = "LAFS_BACKUP_NOW";

/// The frozen instant, when `LAFS_BACKUP_NOW` is set; read once per run.
static FROZEN: OnceLock<Option<jiff::Timestamp>> = OnceLock::new();

/// `LAFS_BACKUP_NOW` could not be read.
#[derive(Debug, thiserror::Error)]
#[error(
    "{NOW_VAR}={value:?} is not a time: give an RFC 3339 time with its offset, \
     e.g. 2024-01-07T03:00:00+01:00 ({reason})"
)]
pub(crate) struct ClockError {
    value: String,
    reason: String,
}

/// Reads `LAFS_BACKUP_NOW` once; call it before anything asks for the time,
/// so that a bad value is an error (exit 2) rather than a silent fallback.
pub(crate) fn init() -> Result<(), ClockError> {
    let parsed = match std::env::var(NOW_VAR) {
        Err(_) => None,
        Ok(value) => Some(value.parse::<jiff::Timestamp>().map_err(|e| ClockError {
            reason: e.to_string(),
            value,
        })?),
    };
    let _ = FROZEN.set(parsed);
    Ok(())
}

/// The current instant (frozen under `LAFS_BACKUP_NOW`).
pub(crate) fn now() -> jiff::Timestamp {
    FROZEN
        .get_or_init(|| {
            std::env::var(NOW_VAR)
                .ok()
                .and_then(|v| v.parse::<jiff::Timestamp>().ok())
        })
        .unwrap_or_else(jiff::Timestamp::now)
}

/// The current instant in the local time zone.
pub(crate) fn now_local() -> jiff::Zoned {
    now().to_zoned(jiff::tz::TimeZone::system())
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> i64 {
    now().as_second()
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_times_with_offsets_parse() {
        let t: jiff::Timestamp = "2024-01-07T03:00:00+01:00".parse().unwrap();
        assert_eq!(t.as_second(), 1_704_592_800);
        assert!("2024-01-07".parse::<jiff::Timestamp>().is_err());
        assert!("yesterday".parse::<jiff::Timestamp>().is_err());
    }
}
