//! Reading a backup tree back from the grid: one immutable directory at a
//! time, with each child's raw name, kind, cap and edge metadata.
//!
//! Used by `restore` and `verify`. The listing is defensive: a tree may be
//! hostile or corrupted, so every child name is checked here, once, and a
//! child that cannot be one safe directory entry is put in
//! [`Listing::refused`] (with the reason), never in [`Listing::children`].
//!
//! Collisions: when two or more children map to the same raw name (possible
//! only in a tree not made by this tool, e.g. an edge `s` beside an edge
//! `\x73` whose `name_raw` is `s`), **all of them are refused**: there is no
//! way to tell which one is genuine, and restoring either could let the
//! other's content or type (say, a symlink) take the place of what a later
//! entry expects.

use serde_json::Value;

use crate::edge::EdgeMeta;
use crate::escape;
use crate::meta::{S_IFDIR, S_IFMT, S_IFREG};
use crate::names::{ROOT_META_NAME, check_file_name, raw_name};
use crate::tahoe::{Cap, Client, TahoeError};

/// The deepest a backup tree is walked: a directory more than this many
/// levels below the root is refused (reported, not listed), so a hostile
/// or corrupted tree cannot make a walk endless. Each level costs a walk
/// its path and (in `restore`) an open directory, so the limit is well
/// below where those would run out; a real tree this deep cannot be used
/// by path anyway (`PATH_MAX` is 4096 bytes).
pub(crate) const MAX_DEPTH: usize = 1024;

/// Why a walk must not descend into the directory `cap` at `depth` levels
/// below the root, whose ancestors are `ancestors` as `(object key, a
/// function making its display path)`: it is one of its own ancestors (the same
/// object, compared by [`Cap::object_key`], so a mutable directory's
/// write and read caps match), or it is deeper than [`MAX_DEPTH`]. The
/// reason (to follow "refused: ") names the ancestor by its path, never by
/// its cap.
pub(crate) fn refuse_descent<'a, P: FnOnce() -> String>(
    cap: &Cap,
    depth: usize,
    ancestors: impl IntoIterator<Item = (&'a str, P)>,
) -> Option<String> {
    if depth > MAX_DEPTH {
        return Some(format!(
            "more than {MAX_DEPTH} directory levels below the root (the most a backup tree \
             is walked); not listed"
        ));
    }
    let key = cap.object_key();
    for (ancestor, shown) in ancestors {
        if ancestor == key {
            // Only now: formatting every ancestor's path for every
            // directory would cost the square of the depth.
            let shown = shown();
            let shown = if shown.is_empty() || shown == "/" {
                "the backup's root".to_string()
            } else {
                shown
            };
            return Some(format!(
                "a directory cycle: this directory is its own ancestor ({shown}); not walked \
                 again"
            ));
        }
    }
    None
}

/// What a child of a backup directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
    Symlink,
    /// Fifo, socket, character or block device (see `meta.mode`, `meta.rdev`).
    Special,
}

/// One child of a backup directory.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// The raw file name (bytes), already checked to be a usable name.
    pub name: Vec<u8>,
    /// The edge name as stored in the directory (escaped form when the
    /// edge has `name_raw`).
    pub edge_name: String,
    pub kind: Kind,
    /// The child's read-only cap. Never log it: use `short_id()`.
    pub cap: Cap,
    pub meta: EdgeMeta,
    /// Tahoe's size of the stored bytes (the compressed size with `enc`);
    /// `None` for directories or when the gateway does not say.
    pub stored_size: Option<u64>,
    /// Whether `meta.mtime_ns` is exact (from `mtime_ns`) rather than
    /// converted from float seconds (`tahoe backup`'s `mtime`, good to
    /// about a microsecond).
    pub mtime_exact: bool,
}

/// One directory of a backup.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// Sorted by raw name.
    pub children: Vec<Node>,
    /// The backup root's own metadata, from `.lafs-backup-root`: at the top
    /// level, and in a directory that is itself the root of another backup
    /// (as `destination.result.append_to_lafs_dir` links them), where the
    /// entry is told from a real file of that name by its directory mode.
    pub root_meta: Option<EdgeMeta>,
    /// Children that were not accepted: (edge name, escaped for display;
    /// why).
    pub refused: Vec<(String, String)>,
}

/// Why a directory could not be listed at all. Never contains a cap.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TreeError {
    #[error(transparent)]
    Tahoe(#[from] TahoeError),
}

/// Lists one directory of a backup through the gateway (one `t=json`
/// request, parsed as it streams in: one child at a time is a JSON value,
/// see `tahoe/listing.rs`). With `top_level`, the reserved
/// `.lafs-backup-root` entry is taken as [`Listing::root_meta`] and not
/// returned as a child.
pub(crate) fn list(client: &Client, dir: &Cap, top_level: bool) -> Result<Listing, TreeError> {
    let builder = client.list_dir(
        dir,
        || ListingBuilder::new(top_level),
        |b, name, child| b.add(name, &child),
    )?;
    Ok(builder.finish())
}

