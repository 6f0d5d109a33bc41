//! Which recorded backups a command means: the BACKUP arguments of
//! `restore`, `verify`, `check` and `cleanup` (and of every later command),
//! read and resolved in one place so that they all match names the same way
//! and say the same thing when a name is unknown or ambiguous.
//!
//! A [`Selector`] is a root cap or a backup name, with an optional
//! generation. A cap is recognised in every spelling people paste
//! ([`crate::tahoe::user_cap`]): percent-encoded, inside a gateway address,
//! with an `ro.`/`imm.` prefix, in any letter case. So a cap is never taken
//! for a name, and never echoed by a "no backup named …" message. A text
//! that looks like a cap but is not a valid one is a usage error that says
//! so without quoting it.
//!
//! A name matches a recorded backup by its raw bytes, or in the escaped
//! form `list` prints (`\xNN`, `\\`; a name with a tab or an invalid UTF-8
//! byte can only be typed that way). When the two readings name different
//! recorded backups, the selector refuses and lists them rather than guess.
//! [`Selected`] holds every recorded backup that matched, by generation;
//! each command applies its own policy to several generations of one name
//! ([`Selected::latest`]: the highest generation, for `restore`, `verify`
//! and `check`; `cleanup` refuses and lists them). Later selectors (labels,
//! dates) are further fields of [`Selector`] filtering the same rows.
//! Every [`SelectError`] is a usage error (exit 2, `docs/exit-codes.md`).

use std::io::{self, BufRead};
use std::path::Path;

use crate::cache::BackupRow;
use crate::commands::show;
use crate::exit::UsageError;
use crate::tahoe::Cap;
use crate::tahoe::user_cap::{self, UserCap};

/// A command's BACKUP argument.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BackupArg<'a> {
    /// A root cap, in Tahoe's canonical spelling.
    Cap(Cap),
    /// A backup name, as given.
    Name(&'a str),
}

impl<'a> BackupArg<'a> {
    /// Reads `arg`; `what` names the argument in the error (`BACKUP`,
    /// `argument 2`).
    pub(crate) fn parse(arg: &'a str, what: &str) -> Result<BackupArg<'a>, UsageError> {
        match user_cap::classify(arg) {
            UserCap::Cap(cap) => Ok(BackupArg::Cap(cap)),
            UserCap::NotACap => Ok(BackupArg::Name(arg)),
            UserCap::Malformed(why) => Err(malformed(what, why)),
        }
    }
}

/// What picks recorded backups: a cap or a name, and `--generation` or
/// `--label`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Selector<'a> {
    pub backup: BackupArg<'a>,
    /// `--generation N`: only that generation of the name.
    pub generation: Option<u64>,
    /// `--label L`: the newest backup of the name with that label (labels
    /// repeat across a policy's rotations).
    pub label: Option<&'a str>,
    /// `--as-of WHEN` (Unix seconds, and the text given): the newest
    /// backup of the name that started at or before it.
    pub as_of: Option<(i64, &'a str)>,
}

impl<'a> Selector<'a> {
    /// Reads `arg` (see [`BackupArg::parse`]) with `--generation`, which
    /// goes with a name only.
    pub(crate) fn parse(
        arg: &'a str,
        what: &str,
        generation: Option<u64>,
    ) -> Result<Selector<'a>, UsageError> {
        let backup = BackupArg::parse(arg, what)?;
        if generation.is_some() && matches!(backup, BackupArg::Cap(_)) {
            return Err(UsageError(
                "--generation selects a generation of a backup NAME; it cannot be used with \
                 a cap"
                    .into(),
            ));
        }
        Ok(Selector {
            backup,
            generation,
            label: None,
            as_of: None,
        })
    }

    /// Adds `--as-of WHEN` ([`crate::when`]), which goes with a name only
    /// and with neither `--generation` nor `--label`.
    pub(crate) fn with_as_of(mut self, as_of: Option<&'a str>) -> Result<Self, UsageError> {
        let Some(text) = as_of else {
            return Ok(self);
        };
        if matches!(self.backup, BackupArg::Cap(_)) {
            return Err(UsageError(
                "--as-of selects a backup of a backup NAME; it cannot be used with a cap".into(),
            ));
        }
        if self.generation.is_some() || self.label.is_some() {
            return Err(UsageError(
                "--as-of, --generation and --label each select a backup of the NAME; give one"
                    .into(),
            ));
        }
        let when = crate::when::parse(text, &crate::clock::now_local())
            .map_err(|e| UsageError(format!("--as-of: {e}")))?;
        self.as_of = Some((when, text));
        Ok(self)
    }

