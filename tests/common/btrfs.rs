//! A real btrfs for the tests: a 256 MiB image in a temp dir, formatted
//! with `mkfs.btrfs` (btrfs-progs, installed by `.ci/run`) and loop-mounted.
//! Dropping it unmounts the file system and detaches its loop device, also
//! when the test panicked. Needs root (CI runs as root) and a kernel with
//! loop devices and btrfs; without them the test fails, saying which step
//! did not work.
//!
//! Also here: a subvolume's fixture tree, a change to it, and a file-by-file
//! comparison of two trees with their metadata.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{pseudo_random_bytes, run_tool};

/// Runs a command of the harness; panics with its output if it fails.
fn sh(cmd: &str, args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} cannot run ({e}); .ci/run installs btrfs-progs"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed ({}): {}{}\n(the btrfs tests need root, loop devices \
         and btrfs in the kernel)",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A loop-mounted btrfs of the test's own.
pub(crate) struct LoopBtrfs {
    image: PathBuf,
    mnt: PathBuf,
    // Removed after `Drop::drop` has unmounted the file system.
    _tmp: tempfile::TempDir,
}

impl LoopBtrfs {
    /// A fresh, empty btrfs, mounted.
    pub(crate) fn new() -> LoopBtrfs {
        let tmp = tempfile::Builder::new().prefix("btrfs-").tempdir().unwrap();
        let image = tmp.path().join("btrfs.img");
        let mnt = tmp.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        // Sparse: the image takes only what the file system writes.
        std::fs::File::create(&image)
            .unwrap()
            .set_len(256 << 20)
            .unwrap();
        sh("mkfs.btrfs", &["-q".as_ref(), image.as_os_str()]);
        let fs = LoopBtrfs {
            image,
            mnt,
            _tmp: tmp,
        };
        // From here on, `fs` is dropped (unmounted) whatever happens.
        sh(
            "mount",
            &[
                "-o".as_ref(),
                "loop".as_ref(),
                fs.image.as_os_str(),
                fs.mnt.as_os_str(),
            ],
        );
        fs
    }

    /// The mount point: the file system's top-level subvolume.
    pub(crate) fn mnt(&self) -> &Path {
        &self.mnt
    }

    /// A new subvolume `name` at the top level; returns its path.
    pub(crate) fn subvolume(&self, name: &str) -> PathBuf {
        let path = self.mnt.join(name);
        sh(
            "btrfs",
            &["subvolume".as_ref(), "create".as_ref(), path.as_os_str()],
        );
        path
    }

    /// A plain directory `name` at the top level; returns its path.
    pub(crate) fn dir(&self, name: &str) -> PathBuf {
        let path = self.mnt.join(name);
        std::fs::create_dir(&path).unwrap();
        path
    }
}

impl Drop for LoopBtrfs {
    fn drop(&mut self) {
        // `mount -o loop` sets the loop device to detach itself on
        // unmount; detach explicitly too, in case it did not (a busy
        // unmount falls back to a lazy one, which detaches when released).
        let unmounted = Command::new("umount")
            .arg(&self.mnt)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        if let Ok(out) = Command::new("losetup").arg("-j").arg(&self.image).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if let Some((dev, _)) = line.split_once(':') {
                    let _ = Command::new("losetup").arg("-d").arg(dev).status();
                }
            }
        }
    }
}

/// Sets a path's mtime (not following a symlink) to `when`, as `touch -d`
/// reads it, e.g. `2000-01-01 00:00:00.123456789 UTC`.
fn set_mtime(path: &Path, when: &str) {
    run_tool(
        "touch",
        &[
            "-h".as_ref(),
            "-m".as_ref(),
            "-d".as_ref(),
            when.as_ref(),
            path.as_os_str(),
        ],
    );
}

