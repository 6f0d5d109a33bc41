//! Issue 13 item 1 against the real grid: several named jobs in one config
//! (`jobs:`), run in order, each with its own name, source, queue and
//! retention; a failing job does not stop the others, and the exit status
//! is the worst of theirs.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::{self, Run, lafs};

/// Three source trees `a`, `b` and `c` (of which `c` is absent unless
/// `with_c`), and a config whose jobs back them up (YAML `jobs`).
struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    cfg: PathBuf,
}

impl Setup {
    fn new(jobs: &str) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        for name in ["a", "b"] {
            let src = dir.join(name);
            fs::create_dir(&src).unwrap();
            fs::write(src.join("file.txt"), format!("the tree {name}, uploaded")).unwrap();
        }
        let cfg = dir.join("cfg.yaml");
        fs::write(
            &cfg,
            format!(
                "source:\n  queue:\n    path: '{}'\n  entry_cache:\n    path: '{}'\n\
                 destination:\n  url: '{}/uri'\n{}jobs:\n{}",
                dir.join("queue").display(),
                dir.join("cache.sqlite").display(),
                common::gateway_url(),
                common::QUICK_RETRY,
                jobs.replace("DIR", &dir.display().to_string()),
            ),
        )
        .unwrap();
        Setup {
            _tmp: tmp,
            dir,
            cfg,
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        lafs()
            .arg("-c")
            .arg(&self.cfg)
            .args(args)
            .env("LAFS_BACKUP_NOW", "2024-01-07T03:00:00+00:00")
            .env("TZ", "UTC")
            .caps_on_stdout()
            .run()
    }
}

const THREE: &str = "  - name: alpha
    source:
      path: 'DIR/a'
  - name: broken
    source:
      path: 'DIR/missing'
  - name: beta
    source:
      path: 'DIR/b'
      queue:
        path: 'DIR/beta-queue'
";

fn jobs_of(run: &Run, kind: &str) -> Vec<String> {
    run.of_type(kind)
        .iter()
        .map(|l| l["job"].as_str().unwrap_or("<none>").to_owned())
        .collect()
}