    /// [`Selector::of_args`] with the flattened `--generation`, `--label`
    /// and `--as-of` of the history commands.
    pub(crate) fn of_pick(
        arg: &'a str,
        pick: &'a crate::cli::PickArgs,
    ) -> Result<Selector<'a>, UsageError> {
        Selector::of_args(
            arg,
            pick.generation,
            pick.label.as_deref(),
            pick.as_of.as_deref(),
        )
    }

    /// Reads `arg` and the three optional picks of a command that takes one
    /// backup (`restore`, `verify`, `pin`, …).
    pub(crate) fn of_args(
        arg: &'a str,
        generation: Option<u64>,
        label: Option<&'a str>,
        as_of: Option<&'a str>,
    ) -> Result<Selector<'a>, UsageError> {
        Selector::parse(arg, "BACKUP", generation)?
            .with_label(label)?
            .with_as_of(as_of)
    }

    /// Adds `--label`, which goes with a name only and not with
    /// `--generation` (the command line refuses both together too).
    pub(crate) fn with_label(mut self, label: Option<&'a str>) -> Result<Self, UsageError> {
        if label.is_some() {
            if matches!(self.backup, BackupArg::Cap(_)) {
                return Err(UsageError(
                    "--label selects a backup of a backup NAME; it cannot be used with a cap"
                        .into(),
                ));
            }
            if self.generation.is_some() {
                return Err(UsageError(
                    "--label and --generation both select a backup of the NAME; give one".into(),
                ));
            }
        }
        self.label = label;
        Ok(self)
    }

    /// The cap given, when it is one: such a selector needs no cache.
    pub(crate) fn cap(&self) -> Option<&Cap> {
        match &self.backup {
            BackupArg::Cap(cap) => Some(cap),
            BackupArg::Name(_) => None,
        }
    }

    /// The recorded backups (`rows`, as [`crate::cache::Cache::backups`]
    /// returns them, of the cache at `cache`) this selector picks.
    pub(crate) fn select<'r>(
        &self,
        rows: &'r [BackupRow],
        cache: &Path,
    ) -> Result<Selected<'r>, SelectError> {
        self.select_in(rows, &in_cache(cache))
    }

    /// [`Selector::select`] of `rows` from any source of recorded backups
    /// (the entry cache, or the recovery catalog's index), which errors
    /// name as `cache` ("the entry cache PATH", "the recovery catalog").
    pub(crate) fn select_in<'r>(
        &self,
        rows: &'r [BackupRow],
        cache: &str,
    ) -> Result<Selected<'r>, SelectError> {
        let name = match &self.backup {
            BackupArg::Cap(cap) => {
                return Ok(Selected::Cap {
                    cap: cap.clone(),
                    recorded: by_generation(rows.iter().filter(|r| r.root_cap == *cap)),
                });
            }
            BackupArg::Name(name) => *name,
        };
        let matched = match named(rows, name, cache) {
            Ok(matched) => matched,
            // `NAME@N`, `NAME@LABEL`, `NAME@WHEN`: only when the whole text
            // names no backup (a name with `@` in it wins as given).
            Err(SelectError::UnknownName { .. }) if name.contains('@') => {
                return self.select_token(rows, name, cache);
            }
            Err(e) => return Err(e),
        };
        let matched = by_generation(matched.into_iter());
        let rows = match self.generation {
            None => matched,
            Some(g) => {
                let of_generation: Vec<&BackupRow> = matched
                    .iter()
                    .copied()
                    .filter(|r| r.generation == g)
                    .collect();
                if of_generation.is_empty() {
                    return Err(SelectError::UnknownGeneration {
                        name: quoted(name),
                        generation: g,
                        cache: cache.to_owned(),
                        known: matched
                            .iter()
                            .map(|r| r.generation.to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
                of_generation
            }
        };
        let rows = match self.label {
            None => rows,
            Some(label) => {
                // The newest backup with the label: a rotation reuses it.
                match rows
                    .iter()
                    .copied()
                    .rfind(|r| r.label.as_deref() == Some(label))
                {
                    Some(newest) => vec![newest],
                    None => {
                        let mut known: Vec<String> = Vec::new();
                        for r in &rows {
                            let l = r.label.as_deref().map(quoted);
                            if let Some(l) = l.filter(|l| !known.contains(l)) {
                                known.push(l);
                            }
                        }
                        return Err(SelectError::UnknownLabel {
                            name: quoted(name),
                            label: quoted(label),
                            cache: cache.to_owned(),
                            known: if known.is_empty() {
                                "none".to_owned()
                            } else {
                                known.join(", ")
                            },
                        });
                    }
                }
            }
        };
        let rows = match self.as_of {
            None => rows,
            Some((when, text)) => match as_of(&rows, when) {
                Some(row) => vec![row],
                None => {
                    return Err(SelectError::NothingAsOf {
                        name: quoted(name),
                        when: quoted(text),
                        at: show::time(when),
                        first: rows
                            .first()
                            .map_or_else(String::new, |r| show::time(r.ts_start)),
                    });
                }
            },
        };
        // `rows` is not empty: an empty match returned above.
        match rows.last().copied() {
            Some(latest) => Ok(Selected::Named { latest, rows }),
            None => Err(SelectError::UnknownName {
                name: quoted(name),
                cache: cache.to_owned(),
            }),
        }
    }
}

impl Selector<'_> {
    /// The one-token form `NAME@SUFFIX` (split at the last `@`): after the
    /// `@`, all digits are a generation, an exact label of the name is that
    /// label, and a WHEN is `--as-of`. Readings that pick different backups
    /// are refused with the candidates listed.
    fn select_token<'r>(
        &self,
        rows: &'r [BackupRow],
        token: &str,
        cache: &str,
    ) -> Result<Selected<'r>, SelectError> {
        let Some((name, suffix)) = token.rsplit_once('@') else {
            return Err(SelectError::UnknownName {
                name: quoted(token),
                cache: cache.to_owned(),
            });
        };
        let matched = by_generation(named(rows, name, cache)?.into_iter());
        if self.generation.is_some() || self.label.is_some() || self.as_of.is_some() {
            return Err(SelectError::TwoPicks {
                token: quoted(token),
            });
        }
        let mut readings: Vec<(String, &BackupRow)> = Vec::new();
        let digits = !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit());
        if digits
            && let Ok(g) = suffix.parse::<u64>()
            && let Some(row) = matched.iter().copied().find(|r| r.generation == g)
        {
            readings.push((format!("generation {g}"), row));
        }
        if let Some(row) = matched
            .iter()
            .copied()
            .rfind(|r| r.label.as_deref() == Some(suffix))
        {
            readings.push((format!("the label {}", quoted(suffix)), row));
        }
        let when = crate::when::parse(suffix, &crate::clock::now_local());
        if let Ok(t) = &when
            && let Some(row) = as_of(&matched, *t)
        {
            readings.push((
                format!("as of {} ({})", quoted(suffix), show::time(*t)),
                row,
            ));
        }
        let first = readings.first().map(|(_, row)| row.id);
        if let Some(first) = first {
            if readings.iter().all(|(_, row)| row.id == first) {
                let row = readings[0].1;
                return Ok(Selected::Named {
                    latest: row,
                    rows: vec![row],
                });
            }
            return Err(SelectError::AmbiguousToken {
                token: quoted(token),
                readings: readings
                    .iter()
                    .map(|(how, r)| format!("{how}: {}", describe(r)))
                    .collect(),
            });
        }
        let name_q = quoted(name);
        Err(match when {
            _ if digits => SelectError::UnknownGeneration {
                name: name_q,
                generation: suffix.parse().unwrap_or(u64::MAX),
                cache: cache.to_owned(),
                known: matched
                    .iter()
                    .map(|r| r.generation.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            },
            Ok(t) => SelectError::NothingAsOf {
                name: name_q,
                when: quoted(suffix),
                at: show::time(t),
                first: matched
                    .first()
                    .map_or_else(String::new, |r| show::time(r.ts_start)),
            },
            Err(e) => SelectError::BadSuffix {
                token: quoted(token),
                name: name_q,
                suffix: quoted(suffix),
                why: e.to_string(),
            },
        })
    }
}

