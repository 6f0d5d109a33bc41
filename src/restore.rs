//! Restoring a backup tree (or part of it) from the grid into a local
//! directory: bytes, names and metadata. `docs/restore.md` is the user's
//! view; the safety rules are:
//!
//! * Names come from [`crate::tree::list`], which refuses every name that
//!   cannot be one directory entry, and every collision.
//! * Nothing is ever resolved through a path: each directory is held open
//!   and entries are made with `*at` calls relative to it, directories are
//!   opened with `O_DIRECTORY|O_NOFOLLOW`, files created with
//!   `O_CREAT|O_EXCL|O_NOFOLLOW`. A symlink made by the restore is never
//!   followed, so a hostile tree cannot write outside TARGET.
//! * Every non-directory is made under a temporary name
//!   (`.lafs-restore.PID.N`) in its directory, given its content and
//!   metadata, and renamed into place when complete (`renameat2` with
//!   `RENAME_NOREPLACE` unless `--overwrite`): an interrupted restore leaves
//!   no half-written file under a real name.
//!
//! Order: the tree is walked depth-first on the calling thread, each
//! directory made (mode 0700) when its listing arrives, its entries handed
//! to a pool of `concurrency` workers as they are met (files, symlinks,
//! special files, and later names of hard links, linked once the first
//! name is restored); up to `concurrency` listings of the directories the
//! walk enters next are fetched ahead; no plan is held ([`Walk`]). A
//! directory's metadata is set when it is finished, after everything
//! beneath it ([`OpenDir`]), or at the end for the directories that hold
//! the first name of a hard link and their ancestors; TARGET's last. The
//! progress totals are those the backup recorded ([`Options::totals`]),
//! never counted by listing the tree twice.

pub(crate) mod apply;
mod content;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use crate::scan::longpath::{self, DirPath};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, RenameFlags, openat, renameat2};
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat, makedev, mkdirat, mknodat};
use nix::unistd::{UnlinkatFlags, linkat, symlinkat, unlinkat};
use tracing::{info, warn};

use crate::edge::EdgeMeta;
use crate::escape;
use crate::filter::Filter;
use crate::progress::Progress;
use crate::stream::read::ChunkedFile;
use crate::tahoe::{Cap, Client, SYMLINK_TARGET_LIMIT};
use crate::tree::{self, Kind, Node};

use apply::{At, Ctx, os};

/// Prefix of the temporary names entries are created under.
pub(crate) const TEMP_PREFIX: &str = ".lafs-restore.";

/// Which part of the backup to restore.
#[derive(Debug, Default)]
pub(crate) enum Selection {
    #[default]
    All,
    /// Relative paths (components, raw bytes): each selects itself and
    /// everything beneath it; their ancestors are created to hold them.
    Paths(Vec<Vec<Vec<u8>>>),
    /// `+`/`-` rules, as in the config's filter (an excluded directory is
    /// not descended into).
    Rules(Filter),
}

impl Selection {
    /// Reads the command line's PATH|RULE arguments: all rules (`+…`/`-…`)
    /// or all paths. Err is a usage error.
    pub(crate) fn parse(args: &[String]) -> Result<Selection, String> {
        if args.is_empty() {
            return Ok(Selection::All);
        }
        let rules = args
            .iter()
            .filter(|a| a.starts_with('+') || a.starts_with('-'))
            .count();
        if rules == args.len() {
            return Filter::new(args)
                .map(Selection::Rules)
                .map_err(|e| e.to_string());
        }
        if rules > 0 {
            return Err("give either paths or +/- rules, not both".into());
        }
        let mut paths = Vec::new();
        for a in args {
            let comps: Vec<Vec<u8>> = a
                .as_bytes()
                .split(|&b| b == b'/')
                .filter(|c| !c.is_empty() && *c != b".")
                .map(<[u8]>::to_vec)
                .collect();
            if comps.iter().any(|c| c == b"..") {
                return Err(format!("path {a:?} contains `..`"));
            }
            if comps.is_empty() {
                return Ok(Selection::All);
            }
            paths.push(comps);
        }
        Ok(Selection::Paths(paths))
    }
}

#[derive(Debug, Default)]
pub(crate) struct Options {
    pub overwrite: bool,
    pub skip_existing: bool,
    pub dry_run: bool,
    /// Workers downloading at the same time (at least 1).
    pub concurrency: usize,
    pub selection: Selection,
    /// `--no-owner`: leave ownership to the restoring user.
    pub no_owner: bool,
    /// `--no-devices`: make no character or block device nodes (each is
    /// reported as withheld).
    pub no_devices: bool,
    /// `--no-setuid`: clear setuid/setgid on files (each reported).
    pub no_setuid: bool,
    /// `--no-caps`: set no file capabilities (each reported).
    pub no_caps: bool,
    /// `--no-xattrs`: set no extended attributes (ACLs and capabilities
    /// aside).
    pub no_xattrs: bool,
    /// The entries (directories and every name of a hard link included)
    /// and content bytes the backup recorded when it was made, when the
    /// restore source is a recorded backup: the progress display's totals
    /// when the whole of it is restored.
    pub totals: Option<(u64, u64)>,
}

/// What a restore did.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// Entries written (directories included).
    pub written: u64,
    /// Entries left alone by `--skip-existing`.
    pub skipped: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Entries (paths relative to TARGET, escaped) that could not be
    /// restored, or restored without some metadata, and why. Each was also
    /// logged as a warning.
    pub failures: Vec<(String, String)>,
    /// Entries, or parts of them, that the safety options held back
    /// (`--no-devices`, `--no-setuid`, `--no-caps`): path and what. Not
    /// problems: the user asked for it.
    pub withheld: Vec<(String, String)>,
    /// Device nodes, setuid/setgid files and file capability sets this
    /// restore created (what a root restore should be looked at for).
    pub devices: u64,
    pub setid: u64,
    pub caps: u64,
    /// With `dry_run`: what would be written, one line each (`d PATH`,
    /// `f PATH`, `l PATH`, `s PATH`, `h PATH` for a hard link).
    pub planned: Vec<String>,
}

/// Fatal errors: the restore could not start or the root is unreadable.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RestoreError {
    #[error("cannot read the backup's root directory: {0}")]
    Root(#[from] tree::TreeError),
    #[error("TARGET {path}: {source}")]
    Target { path: String, source: io::Error },
    #[error(
        "TARGET {path} is not empty ({count} entries): restore into a new or empty directory, \
         or give --skip-existing (keep what is there and restore the rest; how an interrupted \
         restore is continued) or --overwrite (replace what is there)"
    )]
    NotEmpty { path: String, count: u64 },
}

