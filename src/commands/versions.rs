//! `versions NAME PATH...` (Tardis's lstardis): the distinct versions of
//! each path across the name's backups, oldest first (docs/history.md).
//!
//! Every backup of the name is looked up through one [`Browser`], so a
//! directory shared by several backups (the same immutable cap) is listed
//! once: the cost is the number of distinct directories along the paths,
//! not backups × depth.

use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt as _;

use base64::Engine as _;
use serde_json::{Value, json};

use super::{Context, show};
use crate::browse::{self, BrowseError, Browser, Entry};
use crate::cache::BackupRow;
use crate::cli::VersionsArgs;
use crate::exit::{Outcome, UsageError};
use crate::selector;
use crate::tree::Kind;

/// What makes two backups' entries at one path the same version: the
/// object (content, or for a directory its whole subtree), the type and
/// the metadata `ls -l` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Version {
    kind: Kind,
    object: String,
    mode: Option<u32>,
    uid: u32,
    gid: u32,
    mtime_ns: Option<i128>,
    size: Option<u64>,
}

impl Version {
    fn of(entry: &Entry) -> Version {
        match entry {
            Entry::Root { cap, meta } => Version {
                kind: Kind::Dir,
                object: cap.object_key().to_owned(),
                mode: meta.as_ref().and_then(|m| m.mode),
                uid: meta.as_ref().map_or(0, |m| m.uid),
                gid: meta.as_ref().map_or(0, |m| m.gid),
                mtime_ns: meta.as_ref().and_then(|m| m.mtime_ns),
                size: None,
            },
            Entry::Node(n) => Version {
                kind: n.kind,
                object: n.cap.object_key().to_owned(),
                mode: n.meta.mode,
                uid: n.meta.uid,
                gid: n.meta.gid,
                mtime_ns: n.meta.mtime_ns,
                size: browse::size_of(n),
            },
        }
    }
}

/// One run of consecutive backups holding the same version (or, with
/// `version: None`, a deletion: the path is absent from `first` on).
struct Span<'r> {
    version: Option<Version>,
    first: &'r BackupRow,
    last: &'r BackupRow,
}

pub(crate) fn run(ctx: &Context<'_>, args: &VersionsArgs) -> anyhow::Result<Outcome> {
    let gateway = ctx.interactive_gateway(args.gateway.gateway.as_deref(), args.gateway.timeout)?;
    let cache = ctx.read_cache()?;
    let rows = cache.backups()?;
    let backups =
        selector::backups_of(&rows, &args.name, cache.path()).map_err(UsageError::from)?;
    gateway.storage_servers()?;
    let mut browser = Browser::new(&gateway.client);
    let mut out = io::stdout().lock();
    let b64 = base64::engine::general_purpose::STANDARD;
    for path in &args.paths {
        let path = path.as_bytes();
        let shown = browse::shown(path);
        // Per backup: the version there, or None where the path is absent.
        let mut seen: Vec<(&BackupRow, Option<Version>)> = Vec::new();
        for row in &backups {
            let found = match browser.lookup(&row.root_cap, path) {
                Ok(entry) => Some(Version::of(&entry)),
                Err(BrowseError::NotFound { .. } | BrowseError::NotADirectory { .. }) => None,
                Err(e) => return Err(super::browse_error(e)),
            };
            seen.push((row, found));
        }
        if seen.iter().all(|(_, v)| v.is_none()) {
            return Err(UsageError(format!(
                "{shown}: no backup named {} has this path (in {} backup{})",
                selector::quoted(&args.name),
                backups.len(),
                show::plural(backups.len())
            ))
            .into());
        }
        if args.all {
            for (row, version) in &seen {
                print_all(&mut out, ctx.json(), path, row, version.as_ref())?;
            }
            continue;
        }
        for span in spans(&seen) {
            if ctx.json() {
                let mut line = match &span.version {
                    Some(v) => json!({
                        "type": "version",
                        "path": shown,
                        "path_b64": b64.encode(path),
                        "kind": browse::kind_name(v.kind, v.mode),
                        "size": v.size,
                        "mtime_ns": v.mtime_ns.and_then(|n| i64::try_from(n).ok()),
                        "first": backup_json(span.first),
                        "last": backup_json(span.last),
                    }),
                    None => json!({
                        "type": "deletion",
                        "path": shown,
                        "path_b64": b64.encode(path),
                        "first": backup_json(span.first),
                    }),
                };
                if span.version.is_some() && span.first.id == span.last.id {
                    line["last"] = line["first"].clone();
                }
                writeln!(out, "{line}")?;
            } else {
                match &span.version {
                    Some(v) => writeln!(
                        out,
                        "{shown}: {} {} bytes, mtime {}, in {}",
                        browse::mode_text(v.kind, v.mode),
                        v.size.map_or_else(|| "-".to_owned(), |s| s.to_string()),
                        mtime_text(v.mtime_ns),
                        range_text(span.first, span.last)
                    )?,
                    None => writeln!(out, "{shown}: deleted in {}", backup_text(span.first))?,
                }
            }
        }
    }
    if ctx.json() {
        writeln!(
            out,
            "{}",
            json!({"type": "summary", "backups": backups.len(), "listings": browser.fetched()})
        )?;
    }
    out.flush()?;
    tracing::debug!("{} directory listings fetched", browser.fetched());
    Ok(Outcome::Success)
}

