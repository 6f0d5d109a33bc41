//! Sampled verification (`check --verify-sample`): when each object
//! reachable from the recorded backups was last verified, the order in
//! which a run verifies them (least recently verified first), and the
//! coverage reported by `check`.
//!
//! The set is [`Cache::lease_set`]'s: literal caps hold their data
//! in the cap itself, have no shares to verify, and are never part of it
//! (they count as covered).

use rusqlite::params;

use super::{Cache, CacheError, sql_err};

/// The temporary table of a `check --verify-sample` run's order.
const SAMPLE_ORDER: &str = "temp.sample_order";
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
    ///
    /// The order is fixed when this is called (verifying objects during the
    /// run does not move them) and kept in a temporary table, numbered in
    /// order, that [`Cache::sample_page`] reads a page at a time: memory does
    /// not grow with the number of objects. Returns how many there are.
    pub(crate) fn verify_sample_order(&self) -> Result<u64, CacheError> {
        let set = self.lease_set()?;
        let err = |e| sql_err(&self.path, "ordering the verifications of", e);
        self.conn
            .execute_batch(&format!(
                "DROP TABLE IF EXISTS {SAMPLE_ORDER};
                 CREATE TABLE {SAMPLE_ORDER} (
                     n   INTEGER PRIMARY KEY,
                     cap TEXT NOT NULL,
                     ts  INTEGER NULL);
                 INSERT INTO {SAMPLE_ORDER} (cap, ts)
                     SELECT r.cap, v.ts FROM {} r LEFT JOIN verified v ON v.cap = r.cap
                     ORDER BY v.ts IS NOT NULL, v.ts, r.cap;",
                set.table()
            ))
            .map_err(err)?;
        Ok(set.len())
    }

    /// Up to `limit` objects of the order [`Cache::verify_sample_order`]
    /// made, from position `from` (0 for the first).
    pub(crate) fn sample_page(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<SampleObject>, CacheError> {
        let rows: Vec<(String, Option<i64>)> = self
            .conn
            .prepare_cached(&format!(
                "SELECT cap, ts FROM {SAMPLE_ORDER} WHERE n > ?1 ORDER BY n LIMIT ?2"
            ))
            .and_then(|mut stmt| {
                stmt.query_map(
                    params![
                        i64::try_from(from).unwrap_or(i64::MAX),
                        i64::try_from(limit).unwrap_or(i64::MAX)
                    ],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?
                .collect()
            })
            .map_err(|e| sql_err(&self.path, "reading the verification order of", e))?;
        rows.into_iter()
            .map(|(cap, verified)| {
                Ok(SampleObject {
                    cap: self.parse_cap(&cap)?,
                    verified,
                })
            })
            .collect()
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CommitAfter;

    fn cap(kind: &str, i: u64) -> Cap {
        Cap::parse(&format!("URI:{kind}:k{i:04}:u{i:04}:2:3:{}", 1000 + i)).unwrap()
    }

    #[test]
    fn the_sample_order_is_fixed_and_read_in_pages() {
        let dir = tempfile::tempdir().unwrap();
        let limits = CommitAfter {
            queries: None,
            seconds: None,
        };
        let mut cache = Cache::open(&dir.path().join("c.sqlite"), &limits).unwrap();
        let d = cap("DIR2-CHK", 1);
        let files: Vec<Cap> = (1..=5).map(|i| cap("CHK", i)).collect();
        cache.begin_run(false).unwrap();
        cache
            .record_children(&d, &files.iter().collect::<Vec<_>>())
            .unwrap();
        cache.finish_backup(b"b", &d, 6, 0).unwrap();
        cache.set_verified(&files[1], 300).unwrap();
        cache.set_verified(&files[3], 100).unwrap();
        cache.commit().unwrap();
        assert_eq!(cache.verify_sample_order().unwrap(), 6);
        let mut seen = Vec::new();
        let mut from = 0;
        loop {
            let page = cache.sample_page(from, 2).unwrap();
            if page.is_empty() {
                break;
            }
            from += page.len() as u64;
            for o in page {
                // Verifying during the run does not move anything.
                cache.set_verified(&o.cap, 1000).unwrap();
                seen.push((o.cap.as_str().to_owned(), o.verified));
            }
        }
        let expected = vec![
            // Never verified, in cap order (the directory's cap sorts
            // after the files' "URI:CHK:").
            (files[0].as_str().to_owned(), None),
            (files[2].as_str().to_owned(), None),
            (files[4].as_str().to_owned(), None),
            (d.as_str().to_owned(), None),
            // Then the oldest verification first.
            (files[3].as_str().to_owned(), Some(100)),
            (files[1].as_str().to_owned(), Some(300)),
        ];
        assert_eq!(seen, expected);
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
