//! `cache rebuild [CAP...]`: rebuilds a lost or damaged entry cache from the
//! grid, so that the next backup of an unchanged tree uploads no file again
//! and gives the same root cap. See "Rebuilding the cache" in
//! `docs/cache.md`.
//!
//! The core ([`rebuild`]) works over a list of [`Root`]s; where they come
//! from (the arguments, the result file, later the recovery catalog) is
//! decided by thin adapters here.
//!
//! What is rebuilt, per backup tree:
//! * a `backups` row (name, root cap, times; the label when the source knows it);
//! * every directory's `objects` row, under exactly the key the next backup
//!   computes (its own edge metadata and its children's names, caps and
//!   edge metadata, all stored in the directories), and its `dir_children`;
//! * the `content` index: each distinct file object is downloaded once,
//!   decoded (`enc`) and hashed (BLAKE3 of the raw bytes, the hash the
//!   upload computes), under the encoding tag of the current config.
//!
//! File `objects` rows cannot be rebuilt: a file's key covers its ctime and
//! inode, which the grid does not hold. The next backup reads and hashes
//! each file once, finds its content in the index and uploads nothing.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::json;
use tracing::{info, warn};

use super::Context;
use crate::cache::{self, Cache, DirChild, ObjectKind, RebuiltBackup};
use crate::cli::CacheRebuildArgs;
use crate::edge::EdgeMeta;
use crate::encode::{self, Encoder, Encoding};
use crate::exit::{Outcome, UsageError};
use crate::names::ROOT_META_NAME;
use crate::progress::{self, Progress};
use crate::stream;
use crate::tahoe::user_cap::{self, UserCap};
use crate::tahoe::{Cap, Client};
use crate::tree::{self, Kind, MAX_DEPTH};

/// One backup tree to rebuild. `origin` says where it came from
/// ("argument 2", "line 3 of the result file …"), for messages: caps are
/// never shown.
#[derive(Debug, Clone)]
pub(crate) struct Root {
    pub(crate) cap: Cap,
    pub(crate) name: Vec<u8>,
    pub(crate) label: Option<String>,
    /// The backup's generation when the source knows it; else the roots
    /// get new generations in the order of their start times.
    pub(crate) generation: Option<u64>,
    pub(crate) ts_start: i64,
    pub(crate) ts_end: i64,
    pub(crate) origin: String,
}

/// What a rebuild did.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    pub(crate) backups: u64,
    /// Directory objects recorded (with their keys).
    pub(crate) objects: u64,
    pub(crate) files_hashed: u64,
    pub(crate) bytes_downloaded: u64,
    /// Directories whose listing had entries this tool would not have made:
    /// their objects rows were left out (the next backup stores them again).
    pub(crate) dirs_skipped: u64,
}

pub(crate) fn run(ctx: &Context<'_>, args: &CacheRebuildArgs) -> anyhow::Result<Outcome> {
    let config = ctx.config();
    let path = ctx.backup_cache_path()?.to_owned();
    let encoder = Encoder::new(&config.destination.encoding).map_err(UsageError)?;
    let catalog = if args.caps.is_empty() {
        catalog_source(ctx, args)?
    } else {
        None
    };
    let (roots, labels_lost) = match &catalog {
        Some(_) => (Vec::new(), false),
        None if args.caps.is_empty() => (from_result_file(ctx)?, true),
        None => (from_arguments(ctx, args)?, false),
    };
    if catalog.is_none() && roots.is_empty() {
        return Err(
            UsageError("no backup to rebuild from: the result file lists none".into()).into(),
        );
    }
    let _lock = cache::lock_path_only(&path)?;
    refuse_existing(&path, args.force)?;
    let gateway = ctx.gateway(None)?;
    gateway.storage_servers()?;
    let client = gateway.client;
    let roots = match &catalog {
        Some(cap) => from_catalog(&client, cap)?,
        None => roots,
    };

    let tmp = sibling(&path, ".rebuild");
    remove_db_files(&tmp)?;
    let commit_after = &config.source.entry_cache.commit_after;
    let mut cache = Cache::open(&tmp, commit_after)?;
    let progress = ctx.progress(false);
    let summary = rebuild(&client, &mut cache, &encoder, &roots, &progress);
    progress.finish();
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            drop(cache);
            // The old cache (if any) is untouched; the half-made one goes.
            let _ = remove_db_files(&tmp);
            let _ = std::fs::remove_file(sibling(&tmp, ".lock"));
            return Err(e);
        }
    };
    let probe = client
        .upload_bytes(&crate::upload::random_probe())
        .context("uploading the grid probe for the rebuilt cache")?;
    let (k, n) = probe.k_n().unwrap_or((0, 0));
    cache.set_probe(&probe, k, n)?;
    // A writecap catalog stays this cache's (`destination.catalog: auto`
    // reads it from here); a read-only one cannot be linked into anyway.
    if let Some(cap) = catalog.as_ref().filter(|c| crate::catalog::is_writecap(c)) {
        cache.set_catalog_cap(cap)?;
        cache.commit()?;
    }
    cache.close()?;
    install(&tmp, &path)?;
    report(ctx, &path, &summary, labels_lost)?;
    Ok(Outcome::Success)
}

