use std::collections::HashSet;
use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use rusqlite::Connection;
use tempfile::TempDir;

use super::*;

pub(super) const NO_LIMIT: CommitAfter = CommitAfter {
    queries: None,
    seconds: None,
};

/// A well-formed cap of the given type, distinct for each `i`.
pub(super) fn cap_of(prefix: &str, i: u64) -> Cap {
    const B32: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let digits = |mut v: u64, len: usize| -> String {
        (0..len)
            .map(|_| {
                let c = B32[(v % 32) as usize] as char;
                v /= 32;
                c
            })
            .collect()
    };
    let text = format!(
        "URI:{prefix}:{}:{}:2:3:{}",
        digits(i.wrapping_mul(7919).wrapping_add(12345), 26),
        digits(i.wrapping_mul(104_729).wrapping_add(99), 52),
        1000 + i
    );
    Cap::parse(&text).expect("test cap parses")
}

pub(super) fn chk(i: u64) -> Cap {
    cap_of("CHK", i)
}

pub(super) fn dir2(i: u64) -> Cap {
    cap_of("DIR2-CHK", i)
}

fn lit() -> Cap {
    Cap::parse("URI:LIT:nbswy3dp").expect("literal cap parses")
}

fn dir_lit() -> Cap {
    Cap::parse("URI:DIR2-LIT:").expect("literal dir cap parses")
}

fn key(i: u64) -> ObjectKey {
    KeyBuilder::new("test").u64(i).finish()
}

fn scratch() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cache.sqlite");
    (dir, path)
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

fn side(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// What another process would see: only committed rows.
fn committed_objects(path: &Path) -> i64 {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("reader");
    conn.query_row("SELECT count(*) FROM objects", [], |r| r.get(0))
        .expect("count")
}

// ---------------------------------------------------------------- schema

#[test]
fn creates_schema_with_private_modes() {
    let (dir, _) = scratch();
    let path = dir.path().join("sub/deeper/cache.sqlite");
    let mut cache = Cache::open(&path, &NO_LIMIT).expect("open");
    assert!(cache.created());
    assert_eq!(mode_of(&path), 0o600);
    assert_eq!(mode_of(&lock_path(&path)), 0o600);
    assert_eq!(mode_of(path.parent().unwrap()), 0o700);
    cache.begin_run(false).unwrap();
    cache
        .record(&key(1), &chk(1), ObjectKind::File, true)
        .unwrap();
    // Uncommitted WAL content, then committed: both side files exist.
    assert_eq!(mode_of(&side(&path, "-wal")), 0o600);
    assert_eq!(mode_of(&side(&path, "-shm")), 0o600);
    cache.commit().unwrap();
    assert_eq!(mode_of(&side(&path, "-wal")), 0o600);
    drop(cache);

    let conn = Connection::open(&path).unwrap();
    let mut tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    tables.sort();
    assert_eq!(
        tables,
        [
            "backups",
            "content",
            "dir_children",
            "leases",
            "meta",
            "objects",
            "runs",
            "subtrees",
            "verified"
        ]
    );
    let version: String = conn
        .query_row(
            "SELECT value FROM meta WHERE name = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION.to_string());
    let app_id: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .unwrap();
    assert_eq!(app_id, APPLICATION_ID);
    let journal: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
    drop(conn);

    let again = Cache::open(&path, &NO_LIMIT).expect("reopen");
    assert!(!again.created());
    assert!(again.lookup(&key(1)).unwrap().is_some());
}

#[test]
fn sqlite_gives_the_rollback_journal_the_database_mode() {
    // Without WAL (some file systems), SQLite uses PATH-journal: it must be
    // 0600 too, because SQLite copies the database file's mode.
    let (_dir, path) = scratch();
    create_file(&path).unwrap();
    assert_eq!(mode_of(&path), 0o600);
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = PERSIST; CREATE TABLE t (x); BEGIN; INSERT INTO t VALUES (1);",
    )
    .unwrap();
    assert_eq!(mode_of(&side(&path, "-journal")), 0o600);
    conn.execute_batch("COMMIT").unwrap();
    assert_eq!(mode_of(&side(&path, "-journal")), 0o600);
}

#[test]
fn tightens_an_existing_loose_file() {
    let (_dir, path) = scratch();
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
    let cache = Cache::open(&path, &NO_LIMIT).unwrap();
    assert!(cache.created(), "an empty file gets the schema");
    assert_eq!(mode_of(&path), 0o600);
}

#[test]
fn refuses_a_newer_schema_and_leaves_it_alone() {
    let (_dir, path) = scratch();
    drop(Cache::open(&path, &NO_LIMIT).unwrap());
    let conn = Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE meta SET value = ?1 WHERE name = 'schema_version'",
        [(SCHEMA_VERSION + 1).to_string()],
    )
    .unwrap();
    drop(conn);
    let err = Cache::open(&path, &NO_LIMIT).unwrap_err();
    assert!(
        matches!(err, CacheError::SchemaTooNew { found, supported, .. }
            if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("newer lafs-backup"), "{msg}");
    // Still there, still version + 1: nothing was reset.
    let conn = Connection::open(&path).unwrap();
    let v: String = conn
        .query_row(
            "SELECT value FROM meta WHERE name = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(v, (SCHEMA_VERSION + 1).to_string());
}

#[test]
fn refuses_foreign_files() {
    let (dir, path) = scratch();
    // The original tool's entry cache.
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE object_cache (metadata_dump BLOB PRIMARY KEY, cap TEXT, generation INT, ts REAL);
         CREATE TABLE meta (var TEXT PRIMARY KEY, val TEXT);",
    )
    .unwrap();
    drop(conn);
    let err = Cache::open(&path, &NO_LIMIT).unwrap_err();
    assert!(matches!(err, CacheError::OriginalTool { .. }), "{err:?}");
    let conn = Connection::open(&path).unwrap();
    let journal: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        journal, "delete",
        "a foreign database is not switched to WAL"
    );

    let other = dir.path().join("other.db");
    Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE x (y);")
        .unwrap();
    let err = Cache::open(&other, &NO_LIMIT).unwrap_err();
    assert!(matches!(err, CacheError::NotACache { .. }), "{err:?}");

    let subdir = dir.path().join("a-directory");
    std::fs::create_dir(&subdir).unwrap();
    std::fs::set_permissions(&subdir, Permissions::from_mode(0o755)).unwrap();
    let err = Cache::open(&subdir, &NO_LIMIT).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    assert_eq!(mode_of(&subdir), 0o755, "a directory is left alone");

    let text = dir.path().join("notes.txt");
    std::fs::write(&text, vec![b'x'; 4096]).unwrap();
    let err = Cache::open(&text, &NO_LIMIT).unwrap_err();
    assert!(matches!(err, CacheError::NotACache { .. }), "{err:?}");
    assert!(err.to_string().contains("not an SQLite database"), "{err}");
}

