//! The dedup cache: a SQLite file remembering which objects are already on
//! the grid, which backups were made, which directory contains which object,
//! and when each object's lease was last renewed.
//!
//! `docs/cache.md` documents the schema, the keys, generations, references,
//! locking, permissions, crash safety and the grid probe.
//!
//! Discipline for callers: a cap enters the cache only after the gateway
//! returned it for exactly the content the key describes. The API only takes
//! [`Cap`]s, never guesses; record a directory's children
//! ([`Cache::record_children`]) in the same transaction as the directory
//! itself, i.e. without a [`Cache::maybe_commit`] between the two.
//!
//! Errors name the cache file and say what to do; they never contain caps
//! or key bytes.

mod backups;
mod btrfs;
mod key;
mod leases;
mod lock;
mod reach;
mod rebuild;
mod reclaim;
mod runs;
mod schema;
mod subtrees;
#[cfg(test)]
mod tests;
mod verified;

use std::fmt;
use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tracing::warn;

use crate::config::CommitAfter;
use crate::tahoe::Cap;

pub(crate) use backups::ForgetPlan;
pub(crate) use btrfs::RecordedMember;
pub(crate) use key::{DirChild, FileKey, KeyBuilder, ObjectKey, SymlinkKey, dir_key};
pub(crate) use leases::{LeaseAges, StaleLeases};
pub(crate) use reach::{Reach, ReachTable};
pub(crate) use rebuild::{RebuiltBackup, lock_path_only};
pub(crate) use runs::RunRecord;
pub(crate) use schema::SCHEMA_VERSION;
pub(crate) use verified::Coverage;
// The unit tests of the cache's modules name these by their short path.
#[cfg(test)]
pub(crate) use {lock::lock_path, schema::APPLICATION_ID};

/// How often [`Cache::open_wait`] retries the lock.
const LOCK_POLL: Duration = Duration::from_millis(200);

/// Files SQLite may create beside the database; all must stay 0600.
const SIDE_FILES: [&str; 3] = ["-wal", "-shm", "-journal"];

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(
        "another lafs-backup run ({}) is using the cache {}; try again when it finishes \
         (it holds the lock file {})",
        holder(*.pid), .path.display(), .lock_path.display()
    )]
    Locked {
        path: PathBuf,
        lock_path: PathBuf,
        pid: Option<u32>,
    },

    #[error("cache {}: cannot {action}: {source}", .path.display())]
    Io {
        path: PathBuf,
        action: String,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "cache {}: {action} failed: {source}; check that the file system is writable and \
         not full (if the file is damaged, restore it from a copy)",
        .path.display()
    )]
    Sqlite {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: rusqlite::Error,
    },

    #[error(
        "{} is not a lafs-backup cache ({why}); set source.entry_cache.path to another file",
        .path.display()
    )]
    NotACache { path: PathBuf, why: String },

    #[error(
        "{} is an entry cache of the original Python lafs-backup-tool, which lafs-backup does \
         not reuse (its directory keys leave out child names, so its cached directories can \
         show renamed files under old names); set source.entry_cache.path to a new file",
        .path.display()
    )]
    OriginalTool { path: PathBuf },

    #[error(
        "the cache {} has schema version {found}, but this lafs-backup knows versions up to \
         {supported}: a newer lafs-backup wrote it. Use that newer version (the cache is never \
         reset or downgraded), or set source.entry_cache.path to another file",
        .path.display()
    )]
    SchemaTooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    #[error(
        "the cache {} is damaged: {what}. Restore it from a copy, or move it away to start a \
         new cache (everything is then uploaded again and the backups it listed are forgotten)",
        .path.display()
    )]
    Corrupt { path: PathBuf, what: String },

    #[error(
        "the cache {} has schema version {found}, older than this lafs-backup's {supported}, \
         and only a command that writes to it upgrades it: run a backup or check once to \
         upgrade the cache",
        .path.display()
    )]
    NeedsUpgrade {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    #[error("internal error with the cache {}: {what}; please report this bug", .path.display())]
    Internal { path: PathBuf, what: &'static str },
}

fn holder(pid: Option<u32>) -> String {
    pid.map_or_else(|| "PID unknown".to_owned(), |p| format!("PID {p}"))
}

pub(crate) fn sql_err(path: &Path, action: &'static str, source: rusqlite::Error) -> CacheError {
    CacheError::Sqlite {
        path: path.to_owned(),
        action,
        source,
    }
}

/// Seconds since the Unix epoch, from the run's clock (`crate::clock`).
pub(crate) fn unix_now() -> i64 {
    crate::clock::unix_now()
}

/// Literal caps hold their data inside the cap: no shares, no leases
/// (the same test as [`Cap::is_literal`], for caps read back as text).
fn is_literal(cap: &str) -> bool {
    cap.starts_with("URI:LIT:") || cap.starts_with("URI:DIR2-LIT:")
}

/// SQLite integers are signed; counts beyond `i64::MAX` saturate.
fn to_sql(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// What an object is on the grid: symlinks are files whose content is the
/// target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ObjectKind {
    File,
    Dir,
}

impl ObjectKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ObjectKind::File => "file",
            ObjectKind::Dir => "dir",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "file" => Some(ObjectKind::File),
            "dir" => Some(ObjectKind::Dir),
            _ => None,
        }
    }
}

