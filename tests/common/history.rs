//! The history fixture of issue 14: three backups of one small tree, made
//! once per test binary and shared (read-only) by the history tests.
//!
//! Between the backups: `f` changes after the first and is deleted before
//! the third, `g` never changes, and `d` gets a new file `d/new` in the
//! third. Each backup runs with `LAFS_BACKUP_NOW` at [`TIMES`], so the
//! backups' start times are known (generation i+1 started at `TIMES[i]`).
//! The first backup has the retention label `yesterday` (set with SQL).

use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;

use super::{lafs, write_backup_config};

/// The start times of the three backups (UTC).
pub(crate) const TIMES: [&str; 3] = [
    "2024-01-01T03:00:00+00:00",
    "2024-01-02T03:00:00+00:00",
    "2024-01-03T03:00:00+00:00",
];

/// The contents of `f` in the first and second backups.
pub(crate) const F1: &[u8] = b"version one of f\nline two\nline three\n";
pub(crate) const F2: &[u8] = b"version two of f\nline two\nline 3, edited\nand a fourth\n";

/// The shared fixture.
pub(crate) struct History {
    _tmp: tempfile::TempDir,
    /// The source tree (in its third state), named `tree`.
    pub(crate) source: PathBuf,
    /// The config (cache, queue and gateway set; no retention).
    pub(crate) cfg: PathBuf,
    /// The root caps of the three backups, oldest first.
    pub(crate) caps: [String; 3],
}

impl History {
    /// The fixture, made on first use.
    pub(crate) fn get() -> &'static History {
        static ONE: OnceLock<History> = OnceLock::new();
        ONE.get_or_init(History::make)
    }

    fn make() -> History {
        let tmp = tempfile::tempdir().expect("tempdir");
        let source = tmp.path().join("tree");
        fs::create_dir_all(source.join("d")).expect("mkdir");
        fs::write(source.join("f"), F1).expect("write");
        // Bigger than a literal cap, so that it is a real object.
        fs::write(source.join("g"), super::pseudo_random_bytes(2000, 7)).expect("write");
        fs::write(source.join("d").join("old"), b"old file in d\n").expect("write");
        let cfg = write_backup_config(
            tmp.path(),
            &source,
            &super::gateway_url(),
            super::QUICK_RETRY,
        );
        let backup = |when: &str| -> String {
            lafs()
                .arg("-c")
                .arg(&cfg)
                .args(["--json", "backup"])
                .env("LAFS_BACKUP_NOW", when)
                .caps_on_stdout()
                .ok()
                .of_type("summary")
                .first()
                .and_then(|v| v["root_cap"].as_str().map(str::to_owned))
                .expect("a summary line with root_cap")
        };
        let first = backup(TIMES[0]);
        fs::write(source.join("f"), F2).expect("write");
        let second = backup(TIMES[1]);
        fs::remove_file(source.join("f")).expect("rm");
        fs::write(source.join("d").join("new"), b"new in the third\n").expect("write");
        let third = backup(TIMES[2]);
        // A retention label on the first backup that is also a WHEN: the
        // token `tree@yesterday` then has two readings (the selector tests).
        let conn = rusqlite::Connection::open(tmp.path().join("cache.sqlite")).expect("cache");
        conn.execute(
            "UPDATE backups SET label = 'yesterday' WHERE generation = 1",
            [],
        )
        .expect("label");
        drop(conn);
        History {
            _tmp: tmp,
            source,
            cfg,
            caps: [first, second, third],
        }
    }
}
