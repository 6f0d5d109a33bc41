//! `cache rebuild`: a lost cache is rebuilt from the grid, so the next
//! backup of the unchanged tree uploads no file and gives the same root
//! cap (issue 13's check). Each test uses a grid of its own, so the
//! gateway's `uploader.bytes_uploaded` counts only its own uploads.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::common::{self, Run, lafs};

struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    cfg: PathBuf,
    url: String,
}

/// The smallest file of the tree stored as an object of its own (a file
/// of at most 55 bytes lives inside its literal cap), in bytes.
const SMALLEST: usize = 2000;

impl Setup {
    fn new(url: &str) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let src = dir.join("data");
        fs::create_dir_all(src.join("sub")).unwrap();
        // Compressed by the default codec, zstd (over min_size 5120,
        // repetitive). Numbered lines: zstd packs 2000 identical lines into
        // under 56 bytes, a literal cap with nothing to hash (xz, the
        // default before issue 16, never did), and this must stay a CHK file.
        let text: String = (0..2000)
            .map(|i| format!("all work and no play {i}\n"))
            .collect();
        fs::write(src.join("text.txt"), text).unwrap();
        // Does not compress: stored as it is.
        fs::write(
            src.join("noise.bin"),
            common::pseudo_random_bytes(40_000, 7),
        )
        .unwrap();
        fs::write(
            src.join("sub/small.bin"),
            common::pseudo_random_bytes(SMALLEST, 8),
        )
        .unwrap();
        fs::hard_link(src.join("sub/small.bin"), src.join("sub/hard.bin")).unwrap();
        symlink("sub/small.bin", src.join("link")).unwrap();
        // An empty directory and a literal file: caps without objects.
        fs::create_dir(src.join("empty")).unwrap();
        fs::write(src.join("sub/tiny.txt"), "hi\n").unwrap();
        let extra = format!(
            "  result:\n    append_to_file: '{}'\n{}",
            dir.join("results").display(),
            common::QUICK_RETRY
        );
        let cfg = common::write_backup_config(&dir, &src, url, &extra);
        Setup {
            _tmp: tmp,
            dir,
            cfg,
            url: url.to_owned(),
        }
    }

    fn cache(&self) -> PathBuf {
        self.dir.join("cache.sqlite")
    }

    fn delete_cache(&self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.cache().into_os_string();
            p.push(suffix);
            let _ = fs::remove_file(p);
        }
        assert!(!self.cache().exists());
    }

    fn run(&self, args: &[&str]) -> Run {
        lafs().arg("-c").arg(&self.cfg).args(args).run()
    }

    fn bytes_uploaded(&self) -> u64 {
        let stats: serde_json::Value = serde_json::from_slice(&common::http_get(&format!(
            "{}/statistics?t=json",
            self.url
        )))
        .unwrap();
        stats["counters"]["uploader.bytes_uploaded"]
            .as_u64()
            .unwrap_or(0)
    }
}