/// A cache hit. `Debug` shows caps only as [`Cap::short_id`].
#[derive(Debug, Clone)]
pub(crate) struct Cached {
    pub(crate) cap: Cap,
    /// Read (and checked) from the row; only the unit tests look at it.
    #[cfg_attr(not(test), expect(dead_code, reason = "only the unit tests read it"))]
    pub(crate) kind: ObjectKind,
    /// The content encoding the object was stored with (`xz`, `zstd`), for
    /// a file; the edge's `enc` must say it on every reuse.
    pub(crate) enc: Option<String>,
    /// The generation of the run that recorded the object.
    #[cfg_attr(not(test), expect(dead_code, reason = "only the unit tests read it"))]
    pub(crate) generation: u64,
    /// When this cache last renewed (or created) the object's lease, Unix
    /// seconds; `None`: never recorded (always `None` for literal caps).
    pub(crate) lease_renewed: Option<i64>,
}

/// One finished backup.
#[derive(Debug, Clone)]
pub(crate) struct BackupRow {
    /// Never reused, even after rows are deleted.
    pub(crate) id: i64,
    /// The backup name, raw bytes (file names need not be UTF-8).
    pub(crate) name: Vec<u8>,
    pub(crate) root_cap: Cap,
    pub(crate) generation: u64,
    /// Unix seconds: when the run began and when it finished.
    pub(crate) ts_start: i64,
    pub(crate) ts_end: i64,
    /// Entries in the backup, and bytes of their content (before
    /// compression).
    pub(crate) entries: u64,
    pub(crate) bytes: u64,
    /// When `check` last found the whole backup healthy.
    pub(crate) ts_check: Option<i64>,
    /// The retention policy's label (`slot-3-DIFF`, `disc-2`,
    /// `Weekly-2024-01`), if any; labels repeat across rotations.
    pub(crate) label: Option<String>,
    /// The `tiers` policy's priority; `None` for other kinds.
    pub(crate) priority: Option<i64>,
    /// Marked by `pin`: no retention policy forgets it.
    pub(crate) pinned: bool,
    /// A file tree or a stream (`docs/streams.md`).
    pub(crate) kind: BackupKind,
}

/// What a backup holds: the `kind` column of `backups`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum BackupKind {
    /// A file tree (every backup before schema version 5).
    #[default]
    Tree,
    /// A stream (`backup --stdin`, a `kind: command` job).
    Stream,
}

impl BackupKind {
    /// The column's (and `list --json`'s) word.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            BackupKind::Tree => "tree",
            BackupKind::Stream => "stream",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "tree" => Some(BackupKind::Tree),
            "stream" => Some(BackupKind::Stream),
            _ => None,
        }
    }
}

/// The grid probe recorded when the cache was created.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    pub(crate) cap: Cap,
    /// The encoding (`k`-of-`n`) the gateway used for the probe.
    pub(crate) k: u32,
    pub(crate) n: u32,
    /// Unix seconds.
    #[cfg_attr(not(test), expect(dead_code, reason = "only the unit tests read it"))]
    pub(crate) recorded: i64,
}

