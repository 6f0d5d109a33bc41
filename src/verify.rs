//! Comparing a backup with a live tree: the engine of `verify`
//! (`docs/verify.md`).
//!
//! The backup tree (read with [`crate::tree::list`], each directory once)
//! and the live tree are walked in step, by raw names in byte order. Every
//! difference is handed to a sink as a [`Difference`]: its kind, the
//! entry's escaped path (as [`crate::scan::display_path`] writes it) and a
//! detail. Caps never appear in a difference or an error: objects are
//! named by their path.
//!
//! The live side is read with the same code the backup used
//! ([`crate::meta::Reader::capture`] for ownership, mode, ACLs and caps,
//! [`EdgeMeta::read`] for mtime, xattrs and rdev), so the two sides are
//! compared in the same text forms.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use anyhow::Context as _;

use crate::edge::EdgeMeta;
use crate::encode;
use crate::filter::{self, Filter, LocalRules};
use crate::meta::{self, S_IFMT};
use crate::scan::display_path;
use crate::scan::longpath::{self, DirPath};
use crate::stream::read::{ChunkedFile, ReadError};
use crate::tahoe::{Cap, Client, SYMLINK_TARGET_LIMIT, TahoeError};
use crate::tree::{self, Kind, Node};

/// What to compare besides the metadata.
#[derive(Debug, Default)]
pub(crate) struct Options {
    /// Download every regular file and compare its bytes.
    pub content: bool,
    /// The source rules the backup was made with: live entries they would
    /// have left out of a backup are not reported as `extra`. `None`
    /// reports every live entry the backup lacks.
    pub rules: Option<SourceRules>,
}

/// What a scan leaves out of a backup (`filter` and `filter_files`, the
/// per-directory `.lafs-backup-exclude` and `.lafs-backup-skip` files,
/// `source.exclude_caches`, `source.one_file_system`), so that `verify` of a backup against its own
/// source reports no difference for entries the backup never took.
#[derive(Debug)]
pub(crate) struct SourceRules {
    pub filter: Filter,
    /// The contents of a directory holding a valid `CACHEDIR.TAG`, other
    /// than the tag, were left out.
    pub exclude_caches: bool,
    /// The contents of a directory on another file system than the live
    /// root (a mount point) were left out.
    pub one_file_system: bool,
}

impl SourceRules {
    /// Whether a live `extra` entry `rel` (at `abs`) is one a backup of the
    /// source never took: the filter excludes it, or its directory's
    /// entries were all left out (`whole_dir_left_out`).
    /// `local` holds the `.lafs-backup-exclude` rules of the directories
    /// above it, as the scan read them.
    fn left_out(
        &self,
        rel: &[u8],
        abs: &Path,
        whole_dir_left_out: bool,
        local: &[LocalRules],
    ) -> bool {
        if whole_dir_left_out {
            return true;
        }
        let is_dir = fs::symlink_metadata(abs).is_ok_and(|m| m.is_dir());
        !self.filter.includes(rel, is_dir)
            || local.iter().any(|l| l.excludes(rel, is_dir))
            || (is_dir && filter::has_skip_file(abs))
    }

    /// Whether a backup of the source left out every entry of the live
    /// directory `abs` (a cache directory's, its tag aside; a mount point's).
    fn dir_left_out(&self, abs: &Path, root_dev: u64) -> bool {
        (self.exclude_caches && crate::scan::has_cachedir_tag(abs))
            || (self.one_file_system
                && fs::symlink_metadata(abs).is_ok_and(|m| m.dev() != root_dev))
    }
}

/// One difference between the backup and the live tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Difference {
    /// `missing`, `extra`, `type`, `size`, `mode`, `owner`, `mtime`, `acl`,
    /// `caps`, `xattr`, `rdev`, `target`, `hlink`, `content`, `refused` or
    /// `unreadable`.
    pub kind: &'static str,
    /// The entry's path relative to the roots, escaped, starting with `/`.
    pub path: String,
    /// What differs; empty for `missing` and `extra`.
    pub detail: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.detail.is_empty() {
            write!(f, "{} {}", self.kind, self.path)
        } else {
            write!(f, "{} {}: {}", self.kind, self.path, self.detail)
        }
    }
}

/// Totals of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    /// Differences reported.
    pub differences: u64,
    /// Backup entries compared (the root included).
    pub entries: u64,
}

