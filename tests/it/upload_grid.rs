//! The upload phase against real local grids.
//!
//! Backups are read back here only through the gateway (`?t=json` listings
//! and downloads) with code of the test's own, never through the crate's
//! restore or client code, so a bug cannot hide on both sides.

use crate::common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use tempfile::TempDir;

/// A source tree, a config and the state files of one backup setup.
struct Setup {
    tmp: TempDir,
    source: PathBuf,
    config: PathBuf,
    cache: PathBuf,
    queue: PathBuf,
    url: String,
}

impl Setup {
    fn new(url: &str, extra_config: &str) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let source = tmp.path().join("src");
        fs::create_dir(&source).unwrap();
        Self::with_source(tmp, source, url, extra_config)
    }

    /// A setup with state files of its own for an existing source tree.
    fn for_source(source: &Path, url: &str) -> Setup {
        Self::with_source(tempfile::tempdir().unwrap(), source.to_owned(), url, "")
    }

    fn with_source(tmp: TempDir, source: PathBuf, url: &str, extra_config: &str) -> Setup {
        let s = Setup {
            source,
            config: tmp.path().join("cfg.yaml"),
            cache: tmp.path().join("cache.sqlite"),
            queue: tmp.path().join("queue"),
            url: url.to_owned(),
            tmp,
        };
        s.write_config(extra_config);
        s
    }

    fn write_config(&self, extra: &str) {
        fs::write(
            &self.config,
            format!(
                "source:\n  path: '{}'\n  queue:\n    path: '{}'\n  entry_cache:\n    path: '{}'\n\
                 destination:\n  url: '{}/uri'\n{}{extra}",
                self.source.display(),
                self.queue.display(),
                self.cache.display(),
                self.url,
                common::QUICK_RETRY,
            ),
        )
        .unwrap();
    }

    /// `lafs-backup -c CFG [--noise] --json backup ARGS`: (exit code,
    /// summary object if any, stderr).
    fn backup(&self, args: &[&str]) -> (i32, Value, String) {
        let run = common::lafs()
            .arg("-c")
            .arg(&self.config)
            .args(["--noise", "--json", "backup"])
            .args(args)
            .caps_on_stdout()
            .run();
        let summary = run.of_type("summary").pop().unwrap_or(Value::Null);
        (run.code, summary, run.stderr)
    }

    /// `lafs-backup -c CFG backup --queue-only`, which must exit 0.
    fn queue_only(&self) {
        common::lafs()
            .arg("-c")
            .arg(&self.config)
            .args(["backup", "--queue-only"])
            .ok();
    }

    /// A backup that must succeed; returns its summary.
    fn backup_ok(&self) -> Value {
        let (code, summary, stderr) = self.backup(&[]);
        assert_eq!(code, 0, "backup failed:\n{stderr}");
        assert!(
            summary["root_cap"]
                .as_str()
                .is_some_and(|c| c.starts_with("URI:DIR2"))
        );
        summary
    }
}

/// The gateway's upload counters.
fn upload_counters(url: &str) -> (u64, u64) {
    let stats: Value =
        serde_json::from_slice(&common::http_get(&format!("{url}/statistics?t=json"))).unwrap();
    let c = &stats["counters"];
    (
        c["uploader.files_uploaded"].as_u64().unwrap_or(0),
        c["uploader.bytes_uploaded"].as_u64().unwrap_or(0),
    )
}

/// One entry of a backup as the gateway shows it.
#[derive(Debug, Clone)]
struct Node {
    is_dir: bool,
    cap: String,
    meta: Value,
}

/// Where `walk` puts the reserved top-level entry that carries the root's
/// own metadata: a NUL byte can never be part of a real path.
const ROOT_META: &[u8] = b"\0root-meta";