/// Restores the backup whose root directory is `root` into `target`.
/// The tree is walked depth-first and every entry is restored as it is
/// met, with the listings of the next directories fetched ahead: what the
/// walk holds is bounded by the depth, the listings on its path and those
/// fetched ahead, never by the number of entries (see [`Walk`]).
/// `progress` gets `opts.totals` when they are known, else counts without
/// a total.
pub(crate) fn run(
    client: &Client,
    root: &Cap,
    target: &Path,
    opts: &Options,
    progress: &Progress,
) -> Result<Report, RestoreError> {
    if !opts.overwrite && !opts.skip_existing {
        refuse_non_empty(target)?;
    }
    let mut listing = tree::list(client, root, true)?;
    let shared = Shared::new(
        client,
        opts,
        progress,
        Ctx {
            root: nix::unistd::geteuid().is_root(),
            no_owner: opts.no_owner,
            no_setuid: opts.no_setuid,
            no_caps: opts.no_caps,
            no_xattrs: opts.no_xattrs,
        },
    );
    let root_meta = listing.root_meta.take();
    let target_dir = if opts.dry_run {
        None
    } else {
        let target_err = |source| RestoreError::Target {
            path: target.display().to_string(),
            source,
        };
        // TARGET may be longer than PATH_MAX: made and opened a chunk at a
        // time; everything below it is reached from its descriptor.
        longpath::create_dir_all(target).map_err(target_err)?;
        let file = DirPath::resolve(target)
            .and_then(|dir| open_dir_path(dir.path()))
            .map_err(target_err)?;
        show_totals(opts, progress);
        // TARGET is the backup's root: one of the entries it recorded.
        progress.object_done(0);
        Some(Arc::new(OpenDir {
            file,
            // TARGET's own metadata is applied last, below.
            finish: None,
            parent: None,
            pinned: AtomicBool::new(false),
            shared: &shared,
        }))
    };
    let list = |cap: &Cap| tree::list(client, cap, false);
    // Listings fetched ahead of the walk: as many at a time as downloads.
    let ahead = opts.concurrency.max(1);
    let mut walk = Walk::new(&list, root, ahead);
    let (requests, request_rx) = sync_channel::<Request>(ahead);
    let request_rx = Mutex::new(request_rx);
    let workers = if opts.dry_run { 0 } else { ahead };
    let (tx, rx) = sync_channel::<Job<'_>>(workers * 2);
    let rx = Mutex::new(rx);
    std::thread::scope(|s| {
        for _ in 0..ahead {
            s.spawn(|| fetch_ahead(&list, &request_rx));
        }
        walk.ahead = Some(requests);
        match &target_dir {
            None => walk.walk_dir(&shared, listing, false, None, None),
            Some(dir) => {
                for _ in 0..workers {
                    s.spawn(|| worker(&shared, &rx, &dir.file));
                }
                walk.walk_dir(&shared, listing, false, Some(dir), Some(&tx));
            }
        }
        // Closing the channels ends the threads.
        walk.ahead = None;
        drop(tx);
    });
    if let Some(dir) = &target_dir {
        // Directories whose metadata waited for the hard links into them
        // (children first, so their ancestors are still open to us).
        let deferred = shared
            .deferred
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default();
        for Finish { rel, meta } in deferred {
            match open_rel(&dir.file, &rel) {
                Ok(file) => {
                    let problems = apply::apply(&At::Open(&file), &meta, true, false, shared.ctx);
                    shared.problems(&display(&rel), problems);
                }
                Err(e) => shared.fail(
                    &display(&rel),
                    format!("cannot open the directory to set its metadata: {e}"),
                ),
            }
        }
        if let Some(meta) = root_meta {
            let problems = apply::apply(&At::Open(&dir.file), &meta, true, false, shared.ctx);
            shared.problems(".", problems);
        }
        info!("{} directories listed", walk.dirs_listed);
    } else {
        info!(
            "{} directories listed: {} entries, {} bytes of content to restore",
            walk.dirs_listed, walk.objects, walk.bytes
        );
    }
    if let Selection::Paths(paths) = &opts.selection {
        for (i, p) in paths.iter().enumerate() {
            if !walk.matched.contains(&i) {
                shared.fail(&display(p), "not in the backup".into());
            }
        }
    }
    let planned = std::mem::take(&mut walk.planned);
    drop(walk);
    drop(target_dir);
    drop(rx);
    let mut failures = shared.failures.into_inner().unwrap_or_default();
    failures.sort();
    let mut withheld = shared.withheld.into_inner().unwrap_or_default();
    withheld.sort();
    Ok(Report {
        withheld,
        devices: shared.devices.into_inner(),
        setid: shared.setid.into_inner(),
        caps: shared.caps.into_inner(),
        written: shared.written.into_inner(),
        skipped: shared.skipped.into_inner(),
        bytes: shared.bytes.into_inner(),
        failures,
        planned,
    })
}

/// Starts the progress display: against the totals the backup recorded
/// when they are those of what is restored (the whole backup), else
/// counting without a total (and so without an ETA). The totals are never
/// counted by listing the tree ahead of the restore.
fn show_totals(opts: &Options, progress: &Progress) {
    match (opts.totals, &opts.selection) {
        (Some((entries, bytes)), Selection::All) => {
            info!(
                "{entries} entries, {bytes} bytes of content to restore (as the backup recorded \
                 them)"
            );
            progress.set_total(entries, bytes);
        }
        _ => {
            info!("the size of what is restored is not known ahead: progress shows no total");
            progress.start_without_total();
        }
    }
}

/// The first restored name of a hard-linked inode.
#[derive(Debug, Clone)]
enum Leader {
    Pending,
    Done(Vec<Vec<u8>>),
    Failed,
}

struct Shared<'a> {
    client: &'a Client,
    opts: &'a Options,
    progress: &'a Progress,
    ctx: Ctx,
    failures: Mutex<Vec<(String, String)>>,
    withheld: Mutex<Vec<(String, String)>>,
    devices: AtomicU64,
    setid: AtomicU64,
    caps: AtomicU64,
    /// The first name of each hard-linked inode met so far. Only entries
    /// recorded with `hlink` (link candidates: `st_nlink > 1` at backup
    /// time) are in it: the one piece of restore state that grows with the
    /// tree, bounded by the number of hard-linked inodes, not entries.
    links: Mutex<HashMap<(u64, u64), Leader>>,
    /// Signalled when a [`Leader`] leaves `Pending`.
    leader_done: Condvar,
    /// Directories whose metadata waits for the end of the restore (see
    /// [`OpenDir`]), children before parents: directories holding the
    /// first name of a hard link and their ancestors.
    deferred: Mutex<Vec<Finish>>,
    written: AtomicU64,
    skipped: AtomicU64,
    bytes: AtomicU64,
    temp_counter: AtomicU64,
}

