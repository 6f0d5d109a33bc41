//! Sampled verification (`check --verify-sample`): when each object
//! reachable from the recorded backups was last verified, the order in
//! which a run verifies them (least recently verified first), and the
//! coverage reported by `check`.
//!
//! The set is [`Cache::lease_renewal_set`]'s: literal caps hold their data
//! in the cap itself, have no shares to verify, and are never part of it
//! (they count as covered).

use std::collections::HashMap;

use super::{Cache, CacheError, sql_err};
use crate::tahoe::Cap;

/// One object to verify, with its last verification (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SampleObject {
    pub(crate) cap: Cap,
    pub(crate) verified: Option<i64>,
}

/// How much of the reachable set has been verified ([`Cache::coverage`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Coverage {
    /// Distinct non-literal objects reachable from the recorded backups.
    pub(crate) objects: u64,
    /// Of those, the ones verified at least once.
    pub(crate) verified: u64,
    /// The oldest last verification among them (Unix seconds), if any was.
    pub(crate) oldest: Option<i64>,
}

impl Cache {
    /// Every object reachable from the recorded backups, least recently
    /// verified first: never verified ones, then by verification time, ties
    /// in cap order. Verifying a prefix of this each run is what makes a
    /// budget of PCT % cover everything within `ceil(100 / PCT)` runs.
    pub(crate) fn verify_sample_order(&self) -> Result<Vec<SampleObject>, CacheError> {
        let set = self.lease_renewal_set()?;
        let times = self.verification_times()?;
        let mut out: Vec<SampleObject> = set
            .into_iter()
            .map(|cap| SampleObject {
                verified: times.get(cap.as_str()).copied(),
                cap,
            })
            .collect();
        // `Option` orders `None` first; the sort is stable, so equal times
        // stay in cap order.
        out.sort_by_key(|o| o.verified);
        Ok(out)
    }

    /// Records that `cap` was verified at `ts`, in the open transaction.
    pub(crate) fn set_verified(&mut self, cap: &Cap, ts: i64) -> Result<(), CacheError> {
        self.record_latest_time(
            "recording a verification in",
            "INSERT INTO verified (cap, ts) VALUES (?1, ?2)
             ON CONFLICT (cap) DO UPDATE SET ts = max(ts, excluded.ts)",
            cap,
            ts,
        )
    }

