//! The 5-node HTTPS grid with 3-of-10 encoding (happy 4):
//! `scripts/dev-grid start --5n`. It costs about 17 s to start here, so
//! `scripts/test` does not start it: the first test that calls
//! [`Grid5::shared`] starts it in the `scripts/test` run dir, the tests of
//! this binary share it, and it is stopped when the binary exits (a watcher
//! process; `scripts/test`'s clean-up at the latest). Tests that stop or
//! kill nodes hold [`Grid5::alone`], the others [`Grid5::shared_use`].

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The storage nodes of the 5-node grid.
pub(crate) const NODES: [&str; 5] = ["storage1", "storage2", "storage3", "storage4", "storage5"];

/// The shared 5-node grid of the test binary.
pub(crate) struct Grid5 {
    dev_grid: PathBuf,
    dir: PathBuf,
    url: String,
}

static GRID5: OnceLock<Grid5> = OnceLock::new();
static LOCK: RwLock<()> = RwLock::new(());

impl Grid5 {
    /// The grid, started by the first caller.
    pub(crate) fn shared() -> &'static Grid5 {
        GRID5.get_or_init(Grid5::start)
    }

    /// For a test that uploads and reads only.
    pub(crate) fn shared_use(&self) -> RwLockReadGuard<'static, ()> {
        LOCK.read().unwrap_or_else(|e| e.into_inner())
    }

    /// For a test that stops or kills nodes: no other test of the grid
    /// runs meanwhile. Restarts every stopped node when dropped.
    pub(crate) fn alone(&'static self) -> Alone {
        Alone {
            grid: self,
            _guard: LOCK.write().unwrap_or_else(|e| e.into_inner()),
        }
    }

    fn start() -> Grid5 {
        let dev_grid = PathBuf::from(super::required_env("LAFS_DEV_GRID"));
        let run_dir = PathBuf::from(super::required_env("LAFS_TEST_GRID_3N_DIR"))
            .parent()
            .unwrap()
            .to_path_buf();
        let dir = run_dir.join(format!("5n-it-{}", std::process::id()));
        // Stop the grid when this process exits (statics are never
        // dropped): a watcher in the background.
        Command::new("sh")
            .args([
                "-c",
                r#"(while kill -0 "$1" 2>/dev/null; do sleep 1; done; exec "$2" stop --rm "$3") &"#,
                "grid5-watcher",
            ])
            .arg(std::process::id().to_string())
            .arg(&dev_grid)
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        let mut last = String::new();
        // Once more after a failed start: on a loaded machine a node can
        // miss its start window.
        for _ in 0..2 {
            let out = Command::new(&dev_grid)
                .args(["start", "--5n"])
                .arg(&dir)
                .output()
                .unwrap();
            if out.status.success() {
                let url = std::fs::read_to_string(dir.join("gateway.url")).unwrap();
                return Grid5 {
                    dev_grid,
                    dir,
                    url: url.trim().to_owned(),
                };
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            let _ = Command::new(&dev_grid).arg("stop").arg(&dir).output();
        }
        panic!(
            "scripts/dev-grid start --5n {} failed:\n{last}",
            dir.display()
        );
    }

    /// Gateway URL, `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The grid directory (node dirs, `pids`, logs).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The gateway's node directory (`destination.native.node_dir`).
    pub(crate) fn gateway_node(&self) -> PathBuf {
        self.dir.join("gateway")
    }
}

/// Exclusive use of the 5-node grid; every node up again when dropped.
pub(crate) struct Alone {
    grid: &'static Grid5,
    _guard: RwLockWriteGuard<'static, ()>,
}

impl Alone {
    /// Stops a storage node cleanly and waits until the gateway notices.
    pub(crate) fn stop_node(&self, node: &str) {
        self.dev_grid(&["stop-node"], Some(node));
    }

    /// SIGKILLs a storage node (its PID from dev-grid's `pids` file), as a
    /// crash does, and waits until it is gone.
    pub(crate) fn kill_node(&self, node: &str) {
        let dir = &self.grid.dir;
        let pids = std::fs::read_to_string(dir.join("pids")).unwrap();
        let want = dir.join(node);
        let pid = pids
            .lines()
            .filter_map(|l| l.split_once(' '))
            // A restarted node's line comes after its dead one's.
            .rfind(|(_, d)| Path::new(d) == want)
            .map(|(p, _)| p.to_owned())
            .unwrap_or_else(|| panic!("no pid of {node} in {pids}"));
        let status = Command::new("kill").args(["-KILL", &pid]).status().unwrap();
        assert!(status.success(), "kill -KILL {pid} ({node})");
        for _ in 0..100 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let gone = stat
                .rsplit_once(") ")
                .is_none_or(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X'));
            if gone {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("{node} (pid {pid}) did not die");
    }

    /// Starts every node that is down and waits until the gateway sees
    /// them all.
    pub(crate) fn all_up(&self) {
        self.dev_grid(&["start", "--5n"], None);
    }

    fn dev_grid(&self, verb: &[&str], node: Option<&str>) {
        let out = Command::new(&self.grid.dev_grid)
            .args(verb)
            .arg(&self.grid.dir)
            .args(node)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/dev-grid {verb:?} {node:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Alone {
    fn drop(&mut self) {
        let _ = Command::new(&self.grid.dev_grid)
            .args(["start", "--5n"])
            .arg(&self.grid.dir)
            .output();
    }
}
