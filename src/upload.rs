//! The upload phase: turn a queue into an immutable tree on the grid.
//!
//! The queue lists children before their parents, so each directory is built
//! as soon as its own line is read, from the caps and edge metadata of the
//! children already done. Pending children are kept per directory path; with
//! a post-order queue only the directories on the current path have pending
//! children, so memory follows depth × width, not the size of the tree.
//!
//! Every object goes through the dedup cache first. A cap enters the cache
//! only after the gateway returned it, so a crash at any point leaves a
//! cache that a re-run can trust.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use thiserror::Error;
use tracing::{debug, trace, warn};

use crate::cache::{self, Cache, CacheError, DirChild, FileKey, ObjectKind, SymlinkKey};
use crate::edge::{self, Child, EdgeMeta};
use crate::encode::Encoder;
use crate::meta::{EntryMeta, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
use crate::names::{self, ROOT_META_NAME};
use crate::queue::{self, Format, QueueError};
use crate::scan::display_path;
use crate::tahoe::{Cap, CheckOptions, Client, TahoeError};

/// What the upload needs besides the queue, decided by the command.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Look objects up in the cache (false with --disable-deduplication;
    /// what is uploaded is recorded either way).
    pub dedup: bool,
    /// Check objects whose lease this cache last renewed longer ago than
    /// this before reusing them.
    pub reuse_check_secs: i64,
}

/// Counts of one upload, for the summary line and the `backups` row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Entries in the finished tree (the root included).
    pub entries: u64,
    pub files_uploaded: u64,
    pub dirs_created: u64,
    /// Entries whose object came from the cache.
    pub unchanged: u64,
    /// Entries left out or incomplete; each was named in a warning.
    pub skipped: u64,
    /// Bytes of file content read for uploads (before compression).
    pub bytes_read: u64,
    /// Total size of the regular files in the backup.
    pub bytes_total: u64,
}

#[derive(Debug, Error)]
pub enum UploadError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("queue line {line} ({path}): {reason}")]
    Order {
        line: u64,
        path: String,
        reason: String,
    },
    #[error("{0}")]
    GridDown(String),
    #[error("{0}")]
    Source(String),
    #[error("{what}: {source}")]
    Tahoe {
        what: String,
        #[source]
        source: TahoeError,
    },
}

/// The result of a finished upload.
pub struct Finished {
    pub root: Cap,
    pub stats: Stats,
    pub seconds: f64,
}

/// One directory whose own queue line has not come yet.
struct Pending {
    /// Line of its first child, to name an orphan.
    first_line: u64,
    children: Vec<Child>,
    /// Raw name of the last child added: v1 queues list siblings in byte
    /// order, which catches duplicates and misordered lines early.
    last_name: Vec<u8>,
}

pub struct Uploader<'a> {
    client: &'a Client,
    cache: &'a mut Cache,
    encoder: &'a Encoder,
    source: PathBuf,
    options: Options,
    stats: Stats,
    now: i64,
    /// Whether a fresh upload's k/N were compared with the cache's probe.
    encoding_checked: bool,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn split_path(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b"", path),
    }
}

fn mtime_ns(md: &Metadata) -> i128 {
    i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec())
}

fn ctime_ns(md: &Metadata) -> i128 {
    i128::from(md.ctime()) * 1_000_000_000 + i128::from(md.ctime_nsec())
}

/// Whether lstat of the same path still describes the same, unchanged file.
fn unchanged(before: &Metadata, after: &Metadata) -> bool {
    before.ino() == after.ino()
        && before.dev() == after.dev()
        && before.size() == after.size()
        && mtime_ns(before) == mtime_ns(after)
        && ctime_ns(before) == ctime_ns(after)
}

impl<'a> Uploader<'a> {
    pub fn new(
        client: &'a Client,
        cache: &'a mut Cache,
        encoder: &'a Encoder,
        source: &Path,
        options: Options,
    ) -> Self {
        Self {
            client,
            cache,
            encoder,
            source: source.to_owned(),
            options,
            stats: Stats::default(),
            now: unix_now(),
            encoding_checked: false,
        }
    }

