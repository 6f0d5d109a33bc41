//! Database and repository dumps as named byte streams (`docs/dumps.md`).
//!
//! A dump job ([`crate::config::dumps::Dump`]) gives one or more
//! [`DumpSource`]s, each named `<job>.<database>` (or `<job>` when the job
//! dumps one thing). [`DumpSource::open`] starts the dump and gives a
//! [`DumpStream`] to read; [`DumpStream::finish`] then says whether the dump
//! succeeded. The rule the stream backup keeps: *failure is never success*.
//! A dump program that exits non-zero or dies by a signal is a failure, with
//! the last lines it wrote to stderr, even when its output looked complete.
//!
//! Programs run without a shell, with stdin from `/dev/null` and never with
//! a password on the command line: PostgreSQL tools get `-w` (never prompt;
//! `.pgpass`/`PGPASSFILE` supply the password), MySQL tools read an option
//! file (`--defaults-extra-file`).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::ConfigError;
use crate::config::dumps::{self, Connection, Databases, Dump, Mysql, Postgresql};
use crate::exit::UsageError;

/// How many of a failed program's last stderr lines are reported.
pub(crate) const STDERR_TAIL_LINES: usize = 20;

/// Longest stderr line kept (bytes); the rest is cut, so a program that
/// writes one endless line cannot grow memory.
const STDERR_LINE_MAX: usize = 1000;

/// How long a SQLite copy waits for a writer's lock before it fails.
const SQLITE_BUSY_WAIT: Duration = Duration::from_secs(60);

/// MySQL/MariaDB schemas that `databases: each` leaves out: the server's
/// own, rebuilt by the server or dumped by `databases: all`.
const MYSQL_SYSTEM: [&str; 4] = ["information_schema", "performance_schema", "sys", "mysql"];

/// Why a dump could not be listed, started or completed.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// The dump job's options are invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A program the dump needs is missing (a usage error, exit 2: the
    /// source is the crate's usage error, which `exit::code_for` finds).
    #[error("{0}")]
    Usage(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A program ran and failed: non-zero exit or killed by a signal.
    #[error("{name}: {program} failed ({status}){}", tail(stderr))]
    Failed {
        /// The backup name (or job name, when listing) it ran for.
        name: String,
        /// The program.
        program: String,
        /// `exit code N` or `killed by signal S`.
        status: String,
        /// Its last stderr lines (at most 20).
        stderr: Vec<String>,
    },
    /// A program could not be started, or its pipes failed.
    #[error("{name}: {what}: {source}")]
    Io {
        /// The backup or job name.
        name: String,
        /// What was being done.
        what: String,
        /// The error.
        source: io::Error,
    },
    /// SQLite could not copy the database.
    #[error("{name}: cannot copy the SQLite database {}: {source}", path.display())]
    Sqlite {
        /// The backup name.
        name: String,
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// Something the dump found makes a bad backup name or an empty job.
    #[error("{0}")]
    Invalid(String),
}

fn tail(lines: &[String]) -> String {
    if lines.is_empty() {
        return "; it wrote nothing to stderr".to_owned();
    }
    let mut out = "; the end of its stderr:".to_owned();
    for line in lines {
        out.push_str("\n    ");
        out.push_str(line);
    }
    out
}

/// One named stream of a dump job: how to produce it.
#[derive(Debug, Clone, PartialEq)]
pub struct DumpSource {
    name: String,
    how: How,
}

#[derive(Debug, Clone, PartialEq)]
enum How {
    /// A program whose stdout is the stream.
    Command(Vec<OsString>),
    /// A SQLite database copied through the backup API.
    Sqlite(PathBuf),
}

impl DumpSource {
    /// The backup name: `<job>.<database>`, or `<job>` for a job that dumps
    /// one thing.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The program and arguments that produce the stream (none for SQLite).
    /// Never holds a password: the tools read theirs from their own files.
    pub fn argv(&self) -> Option<&[OsString]> {
        match &self.how {
            How::Command(argv) => Some(argv),
            How::Sqlite(_) => None,
        }
    }

    /// What the recovery catalog and result targets name as the backup's
    /// source: the program and its arguments (never a password), or the
    /// SQLite database's path.
    pub fn describe(&self) -> String {
        match &self.how {
            How::Command(argv) => argv
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            How::Sqlite(path) => format!("sqlite {}", path.display()),
        }
    }

    /// Starts the dump. Read the stream to its end, then call
    /// [`DumpStream::finish`]: only `Ok` from it means the bytes are a
    /// complete dump.
    pub fn open(&self) -> Result<DumpStream, DumpError> {
        match &self.how {
            How::Command(argv) => {
                let run = Run::spawn(&self.name, argv)?;
                Ok(DumpStream {
                    inner: Inner::Command(run),
                })
            }
            How::Sqlite(path) => sqlite_copy(&self.name, path),
        }
    }
}

/// The bytes of one dump, as they are produced.
pub struct DumpStream {
    inner: Inner,
}

enum Inner {
    Command(Run),
    /// The consistent copy, read back; the temp file goes when this drops.
    Copy {
        file: File,
        _temp: tempfile::NamedTempFile,
    },
}

impl Read for DumpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Command(run) => {
                let n = match &mut run.stdout {
                    Some(out) => out.read(buf)?,
                    None => 0,
                };
                run.eof |= n == 0 && !buf.is_empty();
                Ok(n)
            }
            Inner::Copy { file, .. } => file.read(buf),
        }
    }
}

