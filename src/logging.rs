//! Log output on stderr.
//!
//! Levels, from quiet to loud: error, warning (the default), info, debug and
//! noise (one line per entry). Capabilities never reach the log at any
//! level: code that logs names paths, and a short hash where an object must
//! be named.

use tracing::Level;

/// Installs the global subscriber. Safe to call once per process.
pub(crate) fn init(level: Level) {
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .with_writer(crate::progress::LogWriter)
        .with_ansi(false)
        .finish();
    // A second call (as in tests driving the library twice) keeps the first.
    let _ = tracing::subscriber::set_global_default(subscriber);
}
