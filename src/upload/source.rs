//! Reading the source tree like restore writes the target: every entry is
//! reached from a held descriptor of the source root, one `openat` per
//! directory component with `O_DIRECTORY | O_NOFOLLOW`, and files are opened
//! with `O_NOFOLLOW`. A directory swapped for a symlink between the scan and
//! the upload (or a queue edited to point through one) fails before a byte
//! is read: nothing outside `source.path` is read, uploaded or cached.
//!
//! The queue is post-order with siblings together, so the chain of open
//! directories is mostly reused from one entry to the next: one `openat`
//! per new directory, not per entry.

use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, openat, readlinkat};
use nix::sys::stat::Mode;

/// The source root and the directories below it opened last.
pub(super) struct SourceTree {
    root: PathBuf,
    root_fd: OwnedFd,
    /// The directories from the root down, each with its path relative to
    /// the root (`a`, `a/b`, ...). Only the deepest [`MAX_HELD`] keep their
    /// descriptor open (`None` above them), so a deep tree cannot run out of
    /// descriptors.
    chain: Vec<(Vec<u8>, Option<OwnedFd>)>,
    /// Whether `/proc/self/fd` is there (looked up once).
    proc_fd: bool,
}

/// Directory descriptors held at most: a tree deeper than this reopens the
/// chain from the root when it climbs more than this many levels at once.
const MAX_HELD: usize = 128;

fn errno(e: nix::errno::Errno) -> io::Error {
    io::Error::from(e)
}

/// The error for a path component that is no longer a real directory.
fn swapped(component: &[u8], e: nix::errno::Errno) -> io::Error {
    use nix::errno::Errno;
    match e {
        Errno::ELOOP | Errno::ENOTDIR => io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "its parent directory {:?} is no longer a directory (replaced by a symlink or \
                 a file since the scan); nothing beneath it is read",
                String::from_utf8_lossy(component)
            ),
        ),
        other => errno(other),
    }
}

