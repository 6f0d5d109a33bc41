//! When forgotten objects may be reclaimed: the storage servers drop a
//! share when its last lease lapses (where lease expiry is enabled), so the
//! latest lease this cache gave any of them bounds the date.

use rusqlite::OptionalExtension as _;

use super::{Cache, CacheError, sql_err};

impl Cache {
    /// The latest time this cache put a lease on any of `caps`: its last
    /// renewal by `check --leases`, else when it recorded the object (an
    /// upload adds a lease). `None` when it knows none of them.
    pub(crate) fn last_lease_time(&self, caps: &[&str]) -> Result<Option<i64>, CacheError> {
        let mut latest: Option<i64> = None;
        for cap in caps {
            let t: Option<i64> = self
                .conn
                .prepare_cached(
                    "SELECT COALESCE(
                         (SELECT renewed FROM leases WHERE cap = ?1),
                         (SELECT MAX(ts) FROM objects WHERE cap = ?1))",
                )
                .and_then(|mut stmt| stmt.query_row([cap], |r| r.get(0)).optional())
                .map_err(|e| sql_err(&self.path, "reading the lease times in", e))?
                .flatten();
            latest = latest.max(t);
        }
        Ok(latest)
    }
}
