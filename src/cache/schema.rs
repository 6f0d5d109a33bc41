//! The cache's SQL schema, its version, and how an opened file is
//! recognised, created or migrated. `docs/cache.md` documents every table.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension};

use super::{CacheError, sql_err, unix_now};

/// The schema this build writes and reads.
pub(crate) const SCHEMA_VERSION: u32 = 7;

/// `PRAGMA application_id` of a lafs-backup cache: "LAFB".
pub(crate) const APPLICATION_ID: i32 = 0x4C41_4642;

/// The current version, created in one transaction together with the
/// `meta` rows. A cache migrated from an older version has the same columns
/// in the same order (added at the end of their tables).
const CREATE: &str = "
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
    ts_check   INTEGER NULL,
    label      TEXT NULL,
    priority   INTEGER NULL,
    pinned     INTEGER NOT NULL DEFAULT 0 CHECK (pinned IN (0, 1)),
    kind       TEXT NOT NULL DEFAULT 'tree' CHECK (kind IN ('tree', 'stream')),
    btrfs_date   TEXT NULL,
    btrfs_parent TEXT NULL
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

CREATE TABLE verified (
    cap TEXT PRIMARY KEY NOT NULL,
    ts  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE runs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           BLOB NOT NULL,
    job            TEXT NULL,
    ts_start       INTEGER NOT NULL,
    ts_end         INTEGER NOT NULL,
    exit           INTEGER NOT NULL,
    skipped        TEXT NULL,
    entries        INTEGER NULL,
    bytes_uploaded INTEGER NULL,
    objects_reused INTEGER NULL
);
CREATE INDEX runs_name ON runs (name, id);

CREATE TABLE subtrees (
    sig        BLOB PRIMARY KEY NOT NULL CHECK (length(sig) = 32),
    cap        TEXT NOT NULL,
    leased     INTEGER NOT NULL,
    generation INTEGER NOT NULL CHECK (generation >= 1)
) WITHOUT ROWID;
CREATE INDEX subtrees_cap ON subtrees (cap);
";

/// `MIGRATIONS[i]` upgrades schema version `i + 1` to `i + 2`, run in one
/// transaction with the new `schema_version`. Never edit a released entry;
/// append one and bump [`SCHEMA_VERSION`].
const MIGRATIONS: &[&str] = &[
    // 1 -> 2 (issue 12, retention): a backup's label and priority, set by a
    // retention policy, and the `pin` mark. Existing backups get no label
    // and are not pinned.
    "ALTER TABLE backups ADD COLUMN label TEXT NULL;
     ALTER TABLE backups ADD COLUMN priority INTEGER NULL;
     ALTER TABLE backups ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0 CHECK (pinned IN (0, 1));",
    // 2 -> 3 (issue 13, sampled verification): when `check --verify-sample`
    // last verified each object. Nothing is verified yet after the upgrade.
    "CREATE TABLE verified (
         cap TEXT PRIMARY KEY NOT NULL,
         ts  INTEGER NOT NULL
     ) WITHOUT ROWID;",
    // 3 -> 4 (issue 13, monitoring): every job's runs, for `status` and the
    // Prometheus textfile. No run is known before the upgrade.
    "CREATE TABLE runs (
         id             INTEGER PRIMARY KEY AUTOINCREMENT,
         name           BLOB NOT NULL,
         job            TEXT NULL,
         ts_start       INTEGER NOT NULL,
         ts_end         INTEGER NOT NULL,
         exit           INTEGER NOT NULL,
         skipped        TEXT NULL,
         entries        INTEGER NULL,
         bytes_uploaded INTEGER NULL,
         objects_reused INTEGER NULL
     );
     CREATE INDEX runs_name ON runs (name, id);",
    // 4 -> 5 (issue 15, streams): what a backup is, a file tree or a
    // stream (docs/streams.md). Every backup before the upgrade is a tree.
    "ALTER TABLE backups ADD COLUMN kind TEXT NOT NULL DEFAULT 'tree'
         CHECK (kind IN ('tree', 'stream'));",
    // 5 -> 6 (issue 15, btrfs): a btrfs send stream's plan facts, its date
    // and (for an incremental) its parent's date (docs/btrfs.md). No backup
    // before the upgrade is a btrfs member.
    "ALTER TABLE backups ADD COLUMN btrfs_date TEXT NULL;
     ALTER TABLE backups ADD COLUMN btrfs_parent TEXT NULL;",
    // 6 -> 7 (issue 16, unchanged subtrees skipped wholesale): a directory's
    // subtree signature and the cap it was stored as (src/subtree.rs). None
    // is known before the upgrade: the first run after it takes the
    // per-entry path once and records them.
    "CREATE TABLE subtrees (
         sig        BLOB PRIMARY KEY NOT NULL CHECK (length(sig) = 32),
         cap        TEXT NOT NULL,
         leased     INTEGER NOT NULL,
         generation INTEGER NOT NULL CHECK (generation >= 1)
     ) WITHOUT ROWID;
     CREATE INDEX subtrees_cap ON subtrees (cap);",
];

