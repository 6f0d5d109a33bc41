//! Labels, pins and the name-scoped `cleanup` (issue 12's storage of
//! labels and safety rails) against a real local grid.
//!
//! Labels are given by retention policies; here the test writes them into
//! the cache with SQL of its own (rusqlite), as a policy would have, and
//! inspects the cache the same way.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::Run;
use rusqlite::Connection;
use tempfile::TempDir;

/// Sources `src` and `other` backed up into one cache.
struct Two {
    tmp: TempDir,
    src: PathBuf,
    other: PathBuf,
}

impl Two {
    fn new() -> Two {
        let tmp = tempfile::tempdir().unwrap();
        let (src, other) = (tmp.path().join("src"), tmp.path().join("other"));
        for (dir, text) in [(&src, "version 1\n"), (&other, "other 1\n")] {
            fs::create_dir(dir).unwrap();
            fs::write(dir.join("file.txt"), text).unwrap();
        }
        Two { tmp, src, other }
    }

    /// The config backing up `source` into the shared cache.
    fn config(&self, source: &Path) -> PathBuf {
        let name = source.file_name().unwrap().to_string_lossy().into_owned();
        let path = self.tmp.path().join(format!("cfg-{name}.yaml"));
        fs::write(
            &path,
            format!(
                "source:\n  path: '{}'\n  queue:\n    path: '{}'\n  entry_cache:\n    path: '{}'\n\
                 destination:\n  url: '{}/uri'\n  result:\n    print_to_stdout: false\n{}",
                source.display(),
                self.tmp.path().join(format!("queue-{name}")).display(),
                self.tmp.path().join("cache.sqlite").display(),
                common::gateway_url(),
                common::QUICK_RETRY,
            ),
        )
        .unwrap();
        path
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut cmd = common::lafs()
            .arg("-c")
            .arg(self.config(&self.src))
            .args(args);
        if args.iter().any(|a| ["list", "backup"].contains(a)) {
            cmd = cmd.caps_on_stdout();
        }
        cmd.run()
    }

    fn db(&self) -> Connection {
        Connection::open(self.tmp.path().join("cache.sqlite")).unwrap()
    }

