//! What `status` and the Prometheus textfile report, collected once from the
//! config and the recorded cache (read-only, no gateway): per job its last
//! success and last run, its kept backups and last check; per cache the
//! lease horizon and the verification coverage; and the thresholds of
//! `monitor` that are crossed.

use std::collections::BTreeSet;

use crate::cache::{Cache, Coverage, LeaseAges, RunRecord};
use crate::config::{Config, Monitor};
use crate::scan;

const DAY: f64 = 86_400.0;

/// Everything `status` shows, as of `now`.
#[derive(Debug, Clone)]
pub(crate) struct Status {
    /// Unix seconds: the run's clock (`LAFS_BACKUP_NOW`).
    pub(crate) now: i64,
    pub(crate) jobs: Vec<JobStatus>,
    /// `None` when there is no cache yet.
    pub(crate) cache: Option<CacheFacts>,
    /// The thresholds crossed, jobs first.
    pub(crate) crossed: Vec<Crossing>,
}

/// One job (backup name).
#[derive(Debug, Clone, Default)]
pub(crate) struct JobStatus {
    /// The backup name, raw bytes.
    pub(crate) name: Vec<u8>,
    /// When the last successful backup finished (Unix seconds): the last
    /// run with exit 0, else (no such run recorded) the newest backup.
    pub(crate) last_success: Option<i64>,
    /// The last recorded run, skipped or not.
    pub(crate) last_run: Option<RunRecord>,
    /// Backups of the name in the cache.
    pub(crate) kept: u64,
    /// The newest `check` of a backup of the name.
    pub(crate) last_check: Option<i64>,
}

/// The cache-wide facts: objects are shared between names.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CacheFacts {
    pub(crate) leases: LeaseAges,
    /// `lease.duration_days`.
    pub(crate) lease_days: u64,
    pub(crate) coverage: Coverage,
    /// The earliest moment from which some object has gone unverified: its
    /// last verification, or for one never verified the start of the
    /// oldest backup reaching it. `None` when there are no objects.
    pub(crate) unverified_since: Option<i64>,
}

impl CacheFacts {
    /// The lease horizon (Unix seconds): the oldest renewal plus
    /// `lease.duration_days`; `now` when an object has no renewal recorded
    /// (it may lapse at any time as far as this cache knows); `None`
    /// without objects.
    pub(crate) fn horizon(&self, now: i64) -> Option<i64> {
        if self.leases.objects == 0 {
            return None;
        }
        if self.leases.never > 0 {
            return Some(now);
        }
        let secs = i64::try_from(self.lease_days.saturating_mul(86_400)).unwrap_or(i64::MAX);
        self.leases.oldest.map(|t| t.saturating_add(secs))
    }

    /// Days from `now` to the horizon (negative: past).
    pub(crate) fn horizon_days(&self, now: i64) -> Option<f64> {
        self.horizon(now).map(|h| days(h.saturating_sub(now)))
    }

    /// Verified objects / all (1 when every one is; `None` without objects).
    pub(crate) fn verified_ratio(&self) -> Option<f64> {
        let c = &self.coverage;
        (c.objects > 0).then(|| c.verified as f64 / c.objects as f64)
    }

    /// Days since [`CacheFacts::unverified_since`].
    pub(crate) fn unverified_days(&self, now: i64) -> Option<f64> {
        self.unverified_since.map(|t| days(now.saturating_sub(t)))
    }
}

/// One crossed threshold.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Crossing {
    /// The job, for `max_backup_age`; `None` for the cache-wide ones.
    pub(crate) job: Option<Vec<u8>>,
    /// The `monitor` key.
    pub(crate) threshold: &'static str,
    /// The measured value: the age in seconds (`None`: never succeeded),
    /// or days.
    pub(crate) value: Option<f64>,
    /// The limit as configured (`26h`, `7`).
    pub(crate) limit: String,
    /// What a person reads on stderr.
    pub(crate) message: String,
}

/// Seconds as days.
fn days(secs: i64) -> f64 {
    secs as f64 / DAY
}