/// Walks a backup tree: raw path (from the edge name, or `name_raw`) → node.
fn walk(url: &str, root: &str) -> BTreeMap<Vec<u8>, Node> {
    let mut out = BTreeMap::new();
    let mut todo = vec![(Vec::new(), root.to_owned())];
    while let Some((prefix, cap)) = todo.pop() {
        let listing: Value =
            serde_json::from_slice(&common::http_get(&format!("{url}/uri/{cap}?t=json"))).unwrap();
        assert_eq!(listing[0], "dirnode");
        for (name, child) in listing[1]["children"].as_object().unwrap() {
            let info = &child[1];
            let meta = info["metadata"].clone();
            let raw = match meta["name_raw"].as_str() {
                Some(b64) => base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap(),
                None => name.as_bytes().to_vec(),
            };
            let mut path = prefix.clone();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&raw);
            if prefix.is_empty() && name == ".lafs-backup-root" {
                path = ROOT_META.to_vec();
            }
            let cap = info["ro_uri"].as_str().unwrap().to_owned();
            let is_dir = child[0] == "dirnode";
            if is_dir {
                todo.push((path.clone(), cap.clone()));
            }
            assert!(out.insert(path, Node { is_dir, cap, meta }).is_none());
        }
    }
    out
}

/// The stored bytes of a file node, decompressed when `enc` says so.
fn content(url: &str, node: &Node) -> Vec<u8> {
    let raw = common::http_get(&format!("{url}/uri/{}", node.cap));
    match node.meta["enc"].as_str() {
        None => raw,
        Some("xz") => {
            let mut out = Vec::new();
            liblzma::read::XzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .unwrap();
            out
        }
        Some("zstd") => {
            let mut out = Vec::new();
            zstd::stream::read::Decoder::new(&raw[..])
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            out
        }
        Some(other) => panic!("unknown enc {other}"),
    }
}

fn raw(name: &[u8]) -> &OsStr {
    OsStr::from_bytes(name)
}

fn mtime_ns(md: &fs::Metadata) -> i128 {
    i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec())
}

/// Every name kind the scan tests use, plus what the upload must take care
/// of: NFC/NFD twins, a real top-level `.lafs-backup-root`, the literal-cap
/// threshold, hard links, special files, xattrs, ACLs and capabilities.
fn hostile_tree(r: &Path) {
    common::hostile_tree(r);
    for (i, name) in ["cafe\u{301}", ".lafs-backup-root"].iter().enumerate() {
        fs::write(r.join(name), format!("more {i}")).unwrap();
    }
    fs::create_dir_all(r.join("a/deep/er")).unwrap();
    fs::write(r.join("a/deep/er/.lafs-backup-root"), b"not at the top").unwrap();
    fs::write(r.join("a/deep/big.txt"), "compressible text\n".repeat(1000)).unwrap();
    fs::write(r.join("empty-file"), b"").unwrap();
    fs::write(r.join("lit55"), [7u8; 55]).unwrap();
    fs::write(r.join("chk56"), [7u8; 56]).unwrap();
    fs::write(r.join("random"), common::pseudo_random_bytes(200_000, 1)).unwrap();
    fs::write(r.join("hard1"), b"hard linked content").unwrap();
    fs::hard_link(r.join("hard1"), r.join("a/hard2")).unwrap();
    fs::write(r.join("xattr-file"), b"x").unwrap();
    xattr::set(r.join("xattr-file"), "user.comment", b"hello \x00\xff").unwrap();
}

/// Every path under `root`, relative, as raw bytes (the root excluded).
fn source_paths(root: &Path) -> Vec<Vec<u8>> {
    fn walk(abs: &Path, rel: &[u8], out: &mut Vec<Vec<u8>>) {
        for entry in fs::read_dir(abs).unwrap() {
            let entry = entry.unwrap();
            let mut path = rel.to_vec();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(entry.file_name().as_bytes());
            if entry.file_type().unwrap().is_dir() {
                walk(&entry.path(), &path, out);
            }
            out.push(path);
        }
    }
    let mut out = Vec::new();
    walk(root, b"", &mut out);
    out.sort();
    out
}