impl SourceTree {
    /// Opens the source root, the trust anchor: the path the user named
    /// (the scan has refused a root that is a symlink).
    pub(super) fn open(root: &Path) -> io::Result<SourceTree> {
        // A root longer than PATH_MAX is opened a chunk at a time.
        let root_fd = File::open(crate::scan::longpath::DirPath::resolve(root)?.path())?;
        if !root_fd.metadata()?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "it is not a directory",
            ));
        }
        Ok(SourceTree {
            root: root.to_owned(),
            root_fd: root_fd.into(),
            chain: Vec::new(),
            proc_fd: Path::new("/proc/self/fd").is_dir(),
        })
    }

    /// The held descriptor of the directory `dir` (relative; empty for the
    /// root), opening what is missing of the chain without following links.
    fn dir(&mut self, dir: &[u8]) -> io::Result<BorrowedFd<'_>> {
        if dir.is_empty() {
            return Ok(self.root_fd.as_fd());
        }
        // Keep the longest prefix of the chain that leads to `dir`.
        let keep = self
            .chain
            .iter()
            .take_while(|(prefix, _)| {
                dir.starts_with(prefix)
                    && (dir.len() == prefix.len() || dir.get(prefix.len()) == Some(&b'/'))
            })
            .count();
        self.chain.truncate(keep);
        // Released descriptors are all above the held ones: without one at
        // the end, the walk starts again from the root.
        if self.chain.last().is_some_and(|(_, fd)| fd.is_none()) {
            self.chain.clear();
        }
        let done = self.chain.last().map_or(0, |(p, _)| p.len() + 1);
        if done <= dir.len() {
            for component in dir[done..].split(|&b| b == b'/') {
                let parent = match self.chain.last() {
                    Some((_, Some(fd))) => fd.as_fd(),
                    _ => self.root_fd.as_fd(),
                };
                let fd = openat(
                    parent,
                    OsStr::from_bytes(component),
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| swapped(component, e))?;
                let prefix_len =
                    self.chain.last().map_or(0, |(p, _)| p.len() + 1) + component.len();
                self.chain.push((dir[..prefix_len].to_vec(), Some(fd)));
                if let Some(old) = self.chain.len().checked_sub(MAX_HELD + 1) {
                    self.chain[old].1 = None;
                }
            }
        }
        Ok(match self.chain.last() {
            Some((_, Some(fd))) => fd.as_fd(),
            _ => self.root_fd.as_fd(),
        })
    }

    /// `lstat` of the entry at `path` (relative, not the root), through the
    /// held directory chain: an `O_PATH | O_NOFOLLOW` descriptor's status.
    pub(super) fn lstat(&mut self, path: &[u8]) -> io::Result<Metadata> {
        let (parent, name) = super::split_path(path);
        let dir = self.dir(parent)?;
        let fd = openat(
            dir,
            OsStr::from_bytes(name),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        File::from(fd).metadata()
    }

    /// Opens the regular file at `path` for reading without following a
    /// link, and checks that it is the file `md` describes (same inode).
    pub(super) fn open_file(&mut self, path: &[u8], md: &Metadata) -> io::Result<File> {
        use std::os::unix::fs::MetadataExt;
        let (parent, name) = super::split_path(path);
        let dir = self.dir(parent)?;
        let fd = openat(
            dir,
            OsStr::from_bytes(name),
            // O_NONBLOCK: a fifo swapped in must not block the open.
            OFlag::O_RDONLY
                | OFlag::O_NOFOLLOW
                | OFlag::O_CLOEXEC
                | OFlag::O_NOCTTY
                | OFlag::O_NONBLOCK,
            Mode::empty(),
        )
        .map_err(|e| {
            if e == nix::errno::Errno::ELOOP {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "it was replaced by a symlink since the scan",
                )
            } else {
                errno(e)
            }
        })?;
        let file = File::from(fd);
        let now = file.metadata()?;
        if !now.is_file() || now.ino() != md.ino() || now.dev() != md.dev() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "it was replaced by another file since it was examined",
            ));
        }
        // Reads block as usual from here on.
        nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETFL(OFlag::empty())).map_err(errno)?;
        Ok(file)
    }

    /// The target of the symlink at `path`.
    pub(super) fn read_link(&mut self, path: &[u8]) -> io::Result<Vec<u8>> {
        let (parent, name) = super::split_path(path);
        let dir = self.dir(parent)?;
        Ok(readlinkat(dir, OsStr::from_bytes(name))
            .map_err(errno)?
            .into_vec())
    }

    /// A path naming the entry at `path` through the held descriptor of its
    /// directory (`/proc/self/fd/N/NAME`), for calls that only take paths
    /// and do not follow a final link (`lgetxattr`). Valid only until the
    /// next call on this tree. Without `/proc`, the plain path.
    pub(super) fn fd_path(&mut self, path: &[u8]) -> io::Result<PathBuf> {
        if path.is_empty() {
            // `.` in the held root: short whatever the root's length, and
            // the root itself (not the magic link) for `lgetxattr`.
            if self.proc_fd {
                return Ok(PathBuf::from(format!(
                    "/proc/self/fd/{}/.",
                    self.root_fd.as_raw_fd()
                )));
            }
            return Ok(self.root.clone());
        }
        let (parent, name) = super::split_path(path);
        let proc_fd = self.proc_fd;
        let fd = self.dir(parent)?.as_raw_fd();
        if proc_fd {
            Ok(PathBuf::from(format!("/proc/self/fd/{fd}")).join(OsStr::from_bytes(name)))
        } else {
            Ok(self.root.join(OsStr::from_bytes(path)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    #[test]
    fn swapped_directories_are_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("src");
        let outside = t.path().join("outside");
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(root.join("a/b/f"), b"inside").unwrap();
        fs::write(outside.join("f"), b"secret").unwrap();
        let mut tree = SourceTree::open(&root).unwrap();
        let md = tree.lstat(b"a/b/f").unwrap();
        let mut text = String::new();
        tree.open_file(b"a/b/f", &md)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "inside");
        assert!(tree.lstat(b"a/b").unwrap().is_dir());

        // `a/b` becomes a symlink to the outside directory.
        fs::rename(root.join("a/b"), t.path().join("moved")).unwrap();
        symlink(&outside, root.join("a/b")).unwrap();
        let mut tree = SourceTree::open(&root).unwrap();
        let err = tree.lstat(b"a/b/f").unwrap_err();
        assert!(err.to_string().contains("no longer a directory"), "{err}");
        let err = tree.open_file(b"a/b/f", &md).unwrap_err();
        assert!(err.to_string().contains("no longer a directory"), "{err}");
        assert!(tree.lstat(b"a/b").unwrap().file_type().is_symlink());
        assert_eq!(
            tree.read_link(b"a/b").unwrap(),
            outside.as_os_str().as_bytes()
        );

        // A file swapped for a symlink is refused too.
        fs::write(root.join("g"), b"g").unwrap();
        let gmd = tree.lstat(b"g").unwrap();
        fs::remove_file(root.join("g")).unwrap();
        symlink(outside.join("f"), root.join("g")).unwrap();
        assert!(tree.open_file(b"g", &gmd).is_err());
    }

    #[test]
    fn deep_trees_hold_a_bounded_number_of_descriptors() {
        let t = tempfile::tempdir().unwrap();
        let depth = MAX_HELD * 2 + 10;
        let rel: Vec<u8> = vec!["d"; depth].join("/").into_bytes();
        fs::create_dir_all(t.path().join(OsStr::from_bytes(&rel))).unwrap();
        let file = [&rel[..], b"/f"].concat();
        fs::write(t.path().join(OsStr::from_bytes(&file)), b"deep").unwrap();
        let mut tree = SourceTree::open(t.path()).unwrap();
        // Post-order: the deepest first, then each ancestor, then deep again.
        let md = tree.lstat(&file).unwrap();
        assert!(tree.chain.iter().filter(|(_, fd)| fd.is_some()).count() <= MAX_HELD);
        for level in (1..depth).rev() {
            let dir = &rel[..level * 2 - 1];
            assert!(tree.lstat(dir).unwrap().is_dir(), "{level}");
        }
        let mut text = String::new();
        tree.open_file(&file, &md)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "deep");
        assert!(tree.chain.iter().filter(|(_, fd)| fd.is_some()).count() <= MAX_HELD);
    }

    #[test]
    fn the_chain_follows_the_queue_order() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        for d in ["a/x", "a/y", "b"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        for f in ["a/x/1", "a/y/2", "b/3", "4"] {
            fs::write(root.join(f), f).unwrap();
        }
        let mut tree = SourceTree::open(root).unwrap();
        for f in ["a/x/1", "a/y/2", "b/3", "4", "a/x/1"] {
            let md = tree.lstat(f.as_bytes()).unwrap();
            let mut text = String::new();
            tree.open_file(f.as_bytes(), &md)
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            assert_eq!(text, f);
        }
        assert!(tree.fd_path(b"a/x/1").unwrap().exists());
    }
}
