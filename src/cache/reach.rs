//! Reachability computed inside SQLite: the set of objects reachable from
//! some roots through the recorded references (`dir_children`), held in a
//! temporary table of the cache's connection instead of the process's
//! memory.
//!
//! A recursive query (`WITH RECURSIVE … UNION`) walks the references from
//! the roots, each cap once (the `UNION` keeps the walk finite on a damaged
//! cache with cycles, and walks shared subtrees once), and its rows are
//! inserted into a `TEMP` table with the cap as its primary key. SQLite
//! keeps temporary tables in its page cache and spills them to a temporary
//! file past it (`temp_store` is left at its file default), so a set of
//! millions of caps costs the process no more memory than a set of ten:
//! `cleanup`, `forget`, `check --leases` and `list` ask the table
//! (`EXISTS`, joins) instead of holding the set. Temporary tables belong
//! to the connection, so this works on a cache opened read-only too.

use super::{Cache, CacheError, sql_err};

/// The SQL condition that the cap expression `cap` is not literal:
/// literal caps have no shares and no leases and are never recorded as
/// references (see `docs/cache.md`).
pub(crate) fn not_literal(cap: &str) -> String {
    format!("{cap} NOT GLOB 'URI:LIT:*' AND {cap} NOT GLOB 'URI:DIR2-LIT:*'")
}

/// The temporary tables a reachable set can live in; one of each exists
/// at a time per connection (computing it again replaces it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReachTable {
    /// From the backups kept by a `forget`/`cleanup` plan.
    Kept,
    /// From the backups a plan forgets.
    Forgotten,
    /// From the `objects` rows a plan leaves that no kept backup reaches.
    Remaining,
    /// From every recorded backup (`list`, `check --leases`).
    Recorded,
    /// From one backup (`list`'s per-backup lease warning).
    One,
}

impl ReachTable {
    /// The table's name, qualified with the `temp` schema.
    fn name(self) -> &'static str {
        match self {
            ReachTable::Kept => "temp.reach_kept",
            ReachTable::Forgotten => "temp.reach_forgotten",
            ReachTable::Remaining => "temp.reach_remaining",
            ReachTable::Recorded => "temp.reach_recorded",
            ReachTable::One => "temp.reach_one",
        }
    }

    /// The table of the roots given by value (see [`Cache::reach`]).
    fn roots_name(self) -> String {
        format!("{}_roots", self.name())
    }
}

/// A set of non-literal caps reachable from some roots (the roots
/// included), held in a temporary table ([`Cache::reach`]). It stays valid
/// until the same [`ReachTable`] is computed again on that cache.
#[derive(Debug)]
pub(crate) struct Reach {
    table: ReachTable,
    len: u64,
}

impl Reach {
    /// How many caps the set holds.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The qualified name of the table, for queries that join it: one
    /// column, `cap TEXT PRIMARY KEY`.
    pub(crate) fn table(&self) -> &'static str {
        self.table.name()
    }

    /// The SQL condition that the cap expression `cap` is in the set.
    pub(crate) fn has(&self, cap: &str) -> String {
        format!(
            "EXISTS (SELECT 1 FROM {} x WHERE x.cap = {cap})",
            self.table()
        )
    }
}

