//! The recovery catalog (`destination.catalog`, `docs/recovery.md`): a
//! mutable Tahoe directory into which every finished backup is linked, so
//! that the catalog's cap and a gateway are all a restore needs when the
//! host (its cache and result file) is lost.
//!
//! Layout: one mutable directory per backup name (its edge name, escaped as
//! `append_to_lafs_dir` escapes names), holding each backup as
//! `<start time>` (`2024-01-07T02:00:00Z`, UTC; `_<label>` appended when it
//! has one), `latest`, and `index.json`, the name's machine-readable index
//! (a versioned format, [`INDEX_FORMAT`], documented in `docs/recovery.md`).
//! The index is the catalog's truth: [`read_index`] reads only it.
//!
//! The catalog holds caps, which is the point: its cap is the secret that
//! opens every backup in it. Nothing here puts a cap in a message.

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::cache::{BackupKind, BackupRow, Cache, CacheError};
use crate::commands::Context;
use crate::exit::Outcome;
use crate::tahoe::{Cap, Client, TahoeError};

/// The `format` field of every index.
pub(crate) const INDEX_FORMAT: &str = "lafs-backup-catalog";
/// The index version this code writes and reads.
pub(crate) const INDEX_VERSION: u32 = 1;
/// The index's child name in a name's directory.
pub(crate) const INDEX_NAME: &str = "index.json";
/// The child that links a name's newest backup.
pub(crate) const LATEST: &str = "latest";
/// Most bytes of one name's index (a few hundred bytes per backup).
const INDEX_LIMIT: u64 = 64 << 20;

/// Why the catalog could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CatalogError {
    #[error(transparent)]
    Tahoe(#[from] TahoeError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("the catalog's index of {name} is not a lafs-backup catalog index: {why}")]
    BadIndex { name: String, why: String },
    #[error("the recovery catalog's cap is not a directory cap")]
    NotADirectory,
}

/// One backup as the catalog records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CatalogEntry {
    /// The backup name, raw bytes.
    pub(crate) name: Vec<u8>,
    pub(crate) generation: u64,
    pub(crate) label: Option<String>,
    /// Unix seconds: when the run began and when it finished.
    pub(crate) ts_start: i64,
    pub(crate) ts_end: i64,
    pub(crate) entries: u64,
    pub(crate) bytes: u64,
    pub(crate) root_cap: Cap,
    /// Its child name in the name's directory.
    pub(crate) link: String,
    /// A tree or a stream (`docs/streams.md`).
    pub(crate) kind: BackupKind,
}

impl CatalogEntry {
    /// The entry of a recorded backup.
    pub(crate) fn of_row(row: &BackupRow) -> CatalogEntry {
        CatalogEntry {
            name: row.name.clone(),
            generation: row.generation,
            label: row.label.clone(),
            ts_start: row.ts_start,
            ts_end: row.ts_end,
            entries: row.entries,
            bytes: row.bytes,
            root_cap: row.root_cap.clone(),
            link: link_name(row.ts_start, row.label.as_deref()),
            kind: row.kind,
        }
    }

    /// The entry as a recorded backup, for the commands that list and
    /// select backups (`id` is its position; nothing is checked or pinned).
    pub(crate) fn to_row(&self, id: i64) -> BackupRow {
        BackupRow {
            id,
            name: self.name.clone(),
            root_cap: self.root_cap.clone(),
            generation: self.generation,
            ts_start: self.ts_start,
            ts_end: self.ts_end,
            entries: self.entries,
            bytes: self.bytes,
            ts_check: None,
            label: self.label.clone(),
            priority: None,
            pinned: false,
            kind: self.kind,
        }
    }
}

