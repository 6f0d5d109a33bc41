//! `mount`: the recorded backups as a read-only FUSE file system
//! (`docs/mount.md` is the user's view).
//!
//! ```text
//! MOUNTPOINT/NAME/2024-01-07T03:00:00Z[_LABEL]/…   one backup, a full tree
//! MOUNTPOINT/NAME/latest -> the newest of them      a symlink
//! ```
//!
//! Inodes are made as the kernel looks entries up: the top and the NAME
//! levels from the cache at start, a backup's directories one listing at a
//! time ([`crate::tree::list`], which refuses hostile names and
//! collisions, as `restore` does). Listings are cached by directory cap,
//! so a subtree that did not change between backups (the same cap) is
//! listed once for all of them. Contents are read on demand: a file stored
//! as it is through ranged downloads (a chunk at a time, see [`CHUNK`]), a
//! compressed one decoded once into the on-disk cache ([`disk`]).
//!
//! Nothing here ever logs a cap: objects are named by their path in the
//! mount (escaped), or by their short id.

mod disk;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::str::FromStr as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyXattr,
    Request,
};
use tracing::{debug, warn};

use crate::edge::EdgeMeta;
use crate::escape;
use crate::meta::acl::{ACCESS_XATTR, DEFAULT_XATTR};
use crate::meta::{CAPS_XATTR, S_IFMT};
use crate::restore::apply::encode_acls;
use crate::stream::read::ChunkedFile;
use crate::tahoe::{Cap, Client, SYMLINK_TARGET_LIMIT};
use crate::tree::{self, Kind, Listing};

pub(crate) use disk::DiskCache;

/// How long the kernel may keep what it was told: everything is immutable
/// while mounted.
const TTL: Duration = Duration::from_secs(3600);

/// A file stored as it is is fetched in aligned pieces of this size (one
/// ranged request each), and the last piece of each open file is kept for
/// the next read: the kernel reads at most 128 KiB at a time, so a
/// sequential read makes one request per MiB, not eight.
const CHUNK: u64 = 1 << 20;

/// The most children the listing cache holds over all its listings; past
/// it, the cache starts over (the inodes already made keep their entries).
const LISTING_CACHE_CHILDREN: usize = 1_000_000;

/// The size of a minimal access ACL in the kernel's form: a 4-byte header
/// and three 8-byte entries.
const MINIMAL_ACL_BYTES: usize = 4 + 3 * 8;

/// The name of the newest backup's symlink in a NAME directory.
pub(crate) const LATEST: &str = "latest";

/// One recorded backup, as the mount shows it.
#[derive(Debug, Clone)]
pub(crate) struct Backup {
    /// The backup's name (raw bytes, already a valid file name).
    pub name: Vec<u8>,
    /// Its directory's name below NAME: the start time, `_LABEL`.
    pub dir_name: Vec<u8>,
    pub root: Cap,
    /// Unix seconds.
    pub ts_start: i64,
}

/// The directory name of a backup below its NAME directory: its start time
/// in UTC, `YYYY-MM-DDTHH:MM:SSZ` (ISO 8601, no `:`-free variant: Linux
/// names take `:`), then `_LABEL` when it has a label. A label that could
/// not be part of a name (a `/` or NUL) has those bytes replaced by `_`.
pub(crate) fn backup_dir_name(ts_start: i64, label: Option<&str>) -> Vec<u8> {
    let time = jiff::Timestamp::from_second(ts_start).map_or_else(
        |_| format!("@{ts_start}"),
        |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    );
    let mut name = time.into_bytes();
    if let Some(label) = label {
        name.push(b'_');
        name.extend(
            label
                .bytes()
                .map(|b| if b == b'/' || b == 0 { b'_' } else { b }),
        );
    }
    name
}

