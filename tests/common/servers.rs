//! Throwaway database servers for the dump tests: a PostgreSQL cluster and
//! a MariaDB server from the Debian packages (`postgresql`,
//! `mariadb-server`; `.ci/run` installs them), each listening only on a
//! unix socket in a temp dir, started once per test binary (tests share
//! them and use database names of their own) and stopped when the binary
//! exits (an `atexit` hook: statics are never dropped).
//!
//! A missing package panics with a message that says so: never a silent
//! skip.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

/// How long a server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

static POSTGRES: OnceLock<Postgres> = OnceLock::new();
static MARIADB: OnceLock<Mariadb> = OnceLock::new();
static AT_EXIT: Once = Once::new();

unsafe extern "C" {
    fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
}

extern "C" fn stop_all() {
    if let Some(pg) = POSTGRES.get() {
        pg.stop();
    }
    if let Some(my) = MARIADB.get() {
        my.stop();
    }
}

fn stop_at_exit() {
    AT_EXIT.call_once(|| {
        // SAFETY: registers a plain function; it only runs commands and
        // removes files, and touches statics that are set by then.
        let rc = unsafe { atexit(stop_all) };
        assert_eq!(
            rc, 0,
            "atexit failed: the test servers would outlive the tests"
        );
    });
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Runs a command and panics with its output unless it succeeds. Its
/// stdin is `/dev/null` unless the caller set one (`output()`'s default).
fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A temp dir that outlives the static it sits in: removed by `stop`.
fn server_dir(prefix: &str) -> PathBuf {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .unwrap()
        .keep()
}

/// A throwaway PostgreSQL cluster (Debian's `postgresql`), on a unix
/// socket only, trust authentication, superuser `postgres`.
pub(crate) struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
}

/// The shared cluster, started on first use.
pub(crate) fn postgres() -> &'static Postgres {
    POSTGRES.get_or_init(|| {
        stop_at_exit();
        Postgres::start()
    })
}

impl Postgres {
    fn start() -> Postgres {
        let mut bins: Vec<PathBuf> = glob::glob("/usr/lib/postgresql/*/bin/initdb")
            .unwrap()
            .filter_map(Result::ok)
            .filter_map(|p| p.parent().map(Path::to_path_buf))
            .collect();
        bins.sort_by_key(|p| {
            // The newest major version: 15 sorts after 9.
            p.iter()
                .nth(4)
                .and_then(|v| v.to_str()?.parse::<u32>().ok())
                .unwrap_or(0)
        });
        let bin = bins.pop().expect(
            "no /usr/lib/postgresql/*/bin/initdb: install Debian's postgresql package \
             (.ci/run does)",
        );
        let dir = server_dir("lafs-pg-");
        // initdb refuses to run as root: the cluster belongs to `postgres`,
        // which must reach the dir.
        if is_root() {
            let pg = nix::unistd::User::from_name("postgres")
                .unwrap()
                .expect("no postgres user: install Debian's postgresql package");
            nix::unistd::chown(&dir, Some(pg.uid), Some(pg.gid)).unwrap();
        }
        let pg = Postgres { bin, dir };
        run_ok(
            pg.as_owner(&pg.bin.join("initdb"))
                .args([
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                    "-D",
                ])
                .arg(pg.dir.join("data")),
        );
        let options = format!("-k {} -c listen_addresses= -c fsync=off", pg.dir.display());
        let started = Instant::now();
        run_ok(
            pg.as_owner(&pg.bin.join("pg_ctl"))
                .args(["-w", "-t"])
                .arg(START_TIMEOUT.as_secs().to_string())
                .arg("-D")
                .arg(pg.dir.join("data"))
                .arg("-l")
                .arg(pg.dir.join("log"))
                .arg("-o")
                .arg(options)
                .arg("start")
                // pg_ctl's server keeps our pipes open: give it none.
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        assert!(started.elapsed() < START_TIMEOUT);
        pg
    }

    /// A command run as the cluster's owner.
    fn as_owner(&self, program: &Path) -> Command {
        if is_root() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        }
    }

