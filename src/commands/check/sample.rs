//! `check --verify-sample PCT%|DURATION`: verifies (`t=check&verify=true`)
//! the objects reachable from the recorded backups, least recently verified
//! first, within a budget, records each verification in the cache and
//! reports the coverage. Because each run takes the least recently verified
//! objects, a budget of PCT % of the objects (rounded up) reaches every
//! object at least once per `ceil(100 / PCT)` runs.

use std::time::{Duration, Instant};

use serde_json::json;
use tracing::info;

use super::Deadline;
use super::report::Reporter;
use super::tree::failure_report;
use crate::cache::{Cache, Coverage, unix_now};
use crate::commands::show;
use crate::exit::Outcome;
use crate::tahoe::{CheckOptions, Client, TahoeError};

/// Objects read from the cache at a time.
const PAGE: usize = 512;

/// How much one run of `check --verify-sample` may verify.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Budget {
    /// A percentage of the objects, 0 < PCT <= 100, rounded up to whole
    /// objects.
    Percent(f64),
    /// A wall time: the first object always runs, then no new one starts
    /// once it has passed.
    Time(Duration),
}

impl Budget {
    /// `25%` (or `25`) is a percentage; anything with a unit (`10m`, `1h`,
    /// `90s`) a duration.
    pub(super) fn parse(text: &str) -> Result<Budget, String> {
        let t = text.trim();
        let number = t.strip_suffix('%').unwrap_or(t).trim();
        if let Ok(pct) = number.parse::<f64>() {
            if !(pct.is_finite() && pct > 0.0 && pct <= 100.0) {
                return Err(format!(
                    "{text:?}: a percentage must be more than 0 and at most 100"
                ));
            }
            return Ok(Budget::Percent(pct));
        }
        crate::cli::parse_duration_arg(t)
            .map(Budget::Time)
            .map_err(|_| {
                format!("{text:?} is neither a percentage (25%) nor a duration (10m, 1h, 90s)")
            })
    }

    /// How many of `objects` a percentage budget verifies: PCT % rounded up,
    /// at least one when there are any, at most all.
    pub(super) fn objects(pct: f64, objects: usize) -> usize {
        // f64 is exact for any realistic object count.
        let n = (objects as f64 * pct / 100.0).ceil() as usize;
        n.clamp(usize::from(objects > 0), objects)
    }

    /// The runs within which every object is verified at least once.
    pub(super) fn cycle_runs(pct: f64) -> u64 {
        (100.0 / pct).ceil() as u64
    }

    fn describe(&self) -> String {
        match self {
            Budget::Percent(p) => format!("{p}%"),
            Budget::Time(d) => format!("{}s", d.as_secs_f64()),
        }
    }
}

/// `check --verify-sample`: see the module documentation. Unhealthy or
/// failed objects are reported like `check --leases` reports them (exit 4).
pub(super) fn verify_sample(
    client: &Client,
    cache: &mut Cache,
    report: &Reporter,
    budget: Budget,
    max_duration: Option<&Deadline>,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    // The order lives in the cache's temporary table, read a page at a
    // time: memory stays flat however many objects the backups reach.
    let total = usize::try_from(cache.verify_sample_order()?).unwrap_or(usize::MAX);
    let (take, time_limit) = match budget {
        Budget::Percent(p) => (Budget::objects(p, total), None),
        Budget::Time(d) => (total, Some(Deadline::new(d))),
    };
    info!(
        "verifying up to {take} of {total} object(s) reachable from the recorded backups (budget {})",
        budget.describe()
    );
    let opts = CheckOptions {
        add_lease: true,
        verify: true,
        repair: false,
    };
    let (mut verified, mut unhealthy, mut errors) = (0u64, 0u64, 0u64);
    let mut fatal: Option<TahoeError> = None;
    let mut page = Vec::new().into_iter();
    let mut read = 0u64;
    for done in 0..take {
        let Some(object) = page
            .next()
            .map(Ok)
            .or_else(|| match cache.sample_page(read, PAGE) {
                Ok(next) => {
                    read += next.len() as u64;
                    page = next.into_iter();
                    page.next().map(Ok)
                }
                Err(e) => Some(Err(e)),
            })
        else {
            break;
        };
        let object = object?;
        // The first object always runs, so every run makes progress.
        let passed = |d: Option<&Deadline>| d.is_some_and(Deadline::passed);
        if done > 0 && (passed(time_limit.as_ref()) || passed(max_duration)) {
            break;
        }
        match client.check(&object.cap, opts) {
            Ok(r) => {
                let at = unix_now();
                cache.set_verified(&object.cap, at)?;
                if r.recoverable {
                    cache.set_lease_renewed(&object.cap, at)?;
                }
                verified += 1;
                if !r.healthy {
                    unhealthy += 1;
                    report.lease_object(cache, &object.cap, &r)?;
                }
            }
            Err(err) if err.is_transient() => {
                fatal = Some(err);
                break;
            }
            Err(err) => {
                errors += 1;
                let failed = failure_report(format!("check failed: {err}"), false);
                report.lease_object(cache, &object.cap, &failed)?;
            }
        }
        // What was verified survives an interruption.
        cache.commit()?;
    }
    cache.commit()?;
    let coverage = cache.coverage()?;
    summary(
        report,
        &budget,
        verified,
        unhealthy,
        errors,
        &coverage,
        started.elapsed().as_secs_f64(),
    )?;
    if let Some(err) = fatal {
        return Err(anyhow::Error::new(err).context(format!(
            "sampled verification stopped after {verified} of {take} objects (the next run \
             continues with the least recently verified)"
        )));
    }
    Ok(if unhealthy > 0 || errors > 0 {
        Outcome::Problems
    } else {
        Outcome::Success
    })
}

