//! Issue 10 against the real local grid: state files never followed through
//! symlinks and always private, a source directory swapped for a symlink
//! between scan and upload, panics that end the run and free the lock,
//! nonsense lease timestamps, safe resume, fail-fast gateway checks, and
//! readers that do not wait for a running backup.

use crate::common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A source tree and its state files, all under one temp dir; the state
/// files live in `state/`, which does not exist until a run creates it.
struct Setup {
    tmp: TempDir,
    source: PathBuf,
    state: PathBuf,
    config: PathBuf,
    url: String,
}

impl Setup {
    fn new(extra: &str) -> Setup {
        Self::with_url(&common::gateway_url(), extra)
    }

    fn with_url(url: &str, extra: &str) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let source = tmp.path().join("src");
        fs::create_dir_all(source.join("dir")).unwrap();
        fs::write(source.join("small"), b"small file").unwrap();
        // Above the literal-cap size, so a worker uploads it.
        fs::write(
            source.join("dir/data"),
            common::pseudo_random_bytes(4096, 7),
        )
        .unwrap();
        let s = Setup {
            state: tmp.path().join("state"),
            config: tmp.path().join("cfg.yaml"),
            source,
            url: url.to_owned(),
            tmp,
        };
        s.write_config(&s.source, extra);
        s
    }

    fn write_config(&self, source: &Path, extra: &str) {
        self.write_config_queue(source, "", extra);
    }

    /// With `queue_keys` (indented `    key: value` lines) in `source.queue`.
    fn write_config_queue(&self, source: &Path, queue_keys: &str, extra: &str) {
        fs::write(
            &self.config,
            format!(
                "source:\n  path: '{}'\n  queue:\n{queue_keys}    path: '{}'\n  entry_cache:\n    path: '{}'\n\
                 destination:\n  url: '{}/uri'\n  result:\n    append_to_file: '{}'\n{}{extra}",
                source.display(),
                self.queue().display(),
                self.cache().display(),
                self.url,
                self.result().display(),
                common::QUICK_RETRY,
            ),
        )
        .unwrap();
    }

    fn cache(&self) -> PathBuf {
        self.state.join("cache.sqlite")
    }

    fn queue(&self) -> PathBuf {
        self.state.join("queue")
    }

    fn result(&self) -> PathBuf {
        self.state.join("results")
    }

    fn state_path(&self, name: &str) -> PathBuf {
        self.state.join(name)
    }

    /// `lafs-backup -c CFG ARGS`, checked by `common::lafs`; `backup` and
    /// `list` print caps on stdout.
    fn cmd(&self, args: &[&str]) -> common::Lafs {
        let cmd = common::lafs().arg("-c").arg(&self.config).args(args);
        if args.iter().any(|a| ["backup", "list"].contains(a)) {
            cmd.caps_on_stdout()
        } else {
            cmd
        }
    }

    /// Runs `lafs-backup -c CFG ARGS` to its end, which must come within
    /// `limit`. `LAFS_BACKUP_TEST_PANIC` in `envs` injects a panic, whose
    /// report the test then checks.
    fn run_within(&self, args: &[&str], envs: &[(&str, &str)], limit: Duration) -> common::Run {
        let mut cmd = self.cmd(args).timeout(limit);
        for (key, value) in envs {
            cmd = cmd.env(key, value);
        }
        if envs.iter().any(|(k, _)| *k == "LAFS_BACKUP_TEST_PANIC") {
            cmd = cmd.panic_expected();
        }
        cmd.run()
    }

    fn run(&self, args: &[&str]) -> common::Run {
        self.run_within(args, &[], Duration::from_secs(120))
    }

    fn backup(&self, args: &[&str]) -> common::Run {
        let mut all = vec!["--json", "backup"];
        all.extend_from_slice(args);
        self.run(&all)
    }

    fn backup_ok(&self) -> serde_json::Value {
        let run = self.backup(&[]);
        assert_eq!(run.code, 0, "backup failed:\n{}", run.stderr);
        run.of_type("summary").pop().expect("a summary line")
    }
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

// ------------------------------------------------------------ item 5

