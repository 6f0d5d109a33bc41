//! `find PATTERN [NAME...]`: the backups that hold matching paths, with each
//! match's path, size and mtime (docs/history.md).
//!
//! The matches found below a directory object are kept, so the same
//! directory in a later backup (an unchanged subtree: the same immutable
//! cap) is not listed again. A name-only glob's matches do not depend on
//! where the directory sits, so they are kept by the directory object
//! alone; a whole-path pattern's by the object and its path. Only matches
//! are kept, never whole listings: memory follows the matches, not the
//! tree.

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::Arc;

use base64::Engine as _;
use serde_json::json;

use super::{Context, show};
use crate::browse;
use crate::cache::BackupRow;
use crate::cli::FindArgs;
use crate::clock;
use crate::exit::{Outcome, UsageError};
use crate::selector;
use crate::tahoe::{Cap, Client};
use crate::tree::{self, Kind};
use crate::when;

/// How PATTERN is matched.
enum Matcher {
    /// A glob against the entry's name (escaped form).
    Name(glob::Pattern),
    /// A glob against the whole path from the root (escaped form).
    Path(glob::Pattern),
    /// A regex searched in the whole path (escaped form).
    Regex(regex::Regex),
}

impl Matcher {
    fn new(pattern: &str, regex: bool) -> Result<Matcher, UsageError> {
        if regex {
            return regex::Regex::new(pattern).map(Matcher::Regex).map_err(|e| {
                UsageError(format!("PATTERN is not a valid regular expression: {e}"))
            });
        }
        let trimmed = pattern.trim_start_matches('/');
        let glob = glob::Pattern::new(trimmed)
            .map_err(|e| UsageError(format!("PATTERN is not a valid glob: {e}")))?;
        Ok(if pattern.contains('/') {
            Matcher::Path(glob)
        } else {
            Matcher::Name(glob)
        })
    }

    fn by_path(&self) -> bool {
        !matches!(self, Matcher::Name(_))
    }

    fn matches(&self, name: &str, path: &str) -> bool {
        let opts = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        match self {
            Matcher::Name(g) => g.matches_with(name, opts),
            Matcher::Path(g) => g.matches_with(path, opts),
            Matcher::Regex(r) => r.is_match(path),
        }
    }
}

/// One match, relative to the directory whose walk found it.
#[derive(Debug, Clone)]
struct Match {
    rel: Vec<u8>,
    kind: Kind,
    mode: Option<u32>,
    size: Option<u64>,
    mtime_ns: Option<i128>,
}

struct Finder<'c> {
    client: &'c Client,
    matcher: Matcher,
    /// By directory object (and, for whole-path patterns, its path).
    seen: HashMap<(String, Vec<u8>), Arc<Vec<Match>>>,
    listings: u64,
    refused: u64,
}

impl Finder<'_> {
    /// The matches below the directory `dir` at `path`.
    fn walk(
        &mut self,
        dir: &Cap,
        top_level: bool,
        path: &[u8],
        ancestors: &mut Vec<String>,
    ) -> anyhow::Result<Arc<Vec<Match>>> {
        let key = (
            dir.object_key().to_owned(),
            if self.matcher.by_path() {
                path.to_vec()
            } else {
                Vec::new()
            },
        );
        if let Some(found) = self.seen.get(&key) {
            return Ok(Arc::clone(found));
        }
        self.listings += 1;
        let listing = match tree::list(self.client, dir, top_level) {
            Ok(l) => l,
            Err(e) if !path.is_empty() => {
                tracing::warn!("{}: not searched: {e}", browse::shown(path));
                self.refused += 1;
                return Ok(Arc::new(Vec::new()));
            }
            Err(e) => {
                return Err(anyhow::anyhow!("listing the backup's root: {e}"));
            }
        };
        for (name, why) in &listing.refused {
            tracing::warn!(
                "{}: refused: {why}",
                browse::shown(&browse::join(path, name.as_bytes()))
            );
            self.refused += 1;
        }
        ancestors.push(dir.object_key().to_owned());
        let mut found = Vec::new();
        for child in &listing.children {
            let child_path = browse::join(path, &child.name);
            let name_shown = browse::shown(&child.name);
            if self
                .matcher
                .matches(&name_shown, &browse::shown(&child_path))
            {
                found.push(Match {
                    rel: child.name.clone(),
                    kind: child.kind,
                    mode: child.meta.mode,
                    size: browse::size_of(child),
                    mtime_ns: child.meta.mtime_ns,
                });
            }
            if child.kind == Kind::Dir {
                let refused = tree::refuse_descent(
                    &child.cap,
                    ancestors.len(),
                    ancestors
                        .iter()
                        .map(|a| (a.as_str(), || browse::shown(&child_path))),
                );
                if let Some(why) = refused {
                    tracing::warn!("{}: refused: {why}", browse::shown(&child_path));
                    self.refused += 1;
                    continue;
                }
                let below = self.walk(&child.cap, false, &child_path, ancestors)?;
                found.extend(below.iter().map(|m| Match {
                    rel: browse::join(&child.name, &m.rel),
                    ..m.clone()
                }));
            }
        }
        ancestors.pop();
        let found = Arc::new(found);
        self.seen.insert(key, Arc::clone(&found));
        Ok(found)
    }
}