impl DumpStream {
    /// Waits for the dump to end and says whether it succeeded. Call it
    /// after reading to the end; called earlier, the dump is a failure and
    /// its program is killed.
    pub fn finish(self) -> Result<(), DumpError> {
        match self.inner {
            Inner::Command(run) => run.finish(),
            Inner::Copy { .. } => Ok(()),
        }
    }
}

/// A running dump program: stdout is the stream, stderr's last lines are
/// kept by a thread for the report.
struct Run {
    name: String,
    program: String,
    child: Option<Child>,
    stdout: Option<ChildStdout>,
    /// Whether a read met the end of stdout: only then may `finish` wait.
    eof: bool,
    stderr: Option<JoinHandle<Vec<String>>>,
}

impl Run {
    fn spawn(name: &str, argv: &[OsString]) -> Result<Run, DumpError> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| DumpError::Invalid(format!("{name}: an empty dump command")))?;
        let program_shown = program.to_string_lossy().into_owned();
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| DumpError::Io {
                name: name.to_owned(),
                what: format!("cannot start {program_shown}"),
                source,
            })?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take().map(|err| {
            std::thread::spawn(move || {
                let mut lines = VecDeque::with_capacity(STDERR_TAIL_LINES);
                let mut reader = BufReader::new(err);
                let mut line = Vec::new();
                // Reads to EOF so the program never blocks on a full pipe.
                while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                    if lines.len() == STDERR_TAIL_LINES {
                        lines.pop_front();
                    }
                    line.truncate(STDERR_LINE_MAX);
                    // A dumped database may hold caps (a catalog); a
                    // tool may quote its data in an error: never shown.
                    let text = crate::tahoe::redact(&String::from_utf8_lossy(&line));
                    lines.push_back(text.trim_end().to_owned());
                    line.clear();
                }
                lines.into_iter().collect()
            })
        });
        Ok(Run {
            name: name.to_owned(),
            program: program_shown,
            child: Some(child),
            stdout,
            eof: false,
            stderr,
        })
    }

    /// Waits for the program; its status and stderr tail decide.
    fn finish(mut self) -> Result<(), DumpError> {
        if !self.eof {
            // The reader gave up (or never read): the program may be blocked
            // on anything, so it is stopped, not waited for (Drop kills it).
            return Err(DumpError::Invalid(format!(
                "{}: the output of {} was not read to its end",
                self.name, self.program
            )));
        }
        drop(self.stdout.take());
        let status = match self.child.take() {
            Some(mut child) => child.wait().map_err(|source| DumpError::Io {
                name: self.name.clone(),
                what: format!("waiting for {}", self.program),
                source,
            })?,
            None => return Ok(()),
        };
        let stderr = self
            .stderr
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        check_status(&self.name, &self.program, status, stderr)
    }
}

