//! The storage client against a real 5-node HTTPS grid with 3-of-10
//! encoding (happy 4): two shares per server, the whole zfec matrix, and
//! storage nodes killed mid-upload.
//!
//! The grid costs about 17 s to start on the shared 2-core machine, so
//! `scripts/test` does not start it for every run: the first test here that
//! needs it starts it (`scripts/dev-grid start --5n`, in the `scripts/test`
//! run dir) and the others share it; it is stopped when this test binary
//! exits (a watcher process), or by `scripts/test`'s clean-up at the latest.
//! Tests that kill nodes take the grid's lock for writing, the others for
//! reading. Without `scripts/test` (no `LAFS_DEV_GRID`) they say so and
//! pass, as the 3-node grid tests do.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{OnceLock, RwLock};

use super::grid_tests::{data, verify};
use super::immutable::{LeaseSecret, Uploader, download, test_hook};
use super::nurl::servers_of_node;
use crate::chk::Params;
use crate::chk::cap::ChkCap;
use crate::tahoe::Cap;

const NODES: [&str; 5] = ["storage1", "storage2", "storage3", "storage4", "storage5"];

/// The shared 5-node grid of this test binary.
struct Grid5 {
    dev_grid: PathBuf,
    dir: PathBuf,
    url: String,
}

static GRID5: OnceLock<Option<Grid5>> = OnceLock::new();
/// Read: a test that uploads and reads. Write: a test that stops nodes.
static GRID5_LOCK: RwLock<()> = RwLock::new(());