impl<'a> Shared<'a> {
    fn new(client: &'a Client, opts: &'a Options, progress: &'a Progress, ctx: Ctx) -> Self {
        Shared {
            client,
            opts,
            progress,
            ctx,
            failures: Mutex::new(Vec::new()),
            withheld: Mutex::new(Vec::new()),
            devices: AtomicU64::new(0),
            setid: AtomicU64::new(0),
            caps: AtomicU64::new(0),
            links: Mutex::new(HashMap::new()),
            leader_done: Condvar::new(),
            deferred: Mutex::new(Vec::new()),
            written: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            temp_counter: AtomicU64::new(0),
        }
    }

    fn fail(&self, path: &str, why: String) {
        warn!("{path}: {why}");
        if let Ok(mut f) = self.failures.lock() {
            f.push((path.to_owned(), why));
        }
    }

    /// Records that the safety options held back `what` of `path`.
    fn withhold(&self, path: &str, what: &str) {
        info!("{path}: not restored: {what}");
        if let Ok(mut w) = self.withheld.lock() {
            w.push((path.to_owned(), what.to_owned()));
        }
    }

    /// Counts what a newly made non-directory `node` holds that a root
    /// restore creates with care, and reports what the options held back.
    fn count_created(&self, rel: &[Vec<u8>], node: &Node) {
        if is_device(node) {
            self.devices.fetch_add(1, Ordering::Relaxed);
        }
        if node.meta.mode.is_some_and(|m| m & 0o6000 != 0) {
            if self.opts.no_setuid {
                self.withhold(&display(rel), "setuid/setgid bits (--no-setuid)");
            } else {
                self.setid.fetch_add(1, Ordering::Relaxed);
            }
        }
        if node.meta.caps.is_some() {
            if self.opts.no_caps {
                self.withhold(&display(rel), "file capabilities (--no-caps)");
            } else {
                self.caps.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn problems(&self, path: &str, problems: Vec<String>) {
        for p in problems {
            self.fail(path, p);
        }
    }

    fn temp_name(&self) -> String {
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        format!("{TEMP_PREFIX}{}.{n}", std::process::id())
    }

    fn set_leader(&self, hlink: (u64, u64), state: Leader) {
        if let Ok(mut links) = self.links.lock() {
            links.insert(hlink, state);
        }
        self.leader_done.notify_all();
    }

    /// The first name of `hlink` once its worker is done with it (`None`
    /// when it was not restored). It cannot wait forever: the first name's
    /// job was queued, and so taken by a worker, before any later name's.
    fn wait_leader(&self, hlink: (u64, u64)) -> Option<Vec<Vec<u8>>> {
        let mut links = self.links.lock().ok()?;
        loop {
            match links.get(&hlink) {
                Some(Leader::Pending) => links = self.leader_done.wait(links).ok()?,
                Some(Leader::Done(path)) => return Some(path.clone()),
                Some(Leader::Failed) | None => return None,
            }
        }
    }
}

/// A directory being restored. Its metadata (mode, owner, mtime) is set
/// when the last holder lets go: the walk holds it while it walks the
/// directory, each worker job inside it holds it, and so does each
/// directory made in it, so nothing is written into it afterwards (its
/// mtime stays) and it is finished after everything beneath it.
///
/// A directory that holds the first name of a hard link is `pinned`: a
/// later name, met anywhere later in the walk, is linked to that name
/// through the path from TARGET, which a final mode without search
/// permission (for a restore that is not root's) on the directory or an
/// ancestor would close. Its metadata, and that of each of its ancestors,
/// waits in [`Shared::deferred`] until the end of the restore.
struct OpenDir<'s> {
    file: File,
    /// `None` for TARGET, whose metadata [`run`] applies last.
    finish: Option<Finish>,
    /// The directory this one was made in (`None` for TARGET).
    parent: Option<Arc<OpenDir<'s>>>,
    pinned: AtomicBool,
    shared: &'s Shared<'s>,
}

/// A directory's metadata, to set when it is finished.
struct Finish {
    /// Path from TARGET.
    rel: Vec<Vec<u8>>,
    meta: EdgeMeta,
}

impl OpenDir<'_> {
    /// Defers this directory's metadata (and its ancestors') to the end of
    /// the restore.
    fn pin(&self) {
        self.pinned.store(true, Ordering::Release);
    }
}

impl Drop for OpenDir<'_> {
    fn drop(&mut self) {
        let Some(finish) = self.finish.take() else {
            return;
        };
        if self.pinned.load(Ordering::Acquire) {
            // The parent is still held (by this directory): its metadata
            // waits too, and is deferred after this one.
            if let Some(parent) = &self.parent {
                parent.pin();
            }
            if let Ok(mut deferred) = self.shared.deferred.lock() {
                deferred.push(finish);
            }
            return;
        }
        let problems = apply::apply(
            &At::Open(&self.file),
            &finish.meta,
            true,
            false,
            self.shared.ctx,
        );
        self.shared.problems(&display(&finish.rel), problems);
    }
}

/// A non-directory for the workers.
struct Job<'s> {
    dir: Arc<OpenDir<'s>>,
    /// Path of the entry, components from TARGET.
    rel: Vec<Vec<u8>>,
    node: Node,
    /// A later name of a hard-linked inode: linked to the first name.
    follower: bool,
}

/// How a directory's listing is obtained (the grid; a synthetic tree in
/// the unit tests), from the walk's thread and the threads that fetch
/// listings ahead of it.
type Lister<'l> = dyn Fn(&Cap) -> Result<tree::Listing, tree::TreeError> + Sync + 'l;

/// A listing fetched ahead of the walk: asked for by the walk, answered
/// by one of the [`fetch_ahead`] threads.
type Ticket = Receiver<Result<tree::Listing, tree::TreeError>>;
/// A request for a listing: the directory and where to answer.
type Request = (Cap, SyncSender<Result<tree::Listing, tree::TreeError>>);

/// A thread that lists the directories the walk asks for ahead of it,
/// until the walk closes the channel. An answer the walk no longer wants
/// (its ticket was given up) is dropped.
fn fetch_ahead(list: &Lister<'_>, requests: &Mutex<Receiver<Request>>) {
    loop {
        let request = match requests.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((cap, answer)) = request else {
            return;
        };
        let _ = answer.send(list(&cap));
    }
}

/// The listing of a directory on the walk's current path.
struct Level {
    /// The entries not walked yet, in order.
    children: VecDeque<Node>,
    /// How many entries were taken from `children` (the index of its
    /// front in the listing).
    taken: usize,
    /// The index of the next entry looked at for fetching ahead.
    scan: usize,
    /// Whether the directory is selected itself (not only an ancestor of a
    /// selected path).
    selected: bool,
    /// Listings fetched ahead for subdirectories (by index), in order.
    tickets: VecDeque<(usize, Ticket)>,
}

