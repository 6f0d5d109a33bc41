//! Process exit codes: a contract with users' scripts, documented in
//! `docs/exit-codes.md`.

/// What a run of the tool ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Everything asked for was done.
    Success = 0,
    /// The command finished, but some entries were skipped; each was named in
    /// a warning.
    Partial = 3,
    /// The command finished and found problems (unhealthy objects,
    /// differences); each was reported.
    Problems = 4,
}

impl Outcome {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// A fatal error: the command could not do its job.
pub const FATAL: u8 = 1;
/// A usage or configuration error: nothing was attempted.
pub const USAGE: u8 = 2;

/// An error the user can fix by changing the command line or the
/// configuration; nothing was attempted. Exits with [`USAGE`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit code for an error that ended a command.
pub fn code_for(err: &anyhow::Error) -> u8 {
    let usage = err.chain().any(|e| {
        e.is::<UsageError>()
            || e.is::<crate::config::ConfigError>()
            || e.is::<crate::filter::FilterError>()
    });
    if usage { USAGE } else { FATAL }
}

/// Whether the error is only a closed stdout (`lafs-backup ... | head`),
/// which is not a failure of the tool.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