impl Drop for Run {
    // A stream dropped without `finish` (an upload that failed) must not
    // leave the dump running or a zombie behind.
    fn drop(&mut self) {
        drop(self.stdout.take());
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn check_status(
    name: &str,
    program: &str,
    status: ExitStatus,
    stderr: Vec<String>,
) -> Result<(), DumpError> {
    use std::os::unix::process::ExitStatusExt;
    if status.success() {
        return Ok(());
    }
    let status = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    };
    Err(DumpError::Failed {
        name: name.to_owned(),
        program: program.to_owned(),
        status,
        stderr,
    })
}

/// Runs a listing command to its end and gives its stdout's lines.
fn list_lines(job: &str, argv: &[OsString]) -> Result<Vec<String>, DumpError> {
    let mut run = Run::spawn(job, argv)?;
    let mut out = Vec::new();
    if let Some(stdout) = run.stdout.as_mut() {
        stdout
            .read_to_end(&mut out)
            .map_err(|source| DumpError::Io {
                name: job.to_owned(),
                what: format!("reading the output of {}", run.program),
                source,
            })?;
    }
    run.eof = true;
    run.finish()?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect())
}

/// Parses a dump job's options from YAML (`kind` plus its keys) and lists
/// its sources, as the crate's `sources` does; errors name the file as `file`.
pub fn dump_sources_from_yaml(
    job: &str,
    yaml: &str,
    file: &str,
) -> Result<Vec<DumpSource>, DumpError> {
    let dump = dumps::from_yaml(yaml, file)?;
    sources(job, &dump)
}

/// The streams a dump job gives, in a stable order. Lists the server's
/// databases (`databases: each`) or the directory's repositories
/// (`subversion_dir`) now, so a database created since the last run is
/// backed up by this one.
pub(crate) fn sources(job: &str, dump: &Dump) -> Result<Vec<DumpSource>, DumpError> {
    let one = |how| {
        vec![DumpSource {
            name: job.to_owned(),
            how,
        }]
    };
    match dump {
        Dump::Postgresql(pg) => postgresql(job, pg),
        Dump::Mysql(my) => mysql(job, my),
        Dump::Sqlite(sqlite) => Ok(one(How::Sqlite(sqlite.path.clone()))),
        Dump::Subversion(svn) => {
            need_tool(job, &svn.svnadmin, "svnadmin")?;
            Ok(one(How::Command(svnadmin_dump(
                &svn.svnadmin,
                &svn.repository,
            ))))
        }
        Dump::SubversionDir(dir) => {
            need_tool(job, &dir.svnadmin, "svnadmin")?;
            repositories(job, &dir.directory)?
                .into_iter()
                .map(|(repo, path)| {
                    Ok(DumpSource {
                        name: named(job, &repo)?,
                        how: How::Command(svnadmin_dump(&dir.svnadmin, &path)),
                    })
                })
                .collect()
        }
    }
}

/// A missing program is a usage error naming it and its key.
fn need_tool(job: &str, program: &str, key: &str) -> Result<(), DumpError> {
    if dumps::resolves(program) {
        return Ok(());
    }
    Err(DumpError::Usage(Box::new(UsageError(format!(
        "job {job}: the {key} program {program:?} is not an executable file (nor found in PATH); \
         install it or set {key} to its path"
    )))))
}

/// `<job>.<what>`, refused when `what` would make a bad backup name.
fn named(job: &str, what: &str) -> Result<String, DumpError> {
    if what.is_empty() || what.contains('/') || what.chars().any(char::is_control) {
        return Err(DumpError::Invalid(format!(
            "job {job}: {what:?} cannot be part of a backup name (empty, '/' or a control \
             character)"
        )));
    }
    Ok(format!("{job}.{what}"))
}

fn arg(text: impl Into<OsString>) -> OsString {
    text.into()
}

fn pg_connection(c: &Connection) -> Vec<OsString> {
    let mut out = vec![arg("-w")];
    if let Some(host) = &c.host {
        out.push(arg(format!("--host={host}")));
    }
    if let Some(port) = c.port {
        out.push(arg(format!("--port={port}")));
    }
    if let Some(user) = &c.user {
        out.push(arg(format!("--username={user}")));
    }
    out
}