/// The jobs `status` reports: the config's (the top-level `source.path`
/// named as `backup` names it, then `jobs:`), else every name the cache
/// has runs or backups of.
fn job_names(config: &Config, cache: Option<&Cache>) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut names: Vec<Vec<u8>> = Vec::new();
    if let Some(pattern) = &config.source.path {
        // As `backup` does: a glob that matches nothing now keeps its text.
        let name = scan::pick_source(pattern)
            .map(|p| scan::backup_name(&p))
            .unwrap_or_else(|_| pattern.into());
        names.push(name.as_encoded_bytes().to_vec());
    }
    for job in &config.jobs {
        names.extend(dump_names(config, job, cache)?);
    }
    if names.is_empty()
        && let Some(cache) = cache
    {
        let mut all: BTreeSet<Vec<u8>> = cache.run_names()?.into_iter().collect();
        all.extend(cache.backups()?.into_iter().map(|b| b.name));
        names = all.into_iter().collect();
    }
    Ok(names)
}

/// A job's backup names: its own, or for a dump job (one backup per
/// database, `docs/dumps.md`) the names `<job>` and `<job>.*` the cache has
/// runs or backups of (its own name when it has none yet), minus other
/// jobs' names.
fn dump_names(
    config: &Config,
    job: &crate::config::Job,
    cache: Option<&Cache>,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let own = job.name.as_bytes().to_vec();
    let Some(cache) = cache.filter(|_| job.kind == crate::config::JobKind::Dump) else {
        return Ok(vec![own]);
    };
    let prefix = format!("{}.", job.name).into_bytes();
    let mut all: BTreeSet<Vec<u8>> = cache.run_names()?.into_iter().collect();
    all.extend(cache.backups()?.into_iter().map(|b| b.name));
    let found: Vec<Vec<u8>> = all
        .into_iter()
        .filter(|n| *n == own || n.starts_with(&prefix))
        .filter(|n| {
            *n == own
                || !config
                    .jobs
                    .iter()
                    .any(|j| j.name.as_bytes() == n.as_slice())
        })
        .collect();
    Ok(if found.is_empty() { vec![own] } else { found })
}

/// Collects the status of `config`'s jobs from `cache` (`None`: there is
/// no cache yet, every job is "never") as of `now`.
pub(crate) fn collect(config: &Config, cache: Option<&Cache>, now: i64) -> anyhow::Result<Status> {
    let names = job_names(config, cache)?;
    let backups = match cache {
        Some(c) => c.backups()?,
        None => Vec::new(),
    };
    let mut jobs = Vec::with_capacity(names.len());
    for name in names {
        let mut job = JobStatus {
            name,
            ..JobStatus::default()
        };
        let mut newest_backup: Option<i64> = None;
        for b in backups.iter().filter(|b| b.name == job.name) {
            job.kept += 1;
            newest_backup = newest_backup.max(Some(b.ts_end));
            job.last_check = job.last_check.max(b.ts_check);
        }
        if let Some(cache) = cache {
            job.last_run = cache.last_run(&job.name)?;
            job.last_success = cache
                .last_successful_run(&job.name)?
                .map(|r| r.ts_end)
                .or(newest_backup);
        }
        jobs.push(job);
    }
    let facts = match cache {
        Some(cache) => {
            let coverage = cache.coverage()?;
            let never = if coverage.verified < coverage.objects {
                cache.never_verified_since()?
            } else {
                None
            };
            let unverified_since = match (coverage.oldest, never) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            Some(CacheFacts {
                leases: cache.lease_ages()?,
                lease_days: config.lease.duration_days,
                coverage,
                unverified_since,
            })
        }
        None => None,
    };
    let tz = jiff::tz::TimeZone::system();
    let crossed = crossings(&config.monitor, &jobs, facts.as_ref(), now, &tz);
    Ok(Status {
        now,
        jobs,
        cache: facts,
        crossed,
    })
}