/// The recorded backups of `name`, as given or in its escaped form, by
/// generation (`versions`, `find`: every backup of a name).
pub(crate) fn backups_of<'r>(
    rows: &'r [BackupRow],
    name: &str,
    cache: &Path,
) -> Result<Vec<&'r BackupRow>, SelectError> {
    Ok(by_generation(
        named(rows, name, &in_cache(cache))?.into_iter(),
    ))
}

/// How an error names the entry cache at `path`.
fn in_cache(path: &Path) -> String {
    format!("the entry cache {}", path.display())
}

/// The recorded backups of `name`, as given or in its escaped form.
fn named<'r>(
    rows: &'r [BackupRow],
    name: &str,
    cache: &str,
) -> Result<Vec<&'r BackupRow>, SelectError> {
    let raw = name.as_bytes();
    let as_given: Vec<&BackupRow> = rows.iter().filter(|r| r.name == raw).collect();
    // The escaped reading, when it is valid and says something else.
    let unescaped = crate::escape::unescape(raw).ok().filter(|u| u != raw);
    let as_escaped: Vec<&BackupRow> = match &unescaped {
        Some(u) => rows.iter().filter(|r| r.name == *u).collect(),
        None => Vec::new(),
    };
    match (as_given.is_empty(), as_escaped.is_empty()) {
        (true, true) => Err(SelectError::UnknownName {
            name: quoted(name),
            cache: cache.to_owned(),
        }),
        (false, true) => Ok(as_given),
        (true, false) => Ok(as_escaped),
        (false, false) => Err(SelectError::Ambiguous {
            name: quoted(name),
            backups: by_generation(as_given.into_iter().chain(as_escaped))
                .iter()
                .map(|r| format!("{}: {}", show::name(&r.name), describe(r)))
                .collect(),
        }),
    }
}