impl Cache {
    /// Every non-literal cap reachable from `roots` (the roots included)
    /// through the recorded references, computed into `table`. Literal and
    /// duplicate roots are ignored; an unknown root is in the set alone.
    pub(crate) fn reach<'a>(
        &self,
        table: ReachTable,
        roots: impl IntoIterator<Item = &'a str>,
    ) -> Result<Reach, CacheError> {
        let action = "computing the objects reachable from backups in";
        let err = |e| sql_err(&self.path, action, e);
        let roots_table = table.roots_name();
        self.new_cap_table(&roots_table)?;
        {
            let mut insert = self
                .conn
                .prepare(&format!(
                    "INSERT OR IGNORE INTO {roots_table} (cap) VALUES (?1)"
                ))
                .map_err(err)?;
            for root in roots {
                insert.execute([root]).map_err(err)?;
            }
        }
        let reach = self.reach_seeded(table, &format!("SELECT cap FROM {roots_table}"))?;
        self.conn
            .execute_batch(&format!("DROP TABLE {roots_table};"))
            .map_err(err)?;
        Ok(reach)
    }

    /// [`Cache::reach`] from the caps `seed` selects (one column named
    /// `cap`): a `SELECT` over the cache's tables, so that no list of roots
    /// passes through the process either.
    pub(crate) fn reach_seeded(&self, table: ReachTable, seed: &str) -> Result<Reach, CacheError> {
        let action = "computing the objects reachable from backups in";
        let err = |e| sql_err(&self.path, action, e);
        let name = table.name();
        self.new_cap_table(name)?;
        let len = self
            .conn
            .execute(
                &format!(
                    "INSERT INTO {name} (cap)
                     WITH RECURSIVE r(cap) AS (
                         SELECT s.cap FROM ({seed}) s
                         WHERE {}
                         UNION
                         SELECT d.child_cap FROM dir_children d JOIN r ON d.dir_cap = r.cap)
                     SELECT cap FROM r",
                    not_literal("s.cap")
                ),
                [],
            )
            .map_err(err)?;
        Ok(Reach {
            table,
            len: len as u64,
        })
    }

    /// Creates the temporary table `name` (qualified with `temp.`) of
    /// caps, empty, replacing any table of that name.
    pub(crate) fn new_cap_table(&self, name: &str) -> Result<(), CacheError> {
        self.conn
            .execute_batch(&format!(
                "DROP TABLE IF EXISTS {name};
                 CREATE TABLE {name} (cap TEXT PRIMARY KEY NOT NULL) WITHOUT ROWID;"
            ))
            .map_err(|e| sql_err(&self.path, "creating a temporary table for", e))
    }

    /// Whether `cap` is in `reach`.
    pub(crate) fn reach_contains(&self, reach: &Reach, cap: &str) -> Result<bool, CacheError> {
        self.conn
            .prepare_cached(&format!(
                "SELECT EXISTS (SELECT 1 FROM {} WHERE cap = ?1)",
                reach.table()
            ))
            .and_then(|mut stmt| stmt.query_row([cap], |r| r.get(0)))
            .map_err(|e| {
                sql_err(
                    &self.path,
                    "reading the objects reachable from backups in",
                    e,
                )
            })
    }
}

