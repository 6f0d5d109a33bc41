//! The dump sources (issue 15 item 6) against real servers and tools, no
//! grid: each dump is read through its source into a file, restored with
//! the tool's own client into a fresh database or repository, and the
//! result compared. Failures (a wrong database, a tool killed) must be
//! reported with the tool's stderr tail, never as success.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use lafs_backup::{DumpError, DumpSource, dump_sources_from_yaml};

use crate::common::servers;

fn sources(job: &str, yaml: &str) -> Vec<DumpSource> {
    dump_sources_from_yaml(job, yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}"))
}

/// Reads a source to its end into `file`; the result of `finish`.
fn dump_to(source: &DumpSource, file: &Path) -> Result<u64, DumpError> {
    let mut stream = source.open()?;
    let mut out = std::fs::File::create(file).unwrap();
    let n = std::io::copy(&mut stream, &mut out).unwrap();
    stream.finish().map(|()| n)
}

fn named<'a>(all: &'a [DumpSource], name: &str) -> &'a DumpSource {
    all.iter()
        .find(|s| s.name() == name)
        .unwrap_or_else(|| panic!("no source {name}"))
}

/// A script that runs `real` with its arguments, then dies by SIGKILL:
/// with `cut`, after passing on only that many bytes of its output (killed
/// halfway); without, after complete output. Either way the dump must
/// count as failed.
fn killed_after(dir: &Path, real: &Path, cut: Option<usize>) -> PathBuf {
    let script = dir.join("killed-dump");
    let head = cut.map_or_else(String::new, |n| format!(" | head -c {n}"));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n'{}' \"$@\"{head}\necho about to be killed >&2\nkill -9 $$\n",
            real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

fn assert_failed(err: DumpError, program_part: &str, stderr_part: &str) {
    let text = err.to_string();
    let DumpError::Failed {
        program, stderr, ..
    } = &err
    else {
        panic!("not a dump failure: {text}")
    };
    assert!(program.contains(program_part), "{text}");
    assert!(
        stderr.iter().any(|l| l.contains(stderr_part)),
        "stderr tail lacks {stderr_part:?}: {text}"
    );
    assert!(text.contains(stderr_part), "{text}");
}

const PG_SCHEMA: &str = "
CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL, born date);
CREATE TABLE notes (id serial PRIMARY KEY, person int REFERENCES people(id), body text);
CREATE VIEW named AS SELECT p.name, n.body FROM people p JOIN notes n ON n.person = p.id;
INSERT INTO people VALUES (1, 'Ada', '1815-12-10'), (2, 'Grace ''Amazing''', '1906-12-09'),
  (3, 'Zoë \\ tab	here', NULL);
INSERT INTO notes (person, body) SELECT 1 + i % 3, repeat('x', i) || ' note ' || i
  FROM generate_series(1, 500) AS i;
";

const PG_QUERIES: [&str; 3] = [
    "SELECT * FROM people ORDER BY id",
    "SELECT * FROM notes ORDER BY id",
    "SELECT count(*), max(name) FROM named",
];

#[test]
fn postgresql_each_database_dumped_and_restored() {
    let pg = servers::postgres();
    let tmp = tempfile::tempdir().unwrap();
    pg.psql("postgres", "CREATE DATABASE dumps_pg_src", None);
    pg.psql("postgres", "CREATE DATABASE dumps_pg_second", None);
    pg.psql("dumps_pg_src", PG_SCHEMA, None);

    // `each` lists the server's databases (other tests add theirs).
    let all = sources("nightly", &format!("kind: postgresql\n{}", pg.job_yaml()));
    let names: Vec<_> = all.iter().map(DumpSource::name).collect();
    for want in [
        "nightly.dumps_pg_src",
        "nightly.dumps_pg_second",
        "nightly.postgres",
    ] {
        assert!(names.contains(&want), "{names:?}");
    }
    assert!(!names.iter().any(|n| n.contains("template")), "{names:?}");

    let file = tmp.path().join("src.sql");
    let n = dump_to(named(&all, "nightly.dumps_pg_src"), &file).unwrap();
    assert!(n > 10_000, "{n} bytes");
    pg.psql("postgres", "CREATE DATABASE dumps_pg_restored", None);
    pg.psql("dumps_pg_restored", "", Some(&file));
    for q in PG_QUERIES {
        let want = pg.psql("dumps_pg_src", q, None);
        assert!(!want.trim().is_empty(), "{q}");
        assert_eq!(pg.psql("dumps_pg_restored", q, None), want, "{q}");
    }

    // `all`: one stream named after the job, `pg_dumpall`'s whole cluster.
    let all = sources(
        "cluster",
        &format!("kind: postgresql\ndatabases: all\n{}", pg.job_yaml()),
    );
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].name(), "cluster");
    let whole = tmp.path().join("all.sql");
    dump_to(&all[0], &whole).unwrap();
    let text = std::fs::read_to_string(&whole).unwrap();
    assert!(text.contains("dumps_pg_src") && text.contains("Grace"));
}

