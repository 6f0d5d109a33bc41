//! `keep`: restic's `forget --keep-*` semantics, exactly
//! (restic's `internal/restic/snapshot_policy.go`).
//!
//! Backups are walked newest first. Each count rule has a bucket function
//! (the backup's hour, day, ISO week, month or year in local time); a
//! backup whose bucket differs from the last one that rule kept is kept by
//! it and uses one of its counts, so periods without a backup are skipped,
//! not counted. A rule with counts left also keeps the oldest backup. The
//! rules are ORed. `-1` means no limit; `0` means the rule is not used.

use jiff::tz::TimeZone;

use super::{Candidate, Decision, KeepDuration};

/// The `keep` settings (counts: 0 = unused, -1 = all).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct KeepRules {
    pub(crate) last: i64,
    pub(crate) hourly: i64,
    pub(crate) daily: i64,
    pub(crate) weekly: i64,
    pub(crate) monthly: i64,
    pub(crate) yearly: i64,
    pub(crate) within: Option<KeepDuration>,
    pub(crate) within_hourly: Option<KeepDuration>,
    pub(crate) within_daily: Option<KeepDuration>,
    pub(crate) within_weekly: Option<KeepDuration>,
    pub(crate) within_monthly: Option<KeepDuration>,
    pub(crate) within_yearly: Option<KeepDuration>,
}

impl KeepRules {
    /// No rule set: the policy would forget everything but the rails.
    pub(crate) fn is_empty(&self) -> bool {
        // restic: a zero duration (`0d`) is an unused rule.
        let unset = |d: &Option<KeepDuration>| d.is_none_or(|d| d.is_zero());
        [
            self.last,
            self.hourly,
            self.daily,
            self.weekly,
            self.monthly,
            self.yearly,
        ]
        .iter()
        .all(|&n| n == 0)
            && [
                &self.within,
                &self.within_hourly,
                &self.within_daily,
                &self.within_weekly,
                &self.within_monthly,
                &self.within_yearly,
            ]
            .into_iter()
            .all(unset)
    }
}

/// The periods of the bucket rules, in restic's order.
#[derive(Clone, Copy)]
enum Period {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Period {
    /// The bucket of a backup (`index` makes every backup its own `last` bucket)
    /// and its name for the report.
    fn bucket(self, time: &jiff::Zoned, index: usize) -> String {
        match self {
            Self::Last => format!("#{index}"),
            Self::Hourly => time.strftime("%Y-%m-%d %H:00").to_string(),
            Self::Daily => time.strftime("%Y-%m-%d").to_string(),
            Self::Weekly => {
                let week = time.date().iso_week_date();
                format!("{:04}-W{:02}", week.year(), week.week())
            }
            Self::Monthly => time.strftime("%Y-%m").to_string(),
            Self::Yearly => time.strftime("%Y").to_string(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Last => "last",
            Self::Hourly => "hourly",
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
            Self::Yearly => "yearly",
        }
    }
}

/// One rule's state during the walk.
struct Bucket {
    period: Period,
    /// Counts left (-1: no limit), or for `within_*` the limit instant.
    count: i64,
    since: Option<i64>,
    /// The report's prefix ("daily", "within_daily 14d").
    prefix: String,
    last: Option<String>,
}

pub(super) fn decide(rules: &KeepRules, sorted: &[&Candidate], tz: &TimeZone) -> Vec<Decision> {
    let Some(latest) = sorted.first().map(|c| c.start) else {
        return Vec::new();
    };
    let since =
        |d: &Option<KeepDuration>| d.and_then(|d| d.before(latest, tz).map(|t| t.as_second()));
    let mut buckets: Vec<Bucket> = [
        (Period::Last, rules.last),
        (Period::Hourly, rules.hourly),
        (Period::Daily, rules.daily),
        (Period::Weekly, rules.weekly),
        (Period::Monthly, rules.monthly),
        (Period::Yearly, rules.yearly),
    ]
    .into_iter()
    .map(|(period, count)| Bucket {
        period,
        count,
        since: None,
        prefix: period.name().to_owned(),
        last: None,
    })
    .collect();
    for (period, within) in [
        (Period::Hourly, &rules.within_hourly),
        (Period::Daily, &rules.within_daily),
        (Period::Weekly, &rules.within_weekly),
        (Period::Monthly, &rules.within_monthly),
        (Period::Yearly, &rules.within_yearly),
    ] {
        if let Some(d) = within.filter(|d| !d.is_zero()) {
            buckets.push(Bucket {
                period,
                count: -1,
                // An unrepresentable limit reaches back past every backup.
                since: Some(since(within).unwrap_or(i64::MIN)),
                prefix: format!("within_{} {d}", period.name()),
                last: None,
            });
        }
    }
    let within = rules
        .within
        .filter(|d| !d.is_zero())
        .map(|d| (d, since(&rules.within).unwrap_or(i64::MIN)));

    let oldest = sorted.len().saturating_sub(1);
    sorted
        .iter()
        .enumerate()
        .map(|(nr, c)| {
            let time = jiff::Timestamp::from_second(c.start)
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
                .to_zoned(tz.clone());
            let mut reasons = Vec::new();
            if let Some((d, since)) = within {
                // restic: kept when strictly after the limit.
                if c.start > since {
                    reasons.push(format!("within {d}"));
                }
            }
            for b in &mut buckets {
                let active = match b.since {
                    Some(since) => c.start > since,
                    None => b.count > 0 || b.count == -1,
                };
                if !active {
                    continue;
                }
                let val = b.period.bucket(&time, nr);
                // restic: a count rule with counts left also keeps the oldest
                // backup; a within_* rule does not.
                let oldest_rule = nr == oldest && b.since.is_none();
                if b.last.as_ref() != Some(&val) || oldest_rule {
                    let oldest_only = b.last.as_ref() == Some(&val);
                    if b.count > 0 {
                        b.count -= 1;
                    }
                    let shown = match b.period {
                        Period::Last => String::new(),
                        _ => format!(" {val}"),
                    };
                    let tail = if oldest_only { " (oldest)" } else { "" };
                    reasons.push(format!("{}{shown}{tail}", b.prefix));
                    b.last = Some(val);
                }
            }
            if reasons.is_empty() {
                Decision::forgotten(c, "no rule keeps it")
            } else {
                Decision {
                    generation: c.generation,
                    keep: true,
                    reasons,
                }
            }
        })
        .collect()
}