/// `--dbname=` with a conninfo string, so a name with `=` or a leading `-`
/// stays a database name.
fn pg_dbname(db: &str) -> OsString {
    let quoted = db.replace('\\', "\\\\").replace('\'', "\\'");
    arg(format!("--dbname=dbname='{quoted}'"))
}

fn postgresql(job: &str, pg: &Postgresql) -> Result<Vec<DumpSource>, DumpError> {
    let conn = pg_connection(&pg.connection);
    let extra = pg.extra_args.iter().map(arg);
    if pg.databases == Databases::All {
        need_tool(job, &pg.pg_dumpall, "pg_dumpall")?;
        let mut argv = vec![arg(&pg.pg_dumpall)];
        argv.extend(conn);
        argv.extend(extra);
        return Ok(vec![DumpSource {
            name: job.to_owned(),
            how: How::Command(argv),
        }]);
    }
    need_tool(job, &pg.pg_dump, "pg_dump")?;
    let names = match &pg.databases {
        Databases::Named(names) => names.clone(),
        _ => {
            need_tool(job, &pg.psql, "psql")?;
            let mut argv = vec![arg(&pg.psql), arg("-X"), arg("-A"), arg("-t"), arg("-q")];
            argv.extend(conn.iter().cloned());
            argv.push(pg_dbname("postgres"));
            argv.push(arg("--command=SELECT datname FROM pg_database \
                 WHERE NOT datistemplate AND datallowconn ORDER BY datname"));
            list_lines(job, &argv)?
        }
    };
    let mut out = Vec::new();
    for db in names.iter().filter(|db| !pg.exclude.contains(db)) {
        let mut argv = vec![arg(&pg.pg_dump)];
        argv.extend(conn.iter().cloned());
        argv.extend(extra.clone());
        argv.push(pg_dbname(db));
        out.push(DumpSource {
            name: named(job, db)?,
            how: How::Command(argv),
        });
    }
    nonempty(job, out)
}

fn mysql_connection(my: &Mysql) -> Vec<OsString> {
    let mut out = Vec::new();
    // The server reads this option only as the first argument.
    if let Some(file) = &my.defaults_extra_file {
        let mut a = arg("--defaults-extra-file=");
        a.push(file);
        out.push(a);
    }
    let c = &my.connection;
    if let Some(host) = &c.host {
        out.push(arg(format!("--host={host}")));
    }
    if let Some(port) = c.port {
        out.push(arg(format!("--port={port}")));
    }
    if let Some(user) = &c.user {
        out.push(arg(format!("--user={user}")));
    }
    if let Some(socket) = &c.socket {
        let mut a = arg("--socket=");
        a.push(socket);
        out.push(a);
    }
    out
}

fn mysql(job: &str, my: &Mysql) -> Result<Vec<DumpSource>, DumpError> {
    need_tool(job, &my.mysqldump, "mysqldump")?;
    let conn = mysql_connection(my);
    let dump = |last: OsString| {
        let mut argv = vec![arg(&my.mysqldump)];
        argv.extend(conn.iter().cloned());
        // One consistent snapshot of InnoDB tables without locking them.
        argv.push(arg("--single-transaction"));
        argv.extend(my.extra_args.iter().map(arg));
        argv.push(last);
        argv
    };
    if my.databases == Databases::All {
        return Ok(vec![DumpSource {
            name: job.to_owned(),
            how: How::Command(dump(arg("--all-databases"))),
        }]);
    }
    let names = match &my.databases {
        Databases::Named(names) => names.clone(),
        _ => {
            need_tool(job, &my.mysql, "mysql")?;
            let mut argv = vec![arg(&my.mysql)];
            argv.extend(conn.iter().cloned());
            argv.extend([
                arg("--batch"),
                arg("--skip-column-names"),
                arg("--execute=SHOW DATABASES"),
            ]);
            list_lines(job, &argv)?
                .into_iter()
                .filter(|db| !MYSQL_SYSTEM.contains(&db.as_str()))
                .collect()
        }
    };
    let mut out = Vec::new();
    for db in names.iter().filter(|db| !my.exclude.contains(db)) {
        if db.starts_with('-') {
            return Err(DumpError::Invalid(format!(
                "job {job}: mysqldump cannot be given the database {db:?} (it starts with '-')"
            )));
        }
        out.push(DumpSource {
            name: named(job, db)?,
            how: How::Command(dump(arg(db))),
        });
    }
    nonempty(job, out)
}