/// The restore's walk: depth-first, its entries handed to the workers as
/// they are met. What it holds is bounded by the depth (`keys`, `rel`,
/// `levels`), the listings on the current path and at most `limit`
/// listings fetched ahead, never by the number of entries in the tree: the
/// workers' queue is bounded too, and a directory's metadata is set when
/// it is finished ([`OpenDir`]). Only the hard-link map grows, with link
/// candidates (and the directories holding their first names).
///
/// Fetching ahead: the next directories in the walk's order that are not
/// listed yet are the subdirectories not yet walked of the listings on the
/// path, the deepest first; up to `limit` of them are asked for, so a tree
/// of many small directories does not wait for one listing at a time.
struct Walk<'l> {
    list: &'l Lister<'l>,
    /// Where listings are asked for ahead (`None`: each is fetched when the
    /// walk gets to it).
    ahead: Option<SyncSender<Request>>,
    /// The most tickets held at once.
    limit: usize,
    /// Tickets held (in `levels`), and the most at any time.
    outstanding: usize,
    peak_outstanding: usize,
    /// The listings on the current path, TARGET's first.
    levels: Vec<Level>,
    /// The dry run's output (`--dry-run` only).
    planned: Vec<String>,
    /// Indexes of the selected paths that were found.
    matched: HashSet<usize>,
    /// Object keys of the directories on the current path, TARGET first:
    /// a descent into one of them is a cycle.
    keys: Vec<String>,
    /// Path of the entry being walked, components from TARGET.
    rel: Vec<Vec<u8>>,
    /// Hard-linked inodes counted in the totals (link candidates only).
    hlinks_counted: HashSet<(u64, u64)>,
    dirs_listed: u64,
    /// Non-directories met that will be downloaded or made (hard-link
    /// followers not counted), and their content bytes.
    objects: u64,
    bytes: u64,
    /// Entries of the listings on the current path not walked yet, and the
    /// most at any time (what the unit test counts).
    held: usize,
    peak_held: usize,
    peak_depth: usize,
}

/// The display form of a relative path.
fn display(comps: &[Vec<u8>]) -> String {
    let parts: Vec<String> = comps
        .iter()
        .map(|c| String::from_utf8_lossy(&escape::escape(c)).into_owned())
        .collect();
    parts.join("/")
}

/// How the selection treats an entry.
enum Selected {
    No,
    /// Only as an ancestor of a selected path: a directory to create and
    /// descend into.
    Ancestor,
    Yes,
}

/// Whether the entry `rel` is restored. Rules are applied to every entry,
/// as the config's filter is (an excluded directory is not descended
/// into); a PATH selects itself and everything beneath it, and every PATH
/// met is marked found in `matched`, also inside another PATH.
fn select(
    matched: &mut HashSet<usize>,
    opts: &Options,
    rel: &[Vec<u8>],
    is_dir: bool,
    parent_selected: bool,
) -> Selected {
    match &opts.selection {
        Selection::All => Selected::Yes,
        Selection::Rules(filter) => {
            if filter.includes(&rel.join(&b'/'), is_dir) {
                Selected::Yes
            } else {
                Selected::No
            }
        }
        Selection::Paths(paths) => {
            let mut result = if parent_selected {
                Selected::Yes
            } else {
                Selected::No
            };
            for (i, p) in paths.iter().enumerate() {
                if rel.starts_with(p) {
                    matched.insert(i);
                    result = Selected::Yes;
                } else if is_dir && p.starts_with(rel) && matches!(result, Selected::No) {
                    result = Selected::Ancestor;
                }
            }
            result
        }
    }
}

