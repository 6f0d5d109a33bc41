//! `diff A B [PATH...]`: what differs between two backups, or between a
//! backup and a live directory (docs/history.md). `files NAME` is the same
//! against the name's previous backup ([`super::files`]).
//!
//! The walk ([`compare`]) opens only directories that differ: two backups'
//! directories with equal caps hold the same tree. This module resolves
//! the two sides and the PATHs, and prints what the walk finds.

mod compare;
mod unified;

use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::json;

use super::Context;
use crate::browse::{self, BrowseError};
use crate::cli::{DiffArgs, DiffShowArgs};
use crate::exit::{Outcome, UsageError};
use crate::selector::Selector;
use crate::tahoe::user_cap::{self, UserCap};
use crate::tahoe::{Cap, Client};

use compare::{Change, ChangeKind, Item, Walker};

/// The B side: a backup's root, or a live directory.
#[derive(Debug)]
pub(crate) enum SideB {
    Backup(Cap),
    Live(PathBuf),
}

/// Whether a `diff` argument is a live directory: it contains `/` or
/// starts with `.` and is not a cap (a cap may be pasted inside a gateway
/// address, which has slashes).
fn is_live(arg: &str) -> bool {
    !matches!(user_cap::classify(arg), UserCap::Cap(_))
        && (arg.contains('/') || arg.starts_with('.'))
}

pub(crate) fn run(ctx: &Context<'_>, args: &DiffArgs) -> anyhow::Result<Outcome> {
    if is_live(&args.a) {
        return Err(UsageError(format!(
            "A: {:?} is a directory; only B may be a live directory (A is a backup: a root \
             cap, NAME, NAME@N, NAME@LABEL or NAME@WHEN)",
            args.a
        ))
        .into());
    }
    let a = Selector::parse(&args.a, "A", None)?;
    let b = if is_live(&args.b) {
        None
    } else {
        Some(Selector::parse(&args.b, "B", None)?)
    };
    let gateway = ctx.interactive_gateway(args.gateway.gateway.as_deref(), args.gateway.timeout)?;
    let a = ctx.pick(&a)?;
    let b = match b {
        Some(selector) => {
            let picked = ctx.pick(&selector)?;
            tracing::debug!("diff of {} and {}", a.shown, picked.shown);
            SideB::Backup(picked.cap)
        }
        None => SideB::Live(PathBuf::from(&args.b)),
    };
    gateway.storage_servers()?;
    compare(ctx, &gateway.client, &a.cap, &b, &args.show)
}

/// How the differences are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Text,
    List,
    Stat,
    Json,
}

/// Compares the backup `a` with `b` (below each of `show.paths`, or the
/// whole trees) and prints the differences as `show` and `--json` say.
pub(crate) fn compare(
    ctx: &Context<'_>,
    client: &Client,
    a: &Cap,
    b: &SideB,
    show: &DiffShowArgs,
) -> anyhow::Result<Outcome> {
    let mode = if ctx.json() {
        Mode::Json
    } else if show.list {
        Mode::List
    } else if show.stat {
        Mode::Stat
    } else {
        Mode::Text
    };
    let live_root = match b {
        SideB::Live(dir) => Some(live_root(dir)?),
        SideB::Backup(_) => None,
    };
    let paths = paths(&show.paths)?;
    let mut counts = [0u64; 3];
    let mut out = io::stdout().lock();
    let (listings, refused) = {
        let mut sink = |change: Change| -> anyhow::Result<()> {
            counts[change.kind as usize] += 1;
            print(&mut out, mode, &change)?;
            Ok(())
        };
        let context = (mode == Mode::Text).then_some(show.unified);
        let mut walker = Walker::new(client, context, &mut sink);
        // Every PATH is resolved before anything is printed: a wrong one is
        // a usage error with no output.
        let mut pairs = Vec::with_capacity(paths.len());
        for path in paths {
            let x = backup_item(&mut walker, a, &path)?;
            let y = match (b, &live_root) {
                (_, Some(root)) => compare::live_item(root, &path).map_err(|e| {
                    anyhow::anyhow!(
                        "{}: cannot lstat in the live directory {}: {e}",
                        browse::shown(&path),
                        root.display()
                    )
                })?,
                (SideB::Backup(cap), None) => backup_item(&mut walker, cap, &path)?,
                (SideB::Live(_), None) => None,
            };
            if x.is_none() && y.is_none() {
                return Err(UsageError(format!(
                    "{}: no such file or directory in A or B",
                    browse::shown(&path)
                ))
                .into());
            }
            pairs.push((path, x, y));
        }
        for (path, x, y) in pairs {
            let depth = path.split(|&c| c == b'/').filter(|c| !c.is_empty()).count();
            walker.pair(&path, x, y, depth)?;
        }
        (walker.browser.fetched(), walker.refused)
    };
    let [added, removed, changed] = counts;
    match mode {
        Mode::Json => writeln!(
            out,
            "{}",
            json!({
                "type": "summary",
                "added": added,
                "removed": removed,
                "changed": changed,
                "refused": refused,
                "listings": listings,
            })
        )?,
        Mode::Stat => writeln!(out, "{added} added, {removed} removed, {changed} changed")?,
        Mode::Text | Mode::List => {}
    }
    out.flush()?;
    tracing::debug!("diff: {listings} directory listings fetched");
    Ok(if added + removed + changed > 0 {
        Outcome::Problems
    } else if refused > 0 {
        Outcome::Partial
    } else {
        Outcome::Success
    })
}