/// Whether a `.lafs-backup-root` entry below the top level carries a
/// backup root's metadata: its mode is a directory's. (Below the top level
/// a real entry may have that name, unescaped, but then it is a file,
/// symlink or directory node whose mode matches its kind, never a file node
/// with a directory mode.)
fn is_nested_root_meta(child: &Value) -> bool {
    let file_node = child.get(0).and_then(Value::as_str) == Some("filenode");
    let mode = child
        .get(1)
        .and_then(|d| d.get("metadata"))
        .and_then(|m| m.get("mode"))
        .and_then(|m| match m {
            Value::String(s) => u32::from_str_radix(s, 8).ok(),
            Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            _ => None,
        });
    file_node && mode.is_some_and(|m| m & crate::meta::S_IFMT == crate::meta::S_IFDIR)
}

/// The display form of an edge name: printable, one line.
fn shown(edge_name: &str) -> String {
    String::from_utf8_lossy(&escape::escape(edge_name.as_bytes())).into_owned()
}

/// A [`Listing`] made one child at a time. The nodes are kept in one
/// vector and grouped by name at the end (a map of small vectors would
/// cost several times the nodes' size).
struct ListingBuilder {
    top_level: bool,
    listing: Listing,
    nodes: Vec<Node>,
}

impl ListingBuilder {
    fn new(top_level: bool) -> Self {
        ListingBuilder {
            top_level,
            listing: Listing::default(),
            nodes: Vec::new(),
        }
    }

    /// One child of the listing: its edge name and its `[TYPE, {…}]`.
    fn add(&mut self, edge_name: String, child: &Value) {
        if edge_name == ROOT_META_NAME && (self.top_level || is_nested_root_meta(child)) {
            match child.get(1).and_then(|d| d.get("metadata")) {
                Some(m) => match EdgeMeta::from_json(m) {
                    Ok(meta) => self.listing.root_meta = Some(meta),
                    Err(e) => self.listing.refused.push((edge_name, e.to_string())),
                },
                None => self
                    .listing
                    .refused
                    .push((edge_name, "the root entry has no metadata".into())),
            }
            return;
        }
        match parse_child(&edge_name, child) {
            Ok(node) => self.nodes.push(node),
            Err(why) => self.listing.refused.push((shown(&edge_name), why)),
        }
    }

    /// The listing, with the colliding names refused.
    fn finish(self) -> Listing {
        let mut listing = self.listing;
        let mut nodes = self.nodes;
        // Stable: colliding entries stay in the order they came.
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        listing.children.reserve_exact(nodes.len());
        let mut nodes = nodes.into_iter().peekable();
        while let Some(node) = nodes.next() {
            if nodes.peek().is_none_or(|next| next.name != node.name) {
                listing.children.push(node);
                continue;
            }
            let mut group = vec![node];
            while let Some(next) = nodes.next_if(|n| n.name == group[0].name) {
                group.push(next);
            }
            let others: Vec<String> = group.iter().map(|n| shown(&n.edge_name)).collect();
            for node in group {
                listing.refused.push((
                    shown(&node.edge_name),
                    format!(
                        "several entries have the same file name ({}); all are refused",
                        others.join(", ")
                    ),
                ));
            }
        }
        listing.refused.sort();
        listing
    }
}

