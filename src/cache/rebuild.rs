//! The writers `cache rebuild` needs beyond a backup run's: a backup row
//! with the times and generation read from elsewhere (a result file line,
//! the recovery catalog), and the run lock of a cache path without opening
//! it (the rebuilt cache is written to a temp file and renamed over it).
//!
//! Objects, references and content rows go through the ordinary writers
//! (`record`, `record_children`, `content_record`), so the rebuilt rows are
//! exactly those a backup would have written.

use std::path::Path;

use rusqlite::params;

use super::{Cache, CacheError, lock, to_sql};
use crate::tahoe::Cap;

/// The run lock of a cache path, held while that cache is rebuilt.
pub(crate) struct PathLock {
    _lock: lock::LockFile,
}

impl std::fmt::Debug for PathLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PathLock")
    }
}

/// Takes the run lock of the cache at `path` (the same `PATH.lock` that
/// `backup`, `check` and `cleanup` take), without opening or creating the
/// database: fails at once with [`CacheError::Locked`] while another run
/// holds it.
pub(crate) fn lock_path_only(path: &Path) -> Result<PathLock, CacheError> {
    super::ensure_parent(path)?;
    Ok(PathLock {
        _lock: lock::LockFile::acquire(path)?,
    })
}

/// A backup found on the grid, as `cache rebuild` records it.
#[derive(Debug, Clone)]
pub(crate) struct RebuiltBackup<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) root: &'a Cap,
    pub(crate) ts_start: i64,
    pub(crate) ts_end: i64,
    pub(crate) entries: u64,
    pub(crate) bytes: u64,
    pub(crate) label: Option<&'a str>,
}

impl Cache {
    /// Gives the current run (begun with [`Cache::begin_run`]) the
    /// generation a rebuilt backup had when it was made.
    pub(crate) fn set_rebuilt_generation(&mut self, generation: u64) {
        self.generation = generation.max(1);
    }

    /// Records a backup rebuilt from the grid under the current run's
    /// generation ([`Cache::begin_run`]), with its own times; commits.
    pub(crate) fn record_rebuilt_backup(
        &mut self,
        backup: &RebuiltBackup<'_>,
    ) -> Result<i64, CacheError> {
        let generation = self.run_generation()?;
        self.write(
            "recording a backup in",
            "INSERT INTO backups (name, root_cap, generation, ts_start, ts_end, entries, bytes,
                                  label)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                backup.name,
                backup.root.as_str(),
                generation,
                backup.ts_start,
                backup.ts_end,
                to_sql(backup.entries),
                to_sql(backup.bytes),
                backup.label,
            ],
        )?;
        let id = self.conn.last_insert_rowid();
        self.commit()?;
        Ok(id)
    }

    /// Makes the rebuilt backup `id` a stream backup (`docs/streams.md`):
    /// its kind, its objects and length, and a btrfs member's facts
    /// (`docs/btrfs.md`), as `stream::read::Layout::recorded` gives them;
    /// commits.
    pub(crate) fn set_rebuilt_stream(
        &mut self,
        id: i64,
        (entries, size, btrfs): (u64, u64, Option<&crate::btrfs::plan::Member>),
    ) -> Result<(), CacheError> {
        self.write(
            "recording a rebuilt stream in",
            "UPDATE backups SET kind = 'stream', entries = ?2, bytes = ?3 WHERE id = ?1",
            params![id, to_sql(entries), to_sql(size)],
        )?;
        if let Some(member) = btrfs {
            self.set_btrfs_member(id, member)?;
        }
        self.commit()
    }
}