impl<'l> Walk<'l> {
    /// A walk from `root` that fetches up to `limit` listings ahead once
    /// [`Walk::ahead`] is set.
    fn new(list: &'l Lister<'l>, root: &Cap, limit: usize) -> Walk<'l> {
        Walk {
            list,
            ahead: None,
            limit,
            outstanding: 0,
            peak_outstanding: 0,
            levels: Vec::new(),
            planned: Vec::new(),
            matched: HashSet::new(),
            keys: vec![root.object_key()],
            rel: Vec::new(),
            hlinks_counted: HashSet::new(),
            dirs_listed: 1,
            objects: 0,
            bytes: 0,
            held: 0,
            peak_held: 0,
            peak_depth: 1,
        }
    }

    /// Restores the entries of the directory at `self.rel`, already made
    /// as `dir` (`None` in a dry run), from its `listing`. Refusals and
    /// unlistable directories are reported here; a directory that is its
    /// own ancestor (a cycle) or deeper than [`tree::MAX_DEPTH`] is refused
    /// and not listed.
    fn walk_dir<'s>(
        &mut self,
        shared: &'s Shared<'s>,
        listing: tree::Listing,
        selected: bool,
        dir: Option<&Arc<OpenDir<'s>>>,
        tx: Option<&SyncSender<Job<'s>>>,
    ) {
        for (edge, why) in listing.refused {
            let mut shown = display(&self.rel);
            if !shown.is_empty() {
                shown.push('/');
            }
            shown.push_str(&edge);
            shared.fail(&shown, format!("refused: {why}"));
        }
        if let Some(d) = dir {
            // A leftover of an interrupted run is removed unless the
            // backup itself has that name.
            let keep: HashSet<&[u8]> = listing
                .children
                .iter()
                .filter(|n| n.name.starts_with(TEMP_PREFIX.as_bytes()))
                .map(|n| n.name.as_slice())
                .collect();
            remove_stale_temps(&d.file, &keep);
        }
        self.held += listing.children.len();
        self.peak_held = self.peak_held.max(self.held);
        self.levels.push(Level {
            children: listing.children.into(),
            taken: 0,
            scan: 0,
            selected,
            tickets: VecDeque::new(),
        });
        self.fetch_more(shared.opts);
        while let Some((mut node, index)) = self.next_child() {
            self.held -= 1;
            node.edge_name = String::new();
            node.meta.name_raw = None;
            self.rel.push(node.name.clone());
            self.entry(shared, node, index, selected, dir, tx);
            self.rel.pop();
        }
        if let Some(level) = self.levels.pop() {
            self.outstanding -= level.tickets.len();
        }
        self.fetch_more(shared.opts);
    }

    /// The next entry of the deepest level's listing, and its index.
    fn next_child(&mut self) -> Option<(Node, usize)> {
        let level = self.levels.last_mut()?;
        let node = level.children.pop_front()?;
        let index = level.taken;
        level.taken += 1;
        // Listings fetched for entries before this one were not wanted
        // after all (a refused directory).
        while level.tickets.front().is_some_and(|(i, _)| *i < index) {
            level.tickets.pop_front();
            self.outstanding -= 1;
        }
        Some((node, index))
    }

    /// Asks for the listings of the next directories the walk will enter,
    /// the deepest level's first, until `limit` tickets are held.
    fn fetch_more(&mut self, opts: &Options) {
        let Walk {
            ahead: Some(ahead),
            levels,
            keys,
            rel,
            outstanding,
            peak_outstanding,
            limit,
            ..
        } = self
        else {
            return;
        };
        for (depth, level) in levels.iter_mut().enumerate().rev() {
            while *outstanding < *limit && level.scan < level.taken + level.children.len() {
                let index = level.scan;
                level.scan += 1;
                let Some(node) = index
                    .checked_sub(level.taken)
                    .and_then(|i| level.children.get(i))
                else {
                    continue;
                };
                if node.kind != Kind::Dir {
                    continue;
                }
                // Only what the walk will list: selected, and no cycle
                // or depth it refuses (the walk checks again, and reports).
                let mut path = rel[..depth.min(rel.len())].to_vec();
                path.push(node.name.clone());
                if matches!(
                    select(&mut HashSet::new(), opts, &path, true, level.selected),
                    Selected::No
                ) {
                    continue;
                }
                let ancestors = keys
                    .iter()
                    .take(depth + 1)
                    .map(|k| (k.as_str(), String::new));
                if tree::refuse_descent(&node.cap, depth + 1, ancestors).is_some() {
                    continue;
                }
                let (answer, ticket) = sync_channel(1);
                if ahead.send((node.cap.clone(), answer)).is_err() {
                    return;
                }
                level.tickets.push_back((index, ticket));
                *outstanding += 1;
                *peak_outstanding = (*peak_outstanding).max(*outstanding);
            }
        }
    }

    /// The entry `node`, at `self.rel` (entry `index` of its directory's
    /// listing), of a directory (`dir`).
    fn entry<'s>(
        &mut self,
        shared: &'s Shared<'s>,
        node: Node,
        index: usize,
        parent_selected: bool,
        dir: Option<&Arc<OpenDir<'s>>>,
        tx: Option<&SyncSender<Job<'s>>>,
    ) {
        let is_dir = node.kind == Kind::Dir;
        match select(
            &mut self.matched,
            shared.opts,
            &self.rel,
            is_dir,
            parent_selected,
        ) {
            Selected::No => {}
            sel if is_dir => {
                self.descend(shared, node, index, matches!(sel, Selected::Yes), dir, tx);
            }
            Selected::Ancestor => {}
            Selected::Yes => {
                if node
                    .meta
                    .hlink
                    .is_none_or(|h| self.hlinks_counted.insert(h))
                {
                    self.objects += 1;
                    self.bytes += node_bytes(&node);
                }
                self.leaf(shared, dir, node, tx);
            }
        }
    }

    /// The listing of the directory `node`, entry `index` of the deepest
    /// level: fetched ahead, or now.
    fn listing(&mut self, node: &Node, index: usize) -> Result<tree::Listing, tree::TreeError> {
        let ticket = self.levels.last_mut().and_then(|level| {
            level
                .tickets
                .front()
                .is_some_and(|(i, _)| *i == index)
                .then(|| level.tickets.pop_front())
                .flatten()
        });
        match ticket {
            Some((_, ticket)) => {
                self.outstanding -= 1;
                // A fetching thread that is gone (it cannot be) leaves the
                // listing to the walk.
                ticket.recv().unwrap_or_else(|_| (self.list)(&node.cap))
            }
            None => (self.list)(&node.cap),
        }
    }

    /// Lists the directory `node` (at `self.rel`), makes it and walks it.
    fn descend<'s>(
        &mut self,
        shared: &'s Shared<'s>,
        node: Node,
        index: usize,
        selected: bool,
        parent: Option<&Arc<OpenDir<'s>>>,
        tx: Option<&SyncSender<Job<'s>>>,
    ) {
        let refused = {
            let rel = &self.rel;
            let ancestors =
                self.keys.iter().enumerate().rev().map(|(depth, key)| {
                    (key.as_str(), move || format!("/{}", display(&rel[..depth])))
                });
            tree::refuse_descent(&node.cap, rel.len(), ancestors)
        };
        if let Some(why) = refused {
            shared.fail(&display(&self.rel), format!("refused: {why}"));
            return;
        }
        let mut listing = match self.listing(&node, index) {
            Ok(listing) => listing,
            Err(e) => {
                // Not made at all: an empty directory would look like a
                // complete restore.
                shared.fail(
                    &display(&self.rel),
                    format!("cannot list the directory: {e}"),
                );
                return;
            }
        };
        self.dirs_listed += 1;
        // A backup root linked inside this tree (an `append_to_lafs_dir`
        // directory) carries its own metadata.
        let meta = listing.root_meta.take().unwrap_or(node.meta);
        let handle = match parent {
            None => {
                self.planned.push(format!("d {}", display(&self.rel)));
                None
            }
            Some(p) => match make_dir(&p.file, &node.name, shared.opts.overwrite) {
                Ok(file) => {
                    shared.progress.object_done(0);
                    Some(Arc::new(OpenDir {
                        file,
                        finish: Some(Finish {
                            rel: self.rel.clone(),
                            meta,
                        }),
                        parent: Some(Arc::clone(p)),
                        pinned: AtomicBool::new(false),
                        shared,
                    }))
                }
                Err(e) => {
                    shared.fail(&display(&self.rel), e);
                    return;
                }
            },
        };
        self.keys.push(node.cap.object_key());
        self.peak_depth = self.peak_depth.max(self.keys.len());
        self.walk_dir(shared, listing, selected, handle.as_ref(), tx);
        self.keys.pop();
        if handle.is_some() {
            shared.written.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn leaf<'s>(
        &mut self,
        shared: &'s Shared<'s>,
        dir: Option<&Arc<OpenDir<'s>>>,
        node: Node,
        tx: Option<&SyncSender<Job<'s>>>,
    ) {
        if shared.opts.no_devices && is_device(&node) {
            shared.withhold(&display(&self.rel), "device node (--no-devices)");
            // Among the backup's entries all the same.
            shared.progress.object_done(0);
            return;
        }
        let follower = node.meta.hlink.is_some_and(|h| {
            let Ok(mut links) = shared.links.lock() else {
                return false;
            };
            match links.entry(h) {
                std::collections::hash_map::Entry::Occupied(_) => true,
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(Leader::Pending);
                    false
                }
            }
        });
        let (Some(dir), Some(tx)) = (dir, tx) else {
            let c = match (follower, node.kind) {
                (true, _) => 'h',
                (_, Kind::File) => 'f',
                (_, Kind::Symlink) => 'l',
                _ => 's',
            };
            self.planned.push(format!("{c} {}", display(&self.rel)));
            return;
        };
        let hlink = node.meta.hlink;
        let job = Job {
            dir: Arc::clone(dir),
            rel: self.rel.clone(),
            node,
            follower,
        };
        if let Err(unsent) = tx.send(job) {
            if let (Some(h), false) = (hlink, follower) {
                shared.set_leader(h, Leader::Failed);
            }
            shared.fail(
                &display(&unsent.0.rel),
                "internal error: the workers stopped".into(),
            );
        }
    }
}