/// Compares the backup whose root directory is `root` with the live tree
/// at `live`, handing each difference to `sink` as it is found. An error
/// (from the grid, from the sink, or `live` not being a readable
/// directory) means the comparison could not be completed.
pub(crate) fn verify(
    client: &Client,
    root: &Cap,
    live: &Path,
    options: Options,
    sink: &mut dyn FnMut(&Difference) -> io::Result<()>,
) -> anyhow::Result<Summary> {
    // Resolved like `canonicalize` (links followed), also where the path
    // or what it resolves to is too long for the kernel; below it, entries
    // are named through held directory descriptors.
    let live_dir = longpath::canonicalize(live)
        .and_then(|p| DirPath::new(&p))
        .with_context(|| format!("cannot open the live tree {}", live.display()))?;
    let live_root = live_dir.path();
    let md = fs::symlink_metadata(live_root)
        .with_context(|| format!("cannot read {}", live.display()))?;
    if !md.is_dir() {
        anyhow::bail!("{} is not a directory", live.display());
    }
    let mut walker = Walker {
        client,
        root_dev: md.dev(),
        options,
        reader: meta::Reader::default(),
        summary: Summary::default(),
        sink,
        links: Links::default(),
        ancestors: vec![(root.object_key(), "/".to_string())],
        local: Vec::new(),
    };
    walker.summary.entries += 1;
    let listing =
        tree::list(client, root, true).context("cannot list the backup's root directory")?;
    if let Some(root_meta) = &listing.root_meta {
        walker.compare_meta(b"", live_root, &md, root_meta, Kind::Dir, 0)?;
    }
    walker.directory(Vec::new(), &live_dir, listing)?;
    walker.hard_links()?;
    Ok(walker.summary)
}

/// A live inode: (device, inode number).
type Inode = (u64, u64);
/// A backup's `hlink`: the source's (device, inode number).
type Hlink = (u64, u64);
/// An entry's path from the roots (raw bytes).
type RelPath = Vec<u8>;

/// The hard-link structure seen on both sides, for non-directories whose
/// type matched: compared after the walk.
#[derive(Default)]
struct Links {
    /// Backup `hlink` → the entries sharing it (path, live inode), in walk
    /// order.
    backup: HashMap<Hlink, Vec<(RelPath, Inode)>>,
    /// Live inode with more than one link → the entries that are it
    /// (path, backup `hlink`), in walk order.
    live: HashMap<Inode, Vec<(RelPath, Option<Hlink>)>>,
}

struct Walker<'a, 's> {
    client: &'a Client,
    /// The live root's device, for `one_file_system`.
    root_dev: u64,
    options: Options,
    reader: meta::Reader,
    summary: Summary,
    sink: &'s mut dyn FnMut(&Difference) -> io::Result<()>,
    links: Links,
    /// `(object key, display path)` of the backup directories being walked,
    /// root first: a directory among them met again is a cycle.
    ancestors: Vec<(String, String)>,
    /// The `.lafs-backup-exclude` rules of the live directories being
    /// walked (only with source rules).
    local: Vec<LocalRules>,
}

