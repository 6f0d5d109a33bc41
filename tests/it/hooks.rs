//! Issue 13 item 3 against the real grid: hooks around the whole run and
//! around each job, in order, with their environment and summary file; a
//! `before` exiting 75 skips, any other failure fails; a timeout kills;
//! bad hook config is a usage error naming file, line and key.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::{self, Run, lafs};

/// A row of the `runs` table: job, exit, skipped, entries.
type RunRow = (Option<String>, i64, Option<String>, Option<i64>);

struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    cfg: PathBuf,
    log: PathBuf,
}

/// A hook command appending `WORD job=$LAFS_BACKUP_JOB exit=$LAFS_BACKUP_EXIT`
/// to the log (and `then`, more shell), as a YAML flow list.
fn hook(log: &Path, word: &str, then: &str) -> String {
    format!(
        "['/bin/sh', '-c', 'echo \"{word} job=${{LAFS_BACKUP_JOB-unset}} exit=${{LAFS_BACKUP_EXIT-unset}}\" >> {}; {then}']",
        log.display()
    )
}

impl Setup {
    /// Trees `a` and `b`; `body` is the rest of the config (YAML), in which
    /// `DIR` is the test directory.
    fn new(body: &str) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        for name in ["a", "b"] {
            let src = dir.join(name);
            fs::create_dir(&src).unwrap();
            // Larger than a literal cap: its bytes are uploaded.
            fs::write(
                src.join("file.txt"),
                format!("the tree {name}\n").repeat(2000),
            )
            .unwrap();
        }
        let cfg = dir.join("cfg.yaml");
        fs::write(
            &cfg,
            format!(
                "source:\n  queue:\n    path: '{}'\n  entry_cache:\n    path: '{}'\n\
                 destination:\n  url: '{}/uri'\nlogging:\n  level: info\n{}{}",
                dir.join("queue").display(),
                dir.join("cache.sqlite").display(),
                common::gateway_url(),
                common::QUICK_RETRY,
                body.replace("DIR", &dir.display().to_string()),
            ),
        )
        .unwrap();
        let log = dir.join("hooks.log");
        Setup {
            _tmp: tmp,
            dir,
            cfg,
            log,
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

    fn log(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The `runs` rows: (job, exit, skipped, entries).
    fn runs(&self) -> Vec<RunRow> {
        let conn = rusqlite::Connection::open(self.dir.join("cache.sqlite")).unwrap();
        conn.prepare("SELECT job, exit, skipped, entries FROM runs ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }
}

fn set(log: &Path, prefix: &str, before_then: &str) -> String {
    set_with(log, prefix, before_then, "")
}

/// A hook set whose four hooks log their name; `before` then runs
/// `before_then`, `finally` runs `finally_first` before logging.
fn set_with(log: &Path, prefix: &str, before_then: &str, finally_first: &str) -> String {
    format!(
        "  before: [{}]\n  after: [{}]\n  on_error: [{}]\n  finally: [{}]\n",
        hook(log, &format!("{prefix}before"), before_then),
        hook(log, &format!("{prefix}after"), ""),
        hook(log, &format!("{prefix}on_error"), ""),
        hook(log, &format!("{prefix}finally"), finally_first),
    )
}

fn assert_no_cap(text: &str) {
    assert!(!text.contains("URI:"), "a cap in {text}");
}

#[test]
fn global_hooks_wrap_a_config_without_jobs_in_order_with_env_and_summary() {
    let log = PathBuf::from("DIR/hooks.log");
    // `finally` keeps a copy of the summary file (and its mode).
    let keep = "cp \"$LAFS_BACKUP_SUMMARY\" DIR/summary.json; stat -c %a \"$LAFS_BACKUP_SUMMARY\" > DIR/mode";
    let s = Setup::new(&format!(
        "hooks:\n{}",
        set_with(&log, "", "echo hello from before; echo complaint >&2", keep)
    ));
    // A config without jobs: the top-level source.
    let text = fs::read_to_string(&s.cfg).unwrap().replacen(
        "source:\n",
        &format!("source:\n  path: '{}'\n", s.dir.join("a").display()),
        1,
    );
    fs::write(&s.cfg, text).unwrap();
    let r = s.run(&["--json", "backup"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        s.log(),
        [
            "before job=unset exit=unset",
            "after job=unset exit=0",
            "finally job=unset exit=0"
        ]
    );
    // Hook output goes to the log, line by line, under the hook's name.
    assert!(
        r.stderr.contains("hook before[0]: hello from before"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("hook before[0]: complaint"),
        "{}",
        r.stderr
    );
    let summary_text = fs::read_to_string(s.dir.join("summary.json")).unwrap();
    assert_no_cap(&summary_text);
    assert_eq!(
        fs::read_to_string(s.dir.join("mode")).unwrap().trim(),
        "600"
    );
    let summary: serde_json::Value = serde_json::from_str(&summary_text).unwrap();
    assert_eq!(summary["version"], 1);
    assert_eq!(summary["exit"], 0);
    let job = &summary["jobs"][0];
    assert_eq!(job["name"], "a");
    assert!(job["job"].is_null());
    assert_eq!(job["exit"], 0);
    assert_eq!(job["entries"], r.of_type("summary")[0]["entries"]);
    assert!(job["bytes_uploaded"].as_u64().unwrap() > 0, "{job}");
    assert!(job["seconds"].is_number());
    assert_no_cap(&fs::read_to_string(&s.log).unwrap());
}

#[test]
fn job_hooks_run_around_each_job_and_on_error_on_failure() {
    let log = PathBuf::from("DIR/hooks.log");
    let s = Setup::new(&format!(
        "hooks:\n{}jobs:\n  - name: alpha\n    source: {{path: 'DIR/a'}}\n    hooks:\n{}\
         \x20 - name: broken\n    source: {{path: 'DIR/missing'}}\n    hooks:\n{}",
        set(&log, "run-", ""),
        set(&log, "", "")
            .replace("\n  ", "\n      ")
            .replacen("  before", "      before", 1),
        set(&log, "", "")
            .replace("\n  ", "\n      ")
            .replacen("  before", "      before", 1),
    ));
    let r = s.run(&["--json", "backup"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(
        s.log(),
        [
            "run-before job=unset exit=unset",
            "before job=alpha exit=unset",
            "after job=alpha exit=0",
            "finally job=alpha exit=0",
            "before job=broken exit=unset",
            "on_error job=broken exit=1",
            "finally job=broken exit=1",
            "run-on_error job=unset exit=1",
            "run-finally job=unset exit=1",
        ],
        "{}",
        r.stderr
    );
}

#[test]
fn before_exiting_75_skips_the_job_and_other_failures_fail_it() {
    let log = PathBuf::from("DIR/hooks.log");
    let job_set = |then: &str| {
        set(&log, "", then)
            .replace("\n  ", "\n      ")
            .replacen("  before", "      before", 1)
    };
    let s = Setup::new(&format!(
        "jobs:\n  - name: alpha\n    source: {{path: 'DIR/a'}}\n    hooks:\n{}\
         \x20 - name: beta\n    source: {{path: 'DIR/b'}}\n    hooks:\n{}",
        job_set("exit 75"),
        job_set("exit 3"),
    ));
    let r = s.run(&["--json", "backup", "--job", "alpha"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        s.log(),
        ["before job=alpha exit=unset", "finally job=alpha exit=0"]
    );
    assert!(r.of_type("summary").is_empty(), "{}", r.stdout);
    let skipped = r.of_type("skipped");
    assert_eq!(skipped.len(), 1, "{}", r.stdout);
    assert_eq!(skipped[0]["job"], "alpha");
    assert!(
        skipped[0]["reason"]
            .as_str()
            .unwrap()
            .contains("hook alpha/before[0] exited 75")
    );
    fs::remove_file(&s.log).unwrap();
    let r = s.run(&["--json", "backup", "--job", "beta"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.of_type("summary").is_empty(),
        "nothing backed up: {}",
        r.stdout
    );
    assert!(
        r.stderr
            .contains("job beta: hook beta/before[0] exited 3; nothing was backed up"),
        "{}",
        r.stderr
    );
    assert_eq!(
        s.log(),
        [
            "before job=beta exit=unset",
            "on_error job=beta exit=1",
            "finally job=beta exit=1"
        ]
    );
    assert!(!s.dir.join("queue.beta").exists());
    let runs = s.runs();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[0].0.as_deref(), Some("alpha"));
    assert_eq!(runs[0].1, 0);
    assert!(
        runs[0].2.as_deref().unwrap().contains("exited 75"),
        "{runs:?}"
    );
    assert_eq!(
        (runs[1].0.as_deref(), runs[1].1, runs[1].2.as_deref()),
        (Some("beta"), 1, None)
    );
}

#[test]
fn a_hook_past_its_timeout_is_killed_and_fails() {
    let log = PathBuf::from("DIR/hooks.log");
    let s = Setup::new(&format!(
        "hooks:\n  timeout: 1\n  before: [['/bin/sh', '-c', 'sleep 60 & sleep 60']]\n  finally: [{}]\n\
         jobs:\n  - name: alpha\n    source: {{path: 'DIR/a'}}\n",
        hook(&log, "finally", "")
    ));
    let started = Instant::now();
    let r = s.run(&["backup"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(
        r.stderr
            .contains("hook before[0] ran longer than its timeout (1 s) and was killed"),
        "{}",
        r.stderr
    );
    assert_eq!(s.log(), ["finally job=unset exit=1"]);
}

#[test]
fn bad_hook_config_names_file_line_and_key() {
    let s = Setup::new("hooks:\n  before: [['/bin/true']]\n  afterwards: [['/bin/true']]\n");
    let r = s.run(&["backup"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let cfg = s.cfg.display().to_string();
    let line = fs::read_to_string(&s.cfg)
        .unwrap()
        .lines()
        .position(|l| l.contains("afterwards"))
        .unwrap()
        + 1;
    assert!(
        r.stderr.contains(&format!(
            "{cfg}:{line}: unknown config key hooks.afterwards"
        )),
        "{}",
        r.stderr
    );
    let s = Setup::new(
        "jobs:\n  - name: alpha\n    source: {path: 'DIR/a'}\n    hooks:\n      after:\n        - ['DIR/no-such-hook']\n",
    );
    let r = s.run(&["backup"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let line = fs::read_to_string(&s.cfg)
        .unwrap()
        .lines()
        .position(|l| l.contains("no-such-hook"))
        .unwrap()
        + 1;
    assert!(
        r.stderr.contains(&format!(
            "{}:{line}: invalid value for jobs job #1.hooks.after command #1: the program",
            s.cfg.display()
        )),
        "{}",
        r.stderr
    );
}

#[test]
fn plan_runs_no_hooks() {
    let log = PathBuf::from("DIR/hooks.log");
    let job_set =
        set(&log, "", "")
            .replace("\n  ", "\n      ")
            .replacen("  before", "      before", 1);
    let s = Setup::new(&format!(
        "hooks:\n{}jobs:\n  - name: alpha\n    source: {{path: 'DIR/a'}}\n    hooks:\n{job_set}",
        set(&log, "run-", "")
    ));
    let r = s.run(&["backup", "--plan"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(s.log().is_empty(), "{:?}", s.log());
}

/// Whatever a hook prints, the log never shows a cap: the lines are
/// redacted (the builder fails the test if a cap reaches stderr).
#[test]
fn a_cap_printed_by_a_hook_is_redacted_in_the_log() {
    let cap = "URI:CHK:aaaaaaaaaaaaaaaaaaaaaaaaaa:\
               bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb:1:1:100";
    let s = Setup::new(&format!(
        "hooks:\n  before:\n    - ['/bin/sh', '-c', 'echo {cap}; echo {cap} >&2']\njobs:\n  - name: alpha\n    source: {{path: 'DIR/a'}}\n"
    ));
    let r = s.run(&["backup"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("hook before[0]: "), "{}", r.stderr);
    assert!(!r.stderr.contains("bbbbbbbbbbbbbbbb"), "{}", r.stderr);
}