/// Links the later name `job` of a hard-linked inode to its first name,
/// once that is restored.
fn link_follower(shared: &Shared<'_>, target: &File, job: &Job<'_>) {
    let Some(hlink) = job.node.meta.hlink else {
        return;
    };
    let result = match shared.wait_leader(hlink) {
        Some(leader) => link_one(shared, target, &leader, &job.dir.file, &job.node.name),
        None => Err("not linked: the first name of this hard link was not restored".into()),
    };
    if let Err(e) = result {
        shared.fail(&display(&job.rel), e);
    }
}

fn link_one(
    shared: &Shared<'_>,
    target: &File,
    leader: &[Vec<u8>],
    dir: &File,
    name: &[u8],
) -> Result<(), String> {
    let (lname, ldir_rel) = leader.split_last().ok_or("empty leader path")?;
    let ldir = open_rel(target, ldir_rel)
        .map_err(|e| format!("cannot open the first name's directory: {e}"))?;
    let lstat = fstatat(ldir.as_fd(), os(lname), AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|e| format!("cannot stat the first name: {e}"))?;
    match fstatat(dir.as_fd(), os(name), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if st.st_ino == lstat.st_ino && st.st_dev == lstat.st_dev => {
            shared.skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        Ok(_) if !shared.opts.overwrite => return Err(exists_message(shared.opts)),
        Ok(st) if is_dir_stat(&st) => return Err("exists as a directory".into()),
        _ => {}
    }
    let tmp = shared.temp_name();
    linkat(
        ldir.as_fd(),
        os(lname),
        dir.as_fd(),
        tmp.as_str(),
        AtFlags::empty(),
    )
    .map_err(|e| format!("cannot link: {e}"))?;
    rename_into_place(shared, dir.as_fd(), &tmp, name)?;
    shared.written.fetch_add(1, Ordering::Relaxed);
    Ok(())
}
fn exists_message(opts: &Options) -> String {
    if opts.skip_existing {
        "already exists and differs from the backup (size, mtime or type); not overwritten".into()
    } else {
        "already exists (use --overwrite to replace, or --skip-existing)".into()
    }
}

/// The size of a file's content once restored (what progress counts).
fn node_bytes(node: &Node) -> u64 {
    match node.kind {
        Kind::File => node.meta.size.or(node.stored_size).unwrap_or(0),
        _ => 0,
    }
}

fn is_dir_stat(st: &FileStat) -> bool {
    st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits()
}

fn worker<'s>(shared: &Shared<'s>, rx: &Mutex<Receiver<Job<'s>>>, target: &File) {
    loop {
        let job = {
            let Ok(rx) = rx.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        if job.follower {
            link_follower(shared, target, &job);
            // Among the backup's entries and bytes, as each name is.
            shared.progress.object_done(node_bytes(&job.node));
            continue;
        }
        let result = restore_leaf(shared, &job);
        let bytes = node_bytes(&job.node);
        shared.progress.bytes_sent(bytes);
        shared.progress.object_done(bytes);
        // The path is shown only when something is reported, and kept only
        // as the first name of a hard link: most entries need neither.
        let hlink = job.node.meta.hlink;
        match result {
            Ok(problems) => {
                if !problems.is_empty() {
                    shared.problems(&display(&job.rel), problems);
                }
                if let Some(h) = hlink {
                    // Later names are linked to this one through its
                    // directory: it stays open to us until the end.
                    job.dir.pin();
                    shared.set_leader(h, Leader::Done(job.rel));
                }
            }
            Err(e) => {
                if let Some(h) = hlink {
                    shared.set_leader(h, Leader::Failed);
                }
                shared.fail(&display(&job.rel), e);
            }
        }
    }
}

/// Whether an existing entry already is the backup's (for
/// `--skip-existing`): same type, size (files, symlinks) and mtime.
fn same_as_backup(st: &FileStat, node: &Node) -> bool {
    let fmt = st.st_mode & SFlag::S_IFMT.bits();
    let type_ok = match node.kind {
        Kind::File => fmt == SFlag::S_IFREG.bits(),
        Kind::Symlink => fmt == SFlag::S_IFLNK.bits(),
        Kind::Special => node
            .meta
            .mode
            .is_some_and(|m| m & SFlag::S_IFMT.bits() == fmt),
        Kind::Dir => false,
    };
    let want_size = match node.kind {
        Kind::File if node.meta.enc.is_some() || node.meta.chunked => node.meta.size,
        Kind::File | Kind::Symlink => node.stored_size.or(node.cap.size()),
        _ => None,
    };
    let size_ok = want_size.is_none_or(|s| u64::try_from(st.st_size).ok() == Some(s));
    let mtime_ok = apply::mtime_parts(&node.meta)
        .is_none_or(|(s, ns)| st.st_mtime == s && st.st_mtime_nsec == ns);
    type_ok && size_ok && mtime_ok
}

fn restore_leaf(shared: &Shared<'_>, job: &Job<'_>) -> Result<Vec<String>, String> {
    let node = &job.node;
    let dir = job.dir.file.as_fd();
    let name = os(&node.name);
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if shared.opts.skip_existing && same_as_backup(&st, node) => {
            shared.skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(Vec::new());
        }
        Ok(_) if !shared.opts.overwrite => return Err(exists_message(shared.opts)),
        Ok(st) if is_dir_stat(&st) => return Err("exists as a directory; not replaced".into()),
        Ok(_) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(format!("cannot stat: {e}")),
    }
    let tmp = shared.temp_name();
    let problems = match create_temp(shared, dir, &tmp, node) {
        Ok(p) => p,
        Err(e) => {
            let _ = unlinkat(dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(e);
        }
    };
    rename_into_place(shared, dir, &tmp, &node.name)?;
    shared.written.fetch_add(1, Ordering::Relaxed);
    shared.count_created(&job.rel, node);
    Ok(problems)
}

/// Makes the entry under `tmp`, with its content and metadata.
fn create_temp(
    shared: &Shared<'_>,
    dir: BorrowedFd<'_>,
    tmp: &str,
    node: &Node,
) -> Result<Vec<String>, String> {
    let ctx = shared.ctx;
    let mut problems = Vec::new();
    match node.kind {
        Kind::File => {
            let fd: OwnedFd = openat(
                dir,
                tmp,
                OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_WRONLY
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )
            .map_err(|e| format!("cannot create: {e}"))?;
            let file = File::from(fd);
            let len = if node.meta.chunked {
                // A chunked file (`docs/streams.md`): its chunks in order,
                // each length-checked, one in memory at a time.
                let size = node.meta.size.unwrap_or(0);
                let mut chunks = ChunkedFile::open(shared.client, &node.cap, size)
                    .map_err(|e| format!("download failed: {e}"))?;
                content::write(&file, &mut chunks, None, Some(size))
                    .map_err(|e| format!("download failed: {e}"))?
            } else {
                let expect = node.meta.enc.and(node.meta.size);
                // Streamed: a file of any size costs a fixed buffer, not its size.
                shared
                    .client
                    // A cap that states no size (not one this tool makes) may
                    // not send more than the listing says it stores.
                    .download_with_max(&node.cap, node.stored_size, |body| {
                        content::write(&file, body, node.meta.enc, expect)
                    })
                    .map_err(|e| format!("download failed: {e}"))?
            };
            shared.bytes.fetch_add(len, Ordering::Relaxed);
            problems.extend(apply::apply(
                &At::Open(&file),
                &node.meta,
                false,
                false,
                ctx,
            ));
        }
        Kind::Symlink => {
            // A symlink target is small whatever its cap says: a hostile
            // one cannot fill memory.
            let target = shared
                .client
                .download_at_most(&node.cap, SYMLINK_TARGET_LIMIT, "the symlink target")
                .map_err(|e| format!("download failed: {e}"))?;
            if target.is_empty() || target.contains(&0) {
                return Err("the symlink target is empty or contains NUL".into());
            }
            symlinkat(os(&target), dir, tmp)
                .map_err(|e| format!("cannot create the symlink: {e}"))?;
            problems.extend(apply::apply(
                &At::Name(dir, tmp.as_ref()),
                &node.meta,
                false,
                true,
                ctx,
            ));
        }
        Kind::Special => {
            let mode = node.meta.mode.unwrap_or(0);
            let kind = SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits());
            let dev = node.meta.rdev.map_or(0, |(ma, mi)| makedev(ma, mi));
            mknodat(dir, tmp, kind, Mode::from_bits_truncate(0o600), dev).map_err(|e| {
                if e == Errno::EPERM {
                    "cannot create the device node: not permitted (run as root)".to_string()
                } else {
                    format!("cannot create the special file: {e}")
                }
            })?;
            problems.extend(apply::apply(
                &At::Name(dir, tmp.as_ref()),
                &node.meta,
                false,
                false,
                ctx,
            ));
        }
        Kind::Dir => return Err("internal error: a directory as a leaf".into()),
    }
    // Metadata problems do not stop the entry from being restored; they
    // are reported (exit 3).
    Ok(problems)
}

