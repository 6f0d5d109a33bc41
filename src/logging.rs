//! Log output on stderr, and appended to `logging.file` when one is set.
//!
//! Levels, from quiet to loud: error, warning (the default), info, debug and
//! noise (one line per entry). Capabilities never reach the log at any
//! level: code that logs names paths, and a short hash where an object must
//! be named. The log file gets the same lines as stderr, so it holds no
//! capability either.

use std::fs::{File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing::Level;
use tracing_subscriber::fmt::writer::MakeWriterExt;

/// `logging.file` could not be opened for appending.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LogFileError {
    /// The path is a symbolic link: following it could let whoever planted
    /// it make us append to (and chmod) a file of their choosing.
    #[error("logging.file {}: is a symbolic link; refusing to follow it", .0.display())]
    Symlink(PathBuf),
    /// Something other than a regular file is there.
    #[error("logging.file {}: not a regular file", .0.display())]
    NotAFile(PathBuf),
    /// Opening or restricting the file failed.
    #[error("logging.file {}: {source}", path.display())]
    Io {
        /// The configured path.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
}

/// Opens `path` for appending: created if missing, never through a symlink
/// (`O_NOFOLLOW`), and mode 0600 whatever the umask, also when it already
/// existed with a wider mode (log lines name paths of the backed-up tree).
pub(crate) fn open_log_file(path: &Path) -> Result<File, LogFileError> {
    let io_err = |source| LogFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        // O_NONBLOCK: a FIFO planted at the path must not hang the run in
        // open(); it is refused below as not a regular file.
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(nix::libc::ELOOP) {
                LogFileError::Symlink(path.to_path_buf())
            } else {
                io_err(e)
            }
        })?;
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(LogFileError::NotAFile(path.to_path_buf()));
    }
    file.set_permissions(Permissions::from_mode(0o600))
        .map_err(io_err)?;
    Ok(file)
}

/// Installs the global subscriber, logging to stderr and, with `file`, to
/// that file too. Safe to call once per process.
pub(crate) fn init(level: Level, file: Option<File>) {
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .with_ansi(false);
    // A second call (as in tests driving the library twice) keeps the first.
    let _ = match file {
        Some(file) => tracing::subscriber::set_global_default(
            builder
                .with_writer(crate::progress::LogWriter.and(Mutex::new(file)))
                .finish(),
        ),
        None => tracing::subscriber::set_global_default(
            builder.with_writer(crate::progress::LogWriter).finish(),
        ),
    };
}