/// The entry at `path` of the backup `root`, if it has one.
fn backup_item(
    walker: &mut Walker<'_, '_>,
    root: &Cap,
    path: &[u8],
) -> anyhow::Result<Option<Item>> {
    match walker.browser.lookup(root, path) {
        Ok(entry) => Ok(Some(Item::Backup(entry))),
        Err(BrowseError::NotFound { .. } | BrowseError::NotADirectory { .. }) => Ok(None),
        Err(e) => Err(super::browse_error(e)),
    }
}

/// The live directory B, which must be one.
fn live_root(dir: &Path) -> anyhow::Result<PathBuf> {
    let root = std::fs::canonicalize(dir).map_err(|e| {
        UsageError(format!(
            "B: cannot open the live directory {}: {e}",
            dir.display()
        ))
    })?;
    if !root.is_dir() {
        return Err(UsageError(format!("B: {} is not a directory", dir.display())).into());
    }
    Ok(root)
}

/// The PATHs as normalised raw paths (`a/b`), sorted, those inside another
/// one dropped; the whole tree when none is given.
fn paths(given: &[std::ffi::OsString]) -> anyhow::Result<Vec<Vec<u8>>> {
    if given.is_empty() {
        return Ok(vec![Vec::new()]);
    }
    let mut paths = Vec::new();
    for p in given {
        let components = browse::components(p.as_bytes()).map_err(super::browse_error)?;
        paths.push(components.join(&b'/'));
    }
    paths.sort();
    let mut kept: Vec<Vec<u8>> = Vec::new();
    for p in paths {
        let inside = kept.iter().any(|k| {
            k.is_empty() || p == *k || (p.starts_with(k) && p.get(k.len()) == Some(&b'/'))
        });
        if !inside {
            kept.push(p);
        }
    }
    Ok(kept)
}

/// One difference, as `mode` prints it.
fn print(out: &mut impl Write, mode: Mode, change: &Change) -> io::Result<()> {
    let shown = browse::shown(&change.path);
    match mode {
        Mode::Stat => Ok(()),
        Mode::List => writeln!(out, "{shown}"),
        Mode::Json => {
            let b64 = base64::engine::general_purpose::STANDARD;
            let kind = match change.kind {
                ChangeKind::Added => "added",
                ChangeKind::Removed => "removed",
                ChangeKind::Changed => "changed",
            };
            let line = json!({
                "type": kind,
                "path": shown,
                "path_b64": b64.encode(&change.path),
                "kind": change.entry,
                "what": change.what.iter().map(|w| w.name).collect::<Vec<_>>(),
            });
            writeln!(out, "{line}")
        }
        Mode::Text => {
            let slash = if change.entry == "dir" && !change.path.is_empty() {
                "/"
            } else {
                ""
            };
            let what: Vec<String> = change
                .what
                .iter()
                .map(|w| {
                    if w.detail.is_empty() {
                        w.name.to_owned()
                    } else {
                        format!("{} {}", w.name, w.detail)
                    }
                })
                .collect();
            match change.kind {
                ChangeKind::Added => writeln!(out, "+ {shown}{slash}")?,
                ChangeKind::Removed => writeln!(out, "- {shown}{slash}")?,
                ChangeKind::Changed => writeln!(out, "M {shown}{slash}: {}", what.join(", "))?,
            }
            for line in &change.text {
                writeln!(out, "{line}")?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_arguments() {
        assert!(is_live("./x"));
        assert!(is_live("/tmp/x"));
        assert!(is_live(".hidden"));
        assert!(is_live("a/b"));
        assert!(!is_live("tree"));
        assert!(!is_live("tree@2"));
        assert!(!is_live("tree@2024-01-01"));
    }

    #[test]
    fn paths_are_normalised_and_nested_ones_dropped() {
        let p = |v: &[&str]| {
            paths(&v.iter().map(std::ffi::OsString::from).collect::<Vec<_>>())
                .map_err(|e| e.to_string())
        };
        assert_eq!(p(&[]), Ok(vec![vec![]]));
        assert_eq!(
            p(&["/d/", "d/new", "dd", "./a//b"]),
            Ok(vec![b"a/b".to_vec(), b"d".to_vec(), b"dd".to_vec()])
        );
        assert_eq!(p(&["x", "/"]), Ok(vec![vec![]]));
        assert!(p(&["a/../b"]).is_err());
    }
}
