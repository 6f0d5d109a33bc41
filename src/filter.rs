//! Ordered include/exclude rules for the scan.
//!
//! A rule is `+REGEX` (include) or `-REGEX` (exclude). Rules are tried in
//! order against `'/' + relative path` (directories with a trailing `/`); the
//! first whose regex matches anywhere in the string decides, and a path no
//! rule matches is included. Matching is on raw bytes so that names which are
//! not UTF-8 can still be filtered.
//!
//! Rules also come from rule files (`filter_files`, appended after the
//! config's `filter`) and from per-directory `.lafs-backup-exclude` files
//! ([`LocalRules`]); a `.lafs-backup-skip` file drops its directory
//! (`docs/config.md`).

use std::io::Read as _;
use std::path::{Path, PathBuf};

use regex::bytes::{Regex, RegexBuilder};
use thiserror::Error;

/// A directory holding a file of this name gets its rules applied to the
/// entries below it.
pub(crate) const EXCLUDE_FILE: &[u8] = b".lafs-backup-exclude";
/// A directory holding a file of this name is left out of the backup.
pub(crate) const SKIP_FILE: &[u8] = b".lafs-backup-skip";
/// Rule files longer than this are refused: a rule file is hand-written.
const MAX_RULE_FILE: u64 = 1 << 20;

/// Whether a rule keeps or drops what it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Include,
    Exclude,
}

#[derive(Debug, Error)]
pub(crate) enum FilterError {
    #[error("filter rule #{index} {rule:?} must start with '+' (include) or '-' (exclude)")]
    MissingPrefix { index: usize, rule: String },
    #[error("filter rule #{index} {rule:?}: the regex does not compile: {message}")]
    BadRegex {
        index: usize,
        rule: String,
        message: String,
    },
    #[error("cannot read the rule file {}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    InFile {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

impl PartialEq for FilterError {
    fn eq(&self, other: &Self) -> bool {
        // io::Error has no equality; its text stands for it.
        self.to_string() == other.to_string()
    }
}

impl Eq for FilterError {}

#[derive(Debug, Clone)]
struct Rule {
    action: Action,
    regex: Regex,
}

/// A compiled, ordered list of rules.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    rules: Vec<Rule>,
}

impl Filter {
    /// Compiles `rules` in order; errors name the rule by its 1-based index.
    pub(crate) fn new<S: AsRef<str>>(rules: &[S]) -> Result<Self, FilterError> {
        let rules = rules
            .iter()
            .enumerate()
            .map(|(i, rule)| parse_rule(i + 1, rule.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Self { rules })
    }

    /// The action of the first matching rule, or `None` when no rule matches.
    pub(crate) fn decide(&self, subject: &[u8]) -> Option<Action> {
        self.rules
            .iter()
            .find(|rule| rule.regex.is_match(subject))
            .map(|rule| rule.action)
    }

    /// Whether the entry at `rel_path` (relative to the source root, without a
    /// leading `/`) is kept. The root itself is never filtered: callers don't
    /// ask for it.
    pub(crate) fn includes(&self, rel_path: &[u8], is_dir: bool) -> bool {
        if self.rules.is_empty() {
            return true;
        }
        let mut subject = Vec::with_capacity(rel_path.len() + 2);
        subject.push(b'/');
        subject.extend_from_slice(rel_path);
        if is_dir {
            subject.push(b'/');
        }
        self.decide(&subject) != Some(Action::Exclude)
    }
}

/// The rules of a rule file's text: one `+REGEX`/`-REGEX` rule a line;
/// blank lines and lines whose first non-blank character is `#` are
/// skipped. Errors name `path` and the 1-based line.
pub(crate) fn parse_rule_file(path: &Path, text: &str) -> Result<Vec<String>, FilterError> {
    let mut rules = Vec::new();
    for (i, line) in text.lines().enumerate() {
        // Files written on Windows end their lines with \r\n.
        let line = line.strip_suffix('\r').unwrap_or(line);
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        // Trailing blanks are part of a regex: keep the rule as written,
        // only leading ones (indentation) are dropped.
        parse_rule(rules.len() + 1, trimmed).map_err(|err| FilterError::InFile {
            path: path.to_owned(),
            line: i + 1,
            message: err.to_string(),
        })?;
        rules.push(trimmed.to_owned());
    }
    Ok(rules)
}

/// Reads and checks one rule file of `filter_files`.
pub(crate) fn read_rule_file(path: &Path) -> Result<Vec<String>, FilterError> {
    let read_err = |source| FilterError::ReadFile {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let text = read_limited(file).map_err(read_err)?;
    parse_rule_file(path, &text)
}

fn read_limited(file: std::fs::File) -> std::io::Result<String> {
    let mut bytes = Vec::new();
    file.take(MAX_RULE_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_RULE_FILE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("longer than {MAX_RULE_FILE} bytes"),
        ));
    }
    String::from_utf8(bytes)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not valid UTF-8 text"))
}