/// Groups consecutive backups with the same version; a path that goes
/// missing is one deletion span (until it comes back). Leading absences
/// (before the path first appears) are not shown.
fn spans<'r>(seen: &[(&'r BackupRow, Option<Version>)]) -> Vec<Span<'r>> {
    let mut out: Vec<Span<'r>> = Vec::new();
    for (row, version) in seen {
        match out.last_mut() {
            Some(last) if last.version == *version => last.last = row,
            None if version.is_none() => {}
            _ => out.push(Span {
                version: version.clone(),
                first: row,
                last: row,
            }),
        }
    }
    out
}

fn print_all(
    out: &mut impl Write,
    json: bool,
    path: &[u8],
    row: &BackupRow,
    version: Option<&Version>,
) -> io::Result<()> {
    let shown = browse::shown(path);
    if json {
        let b64 = base64::engine::general_purpose::STANDARD;
        let line: Value = match version {
            Some(v) => json!({
                "type": "present",
                "path": shown,
                "path_b64": b64.encode(path),
                "kind": browse::kind_name(v.kind, v.mode),
                "size": v.size,
                "mtime_ns": v.mtime_ns.and_then(|n| i64::try_from(n).ok()),
                "backup": backup_json(row),
            }),
            None => json!({
                "type": "absent",
                "path": shown,
                "path_b64": b64.encode(path),
                "backup": backup_json(row),
            }),
        };
        writeln!(out, "{line}")
    } else {
        match version {
            Some(v) => writeln!(
                out,
                "{shown}: {}: {} {} bytes, mtime {}",
                backup_text(row),
                browse::mode_text(v.kind, v.mode),
                v.size.map_or_else(|| "-".to_owned(), |s| s.to_string()),
                mtime_text(v.mtime_ns)
            ),
            None => writeln!(out, "{shown}: {}: absent", backup_text(row)),
        }
    }
}

fn backup_json(row: &BackupRow) -> Value {
    json!({
        "generation": row.generation,
        "start": show::time(row.ts_start),
        "label": row.label,
    })
}

/// `generation 2 (2024-01-02T03:00:00+00:00, weekly)`.
fn backup_text(row: &BackupRow) -> String {
    match &row.label {
        Some(label) => format!(
            "generation {} ({}, {})",
            row.generation,
            show::time(row.ts_start),
            show::name(label.as_bytes())
        ),
        None => format!(
            "generation {} ({})",
            row.generation,
            show::time(row.ts_start)
        ),
    }
}

fn range_text(first: &BackupRow, last: &BackupRow) -> String {
    if first.id == last.id {
        backup_text(first)
    } else {
        format!("{} to {}", backup_text(first), backup_text(last))
    }
}

fn mtime_text(ns: Option<i128>) -> String {
    ns.and_then(|n| i64::try_from(n.div_euclid(1_000_000_000)).ok())
        .map_or_else(|| "-".to_owned(), show::time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tahoe::Cap;

    fn row(id: i64) -> BackupRow {
        let key: String = std::iter::repeat_n('a', 26).collect();
        let hash: String = std::iter::repeat_n('b', 52).collect();
        BackupRow {
            id,
            name: b"n".to_vec(),
            root_cap: Cap::parse(&format!("URI:DIR2-CHK:{key}:{hash}:1:1:1")).expect("cap"),
            generation: u64::try_from(id).expect("positive"),
            ts_start: id,
            ts_end: id,
            entries: 1,
            bytes: 1,
            ts_check: None,
            label: None,
            priority: None,
            pinned: false,
            kind: crate::cache::BackupKind::Tree,
        }
    }

    fn v(object: &str) -> Option<Version> {
        Some(Version {
            kind: Kind::File,
            object: object.into(),
            mode: None,
            uid: 0,
            gid: 0,
            mtime_ns: None,
            size: None,
        })
    }

    #[test]
    fn consecutive_backups_group_and_gaps_are_deletions() {
        let rows: Vec<BackupRow> = (1..=7).map(row).collect();
        let seen = vec![
            (&rows[0], None),
            (&rows[1], v("a")),
            (&rows[2], v("a")),
            (&rows[3], v("b")),
            (&rows[4], None),
            (&rows[5], None),
            (&rows[6], v("a")),
        ];
        let got: Vec<(Option<String>, i64, i64)> = spans(&seen)
            .iter()
            .map(|s| {
                (
                    s.version.as_ref().map(|v| v.object.clone()),
                    s.first.id,
                    s.last.id,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (Some("a".into()), 2, 3),
                (Some("b".into()), 4, 4),
                (None, 5, 6),
                (Some("a".into()), 7, 7),
            ]
        );
    }
}
