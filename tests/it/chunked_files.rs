//! Large files chunked in tree backups (issue 15 item 7, `chunking.files`)
//! against the real local grid: a file a rule selects is stored like a
//! stream (its edge marked `"chunked":"v1"`), so a 200 MiB file with 1 MiB
//! rewritten in the middle uploads a few chunks; restore, `verify
//! --content`, `cat`, `ls -l`, `find`, `diff`, `versions` and `mount`
//! treat it as the file it is; `check` (`--repair`, `--leases`), `cleanup`
//! and `cache rebuild` reach its chunks; files below the threshold, and
//! configs without the key, give the same trees as before.

use crate::common;
use crate::mount::{Mounted, fusermount_u};

use std::collections::BTreeSet;
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tempfile::TempDir;

/// Small chunks for the cases that are not about size.
const SMALL_CHUNKING: &str =
    "chunking:\n  min_size: 16384\n  avg_size: 65536\n  max_size: 262144\n";

struct Tree {
    tmp: TempDir,
    url: String,
}

impl Tree {
    fn new(url: &str) -> Tree {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("tree")).unwrap();
        Tree {
            tmp,
            url: url.to_owned(),
        }
    }

    fn src(&self) -> PathBuf {
        self.tmp.path().join("tree")
    }

    /// A config in its own directory `state` (queue, cache), with `extra`.
    fn config(&self, state: &str, extra: &str) -> PathBuf {
        let dir = self.tmp.path().join(state);
        fs::create_dir_all(&dir).unwrap();
        common::write_backup_config(
            &dir,
            &self.src(),
            &self.url,
            &format!("{}{extra}", common::QUICK_RETRY),
        )
    }

    fn lafs(&self, cfg: &Path) -> common::Lafs {
        common::lafs().arg("-c").arg(cfg)
    }
}

/// Writes `len` pseudo-random bytes (seeded) to `path`, 1 MiB at a time.
fn write_random(path: &Path, len: usize, seed: u64) {
    let mut f = fs::File::create(path).unwrap();
    let mut left = len;
    let mut piece = 0u64;
    while left > 0 {
        let n = left.min(1 << 20);
        f.write_all(&common::pseudo_random_bytes(n, seed.wrapping_add(piece)))
            .unwrap();
        left -= n;
        piece += 1;
    }
}

/// Rewrites `len` bytes at `offset` of `path` with other random bytes (the
/// size stays), and moves its mtime on.
fn rewrite(path: &Path, offset: u64, len: usize, seed: u64) {
    let mut f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&common::pseudo_random_bytes(len, seed))
        .unwrap();
    let later = SystemTime::now() + Duration::from_secs(5);
    f.set_times(fs::FileTimes::new().set_modified(later))
        .unwrap();
}

fn child(url: &str, dir: &str, name: &str) -> (String, String, Value) {
    let (_, kind, cap, meta) = common::dir_listing(url, dir)
        .into_iter()
        .find(|c| c.0 == name)
        .unwrap_or_else(|| panic!("no {name}"));
    (kind, cap, meta)
}

/// Whether the files at `a` and `b` hold the same bytes (`cmp`).
fn cmp(a: &Path, b: &Path) -> bool {
    std::process::Command::new("cmp")
        .arg("-s")
        .arg(a)
        .arg(b)
        .status()
        .unwrap()
        .success()
}

