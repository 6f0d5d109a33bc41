//! The upload phase: turn a queue into an immutable tree on the grid.
//!
//! The queue lists children before their parents. The coordinator (the
//! calling thread) reads it line by line, looks every entry up in the dedup
//! cache, and hands what must really go to the grid (reading and hashing
//! files, compressing, uploading, creating directories) to a pool of
//! `operation.concurrency` worker threads, so the single-threaded gateway
//! always has work queued. A directory is created once all its children are
//! done, whatever order they finish in; its children are sorted by name, so
//! the root cap does not depend on the concurrency.
//!
//! Only the coordinator touches the cache, and a cap enters it only after
//! the gateway returned it, so a crash at any point leaves a cache that a
//! re-run can trust. Memory follows the work in flight and the depth ×
//! width of the directories still open, never the size of the tree.
//!
//! Identical content is uploaded once: a file that misses the metadata key
//! is hashed (BLAKE3) and looked up in the content index, and identical
//! content already in flight waits for that upload instead of colliding with
//! it on the grid.

mod source;
mod worker;

use std::collections::HashMap;
use std::fs::{self, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use thiserror::Error;
use tracing::{debug, trace, warn};

use crate::cache::{self, Cache, CacheError, DirChild, FileKey, ObjectKey, ObjectKind, SymlinkKey};
use crate::config::{ChunkRules, Chunking, ChunkingConfig};
use crate::edge::{self, Child, EdgeMeta};
use crate::encode::{Encoder, Encoding, Prepared};
use crate::meta::{EntryMeta, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, ctime_ns, mtime_ns};
use crate::names::{self, ROOT_META_NAME};
use crate::progress::Progress;
use crate::queue::{self, Format, QueueError};
use crate::ratelimit::Limits;
use crate::scan::display_path;
use crate::stream::store::StreamError;
use crate::tahoe::{self, Cap, CheckReport, Client, TahoeError};

pub(crate) use worker::random_probe;
use worker::{Done, Failure, Job, JobId, Shared};

use crate::subtree::{Reused, SigBuilder};

/// What the upload needs besides the queue, decided by the command.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    /// Look objects up in the cache (false with --disable-deduplication;
    /// what is uploaded is recorded either way).
    pub dedup: bool,
    /// Check objects whose lease this cache last renewed this many seconds
    /// ago or longer before reusing them.
    pub reuse_check_secs: i64,
    /// Worker threads, at least 1.
    pub concurrency: usize,
    /// The settings fingerprint of subtree signatures (`crate::subtree`):
    /// with it, every directory completed with nothing skipped beneath it
    /// is recorded in the cache's `subtrees`, and the queue's reused lines
    /// are taken from there. `None`: neither.
    pub subtrees: Option<[u8; 32]>,
}

/// Counts of one upload, for the summary line and the `backups` row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stats {
    /// Entries in the finished tree (the root included).
    pub entries: u64,
    pub files_uploaded: u64,
    pub dirs_created: u64,
    /// Entries whose object came from the cache by their metadata.
    pub unchanged: u64,
    /// Files whose content was already on the grid (moved, renamed, copied,
    /// or touched without a change), found by their hash.
    pub content_reused: u64,
    /// Entries left out or incomplete; each was named in a warning.
    pub skipped: u64,
    /// Bytes of file content read to upload (before compression).
    pub bytes_read: u64,
    /// Total size of the regular files in the backup.
    pub bytes_total: u64,
}

#[derive(Debug, Error)]
pub(crate) enum UploadError {
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
    /// A reused queue line names a subtree the cache no longer holds (or
    /// whose leases are due a check): the queue must be made again.
    #[error(
        "{0}: the queue reuses this directory whole, but the cache no longer holds it \
         (or its leases are due a check); scan again (backup -f)"
    )]
    SubtreeGone(String),
    #[error("{what}: {source}")]
    Tahoe {
        what: String,
        #[source]
        source: TahoeError,
    },
}

/// The result of a finished upload.
pub(crate) struct Finished {
    pub root: Cap,
    pub stats: Stats,
    pub seconds: f64,
}

type FrameId = u64;

/// Where a finished child goes: slot `index` of directory frame `frame`.
#[derive(Debug, Clone, Copy)]
struct SlotRef {
    frame: FrameId,
    index: usize,
}

// Slots and tasks are few at any time (bounded by directory width and the
// work in flight), so their size does not matter; boxing would only add
// allocations.
#[allow(clippy::large_enum_variant)]
enum Slot {
    Pending,
    Done(Child),
    /// Left out (vanished, unreadable, refused); already warned about.
    Skipped,
}

/// A directory being assembled.
struct Frame {
    slots: Vec<Slot>,
    missing: usize,
    /// Line of its first child, to name an orphan.
    first_line: u64,
    /// Raw name of the last child queued, to check v1 sibling order.
    last_name: Vec<u8>,
    /// Set when the directory's own queue line has been read.
    closed: Option<ClosedDir>,
    /// The directory's subtree signature so far (`crate::subtree`), fed
    /// with each child as its line is read.
    sig: Option<SigBuilder>,
    /// Nothing beneath was skipped or changed during the upload: the
    /// finished directory may be recorded as a subtree.
    clean: bool,
    /// The oldest lease renewal of anything beneath (Unix seconds).
    oldest: i64,
}

struct ClosedDir {
    path: Vec<u8>,
    name: String,
    meta: EdgeMeta,
    /// `None` for the root.
    parent: Option<SlotRef>,
    /// The directory's subtree signature, to record with its cap.
    sig: Option<ObjectKey>,
}

/// The work in flight for one object, keyed by job id.
#[allow(clippy::large_enum_variant)]
enum Task {
    File(FileTask),
    Symlink(SymlinkTask),
    Dir(DirTask),
}

struct FileTask {
    slot: SlotRef,
    path: Vec<u8>,
    md: Metadata,
    key: ObjectKey,
    name: String,
    meta: EdgeMeta,
    decision: Option<Encoding>,
    /// Stored chunked (`chunking.files`): a stream-layout directory.
    chunked: bool,
    prepared: Option<Arc<Prepared>>,
    /// Content hash and encoding tag, once prepared.
    content: Option<([u8; 32], String)>,
}

impl FileTask {
    /// The edge says how the stored object is encoded, and its original
    /// size; a chunked file says so, with its size.
    fn set_encoding(&mut self, enc: Option<Encoding>) {
        if self.chunked {
            self.meta.chunked = true;
            self.meta.enc = None;
            self.meta.size = Some(self.md.size());
            return;
        }
        self.meta.enc = enc;
        self.meta.size = enc.map(|_| self.md.size());
    }
}

/// `chunking.files`: which files are stored chunked, and how they are cut.
pub(crate) struct ChunkedFiles {
    rules: ChunkRules,
    sizes: Chunking,
}

impl ChunkedFiles {
    /// The compiled `chunking.files` of `config`, `None` when it is unset;
    /// the error names the key (a usage error: exit 2).
    pub(crate) fn from_config(config: &ChunkingConfig) -> Result<Option<ChunkedFiles>, String> {
        let Some(files) = &config.files else {
            return Ok(None);
        };
        config.check()?;
        Ok(Some(ChunkedFiles {
            rules: files.compile()?,
            sizes: config.sizes.clone(),
        }))
    }
}

struct SymlinkTask {
    slot: SlotRef,
    path: Vec<u8>,
    key: ObjectKey,
    name: String,
    meta: EdgeMeta,
    target: Arc<Vec<u8>>,
    content: ([u8; 32], String),
}