/// The roots named on the command line, all under one name.
fn from_arguments(ctx: &Context<'_>, args: &CacheRebuildArgs) -> anyhow::Result<Vec<Root>> {
    let name: Vec<u8> = match (&args.name, &ctx.config().source.path) {
        (Some(name), _) => name.as_bytes().to_vec(),
        (None, Some(pattern)) => crate::scan::pick_source(pattern)
            .map(|p| crate::scan::backup_name(&p).as_bytes().to_vec())
            .map_err(|e| {
                UsageError(format!(
                    "the backup name comes from source.path, which does not resolve ({e}); \
                     give it with --name"
                ))
            })?,
        (None, None) => {
            return Err(UsageError(
                "give the backups' name with --name (there is no source.path to take it from)"
                    .into(),
            )
            .into());
        }
    };
    let now = crate::clock::unix_now();
    args.caps
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let origin = format!("argument {}", i + 1);
            let cap = match user_cap::classify(text) {
                UserCap::Cap(cap) => cap,
                UserCap::Malformed(why) => {
                    return Err(UsageError(format!(
                        "{origin} looks like a cap but is not a valid one: {why}"
                    ))
                    .into());
                }
                UserCap::NotACap => {
                    return Err(UsageError(format!(
                        "{origin} is not a cap: give the root cap of a backup"
                    ))
                    .into());
                }
            };
            Ok(Root {
                cap,
                name: name.clone(),
                label: None,
                generation: None,
                ts_start: now,
                ts_end: now,
                origin,
            })
        })
        .collect()
}

/// The roots listed in `destination.result.append_to_file`: `TIME SOURCE
/// CAP` lines; the name is the source's basename, the time the line's.
fn from_result_file(ctx: &Context<'_>) -> anyhow::Result<Vec<Root>> {
    let Some(file) = ctx.config().destination.result.append_to_file.as_deref() else {
        return Err(UsageError(
            "no root cap given and destination.result.append_to_file is not set: give the \
             backups' root caps as arguments"
                .into(),
        )
        .into());
    };
    let text = std::fs::read(file)
        .with_context(|| format!("reading the result file {}", file.display()))?;
    Ok(parse_result_file(&text, file))
}

