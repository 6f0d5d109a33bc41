//! `cat`: one file of a backup, its exact decoded bytes, on stdout
//! (docs/history.md). `restore --stdout PATH` is the same.

use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt as _;

use super::Context;
use crate::browse::{self, Browser, Entry};
use crate::cli::CatArgs;
use crate::exit::{Outcome, UsageError};
use crate::selector::Selector;
use crate::stream;
use crate::tree::Kind;

pub(crate) fn run(ctx: &Context<'_>, args: &CatArgs) -> anyhow::Result<Outcome> {
    let selector = Selector::of_pick(&args.backup, &args.pick)?;
    let gateway = ctx.interactive_gateway(args.gateway.gateway.as_deref(), args.gateway.timeout)?;
    let picked = ctx.pick(&selector)?;
    gateway.storage_servers()?;
    match &args.path {
        Some(path) => write_file(&gateway.client, &picked.cap, path.as_bytes(), args.readlink)?,
        None => write_stream(&gateway.client, &picked.cap, &args.backup)?,
    }
    Ok(Outcome::Success)
}

/// Writes the stream backup `root` (named `shown` by the user) to stdout:
/// its exact bytes, each chunk's length and the total checked.
fn write_stream(
    client: &crate::tahoe::Client,
    root: &crate::tahoe::Cap,
    shown: &str,
) -> anyhow::Result<()> {
    let Some(layout) = stream::read::open(client, root)? else {
        return Err(UsageError(format!(
            "{shown}: is a tree backup: give the PATH of a file in it \
             (cat without a PATH writes a stream backup)"
        ))
        .into());
    };
    let mut out = io::stdout().lock();
    stream::read::for_each_chunk(client, &layout, |bytes| out.write_all(bytes))?;
    out.flush()?;
    Ok(())
}

/// Writes the file at `path` of the backup `root` to stdout.
pub(crate) fn write_file(
    client: &crate::tahoe::Client,
    root: &crate::tahoe::Cap,
    path: &[u8],
    readlink: bool,
) -> anyhow::Result<()> {
    let mut browser = Browser::new(client);
    // The root's listing, which the lookup reuses: a stream has no paths.
    let top = browser
        .listing(root, true, b"")
        .map_err(super::browse_error)?;
    if top.root_meta.is_none() && browse::find_child(&top, stream::INDEX_NAME.as_bytes()).is_some()
    {
        return Err(UsageError(format!(
            "{}: the backup is a stream backup, which has no paths: cat it without a PATH",
            browse::shown(path)
        ))
        .into());
    }
    let entry = browser.lookup(root, path).map_err(super::browse_error)?;
    let shown = browse::shown(path);
    let node = match &entry {
        Entry::Node(node) => node,
        Entry::Root { .. } => {
            return Err(UsageError(format!("{shown}: is a directory, not a file")).into());
        }
    };
    let mut out = io::stdout().lock();
    match node.kind {
        Kind::File => {
            browse::copy_content(client, node, path, &mut out)?;
        }
        Kind::Symlink if readlink => {
            let target = browser.readlink(node, path)?;
            out.write_all(&target)?;
        }
        Kind::Symlink => {
            return Err(UsageError(format!(
                "{shown}: is a symbolic link (--readlink writes its target)"
            ))
            .into());
        }
        Kind::Dir => {
            return Err(UsageError(format!("{shown}: is a directory, not a file")).into());
        }
        Kind::Special => {
            return Err(UsageError(format!(
                "{shown}: is a {}, which has no content",
                browse::kind_name(node.kind, node.meta.mode)
            ))
            .into());
        }
    }
    out.flush()?;
    Ok(())
}
