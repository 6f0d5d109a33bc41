//! Cache queries for `list` and `cleanup`: dangling generations, leases
//! not renewed lately, and forgetting backups by their references.
//!
//! `docs/lifecycle.md` explains what `cleanup` removes and why; the rule,
//! in short: an `objects` row goes when its cap is not reachable from any
//! kept backup and either is reachable from a forgotten backup or belongs
//! to a swept generation; the `leases`, `content` and `dir_children` rows
//! of a cap go when, in addition, nothing left in the cache reaches it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;

use rusqlite::{TransactionBehavior, params};

use super::reach::not_literal;
use super::{BackupRow, Cache, CacheError, Reach, ReachTable, is_literal, sql_err, to_sql};

/// A generation with `objects` rows that no recorded backup reaches and no
/// finished backup of its own (an interrupted run, or rows left by one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DanglingGeneration {
    pub(crate) generation: u64,
    /// Rows of this generation whose cap no recorded backup reaches
    /// (literal caps included: they are never in the references).
    pub(crate) entries: u64,
}

/// Which generations' rows `cleanup` sweeps besides the objects of the
/// forgotten backups (rows still reachable from a kept backup always stay).
struct Sweep<'a> {
    /// These generations.
    generations: &'a BTreeSet<u64>,
    /// And every generation up to this one (`--up-to`).
    up_to: Option<u64>,
}

impl Sweep<'_> {
    /// The SQL condition that the generation expression `column` is swept
    /// (the numbers are written into the SQL: they are integers).
    fn sql(&self, column: &str) -> String {
        let mut terms: Vec<String> = Vec::new();
        if !self.generations.is_empty() {
            let list: Vec<String> = self
                .generations
                .iter()
                .map(|g| to_sql(*g).to_string())
                .collect();
            terms.push(format!("{column} IN ({})", list.join(", ")));
        }
        if let Some(g) = self.up_to {
            terms.push(format!("{column} <= {}", to_sql(g)));
        }
        if terms.is_empty() {
            "0".to_owned()
        } else {
            format!("({})", terms.join(" OR "))
        }
    }
}

/// What forgetting some backups would remove from the cache; made by
/// [`Cache::plan_forget`] without changing anything, carried out by
/// [`Cache::apply_forget`]. `Debug` shows counts only (no caps, no keys).
pub(crate) struct ForgetPlan {
    /// The backups forgotten, oldest first.
    pub(crate) backups: Vec<BackupRow>,
    /// The root caps of the backups kept.
    kept_roots: HashSet<String>,
    /// Non-literal `objects` rows to delete.
    keys: Vec<Vec<u8>>,
    /// Literal `objects` rows to delete: those of the swept generations.
    /// Deleted by that condition in SQL (`literal_sweep`), never listed:
    /// a tree of a million small files has that many literal rows.
    literal_rows: usize,
    /// The sweep condition on `generation`, for the literal rows.
    literal_sweep: String,
    /// Distinct caps of those rows, and caps without rows that go.
    caps_forgotten: usize,
    /// Non-literal caps that nothing left in the cache reaches: their
    /// `leases`, `content` and `dir_children` rows go.
    gone: BTreeSet<String>,
}

impl fmt::Debug for ForgetPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForgetPlan")
            .field("backups", &self.backups.len())
            .field("kept_roots", &self.kept_roots.len())
            .field("rows", &self.rows())
            .field("objects", &self.caps_forgotten)
            .field("gone", &self.gone.len())
            .finish()
    }
}

impl ForgetPlan {
    /// How many `objects` rows (dedup entries) go.
    pub(crate) fn rows(&self) -> usize {
        self.keys.len() + self.literal_rows
    }

    /// How many distinct objects (caps, literal ones included) the cache
    /// forgets: caps left without any `objects` row, and unreferenced caps
    /// that had none.
    pub(crate) fn objects(&self) -> usize {
        self.caps_forgotten
    }