fn rename_into_place(
    shared: &Shared<'_>,
    dir: BorrowedFd<'_>,
    tmp: &str,
    name: &[u8],
) -> Result<(), String> {
    let flags = if shared.opts.overwrite {
        RenameFlags::empty()
    } else {
        RenameFlags::RENAME_NOREPLACE
    };
    renameat2(dir, tmp, dir, os(name), flags).map_err(|e| {
        let _ = unlinkat(dir, tmp, UnlinkatFlags::NoRemoveDir);
        if e == Errno::EEXIST {
            exists_message(shared.opts)
        } else {
            format!("cannot rename into place: {e}")
        }
    })
}

/// Creates (or, when it exists as a directory, opens) the directory `name`
/// in `parent`, never following a symlink. An existing non-directory is an
/// error, or removed with `overwrite`.
fn make_dir(parent: &File, name: &[u8], overwrite: bool) -> Result<File, String> {
    let p = parent.as_fd();
    match mkdirat(p, os(name), Mode::from_bits_truncate(0o700)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(format!("cannot create the directory: {e}")),
    }
    match open_dir_at(p, name) {
        Ok(d) => Ok(d),
        Err(Errno::ENOTDIR | Errno::ELOOP) if overwrite => {
            unlinkat(p, os(name), UnlinkatFlags::NoRemoveDir)
                .map_err(|e| format!("cannot remove the existing non-directory: {e}"))?;
            mkdirat(p, os(name), Mode::from_bits_truncate(0o700))
                .map_err(|e| format!("cannot create the directory: {e}"))?;
            open_dir_at(p, name).map_err(|e| format!("cannot open the directory: {e}"))
        }
        Err(Errno::ENOTDIR | Errno::ELOOP) => {
            Err("exists and is not a directory (use --overwrite to replace it)".into())
        }
        Err(e) => Err(format!("cannot open the directory: {e}")),
    }
}

fn open_dir_at(parent: BorrowedFd<'_>, name: &[u8]) -> Result<File, Errno> {
    openat(
        parent,
        os(name),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map(File::from)
}

/// Opens TARGET itself (a symlink given by the user is followed).
fn open_dir_path(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_DIRECTORY.bits())
        .open(path)
}

/// Opens a directory beneath `target` component by component, never
/// following a symlink.
fn open_rel(target: &File, rel: &[Vec<u8>]) -> io::Result<File> {
    let mut cur = target.try_clone()?;
    for c in rel {
        cur = open_dir_at(cur.as_fd(), c).map_err(io::Error::from)?;
    }
    Ok(cur)
}

/// Removes `.lafs-restore.PID.N` leftovers of an interrupted run (names
/// the backup does not itself use). Only names of exactly that form are
/// ours, and only those of a process that is gone (or of this one, a
/// recycled PID) are leftovers: a concurrent restore's temporaries, and
/// files that merely share the prefix, are left alone.
fn remove_stale_temps(dir: &File, keep: &HashSet<&[u8]>) {
    let fd = std::os::fd::AsRawFd::as_raw_fd(dir);
    let Ok(entries) = std::fs::read_dir(format!("/proc/self/fd/{fd}")) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let b = name.as_bytes();
        if is_leftover(b) && !keep.contains(b) && e.file_type().is_ok_and(|t| !t.is_dir()) {
            let _ = unlinkat(dir.as_fd(), name.as_os_str(), UnlinkatFlags::NoRemoveDir);
        }
    }
}