/// What an inode is.
#[derive(Debug)]
enum Node {
    /// The mount's root: one directory a name.
    Top,
    /// `NAME/`: the backups' directories and `latest`.
    Name,
    /// `NAME/latest`: a symlink to the newest backup's directory.
    Latest(Vec<u8>),
    /// A directory of a backup; `top` for a backup's root (its metadata is
    /// in its listing's `.lafs-backup-root`).
    Dir {
        cap: Cap,
        meta: Option<EdgeMeta>,
        top: bool,
        depth: usize,
    },
    File {
        cap: Cap,
        meta: EdgeMeta,
        size: u64,
    },
    Symlink {
        cap: Cap,
        meta: EdgeMeta,
        size: u64,
    },
    /// A fifo, socket or device node.
    Special {
        meta: EdgeMeta,
    },
}

/// A directory's children (raw name → inode), sorted by name.
type Children = Arc<Vec<(Vec<u8>, u64)>>;

#[derive(Debug)]
struct Inode {
    parent: u64,
    name: Vec<u8>,
    node: Node,
    /// A directory's children (name → inode), sorted by name, once known.
    children: Option<Children>,
}

/// An open file.
#[derive(Debug)]
enum Handle {
    /// Stored as it is: ranged reads, the last chunk kept.
    Ranged {
        cap: Cap,
        size: u64,
        chunk: Mutex<Option<(u64, Vec<u8>)>>,
    },
    /// Decoded into the disk cache.
    Cached(Arc<File>),
}

/// Listings by (directory object, top level), bounded by
/// [`LISTING_CACHE_CHILDREN`].
#[derive(Debug, Default)]
struct Listings {
    map: HashMap<(String, bool), Arc<Listing>>,
    children: usize,
}

/// The file system; see the module doc.
#[derive(Debug)]
pub(crate) struct BackupFs {
    client: Client,
    inodes: Mutex<Vec<Inode>>,
    listings: Mutex<Listings>,
    disk: DiskCache,
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    next_fh: AtomicU64,
    /// Owner and times of the directories the mount makes up (top, NAME).
    uid: u32,
    gid: u32,
    started: SystemTime,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every change under these locks is one step: a panic elsewhere leaves
    // them consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl BackupFs {
    /// The file system over `backups` (grouped by name; each group's last
    /// one is its `latest`), reading through `client`, decoding into
    /// `cache_dir` up to `cache_bytes`.
    pub(crate) fn new(
        client: Client,
        backups: &[Backup],
        cache_dir: PathBuf,
        cache_bytes: u64,
    ) -> BackupFs {
        let mut inodes = vec![Inode {
            parent: 1,
            name: Vec::new(),
            node: Node::Top,
            children: None,
        }];
        let mut top_children: Vec<(Vec<u8>, u64)> = Vec::new();
        let mut by_name: Vec<(Vec<u8>, Vec<&Backup>)> = Vec::new();
        for b in backups {
            match by_name.iter_mut().find(|(n, _)| *n == b.name) {
                Some((_, group)) => group.push(b),
                None => by_name.push((b.name.clone(), vec![b])),
            }
        }
        for (name, mut group) in by_name {
            let name_ino = inodes.len() as u64 + 1;
            inodes.push(Inode {
                parent: 1,
                name: name.clone(),
                node: Node::Name,
                children: None,
            });
            top_children.push((name, name_ino));
            group.sort_by_key(|b| b.ts_start);
            let mut children: Vec<(Vec<u8>, u64)> = Vec::new();
            for b in &group {
                let ino = inodes.len() as u64 + 1;
                inodes.push(Inode {
                    parent: name_ino,
                    name: b.dir_name.clone(),
                    node: Node::Dir {
                        cap: b.root.clone(),
                        meta: None,
                        top: true,
                        depth: 0,
                    },
                    children: None,
                });
                children.push((b.dir_name.clone(), ino));
            }
            if let Some(newest) = group.last() {
                let ino = inodes.len() as u64 + 1;
                inodes.push(Inode {
                    parent: name_ino,
                    name: LATEST.as_bytes().to_vec(),
                    node: Node::Latest(newest.dir_name.clone()),
                    children: None,
                });
                children.push((LATEST.as_bytes().to_vec(), ino));
            }
            children.sort();
            inodes[(name_ino - 1) as usize].children = Some(Arc::new(children));
        }
        top_children.sort();
        inodes[0].children = Some(Arc::new(top_children));
        BackupFs {
            client,
            inodes: Mutex::new(inodes),
            listings: Mutex::new(Listings::default()),
            disk: DiskCache::new(cache_dir, cache_bytes),
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            started: crate::clock::now().into(),
        }
    }