    /// (name, generation, label, pinned) of every backup, by id.
    fn rows(&self) -> Vec<(String, i64, Option<String>, bool)> {
        let db = self.db();
        let mut stmt = db
            .prepare(
                "SELECT CAST(name AS TEXT), generation, label, pinned FROM backups ORDER BY id",
            )
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn label(&self, generation: i64, label: &str, priority: Option<i64>) {
        self.db()
            .execute(
                "UPDATE backups SET label = ?1, priority = ?2 WHERE generation = ?3",
                rusqlite::params![label, priority, generation],
            )
            .unwrap();
    }
}

/// src gen 1 ("version 1"), other gen 2, src gen 3 ("version 3").
fn three_backups(t: &Two) {
    common::backup_root_cap(&t.config(&t.src));
    common::backup_root_cap(&t.config(&t.other));
    fs::write(t.src.join("file.txt"), "version 3\n").unwrap();
    common::backup_root_cap(&t.config(&t.src));
}

#[test]
fn labels_are_listed_and_select_backups_in_every_command() {
    let t = Two::new();
    three_backups(&t);
    t.label(1, "slot-1-DIFF", None);
    t.label(3, "Weekly-2024-01", Some(20));

    // list --json: the new fields, additive.
    let r = t.run(&["--json", "list"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let backups = r.of_type("backup");
    assert_eq!(backups.len(), 3);
    assert_eq!(backups[0]["label"], "slot-1-DIFF");
    assert!(backups[0]["priority"].is_null());
    assert_eq!(backups[0]["pinned"], false);
    assert!(backups[1]["label"].is_null());
    assert_eq!(backups[2]["label"], "Weekly-2024-01");
    assert_eq!(backups[2]["priority"], 20);
    assert!(backups[2]["root_cap"].as_str().unwrap().starts_with("URI:"));

    // list text: PIN and LABEL columns, the root cap still last and aligned.
    let r = t.run(&["list"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[0].contains("  PIN  LABEL") && lines[0].ends_with("ROOT CAP"));
    let cap_col = lines[0].find("ROOT CAP").unwrap();
    let label_col = lines[0].find("LABEL").unwrap();
    for line in &lines[1..] {
        assert_eq!(line.find("URI:"), Some(cap_col), "{}", r.stdout);
    }
    assert!(lines[1][label_col..].starts_with("slot-1-DIFF"));
    assert!(lines[2][label_col..].starts_with("- "));

    // restore and verify: --label picks that backup, not the latest.
    let out = t.tmp.path().join("restored");
    let r = t.run(&[
        "restore",
        "src",
        out.to_str().unwrap(),
        "--label",
        "slot-1-DIFF",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        fs::read_to_string(out.join("file.txt")).unwrap(),
        "version 1\n"
    );
    let src = t.src.to_str().unwrap();
    let r = t.run(&["verify", "src", src, "--content", "--label", "slot-1-DIFF"]);
    assert_eq!(
        r.code, 4,
        "generation 1 differs from the live tree: {}",
        r.stderr
    );
    let r = t.run(&[
        "verify",
        "src",
        src,
        "--content",
        "--label",
        "Weekly-2024-01",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    // check: records the check on the labelled backup only.
    let r = t.run(&["check", "-n", "src", "--label", "slot-1-DIFF"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let checked: Vec<Option<i64>> = {
        let db = t.db();
        let mut stmt = db
            .prepare("SELECT ts_check FROM backups ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert!(checked[0].is_some() && checked[1].is_none() && checked[2].is_none());

    // A label repeated by a rotation: the newest backup with it is meant.
    t.label(3, "slot-1-DIFF", None);
    let out2 = t.tmp.path().join("restored-2");
    let r = t.run(&[
        "restore",
        "src",
        out2.to_str().unwrap(),
        "--label",
        "slot-1-DIFF",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        fs::read_to_string(out2.join("file.txt")).unwrap(),
        "version 3\n"
    );

    // An unknown label: exit 2 naming it and the name's labels.
    for cmd in [
        vec!["restore", "src", "/nonexistent-target", "--label", "disc-9"],
        vec!["verify", "src", src, "--label", "disc-9"],
        vec!["check", "src", "--label", "disc-9"],
        vec!["cleanup", "src", "--label", "disc-9"],
    ] {
        let r = t.run(&cmd);
        assert_eq!(r.code, 2, "{cmd:?}: {}", r.stderr);
        assert!(r.stderr.contains("\"disc-9\""), "{}", r.stderr);
        assert!(
            r.stderr.contains("its labels: \"slot-1-DIFF\""),
            "{}",
            r.stderr
        );
    }
    // --label with --generation, or with a cap: usage errors.
    let r = t.run(&["restore", "src", "/x", "--label", "a", "--generation", "1"]);
    assert_eq!(r.code, 2, "{}", r.stderr);

    // cleanup --label forgets that one backup of the name.
    t.label(1, "slot-0-FULL", None);
    let r = t.run(&["cleanup", "src", "--label", "slot-0-FULL"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows = t.rows();
    assert_eq!(
        rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        vec![2, 3],
        "{rows:?}"
    );
}

#[test]
fn pin_and_unpin_round_trip_and_guard_cleanup() {
    let t = Two::new();
    three_backups(&t);
    t.label(1, "slot-0-FULL", None);

    let r = t.run(&["pin", "src", "--label", "slot-0-FULL"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("pinned backup src generation 1, label slot-0-FULL"),
        "{}",
        r.stderr
    );
    let r = t.run(&["pin", "src"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("pinned backup src generation 3"),
        "{}",
        r.stderr
    );
    let pinned = |t: &Two| t.rows().iter().map(|r| r.3).collect::<Vec<_>>();
    assert_eq!(pinned(&t), vec![true, false, true]);
    // Again: says so, changes nothing.
    let r = t.run(&["--json", "pin", "src", "--generation", "3"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.of_type("pin")[0]["changed"], false);

    let r = t.run(&["--json", "list"]);
    let flags: Vec<bool> = r
        .of_type("backup")
        .iter()
        .map(|b| b["pinned"].as_bool().unwrap())
        .collect();
    assert_eq!(flags, vec![true, false, true]);
    let r = t.run(&["list"]);
    let pin_col = r.stdout.lines().next().unwrap().find("PIN").unwrap();
    let marks: Vec<char> = r
        .stdout
        .lines()
        .skip(1)
        .map(|l| l[pin_col..].chars().next().unwrap())
        .collect();
    assert_eq!(marks, vec!['*', '-', '*']);

    // cleanup of a pinned backup picked by its label (or by the name, or
    // swept by --up-to): refused, nothing changed.
    let before = t.rows();
    for cmd in [
        vec!["cleanup", "src", "--label", "slot-0-FULL"],
        vec!["cleanup", "src", "--up-to", "-g", "3"],
    ] {
        let r = t.run(&cmd);
        assert_eq!(r.code, 2, "{cmd:?}: {}", r.stderr);
        assert!(r.stderr.contains("is pinned"), "{}", r.stderr);
        assert_eq!(t.rows(), before);
    }
    // Named by its generation: forgotten.
    let r = t.run(&["cleanup", "src", "-g", "1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(t.rows().iter().map(|r| r.1).collect::<Vec<_>>(), vec![2, 3]);

    let r = t.run(&["unpin", "src"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("unpinned backup src generation 3"),
        "{}",
        r.stderr
    );
    assert_eq!(pinned(&t), vec![false, false]);
    // Unknown generation: exit 2.
    let r = t.run(&["pin", "src", "-g", "7"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

#[test]
fn cleanup_up_to_is_scoped_by_name() {
    let t = Two::new();
    three_backups(&t);
    fs::write(t.other.join("file.txt"), "other 4\n").unwrap();
    common::backup_root_cap(&t.config(&t.other));
    let before = t.rows();
    assert_eq!(before.len(), 4);

    // Without a NAME, --up-to would reach every name: refused.
    for cmd in [
        vec!["cleanup", "--up-to", "-g", "3"],
        vec!["cleanup", "-n", "--up-to", "-g", "3"],
    ] {
        let r = t.run(&cmd);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(r.stderr.contains("--all-names"), "{}", r.stderr);
        assert_eq!(t.rows(), before);
    }
    // --all-names says it is meant (dry run: other's generation 2 too).
    let r = t.run(&[
        "--json",
        "cleanup",
        "-n",
        "--up-to",
        "--all-names",
        "-g",
        "3",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.of_type("cleanup")[0]["backups"], 3);
    assert_eq!(t.rows(), before);

    // With the NAME: only src's backups up to generation 3.
    let r = t.run(&["--json", "cleanup", "src", "--up-to", "-g", "3"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let forgotten: Vec<(String, u64)> = r
        .of_type("forget")
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_owned(),
                f["generation"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        forgotten,
        vec![("src".to_owned(), 1), ("src".to_owned(), 3)]
    );
    let left: Vec<(String, i64)> = t.rows().into_iter().map(|r| (r.0, r.1)).collect();
    assert_eq!(left, vec![("other".to_owned(), 2), ("other".to_owned(), 4)]);
    // The other name's backups are whole: both restore.
    for g in ["2", "4"] {
        let out = t.tmp.path().join(format!("other-{g}"));
        let r = t.run(&["restore", "other", out.to_str().unwrap(), "--generation", g]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    // A NAME with -g of another name's generation: an error naming its own.
    let r = t.run(&["cleanup", "other", "-g", "3"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("its generations: 2, 4"), "{}", r.stderr);
}

#[test]
fn a_v1_cache_is_refused_by_readers_and_upgraded_by_a_writer() {
    let t = Two::new();
    common::backup_root_cap(&t.config(&t.src));
    // Back to the columns and version of the release before issue 12 (the
    // unit tests build a v1 cache from that release's own DDL).
    t.db()
        .execute_batch(
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
    let r = t.run(&["list"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("schema version 1, older than this lafs-backup's 7")
            && r.stderr
                .contains("run a backup or check once to upgrade the cache"),
        "{}",
        r.stderr
    );
    // A writer upgrades it in place; the backup is still there, unlabelled.
    let r = t.run(&["check", "-n", "src"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = t.run(&["--json", "list"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let backups = r.of_type("backup");
    assert_eq!(backups.len(), 1);
    assert!(backups[0]["label"].is_null() && backups[0]["priority"].is_null());
    assert_eq!(backups[0]["pinned"], false);
    assert!(backups[0]["checked"].is_string());
}