/// The path of `name` inside the directory `rel` ("" for the root).
fn join_rel(rel: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rel.len() + 1 + name.len());
    if !rel.is_empty() {
        out.extend_from_slice(rel);
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

impl Walker<'_, '_> {
    fn report(&mut self, kind: &'static str, rel: &[u8], detail: String) -> anyhow::Result<()> {
        self.report_at(kind, display_path(rel), detail)
    }

    fn report_at(
        &mut self,
        kind: &'static str,
        path: String,
        detail: String,
    ) -> anyhow::Result<()> {
        self.summary.differences += 1;
        let diff = Difference { kind, path, detail };
        (self.sink)(&diff).context("writing a difference")?;
        Ok(())
    }

    /// Compares the directory `rel` (live at `abs`), whose backup listing is
    /// `listing`, and everything below it.
    fn directory(
        &mut self,
        rel: Vec<u8>,
        dir: &DirPath,
        listing: tree::Listing,
    ) -> anyhow::Result<()> {
        let abs = dir.path();
        let parent_shown = display_path(&rel);
        for (edge, why) in &listing.refused {
            let path = if rel.is_empty() {
                format!("/{edge}")
            } else {
                format!("{parent_shown}/{edge}")
            };
            self.report_at("refused", path, why.clone())?;
        }
        let mut live_names: Vec<Vec<u8>> = match fs::read_dir(abs) {
            Ok(entries) => {
                let mut names = Vec::new();
                for entry in entries {
                    match entry {
                        Ok(e) => names.push(e.file_name().into_vec()),
                        Err(e) => {
                            return self.report(
                                "unreadable",
                                &rel,
                                format!("cannot list the live directory: {e}"),
                            );
                        }
                    }
                }
                names
            }
            Err(e) => {
                return self.report(
                    "unreadable",
                    &rel,
                    format!("cannot list the live directory: {e}"),
                );
            }
        };
        live_names.sort();
        // The scan reported an unusable exclude file and applied none of
        // it; so does this.
        let local = match &self.options.rules {
            Some(_) => LocalRules::read(abs, &rel).ok().flatten(),
            None => None,
        };
        let pushed = local.is_some();
        self.local.extend(local);
        let result = self.compare_children(&rel, dir, live_names, listing.children);
        if pushed {
            self.local.pop();
        }
        result
    }

    /// The walk in step of one directory's children, live and backed up.
    fn compare_children(
        &mut self,
        rel: &[u8],
        dir: &DirPath,
        live_names: Vec<Vec<u8>>,
        children: Vec<Node>,
    ) -> anyhow::Result<()> {
        let abs = dir.path();
        let dir_left_out = self
            .options
            .rules
            .as_ref()
            .is_some_and(|r| r.dir_left_out(abs, self.root_dev));
        let mut live_iter = live_names.into_iter().peekable();
        let mut backup_iter = children.into_iter().peekable();
        loop {
            let order = match (backup_iter.peek(), live_iter.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(node), Some(name)) => node.name.as_slice().cmp(name.as_slice()),
            };
            match order {
                Ordering::Less => {
                    let node = backup_iter.next().expect("peeked");
                    self.summary.entries += 1;
                    self.report("missing", &join_rel(rel, &node.name), String::new())?;
                }
                Ordering::Greater => {
                    let name = live_iter.next().expect("peeked");
                    let child = join_rel(rel, &name);
                    let child_abs = dir.entry(std::ffi::OsStr::from_bytes(&name));
                    let left_out = self.options.rules.as_ref().is_some_and(|r| {
                        let is_tag = name == b"CACHEDIR.TAG";
                        child_abs.as_ref().is_ok_and(|child_abs| {
                            r.left_out(&child, child_abs, dir_left_out && !is_tag, &self.local)
                        })
                    });
                    if !left_out {
                        self.report("extra", &child, String::new())?;
                    }
                }
                Ordering::Equal => {
                    let node = backup_iter.next().expect("peeked");
                    let name = live_iter.next().expect("peeked");
                    self.summary.entries += 1;
                    let child = join_rel(rel, &name);
                    match dir.child(std::ffi::OsStr::from_bytes(&name)) {
                        Ok(child_dir) => self.entry(child, child_dir, node)?,
                        Err(e) => self.report("unreadable", &child, format!("cannot open: {e}"))?,
                    }
                }
            }
        }
        Ok(())
    }

    /// Compares one backup entry with the live entry of the same name.
    fn entry(&mut self, rel: Vec<u8>, dir: DirPath, node: Node) -> anyhow::Result<()> {
        let abs = dir.path();
        let md = match fs::symlink_metadata(abs) {
            Ok(md) => md,
            // Removed since the directory was listed.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return self.report("missing", &rel, String::new());
            }
            Err(e) => return self.report("unreadable", &rel, format!("cannot lstat: {e}")),
        };
        let backup_type = backup_type_name(&node);
        let live_type = type_name(md.mode());
        if backup_type != live_type {
            return self.report(
                "type",
                &rel,
                format!("backup {backup_type}, live {live_type}"),
            );
        }
        // `tahoe backup` stores float seconds: good to about a microsecond.
        let mtime_slack = if node.mtime_exact { 0 } else { 1_000 };
        self.compare_meta(&rel, abs, &md, &node.meta, node.kind, mtime_slack)?;
        if node.kind != Kind::Dir {
            let inode = (md.dev(), md.ino());
            if let Some(h) = node.meta.hlink {
                self.links
                    .backup
                    .entry(h)
                    .or_default()
                    .push((rel.clone(), inode));
            }
            if md.nlink() > 1 {
                self.links
                    .live
                    .entry(inode)
                    .or_default()
                    .push((rel.clone(), node.meta.hlink));
            }
        }
        match node.kind {
            Kind::Dir => {
                let depth = rel.split(|&b| b == b'/').count();
                let ancestors = self
                    .ancestors
                    .iter()
                    .map(|(k, p)| (k.as_str(), move || p.clone()));
                if let Some(why) = tree::refuse_descent(&node.cap, depth, ancestors) {
                    return self.report("refused", &rel, why);
                }
                let listing = match tree::list(self.client, &node.cap, false) {
                    Ok(listing) => listing,
                    // Too large for the limit: this directory is refused,
                    // the rest of the tree is still compared.
                    Err(tree::TreeError::Tahoe(e @ TahoeError::TooLarge { .. })) => {
                        return self.report("refused", &rel, e.to_string());
                    }
                    Err(e) => {
                        return Err(anyhow::Error::from(e).context(format!(
                            "cannot list the backup's directory {}",
                            display_path(&rel)
                        )));
                    }
                };
                self.ancestors
                    .push((node.cap.object_key(), display_path(&rel)));
                let result = self.directory(rel, &dir, listing);
                self.ancestors.pop();
                result?;
            }
            Kind::File => self.file(&rel, abs, &md, &node)?,
            Kind::Symlink => self.symlink(&rel, abs, &node)?,
            Kind::Special => {}
        }
        Ok(())
    }

    /// Ownership, mode, mtime, ACL, caps, xattrs and rdev of an entry whose
    /// type matches. Mtimes within `mtime_slack_ns` are the same.
    fn compare_meta(
        &mut self,
        rel: &[u8],
        abs: &Path,
        md: &Metadata,
        backup: &EdgeMeta,
        kind: Kind,
        mtime_slack_ns: i128,
    ) -> anyhow::Result<()> {
        let (live, problems) = live_meta(&mut self.reader, abs, md);
        for problem in problems {
            self.report("unreadable", rel, problem)?;
        }
        if (backup.uid, backup.gid) != (live.uid, live.gid) {
            self.report(
                "owner",
                rel,
                format!(
                    "backup {}:{}, live {}:{}",
                    backup.uid, backup.gid, live.uid, live.gid
                ),
            )?;
        }
        if let (Some(b), Some(l)) = (backup.mode, live.mode)
            && b != l
        {
            self.report("mode", rel, format!("backup {b:o}, live {l:o}"))?;
        }
        if let (Some(b), Some(l)) = (backup.mtime_ns, live.mtime_ns)
            && (b - l).abs() > mtime_slack_ns
        {
            self.report(
                "mtime",
                rel,
                format!("backup {}, live {}", show_ns(b), show_ns(l)),
            )?;
        }
        if !same_acls(backup, &live) {
            self.report(
                "acl",
                rel,
                format!(
                    "backup {}, live {}",
                    show_opt(backup.acls.as_deref()),
                    show_opt(live.acls.as_deref())
                ),
            )?;
        }
        if backup.caps != live.caps {
            self.report(
                "caps",
                rel,
                format!(
                    "backup {}, live {}",
                    show_opt(backup.caps.as_deref()),
                    show_opt(live.caps.as_deref())
                ),
            )?;
        }
        self.compare_xattrs(rel, &backup.xattrs, &live.xattrs)?;
        if kind == Kind::Special && backup.rdev != live.rdev {
            let show = |r: Option<(u64, u64)>| match r {
                Some((major, minor)) => format!("{major}:{minor}"),
                None => "none".to_owned(),
            };
            self.report(
                "rdev",
                rel,
                format!("backup {}, live {}", show(backup.rdev), show(live.rdev)),
            )?;
        }
        Ok(())
    }

    fn compare_xattrs(
        &mut self,
        rel: &[u8],
        backup: &[(String, Vec<u8>)],
        live: &[(String, Vec<u8>)],
    ) -> anyhow::Result<()> {
        let (mut b, mut l) = (backup.iter().peekable(), live.iter().peekable());
        loop {
            let order = match (b.peek(), l.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(x), Some(y)) => x.0.cmp(&y.0),
            };
            let (name, what) = match order {
                Ordering::Less => (&b.next().expect("peeked").0, "missing"),
                Ordering::Greater => (&l.next().expect("peeked").0, "extra"),
                Ordering::Equal => {
                    let (x, y) = (b.next().expect("peeked"), l.next().expect("peeked"));
                    if x.1 == y.1 {
                        continue;
                    }
                    (&x.0, "differs")
                }
            };
            let shown =
                String::from_utf8_lossy(&crate::escape::escape(name.as_bytes())).into_owned();
            self.report("xattr", rel, format!("{shown} {what}"))?;
        }
        Ok(())
    }

    /// Reports every entry whose hard-link partners differ between the
    /// sides: linked in the backup but not live, and the other way round.
    fn hard_links(&mut self) -> anyhow::Result<()> {
        let mut found: Vec<(Vec<u8>, String)> = Vec::new();
        for members in self.links.backup.values() {
            let Some((first, first_inode)) = members.first() else {
                continue;
            };
            for (rel, inode) in &members[1..] {
                if inode != first_inode {
                    found.push((
                        rel.clone(),
                        format!(
                            "backup: a hard link of {}, live: not linked to it",
                            display_path(first)
                        ),
                    ));
                }
            }
        }
        for members in self.links.live.values() {
            let Some((first, first_hlink)) = members.first() else {
                continue;
            };
            for (rel, hlink) in &members[1..] {
                if hlink.is_none() || hlink != first_hlink {
                    found.push((
                        rel.clone(),
                        format!(
                            "live: a hard link of {}, backup: not linked to it",
                            display_path(first)
                        ),
                    ));
                }
            }
        }
        found.sort();
        for (rel, detail) in found {
            self.report("hlink", &rel, detail)?;
        }
        Ok(())
    }

    fn file(&mut self, rel: &[u8], abs: &Path, md: &Metadata, node: &Node) -> anyhow::Result<()> {
        let backup_size = if node.meta.enc.is_some() || node.meta.chunked {
            node.meta.size
        } else {
            node.stored_size.or_else(|| node.cap.size())
        };
        if let Some(size) = backup_size
            && size != md.len()
        {
            // Different sizes: the contents differ too; no download.
            return self.report("size", rel, format!("backup {size}, live {}", md.len()));
        }
        if !self.options.content {
            return Ok(());
        }
        let live = match File::open(abs) {
            Ok(f) => f,
            Err(e) => return self.report("unreadable", rel, format!("cannot open: {e}")),
        };
        if node.meta.chunked {
            return self.chunked_file(rel, &live, node);
        }
        // Streamed from the gateway: a file of any size costs a buffer.
        let enc = node.meta.enc;
        let downloaded = self
            .client
            .download_with_max(&node.cap, node.stored_size, |body| {
                let result = {
                    let backup = encode::decoder(enc, &mut *body)?;
                    let mut live = &live;
                    same_bytes(backup, &mut live)
                };
                // A comparison that stops at the first difference leaves the
                // rest of the body unread; read it, so the download's length
                // check still judges the whole object.
                io::copy(body, &mut io::sink())?;
                Ok(result)
            });
        let outcome = match downloaded {
            Ok(outcome) => outcome,
            // Longer than its cap (or the listing) says: this entry is
            // refused, the rest of the tree is still compared.
            Err(e @ TahoeError::TooLarge { .. }) => {
                return self.report("refused", rel, e.to_string());
            }
            Err(e) => {
                return Err(anyhow::Error::from(e).context(format!(
                    "cannot download the backup's {}",
                    display_path(rel)
                )));
            }
        };
        match outcome {
            Ok(true) => Ok(()),
            Ok(false) => self.report("content", rel, "differs".to_owned()),
            Err(Side::Backup(e)) => self.report(
                "content",
                rel,
                format!("the backup's content cannot be decoded: {e}"),
            ),
            Err(Side::Live(e)) => self.report("unreadable", rel, format!("cannot read: {e}")),
        }
    }

    /// `--content` of a chunked file: its chunks, in order, against the
    /// live file. A damaged chunk list is reported as content that cannot
    /// be read back; a gateway that fails stops the run, as for files.
    fn chunked_file(&mut self, rel: &[u8], live: &File, node: &Node) -> anyhow::Result<()> {
        let size = node.meta.size.unwrap_or(0);
        let backup = match ChunkedFile::open(self.client, &node.cap, size) {
            Ok(backup) => backup,
            Err(e @ ReadError::Tahoe { .. }) => {
                return Err(anyhow::Error::from(e).context(format!(
                    "cannot download the backup's {}",
                    display_path(rel)
                )));
            }
            Err(e) => {
                return self.report(
                    "content",
                    rel,
                    format!("the backup's chunks cannot be read back: {e}"),
                );
            }
        };
        let mut live = live;
        match same_bytes(backup, &mut live) {
            Ok(true) => Ok(()),
            Ok(false) => self.report("content", rel, "differs".to_owned()),
            Err(Side::Backup(e)) => self.report(
                "content",
                rel,
                format!("the backup's chunks cannot be read back: {e}"),
            ),
            Err(Side::Live(e)) => self.report("unreadable", rel, format!("cannot read: {e}")),
        }
    }

    fn symlink(&mut self, rel: &[u8], abs: &Path, node: &Node) -> anyhow::Result<()> {
        let stored = match self.client.download_at_most(
            &node.cap,
            SYMLINK_TARGET_LIMIT,
            "the symlink target",
        ) {
            Ok(stored) => stored,
            Err(e @ TahoeError::TooLarge { .. }) => {
                return self.report("refused", rel, e.to_string());
            }
            Err(e) => {
                return Err(anyhow::Error::from(e).context(format!(
                    "cannot download the backup's symlink {}",
                    display_path(rel)
                )));
            }
        };
        let live = match fs::read_link(abs) {
            Ok(t) => t.into_os_string().into_vec(),
            Err(e) => return self.report("unreadable", rel, format!("cannot readlink: {e}")),
        };
        if stored != live {
            let show = |t: &[u8]| String::from_utf8_lossy(&crate::escape::escape(t)).into_owned();
            self.report(
                "target",
                rel,
                format!("backup {:?}, live {:?}", show(&stored), show(&live)),
            )?;
        }
        Ok(())
    }
}