    /// The path of `ino` in the mount, escaped for display.
    fn path_of(inodes: &[Inode], mut ino: u64) -> String {
        let mut parts: Vec<&[u8]> = Vec::new();
        while ino > 1 {
            let Some(inode) = inodes.get((ino - 1) as usize) else {
                break;
            };
            parts.push(&inode.name);
            ino = inode.parent;
        }
        parts.reverse();
        let joined = parts.join(&b'/');
        String::from_utf8_lossy(&escape::escape(&joined)).into_owned()
    }

    fn path(&self, ino: u64) -> String {
        Self::path_of(&lock(&self.inodes), ino)
    }

    /// A directory's listing, from the cache or the gateway.
    fn listing(&self, cap: &Cap, top: bool, path: &str) -> Result<Arc<Listing>, Errno> {
        let key = (cap.object_key(), top);
        if let Some(l) = lock(&self.listings).map.get(&key) {
            return Ok(Arc::clone(l));
        }
        // Not under the lock: other directories are served meanwhile.
        debug!("listing {path} (#{})", cap.short_id());
        let listing = tree::list(&self.client, cap, top).map_err(|e| {
            warn!("{path}: cannot list the directory: {e}");
            Errno::EIO
        })?;
        let listing = Arc::new(listing);
        let mut cache = lock(&self.listings);
        if cache.children + listing.children.len() > LISTING_CACHE_CHILDREN {
            cache.map.clear();
            cache.children = 0;
        }
        cache.children += listing.children.len();
        cache.map.insert(key, Arc::clone(&listing));
        Ok(listing)
    }

    /// The children of directory `ino`, listing it on first use. Refused
    /// entries are logged (by path, with the reason) and left out.
    fn children(&self, ino: u64) -> Result<Children, Errno> {
        let (cap, top, depth, path) = {
            let inodes = lock(&self.inodes);
            let inode = inodes.get(idx(ino)?).ok_or(Errno::ENOENT)?;
            if let Some(children) = &inode.children {
                return Ok(Arc::clone(children));
            }
            match &inode.node {
                Node::Dir {
                    cap, top, depth, ..
                } => (cap.clone(), *top, *depth, Self::path_of(&inodes, ino)),
                _ => return Err(Errno::ENOTDIR),
            }
        };
        let listing = self.listing(&cap, top, &path)?;
        for (name, why) in &listing.refused {
            warn!("{path}/{name}: refused: {why}");
        }
        let mut inodes = lock(&self.inodes);
        let i = idx(ino)?;
        if let Some(children) = &inodes[i].children {
            // Another thread listed it meanwhile.
            return Ok(Arc::clone(children));
        }
        // The ancestors' objects, for the cycle check of child directories.
        let mut ancestors: Vec<(String, u64)> = Vec::new();
        let mut at = ino;
        while let Some(Inode {
            node: Node::Dir { cap, top, .. },
            parent,
            ..
        }) = inodes.get((at - 1) as usize)
        {
            ancestors.push((cap.object_key(), at));
            if *top {
                break;
            }
            at = *parent;
        }
        let mut children = Vec::with_capacity(listing.children.len());
        for child in &listing.children {
            let shown = || {
                format!(
                    "{path}/{}",
                    String::from_utf8_lossy(&escape::escape(&child.name))
                )
            };
            let node = match child.kind {
                Kind::Dir => {
                    let refused = tree::refuse_descent(
                        &child.cap,
                        depth + 1,
                        ancestors
                            .iter()
                            .map(|(k, a)| (k.as_str(), || Self::path_of(&inodes, *a))),
                    );
                    if let Some(why) = refused {
                        warn!("{}: refused: {why}", shown());
                        continue;
                    }
                    Node::Dir {
                        cap: child.cap.clone(),
                        meta: Some(child.meta.clone()),
                        top: false,
                        depth: depth + 1,
                    }
                }
                Kind::File => {
                    let size = if child.meta.enc.is_some() || child.meta.chunked {
                        child.meta.size
                    } else {
                        child.stored_size.or_else(|| child.cap.size())
                    };
                    let Some(size) = size else {
                        warn!("{}: refused: the backup does not record its size", shown());
                        continue;
                    };
                    Node::File {
                        cap: child.cap.clone(),
                        meta: child.meta.clone(),
                        size,
                    }
                }
                Kind::Symlink => {
                    let size = child
                        .stored_size
                        .or_else(|| child.cap.size())
                        .unwrap_or_default();
                    Node::Symlink {
                        cap: child.cap.clone(),
                        meta: child.meta.clone(),
                        size,
                    }
                }
                Kind::Special => Node::Special {
                    meta: child.meta.clone(),
                },
            };
            let child_ino = inodes.len() as u64 + 1;
            inodes.push(Inode {
                parent: ino,
                name: child.name.clone(),
                node,
                children: None,
            });
            children.push((child.name.clone(), child_ino));
        }
        // `tree::list` sorts by raw name: binary search works.
        let children = Arc::new(children);
        if let Node::Dir {
            meta, top: true, ..
        } = &mut inodes[i].node
        {
            *meta = listing.root_meta.clone();
        }
        inodes[i].children = Some(Arc::clone(&children));
        Ok(children)
    }