#[test]
fn hostile_tree_reaches_the_grid_with_every_byte_and_bit_of_metadata() {
    let url = common::gateway_url();
    let s = Setup::new(&url, "");
    hostile_tree(&s.source);
    let summary = s.backup_ok();
    let root = summary["root_cap"].as_str().unwrap();
    let tree = walk(&url, root);

    // The root's own metadata rides on the reserved top-level entry.
    let root_md = fs::symlink_metadata(&s.source).unwrap();
    let reserved = &tree[ROOT_META];
    assert_eq!(reserved.cap, "URI:LIT:");
    assert_eq!(reserved.meta["mode"], format!("{:o}", root_md.mode()));
    assert!(reserved.meta.get("name_raw").is_none());

    let expected = source_paths(&s.source);
    // A real top-level `.lafs-backup-root` is stored escaped, with name_raw.
    let listing: Value =
        serde_json::from_slice(&common::http_get(&format!("{url}/uri/{root}?t=json"))).unwrap();
    let escaped = &listing[1]["children"]["\\x2elafs-backup-root"];
    assert_eq!(
        escaped[0], "filenode",
        "the real .lafs-backup-root is stored escaped"
    );
    let mut got: Vec<Vec<u8>> = tree.keys().filter(|p| *p != ROOT_META).cloned().collect();
    got.sort();
    assert_eq!(
        got.iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect::<Vec<_>>(),
        expected
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect::<Vec<_>>(),
        "entries missing or extra"
    );

    for path in &expected {
        let abs = s.source.join(raw(path));
        let md = fs::symlink_metadata(&abs).unwrap();
        let node = &tree[path];
        let name = String::from_utf8_lossy(path);
        let meta = &node.meta;
        assert_eq!(meta["uid"], md.uid().to_string(), "{name}");
        assert_eq!(meta["gid"], md.gid().to_string(), "{name}");
        assert_eq!(meta["mtime_ns"], mtime_ns(&md).to_string(), "{name}");
        assert!(meta["mtime"].is_number(), "{name}");
        let ft = md.file_type();
        if ft.is_symlink() {
            assert!(meta.get("mode").is_none(), "{name}: symlinks carry no mode");
            assert_eq!(
                content(&url, node),
                fs::read_link(&abs).unwrap().as_os_str().as_bytes()
            );
        } else {
            assert_eq!(meta["mode"], format!("{:o}", md.mode()), "{name}");
        }
        assert_eq!(node.is_dir, ft.is_dir(), "{name}");
        if ft.is_file() {
            assert!(
                content(&url, node) == fs::read(&abs).unwrap(),
                "{name}: bytes differ"
            );
            if md.nlink() > 1 {
                assert_eq!(
                    meta["hlink"],
                    format!("{}:{}", md.dev(), md.ino()),
                    "{name}"
                );
            } else {
                assert!(meta.get("hlink").is_none(), "{name}");
            }
        }
        if ft.is_fifo() {
            assert_eq!(node.cap, "URI:LIT:", "{name}");
        }
    }
    let t = |p: &str| &tree[p.as_bytes()];
    assert!(t("lit55").cap.starts_with("URI:LIT:"));
    assert!(t("chk56").cap.starts_with("URI:CHK:"));
    assert_eq!(t("empty-file").cap, "URI:LIT:");
    // The base config's codec, zstd since issue 16.
    assert_eq!(t("a/deep/big.txt").meta["enc"], "zstd");
    assert_eq!(t("a/deep/big.txt").meta["size"], "18000");
    // min_size (5120) selects the random file too, but its content does not
    // compress, so it is stored as it is; small files are never selected.
    assert!(t("random").meta.get("enc").is_none());
    assert!(t("random").meta.get("size").is_none());
    assert!(t("chk56").meta.get("enc").is_none());
    assert_eq!(t("a/hard2").meta["hlink"], t("hard1").meta["hlink"]);
    assert_eq!(
        t("xattr-file").meta["xattrs"]["user.comment"],
        base64::engine::general_purpose::STANDARD.encode(b"hello \x00\xff")
    );
    assert_eq!(t("cap-file").meta["caps"], "cap_net_raw=ep");
    assert_eq!(
        t("acl-file").meta["acls"],
        "u::rw-,u:nobody:rwx,g::r--,m::rwx,o::r--"
    );
    assert_eq!(
        t("acl-file").meta["acl_ids"],
        "u::rw-,u:65534:rwx,g::r--,m::rwx,o::r--"
    );
    assert!(
        t("acl-dir").meta["acls"]
            .as_str()
            .unwrap()
            .contains("d:u:nobody:r-x")
    );
    // NFC and NFD spellings of café are two entries, neither lost.
    assert!(tree.contains_key("caf\u{e9}".as_bytes()));
    assert!(tree.contains_key("cafe\u{301}".as_bytes()));
    assert!(tree[&b"bad\xffutf8"[..]].meta["name_raw"].is_string());
    assert!(t("a-b").meta.get("name_raw").is_none());
    assert_eq!(
        summary["entries"].as_u64().unwrap(),
        expected.len() as u64 + 1
    );
}