const _: () = assert!(SCHEMA_VERSION as usize == MIGRATIONS.len() + 1);

/// What an opened file holds, once recognised as usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Found {
    /// A new or empty database: the schema must be created.
    Empty,
    /// A lafs-backup cache of this (or an older) schema version.
    Version(u32),
}

/// Recognises the file without changing anything in it: an empty
/// database, or a lafs-backup cache of a schema this build can use.
/// Refuses everything else (another program's database, the original
/// tool's entry cache, a newer schema, a file that is not SQLite).
pub(super) fn recognise(conn: &Connection, path: &Path) -> Result<Found, CacheError> {
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
pub(super) fn prepare(
    conn: &mut Connection,
    path: &Path,
    found: Found,
) -> Result<bool, CacheError> {
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
        .and_then(|()| tx.execute_batch(CREATE))
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

/// `docs/cache.md` against the code: its `sql` block, its column tables and
/// its `meta` rows must describe exactly the cache the code creates.
#[cfg(test)]
mod tests {
    use rusqlite::OpenFlags;

    use super::super::Cache;
    use super::super::tests::{NO_LIMIT, chk};
    use super::*;

    const DOC: &str = include_str!("../../docs/cache.md");

    /// A cache created by the code, as a plain read-only connection: after
    /// `Cache::open`, so whatever opening adds to the schema is seen too.
    fn created() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cache.sqlite");
        let mut cache = Cache::open(&path, &NO_LIMIT).expect("open a new cache");
        // Every writer of `meta` rows, so the doc's `meta` table is checked
        // against what the code really writes.
        cache.set_probe(&chk(1), 2, 3).expect("set the probe");
        cache
            .set_lease_cursor(1, 1, &chk(2))
            .expect("set the cursor");
        cache.set_catalog_cap(&chk(3)).expect("set the catalog cap");
        cache
            .set_last_lease_renewal(1)
            .expect("set the last renewal");
        cache.close().expect("close");
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("reopen read-only");
        (dir, conn)
    }

    /// `sqlite_master` as comparable lines: SQLite keeps each statement's
    /// text as written, so runs of whitespace (the doc's column alignment)
    /// are folded to one space.
    fn schema_of(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare(
                "SELECT type, name, tbl_name, sql FROM sqlite_master \
                 WHERE sql IS NOT NULL ORDER BY type, name",
            )
            .expect("prepare");
        stmt.query_map([], |r| {
            let (kind, name, table, sql): (String, String, String, String) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
            let sql = sql.split_whitespace().collect::<Vec<_>>().join(" ");
            Ok(format!("{kind} {name} (on {table}): {sql}"))
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .expect("read sqlite_master")
    }

    /// The `### \`name\`` section of the doc, up to the next heading.
    fn section(name: &str) -> Option<Vec<&'static str>> {
        let heading = format!("### `{name}`");
        let mut lines = DOC.lines().skip_while(|l| !l.starts_with(&heading));
        lines.next()?;
        Some(lines.take_while(|l| !l.starts_with('#')).collect())
    }

    /// The backticked names in the first column of the section's table whose
    /// header starts with `first` (`| \`ts_start\`, \`ts_end\` | …` gives
    /// both), in order; None if the section has no such table.
    fn first_column(section: &[&str], first: &str) -> Option<Vec<String>> {
        let header = format!("| {first} |");
        let start = section.iter().position(|l| l.starts_with(&header))?;
        let names = section
            .get(start + 2..)
            .unwrap_or_default()
            .iter()
            .take_while(|l| l.starts_with('|'))
            .flat_map(|l| {
                let cell = l.trim_start_matches('|').split('|').next().unwrap_or("");
                cell.split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        Some(names)
    }

    /// The first column of a query's rows.
    fn strings(conn: &Connection, sql: &str, params: &[&str]) -> Vec<String> {
        conn.prepare(sql)
            .and_then(|mut stmt| {
                stmt.query_map(rusqlite::params_from_iter(params), |r| r.get(0))?
                    .collect::<Result<Vec<String>, _>>()
            })
            .expect("query")
    }

    #[test]
    fn doc_sql_is_the_created_schema() {
        let mut blocks = String::new();
        let mut inside = false;
        for line in DOC.lines() {
            match line.trim() {
                "```sql" => inside = true,
                "```" => inside = false,
                _ if inside => {
                    blocks.push_str(line);
                    blocks.push('\n');
                }
                _ => {}
            }
        }
        assert!(!blocks.is_empty(), "docs/cache.md has no ```sql block");
        let documented = Connection::open_in_memory().expect("in-memory database");
        documented
            .execute_batch(&blocks)
            .unwrap_or_else(|e| panic!("the sql block of docs/cache.md does not run: {e}"));
        let (_dir, code) = created();
        let (documented, code) = (schema_of(&documented), schema_of(&code));
        let only = |a: &[String], b: &[String]| -> Vec<String> {
            a.iter().filter(|x| !b.contains(x)).cloned().collect()
        };
        assert!(
            documented == code,
            "the sql block of docs/cache.md is not the schema the code creates\n\
             only in the doc: {:#?}\nonly in the code: {:#?}",
            only(&documented, &code),
            only(&code, &documented),
        );
    }

    #[test]
    fn doc_schema_version_is_the_code_s() {
        let heading = format!("## Schema (version {SCHEMA_VERSION})");
        assert!(
            DOC.lines().any(|l| l == heading),
            "docs/cache.md has no heading {heading:?}"
        );
    }

    #[test]
    fn doc_tables_list_the_created_columns() {
        let (_dir, conn) = created();
        let tables = strings(
            &conn,
            "SELECT name FROM sqlite_master \
             WHERE type = 'table' AND substr(name, 1, 7) != 'sqlite_' ORDER BY name",
            &[],
        );
        assert!(tables.len() >= 6, "{tables:?}");
        for table in &tables {
            let section = section(table)
                .unwrap_or_else(|| panic!("docs/cache.md has no section \"### `{table}`\""));
            // `meta` and `dir_children` are described in prose or by rows.
            let Some(documented) = first_column(&section, "column") else {
                continue;
            };
            let columns = strings(
                &conn,
                "SELECT name FROM pragma_table_info(?1) ORDER BY cid",
                &[table.as_str()],
            );
            assert_eq!(
                documented, columns,
                "the column table of `{table}` in docs/cache.md (left) and the schema (right)"
            );
        }
    }

    #[test]
    fn doc_meta_rows_are_the_written_ones() {
        let (_dir, conn) = created();
        let section = section("meta").expect("docs/cache.md has a `meta` section");
        let mut documented =
            first_column(&section, "name").expect("the `meta` section has a `| name |` table");
        documented.sort();
        let written = strings(&conn, "SELECT name FROM meta ORDER BY name", &[]);
        assert_eq!(
            documented, written,
            "the `meta` rows in docs/cache.md (left) and those the code writes (right)"
        );
    }
}