    fn attr(&self, ino: u64) -> Result<FileAttr, Errno> {
        // A backup's root gets its metadata from its listing.
        let needs_listing = matches!(
            lock(&self.inodes)
                .get(idx(ino)?)
                .map(|i| (&i.node, &i.children)),
            Some((Node::Dir { top: true, .. }, None))
        );
        if needs_listing {
            self.children(ino)?;
        }
        let inodes = lock(&self.inodes);
        let inode = inodes.get(idx(ino)?).ok_or(Errno::ENOENT)?;
        Ok(self.attr_of(ino, inode))
    }

    fn attr_of(&self, ino: u64, inode: &Inode) -> FileAttr {
        let made_up = |kind: FileType, perm: u16, size: u64| FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: 0,
            atime: self.started,
            mtime: self.started,
            ctime: self.started,
            crtime: self.started,
            kind,
            perm,
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        };
        match &inode.node {
            Node::Top | Node::Name => made_up(FileType::Directory, 0o555, 0),
            Node::Latest(target) => made_up(FileType::Symlink, 0o777, target.len() as u64),
            Node::Dir { meta, .. } => {
                recorded(ino, meta.as_ref(), FileType::Directory, 0, 0o755, self)
            }
            Node::File { meta, size, .. } => {
                recorded(ino, Some(meta), FileType::RegularFile, *size, 0o644, self)
            }
            Node::Symlink { meta, size, .. } => {
                recorded(ino, Some(meta), FileType::Symlink, *size, 0o777, self)
            }
            Node::Special { meta } => {
                let kind = match meta.mode.unwrap_or_default() & S_IFMT {
                    0o010000 => FileType::NamedPipe,
                    0o020000 => FileType::CharDevice,
                    0o060000 => FileType::BlockDevice,
                    0o140000 => FileType::Socket,
                    _ => FileType::RegularFile,
                };
                recorded(ino, Some(meta), kind, 0, 0o644, self)
            }
        }
    }

    fn lookup_child(&self, parent: u64, name: &[u8]) -> Result<u64, Errno> {
        let children = self.children(parent)?;
        children
            .binary_search_by(|(n, _)| n.as_slice().cmp(name))
            .map(|at| children[at].1)
            .map_err(|_| Errno::ENOENT)
    }

    /// The extended attributes of `ino`, as restore would set them: the
    /// recorded ones, the POSIX ACLs (`acls`) and the file capabilities
    /// (`caps`) in the kernel's binary forms.
    fn xattrs(&self, ino: u64) -> Result<Vec<(String, Vec<u8>)>, Errno> {
        let _ = self.attr(ino)?;
        let inodes = lock(&self.inodes);
        let inode = inodes.get(idx(ino)?).ok_or(Errno::ENOENT)?;
        let (meta, is_dir, is_symlink) = match &inode.node {
            Node::Dir { meta: Some(m), .. } => (m, true, false),
            Node::File { meta, .. } | Node::Special { meta } => (meta, false, false),
            Node::Symlink { meta, .. } => (meta, false, true),
            _ => return Ok(Vec::new()),
        };
        let mut out: Vec<(String, Vec<u8>)> = meta
            .xattrs
            .iter()
            .filter(|(n, _)| n != ACCESS_XATTR && n != DEFAULT_XATTR && n != CAPS_XATTR)
            .cloned()
            .collect();
        if !is_symlink {
            if let Some(acls) = &meta.acls {
                match encode_acls(acls, meta.acl_ids.as_deref()) {
                    Ok((access, default)) => {
                        // A minimal access ACL (owner, group, other: a
                        // header and three entries) is the mode itself;
                        // the kernel shows none, so neither does the mount.
                        if let Some(a) = access.filter(|a| a.len() > MINIMAL_ACL_BYTES) {
                            out.push((ACCESS_XATTR.to_owned(), a));
                        }
                        if let Some(d) = default.filter(|_| is_dir) {
                            out.push((DEFAULT_XATTR.to_owned(), d));
                        }
                    }
                    Err(e) => warn!("{}: bad ACL {acls:?}: {e}", Self::path_of(&inodes, ino)),
                }
            }
            if let Some(caps) = &meta.caps {
                match capctl::FileCaps::from_str(&caps.replace(';', " ")) {
                    Ok(fc) => out.push((CAPS_XATTR.to_owned(), fc.pack_attrs())),
                    Err(e) => warn!(
                        "{}: bad capabilities {caps:?}: {e}",
                        Self::path_of(&inodes, ino)
                    ),
                }
            }
        }
        Ok(out)
    }

    /// A symlink's target (downloaded, at most 64 KiB).
    fn link_target(&self, ino: u64) -> Result<Vec<u8>, Errno> {
        let cap = {
            let inodes = lock(&self.inodes);
            match &inodes.get(idx(ino)?).ok_or(Errno::ENOENT)?.node {
                Node::Latest(target) => return Ok(target.clone()),
                Node::Symlink { cap, .. } => cap.clone(),
                _ => return Err(Errno::EINVAL),
            }
        };
        self.client
            .download_at_most(&cap, SYMLINK_TARGET_LIMIT, "a symlink target")
            .map_err(|e| {
                warn!("{}: cannot read the link target: {e}", self.path(ino));
                Errno::EIO
            })
    }

    /// A new handle of file `ino`: a compressed file is decoded into the
    /// disk cache now (once; later opens find it there).
    fn open_file(&self, ino: u64) -> Result<Handle, Errno> {
        let (cap, meta, size) = {
            let inodes = lock(&self.inodes);
            match &inodes.get(idx(ino)?).ok_or(Errno::ENOENT)?.node {
                Node::File { cap, meta, size } => (cap.clone(), meta.clone(), *size),
                Node::Dir { .. } | Node::Top | Node::Name => return Err(Errno::EISDIR),
                _ => return Err(Errno::EINVAL),
            }
        };
        let enc = meta.enc;
        if enc.is_none() && !meta.chunked {
            return Ok(Handle::Ranged {
                cap,
                size,
                chunk: Mutex::new(None),
            });
        }
        // The object's key, hashed: a cache key is no secret to keep.
        let key = blake3::hash(cap.object_key().as_bytes())
            .to_hex()
            .to_string();
        let file = self
            .disk
            .get(&key, size, |file| {
                if meta.chunked {
                    // A chunked file is read whole into the disk cache, like
                    // a compressed one: its chunks in order, lengths checked.
                    let chunks =
                        ChunkedFile::open(&self.client, &cap, size).map_err(|e| e.to_string())?;
                    return disk::copy_into(chunks, file, size).map_err(|e| e.to_string());
                }
                self.client
                    .download_with(&cap, |stored| {
                        disk::copy_into(crate::encode::decoder(enc, stored)?, file, size)
                    })
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| {
                warn!("{}: cannot decode the file: {e}", self.path(ino));
                Errno::EIO
            })?;
        Ok(Handle::Cached(file))
    }

    fn read_handle(&self, ino: u64, h: &Handle, offset: u64, len: u64) -> Result<Vec<u8>, Errno> {
        match h {
            Handle::Cached(file) => {
                let size = file.metadata().map_err(|_| Errno::EIO)?.len();
                let end = offset.saturating_add(len).min(size);
                let mut buf = vec![0u8; end.saturating_sub(offset) as usize];
                file.read_exact_at(&mut buf, offset).map_err(|e| {
                    warn!("{}: cannot read the decoded file: {e}", self.path(ino));
                    Errno::EIO
                })?;
                Ok(buf)
            }
            Handle::Ranged { cap, size, chunk } => {
                let end = offset.saturating_add(len).min(*size);
                let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
                let mut at = offset;
                // One piece at a time, under the handle's lock: readers of
                // one handle take turns, and memory stays one chunk.
                let mut held = lock(chunk);
                while at < end {
                    let start = at - at % CHUNK;
                    if held.as_ref().is_none_or(|(s, _)| *s != start) {
                        let data = self
                            .client
                            .download_range(cap, *size, start, CHUNK)
                            .map_err(|e| {
                                warn!("{}: cannot read the file: {e}", self.path(ino));
                                Errno::EIO
                            })?;
                        *held = Some((start, data));
                    }
                    let Some((_, data)) = held.as_ref() else {
                        return Err(Errno::EIO);
                    };
                    let from = (at - start) as usize;
                    let to = ((end - start) as usize).min(data.len());
                    if from >= to {
                        warn!(
                            "{}: the gateway sent less than the file's size",
                            self.path(ino)
                        );
                        return Err(Errno::EIO);
                    }
                    out.extend_from_slice(&data[from..to]);
                    at = start + to as u64;
                }
                Ok(out)
            }
        }
    }
}

