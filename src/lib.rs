//! lafs-backup: incremental, deduplicated, compressed backups of file trees
//! into a Tahoe-LAFS grid.
//!
//! A backup has two phases. The *scan* walks the source tree, applies the
//! ordered `+`/`-` filter rules, captures ownership, mode, ACLs and file
//! capabilities, and writes a lossless queue file (children before parents).
//! The *upload* reads the queue and builds immutable Tahoe nodes from it.
//!
//! `src/main.rs` only parses arguments and reports errors; everything else
//! lives in the modules below, named after the domain concepts they own.
//!
//! # Module map
//!
//! Grouped by phase; the contracts each module keeps are in `docs/`.
//!
//! **Scan**: reading the source tree into the queue.
//! - [`scan`]: the walk (post-order, byte order) that writes the queue.
//! - [`filter`]: the ordered `+`/`-` rules the walk applies.
//! - [`meta`]: owner, mode, ACLs and file capabilities of each entry.
//! - [`escape`]: the lossless text form of raw file names in the queue.
//!
//! **Grid**: talking to Tahoe-LAFS and what is stored there.
//! - [`tahoe`]: capabilities (secrets, redacted everywhere) and the web-API
//!   client.
//! - [`edge`]: the edge metadata each directory child carries
//!   (`docs/metadata.md`).
//! - [`names`]: Tahoe child names for raw file names.
//! - [`encode`]: whether and how a file is compressed before upload.
//! - [`tree`]: reading a backup tree back, one checked directory at a time.
//! - [`ratelimit`]: the upload rate limits.
//!
//! **State**: the files kept between runs.
//! - [`cache`]: the SQLite dedup cache: objects, backups, references,
//!   leases (`docs/cache.md`).
//! - [`queue`]: the queue file, the scan's output and the upload's input
//!   (`docs/queue-format.md`).
//! - [`result`]: the result file the root caps of finished backups go to.
//!
//! **Engines**: the work behind the commands.
//! - [`upload`]: a queue into an immutable tree on the grid.
//! - [`restore`]: a backup tree into a local directory (`docs/restore.md`).
//! - [`verify`]: a backup tree against a live tree (`docs/verify.md`).
//!
//! **CLI**: from the command line to an exit code.
//! - [`cli`]: the command line as clap parses it (the `--help` text).
//! - [`config`]: the layered YAML configuration (`docs/config.md`).
//! - [`commands`]: one module per subcommand, and the dispatch.
//! - [`selector`]: the BACKUP argument (a cap or a name) of the commands
//!   that take one.
//! - [`progress`]: the upload's progress bar or JSON lines.
//! - [`logging`]: log output on stderr (never a cap).
//! - [`exit`]: exit codes and error messages (`docs/exit-codes.md`).

pub mod cache;
pub mod cli;
pub mod commands;
pub mod config;
pub mod edge;
pub mod encode;
pub mod escape;
pub mod exit;
pub mod filter;
pub mod logging;
pub mod meta;
pub mod names;
pub mod parallel;
pub mod progress;
pub mod queue;
pub mod ratelimit;
pub mod restore;
pub mod result;
pub mod scan;
pub mod selector;
pub mod tahoe;
pub mod tree;
pub mod upload;
pub mod verify;