#[test]
fn three_jobs_one_failing_the_others_back_up_and_exit_is_the_worst() {
    let s = Setup::new(THREE);
    let r = s.run(&["--json", "backup"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(jobs_of(&r, "summary"), ["alpha", "beta"], "{}", r.stdout);
    let names: Vec<_> = r
        .of_type("summary")
        .iter()
        .map(|l| l["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["alpha", "beta"]);
    assert!(r.stderr.contains("job broken"), "{}", r.stderr);
    // The queue of a job defaults to the top-level one with `.NAME`.
    assert!(s.dir.join("queue.alpha").exists());
    assert!(s.dir.join("beta-queue").exists());
    assert!(!s.dir.join("queue").exists());
    let list = s.run(&["--json", "list"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert!(list.stdout.contains("alpha") && list.stdout.contains("beta"));
    // Every job's run is recorded in the cache, the failed one too.
    let conn = rusqlite::Connection::open(s.dir.join("cache.sqlite")).unwrap();
    type Row = (Vec<u8>, Option<String>, i64, Option<i64>, i64);
    let runs: Vec<Row> = conn
        .prepare("SELECT name, job, exit, entries, ts_start FROM runs ORDER BY id")
        .unwrap()
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let summary = &r.of_type("summary")[0];
    assert_eq!(
        runs,
        [
            (
                b"alpha".to_vec(),
                Some("alpha".into()),
                0,
                summary["entries"].as_i64(),
                1_704_596_400
            ),
            (
                b"broken".to_vec(),
                Some("broken".into()),
                1,
                None,
                1_704_596_400
            ),
            (
                b"beta".to_vec(),
                Some("beta".into()),
                0,
                Some(2),
                1_704_596_400
            ),
        ]
    );
}

#[test]
fn job_runs_only_the_named_ones_and_unknown_is_a_usage_error() {
    let s = Setup::new(THREE);
    let r = s.run(&["--json", "backup", "--job", "beta"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(jobs_of(&r, "summary"), ["beta"]);
    assert_eq!(jobs_of(&r, "scan"), ["beta"]);
    let r = s.run(&["backup", "--job", "nosuch"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("nosuch"), "{}", r.stderr);
}

#[test]
fn duplicate_job_names_are_a_usage_error_naming_both_lines() {
    let s = Setup::new(
        "  - name: alpha\n    source:\n      path: 'DIR/a'\n  - name: alpha\n    source:\n      path: 'DIR/b'\n",
    );
    let r = s.run(&["backup"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let cfg = s.cfg.display().to_string();
    // jobs: is on line 12, the names on lines 13 and 16.
    assert!(
        r.stderr.contains(&format!("{cfg}:16:")) && r.stderr.contains("line 13"),
        "{}",
        r.stderr
    );
}

#[test]
fn each_job_has_its_own_retention_labels() {
    let s = Setup::new(
        "  - name: alpha\n    source:\n      path: 'DIR/a'\n    retention:\n      tiers: {}\n\
         \x20 - name: beta\n    source:\n      path: 'DIR/b'\n",
    );
    let r = s.run(&["--json", "backup"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let labels: Vec<_> = r
        .of_type("summary")
        .iter()
        .map(|l| (l["job"].as_str().unwrap().to_owned(), l["label"].clone()))
        .collect();
    assert_eq!(labels.len(), 2, "{}", r.stdout);
    assert_eq!(labels[0].0, "alpha");
    assert_eq!(labels[0].1, "Monthly-2024-01", "alpha has a tiers label");
    assert_eq!(labels[1].0, "beta");
    assert!(labels[1].1.is_null(), "beta has no policy: {labels:?}");
}

#[test]
fn top_level_source_beside_jobs_is_one_more_job() {
    let s = Setup::new("  - name: beta\n    source:\n      path: 'DIR/b'\n");
    let text = fs::read_to_string(&s.cfg).unwrap();
    let with_top = text.replacen(
        "source:\n",
        &format!("source:\n  path: '{}'\n", s.dir.join("a").display()),
        1,
    );
    fs::write(&s.cfg, with_top).unwrap();
    let r = s.run(&["--json", "backup"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(jobs_of(&r, "summary"), ["a", "beta"]);
    assert!(Path::new(&s.dir.join("queue")).exists());
}

#[test]
fn a_top_level_source_that_matches_nothing_fails_as_one_job() {
    let s = Setup::new("  - name: beta\n    source:\n      path: 'DIR/b'\n");
    let text = fs::read_to_string(&s.cfg).unwrap();
    let glob = s.dir.join("nothing-*").display().to_string();
    fs::write(
        &s.cfg,
        text.replacen("source:\n", &format!("source:\n  path: '{glob}'\n"), 1),
    )
    .unwrap();
    let r = s.run(&["--json", "backup"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(jobs_of(&r, "summary"), ["beta"]);
    assert!(r.stderr.contains("nothing-*"), "{}", r.stderr);
}

/// `(MAX(leases.renewed), meta.last_lease_renewal)` of a cache.
fn lease_times(cache: &Path) -> (Option<i64>, Option<String>) {
    let conn = rusqlite::Connection::open(cache).unwrap();
    let renewed = conn
        .query_row("SELECT MAX(renewed) FROM leases", [], |r| r.get(0))
        .unwrap();
    let last = conn
        .query_row(
            "SELECT value FROM meta WHERE name = 'last_lease_renewal'",
            [],
            |r| r.get(0),
        )
        .ok();
    (renewed, last)
}

#[test]
fn backup_renews_leases_when_renew_every_days_is_due() {
    let s = Setup::new("  - name: alpha\n    source:\n      path: 'DIR/a'\n");
    // Larger than a literal cap, so that there is a lease to renew.
    fs::write(s.dir.join("a").join("big"), "lease me\n".repeat(2000)).unwrap();
    let text = fs::read_to_string(&s.cfg).unwrap();
    fs::write(&s.cfg, format!("{text}lease:\n  renew_every_days: 7\n")).unwrap();
    let cache = s.dir.join("cache.sqlite");
    let at = |now: &str| {
        lafs()
            .arg("-c")
            .arg(&s.cfg)
            .arg("backup")
            .env("LAFS_BACKUP_NOW", now)
            .env("TZ", "UTC")
            .caps_on_stdout()
            .run()
    };
    // Never renewed: due at once, after the job.
    let r = at("2024-01-07T03:00:00+00:00");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("check --leases:"), "{}", r.stderr);
    let jan7 = 1_704_596_400;
    assert_eq!(lease_times(&cache), (Some(jan7), Some(jan7.to_string())));
    // Three days later: not due, nothing renewed.
    let r = at("2024-01-10T03:00:00+00:00");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("check --leases:"), "{}", r.stderr);
    assert_eq!(lease_times(&cache), (Some(jan7), Some(jan7.to_string())));
    // Eight days after the renewal: due again; every lease time moves.
    let r = at("2024-01-15T03:00:00+00:00");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("check --leases:"), "{}", r.stderr);
    let jan15 = jan7 + 8 * 86_400;
    assert_eq!(lease_times(&cache), (Some(jan15), Some(jan15.to_string())));
    let conn = rusqlite::Connection::open(&cache).unwrap();
    let old: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM leases WHERE renewed < ?1",
            [jan15],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(old, 0, "every reachable object's lease was renewed");
}

#[test]
fn a_queue_path_on_the_command_line_needs_exactly_one_job() {
    let s = Setup::new(THREE);
    let queue = s.dir.join("given-queue");
    for flag in ["--queue-only", "--reuse-queue"] {
        let r = s.run(&["backup", flag, queue.to_str().unwrap()]);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(
            r.stderr.contains(&format!(
                "{flag} PATH with a config of several jobs: name exactly one with --job"
            )),
            "{}",
            r.stderr
        );
    }
    assert!(!queue.exists());
    let r = s.run(&[
        "backup",
        "--job",
        "alpha",
        "--queue-only",
        queue.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(queue.exists());
    let r = s.run(&[
        "--json",
        "backup",
        "--job",
        "alpha",
        "--reuse-queue",
        queue.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(jobs_of(&r, "summary"), ["alpha"]);
}

/// The original tool's `core.yaml` (as in `config::tests`, with its paths
/// and gateway made real), with a `jobs:` layer beside it.
#[test]
fn the_original_core_yaml_with_a_jobs_layer_beside_it_backs_up_each_job() {
    let s = Setup::new("  - name: alpha\n    source:\n      path: 'DIR/a'\n");
    let dir = &s.dir;
    let core = dir.join("core.yaml");
    fs::write(
        &core,
        format!(
            r#"source:
  # Path or glob pattern (to match path) to backup, required.
  path: {dir}/b*
  queue:
    path: {dir}/queue.txt
    check_mtime: true
  entry_cache:
    path: {dir}/entry_cache.sqlite
    commit_after:
      queries: 50
      seconds: 10
  pick_policy: alphasort_last

destination:
  url: {url}/uri
  result:
    print_to_stdout: true
    append_to_file: {dir}/lafs-backup.caps
  encoding:
    xz:
      enabled: true
      options: {{options: {{level: 9}}}}
      min_size: 5120
      path_filter:
        - '-\.(gz|bz2|zip|7z|rar|xz|lzma|jpe?g|png|mp[34]|ogg|avi|mkv)$'
        - [500, '\.(txt|log|csv)$']

http:
  debug_requests: false
  request_pool_options:
    maxPersistentPerHost: 10
  retry:
    attempts: 2
    delay: 0.2

filter:
  - '-/(?i)\.?svn(/.*|ignore)$'

operation:
  queue_only: false
  reuse_queue: false
  timeouts:
    updates: [1200, 2400, 3600]

logging:
  warnings: true
  sql_queries: false
  version: 1
  root:
    level: custom
    handlers: [console]

manhole:
  endpoint: tcp:8022:interface=localhost
"#,
            dir = dir.display(),
            url = common::gateway_url()
        ),
    )
    .unwrap();
    let jobs = dir.join("jobs.yaml");
    fs::write(
        &jobs,
        format!(
            "jobs:\n  - name: alpha\n    source:\n      path: '{}'\n",
            dir.join("a").display()
        ),
    )
    .unwrap();
    let r = lafs()
        .arg("-c")
        .arg(&core)
        .arg("-c")
        .arg(&jobs)
        .args(["--json", "backup"])
        .env("LAFS_BACKUP_NOW", "2024-01-07T03:00:00+00:00")
        .env("TZ", "UTC")
        .caps_on_stdout()
        .run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The top-level source (the original's glob) is one more job, first.
    assert_eq!(jobs_of(&r, "summary"), ["b", "alpha"], "{}", r.stdout);
    assert!(
        r.stderr.contains("ignoring config key manhole"),
        "{}",
        r.stderr
    );
    assert!(dir.join("queue.txt.alpha").exists());
    let caps = fs::read_to_string(dir.join("lafs-backup.caps")).unwrap();
    assert_eq!(caps.lines().count(), 2, "{caps}");
}
