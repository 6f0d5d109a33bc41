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

/// The error's message: its context chain joined by `: `, each link once.
/// Many errors quote their source in their own text (`"{what}: {source}"`)
/// and also return it as `source()`, which `{:#}` would print twice.
pub fn message(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Whether the error is only a closed stdout (`lafs-backup ... | head`),
/// which is not a failure of the tool.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("queue file q: {source}")]
    struct Quoting {
        source: std::io::Error,
    }

    #[test]
    fn message_prints_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let err = anyhow::Error::new(Quoting { source: io }).context("backup");
        assert_eq!(message(&err), "backup: queue file q: No such file");
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(message(&plain), "outer: inner");
    }
}