/// Whether `name` is `.lafs-restore.PID.N` of a process that no longer
/// runs (or of this process).
fn is_leftover(name: &[u8]) -> bool {
    let Some(rest) = name.strip_prefix(TEMP_PREFIX.as_bytes()) else {
        return false;
    };
    let mut parts = rest.split(|&b| b == b'.');
    let (Some(pid), Some(n), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let digits = |s: &[u8]| !s.is_empty() && s.len() <= 20 && s.iter().all(u8::is_ascii_digit);
    if !digits(pid) || !digits(n) {
        return false;
    }
    let Some(pid) = std::str::from_utf8(pid)
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
    else {
        return false;
    };
    pid == std::process::id() || !Path::new(&format!("/proc/{pid}")).exists()
}

/// A character or block device node.
fn is_device(node: &Node) -> bool {
    node.kind == Kind::Special
        && node.meta.mode.is_some_and(|m| {
            let fmt = m & SFlag::S_IFMT.bits();
            fmt == SFlag::S_IFCHR.bits() || fmt == SFlag::S_IFBLK.bits()
        })
}

/// Without `--overwrite` or `--skip-existing`, TARGET must be new or empty
/// (leftovers of an interrupted restore aside): one refusal up front, not
/// one per entry.
fn refuse_non_empty(target: &Path) -> Result<(), RestoreError> {
    let entries = match DirPath::resolve(target).and_then(|dir| std::fs::read_dir(dir.path())) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        // Not a directory, unreadable: the restore's own open reports it.
        Err(_) => return Ok(()),
    };
    let count = entries
        .flatten()
        .filter(|e| !is_leftover(e.file_name().as_bytes()))
        .count() as u64;
    if count == 0 {
        return Ok(());
    }
    Err(RestoreError::NotEmpty {
        path: target.display().to_string(),
        count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic backup: the root holds `fanout` directories, each
    /// `fanout` directories, each `files` files.
    fn lister(
        fanout: usize,
        files: usize,
    ) -> impl Fn(&Cap) -> Result<tree::Listing, tree::TreeError> {
        move |cap: &Cap| {
            let fields: Vec<&str> = cap.as_str().split(':').collect();
            // Each directory's fingerprint extends its parent's: all differ.
            let s = fields.get(3).copied().unwrap_or_default();
            let level: usize = fields
                .get(2)
                .and_then(|l| l.strip_prefix('L'))
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            let children = if level < 2 {
                (0..fanout)
                    .map(|i| {
                        node(
                            &format!("d{i}"),
                            Kind::Dir,
                            &format!("URI:DIR2-RO:L{}:{s}-{i}", level + 1),
                        )
                    })
                    .collect()
            } else {
                (0..files)
                    .map(|i| node(&format!("f{i}"), Kind::File, "URI:LIT:nbswy3dp"))
                    .collect()
            };
            Ok(tree::Listing {
                children,
                ..Default::default()
            })
        }
    }

    fn node(name: &str, kind: Kind, cap: &str) -> Node {
        Node {
            name: name.as_bytes().to_vec(),
            edge_name: name.to_owned(),
            kind,
            cap: Cap::parse(cap).unwrap(),
            meta: EdgeMeta {
                size: Some(5),
                ..Default::default()
            },
            stored_size: Some(5),
            mtime_exact: true,
        }
    }

    /// What a dry-run walk of the synthetic tree met.
    struct Walked {
        /// Non-directories met.
        objects: u64,
        /// The most listing entries held at once on the path, and the
        /// most listings fetched ahead held at once.
        peak_held: usize,
        peak_ahead: usize,
        peak_depth: usize,
        /// Listings made (the walk's and those fetched ahead).
        listed: usize,
        planned: Vec<String>,
    }

    /// Walks the synthetic tree (dry run), fetching up to `ahead`
    /// listings ahead of the walk (0: none).
    fn walk(fanout: usize, files: usize, ahead: usize) -> Walked {
        let config = crate::config::Config::default();
        let client = Client::new(
            "http://127.0.0.1:9/uri",
            &config.http.retry,
            &config.operation.timeouts.updates,
        )
        .unwrap();
        let opts = Options {
            dry_run: true,
            concurrency: 1,
            ..Default::default()
        };
        let progress = Progress::new(crate::progress::Mode::Off);
        let shared = Shared::new(&client, &opts, &progress, Ctx::default());
        let listed = std::sync::atomic::AtomicUsize::new(0);
        let synthetic = lister(fanout, files);
        let list = |cap: &Cap| {
            listed.fetch_add(1, Ordering::Relaxed);
            synthetic(cap)
        };
        let root = Cap::parse("URI:DIR2-RO:L0:root").unwrap();
        let mut walk = Walk::new(&list, &root, ahead.max(1));
        let (requests, request_rx) = sync_channel::<Request>(ahead.max(1));
        let request_rx = Mutex::new(request_rx);
        std::thread::scope(|s| {
            if ahead > 0 {
                for _ in 0..ahead {
                    s.spawn(|| fetch_ahead(&list, &request_rx));
                }
                walk.ahead = Some(requests);
            } else {
                drop(requests);
            }
            walk.walk_dir(&shared, list(&root).unwrap(), false, None, None);
            walk.ahead = None;
        });
        assert!(shared.failures.lock().unwrap().is_empty());
        assert_eq!(
            walk.planned.len(),
            fanout + fanout * fanout + fanout * fanout * files
        );
        assert_eq!(walk.dirs_listed, 1 + (fanout + fanout * fanout) as u64);
        assert!(walk.hlinks_counted.is_empty());
        assert_eq!((walk.held, walk.outstanding), (0, 0));
        assert!(walk.keys.len() == 1 && walk.rel.is_empty() && walk.levels.is_empty());
        Walked {
            objects: walk.objects,
            peak_held: walk.peak_held,
            peak_ahead: walk.peak_outstanding,
            peak_depth: walk.peak_depth,
            listed: listed.load(Ordering::Relaxed),
            planned: walk.planned,
        }
    }

    /// What the walk holds is bounded by the depth and the listings on its
    /// path (and, fetching ahead, that many listings more): 10,000 files
    /// hold no more than 100 do (counted, not timed).
    #[test]
    fn walk_state_does_not_grow_with_the_number_of_entries() {
        for ahead in [0, 4] {
            let small = walk(1, 100, ahead);
            let big = walk(10, 100, ahead);
            assert_eq!((small.objects, big.objects), (100, 10_000));
            assert_eq!((small.peak_depth, big.peak_depth), (3, 3));
            // The listings on the path: the leaf directory's 100 files and
            // what is left of its ancestors' (at most 9 + 9 directories).
            assert_eq!(small.peak_held, 100);
            assert!(big.peak_held <= 100 + 2 * 9, "{}", big.peak_held);
            // At most `ahead` listings (of 100 files here) wait besides.
            assert!(big.peak_ahead <= ahead, "{}", big.peak_ahead);
        }
    }

    /// Listings fetched ahead are those the walk enters, each directory
    /// listed once (no second walk for totals), and the walk's order and
    /// output do not change.
    #[test]
    fn fetching_ahead_lists_each_directory_once_in_the_same_order() {
        let alone = walk(6, 3, 0);
        let ahead = walk(6, 3, 4);
        let dirs = 1 + 6 + 36;
        assert_eq!((alone.listed, ahead.listed), (dirs, dirs));
        assert_eq!(alone.planned, ahead.planned);
        assert_eq!(ahead.peak_ahead, 4);
    }
}