    /// The verification coverage of the objects the recorded backups reach,
    /// counted in SQLite over the reachable set's temporary table
    /// ([`Cache::lease_set`]).
    pub(crate) fn coverage(&self) -> Result<Coverage, CacheError> {
        let set = self.lease_set()?;
        let (verified, oldest): (i64, Option<i64>) = self
            .conn
            .prepare(&format!(
                "SELECT count(v.ts), min(v.ts) FROM {} r LEFT JOIN verified v ON v.cap = r.cap",
                set.table()
            ))
            .and_then(|mut stmt| stmt.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(|e| sql_err(&self.path, "reading the verifications of", e))?;
        Ok(Coverage {
            objects: set.len(),
            verified: u64::try_from(verified).unwrap_or(0),
            oldest,
        })
    }

    /// The start of the oldest recorded backup that reaches an object never
    /// verified: such an object has gone unverified at least since then (its
    /// upload, or later when the backup that uploaded it was forgotten).
    /// `None` when every object was verified. Backups are walked oldest
    /// first, in SQLite: each walk adds the objects it reaches that no
    /// earlier walk did to a temporary table of seen objects (so the walks
    /// together visit each object once, and stop at objects seen before),
    /// and the first backup whose new objects include a never-verified one
    /// is the answer.
    pub(crate) fn never_verified_since(&self) -> Result<Option<i64>, CacheError> {
        let action = "reading the verifications of";
        let err = |e| sql_err(&self.path, action, e);
        let roots: Vec<(String, i64)> = self
            .conn
            .prepare_cached("SELECT root_cap, ts_start FROM backups ORDER BY ts_start, id")
            .and_then(|mut stmt| {
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .map_err(err)?;
        self.new_cap_table("temp.verify_seen")?;
        self.new_cap_table("temp.verify_fresh")?;
        let walk = format!(
            "INSERT INTO temp.verify_fresh (cap)
             WITH RECURSIVE r(cap) AS (
                 SELECT ?1 WHERE {}
                   AND NOT EXISTS (SELECT 1 FROM temp.verify_seen s WHERE s.cap = ?1)
                 UNION
                 SELECT d.child_cap FROM dir_children d JOIN r ON d.dir_cap = r.cap
                 WHERE {}
                   AND NOT EXISTS (SELECT 1 FROM temp.verify_seen s WHERE s.cap = d.child_cap))
             SELECT cap FROM r",
            super::reach::not_literal("?1"),
            super::reach::not_literal("d.child_cap"),
        );
        let mut found = None;
        for (root, ts_start) in roots {
            self.conn
                .execute("DELETE FROM temp.verify_fresh", [])
                .map_err(err)?;
            self.conn.execute(&walk, [&root]).map_err(err)?;
            let unverified: bool = self
                .conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM temp.verify_fresh f
                     WHERE NOT EXISTS (SELECT 1 FROM verified v WHERE v.cap = f.cap))",
                    [],
                    |r| r.get(0),
                )
                .map_err(err)?;
            if unverified {
                found = Some(ts_start);
                break;
            }
            self.conn
                .execute(
                    "INSERT OR IGNORE INTO temp.verify_seen (cap) SELECT cap FROM temp.verify_fresh",
                    [],
                )
                .map_err(err)?;
        }
        self.conn
            .execute_batch("DROP TABLE temp.verify_seen; DROP TABLE temp.verify_fresh;")
            .map_err(err)?;
        Ok(found)
    }

    fn verification_times(&self) -> Result<HashMap<String, i64>, CacheError> {
        self.conn
            .prepare_cached("SELECT cap, ts FROM verified")
            .and_then(|mut stmt| {
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .map_err(|e| sql_err(&self.path, "reading the verifications of", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CommitAfter;

    fn cap(kind: &str, i: u64) -> Cap {
        Cap::parse(&format!("URI:{kind}:k{i:04}:u{i:04}:2:3:{}", 1000 + i)).unwrap()
    }

    #[test]
    fn a_never_verified_object_counts_from_the_oldest_backup_reaching_it() {
        let dir = tempfile::tempdir().unwrap();
        let limits = CommitAfter {
            queries: None,
            seconds: None,
        };
        let mut cache = Cache::open(&dir.path().join("c.sqlite"), &limits).unwrap();
        // Backup `old` (d1: f1), then backup `new` (d2: f1, f2).
        let (d1, d2, f1, f2) = (
            cap("DIR2-CHK", 1),
            cap("DIR2-CHK", 2),
            cap("CHK", 1),
            cap("CHK", 2),
        );
        cache.begin_run(false).unwrap();
        cache.record_children(&d1, &[&f1]).unwrap();
        cache.finish_backup(b"old", &d1, 2, 0).unwrap();
        cache.begin_run(false).unwrap();
        cache.record_children(&d2, &[&f1, &f2]).unwrap();
        cache.finish_backup(b"new", &d2, 3, 0).unwrap();
        cache
            .conn
            .execute(
                "UPDATE backups SET ts_start = 100 WHERE name = CAST('old' AS BLOB)",
                [],
            )
            .unwrap();
        cache
            .conn
            .execute(
                "UPDATE backups SET ts_start = 200 WHERE name = CAST('new' AS BLOB)",
                [],
            )
            .unwrap();
        assert_eq!(cache.never_verified_since().unwrap(), Some(100));
        // d1 and f1 verified: f2 and d2 are only in `new`.
        cache.set_verified(&d1, 500).unwrap();
        cache.set_verified(&f1, 500).unwrap();
        assert_eq!(cache.never_verified_since().unwrap(), Some(200));
        cache.set_verified(&d2, 500).unwrap();
        cache.set_verified(&f2, 400).unwrap();
        assert_eq!(cache.never_verified_since().unwrap(), None);
        let c = cache.coverage().unwrap();
        assert_eq!((c.objects, c.verified, c.oldest), (4, 4, Some(400)));
    }
}
