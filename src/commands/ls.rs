//! `ls`: a directory of a backup, or one entry, with its recorded metadata
//! (docs/history.md). Reads through [`crate::browse`]; never writes.

use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt as _;

use base64::Engine as _;
use serde_json::json;

use super::{Context, show};
use crate::browse::{self, Browser, Entry};
use crate::cli::LsArgs;
use crate::exit::Outcome;
use crate::selector::Selector;
use crate::tree::{self, Kind, Node};

pub(crate) fn run(ctx: &Context<'_>, args: &LsArgs) -> anyhow::Result<Outcome> {
    let selector = Selector::of_pick(&args.backup, &args.pick)?;
    let gateway = ctx.interactive_gateway(args.gateway.gateway.as_deref(), args.gateway.timeout)?;
    let picked = ctx.pick(&selector)?;
    gateway.storage_servers()?;
    let mut browser = Browser::new(&gateway.client);
    let path = args.path.as_deref().map_or(&b""[..], |p| p.as_bytes());
    let entry = browser
        .lookup(&picked.cap, path)
        .map_err(super::browse_error)?;
    let mut out = Lister {
        out: io::stdout().lock(),
        json: ctx.json(),
        long: args.long,
        refused: 0,
    };
    match &entry {
        Entry::Node(node) if node.kind != Kind::Dir => {
            let name = browse::components(path)
                .ok()
                .and_then(|c| c.last().map(|l| l.to_vec()))
                .unwrap_or_default();
            out.entry(&browser, node, &name)?;
        }
        _ => {
            let mut ancestors = Vec::new();
            out.dir(
                &mut browser,
                &entry,
                path,
                b"",
                args.recursive,
                &mut ancestors,
            )?;
        }
    }
    out.out.flush()?;
    tracing::debug!(
        "listed {} of {}: {} directory listings fetched",
        browse::shown(path),
        picked.shown,
        browser.fetched()
    );
    Ok(if out.refused > 0 {
        Outcome::Partial
    } else {
        Outcome::Success
    })
}

struct Lister<W: Write> {
    out: W,
    json: bool,
    long: bool,
    /// Entries refused (hostile names, unlistable directories), each warned.
    refused: u64,
}

impl<W: Write> Lister<W> {
    /// The children of `dir` (at `path` in the backup; `shown` relative to
    /// the PATH asked for), and with `recursive` everything below.
    fn dir(
        &mut self,
        browser: &mut Browser<'_>,
        dir: &Entry,
        path: &[u8],
        rel: &[u8],
        recursive: bool,
        ancestors: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        let listing = match browser.children(dir, path) {
            Ok(l) => l,
            Err(e) if !rel.is_empty() => {
                // Below the top: one directory lost, the rest goes on.
                tracing::warn!("{e}");
                self.refused += 1;
                return Ok(());
            }
            Err(e) => return Err(super::browse_error(e)),
        };
        for (name, why) in &listing.refused {
            tracing::warn!(
                "{}: refused: {why}",
                browse::shown(&browse::join(path, name.as_bytes()))
            );
            self.refused += 1;
        }
        ancestors.push(dir.cap().object_key().to_owned());
        for child in &listing.children {
            let child_rel = browse::join(rel, &child.name);
            self.entry(browser, child, &child_rel)?;
            if recursive && child.kind == Kind::Dir {
                let child_path = browse::join(path, &child.name);
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
                let entry = Entry::Node(child.clone());
                self.dir(browser, &entry, &child_path, &child_rel, true, ancestors)?;
            }
        }
        ancestors.pop();
        Ok(())
    }

    /// One line for `node`, shown as `rel`.
    fn entry(&mut self, browser: &Browser<'_>, node: &Node, rel: &[u8]) -> anyhow::Result<()> {
        let meta = &node.meta;
        let target = if self.long && node.kind == Kind::Symlink {
            match browser.readlink(node, rel) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!("{e}");
                    self.refused += 1;
                    None
                }
            }
        } else {
            None
        };
        let size = browse::size_of(node);
        if self.json {
            let mtime = meta.mtime_ns.map(|ns| {
                show::time(i64::try_from(ns.div_euclid(1_000_000_000)).unwrap_or(i64::MAX))
            });
            let b64 = base64::engine::general_purpose::STANDARD;
            let mut line = json!({
                "type": "entry",
                "path": browse::shown(rel),
                "path_b64": b64.encode(rel),
                "kind": browse::kind_name(node.kind, meta.mode),
                "mode": meta.mode.map(|m| format!("{:04o}", m & 0o7777)),
                "mode_text": browse::mode_text(node.kind, meta.mode),
                "uid": meta.uid,
                "gid": meta.gid,
                "size": size,
                "mtime_ns": meta.mtime_ns.and_then(|n| i64::try_from(n).ok()),
                "mtime": mtime,
                "xattrs": meta.xattrs.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            });
            if let Some(t) = &target {
                line["target"] = json!(String::from_utf8_lossy(&crate::escape::escape(t)));
                line["target_b64"] = json!(b64.encode(t));
            }
            writeln!(self.out, "{line}")?;
        } else if self.long {
            let mtime = meta.mtime_ns.map_or_else(
                || "-".to_owned(),
                |ns| show::time(i64::try_from(ns.div_euclid(1_000_000_000)).unwrap_or(i64::MAX)),
            );
            let size = size.map_or_else(|| "-".to_owned(), |s| s.to_string());
            let mut line = format!(
                "{} {:>6} {:>6} {:>12} {mtime} {}",
                browse::mode_text(node.kind, meta.mode),
                meta.uid,
                meta.gid,
                size,
                browse::shown(rel)
            );
            if let Some(t) = &target {
                line.push_str(" -> ");
                line.push_str(&String::from_utf8_lossy(&crate::escape::escape(t)));
            }
            writeln!(self.out, "{line}")?;
        } else {
            let slash = if node.kind == Kind::Dir { "/" } else { "" };
            writeln!(self.out, "{}{slash}", browse::shown(rel))?;
        }
        Ok(())
    }
}
