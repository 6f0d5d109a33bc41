//! `mount` (issue 14, item 7) against the shared fast grid, as root (as CI
//! runs; FUSE through `fusermount3`, Debian's fuse3). The mounted tree is
//! compared with the source by a walk of the test's own (lstat, readlink,
//! xattrs, content hashes), never through the crate's code.

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// One entry of a tree, as compared.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime_ns: i128,
    /// Files and symlinks (a directory's size is the file system's own).
    size: Option<u64>,
    /// A file's content hash, a symlink's target.
    content: Vec<u8>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn walk(root: &Path) -> BTreeMap<Vec<u8>, Entry> {
    let mut out = BTreeMap::new();
    let mut todo = vec![(root.to_owned(), Vec::new())];
    while let Some((path, rel)) = todo.pop() {
        let md = fs::symlink_metadata(&path).unwrap();
        let ft = md.file_type();
        let (kind, size, content) = if ft.is_dir() {
            ("dir", None, Vec::new())
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).unwrap().into_os_string();
            ("symlink", Some(md.len()), target.as_bytes().to_vec())
        } else if ft.is_file() {
            let hash = blake3::hash(&fs::read(&path).unwrap());
            ("file", Some(md.len()), hash.as_bytes().to_vec())
        } else {
            ("special", None, Vec::new())
        };
        let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = xattr::list(&path)
            .map(|l| {
                l.map(|n| {
                    let v = xattr::get(&path, &n).unwrap().unwrap_or_default();
                    (n.as_bytes().to_vec(), v)
                })
                .collect()
            })
            .unwrap_or_default();
        xattrs.sort();
        if ft.is_dir() {
            for e in fs::read_dir(&path).unwrap() {
                let e = e.unwrap();
                let mut r = rel.clone();
                if !r.is_empty() {
                    r.push(b'/');
                }
                r.extend_from_slice(e.file_name().as_bytes());
                todo.push((e.path(), r));
            }
        }
        out.insert(
            rel,
            Entry {
                kind,
                mode: md.mode(),
                uid: md.uid(),
                gid: md.gid(),
                mtime_ns: i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec()),
                size,
                content,
                xattrs,
            },
        );
    }
    out
}

fn compare(source: &Path, mounted: &Path) {
    let a = walk(source);
    let b = walk(mounted);
    let names_a: Vec<_> = a.keys().map(|k| String::from_utf8_lossy(k)).collect();
    let names_b: Vec<_> = b.keys().map(|k| String::from_utf8_lossy(k)).collect();
    assert_eq!(names_a, names_b, "the same names");
    for (name, ea) in &a {
        assert_eq!(
            Some(ea),
            b.get(name),
            "{:?}: source vs mount",
            String::from_utf8_lossy(name)
        );
    }
}

/// A mount in the background: unmounted (lazily, so a failing test never
/// leaves a dangling mount point) and its process ended on drop.
pub(crate) struct Mounted {
    run: Option<common::Running>,
    point: PathBuf,
}

