//! Ordered include/exclude rules for the scan.
//!
//! A rule is `+REGEX` (include) or `-REGEX` (exclude). Rules are tried in
//! order against `'/' + relative path` (directories with a trailing `/`); the
//! first whose regex matches anywhere in the string decides, and a path no
//! rule matches is included. Matching is on raw bytes so that names which are
//! not UTF-8 can still be filtered.

use regex::bytes::{Regex, RegexBuilder};
use thiserror::Error;

/// Whether a rule keeps or drops what it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Include,
    Exclude,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum FilterError {
    #[error("filter rule #{index} {rule:?} must start with '+' (include) or '-' (exclude)")]
    MissingPrefix { index: usize, rule: String },
    #[error("filter rule #{index} {rule:?}: the regex does not compile: {message}")]
    BadRegex {
        index: usize,
        rule: String,
        message: String,
    },
}

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
    fn look_around_and_back_references_say_so() {
        for rule in ["-foo(?=bar)", "-(?<!x)y", "-(a)\\1"] {
            let err = Filter::new(&[rule]).unwrap_err().to_string();
            assert!(err.contains("look-around"), "{rule}: {err}");
            assert!(err.contains("back-references"), "{rule}: {err}");
        }
    }
}
