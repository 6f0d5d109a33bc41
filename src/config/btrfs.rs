//! The keys of a job of `kind: btrfs` (`docs/btrfs.md`): the subvolume, the
//! snapshot directory and btrsend's schedule.
//!
//! ```yaml
//! jobs:
//!   - name: home
//!     kind: btrfs
//!     subvolume: /home
//!     snapshot_dir: /snapshots
//!     backup_days: [1, 7, 14, 21]   # the defaults of the last three keys
//!     max_incrementals: 11
//!     chain_lifetime_days: 90
//! ```
//!
//! Self-contained: a job's parser hands each entry of the job's mapping to
//! [`BtrfsKeys::take`], which takes the keys of this kind, then calls
//! [`BtrfsKeys::finish`] for the required ones. `null` for a schedule key
//! is its default, as a key left out.

use std::path::PathBuf;

use super::emit::Out;
use super::node::{Entry, Kind, Node};
use super::schema::{Invalid, Value, join, parse_list};
use crate::btrfs::plan::Schedule;

/// A btrfs job's own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BtrfsJob {
    /// `subvolume`: the subvolume to back up.
    pub(crate) subvolume: PathBuf,
    /// `snapshot_dir`: where the read-only snapshots `NAME-YYYY-MM-DD` go
    /// (on the same btrfs).
    pub(crate) snapshot_dir: PathBuf,
    /// `backup_days`, `max_incrementals`, `chain_lifetime_days`.
    pub(crate) schedule: Schedule,
}

/// The btrfs keys of one job's mapping, as they are read.
#[derive(Debug, Default)]
pub(crate) struct BtrfsKeys {
    subvolume: Option<PathBuf>,
    snapshot_dir: Option<PathBuf>,
    backup_days: Option<Vec<u8>>,
    max_incrementals: Option<u32>,
    chain_lifetime_days: Option<u32>,
}