/// The scan's filter of a config: `filter`, then the rules of each of
/// `filter_files` in order (read again here: the config checked them when
/// it was loaded, but they may have changed since).
pub(crate) fn source_filter(config: &crate::config::Config) -> Result<Filter, FilterError> {
    let mut rules = config.filter.clone();
    for path in &config.filter_files.paths {
        rules.extend(read_rule_file(path)?);
    }
    Filter::new(&rules)
}

/// The rules of one directory's `.lafs-backup-exclude`, which apply to the
/// entries below that directory: each is tested as `'/'` + its path
/// relative to that directory (directories with a trailing `/`), first
/// match wins within the file, and an entry is left out when the file's
/// deciding rule is `-`. They can only leave out more: what the config's
/// filter (or an outer file) excludes stays excluded.
#[derive(Debug, Clone)]
pub(crate) struct LocalRules {
    /// Bytes of an entry's relative path before its path below the
    /// directory (the directory's path and its `/`).
    prefix: usize,
    filter: Filter,
}

impl LocalRules {
    /// Reads the exclude file of the directory `abs` (at `rel` in the
    /// tree): `Ok(None)` when there is none; an error (for a warning) when
    /// it is not a regular file, cannot be read or holds a bad rule.
    pub(crate) fn read(abs: &Path, rel: &[u8]) -> Result<Option<Self>, FilterError> {
        use std::os::unix::ffi::OsStrExt as _;
        let path = abs.join(std::ffi::OsStr::from_bytes(EXCLUDE_FILE));
        let md = match std::fs::symlink_metadata(&path) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(FilterError::ReadFile { path, source }),
        };
        let read_err = |source| FilterError::ReadFile {
            path: path.clone(),
            source,
        };
        if !md.is_file() {
            return Err(read_err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            )));
        }
        // O_NOFOLLOW: a file swapped for a symlink since the lstat is not
        // followed out of the tree.
        let file = crate::queue::open_nofollow(&path).map_err(read_err)?;
        let text = read_limited(file).map_err(read_err)?;
        let rules = parse_rule_file(&path, &text)?;
        let filter = Filter::new(&rules)?;
        let prefix = if rel.is_empty() { 0 } else { rel.len() + 1 };
        Ok(Some(Self { prefix, filter }))
    }

    /// Whether these rules leave out the entry at `rel` (relative to the
    /// source root, below this directory).
    pub(crate) fn excludes(&self, rel: &[u8], is_dir: bool) -> bool {
        let below = rel.get(self.prefix..).unwrap_or_default();
        !self.filter.includes(below, is_dir)
    }
}

/// Whether the directory `abs` holds a `.lafs-backup-skip` (a regular
/// file; a symlink of that name does not count).
pub(crate) fn has_skip_file(abs: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    std::fs::symlink_metadata(abs.join(std::ffi::OsStr::from_bytes(SKIP_FILE)))
        .is_ok_and(|md| md.is_file())
}

fn parse_rule(index: usize, rule: &str) -> Result<Rule, FilterError> {
    let (action, pattern) = match rule.as_bytes().first() {
        Some(b'+') => (Action::Include, &rule[1..]),
        Some(b'-') => (Action::Exclude, &rule[1..]),
        _ => {
            return Err(FilterError::MissingPrefix {
                index,
                rule: rule.to_owned(),
            });
        }
    };
    let regex = compile(pattern).map_err(|message| FilterError::BadRegex {
        index,
        rule: rule.to_owned(),
        message,
    })?;
    Ok(Rule { action, regex })
}

