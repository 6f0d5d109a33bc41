//! Paths of any length. A path longer than [`SHORT`] bytes cannot be
//! handed to the kernel (`PATH_MAX` is 4096 with its NUL), so the
//! directory walks (scan, verify, the restore target) name such entries
//! through a held descriptor of an ancestor: `/proc/self/fd/N/rest`, which
//! the kernel resolves from the descriptor and is short again. A directory
//! opens a descriptor only where the path it hands out would grow past
//! [`SHORT`], so a walk holds about one descriptor per 3 KB of depth, and a
//! tree of ordinary paths uses its paths as before (no extra syscall).
//!
//! Only the 255-byte name limit of the file system remains.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, OnceLock};

use nix::fcntl::{AT_FDCWD, OFlag, openat};
use nix::sys::stat::Mode;

/// Paths at most this long are used as they are: a name (≤ 255 bytes)
/// joined to one still fits in `PATH_MAX`.
pub(crate) const SHORT: usize = 3072;

/// A directory named by a path that is always short enough for the
/// kernel, whatever the length of the real path.
#[derive(Debug)]
pub(crate) struct DirPath {
    /// The usable path: the real one, or one through `held`.
    path: PathBuf,
    /// The descriptor `path` goes through, if any (shared with the
    /// directories below that go through it too).
    held: Option<Arc<OwnedFd>>,
    /// This directory opened (`O_PATH`), once a child's path needed it.
    own: OnceLock<Arc<OwnedFd>>,
}

fn dir_flags() -> OFlag {
    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC
}