/// The recovery catalog to rebuild from: `--catalog CAP`, else the
/// configured writecap, else the result file's `#recovery-catalog` line (an
/// `auto` catalog's cap lives there and in the lost cache); `None`: no
/// catalog, rebuild from the result file.
fn catalog_source(ctx: &Context<'_>, args: &CacheRebuildArgs) -> anyhow::Result<Option<Cap>> {
    if let Some(text) = &args.catalog {
        return match user_cap::classify(text) {
            UserCap::Cap(cap) if cap.is_dir() => Ok(Some(cap)),
            UserCap::Cap(_) => Err(UsageError(
                "--catalog: the cap is not a directory cap (a recovery catalog is a directory)"
                    .into(),
            )
            .into()),
            UserCap::Malformed(why) => Err(crate::selector::malformed("--catalog", why).into()),
            UserCap::NotACap => Err(UsageError(
                "--catalog takes the recovery catalog's cap (a URI:DIR2: cap)".into(),
            )
            .into()),
        };
    }
    let config = ctx.config();
    match config.destination.catalog.as_deref() {
        Some("auto") | None => {}
        // Validated when the config was loaded.
        Some(text) => return Ok(Cap::parse(text).ok()),
    }
    if config.destination.catalog.is_none() {
        return Ok(None);
    }
    let Some(file) = config.destination.result.append_to_file.as_deref() else {
        return Ok(None);
    };
    match std::fs::read(file) {
        Ok(text) => Ok(catalog_in_result_file(&text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => {
            Err(anyhow::Error::new(e)
                .context(format!("reading the result file {}", file.display())))
        }
    }
}

/// The newest `TIME #recovery-catalog CAP` line's cap.
fn catalog_in_result_file(text: &[u8]) -> Option<Cap> {
    text.split(|&b| b == b'\n')
        .filter_map(|line| {
            let fields: Vec<&[u8]> = line
                .split(u8::is_ascii_whitespace)
                .filter(|f| !f.is_empty())
                .collect();
            match fields[..] {
                [_, field, cap] if field == crate::result::CATALOG_FIELD.as_bytes() => {
                    std::str::from_utf8(cap)
                        .ok()
                        .and_then(|c| Cap::parse(c).ok())
                }
                _ => None,
            }
        })
        .next_back()
}

/// Every backup in the catalog's index, with its name, generation, label
/// and times.
fn from_catalog(client: &crate::tahoe::Client, catalog: &Cap) -> anyhow::Result<Vec<Root>> {
    let entries = crate::catalog::read_index(client, catalog)
        .context("reading the recovery catalog's index")?;
    Ok(entries
        .into_iter()
        .map(|e| Root {
            origin: format!(
                "the catalog's backup {} generation {}",
                crate::commands::show::name(&e.name),
                e.generation
            ),
            cap: e.root_cap,
            name: e.name,
            label: e.label,
            generation: Some(e.generation),
            ts_start: e.ts_start,
            ts_end: e.ts_end,
        })
        .collect())
}

/// The backups of a result file's text; lines that do not parse are named
/// (by number) in a warning and skipped.
fn parse_result_file(text: &[u8], file: &Path) -> Vec<Root> {
    let mut roots = Vec::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let origin = format!("line {} of the result file {}", i + 1, file.display());
        let fields: Vec<&[u8]> = line
            .split(u8::is_ascii_whitespace)
            .filter(|f| !f.is_empty())
            .collect();
        let [time, source, cap] = fields[..] else {
            if !fields.is_empty() {
                warn!("{origin} is not `TIME SOURCE CAP`; skipped");
            }
            continue;
        };
        if source == crate::result::CATALOG_FIELD.as_bytes() {
            // The recovery catalog's own line (`destination.catalog: auto`).
            continue;
        }
        let Some(cap) = std::str::from_utf8(cap)
            .ok()
            .and_then(|c| Cap::parse(c).ok())
        else {
            warn!("{origin} does not end with a cap; skipped");
            continue;
        };
        let Some(ts) = std::str::from_utf8(time)
            .ok()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        else {
            warn!("{origin} does not start with a time; skipped");
            continue;
        };
        let Ok(source) = crate::escape::unescape(source) else {
            warn!("{origin} has a malformed source path; skipped");
            continue;
        };
        let name = crate::scan::backup_name(Path::new(OsStr::from_bytes(&source)));
        roots.push(Root {
            cap,
            name: name.as_bytes().to_vec(),
            label: None,
            generation: None,
            ts_start: ts.as_second(),
            ts_end: ts.as_second(),
            origin,
        });
    }
    roots
}

/// An existing, non-empty cache is replaced only with `--force`.
fn refuse_existing(path: &Path, force: bool) -> anyhow::Result<()> {
    let exists = std::fs::symlink_metadata(path).is_ok_and(|md| md.len() > 0);
    if exists && !force {
        return Err(UsageError(format!(
            "the cache {} exists; `cache rebuild` replaces it only with --force (the rebuilt \
             cache is written beside it and renamed over it when complete)",
            path.display()
        ))
        .into());
    }
    Ok(())
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// SQLite's side files of a database.
const SIDE_FILES: [&str; 3] = ["-wal", "-shm", "-journal"];

/// Removes a database and its side files, where present.
fn remove_db_files(path: &Path) -> anyhow::Result<()> {
    remove_present(path)?;
    remove_side_files(path)
}

/// Removes the side files SQLite may have left beside `path`.
fn remove_side_files(path: &Path) -> anyhow::Result<()> {
    for suffix in SIDE_FILES {
        remove_present(&sibling(path, suffix))?;
    }
    Ok(())
}

/// Removes `file`; a missing one is fine.
fn remove_present(file: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(file) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", file.display()))
        }
        _ => Ok(()),
    }
}

