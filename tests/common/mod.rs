//! Helpers shared by the integration tests (`mod common;` in each test file).
//!
//! The tests run against real local Tahoe-LAFS grids that `scripts/test`
//! starts (see docs/test-grid.md). Without them the helpers panic with a
//! message that says so: a test never skips silently.
//!
//! Each test binary uses a subset of these helpers, hence the
//! `#[allow(dead_code)]`s.

#[allow(dead_code)]
pub mod fake_gateway;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
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
#[allow(dead_code)]
pub fn gateway_url() -> String {
    required_env("LAFS_TEST_GATEWAY")
        .trim_end_matches('/')
        .to_string()
}

/// Gateway URL of the shared 3-node grid (3 storage nodes + gateway, shares
/// 2-of-3, happy 3, HTTPS storage protocol), from `LAFS_TEST_GATEWAY_3N`.
/// Do not stop its nodes: tests that lose nodes use a [`PrivateGrid`].
#[allow(dead_code)]
pub fn gateway_url_3n() -> String {
    required_env("LAFS_TEST_GATEWAY_3N")
        .trim_end_matches('/')
        .to_string()
}

/// Directory of the shared fast grid (`LAFS_TEST_GRID_DIR`); its gateway
/// node dir is `grid_dir().join("gateway")`.
#[allow(dead_code)]
pub fn grid_dir() -> PathBuf {
    PathBuf::from(required_env("LAFS_TEST_GRID_DIR"))
}

/// Directory of the shared 3-node grid (`LAFS_TEST_GRID_3N_DIR`).
#[allow(dead_code)]
pub fn grid_dir_3n() -> PathBuf {
    PathBuf::from(required_env("LAFS_TEST_GRID_3N_DIR"))
}

/// The `lafs-backup` binary built by cargo for this test run.
#[allow(dead_code)]
pub fn bin() -> assert_cmd::Command {
    assert_cmd::Command::new(env!("CARGO_BIN_EXE_lafs-backup"))
}

/// An HTTP agent for talking to a gateway directly in tests: 120 s overall
/// timeout per request, and 4xx/5xx returned as responses (not errors) so
/// tests can look at the status.
#[allow(dead_code)]
pub fn http_agent() -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(120)))
        .http_status_as_error(false)
        .build();
    ureq::Agent::new_with_config(config)
}

/// `GET url` with `Accept: text/plain` (a 500 then carries a plain-text
/// traceback); returns the body, up to 1 GiB. Panics if the request
/// cannot be made; the status is not checked (see [`http_get_status`]).
#[allow(dead_code)]
pub fn http_get(url: &str) -> Vec<u8> {
    http_get_status(url).1
}

/// [`http_get`], with the response's status.
#[allow(dead_code)]
pub fn http_get_status(url: &str) -> (u16, Vec<u8>) {
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
#[allow(dead_code)]
pub fn mkdir_mutable(url: &str) -> String {
    let mut resp = http_agent()
        .post(format!("{url}/uri?t=mkdir"))
        .send_empty()
        .unwrap();
    resp.body_mut().read_to_string().unwrap().trim().to_owned()
}

/// Deterministic pseudo-random bytes (xorshift64*), so test data is not
/// compressible and reproducible from `seed`.
#[allow(dead_code)]
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
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
#[allow(dead_code)]
pub struct PrivateGrid {
    dev_grid: PathBuf,
    grid: PathBuf,
    url: String,
    // Dropped after `Drop::drop` has stopped the nodes: removes the dir.
    _tmp: tempfile::TempDir,
}

#[allow(dead_code)]
impl PrivateGrid {
    /// Fast shape: introducer + one gateway/storage node, 1-of-1.
    pub fn start_fast() -> PrivateGrid {
        Self::start(true)
    }

    /// Default shape: introducer + storage1..3 + gateway, 2-of-3, happy 3.
    pub fn start_3n() -> PrivateGrid {
        Self::start(false)
    }

    fn start(fast: bool) -> PrivateGrid {
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
            // `pg` is dropped here, which stops whatever did start.
            panic!(
                "scripts/dev-grid start {} failed ({}):\n{}\n{}",
                pg.grid.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let url = std::fs::read_to_string(pg.grid.join("gateway.url"))
            .expect("read gateway.url of the private grid");
        pg.url = url.trim().trim_end_matches('/').to_string();
        pg
    }

    /// Gateway URL, `http://127.0.0.1:PORT` without a trailing slash.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The grid directory (node dirs, logs, pids, grid.env).
    pub fn dir(&self) -> &Path {
        &self.grid
    }

    /// Stop one node (`storage1`..`storage3`, `gateway`, `introducer`);
    /// for a storage node, waits until the gateway no longer counts it.
    pub fn stop_node(&self, name: &str) {
        self.dev_grid_cmd("stop-node", name);
    }

    /// Start a stopped node again; waits until the gateway sees all running
    /// storage servers.
    pub fn start_node(&self, name: &str) {
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
#[allow(dead_code)]
pub fn run_tool(cmd: &str, args: &[&std::ffi::OsStr]) {
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
#[allow(dead_code)]
pub fn hostile_tree(root: &Path) {
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
#[allow(dead_code)]
pub fn share_dirs(grid_dir: &Path, si: &str) -> Vec<PathBuf> {
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
#[allow(dead_code)]
pub fn tahoe_cli() -> PathBuf {
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
#[allow(dead_code)]
pub fn tahoe_client_dir(parent: &Path, url: &str) -> PathBuf {
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
#[allow(dead_code)]
pub fn write_backup_config(dir: &Path, source: &Path, url: &str, extra: &str) -> PathBuf {
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
#[allow(dead_code)]
pub fn backup_root_cap(cfg: &Path) -> String {
    let out = bin()
        .arg("-c")
        .arg(cfg)
        .args(["--json", "backup"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "backup failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "summary")
        .and_then(|v| v["root_cap"].as_str().map(str::to_owned))
        .expect("a summary line with root_cap")
}

/// Config lines that make grid errors fail fast: two attempts 0.2 s apart
/// (instead of the default retry delays of 10, 60 and 600 s). Append them
/// to a config, e.g. as `extra` of [`write_backup_config`].
#[allow(dead_code)]
pub const QUICK_RETRY: &str = "http:\n  retry:\n    attempts: 2\n    delay: 0.2\n";

/// The lines of a `--json` run's stdout, each parsed as JSON (every line
/// must be JSON, and stdout UTF-8).
#[allow(dead_code)]
pub fn json_lines(stdout: &[u8]) -> Vec<Value> {
    std::str::from_utf8(stdout)
        .expect("stdout is UTF-8")
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"))
        })
        .collect()
}

/// What one run of the binary printed.
#[allow(dead_code)]
pub struct Run {
    /// The exit code, -1 if a signal ended the run.
    pub code: i32,
    /// stdout, which must be UTF-8.
    pub stdout: String,
    /// stderr, lossily decoded.
    pub stderr: String,
}

#[allow(dead_code)]
impl Run {
    pub fn from_output(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The stdout lines, parsed as JSON: see [`json_lines`].
    pub fn json(&self) -> Vec<Value> {
        json_lines(self.stdout.as_bytes())
    }

    /// The stdout lines whose `type` is `kind`, in order.
    pub fn of_type(&self, kind: &str) -> Vec<Value> {
        self.json()
            .into_iter()
            .filter(|v| v["type"] == kind)
            .collect()
    }
}