#[test]
fn errors_never_show_stored_caps() {
    let (_dir, path) = scratch();
    let mut cache = Cache::open(&path, &NO_LIMIT).unwrap();
    cache.begin_run(false).unwrap();
    cache
        .record(&key(1), &chk(1), ObjectKind::File, true)
        .unwrap();
    cache.commit().unwrap();
    drop(cache);
    let conn = Connection::open(&path).unwrap();
    conn.execute("UPDATE objects SET cap = 'garbage-SECRET-cap'", [])
        .unwrap();
    drop(conn);
    let cache = Cache::open(&path, &NO_LIMIT).unwrap();
    let err = cache.lookup(&key(1)).unwrap_err();
    assert!(matches!(err, CacheError::Corrupt { .. }), "{err:?}");
    assert!(!err.to_string().contains("SECRET"), "{err}");
    assert!(!format!("{err:?}").contains("SECRET"), "{err:?}");
}

// ---------------------------------------------------------------- locking

#[test]
fn second_open_is_locked_out_with_our_pid() {
    let (_dir, path) = scratch();
    let first = Cache::open(&path, &NO_LIMIT).unwrap();
    let err = Cache::open(&path, &NO_LIMIT).unwrap_err();
    match &err {
        CacheError::Locked {
            pid, lock_path: lp, ..
        } => {
            assert_eq!(*pid, Some(std::process::id()));
            assert_eq!(*lp, lock_path(&path));
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "another lafs-backup run (PID {})",
            std::process::id()
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&lock_path(&path).display().to_string()),
        "{msg}"
    );
    assert!(msg.contains("try again when it finishes"), "{msg}");
    let pid_text = std::fs::read_to_string(lock_path(&path)).unwrap();
    assert_eq!(pid_text.trim(), std::process::id().to_string());
    drop(first);
    Cache::open(&path, &NO_LIMIT).expect("free again after the holder closed");
}

#[test]
fn open_wait_times_out_while_held() {
    let (_dir, path) = scratch();
    let _held = Cache::open(&path, &NO_LIMIT).unwrap();
    let start = Instant::now();
    let err = Cache::open_wait(&path, &NO_LIMIT, Duration::from_millis(450)).unwrap_err();
    let waited = start.elapsed();
    assert!(matches!(err, CacheError::Locked { .. }), "{err:?}");
    assert!(waited >= Duration::from_millis(450), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}

#[test]
fn open_wait_gets_the_lock_once_released() {
    let (_dir, path) = scratch();
    let held = Cache::open(&path, &NO_LIMIT).unwrap();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(held);
    });
    let cache = Cache::open_wait(&path, &NO_LIMIT, Duration::from_secs(20)).expect("waited");
    releaser.join().unwrap();
    assert!(!cache.created());
}

// ---------------------------------------------------------------- readers

#[test]
fn readers_need_no_lock_and_create_nothing() {
    let (dir, path) = scratch();
    // Missing: an error, and no file is made.
    let err = Cache::open_read_only(&path).unwrap_err();
    assert!(err.to_string().contains("No such file"), "{err}");
    assert!(!path.exists() && !lock_path(&path).exists());
    // Beside a writer that holds the lock, a reader sees what it committed.
    let mut writer = Cache::open(&path, &NO_LIMIT).unwrap();
    writer.begin_run(false).unwrap();
    writer.finish_backup(b"name", &dir2(1), 1, 0).unwrap();
    let reader = Cache::open_read_only(&path).expect("a reader beside the writer");
    assert_eq!(reader.backups().unwrap().len(), 1);
    drop(reader);
    drop(writer);
    // An empty file is not a cache for a reader (only a writer makes one).
    let empty = dir.path().join("empty.sqlite");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        Cache::open_read_only(&empty),
        Err(CacheError::NotACache { .. })
    ));
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0);
}

#[test]
fn symlinks_at_the_cache_or_its_side_files_are_refused() {
    let (dir, path) = scratch();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"keep").unwrap();
    std::fs::set_permissions(&victim, Permissions::from_mode(0o644)).unwrap();
    for link in [
        path.clone(),
        lock_path(&path),
        side(&path, "-wal"),
        side(&path, "-shm"),
        side(&path, "-journal"),
    ] {
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let err = Cache::open(&path, &NO_LIMIT).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{}: {err}", link.display());
        assert!(
            err.contains(&link.display().to_string()),
            "{}: {err}",
            link.display()
        );
        if link != lock_path(&path) {
            let err = Cache::open_read_only(&path).unwrap_err().to_string();
            assert!(err.contains("symbolic link"), "{}: {err}", link.display());
        }
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert_eq!(mode_of(&victim), 0o644);
        std::fs::remove_file(&link).unwrap();
    }
}

// ---------------------------------------------------------------- generations