/// An open, locked cache.
pub struct Cache {
    // Dropped before `_lock`, so the database is closed before another run
    // can get in.
    conn: Connection,
    path: PathBuf,
    #[cfg_attr(not(test), expect(dead_code, reason = "only the unit tests read it"))]
    created: bool,
    /// `commit_after` limits, `None` meaning no limit.
    max_writes: Option<u64>,
    max_age: Option<Duration>,
    /// Rows changed since the last COMMIT that count toward
    /// `commit_after.queries`.
    pending: u64,
    last_commit: Instant,
    /// 0 until [`Cache::begin_run`].
    generation: u64,
    run_start: Option<i64>,
    encoding_warned: bool,
    /// `None` for a read-only open ([`Cache::open_read_only`]), which takes
    /// no lock: SQLite's WAL lets readers work beside the one writer.
    _lock: Option<lock::LockFile>,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("path", &self.path)
            .field("generation", &self.generation)
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// Opens the cache at `path`, creating it (mode 0600, and missing parent
    /// directories with mode 0700) if absent; takes the run lock without
    /// waiting; creates or migrates the schema.
    pub fn open(path: &Path, commit_after: &CommitAfter) -> Result<Cache, CacheError> {
        ensure_parent(path)?;
        let lock = lock::LockFile::acquire(path)?;
        create_file(path)?;
        refuse_linked_side_files(path)?;
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sql_err(path, "opening", e))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(|e| sql_err(path, "opening", e))?;
        // Recognise the file before changing anything in it.
        let found = schema::recognise(&conn, path)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| sql_err(path, "setting the journal mode of", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            warn!(
                "the cache {}: SQLite cannot use write-ahead logging here (journal mode {mode}); \
                 continuing with a rollback journal",
                path.display()
            );
        }
        conn.execute_batch("PRAGMA synchronous = FULL;")
            .map_err(|e| sql_err(path, "setting up", e))?;
        let created = schema::prepare(&mut conn, path, found)?;
        let max_writes = commit_after.queries.filter(|&q| q > 0);
        let max_age = commit_after
            .seconds
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(crate::config::seconds);
        Ok(Cache {
            conn,
            path: path.to_owned(),
            created,
            max_writes,
            max_age,
            pending: 0,
            last_commit: Instant::now(),
            generation: 0,
            run_start: None,
            encoding_warned: false,
            _lock: Some(lock),
        })
    }

    /// Opens an existing cache for reading only (`list`, `restore NAME`,
    /// `verify NAME`): no lock is taken, nothing is created or migrated, so
    /// it works while a backup writes to the same cache. A missing cache,
    /// or a symlink at its path or at its `-wal`/`-shm`, is an error.
    pub(crate) fn open_read_only(path: &Path) -> Result<Cache, CacheError> {
        let io_err = |action: &str, source| CacheError::Io {
            path: path.to_owned(),
            action: action.to_owned(),
            source,
        };
        // Opened (and closed) first without following a link, so that a
        // symlink or a missing file is named before SQLite opens by name.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(nofollow())
            .open(path)
            .map_err(|e| io_err("open it", crate::queue::refuse_symlink(e)))?;
        require_regular_file(&file, path)?;
        drop(file);
        refuse_linked_side_files(path)?;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sql_err(path, "opening", e))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(|e| sql_err(path, "opening", e))?;
        match schema::recognise(&conn, path)? {
            schema::Found::Version(v) if v == SCHEMA_VERSION => {}
            schema::Found::Empty => {
                return Err(CacheError::NotACache {
                    path: path.to_owned(),
                    why: "it is empty: no backup was recorded in it".into(),
                });
            }
            // Readers see one schema: reading an older one would mean a
            // second set of queries kept forever.
            schema::Found::Version(found) => {
                return Err(CacheError::NeedsUpgrade {
                    path: path.to_owned(),
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
        }
        Ok(Cache {
            conn,
            path: path.to_owned(),
            created: false,
            max_writes: None,
            max_age: None,
            pending: 0,
            last_commit: Instant::now(),
            generation: 0,
            run_start: None,
            encoding_warned: false,
            _lock: None,
        })
    }

    /// Like [`open`](Self::open), but while another run holds the lock,
    /// polls for up to `timeout`, then gives up with [`CacheError::Locked`].
    pub(crate) fn open_wait(
        path: &Path,
        commit_after: &CommitAfter,
        timeout: Duration,
    ) -> Result<Cache, CacheError> {
        let deadline = Instant::now() + timeout;
        loop {
            match Cache::open(path, commit_after) {
                Err(CacheError::Locked { .. }) if Instant::now() < deadline => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    std::thread::sleep(left.min(LOCK_POLL));
                }
                other => return other,
            }
        }
    }

    /// The cache file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this open created the schema (a new or empty file).
    #[cfg(test)]
    pub(crate) fn created(&self) -> bool {
        self.created
    }

    /// Starts a backup run and returns its generation: one more than any
    /// generation in the cache (1 for an empty cache). With `try_resume`,
    /// the highest generation G is continued unless a finished backup has
    /// generation G.
    pub(crate) fn begin_run(&mut self, try_resume: bool) -> Result<u64, CacheError> {
        let max: i64 = self
            .conn
            .query_row(
                "SELECT max(coalesce((SELECT max(generation) FROM objects), 0),
                            coalesce((SELECT max(generation) FROM backups), 0))",
                [],
                |r| r.get(0),
            )
            .map_err(|e| sql_err(&self.path, "reading the generations of", e))?;
        let max = u64::try_from(max).map_err(|_| self.corrupt("a negative generation"))?;
        let generation = if max == 0 {
            1
        } else if !try_resume {
            max + 1
        } else {
            let finished: bool = self
                .conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM backups WHERE generation = ?1)",
                    [to_sql(max)],
                    |r| r.get(0),
                )
                .map_err(|e| sql_err(&self.path, "reading the backups of", e))?;
            if finished { max + 1 } else { max }
        };
        self.generation = generation;
        self.run_start = Some(unix_now());
        Ok(generation)
    }

    /// The current run's generation; 0 before [`begin_run`](Self::begin_run).
    #[cfg(test)]
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The object recorded under `key`, if any.
    pub(crate) fn lookup(&self, key: &ObjectKey) -> Result<Option<Cached>, CacheError> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT o.cap, o.kind, o.generation, l.renewed, o.enc
                 FROM objects o LEFT JOIN leases l ON l.cap = o.cap
                 WHERE o.key = ?1",
            )
            .and_then(|mut stmt| {
                stmt.query_row([&key.as_bytes()[..]], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                    ))
                })
                .optional()
            })
            .map_err(|e| sql_err(&self.path, "looking up an object in", e))?;
        let Some((cap, kind, generation, lease_renewed, enc)) = row else {
            return Ok(None);
        };
        Ok(Some(Cached {
            cap: self.parse_cap(&cap)?,
            kind: ObjectKind::parse(&kind).ok_or_else(|| self.corrupt("an unknown object kind"))?,
            enc,
            generation: u64::try_from(generation)
                .map_err(|_| self.corrupt("a negative generation"))?,
            lease_renewed,
        }))
    }

    /// Records (or replaces) the object under `key` with this run's
    /// generation. `uploaded_now`: the gateway just stored it, which renews
    /// its lease. Only pass caps the gateway returned for this content.
    pub(crate) fn record(
        &mut self,
        key: &ObjectKey,
        cap: &Cap,
        kind: ObjectKind,
        uploaded_now: bool,
    ) -> Result<(), CacheError> {
        self.record_encoded(key, cap, kind, None, uploaded_now)
    }

    /// [`Cache::record`] for a file stored with a content encoding (`enc`
    /// of its edge), which every later reuse must repeat.
    pub(crate) fn record_encoded(
        &mut self,
        key: &ObjectKey,
        cap: &Cap,
        kind: ObjectKind,
        enc: Option<&str>,
        uploaded_now: bool,
    ) -> Result<(), CacheError> {
        let generation = self.run_generation()?;
        let now = unix_now();
        self.write(
            "recording an object in",
            "INSERT INTO objects (key, cap, kind, enc, generation, ts) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (key) DO UPDATE SET cap = excluded.cap, kind = excluded.kind,
                 enc = excluded.enc, generation = excluded.generation, ts = excluded.ts",
            params![
                &key.as_bytes()[..],
                cap.as_str(),
                kind.as_str(),
                enc,
                generation,
                now
            ],
        )?;
        if uploaded_now {
            self.set_lease_renewed(cap, now)?;
        }
        Ok(())
    }

    /// Forgets every object with this cap and its lease record; returns how
    /// many keys were removed. References (`dir_children`) stay: they are
    /// facts about immutable directories.
    pub(crate) fn forget_cap(&mut self, cap: &Cap) -> Result<u64, CacheError> {
        let n = self.write(
            "forgetting an object in",
            "DELETE FROM objects WHERE cap = ?1",
            [cap.as_str()],
        )?;
        self.write(
            "forgetting a lease in",
            "DELETE FROM leases WHERE cap = ?1",
            [cap.as_str()],
        )?;
        self.write(
            "forgetting content in",
            "DELETE FROM content WHERE cap = ?1",
            [cap.as_str()],
        )?;
        // The object may be beneath any recorded subtree: none can be
        // trusted to skip it any more.
        self.forget_subtrees()?;
        Ok(n)
    }

    /// Records which objects the directory `dir` contains. Literal children
    /// are skipped (nothing on the grid to keep alive), and so is a literal
    /// `dir`: its children can only be literal (see `docs/cache.md`).
    pub(crate) fn record_children(
        &mut self,
        dir: &Cap,
        children: &[&Cap],
    ) -> Result<(), CacheError> {
        if dir.is_literal() {
            if children.iter().any(|c| !c.is_literal()) {
                warn!(
                    "the cache {}: a literal directory was given non-literal children; \
                     not recorded",
                    self.path.display()
                );
            }
            return Ok(());
        }
        for child in children.iter().filter(|c| !c.is_literal()) {
            self.write(
                "recording a directory's children in",
                "INSERT OR IGNORE INTO dir_children (dir_cap, child_cap) VALUES (?1, ?2)",
                [dir.as_str(), child.as_str()],
            )?;
        }
        Ok(())
    }

    /// Records a finished backup of this run and commits.
    /// Returns the new row's id.
    pub(crate) fn finish_backup(
        &mut self,
        name: &[u8],
        root: &Cap,
        entries: u64,
        bytes: u64,
    ) -> Result<i64, CacheError> {
        self.finish_backup_of(BackupKind::Tree, name, root, entries, bytes)
    }

    /// [`Cache::finish_backup`] of a backup of this `kind`.
    pub(crate) fn finish_backup_of(
        &mut self,
        kind: BackupKind,
        name: &[u8],
        root: &Cap,
        entries: u64,
        bytes: u64,
    ) -> Result<i64, CacheError> {
        let id = self.insert_backup(kind, name, root, entries, bytes)?;
        self.commit()?;
        Ok(id)
    }

    /// The `backups` row of a finished backup of this run, not yet
    /// committed (so that what goes with it commits with it).
    fn insert_backup(
        &mut self,
        kind: BackupKind,
        name: &[u8],
        root: &Cap,
        entries: u64,
        bytes: u64,
    ) -> Result<i64, CacheError> {
        let generation = self.run_generation()?;
        let now = unix_now();
        let start = self.run_start.unwrap_or(now);
        self.write(
            "recording a backup in",
            "INSERT INTO backups (name, root_cap, generation, ts_start, ts_end, entries, bytes, kind)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                name,
                root.as_str(),
                generation,
                start,
                now,
                to_sql(entries),
                to_sql(bytes),
                kind.as_str()
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Every finished backup, oldest first.
    pub(crate) fn backups(&self) -> Result<Vec<BackupRow>, CacheError> {
        let rows = self
            .conn
            .prepare_cached(
                "SELECT id, name, root_cap, generation, ts_start, ts_end, entries, bytes, ts_check,
                        label, priority, pinned, kind
                 FROM backups ORDER BY id",
            )
            .and_then(|mut stmt| {
                stmt.query_map([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, i64>(6)?,
                        r.get::<_, i64>(7)?,
                        r.get::<_, Option<i64>>(8)?,
                        (
                            r.get::<_, Option<String>>(9)?,
                            r.get::<_, Option<i64>>(10)?,
                            r.get::<_, bool>(11)?,
                            r.get::<_, String>(12)?,
                        ),
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(|e| sql_err(&self.path, "reading the backups of", e))?;
        rows.into_iter()
            .map(
                |(
                    id,
                    name,
                    cap,
                    generation,
                    ts_start,
                    ts_end,
                    entries,
                    bytes,
                    ts_check,
                    (label, priority, pinned, kind),
                )| {
                    let count =
                        |v: i64| u64::try_from(v).map_err(|_| self.corrupt("a negative count"));
                    Ok(BackupRow {
                        id,
                        name,
                        root_cap: self.parse_cap(&cap)?,
                        generation: count(generation)?,
                        ts_start,
                        ts_end,
                        entries: count(entries)?,
                        bytes: count(bytes)?,
                        ts_check,
                        label,
                        priority,
                        pinned,
                        kind: BackupKind::parse(&kind)
                            .ok_or_else(|| self.corrupt("an unknown backup kind"))?,
                    })
                },
            )
            .collect()
    }

    /// Sets (or, with `None`, clears) the retention label and priority of
    /// backup `id`; committed with the caller's next commit.
    pub(crate) fn set_label(
        &mut self,
        id: i64,
        label: Option<&str>,
        priority: Option<i64>,
    ) -> Result<(), CacheError> {
        self.write(
            "recording a label in",
            "UPDATE backups SET label = ?1, priority = ?2 WHERE id = ?3",
            params![label, priority, id],
        )?;
        Ok(())
    }

    /// Pins (no retention policy forgets it) or unpins backup `id`;
    /// committed with the caller's next commit.
    pub(crate) fn set_pinned(&mut self, id: i64, pinned: bool) -> Result<(), CacheError> {
        self.write(
            "recording a pin in",
            "UPDATE backups SET pinned = ?1 WHERE id = ?2",
            params![pinned, id],
        )?;
        Ok(())
    }

    /// Records that `check` found backup `id` healthy at `ts`.
    pub(crate) fn set_checked(&mut self, id: i64, ts: i64) -> Result<(), CacheError> {
        self.write(
            "recording a check in",
            "UPDATE backups SET ts_check = ?1 WHERE id = ?2",
            [ts, id],
        )?;
        Ok(())
    }

    /// Records that this cache renewed (or created) the lease of `cap` at
    /// `ts`, Unix seconds. Keeps the later time if one is recorded already.
    /// Literal caps are ignored: they have no shares and no leases.
    pub(crate) fn set_lease_renewed(&mut self, cap: &Cap, ts: i64) -> Result<(), CacheError> {
        self.record_latest_time(
            "recording a lease in",
            "INSERT INTO leases (cap, renewed) VALUES (?1, ?2)
             ON CONFLICT (cap) DO UPDATE SET renewed = max(renewed, excluded.renewed)",
            cap,
            ts,
        )
    }

    /// Runs `upsert` (`?1` the cap, `?2` the time; it keeps the later time)
    /// for a cap with shares: literal caps have no shares, so no lease and
    /// nothing to verify. Shared by the lease and verification records.
    fn record_latest_time(
        &mut self,
        action: &'static str,
        upsert: &str,
        cap: &Cap,
        ts: i64,
    ) -> Result<(), CacheError> {
        if cap.is_literal() {
            return Ok(());
        }
        self.write(action, upsert, params![cap.as_str(), ts])?;
        Ok(())
    }

    /// The cap of content already on the grid: `hash` is the BLAKE3 of a
    /// file's raw bytes as they were streamed to the gateway, `encoding` the
    /// encoding tag of what was sent (`enc:none`, `enc:xz:6`, …). Lets a
    /// moved, renamed or copied file reuse the object without uploading.
    pub(crate) fn content_lookup(
        &self,
        hash: &[u8; 32],
        encoding: &str,
    ) -> Result<Option<Cap>, CacheError> {
        let text: Option<String> = self
            .conn
            .prepare_cached("SELECT cap FROM content WHERE hash = ?1 AND encoding = ?2")
            .and_then(|mut stmt| {
                stmt.query_row(params![&hash[..], encoding], |r| r.get(0))
                    .optional()
            })
            .map_err(|e| sql_err(&self.path, "reading the content index of", e))?;
        Ok(text.and_then(|t| Cap::parse(&t).ok()))
    }

    /// Records that content with this hash and encoding tag is stored as
    /// `cap`. Only for hashes computed from the bytes actually sent.
    pub(crate) fn content_record(
        &mut self,
        hash: &[u8; 32],
        encoding: &str,
        cap: &Cap,
    ) -> Result<(), CacheError> {
        if cap.is_literal() {
            return Ok(());
        }
        self.write(
            "recording content in",
            "INSERT INTO content (hash, encoding, cap) VALUES (?1, ?2, ?3)
             ON CONFLICT (hash, encoding) DO UPDATE SET cap = excluded.cap",
            params![&hash[..], encoding, cap.as_str()],
        )?;
        Ok(())
    }

    /// When this cache last renewed the lease of `cap`, Unix seconds.
    pub(crate) fn lease_renewed(&self, cap: &Cap) -> Result<Option<i64>, CacheError> {
        self.conn
            .prepare_cached("SELECT renewed FROM leases WHERE cap = ?1")
            .and_then(|mut stmt| stmt.query_row([cap.as_str()], |r| r.get(0)).optional())
            .map_err(|e| sql_err(&self.path, "reading a lease from", e))
    }

    /// The grid probe recorded when the cache was created, if any.
    pub(crate) fn probe(&self) -> Result<Option<Probe>, CacheError> {
        let get = |name: &str| self.meta_value(name, "reading the grid probe of");
        let Some(cap) = get("probe_cap")? else {
            return Ok(None);
        };
        let number = |name: &str| -> Result<i64, CacheError> {
            get(name)?
                .and_then(|v| v.parse::<i64>().ok())
                .ok_or_else(|| self.corrupt("the grid probe's encoding is missing"))
        };
        let small = |v: i64| {
            u32::try_from(v).map_err(|_| self.corrupt("the grid probe's encoding is invalid"))
        };
        Ok(Some(Probe {
            cap: self.parse_cap(&cap)?,
            k: small(number("probe_k")?)?,
            n: small(number("probe_n")?)?,
            recorded: number("probe_recorded")?,
        }))
    }

    /// Records the grid probe: the cap of a small random file (larger than
    /// 55 bytes, so not literal) just uploaded, and the gateway's `k`-of-`n`.
    /// Committed at once.
    pub(crate) fn set_probe(&mut self, cap: &Cap, k: u32, n: u32) -> Result<(), CacheError> {
        if cap.is_literal() {
            return Err(CacheError::Internal {
                path: self.path.clone(),
                what: "the grid probe must not be a literal cap (it proves nothing)",
            });
        }
        let rows = [
            ("probe_cap", cap.as_str().to_owned()),
            ("probe_k", k.to_string()),
            ("probe_n", n.to_string()),
            ("probe_recorded", unix_now().to_string()),
        ];
        for (name, value) in &rows {
            self.write(
                "recording the grid probe in",
                "INSERT INTO meta (name, value) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                [*name, value.as_str()],
            )?;
        }
        self.commit()
    }

    /// The recovery catalog's cap `destination.catalog: auto` created,
    /// if any (`docs/recovery.md`).
    pub(crate) fn catalog_cap(&self) -> Result<Option<Cap>, CacheError> {
        match self.meta_value("catalog_cap", "reading the recovery catalog's cap from")? {
            Some(text) => self.parse_cap(&text).map(Some),
            None => Ok(None),
        }
    }

    /// Records the cap of the catalog `destination.catalog: auto` created,
    /// so later runs reuse it. Committed at once.
    pub(crate) fn set_catalog_cap(&mut self, cap: &Cap) -> Result<(), CacheError> {
        self.write(
            "recording the recovery catalog's cap in",
            "INSERT INTO meta (name, value) VALUES ('catalog_cap', ?1)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            [cap.as_str()],
        )?;
        self.commit()
    }

    /// Compares the encoding (`k`-of-`N`) of `fresh`, a cap the gateway just
    /// returned for a new upload, with the probe's. On a difference, warns
    /// once per open and returns false: new uploads now get new caps, while
    /// this cache keeps reusing the old ones. True if they match, if no
    /// probe is recorded, or if `fresh` carries no encoding (a literal).
    pub(crate) fn check_encoding(&mut self, fresh: &Cap) -> Result<bool, CacheError> {
        let Some((k, n)) = fresh.k_n() else {
            return Ok(true);
        };
        let Some(probe) = self.probe()? else {
            return Ok(true);
        };
        if (probe.k, probe.n) == (k, n) {
            return Ok(true);
        }
        if !self.encoding_warned {
            self.encoding_warned = true;
            warn!(
                "the gateway now stores new objects {k}-of-{n}, but the cache {} was created \
                 against {}-of-{}: unchanged files keep their old caps (readable while their \
                 shares live), new uploads get new caps, and identical content no longer \
                 converges on the grid; start a new cache to re-upload everything with the new \
                 encoding",
                self.path.display(),
                probe.k,
                probe.n
            );
        }
        Ok(false)
    }

    /// Commits if `commit_after.queries` rows were written, or
    /// `commit_after.seconds` passed, since the last COMMIT.
    pub(crate) fn maybe_commit(&mut self) -> Result<(), CacheError> {
        if self.pending == 0 {
            return Ok(());
        }
        let by_count = self.max_writes.is_some_and(|q| self.pending >= q);
        let by_time = self
            .max_age
            .is_some_and(|age| self.last_commit.elapsed() >= age);
        if by_count || by_time {
            self.commit()?;
        }
        Ok(())
    }

    /// Commits everything written so far.
    pub(crate) fn commit(&mut self) -> Result<(), CacheError> {
        if !self.conn.is_autocommit() {
            self.conn
                .execute_batch("COMMIT")
                .map_err(|e| sql_err(&self.path, "committing to", e))?;
        }
        self.pending = 0;
        self.last_commit = Instant::now();
        Ok(())
    }

    /// Commits and closes, reporting errors that a drop could only log.
    pub(crate) fn close(mut self) -> Result<(), CacheError> {
        self.commit()
    }

    /// Runs one write statement inside the open transaction (beginning one
    /// if needed); returns the number of rows changed.
    fn write(
        &mut self,
        action: &'static str,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<u64, CacheError> {
        if self.conn.is_autocommit() {
            self.conn
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(|e| sql_err(&self.path, action, e))?;
        }
        let n = self
            .conn
            .prepare_cached(sql)
            .and_then(|mut stmt| stmt.execute(params))
            .map_err(|e| sql_err(&self.path, action, e))?;
        self.pending += n as u64;
        Ok(n as u64)
    }

    /// The `meta` row `name`, if there is one; `action` names the read in
    /// an error.
    fn meta_value(&self, name: &str, action: &'static str) -> Result<Option<String>, CacheError> {
        self.conn
            .prepare_cached("SELECT value FROM meta WHERE name = ?1")
            .and_then(|mut stmt| stmt.query_row([name], |r| r.get(0)).optional())
            .map_err(|e| sql_err(&self.path, action, e))
    }

    fn run_generation(&self) -> Result<i64, CacheError> {
        if self.generation == 0 {
            return Err(CacheError::Internal {
                path: self.path.clone(),
                what: "an object was recorded before the backup run began",
            });
        }
        Ok(to_sql(self.generation))
    }

    fn parse_cap(&self, text: &str) -> Result<Cap, CacheError> {
        // The parse error may quote the cap: never pass it on.
        Cap::parse(text).map_err(|_| self.corrupt("a stored cap does not parse"))
    }

    fn corrupt(&self, what: &str) -> CacheError {
        CacheError::Corrupt {
            path: self.path.clone(),
            what: format!("it holds {what}"),
        }
    }
}

impl Drop for Cache {
    /// A normal drop commits; while panicking, the open transaction is rolled
    /// back instead (what was committed stays).
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        if let Err(e) = self.commit() {
            warn!("{e}");
        }
    }
}

/// `O_NOFOLLOW | O_CLOEXEC` for opening state files.
fn nofollow() -> i32 {
    (nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_CLOEXEC).bits()
}

/// SQLite opens `-wal`, `-shm` and `-journal` by name, following links: a
/// symlink planted there would make it write (and chmod) another file. They
/// are refused before SQLite opens the database.
fn refuse_linked_side_files(path: &Path) -> Result<(), CacheError> {
    for suffix in SIDE_FILES {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let side = PathBuf::from(side);
        if std::fs::symlink_metadata(&side).is_ok_and(|md| md.file_type().is_symlink()) {
            return Err(CacheError::Io {
                path: path.to_owned(),
                action: format!("use its side file {}", side.display()),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "it is a symbolic link; state files are never followed through links \
                     (remove the link)",
                ),
            });
        }
    }
    Ok(())
}

/// A cache path must hold a regular file (not a directory, fifo, device).
fn require_regular_file(file: &File, path: &Path) -> Result<(), CacheError> {
    let md = file.metadata().map_err(|source| CacheError::Io {
        path: path.to_owned(),
        action: "read its status".to_owned(),
        source,
    })?;
    if md.is_file() {
        Ok(())
    } else {
        Err(CacheError::NotACache {
            path: path.to_owned(),
            why: "it is not a regular file".into(),
        })
    }
}

/// Creates missing parent directories, 0700 (the cache is private).
fn ensure_parent(path: &Path) -> Result<(), CacheError> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() && !parent.exists() => DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|source| CacheError::Io {
                path: path.to_owned(),
                action: format!("create its directory {}", parent.display()),
                source,
            }),
        _ => Ok(()),
    }
}