/// The 200 MiB case, with the default chunk sizes, on a grid of the test's
/// own so that the gateway's upload counter is this test's alone.
#[test]
fn a_200_mib_file_with_1_mib_rewritten_uploads_a_few_chunks() {
    let grid = common::PrivateGrid::start_fast();
    let t = Tree::new(grid.url());
    let big = t.src().join("disk.img");
    write_random(&big, 200 << 20, 1);
    fs::write(
        t.src().join("notes.txt"),
        common::pseudo_random_bytes(5000, 9),
    )
    .unwrap();
    let cfg = t.config("state", "chunking:\n  files:\n    min_size: 16777216\n");

    let root1 = common::backup_root_cap(&cfg);
    let (kind, chunks1, meta) = child(grid.url(), &root1, "disk.img");
    assert_eq!(kind, "dirnode", "a chunked file is its chunk directory");
    assert_eq!(meta["chunked"], "v1", "{meta}");
    assert_eq!(meta["size"], (200u64 << 20).to_string(), "{meta}");
    assert_eq!(
        meta["mode"].as_str().unwrap().get(..3),
        Some("100"),
        "{meta}"
    );
    let index = common::dir_listing(grid.url(), &chunks1);
    assert_eq!(index[0].0, ".lafs-backup-stream");
    assert_eq!(index[0].3["size"], (200u64 << 20).to_string());
    // Below the threshold: a whole file, as before.
    let (kind, _, meta) = child(grid.url(), &root1, "notes.txt");
    assert_eq!(kind, "filenode");
    assert!(
        meta.get("chunked").is_none() && meta.get("size").is_none(),
        "{meta}"
    );

    // An unchanged file costs nothing on a re-run.
    let before = common::bytes_uploaded(grid.url());
    let again = common::backup_root_cap(&cfg);
    assert_eq!(again, root1);
    assert_eq!(common::bytes_uploaded(grid.url()), before);

    rewrite(&big, 100 << 20, 1 << 20, 77);
    let before = common::bytes_uploaded(grid.url());
    let root2 = common::backup_root_cap(&cfg);
    let sent = common::bytes_uploaded(grid.url()) - before;
    assert_ne!(root2, root1);
    assert!(sent < 8 << 20, "the second backup uploaded {sent} bytes");

    // Restore: the exact bytes and metadata.
    let out = t.tmp.path().join("restored");
    t.lafs(&cfg).args(["restore", "tree"]).arg(&out).ok();
    let restored = out.join("disk.img");
    assert!(cmp(&big, &restored), "the restored file differs");
    let (a, b) = (
        fs::metadata(&big).unwrap(),
        fs::metadata(&restored).unwrap(),
    );
    assert_eq!(
        (a.mode(), a.mtime(), a.mtime_nsec()),
        (b.mode(), b.mtime(), b.mtime_nsec())
    );
    assert!(cmp(&t.src().join("notes.txt"), &out.join("notes.txt")));

    // verify --content: clean.
    let r = t
        .lafs(&cfg)
        .args(["verify", "--content", "tree"])
        .arg(t.src())
        .run();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);

    // cat SELECTOR PATH | cmp
    let catted = t.tmp.path().join("catted");
    let bytes = t
        .lafs(&cfg)
        .args(["cat", "tree", "disk.img"])
        .caps_on_stdout()
        .output();
    assert!(
        bytes.status.success(),
        "{}",
        String::from_utf8_lossy(&bytes.stderr)
    );
    fs::write(&catted, &bytes.stdout).unwrap();
    drop(bytes);
    assert!(cmp(&big, &catted), "cat gave other bytes");

    // ls -l: a file with its size.
    let r = t.lafs(&cfg).args(["ls", "-l", "tree", "disk.img"]).ok();
    let fields: Vec<&str> = r.stdout.split_whitespace().collect();
    assert!(fields[0].starts_with("-rw"), "{}", r.stdout);
    assert_eq!(fields[3], (200u64 << 20).to_string(), "{}", r.stdout);
}