/// The `monitor` thresholds crossed; an unset one is not checked.
pub(crate) fn crossings(
    monitor: &Monitor,
    jobs: &[JobStatus],
    facts: Option<&CacheFacts>,
    now: i64,
    tz: &jiff::tz::TimeZone,
) -> Vec<Crossing> {
    let mut out = Vec::new();
    if let Some(max_age) = monitor.max_backup_age {
        let limit = max_age.0.to_string();
        // Calendar arithmetic in the local zone, as retention's `within`.
        let oldest_ok = max_age.0.before(now, tz).map(|t| t.as_second());
        for job in jobs {
            let shown = crate::commands::show::name(&job.name);
            match job.last_success {
                None => out.push(Crossing {
                    job: Some(job.name.clone()),
                    threshold: "max_backup_age",
                    value: None,
                    limit: limit.clone(),
                    message: format!(
                        "job {shown}: no successful backup recorded (monitor.max_backup_age {limit})"
                    ),
                }),
                Some(ts) if oldest_ok.is_some_and(|ok| ts < ok) => {
                    let age = now.saturating_sub(ts);
                    out.push(Crossing {
                        job: Some(job.name.clone()),
                        threshold: "max_backup_age",
                        value: Some(age as f64),
                        limit: limit.clone(),
                        message: format!(
                            "job {shown}: the last successful backup is {} old, older than \
                             monitor.max_backup_age {limit}",
                            human_age(age)
                        ),
                    });
                }
                Some(_) => {}
            }
        }
        if jobs.is_empty() {
            out.push(Crossing {
                job: None,
                threshold: "max_backup_age",
                value: None,
                limit,
                message: "no backup is configured or recorded (monitor.max_backup_age)".into(),
            });
        }
    }
    let Some(facts) = facts else {
        return out;
    };
    if let (Some(min), Some(left)) = (monitor.min_lease_days, facts.horizon_days(now))
        && left < min as f64
    {
        let why = if facts.leases.never > 0 {
            format!(
                "{} object(s) have no lease renewal recorded and may lapse at any time",
                facts.leases.never
            )
        } else {
            format!("the first lease may lapse in {left:.1} days")
        };
        out.push(Crossing {
            job: None,
            threshold: "min_lease_days",
            value: Some(round1(left)),
            limit: min.to_string(),
            message: format!(
                "lease horizon: {why}, fewer than monitor.min_lease_days {min} \
                     (`lafs-backup check --leases` renews them)"
            ),
        });
    }
    if let (Some(max), Some(since)) = (monitor.max_unverified_days, facts.unverified_days(now))
        && since > max as f64
    {
        out.push(Crossing {
            job: None,
            threshold: "max_unverified_days",
            value: Some(round1(since)),
            limit: max.to_string(),
            message: format!(
                "verification: an object has gone unverified for {since:.1} days, more than \
                     monitor.max_unverified_days {max} (`lafs-backup check --verify-sample` \
                     verifies them)"
            ),
        });
    }
    out
}