#[test]
fn generations_follow_the_original() {
    let (_dir, path) = scratch();
    let mut cache = Cache::open(&path, &NO_LIMIT).unwrap();
    assert_eq!(cache.generation(), 0);
    assert_eq!(cache.begin_run(false).unwrap(), 1, "empty cache");
    assert_eq!(cache.begin_run(true).unwrap(), 1, "empty cache, resuming");
    cache
        .record(&key(1), &chk(1), ObjectKind::File, true)
        .unwrap();
    assert_eq!(cache.begin_run(false).unwrap(), 2, "+1 per run");
    cache
        .record(&key(2), &chk(2), ObjectKind::File, true)
        .unwrap();
    // Run 2 was interrupted (no backup row): resume continues it.
    assert_eq!(cache.begin_run(true).unwrap(), 2);
    assert_eq!(cache.generation(), 2);
    cache.finish_backup(b"b", &dir2(1), 2, 100).unwrap();
    // Run 2 finished: resume starts 3.
    assert_eq!(cache.begin_run(true).unwrap(), 3);
    assert_eq!(cache.begin_run(false).unwrap(), 3);
    // Backups count too, even with no objects at that generation.
    cache.finish_backup(b"c", &dir2(2), 0, 0).unwrap();
    assert_eq!(cache.begin_run(false).unwrap(), 4);
    assert_eq!(cache.begin_run(true).unwrap(), 4);
}

#[test]
fn writes_before_a_run_are_refused() {
    let (_dir, path) = scratch();
    let mut cache = Cache::open(&path, &NO_LIMIT).unwrap();
    let err = cache
        .record(&key(1), &chk(1), ObjectKind::File, true)
        .unwrap_err();
    assert!(matches!(err, CacheError::Internal { .. }), "{err:?}");
}

// ---------------------------------------------------------------- objects

#[test]
fn lookup_record_forget() {
    let (_dir, path) = scratch();
    let mut cache = Cache::open(&path, &NO_LIMIT).unwrap();
    cache.begin_run(false).unwrap();
    assert!(cache.lookup(&key(1)).unwrap().is_none());
    cache
        .record(&key(1), &chk(1), ObjectKind::File, true)
        .unwrap();
    cache
        .record(&key(2), &dir2(2), ObjectKind::Dir, false)
        .unwrap();
    let hit = cache.lookup(&key(1)).unwrap().expect("hit");
    assert_eq!(hit.cap.as_str(), chk(1).as_str());
    assert_eq!(hit.kind, ObjectKind::File);
    assert_eq!(hit.generation, 1);
    let renewed = hit.lease_renewed.expect("an upload renews the lease");
    assert!((renewed - unix_now()).abs() < 5);
    let dir = cache.lookup(&key(2)).unwrap().expect("hit");
    assert_eq!(dir.kind, ObjectKind::Dir);
    assert_eq!(dir.lease_renewed, None);
    assert!(
        !format!("{hit:?}").contains(chk(1).as_str()),
        "Debug hides caps"
    );

    // A reuse writes nothing (issue 16): the row keeps the generation that
    // recorded it; references, not marks, say which backups need it.
    cache.begin_run(false).unwrap();
    cache.commit().unwrap();
    assert_eq!(cache.lookup(&key(1)).unwrap().unwrap().generation, 1);
    assert_eq!(cache.lookup(&key(2)).unwrap().unwrap().generation, 1);

    // Replacing a key's cap.
    cache
        .record(&key(2), &dir2(3), ObjectKind::Dir, true)
        .unwrap();
    let dir = cache.lookup(&key(2)).unwrap().unwrap();
    assert_eq!(dir.cap.as_str(), dir2(3).as_str());
    assert_eq!(dir.generation, 2);

    // Two keys, one cap: forget_cap removes both and the lease.
    cache
        .record(&key(5), &chk(5), ObjectKind::File, true)
        .unwrap();
    cache
        .record(&key(6), &chk(5), ObjectKind::File, true)
        .unwrap();
    assert_eq!(cache.forget_cap(&chk(5)).unwrap(), 2);
    assert!(cache.lookup(&key(6)).unwrap().is_none());
    assert_eq!(cache.lease_renewed(&chk(5)).unwrap(), None);
}

#[test]
fn leases() {
    let (_dir, path) = scratch();
    let mut cache = Cache::open(&path, &NO_LIMIT).unwrap();
    assert_eq!(cache.lease_renewed(&chk(1)).unwrap(), None);
    cache.set_lease_renewed(&chk(1), 1000).unwrap();
    assert_eq!(cache.lease_renewed(&chk(1)).unwrap(), Some(1000));
    cache.set_lease_renewed(&chk(1), 2000).unwrap();
    assert_eq!(cache.lease_renewed(&chk(1)).unwrap(), Some(2000));
    cache.set_lease_renewed(&chk(1), 1500).unwrap();
    assert_eq!(
        cache.lease_renewed(&chk(1)).unwrap(),
        Some(2000),
        "keeps the latest"
    );
    cache.set_lease_renewed(&lit(), 3000).unwrap();
    assert_eq!(
        cache.lease_renewed(&lit()).unwrap(),
        None,
        "literals have no lease"
    );
    cache.begin_run(false).unwrap();
    cache
        .record(&key(9), &lit(), ObjectKind::File, true)
        .unwrap();
    assert_eq!(cache.lookup(&key(9)).unwrap().unwrap().lease_renewed, None);
}