/// Compiles one pattern of the project's regex dialect (Rust `regex` syntax
/// over bytes). Shared with other rule lists of the config (compression path
/// filters) so that every rule speaks the same dialect.
pub(crate) fn compile(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        // Large alternations of paths are common in filter lists; the default
        // size limit would reject some of them for no benefit here.
        .size_limit(64 << 20)
        .build()
        .map_err(|err| {
            // The regex crate's own message is a multi-line caret diagram; keep
            // it, but say plainly what users coming from Python hit most.
            let mut message = err.to_string();
            if uses_python_only_syntax(pattern) {
                message.push_str(
                    "\n(Rust's regex syntax has no look-around such as (?=...), (?!...), \
                     (?<=...), (?<!...) and no back-references such as \\1; \
                     rewrite the rule, or split it into several ordered rules)",
                );
            }
            message
        })
}

fn uses_python_only_syntax(pattern: &str) -> bool {
    ["(?=", "(?!", "(?<=", "(?<!", "(?P="]
        .iter()
        .any(|p| pattern.contains(p))
        || pattern
            .as_bytes()
            .windows(2)
            .any(|w| w[0] == b'\\' && (b'1'..=b'9').contains(&w[1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(rules: &[&str]) -> Filter {
        Filter::new(rules).expect("rules compile")
    }

    #[test]
    fn no_rules_include_everything() {
        let f = filter(&[]);
        assert!(f.includes(b"anything", false));
        assert!(f.includes(b"dir", true));
    }

    #[test]
    fn first_match_wins() {
        let f = filter(&["+\\.keep$", "-\\.(keep|tmp)$"]);
        assert!(f.includes(b"a/b.keep", false));
        assert!(!f.includes(b"a/b.tmp", false));
        assert!(f.includes(b"a/b.txt", false));
    }

    #[test]
    fn original_readme_rules() {
        // The original tool's README example: keep /var/log and
        // /var/log/security only, drop the other volatile /var dirs.
        let f = filter(&[
            "+^/var/log/($|security/)",
            "-^/var/(tmp|cache|log|spool)/",
            "-/(?i)\\.?svn(/.*|ignore)$",
        ]);
        assert!(f.includes(b"var/log", true));
        assert!(f.includes(b"var/log/security", true));
        assert!(f.includes(b"var/log/security/audit.log", false));
        assert!(!f.includes(b"var/log/messages", false));
        assert!(!f.includes(b"var/log/nginx", true));
        assert!(!f.includes(b"var/tmp", true));
        assert!(!f.includes(b"var/cache", true));
        assert!(f.includes(b"var/lib", true));
        assert!(!f.includes(b"src/.svn", true));
        assert!(!f.includes(b"src/.SVN", true));
        assert!(!f.includes(b"src/.svnignore", false));
        assert!(f.includes(b"src/svnkit", false));
    }

    #[test]
    fn acceptance_rules_from_the_original() {
        let f = filter(&["+^/keep/($|sub/)", "-^/keep/", "-\\.tmp$"]);
        assert!(f.includes(b"keep", true));
        assert!(f.includes(b"keep/sub", true));
        assert!(f.includes(b"keep/sub/x", false));
        assert!(!f.includes(b"keep/other", false));
        assert!(!f.includes(b"keep/other", true));
        assert!(!f.includes(b"x/y.tmp", false));
    }

    #[test]
    fn directories_are_tested_with_a_trailing_slash() {
        let f = filter(&["-/cache/$"]);
        assert!(!f.includes(b"home/cache", true));
        assert!(f.includes(b"home/cache", false));
    }

    #[test]
    fn search_is_unanchored() {
        let f = filter(&["-tmp"]);
        assert!(!f.includes(b"a/xtmpx/b", false));
    }

    #[test]
    fn inline_flags_work() {
        let f = filter(&["-(?i)\\.JPG$"]);
        assert!(!f.includes(b"photo.jpg", false));
    }

    #[test]
    fn non_utf8_names_can_be_filtered() {
        let f = filter(&["-(?-u:\\xff)"]);
        assert!(!f.includes(b"a/\xffname", false));
        assert!(f.includes(b"a/name", false));
        let g = filter(&["-\\.tmp$"]);
        assert!(!g.includes(b"\xfe\xff.tmp", false));
    }

    #[test]
    fn rule_without_prefix_is_an_error_naming_it() {
        let err = Filter::new(&["+ok", "bad"]).unwrap_err();
        assert_eq!(
            err,
            FilterError::MissingPrefix {
                index: 2,
                rule: "bad".into()
            }
        );
        assert!(err.to_string().contains("\"bad\""));
        assert!(Filter::new(&[""]).is_err());
    }

    #[test]
    fn bad_regex_is_an_error_naming_it() {
        let err = Filter::new(&["-(unclosed"]).unwrap_err().to_string();
        assert!(err.contains("#1"), "{err}");
        assert!(err.contains("-(unclosed"), "{err}");
    }

    #[test]
    fn rule_files_skip_blanks_and_comments_and_name_bad_lines() {
        let p = Path::new("/etc/rules");
        let rules = parse_rule_file(p, "# c\n\n  -\\.o$\r\n  # indented\n+^/keep/\n").unwrap();
        assert_eq!(rules, ["-\\.o$", "+^/keep/"]);
        let err = parse_rule_file(p, "-ok\n\nbad\n").unwrap_err().to_string();
        assert!(err.starts_with("/etc/rules:3: "), "{err}");
        assert!(err.contains("\"bad\""), "{err}");
        let err = parse_rule_file(p, "-(x\n").unwrap_err().to_string();
        assert!(err.starts_with("/etc/rules:1: "), "{err}");
    }

    #[test]
    fn local_rules_match_below_their_directory() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(
            t.path().join(".lafs-backup-exclude"),
            "+^/keep\\.o$\n-\\.o$\n-^/build/$\n",
        )
        .unwrap();
        let local = LocalRules::read(t.path(), b"a/b").unwrap().unwrap();
        assert!(local.excludes(b"a/b/x.o", false));
        assert!(local.excludes(b"a/b/c/x.o", false));
        assert!(!local.excludes(b"a/b/keep.o", false));
        assert!(local.excludes(b"a/b/build", true));
        assert!(!local.excludes(b"a/b/c/build", true));
        assert!(!local.excludes(b"a/b/build", false));
        let root = LocalRules::read(t.path(), b"").unwrap().unwrap();
        assert!(root.excludes(b"build", true));
        assert!(
            LocalRules::read(&t.path().join("nothing"), b"")
                .unwrap()
                .is_none()
        );
        std::fs::write(t.path().join(".lafs-backup-exclude"), "# x\nnope\n").unwrap();
        let err = LocalRules::read(t.path(), b"").unwrap_err().to_string();
        assert!(err.contains(".lafs-backup-exclude:2: "), "{err}");
    }

    #[test]
    fn symlinked_local_files_are_refused() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("rules"), "-x\n").unwrap();
        std::os::unix::fs::symlink("rules", t.path().join(".lafs-backup-exclude")).unwrap();
        assert!(LocalRules::read(t.path(), b"").is_err());
        std::os::unix::fs::symlink("rules", t.path().join(".lafs-backup-skip")).unwrap();
        assert!(!has_skip_file(t.path()));
        std::fs::remove_file(t.path().join(".lafs-backup-skip")).unwrap();
        std::fs::write(t.path().join(".lafs-backup-skip"), "").unwrap();
        assert!(has_skip_file(t.path()));
    }

    #[test]
    fn look_around_and_back_references_say_so() {
        for rule in ["-foo(?=bar)", "-(?<!x)y", "-(a)\\1"] {
            let err = Filter::new(&[rule]).unwrap_err().to_string();
            assert!(err.contains("look-around"), "{rule}: {err}");
            assert!(err.contains("back-references"), "{rule}: {err}");
        }
    }
}