fn chown(path: &Path, uid: u32, gid: u32) {
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        path,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The fixture tree in `root`: text and binary (4 MiB, incompressible)
/// files, an empty file, nested directories, a symlink, a hard link, a
/// fifo, odd modes (setuid, 0640), other owners, xattrs on a file and a
/// directory, and mtimes with nanoseconds. Directory mtimes are set last.
pub(crate) fn populate(root: &Path) {
    std::fs::write(root.join("a.txt"), b"alpha\n").unwrap();
    std::fs::write(root.join("bin"), pseudo_random_bytes(4 << 20, 15)).unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    std::fs::create_dir_all(root.join("dir/sub")).unwrap();
    std::fs::write(root.join("dir/sub/deep.txt"), b"deep\n").unwrap();
    std::fs::hard_link(root.join("a.txt"), root.join("dir/hard")).unwrap();
    symlink("a.txt", root.join("link")).unwrap();
    run_tool("mkfifo", &[root.join("fifo").as_os_str()]);
    std::fs::write(root.join("setuid"), b"#!/bin/sh\n").unwrap();
    chmod(&root.join("setuid"), 0o4755);
    chmod(&root.join("a.txt"), 0o640);
    chown(&root.join("dir/sub/deep.txt"), 1234, 5678);
    chown(&root.join("link"), 4321, 8765);
    xattr::set(root.join("a.txt"), "user.color", b"blue").unwrap();
    xattr::set(root.join("dir"), "user.note", b"a directory").unwrap();
    for (i, p) in ["a.txt", "bin", "empty", "dir/sub/deep.txt", "link", "fifo"]
        .iter()
        .enumerate()
    {
        set_mtime(
            &root.join(p),
            &format!("2000-01-01 00:00:0{i}.12345678{i} UTC"),
        );
    }
    for p in ["dir/sub", "dir", ""] {
        set_mtime(&root.join(p), "2000-01-01 01:00:00.5 UTC");
    }
}

/// A day's changes to the [`populate`]d tree: content appended (through
/// the hard link too), 4 KiB rewritten in the middle of `bin`, a rename, a
/// deletion, a new file, a new mode and owner, an xattr changed and one
/// removed, new mtimes.
pub(crate) fn change(root: &Path) {
    use std::io::{Seek, SeekFrom, Write};
    let mut a = std::fs::OpenOptions::new()
        .append(true)
        .open(root.join("a.txt"))
        .unwrap();
    a.write_all(b"beta\n").unwrap();
    drop(a);
    let mut bin = std::fs::OpenOptions::new()
        .write(true)
        .open(root.join("bin"))
        .unwrap();
    bin.seek(SeekFrom::Start(2 << 20)).unwrap();
    bin.write_all(&pseudo_random_bytes(4096, 16)).unwrap();
    drop(bin);
    std::fs::rename(root.join("dir/sub"), root.join("dir/moved")).unwrap();
    std::fs::remove_file(root.join("empty")).unwrap();
    std::fs::write(root.join("new.txt"), b"new\n").unwrap();
    chmod(&root.join("setuid"), 0o700);
    chown(&root.join("a.txt"), 1000, 1000);
    xattr::set(root.join("a.txt"), "user.color", b"green").unwrap();
    xattr::remove(root.join("dir"), "user.note").unwrap();
    for p in ["a.txt", "bin", "new.txt"] {
        set_mtime(&root.join(p), "2000-01-07 00:00:00.7 UTC");
    }
    for p in ["dir/moved", "dir", ""] {
        set_mtime(&root.join(p), "2000-01-07 01:00:00.25 UTC");
    }
}

/// What the comparison sees of one entry.
#[derive(Debug, PartialEq)]
pub(crate) struct Seen {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    mtime: (i64, i64),
    /// A regular file's content hash, or a symlink's target.
    content: String,
    xattrs: BTreeMap<OsString, Vec<u8>>,
}

/// Every entry under `root` (itself as `""`) with its metadata: kind,
/// mode, owner, link count, mtime to the nanosecond, content, xattrs.
pub(crate) fn tree(root: &Path) -> BTreeMap<PathBuf, Seen> {
    let mut out = BTreeMap::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let path = root.join(&rel);
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let t = meta.file_type();
        let (kind, content) = if t.is_file() {
            (
                "file",
                blake3::hash(&std::fs::read(&path).unwrap()).to_string(),
            )
        } else if t.is_symlink() {
            let target = std::fs::read_link(&path).unwrap();
            ("symlink", target.display().to_string())
        } else if t.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                todo.push(rel.join(entry.unwrap().file_name()));
            }
            ("dir", String::new())
        } else {
            ("other", String::new())
        };
        let xattrs = if t.is_symlink() {
            BTreeMap::new()
        } else {
            xattr::list(&path)
                .unwrap()
                .map(|name| {
                    let value = xattr::get(&path, &name).unwrap().unwrap_or_default();
                    (name, value)
                })
                .collect()
        };
        out.insert(
            rel,
            Seen {
                kind,
                mode: meta.mode(),
                uid: meta.uid(),
                gid: meta.gid(),
                nlink: meta.nlink(),
                mtime: (meta.mtime(), meta.mtime_nsec()),
                content,
                xattrs,
            },
        );
    }
    out
}

/// `a` and `b` hold the same tree, entry by entry with metadata.
pub(crate) fn assert_same_tree(a: &Path, b: &Path) {
    let (ta, tb) = (tree(a), tree(b));
    assert_eq!(
        ta.keys().collect::<Vec<_>>(),
        tb.keys().collect::<Vec<_>>(),
        "the same entries in {} and {}",
        a.display(),
        b.display()
    );
    for (rel, seen) in &ta {
        assert_eq!(
            Some(seen),
            tb.get(rel),
            "{} differs between {} and {}",
            rel.display(),
            a.display(),
            b.display()
        );
    }
}
