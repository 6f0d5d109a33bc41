//! Issue 12 against the real grid: schedules decide whether `backup` runs
//! and which label it gets (the clock set per run with `LAFS_BACKUP_NOW`),
//! `forget_after_backup` and `forget` forget what the policy does not keep
//! (cache rows, result-file lines) and keep what a kept backup still
//! reaches, `--dry-run` changes nothing, and the report says when the space
//! may come back. The policy arithmetic itself is unit-tested with the
//! issue's vectors in `src/retention/`.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use serde_json::Value;

use crate::common::{self, Run, lafs};

/// A source tree, a config with `retention` (YAML, indented under
/// `retention:`) and a result file; the gateway is the fast grid unless
/// `url` says otherwise.
struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    src: PathBuf,
    cfg: PathBuf,
}

impl Setup {
    fn new(retention: &str) -> Setup {
        Setup::with_url(retention, &common::gateway_url())
    }

    fn with_url(retention: &str, url: &str) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let src = dir.join("data");
        fs::create_dir(&src).unwrap();
        // Shared by every backup: one object all of them reach.
        fs::write(src.join("shared.bin"), common::pseudo_random_bytes(4000, 1)).unwrap();
        let extra = format!(
            "  result:\n    append_to_file: '{}'\n{}retention:\n{retention}",
            dir.join("results").display(),
            common::QUICK_RETRY
        );
        let cfg = common::write_backup_config(&dir, &src, url, &extra);
        Setup {
            _tmp: tmp,
            dir,
            src,
            cfg,
        }
    }

    /// `lafs-backup -c CFG ARGS` with the clock at `now`, local time UTC.
    fn at(&self, now: &str, args: &[&str]) -> Run {
        lafs()
            .arg("-c")
            .arg(&self.cfg)
            .args(args)
            .env("LAFS_BACKUP_NOW", now)
            .env("TZ", "UTC")
            .caps_on_stdout()
            .run()
    }

    /// A backup at `now` with a file unique to it; returns its summary.
    fn backup(&self, now: &str) -> Value {
        fs::write(
            self.src.join("today.txt"),
            format!("made at {now}, long enough to upload"),
        )
        .unwrap();
        let r = self.at(now, &["--json", "backup"]);
        assert_eq!(r.code, 0, "backup at {now}: {}", r.stderr);
        r.of_type("summary")
            .pop()
            .unwrap_or_else(|| panic!("no summary at {now}: {}{}", r.stdout, r.stderr))
    }

    /// `list --json`: (generation → label) of every recorded backup.
    fn labels(&self) -> BTreeMap<u64, Option<String>> {
        let r = self.at("2030-01-01T00:00:00Z", &["--json", "list"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.of_type("backup")
            .iter()
            .map(|b| {
                (
                    b["generation"].as_u64().unwrap(),
                    b["label"].as_str().map(str::to_owned),
                )
            })
            .collect()
    }

    fn result_lines(&self) -> usize {
        fs::read_to_string(self.dir.join("results"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }
}

fn day(date: &str) -> String {
    format!("{date}T03:00:00Z")
}

/// `cycle` with 14 slots: the dates get the slots, the slot
/// reused two weeks later forgets the older backup (its result line goes,
/// the shared object stays), and the name never has more than 14 backups.
#[test]
fn cycle_labels_rotate_and_forget_the_older_backup_of_a_slot() {
    let s = Setup::new(
        "  cycle: {frequency: 1, phase: 0, diffs: 6, fulls: 2}\n  forget_after_backup: true\n",
    );
    let mut labels = Vec::new();
    for d in 1..=16 {
        let sum = s.backup(&day(&format!("2024-01-{d:02}")));
        labels.push((d, sum["label"].as_str().unwrap_or("").to_owned()));
        assert!(s.labels().len() <= 14, "day {d}: {:?}", s.labels());
    }
    let label_of = |d: u32| labels.iter().find(|(x, _)| *x == d).unwrap().1.clone();
    assert_eq!(label_of(1), "slot-0-FULL");
    assert_eq!(label_of(7), "slot-6-DIFF");
    assert_eq!(label_of(8), "slot-7-FULL");
    assert_eq!(label_of(15), "slot-0-FULL");
    let kept = s.labels();
    assert_eq!(kept.len(), 14, "{kept:?}");
    // Generations 1 and 2 (01-01, 01-02) were forgotten by 01-15 and 01-16.
    assert!(!kept.contains_key(&1) && !kept.contains_key(&2), "{kept:?}");
    assert_eq!(s.result_lines(), 14);

    // A day that is already done is not backed up again.
    let r = s.at(&day("2024-01-16"), &["backup"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("already done"), "{}", r.stderr);
    assert_eq!(s.labels().len(), 14);
}

/// Frequency 2, phase 1: due on odd days of the year only. A day that is
/// not due contacts no gateway (here there is none: any request would
/// fail) and exits 0; `--ignore-schedule` (alias `--force`) backs up.
#[test]
fn a_day_that_is_not_due_contacts_no_gateway() {
    let s = Setup::with_url(
        "  cycle: {frequency: 2, phase: 1, diffs: 0, fulls: 3}\n",
        "http://127.0.0.1:1",
    );
    // 2024-01-01 is n = 0: (0 + 1) mod 2 = 1, not due.
    let r = s.at(&day("2024-01-01"), &["backup"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("not due"), "{}", r.stderr);
    assert!(!s.dir.join("queue").exists(), "a skipped day scanned");
    let r = s.at(&day("2024-01-01"), &["--json", "backup", "--plan"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.of_type("plan")[0]["due"], "not due", "{}", r.stdout);
    // Due on 01-02 (n = 1): it tries the (missing) gateway, exit 1.
    let r = s.at(&day("2024-01-02"), &["backup"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    // --force on a day that is not due: also tries it.
    let r = s.at(&day("2024-01-03"), &["backup", "--force"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
}

/// `tiers` with the Tardis defaults: four backups on one day get Monthly,
/// Weekly, Daily and the dated fallback label, in that order.
#[test]
fn tiers_label_the_first_backups_of_a_day() {
    let s = Setup::new("  tiers: {}\n");
    // A run that fails (no gateway at that address) consumes no label.
    let dead = s.dir.join("dead.yaml");
    fs::write(
        &dead,
        fs::read_to_string(&s.cfg)
            .unwrap()
            .replace(&common::gateway_url(), "http://127.0.0.1:1"),
    )
    .unwrap();
    let r = lafs()
        .arg("-c")
        .arg(&dead)
        .arg("backup")
        .env("LAFS_BACKUP_NOW", "2024-01-07T02:00:00Z")
        .env("TZ", "UTC")
        .run();
    assert_eq!(r.code, 1, "{}", r.stderr);
    let labels: Vec<String> = ["03:00", "04:00", "05:00", "06:00"]
        .iter()
        .map(|t| {
            s.backup(&format!("2024-01-07T{t}:00Z"))["label"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(labels[0], "Monthly-2024-01");
    assert_eq!(labels[1], "Weekly-2024-01");
    assert_eq!(labels[2], "Daily-2024-01-07");
    assert!(labels[3].starts_with("Backup_2024-01-07_"), "{labels:?}");
}

/// `forget` with `--keep-*` flags: every decision with its reason, a dry
/// run that changes nothing, then the real run; the report's reclaim date
/// is the last lease time plus lease.duration_days.
#[test]
fn forget_reports_every_decision_and_dry_run_changes_nothing() {
    let s = Setup::new("  keep: {}\n");
    for d in 1..=6 {
        s.backup(&day(&format!("2024-02-{d:02}")));
    }
    let now = day("2024-02-07");
    // An empty policy is refused.
    let r = s.at(&now, &["forget"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no retention policy"), "{}", r.stderr);

    // Every row of every cache table (the WAL included: read through
    // SQLite), and the result file.
    let snapshot = |s: &Setup| {
        let db = rusqlite::Connection::open(s.dir.join("cache.sqlite")).unwrap();
        let tables: Vec<String> = db
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let mut rows = Vec::new();
        for t in tables {
            let mut stmt = db.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
            let n = stmt.column_count();
            let mut q = stmt.query([]).unwrap();
            while let Some(row) = q.next().unwrap() {
                let cells: Vec<String> = (0..n)
                    .map(|i| format!("{:?}", row.get_ref(i).unwrap()))
                    .collect();
                rows.push(format!("{t}: {}", cells.join(" | ")));
            }
        }
        rows.sort();
        (rows, fs::read(s.dir.join("results")).unwrap())
    };
    // Leases renewed at 02-07 (frozen clock): the reclaim date counts from
    // this renewal.
    let r = s.at(&now, &["--json", "check", "--leases"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let before = snapshot(&s);
    let r = s.at(&now, &["--json", "forget", "--dry-run", "--keep-last", "2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let decisions = r.of_type("decision");
    assert_eq!(decisions.len(), 6, "{}", r.stdout);
    for d in &decisions {
        assert!(
            d["reasons"].as_array().is_some_and(|a| !a.is_empty()),
            "{d}"
        );
    }
    let kept: Vec<u64> = decisions
        .iter()
        .filter(|d| d["keep"] == true)
        .map(|d| d["generation"].as_u64().unwrap())
        .collect();
    assert_eq!(kept, [5, 6]);
    assert_eq!(snapshot(&s), before, "--dry-run changed something");

    let r = s.at(&now, &["--noise", "--json", "forget", "--keep-last", "2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let summary = &r.of_type("retention")[0];
    assert_eq!(summary["forgotten"], 4, "{summary}");
    assert_eq!(summary["kept"], 2, "{summary}");
    // Each forgotten backup had one unique object (today.txt) and a root;
    // the shared file is still reached by the kept ones.
    assert!(summary["objects"].as_u64().unwrap() >= 4, "{summary}");
    let reclaim = summary["reclaimable_after"].as_str().unwrap();
    let reclaim = jiff::Timestamp::strptime("%Y-%m-%dT%H:%M:%S%:z", reclaim).unwrap();
    // Their last lease renewal (02-07) plus the default 31 days.
    let renewed: jiff::Timestamp = now.parse().unwrap();
    assert_eq!(reclaim.as_second(), renewed.as_second() + 31 * 86_400);
    assert_eq!(s.labels().keys().copied().collect::<Vec<_>>(), [5, 6]);
    assert_eq!(s.result_lines(), 2);
    // `check --leases` renews what the kept backups reach — their two roots
    // and the shared file (today.txt is a literal cap: nothing to renew) —
    // and nothing of the forgotten ones.
    let r = s.at(&now, &["--json", "check", "--leases"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let leases = &r.of_type("leases")[0];
    assert_eq!(leases["objects"], 3, "{leases}");
    assert_eq!(leases["renewed"], 3, "{leases}");
    assert_eq!(leases["requests"], 3, "{leases}");
    // The shared object is still in the cache: a restore of a kept backup
    // still works.
    let out = s.dir.join("out");
    let r = s.at(&now, &["restore", "data", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        fs::read(out.join("shared.bin")).unwrap(),
        common::pseudo_random_bytes(4000, 1)
    );
}

/// A bad `LAFS_BACKUP_NOW` is a usage error naming the variable.
#[test]
fn a_bad_clock_is_a_usage_error() {
    let s = Setup::new("  keep: {last: 3}\n");
    let r = s.at("next tuesday", &["list"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("LAFS_BACKUP_NOW"), "{}", r.stderr);
}

/// `hanoi` with 5 discs, daily: after 32 consecutive daily runs exactly 5
/// backups remain, the oldest 8 to 16 days old; with `archive_oldest`
/// every disc-4 backup stays.
#[test]
fn hanoi_keeps_five_after_32_daily_runs() {
    for (archive, extra_kept) in [(false, 0), (true, 1)] {
        let s = Setup::new(&format!(
            "  hanoi: {{discs: 5, frequency: 1, archive_oldest: {archive}}}\n  forget_after_backup: true\n"
        ));
        let start: jiff::civil::Date = "2024-01-01".parse().unwrap();
        for d in 0..32 {
            let date = start.checked_add(jiff::Span::new().days(d)).unwrap();
            s.backup(&day(&date.to_string()));
        }
        let kept = s.labels();
        // Two disc-4 backups in 32 days: with archive_oldest the older one
        // stays too.
        assert_eq!(kept.len(), 5 + extra_kept, "archive {archive}: {kept:?}");
        let oldest = *kept.keys().next().unwrap();
        // Generation g was made on day g - 1; the last run was day 31.
        let age = 32 - oldest;
        assert!(
            archive || (8..=16).contains(&age),
            "oldest is {age} days old: {kept:?}"
        );
    }
}

/// `keep` with restic's semantics, end to end: one backup a day from
/// 2024-01-11 to Sunday 2024-03-10, `--keep-daily 7 --keep-weekly 5
/// --keep-monthly 12` keeps exactly restic's 14.
#[test]
fn forget_keeps_restics_fourteen_of_sixty_daily_backups() {
    let s = Setup::new("  keep: {}\n");
    let start: jiff::civil::Date = "2024-01-11".parse().unwrap();
    let mut date_of = BTreeMap::new();
    for d in 0..60 {
        let date = start.checked_add(jiff::Span::new().days(d)).unwrap();
        let g = s.backup(&day(&date.to_string()))["generation"]
            .as_u64()
            .unwrap();
        date_of.insert(g, date.to_string());
    }
    let r = s.at(
        &day("2024-03-11"),
        &[
            "forget",
            "--keep-daily",
            "7",
            "--keep-weekly",
            "5",
            "--keep-monthly",
            "12",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let kept: Vec<&str> = s.labels().keys().map(|g| date_of[g].as_str()).collect();
    let mut want = vec![
        "2024-01-11",
        "2024-01-31",
        "2024-02-11",
        "2024-02-18",
        "2024-02-25",
        "2024-02-29",
        "2024-03-03",
        "2024-03-04",
        "2024-03-05",
        "2024-03-06",
        "2024-03-07",
        "2024-03-08",
        "2024-03-09",
        "2024-03-10",
    ];
    want.sort_unstable();
    assert_eq!(kept, want, "{}", r.stderr);
}

/// A cache of the release before labels (schema v1) with a schedule
/// configured: the schedule's look at the cache must not stop the one
/// command that upgrades it. `backup --plan` (which changes nothing) says
/// to run a backup; `backup` upgrades the cache and labels its backup.
#[test]
fn a_v1_cache_is_upgraded_by_a_scheduled_backup() {
    let s = Setup::new("  cycle: {frequency: 1, phase: 0, diffs: 6, fulls: 2}\n");
    s.backup(&day("2024-01-01"));
    let db = rusqlite::Connection::open(s.dir.join("cache.sqlite")).unwrap();
    db.execute_batch(
        "ALTER TABLE backups DROP COLUMN label;
         ALTER TABLE backups DROP COLUMN priority;
         ALTER TABLE backups DROP COLUMN pinned;
         DROP TABLE verified;
         DROP TABLE runs;
         DROP TABLE subtrees;
         ALTER TABLE backups DROP COLUMN kind;
         ALTER TABLE backups DROP COLUMN btrfs_date;
         ALTER TABLE backups DROP COLUMN btrfs_parent;
         UPDATE meta SET value = '1' WHERE name = 'schema_version';",
    )
    .unwrap();
    drop(db);
    let r = s.at(&day("2024-01-02"), &["backup", "--plan"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("run a backup or check once"),
        "{}",
        r.stderr
    );
    let sum = s.backup(&day("2024-01-02"));
    assert_eq!(sum["label"], "slot-1-DIFF", "{sum}");
    assert_eq!(s.labels().len(), 2);
}

/// `forget` applies each job's own `retention` to that job's name; a job
/// without one keeps everything.
#[test]
fn forget_applies_each_jobs_own_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for j in ["a", "b"] {
        fs::create_dir(dir.join(j)).unwrap();
    }
    let cfg = dir.join("jobs.yaml");
    fs::write(
        &cfg,
        format!(
            "source:\n  queue: {{path: '{d}/queue'}}\n  entry_cache: {{path: '{d}/cache.sqlite'}}\n\
             destination:\n  url: '{url}/uri'\n{retry}\
             jobs:\n  - name: alpha\n    source: {{path: '{d}/a'}}\n    retention: {{keep: {{last: 1}}}}\n\
             \x20 - name: beta\n    source: {{path: '{d}/b'}}\n",
            d = dir.display(),
            url = common::gateway_url(),
            retry = common::QUICK_RETRY,
        ),
    )
    .unwrap();
    let run = |now: &str, args: &[&str]| {
        lafs()
            .arg("-c")
            .arg(&cfg)
            .args(args)
            .env("LAFS_BACKUP_NOW", now)
            .env("TZ", "UTC")
            .caps_on_stdout()
            .run()
    };
    for (i, now) in ["2024-05-01T03:00:00Z", "2024-05-02T03:00:00Z"]
        .iter()
        .enumerate()
    {
        for j in ["a", "b"] {
            fs::write(
                dir.join(j).join("f.txt"),
                format!("{j} run {i}, long enough to be stored"),
            )
            .unwrap();
        }
        let r = run(now, &["backup"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let r = run("2024-05-03T00:00:00Z", &["--json", "forget"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let kept: Vec<(String, bool)> = r
        .of_type("decision")
        .iter()
        .map(|d| (d["name"].as_str().unwrap().to_owned(), d["keep"] == true))
        .collect();
    assert_eq!(
        kept.iter().filter(|(n, k)| n == "alpha" && !k).count(),
        1,
        "{kept:?}"
    );
    assert_eq!(
        kept.iter().filter(|(n, k)| n == "beta" && *k).count(),
        2,
        "{kept:?}"
    );
}