fn rows(cache: &Path, table: &str) -> i64 {
    let conn = rusqlite::Connection::open(cache).unwrap();
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// The keys and caps of the directory objects.
fn dirs(cache: &Path) -> Vec<(Vec<u8>, String)> {
    let conn = rusqlite::Connection::open(cache).unwrap();
    let mut stmt = conn
        .prepare("SELECT key, cap FROM objects WHERE kind = 'dir' ORDER BY key")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The check: rebuilt from the result file, the next backup
/// uploads no file content and gives the same root cap; `list` shows the
/// backup; an existing cache is replaced only with --force.
#[test]
fn a_rebuilt_cache_makes_the_next_backup_upload_nothing() {
    let grid = common::PrivateGrid::start_fast();
    let s = Setup::new(grid.url());
    let first = common::backup_root_cap(&s.cfg);
    let content_rows = rows(&s.cache(), "content");
    let children_rows = rows(&s.cache(), "dir_children");
    let dir_rows = dirs(&s.cache());
    s.delete_cache();

    let r = s.run(&["--json", "cache", "rebuild"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let summary = &r.of_type("rebuild")[0];
    assert_eq!(summary["backups"], 1, "{summary}");
    assert_eq!(summary["labels_lost"], true, "{summary}");
    // text.txt, noise.bin and small.bin (hard.bin is the same object; the
    // symlink's target is a literal).
    assert_eq!(summary["files_hashed"], 3, "{summary}");
    assert!(summary["bytes_downloaded"].as_u64().unwrap() > 40_000);
    assert_eq!(rows(&s.cache(), "content"), content_rows);
    assert_eq!(rows(&s.cache(), "dir_children"), children_rows);
    // Every directory under the key the backup computed.
    assert_eq!(dirs(&s.cache()), dir_rows);
    assert_eq!(rows(&s.cache(), "backups"), 1);

    let list = lafs()
        .arg("-c")
        .arg(&s.cfg)
        .arg("list")
        .caps_on_stdout()
        .ok();
    assert!(list.stdout.contains("data"), "{}", list.stdout);

    let before = s.bytes_uploaded();
    let second = common::backup_root_cap(&s.cfg);
    let grew = s.bytes_uploaded() - before;
    assert_eq!(second, first, "the same tree gave another root cap");
    eprintln!("after the rebuild, the backup uploaded {grew} bytes");
    assert!(
        grew < SMALLEST as u64,
        "{grew} bytes went up after the rebuild: file content was uploaded again"
    );

    // An existing cache is kept without --force.
    let r = s.run(&["cache", "rebuild"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--force"), "{}", r.stderr);
    let r = s.run(&["cache", "rebuild", "--force"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("no retention labels"), "{}", r.stdout);
    assert_eq!(rows(&s.cache(), "backups"), 2);
}

/// Rebuilt from a CAP argument (under --name); a cap that is not a
/// directory is refused by its position, never echoed.
#[test]
fn a_cache_is_rebuilt_from_a_cap_argument() {
    let grid = common::PrivateGrid::start_fast();
    let s = Setup::new(grid.url());
    let first = common::backup_root_cap(&s.cfg);
    s.delete_cache();

    let r = lafs()
        .arg("-c")
        .arg(&s.cfg)
        .args(["--json", "cache", "rebuild", "--name", "data"])
        .arg(&first)
        .known_cap(&first)
        .run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.of_type("rebuild")[0]["backups"], 1);

    let before = s.bytes_uploaded();
    let second = common::backup_root_cap(&s.cfg);
    assert_eq!(second, first);
    assert!(s.bytes_uploaded() - before < SMALLEST as u64);

    // A file cap where a backup's root is expected.
    let literal_file = "URI:LIT:mfrgg";
    let r = lafs()
        .arg("-c")
        .arg(&s.cfg)
        .args(["cache", "rebuild", "--force", "--name", "data", &first])
        .arg(literal_file)
        .known_cap(&first)
        .run();
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("argument 2"), "{}", r.stderr);
    assert!(r.stderr.contains("not a directory cap"), "{}", r.stderr);
    // The cache from before (the rebuilt backup and the one after it) is
    // still there.
    assert_eq!(rows(&s.cache(), "backups"), 2);

    // A directory cap of nothing on this grid: named by its position.
    let missing = "URI:DIR2-CHK:aaaaaaaaaaaaaaaaaaaaaaaaaa:\
                   bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb:1:1:100";
    let r = lafs()
        .arg("-c")
        .arg(&s.cfg)
        .args(["cache", "rebuild", "--force", "--name", "data", missing])
        .known_cap(missing)
        .run();
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("argument 1"), "{}", r.stderr);
    assert_eq!(rows(&s.cache(), "backups"), 2);
    let leftovers: Vec<_> = fs::read_dir(&s.dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".rebuild"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// With a recovery catalog (`auto`): no argument needed, the catalog's cap
/// is found on the result file's `#recovery-catalog` line, every backup
/// comes back with its generation, the rebuilt cache keeps the catalog's
/// cap, and the next backup uploads nothing.
#[test]
fn a_cache_is_rebuilt_from_the_recovery_catalog() {
    let grid = common::PrivateGrid::start_fast();
    let s = Setup::new(grid.url());
    let cfg_text = fs::read_to_string(&s.cfg).unwrap();
    fs::write(
        &s.cfg,
        cfg_text.replacen("destination:\n", "destination:\n  catalog: auto\n", 1),
    )
    .unwrap();
    let backup = |now: &str| -> String {
        lafs()
            .arg("-c")
            .arg(&s.cfg)
            .args(["--json", "backup"])
            .env("LAFS_BACKUP_NOW", now)
            .caps_on_stdout()
            .ok()
            .of_type("summary")[0]["root_cap"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    backup("2024-01-01T03:00:00Z");
    fs::write(
        s.dir.join("data/new.bin"),
        common::pseudo_random_bytes(3000, 9),
    )
    .unwrap();
    let second = backup("2024-01-02T03:00:00Z");
    let catalog_before: String = rusqlite::Connection::open(s.cache())
        .unwrap()
        .query_row(
            "SELECT value FROM meta WHERE name = 'catalog_cap'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    s.delete_cache();

    let r = s.run(&["--json", "cache", "rebuild"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let summary = &r.of_type("rebuild")[0];
    assert_eq!(summary["backups"], 2, "{summary}");
    assert_eq!(summary["labels_lost"], false, "{summary}");
    let conn = rusqlite::Connection::open(s.cache()).unwrap();
    let gens: Vec<(i64, i64)> = conn
        .prepare("SELECT generation, ts_start FROM backups ORDER BY generation")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(gens, [(1, 1_704_078_000), (2, 1_704_164_400)]);
    let catalog_after: String = conn
        .query_row(
            "SELECT value FROM meta WHERE name = 'catalog_cap'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        catalog_after, catalog_before,
        "the auto catalog stays this cache's"
    );
    drop(conn);

    let before = s.bytes_uploaded();
    let third = backup("2024-01-03T03:00:00Z");
    assert_eq!(third, second, "the same tree gave another root cap");
    // Only the catalog's small index and links change; no file content.
    assert!(s.bytes_uploaded() - before < SMALLEST as u64);
}
