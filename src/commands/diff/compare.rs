//! The walk of `diff`: two trees in step, by raw names in byte order.
//!
//! Side A is always a backup; side B a backup or a live directory. Two
//! backup directories that are the same object (equal caps, compared by
//! [`crate::tahoe::Cap::object_key`]) hold the same entries: their edge
//! metadata is compared, their listings never fetched. A live directory
//! has no cap, so it is always read; a live file whose size and mtime
//! match the backup's is taken as unchanged without reading it (the rule a
//! backup itself uses), as `verify` does without `--content`.

use std::cmp::Ordering;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Seek, Write};
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;

use crate::browse::{self, Browser, Entry};
use crate::edge::EdgeMeta;
use crate::meta::{self, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
use crate::tahoe::Client;
use crate::tree::{self, Kind, MAX_DEPTH};

use super::unified;

/// One side's entry at a path.
#[derive(Debug)]
pub(crate) enum Item {
    /// An entry of a backup (or its root).
    Backup(Entry),
    /// A live entry (`md` from `lstat`).
    Live { abs: PathBuf, md: Metadata },
}

impl Item {
    fn kind(&self) -> Kind {
        match self {
            Item::Backup(e) => e.kind(),
            Item::Live { md, .. } => match md.mode() & S_IFMT {
                S_IFDIR => Kind::Dir,
                S_IFREG => Kind::File,
                S_IFLNK => Kind::Symlink,
                _ => Kind::Special,
            },
        }
    }

    /// The type as `--json` names it (`file`, `dir`, `fifo`, …).
    pub(crate) fn kind_name(&self) -> &'static str {
        let mode = match self {
            Item::Backup(Entry::Node(n)) => n.meta.mode,
            Item::Backup(Entry::Root { .. }) => None,
            Item::Live { md, .. } => Some(md.mode()),
        };
        browse::kind_name(self.kind(), mode)
    }

    /// The original size of a file or symlink target, where known.
    fn size(&self) -> Option<u64> {
        match self {
            Item::Backup(Entry::Node(n)) => browse::size_of(n),
            Item::Backup(Entry::Root { .. }) => None,
            Item::Live { md, .. } => Some(md.len()),
        }
    }

    /// How far apart two recorded mtimes may be and still be the same:
    /// `tahoe backup` stored float seconds, good to about a microsecond.
    fn mtime_slack(&self) -> i128 {
        match self {
            Item::Backup(Entry::Node(n)) if !n.mtime_exact => 1_000,
            _ => 0,
        }
    }
}

/// A directory's child: its raw name and entry.
type Child = (Vec<u8>, Item);

/// What differs in an entry present on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct What {
    /// `type`, `content`, `mode`, `owner`, `mtime`, `acl`, `caps`,
    /// `xattrs`, `rdev` or `target`.
    pub(crate) name: &'static str,
    /// `A -> B`, for the text output; empty where that says nothing more.
    pub(crate) detail: String,
}

/// Added, removed or changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    Added,
    Removed,
    Changed,
}

/// One difference, as the walk finds it.
#[derive(Debug)]
pub(crate) struct Change {
    pub(crate) kind: ChangeKind,
    /// The raw path relative to the roots.
    pub(crate) path: Vec<u8>,
    /// The entry's type (B's for an added or changed entry).
    pub(crate) entry: &'static str,
    pub(crate) what: Vec<What>,
    /// The unified diff of a changed text file, or the line saying why
    /// there is none; only when asked for.
    pub(crate) text: Vec<String>,
}

/// The walk's state: the listings fetched, where differences go.
pub(crate) struct Walker<'c, 's> {
    pub(crate) browser: Browser<'c>,
    client: &'c Client,
    reader: meta::Reader,
    /// Context lines of the unified diffs; `None`: no diffs wanted.
    context: Option<usize>,
    sink: &'s mut dyn FnMut(Change) -> anyhow::Result<()>,
    /// Entries that could not be compared (each warned).
    pub(crate) refused: u64,
    /// The object keys of the backup directories being walked, per side:
    /// one met again is a cycle (only a hostile tree has one).
    ancestors: [Vec<String>; 2],
}

impl<'c, 's> Walker<'c, 's> {
    pub(crate) fn new(
        client: &'c Client,
        context: Option<usize>,
        sink: &'s mut dyn FnMut(Change) -> anyhow::Result<()>,
    ) -> Self {
        Walker {
            browser: Browser::new(client),
            client,
            reader: meta::Reader::default(),
            context,
            sink,
            refused: 0,
            ancestors: [Vec::new(), Vec::new()],
        }
    }