/// The metadata of the live entry at `abs` (`md` its lstat) in the forms a
/// backup records, read with the code the backup uses, and the problems
/// met reading it. Shared by `verify` and `diff` against a live directory.
pub(crate) fn live_meta(
    reader: &mut meta::Reader,
    abs: &Path,
    md: &Metadata,
) -> (EdgeMeta, Vec<String>) {
    let captured = reader.capture(abs, md);
    let (live, more_problems) = EdgeMeta::read(abs, &captured.meta, md);
    let problems = captured
        .problems
        .into_iter()
        .chain(more_problems)
        // `acl_ids` is not compared: a name that no longer resolves is no
        // difference in the tree.
        .filter(|p| !p.contains("acl_ids left out"))
        .collect();
    (live, problems)
}

/// Which side of a content comparison failed.
enum Side {
    Backup(io::Error),
    Live(io::Error),
}

/// Whether the two streams hold the same bytes.
fn same_bytes(mut backup: impl Read, mut live: impl Read) -> Result<bool, Side> {
    const CHUNK: usize = 1 << 16;
    let mut a = vec![0u8; CHUNK];
    let mut b = vec![0u8; CHUNK];
    loop {
        let n = read_full(&mut backup, &mut a).map_err(Side::Backup)?;
        let m = read_full(&mut live, &mut b).map_err(Side::Live)?;
        if n != m || a[..n] != b[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Reads until `buf` is full or the stream ends.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn type_name(mode: u32) -> &'static str {
    match mode & S_IFMT {
        0o100000 => "file",
        0o040000 => "directory",
        0o120000 => "symlink",
        0o010000 => "fifo",
        0o140000 => "socket",
        0o020000 => "character-device",
        0o060000 => "block-device",
        _ => "unknown",
    }
}

fn backup_type_name(node: &Node) -> &'static str {
    match node.kind {
        Kind::Dir => "directory",
        Kind::File => "file",
        Kind::Symlink => "symlink",
        Kind::Special => node.meta.mode.map_or("unknown", type_name),
    }
}

/// Nanoseconds since the epoch as `SECONDS.NANOSECONDS`.
fn show_ns(ns: i128) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000);
    format!("{secs}.{frac:09}")
}