/// A symlink planted at each state path never lets a run write, truncate
/// or chmod its target, with a plain `backup` and with `--reuse-queue`.
#[test]
fn symlinks_at_state_paths_touch_no_victim() {
    for name in [
        "cache.sqlite",
        "cache.sqlite.lock",
        "cache.sqlite-wal",
        "cache.sqlite-shm",
        "queue",
        "queue.done",
        "results",
    ] {
        let s = Setup::new("");
        fs::create_dir(&s.state).unwrap();
        let victim = s.tmp.path().join("victim");
        fs::write(&victim, b"the victim's content").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
        let planted = s.state_path(name);
        symlink(&victim, &planted).unwrap();
        for args in [&[][..], &["--reuse-queue"][..]] {
            let run = s.backup(args);
            assert_eq!(
                fs::read(&victim).unwrap(),
                b"the victim's content",
                "{name} {args:?}: the victim was written\n{}",
                run.stderr
            );
            assert_eq!(
                mode(&victim),
                0o644,
                "{name} {args:?}: the victim was chmodded"
            );
            let still_link = fs::symlink_metadata(&planted)
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false);
            if run.code != 0 && still_link {
                // Refused: the message names the path.
                assert!(
                    run.stderr.contains(&*planted.to_string_lossy())
                        && run.stderr.contains("symbolic link"),
                    "{name} {args:?}: an unclear refusal:\n{}",
                    run.stderr
                );
            }
        }
    }
}

