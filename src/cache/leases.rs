//! Lease queries for `check` and `list`: which objects of the recorded
//! backups this cache has not renewed lately, the set `check --leases`
//! renews and its persisted cursor, and which backups reach an object.
//!
//! Everything here follows the references (`dir_children`) from the
//! backups' root caps, like [`Cache::reachable_from`]: literal caps are
//! never part of it (they have no shares and no leases).

use rusqlite::params;

use super::{Cache, CacheError, Reach, ReachTable, sql_err};
use crate::tahoe::Cap;

/// The `meta` rows of an unfinished `check --leases` run.
const CURSOR_STARTED: &str = "lease_run_started";
const CURSOR_TOTAL: &str = "lease_run_total";
const CURSOR_LAST: &str = "lease_run_last";
/// `meta` row: when the last complete lease renewal began (unix seconds).
const LAST_RENEWAL: &str = "last_lease_renewal";

/// The objects reachable from the backups' roots, each once: a recursive
/// query seeded with `seed`, a `SELECT` of root caps (literal roots are
/// left out; their children can only be literal and are never recorded).
/// The `UNION` makes every cap appear once, so shared subtrees are walked
/// once and the walk ends.
fn reachable_sql(seed: &str) -> String {
    format!(
        "WITH RECURSIVE r(cap) AS (
             SELECT root_cap FROM ({seed})
             WHERE root_cap NOT GLOB 'URI:LIT:*' AND root_cap NOT GLOB 'URI:DIR2-LIT:*'
             UNION
             SELECT d.child_cap FROM dir_children d JOIN r ON d.dir_cap = r.cap)"
    )
}

/// Objects whose leases this cache has not renewed since some time
/// ([`Cache::stale_leases`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StaleLeases {
    /// Distinct objects reachable from the recorded backups whose lease this
    /// cache last renewed before the time, or never.
    pub(crate) objects: u64,
    /// Of those, the ones with no renewal recorded at all.
    pub(crate) never: u64,
    /// Every backup that reaches at least one of them, oldest first.
    pub(crate) backups: Vec<StaleBackup>,
}

/// One backup in [`StaleLeases::backups`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StaleBackup {
    /// The `backups` row id.
    pub(crate) id: i64,
    /// The backup name, raw bytes.
    pub(crate) name: Vec<u8>,
    /// How many of the stale objects this backup reaches.
    pub(crate) objects: u64,
}

/// The oldest lease renewal among the objects of the recorded backups
/// ([`Cache::lease_ages`]): `status` and the textfile add
/// `lease.duration_days` to it for the lease horizon.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LeaseAges {
    /// Distinct objects reachable from the recorded backups.
    pub(crate) objects: u64,
    /// Of those, the ones with no renewal recorded at all.
    pub(crate) never: u64,
    /// The oldest last renewal (Unix seconds) among the others, if any.
    pub(crate) oldest: Option<i64>,
}

/// Where an unfinished `check --leases` run stopped.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct LeaseCursor {
    /// When the run began (Unix seconds); identifies the run.
    pub(crate) started: i64,
    /// How many objects the run set out to renew.
    pub(crate) total: u64,
    /// The last cap done: every cap of the run's (sorted) set up to and
    /// including it is done. Never log it.
    pub(crate) last: String,
}