/// A job that finds nothing to dump is an error, never an empty success.
fn nonempty(job: &str, sources: Vec<DumpSource>) -> Result<Vec<DumpSource>, DumpError> {
    if sources.is_empty() {
        return Err(DumpError::Invalid(format!(
            "job {job}: no database to dump (all excluded, or none on the server)"
        )));
    }
    Ok(sources)
}

fn svnadmin_dump(svnadmin: &str, repo: &Path) -> Vec<OsString> {
    // `--` keeps a repository path starting with '-' a path.
    vec![
        arg(svnadmin),
        arg("dump"),
        arg("--quiet"),
        arg("--"),
        repo.as_os_str().to_owned(),
    ]
}

/// The repositories directly under `dir`, by name: directories with a
/// `format` file and a `db` directory (what `svnadmin create` makes).
/// Other entries are skipped with a warning naming them.
fn repositories(job: &str, dir: &Path) -> Result<Vec<(String, PathBuf)>, DumpError> {
    let io = |what: String| {
        let name = job.to_owned();
        move |source| DumpError::Io { name, what, source }
    };
    let mut found = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(io(format!("cannot list {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(io(format!("cannot list {}", dir.display())))?;
        let path = entry.path();
        if !(path.join("format").is_file() && path.join("db").is_dir()) {
            tracing::warn!(
                "job {job}: {} is not a Subversion repository, skipped",
                path.display()
            );
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            return Err(DumpError::Invalid(format!(
                "job {job}: the repository {} has a name that is not UTF-8",
                path.display()
            )));
        };
        found.push((name, path));
    }
    found.sort();
    if found.is_empty() {
        return Err(DumpError::Invalid(format!(
            "job {job}: no Subversion repository under {}",
            dir.display()
        )));
    }
    Ok(found)
}

/// Copies a live SQLite database into a temp file through the backup API,
/// then serves that file. A raw copy of the file is not consistent: a
/// writer may change pages while it is read, and committed transactions
/// may still sit in the `-wal` file; the backup API copies one committed
/// state, WAL included. It copies in one step, holding a read lock for the
/// copy's duration, so writes never make it start over (writers wait on
/// their busy timeout in rollback-journal mode; in WAL mode they go on).
fn sqlite_copy(name: &str, path: &Path) -> Result<DumpStream, DumpError> {
    use rusqlite::backup::{Backup, StepResult};
    use rusqlite::{Connection, OpenFlags};
    let fail = |source| DumpError::Sqlite {
        name: name.to_owned(),
        path: path.to_owned(),
        source,
    };
    let io = |what: &str| {
        let name = name.to_owned();
        let what = what.to_owned();
        move |source| DumpError::Io { name, what, source }
    };
    // Read-only and never created: a mistyped path is an error, not an
    // empty database.
    let src = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(fail)?;
    src.busy_timeout(SQLITE_BUSY_WAIT).map_err(fail)?;
    let temp = tempfile::NamedTempFile::new().map_err(io("cannot create a temp file"))?;
    {
        let mut dst = Connection::open(temp.path()).map_err(fail)?;
        let backup = Backup::new(&src, &mut dst).map_err(fail)?;
        let deadline = Instant::now() + SQLITE_BUSY_WAIT;
        loop {
            match backup.step(-1).map_err(fail)? {
                StepResult::Done => break,
                StepResult::More => {}
                StepResult::Busy | StepResult::Locked if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => {
                    return Err(DumpError::Invalid(format!(
                        "{name}: the SQLite database {} stayed locked for {} s",
                        path.display(),
                        SQLITE_BUSY_WAIT.as_secs()
                    )));
                }
            }
        }
    }
    let file = File::open(temp.path()).map_err(io("cannot read the copy"))?;
    Ok(DumpStream {
        inner: Inner::Copy { file, _temp: temp },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(job: &str, yaml: &str) -> Result<Vec<DumpSource>, DumpError> {
        dump_sources_from_yaml(job, yaml, "t.yaml")
    }

    fn argv(s: &DumpSource) -> Vec<String> {
        s.argv()
            .unwrap()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn named_postgresql_databases_need_no_listing() {
        let got = parse(
            "pg",
            "kind: postgresql\ndatabases: [app, \"we'ird\"]\nexclude: [x]\nhost: /run/pg\n\
             port: 5433\nuser: u\nextra_args: [--no-owner]\npg_dump: /bin/true\n",
        )
        .unwrap();
        let names: Vec<_> = got.iter().map(DumpSource::name).collect();
        assert_eq!(names, ["pg.app", "pg.we'ird"]);
        assert_eq!(
            argv(&got[1]),
            [
                "/bin/true",
                "-w",
                "--host=/run/pg",
                "--port=5433",
                "--username=u",
                "--no-owner",
                "--dbname=dbname='we\\'ird'"
            ]
        );
    }

    #[test]
    fn all_is_one_stream_named_after_the_job() {
        let got = parse(
            "pg",
            "kind: postgresql\ndatabases: all\npg_dumpall: /bin/true\n",
        )
        .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name(), "pg");
        assert_eq!(argv(&got[0]), ["/bin/true", "-w"]);
        let got = parse(
            "my",
            "kind: mysql\ndatabases: all\nmysqldump: /bin/true\n\
             defaults_extra_file: /etc/my.cnf\nsocket: /s\n",
        )
        .unwrap();
        assert_eq!(
            argv(&got[0]),
            [
                "/bin/true",
                "--defaults-extra-file=/etc/my.cnf",
                "--socket=/s",
                "--single-transaction",
                "--all-databases"
            ]
        );
    }

    #[test]
    fn a_missing_tool_is_a_usage_error_naming_it() {
        let err = parse("pg", "kind: postgresql\npg_dump: /nonexistent/pg_dump\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("/nonexistent/pg_dump"), "{text}");
        let err = anyhow::Error::from(err);
        assert_eq!(crate::exit::code_for(&err), crate::exit::USAGE);
    }

    #[test]
    fn bad_names_are_refused() {
        assert!(named("j", "a/b").is_err());
        assert!(named("j", "").is_err());
        assert!(named("j", "a\nb").is_err());
        assert_eq!(named("j", "db").unwrap(), "j.db");
    }

    #[test]
    fn failure_reports_status_and_stderr_tail() {
        let sh = |script: &str| DumpSource {
            name: "j.db".into(),
            how: How::Command(vec![arg("sh"), arg("-c"), arg(script)]),
        };
        let mut stream = sh("echo data; for i in $(seq 1 30); do echo line$i >&2; done; exit 3")
            .open()
            .unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        assert_eq!(out, "data\n");
        let err = stream.finish().unwrap_err();
        let DumpError::Failed { status, stderr, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(status, "exit code 3");
        assert_eq!(stderr.len(), STDERR_TAIL_LINES);
        assert_eq!(stderr.last().map(String::as_str), Some("line30"));
        assert_eq!(stderr.first().map(String::as_str), Some("line11"));

        // Not read to its end: a failure, and the program does not linger.
        let stream = sh("echo data; exec sleep 600").open().unwrap();
        let err = stream.finish().unwrap_err().to_string();
        assert!(err.contains("not read to its end"), "{err}");

        let mut stream = sh("echo 'bad row URI:CHK:abc:def' >&2; exit 1")
            .open()
            .unwrap();
        std::io::copy(&mut stream, &mut std::io::sink()).unwrap();
        let err = stream.finish().unwrap_err().to_string();
        assert!(
            err.contains("bad row <cap #") && !err.contains("URI:"),
            "{err}"
        );

        let mut stream = sh("kill -9 $$").open().unwrap();
        std::io::copy(&mut stream, &mut std::io::sink()).unwrap();
        let err = stream.finish().unwrap_err().to_string();
        assert!(err.contains("killed by signal 9"), "{err}");

        let mut stream = sh("printf ok").open().unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        stream.finish().unwrap();
        assert_eq!(out, "ok");
    }
}
