//! Tree walks that must end, against the shared fast grid: a mutable
//! directory linked into itself (directly, and through a subdirectory by
//! its read-only cap) is refused as a cycle by `restore` and `verify`; and
//! `check --max-duration` stops cleanly, says so, and a later run finishes.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::Run;

/// `PUT {url}/uri/{dir}/{name}` with `body` (`?t=uri`: link the cap in
/// `body`; without: upload `body` as a file).
fn put(url: &str, path: &str, body: &[u8]) {
    let mut resp = common::http_agent()
        .put(format!("{url}/uri/{path}"))
        .send(body)
        .unwrap();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    assert!(resp.status().is_success(), "PUT failed: {text}");
}

/// The read-only cap of a directory (its `t=json` `ro_uri`).
fn ro_cap(url: &str, dir: &str) -> String {
    let json: serde_json::Value =
        serde_json::from_slice(&common::http_get(&format!("{url}/uri/{dir}?t=json"))).unwrap();
    json[1]["ro_uri"].as_str().unwrap().to_owned()
}

/// A mutable directory holding `file.txt`, `loop` (itself) and `sub/up`
/// (itself again, by its read-only cap). Returns its write cap.
fn cyclic_dir(url: &str) -> String {
    let dir = common::mkdir_mutable(url);
    assert!(dir.starts_with("URI:DIR2:"), "{dir}");
    put(url, &format!("{dir}/file.txt"), &[b'f'; 100]);
    put(url, &format!("{dir}/loop?t=uri"), dir.as_bytes());
    let sub = common::mkdir_mutable(url);
    put(url, &format!("{dir}/sub?t=uri"), sub.as_bytes());
    put(
        url,
        &format!("{sub}/up?t=uri"),
        ro_cap(url, &dir).as_bytes(),
    );
    dir
}

fn run(args: &[&std::ffi::OsStr]) -> Run {
    common::lafs().args(args).run()
}

#[test]
fn a_self_linked_directory_is_refused_as_a_cycle() {
    let url = common::gateway_url();
    let dir = cyclic_dir(&url);
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");

    let started = Instant::now();
    let r = run(&[
        "restore".as_ref(),
        "--gateway".as_ref(),
        url.as_ref(),
        dir.as_ref(),
        target.as_os_str(),
    ]);
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(r.code, 3, "{}", r.stderr);
    for path in ["loop", "sub/up"] {
        assert!(
            r.stderr.contains(&format!(
                "{path}: refused: a directory cycle: this directory is its own ancestor \
                 (the backup's root)"
            )),
            "{path}: {}",
            r.stderr
        );
    }
    // Everything else is restored; the cycles are not.
    assert_eq!(std::fs::read(target.join("file.txt")).unwrap(), [b'f'; 100]);
    assert!(target.join("sub").is_dir());
    assert!(!target.join("loop").exists());
    assert!(!target.join("sub/up").exists());

    // verify: the same two are `refused` differences (exit 4), compared
    // against a live tree that has directories of those names.
    let live = tmp.path().join("live");
    for d in ["loop", "sub/up"] {
        std::fs::create_dir_all(live.join(d)).unwrap();
    }
    std::fs::write(live.join("file.txt"), [b'f'; 100]).unwrap();
    let started = Instant::now();
    let r = run(&[
        "verify".as_ref(),
        "--gateway".as_ref(),
        url.as_ref(),
        dir.as_ref(),
        live.as_os_str(),
    ]);
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(r.code, 4, "{}\n{}", r.stdout, r.stderr);
    for path in ["/loop", "/sub/up"] {
        assert!(
            r.stdout.contains(&format!(
                "refused {path}: a directory cycle: this directory is its own ancestor"
            )),
            "{path}: {}",
            r.stdout
        );
    }
}

