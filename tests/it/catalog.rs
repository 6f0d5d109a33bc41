//! Issue 13 item 8 against the real grid: the recovery catalog
//! (`destination.catalog`, docs/recovery.md). Every backup is linked into
//! it as `NAME/<start time>` and `NAME/latest` beside an index, so that
//! `list --catalog CAP` and `restore NAME --catalog CAP` work with no local
//! state at all; `auto` creates it once; `forget` unlinks.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{self, Run, lafs};

/// A config at `dir/NAME` with `body` after the gateway and quick retries.
fn config(dir: &Path, name: &str, body: &str) -> PathBuf {
    let cfg = dir.join(name);
    fs::write(
        &cfg,
        format!(
            "destination:\n  url: '{}/uri'\n{}{}",
            common::gateway_url(),
            body.replace("{D}", &dir.display().to_string()),
            common::QUICK_RETRY,
        ),
    )
    .unwrap();
    cfg
}

fn run_at(cfg: &Path, now: &str, args: &[&str]) -> Run {
    lafs()
        .arg("-c")
        .arg(cfg)
        .args(args)
        .env("LAFS_BACKUP_NOW", now)
        .env("TZ", "UTC")
        .caps_on_stdout()
        .run()
}

fn must(run: Run, code: i32) -> Run {
    assert_eq!(
        run.code,
        code,
        "exit {} (want {code}); stderr:\n{}",
        run.code,
        common::redact(&run.stderr)
    );
    run
}

/// The child names of the directory at `path` (`CAP/sub`) by the real
/// `tahoe ls`.
fn tahoe_ls(work: &Path, path: &str) -> Vec<String> {
    let client = common::tahoe_client_dir(work, &common::gateway_url());
    let out = Command::new(common::tahoe_cli())
        .arg("-d")
        .arg(&client)
        .arg("ls")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tahoe ls failed: {}",
        common::redact(&String::from_utf8_lossy(&out.stderr))
    );
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