impl Mounted {
    /// `lafs-backup -c CFG --noise mount POINT ARGS`, waiting (at most 60 s)
    /// until the mount shows the backups.
    pub(crate) fn start(cfg: &Path, point: &Path, args: &[&str]) -> Mounted {
        let run = common::lafs()
            .arg("-c")
            .arg(cfg)
            .args(["--noise", "mount"])
            .arg(point)
            .args(args)
            .spawn();
        let mut m = Mounted {
            run: Some(run),
            point: point.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !is_mounted(point) {
            if let Some(status) = m.run.as_mut().and_then(common::Running::try_wait) {
                let run = m.run.take().unwrap().wait();
                panic!("mount exited ({status}) before mounting:\n{}", run.stderr);
            }
            assert!(Instant::now() < deadline, "not mounted after 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        m
    }

    /// Ends the mount with `how` (given the process id and the mount
    /// point), then waits (at most 30 s) for its process to end by itself:
    /// it must exit 0 and leave the mount point an empty directory, not
    /// mounted. Returns what it printed.
    pub(crate) fn end(mut self, how: impl FnOnce(u32, &Path)) -> common::Run {
        let mut run = self.run.take().unwrap();
        how(run.id(), &self.point);
        let deadline = Instant::now() + Duration::from_secs(30);
        while run.try_wait().is_none() {
            assert!(
                Instant::now() < deadline,
                "the mount's process is still running 30 s after it was told to end"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let run = run.wait();
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(!is_mounted(&self.point));
        assert_eq!(fs::read_dir(&self.point).unwrap().count(), 0);
        run
    }
}

/// `fusermount3 -u POINT` (for [`Mounted::end`]), which must work.
pub(crate) fn fusermount_u(_pid: u32, point: &Path) {
    let status = Command::new("fusermount3")
        .arg("-u")
        .arg(point)
        .status()
        .unwrap();
    assert!(status.success(), "fusermount3 -u");
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if is_mounted(&self.point) {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(&self.point)
                .status();
        }
    }
}

/// Whether `point` is a mount point now (`/proc/self/mountinfo`).
fn is_mounted(point: &Path) -> bool {
    let point = fs::canonicalize(point).unwrap();
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .is_some_and(|p| Path::new(p) == point.as_path())
    })
}

fn errno(r: std::io::Result<impl Sized>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

/// Text that zstd compresses well, `len` bytes.
fn text(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!("line {i}: the quick brown fox {}\n", i * 7919 % 1000).as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

#[test]
fn hostile_tree_mounted_matches_the_source_read_only_and_unmounts_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    common::hostile_tree(&src);
    fs::create_dir_all(src.join("deep/er/still")).unwrap();
    fs::write(src.join("deep/er/still/bottom"), b"bottom").unwrap();
    fs::write(src.join("xattr-file"), b"x").unwrap();
    xattr::set(src.join("xattr-file"), "user.one", b"1\0\xff").unwrap();
    // A few MB of compressible text (zstd), and random bytes stored as
    // they are (ranged reads).
    let big = text(6 << 20);
    fs::write(src.join("big.txt"), &big).unwrap();
    let random = common::pseudo_random_bytes(3 << 20, 14);
    fs::write(src.join("random.bin"), &random).unwrap();
    let cfg = common::write_backup_config(
        tmp.path(),
        &src,
        &common::gateway_url(),
        "  encoding:\n    codec: zstd\n    xz:\n      path_filter:\n        - [0, '\\.txt$']\n",
    );
    common::lafs()
        .arg("-c")
        .arg(&cfg)
        .arg("backup")
        .env("LAFS_BACKUP_NOW", "2024-01-07T03:00:00+01:00")
        .caps_on_stdout()
        .ok();
    // The second backup: one more file at the top; `deep` is unchanged
    // (the same directory cap in both).
    fs::write(src.join("second"), b"2").unwrap();
    common::lafs()
        .arg("-c")
        .arg(&cfg)
        .arg("backup")
        .env("LAFS_BACKUP_NOW", "2024-01-08T03:00:00+01:00")
        .caps_on_stdout()
        .ok();

    // A mount point that is not an empty directory: exit 2, naming it.
    let point = tmp.path().join("mnt");
    fs::create_dir(&point).unwrap();
    fs::write(point.join("x"), b"").unwrap();
    let mount = || common::lafs().arg("-c").arg(&cfg).arg("mount").arg(&point);
    let run = mount().code(2);
    assert!(
        run.stderr.contains(&point.display().to_string()),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("not empty"), "{}", run.stderr);
    fs::remove_file(point.join("x")).unwrap();
    // A name without a backup: exit 2.
    let run = mount().arg("no-such-name").code(2);
    assert!(run.stderr.contains("no-such-name"), "{}", run.stderr);

    let m = Mounted::start(&cfg, &point, &["src"]);
    let name_dir = point.join("src");
    let mut listed: Vec<String> = fs::read_dir(&name_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        ["2024-01-07T02:00:00Z", "2024-01-08T02:00:00Z", "latest"]
    );
    assert_eq!(
        fs::read_link(name_dir.join("latest")).unwrap(),
        Path::new("2024-01-08T02:00:00Z"),
        "latest is the newest backup"
    );

    // The newest backup is the source as it is now: every name, type,
    // mode, owner, size, mtime, link target, xattr and content.
    let latest = name_dir.join("2024-01-08T02:00:00Z");
    compare(&src, &latest);
    // The first one has no `second`, and its `deep` is the same tree.
    let first = name_dir.join("2024-01-07T02:00:00Z");
    assert!(!first.join("second").exists());
    assert_eq!(walk(&first.join("deep")), walk(&src.join("deep")));

    // The compressed file in 1 MiB pieces at random offsets.
    let mut f = fs::File::open(latest.join("big.txt")).unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..12 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let at = x % big.len() as u64;
        let want = &big[at as usize..(at as usize + (1 << 20)).min(big.len())];
        let mut got = vec![0u8; want.len()];
        f.seek(SeekFrom::Start(at)).unwrap();
        f.read_exact(&mut got).unwrap();
        assert!(got == want, "big.txt at {at}");
    }
    drop(f);
    // And the stored-as-is one, across chunk boundaries.
    let mut f = fs::File::open(latest.join("random.bin")).unwrap();
    for at in [0u64, (1 << 20) - 10, 2_500_000] {
        let want = &random[at as usize..(at as usize + 100_000).min(random.len())];
        let mut got = vec![0u8; want.len()];
        f.seek(SeekFrom::Start(at)).unwrap();
        f.read_exact(&mut got).unwrap();
        assert!(got == want, "random.bin at {at}");
    }

    // Read-only: every change fails with EROFS.
    const EROFS: i32 = 30;
    assert_eq!(errno(fs::write(latest.join("new"), b"x")), Some(EROFS));
    assert_eq!(
        errno(
            fs::OpenOptions::new()
                .append(true)
                .open(latest.join("big.txt"))
        ),
        Some(EROFS)
    );
    assert_eq!(errno(fs::create_dir(latest.join("d"))), Some(EROFS));
    assert_eq!(errno(fs::remove_file(latest.join("second"))), Some(EROFS));
    assert_eq!(
        errno(fs::rename(latest.join("second"), latest.join("third"))),
        Some(EROFS)
    );
    assert_eq!(
        errno(xattr::set(latest.join("second"), "user.x", b"1")),
        Some(EROFS)
    );

    drop(f);

    // Unmounted from outside: the process ends by itself, exit 0, and the
    // mount point is an empty directory again.
    let run = m.end(fusermount_u);
    // Each directory listed once, though both backups were walked: the
    // unchanged `deep` subtree is the same cap, listed for the first.
    let listings = |suffix: &str| {
        run.stderr
            .lines()
            .filter(|l| l.contains("listing ") && l.contains(&format!("{suffix} (#")))
            .count()
    };
    assert_eq!(listings("/deep"), 1, "{}", run.stderr);
    assert_eq!(listings("/deep/er/still"), 1, "{}", run.stderr);
    assert!(!run.stderr.contains("refused"), "{}", run.stderr);

    // SIGTERM (as Ctrl-C's SIGINT) unmounts and exits 0.
    let m = Mounted::start(&cfg, &point, &[]);
    assert!(point.join("src/latest/a/0").exists());
    m.end(|pid, _| {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    });
}

/// A backup whose tree is hostile (made by hand on the grid and recorded
/// in the cache in place of a real one): names `..`, `a/b`, a raw name
/// `../x`, two entries that decode to the same name. Each is refused (and
/// logged, by its escaped name) and left out; a symlink pointing outside
/// is shown as a symlink, never followed.
#[test]
fn hostile_listing_entries_are_refused_and_left_out() {
    use base64::Engine as _;
    use lafs_backup::{Client, Config};
    use serde_json::json;

    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("hostile");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"f").unwrap();
    let cfg = common::write_backup_config(tmp.path(), &src, &common::gateway_url(), "");
    common::lafs()
        .arg("-c")
        .arg(&cfg)
        .arg("backup")
        .caps_on_stdout()
        .ok();

    let defaults = Config::default();
    let client = Client::new(
        &format!("{}/uri", common::gateway_url()),
        &defaults.http.retry,
        &defaults.operation.timeouts.updates,
    )
    .unwrap();
    let file = client
        .upload_bytes(b"evil content that is longer than fifty-five bytes, so CHK")
        .unwrap();
    let file = file.as_str();
    let outside = client.upload_bytes(b"/etc").unwrap();
    let inner = client
        .mkdir_immutable(
            &json!({"inside": ["filenode", {"ro_uri": file, "metadata": {"mode": "100644"}}]})
                .to_string(),
        )
        .unwrap();
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    let root = client
        .mkdir_immutable(
            &json!({
                "..": ["filenode", {"ro_uri": file, "metadata": {"mode": "100644"}}],
                "a/b": ["filenode", {"ro_uri": file, "metadata": {"mode": "100644"}}],
                "..\\x2fx": ["filenode", {"ro_uri": file, "metadata": {"mode": "100644", "name_raw": b64(b"../x")}}],
                "s": ["filenode", {"ro_uri": outside.as_str(), "metadata": {"uid": "0", "gid": "0"}}],
                "\\x73": ["dirnode", {"ro_uri": inner.as_str(), "metadata": {"mode": "40755", "name_raw": b64(b"s")}}],
                "out": ["filenode", {"ro_uri": outside.as_str(), "metadata": {"uid": "0", "gid": "0"}}],
                "ok": ["filenode", {"ro_uri": file, "metadata": {"mode": "100600"}}],
            })
            .to_string(),
        )
        .unwrap();
    let db = rusqlite::Connection::open(tmp.path().join("cache.sqlite")).unwrap();
    let changed = db
        .execute("UPDATE backups SET root_cap = ?1", [root.as_str()])
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);

    let point = tmp.path().join("mnt");
    fs::create_dir(&point).unwrap();
    let m = Mounted::start(&cfg, &point, &[]);
    let latest = point.join("hostile/latest");
    let mut names: Vec<String> = fs::read_dir(&latest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["ok", "out"]);
    assert_eq!(
        fs::read(latest.join("ok")).unwrap(),
        b"evil content that is longer than fifty-five bytes, so CHK"
    );
    assert!(
        fs::symlink_metadata(latest.join("out"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        fs::read_link(latest.join("out")).unwrap(),
        Path::new("/etc")
    );
    for missing in ["..x", "s", "x", "inside"] {
        assert!(!latest.join(missing).exists(), "{missing}");
    }
    let run = m.end(fusermount_u);
    for name in ["..", "a/b", "..\\\\x2fx", "s", "\\\\x73"] {
        let line = format!("/{name}: refused: ");
        assert!(
            run.stderr.lines().any(|l| l.contains(&line)),
            "{name} not reported:\n{}",
            run.stderr
        );
    }
}