#[test]
fn backups_rows() {
    let (_dir, path) = scratch();
    let mut cache = Cache::open(&path, &NO_LIMIT).unwrap();
    assert!(cache.backups().unwrap().is_empty());
    cache.begin_run(false).unwrap();
    let name: &[u8] = b"caf\xe9 \n\x00odd";
    let id1 = cache.finish_backup(name, &dir2(1), 10, 12345).unwrap();
    cache.begin_run(false).unwrap();
    let id2 = cache.finish_backup(b"second", &dir_lit(), 0, 0).unwrap();
    assert!(id2 > id1);
    cache.set_checked(id1, 777).unwrap();
    let rows = cache.backups().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].id, id1);
    assert_eq!(rows[0].name, name);
    assert_eq!(rows[0].root_cap.as_str(), dir2(1).as_str());
    assert_eq!(rows[0].generation, 1);
    assert_eq!((rows[0].entries, rows[0].bytes), (10, 12345));
    assert!(rows[0].ts_start <= rows[0].ts_end);
    assert_eq!(rows[0].ts_check, Some(777));
    assert_eq!(rows[1].name, b"second");
    assert_eq!(rows[1].generation, 2);
    assert_eq!(rows[1].ts_check, None);
    // finish_backup committed.
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM backups", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2);
}

#[test]
fn probe_round_trip_and_encoding_check() {
    let (_dir, path) = scratch();
    let mut cache = Cache::open(&path, &NO_LIMIT).unwrap();
    assert!(cache.probe().unwrap().is_none());
    assert!(
        cache.check_encoding(&chk(1)).unwrap(),
        "no probe: nothing to compare"
    );
    assert!(matches!(
        cache.set_probe(&lit(), 2, 3),
        Err(CacheError::Internal { .. })
    ));
    cache.set_probe(&chk(42), 2, 3).unwrap();
    drop(cache);
    let mut cache = Cache::open(&path, &NO_LIMIT).unwrap();
    let probe = cache.probe().unwrap().expect("recorded");
    assert_eq!(probe.cap.as_str(), chk(42).as_str());
    assert_eq!((probe.k, probe.n), (2, 3));
    assert!((probe.recorded - unix_now()).abs() < 5);
    assert!(
        cache.check_encoding(&chk(7)).unwrap(),
        "2-of-3 like the probe"
    );
    assert!(
        cache.check_encoding(&lit()).unwrap(),
        "a literal has no encoding"
    );
    let one_of_three = Cap::parse(&chk(7).as_str().replace(":2:3:", ":1:3:")).unwrap();
    assert_eq!(one_of_three.k_n(), Some((1, 3)));
    assert!(!cache.check_encoding(&one_of_three).unwrap());
    assert!(!cache.check_encoding(&one_of_three).unwrap());
}

// ---------------------------------------------------------------- keys

fn base_file() -> FileKey<'static> {
    FileKey {
        path: b"dir/file.txt",
        meta_json: r#"{"uid":1000,"gid":100,"mode":33188}"#,
        mtime_ns: 1_700_000_000_123_456_789,
        ctime_ns: 1_700_000_001_000_000_000,
        size: 4096,
        inode: 1234,
        encoding: "enc:none",
    }
}

#[test]
fn file_key_covers_every_field() {
    let base = base_file();
    let k = base.key();
    let variants = [
        FileKey {
            path: b"dir/file.txu",
            ..base
        },
        FileKey {
            meta_json: r#"{"uid":1000,"gid":100,"mode":33261}"#,
            ..base
        },
        FileKey {
            mtime_ns: base.mtime_ns + 1,
            ..base
        },
        FileKey {
            ctime_ns: base.ctime_ns + 1,
            ..base
        },
        FileKey {
            size: base.size + 1,
            ..base
        },
        FileKey {
            inode: base.inode + 1,
            ..base
        },
        FileKey {
            encoding: "enc:xz",
            ..base
        },
    ];
    let mut seen = HashSet::from([k]);
    for v in &variants {
        assert!(seen.insert(v.key()), "{v:?} collides");
    }
    assert_eq!(base.key(), k, "deterministic");
    // The same recipe written out with the builder (as the uploader does).
    let by_hand = KeyBuilder::new("file")
        .bytes(base.path)
        .str(base.meta_json)
        .i128(base.mtime_ns)
        .i128(base.ctime_ns)
        .u64(base.size)
        .u64(base.inode)
        .str(base.encoding)
        .finish();
    assert_eq!(by_hand, k);
}

#[test]
fn symlink_key_covers_every_field() {
    let base = SymlinkKey {
        path: b"a/link",
        meta_json: "{}",
        target: b"../target",
        ctime_ns: 5,
        inode: 6,
    };
    let keys = [
        base.key(),
        SymlinkKey {
            path: b"a/lin",
            ..base
        }
        .key(),
        SymlinkKey {
            meta_json: r#"{"uid":1}"#,
            ..base
        }
        .key(),
        SymlinkKey {
            target: b"../targe",
            ..base
        }
        .key(),
        SymlinkKey {
            ctime_ns: -5,
            ..base
        }
        .key(),
        SymlinkKey { inode: 7, ..base }.key(),
    ];
    assert_eq!(HashSet::from(keys).len(), keys.len());
    // A symlink never shares a key with a file of the same fields.
    let file = FileKey {
        path: base.path,
        meta_json: base.meta_json,
        ..base_file()
    };
    assert_ne!(file.key(), base.key());
}

#[test]
fn builder_fields_do_not_run_together() {
    let k = |b: KeyBuilder| b.finish();
    assert_ne!(
        k(KeyBuilder::new("x").str("ab").str("c")),
        k(KeyBuilder::new("x").str("a").str("bc"))
    );
    assert_ne!(
        k(KeyBuilder::new("x").str("a")),
        k(KeyBuilder::new("x").bytes(b"a"))
    );
    assert_ne!(k(KeyBuilder::new("x").str("")), k(KeyBuilder::new("x")));
    assert_ne!(
        k(KeyBuilder::new("xs").str("")),
        k(KeyBuilder::new("x").str("s"))
    );
    assert_ne!(
        k(KeyBuilder::new("x").u64(1)),
        k(KeyBuilder::new("x").i128(1))
    );
    assert_ne!(k(KeyBuilder::new("file")), k(KeyBuilder::new("dir")));
    let key = k(KeyBuilder::new("x"));
    let debug = format!("{key:?}");
    assert!(
        debug.starts_with("ObjectKey(") && debug.len() < 30,
        "{debug}"
    );
    assert_eq!(key.short_hex().len(), 12);
    assert_eq!(ObjectKey::from_bytes(*key.as_bytes()), key);
}

