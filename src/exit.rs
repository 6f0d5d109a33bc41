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