    /// Uploads every entry of the queue at `queue_path` and returns the root.
    pub fn run(mut self, queue_path: &Path) -> Result<Finished, UploadError> {
        let started = Instant::now();
        let mut reader = queue::Reader::open(queue_path)?;
        let format = reader.format();
        let mut pending: HashMap<Vec<u8>, Pending> = HashMap::new();
        let mut root: Option<Cap> = None;
        while let Some(entry) = reader.next() {
            let entry = entry?;
            let line = reader.line_no();
            if root.is_some() {
                return Err(self.order_error(
                    line,
                    &entry.path,
                    "comes after the root line, which must be last",
                ));
            }
            if entry.path.is_empty() {
                if !entry.meta.is_dir() {
                    return Err(self.order_error(line, b"", "the root must be a directory"));
                }
                let children = pending
                    .remove(&b""[..])
                    .map(|p| p.children)
                    .unwrap_or_default();
                if let Some((orphan, p)) = pending.iter().min_by_key(|(_, p)| p.first_line) {
                    return Err(self.order_error(
                        p.first_line,
                        orphan,
                        "entries of this directory were listed, but its own line never came after them",
                    ));
                }
                root = Some(self.root_dir(&entry.meta, children)?);
                continue;
            }
            let (parent, name) = split_path(&entry.path);
            let own_children = if entry.meta.is_dir() {
                pending
                    .remove(&entry.path)
                    .map(|p| p.children)
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            let Some(child) = self.entry(&entry.path, &entry.meta, own_children)? else {
                continue;
            };
            let frame = pending.entry(parent.to_vec()).or_insert_with(|| Pending {
                first_line: line,
                children: Vec::new(),
                last_name: Vec::new(),
            });
            if !frame.children.is_empty()
                && format == Format::V1
                && name <= frame.last_name.as_slice()
            {
                return Err(self.order_error(
                    line,
                    &entry.path,
                    "siblings must be listed once each, in byte order of their names",
                ));
            }
            frame.last_name = name.to_vec();
            frame.children.push(child);
            self.cache.maybe_commit()?;
        }
        let Some(root) = root else {
            return Err(UploadError::Order {
                line: reader.line_no(),
                path: "/".into(),
                reason: "the queue has no root line (an empty path); it is incomplete".into(),
            });
        };
        self.cache.commit()?;
        Ok(Finished {
            root,
            stats: self.stats,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    fn order_error(&self, line: u64, path: &[u8], reason: &str) -> UploadError {
        UploadError::Order {
            line,
            path: display_path(path),
            reason: reason.into(),
        }
    }

    /// Warns about an entry that is left out of the backup.
    fn skip(&mut self, path: &[u8], why: &str) -> Option<Child> {
        warn!("{}: {why}; not backed up", display_path(path));
        self.stats.skipped += 1;
        None
    }

    /// Builds the child for one non-root entry, or `None` when it is skipped.
    fn entry(
        &mut self,
        path: &[u8],
        queue_meta: &EntryMeta,
        children: Vec<Child>,
    ) -> Result<Option<Child>, UploadError> {
        let abs = self.source.join(OsStr::from_bytes(path));
        let md = match fs::symlink_metadata(&abs) {
            Ok(md) => md,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(self.skip(path, "vanished since the scan"));
            }
            Err(e) => return Ok(self.skip(path, &format!("cannot be read ({e})"))),
        };
        let queue_type = queue_meta.mode.map_or(S_IFLNK, |m| m & S_IFMT);
        if md.mode() & S_IFMT != queue_type {
            return Ok(self.skip(path, "changed its type since the scan"));
        }
        let (parent, raw_name) = split_path(path);
        let name = names::edge_name(raw_name, parent.is_empty());
        let (mut meta, problems) = EdgeMeta::read(&abs, queue_meta, &md);
        for problem in problems {
            warn!("{}: {problem}", display_path(path));
            self.stats.skipped += 1;
        }
        meta.name_raw = name.raw.clone();
        let cap = match queue_type {
            S_IFDIR => self.directory(path, &meta, children)?,
            S_IFREG => match self.regular_file(path, &abs, &md, &mut meta)? {
                Some(cap) => cap,
                None => return Ok(None),
            },
            S_IFLNK => match self.symlink(path, &abs, &md, &meta)? {
                Some(cap) => cap,
                None => return Ok(None),
            },
            // Fifos, sockets and device nodes have no content: an empty
            // literal file carries their mode (and rdev) for restore.
            _ => Cap::empty_literal(),
        };
        self.stats.entries += 1;
        Ok(Some(Child {
            name: name.name,
            cap,
            is_dir: queue_type == S_IFDIR,
            meta,
        }))
    }

    fn root_dir(
        &mut self,
        queue_meta: &EntryMeta,
        mut children: Vec<Child>,
    ) -> Result<Cap, UploadError> {
        let md = fs::symlink_metadata(&self.source).map_err(|e| {
            UploadError::GridDown(format!(
                "the source root {} cannot be read: {e}",
                self.source.display()
            ))
        })?;
        let (meta, problems) = EdgeMeta::read(&self.source, queue_meta, &md);
        for problem in problems {
            warn!("/: {problem}");
            self.stats.skipped += 1;
        }
        // The root has no parent edge: its own metadata rides on a reserved
        // empty entry inside it.
        children.push(Child {
            name: ROOT_META_NAME.to_owned(),
            cap: Cap::empty_literal(),
            is_dir: false,
            meta: meta.clone(),
        });
        let cap = self.directory(b"", &meta, children)?;
        self.stats.entries += 1;
        Ok(cap)
    }

    /// Reuses a cached object, after checking it on the grid when this cache
    /// has not renewed its lease for a while. `None`: upload it again.
    fn reuse(&mut self, key: &cache::ObjectKey, path: &[u8]) -> Result<Option<Cap>, UploadError> {
        if !self.options.dedup {
            return Ok(None);
        }
        let Some(cached) = self.cache.lookup(key)? else {
            return Ok(None);
        };
        let stale = cached
            .lease_renewed
            .is_none_or(|t| self.now - t >= self.options.reuse_check_secs);
        if stale && !cached.cap.is_literal() {
            let report = self
                .client
                .check(
                    &cached.cap,
                    CheckOptions {
                        add_lease: true,
                        ..CheckOptions::default()
                    },
                )
                .map_err(|source| UploadError::Tahoe {
                    what: format!("checking {} before reusing it", display_path(path)),
                    source,
                })?;
            if !report.healthy {
                warn!(
                    "{}: the cached object #{} is not healthy on the grid ({}); uploading it again",
                    display_path(path),
                    cached.cap.short_id(),
                    report.summary
                );
                self.cache.forget_cap(&cached.cap)?;
                return Ok(None);
            }
            self.cache.set_lease_renewed(&cached.cap, self.now)?;
        }
        self.cache.mark_used(key)?;
        self.stats.unchanged += 1;
        trace!(path = %display_path(path), "unchanged");
        Ok(Some(cached.cap))
    }

    fn regular_file(
        &mut self,
        path: &[u8],
        abs: &Path,
        md: &Metadata,
        meta: &mut EdgeMeta,
    ) -> Result<Option<Cap>, UploadError> {
        let size = md.size();
        self.stats.bytes_total += size;
        let encoding = self.encoder.choose(path, size);
        if encoding.is_some() {
            meta.enc = encoding;
            meta.size = Some(size);
        }
        let encoding_tag =
            encoding.map_or_else(|| "enc:none".to_owned(), |e| format!("enc:{}", e.as_str()));
        let key = FileKey {
            path,
            meta_json: &meta.to_json(),
            mtime_ns: mtime_ns(md),
            ctime_ns: ctime_ns(md),
            size,
            inode: md.ino(),
            encoding: &encoding_tag,
        }
        .key();
        if let Some(cap) = self.reuse(&key, path)? {
            return Ok(Some(cap));
        }
        let encoder = self.encoder;
        let abs_owned = abs.to_owned();
        let result = self.client.upload(move || {
            let file = File::open(&abs_owned)?;
            encoder.reader(encoding, file)
        });
        let cap = match result {
            Ok(cap) => cap,
            Err(err) => return self.upload_failed(path, err).map(|()| None),
        };
        self.stats.bytes_read += size;
        self.stats.files_uploaded += 1;
        if !self.encoding_checked && !cap.is_literal() {
            // Warns (once) when the gateway's k/N differ from those the cache
            // was made with: old caps stay valid, but new uploads of the same
            // content get new caps.
            self.encoding_checked = true;
            self.cache.check_encoding(&cap)?;
        }
        match fs::symlink_metadata(abs) {
            Ok(after) if unchanged(md, &after) => {
                self.cache.record(&key, &cap, ObjectKind::File, true)?;
                trace!(path = %display_path(path), "uploaded");
            }
            // What was sent may mix old and new bytes: keep it in this
            // backup (it is the best there is) but never cache it, so the
            // next run reads the file again.
            _ => {
                warn!(
                    "{}: changed while it was uploaded; the backup holds what was read, and the next run uploads it again",
                    display_path(path)
                );
                self.stats.skipped += 1;
            }
        }
        Ok(Some(cap))
    }

    fn symlink(
        &mut self,
        path: &[u8],
        abs: &Path,
        md: &Metadata,
        meta: &EdgeMeta,
    ) -> Result<Option<Cap>, UploadError> {
        let target = match fs::read_link(abs) {
            Ok(t) => t.into_os_string().into_vec(),
            Err(e) => {
                self.skip(path, &format!("cannot be read ({e})"));
                return Ok(None);
            }
        };
        let key = SymlinkKey {
            path,
            meta_json: &meta.to_json(),
            target: &target,
            ctime_ns: ctime_ns(md),
            inode: md.ino(),
        }
        .key();
        if let Some(cap) = self.reuse(&key, path)? {
            return Ok(Some(cap));
        }
        match self.client.upload_bytes(&target) {
            Ok(cap) => {
                self.stats.files_uploaded += 1;
                self.cache.record(&key, &cap, ObjectKind::File, true)?;
                trace!(path = %display_path(path), "uploaded symlink");
                Ok(Some(cap))
            }
            Err(err) => self.upload_failed(path, err).map(|()| None),
        }
    }

    fn directory(
        &mut self,
        path: &[u8],
        meta: &EdgeMeta,
        mut children: Vec<Child>,
    ) -> Result<Cap, UploadError> {
        children.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(dup) = children.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(UploadError::Order {
                line: 0,
                path: display_path(path),
                reason: format!(
                    "two entries map to the same name {:?} in this directory",
                    dup[0].name
                ),
            });
        }
        let child_json: Vec<String> = children.iter().map(|c| c.meta.to_json()).collect();
        let key_children: Vec<DirChild<'_>> = children
            .iter()
            .zip(&child_json)
            .map(|(c, json)| DirChild {
                name: &c.name,
                cap: c.cap.as_str(),
                meta_json: json,
            })
            .collect();
        let key = cache::dir_key(&meta.to_json(), &key_children);
        if let Some(cap) = self.reuse(&key, path)? {
            return Ok(cap);
        }
        let body = edge::children_json(&children);
        let cap = self.client.mkdir_immutable(&body).map_err(|source| {
            if source.is_unhappy() {
                UploadError::GridDown(format!(
                    "the grid cannot store directory {}: {source}",
                    display_path(path)
                ))
            } else {
                UploadError::Tahoe {
                    what: format!("creating directory {}", display_path(path)),
                    source,
                }
            }
        })?;
        self.stats.dirs_created += 1;
        self.cache.record(&key, &cap, ObjectKind::Dir, true)?;
        let refs: Vec<&Cap> = children
            .iter()
            .map(|c| &c.cap)
            .filter(|c| !c.is_literal())
            .collect();
        self.cache.record_children(&cap, &refs)?;
        debug!(path = %display_path(path), children = children.len(), "created directory");
        Ok(cap)
    }

    /// Decides what a failed upload means: this one file is skipped, or the
    /// whole run stops.
    fn upload_failed(&mut self, path: &[u8], err: TahoeError) -> Result<(), UploadError> {
        if let TahoeError::Body(e) = &err {
            self.skip(path, &format!("could not be read while uploading ({e})"));
            return Ok(());
        }
        if err.is_unhappy() {
            // Either the grid cannot place shares at all, or this content is
            // blocked (partial shares left by an interrupted upload of the
            // same bytes stay on the servers for up to 30 minutes). A fresh
            // random probe tells the two apart.
            return match self.client.upload_bytes(&random_probe()) {
                Ok(_) => {
                    self.skip(
                        path,
                        "the grid refused this file's shares although it accepts others \
                         (likely left over from an interrupted upload of the same content; \
                         servers drop those within 30 minutes)",
                    );
                    Ok(())
                }
                Err(probe) => Err(UploadError::GridDown(format!(
                    "the grid cannot store new objects ({probe}); uploading {} failed: {err}",
                    display_path(path)
                ))),
            };
        }
        Err(UploadError::Tahoe {
            what: format!("uploading {}", display_path(path)),
            source: err,
        })
    }
}

/// 1 KiB of random bytes: above the literal-cap threshold, so uploading it
/// really places shares, and unique, so it never collides with anything.
pub fn random_probe() -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_err()
    {
        // Unique enough without /dev/urandom: time and pid.
        let seed = format!("{:?} {}", SystemTime::now(), std::process::id());
        for (i, b) in buf.iter_mut().enumerate() {
            *b = seed.as_bytes()[i % seed.len()] ^ (i as u8);
        }
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_path_finds_parent_and_name() {
        assert_eq!(split_path(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split_path(b"top"), (&b""[..], &b"top"[..]));
    }

    #[test]
    fn probes_differ() {
        assert_ne!(random_probe(), random_probe());
        assert_eq!(random_probe().len(), 1024);
    }
}
