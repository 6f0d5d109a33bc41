//! `check --verify-sample` against the real local grid: a percentage
//! budget covers every object reached by the recorded backups within
//! ceil(100 / PCT) runs, least recently verified first; a duration budget
//! stops. The cache's `verified` table and the references are read here
//! with rusqlite, not through the crate.

use crate::common;

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use rusqlite::Connection;
use tempfile::TempDir;

struct Setup {
    tmp: TempDir,
    source: PathBuf,
    config: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let source = tmp.path().join("src");
        fs::create_dir(&source).unwrap();
        let config = common::write_backup_config(
            tmp.path(),
            &source,
            &common::gateway_url(),
            common::QUICK_RETRY,
        );
        Setup {
            tmp,
            source,
            config,
        }
    }

    fn write(&self, rel: &str, seed: u64) {
        let path = self.source.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, common::pseudo_random_bytes(200, seed)).unwrap();
    }

    fn backup(&self) {
        common::backup_root_cap(&self.config);
    }

    fn cache(&self) -> Connection {
        Connection::open(self.tmp.path().join("cache.sqlite")).unwrap()
    }

    fn sample(&self, budget: &str) -> common::Run {
        common::lafs()
            .arg("-c")
            .arg(&self.config)
            .args(["--json", "check", "--verify-sample", budget])
            .run()
    }
}

/// The non-literal caps reachable from the recorded backups' roots.
fn reachable(conn: &Connection) -> BTreeSet<String> {
    let mut stmt = conn
        .prepare(
            "WITH RECURSIVE r(cap) AS (
                 SELECT root_cap FROM backups
                 UNION
                 SELECT d.child_cap FROM dir_children d JOIN r ON d.dir_cap = r.cap)
             SELECT cap FROM r WHERE cap NOT LIKE 'URI:LIT:%' AND cap NOT LIKE 'URI:DIR2-LIT:%'",
        )
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The `verified` table: cap -> time.
fn verified(conn: &Connection) -> Vec<(String, i64)> {
    let mut stmt = conn.prepare("SELECT cap, ts FROM verified").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn summary(run: &common::Run) -> serde_json::Value {
    let lines = run.of_type("verify_sample");
    assert_eq!(lines.len(), 1, "{}\n{}", run.stdout, run.stderr);
    lines[0].clone()
}

fn three_backups(s: &Setup) {
    for i in 0..6 {
        s.write(&format!("a/f{i}"), i);
    }
    s.write("b/g", 100);
    // A literal (tiny) file: nothing to verify, never in the table.
    fs::write(s.source.join("tiny"), b"x").unwrap();
    s.backup();
    s.write("a/f0", 200);
    s.write("c/h", 201);
    s.backup();
    s.write("b/g", 300);
    s.backup();
}

#[test]
fn a_quarter_each_run_covers_every_object_in_four_runs() {
    let s = Setup::new();
    three_backups(&s);
    let all = reachable(&s.cache());
    let n = all.len();
    assert!(n >= 12, "{n} objects");
    assert!(verified(&s.cache()).is_empty());
    let per_run = n.div_ceil(4);
    let mut seen = BTreeSet::new();
    for run in 1..=4 {
        let r = s.sample("25%");
        assert_eq!(r.code, 0, "{}", r.stderr);
        let v = summary(&r);
        assert_eq!(v["objects"], n, "{v}");
        assert_eq!(v["budget"], "25%");
        assert_eq!(v["cycle_runs"], 4);
        assert_eq!(
            (v["unhealthy"].as_u64(), v["errors"].as_u64()),
            (Some(0), Some(0))
        );
        let table = verified(&s.cache());
        let now: BTreeSet<String> = table.iter().map(|(c, _)| c.clone()).collect();
        // Least recently verified first: no object is verified twice
        // before every object was verified once.
        let expect = (per_run * run).min(n);
        assert_eq!(now.len(), expect, "run {run}");
        assert_eq!(v["covered"], expect, "{v}");
        assert!(now.is_superset(&seen));
        assert!(now.is_subset(&all), "only reachable, non-literal caps");
        seen = now;
    }
    assert_eq!(seen, all, "four runs of 25 % verify every object");
    let r = s.sample("25%");
    let v = summary(&r);
    assert_eq!(v["coverage_percent"], 100.0, "{v}");
    assert!(v["oldest_verification"].as_i64().is_some(), "{v}");
    // Text output names the coverage too.
    let r = common::lafs()
        .arg("-c")
        .arg(&s.config)
        .args(["check", "--verify-sample", "25%"])
        .ok();
    assert!(
        r.stderr.contains(&format!(
            "coverage: {n} of {n} objects verified at least once (100.0 %)"
        )),
        "{}",
        r.stderr
    );
}

#[test]
fn a_duration_budget_runs_and_stops() {
    let s = Setup::new();
    three_backups(&s);
    let n = reachable(&s.cache()).len();
    // A budget that passes during the first request: that one object is
    // verified (every run makes progress), and the run stops there.
    let r = s.sample("0.001s");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = summary(&r);
    assert_eq!(
        (v["verified"].as_u64(), v["covered"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );
    assert_eq!(v["cycle_runs"], serde_json::Value::Null);
    assert_eq!(verified(&s.cache()).len(), 1);
    // A generous one verifies everything.
    let v = summary(&s.sample("10m"));
    assert_eq!(v["covered"], n, "{v}");
    assert_eq!(v["coverage_percent"], 100.0, "{v}");
}

#[test]
fn bad_budgets_and_targets_are_usage_errors() {
    let s = Setup::new();
    s.write("f", 1);
    s.backup();
    for bad in ["0%", "150%", "soon"] {
        let r = s.sample(bad);
        assert_eq!(r.code, 2, "{bad}: {}", r.stderr);
        assert!(r.stderr.contains("--verify-sample"), "{}", r.stderr);
    }
    common::lafs()
        .arg("-c")
        .arg(&s.config)
        .args(["check", "--verify-sample", "25%", "src"])
        .code(2);
    common::lafs()
        .arg("-c")
        .arg(&s.config)
        .args(["check", "--verify-sample", "25%", "--leases"])
        .code(2);
}