fn parse_child(edge_name: &str, child: &Value) -> Result<Node, String> {
    let node_type = child
        .get(0)
        .and_then(Value::as_str)
        .ok_or("malformed entry (no node type)")?;
    let data = child.get(1).ok_or("malformed entry (no node data)")?;
    let raw_meta = data.get("metadata");
    let meta = match raw_meta {
        None | Some(Value::Null) => EdgeMeta::default(),
        Some(m) => EdgeMeta::from_json(m).map_err(|e| e.to_string())?,
    };
    let name = raw_name(
        edge_name,
        raw_meta
            .and_then(|m| m.get("name_raw"))
            .and_then(Value::as_str),
    )
    .map_err(|e| e.to_string())?;
    check_file_name(&name).map_err(|e| e.to_string())?;
    let cap_text = data
        .get("ro_uri")
        .and_then(Value::as_str)
        .ok_or("no read-only cap (ro_uri)")?;
    let cap = Cap::parse(cap_text).map_err(|e| e.to_string())?;
    let has_uid = raw_meta.is_some_and(|m| m.get("uid").is_some());
    let kind = match node_type {
        "dirnode" => {
            if !cap.is_dir() {
                return Err("a dirnode whose cap is not a directory cap".into());
            }
            if meta.chunked {
                // A regular file stored chunked: its directory is the
                // file's chunk list (`docs/streams.md`), read as the file.
                match meta.mode.map(|m| m & S_IFMT) {
                    None | Some(0 | S_IFREG) => Kind::File,
                    Some(_) => return Err("a chunked file whose mode is not a file's".into()),
                }
            } else {
                Kind::Dir
            }
        }
        "filenode" => {
            if meta.chunked {
                return Err("a chunked file stored as a file node".into());
            }
            if cap.is_dir() {
                return Err("a filenode whose cap is a directory cap".into());
            }
            match meta.mode {
                None if has_uid => Kind::Symlink,
                None => Kind::File,
                Some(mode) => match mode & S_IFMT {
                    0 | S_IFREG => Kind::File,
                    S_IFDIR => return Err("a filenode whose mode says directory".into()),
                    _ => Kind::Special,
                },
            }
        }
        other => return Err(format!("unsupported node type {:?}", shown(other))),
    };
    let stored_size = data.get("size").and_then(Value::as_u64);
    let mtime_exact = raw_meta.is_some_and(|m| m.get("mtime_ns").is_some());
    Ok(Node {
        name,
        edge_name: edge_name.to_owned(),
        kind,
        cap,
        meta,
        stored_size,
        mtime_exact,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A whole `t=json` answer through the builder `list` streams into.
    fn parse_listing(value: &Value, top_level: bool) -> Result<Listing, TreeError> {
        assert_eq!(value.get(0).and_then(Value::as_str), Some("dirnode"));
        let children = value
            .get(1)
            .and_then(|d| d.get("children"))
            .and_then(Value::as_object)
            .expect("a children object");
        let mut builder = ListingBuilder::new(top_level);
        for (edge_name, child) in children {
            builder.add(edge_name.clone(), child);
        }
        Ok(builder.finish())
    }

    fn lit() -> &'static str {
        "URI:LIT:"
    }

    #[test]
    fn kinds_names_and_refusals() {
        let v = json!(["dirnode", {"children": {
            ".lafs-backup-root": ["filenode", {"ro_uri": lit(), "metadata": {"uid": "0", "mode": "40755"}}],
            "f": ["filenode", {"ro_uri": lit(), "size": 0, "metadata": {"uid": "1", "mode": "100644"}}],
            "plain": ["filenode", {"ro_uri": lit()}],
            "l": ["filenode", {"ro_uri": lit(), "metadata": {"uid": "1"}}],
            "p": ["filenode", {"ro_uri": lit(), "metadata": {"uid": "1", "mode": "10644"}}],
            "d": ["dirnode", {"ro_uri": "URI:DIR2-LIT:", "metadata": {"mode": "40755"}}],
            "..": ["filenode", {"ro_uri": lit()}],
            "a/b": ["filenode", {"ro_uri": lit()}],
            "..\\x2fx": ["filenode", {"ro_uri": lit(), "metadata": {"name_raw": "Li4veA=="}}],
            "s": ["filenode", {"ro_uri": lit(), "metadata": {"uid": "0"}}],
            "\\x73": ["dirnode", {"ro_uri": "URI:DIR2-LIT:", "metadata": {"name_raw": "cw=="}}],
            "bad": ["filenode", {"ro_uri": lit(), "metadata": {"mode": "9"}}],
        }}]);
        let l = parse_listing(&v, true).unwrap();
        assert!(l.root_meta.is_some());
        let got: Vec<(&[u8], Kind)> = l
            .children
            .iter()
            .map(|n| (n.name.as_slice(), n.kind))
            .collect();
        assert_eq!(
            got,
            vec![
                (&b"d"[..], Kind::Dir),
                (b"f", Kind::File),
                (b"l", Kind::Symlink),
                (b"p", Kind::Special),
                (b"plain", Kind::File),
            ]
        );
        let refused: Vec<&str> = l.refused.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(refused.len(), 6, "{:?}", l.refused);
        for name in ["..", "a/b", "s", "bad"] {
            assert!(refused.contains(&name), "{name}: {refused:?}");
        }
    }

    #[test]
    fn root_entry_deeper_is_a_child() {
        let v = json!(["dirnode", {"children": {
            ".lafs-backup-root": ["filenode", {"ro_uri": lit(), "metadata": {"uid": "0", "mode": "100644"}}],
        }}]);
        let l = parse_listing(&v, false).unwrap();
        assert!(l.root_meta.is_none());
        assert_eq!(l.children.len(), 1);
    }

    /// A backup root linked below the top level (`append_to_lafs_dir`):
    /// its `.lafs-backup-root` entry, a file node with a directory mode, is
    /// the directory's own metadata, not a child and not a refusal.
    #[test]
    fn nested_backup_root_carries_its_metadata() {
        let v = json!(["dirnode", {"children": {
            ".lafs-backup-root": ["filenode", {"ro_uri": lit(), "metadata": {"uid": "7", "mode": "40750"}}],
            "f": ["filenode", {"ro_uri": lit(), "size": 0, "metadata": {"uid": "1", "mode": "100644"}}],
        }}]);
        let l = parse_listing(&v, false).unwrap();
        assert_eq!(l.root_meta.as_ref().and_then(|m| m.mode), Some(0o40750));
        assert_eq!(l.children.len(), 1);
        assert!(l.refused.is_empty(), "{:?}", l.refused);
    }
}
