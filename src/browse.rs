//! Browsing recorded backups by path: the shared ground of `ls`, `cat`,
//! `versions`, `diff`, `find` and `mount`.
//!
//! A [`Browser`] lists directories through [`crate::tree::list`] (so every
//! child name is checked, hostile ones refused) and keeps each listing by
//! its directory object: an unchanged subtree has the same immutable cap in
//! every backup, so walking many backups of a mostly unchanged tree fetches
//! each distinct directory once. [`Browser::fetched`] counts the listings
//! actually requested, which the tests hold to the numbers.
//!
//! Paths are relative to a backup's root, `/`-separated raw bytes; a
//! leading `/`, empty and `.` components are ignored, `..` is refused. A
//! component matches a child by its raw name, else (when that names
//! nothing) in the escaped form `ls` prints (`\xNN`, `\\`).

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::Arc;

use crate::edge::EdgeMeta;
use crate::encode;
use crate::escape;
use crate::stream::read::{ChunkedFile, ReadError};
use crate::tahoe::{Cap, Client, TahoeError};
use crate::tree::{self, Kind, Listing, MAX_DEPTH, Node, TreeError};

/// The longest symlink target read (as `restore` reads them).
pub(crate) const SYMLINK_TARGET_LIMIT: u64 = 64 * 1024;

/// Why a path could not be looked up or read. Never contains a cap.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BrowseError {
    /// The directory at `path` could not be listed.
    #[error("listing {path}: {source}")]
    List {
        path: String,
        #[source]
        source: TreeError,
    },
    /// No entry has this path in the backup.
    #[error("{path}: no such file or directory in the backup")]
    NotFound { path: String },
    /// A component of the path is not a directory.
    #[error("{path}: not a directory in the backup")]
    NotADirectory { path: String },
    /// `..` in a path: a backup path never goes up.
    #[error("{path}: `..` is not allowed in a path of a backup")]
    Dotdot { path: String },
    /// Deeper than any walk goes.
    #[error("{path}: more than {MAX_DEPTH} directory levels below the root")]
    TooDeep { path: String },
    /// Reading content failed.
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: TahoeError,
    },
    /// Reading a chunked file's content failed (a chunk, or its list).
    #[error("reading {path}: {source}")]
    Chunks {
        path: String,
        #[source]
        source: ReadError,
    },
}

/// What a path names: the backup's root, or one child of a directory.
#[derive(Debug, Clone)]
pub(crate) enum Entry {
    /// The root directory, with its recorded metadata when it has one.
    Root { cap: Cap, meta: Option<EdgeMeta> },
    /// Any other entry.
    Node(Node),
}

impl Entry {
    /// The object's cap. Never log it.
    pub(crate) fn cap(&self) -> &Cap {
        match self {
            Entry::Root { cap, .. } => cap,
            Entry::Node(n) => &n.cap,
        }
    }

    pub(crate) fn kind(&self) -> Kind {
        match self {
            Entry::Root { .. } => Kind::Dir,
            Entry::Node(n) => n.kind,
        }
    }
}

/// Lists backup directories, each distinct one once.
pub(crate) struct Browser<'c> {
    client: &'c Client,
    /// By (object key, top level): the top level hides the root metadata.
    listings: HashMap<(String, bool), Arc<Listing>>,
    fetched: u64,
}