#[test]
fn dir_key_includes_child_names_but_not_their_order() {
    let (a, b) = (chk(1), chk(2));
    let meta = r#"{"mode":16877}"#;
    let child_meta = r#"{"mode":33188}"#;
    let children = [
        DirChild {
            name: "alpha",
            cap: a.as_str(),
            meta_json: child_meta,
        },
        DirChild {
            name: "beta",
            cap: b.as_str(),
            meta_json: child_meta,
        },
    ];
    let k = dir_key(meta, &children);
    // Same children, given in the other order: same key.
    let reversed = [children[1], children[0]];
    assert_eq!(dir_key(meta, &reversed), k);
    // A renamed child: same cap, same metadata, new name: new key.
    let renamed = [
        DirChild {
            name: "alpha2",
            ..children[0]
        },
        children[1],
    ];
    assert_ne!(dir_key(meta, &renamed), k);
    // Names swapped between two caps: new key.
    let swapped = [
        DirChild {
            name: "beta",
            ..children[0]
        },
        DirChild {
            name: "alpha",
            ..children[1]
        },
    ];
    assert_ne!(dir_key(meta, &swapped), k);
    // Child cap, child metadata, own metadata, a child more or less.
    let other_cap = chk(3);
    assert_ne!(
        dir_key(
            meta,
            &[
                DirChild {
                    cap: other_cap.as_str(),
                    ..children[0]
                },
                children[1]
            ]
        ),
        k
    );
    assert_ne!(
        dir_key(
            meta,
            &[
                DirChild {
                    meta_json: "{}",
                    ..children[0]
                },
                children[1]
            ]
        ),
        k
    );
    assert_ne!(dir_key("{}", &children), k);
    assert_ne!(dir_key(meta, &children[..1]), k);
    // The uploader's hand-built form: children sorted by name.
    let mut by_hand = KeyBuilder::new("dir").str(meta);
    for c in &children {
        by_hand = by_hand.str(c.name).str(c.cap).str(c.meta_json);
    }
    assert_eq!(by_hand.finish(), k);
}

// ---------------------------------------------------------------- references

#[test]
fn reachable_from_three_backups_sharing_objects() {
    let (_dir, path) = scratch();
    let mut cache = Cache::open(&path, &NO_LIMIT).unwrap();
    cache.begin_run(false).unwrap();
    // Backup 1: root1 -> {sub1, f1}; sub1 -> {f2, f3, lit}.
    // Backup 2: root2 -> {sub1, f4} (shares sub1 and so f2, f3).
    // Backup 3: root3 -> {sub3, lit-dir}; sub3 -> {f3, f5}.
    let (root1, root2, root3, sub1, sub3) = (dir2(101), dir2(102), dir2(103), dir2(11), dir2(13));
    let (f1, f2, f3, f4, f5) = (chk(1), chk(2), chk(3), chk(4), chk(5));
    let (l, dl) = (lit(), dir_lit());
    cache.record_children(&sub1, &[&f2, &f3, &l]).unwrap();
    cache.record_children(&root1, &[&sub1, &f1]).unwrap();
    cache.record_children(&root2, &[&f4, &sub1]).unwrap();
    cache.record_children(&sub3, &[&f3, &f5]).unwrap();
    cache.record_children(&root3, &[&sub3, &dl]).unwrap();
    cache.record_children(&dl, &[&l]).unwrap();
    // Recording the same edges again changes nothing.
    cache.record_children(&root2, &[&f4, &sub1]).unwrap();

    let set =
        |caps: &[&Cap]| -> HashSet<String> { caps.iter().map(|c| c.as_str().to_owned()).collect() };
    assert_eq!(
        cache.reachable_from([root1.as_str()]).unwrap(),
        set(&[&root1, &sub1, &f1, &f2, &f3])
    );
    assert_eq!(
        cache.reachable_from([root2.as_str()]).unwrap(),
        set(&[&root2, &sub1, &f2, &f3, &f4])
    );
    assert_eq!(
        cache.reachable_from([root3.as_str()]).unwrap(),
        set(&[&root3, &sub3, &f3, &f5])
    );
    // Keeping backups 2 and 3 (dropping 1): f1 and root1 are the garbage.
    let kept = cache
        .reachable_from([root2.as_str(), root3.as_str()])
        .unwrap();
    assert_eq!(
        kept,
        set(&[&root2, &root3, &sub1, &sub3, &f2, &f3, &f4, &f5])
    );
    assert!(!kept.contains(f1.as_str()) && !kept.contains(root1.as_str()));
    // Literal roots and unknown roots.
    assert!(cache.reachable_from([dl.as_str()]).unwrap().is_empty());
    assert!(cache.reachable_from(std::iter::empty()).unwrap().is_empty());
    assert_eq!(cache.reachable_from([f5.as_str()]).unwrap(), set(&[&f5]));
    let n: i64 = cache
        .conn
        .query_row("SELECT count(*) FROM dir_children", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 9, "literal caps are never recorded");
}

#[test]
fn reachable_from_survives_cycles() {
    // Immutable directories cannot form cycles, but a damaged cache must not
    // hang the closure.
    let (_dir, path) = scratch();
    let mut cache = Cache::open(&path, &NO_LIMIT).unwrap();
    cache.record_children(&dir2(1), &[&dir2(2)]).unwrap();
    cache.record_children(&dir2(2), &[&dir2(1)]).unwrap();
    assert_eq!(cache.reachable_from([dir2(1).as_str()]).unwrap().len(), 2);
}

// ---------------------------------------------------------------- commits