/// Creates the database file with mode 0600 if absent, before SQLite sees
/// it (SQLite gives its -wal, -shm and -journal files the database's mode).
/// Tightens an existing file, and its side files, that others could read.
fn create_file(path: &Path) -> Result<(), CacheError> {
    let io_err = |action: &str, source| CacheError::Io {
        path: path.to_owned(),
        action: action.to_owned(),
        source,
    };
    // O_NOFOLLOW: a symlink planted at the cache's path is refused, never
    // chmodded or turned into a cache (create_new already refuses one).
    let file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nofollow())
        .open(path)
    {
        Ok(file) => {
            // 0600 whatever the umask left of it.
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| io_err("set its permissions to 0600", e))?;
            file
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => OpenOptions::new()
            .read(true)
            .custom_flags(nofollow())
            .open(path)
            .map_err(|e| io_err("open it", crate::queue::refuse_symlink(e)))?,
        Err(e) => return Err(io_err("create it", e)),
    };
    require_regular_file(&file, path)?;
    if lock::tighten(&file).map_err(|e| io_err("set its permissions to 0600", e))? {
        warn!(
            "the cache {} was readable or writable by others; its mode is now 0600 \
             (it holds caps, which grant access to the backed-up data)",
            path.display()
        );
    }
    for suffix in SIDE_FILES {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        if let Ok(f) = OpenOptions::new()
            .read(true)
            .custom_flags(nofollow())
            .open(&side)
        {
            lock::tighten(&f).map_err(|e| io_err("set the permissions of its side files", e))?;
        }
    }
    Ok(())
}
