//! Sampled verification (`check --verify-sample`): when each object
//! reachable from the recorded backups was last verified, the order in
//! which a run verifies them (least recently verified first), and the
//! coverage reported by `check`.
//!
//! The set is [`Cache::lease_renewal_set`]'s: literal caps hold their data
//! in the cap itself, have no shares to verify, and are never part of it
//! (they count as covered).

use std::collections::{HashMap, HashSet};

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

    /// The verification coverage of the objects the recorded backups reach.
    pub(crate) fn coverage(&self) -> Result<Coverage, CacheError> {
        let order = self.verify_sample_order()?;
        let mut c = Coverage {
            objects: order.len() as u64,
            ..Coverage::default()
        };
        for ts in order.iter().filter_map(|o| o.verified) {
            c.verified += 1;
            c.oldest = Some(c.oldest.map_or(ts, |old: i64| old.min(ts)));
        }
        Ok(c)
    }

    /// The start of the oldest recorded backup that reaches an object never
    /// verified: such an object has gone unverified at least since then (its
    /// upload, or later when the backup that uploaded it was forgotten).
    /// `None` when every object was verified. Backups are walked oldest
    /// first over one shared `seen` set, so the walk stops at the first
    /// backup with a never-verified object and visits each object once.
    pub(crate) fn never_verified_since(&self) -> Result<Option<i64>, CacheError> {
        let times = self.verification_times()?;
        let roots: Vec<(String, i64)> = self
            .conn
            .prepare_cached("SELECT root_cap, ts_start FROM backups ORDER BY ts_start, id")
            .and_then(|mut stmt| {
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .map_err(|e| sql_err(&self.path, "reading the backups of", e))?;
        let mut children = self
            .conn
            .prepare_cached("SELECT child_cap FROM dir_children WHERE dir_cap = ?1")
            .map_err(|e| sql_err(&self.path, "reading references in", e))?;
        let mut seen: HashSet<String> = HashSet::new();
        for (root, ts_start) in roots {
            if super::is_literal(&root) || !seen.insert(root.clone()) {
                continue;
            }
            let mut todo = vec![root];
            while let Some(cap) = todo.pop() {
                if !times.contains_key(&cap) {
                    return Ok(Some(ts_start));
                }
                let kids = children
                    .query_map([&cap], |r| r.get::<_, String>(0))
                    .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| sql_err(&self.path, "reading references in", e))?;
                for kid in kids {
                    if !super::is_literal(&kid) && seen.insert(kid.clone()) {
                        todo.push(kid);
                    }
                }
            }
        }
        Ok(None)
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