/// Renames the finished cache `tmp` over `path` (both closed; `path`'s run
/// lock held), removing what SQLite may have left beside the old one.
fn install(tmp: &Path, path: &Path) -> anyhow::Result<()> {
    remove_side_files(path)?;
    std::fs::rename(tmp, path)
        .with_context(|| format!("renaming the rebuilt cache over {}", path.display()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing the directory {}", dir.display()))?;
    }
    // The temp cache's own lock file; nobody else knows that path.
    let _ = std::fs::remove_file(sibling(tmp, ".lock"));
    Ok(())
}

fn report(ctx: &Context<'_>, path: &Path, s: &Summary, labels_lost: bool) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    if ctx.json() {
        writeln!(
            out,
            "{}",
            json!({
                "type": "rebuild",
                "backups": s.backups,
                "objects": s.objects,
                "files_hashed": s.files_hashed,
                "bytes_downloaded": s.bytes_downloaded,
                "dirs_skipped": s.dirs_skipped,
                "labels_lost": labels_lost,
            })
        )?;
    } else {
        writeln!(
            out,
            "rebuilt the cache {}: {} backups, {} objects, {} files hashed ({} downloaded)",
            path.display(),
            s.backups,
            s.objects,
            s.files_hashed,
            progress::human_bytes(s.bytes_downloaded)
        )?;
        if labels_lost {
            writeln!(
                out,
                "the result file records no retention labels: the rebuilt backups have none"
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

/// A directory already listed: what its objects row and counts need.
#[derive(Debug, Clone)]
struct ListedDir {
    /// (edge name, cap, edge metadata JSON) of every child, the reserved
    /// root entry included; `None` when the listing refused an entry (the
    /// key cannot be computed).
    children: Option<Vec<(String, String, String)>>,
    /// The backup root's own metadata, from its reserved entry.
    root_meta: Option<EdgeMeta>,
    entries: u64,
    bytes: u64,
}

/// A file object whose content is to be hashed.
#[derive(Debug)]
struct FileWork {
    cap: Cap,
    enc: Option<Encoding>,
    stored: u64,
    /// The index of the first root that reaches it, for messages.
    root: usize,
}

struct Walk<'a> {
    client: &'a Client,
    cache: &'a mut Cache,
    listed: HashMap<String, ListedDir>,
    files: Vec<FileWork>,
    file_seen: HashMap<String, ()>,
    summary: Summary,
}

/// Rebuilds `cache` (empty, locked) from `roots`: backups, directory
/// objects and references first (listings only), then the content index
/// (every distinct file downloaded and hashed once).
pub(crate) fn rebuild(
    client: &Client,
    cache: &mut Cache,
    encoder: &Encoder,
    roots: &[Root],
    progress: &Progress,
) -> anyhow::Result<Summary> {
    let mut order: Vec<usize> = (0..roots.len()).collect();
    order.sort_by_key(|&i| (roots[i].ts_start, i));
    let mut walk = Walk {
        client,
        cache,
        listed: HashMap::new(),
        files: Vec::new(),
        file_seen: HashMap::new(),
        summary: Summary::default(),
    };
    for i in order {
        let root = &roots[i];
        let what = || format!("{} ({})", root.origin, show_name(&root.name));
        if !root.cap.is_dir() {
            return Err(UsageError(format!(
                "{}: the cap is not a directory cap (a backup's root cap is one)",
                what()
            ))
            .into());
        }
        walk.cache.begin_run(false)?;
        if let Some(generation) = root.generation {
            walk.cache.set_rebuilt_generation(generation);
        }
        let (entries, bytes) = walk
            .dir(&root.cap, None, 0, i)
            .with_context(|| format!("{}: rebuilding its backup tree", what()))?;
        let id = walk.cache.record_rebuilt_backup(&RebuiltBackup {
            name: &root.name,
            root: &root.cap,
            ts_start: root.ts_start,
            ts_end: root.ts_end,
            entries,
            bytes,
            label: root.label.as_deref(),
        })?;
        // A root without a tree's metadata entry may be a stream backup:
        // its kind, counts and btrfs facts come from its index.
        if walk
            .listed
            .get(root.cap.as_str())
            .is_some_and(|l| l.root_meta.is_none())
            && let Some(layout) = crate::stream::read::open(client, &root.cap)
                .with_context(|| format!("{}: reading its stream index", what()))?
        {
            walk.cache.set_rebuilt_stream(id, layout.recorded())?;
        }
        walk.summary.backups += 1;
        info!("rebuilt {} from {}", show_name(&root.name), root.origin);
    }
    let Walk {
        cache,
        files,
        mut summary,
        ..
    } = walk;
    let total: u64 = files.iter().map(|f| f.stored).sum();
    progress.set_total(files.len() as u64, total);
    for file in &files {
        let root = &roots[file.root];
        let (hash, downloaded) = hash_file(client, file).with_context(|| {
            format!(
                "{} ({}): reading a file of its backup tree from the grid",
                root.origin,
                show_name(&root.name)
            )
        })?;
        let tag = encoder.decision_tag(file.enc);
        cache.content_record(&hash, &tag, &file.cap)?;
        cache.maybe_commit()?;
        summary.files_hashed += 1;
        summary.bytes_downloaded += downloaded;
        progress.object_done(file.stored);
        progress.bytes_sent(downloaded);
    }
    cache.commit()?;
    Ok(summary)
}

fn show_name(name: &[u8]) -> String {
    super::show::name(name)
}

impl Walk<'_> {
    /// Lists the directory `cap` (the root when `edge` is `None`, else
    /// reached through an edge with this metadata), records its objects
    /// row and references, queues its files; returns its entries and
    /// content bytes.
    fn dir(
        &mut self,
        cap: &Cap,
        edge: Option<&EdgeMeta>,
        depth: usize,
        root: usize,
    ) -> anyhow::Result<(u64, u64)> {
        if depth > MAX_DEPTH {
            anyhow::bail!("more than {MAX_DEPTH} directory levels below the root");
        }
        let listed = match self.listed.get(cap.as_str()) {
            Some(listed) => listed.clone(),
            None => {
                let listed = self.list(cap, edge.is_none(), depth, root)?;
                self.listed.insert(cap.as_str().to_owned(), listed.clone());
                listed
            }
        };
        let own = match edge {
            Some(meta) => Some(meta),
            None => listed.root_meta.as_ref(),
        };
        match (own, &listed.children) {
            (Some(meta), Some(children)) => {
                let children: Vec<DirChild<'_>> = children
                    .iter()
                    .map(|(name, cap, meta_json)| DirChild {
                        name,
                        cap,
                        meta_json,
                    })
                    .collect();
                let key = cache::dir_key(&meta.to_json(), &children);
                self.cache.record(&key, cap, ObjectKind::Dir, false)?;
                self.summary.objects += 1;
            }
            _ => self.summary.dirs_skipped += 1,
        }
        Ok((listed.entries, listed.bytes))
    }

    fn list(
        &mut self,
        cap: &Cap,
        top: bool,
        depth: usize,
        root: usize,
    ) -> anyhow::Result<ListedDir> {
        let listing = tree::list(self.client, cap, top).map_err(|e| {
            anyhow::anyhow!(
                "a directory {} levels below the root cannot be listed: {e}",
                depth
            )
        })?;
        let mut entries = 0;
        let mut bytes = 0;
        let mut children = Vec::with_capacity(listing.children.len() + 1);
        let mut child_caps = Vec::with_capacity(listing.children.len());
        for node in &listing.children {
            entries += 1;
            match node.kind {
                Kind::Dir => {
                    let (e, b) = self.dir(&node.cap, Some(&node.meta), depth + 1, root)?;
                    entries += e;
                    bytes += b;
                }
                Kind::File | Kind::Symlink => {
                    let size = node.meta.size.or(node.stored_size).unwrap_or(0);
                    bytes += size;
                    // A chunked file's cap is its chunk directory, never a
                    // whole file's content: its chunks go into the content
                    // index instead, as the upload put them there.
                    if node.meta.chunked {
                        if !node.cap.is_literal()
                            && self
                                .file_seen
                                .insert(node.cap.as_str().to_owned(), ())
                                .is_none()
                        {
                            self.chunks(&node.cap, depth, root)?;
                        }
                    } else if !node.cap.is_literal()
                        && self
                            .file_seen
                            .insert(node.cap.as_str().to_owned(), ())
                            .is_none()
                    {
                        self.files.push(FileWork {
                            cap: node.cap.clone(),
                            enc: node.meta.enc,
                            stored: node.stored_size.unwrap_or(0),
                            root,
                        });
                    }
                }
                Kind::Special => {}
            }
            children.push((
                node.edge_name.clone(),
                node.cap.as_str().to_owned(),
                node.meta.to_json(),
            ));
            child_caps.push(&node.cap);
        }
        self.cache.record_children(cap, &child_caps)?;
        if let Some(meta) = &listing.root_meta {
            children.push((
                ROOT_META_NAME.to_owned(),
                Cap::empty_literal().as_str().to_owned(),
                meta.to_json(),
            ));
        }
        if !listing.refused.is_empty() {
            warn!(
                "a directory {depth} levels below the root has {} entries this tool does not \
                 make; its cache entry is left out (the next backup stores it again)",
                listing.refused.len()
            );
        }
        Ok(ListedDir {
            children: listing.refused.is_empty().then_some(children),
            root_meta: listing.root_meta,
            entries,
            bytes,
        })
    }
}

impl Walk<'_> {
    /// The chunk directory of a chunked file: its groups and chunks are
    /// recorded as directory children (so `forget` and `cleanup` follow
    /// them), and each chunk is hashed into the content index like a file.
    fn chunks(&mut self, dir: &Cap, depth: usize, root: usize) -> anyhow::Result<()> {
        let groups = stream::read::objects(self.client, dir).map_err(|e| {
            anyhow::anyhow!(
                "a chunked file {} levels below the root cannot be listed: {e}",
                depth + 1
            )
        })?;
        let group_caps: Vec<&Cap> = groups.iter().map(|(g, _)| g).collect();
        self.cache.record_children(dir, &group_caps)?;
        for (group, chunks) in &groups {
            let caps: Vec<&Cap> = chunks.iter().map(|(c, _, _)| c).collect();
            self.cache.record_children(group, &caps)?;
            for (cap, enc, size) in chunks {
                if !cap.is_literal() && self.file_seen.insert(cap.as_str().to_owned(), ()).is_none()
                {
                    self.files.push(FileWork {
                        cap: cap.clone(),
                        enc: *enc,
                        stored: *size,
                        root,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Downloads `file`, decodes it and hashes the raw bytes (BLAKE3, as the
/// upload hashes them); returns the hash and the bytes downloaded.
fn hash_file(client: &Client, file: &FileWork) -> anyhow::Result<([u8; 32], u64)> {
    let (hash, downloaded) = client.download_with(&file.cap, |stored| {
        let mut counted = Counted {
            inner: stored,
            n: 0,
        };
        let mut hasher = blake3::Hasher::new();
        {
            let mut decoded = encode::decoder(file.enc, &mut counted)?;
            io::copy(&mut decoded, &mut hasher)?;
        }
        Ok((*hasher.finalize().as_bytes(), counted.n))
    })?;
    Ok((hash, downloaded))
}

/// Counts the bytes read through it.
struct Counted<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_give_names_times_and_caps() {
        let cap = "URI:DIR2-CHK:aaaaaaaaaaaaaaaaaaaaaaaaaa:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb:1:1:100";
        let text = format!(
            "2024-01-07T03:00:00.000000+01:00 /srv/data {cap}\n\ngarbage\n\
             2024-01-08T03:00:00.000000+01:00 /srv/with\\x20space {cap}\n"
        );
        let roots = parse_result_file(text.as_bytes(), Path::new("r"));
        assert_eq!(roots.len(), 2);
        assert_eq!(roots[0].name, b"data");
        assert_eq!(roots[0].ts_start, 1_704_592_800);
        assert_eq!(roots[1].origin, "line 4 of the result file r");
    }
}
