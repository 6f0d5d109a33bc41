//! One run at a time: an exclusive `flock` on `PATH.lock`, holding our PID.
//!
//! The lock file is never removed: removing it while another process waits
//! on the old inode would let two runs hold "the" lock. The kernel drops the
//! lock when the holder exits, however it exits, so there are no stale
//! locks; a stale PID in an unlocked file is never read.

use std::ffi::OsString;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::CacheError;

/// `PATH.lock` beside the cache file `PATH`.
pub(crate) fn lock_path(db: &Path) -> PathBuf {
    let mut name = OsString::from(db.as_os_str());
    name.push(".lock");
    PathBuf::from(name)
}

/// A held lock; released when dropped.
pub(super) struct LockFile {
    _flock: Flock<File>,
}

impl LockFile {
    /// Takes the lock without waiting, or says who holds it.
    pub(super) fn acquire(db: &Path) -> Result<LockFile, CacheError> {
        let path = lock_path(db);
        let io_err = |action: &str, source: std::io::Error| CacheError::Io {
            path: db.to_owned(),
            action: format!("{action} the lock file {}", path.display()),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            // A symlink planted at the lock's path is refused: following it
            // would truncate its target to our PID.
            .custom_flags((nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_CLOEXEC).bits())
            .open(&path)
            .map_err(|e| io_err("open", crate::queue::refuse_symlink(e)))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(flock) => {
                let mut file: &File = &flock;
                tighten(file).map_err(|e| io_err("set the permissions (0600) of", e))?;
                file.set_len(0)
                    .and_then(|()| writeln!(file, "{}", std::process::id()))
                    .map_err(|e| io_err("write our PID into", e))?;
                Ok(LockFile { _flock: flock })
            }
            Err((mut file, errno)) if errno == Errno::EWOULDBLOCK => {
                // The holder may not have written its PID yet.
                let mut text = String::new();
                let pid = file
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse::<u32>().ok());
                Err(CacheError::Locked {
                    path: db.to_owned(),
                    lock_path: path,
                    pid,
                })
            }
            Err((_, errno)) => Err(io_err("lock", std::io::Error::from(errno))),
        }
    }
}

/// Makes an existing file 0600 if it is readable or writable by others.
pub(super) fn tighten(file: &File) -> std::io::Result<bool> {
    let mode = file.metadata()?.permissions().mode() & 0o777;
    if mode == 0o600 {
        return Ok(false);
    }
    file.set_permissions(Permissions::from_mode(0o600))?;
    Ok(true)
}