/// Whether the ACLs are the same. The texts name users and groups where
/// the name resolves on the machine; an entry whose name does not exist
/// here shows as a number live (that is how `restore` applies it, by
/// `acl_ids`), which matches the backup when it is the backup's id for
/// that entry.
pub(crate) fn same_acls(backup: &EdgeMeta, live: &EdgeMeta) -> bool {
    if backup.acls == live.acls {
        return true;
    }
    let (Some(b), Some(l), Some(ids)) = (&backup.acls, &live.acls, &backup.acl_ids) else {
        return false;
    };
    let (b, l, ids): (Vec<&str>, Vec<&str>, Vec<&str>) = (
        b.split(',').collect(),
        l.split(',').collect(),
        ids.split(',').collect(),
    );
    if b.len() != l.len() || b.len() != ids.len() {
        return false;
    }
    b.iter()
        .zip(&l)
        .zip(&ids)
        .all(|((b, l), id)| b == l || (l == id && qualifier_is_numeric(l)))
}

/// Whether an ACL entry (`u:NAME:rwx`, `d:g:NAME:r-x`) has a numeric
/// qualifier.
fn qualifier_is_numeric(entry: &str) -> bool {
    let entry = entry.strip_prefix("d:").unwrap_or(entry);
    let mut parts = entry.split(':');
    let _tag = parts.next();
    parts
        .next()
        .is_some_and(|q| !q.is_empty() && q.bytes().all(|c| c.is_ascii_digit()))
}