    fn refuse(&mut self, path: &[u8], why: impl std::fmt::Display) {
        self.refuse_shown(&browse::shown(path), why);
    }

    /// As [`Walker::refuse`], the path already in its display form.
    fn refuse_shown(&mut self, shown: &str, why: impl std::fmt::Display) {
        tracing::warn!("{shown}: refused: {why}");
        self.refused += 1;
    }

    fn emit(
        &mut self,
        kind: ChangeKind,
        path: &[u8],
        item: &Item,
        what: Vec<What>,
        text: Vec<String>,
    ) -> anyhow::Result<()> {
        (self.sink)(Change {
            kind,
            path: path.to_vec(),
            entry: item.kind_name(),
            what,
            text,
        })
    }

    /// Compares the entries at `path` (`depth` levels below the roots).
    pub(crate) fn pair(
        &mut self,
        path: &[u8],
        a: Option<Item>,
        b: Option<Item>,
        depth: usize,
    ) -> anyhow::Result<()> {
        match (a, b) {
            (None, None) => Ok(()),
            (Some(a), None) => self.emit(ChangeKind::Removed, path, &a, Vec::new(), Vec::new()),
            (None, Some(b)) => self.emit(ChangeKind::Added, path, &b, Vec::new(), Vec::new()),
            (Some(a), Some(b)) => self.both(path, a, b, depth),
        }
    }

    fn both(&mut self, path: &[u8], a: Item, b: Item, depth: usize) -> anyhow::Result<()> {
        let (ta, tb) = (a.kind_name(), b.kind_name());
        if ta != tb {
            let what = vec![What {
                name: "type",
                detail: format!("{ta} -> {tb}"),
            }];
            return self.emit(ChangeKind::Changed, path, &b, what, Vec::new());
        }
        let same_object = match (&a, &b) {
            (Item::Backup(x), Item::Backup(y)) => x.cap().object_key() == y.cap().object_key(),
            _ => false,
        };
        let mut what = self.meta(path, &a, &b)?;
        let mut text = Vec::new();
        match a.kind() {
            Kind::Dir if !same_object => {
                return self.directory(path, a, b, what, depth);
            }
            Kind::File if !same_object => {
                text = self.content(path, &a, &b, &mut what)?;
            }
            Kind::Symlink if !same_object => {
                if let (Some(x), Some(y)) = (self.target(path, &a)?, self.target(path, &b)?)
                    && x != y
                {
                    let show = |t: &[u8]| browse::shown(t);
                    what.push(What {
                        name: "target",
                        detail: format!("{} -> {}", show(&x), show(&y)),
                    });
                }
            }
            _ => {}
        }
        if what.is_empty() {
            return Ok(());
        }
        self.emit(ChangeKind::Changed, path, &b, what, text)
    }

    /// Two directories that are not the same object: their own line, then
    /// their children in step.
    fn directory(
        &mut self,
        path: &[u8],
        a: Item,
        b: Item,
        mut what: Vec<What>,
        depth: usize,
    ) -> anyhow::Result<()> {
        if depth >= MAX_DEPTH {
            self.refuse(
                path,
                format!("more than {MAX_DEPTH} directory levels below the root; not compared"),
            );
            return Ok(());
        }
        for (side, item) in [&a, &b].into_iter().enumerate() {
            if let Item::Backup(e) = item {
                let ancestors = self.ancestors[side]
                    .iter()
                    .map(|k| (k.as_str(), || "an ancestor".to_owned()));
                if let Some(why) = tree::refuse_descent(e.cap(), depth, ancestors) {
                    self.refuse(path, why);
                    return Ok(());
                }
            }
        }
        let (Some(ca), Some(cb)) = (self.children(path, &a)?, self.children(path, &b)?) else {
            return Ok(());
        };
        // A directory's mtime moves whenever an entry is added or removed,
        // and those are reported themselves.
        let same_names = ca.len() == cb.len() && ca.iter().zip(&cb).all(|(x, y)| x.0 == y.0);
        if !same_names {
            what.retain(|w| w.name != "mtime");
        }
        if !what.is_empty() {
            self.emit(ChangeKind::Changed, path, &b, what, Vec::new())?;
        }
        for (side, item) in [&a, &b].into_iter().enumerate() {
            if let Item::Backup(e) = item {
                self.ancestors[side].push(e.cap().object_key());
            }
        }
        let result = self.children_in_step(path, ca, cb, depth);
        for (side, item) in [&a, &b].into_iter().enumerate() {
            if let Item::Backup(_) = item {
                self.ancestors[side].pop();
            }
        }
        result
    }