fn proc_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Opens the directory `path` (any length; links followed as the kernel
/// would), a chunk of at most [`SHORT`] bytes at a time.
fn open_long(path: &Path) -> io::Result<OwnedFd> {
    let mut fd: Option<OwnedFd> = None;
    let mut chunk = PathBuf::new();
    let flush = |fd: &mut Option<OwnedFd>, chunk: &mut PathBuf| -> io::Result<()> {
        if chunk.as_os_str().is_empty() {
            return Ok(());
        }
        let next = match fd {
            Some(dir) => openat(&*dir, chunk.as_path(), dir_flags(), Mode::empty()),
            None => openat(AT_FDCWD, chunk.as_path(), dir_flags(), Mode::empty()),
        }
        .map_err(io::Error::from)?;
        *fd = Some(next);
        chunk.clear();
        Ok(())
    };
    for component in path.components() {
        let part = component.as_os_str();
        if chunk.as_os_str().len() + 1 + part.len() > SHORT {
            flush(&mut fd, &mut chunk)?;
        }
        match component {
            Component::CurDir => chunk.push("."),
            _ => chunk.push(part),
        }
    }
    if chunk.as_os_str().is_empty() && fd.is_none() {
        chunk.push(".");
    }
    flush(&mut fd, &mut chunk)?;
    fd.ok_or_else(|| io::Error::other("empty path"))
}

impl DirPath {
    /// The directory at `path`, which may be of any length. Its final
    /// component is not resolved here: the path handed out names it in
    /// its (opened) parent, so `lstat` of it still sees a link as a link.
    pub(crate) fn new(path: &Path) -> io::Result<DirPath> {
        if path.as_os_str().len() <= SHORT {
            return Ok(DirPath::plain(path.to_owned(), None));
        }
        match (path.parent(), path.file_name()) {
            (Some(parent), Some(name)) => {
                let fd = Arc::new(open_long(parent)?);
                Ok(DirPath::plain(proc_path(&fd).join(name), Some(fd)))
            }
            // Ends in `..` or `.`: open it whole.
            _ => DirPath::resolve(path),
        }
    }

    /// The directory at `path` (any length), links followed all the way
    /// like `canonicalize`: named through its own descriptor when long.
    /// (`/proc/self/fd/N/.`: `lstat` of the bare magic link would see a
    /// link.)
    pub(crate) fn resolve(path: &Path) -> io::Result<DirPath> {
        if path.as_os_str().len() <= SHORT {
            return Ok(DirPath::plain(path.to_owned(), None));
        }
        let fd = Arc::new(open_long(path)?);
        Ok(DirPath::plain(proc_path(&fd).join("."), Some(fd)))
    }

    fn plain(path: PathBuf, held: Option<Arc<OwnedFd>>) -> DirPath {
        DirPath {
            path,
            held,
            own: OnceLock::new(),
        }
    }

    /// A path naming this directory, short enough for any syscall, and to
    /// which a name (≤ 255 bytes) can be joined.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The path of the entry `name` in this directory (short enough for any
    /// syscall; valid while `self` lives).
    pub(crate) fn entry(&self, name: &OsStr) -> io::Result<PathBuf> {
        Ok(self.base_for(name)?.0.join(name))
    }

    /// The subdirectory `name` of this directory.
    pub(crate) fn child(&self, name: &OsStr) -> io::Result<DirPath> {
        let (base, held) = self.base_for(name)?;
        Ok(DirPath::plain(base.join(name), held))
    }

    /// What to join `name` to: this path, or once that would be too long,
    /// this directory's own descriptor (opened without following a link
    /// swapped in since it was examined).
    fn base_for(&self, name: &OsStr) -> io::Result<(PathBuf, Option<Arc<OwnedFd>>)> {
        if self.path.as_os_str().len() + 1 + name.as_bytes().len() <= SHORT {
            return Ok((self.path.clone(), self.held.clone()));
        }
        let fd = match self.own.get() {
            Some(fd) => fd.clone(),
            None => {
                let fd = openat(
                    AT_FDCWD,
                    self.path.as_path(),
                    dir_flags() | OFlag::O_NOFOLLOW,
                    Mode::empty(),
                )
                .map_err(io::Error::from)?;
                self.own.get_or_init(|| Arc::new(fd)).clone()
            }
        };
        Ok((proc_path(&fd), Some(fd)))
    }
}

/// Symbolic links followed at most while resolving one path (the
/// kernel's own limit, `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// `fs::canonicalize` for a path of any length, and for a resolved path
/// longer than `PATH_MAX` (where `realpath` fails with `ENAMETOOLONG`):
/// the same absolute path, links followed, `.` and `..` removed.
pub(crate) fn canonicalize(path: &Path) -> io::Result<PathBuf> {
    if path.as_os_str().len() <= SHORT {
        match fs::canonicalize(path) {
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENAMETOOLONG as i32) => {}
            other => return other,
        }
    }
    let path = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()?.join(path)
    };
    // Resolved a component at a time, as `realpath` does: `resolved` is
    // canonical so far, so `..` is its parent; a link's target is put in
    // front of what is left.
    let mut todo: Vec<PathBuf> = path
        .components()
        .rev()
        .map(|c| PathBuf::from(c.as_os_str()))
        .collect();
    let mut resolved = PathBuf::from("/");
    let mut links = 0;
    while let Some(part) = todo.pop() {
        match part.as_os_str().as_bytes() {
            b"/" => resolved = PathBuf::from("/"),
            b"." => {}
            b".." => {
                resolved.pop();
            }
            _ => {
                let candidate = resolved.join(&part);
                let at = DirPath::new(&candidate)?;
                let md = fs::symlink_metadata(at.path())?;
                if md.file_type().is_symlink() {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(io::Error::from(nix::errno::Errno::ELOOP));
                    }
                    let target = fs::read_link(at.path())?;
                    todo.extend(
                        target
                            .components()
                            .rev()
                            .map(|c| PathBuf::from(c.as_os_str())),
                    );
                } else {
                    if !md.is_dir() && !todo.is_empty() {
                        return Err(io::Error::from(nix::errno::Errno::ENOTDIR));
                    }
                    resolved = candidate;
                }
            }
        }
    }
    Ok(resolved)
}

