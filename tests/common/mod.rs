//! Helpers shared by the integration tests (`crate::common` in the one test
//! binary `tests/it/`, whose modules are the topics).
//!
//! The tests run against real local Tahoe-LAFS grids that `scripts/test`
//! starts (see docs/test-grid.md). Without them the helpers panic with a
//! message that says so: a test never skips silently.
//!
//! Every run of the `lafs-backup` binary goes through [`lafs`], the one
//! place that asserts the invariants of every run (no capability leaked,
//! no panic), so a test states only what is particular to it.

pub(crate) mod btrfs;
pub(crate) mod deep;
pub(crate) mod fake_gateway;
pub(crate) mod grid5;
pub(crate) mod history;
pub(crate) mod servers;

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

const NO_GRID: &str =
    "is not set: run the tests through scripts/test, which starts a local Tahoe grid; see README";

fn required_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
        _ => panic!("{name} {NO_GRID}"),
    }
}

/// Gateway URL of the shared fast grid (introducer + one gateway/storage
/// node, shares 1-of-1, foolscap), from `LAFS_TEST_GATEWAY`.
/// Form: `http://127.0.0.1:PORT`, without a trailing slash.
pub(crate) fn gateway_url() -> String {
    required_env("LAFS_TEST_GATEWAY")
        .trim_end_matches('/')
        .to_string()
}

/// Gateway URL of the shared 3-node grid (3 storage nodes + gateway, shares
/// 2-of-3, happy 3, HTTPS storage protocol), from `LAFS_TEST_GATEWAY_3N`.
/// Do not stop its nodes: tests that lose nodes use a [`PrivateGrid`].
pub(crate) fn gateway_url_3n() -> String {
    required_env("LAFS_TEST_GATEWAY_3N")
        .trim_end_matches('/')
        .to_string()
}

/// Directory of the shared fast grid (`LAFS_TEST_GRID_DIR`); its gateway
/// node dir is `grid_dir().join("gateway")`.
pub(crate) fn grid_dir() -> PathBuf {
    PathBuf::from(required_env("LAFS_TEST_GRID_DIR"))
}

/// The `lafs-backup` binary built by cargo for this test run.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_lafs-backup");

/// An HTTP agent for talking to a gateway directly in tests: 120 s overall
/// timeout per request, and 4xx/5xx returned as responses (not errors) so
/// tests can look at the status.
pub(crate) fn http_agent() -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(120)))
        .http_status_as_error(false)
        .build();
    ureq::Agent::new_with_config(config)
}

/// The gateway's `uploader.bytes_uploaded` counter (its statistics page):
/// on a grid of the test's own, what the test's runs uploaded.
pub(crate) fn bytes_uploaded(url: &str) -> u64 {
    let stats: Value =
        serde_json::from_slice(&http_get(&format!("{url}/statistics?t=json"))).unwrap();
    stats["counters"]["uploader.bytes_uploaded"]
        .as_u64()
        .unwrap_or(0)
}

/// `GET url` with `Accept: text/plain` (a 500 then carries a plain-text
/// traceback); returns the body, up to 1 GiB. Panics if the request
/// cannot be made; the status is not checked (see [`http_get_status`]).
pub(crate) fn http_get(url: &str) -> Vec<u8> {
    http_get_status(url).1
}