    fn children_in_step(
        &mut self,
        path: &[u8],
        ca: Vec<Child>,
        cb: Vec<Child>,
        depth: usize,
    ) -> anyhow::Result<()> {
        let mut ia = ca.into_iter().peekable();
        let mut ib = cb.into_iter().peekable();
        loop {
            let order = match (ia.peek(), ib.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(x), Some(y)) => x.0.cmp(&y.0),
            };
            let (x, y) = match order {
                Ordering::Less => (ia.next(), None),
                Ordering::Greater => (None, ib.next()),
                Ordering::Equal => (ia.next(), ib.next()),
            };
            let Some(name) = x.as_ref().or(y.as_ref()).map(|c| c.0.clone()) else {
                break;
            };
            let child = join(path, &name);
            self.pair(&child, x.map(|c| c.1), y.map(|c| c.1), depth + 1)?;
        }
        Ok(())
    }

    /// The children of a directory, sorted by raw name; `None` when a live
    /// directory cannot be read (warned).
    fn children(&mut self, path: &[u8], item: &Item) -> anyhow::Result<Option<Vec<Child>>> {
        match item {
            Item::Backup(entry) => {
                let listing = self
                    .browser
                    .children(entry, path)
                    .map_err(crate::commands::browse_error)?;
                for (edge, why) in &listing.refused {
                    // The edge name is already in its display form.
                    let shown = if path.is_empty() {
                        edge.clone()
                    } else {
                        format!("{}/{edge}", browse::shown(path))
                    };
                    self.refuse_shown(&shown, why);
                }
                Ok(Some(
                    listing
                        .children
                        .iter()
                        .map(|n| (n.name.clone(), Item::Backup(Entry::Node(n.clone()))))
                        .collect(),
                ))
            }
            Item::Live { abs, .. } => {
                let entries = match fs::read_dir(abs).and_then(|d| d.collect::<Result<Vec<_>, _>>())
                {
                    Ok(entries) => entries,
                    Err(e) => {
                        self.refuse(path, format!("cannot list the live directory: {e}"));
                        return Ok(None);
                    }
                };
                let mut out = Vec::with_capacity(entries.len());
                for entry in entries {
                    let abs = entry.path();
                    match fs::symlink_metadata(&abs) {
                        Ok(md) => out.push((entry.file_name().into_vec(), Item::Live { abs, md })),
                        // Removed since the directory was read.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => {
                            let name = entry.file_name().into_vec();
                            self.refuse(&join(path, &name), format!("cannot lstat: {e}"));
                        }
                    }
                }
                out.sort_by(|x, y| x.0.cmp(&y.0));
                Ok(Some(out))
            }
        }
    }

    /// The recorded metadata of an item (read from the live entry for a
    /// live one); `None` for a backup root without any.
    fn edge_meta(&mut self, path: &[u8], item: &Item) -> Option<EdgeMeta> {
        match item {
            Item::Backup(Entry::Node(n)) => Some(n.meta.clone()),
            Item::Backup(Entry::Root { meta, .. }) => meta.clone(),
            Item::Live { abs, md } => {
                let (live, problems) = crate::verify::live_meta(&mut self.reader, abs, md);
                for p in problems {
                    self.refuse(path, p);
                }
                Some(live)
            }
        }
    }

    /// The metadata that differs between two entries of the same type.
    fn meta(&mut self, path: &[u8], a: &Item, b: &Item) -> anyhow::Result<Vec<What>> {
        let (Some(x), Some(y)) = (self.edge_meta(path, a), self.edge_meta(path, b)) else {
            return Ok(Vec::new());
        };
        let slack = a.mtime_slack().max(b.mtime_slack());
        Ok(meta_differences(&x, &y, a.kind(), slack))
    }

    /// A symlink's target; `None` when a live one cannot be read (warned).
    fn target(&mut self, path: &[u8], item: &Item) -> anyhow::Result<Option<Vec<u8>>> {
        match item {
            Item::Backup(Entry::Node(n)) => Ok(Some(
                self.browser
                    .readlink(n, path)
                    .map_err(crate::commands::browse_error)?,
            )),
            Item::Backup(Entry::Root { .. }) => Ok(None),
            Item::Live { abs, .. } => match fs::read_link(abs) {
                Ok(t) => Ok(Some(t.into_os_string().into_vec())),
                Err(e) => {
                    self.refuse(path, format!("cannot readlink: {e}"));
                    Ok(None)
                }
            },
        }
    }

    /// Compares two files' contents; pushes `content` to `what` when they
    /// differ and returns the unified diff (when asked for).
    fn content(
        &mut self,
        path: &[u8],
        a: &Item,
        b: &Item,
        what: &mut Vec<What>,
    ) -> anyhow::Result<Vec<String>> {
        let (sa, sb) = (a.size(), b.size());
        let live = matches!(b, Item::Live { .. });
        if live && sa == sb && !what.iter().any(|w| w.name == "mtime") {
            // Same size and mtime: what a backup takes as unchanged.
            return Ok(Vec::new());
        }
        let small = |s: Option<u64>| s.is_some_and(|s| s <= unified::DIFF_LIMIT);
        if self.context.is_some() && small(sa) && small(sb) {
            let (Some(x), Some(y)) = (self.read_all(path, a)?, self.read_all(path, b)?) else {
                return Ok(Vec::new());
            };
            if x == y {
                return Ok(Vec::new());
            }
            what.push(content());
            let context = self.context.unwrap_or(3);
            return Ok(unified::text(&x, &y, &browse::shown(path), context));
        }
        let differ = match (sa, sb) {
            (Some(x), Some(y)) if x != y => true,
            _ => match self.same_bytes(path, a, b)? {
                Some(same) => !same,
                None => return Ok(Vec::new()),
            },
        };
        if !differ {
            return Ok(Vec::new());
        }
        what.push(content());
        Ok(match self.context {
            Some(_) => vec![format!(
                "(no text diff: larger than {} bytes)",
                unified::DIFF_LIMIT
            )],
            None => Vec::new(),
        })
    }

    /// A file's whole content; `None` when a live one cannot be read
    /// (warned).
    fn read_all(&mut self, path: &[u8], item: &Item) -> anyhow::Result<Option<Vec<u8>>> {
        let mut out = Vec::new();
        Ok(self.copy_into(path, item, &mut out)?.then_some(out))
    }

    /// Writes a file's decoded content into `out`; false when a live one
    /// cannot be read (warned).
    fn copy_into(&mut self, path: &[u8], item: &Item, out: &mut dyn Write) -> anyhow::Result<bool> {
        match item {
            Item::Backup(Entry::Node(n)) => {
                browse::copy_content(self.client, n, path, out)?;
                Ok(true)
            }
            Item::Backup(Entry::Root { .. }) => Ok(false),
            Item::Live { abs, .. } => {
                match File::open(abs).and_then(|mut f| io::copy(&mut f, out)) {
                    Ok(_) => Ok(true),
                    Err(e) => {
                        self.refuse(path, format!("cannot read the live file: {e}"));
                        Ok(false)
                    }
                }
            }
        }
    }

    /// Whether two files hold the same bytes, streamed: A spooled to a
    /// temporary file, B compared with it as it comes. `None`: one could not
    /// be read (warned).
    fn same_bytes(&mut self, path: &[u8], a: &Item, b: &Item) -> anyhow::Result<Option<bool>> {
        let mut spool = tempfile::tempfile()?;
        if !self.copy_into(path, a, &mut spool)? {
            return Ok(None);
        }
        spool.rewind()?;
        let mut cmp = SameAs {
            other: io::BufReader::new(spool),
            same: true,
            buf: Vec::new(),
        };
        if !self.copy_into(path, b, &mut cmp)? {
            return Ok(None);
        }
        Ok(Some(cmp.finish()?))
    }
}