struct DirTask {
    frame: FrameId,
    key: ObjectKey,
    body: Arc<String>,
    content: ([u8; 32], String),
    child_caps: Vec<Cap>,
}

/// Waiters for identical content being uploaded by another task.
#[derive(Default)]
struct InFlight {
    owner: HashMap<([u8; 32], String), JobId>,
    waiters: HashMap<JobId, Vec<JobId>>,
}

pub(crate) struct Uploader<'a> {
    client: &'a Client,
    cache: &'a mut Cache,
    encoder: &'a Encoder,
    limits: Limits,
    progress: Arc<Progress>,
    source: PathBuf,
    /// The source opened for reading below its root (see `source.rs`);
    /// opened on first use.
    tree: Option<source::SourceTree>,
    options: Options,
    stats: Stats,
    now: i64,
    /// Whether a fresh upload's k/N were compared with the cache's probe.
    encoding_checked: bool,

    frames: HashMap<FrameId, Frame>,
    /// Frames whose directory line has not been read yet, by path.
    open: HashMap<Vec<u8>, FrameId>,
    next_frame: FrameId,
    tasks: HashMap<JobId, Task>,
    next_job: JobId,
    inflight: InFlight,
    jobs: Option<Sender<Job>>,
    root: Option<Cap>,
    format: Format,
    /// `chunking.files`, when configured.
    chunked_files: Option<ChunkedFiles>,
}

fn unix_now() -> i64 {
    crate::clock::unix_now()
}

fn split_path(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b"", path),
    }
}

/// Whether lstat of the same path still describes the same, unchanged file.
fn unchanged(before: &Metadata, after: &Metadata) -> bool {
    before.ino() == after.ino()
        && before.dev() == after.dev()
        && before.size() == after.size()
        && mtime_ns(before) == mtime_ns(after)
        && ctime_ns(before) == ctime_ns(after)
}

const TAG_NONE: &str = "enc:none";
const TAG_DIR: &str = "dir";

impl<'a> Uploader<'a> {
    pub(crate) fn new(
        client: &'a Client,
        cache: &'a mut Cache,
        encoder: &'a Encoder,
        limits: Limits,
        progress: Arc<Progress>,
        source: &Path,
        options: Options,
    ) -> Self {
        Self {
            client,
            cache,
            encoder,
            limits,
            progress,
            source: source.to_owned(),
            tree: None,
            options,
            stats: Stats::default(),
            now: unix_now(),
            encoding_checked: false,
            frames: HashMap::new(),
            open: HashMap::new(),
            next_frame: 0,
            tasks: HashMap::new(),
            next_job: 0,
            inflight: InFlight::default(),
            jobs: None,
            root: None,
            format: Format::V1,
            chunked_files: None,
        }
    }

    /// Stores the regular files `files.rules` select chunked, cut with
    /// `files.sizes` (`chunking.files`, `docs/streams.md`).
    pub(crate) fn with_chunked_files(mut self, files: ChunkedFiles) -> Self {
        self.chunked_files = Some(files);
        self
    }

    /// Whether the regular file at `path` of `size` bytes is stored
    /// chunked. Files small enough to live in their cap never are.
    fn is_chunked(&self, path: &[u8], size: u64) -> bool {
        size > tahoe::LIT_THRESHOLD
            && self
                .chunked_files
                .as_ref()
                .is_some_and(|f| f.rules.chooses(path, size))
    }

    /// An upper bound of the objects and bytes that may go up: every entry
    /// whose metadata key misses the cache. Costs one pass over the queue
    /// (lstat and cache lookups), so it is only done when progress is shown.
    pub(crate) fn estimate(&mut self, queue_path: &Path) -> Result<(u64, u64), UploadError> {
        let (mut objects, mut bytes) = (0u64, 0u64);
        for entry in queue::Reader::open(queue_path)? {
            let entry = entry?;
            if entry.reused.is_some() {
                // Nothing in it goes up.
                continue;
            }
            let queue_type = entry.meta.mode.map_or(S_IFLNK, |m| m & S_IFMT);
            if queue_type == S_IFDIR {
                objects += 1;
                continue;
            }
            if entry.path.is_empty() {
                continue;
            }
            let Ok(md) = self.tree()?.lstat(&entry.path) else {
                continue;
            };
            let Ok(xattr_path) = self.tree()?.fd_path(&entry.path) else {
                continue;
            };
            if queue_type == S_IFREG {
                let decision = self.encoder.choose(&entry.path, md.size());
                let chunked = self.is_chunked(&entry.path, md.size());
                if decision.is_none() && md.size() <= tahoe::LIT_THRESHOLD {
                    continue;
                }
                let (parent, raw_name) = split_path(&entry.path);
                let name = names::edge_name(raw_name, parent.is_empty());
                let (mut meta, _) = EdgeMeta::read(&xattr_path, &entry.meta, &md);
                meta.name_raw = name.raw;
                let key = self.file_key(&entry.path, &meta, &md, decision, chunked);
                if !self.options.dedup || self.cache.lookup(&key)?.is_none() {
                    objects += 1;
                    bytes = bytes.saturating_add(md.size());
                }
            } else if queue_type == S_IFLNK {
                objects += 1;
            }
        }
        Ok((objects, bytes))
    }

    /// The source tree, opened for reads relative to its root.
    fn tree(&mut self) -> Result<&mut source::SourceTree, UploadError> {
        if self.tree.is_none() {
            let tree = source::SourceTree::open(&self.source).map_err(|e| {
                UploadError::Source(format!(
                    "the source root {} cannot be read: {e}",
                    self.source.display()
                ))
            })?;
            self.tree = Some(tree);
        }
        self.tree
            .as_mut()
            .ok_or_else(|| UploadError::Source("internal error: no source tree".into()))
    }

