//! Trees deeper than PATH_MAX, made and read relative to directory
//! descriptors (`mkdirat`, `openat`, `fstatat`, ...): a full path longer
//! than 4096 bytes cannot be handed to the kernel, and the process-wide
//! `set_current_dir` is off limits in tests that run in parallel.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path};

use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat, mkdirat};
use xattr::FileExt as _;

/// Opens the directory `path`, of any length, one component at a time.
pub(crate) fn open_dir(path: &Path) -> OwnedFd {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let mut fd: Option<OwnedFd> = None;
    for component in path.components() {
        let part = match component {
            Component::RootDir => OsStr::new("/"),
            other => other.as_os_str(),
        };
        let next = match &fd {
            Some(dir) => openat(dir, part, flags, Mode::empty()),
            None => openat(AT_FDCWD, part, flags, Mode::empty()),
        }
        .unwrap_or_else(|e| panic!("open {part:?}: {e}"));
        fd = Some(next);
    }
    fd.unwrap_or_else(|| openat(AT_FDCWD, ".", flags, Mode::empty()).unwrap())
}

/// Opens (making it if missing) the directory `name` in `dir`.
pub(crate) fn mkdir_in(dir: &OwnedFd, name: &[u8]) -> OwnedFd {
    let name = OsStr::from_bytes(name);
    match mkdirat(dir, name, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => panic!("mkdir {name:?}: {e}"),
    }
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .unwrap()
}

/// A chain of `depth` directories named `name` below `dir`; the deepest.
pub(crate) fn chain(dir: &OwnedFd, name: &[u8], depth: usize) -> OwnedFd {
    let mut cur = mkdir_in(dir, name);
    for _ in 1..depth {
        cur = mkdir_in(&cur, name);
    }
    cur
}

/// Writes the regular file `name` in `dir`.
pub(crate) fn write_in(dir: &OwnedFd, name: &[u8], content: &[u8]) -> File {
    let fd = openat(
        dir,
        OsStr::from_bytes(name),
        OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let mut file = File::from(fd);
    file.write_all(content).unwrap();
    file
}

/// One entry of a tree, as compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i128,
    /// A file's bytes or a symlink's target.
    pub content: Vec<u8>,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Of a non-directory with more than one link: the first path (in walk
    /// order) of the same inode, else `None`.
    pub same_as: Option<Vec<u8>>,
}

/// Every entry below `root` (of any depth) by relative path, read through
/// descriptors only.
pub(crate) fn walk(root: &Path) -> BTreeMap<Vec<u8>, Entry> {
    let mut out = BTreeMap::new();
    let mut inodes = BTreeMap::new();
    walk_dir(&open_dir(root), Vec::new(), &mut out, &mut inodes);
    out
}

fn kind(st: &FileStat) -> &'static str {
    match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFDIR => "dir",
        SFlag::S_IFLNK => "symlink",
        SFlag::S_IFREG => "file",
        _ => "special",
    }
}

fn xattrs_of(file: &File) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut all: Vec<_> = file
        .list_xattr()
        .unwrap()
        .map(|n| {
            let value = file.get_xattr(&n).unwrap().unwrap_or_default();
            (n.as_bytes().to_vec(), value)
        })
        .collect();
    all.sort();
    all
}

fn walk_dir(
    dir: &OwnedFd,
    rel: Vec<u8>,
    out: &mut BTreeMap<Vec<u8>, Entry>,
    inodes: &mut BTreeMap<(u64, u64), Vec<u8>>,
) {
    let mut names: Vec<Vec<u8>> = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_vec())
        .collect();
    names.sort();
    for name in names {
        let os = OsStr::from_bytes(&name);
        let mut path = rel.clone();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(&name);
        let st = fstatat(dir, os, AtFlags::AT_SYMLINK_NOFOLLOW).unwrap();
        let kind = kind(&st);
        let (content, xattrs, child) = match kind {
            "symlink" => (readlinkat(dir, os).unwrap().into_vec(), Vec::new(), None),
            "file" | "dir" => {
                let flags = if kind == "dir" {
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY
                } else {
                    OFlag::O_RDONLY
                };
                let fd = openat(dir, os, flags | OFlag::O_NOFOLLOW, Mode::empty()).unwrap();
                let file = File::from(fd.as_fd().try_clone_to_owned().unwrap());
                let xattrs = xattrs_of(&file);
                let mut content = Vec::new();
                if kind == "file" {
                    (&file).read_to_end(&mut content).unwrap();
                }
                (content, xattrs, (kind == "dir").then_some(fd))
            }
            _ => (Vec::new(), Vec::new(), None),
        };
        let same_as = (kind != "dir" && st.st_nlink > 1).then(|| {
            inodes
                .entry((st.st_dev, st.st_ino))
                .or_insert_with(|| path.clone())
                .clone()
        });
        out.insert(
            path.clone(),
            Entry {
                kind,
                mode: st.st_mode,
                uid: st.st_uid,
                gid: st.st_gid,
                mtime_ns: i128::from(st.st_mtime) * 1_000_000_000 + i128::from(st.st_mtime_nsec),
                content,
                xattrs,
                same_as,
            },
        );
        if let Some(fd) = child {
            walk_dir(&fd, path, out, inodes);
        }
    }
}
