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
//! Order: the tree is walked depth-first on the calling thread, one
//! directory listed at a time and made (mode 0700) when its listing
//! arrives, its entries handed to a pool of `concurrency` workers as they
//! are met (files, symlinks, special files, and later names of hard links,
//! linked once the first name is restored); no plan is held ([`Walk`]). A
//! directory's metadata is set when it is finished ([`OpenDir`]); TARGET's
//! last. The progress totals are counted by a second walk beside it
//! ([`Count`]).

pub(crate) mod apply;
mod content;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use crate::scan::longpath::{self, DirPath};
use std::sync::atomic::{AtomicU64, Ordering};
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
/// The tree is walked depth-first, one directory listed at a time, and
/// every entry is restored as it is met: what the walk holds is bounded by
/// the depth and the listings on its path, never by the number of entries
/// (see [`Walk`]). `progress` gets the totals as the walk finds them.
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
    let shared = Shared {
        client,
        opts,
        progress,
        ctx: Ctx {
            root: nix::unistd::geteuid().is_root(),
            no_owner: opts.no_owner,
            no_setuid: opts.no_setuid,
            no_caps: opts.no_caps,
            no_xattrs: opts.no_xattrs,
        },
        withheld: Mutex::new(Vec::new()),
        devices: AtomicU64::new(0),
        setid: AtomicU64::new(0),
        caps: AtomicU64::new(0),
        failures: Mutex::new(Vec::new()),
        links: Mutex::new(HashMap::new()),
        leader_done: Condvar::new(),
        written: AtomicU64::new(0),
        skipped: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        temp_counter: AtomicU64::new(0),
    };
    let list = |cap: &Cap| tree::list(shared.client, cap, false);
    let mut walk = Walk::new(&list, root);
    let root_meta = listing.root_meta.take();

    if opts.dry_run {
        walk.walk_dir(&shared, listing, false, None, None);
    } else {
        let target_err = |source| RestoreError::Target {
            path: target.display().to_string(),
            source,
        };
        // TARGET may be longer than PATH_MAX: made and opened a chunk at a
        // time; everything below it is reached from its descriptor.
        longpath::create_dir_all(target).map_err(target_err)?;
        let target_dir = Arc::new(OpenDir {
            file: DirPath::resolve(target)
                .and_then(|dir| open_dir_path(dir.path()))
                .map_err(target_err)?,
            // TARGET's own metadata is applied last, below.
            finish: None,
            shared: &shared,
        });
        let workers = opts.concurrency.max(1);
        let (tx, rx) = sync_channel::<Job<'_>>(workers * 2);
        let rx = Mutex::new(rx);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| worker(&shared, &rx, &target_dir.file));
            }
            // The totals, counted beside the restore; the bar appears when
            // they are known.
            s.spawn(|| {
                let Ok(listing) = tree::list(client, root, true) else {
                    return;
                };
                let (dirs, objects, bytes) = Count::totals(opts, &list, root, listing);
                info!(
                    "{dirs} directories listed: {objects} entries, {bytes} bytes of content \
                     to restore"
                );
                progress.set_total(objects, bytes);
            });
            walk.walk_dir(&shared, listing, false, Some(&target_dir), Some(&tx));
            drop(tx);
        });
        if let Some(meta) = root_meta {
            let problems =
                apply::apply(&At::Open(&target_dir.file), &meta, true, false, shared.ctx);
            shared.problems(".", problems);
        }
    }
    if opts.dry_run {
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
    written: AtomicU64,
    skipped: AtomicU64,
    bytes: AtomicU64,
    temp_counter: AtomicU64,
}

impl Shared<'_> {
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
/// directory and each worker job inside it holds it, so nothing is written
/// into it afterwards and its mtime stays.
struct OpenDir<'s> {
    file: File,
    /// (display path, metadata); `None` for TARGET, whose metadata
    /// [`run`] applies last.
    finish: Option<(String, EdgeMeta)>,
    shared: &'s Shared<'s>,
}

