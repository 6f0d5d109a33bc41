//! The btrfs plan facts of stream backups (`backups.btrfs_date`,
//! `backups.btrfs_parent`; `docs/btrfs.md`): what the planner is fed.

use jiff::civil::Date;
use rusqlite::params;

use super::{Cache, CacheError, sql_err};
use crate::btrfs::plan::{Kind, Member};

/// A recorded btrfs member: its `backups` row id and its plan facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordedMember {
    /// The `backups` row.
    pub(crate) id: i64,
    /// Its generation (what `forget` goes by).
    pub(crate) generation: u64,
    /// Its date and `c` or `i PARENT`.
    pub(crate) member: Member,
}

/// A date as the columns hold it.
fn text(date: Date) -> String {
    date.strftime("%Y-%m-%d").to_string()
}

impl Cache {
    /// [`Cache::finish_backup_of`] of a stream backup that is the btrfs
    /// member `member`: the row and its facts commit together, so that no
    /// member is ever recorded without them.
    pub(crate) fn finish_btrfs_backup(
        &mut self,
        name: &[u8],
        root: &crate::tahoe::Cap,
        entries: u64,
        bytes: u64,
        member: &Member,
    ) -> Result<i64, CacheError> {
        let id = self.insert_backup(super::BackupKind::Stream, name, root, entries, bytes)?;
        self.set_btrfs_member(id, member)?;
        self.commit()?;
        Ok(id)
    }

    /// Records backup `id` as the btrfs member `member` (committed with the
    /// caller's next commit).
    pub(crate) fn set_btrfs_member(&mut self, id: i64, member: &Member) -> Result<(), CacheError> {
        let parent = match member.kind {
            Kind::Complete => None,
            Kind::Incremental { parent } => Some(text(parent)),
        };
        self.write(
            "recording a btrfs member in",
            "UPDATE backups SET btrfs_date = ?2, btrfs_parent = ?3 WHERE id = ?1",
            params![id, text(member.date), parent],
        )?;
        Ok(())
    }

    /// The btrfs members recorded under `name`, in row order.
    pub(crate) fn btrfs_members(&self, name: &[u8]) -> Result<Vec<RecordedMember>, CacheError> {
        let action = "reading the btrfs members of";
        let rows = self
            .conn
            .prepare_cached(
                "SELECT id, generation, btrfs_date, btrfs_parent FROM backups
                 WHERE name = ?1 AND btrfs_date IS NOT NULL ORDER BY id",
            )
            .and_then(|mut stmt| {
                stmt.query_map([name], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(|e| sql_err(&self.path, action, e))?;
        let date = |s: &str| {
            s.parse::<Date>()
                .map_err(|_| self.corrupt("a btrfs member whose date is not a date"))
        };
        rows.into_iter()
            .map(|(id, generation, day, parent)| {
                let kind = match parent {
                    None => Kind::Complete,
                    Some(p) => Kind::Incremental { parent: date(&p)? },
                };
                Ok(RecordedMember {
                    id,
                    generation: u64::try_from(generation)
                        .map_err(|_| self.corrupt("a negative generation"))?,
                    member: Member {
                        date: date(&day)?,
                        kind,
                    },
                })
            })
            .collect()
    }
}