    fn stop(&self) {
        let _ = self
            .as_owner(&self.bin.join("pg_ctl"))
            .args(["-m", "immediate", "-D"])
            .arg(self.dir.join("data"))
            .arg("stop")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// A program of this cluster's version (`pg_dump`, `psql`, ...).
    pub(crate) fn tool(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    /// The connection keys of a `kind: postgresql` job for this cluster.
    pub(crate) fn job_yaml(&self) -> String {
        format!(
            "host: {}\nuser: postgres\npg_dump: {}\npg_dumpall: {}\npsql: {}\n",
            self.dir.display(),
            self.tool("pg_dump").display(),
            self.tool("pg_dumpall").display(),
            self.tool("psql").display()
        )
    }

    /// `psql` on `db`, stopping at the first error, `stdin` as the script
    /// (an SQL dump) when given, otherwise `sql`. Unaligned, tuples only.
    pub(crate) fn psql(&self, db: &str, sql: &str, stdin: Option<&Path>) -> String {
        let mut cmd = Command::new(self.tool("psql"));
        cmd.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
        ])
        .arg("-h")
        .arg(&self.dir)
        .arg("-d")
        .arg(db);
        match stdin {
            Some(file) => cmd.stdin(std::fs::File::open(file).unwrap()),
            None => cmd.arg("-c").arg(sql),
        };
        String::from_utf8(run_ok(&mut cmd).stdout).unwrap()
    }
}

/// A throwaway MariaDB server (Debian's `mariadb-server`), on a unix
/// socket only (`--skip-networking`), root without a password.
pub(crate) struct Mariadb {
    dir: PathBuf,
    server: Mutex<Option<Child>>,
}

/// The shared server, started on first use.
pub(crate) fn mariadb() -> &'static Mariadb {
    MARIADB.get_or_init(|| {
        stop_at_exit();
        Mariadb::start()
    })
}

impl Mariadb {
    fn start() -> Mariadb {
        let dir = server_dir("lafs-mariadb-");
        let data = dir.join("data");
        let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .unwrap()
            .map_or_else(|| "root".to_owned(), |u| u.name);
        run_ok(
            Command::new("mariadb-install-db")
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--user={user}"))
                .args(["--auth-root-authentication-method=normal", "--skip-test-db"]),
        );
        let server = Command::new("mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.join("sock").display()))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .arg(format!("--log-error={}", dir.join("log").display()))
            .arg(format!("--user={user}"))
            .args(["--skip-networking", "--innodb-flush-log-at-trx-commit=0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "cannot start mariadbd: install Debian's mariadb-server package (.ci/run does)",
            );
        let my = Mariadb {
            dir,
            server: Mutex::new(Some(server)),
        };
        let started = Instant::now();
        loop {
            let ping = my
                .client("mariadb-admin")
                .arg("ping")
                .stdin(Stdio::null())
                .output()
                .unwrap();
            if ping.status.success() {
                break;
            }
            let log = std::fs::read_to_string(my.dir.join("log")).unwrap_or_default();
            assert!(
                started.elapsed() < START_TIMEOUT,
                "mariadbd did not start in {START_TIMEOUT:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        my
    }

    fn stop(&self) {
        let Ok(mut server) = self.server.lock() else {
            return;
        };
        if let Some(mut child) = server.take() {
            // SIGTERM: a clean shutdown; then wait for it.
            let pid = nix::unistd::Pid::from_raw(child.id().try_into().unwrap_or(i32::MAX));
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// The socket file (`socket:` in a dump job).
    pub(crate) fn socket(&self) -> PathBuf {
        self.dir.join("sock")
    }

    /// A client program (`mariadb`, `mariadb-admin`) connected as root.
    fn client(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["-u", "root"]);
        cmd
    }

    /// Runs `sql` (or, when given, the script in `stdin`) in `db` (none:
    /// no default database); the output in batch form without headers.
    pub(crate) fn sql(&self, db: Option<&str>, sql: &str, stdin: Option<&Path>) -> String {
        let mut cmd = self.client("mariadb");
        cmd.args(["--batch", "--skip-column-names"]);
        if let Some(db) = db {
            cmd.arg(format!("--database={db}"));
        }
        match stdin {
            Some(file) => cmd.stdin(std::fs::File::open(file).unwrap()),
            None => cmd.arg("-e").arg(sql),
        };
        String::from_utf8(run_ok(&mut cmd).stdout).unwrap()
    }
}