#[cfg(test)]
impl Cache {
    /// Every non-literal cap reachable from `roots`, read back from the
    /// table into a set: the tests' view of [`Cache::reach`].
    pub(crate) fn reachable_from<'a>(
        &self,
        roots: impl IntoIterator<Item = &'a str>,
    ) -> Result<std::collections::HashSet<String>, CacheError> {
        let reach = self.reach(ReachTable::One, roots)?;
        let caps: std::collections::HashSet<String> = self
            .conn
            .prepare(&format!("SELECT cap FROM {}", reach.table()))
            .and_then(|mut stmt| stmt.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| sql_err(&self.path, "reading", e))?;
        assert_eq!(caps.len() as u64, reach.len());
        Ok(caps)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashSet};

    use super::*;
    use crate::cache::tests::{NO_LIMIT, chk, dir2};
    use crate::tahoe::Cap;

    /// The reachable set as it was computed before issue 16, in the
    /// process's memory: a work list over `dir_children`, one query per
    /// directory. Kept here as the oracle the SQL answer is compared with.
    fn in_memory(cache: &Cache, roots: &[&str]) -> HashSet<String> {
        let mut stmt = cache
            .conn
            .prepare("SELECT child_cap FROM dir_children WHERE dir_cap = ?1")
            .unwrap();
        let mut seen: HashSet<String> = HashSet::new();
        let mut todo: Vec<String> = Vec::new();
        for root in roots {
            if !crate::cache::is_literal(root) && seen.insert((*root).to_owned()) {
                todo.push((*root).to_owned());
            }
        }
        while let Some(dir) = todo.pop() {
            let children: Vec<String> = stmt
                .query_map([&dir], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            for child in children {
                if seen.insert(child.clone()) {
                    todo.push(child);
                }
            }
        }
        seen
    }

    /// A deterministic pseudo-random number below `n`.
    fn pick(state: &mut u64, n: u64) -> u64 {
        *state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (*state >> 33) % n
    }

    /// A synthetic cache of `DIRS` directories and `FILES` files: a forest
    /// of directories (each under an earlier one), extra edges sharing
    /// subtrees, files spread over the directories, literal children, a
    /// cycle (a damaged cache), and backups rooted at a few directories.
    const DIRS: u64 = 3_000;
    const FILES: u64 = 20_000;

    fn synthetic() -> (tempfile::TempDir, Cache, Vec<Cap>) {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = Cache::open(&dir.path().join("cache.sqlite"), &NO_LIMIT).unwrap();
        cache.begin_run(false).unwrap();
        let mut state = 7;
        let lit = Cap::parse("URI:LIT:nbswy3dp").unwrap();
        let mut edges: Vec<(u64, Cap)> = Vec::new();
        for d in 8..DIRS {
            // Under one of the earlier directories: roots 0..8 start trees.
            edges.push((pick(&mut state, d), dir2(d)));
            if d % 7 == 0 {
                // Shared: a second parent.
                edges.push((pick(&mut state, d), dir2(d)));
            }
        }
        for f in 0..FILES {
            edges.push((pick(&mut state, DIRS), chk(f)));
            if f % 11 == 0 {
                edges.push((pick(&mut state, DIRS), chk(f)));
            }
        }
        edges.push((5, lit.clone()));
        // A cycle: directory 9 (under one of the roots) back to root 1.
        edges.push((9, dir2(1)));
        for (parent, child) in &edges {
            cache.record_children(&dir2(*parent), &[child]).unwrap();
        }
        let roots: Vec<Cap> = (0..8).map(dir2).collect();
        for root in &roots[..6] {
            cache.finish_backup(b"src", root, 1, 1).unwrap();
        }
        cache.commit().unwrap();
        (dir, cache, roots)
    }

    #[test]
    fn sql_reachability_equals_the_in_memory_walk_on_a_large_cache() {
        let (_dir, cache, roots) = synthetic();
        let lit = "URI:LIT:nbswy3dp";
        let root_strs: Vec<&str> = roots.iter().map(Cap::as_str).collect();
        // A file and a leaf directory as roots.
        let extra = [chk(17), dir2(DIRS - 1)];
        let cases: Vec<Vec<&str>> = vec![
            root_strs.clone(),
            root_strs[..1].to_vec(),
            vec![root_strs[2], root_strs[2], lit],
            root_strs[3..].to_vec(),
            vec![extra[0].as_str(), extra[1].as_str()],
            vec!["URI:DIR2-CHK:unknown:x:1:1:1"],
            vec![lit],
            vec![],
        ];
        let mut sizes = Vec::new();
        for roots in &cases {
            let want = in_memory(&cache, roots);
            let reach = cache
                .reach(ReachTable::Kept, roots.iter().copied())
                .unwrap();
            assert_eq!(reach.len(), want.len() as u64);
            let got: HashSet<String> = cache
                .conn
                .prepare(&format!("SELECT cap FROM {}", reach.table()))
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(got == want, "the SQL set differs for {} roots", roots.len());
            sizes.push(want.len());
        }
        // The cases are not trivial: all roots reach most of the cache.
        assert!(sizes[0] > 20_000, "{sizes:?}");
        assert!(sizes[1] > 100 && sizes[1] < sizes[0], "{sizes:?}");

        // The set `check --leases` pages through is the recorded backups'
        // (roots 0..6), each cap once, in byte order.
        let want: BTreeSet<String> = in_memory(&cache, &root_strs[..6]).into_iter().collect();
        let set = cache.lease_set().unwrap();
        assert_eq!(set.len(), want.len() as u64);
        let mut paged = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = cache.lease_set_page(&set, after.as_deref(), 997).unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 997);
            after = page.last().map(|c| c.as_str().to_owned());
            paged.extend(page.into_iter().map(|c| c.as_str().to_owned()));
        }
        assert!(paged == want.iter().cloned().collect::<Vec<_>>());
        let middle = &paged[paged.len() / 2];
        assert_eq!(
            cache.lease_set_rank(&set, middle).unwrap(),
            (paged.len() / 2 + 1) as u64
        );
        let whole = cache.lease_renewal_set().unwrap();
        assert!(
            whole
                .iter()
                .map(Cap::as_str)
                .eq(want.iter().map(String::as_str))
        );
    }

    #[test]
    fn a_forget_plan_on_a_large_cache_matches_the_in_memory_sets() {
        let (_dir, cache, roots) = synthetic();
        let backups = cache.backups().unwrap();
        // Forget the first two backups.
        let forgotten_ids: BTreeSet<i64> = backups[..2].iter().map(|b| b.id).collect();
        let kept: Vec<&str> = backups[2..].iter().map(|b| b.root_cap.as_str()).collect();
        let gone_roots: Vec<&str> = backups[..2].iter().map(|b| b.root_cap.as_str()).collect();
        let plan = cache
            .plan_forget(&forgotten_ids, &BTreeSet::new(), None)
            .unwrap();
        let keep = in_memory(&cache, &kept);
        let forgotten = in_memory(&cache, &gone_roots);
        // Every object row belongs to generation 1, which also has finished
        // backups: nothing is swept, so the rows that go are those of the
        // forgotten set outside the kept one, and nothing remains outside.
        let want: BTreeSet<String> = forgotten.difference(&keep).cloned().collect();
        let got: BTreeSet<String> = plan.unreferenced().map(str::to_owned).collect();
        assert!(got == want, "{} against {}", got.len(), want.len());
        assert!(!want.is_empty());
        assert!(roots[..2].iter().all(|r| want.contains(r.as_str())));
    }

    #[test]
    fn coverage_on_a_large_cache_matches_the_in_memory_count() {
        let (_dir, mut cache, roots) = synthetic();
        let recorded: Vec<&str> = roots[..6].iter().map(Cap::as_str).collect();
        let mut set: Vec<String> = in_memory(&cache, &recorded).into_iter().collect();
        set.sort();
        for (i, cap) in set.iter().enumerate().filter(|(i, _)| i % 3 == 0) {
            let ts = 1000 + i64::try_from(i).unwrap();
            cache.set_verified(&Cap::parse(cap).unwrap(), ts).unwrap();
        }
        cache.commit().unwrap();
        let c = cache.coverage().unwrap();
        assert_eq!(c.objects, set.len() as u64);
        assert_eq!(c.verified, set.len().div_ceil(3) as u64);
        assert_eq!(c.oldest, Some(1000));
        // Some object is never verified, and every backup has the same
        // start: the oldest is the answer.
        let start = cache.backups().unwrap()[0].ts_start;
        assert_eq!(cache.never_verified_since().unwrap(), Some(start));
        for cap in &set {
            cache.set_verified(&Cap::parse(cap).unwrap(), 5000).unwrap();
        }
        assert_eq!(cache.never_verified_since().unwrap(), None);
    }

    #[test]
    fn a_read_only_cache_computes_reachability_too() {
        let (dir, cache, roots) = synthetic();
        drop(cache);
        let ro = Cache::open_read_only(&dir.path().join("cache.sqlite")).unwrap();
        let want = in_memory(&ro, &[roots[0].as_str()]);
        let reach = ro.reach(ReachTable::Recorded, [roots[0].as_str()]).unwrap();
        assert_eq!(reach.len(), want.len() as u64);
        assert!(ro.reach_contains(&reach, roots[0].as_str()).unwrap());
        assert!(!ro.reach_contains(&reach, "URI:CHK:nowhere").unwrap());
    }
}