#[test]
fn postgresql_failures_report_the_stderr_tail() {
    let pg = servers::postgres();
    let tmp = tempfile::tempdir().unwrap();
    let missing = sources(
        "j",
        &format!(
            "kind: postgresql\ndatabases: [dumps_pg_no_such_db]\n{}",
            pg.job_yaml()
        ),
    );
    assert_eq!(missing[0].name(), "j.dumps_pg_no_such_db");
    let err = dump_to(&missing[0], &tmp.path().join("x")).unwrap_err();
    assert_failed(err, "pg_dump", "does not exist");

    // Complete output, then killed: still a failure.
    pg.psql("postgres", "CREATE DATABASE dumps_pg_killed", None);
    let script = killed_after(tmp.path(), &pg.tool("pg_dump"), None);
    let yaml = format!(
        "kind: postgresql\ndatabases: [dumps_pg_killed]\n{}pg_dump: {}\n",
        pg.job_yaml()
            .replace(&format!("pg_dump: {}\n", pg.tool("pg_dump").display()), ""),
        script.display()
    );
    let err = dump_to(&sources("j", &yaml)[0], &tmp.path().join("y")).unwrap_err();
    assert!(err.to_string().contains("killed by signal 9"), "{err}");
    assert_failed(err, "killed-dump", "about to be killed");
}

const MY_SCHEMA: &str = "
CREATE TABLE people (id INT PRIMARY KEY, name VARCHAR(100) NOT NULL, born DATE) ENGINE=InnoDB;
CREATE TABLE blobs (id INT AUTO_INCREMENT PRIMARY KEY, data BLOB) ENGINE=InnoDB;
INSERT INTO people VALUES (1, 'Ada', '1815-12-10'), (2, 'Grace \\'Amazing\\'', '1906-12-09'),
  (3, 'Zoë', NULL);
INSERT INTO blobs (data) VALUES (UNHEX('00FF10')), (REPEAT('abc', 1000)), (NULL);
";

const MY_QUERIES: [&str; 2] = [
    "SELECT * FROM people ORDER BY id",
    "SELECT id, HEX(data) FROM blobs ORDER BY id",
];