/// The index of one name, as stored (`docs/recovery.md`).
#[derive(Debug, Serialize, Deserialize)]
struct Index {
    format: String,
    version: u32,
    /// The backup name, escaped as `list` prints it.
    name: String,
    backups: Vec<IndexEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct IndexEntry {
    generation: u64,
    label: Option<String>,
    /// RFC 3339, UTC (the same instants as `ts_start`, `ts_end`).
    start: String,
    end: String,
    ts_start: i64,
    ts_end: i64,
    entries: u64,
    bytes: u64,
    root_cap: String,
    link: String,
    /// `tree` or `stream`; absent in indexes written before streams: a tree.
    #[serde(default = "tree_kind")]
    kind: String,
}

fn tree_kind() -> String {
    BackupKind::Tree.as_str().to_owned()
}

/// Whether `cap` is a mutable directory's writecap, the only kind a
/// catalog can be written through.
pub(crate) fn is_writecap(cap: &Cap) -> bool {
    cap.as_str().starts_with("URI:DIR2:")
}

/// A child name safe as one path segment: `/` (and a whole `.` or `..`)
/// written as `\x2f` (`\x2e`), as the escaping of names writes bytes.
fn segment(name: &str) -> String {
    match name {
        "." => "\\x2e".to_owned(),
        ".." => "\\x2e.".to_owned(),
        _ => name.replace('/', "\\x2f"),
    }
}

/// The directory of a backup name in the catalog.
pub(crate) fn dir_name(name: &[u8]) -> String {
    let edge = crate::names::edge_name(name, false).name;
    match edge.as_str() {
        // Names the layout gives to files: never a name's directory.
        INDEX_NAME | LATEST => format!("\\x{:02x}{}", edge.as_bytes()[0], &edge[1..]),
        _ => segment(&edge),
    }
}

/// The child name of a backup started at `ts_start` (UTC, to the second)
/// with `label`: `2024-01-07T02:00:00Z` or `2024-01-07T02:00:00Z_daily`.
pub(crate) fn link_name(ts_start: i64, label: Option<&str>) -> String {
    let mut name = iso_utc(ts_start);
    if let Some(label) = label {
        name.push('_');
        name.push_str(&segment(
            &crate::names::edge_name(label.as_bytes(), false).name,
        ));
    }
    name
}

fn iso_utc(ts: i64) -> String {
    jiff::Timestamp::from_second(ts).map_or_else(
        |_| format!("@{ts}"),
        |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

/// Every backup the catalog at `catalog` (a read or write cap of its root)
/// records, oldest first (by start time, then generation). Reads each
/// name's index; a name's directory without an index (a first link that
/// was interrupted) is skipped with a warning.
pub(crate) fn read_index(
    client: &Client,
    catalog: &Cap,
) -> Result<Vec<CatalogEntry>, CatalogError> {
    if !catalog.is_dir() {
        return Err(CatalogError::NotADirectory);
    }
    let children = client.list_dir(catalog, Vec::new, |acc: &mut Vec<Cap>, _name, child| {
        if child.get(0).and_then(serde_json::Value::as_str) != Some("dirnode") {
            return;
        }
        let edge = child.get(1);
        if let Some(cap) = ["rw_uri", "ro_uri"]
            .iter()
            .find_map(|k| {
                edge.and_then(|e| e.get(*k))
                    .and_then(serde_json::Value::as_str)
            })
            .and_then(|t| Cap::parse(t).ok())
        {
            acc.push(cap);
        }
    })?;
    let mut out = Vec::new();
    for dir in children {
        match read_name_index(client, &dir)? {
            Some((name, entries)) => out.extend(entries.iter().map(|e| entry_of(&name, e))),
            None => warn!("a directory of the recovery catalog has no {INDEX_NAME}; skipped"),
        }
    }
    let mut entries = out.into_iter().collect::<Result<Vec<_>, _>>()?;
    entries.sort_by_key(|e| (e.ts_start, e.generation));
    Ok(entries)
}

fn entry_of(name: &str, e: &IndexEntry) -> Result<CatalogEntry, CatalogError> {
    let bad = |why: &str| CatalogError::BadIndex {
        name: crate::selector::quoted(name),
        why: why.to_owned(),
    };
    let raw = crate::escape::unescape(name.as_bytes()).map_err(|_| bad("a bad name"))?;
    let root_cap = Cap::parse(&e.root_cap).map_err(|_| bad("a root cap that does not parse"))?;
    Ok(CatalogEntry {
        name: raw,
        generation: e.generation,
        label: e.label.clone(),
        ts_start: e.ts_start,
        ts_end: e.ts_end,
        entries: e.entries,
        bytes: e.bytes,
        root_cap,
        link: e.link.clone(),
        kind: BackupKind::parse(&e.kind).ok_or_else(|| bad("an unknown backup kind"))?,
    })
}

/// The index in the name directory `dir`: its (escaped) name and entries;
/// `None` when there is none.
fn read_name_index(
    client: &Client,
    dir: &Cap,
) -> Result<Option<(String, Vec<IndexEntry>)>, CatalogError> {
    let Some(cap) = client.child_cap(dir.as_str(), INDEX_NAME)? else {
        return Ok(None);
    };
    let data = client.download_at_most(&cap, INDEX_LIMIT, "the catalog index")?;
    let index: Index = serde_json::from_slice(&data).map_err(|e| CatalogError::BadIndex {
        name: "a name".into(),
        // serde's message quotes no input beyond a type or field name.
        why: crate::tahoe::redact(&e.to_string()),
    })?;
    if index.format != INDEX_FORMAT || index.version != INDEX_VERSION {
        return Err(CatalogError::BadIndex {
            name: crate::selector::quoted(&index.name),
            why: format!(
                "format {:?} version {}, this lafs-backup reads {INDEX_FORMAT:?} version \
                 {INDEX_VERSION}",
                index.format, index.version
            ),
        });
    }
    Ok(Some((index.name, index.backups)))
}

/// Writes the index of `name` into its directory `dir` and points
/// `latest` at its newest backup (removes `latest` when none is left).
fn write_name_index(
    client: &Client,
    dir: &Cap,
    name: &[u8],
    mut backups: Vec<IndexEntry>,
) -> Result<(), CatalogError> {
    backups.sort_by_key(|e| (e.ts_start, e.generation));
    let index = Index {
        format: INDEX_FORMAT.to_owned(),
        version: INDEX_VERSION,
        name: crate::commands::show::name(name),
        backups,
    };
    let mut text = serde_json::to_vec_pretty(&index).map_err(|e| CatalogError::BadIndex {
        name: crate::selector::quoted(&index.name),
        why: e.to_string(),
    })?;
    text.push(b'\n');
    let cap = client.upload_bytes(&text)?;
    client.link(dir.as_str(), INDEX_NAME, &cap)?;
    match index.backups.last() {
        Some(newest) => {
            let root = Cap::parse(&newest.root_cap).map_err(|_| CatalogError::BadIndex {
                name: crate::selector::quoted(&index.name),
                why: "a root cap that does not parse".into(),
            })?;
            client.link(dir.as_str(), LATEST, &root)?;
        }
        None => {
            client.unlink(dir.as_str(), LATEST)?;
        }
    }
    Ok(())
}

fn index_entry(e: &CatalogEntry) -> IndexEntry {
    IndexEntry {
        generation: e.generation,
        label: e.label.clone(),
        start: iso_utc(e.ts_start),
        end: iso_utc(e.ts_end),
        ts_start: e.ts_start,
        ts_end: e.ts_end,
        entries: e.entries,
        bytes: e.bytes,
        root_cap: e.root_cap.as_str().to_owned(),
        link: e.link.clone(),
        kind: e.kind.as_str().to_owned(),
    }
}

/// Links `entry` into the catalog at `catalog` (a writecap): its name's
/// directory (created when missing), the dated link, the index, `latest`.
pub(crate) fn add(
    client: &Client,
    catalog: &Cap,
    entry: &CatalogEntry,
) -> Result<(), CatalogError> {
    let dir_child = dir_name(&entry.name);
    let dir = match client.child_cap(catalog.as_str(), &dir_child)? {
        Some(dir) => dir,
        None => {
            let dir = client.mkdir_mutable()?;
            client.link(catalog.as_str(), &dir_child, &dir)?;
            dir
        }
    };
    client.link(dir.as_str(), &entry.link, &entry.root_cap)?;
    let mut backups = read_name_index(client, &dir)?
        .map(|(_, b)| b)
        .unwrap_or_default();
    backups.retain(|b| b.generation != entry.generation);
    backups.push(index_entry(entry));
    write_name_index(client, &dir, &entry.name, backups)
}

/// Unlinks the forgotten backups `rows` from the catalog and rewrites the
/// index (and `latest`) of each of their names; returns how many dated
/// links went. A backup the catalog does not hold is nothing to do.
pub(crate) fn remove(
    client: &Client,
    catalog: &Cap,
    rows: &[BackupRow],
) -> Result<usize, CatalogError> {
    let mut by_name: std::collections::BTreeMap<&[u8], Vec<&BackupRow>> = Default::default();
    for r in rows {
        by_name.entry(r.name.as_slice()).or_default().push(r);
    }
    let mut unlinked = 0;
    for (name, gone) in by_name {
        let Some(dir) = client.child_cap(catalog.as_str(), &dir_name(name))? else {
            continue;
        };
        let Some((_, backups)) = read_name_index(client, &dir)? else {
            continue;
        };
        let is_gone = |b: &IndexEntry| {
            gone.iter()
                .any(|r| r.generation == b.generation && r.root_cap.as_str() == b.root_cap)
        };
        let (removed, kept): (Vec<IndexEntry>, Vec<IndexEntry>) =
            backups.into_iter().partition(|b| is_gone(b));
        if removed.is_empty() {
            continue;
        }
        // The index first: a catalog that lists less than its links is
        // still correct for a restore; `latest` follows the index.
        write_name_index(client, &dir, name, kept.clone())?;
        for b in &removed {
            // Two backups in one second with one label share a link: it
            // stays while a kept backup has it.
            if kept.iter().any(|k| k.link == b.link) {
                continue;
            }
            if client.unlink(dir.as_str(), &b.link)?.is_some() {
                unlinked += 1;
            }
        }
    }
    Ok(unlinked)
}

/// The catalog's cap as configured: the writecap given, or for `auto` the
/// one this cache recorded (`None` when none was created yet, or when no
/// catalog is configured).
pub(crate) fn configured(
    config_value: Option<&str>,
    cache: &Cache,
) -> Result<Option<Cap>, CatalogError> {
    match config_value {
        None => Ok(None),
        Some("auto") => Ok(cache.catalog_cap()?),
        // Validated when the config was loaded.
        Some(text) => Ok(Cap::parse(text).ok()),
    }
}

/// After a complete backup (row `id` of the backup cache): links it into
/// the catalog, creating an `auto` catalog first. A failure is a warning
/// and [`Outcome::Problems`]: the backup itself is complete and recorded.
pub(crate) fn after_backup(ctx: &Context<'_>, client: &Client, id: i64) -> Outcome {
    if ctx.config().destination.catalog.is_none() {
        return Outcome::Success;
    }
    match link_backup(ctx, client, id) {
        Ok(()) => Outcome::Success,
        Err(e) => {
            warn!(
                "the backup is complete and recorded, but the recovery catalog \
                 (destination.catalog) was not updated: {}; the next backup of this name \
                 links its own backup, `lafs-backup list` still shows this one",
                crate::tahoe::redact(&format!("{e:#}"))
            );
            Outcome::Problems
        }
    }
}

fn link_backup(ctx: &Context<'_>, client: &Client, id: i64) -> anyhow::Result<()> {
    let config = ctx.config();
    let setting = config.destination.catalog.as_deref();
    let mut cache = Cache::open_wait(
        ctx.backup_cache_path()?,
        &config.source.entry_cache.commit_after,
        std::time::Duration::from_secs(5),
    )?;
    let row = cache
        .backups()?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| anyhow::anyhow!("the backup is not in the entry cache"))?;
    let catalog = match configured(setting, &cache)? {
        Some(cap) => cap,
        None => {
            let cap = client.mkdir_mutable()?;
            cache.set_catalog_cap(&cap)?;
            announce(ctx, &cap)?;
            cap
        }
    };
    cache.close()?;
    let entry = CatalogEntry::of_row(&row);
    add(client, &catalog, &entry)?;
    info!(
        "linked {} into the recovery catalog as {}/{}",
        crate::commands::show::name(&row.name),
        dir_name(&row.name),
        entry.link
    );
    Ok(())
}

/// The new `auto` catalog's cap: once on stdout (a JSON line with
/// `--json`), with a note on stderr, and in the result file.
fn announce(ctx: &Context<'_>, cap: &Cap) -> anyhow::Result<()> {
    if ctx.json() {
        println!(
            "{}",
            serde_json::json!({"type": "catalog", "catalog_cap": cap.as_str()})
        );
    } else {
        println!("{}", cap.as_str());
    }
    eprintln!(
        "lafs-backup: created the recovery catalog (destination.catalog: auto); its cap was \
         printed on stdout, once: keep this recovery cap somewhere safe, off this machine. \
         With it and any gateway of the grid, `lafs-backup list --catalog CAP` and \
         `lafs-backup restore NAME TARGET --catalog CAP` work without this host \
         (docs/recovery.md)"
    );
    if let Some(file) = &ctx.config().destination.result.append_to_file {
        crate::result::append_catalog(file, cap)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_directories_are_single_safe_segments() {
        assert_eq!(link_name(1_704_592_800, None), "2024-01-07T02:00:00Z");
        assert_eq!(
            link_name(1_704_592_800, Some("slot-1/DIFF")),
            "2024-01-07T02:00:00Z_slot-1\\x2fDIFF"
        );
        assert_eq!(dir_name(b"www"), "www");
        assert_eq!(dir_name(b"a/b"), "a\\x2fb");
        assert_eq!(dir_name(b".."), "\\x2e.");
        assert_eq!(dir_name(b"latest"), "\\x6catest");
        assert_eq!(dir_name(b"index.json"), "\\x69ndex.json");
        assert_eq!(dir_name(b"caf\xff"), "caf\\xff");
    }

    #[test]
    fn index_entries_round_trip() {
        let cap = Cap::parse(&format!(
            "URI:DIR2-CHK:{}:{}:1:1:1",
            "a".repeat(26),
            "b".repeat(52)
        ))
        .unwrap();
        let e = CatalogEntry {
            name: b"caf\xff".to_vec(),
            generation: 3,
            label: Some("daily".into()),
            ts_start: 1_704_592_800,
            ts_end: 1_704_592_860,
            entries: 5,
            bytes: 99,
            root_cap: cap,
            link: link_name(1_704_592_800, Some("daily")),
            kind: BackupKind::Stream,
        };
        let stored = index_entry(&e);
        assert_eq!(stored.start, "2024-01-07T02:00:00Z");
        let text = serde_json::to_string(&stored).unwrap();
        let back: IndexEntry = serde_json::from_str(&text).unwrap();
        let name = crate::commands::show::name(&e.name);
        assert_eq!(entry_of(&name, &back).unwrap(), e);
        // An index written before streams has no `kind`: a tree.
        let old = text.replace(",\"kind\":\"stream\"", "");
        assert!(!old.contains("kind"), "{old}");
        let back: IndexEntry = serde_json::from_str(&old).unwrap();
        assert_eq!(entry_of(&name, &back).unwrap().kind, BackupKind::Tree);
        assert!(is_writecap(
            &Cap::parse(&format!("URI:DIR2:{}:{}", "a".repeat(26), "b".repeat(52))).unwrap()
        ));
        assert!(!is_writecap(&e.root_cap));
    }
}