/// The inode number as an index of the inode table.
fn idx(ino: u64) -> Result<usize, Errno> {
    usize::try_from(ino)
        .ok()
        .and_then(|i| i.checked_sub(1))
        .ok_or(Errno::ENOENT)
}

/// Nanoseconds since the epoch as a time (before it too).
fn system_time(ns: i128) -> Option<SystemTime> {
    let abs = Duration::from_nanos(u64::try_from(ns.unsigned_abs()).ok()?);
    if ns >= 0 {
        UNIX_EPOCH.checked_add(abs)
    } else {
        UNIX_EPOCH.checked_sub(abs)
    }
}

/// Linux's `new_encode_dev`: the 32-bit device number FUSE carries.
fn encode_dev(major: u64, minor: u64) -> u32 {
    ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)) as u32
}

/// The attributes of an entry with recorded metadata (`None`: a backup
/// root without any; owner and mode then as the mount's own directories).
fn recorded(
    ino: u64,
    meta: Option<&EdgeMeta>,
    kind: FileType,
    size: u64,
    default_perm: u16,
    fs: &BackupFs,
) -> FileAttr {
    let mtime = meta
        .and_then(|m| m.mtime_ns)
        .and_then(system_time)
        .unwrap_or(UNIX_EPOCH);
    let perm = meta
        .and_then(|m| m.mode)
        .map_or(default_perm, |m| (m & 0o7777) as u16);
    let rdev = meta
        .and_then(|m| m.rdev)
        .map_or(0, |(major, minor)| encode_dev(major, minor));
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: mtime,
        mtime,
        ctime: mtime,
        crtime: mtime,
        kind,
        perm,
        nlink: if kind == FileType::Directory { 2 } else { 1 },
        uid: meta.map_or(fs.uid, |m| m.uid),
        gid: meta.map_or(fs.gid, |m| m.gid),
        rdev,
        blksize: 4096,
        flags: 0,
    }
}