    /// The non-literal caps that become unreferenced: no kept backup and
    /// no row left in the cache reaches them. Sorted.
    pub(crate) fn unreferenced(&self) -> impl Iterator<Item = &str> {
        self.gone.iter().map(String::as_str)
    }

    /// Whether `cap` is the root of a kept backup (identical trees share a
    /// root cap, so a forgotten backup's root may still be in use).
    pub(crate) fn is_kept_root(&self, cap: &str) -> bool {
        self.kept_roots.contains(cap)
    }
}

impl Cache {
    /// Generations with `objects` rows but no finished backup, oldest
    /// first, each with the number of its rows that no backup in
    /// `referenced` (the caps reachable from the recorded backups) reaches;
    /// generations whose rows are all reached are left out.
    pub(crate) fn dangling_generations(
        &self,
        referenced: &Reach,
    ) -> Result<Vec<DanglingGeneration>, CacheError> {
        let action = "reading the generations of";
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT o.generation, count(*) FROM objects o
                 WHERE NOT EXISTS (SELECT 1 FROM backups b WHERE b.generation = o.generation)
                   AND NOT {}
                 GROUP BY o.generation ORDER BY o.generation",
                referenced.has("o.cap")
            ))
            .map_err(|e| sql_err(&self.path, action, e))?;
        let mut rows = stmt.query([]).map_err(|e| sql_err(&self.path, action, e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| sql_err(&self.path, action, e))? {
            let generation: i64 = row.get(0).map_err(|e| sql_err(&self.path, action, e))?;
            let entries: i64 = row.get(1).map_err(|e| sql_err(&self.path, action, e))?;
            out.push(DanglingGeneration {
                generation: u64::try_from(generation)
                    .map_err(|_| self.corrupt("a negative generation"))?,
                entries: u64::try_from(entries).unwrap_or(0),
            });
        }
        Ok(out)
    }

    /// How many `objects` rows have this generation.
    pub(crate) fn rows_of_generation(&self, generation: u64) -> Result<u64, CacheError> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM objects WHERE generation = ?1")
            .and_then(|mut stmt| stmt.query_row([to_sql(generation)], |r| r.get(0)))
            .map_err(|e| sql_err(&self.path, "reading the generations of", e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The non-literal caps of `reach` whose lease this cache has not
    /// renewed since `cutoff` (Unix seconds): renewed before it, or never
    /// recorded. Sorted (byte order).
    pub(crate) fn leases_not_renewed_since(
        &self,
        reach: &Reach,
        cutoff: i64,
    ) -> Result<Vec<String>, CacheError> {
        self.conn
            .prepare(&format!(
                "SELECT r.cap FROM {} r LEFT JOIN leases l ON l.cap = r.cap
                 WHERE (l.renewed IS NULL OR l.renewed < ?1) AND {}
                 ORDER BY r.cap",
                reach.table(),
                not_literal("r.cap")
            ))
            .and_then(|mut stmt| stmt.query_map([cutoff], |r| r.get(0))?.collect())
            .map_err(|e| sql_err(&self.path, "reading the leases of", e))
    }

    /// How many caps [`Cache::leases_not_renewed_since`] would return for
    /// `reach` and `cutoff`, counted in SQLite.
    pub(crate) fn count_leases_not_renewed_since(
        &self,
        reach: &Reach,
        cutoff: i64,
    ) -> Result<u64, CacheError> {
        let n: i64 = self
            .conn
            .prepare(&format!(
                "SELECT count(*) FROM {} r LEFT JOIN leases l ON l.cap = r.cap
                 WHERE (l.renewed IS NULL OR l.renewed < ?1) AND {}",
                reach.table(),
                not_literal("r.cap")
            ))
            .and_then(|mut stmt| stmt.query_row([cutoff], |r| r.get(0)))
            .map_err(|e| sql_err(&self.path, "reading the leases of", e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Works out what forgetting the backups with these row ids, and
    /// sweeping the rows of `generations` (and of every generation up to
    /// `up_to`), removes from the cache. Changes nothing.
    ///
    /// * `objects` rows go when their cap is not reachable from a kept
    ///   backup, and is reachable from a forgotten backup or the row's
    ///   generation is swept (so literal rows go with their generation);
    /// * a non-literal cap whose rows go, or that a forgotten backup
    ///   reaches, is *unreferenced* when no kept backup and no remaining
    ///   `objects` row reaches it either: its `leases`, `content` and
    ///   `dir_children` rows go too. A remaining row (of an interrupted
    ///   run not swept) thus keeps the references below it intact.
    pub(crate) fn plan_forget(
        &self,
        ids: &BTreeSet<i64>,
        generations: &BTreeSet<u64>,
        up_to: Option<u64>,
    ) -> Result<ForgetPlan, CacheError> {
        let sweep = Sweep { generations, up_to };
        let (backups, kept): (Vec<BackupRow>, Vec<BackupRow>) = self
            .backups()?
            .into_iter()
            .partition(|b| ids.contains(&b.id));
        let kept_roots: HashSet<String> = kept
            .iter()
            .map(|b| b.root_cap.as_str().to_owned())
            .collect();
        // The reachable sets live in temporary tables (`reach.rs`): the
        // kept backups usually reach nearly every object of the cache.
        let keep = self.reach(ReachTable::Kept, kept_roots.iter().map(String::as_str))?;
        let forgotten = self.reach(
            ReachTable::Forgotten,
            backups.iter().map(|b| b.root_cap.as_str()),
        )?;

        let action = "reading the objects of";
        let negative: bool = self
            .conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM objects WHERE generation < 0)",
                [],
                |r| r.get(0),
            )
            .map_err(|e| sql_err(&self.path, action, e))?;
        if negative {
            return Err(self.corrupt("a negative generation"));
        }
        let swept = sweep.sql("o.generation");
        // Literal caps are in no reachable set: their rows go with their
        // generation, counted here and deleted in SQL (`apply_forget`).
        let literal = format!("NOT ({})", not_literal("o.cap"));
        let count = |sql: String| -> Result<usize, CacheError> {
            self.conn
                .query_row(&sql, [], |r| r.get::<_, i64>(0))
                .map(|n| usize::try_from(n).unwrap_or(0))
                .map_err(|e| sql_err(&self.path, action, e))
        };
        let literal_rows = count(format!(
            "SELECT count(*) FROM objects o WHERE {literal} AND {swept}"
        ))?;
        // Literal caps that lose every row.
        // (Grouped: one literal cap, e.g. the empty file's, may have a row
        // for every path that ever held it.)
        let literal_caps = count(format!(
            "SELECT count(*) FROM (SELECT o.cap FROM objects o WHERE {literal}
             GROUP BY o.cap HAVING min({swept}) = 1)"
        ))?;
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT o.key, o.cap FROM objects o
                 WHERE {} AND NOT {} AND ({} OR {swept})",
                not_literal("o.cap"),
                keep.has("o.cap"),
                forgotten.has("o.cap"),
            ))
            .map_err(|e| sql_err(&self.path, action, e))?;
        let mut rows = stmt.query([]).map_err(|e| sql_err(&self.path, action, e))?;
        let mut keys = Vec::new();
        // Caps of the rows that go, with how many of their rows go.
        let mut deleted_caps: HashMap<String, u64> = HashMap::new();
        while let Some(row) = rows.next().map_err(|e| sql_err(&self.path, action, e))? {
            let key: Vec<u8> = row.get(0).map_err(|e| sql_err(&self.path, action, e))?;
            let cap: String = row.get(1).map_err(|e| sql_err(&self.path, action, e))?;
            keys.push(key);
            *deleted_caps.entry(cap).or_default() += 1;
        }
        drop(rows);
        drop(stmt);
        // Remaining rows whose caps no kept backup reaches: what they reach
        // must keep its references.
        let still_reached = self.reach_seeded(
            ReachTable::Remaining,
            &format!(
                "SELECT o.cap AS cap FROM objects o
                 WHERE NOT {} AND NOT {} AND NOT {swept}",
                keep.has("o.cap"),
                forgotten.has("o.cap"),
            ),
        )?;
        let mut gone: BTreeSet<String> = self
            .conn
            .prepare(&format!(
                "SELECT f.cap FROM {} f WHERE {} AND NOT {} AND NOT {}",
                forgotten.table(),
                not_literal("f.cap"),
                keep.has("f.cap"),
                still_reached.has("f.cap"),
            ))
            .and_then(|mut stmt| stmt.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| sql_err(&self.path, action, e))?;
        for cap in deleted_caps.keys() {
            // Not kept: the query above only returns rows no kept backup
            // reaches.
            if !is_literal(cap) && !self.reach_contains(&still_reached, cap)? {
                gone.insert(cap.clone());
            }
        }
        // Objects the cache forgets: caps that lose all their rows, and
        // unreferenced caps that had none.
        let mut count_rows = self
            .conn
            .prepare_cached("SELECT count(*) FROM objects WHERE cap = ?1")
            .map_err(|e| sql_err(&self.path, action, e))?;
        let mut caps_forgotten = gone
            .iter()
            .filter(|c| !deleted_caps.contains_key(*c))
            .count()
            + literal_caps;
        for (cap, deleted) in &deleted_caps {
            let rows: i64 = count_rows
                .query_row([cap], |r| r.get(0))
                .map_err(|e| sql_err(&self.path, action, e))?;
            if u64::try_from(rows).unwrap_or(0) <= *deleted {
                caps_forgotten += 1;
            }
        }
        drop(count_rows);
        Ok(ForgetPlan {
            backups,
            kept_roots,
            keys,
            literal_rows,
            literal_sweep: sweep.sql("generation"),
            caps_forgotten,
            gone,
        })
    }

    /// Carries out a [`ForgetPlan`] made by [`Cache::plan_forget`] on this
    /// open cache (whose lock kept anyone else from changing it since):
    /// deletes the backups rows, the `objects` rows, and the `leases`,
    /// `content` and `dir_children` rows of the unreferenced caps, all in
    /// one transaction. Anything written before is committed first.
    pub(crate) fn apply_forget(&mut self, plan: &ForgetPlan) -> Result<(), CacheError> {
        self.commit()?;
        let path = self.path.clone();
        let action = "forgetting backups in";
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| sql_err(&path, action, e))?;
        {
            let run = |sql: &str,
                       each: &mut dyn FnMut(
                &mut rusqlite::Statement<'_>,
            ) -> rusqlite::Result<()>| {
                let mut stmt = tx.prepare(sql)?;
                each(&mut stmt)
            };
            run("DELETE FROM backups WHERE id = ?1", &mut |stmt| {
                for b in &plan.backups {
                    stmt.execute([b.id])?;
                }
                Ok(())
            })
            .and_then(|()| {
                run("DELETE FROM objects WHERE key = ?1", &mut |stmt| {
                    for key in &plan.keys {
                        stmt.execute([key])?;
                    }
                    Ok(())
                })
            })
            .and_then(|()| {
                tx.execute(
                    &format!(
                        "DELETE FROM objects WHERE NOT ({}) AND {}",
                        not_literal("cap"),
                        plan.literal_sweep
                    ),
                    [],
                )
                .map(|_| ())
            })
            .and_then(|()| {
                for sql in [
                    "DELETE FROM leases WHERE cap = ?1",
                    "DELETE FROM content WHERE cap = ?1",
                    "DELETE FROM dir_children WHERE dir_cap = ?1",
                ] {
                    run(sql, &mut |stmt| {
                        for cap in &plan.gone {
                            stmt.execute(params![cap])?;
                        }
                        Ok(())
                    })?;
                }
                tx.execute(super::subtrees::DROP_ORPHANS, [])?;
                Ok(())
            })
            .map_err(|e| sql_err(&path, action, e))?;
        }
        tx.commit().map_err(|e| sql_err(&path, action, e))?;
        self.pending = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{KeyBuilder, ObjectKey, ObjectKind};
    use crate::tahoe::Cap;
    use rusqlite::Connection;
    use std::path::Path;

    // The cache's own test helpers: well-formed, distinct caps.
    use crate::cache::tests::{NO_LIMIT, chk, dir2};

    fn key(i: u64) -> ObjectKey {
        KeyBuilder::new("test").u64(i).finish()
    }

    fn count(path: &Path, sql: &str) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row(sql, [], |r| r.get(0))
            .unwrap()
    }

    fn has_object(cache: &Cache, cap: &Cap) -> bool {
        cache
            .conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM objects WHERE cap = ?1)",
                [cap.as_str()],
                |r| r.get(0),
            )
            .unwrap()
    }

    /// Records a directory and its children as one run would: every object
    /// under its own key, with a lease.
    fn record_tree(cache: &mut Cache, k: &mut u64, dir: &Cap, children: &[&Cap]) {
        for c in children {
            *k += 1;
            let kind = if c.is_dir() {
                ObjectKind::Dir
            } else {
                ObjectKind::File
            };
            cache.record(&key(*k), c, kind, true).unwrap();
        }
        *k += 1;
        cache.record(&key(*k), dir, ObjectKind::Dir, true).unwrap();
        cache.record_children(dir, children).unwrap();
    }

    /// Three backups sharing objects, then an interrupted fourth run.
    /// gen 1 A: ra -> {sub, f1, lit};  sub -> {f2, f3}
    /// gen 2 B: rb -> {sub, f4, f5}
    /// gen 3 C: rc -> {sub, f5, f6}
    /// gen 4 (interrupted): d4 -> {f4, f7}, d4 recorded, no backup.
    struct World {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        cache: Cache,
        ids: Vec<i64>,
    }

    fn world() -> World {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.sqlite");
        let mut cache = Cache::open(&path, &NO_LIMIT).unwrap();
        let mut k = 0;
        let lit = Cap::parse("URI:LIT:nbswy3dp").unwrap();
        let mut ids = Vec::new();

        assert_eq!(cache.begin_run(false).unwrap(), 1);
        record_tree(&mut cache, &mut k, &dir2(10), &[&chk(2), &chk(3)]);
        record_tree(&mut cache, &mut k, &dir2(1), &[&dir2(10), &chk(1), &lit]);
        ids.push(cache.finish_backup(b"src", &dir2(1), 6, 600).unwrap());

        assert_eq!(cache.begin_run(false).unwrap(), 2);
        record_tree(&mut cache, &mut k, &dir2(2), &[&dir2(10), &chk(4), &chk(5)]);
        ids.push(cache.finish_backup(b"src", &dir2(2), 6, 600).unwrap());

        assert_eq!(cache.begin_run(false).unwrap(), 3);
        record_tree(&mut cache, &mut k, &dir2(3), &[&dir2(10), &chk(5), &chk(6)]);
        ids.push(cache.finish_backup(b"other", &dir2(3), 6, 600).unwrap());

        assert_eq!(cache.begin_run(false).unwrap(), 4);
        record_tree(&mut cache, &mut k, &dir2(4), &[&chk(4), &chk(7)]);
        cache.commit().unwrap();
        World {
            _dir: dir,
            path,
            cache,
            ids,
        }
    }

    #[test]
    fn forgetting_the_middle_backup_keeps_what_the_others_reach() {
        let mut w = world();
        let before = w
            .cache
            .reachable_from([dir2(1).as_str(), dir2(3).as_str()])
            .unwrap();
        let plan = w
            .cache
            .plan_forget(&BTreeSet::from([w.ids[1]]), &BTreeSet::new(), None)
            .unwrap();
        assert_eq!(plan.backups.len(), 1);
        // rb goes; f4 is no longer in a backup but the interrupted run's d4
        // still reaches it, so only its objects row goes.
        let gone: Vec<&str> = plan.unreferenced().collect();
        assert_eq!(gone, vec![dir2(2).as_str()]);
        assert_eq!(plan.objects(), 2, "rb and f4");
        // Nothing changed yet.
        assert!(has_object(&w.cache, &dir2(2)));
        w.cache.apply_forget(&plan).unwrap();
        drop(w.cache);
        let cache = Cache::open(&w.path, &NO_LIMIT).unwrap();
        assert_eq!(cache.backups().unwrap().len(), 2);
        for cap in &before {
            let c = Cap::parse(cap).unwrap();
            assert!(has_object(&cache, &c), "a kept object lost its row");
            assert!(cache.lease_renewed(&c).unwrap().is_some());
        }
        assert!(!has_object(&cache, &dir2(2)) && !has_object(&cache, &chk(4)));
        assert!(
            cache.lease_renewed(&chk(4)).unwrap().is_some(),
            "d4 reaches f4"
        );
        assert!(cache.lease_renewed(&dir2(2)).unwrap().is_none());
        // 12 edges (sub 2, ra 2, rb 3, rc 3, d4 2), less rb's.
        assert_eq!(count(&w.path, "SELECT count(*) FROM dir_children"), 9);
        assert_eq!(
            cache
                .reachable_from([dir2(1).as_str(), dir2(3).as_str()])
                .unwrap(),
            before
        );
    }

    #[test]
    fn a_swept_dangling_generation_goes_and_is_no_longer_listed() {
        let mut w = world();
        let roots: Vec<String> = w
            .cache
            .backups()
            .unwrap()
            .iter()
            .map(|b| b.root_cap.as_str().to_owned())
            .collect();
        let referenced = w
            .cache
            .reach(ReachTable::Recorded, roots.iter().map(String::as_str))
            .unwrap();
        // Generation 4 wrote d4, f4 (bumped) and f7; f4 is in backup B.
        assert_eq!(
            w.cache.dangling_generations(&referenced).unwrap(),
            vec![DanglingGeneration {
                generation: 4,
                entries: 2
            }]
        );
        assert_eq!(w.cache.rows_of_generation(4).unwrap(), 3);
        let plan = w
            .cache
            .plan_forget(&BTreeSet::new(), &BTreeSet::from([4]), None)
            .unwrap();
        assert!(plan.backups.is_empty());
        let gone: Vec<&str> = plan.unreferenced().collect();
        let mut want = vec![dir2(4).as_str().to_owned(), chk(7).as_str().to_owned()];
        want.sort();
        assert_eq!(gone, want);
        w.cache.apply_forget(&plan).unwrap();
        assert!(
            w.cache
                .dangling_generations(&referenced)
                .unwrap()
                .is_empty()
        );
        assert!(has_object(&w.cache, &chk(4)), "still in backup B");
        assert_eq!(w.cache.backups().unwrap().len(), 3);
    }

    #[test]
    fn up_to_forgets_everything_older_and_literal_rows_go_with_their_generation() {
        let mut w = world();
        let plan = w
            .cache
            .plan_forget(
                &BTreeSet::from([w.ids[0], w.ids[1]]),
                &BTreeSet::new(),
                Some(2),
            )
            .unwrap();
        w.cache.apply_forget(&plan).unwrap();
        let lit = Cap::parse("URI:LIT:nbswy3dp").unwrap();
        assert!(!has_object(&w.cache, &lit));
        assert!(!has_object(&w.cache, &dir2(1)) && !has_object(&w.cache, &chk(1)));
        for c in [dir2(3), dir2(10), chk(2), chk(3), chk(5), chk(6)] {
            assert!(has_object(&w.cache, &c));
        }
        // f4 is reachable from a forgotten backup and from no kept one: all
        // its rows go, even the interrupted run's. That run's d4 stays (its
        // generation is not swept) and keeps f4's lease and d4's edges.
        assert!(!has_object(&w.cache, &chk(4)) && has_object(&w.cache, &dir2(4)));
        assert!(w.cache.lease_renewed(&chk(4)).unwrap().is_some());
        assert_eq!(w.cache.reachable_from([dir2(4).as_str()]).unwrap().len(), 3);
    }

    #[test]
    fn forgetting_everything_leaves_only_unswept_dangling_rows() {
        let mut w = world();
        let plan = w
            .cache
            .plan_forget(
                &w.ids.iter().copied().collect(),
                &BTreeSet::from([1, 2, 3]),
                None,
            )
            .unwrap();
        w.cache.apply_forget(&plan).unwrap();
        w.cache.commit().unwrap();
        assert_eq!(count(&w.path, "SELECT count(*) FROM backups"), 0);
        // d4 and f7 (generation 4) stay, and so does what d4 reaches.
        assert_eq!(count(&w.path, "SELECT count(*) FROM objects"), 2);
        assert_eq!(count(&w.path, "SELECT count(*) FROM dir_children"), 2);
        assert_eq!(count(&w.path, "SELECT count(*) FROM leases"), 3);
    }

    #[test]
    fn leases_not_renewed_since_counts_missing_and_old_ones() {
        let mut w = world();
        w.cache.set_lease_renewed(&chk(2), 50).unwrap();
        w.cache
            .conn
            .execute(
                "UPDATE leases SET renewed = 50 WHERE cap = ?1",
                [chk(3).as_str()],
            )
            .unwrap();
        w.cache
            .conn
            .execute("DELETE FROM leases WHERE cap = ?1", [chk(6).as_str()])
            .unwrap();
        let caps = [chk(2), chk(3), chk(6), chk(5)];
        let lit = "URI:LIT:nbswy3dp";
        let reach = w
            .cache
            .reach(ReachTable::One, caps.iter().map(Cap::as_str).chain([lit]))
            .unwrap();
        let stale = w.cache.leases_not_renewed_since(&reach, 100).unwrap();
        assert_eq!(
            w.cache.count_leases_not_renewed_since(&reach, 100).unwrap(),
            2
        );
        let mut want = vec![chk(3).as_str().to_owned(), chk(6).as_str().to_owned()];
        want.sort();
        assert_eq!(stale, want);
    }

    #[test]
    fn a_cap_that_keeps_a_row_is_not_counted_as_forgotten() {
        let mut w = world();
        // The interrupted run (generation 4) also has the literal, under
        // another key.
        let lit = Cap::parse("URI:LIT:nbswy3dp").unwrap();
        w.cache
            .record(&key(1000), &lit, ObjectKind::File, false)
            .unwrap();
        let plan = w
            .cache
            .plan_forget(&BTreeSet::from([w.ids[0]]), &BTreeSet::from([1]), None)
            .unwrap();
        assert_eq!(plan.rows(), 3, "ra, f1 and the literal's generation-1 row");
        assert_eq!(plan.objects(), 2, "ra and f1; the literal keeps a row");
        assert_eq!(plan.unreferenced().count(), 2);
        w.cache.apply_forget(&plan).unwrap();
        assert!(has_object(&w.cache, &lit));
    }

    #[test]
    fn plan_debug_shows_no_caps() {
        let w = world();
        let plan = w
            .cache
            .plan_forget(&BTreeSet::from([w.ids[0]]), &BTreeSet::new(), None)
            .unwrap();
        assert!(!format!("{plan:?}").contains("URI:"));
    }
}
