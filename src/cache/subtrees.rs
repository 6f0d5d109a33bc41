//! The `subtrees` table: a directory's subtree signature (`crate::subtree`)
//! and the cap its directory object was stored as, so that a re-run finds
//! an unchanged directory without visiting what it holds.
//!
//! A row is a claim "everything beneath this directory, as the signature
//! describes it, is stored under this cap", valid while:
//! * the cap still has an `objects` row (cleanup removes rows whose cap
//!   lost its last one, [`Cache::drop_orphan_subtrees`]);
//! * the oldest lease beneath it (`leased`) is younger than
//!   `lease.reuse_check_days` (older: the run takes the per-entry path,
//!   whose reuse checks renew what they reuse, and records a new row);
//! * no object was found unhealthy since ([`Cache::forget_cap`] drops every
//!   row: the broken object may be beneath any of them).

use rusqlite::{OptionalExtension as _, params};

use super::{Cache, CacheError, sql_err};
use crate::cache::ObjectKey;
use crate::tahoe::Cap;

/// A recorded subtree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subtree {
    pub(crate) cap: Cap,
    /// The oldest lease renewal beneath the directory when it was recorded.
    pub(crate) leased: i64,
}

impl Cache {
    /// The subtree recorded under `sig`, if any (and its directory still
    /// has an `objects` row).
    pub(crate) fn subtree(&self, sig: &ObjectKey) -> Result<Option<Subtree>, CacheError> {
        let row: Option<(String, i64)> = self
            .conn
            .prepare_cached(
                "SELECT s.cap, s.leased FROM subtrees s
                 WHERE s.sig = ?1 AND EXISTS (SELECT 1 FROM objects o WHERE o.cap = s.cap)",
            )
            .and_then(|mut stmt| {
                stmt.query_row([&sig.as_bytes()[..]], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(|e| sql_err(&self.path, "looking up a subtree in", e))?;
        let Some((cap, leased)) = row else {
            return Ok(None);
        };
        Ok(Some(Subtree {
            cap: self.parse_cap(&cap)?,
            leased,
        }))
    }

    /// Records that the directory with signature `sig` is stored as `cap`,
    /// the oldest lease beneath it renewed at `leased`.
    pub(crate) fn record_subtree(
        &mut self,
        sig: &ObjectKey,
        cap: &Cap,
        leased: i64,
    ) -> Result<(), CacheError> {
        let generation = self.run_generation()?;
        self.write(
            "recording a subtree in",
            "INSERT INTO subtrees (sig, cap, leased, generation) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (sig) DO UPDATE SET cap = excluded.cap, leased = excluded.leased,
                 generation = excluded.generation",
            params![&sig.as_bytes()[..], cap.as_str(), leased, generation],
        )?;
        Ok(())
    }

    /// Forgets every recorded subtree (an object was found unhealthy, and it
    /// may be beneath any of them).
    pub(crate) fn forget_subtrees(&mut self) -> Result<(), CacheError> {
        self.write("forgetting subtrees in", "DELETE FROM subtrees", [])?;
        Ok(())
    }
}

/// Removes the rows whose directory lost its last `objects` row; part of
/// cleanup's transaction (`apply_forget`).
pub(super) const DROP_ORPHANS: &str =
    "DELETE FROM subtrees WHERE NOT EXISTS (SELECT 1 FROM objects o WHERE o.cap = subtrees.cap)";