impl std::fmt::Debug for LeaseCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseCursor")
            .field("started", &self.started)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// The objects reachable from the recorded backups whose lease this
    /// cache has not renewed at or after `older_than` (Unix seconds), or
    /// never: how many there are (each counted once, however many backups
    /// share it), and which backups reach them. `check` and `list` warn
    /// about these with `older_than = now - (lease.duration_days -
    /// lease.warn_days) days`.
    pub(crate) fn stale_leases(&self, older_than: i64) -> Result<StaleLeases, CacheError> {
        let err = |e| sql_err(&self.path, "reading the leases of", e);
        let stale = "LEFT JOIN leases l ON l.cap = r.cap
                     WHERE l.renewed IS NULL OR l.renewed < ?1";
        let (objects, never): (i64, i64) = self
            .conn
            .prepare_cached(&format!(
                "{} SELECT count(*), coalesce(sum(l.renewed IS NULL), 0) FROM r {stale}",
                reachable_sql("SELECT root_cap FROM backups")
            ))
            .and_then(|mut stmt| stmt.query_row([older_than], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(err)?;
        let mut out = StaleLeases {
            objects: u64::try_from(objects).unwrap_or(0),
            never: u64::try_from(never).unwrap_or(0),
            backups: Vec::new(),
        };
        if objects == 0 {
            return Ok(out);
        }
        // Per backup: one walk per distinct root (identical trees share it).
        let rows: Vec<(i64, Vec<u8>, String)> = self
            .conn
            .prepare_cached("SELECT id, name, root_cap FROM backups ORDER BY id")
            .and_then(|mut stmt| {
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .map_err(err)?;
        let mut per_root: std::collections::HashMap<String, u64> = Default::default();
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "{} SELECT count(*) FROM r {stale}",
                reachable_sql("SELECT ?2 AS root_cap")
            ))
            .map_err(err)?;
        for (id, name, root) in rows {
            let count = match per_root.get(&root) {
                Some(&n) => n,
                None => {
                    let n: i64 = stmt
                        .query_row(params![older_than, root], |r| r.get(0))
                        .map_err(err)?;
                    let n = u64::try_from(n).unwrap_or(0);
                    per_root.insert(root, n);
                    n
                }
            };
            if count > 0 {
                out.backups.push(StaleBackup {
                    id,
                    name,
                    objects: count,
                });
            }
        }
        Ok(out)
    }

    /// How old the leases of the recorded backups' objects are: the same
    /// walk and the same `leases` rows as [`Cache::stale_leases`] (an
    /// upload records a renewal), reduced to the oldest renewal.
    pub(crate) fn lease_ages(&self) -> Result<LeaseAges, CacheError> {
        let (objects, never, oldest): (i64, i64, Option<i64>) = self
            .conn
            .prepare_cached(&format!(
                "{} SELECT count(*), coalesce(sum(l.renewed IS NULL), 0), min(l.renewed)
                 FROM r LEFT JOIN leases l ON l.cap = r.cap",
                reachable_sql("SELECT root_cap FROM backups")
            ))
            .and_then(|mut stmt| stmt.query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))
            .map_err(|e| sql_err(&self.path, "reading the leases of", e))?;
        Ok(LeaseAges {
            objects: u64::try_from(objects).unwrap_or(0),
            never: u64::try_from(never).unwrap_or(0),
            oldest,
        })
    }

    /// Every object `check --leases` renews: the non-literal caps reachable
    /// from all recorded backups, each once, in a temporary table
    /// ([`Cache::reach`]); the run reads it in cap order a page at a time
    /// ([`Cache::lease_set_page`]).
    pub(crate) fn lease_set(&self) -> Result<Reach, CacheError> {
        self.reach_seeded(ReachTable::Recorded, "SELECT root_cap AS cap FROM backups")
    }

    /// Up to `limit` caps of `set` after `after` (from the first when
    /// `None`), sorted by their text (the order the run's cursor follows).
    pub(crate) fn lease_set_page(
        &self,
        set: &Reach,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Cap>, CacheError> {
        // Two statements rather than `?1 IS NULL OR cap > ?1`, so that each
        // page is a seek in the primary key, not a scan of the whole set.
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let table = set.table();
        let caps: Vec<String> = match after {
            Some(after) => self
                .conn
                .prepare_cached(&format!(
                    "SELECT cap FROM {table} WHERE cap > ?1 ORDER BY cap LIMIT ?2"
                ))
                .and_then(|mut stmt| {
                    stmt.query_map(params![after, limit], |r| r.get(0))?
                        .collect()
                }),
            None => self
                .conn
                .prepare_cached(&format!("SELECT cap FROM {table} ORDER BY cap LIMIT ?1"))
                .and_then(|mut stmt| stmt.query_map([limit], |r| r.get(0))?.collect()),
        }
        .map_err(|e| {
            sql_err(
                &self.path,
                "reading the objects reachable from backups in",
                e,
            )
        })?;
        caps.iter().map(|c| self.parse_cap(c)).collect()
    }

    /// How many caps of `set` sort at or before `last`: where a run
    /// resumed after `last` starts.
    pub(crate) fn lease_set_rank(&self, set: &Reach, last: &str) -> Result<u64, CacheError> {
        let n: i64 = self
            .conn
            .prepare_cached(&format!(
                "SELECT count(*) FROM {} WHERE cap <= ?1",
                set.table()
            ))
            .and_then(|mut stmt| stmt.query_row([last], |r| r.get(0)))
            .map_err(|e| {
                sql_err(
                    &self.path,
                    "reading the objects reachable from backups in",
                    e,
                )
            })?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The whole of [`Cache::lease_set`] as a sorted list (tests).
    #[cfg(test)]
    pub(crate) fn lease_renewal_set(&self) -> Result<Vec<Cap>, CacheError> {
        let set = self.lease_set()?;
        self.lease_set_page(&set, None, usize::MAX)
    }

    /// The cursor of an unfinished `check --leases` run, if any.
    pub(crate) fn lease_cursor(&self) -> Result<Option<LeaseCursor>, CacheError> {
        let get = |name: &str| self.meta_value(name, "reading the lease renewal cursor of");
        let (Some(started), Some(total), Some(last)) =
            (get(CURSOR_STARTED)?, get(CURSOR_TOTAL)?, get(CURSOR_LAST)?)
        else {
            return Ok(None);
        };
        let (Ok(started), Ok(total)) = (started.parse(), total.parse()) else {
            return Err(self.corrupt("a lease renewal cursor that is not a number"));
        };
        Ok(Some(LeaseCursor {
            started,
            total,
            last,
        }))
    }

    /// Records how far the current `check --leases` run got, in the open
    /// transaction: commit it together with the leases it renewed, so that
    /// what survives a crash is consistent.
    /// `started` identifies the run (when it began), `total` is the size of
    /// its set, `last` the last cap done (see [`LeaseCursor`]).
    pub(crate) fn set_lease_cursor(
        &mut self,
        started: i64,
        total: u64,
        last: &Cap,
    ) -> Result<(), CacheError> {
        let rows = [
            (CURSOR_STARTED, started.to_string()),
            (CURSOR_TOTAL, total.to_string()),
            (CURSOR_LAST, last.as_str().to_owned()),
        ];
        for (name, value) in &rows {
            self.write(
                "recording the lease renewal cursor in",
                "INSERT INTO meta (name, value) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                [*name, value.as_str()],
            )?;
        }
        Ok(())
    }

    /// When the last complete `check --leases` renewal (or the one
    /// `backup` runs for `lease.renew_every_days`) began; `None`: never.
    pub(crate) fn last_lease_renewal(&self) -> Result<Option<i64>, CacheError> {
        let Some(value) = self.meta_value(LAST_RENEWAL, "reading the last lease renewal of")?
        else {
            return Ok(None);
        };
        value
            .parse()
            .map(Some)
            .map_err(|_| self.corrupt("a last lease renewal time that is not a number"))
    }

    /// Records that a renewal begun at `started` went through every object,
    /// in the open transaction.
    pub(crate) fn set_last_lease_renewal(&mut self, started: i64) -> Result<(), CacheError> {
        self.write(
            "recording the last lease renewal in",
            "INSERT INTO meta (name, value) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            [LAST_RENEWAL, started.to_string().as_str()],
        )?;
        Ok(())
    }

    /// Forgets the cursor: the run finished, the next one starts over.
    pub(crate) fn clear_lease_cursor(&mut self) -> Result<(), CacheError> {
        for name in [CURSOR_STARTED, CURSOR_TOTAL, CURSOR_LAST] {
            self.write(
                "clearing the lease renewal cursor in",
                "DELETE FROM meta WHERE name = ?1",
                [name],
            )?;
        }
        Ok(())
    }

    /// The backups (row id and raw name, oldest first) from whose root
    /// `cap` is reachable through the recorded references.
    pub(crate) fn backups_reaching(&self, cap: &Cap) -> Result<Vec<(i64, Vec<u8>)>, CacheError> {
        self.conn
            .prepare_cached(
                "WITH RECURSIVE up(cap) AS (
                     SELECT ?1
                     UNION
                     SELECT d.dir_cap FROM dir_children d JOIN up ON d.child_cap = up.cap)
                 SELECT b.id, b.name FROM backups b JOIN up ON b.root_cap = up.cap
                 ORDER BY b.id",
            )
            .and_then(|mut stmt| {
                stmt.query_map([cap.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .map_err(|e| sql_err(&self.path, "reading references in", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::KeyBuilder;
    use crate::config::CommitAfter;

    fn cap(kind: &str, i: u64) -> Cap {
        Cap::parse(&format!("URI:{kind}:k{i:04}:u{i:04}:2:3:{}", 1000 + i)).unwrap()
    }

    /// A cache with backups `a` (root d1: f1, f2, d2: f3) and `b` (root d3:
    /// f1, d2), and an empty backup `e` (literal root).
    fn setup() -> (tempfile::TempDir, Cache) {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = Cache::open(
            &dir.path().join("c.sqlite"),
            &CommitAfter {
                queries: None,
                seconds: None,
            },
        )
        .unwrap();
        let (d1, d2, d3) = (cap("DIR2-CHK", 1), cap("DIR2-CHK", 2), cap("DIR2-CHK", 3));
        let (f1, f2, f3) = (cap("CHK", 1), cap("CHK", 2), cap("CHK", 3));
        let lit = Cap::parse("URI:LIT:nbswy3dp").unwrap();
        cache.begin_run(false).unwrap();
        cache.record_children(&d2, &[&f3, &lit]).unwrap();
        cache.record_children(&d1, &[&f1, &f2, &d2]).unwrap();
        let k = KeyBuilder::new("t").u64(1).finish();
        cache
            .record(&k, &d1, crate::cache::ObjectKind::Dir, false)
            .unwrap();
        cache.finish_backup(b"a", &d1, 5, 0).unwrap();
        cache.begin_run(false).unwrap();
        cache.record_children(&d3, &[&f1, &d2]).unwrap();
        cache.finish_backup(b"b", &d3, 4, 0).unwrap();
        cache.begin_run(false).unwrap();
        cache
            .finish_backup(b"e", &Cap::parse("URI:DIR2-LIT:").unwrap(), 0, 0)
            .unwrap();
        (dir, cache)
    }

    #[test]
    fn stale_leases_counts_each_object_once_and_names_backups() {
        let (_dir, mut cache) = setup();
        // Nothing renewed: a has d1 f1 f2 d2 f3 (5), b has d3 f1 d2 f3 (4);
        // 6 distinct objects, the literal never counts.
        let s = cache.stale_leases(100).unwrap();
        assert_eq!((s.objects, s.never), (6, 6));
        let names: Vec<_> = s
            .backups
            .iter()
            .map(|b| (b.name.clone(), b.objects))
            .collect();
        assert_eq!(names, [(b"a".to_vec(), 5), (b"b".to_vec(), 4)]);
        // Renew everything of b at 100 and f2 at 50: at 100, only d1 and f2
        // (both of a) are stale; one of them was renewed once.
        for c in [
            cap("DIR2-CHK", 3),
            cap("CHK", 1),
            cap("DIR2-CHK", 2),
            cap("CHK", 3),
        ] {
            cache.set_lease_renewed(&c, 100).unwrap();
        }
        cache.set_lease_renewed(&cap("CHK", 2), 50).unwrap();
        let s = cache.stale_leases(100).unwrap();
        assert_eq!((s.objects, s.never), (2, 1));
        assert_eq!(s.backups.len(), 1);
        assert_eq!(
            (s.backups[0].name.as_slice(), s.backups[0].objects),
            (&b"a"[..], 2)
        );
        // Older than 50: nothing renewed before 50 except d1 (never).
        let s = cache.stale_leases(50).unwrap();
        assert_eq!((s.objects, s.never), (1, 1));
        let s = cache.stale_leases(0).unwrap();
        assert_eq!(s.objects, 1, "never renewed is always stale");
        // The same set, reduced to the oldest renewal (d1 never renewed).
        let ages = cache.lease_ages().unwrap();
        assert_eq!(
            ages,
            LeaseAges {
                objects: 6,
                never: 1,
                oldest: Some(50)
            }
        );
    }

    #[test]
    fn the_last_complete_renewal_is_kept_in_meta() {
        let (_dir, mut cache) = setup();
        assert_eq!(cache.last_lease_renewal().unwrap(), None);
        cache.set_last_lease_renewal(1_704_596_400).unwrap();
        cache.set_last_lease_renewal(1_704_596_401).unwrap();
        cache.commit().unwrap();
        assert_eq!(cache.last_lease_renewal().unwrap(), Some(1_704_596_401));
    }

    #[test]
    fn the_renewal_set_is_sorted_and_distinct_and_the_cursor_persists() {
        let (_dir, mut cache) = setup();
        let set = cache.lease_renewal_set().unwrap();
        assert_eq!(set.len(), 6);
        let texts: Vec<&str> = set.iter().map(Cap::as_str).collect();
        let mut sorted = texts.clone();
        sorted.sort_unstable();
        assert_eq!(texts, sorted);
        assert!(set.iter().all(|c| !c.is_literal()));

        assert_eq!(cache.lease_cursor().unwrap(), None);
        let cursor = LeaseCursor {
            started: 7,
            total: 6,
            last: set[2].as_str().to_owned(),
        };
        cache.set_lease_cursor(7, 6, &set[2]).unwrap();
        cache.commit().unwrap();
        assert_eq!(cache.lease_cursor().unwrap(), Some(cursor));
        cache.clear_lease_cursor().unwrap();
        assert_eq!(cache.lease_cursor().unwrap(), None);
        // The Debug form shows no cap.
        let dbg = format!(
            "{:?}",
            LeaseCursor {
                started: 1,
                total: 1,
                last: set[0].as_str().to_owned()
            }
        );
        assert!(!dbg.contains("URI:"), "{dbg}");
    }

    #[test]
    fn backups_reaching_walks_up_the_references() {
        let (_dir, cache) = setup();
        let names = |c: &Cap| -> Vec<Vec<u8>> {
            cache
                .backups_reaching(c)
                .unwrap()
                .into_iter()
                .map(|(_, n)| n)
                .collect()
        };
        assert_eq!(names(&cap("CHK", 3)), [b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(names(&cap("CHK", 2)), [b"a".to_vec()]);
        assert_eq!(names(&cap("DIR2-CHK", 3)), [b"b".to_vec()]);
        assert!(names(&cap("CHK", 99)).is_empty());
    }
}