/// The percentage of objects verified at least once (100 with none).
pub(super) fn coverage_percent(c: &Coverage) -> f64 {
    if c.objects == 0 {
        100.0
    } else {
        c.verified as f64 * 100.0 / c.objects as f64
    }
}

/// The `verify_sample` JSON line, or a line on stderr.
fn summary(
    report: &Reporter,
    budget: &Budget,
    verified: u64,
    unhealthy: u64,
    errors: u64,
    c: &Coverage,
    seconds: f64,
) -> anyhow::Result<()> {
    let cycle = match budget {
        Budget::Percent(p) => Some(Budget::cycle_runs(*p)),
        Budget::Time(_) => None,
    };
    let percent = coverage_percent(c);
    if report.json {
        return report.summary_line(&json!({
            "type": "verify_sample",
            "budget": budget.describe(),
            "objects": c.objects,
            "verified": verified,
            "unhealthy": unhealthy,
            "errors": errors,
            "covered": c.verified,
            "coverage_percent": (percent * 10.0).round() / 10.0,
            "oldest_verification": c.oldest,
            "cycle_runs": cycle,
            "seconds": show::json_seconds(seconds),
        }));
    }
    eprintln!(
        "lafs-backup: check --verify-sample {}: {verified} objects verified, {unhealthy} \
         unhealthy, {errors} failed; coverage: {} of {} objects verified at least once \
         ({percent:.1} %), oldest verification {}{}; {seconds:.1}s",
        budget.describe(),
        c.verified,
        c.objects,
        c.oldest.map_or_else(|| "never".to_owned(), show::time),
        cycle.map_or_else(String::new, |n| format!(
            "; every object is verified within {n} runs"
        )),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse() {
        assert_eq!(Budget::parse("25%"), Ok(Budget::Percent(25.0)));
        assert_eq!(Budget::parse(" 12.5 "), Ok(Budget::Percent(12.5)));
        assert_eq!(
            Budget::parse("10m"),
            Ok(Budget::Time(Duration::from_secs(600)))
        );
        for bad in ["0%", "101%", "-5%", "soon", "", "nan%"] {
            assert!(Budget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn percent_budgets_round_up_to_whole_objects() {
        assert_eq!(Budget::objects(25.0, 0), 0);
        assert_eq!(Budget::objects(25.0, 1), 1);
        assert_eq!(Budget::objects(25.0, 7), 2);
        assert_eq!(Budget::objects(25.0, 8), 2);
        assert_eq!(Budget::objects(25.0, 9), 3);
        assert_eq!(Budget::objects(0.1, 5), 1);
        assert_eq!(Budget::objects(100.0, 5), 5);
        assert_eq!(Budget::cycle_runs(25.0), 4);
        assert_eq!(Budget::cycle_runs(30.0), 4);
        assert_eq!(Budget::cycle_runs(100.0), 1);
    }

    /// Taking ceil(N * PCT / 100) least recently verified objects each run
    /// verifies every object within ceil(100 / PCT) runs, whatever N.
    #[test]
    fn every_object_is_covered_within_the_cycle() {
        for pct in [1.0, 7.5, 25.0, 30.0, 33.0, 50.0, 99.0, 100.0] {
            for n in 0..120usize {
                // Last verification run of each object (0: never).
                let mut last = vec![0u64; n];
                let cycle = Budget::cycle_runs(pct);
                for run in 1..=cycle {
                    let mut order: Vec<usize> = (0..n).collect();
                    order.sort_by_key(|&i| last[i]);
                    for &i in order.iter().take(Budget::objects(pct, n)) {
                        last[i] = run;
                    }
                }
                assert!(last.iter().all(|&r| r > 0), "pct {pct} n {n}");
            }
        }
    }
}
