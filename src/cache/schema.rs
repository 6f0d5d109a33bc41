//! The cache's SQL schema, its version, and how an opened file is
//! recognised, created or migrated. `docs/cache.md` documents every table.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension};

use super::{CacheError, sql_err, unix_now};

/// The schema this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// `PRAGMA application_id` of a lafs-backup cache: "LAFB".
pub const APPLICATION_ID: i32 = 0x4C41_4642;

/// Version 1, created in one transaction together with the `meta` rows.
const CREATE_V1: &str = "
CREATE TABLE meta (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE objects (
    key        BLOB PRIMARY KEY NOT NULL CHECK (length(key) = 32),
    cap        TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('file', 'dir')),
    enc        TEXT,
    generation INTEGER NOT NULL CHECK (generation >= 1),
    ts         INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX objects_generation ON objects (generation);
CREATE INDEX objects_cap ON objects (cap);

CREATE TABLE backups (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       BLOB NOT NULL,
    root_cap   TEXT NOT NULL,
    generation INTEGER NOT NULL CHECK (generation >= 1),
    ts_start   INTEGER NOT NULL,
    ts_end     INTEGER NOT NULL,
    entries    INTEGER NOT NULL,
    bytes      INTEGER NOT NULL,
    ts_check   INTEGER NULL
);
CREATE INDEX backups_generation ON backups (generation);
CREATE INDEX backups_root_cap ON backups (root_cap);

CREATE TABLE dir_children (
    dir_cap   TEXT NOT NULL,
    child_cap TEXT NOT NULL,
    PRIMARY KEY (dir_cap, child_cap)
) WITHOUT ROWID;

CREATE TABLE leases (
    cap     TEXT PRIMARY KEY NOT NULL,
    renewed INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE content (
    hash     BLOB NOT NULL CHECK (length(hash) = 32),
    encoding TEXT NOT NULL,
    cap      TEXT NOT NULL,
    PRIMARY KEY (hash, encoding)
) WITHOUT ROWID;
CREATE INDEX content_cap ON content (cap);
";

/// `MIGRATIONS[i]` upgrades schema version `i + 1` to `i + 2`, run in one
/// transaction with the new `schema_version`. Never edit a released entry;
/// append one and bump [`SCHEMA_VERSION`].
const MIGRATIONS: &[&str] = &[];

const _: () = assert!(SCHEMA_VERSION as usize == MIGRATIONS.len() + 1);

/// What an opened file holds, once recognised as usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// A new or empty database: the schema must be created.
    Empty,
    /// A lafs-backup cache of this (or an older) schema version.
    Version(u32),
}

/// Recognises the file without changing anything in it: an empty
/// database, or a lafs-backup cache of a schema this build can use.
/// Refuses everything else (another program's database, the original
/// tool's entry cache, a newer schema, a file that is not SQLite).
pub fn recognise(conn: &Connection, path: &Path) -> Result<Found, CacheError> {
    let (app_id, tables) = identify(conn, path)?;
    if app_id == 0 && tables.is_empty() {
        return Ok(Found::Empty);
    }
    if app_id != APPLICATION_ID {
        if tables.iter().any(|t| t == "object_cache") {
            return Err(CacheError::OriginalTool {
                path: path.to_owned(),
            });
        }
        return Err(CacheError::NotACache {
            path: path.to_owned(),
            why: "it is an SQLite database of some other program".into(),
        });
    }
    let found = version(conn, path)?;
    if found > SCHEMA_VERSION {
        return Err(CacheError::SchemaTooNew {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(Found::Version(found))
}

/// Creates the schema in an empty database (returns true) or migrates an
/// older one to [`SCHEMA_VERSION`]. Never drops or resets data.
pub fn prepare(conn: &mut Connection, path: &Path, found: Found) -> Result<bool, CacheError> {
    match found {
        Found::Empty => {
            create(conn, path)?;
            Ok(true)
        }
        Found::Version(v) if v < SCHEMA_VERSION => {
            migrate(conn, path, v)?;
            Ok(false)
        }
        Found::Version(_) => Ok(false),
    }
}

/// The header's application id and the names of the tables. A file that
/// is not SQLite at all fails here.
fn identify(conn: &Connection, path: &Path) -> Result<(i32, Vec<String>), CacheError> {
    let not_db = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => CacheError::NotACache {
            path: path.to_owned(),
            why: "it is not an SQLite database".into(),
        },
        _ => sql_err(path, "reading the header of", e),
    };
    let app_id: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(not_db)?;
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .map_err(not_db)?;
    let tables = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(not_db)?;
    Ok((app_id, tables))
}

fn create(conn: &mut Connection, path: &Path) -> Result<(), CacheError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| sql_err(path, "creating the schema of", e))?;
    tx.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID};"))
        .and_then(|()| tx.execute_batch(CREATE_V1))
        .and_then(|()| {
            tx.execute(
                "INSERT INTO meta (name, value) VALUES ('schema_version', ?1), ('created', ?2)",
                (SCHEMA_VERSION.to_string(), unix_now().to_string()),
            )
        })
        .and_then(|_| tx.commit())
        .map_err(|e| sql_err(path, "creating the schema of", e))
}

/// The `schema_version` row of a file that carries our application id.
fn version(conn: &Connection, path: &Path) -> Result<u32, CacheError> {
    let corrupt = |what: &str| CacheError::Corrupt {
        path: path.to_owned(),
        what: what.to_owned(),
    };
    let text: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE name = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::Unknown) | None => {
                corrupt("it has no readable meta table (no schema_version)")
            }
            _ => sql_err(path, "reading the schema version of", e),
        })?;
    let text = text.ok_or_else(|| corrupt("its meta table has no schema_version row"))?;
    match text.trim().parse::<u32>() {
        Ok(v) if v >= 1 => Ok(v),
        _ => Err(corrupt("its schema_version is not a positive number")),
    }
}

fn migrate(conn: &mut Connection, path: &Path, from: u32) -> Result<(), CacheError> {
    tracing::info!(
        "upgrading the cache {} from schema version {from} to {SCHEMA_VERSION}",
        path.display()
    );
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| sql_err(path, "upgrading the schema of", e))?;
    for step in &MIGRATIONS[(from - 1) as usize..] {
        tx.execute_batch(step)
            .map_err(|e| sql_err(path, "upgrading the schema of", e))?;
    }
    tx.execute(
        "UPDATE meta SET value = ?1 WHERE name = 'schema_version'",
        [SCHEMA_VERSION.to_string()],
    )
    .and_then(|_| tx.commit())
    .map_err(|e| sql_err(path, "upgrading the schema of", e))
}