/// The readers and the threshold, with small chunks on the shared grid.
#[test]
fn chunked_files_read_as_files_and_unset_configs_give_the_same_trees() {
    let url = common::gateway_url();
    let t = Tree::new(&url);
    let seed = std::process::id() as u64;
    let big = t.src().join("vm.img");
    write_random(&big, 3 << 20, seed);
    fs::create_dir(t.src().join("sub")).unwrap();
    fs::write(
        t.src().join("sub/small"),
        common::pseudo_random_bytes(70_000, seed + 1),
    )
    .unwrap();
    let rule = "  files:\n    path_filter:\n      - [1048576, '\\.img$']\n";
    let chunked_cfg = t.config("chunked", &format!("{SMALL_CHUNKING}{rule}"));

    // Without the key, and with it where no file qualifies: the same
    // tree, byte for byte (an immutable directory's cap is its content).
    let plain = common::backup_root_cap(&t.config("plain", ""));
    let none_match = common::backup_root_cap(&t.config(
        "none",
        &format!("{SMALL_CHUNKING}  files:\n    min_size: 1073741824\n"),
    ));
    assert_eq!(
        plain, none_match,
        "a config whose rules chunk nothing changed the tree"
    );

    let root1 = common::backup_root_cap(&chunked_cfg);
    let (kind, _, meta) = child(&url, &root1, "vm.img");
    assert_eq!(
        (kind.as_str(), meta["chunked"].as_str()),
        ("dirnode", Some("v1"))
    );
    // The small file's edge is the same as in the plain backup.
    let (_, sub_plain, _) = child(&url, &plain, "sub");
    let (_, sub_chunked, _) = child(&url, &root1, "sub");
    assert_eq!(
        sub_plain, sub_chunked,
        "files below the threshold are stored as before"
    );

    rewrite(&big, 1 << 20, 100_000, seed + 2);
    let root2 = common::backup_root_cap(&chunked_cfg);
    assert_ne!(root1, root2);

    // find: a file with its size, in both backups.
    let r = t
        .lafs(&chunked_cfg)
        .args(["--json", "find", "vm.img", "tree"])
        .run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let found = r.of_type("match");
    assert_eq!(found.len(), 2, "{}", r.stdout);
    for m in &found {
        assert_eq!(m["kind"], "file", "{}", r.stdout);
        assert_eq!(m["size"], 3u64 << 20, "{}", r.stdout);
    }

    // versions: the two versions of the file.
    let r = t
        .lafs(&chunked_cfg)
        .args(["--json", "versions", "tree", "vm.img"])
        .run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let versions = r.of_type("version");
    assert_eq!(versions.len(), 2, "{}", r.stdout);
    assert!(
        versions.iter().all(|v| v["size"] == 3u64 << 20),
        "{}",
        r.stdout
    );

    // diff: the file changed, nothing else.
    let r = t
        .lafs(&chunked_cfg)
        .args(["diff", "tree@1", "tree@2"])
        .run();
    assert!(r.stdout.contains("vm.img"), "{}\n{}", r.stdout, r.stderr);
    assert!(!r.stdout.contains("small"), "{}", r.stdout);

    // verify (metadata and sizes, then content) of the live tree.
    t.lafs(&chunked_cfg)
        .args(["verify", "tree"])
        .arg(t.src())
        .ok();
    t.lafs(&chunked_cfg)
        .args(["verify", "--content", "tree"])
        .arg(t.src())
        .ok();
    // A live change shows up as a content difference.
    rewrite(&big, 2 << 20, 10, seed + 3);
    let r = t
        .lafs(&chunked_cfg)
        .args(["verify", "--content", "tree"])
        .arg(t.src())
        .run();
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("vm.img"), "{}\n{}", r.stdout, r.stderr);

    // Restore of the first version: the bytes of then.
    let out = t.tmp.path().join("restored1");
    t.lafs(&chunked_cfg)
        .args(["restore", "tree@1"])
        .arg(&out)
        .ok();
    let mut then = Vec::new();
    for piece in 0..3u64 {
        then.extend(common::pseudo_random_bytes(1 << 20, seed + piece));
    }
    assert!(
        fs::read(out.join("vm.img")).unwrap() == then,
        "tree@1 restored other bytes"
    );
}

/// Every non-literal cap reachable from `root` by following directories,
/// as `tahoe deep-check` walks them (chunk directories included).
fn tree_objects(url: &str, root: &str) -> BTreeSet<String> {
    let mut all = BTreeSet::from([root.to_owned()]);
    let mut todo = vec![root.to_owned()];
    while let Some(dir) = todo.pop() {
        for (_, kind, cap, _) in common::dir_listing(url, &dir) {
            if kind == "dirnode" && !cap.starts_with("URI:DIR2-LIT:") {
                todo.push(cap.clone());
            }
            all.insert(cap);
        }
    }
    all.retain(|c| !c.starts_with("URI:LIT:") && !c.starts_with("URI:DIR2-LIT:"));
    all
}

/// `check --leases` renews, and `check` finds healthy, every chunk of a
/// chunked file; `cleanup` of one backup keeps the chunks a kept one
/// shares and forgets the rest; `mount` reads the file through its chunks.
#[test]
fn leases_check_cleanup_and_mount_reach_the_chunks() {
    let url = common::gateway_url();
    let t = Tree::new(&url);
    let seed = u64::from(std::process::id()) << 8;
    let big = t.src().join("data.bin");
    write_random(&big, 1 << 20, seed);
    let cfg = t.config(
        "state",
        &format!("{SMALL_CHUNKING}  files:\n    min_size: 100000\n"),
    );
    let r1 = common::backup_root_cap(&cfg);
    rewrite(&big, 500_000, 50_000, seed + 1);
    let r2 = common::backup_root_cap(&cfg);
    let (o1, o2) = (tree_objects(&url, &r1), tree_objects(&url, &r2));
    assert!(o1.len() > 10, "{}", o1.len());
    assert!(
        o1.intersection(&o2).count() >= 5,
        "the versions share chunks"
    );

    common::assert_leases_renew(|| t.lafs(&cfg), &o1, &o2);
    let checked = t.lafs(&cfg).args(["check", "tree"]).run();
    assert_eq!(checked.code, 0, "{}", checked.stderr);

    // mount: the chunked file reads as the file.
    let point = t.tmp.path().join("mnt");
    fs::create_dir(&point).unwrap();
    let m = Mounted::start(&cfg, &point, &["tree"]);
    let mounted = point.join("tree/latest/data.bin");
    let md = fs::metadata(&mounted).unwrap();
    assert!(md.is_file());
    assert_eq!(md.len(), 1 << 20);
    assert!(fs::read(&mounted).unwrap() == fs::read(&big).unwrap());
    m.end(fusermount_u);

    // Forget the first: what the second reaches stays known.
    let cache = t.tmp.path().join("state/cache.sqlite");
    common::assert_cleanup_keeps_shared(|| t.lafs(&cfg), &cache, &r1, &o1, &o2);
    // The kept backup still restores exactly.
    let out = t.tmp.path().join("restored");
    t.lafs(&cfg).args(["restore", "tree"]).arg(&out).ok();
    assert!(cmp(&big, &out.join("data.bin")));
}

