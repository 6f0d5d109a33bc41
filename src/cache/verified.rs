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