/// A cache at a fresh path with commit `limits`, in a run.
fn cache_in_run(limits: &CommitAfter) -> (TempDir, PathBuf, Cache) {
    let (dir, path) = scratch();
    let mut cache = Cache::open(&path, limits).unwrap();
    cache.begin_run(false).unwrap();
    (dir, path, cache)
}

/// Records object `i` (a directory, cap `chk(i)`), then commits if a limit
/// says so.
fn record_and_maybe_commit(cache: &mut Cache, i: u64) {
    cache
        .record(&key(i), &chk(i), ObjectKind::Dir, false)
        .unwrap();
    cache.maybe_commit().unwrap();
}

#[test]
fn commit_after_queries() {
    let (_dir, path, mut cache) = cache_in_run(&CommitAfter {
        queries: Some(3),
        seconds: None,
    });
    for i in 1..=2 {
        record_and_maybe_commit(&mut cache, i);
    }
    assert_eq!(committed_objects(&path), 0);
    record_and_maybe_commit(&mut cache, 3);
    assert_eq!(committed_objects(&path), 3);
    record_and_maybe_commit(&mut cache, 4);
    assert_eq!(committed_objects(&path), 3);
    cache.commit().unwrap();
    assert_eq!(committed_objects(&path), 4);
}

#[test]
fn commit_after_seconds_counts_from_the_last_commit() {
    let (_dir, path, mut cache) = cache_in_run(&CommitAfter {
        queries: None,
        seconds: Some(60.0),
    });
    record_and_maybe_commit(&mut cache, 1);
    assert_eq!(committed_objects(&path), 0);
    // 61 s pass with a query every moment: queries do not restart the clock
    // (the original measured from the last query and never committed).
    cache.last_commit = Instant::now()
        .checked_sub(Duration::from_secs(61))
        .expect("clock");
    record_and_maybe_commit(&mut cache, 2);
    assert_eq!(committed_objects(&path), 2);
    record_and_maybe_commit(&mut cache, 3);
    assert_eq!(
        committed_objects(&path),
        2,
        "the clock restarted at the commit"
    );
    drop(cache);
    assert_eq!(committed_objects(&path), 3, "a normal drop commits");
}

#[test]
fn commit_after_seconds_with_a_real_clock() {
    let (_dir, path, mut cache) = cache_in_run(&CommitAfter {
        queries: None,
        seconds: Some(0.2),
    });
    let start = Instant::now();
    let mut i = 0;
    while committed_objects(&path) == 0 {
        assert!(start.elapsed() < Duration::from_secs(20), "never committed");
        i += 1;
        record_and_maybe_commit(&mut cache, i);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(start.elapsed() >= Duration::from_millis(200));
}

#[test]
fn zero_limits_mean_no_limit() {
    let (_dir, path, mut cache) = cache_in_run(&CommitAfter {
        queries: Some(0),
        seconds: Some(0.0),
    });
    record_and_maybe_commit(&mut cache, 1);
    assert_eq!(committed_objects(&path), 0);
}

const CRASH_ENV: &str = "LAFS_BACKUP_CACHE_CRASH_CHILD";

/// Run by `committed_rows_survive_sigkill` in a child process: records key
/// 1, commits, records key 2, announces itself and waits to be killed.
#[test]
#[ignore = "a helper process for committed_rows_survive_sigkill"]
fn crash_child() {
    let Some(path) = std::env::var_os(CRASH_ENV) else {
        return;
    };
    let path = PathBuf::from(path);
    let mut cache = Cache::open(&path, &NO_LIMIT).unwrap();
    cache.begin_run(false).unwrap();
    cache
        .record(&key(1), &chk(1), ObjectKind::File, true)
        .unwrap();
    cache.commit().unwrap();
    cache
        .record(&key(2), &chk(2), ObjectKind::File, true)
        .unwrap();
    std::fs::write(side(&path, ".ready"), b"").unwrap();
    std::thread::sleep(Duration::from_secs(120));
    unreachable!("the parent kills this process");
}

#[test]
fn committed_rows_survive_sigkill() {
    let (_dir, path) = scratch();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "cache::tests::crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_ENV, &path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the test binary");
    let start = Instant::now();
    while !side(&path, ".ready").exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child exited early: {status}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "child never got ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: no destructors, no rollback, no commit
    child.wait().unwrap();
    // The kernel released the child's lock.
    let cache = Cache::open(&path, &NO_LIMIT).expect("open after the crash");
    let hit = cache
        .lookup(&key(1))
        .unwrap()
        .expect("committed row survived");
    assert_eq!(hit.cap.as_str(), chk(1).as_str());
    assert!(
        cache.lookup(&key(2)).unwrap().is_none(),
        "the uncommitted row is rolled back"
    );
}

#[test]
fn panicking_drop_does_not_commit() {
    let (_dir, path) = scratch();
    let p = path.clone();
    let result = std::thread::spawn(move || {
        let mut cache = Cache::open(&p, &NO_LIMIT).unwrap();
        cache.begin_run(false).unwrap();
        cache
            .record(&key(1), &chk(1), ObjectKind::File, true)
            .unwrap();
        cache.commit().unwrap();
        cache
            .record(&key(2), &chk(2), ObjectKind::File, true)
            .unwrap();
        panic!("simulated failure");
    })
    .join();
    assert!(result.is_err());
    assert_eq!(committed_objects(&path), 1);
}

// ------------------------------------------------------- schema v1 -> v2