/// `cache rebuild` puts a chunked file's chunks back into the content
/// index: after a lost cache, the next backup of the file uploads no chunk
/// and gives the same root.
#[test]
fn a_rebuilt_cache_knows_the_chunks_of_chunked_files() {
    let grid = common::PrivateGrid::start_fast();
    let t = Tree::new(grid.url());
    write_random(&t.src().join("data.bin"), 2 << 20, 5);
    let dir = t.tmp.path().join("state");
    fs::create_dir(&dir).unwrap();
    let extra = format!(
        "  result:\n    append_to_file: '{}'\n{}{SMALL_CHUNKING}  files:\n    min_size: 100000\n",
        dir.join("results").display(),
        common::QUICK_RETRY
    );
    let cfg = common::write_backup_config(&dir, &t.src(), grid.url(), &extra);
    let first = common::backup_root_cap(&cfg);
    for suffix in ["", "-wal", "-shm"] {
        let _ = fs::remove_file(dir.join(format!("cache.sqlite{suffix}")));
    }
    let r = t.lafs(&cfg).args(["--json", "cache", "rebuild"]).run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let summary = &r.of_type("rebuild")[0];
    // Every chunk of 2 MiB cut around 64 KiB, not one whole file.
    assert!(summary["files_hashed"].as_u64().unwrap() >= 8, "{summary}");

    let before = common::bytes_uploaded(grid.url());
    let second = common::backup_root_cap(&cfg);
    let sent = common::bytes_uploaded(grid.url()) - before;
    assert_eq!(second, first);
    assert!(sent < 100_000, "{sent} bytes went up after the rebuild");
}

/// The storage index of `cap` (from the gateway's check of it).
fn storage_index(url: &str, cap: &str) -> String {
    let mut resp = common::http_agent()
        .post(format!(
            "{url}/uri/{}?t=check&output=JSON",
            cap.replace(':', "%3A")
        ))
        .send_empty()
        .unwrap();
    let v: Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    v["storage-index"].as_str().unwrap().to_owned()
}

/// `check` finds a chunk of a chunked file that lost a share, and `check
/// --repair` repairs it (a 2-of-3 grid of the test's own).
#[test]
fn check_repair_reaches_a_damaged_chunk() {
    let grid = common::PrivateGrid::start_3n();
    let t = Tree::new(grid.url());
    write_random(&t.src().join("data.bin"), 400_000, 21);
    let cfg = t.config(
        "state",
        &format!("{SMALL_CHUNKING}  files:\n    min_size: 100000\n"),
    );
    let root = common::backup_root_cap(&cfg);
    let (_, chunks, _) = child(grid.url(), &root, "data.bin");
    let (_, group, _) = child(grid.url(), &chunks, "g00000000");
    let (_, chunk, _) = child(grid.url(), &group, "c00000001");
    let si = storage_index(grid.url(), &chunk);
    let dirs = common::share_dirs(grid.dir(), &si);
    assert_eq!(dirs.len(), 3, "one share on each storage node");
    fs::remove_dir_all(&dirs[0]).unwrap();

    let run = t.lafs(&cfg).args(["check", "tree"]).run();
    assert_eq!(run.code, 4, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("Not Healthy"), "{}", run.stdout);
    assert!(run.stdout.contains("data.bin"), "{}", run.stdout);
    let run = t.lafs(&cfg).args(["check", "--repair", "tree"]).run();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("1 repaired"), "{}", run.stderr);
    let run = t.lafs(&cfg).args(["check", "tree"]).run();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
}