fn content() -> What {
    What {
        name: "content",
        detail: String::new(),
    }
}

/// A writer that compares what is written with `other`.
struct SameAs<R: Read> {
    other: R,
    same: bool,
    buf: Vec<u8>,
}

impl<R: Read> Write for SameAs<R> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.same {
            self.buf.resize(data.len(), 0);
            let mut filled = 0;
            while filled < data.len() {
                match self.other.read(&mut self.buf[filled..])? {
                    0 => break,
                    n => filled += n,
                }
            }
            self.same = filled == data.len() && self.buf[..filled] == *data;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<R: Read> SameAs<R> {
    /// Whether everything matched and `other` has nothing more.
    fn finish(mut self) -> io::Result<bool> {
        Ok(self.same && self.other.read(&mut [0u8; 1])? == 0)
    }
}

/// The metadata differences of two entries of the same `kind`, in a fixed
/// order. Mtimes within `mtime_slack_ns` are the same; `acl_ids` is not
/// compared (see [`crate::verify::same_acls`]), nor `hlink`.
pub(crate) fn meta_differences(
    a: &EdgeMeta,
    b: &EdgeMeta,
    kind: Kind,
    mtime_slack_ns: i128,
) -> Vec<What> {
    let mut out = Vec::new();
    let mut push = |name: &'static str, detail: String| out.push(What { name, detail });
    if let (Some(x), Some(y)) = (a.mode, b.mode)
        && x & 0o7777 != y & 0o7777
    {
        push("mode", format!("{:04o} -> {:04o}", x & 0o7777, y & 0o7777));
    }
    if (a.uid, a.gid) != (b.uid, b.gid) {
        push(
            "owner",
            format!("{}:{} -> {}:{}", a.uid, a.gid, b.uid, b.gid),
        );
    }
    if let (Some(x), Some(y)) = (a.mtime_ns, b.mtime_ns)
        && (x - y).abs() > mtime_slack_ns
    {
        push("mtime", format!("{} -> {}", show_ns(x), show_ns(y)));
    }
    if !crate::verify::same_acls(a, b) {
        let show = |t: &Option<String>| t.clone().unwrap_or_else(|| "none".to_owned());
        push("acl", format!("{} -> {}", show(&a.acls), show(&b.acls)));
    }
    if a.caps != b.caps {
        let show = |t: &Option<String>| t.clone().unwrap_or_else(|| "none".to_owned());
        push("caps", format!("{} -> {}", show(&a.caps), show(&b.caps)));
    }
    if a.xattrs != b.xattrs {
        let mut names: Vec<&str> = a
            .xattrs
            .iter()
            .chain(&b.xattrs)
            .filter(|x| !(a.xattrs.contains(x) && b.xattrs.contains(x)))
            .map(|(k, _)| k.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        let names: Vec<String> = names.iter().map(|n| browse::shown(n.as_bytes())).collect();
        push("xattrs", names.join(" "));
    }
    if kind == Kind::Special && a.rdev != b.rdev {
        let show =
            |r: Option<(u64, u64)>| r.map_or_else(|| "none".into(), |(x, y)| format!("{x}:{y}"));
        push("rdev", format!("{} -> {}", show(a.rdev), show(b.rdev)));
    }
    out
}

/// An mtime as local ISO 8601 time, with the fraction of a second where
/// it has one (`2024-01-01T03:00:00.5+00:00`); `@NS` when out of range.
fn show_ns(ns: i128) -> String {
    jiff::Timestamp::from_nanosecond(ns).map_or_else(
        |_| format!("@{ns}"),
        |t| {
            t.to_zoned(jiff::tz::TimeZone::system())
                .strftime("%Y-%m-%dT%H:%M:%S%.f%:z")
                .to_string()
        },
    )
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

/// The live entry at `path` below the live root, if there is one.
pub(crate) fn live_item(root: &std::path::Path, path: &[u8]) -> io::Result<Option<Item>> {
    let abs = if path.is_empty() {
        root.to_path_buf()
    } else {
        root.join(std::ffi::OsStr::from_bytes(path))
    };
    match fs::symlink_metadata(&abs) {
        Ok(md) => Ok(Some(Item::Live { abs, md })),
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(20) => {
            // ENOTDIR: a component is not a directory: nothing there.
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_differences_in_order() {
        let a = EdgeMeta {
            mode: Some(0o100644),
            mtime_ns: Some(1_000_000_000),
            ..EdgeMeta::default()
        };
        let mut b = a.clone();
        assert!(meta_differences(&a, &b, Kind::File, 0).is_empty());
        b.mode = Some(0o100600);
        b.uid = 1000;
        b.mtime_ns = Some(1_000_000_500);
        b.xattrs = vec![("user.k".into(), b"v".to_vec())];
        let names: Vec<&str> = meta_differences(&a, &b, Kind::File, 0)
            .iter()
            .map(|w| w.name)
            .collect();
        assert_eq!(names, ["mode", "owner", "mtime", "xattrs"]);
        // Within the slack, the mtimes are the same.
        let names: Vec<&str> = meta_differences(&a, &b, Kind::File, 1_000)
            .iter()
            .map(|w| w.name)
            .collect();
        assert_eq!(names, ["mode", "owner", "xattrs"]);
        assert_eq!(
            meta_differences(&a, &b, Kind::File, 0)[0].detail,
            "0644 -> 0600"
        );
    }

    #[test]
    fn same_as_compares_streams() {
        let check = |a: &[u8], chunks: &[&[u8]]| {
            let mut w = SameAs {
                other: a,
                same: true,
                buf: Vec::new(),
            };
            for c in chunks {
                w.write_all(c).unwrap();
            }
            w.finish().unwrap()
        };
        assert!(check(b"abcdef", &[b"abc", b"def"]));
        assert!(!check(b"abcdef", &[b"abc", b"dXf"]));
        assert!(!check(b"abcdef", &[b"abc"]));
        assert!(!check(b"abc", &[b"abc", b"d"]));
        assert!(check(b"", &[]));
    }
}