/// The schema of version 1, exactly as the release before issue 12 created
/// it (`schema.rs` at that release), to make a v1 cache the way it did.
const CREATE_V1: &str = "
CREATE TABLE meta (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE objects (
    key        BLOB PRIMARY KEY NOT NULL CHECK (length(key) = 32),
    cap        TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('file', 'dir')),
    enc        TEXT,
    generation INTEGER NOT NULL CHECK (generation >= 1),
    ts         INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX objects_generation ON objects (generation);
CREATE INDEX objects_cap ON objects (cap);

CREATE TABLE backups (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       BLOB NOT NULL,
    root_cap   TEXT NOT NULL,
    generation INTEGER NOT NULL CHECK (generation >= 1),
    ts_start   INTEGER NOT NULL,
    ts_end     INTEGER NOT NULL,
    entries    INTEGER NOT NULL,
    bytes      INTEGER NOT NULL,
    ts_check   INTEGER NULL
);
CREATE INDEX backups_generation ON backups (generation);
CREATE INDEX backups_root_cap ON backups (root_cap);

CREATE TABLE dir_children (
    dir_cap   TEXT NOT NULL,
    child_cap TEXT NOT NULL,
    PRIMARY KEY (dir_cap, child_cap)
) WITHOUT ROWID;

CREATE TABLE leases (
    cap     TEXT PRIMARY KEY NOT NULL,
    renewed INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE content (
    hash     BLOB NOT NULL CHECK (length(hash) = 32),
    encoding TEXT NOT NULL,
    cap      TEXT NOT NULL,
    PRIMARY KEY (hash, encoding)
) WITHOUT ROWID;
CREATE INDEX content_cap ON content (cap);
";

/// A version-1 cache as the previous release made it: application id,
/// schema and `meta` rows in one transaction, WAL, with two backups (one
/// checked) and their objects.
fn make_v1(path: &Path) {
    let mut conn = Connection::open(path).unwrap();
    let tx = conn.transaction().unwrap();
    tx.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID};"))
        .unwrap();
    tx.execute_batch(CREATE_V1).unwrap();
    tx.execute(
        "INSERT INTO meta (name, value) VALUES ('schema_version', '1'), ('created', '1700000000')",
        [],
    )
    .unwrap();
    for (i, (name, root, generation, check)) in [
        (&b"src"[..], dir2(1), 1_i64, Some(1_700_000_500_i64)),
        (&b"caf\xe9"[..], dir2(2), 2, None),
    ]
    .into_iter()
    .enumerate()
    {
        let ts = 1_700_000_000 + 100 * i64::try_from(i).unwrap();
        tx.execute(
            "INSERT INTO objects (key, cap, kind, enc, generation, ts) VALUES (?1, ?2, 'dir', NULL, ?3, ?4)",
            params![key(i as u64).as_bytes().to_vec(), root.as_str(), generation, ts],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO backups (name, root_cap, generation, ts_start, ts_end, entries, bytes, ts_check)
             VALUES (?1, ?2, ?3, ?4, ?5, 3, 300, ?6)",
            params![name, root.as_str(), generation, ts, ts + 10, check],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

/// Every column of a table: name, type, not null, default.
fn columns(path: &Path, table: &str) -> Vec<(String, String, bool, Option<String>)> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT name, type, \"notnull\", dflt_value FROM pragma_table_info(?1) ORDER BY cid",
        )
        .unwrap();
    stmt.query_map([table], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })
    .unwrap()
    .collect::<Result<Vec<_>, _>>()
    .unwrap()
}

#[test]
fn a_v1_cache_is_migrated_in_place_with_its_rows_intact() {
    let (_dir, path) = scratch();
    make_v1(&path);

    // A reader does not upgrade: it says what to run, and changes nothing.
    let err = Cache::open_read_only(&path).unwrap_err();
    assert!(
        matches!(
            err,
            CacheError::NeedsUpgrade {
                found: 1,
                supported: SCHEMA_VERSION,
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("run a backup or check once to upgrade the cache"),
        "{text}"
    );
    assert_eq!(
        columns(&path, "backups").len(),
        9,
        "the reader left the v1 schema alone"
    );

    let mut cache = Cache::open(&path, &NO_LIMIT).unwrap();
    assert!(!cache.created());
    let rows = cache.backups().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].name, b"src");
    assert_eq!(rows[0].root_cap.as_str(), dir2(1).as_str());
    assert_eq!(
        (rows[0].generation, rows[0].entries, rows[0].bytes),
        (1, 3, 300)
    );
    assert_eq!(
        (rows[0].ts_start, rows[0].ts_end),
        (1_700_000_000, 1_700_000_010)
    );
    assert_eq!(rows[0].ts_check, Some(1_700_000_500));
    assert_eq!(rows[1].name, b"caf\xe9");
    assert_eq!(rows[1].ts_check, None);
    for r in &rows {
        assert_eq!(
            (r.label.as_deref(), r.priority, r.pinned),
            (None, None, false)
        );
    }
    assert!(
        cache.lookup(&key(1)).unwrap().is_some(),
        "objects rows intact"
    );
    // The new columns work on the migrated rows.
    cache
        .set_label(rows[1].id, Some("slot-3-DIFF"), Some(20))
        .unwrap();
    cache.set_pinned(rows[0].id, true).unwrap();
    cache.close().unwrap();

    let cache = Cache::open_read_only(&path).unwrap();
    let rows = cache.backups().unwrap();
    assert_eq!(
        (rows[0].label.as_deref(), rows[0].priority, rows[0].pinned),
        (None, None, true)
    );
    assert_eq!(
        (rows[1].label.as_deref(), rows[1].priority, rows[1].pinned),
        (Some("slot-3-DIFF"), Some(20), false)
    );
    drop(cache);
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let version: String = conn
        .query_row(
            "SELECT value FROM meta WHERE name = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION.to_string());
    let created: String = conn
        .query_row("SELECT value FROM meta WHERE name = 'created'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(created, "1700000000", "the migration keeps the meta rows");

    // A migrated cache has the columns a new one has, in the same order.
    let (_new_dir, new_path) = scratch();
    Cache::open(&new_path, &NO_LIMIT).unwrap().close().unwrap();
    for table in [
        "backups",
        "objects",
        "meta",
        "leases",
        "content",
        "dir_children",
        "verified",
    ] {
        assert_eq!(columns(&path, table), columns(&new_path, table), "{table}");
    }
}

#[test]
fn labels_and_pins_round_trip_and_clear() {
    let (_dir, path) = scratch();
    let mut cache = Cache::open(&path, &NO_LIMIT).unwrap();
    cache.begin_run(false).unwrap();
    let id = cache.finish_backup(b"src", &dir2(1), 1, 1).unwrap();
    let row = &cache.backups().unwrap()[0];
    assert_eq!(
        (row.label.as_deref(), row.priority, row.pinned),
        (None, None, false)
    );
    cache
        .set_label(id, Some("Weekly-2024-01"), Some(20))
        .unwrap();
    cache.set_pinned(id, true).unwrap();
    cache.commit().unwrap();
    let row = &cache.backups().unwrap()[0];
    assert_eq!(
        (row.label.as_deref(), row.priority, row.pinned),
        (Some("Weekly-2024-01"), Some(20), true)
    );
    cache.set_label(id, None, None).unwrap();
    cache.set_pinned(id, false).unwrap();
    cache.commit().unwrap();
    let row = &cache.backups().unwrap()[0];
    assert_eq!(
        (row.label.as_deref(), row.priority, row.pinned),
        (None, None, false)
    );
}

#[test]
fn a_v2_cache_gains_the_verified_table_in_place() {
    let (_dir, path) = scratch();
    make_v1(&path);
    // Take it to v2 exactly as the previous release did.
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "ALTER TABLE backups ADD COLUMN label TEXT NULL;
             ALTER TABLE backups ADD COLUMN priority INTEGER NULL;
             ALTER TABLE backups ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0 CHECK (pinned IN (0, 1));
             UPDATE meta SET value = '2' WHERE name = 'schema_version';",
        )
        .unwrap();
    }
    assert!(matches!(
        Cache::open_read_only(&path).unwrap_err(),
        CacheError::NeedsUpgrade {
            found: 2,
            supported: 7,
            ..
        }
    ));
    let mut cache = Cache::open(&path, &NO_LIMIT).unwrap();
    assert_eq!(cache.backups().unwrap().len(), 2, "rows intact");
    cache.set_verified(&dir2(1), 1_700_000_900).unwrap();
    cache.set_verified(&dir2(1), 1_700_000_800).unwrap();
    cache.close().unwrap();
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let (version, ts): (String, i64) = conn
        .query_row(
            "SELECT (SELECT value FROM meta WHERE name = 'schema_version'), \
             (SELECT ts FROM verified)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((version.as_str(), ts), ("7", 1_700_000_900), "latest kept");
    let (_new_dir, new_path) = scratch();
    Cache::open(&new_path, &NO_LIMIT).unwrap().close().unwrap();
    assert_eq!(columns(&path, "verified"), columns(&new_path, "verified"));
    // And v3 -> v4 adds the runs table, identical to a new cache's.
    assert_eq!(columns(&path, "runs"), columns(&new_path, "runs"));
    // And v4 -> v5 adds backups.kind, identical to a new cache's; every
    // backup of before is a tree; v5 -> v6 adds backups.btrfs_date and
    // btrfs_parent (no backup of before is a btrfs member).
    assert_eq!(columns(&path, "backups"), columns(&new_path, "backups"));
    let cache = Cache::open_read_only(&path).unwrap();
    assert!(
        cache
            .backups()
            .unwrap()
            .iter()
            .all(|b| b.kind == BackupKind::Tree)
    );
    assert!(cache.btrfs_members(b"src").unwrap().is_empty());
    // And v6 -> v7 adds the subtrees table, identical to a new cache's
    // (empty: the first run after the upgrade records them).
    assert_eq!(columns(&path, "subtrees"), columns(&new_path, "subtrees"));
    let subtrees: i64 = Connection::open(&path)
        .unwrap()
        .query_row("SELECT count(*) FROM subtrees", [], |r| r.get(0))
        .unwrap();
    assert_eq!(subtrees, 0);
}

/// A btrfs member's facts are recorded with its row, read back per name in
/// row order, and go with the row when it is forgotten.
#[test]
fn btrfs_members_are_recorded_and_forgotten_with_their_rows() {
    use crate::btrfs::plan::{Kind, Member};
    let d = |s: &str| s.parse::<jiff::civil::Date>().unwrap();
    let (_dir, path) = scratch();
    let mut cache = Cache::open(&path, &NO_LIMIT).unwrap();
    cache.begin_run(false).unwrap();
    let c = Member {
        date: d("2000-01-01"),
        kind: Kind::Complete,
    };
    let i = Member {
        date: d("2000-01-07"),
        kind: Kind::Incremental {
            parent: d("2000-01-01"),
        },
    };
    let first = cache
        .finish_backup_of(BackupKind::Stream, b"home", &dir2(1), 1, 1)
        .unwrap();
    cache.set_btrfs_member(first, &c).unwrap();
    cache
        .finish_backup_of(BackupKind::Stream, b"other", &dir2(3), 1, 1)
        .unwrap();
    // The row and its facts in one commit.
    let second = cache
        .finish_btrfs_backup(b"home", &dir2(2), 1, 1, &i)
        .unwrap();
    let members = cache.btrfs_members(b"home").unwrap();
    assert_eq!(
        members.iter().map(|m| (m.id, m.member)).collect::<Vec<_>>(),
        [(first, c), (second, i)]
    );
    assert!(cache.btrfs_members(b"other").unwrap().is_empty());
    let plan = cache
        .plan_forget(
            &std::collections::BTreeSet::from([first]),
            &std::collections::BTreeSet::new(),
            None,
        )
        .unwrap();
    cache.apply_forget(&plan).unwrap();
    let members = cache.btrfs_members(b"home").unwrap();
    assert_eq!(members.iter().map(|m| m.member).collect::<Vec<_>>(), [i]);
}