impl BtrfsKeys {
    /// Takes `entry` of the job at `key` if it is one of this kind's keys
    /// (`Ok(true)`); `Ok(false)`: not a btrfs key, the caller's to judge.
    pub(crate) fn take(&mut self, entry: &Entry, key: &str) -> Result<bool, Invalid> {
        let child = join(key, &entry.key);
        let value = &entry.value;
        match entry.key.as_str() {
            "subvolume" => self.subvolume = Option::<PathBuf>::parse(value, &child)?,
            "snapshot_dir" => self.snapshot_dir = Option::<PathBuf>::parse(value, &child)?,
            "backup_days" => self.backup_days = backup_days(value, &child)?,
            "max_incrementals" => {
                self.max_incrementals = count(value, &child, 0, "a non-negative integer")?;
            }
            "chain_lifetime_days" => {
                self.chain_lifetime_days = count(value, &child, 1, "a number of days, at least 1")?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The job's settings; `node` is the job's mapping (for the line of a
    /// missing key), `key` its dotted name.
    pub(crate) fn finish(self, node: &Node, key: &str) -> Result<BtrfsJob, Invalid> {
        let required = |value: Option<PathBuf>, name: &str| {
            value.ok_or_else(|| {
                Invalid::value(
                    node,
                    &join(key, name),
                    "missing (a job of kind btrfs needs it)",
                )
            })
        };
        let defaults = Schedule::default();
        Ok(BtrfsJob {
            subvolume: required(self.subvolume, "subvolume")?,
            snapshot_dir: required(self.snapshot_dir, "snapshot_dir")?,
            schedule: Schedule {
                backup_days: self.backup_days.unwrap_or(defaults.backup_days),
                max_incrementals: self.max_incrementals.unwrap_or(defaults.max_incrementals),
                chain_lifetime_days: self
                    .chain_lifetime_days
                    .unwrap_or(defaults.chain_lifetime_days),
            },
        })
    }
}

/// `backup_days`: a non-empty list of distinct days of the month, 1 to 31
/// (a month without the day has no backup that day, as in btrsend).
fn backup_days(node: &Node, key: &str) -> Result<Option<Vec<u8>>, Invalid> {
    if matches!(node.kind, Kind::Null) {
        return Ok(None);
    }
    let expected = "a list of days of the month (1 to 31)";
    let days = parse_list(node, key, expected, "day", |item, k| {
        item.as_int()
            .and_then(|i| u8::try_from(i).ok())
            .filter(|d| (1..=31).contains(d))
            .ok_or_else(|| Invalid::ty(item, k, "a day of the month, 1 to 31"))
    })?;
    if days.is_empty() {
        return Err(Invalid::value(
            node,
            key,
            "an empty list would never back up; give at least one day",
        ));
    }
    for (i, day) in days.iter().enumerate() {
        if days[..i].contains(day) {
            return Err(Invalid::value(
                node,
                key,
                format!("day {day} is given twice"),
            ));
        }
    }
    Ok(Some(days))
}

/// A count of at least `min` that fits in `u32`; `null` is the default.
fn count(node: &Node, key: &str, min: u32, expected: &str) -> Result<Option<u32>, Invalid> {
    if matches!(node.kind, Kind::Null) {
        return Ok(None);
    }
    node.as_int()
        .and_then(|i| u32::try_from(i).ok())
        .filter(|n| *n >= min)
        .map(Some)
        .ok_or_else(|| Invalid::ty(node, key, expected))
}

/// The job's btrfs keys for the config dump, every one written out.
pub(crate) fn to_out(job: &BtrfsJob) -> Vec<(&'static str, Out)> {
    vec![
        ("subvolume", job.subvolume.to_out()),
        ("snapshot_dir", job.snapshot_dir.to_out()),
        (
            "backup_days",
            Out::Seq(
                job.schedule
                    .backup_days
                    .iter()
                    .map(|d| Out::Int((*d).into()))
                    .collect(),
            ),
        ),
        (
            "max_incrementals",
            Out::Int(job.schedule.max_incrementals.into()),
        ),
        (
            "chain_lifetime_days",
            Out::Int(job.schedule.chain_lifetime_days.into()),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::emit::document;
    use super::super::node;
    use super::super::schema::InvalidKind;
    use super::*;

    const KEY: &str = "jobs job #1";

    /// Reads a job's mapping the way a job parser would: the btrfs keys
    /// through [`BtrfsKeys`], `name` and `kind` as the job's own.
    fn job(yaml: &str) -> Result<BtrfsJob, Invalid> {
        let node = node::parse(yaml).unwrap();
        let Kind::Map(entries) = &node.kind else {
            panic!("a mapping")
        };
        let mut keys = BtrfsKeys::default();
        for entry in entries {
            if !keys.take(entry, KEY)? {
                assert!(
                    ["name", "kind"].contains(&entry.key.as_str()),
                    "{}",
                    entry.key
                );
            }
        }
        keys.finish(&node, KEY)
    }

    fn error(yaml: &str) -> Invalid {
        match job(yaml) {
            Ok(j) => panic!("should fail: {j:?}"),
            Err(e) => e,
        }
    }

    const MINIMAL: &str = "name: home\nkind: btrfs\nsubvolume: /home\nsnapshot_dir: /snap\n";

    #[test]
    fn defaults_are_btrsends() {
        let j = job(MINIMAL).unwrap();
        assert_eq!(j.subvolume, PathBuf::from("/home"));
        assert_eq!(j.snapshot_dir, PathBuf::from("/snap"));
        assert_eq!(j.schedule, Schedule::default());
        assert_eq!(j.schedule.backup_days, [1, 7, 14, 21]);
        assert_eq!(j.schedule.max_incrementals, 11);
        assert_eq!(j.schedule.chain_lifetime_days, 90);
        // `null` is the default too.
        let nulls = format!(
            "{MINIMAL}backup_days: null\nmax_incrementals: null\nchain_lifetime_days: null\n"
        );
        assert_eq!(job(&nulls).unwrap(), j);
    }

    #[test]
    fn a_schedule_of_its_own_round_trips() {
        let yaml = format!(
            "{MINIMAL}backup_days: [15, 1]\nmax_incrementals: 0\nchain_lifetime_days: 30\n"
        );
        let j = job(&yaml).unwrap();
        assert_eq!(
            j.schedule,
            Schedule {
                backup_days: vec![15, 1],
                max_incrementals: 0,
                chain_lifetime_days: 30,
            }
        );
        let dumped = document(&Out::Map(to_out(&j)));
        assert_eq!(
            dumped,
            "subvolume: '/home'\nsnapshot_dir: '/snap'\nbackup_days: [15, 1]\n\
             max_incrementals: 0\nchain_lifetime_days: 30\n"
        );
        let again = job(&format!("name: home\nkind: btrfs\n{dumped}")).unwrap();
        assert_eq!(again, j);
    }

    #[test]
    fn required_keys() {
        let e = error("name: home\nkind: btrfs\nsnapshot_dir: /snap\n");
        assert_eq!(e.key, "jobs job #1.subvolume");
        assert!(matches!(e.kind, InvalidKind::Value(m) if m.starts_with("missing")));
        let e = error("name: home\nkind: btrfs\nsubvolume: /home\n");
        assert_eq!(e.key, "jobs job #1.snapshot_dir");
        let e = error("name: home\nkind: btrfs\nsubvolume: ''\nsnapshot_dir: /snap\n");
        assert_eq!(e.key, "jobs job #1.subvolume");
    }

    #[test]
    fn bad_schedules_name_the_key_and_line() {
        let bad = |extra: &str| error(&format!("{MINIMAL}{extra}"));
        let e = bad("backup_days: [1, 32]\n");
        assert_eq!(
            (e.key.as_str(), e.line),
            ("jobs job #1.backup_days day #2", 5)
        );
        let e = bad("backup_days:\n  - 7\n  - 0\n");
        assert_eq!(
            (e.key.as_str(), e.line),
            ("jobs job #1.backup_days day #2", 7)
        );
        let e = bad("backup_days: []\n");
        assert!(matches!(e.kind, InvalidKind::Value(m) if m.contains("never back up")));
        let e = bad("backup_days: [7, 14, 7]\n");
        assert!(matches!(e.kind, InvalidKind::Value(m) if m == "day 7 is given twice"));
        let e = bad("backup_days: 7\n");
        assert_eq!(e.key, "jobs job #1.backup_days");
        let e = bad("max_incrementals: -1\n");
        assert_eq!(e.key, "jobs job #1.max_incrementals");
        let e = bad("max_incrementals: 1.5\n");
        assert_eq!(e.key, "jobs job #1.max_incrementals");
        let e = bad("chain_lifetime_days: 0\n");
        assert_eq!(e.key, "jobs job #1.chain_lifetime_days");
        assert!(
            matches!(e.kind, InvalidKind::Type { expected, .. } if expected.contains("at least 1"))
        );
        let e = bad("chain_lifetime_days: 5000000000\n");
        assert_eq!(e.key, "jobs job #1.chain_lifetime_days");
    }

    #[test]
    fn other_keys_are_left_to_the_job() {
        let node = node::parse("source: {path: /x}\n").unwrap();
        let Kind::Map(entries) = &node.kind else {
            panic!("a mapping")
        };
        let mut keys = BtrfsKeys::default();
        assert!(!keys.take(&entries[0], KEY).unwrap());
    }
}