/// The newest of `rows` (by generation) that started at or before `when`.
fn as_of<'r>(rows: &[&'r BackupRow], when: i64) -> Option<&'r BackupRow> {
    rows.iter()
        .copied()
        .filter(|r| r.ts_start <= when)
        .max_by_key(|r| (r.ts_start, r.generation))
}

/// Rows by generation, oldest first (ties in cache order).
fn by_generation<'r>(rows: impl Iterator<Item = &'r BackupRow>) -> Vec<&'r BackupRow> {
    let mut rows: Vec<&BackupRow> = rows.collect();
    rows.sort_by_key(|r| r.generation);
    rows
}

/// The recorded backups a [`Selector`] picked.
#[derive(Debug)]
pub(crate) enum Selected<'r> {
    /// A root cap, and the recorded backups that have it (none for a cap
    /// this cache did not record), by generation.
    Cap {
        cap: Cap,
        recorded: Vec<&'r BackupRow>,
    },
    /// The recorded backups of a name (of one generation with
    /// `--generation`): never empty, by generation.
    Named {
        /// The highest generation of `rows`.
        latest: &'r BackupRow,
        rows: Vec<&'r BackupRow>,
    },
}

impl<'r> Selected<'r> {
    /// The latest recorded backup picked: the highest generation (`None`
    /// for a cap no recorded backup has).
    pub(crate) fn latest(&self) -> Option<&'r BackupRow> {
        match self {
            Selected::Cap { recorded, .. } => recorded.last().copied(),
            Selected::Named { latest, .. } => Some(latest),
        }
    }

    /// The root cap of the latest backup picked (or the cap given).
    pub(crate) fn cap(&self) -> &Cap {
        match self {
            Selected::Cap { cap, .. } => cap,
            Selected::Named { latest, .. } => &latest.root_cap,
        }
    }

    /// Every recorded backup picked, by generation (the tests look at the
    /// whole pick; the commands take the latest).
    #[cfg(test)]
    pub(crate) fn rows(&self) -> &[&'r BackupRow] {
        match self {
            Selected::Cap { recorded, .. } => recorded,
            Selected::Named { rows, .. } => rows,
        }
    }

    /// How reports name what was picked: the latest backup's name
    /// (escaped), or `#` and the cap's short id for a cap no recorded
    /// backup has.
    pub(crate) fn label(&self) -> String {
        match self.latest() {
            Some(row) => show::name(&row.name),
            None => format!("#{}", self.cap().short_id()),
        }
    }
}

/// Why a [`Selector`] picked nothing; a usage error (exit 2).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SelectError {
    #[error(
        "no backup named {name} in {cache} (`lafs-backup list` shows the \
         recorded backups; a cap starts with the \"URI\" prefix and a colon)"
    )]
    UnknownName { name: String, cache: String },
    #[error(
        "no backup named {name} has generation {generation} in {cache} \
         (its generations: {known})"
    )]
    UnknownGeneration {
        name: String,
        generation: u64,
        cache: String,
        known: String,
    },
    #[error(
        "no backup named {name} has the label {label} in {cache} \
         (its labels: {known})"
    )]
    UnknownLabel {
        name: String,
        label: String,
        cache: String,
        known: String,
    },
    #[error(
        "the name {name} names different backups as given and read in the escaped form \
         `lafs-backup list` prints; give the root cap of the one meant:{}",
        backups.iter().map(|b| format!("\n  {b}")).collect::<String>()
    )]
    Ambiguous { name: String, backups: Vec<String> },
    #[error(
        "no backup named {name} started at or before {when} ({at}){}",
        if first.is_empty() { String::new() } else { format!("; its first backup started {first}") }
    )]
    NothingAsOf {
        name: String,
        when: String,
        at: String,
        first: String,
    },
    #[error(
        "{token} can be read more than one way; give --generation, --label or --as-of          instead:{}",
        readings.iter().map(|r| format!("\n  {r}")).collect::<String>()
    )]
    AmbiguousToken {
        token: String,
        readings: Vec<String>,
    },
    #[error(
        "{token}: {suffix} is neither a generation nor a label of the backup {name}, nor a          time: {why}"
    )]
    BadSuffix {
        token: String,
        name: String,
        suffix: String,
        why: String,
    },
    #[error(
        "{token} already says which backup of the name; it cannot be combined with          --generation, --label or --as-of"
    )]
    TwoPicks { token: String },
}