#[test]
fn unchanged_rerun_uploads_nothing_and_changes_reupload_only_their_path() {
    let grid = common::PrivateGrid::start_fast();
    let url = grid.url().to_owned();
    let s = Setup::new(&url, "");
    let r = &s.source;
    fs::create_dir_all(r.join("d1/d2")).unwrap();
    // A compressible file too: a re-run must repeat its `enc` on the edge.
    fs::write(
        r.join("d1/text.txt"),
        "some text, over and over\n".repeat(800),
    )
    .unwrap();
    for (i, p) in ["top.bin", "d1/one.bin", "d1/d2/two.bin", "d1/d2/three.bin"]
        .iter()
        .enumerate()
    {
        fs::write(r.join(p), common::pseudo_random_bytes(4000 + i, i as u64)).unwrap();
    }
    let first = s.backup_ok();

    let before = upload_counters(&url);
    let second = s.backup_ok();
    assert_eq!(
        upload_counters(&url),
        before,
        "an unchanged re-run uploaded something"
    );
    assert_eq!(second["root_cap"], first["root_cap"]);
    assert_eq!(second["files_uploaded"], 0);
    assert_eq!(second["dirs_created"], 0);
    assert_eq!(
        second["generation"],
        first["generation"].as_u64().unwrap() + 1
    );

    // Touch one file: its new mtime changes its edge, so its ancestors
    // (d2, d1, root) go up again; its bytes are found on the grid by their
    // hash, so the file itself is not sent again.
    let f = fs::File::options()
        .write(true)
        .open(r.join("d1/d2/two.bin"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    drop(f);
    let before = upload_counters(&url);
    let third = s.backup_ok();
    assert_eq!(third["files_uploaded"], 0);
    assert_eq!(third["content_reused"], 1);
    assert_eq!(third["dirs_created"], 3);
    assert_ne!(third["root_cap"], first["root_cap"]);
    // Three directories went up, and nothing else.
    assert_eq!(upload_counters(&url).0, before.0 + 3);

    // Change one file's bytes: exactly that file and its ancestors go up.
    fs::write(
        r.join("d1/d2/two.bin"),
        common::pseudo_random_bytes(4001, 99),
    )
    .unwrap();
    let before = upload_counters(&url);
    let changed = s.backup_ok();
    assert_eq!(changed["files_uploaded"], 1);
    assert_eq!(changed["dirs_created"], 3);
    assert_eq!(upload_counters(&url).0, before.0 + 4);

    // Rename inside a directory, keeping mtime and size: the new backup
    // shows the new name (the original tool reused the old directory).
    fs::rename(r.join("d1/one.bin"), r.join("d1/renamed.bin")).unwrap();
    let fourth = s.backup_ok();
    let tree = walk(&url, fourth["root_cap"].as_str().unwrap());
    assert!(tree.contains_key(&b"d1/renamed.bin"[..]));
    assert!(!tree.contains_key(&b"d1/one.bin"[..]));
}

#[test]
fn sigkill_during_upload_then_rerun_gives_the_same_tree() {
    let grid = common::PrivateGrid::start_fast();
    let url = grid.url().to_owned();
    let make = |s: &Setup| {
        for d in 0..4 {
            fs::create_dir(s.source.join(format!("dir{d}"))).unwrap();
            for f in 0..25 {
                let bytes = common::pseudo_random_bytes(3000 + 97 * f, (d * 100 + f) as u64);
                fs::write(s.source.join(format!("dir{d}/f{f:02}")), bytes).unwrap();
            }
        }
    };
    // The same tree in another place, backed up without interruption: the
    // mtimes differ, so compare contents instead of root caps below.
    let killed = Setup::new(&url, "");
    make(&killed);

    for delay_ms in [400u64, 900, 1500] {
        let child = common::lafs()
            .arg("-c")
            .arg(&killed.config)
            .args(["--json", "backup"])
            .caps_on_stdout()
            .spawn();
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill();
    }
    // What the killed runs committed to the cache must not go up again.
    let recorded: i64 = rusqlite::Connection::open(&killed.cache)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM objects WHERE kind = 'file'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    // An upload cut off mid-way can block the same content for a while
    // (partial shares on the server): a re-run names those files and exits
    // 3; restarting the storage node clears them.
    let (code, first, stderr) = killed.backup(&[]);
    let resumed = if code == 3 {
        grid.stop_node("gateway");
        grid.start_node("gateway");
        killed.backup_ok()
    } else {
        assert_eq!(code, 0, "{stderr}");
        first.clone()
    };
    let uploaded_again = first["files_uploaded"].as_u64().unwrap_or(0)
        + if code == 3 {
            resumed["files_uploaded"].as_u64().unwrap()
        } else {
            0
        };
    assert!(
        recorded as u64 + uploaded_again <= 100,
        "{recorded} files were recorded, yet the re-run uploaded {uploaded_again} of 100"
    );
    let tree = walk(&url, resumed["root_cap"].as_str().unwrap());
    for d in 0..4 {
        for f in 0..25 {
            let p = format!("dir{d}/f{f:02}");
            assert!(
                content(&url, &tree[p.as_bytes()]) == fs::read(killed.source.join(&p)).unwrap(),
                "{p}: bytes differ"
            );
        }
    }
    assert_eq!(tree.len(), 4 * 25 + 4 + 1);
    // And an uninterrupted run of the same source with a fresh cache gives
    // the very same root cap.
    let fresh = Setup::for_source(&killed.source, &url);
    assert_eq!(fresh.backup_ok()["root_cap"], resumed["root_cap"]);
}

#[test]
fn storage_servers_down_is_a_clear_fatal_error_and_the_next_run_completes() {
    let grid = common::PrivateGrid::start_3n();
    let s = Setup::new(grid.url(), "");
    fs::write(s.source.join("f"), common::pseudo_random_bytes(5000, 9)).unwrap();
    s.backup_ok();
    fs::write(s.source.join("g"), common::pseudo_random_bytes(5000, 10)).unwrap();
    for n in ["storage1", "storage2", "storage3"] {
        grid.stop_node(n);
    }
    let (code, _, stderr) = s.backup(&[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("storage server") || stderr.contains("grid"),
        "{stderr}"
    );
    for n in ["storage1", "storage2", "storage3"] {
        grid.start_node(n);
    }
    s.backup_ok();
}

#[test]
fn a_cache_of_another_grid_is_refused() {
    let s = Setup::new(&common::gateway_url(), "");
    fs::write(
        s.source.join("f"),
        b"some content that is long enough to be a CHK file, really",
    )
    .unwrap();
    s.backup_ok();
    let other = Setup {
        cache: s.cache.clone(),
        ..Setup::for_source(&s.source, &common::gateway_url_3n())
    };
    other.write_config("");
    let (code, _, stderr) = other.backup(&[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("another grid"), "{stderr}");
    let (code, _, stderr) = other.backup(&["--allow-foreign-cache"]);
    assert_ne!(code, 2, "{stderr}");
}

#[test]
fn results_go_to_stdout_file_and_lafs_dir() {
    let url = common::gateway_url();
    let s = Setup::new(&url, "");
    fs::write(s.source.join("f"), b"x").unwrap();
    // A mutable directory to link results into.
    let dircap = common::mkdir_mutable(&url);
    let results = s.tmp.path().join("results.txt");
    common::write_backup_config(
        s.tmp.path(),
        &s.source,
        &url,
        &format!(
            "  result:\n    append_to_file: '{}'\n    append_to_lafs_dir: '{dircap}'\n",
            results.display()
        ),
    );
    let out = common::lafs()
        .arg("-c")
        .arg(&s.config)
        .arg("backup")
        .caps_on_stdout()
        .ok();
    let cap = out.stdout.trim();
    assert!(
        cap.starts_with("URI:DIR2"),
        "stdout holds the root cap alone"
    );
    let line = fs::read_to_string(&results).unwrap();
    assert!(
        line.ends_with(&format!(" {} {cap}\n", s.source.display())),
        "{line}"
    );
    assert_eq!(
        fs::metadata(&results).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(&s.cache).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let listing: Value =
        serde_json::from_slice(&common::http_get(&format!("{url}/uri/{dircap}?t=json"))).unwrap();
    assert_eq!(listing[1]["children"]["src"][1]["ro_uri"], cap);
    // The queue of a completed backup is marked done: the next run scans.
    assert!(s.queue.with_file_name("queue.done").exists());
}

#[test]
fn lost_shares_are_noticed_before_reuse_and_uploaded_again() {
    let grid = common::PrivateGrid::start_fast();
    let url = grid.url().to_owned();
    let s = Setup::new(&url, "");
    fs::write(s.source.join("keep"), common::pseudo_random_bytes(9000, 1)).unwrap();
    fs::write(s.source.join("lose"), common::pseudo_random_bytes(9000, 2)).unwrap();
    let first = s.backup_ok();
    let tree = walk(&url, first["root_cap"].as_str().unwrap());
    let lost = &tree[&b"lose"[..]].cap;
    let mut resp = common::http_agent()
        .post(format!("{url}/uri/{lost}?t=check&output=JSON"))
        .send_empty()
        .unwrap();
    let check: Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    let si = check["storage-index"].as_str().unwrap();
    let dirs = common::share_dirs(grid.dir(), si);
    assert_eq!(dirs.len(), 1, "the share directory of the object");
    fs::remove_dir_all(&dirs[0]).unwrap();

    // With the default reuse_check_days the cache trusts its recent lease.
    // With 0, every reused object is checked first: the lost one goes up
    // again, the others are reused.
    s.write_config("lease:\n  reuse_check_days: 0\n");
    let (code, second, stderr) = s.backup(&[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(second["files_uploaded"], 1, "{stderr}");
    assert!(
        stderr.contains("/lose"),
        "the warning names the file: {stderr}"
    );
    assert_eq!(
        second["root_cap"], first["root_cap"],
        "same content, same caps"
    );
    let restored = content(&url, &tree[&b"lose"[..]]);
    assert!(
        restored == fs::read(s.source.join("lose")).unwrap(),
        "the object is whole again"
    );
}

#[test]
fn disable_deduplication_and_try_resume_work_from_flags() {
    let url = common::gateway_url();
    let s = Setup::new(&url, "");
    for i in 0..3 {
        fs::write(
            s.source.join(format!("f{i}")),
            common::pseudo_random_bytes(3000, 30 + i),
        )
        .unwrap();
    }
    let first = s.backup_ok();
    let (code, again, stderr) = s.backup(&["--disable-deduplication"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(again["files_uploaded"], 3);
    assert_eq!(again["root_cap"], first["root_cap"]);
    // A finished generation is never resumed: -r starts the next one.
    let (code, resumed, stderr) = s.backup(&["-r"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        resumed["generation"],
        again["generation"].as_u64().unwrap() + 1
    );
    assert_eq!(resumed["files_uploaded"], 0);
}

#[test]
fn files_that_vanish_before_upload_are_named_and_the_rest_is_backed_up() {
    let url = common::gateway_url();
    let s = Setup::new(&url, "");
    fs::create_dir(s.source.join("d")).unwrap();
    fs::write(s.source.join("d/stays"), b"stays here").unwrap();
    fs::write(s.source.join("d/goes"), b"goes away").unwrap();
    s.queue_only();
    fs::remove_file(s.source.join("d/goes")).unwrap();
    // The queue's upload never ran: plain `backup` resumes it.
    let (code, summary, stderr) = s.backup(&[]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("/d/goes"), "{stderr}");
    let tree = walk(&url, summary["root_cap"].as_str().unwrap());
    assert!(tree.contains_key(&b"d/stays"[..]));
    assert!(!tree.contains_key(&b"d/goes"[..]));
}

#[test]
fn a_hand_trimmed_queue_uploads_what_it_lists_and_a_broken_one_is_refused() {
    let url = common::gateway_url();
    let s = Setup::new(&url, "");
    fs::create_dir(s.source.join("d")).unwrap();
    fs::write(s.source.join("d/a"), b"a").unwrap();
    fs::write(s.source.join("d/b"), b"b").unwrap();
    fs::write(s.source.join("top"), b"t").unwrap();
    s.queue_only();
    let queue = fs::read_to_string(&s.queue).unwrap();
    let without = |needle: &str| -> String {
        queue
            .lines()
            .filter(|l| !l.starts_with(needle))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    // Deleting a file's line leaves that file out.
    fs::write(&s.queue, without("d/b ")).unwrap();
    let (code, summary, stderr) = s.backup(&["--reuse-queue"]);
    assert_eq!(code, 0, "{stderr}");
    let tree = walk(&url, summary["root_cap"].as_str().unwrap());
    assert!(tree.contains_key(&b"d/a"[..]) && !tree.contains_key(&b"d/b"[..]));
    // Deleting a directory's line orphans its entries: an error naming it.
    fs::write(&s.queue, without("d ")).unwrap();
    let (code, _, stderr) = s.backup(&["--reuse-queue"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("/d") && stderr.contains("line 2"),
        "{stderr}"
    );
    // Lines out of order are refused, naming the line.
    let mut lines: Vec<&str> = queue.lines().collect();
    lines.swap(1, 2);
    fs::write(&s.queue, lines.join("\n") + "\n").unwrap();
    let (code, _, stderr) = s.backup(&["--reuse-queue"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");
}

/// Two backups of the same new content at the same time (two machines with
/// the same files, one grid): the servers hold one upload's shares "in
/// progress" while the other arrives, and the grid refuses the second for a
/// moment. It waits and tries again: both complete, nothing skipped.
#[test]
fn two_backups_of_the_same_new_content_at_once_both_complete() {
    let url = common::gateway_url();
    let tmp = tempfile::tempdir().unwrap();
    let mut configs = Vec::new();
    for side in ["one", "two"] {
        let dir = tmp.path().join(side);
        let src = dir.join("src");
        fs::create_dir_all(&src).unwrap();
        for i in 0..6u64 {
            // Content of this test run alone, the same on both sides.
            let seed = 0x5eed_0000 + i + u64::from(std::process::id()) * 16;
            fs::write(
                src.join(format!("f{i}")),
                common::pseudo_random_bytes(300_000, seed),
            )
            .unwrap();
        }
        configs.push(common::write_backup_config(&dir, &src, &url, ""));
    }
    let children: Vec<_> = configs
        .iter()
        .map(|cfg| {
            common::lafs()
                .arg("-c")
                .arg(cfg)
                .args(["--json", "backup"])
                .caps_on_stdout()
                .spawn()
        })
        .collect();
    for child in children {
        let run = child.wait();
        let stderr = run.stderr;
        assert_eq!(run.code, 0, "{stderr}");
        assert!(!stderr.contains("WARN"), "{stderr}");
    }
}
