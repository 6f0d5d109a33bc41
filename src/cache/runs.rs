//! The record of every job's runs (`backup`): when it ran, how it ended and
//! what it moved. `status` and the Prometheus textfile read it; a run that
//! ended before the cache could be opened is recorded by its caller once
//! the cache is reachable (or not at all, with a warning).

use rusqlite::{OptionalExtension, Row, params};

use super::{Cache, CacheError, sql_err};

/// How many runs are kept per backup name: enough for a year of nightly
/// runs, small enough that the table never matters for the cache's size.
const KEEP_PER_NAME: i64 = 400;

/// One run of one job. Counts are `None` when the run ended before it knew
/// them (a failed scan, a skipped job).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct RunRecord {
    /// The backup name.
    pub(crate) name: Vec<u8>,
    /// The config's job name, when the run was one of `jobs:`.
    pub(crate) job: Option<String>,
    /// Unix seconds.
    pub(crate) ts_start: i64,
    /// Unix seconds.
    pub(crate) ts_end: i64,
    /// The job's exit status (`docs/exit-codes.md`); 0 for a skipped job.
    pub(crate) exit: u8,
    /// Why the job did not run (not due, a `before` hook's 75), if it did not.
    pub(crate) skipped: Option<String>,
    /// Entries of the backup (its scan or queue).
    pub(crate) entries: Option<u64>,
    /// Bytes sent to the gateway.
    pub(crate) bytes_uploaded: Option<u64>,
    /// Objects reused from the cache instead of uploaded.
    pub(crate) objects_reused: Option<u64>,
}

fn to_u64(v: Option<i64>) -> Option<u64> {
    v.and_then(|n| u64::try_from(n).ok())
}

fn to_i64(v: Option<u64>) -> Option<i64> {
    v.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

fn read(r: &Row<'_>) -> rusqlite::Result<RunRecord> {
    let exit: i64 = r.get(4)?;
    Ok(RunRecord {
        name: r.get(0)?,
        job: r.get(1)?,
        ts_start: r.get(2)?,
        ts_end: r.get(3)?,
        exit: u8::try_from(exit).unwrap_or(u8::MAX),
        skipped: r.get(5)?,
        entries: to_u64(r.get(6)?),
        bytes_uploaded: to_u64(r.get(7)?),
        objects_reused: to_u64(r.get(8)?),
    })
}

const COLUMNS: &str =
    "name, job, ts_start, ts_end, exit, skipped, entries, bytes_uploaded, objects_reused";

impl Cache {
    /// Records a finished run and commits it (a later failure of the same
    /// process must not lose it). Old runs of the name beyond
    /// [`KEEP_PER_NAME`] are dropped.
    pub(crate) fn record_run(&mut self, run: &RunRecord) -> Result<(), CacheError> {
        self.write(
            "recording a run in",
            &format!("INSERT INTO runs ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
            params![
                run.name,
                run.job,
                run.ts_start,
                run.ts_end,
                i64::from(run.exit),
                run.skipped,
                to_i64(run.entries),
                to_i64(run.bytes_uploaded),
                to_i64(run.objects_reused),
            ],
        )?;
        self.write(
            "pruning old runs in",
            "DELETE FROM runs WHERE name = ?1 AND id NOT IN
                 (SELECT id FROM runs WHERE name = ?1 ORDER BY id DESC LIMIT ?2)",
            params![run.name, KEEP_PER_NAME],
        )?;
        self.commit()
    }

    /// The newest run of `name`, skipped ones included.
    pub(crate) fn last_run(&self, name: &[u8]) -> Result<Option<RunRecord>, CacheError> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM runs WHERE name = ?1 ORDER BY id DESC LIMIT 1"
            ))
            .and_then(|mut stmt| stmt.query_row([name], read).optional())
            .map_err(|e| sql_err(&self.path, "reading the runs of", e))
    }

    /// The newest run of `name` that ended with exit 0 and was not skipped.
    pub(crate) fn last_successful_run(&self, name: &[u8]) -> Result<Option<RunRecord>, CacheError> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM runs WHERE name = ?1 AND exit = 0 AND skipped IS NULL
                 ORDER BY id DESC LIMIT 1"
            ))
            .and_then(|mut stmt| stmt.query_row([name], read).optional())
            .map_err(|e| sql_err(&self.path, "reading the runs of", e))
    }

    /// Every backup name with a recorded run, in byte order.
    pub(crate) fn run_names(&self) -> Result<Vec<Vec<u8>>, CacheError> {
        self.conn
            .prepare_cached("SELECT DISTINCT name FROM runs ORDER BY name")
            .and_then(|mut stmt| stmt.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| sql_err(&self.path, "reading the runs of", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CommitAfter;

    fn open_temp() -> (tempfile::TempDir, Cache) {
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = CommitAfter {
            queries: None,
            seconds: None,
        };
        let cache = Cache::open(&dir.path().join("cache.sqlite"), &limits).expect("open");
        (dir, cache)
    }

    #[test]
    fn runs_are_recorded_and_read_back() {
        let (_dir, mut cache) = open_temp();
        assert_eq!(cache.last_run(b"home").expect("read"), None);
        let ok = RunRecord {
            name: b"home".to_vec(),
            job: Some("home".into()),
            ts_start: 100,
            ts_end: 160,
            exit: 0,
            entries: Some(12),
            bytes_uploaded: Some(3000),
            objects_reused: Some(4),
            ..RunRecord::default()
        };
        cache.record_run(&ok).expect("record");
        let failed = RunRecord {
            ts_start: 200,
            ts_end: 201,
            exit: 1,
            entries: None,
            bytes_uploaded: None,
            objects_reused: None,
            ..ok.clone()
        };
        cache.record_run(&failed).expect("record");
        assert_eq!(cache.last_run(b"home").expect("read"), Some(failed));
        assert_eq!(cache.last_successful_run(b"home").expect("read"), Some(ok));
        assert_eq!(cache.run_names().expect("read"), vec![b"home".to_vec()]);
    }

    #[test]
    fn old_runs_are_pruned() {
        let (_dir, mut cache) = open_temp();
        for i in 0..KEEP_PER_NAME + 5 {
            let run = RunRecord {
                name: b"n".to_vec(),
                ts_start: i,
                ts_end: i,
                ..RunRecord::default()
            };
            cache.record_run(&run).expect("record");
        }
        let count: i64 = cache
            .conn
            .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
            .expect("count");
        assert_eq!(count, KEEP_PER_NAME);
        let last = cache.last_run(b"n").expect("read").expect("some");
        assert_eq!(last.ts_start, KEEP_PER_NAME + 4);
    }
}