/// `check --max-duration`: a limit too short for the tree stops after the
/// first object with a "not finished" note (exit 4), keeping what it
/// recorded; a run without it then checks everything (exit 0).
#[test]
fn check_max_duration_stops_cleanly_and_a_later_run_finishes() {
    let url = common::gateway_url();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    for (i, name) in ["a", "b", "d/c"].iter().enumerate() {
        std::fs::write(src.join(name), common::pseudo_random_bytes(500, i as u64)).unwrap();
    }
    let cfg = common::write_backup_config(tmp.path(), &src, &url, common::QUICK_RETRY);
    common::backup_root_cap(&cfg);
    let check = |args: &[&str]| {
        let mut all: Vec<&std::ffi::OsStr> = vec!["-c".as_ref(), cfg.as_os_str()];
        all.extend(args.iter().map(|a| std::ffi::OsStr::new(*a)));
        run(&all)
    };

    let r = check(&["--json", "check", "--max-duration", "0.001", "src"]);
    assert_eq!(r.code, 4, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("lafs-backup: check not finished: --max-duration 0.001 s reached after"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("0 of 1 backup(s) checked to their end"),
        "{}",
        r.stderr
    );
    let lines = r.of_type("not_finished");
    assert_eq!(lines.len(), 1, "{}", r.stdout);
    assert_eq!(lines[0]["max_duration_seconds"], 0.001);
    assert!(
        ts_check_is_null(tmp.path()),
        "a stopped check records no check time"
    );

    let r = check(&["check", "src"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(!r.stderr.contains("not finished"), "{}", r.stderr);
    assert!(!ts_check_is_null(tmp.path()));

    // The deep check of a self-linked directory ends too: the gateway walks
    // each object once (check has no walk of its own to protect).
    let dir = cyclic_dir(&url);
    let started = Instant::now();
    let r = check(&["--json", "check", &dir, "--max-duration", "60"]);
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    // The directory, file.txt and sub: `loop` and `sub/up` are the
    // directory again.
    assert_eq!(r.of_type("backup")[0]["objects"], 3, "{}", r.stdout);
}

/// Whether the recorded backup has no check time yet.
fn ts_check_is_null(dir: &Path) -> bool {
    let db = rusqlite::Connection::open(dir.join("cache.sqlite")).unwrap();
    db.query_row("SELECT ts_check IS NULL FROM backups", [], |row| row.get(0))
        .unwrap()
}

/// `check --leases --max-duration`: stops after its first batch (16
/// objects with one worker), keeps the cursor, exits 4 saying so; the next
/// run continues where it stopped and finishes.
#[test]
fn check_leases_max_duration_resumes_where_it_stopped() {
    let url = common::gateway_url();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..24u64 {
        std::fs::write(
            src.join(format!("f{i}")),
            common::pseudo_random_bytes(100, 100 + i),
        )
        .unwrap();
    }
    let extra = format!("{}operation:\n  concurrency: 1\n", common::QUICK_RETRY);
    let cfg = common::write_backup_config(tmp.path(), &src, &url, &extra);
    common::backup_root_cap(&cfg);
    let leases = |args: &[&str]| {
        let mut all: Vec<&std::ffi::OsStr> = vec!["-c".as_ref(), cfg.as_os_str()];
        all.extend(args.iter().map(|a| std::ffi::OsStr::new(*a)));
        run(&all)
    };

    let r = leases(&["--json", "check", "--leases", "--max-duration", "0.001"]);
    assert_eq!(r.code, 4, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("check not finished")
            && r.stderr.contains("16 of ")
            && r.stderr
                .contains("the next `check --leases` continues from there"),
        "{}",
        r.stderr
    );
    let summary = &r.of_type("leases")[0];
    assert_eq!(summary["complete"], false, "{}", r.stdout);
    let total = summary["objects"].as_u64().unwrap();
    assert!(total > 16, "{}", r.stdout);

    let r = leases(&["--json", "check", "--leases"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let summary = &r.of_type("leases")[0];
    assert_eq!(summary["resumed_at"], 16, "{}", r.stdout);
    assert_eq!(summary["complete"], true, "{}", r.stdout);
    assert_eq!(
        summary["requests"].as_u64().unwrap(),
        total - 16,
        "{}",
        r.stdout
    );
}