    /// Uploads every entry of the queue at `queue_path` and returns the root.
    pub(crate) fn run(mut self, queue_path: &Path) -> Result<Finished, UploadError> {
        let started = Instant::now();
        let concurrency = self.options.concurrency.max(1);
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let job_rx = Mutex::new(job_rx);
        let shared = Shared {
            client: self.client,
            encoder: self.encoder,
            limits: self.limits.clone(),
            progress: Arc::clone(&self.progress),
        };
        let result = std::thread::scope(|scope| {
            for _ in 0..concurrency {
                let done_tx = done_tx.clone();
                let (shared, job_rx) = (&shared, &job_rx);
                scope.spawn(move || worker::work(shared, job_rx, &done_tx));
            }
            drop(done_tx);
            self.jobs = Some(job_tx);
            // Should the coordinator panic, the job channel must still close,
            // or the scope would wait forever for workers blocked on it.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.coordinate(queue_path, &done_rx, concurrency)
            }));
            // Closing the job channel ends the workers once their current
            // job is done; the scope waits for them.
            self.jobs = None;
            result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        });
        let root = result?;
        self.cache.commit()?;
        Ok(Finished {
            root,
            stats: self.stats,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    fn coordinate(
        &mut self,
        queue_path: &Path,
        done: &Receiver<Done>,
        concurrency: usize,
    ) -> Result<Cap, UploadError> {
        // Enough queued work to keep every worker busy, and no more: memory
        // follows this bound, not the size of the tree.
        let max_tasks = concurrency * 4 + 16;
        let mut reader = queue::Reader::open(queue_path)?;
        self.format = reader.format();
        let mut root_seen = false;
        while let Some(entry) = reader.next() {
            let entry = entry?;
            let line = reader.line_no();
            test_panic("upload-coordinator");
            if root_seen {
                return Err(order_error(
                    line,
                    &entry.path,
                    "comes after the root line, which must be last",
                ));
            }
            root_seen = entry.path.is_empty();
            self.entry(line, &entry.path, &entry.meta, entry.reused.as_ref())?;
            while let Ok(result) = done.try_recv() {
                self.handle(result)?;
            }
            while self.tasks.len() >= max_tasks {
                self.wait(done)?;
            }
            self.cache.maybe_commit()?;
        }
        if !root_seen {
            return Err(UploadError::Order {
                line: reader.line_no(),
                path: "/".into(),
                reason: "the queue has no root line (an empty path); it is incomplete".into(),
            });
        }
        while self.root.is_none() {
            if self.tasks.is_empty() {
                return Err(UploadError::Order {
                    line: reader.line_no(),
                    path: "/".into(),
                    reason: "the root directory could not be completed".into(),
                });
            }
            self.wait(done)?;
        }
        self.root
            .clone()
            .ok_or_else(|| UploadError::Source("no root".into()))
    }

    fn wait(&mut self, done: &Receiver<Done>) -> Result<(), UploadError> {
        let result = done
            .recv()
            .map_err(|_| UploadError::Source("the upload threads stopped unexpectedly".into()))?;
        self.handle(result)?;
        self.cache.maybe_commit()?;
        Ok(())
    }

    /// Registers `task` under a new job id.
    fn track(&mut self, task: Task) -> JobId {
        let id = self.next_job;
        self.next_job += 1;
        self.tasks.insert(id, task);
        id
    }

    fn send(&self, job: Job) -> Result<(), UploadError> {
        let sent = self.jobs.as_ref().is_some_and(|tx| tx.send(job).is_ok());
        if sent {
            Ok(())
        } else {
            Err(UploadError::Source(
                "the upload threads stopped unexpectedly".into(),
            ))
        }
    }

    fn submit(&mut self, task: Task, job: impl FnOnce(JobId) -> Job) -> Result<(), UploadError> {
        let id = self.track(task);
        self.send(job(id))
    }

    // ------------------------------------------------------------ frames

    fn new_frame(&mut self, first_line: u64, dir: &[u8]) -> FrameId {
        let id = self.next_frame;
        self.next_frame += 1;
        let sig = self
            .options
            .subtrees
            .as_ref()
            .map(|fp| SigBuilder::new(fp, dir));
        self.frames.insert(
            id,
            Frame {
                slots: Vec::new(),
                missing: 0,
                first_line,
                last_name: Vec::new(),
                closed: None,
                sig,
                clean: true,
                oldest: self.now,
            },
        );
        id
    }

    /// Lowers the oldest lease beneath the directory of `frame`.
    fn note_lease(&mut self, frame: FrameId, renewed: i64) {
        if let Some(f) = self.frames.get_mut(&frame) {
            f.oldest = f.oldest.min(renewed);
        }
    }

    /// Something beneath the directory of `frame` was left out or changed:
    /// it must not be recorded as an unchanged subtree.
    fn taint(&mut self, frame: FrameId) {
        if let Some(f) = self.frames.get_mut(&frame) {
            f.clean = false;
        }
    }

    /// The subtree signature of the directory at `path`, whose children (if
    /// any) have all been fed to its frame.
    fn dir_sig(&mut self, path: &[u8], md: &Metadata, meta: &EntryMeta) -> Option<ObjectKey> {
        let fp = self.options.subtrees?;
        let mut builder = match self.open.get(path) {
            Some(id) => self.frames.get_mut(id)?.sig.take()?,
            None => SigBuilder::new(&fp, path),
        };
        if path.is_empty() {
            // The root's own metadata is stored inside it (as the scan's
            // signature says too).
            builder.child(b"", md, meta, None);
        }
        Some(builder.finish())
    }

    /// Reserves the next slot of the (open) directory at `parent`.
    fn reserve(&mut self, line: u64, path: &[u8]) -> Result<SlotRef, UploadError> {
        let (parent, name) = split_path(path);
        let frame_id = match self.open.get(parent) {
            Some(&id) => id,
            None => {
                let id = self.new_frame(line, parent);
                self.open.insert(parent.to_vec(), id);
                id
            }
        };
        let v1 = self.format != Format::Legacy;
        let frame = self
            .frames
            .get_mut(&frame_id)
            .ok_or_else(|| UploadError::Source("internal: a directory frame vanished".into()))?;
        if v1 && !frame.slots.is_empty() && name <= frame.last_name.as_slice() {
            return Err(order_error(
                line,
                path,
                "siblings must be listed once each, in byte order of their names",
            ));
        }
        frame.last_name = name.to_vec();
        frame.slots.push(Slot::Pending);
        frame.missing += 1;
        Ok(SlotRef {
            frame: frame_id,
            index: frame.slots.len() - 1,
        })
    }

    /// Puts a finished child (or a skip) into its slot; completes the
    /// directory when it was the last one missing.
    fn fill(&mut self, slot: SlotRef, value: Slot) -> Result<(), UploadError> {
        if matches!(value, Slot::Done(_)) {
            self.stats.entries += 1;
        } else {
            self.taint(slot.frame);
        }
        let ready = {
            // The directory itself was skipped (it vanished): what was in
            // flight for it has nowhere to go.
            let Some(frame) = self.frames.get_mut(&slot.frame) else {
                return Ok(());
            };
            frame.slots[slot.index] = value;
            frame.missing -= 1;
            frame.missing == 0 && frame.closed.is_some()
        };
        if ready {
            self.complete_dir(slot.frame)?;
        }
        Ok(())
    }

    fn skip(&mut self, slot: SlotRef, path: &[u8], why: &str) -> Result<(), UploadError> {
        warn!("{}: {why}; not backed up", display_path(path));
        self.stats.skipped += 1;
        self.fill(slot, Slot::Skipped)
    }

    // ------------------------------------------------------------ entries

    fn entry(
        &mut self,
        line: u64,
        path: &[u8],
        queue_meta: &EntryMeta,
        reused: Option<&Reused>,
    ) -> Result<(), UploadError> {
        let is_root = path.is_empty();
        if is_root && !queue_meta.is_dir() {
            return Err(order_error(line, path, "the root must be a directory"));
        }
        let slot = if is_root {
            None
        } else {
            Some(self.reserve(line, path)?)
        };
        // Below the root, everything is reached through held directory
        // descriptors without following links (see `source.rs`).
        let md = if is_root {
            // Through its parent's descriptor when longer than PATH_MAX.
            crate::scan::longpath::DirPath::new(&self.source)
                .and_then(|root| fs::symlink_metadata(root.path()))
        } else {
            self.tree()?.lstat(path)
        };
        let md = match md {
            Ok(md) => md,
            Err(e) if is_root => {
                return Err(UploadError::Source(format!(
                    "the source root {} cannot be read: {e}",
                    self.source.display()
                )));
            }
            Err(e) => {
                let why = if e.kind() == io::ErrorKind::NotFound {
                    "vanished since the scan".to_owned()
                } else {
                    format!("cannot be read ({e})")
                };
                self.drop_open_frame(path);
                return self.skip(non_root(slot)?, path, &why);
            }
        };
        let queue_type = queue_meta.mode.map_or(S_IFLNK, |m| m & S_IFMT);
        if md.mode() & S_IFMT != queue_type {
            if is_root {
                return Err(UploadError::Source(format!(
                    "the source root {} is no longer a directory",
                    self.source.display()
                )));
            }
            self.drop_open_frame(path);
            return self.skip(non_root(slot)?, path, "changed its type since the scan");
        }
        let (parent, raw_name) = split_path(path);
        let names::EdgeName { name, raw } = if is_root {
            names::EdgeName {
                name: String::new(),
                raw: None,
            }
        } else {
            names::edge_name(raw_name, parent.is_empty())
        };
        let xattr_path = match self.tree()?.fd_path(path) {
            Ok(p) => p,
            Err(e) => {
                self.drop_open_frame(path);
                return self.skip(non_root(slot)?, path, &format!("cannot be read ({e})"));
            }
        };
        let (mut meta, problems) = EdgeMeta::read(&xattr_path, queue_meta, &md);
        if !problems.is_empty()
            && let Some(slot) = slot
        {
            self.taint(slot.frame);
        }
        for problem in problems {
            warn!("{}: {problem}", display_path(path));
            self.stats.skipped += 1;
        }
        meta.name_raw = raw;
        // The parent's signature takes this entry as the scan saw it; a
        // directory's own signature is complete now (its children came
        // before it).
        let sig = match (queue_type, reused) {
            (S_IFDIR, Some(r)) => Some(r.sig),
            (S_IFDIR, None) => self.dir_sig(path, &md, queue_meta),
            _ => None,
        };
        if let Some(slot) = slot
            && let Some(builder) = self
                .frames
                .get_mut(&slot.frame)
                .and_then(|f| f.sig.as_mut())
        {
            builder.child(raw_name, &md, queue_meta, sig.as_ref());
        }
        if let Some(reused) = reused {
            return self.reused_dir(line, path, name, meta, slot, reused);
        }
        match queue_type {
            S_IFDIR => self.close_dir(line, path, name, meta, slot, sig),
            S_IFREG => {
                // Sizes come from the file system: sparse files may claim
                // exabytes, so the sums saturate rather than panic.
                self.stats.bytes_total = self.stats.bytes_total.saturating_add(md.size());
                self.regular_file(non_root(slot)?, path, md, name, meta)
            }
            S_IFLNK => self.symlink(non_root(slot)?, path, &md, name, meta),
            // Fifos, sockets and device nodes have no content: an empty
            // literal file carries their mode (and rdev) for restore.
            _ => self.fill(
                non_root(slot)?,
                Slot::Done(Child {
                    name,
                    cap: Cap::empty_literal(),
                    is_dir: false,
                    meta,
                }),
            ),
        }
    }

    /// A directory that is skipped takes its already-queued children with it.
    fn drop_open_frame(&mut self, path: &[u8]) {
        if let Some(id) = self.open.remove(path) {
            self.frames.remove(&id);
        }
    }

    /// The metadata key of a regular file; `decision` is
    /// `self.encoder.choose(path, md.size())`, `chunked`
    /// `self.is_chunked(path, md.size())`. A chunked file's encoding tag
    /// names the chunking too, so a file that becomes chunked (or is cut
    /// with other sizes) is stored again, and one that stops being chunked
    /// is not taken for its chunk directory.
    fn file_key(
        &self,
        path: &[u8],
        meta: &EdgeMeta,
        md: &Metadata,
        decision: Option<Encoding>,
        chunked: bool,
    ) -> ObjectKey {
        let mut encoding = self.encoder.decision_tag(decision);
        if chunked && let Some(files) = &self.chunked_files {
            let c = &files.sizes;
            encoding = format!(
                "chunked:v1:{}:{}:{}:{encoding}",
                c.min_size, c.avg_size, c.max_size
            );
        }
        FileKey {
            path,
            meta_json: &meta.to_json(),
            mtime_ns: mtime_ns(md),
            ctime_ns: ctime_ns(md),
            size: md.size(),
            inode: md.ino(),
            encoding: &encoding,
        }
        .key()
    }

    /// A metadata-cache hit, or `None`. A hit whose lease this cache has not
    /// renewed for a while is reported as `Stale`, to be checked first.
    fn lookup(&mut self, key: &ObjectKey) -> Result<Lookup, UploadError> {
        if !self.options.dedup {
            return Ok(Lookup::Miss);
        }
        let Some(cached) = self.cache.lookup(key)? else {
            return Ok(Lookup::Miss);
        };
        let stale = !cached.cap.is_literal()
            && cached
                .lease_renewed
                // Saturating: the timestamp comes from the cache file, and a
                // nonsense value (e.g. -2^63) must mean "check it", not a
                // panic.
                .is_none_or(|t| self.now.saturating_sub(t) >= self.options.reuse_check_secs);
        let enc = match cached.enc.as_deref() {
            None => None,
            Some(name) => match Encoding::from_name(name) {
                Some(enc) => Some(enc),
                // Written by a newer version: treat as unknown, upload again.
                None => return Ok(Lookup::Miss),
            },
        };
        Ok(if stale {
            Lookup::Stale(cached.cap, enc)
        } else {
            // Not stale: a lease time is recorded, or the cap is literal
            // (no lease to lapse).
            let renewed = cached.lease_renewed.unwrap_or(i64::MAX);
            Lookup::Hit(cached.cap, enc, renewed)
        })
    }

    fn regular_file(
        &mut self,
        slot: SlotRef,
        path: &[u8],
        md: Metadata,
        name: String,
        meta: EdgeMeta,
    ) -> Result<(), UploadError> {
        // The key covers the rule decision, not the final encoding (the
        // content probe may still decide against compressing): it must be
        // known without opening the file.
        let decision = self.encoder.choose(path, md.size());
        let chunked = self.is_chunked(path, md.size());
        let key = self.file_key(path, &meta, &md, decision, chunked);
        let mut task = FileTask {
            slot,
            path: path.to_vec(),
            md,
            key,
            name,
            meta,
            decision,
            chunked,
            prepared: None,
            content: None,
        };
        match self.lookup(&key)? {
            Lookup::Hit(cap, enc, renewed) => {
                self.note_lease(slot.frame, renewed);
                self.stats.unchanged += 1;
                trace!(path = %display_path(path), "unchanged");
                task.set_encoding(enc);
                self.finish_file(task, cap)
            }
            Lookup::Stale(cap, enc) => {
                task.set_encoding(enc);
                self.submit(Task::File(task), |id| Job::Check { id, cap })
            }
            Lookup::Miss => self.file_miss(task),
        }
    }

    /// A file the metadata cache does not know: literal-sized ones are
    /// encoded here, the others go to a worker to be read and hashed.
    fn file_miss(&mut self, task: FileTask) -> Result<(), UploadError> {
        if task.chunked {
            return self.chunked_file(task);
        }
        if task.decision.is_none() && task.md.size() <= tahoe::LIT_THRESHOLD {
            return self.literal_file(task);
        }
        // Opened here, through the held directories and without following
        // a link; the worker reads only this descriptor.
        let file = match self.tree()?.open_file(&task.path, &task.md) {
            Ok(file) => file,
            Err(e) => return self.skip_unread(task, &e),
        };
        let decision = task.decision;
        self.submit(Task::File(task), |id| Job::Prepare { id, file, decision })
    }

    fn skip_unread(&mut self, task: FileTask, e: &io::Error) -> Result<(), UploadError> {
        let why = if e.kind() == io::ErrorKind::NotFound {
            "vanished before it was uploaded".to_owned()
        } else {
            format!("cannot be read ({e})")
        };
        self.skip(task.slot, &task.path, &why)
    }

    /// Files of at most 55 bytes live inside their cap: computed locally,
    /// byte-identical to the gateway's, at no request.
    fn literal_file(&mut self, task: FileTask) -> Result<(), UploadError> {
        let mut data = Vec::with_capacity(64);
        let file = match self.tree()?.open_file(&task.path, &task.md) {
            Ok(file) => file,
            Err(e) => return self.skip_unread(task, &e),
        };
        let read = file.take(tahoe::LIT_THRESHOLD + 1).read_to_end(&mut data);
        let still = self.tree()?.lstat(&task.path);
        match (read, still) {
            (Ok(_), Ok(after))
                if unchanged(&task.md, &after) && data.len() as u64 == task.md.size() =>
            {
                let Some(cap) = tahoe::lit_cap(&data) else {
                    return self.skip(task.slot, &task.path, "grew while it was read");
                };
                self.cache
                    .record(&task.key, &cap, ObjectKind::File, false)?;
                trace!(path = %display_path(&task.path), "literal");
                self.finish_file(task, cap)
            }
            (Err(e), _) => self.skip(
                task.slot,
                &task.path.clone(),
                &format!("cannot be read ({e})"),
            ),
            _ => self.skip(task.slot, &task.path.clone(), "changed while it was read"),
        }
    }

    fn finish_file(&mut self, task: FileTask, cap: Cap) -> Result<(), UploadError> {
        self.fill(
            task.slot,
            Slot::Done(Child {
                name: task.name,
                cap,
                // A chunked file's object is its chunk directory: a
                // `dirnode` for Tahoe (so stock tools follow it to every
                // chunk), a file by its edge's `chunked` marker.
                is_dir: task.chunked,
                meta: task.meta,
            }),
        )
    }

    /// A chunked file the metadata cache does not know: cut and stored
    /// like a stream, here on the coordinator (the stream store runs its
    /// own `concurrency` upload threads and holds a few chunks at most);
    /// chunks already stored, by any file or stream, are not uploaded
    /// again. A file that changed while it was read is skipped, as a
    /// literal file is: its chunks would mix two versions.
    fn chunked_file(&mut self, mut task: FileTask) -> Result<(), UploadError> {
        let file = match self.tree()?.open_file(&task.path, &task.md) {
            Ok(file) => file,
            Err(e) => return self.skip_unread(task, &e),
        };
        let Some(files) = self.chunked_files.as_ref() else {
            return Err(UploadError::Source(
                "internal error: a chunked file without chunking.files".into(),
            ));
        };
        let options = crate::stream::store::Options {
            dedup: self.options.dedup,
            concurrency: self.options.concurrency,
            btrfs: None,
        };
        let stored = crate::stream::store::store(
            self.client,
            self.cache,
            self.encoder,
            &files.sizes,
            &task.path,
            file,
            options,
        );
        let stored = match stored {
            Ok(stored) => stored,
            Err(StreamError::Read(e)) => {
                let path = task.path.clone();
                return self.skip(task.slot, &path, &format!("cannot be read ({e})"));
            }
            Err(StreamError::Cache(e)) => return Err(e.into()),
            Err(StreamError::Tahoe { what, source }) => {
                return Err(UploadError::Tahoe {
                    what: format!("{what} of {}", display_path(&task.path)),
                    source,
                });
            }
            Err(other) => {
                return Err(UploadError::Source(format!(
                    "{}: {other}",
                    display_path(&task.path)
                )));
            }
        };
        let still = self.tree()?.lstat(&task.path);
        let whole = stored.stats.bytes == task.md.size();
        if !whole || !still.is_ok_and(|after| unchanged(&task.md, &after)) {
            let path = task.path.clone();
            return self.skip(task.slot, &path, "changed while it was read");
        }
        let own = stored.stats.chunks_uploaded > 0 || stored.stats.dirs_created > 0;
        if own {
            self.stats.files_uploaded += 1;
            self.stats.bytes_read = self
                .stats
                .bytes_read
                .saturating_add(stored.stats.bytes_uploaded);
            self.progress.object_done(task.md.size());
        } else {
            self.stats.content_reused += 1;
            self.progress.shrink_total(1, task.md.size());
        }
        self.cache
            .record(&task.key, &stored.root, ObjectKind::Dir, own)?;
        debug!(
            path = %display_path(&task.path),
            chunks = stored.stats.chunks,
            uploaded = stored.stats.chunks_uploaded,
            "stored chunked"
        );
        task.set_encoding(None);
        self.finish_file(task, stored.root)
    }

    fn symlink(
        &mut self,
        slot: SlotRef,
        path: &[u8],
        md: &Metadata,
        name: String,
        meta: EdgeMeta,
    ) -> Result<(), UploadError> {
        let target = match self.tree()?.read_link(path) {
            Ok(t) => t,
            Err(e) => return self.skip(slot, path, &format!("cannot be read ({e})")),
        };
        let key = SymlinkKey {
            path,
            meta_json: &meta.to_json(),
            target: &target,
            ctime_ns: ctime_ns(md),
            inode: md.ino(),
        }
        .key();
        let hash = *blake3::hash(&target).as_bytes();
        let task = SymlinkTask {
            slot,
            path: path.to_vec(),
            key,
            name,
            meta,
            target: Arc::new(target),
            content: (hash, TAG_NONE.to_owned()),
        };
        match self.lookup(&key)? {
            Lookup::Hit(cap, _, renewed) => {
                self.note_lease(slot.frame, renewed);
                self.stats.unchanged += 1;
                self.progress.shrink_total(1, 0);
                self.finish_symlink(task, cap)
            }
            Lookup::Stale(cap, _) => self.submit(Task::Symlink(task), |id| Job::Check { id, cap }),
            Lookup::Miss => self.symlink_miss(task),
        }
    }

    fn symlink_miss(&mut self, task: SymlinkTask) -> Result<(), UploadError> {
        if let Some(cap) = tahoe::lit_cap(&task.target) {
            self.cache
                .record(&task.key, &cap, ObjectKind::File, false)?;
            self.progress.shrink_total(1, 0);
            return self.finish_symlink(task, cap);
        }
        if self.options.dedup
            && let Some(cap) = self
                .cache
                .content_lookup(&task.content.0, &task.content.1)?
        {
            self.cache
                .record(&task.key, &cap, ObjectKind::File, false)?;
            let renewed = self.cache.lease_renewed(&cap)?.unwrap_or(0);
            self.note_lease(task.slot.frame, renewed);
            self.stats.content_reused += 1;
            self.progress.shrink_total(1, 0);
            return self.finish_symlink(task, cap);
        }
        let content = task.content.clone();
        let data = Arc::clone(&task.target);
        self.upload_once(Task::Symlink(task), content, |id| Job::UploadBytes {
            id,
            data,
        })
    }

    fn finish_symlink(&mut self, task: SymlinkTask, cap: Cap) -> Result<(), UploadError> {
        self.fill(
            task.slot,
            Slot::Done(Child {
                name: task.name,
                cap,
                is_dir: false,
                meta: task.meta,
            }),
        )
    }

    /// Submits an upload, unless identical content is already in flight:
    /// then this task waits for that upload's cap instead of sending the
    /// same bytes at the same time (which the grid refuses).
    fn upload_once(
        &mut self,
        task: Task,
        content: ([u8; 32], String),
        job: impl FnOnce(JobId) -> Job,
    ) -> Result<(), UploadError> {
        if let Some(&owner) = self.inflight.owner.get(&content) {
            let id = self.track(task);
            self.inflight.waiters.entry(owner).or_default().push(id);
            return Ok(());
        }
        let id = self.track(task);
        self.inflight.owner.insert(content, id);
        self.send(job(id))
    }

    // ------------------------------------------------------------ directories

    fn close_dir(
        &mut self,
        line: u64,
        path: &[u8],
        name: String,
        meta: EdgeMeta,
        parent: Option<SlotRef>,
        sig: Option<ObjectKey>,
    ) -> Result<(), UploadError> {
        let frame_id = match self.open.remove(path) {
            Some(id) => id,
            None => self.new_frame(line, path),
        };
        if parent.is_none() {
            // The root: nothing may still wait for a directory line.
            if let Some((orphan, id)) = self
                .open
                .iter()
                .min_by_key(|(_, id)| self.frames.get(id).map(|f| f.first_line))
            {
                let first_line = self.frames.get(id).map_or(0, |f| f.first_line);
                return Err(order_error(
                    first_line,
                    orphan,
                    "entries of this directory were listed, but its own line never came after them",
                ));
            }
        }
        let ready = {
            let frame = self.frames.get_mut(&frame_id).ok_or_else(|| {
                UploadError::Source("internal: a directory frame vanished".into())
            })?;
            frame.closed = Some(ClosedDir {
                path: path.to_vec(),
                name,
                meta,
                parent,
                sig,
            });
            frame.missing == 0
        };
        if ready {
            self.complete_dir(frame_id)?;
        }
        Ok(())
    }

    /// All children of a closed directory are done: reuse it or create it.
    fn complete_dir(&mut self, frame_id: FrameId) -> Result<(), UploadError> {
        let Some(frame) = self.frames.get_mut(&frame_id) else {
            return Ok(());
        };
        let mut children: Vec<Child> = std::mem::take(&mut frame.slots)
            .into_iter()
            .filter_map(|s| match s {
                Slot::Done(child) => Some(child),
                _ => None,
            })
            .collect();
        let Some(closed) = frame.closed.as_ref() else {
            return Ok(());
        };
        let (path, meta) = (closed.path.clone(), closed.meta.clone());
        if closed.parent.is_none() {
            // The root has no parent edge: its own metadata rides on a
            // reserved empty entry inside it.
            children.push(Child {
                name: ROOT_META_NAME.to_owned(),
                cap: Cap::empty_literal(),
                is_dir: false,
                meta: meta.clone(),
            });
        }
        children.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(dup) = children.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(UploadError::Order {
                line: 0,
                path: display_path(&path),
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
        let stale = match self.lookup(&key)? {
            // The common case of a re-run: no request body is needed.
            Lookup::Hit(cap, _, renewed) => {
                self.note_lease(frame_id, renewed);
                self.stats.unchanged += 1;
                self.progress.shrink_total(1, 0);
                return self.finish_dir(frame_id, cap);
            }
            Lookup::Stale(cap, _) => Some(cap),
            Lookup::Miss => None,
        };
        let body =
            edge::sorted_children_json(children.iter().zip(child_json.iter().map(String::as_str)));
        let child_caps: Vec<Cap> = children
            .into_iter()
            .map(|c| c.cap)
            .filter(|c| !c.is_literal())
            .collect();
        let content = (
            *blake3::hash(body.as_bytes()).as_bytes(),
            TAG_DIR.to_owned(),
        );
        let task = DirTask {
            frame: frame_id,
            key,
            body: Arc::new(body),
            content,
            child_caps,
        };
        match stale {
            Some(cap) => self.submit(Task::Dir(task), |id| Job::Check { id, cap }),
            None => self.dir_miss(task),
        }
    }

    fn dir_miss(&mut self, task: DirTask) -> Result<(), UploadError> {
        if task.body.as_str() == "{}" {
            let cap = tahoe::empty_dir_cap();
            self.cache.record(&task.key, &cap, ObjectKind::Dir, false)?;
            self.progress.shrink_total(1, 0);
            return self.finish_dir(task.frame, cap);
        }
        let content = task.content.clone();
        let body = Arc::clone(&task.body);
        self.upload_once(Task::Dir(task), content, |id| Job::Mkdir { id, body })
    }

    /// A directory the scan found unchanged (a reused queue line): its cap
    /// comes from the cache's `subtrees`, and nothing beneath it is visited.
    fn reused_dir(
        &mut self,
        line: u64,
        path: &[u8],
        name: String,
        meta: EdgeMeta,
        parent: Option<SlotRef>,
        reused: &Reused,
    ) -> Result<(), UploadError> {
        if self.open.contains_key(path) {
            return Err(order_error(
                line,
                path,
                "a directory reused whole (#subtree=) cannot have entries listed before it",
            ));
        }
        let found = match self.options.subtrees {
            Some(_) => self.cache.subtree(&reused.sig)?,
            None => None,
        };
        let fresh = found.filter(|s| {
            // Saturating: the time comes from the cache file.
            self.now.saturating_sub(s.leased) < self.options.reuse_check_secs
        });
        let Some(subtree) = fresh else {
            return Err(UploadError::SubtreeGone(display_path(path)));
        };
        trace!(path = %display_path(path), entries = reused.entries, "unchanged subtree");
        self.stats.entries = self.stats.entries.saturating_add(reused.entries);
        self.stats.unchanged = self
            .stats
            .unchanged
            .saturating_add(reused.entries)
            .saturating_add(1);
        self.stats.bytes_total = self.stats.bytes_total.saturating_add(reused.bytes);
        match parent {
            None => {
                self.stats.entries += 1;
                self.root = Some(subtree.cap);
                Ok(())
            }
            Some(slot) => {
                self.note_lease(slot.frame, subtree.leased);
                self.fill(
                    slot,
                    Slot::Done(Child {
                        name,
                        cap: subtree.cap,
                        is_dir: true,
                        meta,
                    }),
                )
            }
        }
    }

    fn finish_dir(&mut self, frame_id: FrameId, cap: Cap) -> Result<(), UploadError> {
        let Some(frame) = self.frames.remove(&frame_id) else {
            return Ok(());
        };
        let Some(closed) = frame.closed else {
            return Ok(());
        };
        if let Some(sig) = &closed.sig
            && frame.clean
        {
            self.cache.record_subtree(sig, &cap, frame.oldest)?;
        }
        if let Some(slot) = closed.parent {
            if !frame.clean {
                self.taint(slot.frame);
            }
            self.note_lease(slot.frame, frame.oldest);
        }
        match closed.parent {
            None => {
                self.stats.entries += 1;
                self.root = Some(cap);
                Ok(())
            }
            Some(slot) => self.fill(
                slot,
                Slot::Done(Child {
                    name: closed.name,
                    cap,
                    is_dir: true,
                    meta: closed.meta,
                }),
            ),
        }
    }

    // ------------------------------------------------------------ results

    fn handle(&mut self, done: Done) -> Result<(), UploadError> {
        match done {
            Done::Prepared { id, result } => self.prepared(id, result),
            Done::Uploaded { id, result } => self.uploaded(id, result),
            Done::Checked { id, result } => self.checked(id, result),
            Done::Panicked => Err(UploadError::Source(
                "internal error: an upload thread panicked (a bug; please report)".into(),
            )),
        }
    }

    fn take(&mut self, id: JobId) -> Result<Task, UploadError> {
        self.tasks
            .remove(&id)
            .ok_or_else(|| UploadError::Source("internal: a finished job has no task".into()))
    }

    fn prepared(&mut self, id: JobId, result: io::Result<Prepared>) -> Result<(), UploadError> {
        let Task::File(mut task) = self.take(id)? else {
            return Err(UploadError::Source(
                "internal: a prepared job is not a file".into(),
            ));
        };
        let prepared = match result {
            Ok(p) => p,
            Err(e) => {
                let why = if e.kind() == io::ErrorKind::NotFound {
                    "vanished before it was uploaded".to_owned()
                } else {
                    format!("cannot be read ({e})")
                };
                return self.skip(task.slot, &task.path.clone(), &why);
            }
        };
        let tag = prepared.encoding.map_or_else(
            || TAG_NONE.to_owned(),
            |e| self.encoder.decision_tag(Some(e)),
        );
        task.meta.enc = prepared.encoding;
        task.meta.size = prepared.encoding.map(|_| prepared.raw_size);
        let content = (prepared.raw_hash, tag);
        if self.options.dedup
            && let Some(cap) = self.cache.content_lookup(&content.0, &content.1)?
        {
            // Moved, renamed, copied or touched: the bytes are on the grid.
            let enc = task.meta.enc.map(Encoding::as_str);
            self.cache
                .record_encoded(&task.key, &cap, ObjectKind::File, enc, false)?;
            let renewed = self.cache.lease_renewed(&cap)?.unwrap_or(0);
            self.note_lease(task.slot.frame, renewed);
            self.stats.content_reused += 1;
            self.progress.shrink_total(1, task.md.size());
            trace!(path = %display_path(&task.path), "content already stored");
            return self.finish_file(task, cap);
        }
        let prepared = Arc::new(prepared);
        task.prepared = Some(Arc::clone(&prepared));
        task.content = Some(content.clone());
        self.upload_once(Task::File(task), content, |id| Job::Upload { id, prepared })
    }

    fn uploaded(&mut self, id: JobId, result: Result<Cap, Failure>) -> Result<(), UploadError> {
        let task = self.take(id)?;
        let waiters = self.inflight.waiters.remove(&id).unwrap_or_default();
        let content = match &task {
            Task::File(t) => t.content.clone(),
            Task::Symlink(t) => Some(t.content.clone()),
            Task::Dir(t) => Some(t.content.clone()),
        };
        if let Some(content) = &content {
            self.inflight.owner.remove(content);
        }
        let cap = match result {
            Ok(cap) => cap,
            Err(Failure::Skip(why)) => {
                let (slot, path) = match &task {
                    Task::File(t) => (t.slot, t.path.clone()),
                    Task::Symlink(t) => (t.slot, t.path.clone()),
                    Task::Dir(t) => {
                        // A blocked directory goes with its subtree; the
                        // rest of the backup goes on.
                        let closed = self.frames.remove(&t.frame).and_then(|f| f.closed);
                        let Some(ClosedDir {
                            parent: Some(slot),
                            path,
                            ..
                        }) = closed
                        else {
                            return Err(UploadError::GridDown(format!(
                                "the backup's root directory cannot be stored: {why}"
                            )));
                        };
                        self.skip(slot, &path, &why)?;
                        return self.promote(waiters, content);
                    }
                };
                self.skip(slot, &path, &why)?;
                // The waiters' own bytes may be fine: the first takes over.
                return self.promote(waiters, content);
            }
            Err(Failure::GridDown(why)) => return Err(UploadError::GridDown(why)),
            Err(Failure::Tahoe(source)) => {
                return Err(UploadError::Tahoe {
                    what: format!("uploading {}", self.task_path(&task)),
                    source,
                });
            }
        };
        if !self.encoding_checked && !cap.is_literal() && !cap.is_dir() {
            // Warns (once) when the gateway's k/N differ from those the cache
            // was made with: old caps stay valid, but new uploads of the same
            // content get new caps.
            self.encoding_checked = true;
            self.cache.check_encoding(&cap)?;
        }
        if let Some((hash, tag)) = &content
            && tag != TAG_DIR
        {
            self.cache.content_record(hash, tag, &cap)?;
        }
        self.finish_uploaded(task, cap.clone(), true)?;
        for waiter in waiters {
            let task = self.take(waiter)?;
            if matches!(task, Task::File(_) | Task::Symlink(_)) {
                self.stats.content_reused += 1;
            }
            self.finish_uploaded(task, cap.clone(), false)?;
        }
        Ok(())
    }

    fn task_path(&self, task: &Task) -> String {
        match task {
            Task::File(t) => display_path(&t.path),
            Task::Symlink(t) => display_path(&t.path),
            Task::Dir(t) => self.frame_path(t.frame),
        }
    }

    fn frame_path(&self, frame: FrameId) -> String {
        self.frames
            .get(&frame)
            .and_then(|f| f.closed.as_ref())
            .map_or_else(|| "a directory".into(), |c| display_path(&c.path))
    }

    /// The owner of an upload failed on its own account: the first waiter
    /// uploads its own copy, and the others wait for it.
    fn promote(
        &mut self,
        waiters: Vec<JobId>,
        content: Option<([u8; 32], String)>,
    ) -> Result<(), UploadError> {
        let mut waiters = waiters.into_iter();
        let (Some(first), Some(content)) = (waiters.next(), content) else {
            return Ok(());
        };
        let task = self.take(first)?;
        let job_for = |id: JobId, task: &Task| -> Option<Job> {
            match task {
                Task::File(t) => t
                    .prepared
                    .clone()
                    .map(|prepared| Job::Upload { id, prepared }),
                Task::Symlink(t) => Some(Job::UploadBytes {
                    id,
                    data: Arc::clone(&t.target),
                }),
                Task::Dir(t) => Some(Job::Mkdir {
                    id,
                    body: Arc::clone(&t.body),
                }),
            }
        };
        // `track` hands out `next_job`: the id the job is built with.
        let id = self.next_job;
        let Some(job) = job_for(id, &task) else {
            return Err(UploadError::Source(
                "internal: a waiting file was never prepared".into(),
            ));
        };
        let id = self.track(task);
        self.inflight.owner.insert(content, id);
        let rest: Vec<JobId> = waiters.collect();
        if !rest.is_empty() {
            self.inflight.waiters.insert(id, rest);
        }
        self.send(job)
    }

    /// Records and places an object that now has a cap: uploaded by this
    /// task (`own`), or by another task with identical content.
    fn finish_uploaded(&mut self, task: Task, cap: Cap, own: bool) -> Result<(), UploadError> {
        match task {
            Task::File(task) => {
                if own {
                    self.stats.files_uploaded += 1;
                    self.stats.bytes_read = self.stats.bytes_read.saturating_add(task.md.size());
                    self.progress.object_done(task.md.size());
                } else {
                    self.progress.shrink_total(1, task.md.size());
                }
                match self.tree()?.lstat(&task.path) {
                    Ok(after) if unchanged(&task.md, &after) => {
                        let enc = task.meta.enc.map(Encoding::as_str);
                        self.cache
                            .record_encoded(&task.key, &cap, ObjectKind::File, enc, own)?;
                        trace!(path = %display_path(&task.path), "uploaded");
                    }
                    // The bytes sent were verified against the hash taken
                    // before the upload, so the object is right; only the
                    // metadata moved on. Keep it out of the key cache so the
                    // next run looks again.
                    _ => {
                        debug!(path = %display_path(&task.path), "metadata changed during the upload");
                        self.taint(task.slot.frame);
                    }
                }
                self.finish_file(task, cap)
            }
            Task::Symlink(task) => {
                if own {
                    self.stats.files_uploaded += 1;
                    self.progress.object_done(0);
                }
                self.cache.record(&task.key, &cap, ObjectKind::File, own)?;
                self.finish_symlink(task, cap)
            }
            Task::Dir(task) => {
                if own {
                    self.stats.dirs_created += 1;
                    self.progress.object_done(0);
                }
                self.cache.record(&task.key, &cap, ObjectKind::Dir, own)?;
                let refs: Vec<&Cap> = task.child_caps.iter().collect();
                self.cache.record_children(&cap, &refs)?;
                debug!(children = task.child_caps.len(), "created a directory");
                self.finish_dir(task.frame, cap)
            }
        }
    }

    fn checked(
        &mut self,
        id: JobId,
        result: Result<CheckReport, TahoeError>,
    ) -> Result<(), UploadError> {
        let task = self.take(id)?;
        let (key, what) = match &task {
            Task::File(t) => (t.key, display_path(&t.path)),
            Task::Symlink(t) => (t.key, display_path(&t.path)),
            Task::Dir(t) => (t.key, self.frame_path(t.frame)),
        };
        let report = result.map_err(|source| UploadError::Tahoe {
            what: format!("checking {what} before reusing it"),
            source,
        })?;
        let cached = self.cache.lookup(&key)?.map(|c| c.cap);
        let Some(cap) = cached else {
            return Err(UploadError::Source(
                "internal: a checked object left the cache".into(),
            ));
        };
        if report.healthy {
            self.cache.set_lease_renewed(&cap, self.now)?;
            self.stats.unchanged += 1;
            return match task {
                Task::File(t) => {
                    self.progress.shrink_total(1, t.md.size());
                    self.finish_file(t, cap)
                }
                Task::Symlink(t) => {
                    self.progress.shrink_total(1, 0);
                    self.finish_symlink(t, cap)
                }
                Task::Dir(t) => {
                    self.progress.shrink_total(1, 0);
                    self.finish_dir(t.frame, cap)
                }
            };
        }
        warn!(
            "{what}: the cached object #{} is not healthy on the grid ({}); uploading it again",
            cap.short_id(),
            report.summary
        );
        self.cache.forget_cap(&cap)?;
        match task {
            Task::File(mut t) => {
                t.set_encoding(None);
                self.file_miss(t)
            }
            Task::Symlink(t) => self.symlink_miss(t),
            Task::Dir(t) => self.dir_miss(t),
        }
    }
}

enum Lookup {
    /// Reuse this cap; for a file, with this content encoding. With the
    /// time this cache last renewed its lease.
    Hit(Cap, Option<Encoding>, i64),
    /// The same, once a check confirms the object is still healthy.
    Stale(Cap, Option<Encoding>),
    Miss,
}

/// The slot of an entry that is not the root (only the root has none).
fn non_root(slot: Option<SlotRef>) -> Result<SlotRef, UploadError> {
    slot.ok_or_else(|| UploadError::Source("internal error: the root has no parent slot".into()))
}

/// A test hook, honoured in debug builds only: with
/// `LAFS_BACKUP_TEST_PANIC=PLACE` (`upload-worker`, `upload-coordinator`),
/// the code at PLACE panics, so tests can check that a panic ends the
/// process promptly and releases the cache lock. Release builds ignore it.
pub(crate) fn test_panic(place: &str) {
    if cfg!(debug_assertions)
        && std::env::var_os("LAFS_BACKUP_TEST_PANIC").is_some_and(|v| v == place)
    {
        panic!("injected panic at {place} (LAFS_BACKUP_TEST_PANIC, a test hook)");
    }
}

fn order_error(line: u64, path: &[u8], reason: &str) -> UploadError {
    UploadError::Order {
        line,
        path: display_path(path),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_path_finds_parent_and_name() {
        assert_eq!(split_path(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split_path(b"top"), (&b""[..], &b"top"[..]));
    }

    /// Runs an upload of `queue` (its bytes) from `source`, with a gateway
    /// that refuses connections: whatever the queue says, the upload must
    /// end with a result or an error, never a panic.
    fn upload_never_panics(source: &Path, queue: &[u8]) {
        let dir = tempfile::tempdir().unwrap();
        let queue_path = dir.path().join("queue");
        std::fs::write(&queue_path, queue).unwrap();
        let mut config = crate::config::Config::default();
        config.http.retry.attempts = 1;
        let client = Client::new(
            "http://127.0.0.1:9/uri",
            &config.http.retry,
            &config.operation.timeouts.updates,
        )
        .unwrap();
        let mut cache = Cache::open(
            &dir.path().join("cache.sqlite"),
            &config.source.entry_cache.commit_after,
        )
        .unwrap();
        cache.begin_run(false).unwrap();
        let encoder = Encoder::new(&config.destination.encoding).unwrap();
        let progress = Arc::new(Progress::new(crate::progress::Mode::Off));
        let options = Options {
            dedup: true,
            reuse_check_secs: 0,
            concurrency: 2,
            subtrees: Some([7; 32]),
        };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut uploader = Uploader::new(
                &client,
                &mut cache,
                &encoder,
                Limits::new(None, None),
                Arc::clone(&progress),
                source,
                options,
            );
            let _ = uploader.estimate(&queue_path);
            let _ = uploader.run(&queue_path);
        }));
        assert!(
            outcome.is_ok(),
            "the upload panicked on the queue {:?}",
            String::from_utf8_lossy(queue)
        );
    }

    mod damaged_queues {
        use super::*;
        use proptest::prelude::*;

        const PATHS: [&str; 12] = [
            "", "a", "a/b", "a/f", "a/b/g", "l", "h", "x", "a/x", "l/f", "h/y", "a/b/g/z",
        ];
        const METAS: [&str; 5] = ["0:0:40755", "0:0:100644", "0:0:", "0:0:10644", "0:0:20620"];

        fn tree() -> tempfile::TempDir {
            let t = tempfile::tempdir().unwrap();
            let root = t.path();
            std::fs::create_dir_all(root.join("a/b")).unwrap();
            std::fs::write(root.join("a/f"), b"ten bytes!").unwrap();
            std::fs::write(root.join("a/b/g"), b"ten bytes?").unwrap();
            std::fs::write(root.join("h"), b"h").unwrap();
            std::os::unix::fs::symlink("a", root.join("l")).unwrap();
            t
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(48))]
            #[test]
            fn any_queue_ends_without_a_panic(
                v1 in any::<bool>(),
                lines in proptest::collection::vec((0..PATHS.len(), 0..METAS.len()), 0..10),
            ) {
                let t = tree();
                let mut queue = Vec::new();
                if v1 {
                    queue.extend_from_slice(b"#lafs-backup-queue v1\n");
                }
                for (p, m) in lines {
                    queue.extend_from_slice(format!("{} {}\n", PATHS[p], METAS[m]).as_bytes());
                }
                upload_never_panics(t.path(), &queue);
            }
        }

        #[test]
        fn a_queue_of_another_tree_or_a_file_root_ends_without_a_panic() {
            let t = tree();
            // The source root is now a file, while the queue says directory.
            upload_never_panics(&t.path().join("h"), b"#lafs-backup-queue v1\n 0:0:40755\n");
            // Entries of another tree, as after source.path changed.
            upload_never_panics(
                t.path(),
                b"#lafs-backup-queue v1\nh/q/r 0:0:100644\nh/q 0:0:40755\nh 0:0:40755\n 0:0:40755\n",
            );
        }
    }

    #[test]
    fn probes_differ() {
        assert_ne!(random_probe(), random_probe());
        assert_eq!(random_probe().len(), 1024);
    }
}