impl<'c> Browser<'c> {
    pub(crate) fn new(client: &'c Client) -> Browser<'c> {
        Browser {
            client,
            listings: HashMap::new(),
            fetched: 0,
        }
    }

    /// How many listings were requested from the gateway.
    pub(crate) fn fetched(&self) -> u64 {
        self.fetched
    }

    /// The listing of the directory `dir` (`top_level`: a backup's root),
    /// fetched on first use. `path` names it in an error.
    pub(crate) fn listing(
        &mut self,
        dir: &Cap,
        top_level: bool,
        path: &[u8],
    ) -> Result<Arc<Listing>, BrowseError> {
        let key = (dir.object_key().to_owned(), top_level);
        if let Some(listing) = self.listings.get(&key) {
            return Ok(Arc::clone(listing));
        }
        self.fetched += 1;
        let listing =
            tree::list(self.client, dir, top_level).map_err(|source| BrowseError::List {
                path: shown(path),
                source,
            })?;
        let listing = Arc::new(listing);
        self.listings.insert(key, Arc::clone(&listing));
        Ok(listing)
    }

    /// The entry at `path` in the backup whose root is `root`.
    pub(crate) fn lookup(&mut self, root: &Cap, path: &[u8]) -> Result<Entry, BrowseError> {
        let components = components(path)?;
        let mut entry = Entry::Root {
            cap: root.clone(),
            meta: None,
        };
        let root_listing = self.listing(root, true, b"")?;
        if let Entry::Root { meta, .. } = &mut entry {
            meta.clone_from(&root_listing.root_meta);
        }
        let mut walked: Vec<u8> = Vec::new();
        for (depth, name) in components.iter().enumerate() {
            if depth >= MAX_DEPTH {
                return Err(BrowseError::TooDeep { path: shown(path) });
            }
            if entry.kind() != Kind::Dir {
                return Err(BrowseError::NotADirectory {
                    path: shown(&walked),
                });
            }
            let listing = self.listing(entry.cap(), depth == 0, &walked)?;
            if !walked.is_empty() {
                walked.push(b'/');
            }
            walked.extend_from_slice(name);
            match find_child(&listing, name) {
                Some(node) => entry = Entry::Node(node.clone()),
                None => {
                    return Err(BrowseError::NotFound {
                        path: shown(&walked),
                    });
                }
            }
        }
        Ok(entry)
    }

    /// The children of the directory `entry` (at `path`, for messages).
    pub(crate) fn children(
        &mut self,
        entry: &Entry,
        path: &[u8],
    ) -> Result<Arc<Listing>, BrowseError> {
        if entry.kind() != Kind::Dir {
            return Err(BrowseError::NotADirectory { path: shown(path) });
        }
        self.listing(entry.cap(), matches!(entry, Entry::Root { .. }), path)
    }

    /// A symlink's target (its stored content), at most
    /// [`SYMLINK_TARGET_LIMIT`] bytes.
    pub(crate) fn readlink(&self, node: &Node, path: &[u8]) -> Result<Vec<u8>, BrowseError> {
        self.client
            .download_at_most(&node.cap, SYMLINK_TARGET_LIMIT, "the symlink target")
            .map_err(|source| BrowseError::Read {
                path: shown(path),
                source,
            })
    }
}

/// The child of `listing` named `name`: raw, else in the escaped form.
pub(crate) fn find_child<'l>(listing: &'l Listing, name: &[u8]) -> Option<&'l Node> {
    let by = |raw: &[u8]| {
        listing
            .children
            .binary_search_by(|c| c.name.as_slice().cmp(raw))
            .ok()
            .and_then(|i| listing.children.get(i))
    };
    by(name).or_else(|| {
        escape::unescape(name)
            .ok()
            .filter(|u| u.as_slice() != name)
            .and_then(|u| by(&u))
    })
}

/// The components of a backup path.
pub(crate) fn components(path: &[u8]) -> Result<Vec<&[u8]>, BrowseError> {
    let mut out = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(BrowseError::Dotdot { path: shown(path) }),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// `a/b` from `a` and `b` (just `b` when `a` is empty).
pub(crate) fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = a.to_vec();
    if !out.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(b);
    out
}

/// How a backup path is shown: escaped, `/` for the root.
pub(crate) fn shown(path: &[u8]) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    String::from_utf8_lossy(&escape::escape(path)).into_owned()
}

/// Streams the decoded content of the file `node` into `out`. A download
/// that must be retried after bytes went out cannot be undone: it fails
/// instead of writing them twice. Returns the bytes written.
pub(crate) fn copy_content(
    client: &Client,
    node: &Node,
    path: &[u8],
    out: &mut dyn io::Write,
) -> Result<u64, BrowseError> {
    if node.meta.chunked {
        return copy_chunked(client, node, path, out);
    }
    let mut written: u64 = 0;
    let mut attempts = 0;
    let result = client.download_with_max(&node.cap, node.stored_size, |body| {
        attempts += 1;
        if attempts > 1 && written > 0 {
            return Err(io::Error::other(format!(
                "the download was interrupted after {written} bytes were written; \
                 they cannot be taken back"
            )));
        }
        let mut decoded = encode::decoder(node.meta.enc, body)?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = decoded.read(&mut buf)?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])?;
            written += n as u64;
        }
        Ok(())
    });
    result.map_err(|source| BrowseError::Read {
        path: shown(path),
        source,
    })?;
    if let Some(want) = node.meta.size.filter(|_| node.meta.enc.is_some())
        && want != written
    {
        return Err(BrowseError::Read {
            path: shown(path),
            source: TahoeError::Incomplete {
                expected: want,
                got: written,
            },
        });
    }
    Ok(written)
}