/// Rounded to one decimal, as shown.
fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// An age for people: `3d 4h`, `5h 2m`, `12m`, `42s`.
pub(crate) fn human_age(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MaxAge;

    const NOW: i64 = 1_704_592_800; // 2024-01-07T02:00:00Z

    fn monitor(age: Option<&str>, lease: Option<u64>, unverified: Option<u64>) -> Monitor {
        let mut m = Config::default().monitor;
        m.max_backup_age = age.map(|a| MaxAge(a.parse().unwrap()));
        m.min_lease_days = lease;
        m.max_unverified_days = unverified;
        m
    }

    fn job(name: &str, last_success: Option<i64>) -> JobStatus {
        JobStatus {
            name: name.as_bytes().to_vec(),
            last_success,
            ..JobStatus::default()
        }
    }

    fn facts(oldest_renewal: i64, never: u64, unverified_since: i64) -> CacheFacts {
        CacheFacts {
            leases: LeaseAges {
                objects: 10,
                never,
                oldest: Some(oldest_renewal),
            },
            lease_days: 31,
            coverage: Coverage {
                objects: 10,
                verified: 5,
                oldest: Some(unverified_since),
            },
            unverified_since: Some(unverified_since),
        }
    }

    #[test]
    fn max_backup_age_is_calendar_time_and_never_crosses() {
        let utc = jiff::tz::TimeZone::UTC;
        let m = monitor(Some("26h"), None, None);
        let jobs = [
            job("fresh", Some(NOW - 26 * 3600)),
            job("stale", Some(NOW - 26 * 3600 - 1)),
            job("never", None),
        ];
        let c = crossings(&m, &jobs, None, NOW, &utc);
        let named: Vec<_> = c.iter().map(|c| c.job.clone().unwrap()).collect();
        assert_eq!(named, [b"stale".to_vec(), b"never".to_vec()]);
        assert_eq!(c[0].value, Some((26 * 3600 + 1) as f64));
        assert_eq!(
            (c[0].threshold, c[0].limit.as_str()),
            ("max_backup_age", "26h")
        );
        assert_eq!(c[1].value, None);
        assert!(
            c[1].message.contains("no successful backup"),
            "{}",
            c[1].message
        );
        // A month is a calendar month: 2023-12-07T02:00Z is exactly 1m before.
        let m = monitor(Some("1m"), None, None);
        let dec7 = NOW - 31 * 86_400;
        assert!(crossings(&m, &[job("a", Some(dec7))], None, NOW, &utc).is_empty());
        assert_eq!(
            crossings(&m, &[job("a", Some(dec7 - 1))], None, NOW, &utc).len(),
            1
        );
        // Unset: nothing is checked, even a job that never ran.
        let none = monitor(None, None, None);
        assert!(crossings(&none, &[job("never", None)], None, NOW, &utc).is_empty());
        // No job at all with max_backup_age set: crossed, for no job.
        let c = crossings(&monitor(Some("2d"), None, None), &[], None, NOW, &utc);
        assert_eq!((c.len(), c[0].job.clone()), (1, None));
    }

    #[test]
    fn lease_horizon_and_unverified_days() {
        let utc = jiff::tz::TimeZone::UTC;
        // Renewed 29 days ago with a 31-day lease: 2 days left.
        let f = facts(NOW - 29 * 86_400, 0, NOW - 10 * 86_400);
        assert_eq!(f.horizon(NOW), Some(NOW + 2 * 86_400));
        assert_eq!(f.horizon_days(NOW), Some(2.0));
        assert_eq!(f.verified_ratio(), Some(0.5));
        let m = monitor(None, Some(7), Some(10));
        let c = crossings(&m, &[], Some(&f), NOW, &utc);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!((c[0].threshold, c[0].value), ("min_lease_days", Some(2.0)));
        assert_eq!((c[0].job.clone(), c[0].limit.as_str()), (None, "7"));
        // Exactly 10 days unverified is not more than 10; a second more is.
        let f = facts(NOW, 0, NOW - 10 * 86_400 - 1);
        let c = crossings(&m, &[], Some(&f), NOW, &utc);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].threshold, "max_unverified_days");
        assert!(crossings(&m, &[], Some(&facts(NOW, 0, NOW - 10 * 86_400)), NOW, &utc).is_empty());
        // An object with no renewal recorded: the horizon is now.
        let f = facts(NOW, 1, NOW);
        assert_eq!(f.horizon_days(NOW), Some(0.0));
        let c = crossings(&m, &[], Some(&f), NOW, &utc);
        assert!(c[0].message.contains("no lease renewal recorded"), "{c:?}");
        // No objects: no horizon, no ratio, nothing crossed.
        let empty = CacheFacts::default();
        assert_eq!((empty.horizon(NOW), empty.verified_ratio()), (None, None));
        assert!(crossings(&m, &[], Some(&empty), NOW, &utc).is_empty());
    }

    #[test]
    fn ages_for_people() {
        assert_eq!(human_age(42), "42s");
        assert_eq!(human_age(720), "12m");
        assert_eq!(human_age(5 * 3600 + 120), "5h 2m");
        assert_eq!(human_age(3 * 86_400 + 4 * 3600 + 59), "3d 4h");
        assert_eq!(human_age(-5), "0s");
    }
}
