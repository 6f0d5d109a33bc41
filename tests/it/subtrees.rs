//! Issue 16 item 1: unchanged subtrees are skipped wholesale. The scan
//! queues an unchanged directory as one reused line (queue format v3) and
//! the upload phase takes its cap from the cache's `subtrees`, touching
//! nothing beneath it; a change anywhere re-visits only its path.
//!
//! The tests that read the gateway's counters run on a grid of their own,
//! so the counters are the test's own uploads.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common;

struct Setup {
    tmp: tempfile::TempDir,
    source: PathBuf,
    url: String,
}

impl Setup {
    fn new(url: &str) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let source = tmp.path().join("src");
        fs::create_dir(&source).unwrap();
        let s = Setup {
            tmp,
            source,
            url: url.to_owned(),
        };
        common::write_backup_config(s.tmp.path(), &s.source, &s.url, common::QUICK_RETRY);
        s
    }

    fn config(&self) -> PathBuf {
        self.tmp.path().join("cfg.yaml")
    }

    fn cache(&self) -> PathBuf {
        self.tmp.path().join("cache.sqlite")
    }

    fn queue(&self) -> PathBuf {
        self.tmp.path().join("queue")
    }

    /// `backup --json`, exit 0; its summary line.
    fn backup(&self) -> Value {
        let run = common::lafs()
            .arg("-c")
            .arg(self.config())
            .args(["--json", "backup"])
            .caps_on_stdout()
            .ok();
        run.of_type("summary").pop().expect("a summary line")
    }

    fn lafs(&self, args: &[&str]) -> common::Run {
        common::lafs()
            .arg("-c")
            .arg(self.config())
            .args(args)
            .caps_on_stdout()
            .ok()
    }

    /// `verify --content` of the latest backup against the source: every
    /// entry's bytes and metadata.
    fn verify(&self) {
        common::lafs()
            .arg("-c")
            .arg(self.config())
            .args(["verify", "--content", "src"])
            .arg(&self.source)
            .ok();
    }

    fn queue_lines(&self) -> Vec<String> {
        fs::read_to_string(self.queue())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// The gateway's (files uploaded, bytes uploaded) counters; a directory
/// created with `mkdir-immutable` counts as one file uploaded.
fn counters(url: &str) -> (u64, u64) {
    let stats: Value =
        serde_json::from_slice(&common::http_get(&format!("{url}/statistics?t=json"))).unwrap();
    let c = &stats["counters"];
    (
        c["uploader.files_uploaded"].as_u64().unwrap_or(0),
        c["uploader.bytes_uploaded"].as_u64().unwrap_or(0),
    )
}

/// Every row of every table of the cache, as text, by table.
fn cache_rows(cache: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let conn = rusqlite::Connection::open(cache).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut out = BTreeMap::new();
    for table in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM {table}")).unwrap();
        let n = stmt.column_count();
        let rows: BTreeSet<String> = stmt
            .query_map([], |r| {
                let mut fields = Vec::new();
                for i in 0..n {
                    let v: rusqlite::types::Value = r.get(i)?;
                    fields.push(format!("{v:?}"));
                }
                Ok(fields.join("|"))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        out.insert(table, rows);
    }
    out
}

/// Every row of `before` is in `after` unchanged, and each table gained
/// exactly `added(table)` rows.
fn assert_rows_only_added(
    before: &BTreeMap<String, BTreeSet<String>>,
    after: &BTreeMap<String, BTreeSet<String>>,
    added: impl Fn(&str) -> usize,
) {
    for (table, rows) in before {
        let now = &after[table];
        assert!(rows.is_subset(now), "{table}: a row changed or went");
        let n = now.len() - rows.len();
        assert_eq!(n, added(table), "{table}: {n} rows added");
    }
}

/// A grid of the test's own (its counters are the test's uploads) and a
/// setup whose source is a [`wide_tree`].
fn on_own_grid(tops: usize, subs: usize, files: usize) -> (common::PrivateGrid, Setup) {
    let grid = common::PrivateGrid::start_fast();
    let s = Setup::new(grid.url());
    wide_tree(&s.source, tops, subs, files);
    (grid, s)
}

/// A tree of `tops` × `subs` directories of `files` small files each (under
/// 56 bytes: literal caps, so a first backup only creates directories).
fn wide_tree(root: &Path, tops: usize, subs: usize, files: usize) {
    for t in 0..tops {
        for s in 0..subs {
            let dir = root.join(format!("t{t:02}/s{s:02}"));
            fs::create_dir_all(&dir).unwrap();
            for f in 0..files {
                fs::write(dir.join(format!("f{f:03}")), format!("{t}/{s}/{f}")).unwrap();
            }
        }
    }
}

#[test]
fn one_changed_file_in_20000_uploads_its_path_and_touches_no_other_cache_row() {
    let (grid, s) = on_own_grid(20, 10, 100);
    let first = s.backup();
    assert_eq!(first["entries"], 20 * 10 * 100 + 20 * 10 + 20 + 1);

    // Unchanged: the queue is the root's reused line, nothing goes up, and
    // the cache is not written beyond the run's own rows.
    let before = counters(grid.url());
    let rows_before = cache_rows(&s.cache());
    let second = s.backup();
    assert_eq!(
        counters(grid.url()),
        before,
        "an unchanged re-run uploaded something"
    );
    assert_eq!(second["root_cap"], first["root_cap"]);
    assert_eq!(second["entries"], first["entries"], "the counts stay whole");
    assert_eq!(second["bytes_total"], first["bytes_total"]);
    assert_eq!(second["files_uploaded"], 0);
    assert_eq!(second["dirs_created"], 0);
    let lines = s.queue_lines();
    assert_eq!(
        lines.len(),
        2,
        "header and the root's reused line: {lines:?}"
    );
    assert!(
        lines[0].starts_with("#lafs-backup-queue v3 "),
        "{}",
        lines[0]
    );
    assert!(lines[1].starts_with(" 0:0:40") || lines[1].starts_with(' '));
    assert!(lines[1].contains("#subtree="), "{}", lines[1]);
    assert_rows_only_added(&rows_before, &cache_rows(&s.cache()), |table| match table {
        // The run's own record.
        "backups" | "runs" => 1,
        _ => 0,
    });

    // One file's content changes (to a size past the literal limit): that
    // file and its three ancestors go up, nothing else, and no other row
    // of the cache changes.
    fs::write(
        s.source.join("t07/s03/f042"),
        common::pseudo_random_bytes(1000, 7),
    )
    .unwrap();
    let before = counters(grid.url());
    let rows_before = cache_rows(&s.cache());
    let third = s.backup();
    assert_eq!(
        counters(grid.url()).0,
        before.0 + 4,
        "the file and its 3 ancestor directories"
    );
    assert_eq!(third["files_uploaded"], 1);
    assert_eq!(third["dirs_created"], 3);
    assert_eq!(third["entries"], first["entries"]);
    assert_ne!(third["root_cap"], first["root_cap"]);
    // The queue: the changed directory's 100 files, its 9 siblings and
    // the other 19 top directories reused, the 3 ancestors.
    let lines = s.queue_lines();
    assert_eq!(lines.len(), 1 + 100 + 9 + 19 + 3, "{}", lines.len());
    assert_rows_only_added(&rows_before, &cache_rows(&s.cache()), |table| match table {
        "backups" | "runs" => 1,
        // The file's key and the 3 directories' keys.
        "objects" => 4,
        // The 3 new directories' signatures.
        "subtrees" => 3,
        // The file's content and lease, the 3 directories' leases.
        "content" => 1,
        "leases" => 4,
        // Each new directory records its non-literal children: s03 the
        // file, t07 its 10 directories, the root its 20.
        "dir_children" => 1 + 10 + 20,
        _ => 0,
    });

    // What was stored is the tree as it is now.
    s.verify();
}

/// Changes deep in a tree that leave names and sizes alone (mode, owner,
/// xattrs, a same-size rewrite, a rename, a removal, an addition) are all
/// in the next backup; the directories beside them are reused.
#[test]
fn every_kind_of_change_below_a_reused_directory_is_seen() {
    let (grid, s) = on_own_grid(3, 3, 5);
    fs::write(
        s.source.join("t01/s01/big"),
        common::pseudo_random_bytes(5000, 1),
    )
    .unwrap();
    s.backup();
    s.backup();
    assert_eq!(s.queue_lines().len(), 2, "unchanged: one reused line");

    type Change = Box<dyn Fn(&Path)>;
    let changes: Vec<(&str, Change)> = vec![
        (
            "mode",
            Box::new(|r: &Path| {
                fs::set_permissions(r.join("t00/s00/f000"), fs::Permissions::from_mode(0o600))
                    .unwrap();
            }),
        ),
        (
            "xattr",
            Box::new(|r: &Path| {
                common::run_tool(
                    "setfattr",
                    &[
                        "-n".as_ref(),
                        "user.note".as_ref(),
                        "-v".as_ref(),
                        "x".as_ref(),
                        r.join("t02/s01/f003").as_os_str(),
                    ],
                );
            }),
        ),
        (
            "same-size rewrite",
            Box::new(|r: &Path| {
                let p = r.join("t01/s01/big");
                let mtime = fs::metadata(&p).unwrap().modified().unwrap();
                fs::write(&p, common::pseudo_random_bytes(5000, 2)).unwrap();
                // The same mtime: only the ctime tells.
                fs::File::options()
                    .write(true)
                    .open(&p)
                    .unwrap()
                    .set_modified(mtime)
                    .unwrap();
            }),
        ),
        (
            "rename",
            Box::new(|r: &Path| {
                fs::rename(r.join("t02/s02/f001"), r.join("t02/s02/g001")).unwrap();
            }),
        ),
        (
            "removal",
            Box::new(|r: &Path| fs::remove_file(r.join("t00/s02/f004")).unwrap()),
        ),
        (
            "addition",
            Box::new(|r: &Path| fs::write(r.join("t01/s00/new"), b"new").unwrap()),
        ),
        (
            "the root's own mode",
            Box::new(|r: &Path| {
                fs::set_permissions(r, fs::Permissions::from_mode(0o750)).unwrap();
            }),
        ),
        (
            "a hard link",
            Box::new(|r: &Path| {
                fs::hard_link(r.join("t00/s01/f002"), r.join("t02/s02/link")).unwrap();
            }),
        ),
        (
            "empty directory",
            Box::new(|r: &Path| fs::create_dir(r.join("t02/s00/empty")).unwrap()),
        ),
    ];
    for (what, change) in changes {
        change(&s.source);
        let summary = s.backup();
        assert!(
            s.queue_lines().len() < 1 + 3 * 3 * 5,
            "{what}: the unchanged directories are reused"
        );
        assert!(summary["root_cap"].is_string());
        // verify compares every entry's bytes and metadata with the source.
        s.verify();
        // And the next run is unchanged again.
        let before = counters(grid.url());
        s.backup();
        assert_eq!(
            counters(grid.url()),
            before,
            "{what}: the re-run after it uploaded"
        );
        assert_eq!(s.queue_lines().len(), 2, "{what}: unchanged again");
    }
}

/// A cache made before subtrees existed (schema 6) is migrated in place; the
/// first run after it visits everything (and uploads nothing) and records
/// the subtrees, the next one reuses the root whole; `list`, `check
/// --leases` and `cleanup` answer as before.
#[test]
fn a_schema_6_cache_is_migrated_and_keeps_its_answers() {
    let (grid, s) = on_own_grid(2, 2, 3);
    fs::write(
        s.source.join("t00/data"),
        common::pseudo_random_bytes(3000, 3),
    )
    .unwrap();
    let first = s.backup();
    fs::write(
        s.source.join("t01/more"),
        common::pseudo_random_bytes(3000, 4),
    )
    .unwrap();
    let second = s.backup();
    let list_before = s.lafs(&["--json", "list"]).stdout;
    let leases_before = s.lafs(&["--json", "check", "--leases"]).of_type("leases");
    let cleanup_before = s
        .lafs(&[
            "--json",
            "cleanup",
            "--dry-run",
            first["root_cap"].as_str().unwrap(),
        ])
        .of_type("cleanup");

    // What the previous release left: the same tables without `subtrees`,
    // schema version 6 (6 -> 7 only adds that table).
    {
        let conn = rusqlite::Connection::open(s.cache()).unwrap();
        conn.execute_batch(
            "DROP TABLE subtrees;
             UPDATE meta SET value = '6' WHERE name = 'schema_version';",
        )
        .unwrap();
    }
    let before = counters(grid.url());
    let third = s.backup();
    assert_eq!(
        counters(grid.url()),
        before,
        "the migrated cache still knows every object"
    );
    assert_eq!(third["root_cap"], second["root_cap"]);
    let version: String = rusqlite::Connection::open(s.cache())
        .unwrap()
        .query_row(
            "SELECT value FROM meta WHERE name = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, "7");
    // The run after the migration recorded the subtrees: the next one
    // reuses the root whole.
    let fourth = s.backup();
    assert_eq!(fourth["root_cap"], second["root_cap"]);
    assert_eq!(s.queue_lines().len(), 2);

    // `list` shows the same backups, plus the two new runs of the same tree.
    let list_after = s.lafs(&["--json", "list"]).stdout;
    let backups = |text: &str| -> Vec<(Value, Value)> {
        common::json_lines(text.as_bytes())
            .into_iter()
            .filter(|v| v["type"] == "backup")
            .map(|v| (v["generation"].clone(), v["root_cap"].clone()))
            .collect()
    };
    let (was, now) = (backups(&list_before), backups(&list_after));
    assert_eq!(&now[..was.len()], &was[..]);
    assert_eq!(now.len(), was.len() + 2);
    // check --leases covers the same objects.
    let leases_after = s.lafs(&["--json", "check", "--leases"]).of_type("leases");
    assert_eq!(
        leases_after.last().map(|v| v["objects"].clone()),
        leases_before.last().map(|v| v["objects"].clone()),
    );
    // cleanup of the first backup would remove the same.
    let cleanup_after = s
        .lafs(&[
            "--json",
            "cleanup",
            "--dry-run",
            first["root_cap"].as_str().unwrap(),
        ])
        .of_type("cleanup");
    let strip = |v: &[Value]| -> Vec<Value> {
        v.iter()
            .map(|x| {
                let mut x = x.clone();
                x.as_object_mut().unwrap().remove("seconds");
                x
            })
            .collect()
    };
    assert_eq!(strip(&cleanup_after), strip(&cleanup_before));
}

/// A resumed queue whose reused directory the cache no longer vouches for
/// (its subtree row is gone) is made again, and the backup is whole.
#[test]
fn a_resumed_queue_whose_subtrees_are_gone_is_scanned_again() {
    // No counters here: the shared grid will do.
    let s = Setup::new(&common::gateway_url());
    wide_tree(&s.source, 2, 2, 3);
    let first = s.backup();
    // A queue with a reused line whose upload never finished: a second run
    // killed after its scan is what leaves one; here the queue of the
    // unchanged run is kept and its done marker removed.
    s.backup();
    assert_eq!(s.queue_lines().len(), 2);
    let mut marker = s.queue().into_os_string();
    marker.push(".done");
    fs::remove_file(&marker).unwrap();
    rusqlite::Connection::open(s.cache())
        .unwrap()
        .execute("DELETE FROM subtrees", [])
        .unwrap();
    let run = common::lafs()
        .arg("-c")
        .arg(s.config())
        .args(["--json", "backup"])
        .caps_on_stdout()
        .ok();
    assert!(run.stderr.contains("scanning again"), "{}", run.stderr);
    let summary = run.of_type("summary").pop().unwrap();
    assert_eq!(summary["root_cap"], first["root_cap"]);
    assert_eq!(summary["entries"], first["entries"]);
    assert!(s.queue_lines().len() > 2, "listed entry by entry");
}