impl Grid5 {
    fn get() -> Option<&'static Grid5> {
        GRID5.get_or_init(Grid5::start).as_ref()
    }

    fn start() -> Option<Grid5> {
        let (Some(dev_grid), Some(g3)) = (
            std::env::var_os("LAFS_DEV_GRID"),
            std::env::var_os("LAFS_TEST_GRID_3N_DIR"),
        ) else {
            eprintln!("LAFS_DEV_GRID not set (no test grids): skipped; run scripts/test");
            return None;
        };
        let run_dir = Path::new(&g3).parent().unwrap().to_path_buf();
        let dir = run_dir.join(format!("5n-lib-{}", std::process::id()));
        let dev_grid = PathBuf::from(dev_grid);
        // Stop the grid when this process exits (statics are never dropped):
        // a watcher in the background, which outlives the `sh` that starts it.
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
                return Some(Grid5 {
                    dev_grid,
                    dir,
                    url: url.trim().to_owned(),
                });
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            let _ = Command::new(&dev_grid).arg("stop").arg(&dir).output();
        }
        panic!(
            "scripts/dev-grid start --5n {} failed:\n{last}",
            dir.display()
        );
    }

    fn gateway_node(&self) -> PathBuf {
        self.dir.join("gateway")
    }

    fn uploader(&self) -> Uploader {
        let node = self.gateway_node();
        let servers = servers_of_node(&node).unwrap();
        assert_eq!(servers.len(), 5, "{servers:?}");
        let conv = std::fs::read_to_string(node.join("private/convergence")).unwrap();
        Uploader {
            servers,
            params: Params::new(3, 10).unwrap(),
            happy: 4,
            convergence: crate::tahoe::base32::decode(conv.trim()).unwrap(),
            lease: LeaseSecret::read(&node.join("private/secret")).unwrap(),
        }
    }

    fn gateway(&self) -> crate::tahoe::Client {
        crate::tahoe::Client::new(
            &format!("{}/uri", self.url),
            &crate::config::Retry {
                attempts: 3,
                delay: crate::config::RetryDelay::Fixed(0.2),
            },
            &crate::config::Timeouts::PerAttempt(vec![120.0, 120.0]),
        )
        .unwrap()
    }

    /// Share files of `cap` on disk: node name → (share number, path).
    fn share_files(&self, cap: &str) -> BTreeMap<&'static str, Vec<(u16, PathBuf)>> {
        let si = crate::tahoe::base32::encode(&ChkCap::parse(cap).unwrap().storage_index());
        let mut out = BTreeMap::new();
        for node in NODES {
            let dir = self.share_dir(node, &si);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut files: Vec<(u16, PathBuf)> = entries
                .map(|e| {
                    let path = e.unwrap().path();
                    let shnum = path.file_name().unwrap().to_str().unwrap().parse().unwrap();
                    (shnum, path)
                })
                .collect();
            files.sort();
            if !files.is_empty() {
                out.insert(node, files);
            }
        }
        out
    }

    fn share_dir(&self, node: &str, si: &str) -> PathBuf {
        self.dir
            .join(node)
            .join("storage/shares")
            .join(&si[..2])
            .join(si)
    }

    /// SIGKILLs a storage node (its PID from dev-grid's `pids` file), as a
    /// crash does, and waits until it is gone.
    fn kill_node(&self, node: &str) {
        let pids = std::fs::read_to_string(self.dir.join("pids")).unwrap();
        let want = self.dir.join(node);
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
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let gone = state
                .rsplit_once(") ")
                .is_none_or(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X'));
            if gone {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("{node} (pid {pid}) did not die");
    }

    /// Starts every node that is down (`dev-grid start` on a grid with
    /// nodes down starts those) and waits until the gateway sees them.
    fn all_up(&self) {
        let out = Command::new(&self.dev_grid)
            .args(["start", "--5n"])
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "restarting the 5-node grid's nodes: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Restores the grid to all-up when a node-killing test ends, even by a
/// failed assertion.
struct AllUp(&'static Grid5);

impl Drop for AllUp {
    fn drop(&mut self) {
        test_hook::set_after_chunk(None);
        self.0.all_up();
    }
}

fn nickname(label: &str) -> &str {
    label.split(' ').next().unwrap_or(label)
}

#[test]
fn native_caps_equal_the_gateways_with_two_shares_per_server() {
    let Some(g) = Grid5::get() else {
        return;
    };
    let _shared = GRID5_LOCK.read().unwrap_or_else(|e| e.into_inner());
    let uploader = g.uploader();
    let gateway = g.gateway();
    let mib = crate::chk::DEFAULT_MAX_SEGMENT_SIZE as usize;
    // The smallest CHK, one segment, k-multiples ± 1, two segments, and a
    // multi-segment file whose shares take several PATCH chunks.
    for (len, seed) in [
        (56, 51),
        (3000, 52),
        (3001, 53),
        (2999, 54),
        (mib + 1, 55),
        (4 * mib + 12_345, 56),
    ] {
        let content = data(len, seed);
        let up = uploader
            .upload(&mut std::io::Cursor::new(&content), len as u64)
            .unwrap();
        assert!(up.cap.starts_with("URI:CHK:"), "{len} bytes");
        assert!(up.cap.ends_with(&format!(":3:10:{len}")), "{len} bytes");
        assert_eq!(up.happiness, 5, "{len} bytes: {:?}", up.placement);
        assert_eq!(up.placement.len(), 10, "{len} bytes");
        // On disk: two share files on every node, ten distinct shares.
        let files = g.share_files(&up.cap);
        let mut shnums = BTreeSet::new();
        for node in NODES {
            let held = files.get(node).map_or(0, Vec::len);
            assert_eq!(held, 2, "{len} bytes: shares on {node}: {files:?}");
            shnums.extend(files[node].iter().map(|(s, _)| *s));
        }
        assert_eq!(shnums, (0..10).collect(), "{len} bytes");
        // The gateway's cap for the same content is the same, and it reads
        // back and verifies our shares healthy, all ten.
        let theirs = gateway.upload_bytes(&content).unwrap();
        assert!(theirs.as_str() == up.cap, "{len} bytes: caps differ");
        assert_eq!(
            gateway.download(&Cap::parse(&up.cap).unwrap()).unwrap(),
            content,
            "{len} bytes read back through the gateway"
        );
        let report = verify(&gateway, &up.cap);
        assert!(report.healthy, "{len} bytes: {}", report.summary);
        assert_eq!(report.shares_good, Some(10), "{len} bytes");
    }
}

#[test]
fn any_three_shares_restore_the_content() {
    let Some(g) = Grid5::get() else {
        return;
    };
    let _shared = GRID5_LOCK.read().unwrap_or_else(|e| e.into_inner());
    let uploader = g.uploader();
    let gateway = g.gateway();
    let len = 2 * 1024 * 1024 + 777;
    let content = data(len, 61);
    let up = uploader
        .upload(&mut std::io::Cursor::new(&content), len as u64)
        .unwrap();
    let cap = ChkCap::parse(&up.cap).unwrap();
    let si = crate::tahoe::base32::encode(&cap.storage_index());
    let files = g.share_files(&up.cap);
    // Every share's bytes and home, to put back after each triple.
    let all: BTreeMap<u16, (&str, PathBuf, Vec<u8>)> = files
        .iter()
        .flat_map(|(node, shares)| {
            shares
                .iter()
                .map(|(s, p)| (*s, (*node, p.clone(), std::fs::read(p).unwrap())))
        })
        .collect();
    assert_eq!(all.len(), 10);
    let restore_all = || {
        for (_, path, bytes) in all.values() {
            std::fs::write(path, bytes).unwrap();
        }
    };
    // The systematic shares, only check shares, a mix, and the two shares
    // of one server with one of another.
    let (n0, shares0) = files.iter().next().unwrap();
    let same_server = [
        shares0[0].0,
        shares0[1].0,
        all.keys().find(|s| all[s].0 != *n0).copied().unwrap(),
    ];
    for triple in [[0u16, 1, 2], [7, 8, 9], [0, 5, 9], [3, 4, 6], same_server] {
        for (s, (_, path, _)) in &all {
            if !triple.contains(s) {
                std::fs::remove_file(path).unwrap();
            }
        }
        let mut out = Vec::new();
        download(&uploader.servers, &cap, &mut out)
            .unwrap_or_else(|e| panic!("shares {triple:?}: {e}"));
        assert!(out == content, "shares {triple:?}: content differs");
        restore_all();
    }
    // All three on one server: move the chosen shares into storage1's
    // directory (the others deleted), then through the gateway too.
    let triple = [1u16, 4, 8];
    let home = g.share_dir("storage1", &si);
    for (s, (_, path, bytes)) in &all {
        std::fs::remove_file(path).unwrap();
        if triple.contains(s) {
            std::fs::create_dir_all(&home).unwrap();
            std::fs::write(home.join(s.to_string()), bytes).unwrap();
        }
    }
    let mut out = Vec::new();
    download(&uploader.servers, &cap, &mut out).unwrap();
    assert!(out == content, "three shares on storage1: content differs");
    assert_eq!(
        gateway.download(&Cap::parse(&up.cap).unwrap()).unwrap(),
        content,
        "three shares on storage1, through the gateway"
    );
    for s in triple {
        std::fs::remove_file(home.join(s.to_string())).unwrap();
    }
    restore_all();
    assert!(verify(&gateway, &up.cap).healthy);
}

#[test]
fn a_node_killed_mid_upload_is_replaced_or_unhappy() {
    let Some(g) = Grid5::get() else {
        return;
    };
    let _alone = GRID5_LOCK.write().unwrap_or_else(|e| e.into_inner());
    let _up = AllUp(g);
    let mut uploader = g.uploader();
    let gateway = g.gateway();
    // Shares of 2 MiB + a bit: three chunks each, so a node killed after
    // the first chunk it took holds half-written shares.
    let len = 6 * 1024 * 1024 + 99;

    // 1. happy 4 of 5: the killed node's shares go to the other four.
    let content = data(len, 71);
    let killed = std::rc::Rc::new(std::cell::RefCell::new(String::new()));
    let arm = |killed: std::rc::Rc<std::cell::RefCell<String>>| {
        test_hook::set_after_chunk(Some(Box::new(move |label: &str| {
            if killed.borrow().is_empty() {
                let node = nickname(label).to_owned();
                g.kill_node(&node);
                *killed.borrow_mut() = node;
            }
        })));
    };
    arm(killed.clone());
    let up = uploader
        .upload(&mut std::io::Cursor::new(&content), len as u64)
        .unwrap();
    test_hook::set_after_chunk(None);
    let dead = killed.borrow().clone();
    assert!(dead.starts_with("storage"), "a node was killed: {dead:?}");
    assert_eq!(up.happiness, 4, "{:?}", up.placement);
    assert_eq!(up.placement.len(), 10, "all ten shares placed");
    assert!(
        up.placement.values().flatten().all(|l| nickname(l) != dead),
        "nothing counted on the killed {dead}: {:?}",
        up.placement
    );
    let files = g.share_files(&up.cap);
    let live: BTreeSet<u16> = files
        .iter()
        .filter(|(node, _)| **node != dead)
        .flat_map(|(_, shares)| shares.iter().map(|(s, _)| *s))
        .collect();
    assert_eq!(live, (0..10).collect(), "on the live nodes: {files:?}");
    assert_eq!(
        gateway.download(&Cap::parse(&up.cap).unwrap()).unwrap(),
        content
    );
    let report = verify(&gateway, &up.cap);
    assert!(report.healthy, "{}", report.summary);
    assert_eq!(report.shares_good, Some(10));
    g.all_up();

    // 2. happy 5 of 5: one node killed mid-upload leaves four: a clear
    // unhappiness error naming it, the other buckets aborted.
    uploader.happy = 5;
    let content = data(len, 72);
    killed.borrow_mut().clear();
    arm(killed.clone());
    let err = uploader
        .upload(&mut std::io::Cursor::new(&content), len as u64)
        .unwrap_err()
        .to_string();
    test_hook::set_after_chunk(None);
    let dead = killed.borrow().clone();
    assert!(
        err.contains("upload unhappy: shares on 4 distinct server(s), 5 needed"),
        "{err}"
    );
    assert!(err.contains(&dead), "the error names {dead}: {err}");
    assert!(!err.contains("URI:"), "{err}");
    // Nothing half-written is left in progress on the live nodes.
    let (enc, _) =
        crate::chk::encode::encode_bytes(&content, &uploader.params, &uploader.convergence)
            .unwrap();
    let si = crate::tahoe::base32::encode(&enc.cap.storage_index());
    for node in NODES.iter().filter(|n| **n != dead) {
        let incoming = g
            .dir
            .join(node)
            .join("storage/shares/incoming")
            .join(&si[..2])
            .join(&si);
        let left: Vec<_> = std::fs::read_dir(&incoming)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{node}: uploads still open: {left:?}");
    }
    // 3. With the node back, the next run completes (what the servers
    // completed is "already have") and the file is healthy.
    g.all_up();
    let up = uploader
        .upload(&mut std::io::Cursor::new(&content), len as u64)
        .unwrap();
    assert_eq!(up.happiness, 5);
    assert_eq!(up.cap, enc.cap.to_uri());
    let report = verify(&gateway, &up.cap);
    assert!(report.healthy, "{}", report.summary);
    assert_eq!(report.shares_good, Some(10));
}