fn show_opt(text: Option<&str>) -> String {
    match text {
        Some(t) => format!("{t:?}"),
        None => "none".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns_text() {
        assert_eq!(show_ns(1_700_000_000_123_456_789), "1700000000.123456789");
        assert_eq!(show_ns(-1), "-1.999999999");
        assert_eq!(show_ns(0), "0.000000000");
    }

    #[test]
    fn byte_comparison() {
        assert!(same_bytes(&b"abc"[..], &b"abc"[..]).ok().unwrap());
        assert!(!same_bytes(&b"abc"[..], &b"abd"[..]).ok().unwrap());
        assert!(!same_bytes(&b"abc"[..], &b"abcd"[..]).ok().unwrap());
        let big = vec![7u8; 200_000];
        assert!(same_bytes(big.as_slice(), big.as_slice()).ok().unwrap());
    }

    #[test]
    fn difference_text() {
        let d = Difference {
            kind: "missing",
            path: "/etc/x".into(),
            detail: String::new(),
        };
        assert_eq!(d.to_string(), "missing /etc/x");
        let d = Difference {
            kind: "mode",
            path: "/a".into(),
            detail: "backup 100644, live 100600".into(),
        };
        assert_eq!(d.to_string(), "mode /a: backup 100644, live 100600");
    }

    #[test]
    fn acls_by_name_or_by_backup_id() {
        let meta = |acls: &str, ids: Option<&str>| EdgeMeta {
            acls: Some(acls.into()),
            acl_ids: ids.map(Into::into),
            ..EdgeMeta::default()
        };
        let backup = meta(
            "u::rw-,u:alice:r--,g::r--,m::r--,o::---,d:u:alice:rwx",
            Some("u::rw-,u:1234:r--,g::r--,m::r--,o::---,d:u:1234:rwx"),
        );
        // Same names.
        assert!(same_acls(&backup, &backup.clone()));
        // alice does not exist here: the restored ACL shows her id.
        let live = meta("u::rw-,u:1234:r--,g::r--,m::r--,o::---,d:u:1234:rwx", None);
        assert!(same_acls(&backup, &live));
        // Another id, or another permission, is a difference.
        let live = meta("u::rw-,u:999:r--,g::r--,m::r--,o::---,d:u:1234:rwx", None);
        assert!(!same_acls(&backup, &live));
        let live = meta("u::rw-,u:1234:rw-,g::r--,m::r--,o::---,d:u:1234:rwx", None);
        assert!(!same_acls(&backup, &live));
        // Without acl_ids only the names count.
        let backup = meta("u::rw-,u:alice:r--,g::r--,m::r--,o::---", None);
        let live = meta("u::rw-,u:1234:r--,g::r--,m::r--,o::---", None);
        assert!(!same_acls(&backup, &live));
    }

    #[test]
    fn rel_paths() {
        assert_eq!(join_rel(b"", b"a"), b"a");
        assert_eq!(join_rel(b"a", b"b"), b"a/b");
    }
}