impl Drop for OpenDir<'_> {
    fn drop(&mut self) {
        if let Some((shown, meta)) = self.finish.take() {
            let problems = apply::apply(&At::Open(&self.file), &meta, true, false, self.shared.ctx);
            self.shared.problems(&shown, problems);
        }
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
/// the unit tests).
type Lister<'l> = dyn Fn(&Cap) -> Result<tree::Listing, tree::TreeError> + 'l;

/// The restore's walk: depth-first, one directory listed at a time, its
/// entries handed to the workers as they are met. What it holds is
/// bounded by the depth (`keys`, `rel`) and the listings on the current
/// path, never by the number of entries in the tree: the workers' queue is
/// bounded too, and a directory's metadata is set when it is finished
/// ([`OpenDir`]). Only the hard-link map grows, with link candidates.
struct Walk<'l> {
    list: &'l Lister<'l>,
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
    fn new(list: &'l Lister<'l>, root: &Cap) -> Walk<'l> {
        Walk {
            list,
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
        for mut node in listing.children {
            self.held -= 1;
            node.edge_name = String::new();
            node.meta.name_raw = None;
            self.rel.push(node.name.clone());
            self.entry(shared, node, selected, dir, tx);
            self.rel.pop();
        }
    }

    /// The entry `node`, at `self.rel`, of a directory (`dir`).
    fn entry<'s>(
        &mut self,
        shared: &'s Shared<'s>,
        node: Node,
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
                self.descend(shared, node, matches!(sel, Selected::Yes), dir, tx);
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

    /// Lists the directory `node` (at `self.rel`), makes it and walks it.
    fn descend<'s>(
        &mut self,
        shared: &'s Shared<'s>,
        node: Node,
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
        let mut listing = match (self.list)(&node.cap) {
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
        let shown = display(&self.rel);
        let handle = match parent {
            None => {
                self.planned.push(format!("d {shown}"));
                None
            }
            Some(p) => match make_dir(&p.file, &node.name, shared.opts.overwrite) {
                Ok(file) => Some(Arc::new(OpenDir {
                    file,
                    finish: Some((shown, meta)),
                    shared,
                })),
                Err(e) => {
                    shared.fail(&shown, e);
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

/// What the selection holds, for the progress display's totals: a walk of
/// its own beside the restore's, listing each selected directory a second
/// time but holding no more than the restore's walk does (the listings on
/// its path), so the totals are known early without the restore holding
/// its plan. It reports nothing: the restore's walk meets the same
/// problems and reports them.
struct Count<'l> {
    opts: &'l Options,
    list: &'l Lister<'l>,
    /// Object keys on the current path (cycles), and the path.
    keys: Vec<String>,
    rel: Vec<Vec<u8>>,
    matched: HashSet<usize>,
    /// Hard-linked inodes counted (link candidates only).
    hlinks: HashSet<(u64, u64)>,
    dirs: u64,
    objects: u64,
    bytes: u64,
}

impl<'l> Count<'l> {
    /// Counts the tree under `root` (listed as `listing`): (directories
    /// listed, non-directories to restore with hard links counted once,
    /// their content bytes).
    fn totals(
        opts: &'l Options,
        list: &'l Lister<'l>,
        root: &Cap,
        listing: tree::Listing,
    ) -> (u64, u64, u64) {
        let mut count = Count {
            opts,
            list,
            keys: vec![root.object_key()],
            rel: Vec::new(),
            matched: HashSet::new(),
            hlinks: HashSet::new(),
            dirs: 1,
            objects: 0,
            bytes: 0,
        };
        count.dir(listing, false);
        (count.dirs, count.objects, count.bytes)
    }

    fn dir(&mut self, listing: tree::Listing, selected: bool) {
        for node in listing.children {
            self.rel.push(node.name.clone());
            self.entry(node, selected);
            self.rel.pop();
        }
    }

    fn entry(&mut self, node: Node, parent_selected: bool) {
        let is_dir = node.kind == Kind::Dir;
        match select(
            &mut self.matched,
            self.opts,
            &self.rel,
            is_dir,
            parent_selected,
        ) {
            Selected::No | Selected::Ancestor if !is_dir => {}
            Selected::No => {}
            sel if is_dir => {
                let ancestors = self.keys.iter().map(|k| (k.as_str(), String::new));
                if tree::refuse_descent(&node.cap, self.rel.len(), ancestors).is_some() {
                    return;
                }
                let Ok(listing) = (self.list)(&node.cap) else {
                    return;
                };
                self.dirs += 1;
                self.keys.push(node.cap.object_key());
                self.dir(listing, matches!(sel, Selected::Yes));
                self.keys.pop();
            }
            _ => {
                if node.meta.hlink.is_none_or(|h| self.hlinks.insert(h)) {
                    self.objects += 1;
                    self.bytes += node_bytes(&node);
                }
            }
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

    /// Walks the synthetic tree (dry run) and returns (entries met, most
    /// listing entries held at once, deepest directory stack).
    fn walk(fanout: usize, files: usize) -> (u64, usize, usize) {
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
        let shared = Shared {
            client: &client,
            opts: &opts,
            progress: &progress,
            ctx: Ctx::default(),
            failures: Mutex::new(Vec::new()),
            withheld: Mutex::new(Vec::new()),
            devices: AtomicU64::new(0),
            setid: AtomicU64::new(0),
            caps: AtomicU64::new(0),
            links: Mutex::new(HashMap::new()),
            leader_done: Condvar::new(),
            written: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            temp_counter: AtomicU64::new(0),
        };
        let list = lister(fanout, files);
        let root = Cap::parse("URI:DIR2-RO:L0:root").unwrap();
        let mut walk = Walk::new(&list, &root);
        let listing = list(&root).unwrap();
        walk.walk_dir(&shared, listing, false, None, None);
        let counted = Count::totals(&opts, &list, &root, list(&root).unwrap());
        assert_eq!(counted, (walk.dirs_listed, walk.objects, walk.bytes));
        assert!(shared.failures.lock().unwrap().is_empty());
        assert_eq!(
            walk.planned.len(),
            fanout + fanout * fanout + fanout * fanout * files
        );
        assert!(walk.hlinks_counted.is_empty());
        assert_eq!(walk.held, 0);
        assert!(walk.keys.len() == 1 && walk.rel.is_empty());
        (walk.objects, walk.peak_held, walk.peak_depth)
    }

    /// What the walk holds is bounded by the depth and the listings on its
    /// path: 10,000 files hold no more than 100 do (counted, not timed).
    #[test]
    fn walk_state_does_not_grow_with_the_number_of_entries() {
        let (small, small_held, small_depth) = walk(1, 100);
        let (big, big_held, big_depth) = walk(10, 100);
        assert_eq!((small, big), (100, 10_000));
        assert_eq!((small_depth, big_depth), (3, 3));
        // The listings on the path: the leaf directory's 100 files and
        // what is left of its ancestors' (at most 9 + 9 directories).
        assert_eq!(small_held, 100);
        assert!(big_held <= 100 + 2 * 9, "{big_held}");
    }
}