/// The children of the directory `cap` on the gateway `url`, sorted by
/// name: (name, node type, read-only cap, edge metadata).
pub(crate) fn dir_listing(url: &str, cap: &str) -> Vec<(String, String, String, Value)> {
    let text = http_get(&format!("{url}/uri/{}?t=json", cap.replace(':', "%3A")));
    let v: Value = serde_json::from_slice(&text).unwrap();
    let mut out: Vec<_> = v[1]["children"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, child)| {
            (
                name.clone(),
                child[0].as_str().unwrap().to_owned(),
                child[1]["ro_uri"].as_str().unwrap().to_owned(),
                child[1]["metadata"].clone(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Every non-literal object reachable from `cap` by following
/// directories, `cap` included (what `tahoe deep-check` walks).
pub(crate) fn reachable_objects(url: &str, cap: &str) -> std::collections::BTreeSet<String> {
    let mut all = std::collections::BTreeSet::from([cap.to_owned()]);
    for (_, kind, child, _) in dir_listing(url, cap) {
        if kind == "dirnode" {
            all.extend(reachable_objects(url, &child));
        } else {
            all.insert(child);
        }
    }
    all.retain(|c| !c.starts_with("URI:LIT:") && !c.starts_with("URI:DIR2-LIT:"));
    all
}

/// `check --leases` renews exactly the objects two backups reach (`o1`,
/// `o2`, as [`reachable_objects`] gives them) and no other.
pub(crate) fn assert_leases_renew(
    lafs: impl Fn() -> Lafs,
    o1: &std::collections::BTreeSet<String>,
    o2: &std::collections::BTreeSet<String>,
) {
    let run = lafs()
        .args(["--json", "check", "--leases"])
        .caps_on_stdout()
        .ok();
    let summary = &run.of_type("leases")[0];
    let all = o1.union(o2).count();
    assert_eq!(summary["objects"], all, "{summary}");
    assert_eq!(summary["renewed"], all, "{summary}");
}

/// `check --repair SELECTOR` (a deep check with repair, as `tahoe
/// deep-check --repair` walks the directories) reaches every object of a
/// backup (`objects`, as [`reachable_objects`] gives them) plus `literal`
/// literal entries, all healthy, and renews each object's lease.
pub(crate) fn assert_repair_reaches(
    lafs: impl Fn() -> Lafs,
    selector: &str,
    objects: &std::collections::BTreeSet<String>,
    literal: usize,
) {
    let run = lafs()
        .args(["--json", "check", "--repair", selector])
        .caps_on_stdout()
        .ok();
    let checked = &run.of_type("backup")[0];
    assert_eq!(checked["literal"], literal, "{checked}");
    assert_eq!(checked["objects"], objects.len() + literal, "{checked}");
    assert_eq!(checked["leases_renewed"], objects.len(), "{checked}");
    assert_eq!(checked["unhealthy"], 0, "{checked}");
}

/// `cleanup` of the first of two backups (root `r1`, objects `o1`) keeps
/// in the cache `cache` every object the second reaches (`o2`) and none
/// that only the first reached.
pub(crate) fn assert_cleanup_keeps_shared(
    lafs: impl Fn() -> Lafs,
    cache: &Path,
    r1: &str,
    o1: &std::collections::BTreeSet<String>,
    o2: &std::collections::BTreeSet<String>,
) {
    lafs().args(["cleanup", r1]).known_cap(r1).ok();
    let db = rusqlite::Connection::open(cache).unwrap();
    let known: std::collections::BTreeSet<String> = db
        .prepare("SELECT cap FROM objects")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let lost: Vec<&String> = o2.iter().filter(|c| !known.contains(*c)).collect();
    assert!(
        lost.is_empty(),
        "objects of the kept backup were forgotten: {}",
        lost.len()
    );
    assert!(
        o1.difference(o2).all(|c| !known.contains(c)),
        "an object only the forgotten backup reached is still known"
    );
}

/// `tar c` of `root`'s contents with `args`, as Debian's GNU tar writes it.
pub(crate) fn tar_c(root: &Path, args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("tar")
        .env("LC_ALL", "C")
        .arg("-c")
        .args(args)
        .arg("-C")
        .arg(root)
        .arg(".")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tar {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// [`http_get`], with the response's status.
pub(crate) fn http_get_status(url: &str) -> (u16, Vec<u8>) {
    let mut resp = http_agent()
        .get(url)
        .header("Accept", "text/plain")
        .call()
        .unwrap_or_else(|e| panic!("GET failed: {e}"));
    let body = resp
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .unwrap();
    (resp.status().as_u16(), body)
}

/// A new mutable directory on the gateway at `url` (`POST /uri?t=mkdir`):
/// the response body, trimmed (its write cap; the status is not checked).
pub(crate) fn mkdir_mutable(url: &str) -> String {
    let mut resp = http_agent()
        .post(format!("{url}/uri?t=mkdir"))
        .send_empty()
        .unwrap();
    resp.body_mut().read_to_string().unwrap().trim().to_owned()
}

/// Deterministic pseudo-random bytes (xorshift64*), so test data is not
/// compressible and reproducible from `seed`.
pub(crate) fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed ^ 0x9E37_79B9_7F4A_7C15;
    if x == 0 {
        x = 1;
    }
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A grid of the test's own, for tests that stop nodes or need a grid
/// nobody else uploads to. Started with `$LAFS_DEV_GRID start [--fast] DIR`
/// in a temp dir (inside the `scripts/test` run dir, so a crashed test run's
/// grid is cleaned up by the next `scripts/test`), stopped and removed on
/// drop. Costs about 5 s (fast) or 10-20 s (3 nodes) to start.
pub(crate) struct PrivateGrid {
    dev_grid: PathBuf,
    grid: PathBuf,
    url: String,
    // Dropped after `Drop::drop` has stopped the nodes: removes the dir.
    _tmp: tempfile::TempDir,
}

impl PrivateGrid {
    /// Fast shape: introducer + one gateway/storage node, 1-of-1.
    pub(crate) fn start_fast() -> PrivateGrid {
        Self::start(true)
    }

    /// Default shape: introducer + storage1..3 + gateway, 2-of-3, happy 3.
    pub(crate) fn start_3n() -> PrivateGrid {
        Self::start(false)
    }

    /// Starts a grid, once more after a failed start: on a loaded machine
    /// (several grids starting at once) a node can miss its start window;
    /// a second failure is reported with both attempts' output.
    fn start(fast: bool) -> PrivateGrid {
        match Self::try_start(fast) {
            Ok(pg) => pg,
            Err(first) => match Self::try_start(fast) {
                Ok(pg) => {
                    eprintln!("a private grid failed to start once, then started:\n{first}");
                    pg
                }
                Err(second) => panic!("{first}\n--- and again:\n{second}"),
            },
        }
    }

    fn try_start(fast: bool) -> Result<PrivateGrid, String> {
        let dev_grid = PathBuf::from(required_env("LAFS_DEV_GRID"));
        let parent = std::env::var_os("LAFS_TEST_GRID_DIR")
            .map(PathBuf::from)
            .and_then(|d| d.parent().map(Path::to_path_buf))
            .unwrap_or_else(std::env::temp_dir);
        let tmp = tempfile::Builder::new()
            .prefix("private-grid-")
            .tempdir_in(&parent)
            .expect("create a temp dir for a private grid");
        let grid = tmp.path().join("grid");
        let mut cmd = Command::new(&dev_grid);
        cmd.arg("start");
        if fast {
            cmd.arg("--fast");
        }
        cmd.arg(&grid);
        let out = cmd.output().expect("run scripts/dev-grid start");
        let mut pg = PrivateGrid {
            dev_grid,
            grid,
            url: String::new(),
            _tmp: tmp,
        };
        if !out.status.success() {
            // `pg` is dropped on return, which stops whatever did start.
            return Err(format!(
                "scripts/dev-grid start {} failed ({}):\n{}\n{}",
                pg.grid.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let url = std::fs::read_to_string(pg.grid.join("gateway.url"))
            .expect("read gateway.url of the private grid");
        pg.url = url.trim().trim_end_matches('/').to_string();
        Ok(pg)
    }

    /// Gateway URL, `http://127.0.0.1:PORT` without a trailing slash.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The grid directory (node dirs, logs, pids, grid.env).
    pub(crate) fn dir(&self) -> &Path {
        &self.grid
    }

    /// Stop one node (`storage1`..`storage3`, `gateway`, `introducer`);
    /// for a storage node, waits until the gateway no longer counts it.
    pub(crate) fn stop_node(&self, name: &str) {
        self.dev_grid_cmd("stop-node", name);
    }

    /// Start a stopped node again; waits until the gateway sees all running
    /// storage servers.
    pub(crate) fn start_node(&self, name: &str) {
        self.dev_grid_cmd("start-node", name);
    }

    fn dev_grid_cmd(&self, verb: &str, name: &str) {
        let out = Command::new(&self.dev_grid)
            .arg(verb)
            .arg(&self.grid)
            .arg(name)
            .output()
            .unwrap_or_else(|e| panic!("run scripts/dev-grid {verb}: {e}"));
        assert!(
            out.status.success(),
            "scripts/dev-grid {verb} {name} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PrivateGrid {
    fn drop(&mut self) {
        let _ = Command::new(&self.dev_grid)
            .arg("stop")
            .arg(&self.grid)
            .output();
    }
}

/// Runs a fixture tool (`setfacl`, `mkfifo`, …) and insists that it worked.
pub(crate) fn run_tool(cmd: &str, args: &[&std::ffi::OsStr]) {
    let status = Command::new(cmd)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{cmd} cannot run ({e}); .ci/run installs it"));
    assert!(status.success(), "{cmd} {args:?} failed");
}

/// The hostile tree of the scan tests, built under `root`: names with a
/// newline, a backslash, a tab, 0x01, invalid UTF-8, leading, trailing and
/// inner spaces; `a`, `a-b` and `a/0` side by side; an empty directory; a
/// symlink to a directory and a dangling one; a fifo; a file with an ACL, a
/// directory with a default ACL, a file with a capability, a setuid file.
/// Regular files hold `content {i}`.
pub(crate) fn hostile_tree(root: &Path) {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{PermissionsExt, symlink};
    let names: &[&[u8]] = &[
        b"new\nline",
        b"back\\slash",
        b"tab\there",
        b"ctrl\x01",
        b"bad\xffutf8",
        b" leading",
        b"trailing ",
        b"inner  space",
        "caf\u{e9}".as_bytes(),
        b"a-b",
        b"#hash",
    ];
    for (i, name) in names.iter().enumerate() {
        std::fs::write(root.join(OsStr::from_bytes(name)), format!("content {i}")).unwrap();
    }
    std::fs::create_dir(root.join("a")).unwrap();
    std::fs::write(root.join("a/0"), b"zero").unwrap();
    std::fs::create_dir(root.join("empty")).unwrap();
    symlink("a", root.join("dirlink")).unwrap();
    symlink("nowhere", root.join("dangling")).unwrap();
    run_tool("mkfifo", &[root.join("fifo").as_os_str()]);
    std::fs::write(root.join("acl-file"), b"acl").unwrap();
    let acl_file = root.join("acl-file");
    run_tool(
        "setfacl",
        &["-m".as_ref(), "u:nobody:rwx".as_ref(), acl_file.as_os_str()],
    );
    let acl_dir = root.join("acl-dir");
    std::fs::create_dir(&acl_dir).unwrap();
    run_tool(
        "setfacl",
        &[
            "-d".as_ref(),
            "-m".as_ref(),
            "u:nobody:r-x".as_ref(),
            acl_dir.as_os_str(),
        ],
    );
    let cap_file = root.join("cap-file");
    std::fs::write(&cap_file, b"cap").unwrap();
    run_tool("setcap", &["cap_net_raw+ep".as_ref(), cap_file.as_os_str()]);
    std::fs::write(root.join("setuid"), b"su").unwrap();
    std::fs::set_permissions(root.join("setuid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
}

/// The share directories (`storage/shares/<si[:2]>/<si>`) of a storage
/// index under a grid's node dirs: one per storage node holding shares.
pub(crate) fn share_dirs(grid_dir: &Path, si: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![grid_dir.to_owned()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                if entry.file_name() == si && dir.ends_with(&si[..2]) {
                    found.push(path);
                } else {
                    todo.push(path);
                }
            }
        }
    }
    found
}

/// The `tahoe` command of the virtualenv that runs the shared grids
/// (`LAFS_TAHOE_VENV` in the fast grid's `grid.env`), for tests that use
/// Tahoe's own tools, e.g. `tahoe backup`. Run it with `-d NODEDIR`, where
/// NODEDIR holds a `node.url` (see [`tahoe_client_dir`]).
pub(crate) fn tahoe_cli() -> PathBuf {
    let env_file = grid_dir().join("grid.env");
    let text = std::fs::read_to_string(&env_file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", env_file.display()));
    let quoted = text
        .lines()
        .find_map(|l| l.strip_prefix("LAFS_TAHOE_VENV="))
        .unwrap_or_else(|| panic!("no LAFS_TAHOE_VENV in {}", env_file.display()));
    // dev-grid single-quotes values for the shell: 'a'\''b' is a'b.
    let venv = quoted
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .unwrap_or(quoted)
        .replace("'\\''", "'");
    let tahoe = PathBuf::from(venv).join("bin/tahoe");
    assert!(tahoe.exists(), "{} does not exist", tahoe.display());
    tahoe
}

/// A client node directory of the test's own for the `tahoe` CLI, under
/// `parent`: only `node.url` (the gateway at `url`) and an empty `private/`
/// (where `tahoe backup` keeps its backupdb), so CLI state never lands in a
/// shared grid's node dir. Use it as `tahoe -d DIR ...`.
pub(crate) fn tahoe_client_dir(parent: &Path, url: &str) -> PathBuf {
    let dir = parent.join("tahoe-client");
    std::fs::create_dir_all(dir.join("private")).unwrap();
    std::fs::write(
        dir.join("node.url"),
        format!("{}/\n", url.trim_end_matches('/')),
    )
    .unwrap();
    dir
}

/// Writes `DIR/cfg.yaml` for backing up `source` to the gateway at `url`,
/// with the queue and the entry cache in `dir`, followed by `extra` (more
/// YAML, or "": indented `  key:` lines continue the `destination:`
/// section, unindented ones add top-level sections). Returns the config's
/// path.
pub(crate) fn write_backup_config(dir: &Path, source: &Path, url: &str, extra: &str) -> PathBuf {
    let cfg = dir.join("cfg.yaml");
    std::fs::write(
        &cfg,
        format!(
            "source:\n  path: '{}'\n  queue:\n    path: '{}'\n  entry_cache:\n    path: '{}'\n\
             destination:\n  url: '{url}/uri'\n{extra}",
            source.display(),
            dir.join("queue").display(),
            dir.join("cache.sqlite").display(),
        ),
    )
    .unwrap();
    cfg
}

/// `lafs-backup -c CFG --json backup`: must exit 0; returns the root cap
/// from the summary line.
pub(crate) fn backup_root_cap(cfg: &Path) -> String {
    lafs()
        .arg("-c")
        .arg(cfg)
        .args(["--json", "backup"])
        .caps_on_stdout()
        .ok()
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "summary")
        .and_then(|v| v["root_cap"].as_str().map(str::to_owned))
        .expect("a summary line with root_cap")
}

/// Config lines that make grid errors fail fast: two attempts 0.2 s apart
/// (instead of the default retry delays of 10, 60 and 600 s). Append them
/// to a config, e.g. as `extra` of [`write_backup_config`].
pub(crate) const QUICK_RETRY: &str = "http:\n  retry:\n    attempts: 2\n    delay: 0.2\n";

/// The lines of a `--json` run's stdout, each parsed as JSON (every line
/// must be JSON, and stdout UTF-8).
pub(crate) fn json_lines(stdout: &[u8]) -> Vec<Value> {
    std::str::from_utf8(stdout)
        .expect("stdout is UTF-8")
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"))
        })
        .collect()
}

/// What one run of the binary printed.
pub(crate) struct Run {
    /// The exit code, -1 if a signal ended the run.
    pub code: i32,
    /// stdout, which must be UTF-8.
    pub stdout: String,
    /// stderr, lossily decoded.
    pub stderr: String,
}

impl Run {
    pub(crate) fn from_output(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The stdout lines, parsed as JSON: see [`json_lines`].
    pub(crate) fn json(&self) -> Vec<Value> {
        json_lines(self.stdout.as_bytes())
    }

    /// The stdout lines whose `type` is `kind`, in order.
    pub(crate) fn of_type(&self, kind: &str) -> Vec<Value> {
        self.json()
            .into_iter()
            .filter(|v| v["type"] == kind)
            .collect()
    }
}

// ------------------------------------------------------------ the command builder

/// How long a run may take unless the test says otherwise: a hung run
/// fails the test (and is killed) instead of hanging the suite.
const DEFAULT_LIMIT: Duration = Duration::from_secs(600);

/// A run of the `lafs-backup` binary, built like a `Command`: `lafs()`,
/// then `.arg(..)`/`.args(..)`/`.env(..)`/`.write_stdin(..)`, then one of
/// `.ok()` (must exit 0), `.code(N)`, `.run()` (any code), `.output()`
/// (raw bytes), `.assert()` (assert_cmd's predicates) or `.spawn()` (a run
/// the test watches or kills).
///
/// Every way of running checks, when the run has ended, what must hold for
/// every run of the binary: no capability on stderr, nor on stdout unless
/// [`Lafs::caps_on_stdout`] says caps are the answer there (`backup --json`
/// summaries, `list`), in any spelling ([`assert_no_cap`]); no key material
/// of the caps named with [`Lafs::known_cap`], in any case or percent
/// encoding; and no panic (Rust's "panicked at", or the panic hook's
/// "internal error:"), unless [`Lafs::panic_expected`]. stdin is empty
/// (`/dev/null`) unless written.
#[must_use]
pub(crate) struct Lafs {
    /// `Some(script)`: run `bash -c SCRIPT BIN ARGS...` (the script sees
    /// the binary as `$0` and the arguments as `$@`).
    shell: Option<String>,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    stdin: Option<Vec<u8>>,
    limit: Duration,
    guard: Guard,
}

/// `lafs-backup` with no arguments yet: see [`Lafs`].
pub(crate) fn lafs() -> Lafs {
    Lafs {
        shell: None,
        args: Vec::new(),
        envs: Vec::new(),
        stdin: None,
        limit: DEFAULT_LIMIT,
        guard: Guard::default(),
    }
}

impl Lafs {
    /// The binary run by a `bash` script: `bash -c SCRIPT BIN ARGS...`, so
    /// the script runs it as `"$0" "$@"` (e.g. under `umask 000`, or into
    /// a pipe). The checks apply to the script's stdout and stderr.
    pub(crate) fn in_shell(script: &str) -> Lafs {
        Lafs {
            shell: Some(script.to_owned()),
            ..lafs()
        }
    }

    pub(crate) fn arg(mut self, arg: impl AsRef<OsStr>) -> Lafs {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub(crate) fn args<I, S>(mut self, args: I) -> Lafs
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub(crate) fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Lafs {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// The bytes the run reads on stdin.
    pub(crate) fn write_stdin(mut self, input: impl Into<Vec<u8>>) -> Lafs {
        self.stdin = Some(input.into());
        self
    }

    /// The longest the run may take (default 600 s): past it, the run is
    /// killed and the test fails saying so.
    pub(crate) fn timeout(mut self, limit: Duration) -> Lafs {
        self.limit = limit;
        self
    }

    /// Caps are expected on stdout (`backup --json` summaries, `list`,
    /// templates that print them); stderr is still checked.
    pub(crate) fn caps_on_stdout(mut self) -> Lafs {
        self.guard.caps_on_stdout = true;
        self
    }

    /// A cap the test knows (e.g. given in an odd spelling): none of its
    /// key material may appear on stderr (nor on stdout, unless
    /// [`Lafs::caps_on_stdout`]), in any case, percent-encoded or not.
    pub(crate) fn known_cap(mut self, cap: &str) -> Lafs {
        self.guard.secrets.extend(key_material(cap));
        self
    }

    /// The test injects a panic: its report is what the test checks.
    pub(crate) fn panic_expected(mut self) -> Lafs {
        self.guard.panic_expected = true;
        self
    }

    /// Runs to the end (within the time limit) and checks the invariants;
    /// the raw output.
    pub(crate) fn output(mut self) -> Output {
        let mut cmd = self.command();
        cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.guard.what));
        if let Some(input) = self.stdin.clone() {
            let mut pipe = child.stdin.take().expect("piped stdin");
            // A writer thread: a run that does not read all of its stdin
            // must not block the test.
            std::thread::spawn(move || {
                let _ = pipe.write_all(&input);
            });
        }
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = match rx.recv_timeout(self.limit) {
            Ok(out) => out.unwrap_or_else(|e| panic!("{}: {e}", self.guard.what)),
            Err(_) => {
                kill(pid);
                panic!("{} did not end within {:?}", self.guard.what, self.limit);
            }
        };
        self.guard.check(&out.stdout, &out.stderr);
        out
    }

    /// Runs to the end and checks the invariants: see [`Run`].
    pub(crate) fn run(self) -> Run {
        Run::from_output(self.output())
    }

    /// [`Lafs::run`], which must exit 0.
    pub(crate) fn ok(self) -> Run {
        self.code(0)
    }

    /// [`Lafs::run`], which must exit `code`.
    pub(crate) fn code(self, code: i32) -> Run {
        let what = describe(self.shell.as_deref(), &self.args);
        let run = self.run();
        assert_eq!(
            run.code,
            code,
            "{what} exited {}, not {code}; stderr:\n{}",
            run.code,
            redact(&run.stderr)
        );
        run
    }

    /// [`Lafs::output`] for assert_cmd's predicates (`.success()`,
    /// `.stdout(..)`, ...).
    pub(crate) fn assert(self) -> assert_cmd::assert::Assert {
        use assert_cmd::assert::OutputAssertExt;
        self.output().assert()
    }

    /// Starts the run in the background, stdout and stderr to files; see
    /// [`Running`]. stdin is empty.
    pub(crate) fn spawn(mut self) -> Running {
        let dir = tempfile::tempdir().expect("a temp dir for a run's output");
        let out_path = dir.path().join("stdout");
        let err_path = dir.path().join("stderr");
        let child = self
            .command()
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.guard.what));
        Running {
            child,
            out_path,
            err_path,
            guard: self.guard,
            _dir: dir,
        }
    }

    fn command(&mut self) -> Command {
        self.guard.what = describe(self.shell.as_deref(), &self.args);
        let mut cmd = match &self.shell {
            Some(script) => {
                let mut c = Command::new("bash");
                c.arg("-c").arg(script).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        cmd.args(&self.args);
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v)));
        cmd
    }
}

/// A run started with [`Lafs::spawn`]. [`Running::wait`] checks it like
/// any run; a run the test kills is checked by [`Running::kill`] too.
pub(crate) struct Running {
    child: std::process::Child,
    out_path: PathBuf,
    err_path: PathBuf,
    guard: Guard,
    _dir: tempfile::TempDir,
}

impl Running {
    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the run has ended.
    pub(crate) fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits for the end of the run, checks it, and returns what it printed.
    pub(crate) fn wait(mut self) -> Run {
        let status = self.child.wait().unwrap();
        self.finish(status)
    }

    /// Kills the run (SIGKILL), waits for it and checks what it printed
    /// until then.
    pub(crate) fn kill(mut self) -> Run {
        let _ = self.child.kill();
        let status = self.child.wait().unwrap();
        self.finish(status)
    }

    fn finish(self, status: ExitStatus) -> Run {
        let stdout = std::fs::read(&self.out_path).unwrap_or_default();
        let stderr = std::fs::read(&self.err_path).unwrap_or_default();
        self.guard.check(&stdout, &stderr);
        Run::from_output(Output {
            status,
            stdout,
            stderr,
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A test that fails while its run goes on must not leave it behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What every run must satisfy (see [`Lafs`]).
#[derive(Default)]
struct Guard {
    /// The command line, caps left out, for messages.
    what: String,
    caps_on_stdout: bool,
    panic_expected: bool,
    /// Key material of the caps the test knows, lower-case.
    secrets: Vec<String>,
}

impl Guard {
    fn check(&self, stdout: &[u8], stderr: &[u8]) {
        let what = &self.what;
        let stderr = String::from_utf8_lossy(stderr);
        let stdout = String::from_utf8_lossy(stdout);
        assert_no_cap(&format!("stderr of {what}"), &stderr);
        assert_no_key_material(&format!("stderr of {what}"), &stderr, &self.secrets);
        if !self.caps_on_stdout {
            assert_no_cap(&format!("stdout of {what}"), &stdout);
            assert_no_key_material(&format!("stdout of {what}"), &stdout, &self.secrets);
        }
        if !self.panic_expected {
            for mark in ["panicked at", "internal error:"] {
                assert!(
                    !stderr.contains(mark),
                    "{what} panicked ({mark:?} on stderr):\n{}",
                    redact(&stderr)
                );
            }
        }
    }
}

/// The spellings of a cap's `URI:` prefix looked for, lower-case: plain
/// and percent-encoded (as in a URL).
const CAP_MARKS: [&str; 2] = ["uri:", "uri%3a"];

/// Fails the test if `text` (the output named `what`) holds a capability
/// in any spelling: `URI:` in any case, or percent-encoded (`URI%3A`). The
/// message shows the text with the caps cut short.
pub(crate) fn assert_no_cap(what: &str, text: &str) {
    let lower = text.to_ascii_lowercase();
    if let Some(mark) = CAP_MARKS.iter().find(|m| lower.contains(*m)) {
        panic!(
            "a capability ({mark}...) leaked on {what}:\n{}",
            redact(text)
        );
    }
}

/// `text` with every cap (`URI:`/`URI%3A` in any case, up to white space
/// or a quote) cut short, for messages that show a run's output.
pub(crate) fn redact(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some((start, mark)) = CAP_MARKS
        .iter()
        .filter_map(|m| lower[at..].find(m).map(|i| (at + i, *m)))
        .min()
    {
        out.push_str(&text[at..start]);
        out.push_str(&text[start..start + mark.len()]);
        out.push_str("(redacted)");
        let rest = &text[start..];
        at = start
            + rest
                .find(|c: char| c.is_whitespace() || c == '"' || c == '\'')
                .unwrap_or(rest.len());
    }
    out.push_str(&text[at..]);
    out
}

/// The key material of a cap: the first 16 characters, lower-case, of each
/// field after the kind that is long enough to be secret (16 or more).
fn key_material(cap: &str) -> Vec<String> {
    let cap = percent_decode(cap).to_lowercase();
    cap.split(':')
        .skip(2)
        .filter(|f| f.chars().count() >= 16)
        .map(|f| f.chars().take(16).collect())
        .collect()
}

/// Fails the test if `text` holds any of `secrets` (see [`key_material`]),
/// in any case, percent-encoded or not.
fn assert_no_key_material(what: &str, text: &str, secrets: &[String]) {
    if secrets.is_empty() {
        return;
    }
    let hay = percent_decode(text).to_lowercase();
    for s in secrets {
        assert!(
            !hay.contains(s.as_str()),
            "key material of a known cap leaked on {what}:\n{}",
            redact(text).replace(s.as_str(), "(key)")
        );
    }
}

/// `text` with `%XX` escapes decoded (bytes taken as Latin-1 characters:
/// enough to compare the ASCII of caps).
fn percent_decode(s: &str) -> String {
    let mut out = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(char::from(v));
            i += 3;
            continue;
        }
        out.push(char::from(b[i]));
        i += 1;
    }
    out
}

/// The command line for messages, with every argument that holds a cap
/// replaced by `<cap>`.
fn describe(shell: Option<&str>, args: &[OsString]) -> String {
    let mut words = vec![match shell {
        Some(script) => format!("bash -c {script:?} lafs-backup"),
        None => "lafs-backup".to_owned(),
    }];
    for a in args {
        let a = a.to_string_lossy();
        let lower = a.to_ascii_lowercase();
        words.push(if CAP_MARKS.iter().any(|m| lower.contains(m)) {
            "<cap>".to_owned()
        } else {
            a.into_owned()
        });
    }
    words.join(" ")
}

/// SIGKILL to a run that overstayed its time limit.
fn kill(pid: u32) {
    let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
}