/// `fs::create_dir_all` for a path of any length.
pub(crate) fn create_dir_all(path: &Path) -> io::Result<()> {
    if path.as_os_str().len() <= SHORT {
        return fs::create_dir_all(path);
    }
    match DirPath::new(path) {
        Ok(dir) if fs::metadata(dir.path()).is_ok_and(|m| m.is_dir()) => return Ok(()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(parent) = path.parent() {
        create_dir_all(parent)?;
    }
    let dir = DirPath::new(path)?;
    match fs::create_dir(dir.path()) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.path().is_dir() => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain of `depth` directories of 200-byte names under `root`,
    /// made relative to descriptors; returns the full path.
    fn deep(root: &Path, depth: usize) -> PathBuf {
        let name = "n".repeat(200);
        let mut path = root.to_owned();
        for _ in 0..depth {
            path.push(&name);
        }
        create_dir_all(&path).unwrap();
        path
    }

    #[test]
    fn reaches_and_lists_a_chain_longer_than_path_max() {
        let t = tempfile::tempdir().unwrap();
        let bottom = deep(t.path(), 40);
        assert!(bottom.as_os_str().len() > 8000);
        assert!(
            fs::symlink_metadata(&bottom).is_err(),
            "too long for the kernel"
        );
        let dir = DirPath::new(&bottom).unwrap();
        assert!(dir.path().as_os_str().len() <= SHORT + 256);
        assert!(fs::symlink_metadata(dir.path()).unwrap().is_dir());
        let resolved = DirPath::resolve(&bottom).unwrap();
        assert!(fs::symlink_metadata(resolved.path()).unwrap().is_dir());
        fs::write(dir.entry(OsStr::new("f")).unwrap(), b"x").unwrap();
        // Walking down from the top reaches the same file.
        let mut walk = DirPath::new(t.path()).unwrap();
        for _ in 0..40 {
            walk = walk.child(OsStr::new(&"n".repeat(200))).unwrap();
            assert!(walk.path().as_os_str().len() <= SHORT);
        }
        assert_eq!(
            fs::read(walk.entry(OsStr::new("f")).unwrap()).unwrap(),
            b"x"
        );
        // Re-creating is fine.
        create_dir_all(&bottom).unwrap();
    }

    #[test]
    fn canonicalize_follows_links_past_path_max() {
        let t = tempfile::tempdir().unwrap();
        let top = fs::canonicalize(t.path()).unwrap();
        let bottom = deep(&top, 30);
        // A link half way down (a link's target must itself be short), and
        // a short path through it that resolves past PATH_MAX.
        let half: PathBuf = std::iter::repeat_n("n".repeat(200), 15).collect();
        let mid = DirPath::new(&top.join(&half)).unwrap();
        std::os::unix::fs::symlink(&half, mid.entry(OsStr::new("down")).unwrap()).unwrap();
        std::os::unix::fs::symlink(half.join("down"), top.join("link")).unwrap();
        assert_eq!(canonicalize(&top.join("link")).unwrap(), bottom);
        assert_eq!(
            canonicalize(&top.join("link/./x/..")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        fs::write(
            DirPath::new(&bottom)
                .unwrap()
                .entry(OsStr::new("f"))
                .unwrap(),
            b"",
        )
        .unwrap();
        assert_eq!(
            canonicalize(&top.join("link/f/.."))
                .unwrap_err()
                .raw_os_error(),
            Some(20)
        );
        assert_eq!(canonicalize(&top.join("link/f")).unwrap(), bottom.join("f"));
        // A loop is an error, as for the kernel.
        std::os::unix::fs::symlink("loop", top.join("loop")).unwrap();
        assert!(canonicalize(&top.join("loop")).is_err());
        // Short paths resolve as `fs::canonicalize` does.
        assert_eq!(canonicalize(&top.join(".")).unwrap(), top);
        assert_eq!(canonicalize(t.path()).unwrap(), top);
    }

    #[test]
    fn short_paths_stay_as_they_are() {
        let dir = DirPath::new(Path::new("/tmp")).unwrap();
        assert_eq!(dir.path(), Path::new("/tmp"));
        assert_eq!(dir.entry(OsStr::new("x")).unwrap(), Path::new("/tmp/x"));
    }
}