/// A MariaDB user `user` with `password` and the rights mysqldump needs;
/// its credentials in the tool's own option file (mode 0600) in `dir`,
/// never in the job: the file's path.
fn dump_user(my: &servers::Mariadb, dir: &Path, user: &str, password: &str) -> PathBuf {
    my.sql(
        None,
        &format!(
            "CREATE USER IF NOT EXISTS '{user}'@'localhost' IDENTIFIED BY '{password}';
             GRANT SELECT, SHOW VIEW, LOCK TABLES, TRIGGER, EVENT ON *.* TO '{user}'@'localhost';"
        ),
        None,
    );
    let options = dir.join(format!("{user}.cnf"));
    std::fs::write(
        &options,
        format!("[client]\nuser={user}\npassword={password}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&options, std::fs::Permissions::from_mode(0o600)).unwrap();
    options
}

#[test]
fn mariadb_each_database_dumped_with_an_option_file_and_restored() {
    let my = servers::mariadb();
    let tmp = tempfile::tempdir().unwrap();
    let password = "Pw-never-in-argv-7q";
    my.sql(
        None,
        "CREATE DATABASE dumps_my_src; CREATE DATABASE dumps_my_second;",
        None,
    );
    my.sql(Some("dumps_my_src"), MY_SCHEMA, None);
    let options = dump_user(my, tmp.path(), "dumper", password);
    let yaml = format!(
        "kind: mysql\nsocket: {}\ndefaults_extra_file: {}\n",
        my.socket().display(),
        options.display()
    );
    let all = sources("db", &yaml);
    let names: Vec<_> = all.iter().map(DumpSource::name).collect();
    assert!(names.contains(&"db.dumps_my_src"), "{names:?}");
    assert!(names.contains(&"db.dumps_my_second"), "{names:?}");
    for system in ["mysql", "sys", "information_schema", "performance_schema"] {
        assert!(
            !names.contains(&format!("db.{system}").as_str()),
            "{names:?}"
        );
    }
    for s in &all {
        let argv = format!("{:?}", s.argv().unwrap());
        assert!(!argv.contains(password), "{argv}");
        assert!(argv.contains("--single-transaction"), "{argv}");
    }

    let file = tmp.path().join("src.sql");
    dump_to(named(&all, "db.dumps_my_src"), &file).unwrap();
    my.sql(None, "CREATE DATABASE dumps_my_restored", None);
    my.sql(Some("dumps_my_restored"), "", Some(&file));
    for q in MY_QUERIES {
        let want = my.sql(Some("dumps_my_src"), q, None);
        assert!(!want.trim().is_empty(), "{q}");
        assert_eq!(my.sql(Some("dumps_my_restored"), q, None), want, "{q}");
    }

    // A wrong database and a tool killed halfway fail, with the tool's
    // words and without the password.
    let wrong = sources("db", &format!("{yaml}databases: [dumps_my_nope]\n"));
    let err = dump_to(&wrong[0], &tmp.path().join("x")).unwrap_err();
    assert!(!err.to_string().contains(password));
    assert_failed(err, "mysqldump", "dumps_my_nope");
    let real = which("mysqldump");
    let script = killed_after(tmp.path(), &real, Some(1000));
    let killed = sources(
        "db",
        &format!(
            "{yaml}databases: [dumps_my_src]\nmysqldump: {}\n",
            script.display()
        ),
    );
    let err = dump_to(&killed[0], &tmp.path().join("y")).unwrap_err();
    assert_failed(err, "killed-dump", "about to be killed");
    // It did stop halfway: 1000 bytes of a dump that is longer.
    assert_eq!(std::fs::metadata(tmp.path().join("y")).unwrap().len(), 1000);
    assert!(std::fs::metadata(&file).unwrap().len() > 1000);
}

fn which(program: &str) -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{program} not installed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A SQLite database of two tables kept in step (every transaction adds
/// one row to each) by a writer thread until `stop`.
struct LiveSqlite {
    stop: Arc<AtomicBool>,
    /// Transactions committed so far.
    written: Arc<AtomicU64>,
    writer: std::thread::JoinHandle<()>,
}

impl LiveSqlite {
    /// Creates `db` (`journal` mode, `rows` rows in each table) and starts
    /// writing `per_tx` rows a transaction.
    fn start(db: &Path, journal: &str, rows: u32, per_tx: u32) -> LiveSqlite {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.pragma_update(None, "journal_mode", journal).unwrap();
        conn.execute_batch(&format!(
            "CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT);
             CREATE TABLE b (id INTEGER PRIMARY KEY, v TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
             INSERT INTO a (v) SELECT hex(randomblob(100)) FROM n;
             INSERT INTO b (v) SELECT v FROM a;"
        ))
        .unwrap();
        drop(conn);
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let writer = {
            let (db, stop, written) = (db.to_owned(), stop.clone(), written.clone());
            std::thread::spawn(move || {
                let mut conn = rusqlite::Connection::open(&db).unwrap();
                conn.busy_timeout(std::time::Duration::from_secs(60))
                    .unwrap();
                while !stop.load(Ordering::SeqCst) {
                    let tx = conn.transaction().unwrap();
                    for _ in 0..per_tx {
                        tx.execute("INSERT INTO a (v) VALUES (hex(randomblob(200)))", [])
                            .unwrap();
                        tx.execute("INSERT INTO b (v) VALUES ('x')", []).unwrap();
                    }
                    tx.commit().unwrap();
                    written.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        LiveSqlite {
            stop,
            written,
            writer,
        }
    }

    fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }

    /// Waits for `n` more transactions.
    fn wait_for(&self, n: u64) {
        let before = self.written();
        while self.written() < before + n {
            std::thread::yield_now();
        }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.writer.join().unwrap();
    }
}

/// `integrity_check` of a copy, and its rows in `a`, which must equal
/// those in `b` (no torn transaction).
fn check_copy(copy: &Path, what: &str) -> i64 {
    let conn = rusqlite::Connection::open(copy).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok", "{what}");
    let (a, b): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM b)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(a, b, "{what}: a torn transaction");
    a
}

/// A writer keeps two tables in step (every transaction adds one row to
/// each) while copies are taken: every copy must pass `integrity_check`
/// and hold as many rows in one table as in the other.
#[test]
fn sqlite_copy_is_consistent_while_written() {
    for journal in ["wal", "delete"] {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("live.db");
        let live = LiveSqlite::start(&db, journal, 20000, 50);
        let all = sources("app", &format!("kind: sqlite\npath: {}\n", db.display()));
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].name(), "app");
        assert_eq!(all[0].argv(), None);
        let mut rows_seen = Vec::new();
        for i in 0..5 {
            // Wait for the writer to be busy before each copy.
            live.wait_for(2);
            let copy = tmp.path().join(format!("copy{i}.db"));
            dump_to(&all[0], &copy).unwrap();
            rows_seen.push(check_copy(&copy, &format!("{journal} copy {i}")));
        }
        live.stop();
        assert!(
            rows_seen.windows(2).all(|w| w[0] < w[1]),
            "{journal}: the copies did not see the writes: {rows_seen:?}"
        );
    }

    // A path that is not a database fails; none is created.
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing.db");
    let all = sources(
        "app",
        &format!("kind: sqlite\npath: {}\n", missing.display()),
    );
    let err = all[0].open().err().expect("a missing database must fail");
    assert!(err.to_string().contains("missing.db"), "{err}");
    assert!(!missing.exists());
}

fn svn(args: &[&str], cwd: &Path) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn svnlook(args: &[&str], repo: &Path) -> Vec<u8> {
    let out = Command::new("svnlook")
        .arg(args[0])
        .arg(repo)
        .args(&args[1..])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "svnlook {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `svnadmin create FRESH`, then `svnadmin load FRESH < DUMP`.
fn svn_load(dump: &Path, fresh: &Path) {
    let parent = fresh.parent().unwrap();
    svn(&["svnadmin", "create", fresh.to_str().unwrap()], parent);
    let out = Command::new("svnadmin")
        .args(["load", "--quiet"])
        .arg(fresh)
        .stdin(std::fs::File::open(dump).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A repository with 5 revisions under `parent`, made through `file://`.
fn svn_repo_with_5_revisions(parent: &Path, name: &str) -> PathBuf {
    let repo = parent.join(name);
    let wc = parent.join(format!("{name}-wc"));
    svn(&["svnadmin", "create", repo.to_str().unwrap()], parent);
    let url = format!("file://{}", repo.display());
    svn(
        &["svn", "checkout", "-q", &url, wc.to_str().unwrap()],
        parent,
    );
    for rev in 1..=5 {
        std::fs::write(
            wc.join(format!("file{rev}.txt")),
            format!("new in r{rev}\n"),
        )
        .unwrap();
        std::fs::write(
            wc.join("log.txt"),
            format!("edited in r{rev}\n").repeat(rev),
        )
        .unwrap();
        if rev == 1 {
            svn(&["svn", "add", "-q", "log.txt"], &wc);
        }
        svn(&["svn", "add", "-q", &format!("file{rev}.txt")], &wc);
        svn(&["svn", "commit", "-q", "-m", &format!("r{rev}")], &wc);
    }
    repo
}

#[test]
fn subversion_dump_loads_into_a_fresh_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let repos = tmp.path().join("repos");
    std::fs::create_dir(&repos).unwrap();
    let one = svn_repo_with_5_revisions(&repos, "alpha");
    svn_repo_with_5_revisions(&repos, "beta");
    // Working copies and other dirs under the directory are not repositories.
    std::fs::create_dir(repos.join("not-a-repo")).unwrap();

    let single = sources(
        "svn",
        &format!("kind: subversion\nrepository: {}\n", one.display()),
    );
    assert_eq!(single.len(), 1);
    assert_eq!(single[0].name(), "svn");
    let all = sources(
        "svn",
        &format!("kind: subversion_dir\ndirectory: {}\n", repos.display()),
    );
    let names: Vec<_> = all.iter().map(DumpSource::name).collect();
    assert_eq!(names, ["svn.alpha", "svn.beta"]);

    for source in &all {
        let repo = repos.join(source.name().trim_start_matches("svn."));
        let file = tmp.path().join(format!("{}.dump", source.name()));
        dump_to(source, &file).unwrap();
        let fresh = tmp.path().join(format!("{}-loaded", source.name()));
        svn_load(&file, &fresh);
        assert_eq!(svnlook(&["youngest"], &fresh), b"5\n");
        assert_eq!(svnlook(&["youngest"], &repo), b"5\n");
        for rev in ["1", "3", "5"] {
            for path in ["log.txt", "file1.txt"] {
                assert_eq!(
                    svnlook(&["cat", "-r", rev, path], &fresh),
                    svnlook(&["cat", "-r", rev, path], &repo),
                    "{path}@{rev}"
                );
            }
        }
        assert_eq!(
            svnlook(&["tree", "-r", "5"], &fresh),
            svnlook(&["tree", "-r", "5"], &repo)
        );
    }

    // A repository that is gone: svnadmin's failure, with its words.
    let gone = sources(
        "svn",
        &format!(
            "kind: subversion\nrepository: {}\n",
            tmp.path().join("gone").display()
        ),
    );
    let err = dump_to(&gone[0], &tmp.path().join("gone.dump")).unwrap_err();
    assert_failed(err, "svnadmin", "gone");

    // A directory without repositories is an error, not an empty success.
    let err = dump_sources_from_yaml(
        "svn",
        &format!(
            "kind: subversion_dir\ndirectory: {}\n",
            repos.join("not-a-repo").display()
        ),
        "test.yaml",
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("no Subversion repository"),
        "{err}"
    );

    // A stream read only in part, then dropped, leaves no process behind.
    let mut stream = all[0].open().unwrap();
    let mut head = [0u8; 16];
    stream.read_exact(&mut head).unwrap();
    assert!(head.starts_with(b"SVN-fs-dump"));
    drop(stream);
}

#[test]
fn a_missing_tool_is_a_usage_error_naming_it() {
    let err = dump_sources_from_yaml(
        "j",
        "kind: subversion\nrepository: /r\nsvnadmin: /nonexistent/svnadmin\n",
        "test.yaml",
    )
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/svnadmin"), "{err}");
    assert_eq!(
        lafs_backup::exit_code(&anyhow::Error::from(err)),
        2,
        "a usage error"
    );
}

// ------------------------------------------------------------ dump jobs on the grid

/// Small chunks, so that a dump of a few hundred KB is many chunks.
const CHUNKING: &str = "chunking:\n  min_size: 4096\n  avg_size: 16384\n  max_size: 65536\n";

/// A config with dump jobs against the shared test grid.
struct Job {
    tmp: tempfile::TempDir,
    config: PathBuf,
}

impl Job {
    fn new(jobs: &str) -> Job {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("cfg.yaml");
        let s = Job { tmp, config };
        s.write(jobs);
        s
    }

    fn write(&self, jobs: &str) {
        std::fs::write(
            &self.config,
            format!(
                "source:\n  entry_cache:\n    path: '{}'\n\
                 destination:\n  url: '{}/uri'\n{}{CHUNKING}\
                 monitor:\n  prometheus_textfile: '{}'\njobs:\n{jobs}",
                self.tmp.path().join("cache.sqlite").display(),
                crate::common::gateway_url(),
                crate::common::QUICK_RETRY,
                self.textfile().display(),
            ),
        )
        .unwrap();
    }

    fn textfile(&self) -> PathBuf {
        self.tmp.path().join("lafs.prom")
    }

    fn lafs(&self) -> crate::common::Lafs {
        crate::common::lafs().arg("-c").arg(&self.config)
    }

    /// `--json backup ARGS` exiting `code`: the summary lines by name.
    fn backup(&self, args: &[&str], code: i32) -> (Run, BTreeMap<String, Value>) {
        self.backup_by(self.lafs(), args, code)
    }

    /// [`Job::backup`] through `lafs` (with its environment).
    fn backup_by(
        &self,
        lafs: crate::common::Lafs,
        args: &[&str],
        code: i32,
    ) -> (Run, BTreeMap<String, Value>) {
        let run = lafs
            .args(["--json", "backup"])
            .args(args)
            .caps_on_stdout()
            .code(code);
        let by_name = run
            .of_type("summary")
            .into_iter()
            .map(|v| (v["name"].as_str().unwrap().to_owned(), v))
            .collect();
        (run, by_name)
    }

    /// The backup names `list` shows, sorted, with repeats.
    fn listed(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .lafs()
            .args(["--json", "list"])
            .caps_on_stdout()
            .ok()
            .of_type("backup")
            .iter()
            .map(|b| b["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    }

    /// `cat SELECTOR` into a file of the temp dir; its path.
    fn cat(&self, selector: &str) -> PathBuf {
        let out = self.lafs().args(["cat", selector]).output();
        assert!(
            out.status.success(),
            "cat {selector}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let file = self.tmp.path().join(format!("{selector}.cat"));
        std::fs::write(&file, out.stdout).unwrap();
        file
    }
}

use crate::common::Run;
use serde_json::Value;
use std::collections::BTreeMap;

fn bytes(summary: &Value, key: &str) -> u64 {
    summary[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key}: {summary}"))
}

/// The second run's upload is under `ratio` of its dump.
fn assert_small_upload(summary: &Value, ratio: f64, min_chunks: u64) {
    assert!(bytes(summary, "chunks") >= min_chunks, "{summary}");
    let (up, total) = (
        bytes(summary, "bytes_uploaded"),
        bytes(summary, "bytes_total"),
    );
    assert!(
        (up as f64) < ratio * total as f64,
        "{up} of {total} bytes uploaded: {summary}"
    );
}

fn assert_absent(run: &Run, secret: &str) {
    assert!(!run.stdout.contains(secret), "stdout: {}", run.stdout);
    assert!(!run.stderr.contains(secret), "the secret is on stderr");
}

const PG_BIG: &str = "
CREATE TABLE events (id int PRIMARY KEY, kind text, body text);
INSERT INTO events SELECT i, 'k' || (i % 7), md5(i::text) || repeat('y', i % 23)
  FROM generate_series(1, 15000) AS i;
CREATE TABLE people (id int PRIMARY KEY, name text);
INSERT INTO people VALUES (1, 'Ada'), (2, 'Grace ''Amazing''');
";

const PG_BIG_QUERIES: [&str; 3] = [
    "SELECT count(*), sum(id), max(body) FROM events",
    "SELECT * FROM events WHERE id % 997 = 0 ORDER BY id",
    "SELECT * FROM people ORDER BY id",
];

fn pg_results(pg: &servers::Postgres, db: &str) -> Vec<String> {
    PG_BIG_QUERIES
        .iter()
        .map(|q| pg.psql(db, q, None))
        .collect()
}

/// A PostgreSQL job: one backup per database, named `<job>.<db>`; a
/// database that cannot be dumped fails the job (exit 1, its stderr tail,
/// nothing recorded for it) while the others are recorded; the hooks run
/// once; `--job pg` runs all of its names and not the other job's; rows
/// appended to one table upload under a third of the second dump; each
/// dump restores with `cat | psql` to the same query results; status and
/// the Prometheus textfile are per backup name; a `.pgpass` password
/// never shows, even at `--noise`.
#[test]
fn postgresql_job_one_backup_per_database() {
    let pg = servers::postgres();
    pg.psql("postgres", "CREATE DATABASE wire_pg_big", None);
    pg.psql("postgres", "CREATE DATABASE wire_pg_small", None);
    pg.psql("wire_pg_big", PG_BIG, None);
    pg.psql(
        "wire_pg_small",
        "CREATE TABLE t (x int); INSERT INTO t VALUES (42);",
        None,
    );
    let first_results = pg_results(pg, "wire_pg_big");

    let s = Job::new("");
    let hook_log = s.tmp.path().join("hooks.log");
    let secret = "pgpass-Secret-93kq";
    let pgpass = s.tmp.path().join("pgpass");
    std::fs::write(&pgpass, format!("*:*:*:*:{secret}\n")).unwrap();
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let jobs = |dbs: &str| {
        format!(
            "  - name: pg\n    kind: postgresql\n    databases: [{dbs}]\n{}\
             \n    hooks:\n      before: [[sh, -c, 'echo before >> {log}']]\n\
             \x20     finally: [[sh, -c, 'echo finally >> {log}']]\n\
             \x20 - name: other\n    kind: command\n    command: [echo, other]\n",
            pg.job_yaml()
                .lines()
                .map(|l| format!("    {l}"))
                .collect::<Vec<_>>()
                .join("\n"),
            log = hook_log.display()
        )
    };
    s.write(&jobs("wire_pg_big, wire_pg_missing, wire_pg_small"));
    let (run, first) = s.backup_by(
        s.lafs().env("PGPASSFILE", &pgpass),
        &["--noise", "--job", "pg"],
        1,
    );
    assert_absent(&run, secret);
    assert!(run.stderr.contains("wire_pg_missing"), "{}", run.stderr);
    assert!(
        run.stderr.contains("does not exist"),
        "the stderr tail: {}",
        run.stderr
    );
    assert!(first.contains_key("pg.wire_pg_big") && first.contains_key("pg.wire_pg_small"));
    assert_eq!(first["pg.wire_pg_big"]["job"], "pg");
    assert!(
        bytes(&first["pg.wire_pg_big"], "chunks") >= 30,
        "{}",
        first["pg.wire_pg_big"]
    );
    assert_eq!(s.listed(), ["pg.wire_pg_big", "pg.wire_pg_small"]);
    assert_eq!(
        std::fs::read_to_string(&hook_log).unwrap(),
        "before\nfinally\n"
    );

    // Per backup name: status (the failed one too) and the textfile.
    let status = s.lafs().args(["--json", "status"]).run();
    let names: Vec<_> = status
        .of_type("status")
        .iter()
        .map(|j| {
            (
                j["job"].as_str().unwrap().to_owned(),
                j["last_run"]["exit"].clone(),
            )
        })
        .collect();
    for (name, exit) in [
        ("pg.wire_pg_big", 0),
        ("pg.wire_pg_missing", 1),
        ("pg.wire_pg_small", 0),
    ] {
        assert!(
            names.contains(&(name.to_owned(), exit.into())),
            "{name}: {names:?}"
        );
    }
    assert!(!names.iter().any(|(n, _)| n == "pg"), "{names:?}");
    let metrics = std::fs::read_to_string(s.textfile())
        .unwrap_or_else(|e| panic!("{e}: {}", crate::common::redact(&run.stderr)));
    assert!(metrics.contains("pg.wire_pg_big"), "{metrics}");

    // Rows appended to one table, the missing database dropped: `--job pg`
    // runs all its names, never the other job.
    pg.psql(
        "wire_pg_big",
        "INSERT INTO events SELECT i, 'new', md5(i::text) FROM generate_series(15001, 15100) AS i",
        None,
    );
    s.write(&jobs("wire_pg_big, wire_pg_small"));
    let (run, second) = s.backup_by(
        s.lafs().env("PGPASSFILE", &pgpass),
        &["--noise", "--job", "pg"],
        0,
    );
    assert_absent(&run, secret);
    assert_eq!(
        second.keys().collect::<Vec<_>>(),
        ["pg.wire_pg_big", "pg.wire_pg_small"]
    );
    assert_small_upload(&second["pg.wire_pg_big"], 1.0 / 3.0, 30);
    assert_eq!(
        s.listed(),
        [
            "pg.wire_pg_big",
            "pg.wire_pg_big",
            "pg.wire_pg_small",
            "pg.wire_pg_small"
        ]
    );

    // `--job JOB.DB`: that database only; one the job lacks is exit 2.
    let (_, one) = s.backup(&["--job", "pg.wire_pg_small"], 0);
    assert_eq!(one.keys().collect::<Vec<_>>(), ["pg.wire_pg_small"]);
    let run = s
        .lafs()
        .args(["backup", "--job", "pg.wire_pg_nope"])
        .code(2);
    assert!(run.stderr.contains("wire_pg_nope"), "{}", run.stderr);
    assert_eq!(s.listed().len(), 5);

    // Each dump, `cat | psql` into a fresh database: the same results.
    for (selector, db, want) in [
        ("pg.wire_pg_big@1", "wire_pg_restored1", first_results),
        (
            "pg.wire_pg_big",
            "wire_pg_restored2",
            pg_results(pg, "wire_pg_big"),
        ),
    ] {
        let dump = s.cat(selector);
        pg.psql("postgres", &format!("CREATE DATABASE {db}"), None);
        pg.psql(db, "", Some(&dump));
        assert_eq!(pg_results(pg, db), want, "{selector}");
    }
    let small = s.cat("pg.wire_pg_small");
    pg.psql("postgres", "CREATE DATABASE wire_pg_restored3", None);
    pg.psql("wire_pg_restored3", "", Some(&small));
    assert_eq!(
        pg.psql("wire_pg_restored3", "SELECT x FROM t", None),
        "42\n"
    );
}

const MY_BIG: &str = "
CREATE TABLE events (id INT PRIMARY KEY, kind VARCHAR(10), body TEXT) ENGINE=InnoDB;
INSERT INTO events SELECT seq, CONCAT('k', seq % 7), CONCAT(MD5(seq), REPEAT('y', seq % 23))
  FROM seq_1_to_15000;
";

const MY_BIG_QUERIES: [&str; 2] = [
    "SELECT COUNT(*), SUM(id), MAX(body) FROM events",
    "SELECT * FROM events WHERE id % 997 = 0 ORDER BY id",
];

fn my_results(my: &servers::Mariadb, db: &str) -> Vec<String> {
    MY_BIG_QUERIES
        .iter()
        .map(|q| my.sql(Some(db), q, None))
        .collect()
}

/// A MariaDB job with an option file: appended rows upload under a third
/// of the second dump; both dumps restore with `cat | mariadb`; the
/// option file's password never shows, even at `--noise`.
#[test]
fn mariadb_job_one_backup_per_database() {
    let my = servers::mariadb();
    let secret = "Wire-pw-never-shown-4z";
    my.sql(
        None,
        "CREATE DATABASE wire_my_big; CREATE DATABASE wire_my_small;",
        None,
    );
    my.sql(Some("wire_my_big"), MY_BIG, None);
    my.sql(
        Some("wire_my_small"),
        "CREATE TABLE t (x INT); INSERT INTO t VALUES (7);",
        None,
    );
    let first_results = my_results(my, "wire_my_big");

    let s = Job::new("");
    let options = dump_user(my, s.tmp.path(), "wirer", secret);
    s.write(&format!(
        "  - name: my\n    kind: mysql\n    databases: [wire_my_big, wire_my_small]\n\
         \x20   socket: {}\n    defaults_extra_file: {}\n",
        my.socket().display(),
        options.display()
    ));
    let (run, first) = s.backup(&["--noise"], 0);
    assert_absent(&run, secret);
    assert!(
        bytes(&first["my.wire_my_big"], "chunks") >= 30,
        "{}",
        first["my.wire_my_big"]
    );
    assert!(first.contains_key("my.wire_my_small"));

    my.sql(
        Some("wire_my_big"),
        "INSERT INTO events SELECT seq, 'new', MD5(seq) FROM seq_15001_to_15100",
        None,
    );
    let (run, second) = s.backup(&["--noise", "--job", "my"], 0);
    assert_absent(&run, secret);
    assert_small_upload(&second["my.wire_my_big"], 1.0 / 3.0, 30);

    for (selector, db, want) in [
        ("my.wire_my_big@1", "wire_my_restored1", first_results),
        (
            "my.wire_my_big",
            "wire_my_restored2",
            my_results(my, "wire_my_big"),
        ),
    ] {
        let dump = s.cat(selector);
        my.sql(None, &format!("CREATE DATABASE {db}"), None);
        my.sql(Some(db), "", Some(&dump));
        assert_eq!(my_results(my, db), want, "{selector}");
    }
}

/// A SQLite job while a thread writes to the database: the backup's
/// `cat` is a database that passes `integrity_check`, with no torn
/// transaction.
#[test]
fn sqlite_job_written_to_during_the_backup() {
    let s = Job::new("");
    let db = s.tmp.path().join("live.db");
    let live = LiveSqlite::start(&db, "wal", 5000, 20);
    live.wait_for(3);
    s.write(&format!(
        "  - name: app\n    kind: sqlite\n    path: {}\n",
        db.display()
    ));
    let before = live.written();
    let (_, first) = s.backup(&[], 0);
    let during = live.written() - before;
    live.stop();
    assert!(during > 0, "the writer did not write during the backup");
    assert!(first.contains_key("app"), "{first:?}");
    assert_eq!(s.listed(), ["app"]);
    assert!(check_copy(&s.cat("app"), "the restored copy") >= 5000);
}

/// Commits `files` (name, content) in the working copy, one revision.
fn svn_commit(wc: &Path, files: &[(String, Vec<u8>)], message: &str) {
    for (name, content) in files {
        let path = wc.join(name);
        let new = !path.exists();
        std::fs::write(&path, content).unwrap();
        if new {
            svn(&["svn", "add", "-q", name], wc);
        }
    }
    svn(&["svn", "commit", "-q", "-m", message], wc);
}

/// A `subversion_dir` job: one backup per repository; 5 revisions, then
/// 2 more: the second run uploads well under half its bytes; `svnadmin
/// load` of the `cat` gives the same youngest revision and file contents;
/// `forget` keeps the job's `retention` per repository.
#[test]
fn subversion_dir_job_one_backup_per_repository() {
    let s = Job::new("");
    let repos = s.tmp.path().join("repos");
    std::fs::create_dir(&repos).unwrap();
    let mut wcs = Vec::new();
    for (n, name) in ["alpha", "beta"].into_iter().enumerate() {
        let repo = repos.join(name);
        let wc = s.tmp.path().join(format!("{name}-wc"));
        svn(
            &["svnadmin", "create", repo.to_str().unwrap()],
            s.tmp.path(),
        );
        let url = format!("file://{}", repo.display());
        svn(
            &["svn", "checkout", "-q", &url, wc.to_str().unwrap()],
            s.tmp.path(),
        );
        for rev in 1..=5u64 {
            let big = crate::common::pseudo_random_bytes(200_000, 100 * n as u64 + rev);
            svn_commit(
                &wc,
                &[
                    (format!("big{rev}.bin"), big),
                    (
                        "log.txt".into(),
                        format!("r{rev}\n").repeat(rev as usize).into(),
                    ),
                ],
                &format!("r{rev}"),
            );
        }
        wcs.push((repo, wc));
    }
    s.write(&format!(
        "  - name: svn\n    kind: subversion_dir\n    directory: {}\n\
         \x20   retention:\n      keep: {{last: 1}}\n",
        repos.display()
    ));
    let (_, first) = s.backup(&[], 0);
    assert_eq!(first.keys().collect::<Vec<_>>(), ["svn.alpha", "svn.beta"]);
    assert_eq!(s.listed(), ["svn.alpha", "svn.beta"]);

    let (alpha, wc) = &wcs[0];
    for rev in 6..=7u64 {
        svn_commit(
            wc,
            &[
                (
                    format!("new{rev}.bin"),
                    crate::common::pseudo_random_bytes(20_000, rev),
                ),
                (
                    "log.txt".into(),
                    format!("r{rev}\n").repeat(rev as usize).into(),
                ),
            ],
            &format!("r{rev}"),
        );
    }
    let (_, second) = s.backup(&["--job", "svn"], 0);
    assert_small_upload(&second["svn.alpha"], 0.3, 30);
    assert_eq!(
        bytes(&second["svn.beta"], "bytes_uploaded"),
        0,
        "{}",
        second["svn.beta"]
    );

    let dump = s.cat("svn.alpha");
    let fresh = s.tmp.path().join("alpha-loaded");
    svn_load(&dump, &fresh);
    assert_eq!(svnlook(&["youngest"], &fresh), b"7\n");
    // The job's own retention applies to each of its backup names.
    assert_eq!(
        s.listed(),
        ["svn.alpha", "svn.alpha", "svn.beta", "svn.beta"]
    );
    s.lafs().arg("forget").ok();
    assert_eq!(s.listed(), ["svn.alpha", "svn.beta"]);
    for (rev, path) in [
        ("7", "log.txt"),
        ("7", "new7.bin"),
        ("3", "big3.bin"),
        ("2", "log.txt"),
    ] {
        assert!(
            svnlook(&["cat", "-r", rev, path], &fresh) == svnlook(&["cat", "-r", rev, path], alpha),
            "{path}@{rev}"
        );
    }
}

/// A dump tool that does not exist: exit 2 naming it, nothing run or
/// recorded; a listing that fails: the job fails (exit 1) with the tool's
/// words, the other jobs still run.
#[test]
fn dump_jobs_missing_tool_and_failed_listing() {
    let pg = servers::postgres();
    let s = Job::new(
        "  - name: svn\n    kind: subversion\n    repository: /r\n    svnadmin: /no/such/svnadmin\n",
    );
    let run = s.lafs().arg("backup").code(2);
    assert!(run.stderr.contains("/no/such/svnadmin"), "{}", run.stderr);
    assert!(s.listed().is_empty());

    let nowhere = s.tmp.path().join("no-server");
    std::fs::create_dir(&nowhere).unwrap();
    s.write(&format!(
        "  - name: pg\n    kind: postgresql\n    host: {}\n    psql: {}\n    pg_dump: {}\n\
         \x20 - name: other\n    kind: command\n    command: [echo, other]\n",
        nowhere.display(),
        pg.tool("psql").display(),
        pg.tool("pg_dump").display()
    ));
    let (run, done) = s.backup(&[], 1);
    assert!(run.stderr.contains("job pg"), "{}", run.stderr);
    assert!(run.stderr.contains("psql failed"), "{}", run.stderr);
    assert!(
        run.stderr.contains("no-server"),
        "the tool's words: {}",
        run.stderr
    );
    assert_eq!(done.keys().collect::<Vec<_>>(), ["other"]);
    assert_eq!(s.listed(), ["other"]);
}