impl From<SelectError> for UsageError {
    fn from(e: SelectError) -> UsageError {
        UsageError(e.to_string())
    }
}

/// One line of a listing of recorded backups in a message:
/// `generation G, finished T, root #ID`.
pub(crate) fn describe(row: &BackupRow) -> String {
    format!(
        "generation {}, finished {}, root #{}",
        row.generation,
        show::time(row.ts_end),
        row.root_cap.short_id()
    )
}

/// A target of a command that takes several (`check`, `cleanup`), and how
/// a message names where it came from.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Given {
    pub text: String,
    /// `argument N` or `line N of stdin`.
    pub what: String,
}

/// The positional targets, with `-` replaced by the non-blank lines of
/// `stdin` (read once, at the first `-`, and only then), each trimmed: a
/// line is read like an argument (a cap in any spelling, or a name).
pub(crate) fn targets(given: &[String], stdin: impl BufRead) -> io::Result<Vec<Given>> {
    let mut out = Vec::new();
    let mut stdin = Some(stdin);
    for (i, t) in given.iter().enumerate() {
        if t != "-" {
            out.push(Given {
                text: t.clone(),
                what: format!("argument {}", i + 1),
            });
            continue;
        }
        let Some(input) = stdin.take() else {
            continue;
        };
        for (n, line) in input.lines().enumerate() {
            let line = line?;
            let line = line.trim();
            if !line.is_empty() {
                out.push(Given {
                    text: line.to_owned(),
                    what: format!("line {} of stdin", n + 1),
                });
            }
        }
    }
    Ok(out)
}

/// How a message quotes a backup name given on the command line: in
/// quotes, escaped, and with anything cap-like inside it redacted (a name
/// is not a cap, but it may hold one).
pub(crate) fn quoted(name: &str) -> String {
    crate::tahoe::redact(&format!("{name:?}"))
}

/// A `--catalog CAP` argument: a directory cap in any spelling people
/// paste (read-only is enough to read it); never quoted in an error.
pub(crate) fn catalog_arg(text: &str) -> Result<Cap, UsageError> {
    match user_cap::classify(text) {
        UserCap::Cap(cap) if cap.is_dir() => Ok(cap),
        UserCap::Cap(_) => Err(UsageError(
            "--catalog: the cap is not a directory cap (the recovery catalog is a directory)"
                .into(),
        )),
        UserCap::Malformed(why) => Err(malformed("--catalog", why)),
        UserCap::NotACap => Err(UsageError(
            "--catalog takes the recovery catalog's cap (a DIR2 or DIR2-RO cap), \
             as printed when destination.catalog: auto created it"
                .into(),
        )),
    }
}