/// An existing result file with a loose mode is tightened, with a warning.
#[test]
fn a_loose_result_file_becomes_private() {
    let s = Setup::new("");
    fs::create_dir(&s.state).unwrap();
    fs::write(s.result(), b"").unwrap();
    fs::set_permissions(s.result(), fs::Permissions::from_mode(0o644)).unwrap();
    let run = s.backup(&[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(mode(&s.result()), 0o600);
    assert!(
        run.stderr.contains("result file") && run.stderr.contains("0600"),
        "no warning:\n{}",
        run.stderr
    );
}

/// Under `umask 000`, the missing state directory is created 0700 and
/// every state file 0600.
#[test]
fn state_files_are_private_under_umask_000() {
    let s = Setup::new("");
    let run = common::Lafs::in_shell(r#"umask 000; exec "$0" "$@""#)
        .arg("-c")
        .arg(&s.config)
        .arg("backup")
        .caps_on_stdout()
        .timeout(Duration::from_secs(120))
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(mode(&s.state), 0o700);
    let mut seen = 0;
    for entry in fs::read_dir(&s.state).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        seen += 1;
    }
    for name in [
        "cache.sqlite",
        "cache.sqlite.lock",
        "queue",
        "queue.done",
        "results",
    ] {
        assert!(s.state_path(name).exists(), "{name} missing");
    }
    assert!(seen >= 5);
}

// ------------------------------------------------------------ item 6

/// A directory swapped for a symlink to an outside directory between the
/// scan and the upload: no byte of the outside file reaches the grid or
/// the cache; the swapped path is reported, exit 3.
#[test]
fn a_directory_swapped_for_a_symlink_is_not_followed() {
    // A grid of its own: its upload counter sees this test's uploads only
    // (the topics share one test binary, so any other test may be
    // uploading to the shared grid meanwhile).
    let grid = common::PrivateGrid::start_fast();
    let s = Setup::with_url(grid.url(), "");
    let outside = s.tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let secret = common::pseudo_random_bytes(1 << 20, 99);
    fs::write(outside.join("data"), &secret).unwrap();
    let q = s.run(&["backup", "--queue-only"]);
    assert_eq!(q.code, 0, "{}", q.stderr);
    fs::rename(s.source.join("dir"), s.tmp.path().join("moved")).unwrap();
    symlink(&outside, s.source.join("dir")).unwrap();

    let before = common::bytes_uploaded(&s.url);
    let run = s.backup(&["--reuse-queue"]);
    let after = common::bytes_uploaded(&s.url);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("/dir"), "{}", run.stderr);
    // The source's small files go up; the outside file is 1 MiB.
    assert!(
        after - before < 256 << 10,
        "{} bytes went up: the outside file was uploaded",
        after - before
    );
    let conn = rusqlite::Connection::open(s.cache()).unwrap();
    let hash = blake3::hash(&secret);
    let rows: i64 = conn
        .query_row(
            "SELECT count(*) FROM content WHERE hash = ?1",
            [&hash.as_bytes()[..]],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 0, "the cache holds the outside file");
}

// ------------------------------------------------------------ item 3

/// An injected panic in an upload thread or the coordinator ends the
/// process within seconds, non-zero, with one clear message; the next
/// backup gets the lock and succeeds.
#[test]
fn a_panic_ends_the_run_and_frees_the_lock() {
    for place in ["upload-worker", "upload-coordinator"] {
        let s = Setup::new("");
        let run = s.run_within(
            &["backup"],
            &[("LAFS_BACKUP_TEST_PANIC", place)],
            Duration::from_secs(30),
        );
        assert_ne!(run.code, 0, "{place}: {}", run.stderr);
        assert!(
            run.stderr.contains("internal error") && run.stderr.contains("please report"),
            "{place}: {}",
            run.stderr
        );
        assert_eq!(
            run.stderr.matches("internal error").count(),
            1,
            "{}",
            run.stderr
        );
        s.backup_ok();
    }
}

/// A lease timestamp of -2^63 in the cache (a nonsense value) makes the
/// object be checked again, never a panic.
#[test]
fn a_nonsense_lease_timestamp_does_not_panic() {
    let s = Setup::new("");
    s.backup_ok();
    let conn = rusqlite::Connection::open(s.cache()).unwrap();
    let n = conn
        .execute("UPDATE leases SET renewed = ?1", [i64::MIN])
        .unwrap();
    assert!(n > 0, "no lease rows to corrupt");
    drop(conn);
    let summary = s.backup_ok();
    assert!(summary["unchanged"].as_u64().unwrap() > 0, "{summary}");
}

// ------------------------------------------------------------ item 9

/// An unfinished queue (scanned, never uploaded), then a file added.
fn unfinished_queue_then_new_file(s: &Setup) {
    let q = s.run(&["backup", "--queue-only"]);
    assert_eq!(q.code, 0, "{}", q.stderr);
    fs::write(s.source.join("new-file"), b"created after the scan").unwrap();
}

#[test]
fn an_unfinished_queue_is_resumed_only_when_fresh_and_of_this_source() {
    // max_resume_age 0: never resumed, the new file is backed up.
    let s = Setup::new("");
    s.write_config_queue(&s.source, "    max_resume_age: 0\n", "");
    unfinished_queue_then_new_file(&s);
    let run = s.backup(&[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("resuming"), "{}", run.stderr);
    // The root, small, dir, dir/data and new-file.
    assert_eq!(run.of_type("summary")[0]["entries"], 5, "{}", run.stdout);

    // Within the age: resumed, and said so on stderr.
    let s = Setup::new("");
    unfinished_queue_then_new_file(&s);
    let run = s.backup(&[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("resuming the queue") && run.stderr.contains("4 entries left"),
        "{}",
        run.stderr
    );
    assert_eq!(run.of_type("summary")[0]["entries"], 4, "{}", run.stdout);
    // Done: the next run scans again and finds the new file.
    let again = s.backup_ok();
    assert_eq!(again["entries"], 5);

    // source.path pointed elsewhere while an unfinished queue exists: the
    // new source is scanned (no panic, exit 0).
    let s = Setup::new("");
    unfinished_queue_then_new_file(&s);
    let other = s.tmp.path().join("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("only"), b"the other source").unwrap();
    s.write_config(&other, "");
    let run = s.backup(&[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("resuming"), "{}", run.stderr);
    assert_eq!(run.of_type("summary")[0]["entries"], 2, "{}", run.stdout);
    // And a queue of another source is refused for --reuse-queue.
    let q = s.run(&["backup", "--queue-only"]);
    assert_eq!(q.code, 0, "{}", q.stderr);
    s.write_config(&s.source, "");
    let run = s.backup(&["--reuse-queue"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("another source"), "{}", run.stderr);
}

// ------------------------------------------------------------ item 10

/// A wrong gateway port fails within seconds, before the scan (no queue is
/// written), exit 1, when http.retry allows one attempt.
#[test]
fn a_wrong_gateway_port_fails_before_the_scan() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let s = Setup::with_url(&format!("http://127.0.0.1:{port}"), "");
    let config = fs::read_to_string(&s.config)
        .unwrap()
        .replace(common::QUICK_RETRY, "http:\n  retry:\n    attempts: 1\n");
    fs::write(&s.config, config).unwrap();
    let started = Instant::now();
    let run = s.run_within(&["backup"], &[], Duration::from_secs(30));
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(!s.queue().exists(), "the scan ran before the gateway check");
    assert_eq!(
        run.stderr.matches("lafs-backup: error").count(),
        1,
        "{}",
        run.stderr
    );
}

// ------------------------------------------------------------ item 11

/// Waits until the cache lock file holds `pid` (written once it is locked).
fn wait_for_lock(lock: &Path, child: &mut common::Running) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let pid = child.id().to_string();
    while Instant::now() < deadline {
        if fs::read_to_string(lock).is_ok_and(|t| t.trim() == pid) {
            return;
        }
        if let Some(status) = child.try_wait() {
            panic!("the slow backup ended early: {status}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the slow backup never took the lock");
}

/// `list`, `restore NAME` and `verify NAME` work while a slow backup of
/// the same cache runs; a second writer is refused at once, or waits with
/// --lock-wait.
#[test]
fn readers_do_not_wait_for_a_backup() {
    let s = Setup::new("");
    s.backup_ok();
    fs::write(
        s.source.join("big"),
        common::pseudo_random_bytes(2 << 20, 5),
    )
    .unwrap();
    let mut slow = s.cmd(&["backup", "--limit-upload", "64K"]).spawn();
    wait_for_lock(&s.state_path("cache.sqlite.lock"), &mut slow);

    let list = s.run_within(&["list"], &[], Duration::from_secs(30));
    assert_eq!(list.code, 0, "list: {}", list.stderr);
    let target = s.tmp.path().join("restored");
    let restore = s.run_within(
        &["restore", "src", target.to_str().unwrap()],
        &[],
        Duration::from_secs(60),
    );
    assert_eq!(restore.code, 0, "restore: {}", restore.stderr);
    assert_eq!(fs::read(target.join("small")).unwrap(), b"small file");
    let writer = s.run_within(&["check", "--all"], &[], Duration::from_secs(30));
    assert_eq!(writer.code, 1, "{}", writer.stderr);
    assert!(
        writer.stderr.contains("another lafs-backup run"),
        "{}",
        writer.stderr
    );
    let started = Instant::now();
    let waited = s.run_within(
        &["check", "--all", "--lock-wait", "1.5s"],
        &[],
        Duration::from_secs(30),
    );
    assert_eq!(waited.code, 1, "{}", waited.stderr);
    assert!(started.elapsed() >= Duration::from_millis(1400));

    let verify = s.run_within(
        &["verify", "src", s.source.to_str().unwrap()],
        &[],
        Duration::from_secs(60),
    );
    assert!(
        !verify.stderr.contains("another lafs-backup run") && verify.code != 1,
        "verify: {}",
        verify.stderr
    );

    // SIGKILLed mid-upload: the lock is free again, and the next run resumes
    // the queue (it is fresh and of this source) and says so.
    slow.kill();
    let run = s.backup(&[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("resuming the queue"), "{}", run.stderr);
}

// ------------------------------------------------------------ item 13

/// The progress counts bytes while they are sent: a large file moves it
/// during its upload, not only when it finishes.
#[test]
fn progress_moves_while_a_large_file_uploads() {
    let s = Setup::new("");
    let size: u64 = 1 << 20;
    fs::write(
        s.source.join("large"),
        common::pseudo_random_bytes(size as usize, 11),
    )
    .unwrap();
    let run = s.backup(&["--json-progress", "--limit-upload", "128K"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let partial: Vec<u64> = run
        .of_type("progress")
        .iter()
        .filter_map(|v| v["bytes_done"].as_u64())
        .filter(|&b| b > 64 << 10 && b < size)
        .collect();
    assert!(
        !partial.is_empty(),
        "no progress line while the large file was under way:\n{}",
        run.stdout
    );
}