/// Replies to an xattr request for `size` bytes with `data`: its size when
/// asked (0), ERANGE when it does not fit.
fn reply_xattr(reply: ReplyXattr, size: u32, data: &[u8]) {
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    if size == 0 {
        reply.size(len);
    } else if len > size {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(data);
    }
}

impl Filesystem for BackupFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self
            .lookup_child(parent.0, name.as_bytes())
            .and_then(|ino| self.attr(ino))
        {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.link_target(ino.0) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & nix::libc::O_ACCMODE != nix::libc::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        match self.open_file(ino.0) {
            Ok(handle) => {
                let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
                lock(&self.handles).insert(fh, Arc::new(handle));
                // Contents never change: the kernel may keep its pages.
                reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE);
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some(handle) = lock(&self.handles).get(&fh.0).cloned() else {
            return reply.error(Errno::EBADF);
        };
        match self.read_handle(ino.0, &handle, offset, u64::from(size)) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        lock(&self.handles).remove(&fh.0);
        reply.ok();
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let children = match self.children(ino.0) {
            Ok(c) => c,
            Err(e) => return reply.error(e),
        };
        let inodes = lock(&self.inodes);
        let parent = inodes.get((ino.0 - 1) as usize).map_or(1, |i| i.parent);
        let dots = [
            (ino.0, FileType::Directory, &b"."[..]),
            (parent, FileType::Directory, &b".."[..]),
        ];
        let entries = dots.into_iter().chain(children.iter().map(|(name, child)| {
            let kind = inodes
                .get((child - 1) as usize)
                .map_or(FileType::RegularFile, |i| self.attr_of(*child, i).kind);
            (*child, kind, name.as_slice())
        }));
        for (i, (child, kind, name)) in entries.enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), i as u64 + 1, kind, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.xattrs(ino.0) {
            Ok(all) => match all.iter().find(|(n, _)| n.as_bytes() == name.as_bytes()) {
                Some((_, value)) => reply_xattr(reply, size, value),
                None => reply.error(Errno::NO_XATTR),
            },
            Err(e) => reply.error(e),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.xattrs(ino.0) {
            Ok(all) => {
                let mut names = Vec::new();
                for (n, _) in &all {
                    names.extend_from_slice(n.as_bytes());
                    names.push(0);
                }
                reply_xattr(reply, size, &names);
            }
            Err(e) => reply.error(e),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    // Every change is refused: the file system is read-only (it is also
    // mounted `ro`, so the kernel refuses most of them first).

    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: fuser::ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: fuser::ReplyCreate,
    ) {
        reply.error(Errno::EROFS);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_directory_names() {
        assert_eq!(
            backup_dir_name(1_704_592_800, None),
            b"2024-01-07T02:00:00Z"
        );
        assert_eq!(
            backup_dir_name(1_704_592_800, Some("disc-2/x")),
            b"2024-01-07T02:00:00Z_disc-2_x"
        );
    }

    #[test]
    fn times_and_devices() {
        assert_eq!(system_time(0), Some(UNIX_EPOCH));
        assert_eq!(
            system_time(-1_500_000_000),
            UNIX_EPOCH.checked_sub(Duration::from_millis(1500))
        );
        // /dev/null is 1:3, /dev/sda1 8:1; a large minor.
        assert_eq!(encode_dev(1, 3), 0x103);
        assert_eq!(encode_dev(8, 1), 0x801);
        assert_eq!(encode_dev(1, 0x100), 0x100_100);
    }
}
