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
    /// The process exit code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// A fatal error: the command could not do its job.
pub(crate) const FATAL: u8 = 1;
/// A usage or configuration error: nothing was attempted.
pub(crate) const USAGE: u8 = 2;

/// Every exit code and what it means, in code order: the `code` and
/// `meaning` columns of the table in `docs/exit-codes.md`, which a unit test
/// holds to this list (the doc's third column, the examples, is prose).
/// Only that test reads it: the code maps errors with [`code_for`].
#[cfg(test)]
pub(crate) const CODES: [(u8, &str); 5] = [
    (
        Outcome::Success as u8,
        "success: everything asked for was done",
    ),
    (FATAL, "fatal error: the command could not do its job"),
    (USAGE, "usage or configuration error: nothing was attempted"),
    (
        Outcome::Partial as u8,
        "finished, but some entries were skipped or incomplete",
    ),
    (
        Outcome::Problems as u8,
        "the command finished and found problems",
    ),
];

/// An error the user can fix by changing the command line or the
/// configuration; nothing was attempted. Exits with [`USAGE`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub String);

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

    const DOC: &str = include_str!("../docs/exit-codes.md");

    /// The `code` and `meaning` cells of each row of the doc's table.
    fn doc_table() -> Vec<(String, String)> {
        let lines = DOC
            .lines()
            .skip_while(|l| !l.starts_with("| code | meaning |"))
            .skip(2); // the header and its `| --- |` line
        let mut rows = Vec::new();
        for line in lines.take_while(|l| l.starts_with('|')) {
            let mut cells = line.trim_start_matches('|').split('|').map(str::trim);
            let code = cells.next().unwrap_or_default().to_owned();
            let meaning = cells.next().unwrap_or_default().to_owned();
            rows.push((code, meaning));
        }
        assert!(
            !rows.is_empty(),
            "docs/exit-codes.md has no `| code | meaning |` table"
        );
        rows
    }

    #[test]
    fn doc_table_matches_codes() {
        let code: Vec<(String, String)> = CODES
            .iter()
            .map(|(c, m)| (c.to_string(), (*m).to_owned()))
            .collect();
        assert_eq!(
            doc_table(),
            code,
            "docs/exit-codes.md and exit::CODES differ: a contract changes in both or in neither"
        );
    }

    #[test]
    fn codes_cover_every_exit() {
        // An exhaustive match: a new `Outcome` does not compile here until
        // it is placed in CODES (and so in the doc).
        let listed = |o: Outcome| match o {
            Outcome::Success | Outcome::Partial | Outcome::Problems => {
                CODES.iter().any(|(c, _)| *c == o.code())
            }
        };
        assert!(
            [Outcome::Success, Outcome::Partial, Outcome::Problems]
                .into_iter()
                .all(listed)
        );
        assert!(CODES.iter().any(|(c, _)| *c == FATAL));
        assert!(CODES.iter().any(|(c, _)| *c == USAGE));
        let mut codes: Vec<u8> = CODES.iter().map(|(c, _)| *c).collect();
        codes.dedup();
        assert!(codes.is_sorted() && codes.len() == CODES.len(), "{codes:?}");
    }

    /// `--help` names each code in a few words: they must be the doc's
    /// meaning, shortened (its words in order, some left out), for the same
    /// codes in the same order.
    #[test]
    fn help_names_the_same_codes() {
        use clap::CommandFactory as _;
        let help = crate::cli::Cli::command()
            .get_long_about()
            .map(|s| s.to_string())
            .unwrap_or_default();
        let sentence = help
            .split_once("Exit codes: ")
            .map(|(_, rest)| rest.split(". ").next().unwrap_or_default())
            .unwrap_or_default();
        let words = |s: &str| -> Vec<String> {
            s.split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let in_order = |short: &[String], long: &[String]| {
            let mut long = long.iter();
            short.iter().all(|w| long.any(|l| l == w))
        };
        let named: Vec<(String, String)> = sentence
            .split(", ")
            .map(|item| {
                // "3 finished but ... (each is named in a warning)"
                let item = item.split(" (").next().unwrap_or_default();
                let (code, name) = item.split_once(' ').unwrap_or((item, ""));
                (code.to_owned(), name.to_owned())
            })
            .collect();
        assert_eq!(
            named.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>(),
            CODES.iter().map(|(c, _)| c.to_string()).collect::<Vec<_>>(),
            "the exit codes in --help: {sentence:?}"
        );
        for ((code, name), (_, meaning)) in named.iter().zip(CODES) {
            assert!(
                in_order(&words(name), &words(meaning)),
                "--help calls exit code {code} {name:?}, which is not the doc's {meaning:?} shortened"
            );
        }
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
