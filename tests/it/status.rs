//! Issue 13 items 4 (the Prometheus textfile) and 5 (`status` and its
//! thresholds) against the real grid. Time is moved with `LAFS_BACKUP_NOW`
//! (and `TZ=UTC`): a backup at one instant, `status` days later.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use serde_json::Value;
use tempfile::TempDir;

use crate::common::{self, Run, lafs};

/// The instant of the first backup.
const T0: &str = "2024-01-07T03:00:00+00:00";

/// `T0` plus `hours`, as `LAFS_BACKUP_NOW` takes it.
fn at(hours: i64) -> String {
    let t: jiff::Timestamp = T0.parse().unwrap();
    t.checked_add(jiff::SignedDuration::from_hours(hours))
        .unwrap()
        .to_string()
}

struct Setup {
    tmp: TempDir,
    cfg: PathBuf,
}

impl Setup {
    /// A source tree `src` with a few files, and a config with `extra`
    /// top-level YAML (the `monitor` and `lease` sections).
    fn new(extra: &str) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("a.bin"), common::pseudo_random_bytes(3000, 1)).unwrap();
        fs::write(src.join("sub/b.bin"), common::pseudo_random_bytes(2000, 2)).unwrap();
        let extra = format!(
            "{}{}",
            common::QUICK_RETRY,
            extra.replace("DIR", &tmp.path().display().to_string())
        );
        let cfg = common::write_backup_config(tmp.path(), &src, &common::gateway_url(), &extra);
        Setup { tmp, cfg }
    }

    fn run(&self, now: &str, args: &[&str]) -> Run {
        lafs()
            .arg("-c")
            .arg(&self.cfg)
            .args(args)
            .env("LAFS_BACKUP_NOW", now)
            .env("TZ", "UTC")
            .caps_on_stdout()
            .run()
    }

    /// `--json backup` at `now`: must succeed; its summary line.
    fn backup(&self, now: &str) -> Value {
        let run = self.run(now, &["--json", "backup"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        run.of_type("summary").remove(0)
    }

    /// `--json status` at `now`: its exit code, job lines and cache line.
    fn status(&self, now: &str) -> (i32, Vec<Value>, Value, String) {
        let run = self.run(now, &["--json", "status"]);
        common::assert_no_cap("status stdout", &run.stdout);
        let jobs = run.of_type("status");
        let cache = run.of_type("status_cache").remove(0);
        (run.code, jobs, cache, run.stderr)
    }
}

fn crossed(cache: &Value) -> Vec<(String, String)> {
    cache["crossed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["job"].as_str().unwrap_or("-").to_owned(),
                c["threshold"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn fresh_backups_pass_and_an_old_one_crosses_max_backup_age() {
    let s = Setup::new("monitor:\n  max_backup_age: 26h\n");
    s.backup(T0);
    let (code, jobs, cache, stderr) = s.status(&at(25));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(job["job"], "src");
    assert_eq!(job["last_success"], "2024-01-07T03:00:00+00:00");
    assert_eq!(job["last_success_age_seconds"], 25 * 3600);
    assert_eq!(job["kept_backups"], 1);
    assert_eq!(job["last_run"]["exit"], 0);
    assert_eq!(job["last_check"], Value::Null);
    assert_eq!(cache["ok"], true);
    assert_eq!(cache["thresholds"]["max_backup_age"], "26h");
    assert!(cache["objects"].as_u64().unwrap() >= 3, "{cache}");
    // The human table too.
    let run = s.run(&at(25), &["status"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.starts_with("JOB "), "{}", run.stdout);
    assert!(run.stdout.contains("lease horizon: "), "{}", run.stdout);

    // 27 hours later the dead-man's switch fires, naming the job.
    let (code, jobs, cache, stderr) = s.status(&at(27));
    assert_eq!(code, 4, "{stderr}");
    assert_eq!(
        crossed(&cache),
        [("src".to_owned(), "max_backup_age".to_owned())]
    );
    assert_eq!(jobs[0]["crossed"][0]["value"], 27.0 * 3600.0);
    assert!(
        stderr.contains("THRESHOLD CROSSED: job src:") && stderr.contains("max_backup_age 26h"),
        "{stderr}"
    );
}

#[test]
fn a_job_that_never_ran_and_a_missing_cache_cross_max_backup_age() {
    let s = Setup::new(
        "monitor:\n  max_backup_age: 2d\njobs:\n  - name: alpha\n    source:\n      path: 'DIR/src'\n  \
         - name: ghost\n    source:\n      path: 'DIR/src/sub'\n",
    );
    // No cache yet: every job is "never".
    let (code, jobs, cache, stderr) = s.status(T0);
    assert_eq!(code, 4, "{stderr}");
    assert_eq!(cache["cache"], false);
    let names: Vec<&str> = jobs.iter().map(|j| j["job"].as_str().unwrap()).collect();
    assert_eq!(names, ["src", "alpha", "ghost"]);
    assert_eq!(crossed(&cache).len(), 3);
    assert!(
        stderr.contains("job ghost: no successful backup recorded"),
        "{stderr}"
    );

    let run = s.run(T0, &["backup", "--job", "alpha", "--job", "src"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (code, _, cache, stderr) = s.status(&at(1));
    assert_eq!(code, 4, "{stderr}");
    assert_eq!(
        crossed(&cache),
        [("ghost".to_owned(), "max_backup_age".to_owned())]
    );
    assert!(!stderr.contains("job alpha"), "{stderr}");
}

#[test]
fn the_lease_horizon_crosses_min_lease_days() {
    let s = Setup::new("lease:\n  duration_days: 31\nmonitor:\n  min_lease_days: 7\n");
    s.backup(T0);
    // Renewed (uploaded) 20 days before: 11 days left.
    let (code, _, cache, stderr) = s.status(&at(20 * 24));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(cache["lease_horizon"], "2024-02-07T03:00:00+00:00");
    assert_eq!(cache["lease_horizon_days"], 11.0);
    assert_eq!(cache["never_renewed"], 0);
    // 29 days before: 2 days left, fewer than 7.
    let (code, jobs, cache, stderr) = s.status(&at(29 * 24));
    assert_eq!(code, 4, "{stderr}");
    assert_eq!(
        crossed(&cache),
        [("-".to_owned(), "min_lease_days".to_owned())]
    );
    assert_eq!(cache["crossed"][0]["value"], 2.0);
    assert_eq!(cache["crossed"][0]["limit"], "7");
    assert_eq!(jobs[0]["crossed"], serde_json::json!([]));
    assert!(
        stderr.contains("THRESHOLD CROSSED: lease horizon: the first lease may lapse in 2.0 days"),
        "{stderr}"
    );
}

#[test]
fn max_unverified_days_passes_after_a_full_sample_and_fails_before() {
    let s = Setup::new("monitor:\n  max_unverified_days: 5\n");
    s.backup(T0);
    let later = at(6 * 24);
    // Never verified: counted from the backup's start, 6 days.
    let (code, _, cache, stderr) = s.status(&later);
    assert_eq!(code, 4, "{stderr}");
    assert_eq!(
        crossed(&cache),
        [("-".to_owned(), "max_unverified_days".to_owned())]
    );
    assert_eq!(cache["unverified_since"], "2024-01-07T03:00:00+00:00");
    assert_eq!(cache["verified"], 0);

    let run = s.run(&later, &["check", "--verify-sample", "100%"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (code, _, cache, stderr) = s.status(&later);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(cache["verified"], cache["objects"]);
    assert_eq!(cache["verified_ratio"], 1.0);
    assert_eq!(cache["unverified_days"], 0.0);
    // Verified six days ago and not since: crossed again.
    let (code, _, cache, _) = s.status(&at(12 * 24 + 1));
    assert_eq!(code, 4);
    assert_eq!(crossed(&cache).len(), 1);
}

#[test]
fn the_textfile_parses_and_matches_the_runs_summary() {
    let s = Setup::new("monitor:\n  prometheus_textfile: 'DIR/metrics/lafs.prom'\n");
    let prom = s.tmp.path().join("metrics/lafs.prom");
    fs::create_dir(prom.parent().unwrap()).unwrap();
    let summary = s.backup(T0);
    let text = fs::read_to_string(&prom).unwrap();
    common::assert_no_cap("the textfile", &text);
    let mode = fs::metadata(&prom).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
    assert_eq!(fs::read_dir(prom.parent().unwrap()).unwrap().count(), 1);

    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    let value = |name: &str| -> f64 {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .unwrap_or_else(|| panic!("no {name} in\n{text}"));
        assert_eq!(sample.labels.get("backup"), Some("src"), "{name}");
        match sample.value {
            prometheus_parse::Value::Gauge(v) => v,
            ref other => panic!("{name} is not a gauge: {other:?}"),
        }
    };
    let n = |v: &Value| v.as_u64().unwrap() as f64;
    let t0: jiff::Timestamp = T0.parse().unwrap();
    assert_eq!(
        value("lafs_backup_last_success_timestamp_seconds"),
        t0.as_second() as f64
    );
    assert_eq!(
        value("lafs_backup_last_run_duration_seconds"),
        0.0,
        "frozen clock"
    );
    assert_eq!(value("lafs_backup_last_run_exit_status"), 0.0);
    assert_eq!(
        value("lafs_backup_last_run_entries"),
        n(&summary["entries"])
    );
    assert_eq!(
        value("lafs_backup_last_run_bytes_uploaded"),
        n(&summary["bytes_read"])
    );
    assert_eq!(
        value("lafs_backup_last_run_objects_reused"),
        n(&summary["unchanged"]) + n(&summary["content_reused"])
    );
    assert_eq!(value("lafs_backup_kept_backups"), 1.0);
    assert_eq!(
        value("lafs_backup_lease_horizon_days"),
        31.0,
        "the default lease.duration_days"
    );
    assert_eq!(value("lafs_backup_verified_ratio"), 0.0);
    for metric in ["lafs_backup_kept_backups", "lafs_backup_verified_ratio"] {
        assert!(text.contains(&format!("# TYPE {metric} gauge")), "{text}");
        assert!(text.contains(&format!("# HELP {metric} ")), "{text}");
    }
    // `status --prometheus` prints the same text at the same instant.
    let run = s.run(T0, &["status", "--prometheus"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, text);
    let run = s.run(T0, &["--json", "status", "--prometheus"]);
    assert_eq!(run.code, 2, "{}", run.stderr);

    // A second run reuses everything and rewrites the file.
    let summary = s.backup(&at(24));
    let text = fs::read_to_string(&prom).unwrap();
    assert!(
        text.contains("lafs_backup_kept_backups{backup=\"src\"} 2\n"),
        "{text}"
    );
    assert!(n(&summary["unchanged"]) > 0.0);
    assert!(text.contains(&format!(
        "lafs_backup_last_run_objects_reused{{backup=\"src\"}} {}\n",
        summary["unchanged"].as_u64().unwrap() + summary["content_reused"].as_u64().unwrap()
    )));
}

#[test]
fn an_unwritable_textfile_only_warns() {
    let s = Setup::new("monitor:\n  prometheus_textfile: 'DIR/no/such/dir/lafs.prom'\n");
    let run = s.run(T0, &["backup"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("could not write monitor.prometheus_textfile"),
        "{}",
        run.stderr
    );
}