/// [`copy_content`] of a chunked file: its chunks in order, each retried
/// by the client on its own (nothing written is ever repeated), lengths
/// and the total checked against the chunk index and the edge's size.
fn copy_chunked(
    client: &Client,
    node: &Node,
    path: &[u8],
    out: &mut dyn io::Write,
) -> Result<u64, BrowseError> {
    let chunks = |source| BrowseError::Chunks {
        path: shown(path),
        source,
    };
    let size = node.meta.size.unwrap_or(0);
    let mut reader = ChunkedFile::open(client, &node.cap, size).map_err(chunks)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut written = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                // The chunk reader's own errors carry their ReadError.
                let source = match e.downcast::<ReadError>() {
                    Ok(read) => read,
                    Err(other) => ReadError::Sink(other),
                };
                return Err(chunks(source));
            }
        };
        if n == 0 {
            return Ok(written);
        }
        out.write_all(&buf[..n])
            .map_err(|e| chunks(ReadError::Sink(e)))?;
        written += n as u64;
    }
}

/// What an entry is, as `--json` lines name it.
pub(crate) fn kind_name(kind: Kind, mode: Option<u32>) -> &'static str {
    match kind {
        Kind::Dir => "dir",
        Kind::File => "file",
        Kind::Symlink => "symlink",
        Kind::Special => match mode.unwrap_or(0) & 0o170000 {
            0o010000 => "fifo",
            0o140000 => "socket",
            0o020000 => "chardev",
            0o060000 => "blockdev",
            _ => "special",
        },
    }
}

/// Type and permissions as `ls -l` shows them (`drwxr-xr-x`,
/// `-rwsr-x--T`); a symlink without a recorded mode is `lrwxrwxrwx`.
pub(crate) fn mode_text(kind: Kind, mode: Option<u32>) -> String {
    let type_char = match kind_name(kind, mode) {
        "dir" => 'd',
        "symlink" => 'l',
        "fifo" => 'p',
        "socket" => 's',
        "chardev" => 'c',
        "blockdev" => 'b',
        "special" => '?',
        _ => '-',
    };
    let mode = match (kind, mode) {
        (Kind::Symlink, None) => 0o777,
        (_, m) => m.unwrap_or(0),
    };
    let bit = |m: u32, c: char| if mode & m != 0 { c } else { '-' };
    let special = |x: u32, s: u32, set: char, unset: char| match (mode & x != 0, mode & s != 0) {
        (true, true) => set,
        (false, true) => unset,
        (true, false) => 'x',
        (false, false) => '-',
    };
    [
        type_char,
        bit(0o400, 'r'),
        bit(0o200, 'w'),
        special(0o100, 0o4000, 's', 'S'),
        bit(0o040, 'r'),
        bit(0o020, 'w'),
        special(0o010, 0o2000, 's', 'S'),
        bit(0o004, 'r'),
        bit(0o002, 'w'),
        special(0o001, 0o1000, 't', 'T'),
    ]
    .iter()
    .collect()
}

/// A file's original size: recorded beside an encoding, else the stored
/// size; `None` for directories and where nothing says.
pub(crate) fn size_of(node: &Node) -> Option<u64> {
    match node.kind {
        Kind::File => node
            .meta
            .size
            .filter(|_| node.meta.enc.is_some() || node.meta.chunked)
            .or(node.stored_size),
        Kind::Symlink => node.stored_size,
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_as_ls_shows_them() {
        assert_eq!(mode_text(Kind::Dir, Some(0o040755)), "drwxr-xr-x");
        assert_eq!(mode_text(Kind::File, Some(0o100644)), "-rw-r--r--");
        assert_eq!(mode_text(Kind::File, Some(0o104750)), "-rwsr-x---");
        assert_eq!(mode_text(Kind::File, Some(0o102640)), "-rw-r-S---");
        assert_eq!(mode_text(Kind::Dir, Some(0o041777)), "drwxrwxrwt");
        assert_eq!(mode_text(Kind::Dir, Some(0o041770)), "drwxrwx--T");
        assert_eq!(mode_text(Kind::Symlink, None), "lrwxrwxrwx");
        assert_eq!(mode_text(Kind::Special, Some(0o010600)), "prw-------");
        assert_eq!(mode_text(Kind::Special, Some(0o020660)), "crw-rw----");
        assert_eq!(kind_name(Kind::Special, Some(0o140755)), "socket");
    }

    #[test]
    fn paths_split_into_components() {
        fn c(p: &[u8]) -> Result<Vec<&[u8]>, String> {
            components(p).map_err(|e| e.to_string())
        }
        assert_eq!(c(b""), Ok(vec![]));
        assert_eq!(c(b"/"), Ok(vec![]));
        assert_eq!(c(b"./a//b/"), Ok(vec![&b"a"[..], b"b"]));
        assert_eq!(
            c(b"a/../b"),
            Err("a/../b: `..` is not allowed in a path of a backup".into())
        );
        assert_eq!(shown(b"a\tb"), "a\\x09b");
        assert_eq!(shown(b""), "/");
    }
}