fn diff_r(a: &Path, b: &Path) {
    let out = Command::new("diff")
        .arg("-r")
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "trees differ:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The `list --json` lines of a run: (name, root cap, generation).
fn listed(run: &Run) -> Vec<(String, String, u64)> {
    run.of_type("backup")
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_owned(),
                b["root_cap"].as_str().unwrap().to_owned(),
                b["generation"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The issue's "Recovery" check: three backups of two jobs with a catalog
/// made by the test; then the cache, queues and result file are deleted,
/// and a config that knows only the gateway lists and restores from the
/// catalog cap alone.
#[test]
fn the_catalog_cap_and_a_gateway_are_all_a_restore_needs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for name in ["a", "b"] {
        fs::create_dir_all(dir.join(name).join("sub")).unwrap();
        fs::write(
            dir.join(name).join("sub/file.txt"),
            format!("tree {name}, v1"),
        )
        .unwrap();
        fs::write(
            dir.join(name).join("big.bin"),
            common::pseudo_random_bytes(70_000, 7),
        )
        .unwrap();
    }
    let catalog = common::mkdir_mutable(&common::gateway_url());
    assert!(catalog.starts_with("URI:DIR2:"), "mkdir gave no writecap");
    let cfg = config(
        dir,
        "cfg.yaml",
        &format!(
            "  catalog: '{catalog}'\n  result:\n    append_to_file: '{{D}}/state/results'\n\
             source:\n  queue:\n    path: '{{D}}/state/queue'\n  entry_cache:\n    path: \
             '{{D}}/state/cache.sqlite'\n\
             jobs:\n  - name: alpha\n    source:\n      path: '{{D}}/a'\n\
             \x20 - name: beta\n    source:\n      path: '{{D}}/b'\n"
        ),
    );
    must(run_at(&cfg, "2024-01-07T03:00:00Z", &["backup"]), 0);
    fs::write(dir.join("a/sub/file.txt"), "tree a, v2").unwrap();
    must(run_at(&cfg, "2024-01-08T03:00:00Z", &["backup"]), 0);
    fs::write(dir.join("a/sub/file.txt"), "tree a, v3 (latest)").unwrap();
    must(
        run_at(&cfg, "2024-01-09T03:00:00Z", &["backup", "--job", "alpha"]),
        0,
    );
    let recorded = listed(&must(
        run_at(&cfg, "2024-01-09T04:00:00Z", &["--json", "list"]),
        0,
    ));
    assert_eq!(recorded.len(), 5, "{recorded:?}");

    // The host is lost: no cache, queue or result file.
    fs::remove_dir_all(dir.join("state")).unwrap();
    let bare = config(dir, "bare.yaml", "");
    let from_catalog = listed(&must(
        run_at(
            &bare,
            "2024-01-10T00:00:00Z",
            &["--json", "list", "--catalog", &catalog],
        ),
        0,
    ));
    let mut want = recorded.clone();
    want.sort_by_key(|r| r.2);
    let mut got = from_catalog.clone();
    got.sort_by_key(|r| r.2);
    assert_eq!(got, want, "the catalog lists every recorded backup");
    let table = must(
        run_at(
            &bare,
            "2024-01-10T00:00:00Z",
            &["list", "--catalog", &catalog],
        ),
        0,
    );
    assert_eq!(table.stdout.lines().count(), 6, "{}", table.stdout);
    assert!(!dir.join("state").exists(), "list created no state");

    // The latest alpha, identical to the tree.
    let out = dir.join("restored");
    let restore = lafs()
        .arg("-c")
        .arg(&bare)
        .args(["restore", "alpha"])
        .arg(&out)
        .args(["--catalog", &catalog])
        .known_cap(&catalog)
        .run();
    must(restore, 0);
    diff_r(&dir.join("a"), &out);
    // --as-of picks the backup of that time.
    let first = dir.join("first");
    must(
        run_at(
            &bare,
            "2024-01-10T00:00:00Z",
            &[
                "restore",
                "alpha",
                first.to_str().unwrap(),
                "--catalog",
                &catalog,
                "--as-of",
                "2024-01-07T12:00:00Z",
            ],
        ),
        0,
    );
    assert_eq!(
        fs::read_to_string(first.join("sub/file.txt")).unwrap(),
        "tree a, v1"
    );
    let none = must(
        run_at(
            &bare,
            "2024-01-10T00:00:00Z",
            &[
                "restore",
                "gamma",
                dir.join("x").to_str().unwrap(),
                "--catalog",
                &catalog,
            ],
        ),
        2,
    );
    assert!(
        none.stderr
            .contains("no backup named \"gamma\" in the recovery catalog"),
        "{}",
        none.stderr
    );
    assert!(!dir.join("state").exists(), "restore created no state");

    // What `tahoe ls` shows: a directory per name, dated entries, latest.
    assert_eq!(tahoe_ls(dir, &catalog), ["alpha", "beta"]);
    assert_eq!(
        tahoe_ls(dir, &format!("{catalog}/alpha")),
        [
            "2024-01-07T03:00:00Z",
            "2024-01-08T03:00:00Z",
            "2024-01-09T03:00:00Z",
            "index.json",
            "latest"
        ]
    );
    assert_eq!(
        tahoe_ls(dir, &format!("{catalog}/beta")),
        [
            "2024-01-07T03:00:00Z",
            "2024-01-08T03:00:00Z",
            "index.json",
            "latest"
        ]
    );
}

/// `auto`: the catalog is made by the first backup, its cap printed once
/// (and written to the result file), reused by the next; `forget` unlinks
/// what it forgets and moves nothing else.
#[test]
fn an_auto_catalog_is_made_once_and_forget_unlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let src = dir.join("www");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("index.html"), "v1").unwrap();
    let cfg = config(
        dir,
        "cfg.yaml",
        "  catalog: auto\n  result:\n    append_to_file: '{D}/results'\n\
         source:\n  path: '{D}/www'\n  queue:\n    path: '{D}/queue'\n  entry_cache:\n    \
         path: '{D}/cache.sqlite'\n",
    );
    let first = must(run_at(&cfg, "2024-01-07T03:00:00Z", &["backup"]), 0);
    let catalogs: Vec<&str> = first
        .stdout
        .lines()
        .filter(|l| l.starts_with("URI:DIR2:"))
        .collect();
    assert_eq!(catalogs.len(), 1, "the catalog cap once: {}", first.stdout);
    let catalog = catalogs[0].to_owned();
    assert!(
        first
            .stderr
            .contains("keep this recovery cap somewhere safe"),
        "{}",
        first.stderr
    );
    let results = fs::read_to_string(dir.join("results")).unwrap();
    assert!(
        results
            .lines()
            .any(|l| l.ends_with(&format!(" #recovery-catalog {catalog}"))),
        "the result file records the catalog"
    );

    fs::write(src.join("index.html"), "v2").unwrap();
    let second = must(run_at(&cfg, "2024-01-08T03:00:00Z", &["backup"]), 0);
    assert_eq!(second.stdout.lines().count(), 1, "only the root cap");
    assert!(!second.stdout.contains("URI:DIR2:"), "not printed again");
    assert!(!second.stderr.contains("recovery cap"), "{}", second.stderr);
    let listed_now = listed(&must(
        run_at(
            &cfg,
            "2024-01-09T00:00:00Z",
            &["--json", "list", "--catalog", &catalog],
        ),
        0,
    ));
    assert_eq!(listed_now.len(), 2, "{listed_now:?}");
    assert_eq!(
        tahoe_ls(dir, &format!("{catalog}/www")),
        [
            "2024-01-07T03:00:00Z",
            "2024-01-08T03:00:00Z",
            "index.json",
            "latest"
        ]
    );

    must(
        run_at(
            &cfg,
            "2024-01-09T00:00:00Z",
            &["forget", "--keep-last", "1"],
        ),
        0,
    );
    let after = listed(&must(
        run_at(
            &cfg,
            "2024-01-09T00:00:00Z",
            &["--json", "list", "--catalog", &catalog],
        ),
        0,
    ));
    assert_eq!(after, listed_now[1..], "only the kept backup is listed");
    assert_eq!(
        tahoe_ls(dir, &format!("{catalog}/www")),
        ["2024-01-08T03:00:00Z", "index.json", "latest"]
    );
    // `latest` is the kept backup's root.
    let out = dir.join("restored");
    must(
        run_at(
            &cfg,
            "2024-01-09T00:00:00Z",
            &[
                "restore",
                "www",
                out.to_str().unwrap(),
                "--catalog",
                &catalog,
            ],
        ),
        0,
    );
    diff_r(&src, &out);
}