pub(crate) fn run(ctx: &Context<'_>, args: &FindArgs) -> anyhow::Result<Outcome> {
    let matcher = Matcher::new(&args.pattern, args.regex)?;
    let now = clock::now_local();
    let at = |flag: &str, text: &Option<String>, start: bool| -> Result<Option<i64>, UsageError> {
        text.as_deref()
            .map(|t| {
                let parsed = if start {
                    when::parse_start(t, &now)
                } else {
                    when::parse(t, &now)
                };
                parsed.map_err(|e| UsageError(format!("{flag}: {e}")))
            })
            .transpose()
    };
    let as_of = at("--as-of", &args.as_of, false)?;
    let since = at("--since", &args.since, true)?;
    let until = at("--until", &args.until, false)?;
    let gateway = ctx.interactive_gateway(args.gateway.gateway.as_deref(), args.gateway.timeout)?;
    let cache = ctx.read_cache()?;
    let rows = cache.backups()?;
    let mut backups: Vec<&BackupRow> = Vec::new();
    let mut names: Vec<Vec<u8>> = Vec::new();
    if args.names.is_empty() {
        for r in &rows {
            if !names.contains(&r.name) {
                names.push(r.name.clone());
            }
        }
        names.sort();
    }
    let mut of_names: Vec<Vec<&BackupRow>> = Vec::new();
    for name in &args.names {
        of_names.push(selector::backups_of(&rows, name, cache.path()).map_err(UsageError::from)?);
    }
    for name in &names {
        let mut of: Vec<&BackupRow> = rows.iter().filter(|r| r.name == *name).collect();
        of.sort_by_key(|r| r.generation);
        of_names.push(of);
    }
    for of in of_names {
        let picked: Vec<&BackupRow> = match as_of {
            Some(t) => of
                .iter()
                .copied()
                .filter(|r| r.ts_start <= t)
                .max_by_key(|r| (r.ts_start, r.generation))
                .into_iter()
                .collect(),
            None => of
                .into_iter()
                .filter(|r| since.is_none_or(|s| r.ts_start >= s))
                .filter(|r| until.is_none_or(|u| r.ts_start <= u))
                .collect(),
        };
        backups.extend(picked);
    }
    gateway.storage_servers()?;
    let mut finder = Finder {
        client: &gateway.client,
        matcher,
        seen: HashMap::new(),
        listings: 0,
        refused: 0,
    };
    let mut out = io::stdout().lock();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut matches = 0u64;
    for row in &backups {
        let found = finder.walk(&row.root_cap, true, b"", &mut Vec::new())?;
        for m in found.iter() {
            matches += 1;
            let path = browse::shown(&m.rel);
            let mtime = m
                .mtime_ns
                .and_then(|n| i64::try_from(n.div_euclid(1_000_000_000)).ok());
            if ctx.json() {
                let line = json!({
                    "type": "match",
                    "name": show::name(&row.name),
                    "generation": row.generation,
                    "start": show::time(row.ts_start),
                    "label": row.label,
                    "path": path,
                    "path_b64": b64.encode(&m.rel),
                    "kind": browse::kind_name(m.kind, m.mode),
                    "size": m.size,
                    "mtime_ns": m.mtime_ns.and_then(|n| i64::try_from(n).ok()),
                });
                writeln!(out, "{line}")?;
            } else {
                writeln!(
                    out,
                    "{}@{} ({})  {path}{}  {}  {}",
                    show::name(&row.name),
                    row.generation,
                    show::time(row.ts_start),
                    if m.kind == Kind::Dir { "/" } else { "" },
                    m.size.map_or_else(|| "-".to_owned(), |s| s.to_string()),
                    mtime.map_or_else(|| "-".to_owned(), show::time),
                )?;
            }
        }
    }
    if ctx.json() {
        writeln!(
            out,
            "{}",
            json!({
                "type": "summary",
                "backups": backups.len(),
                "matches": matches,
                "listings": finder.listings,
                "refused": finder.refused,
            })
        )?;
    }
    out.flush()?;
    Ok(if finder.refused > 0 {
        Outcome::Partial
    } else {
        Outcome::Success
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_paths_and_regexes() {
        let m = Matcher::new("*.txt", false).expect("valid");
        assert!(m.matches("a.txt", "d/a.txt"));
        assert!(!m.matches("a.txt.gz", "d/a.txt.gz"));
        assert!(!m.by_path());
        let m = Matcher::new("d/*.txt", false).expect("valid");
        assert!(m.matches("a.txt", "d/a.txt"));
        assert!(!m.matches("a.txt", "d/e/a.txt"), "* stays in one component");
        let m = Matcher::new("/d/**/a.txt", false).expect("valid");
        assert!(m.matches("a.txt", "d/e/f/a.txt"));
        let m = Matcher::new("^d/.*\\.txt$", true).expect("valid");
        assert!(m.matches("x", "d/e/a.txt"));
        assert!(Matcher::new("[", false).is_err());
        assert!(Matcher::new("(", true).is_err());
    }
}