/// The usage error for a text that looks like a cap but is not one.
pub(crate) fn malformed(what: &str, why: &str) -> UsageError {
    UsageError(format!(
        "{what} looks like a Tahoe capability, but {why}; check that it was copied whole \
         (it is not quoted here, since a cap is a secret)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A cap in a random spelling, possibly cut short: (text, key, hash).
    fn spelled_cap() -> impl Strategy<Value = (String, String, String)> {
        (
            "[a-z2-7]{26}",
            "[a-z2-7]{52}",
            prop::sample::select(vec!["DIR2-CHK", "DIR2", "CHK", "DIR2-RO"]),
            0usize..150,
            0u8..4,
            prop::sample::select(vec![
                "",
                "ro.",
                "imm.",
                "RO.",
                " ",
                "http://127.0.0.1:9/uri/",
            ]),
        )
            .prop_map(|(key, hash, kind, cut, case, prefix)| {
                let tail = if kind.contains("CHK") {
                    ":2:3:4096"
                } else {
                    ""
                };
                let mut c = format!("URI:{kind}:{key}:{hash}{tail}");
                c.truncate(c.len().min(cut.max(4)));
                let c = match case {
                    0 => c,
                    1 => c.to_uppercase(),
                    2 => c.replace(':', "%3A"),
                    _ => c.to_lowercase().replace(':', "%3a"),
                };
                (format!("{prefix}{c}"), key, hash)
            })
    }

    proptest! {
        /// Every error text that formats a BACKUP argument (or a config
        /// value) is free of key material, whatever the spelling.
        #[test]
        fn no_error_path_echoes_a_cap((text, key, hash) in spelled_cap()) {
            let mut shown = Vec::new();
            match BackupArg::parse(&text, "BACKUP") {
                Ok(BackupArg::Name(n)) => prop_assert!(false, "{n} read as a name"),
                Ok(BackupArg::Cap(_)) => {}
                Err(e) => shown.push(e.0),
            }
            shown.push(quoted(&text));
            shown.push(crate::config::node::quote_for_message(&text));
            shown.push(crate::tahoe::redact(&text));
            for s in shown {
                let s = s.to_lowercase();
                prop_assert!(!s.contains(&key[..10]), "{s}");
                prop_assert!(!s.contains(&hash[..10]), "{s}");
            }
        }
    }

    #[test]
    fn caps_names_and_malformed_caps() {
        let c = "URI:DIR2-CHK:6k5yof7gs5tfsmapklxyh6ukwy:dgmdhz3wu4372ywcaobuzqyzcq5klljw33tszmmyyumxhduvppjq:1:1:551";
        assert_eq!(
            BackupArg::parse(&c.replace(':', "%3A"), "BACKUP").unwrap(),
            BackupArg::Cap(Cap::parse(c).unwrap())
        );
        assert_eq!(
            BackupArg::parse("/srv/www", "BACKUP").unwrap(),
            BackupArg::Name("/srv/www")
        );
        let err = BackupArg::parse(&c[..40], "BACKUP").unwrap_err().0;
        assert!(
            err.starts_with("BACKUP looks like a Tahoe capability"),
            "{err}"
        );
        assert!(!err.contains("6k5yof7g"), "{err}");
    }

    fn row(id: i64, name: &[u8], generation: u64) -> BackupRow {
        // Base32 letters only, one per id: a valid cap for each row.
        let letter = char::from(b'a' + u8::try_from(id).unwrap());
        let key: String = std::iter::repeat_n(letter, 26).collect();
        let hash: String = std::iter::repeat_n('b', 52).collect();
        BackupRow {
            id,
            name: name.to_vec(),
            root_cap: Cap::parse(&format!("URI:DIR2-CHK:{key}:{hash}:1:1:1")).unwrap(),
            generation,
            ts_start: 1_700_000_000,
            ts_end: 1_700_000_000,
            entries: 1,
            bytes: 1,
            ts_check: None,
            label: None,
            priority: None,
            pinned: false,
            kind: crate::cache::BackupKind::Tree,
        }
    }

    fn pick(rows: &[BackupRow], arg: &str, generation: Option<u64>) -> Result<Vec<u64>, String> {
        pick_with(rows, arg, generation, None)
    }

    fn pick_label(rows: &[BackupRow], arg: &str, label: &str) -> Result<Vec<u64>, String> {
        pick_with(rows, arg, None, Some(label))
    }

    fn pick_with(
        rows: &[BackupRow],
        arg: &str,
        generation: Option<u64>,
        label: Option<&str>,
    ) -> Result<Vec<u64>, String> {
        let sel = Selector::parse(arg, "BACKUP", generation)
            .and_then(|s| s.with_label(label))
            .map_err(|e| e.0)?;
        let picked = sel
            .select(rows, Path::new("/c/cache.db"))
            .map_err(|e| e.to_string())?;
        Ok(picked.rows().iter().map(|r| r.generation).collect())
    }

    #[test]
    fn names_match_raw_or_escaped_and_latest_is_the_highest_generation() {
        // Cache order is not generation order (a resumed run).
        let rows = [
            row(1, b"www", 5),
            row(2, b"www", 3),
            row(3, b"a\tb", 4),
            row(4, b"caf\xff", 6),
        ];
        assert_eq!(pick(&rows, "www", None).unwrap(), [3, 5]);
        let sel = Selector::parse("www", "BACKUP", None).unwrap();
        let picked = sel.select(&rows, Path::new("c")).unwrap();
        assert_eq!(picked.latest().unwrap().id, 1);
        assert_eq!(picked.cap(), &rows[0].root_cap);
        assert_eq!(picked.label(), "www");
        assert_eq!(pick(&rows, "www", Some(3)).unwrap(), [3]);
        assert_eq!(pick(&rows, "a\tb", None).unwrap(), [4]);
        assert_eq!(pick(&rows, "a\\x09b", None).unwrap(), [4]);
        assert_eq!(pick(&rows, "caf\\xff", None).unwrap(), [6]);
        assert_eq!(pick(&rows, "caf\\xFF", None).unwrap(), [6]);
    }

    #[test]
    fn unknown_names_generations_and_ambiguous_names_are_refused_by_name() {
        let rows = [row(1, b"a\\x41", 1), row(2, b"aA", 2), row(3, b"www", 3)];
        let e = pick(&rows, "nope", None).unwrap_err();
        assert!(
            e.starts_with("no backup named \"nope\" in the entry cache /c/cache.db"),
            "{e}"
        );
        let e = pick(&rows, "www", Some(9)).unwrap_err();
        assert!(
            e.contains("has generation 9") && e.contains("generations: 3"),
            "{e}"
        );
        let e = pick(&rows, "a\\x41", None).unwrap_err();
        assert!(e.contains("names different backups"), "{e}");
        assert!(e.contains("\n  a\\\\x41: generation 1, finished "), "{e}");
        assert!(e.contains("\n  aA: generation 2, finished "), "{e}");
        // A text that is not a valid escape is only read as given.
        assert_eq!(pick(&[row(1, b"a\\q", 1)], "a\\q", None).unwrap(), [1]);
    }

    #[test]
    fn a_cap_picks_its_recorded_backups_and_refuses_a_generation() {
        let rows = [row(1, b"www", 1), row(2, b"www", 2)];
        let cap = rows[1].root_cap.as_str().to_owned();
        assert_eq!(pick(&rows, &cap, None).unwrap(), [2]);
        let e = pick(&rows, &cap, Some(2)).unwrap_err();
        assert!(e.starts_with("--generation selects"), "{e}");
        assert!(!e.contains(&cap[13..39]), "{e}");
    }

    #[test]
    fn stdin_is_read_once_at_the_first_dash() {
        let given: Vec<String> = ["x", "-", "y", "-"].map(String::from).into();
        let got = targets(&given, &b"\n  URI:A \n\nname\n"[..]).unwrap();
        let got: Vec<(&str, &str)> = got
            .iter()
            .map(|g| (g.text.as_str(), g.what.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("x", "argument 1"),
                ("URI:A", "line 2 of stdin"),
                ("name", "line 4 of stdin"),
                ("y", "argument 3"),
            ]
        );
    }

    #[test]
    fn label_picks_the_newest_backup_with_it_of_the_name() {
        let mut rows = vec![row(1, b"src", 1), row(2, b"src", 2), row(3, b"other", 3)];
        rows.push(row(4, b"src", 4));
        for (i, label) in [
            (0, "slot-0-FULL"),
            (1, "slot-1-DIFF"),
            (2, "slot-0-FULL"),
            (3, "slot-0-FULL"),
        ] {
            rows[i].label = Some(label.to_owned());
        }
        assert_eq!(
            pick_label(&rows, "src", "slot-0-FULL"),
            Ok(vec![4]),
            "not other's"
        );
        assert_eq!(pick_label(&rows, "src", "slot-1-DIFF"), Ok(vec![2]));
        let err = pick_label(&rows, "src", "disc-2").unwrap_err();
        assert!(err.contains("has the label \"disc-2\""), "{err}");
        assert!(
            err.contains("(its labels: \"slot-0-FULL\", \"slot-1-DIFF\")"),
            "{err}"
        );
        let err = pick_label(&rows, "nolabels", "x").unwrap_err();
        assert!(err.contains("no backup named \"nolabels\""), "{err}");
        rows[1].label = None;
        rows[0].label = None;
        rows[3].label = None;
        let err = pick_label(&rows, "src", "x").unwrap_err();
        assert!(err.contains("(its labels: none)"), "{err}");
        // Not with a cap, not with --generation.
        let cap = rows[0].root_cap.as_str().to_owned();
        assert!(
            Selector::parse(&cap, "BACKUP", None)
                .unwrap()
                .with_label(Some("x"))
                .is_err()
        );
        assert!(
            Selector::parse("src", "BACKUP", Some(1))
                .unwrap()
                .with_label(Some("x"))
                .is_err()
        );
        assert!(
            Selector::parse(&cap, "BACKUP", None)
                .unwrap()
                .with_label(None)
                .is_ok()
        );
    }

    /// Rows of `www` with generations 1..=4 started a day apart from
    /// 2023-11-14T22:13:20Z, generation 2 labelled `5` and 3 `weekly`.
    fn history() -> Vec<BackupRow> {
        let mut rows: Vec<BackupRow> = (1..=4)
            .map(|g| {
                let mut r = row(i64::try_from(g).unwrap(), b"www", g);
                r.ts_start = 1_700_000_000 + (g as i64 - 1) * 86_400;
                r.ts_end = r.ts_start + 60;
                r
            })
            .collect();
        rows[1].label = Some("5".into());
        rows[2].label = Some("weekly".into());
        rows.push(row(9, b"mail@host", 7));
        rows
    }

    fn pick_as_of(rows: &[BackupRow], arg: &str, when: &str) -> Result<Vec<u64>, String> {
        let sel = Selector::of_args(arg, None, None, Some(when)).map_err(|e| e.0)?;
        let picked = sel
            .select(rows, Path::new("/c/cache.db"))
            .map_err(|e| e.to_string())?;
        Ok(picked.rows().iter().map(|r| r.generation).collect())
    }

    #[test]
    fn as_of_picks_the_newest_backup_started_by_then() {
        let rows = history();
        assert_eq!(
            pick_as_of(&rows, "www", "2023-11-14T22:13:20Z"),
            Ok(vec![1])
        );
        assert_eq!(
            pick_as_of(&rows, "www", "2023-11-16T00:00:00Z"),
            Ok(vec![2])
        );
        assert_eq!(pick_as_of(&rows, "www", "2030-01-01"), Ok(vec![4]));
        let e = pick_as_of(&rows, "www", "2023-11-14T22:13:19Z").unwrap_err();
        assert!(
            e.starts_with("no backup named \"www\" started at or before \"2023-11-14T22:13:19Z\""),
            "{e}"
        );
        assert!(e.contains("its first backup started"), "{e}");
        let e = pick_as_of(&rows, "www", "last week").unwrap_err();
        assert!(e.starts_with("--as-of: \"last week\" is not a time"), "{e}");
        let cap = rows[0].root_cap.as_str().to_owned();
        assert!(
            pick_as_of(&rows, &cap, "today")
                .unwrap_err()
                .contains("cannot be used with a cap")
        );
        let e = Selector::of_args("www", Some(1), None, Some("today"))
            .unwrap_err()
            .0;
        assert!(e.contains("give one"), "{e}");
    }

    #[test]
    fn one_token_selectors() {
        let rows = history();
        assert_eq!(pick(&rows, "www@3", None), Ok(vec![3]));
        assert_eq!(pick(&rows, "www@weekly", None), Ok(vec![3]));
        assert_eq!(pick(&rows, "www@2023-11-15T23:00:00Z", None), Ok(vec![2]));
        assert_eq!(
            pick(&rows, "www@2023-11-15", None),
            Ok(vec![2]),
            "a date is its end"
        );
        // A name with `@` that exists as given wins.
        assert_eq!(pick(&rows, "mail@host", None), Ok(vec![7]));
        // Generation 5 does not exist, so `@5` is the label: one reading.
        assert_eq!(pick(&rows, "www@5", None), Ok(vec![2]));
        let mut more = rows.clone();
        more.push(row(10, b"www", 5));
        let e = pick(&more, "www@5", None).unwrap_err();
        assert!(
            e.starts_with("\"www@5\" can be read more than one way"),
            "{e}"
        );
        assert!(e.contains("\n  generation 5: generation 5,"), "{e}");
        assert!(e.contains("\n  the label \"5\": generation 2,"), "{e}");
        let e = pick(&rows, "www@9", None).unwrap_err();
        assert!(
            e.contains("has generation 9") && e.contains("generations: 1, 2, 3, 4"),
            "{e}"
        );
        let e = pick(&rows, "www@2000-01-01", None).unwrap_err();
        assert!(e.contains("started at or before \"2000-01-01\""), "{e}");
        let e = pick(&rows, "www@nightly", None).unwrap_err();
        assert!(
            e.starts_with("\"www@nightly\": \"nightly\" is neither a generation nor a label"),
            "{e}"
        );
        let e = pick(&rows, "nope@3", None).unwrap_err();
        assert!(e.starts_with("no backup named \"nope\""), "{e}");
        let e = pick(&rows, "www@3", Some(3)).unwrap_err();
        assert!(e.contains("cannot be combined"), "{e}");
    }
}