/// A bad `destination.catalog` is a config error naming the file, line and
/// key, and never quoting the value (a cap is a secret).
#[test]
fn a_bad_catalog_value_is_refused_without_echo() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let immutable = format!("URI:DIR2-CHK:{}:{}:1:1:100", "k".repeat(26), "h".repeat(52));
    let truncated = format!("URI:DIR2:{}:{}", "k".repeat(26), "h".repeat(20));
    for (value, says) in [
        (
            immutable.as_str(),
            "not a mutable directory's writecap (a DIR2 cap)",
        ),
        (truncated.as_str(), "looks like a Tahoe capability"),
        ("nonsense-value", "neither 'auto' nor"),
    ] {
        let cfg = config(dir, "bad.yaml", &format!("  catalog: '{value}'\n"));
        let run = lafs()
            .arg("-c")
            .arg(&cfg)
            .arg("list")
            .known_cap(value)
            .code(2);
        // FILE:LINE: the line of the key.
        let at = format!("{}:3:", cfg.display());
        assert!(run.stderr.contains(&at), "{}", run.stderr);
        assert!(run.stderr.contains("destination.catalog"), "{}", run.stderr);
        assert!(run.stderr.contains(says), "{}", run.stderr);
        assert!(!run.stderr.contains("nonsense-value"), "{}", run.stderr);
    }
}

/// A catalog that cannot be updated (here a writecap of a directory the
/// grid does not hold) does not undo the backup: it is recorded, the run
/// warns without quoting the cap and exits 4.
#[test]
fn a_catalog_that_cannot_be_updated_is_exit_4_and_the_backup_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::create_dir(dir.join("www")).unwrap();
    fs::write(dir.join("www/index.html"), "v1").unwrap();
    let missing = format!("URI:DIR2:{}:{}", "q".repeat(26), "r".repeat(52));
    let cfg = config(
        dir,
        "cfg.yaml",
        &format!(
            "  catalog: '{missing}'\nsource:\n  path: '{{D}}/www'\n  queue:\n    path: \
             '{{D}}/queue'\n  entry_cache:\n    path: '{{D}}/cache.sqlite'\n"
        ),
    );
    let run = lafs()
        .arg("-c")
        .arg(&cfg)
        .args(["--json", "backup"])
        .env("LAFS_BACKUP_NOW", "2024-01-07T03:00:00Z")
        .caps_on_stdout()
        .known_cap(&missing)
        .code(4);
    assert!(
        run.stderr
            .contains("the recovery catalog (destination.catalog) was not updated"),
        "{}",
        run.stderr
    );
    assert_eq!(run.of_type("summary").len(), 1, "the backup is reported");
    let listed = listed(&must(
        run_at(&cfg, "2024-01-07T04:00:00Z", &["--json", "list"]),
        0,
    ));
    assert_eq!(listed.len(), 1, "the backup is recorded");
}
