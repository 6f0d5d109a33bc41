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
//! Grouped by phase; the contracts each module keeps are in `docs/`. The
//! modules are private to the crate (`cargo doc --document-private-items`
//! shows them).
//!
//! **Scan**: reading the source tree into the queue.
//! - `scan`: the walk (post-order, byte order) that writes the queue.
//! - `filter`: the ordered `+`/`-` rules the walk applies.
//! - `meta`: owner, mode, ACLs and file capabilities of each entry.
//! - `escape`: the lossless text form of raw file names in the queue.
//!
//! **Grid**: talking to Tahoe-LAFS and what is stored there.
//! - `tahoe`: capabilities (secrets, redacted everywhere) and the web-API
//!   client.
//! - `edge`: the edge metadata each directory child carries
//!   (`docs/metadata.md`).
//! - `names`: Tahoe child names for raw file names.
//! - `encode`: whether and how a file is compressed before upload.
//! - `tree`: reading a backup tree back, one checked directory at a time.
//! - `ratelimit`: the upload rate limits.
//!
//! **State**: the files kept between runs.
//! - `cache`: the SQLite dedup cache: objects, backups, references,
//!   leases (`docs/cache.md`).
//! - `queue`: the queue file, the scan's output and the upload's input
//!   (`docs/queue-format.md`).
//! - `result`: the result file the root caps of finished backups go to.
//!
//! **Engines**: the work behind the commands.
//! - `upload`: a queue into an immutable tree on the grid.
//! - `restore`: a backup tree into a local directory (`docs/restore.md`).
//! - `verify`: a backup tree against a live tree (`docs/verify.md`).
//! - `mount`: the recorded backups as a read-only FUSE file system
//!   (`docs/mount.md`).
//!
//! **CLI**: from the command line to an exit code.
//! - `cli`: the command line as clap parses it (the `--help` text).
//! - `config`: the layered YAML configuration (`docs/config.md`).
//! - `commands`: one module per subcommand, and the dispatch.
//! - `selector`: the BACKUP argument (a cap or a name) of the commands
//!   that take one.
//! - `parallel`: an ordered, bounded-concurrency map (directory listings,
//!   lease renewals).
//! - `progress`: the upload's progress bar or JSON lines.
//! - `logging`: log output on stderr (never a cap).
//! - `exit`: exit codes and error messages (`docs/exit-codes.md`).
//! - `clock`: the run's wall clock (`LAFS_BACKUP_NOW` freezes it).
//! - `retention`: which backups a policy keeps, and when one is due
//!   (`docs/retention.md`).
//!
//! # Public API
//!
//! Only what the binary (`src/main.rs`), the integration tests (`tests/`)
//! and the examples (`examples/`) use is public: the re-exports at the
//! crate root (see *Re-exports*). Everything else is `pub(crate)`, so the
//! compiler reports an item nothing uses (`dead_code`) or one marked `pub`
//! in vain (`unreachable_pub`, in `[lints]`). A new user of an item adds it
//! to that one list.

pub(crate) mod browse;
pub(crate) mod btrfs;
pub(crate) mod cache;
pub(crate) mod catalog;
pub(crate) mod chk;
pub(crate) mod cli;
pub(crate) mod clock;
pub(crate) mod commands;
pub(crate) mod config;
pub(crate) mod dump;
pub(crate) mod edge;
pub(crate) mod encode;
pub(crate) mod escape;
pub(crate) mod exit;
pub(crate) mod filter;
pub(crate) mod healthchecks;
pub(crate) mod hooks;
pub(crate) mod logging;
pub(crate) mod meta;
pub(crate) mod mount;
pub(crate) mod names;
pub(crate) mod parallel;
pub(crate) mod progress;
pub(crate) mod queue;
pub(crate) mod ratelimit;
pub(crate) mod restore;
pub(crate) mod result;
pub(crate) mod retention;
pub(crate) mod scan;
pub(crate) mod selector;
pub(crate) mod storage;
pub(crate) mod stream;
pub(crate) mod subtree;
pub(crate) mod tahoe;
pub(crate) mod tarsplit;
pub(crate) mod tree;
pub(crate) mod upload;
pub(crate) mod verify;
pub(crate) mod when;

// The public API: exactly what the binary (src/main.rs), the integration
// tests (tests/) and the examples (examples/) use, and nothing else, so that
// `unreachable_pub` and dead-code warnings see everything else as internal.
// A name that would be unclear at the crate root is renamed here.

// The binary: parse, run, report.
pub use cli::Cli;
pub use commands::run;
pub use exit::{code_for as exit_code, is_broken_pipe, message as error_message};

// Grid: caps (redacted in every message), the web-API client, LIT caps.
pub use tahoe::{
    Cap, CheckOptions, Client, LIT_THRESHOLD, TahoeError, empty_dir_cap, lit_cap, lit_data, redact,
};
// What a backup stores on the grid: child names, edge metadata, encodings.
pub use edge::{Child, EdgeMeta, children_json};
pub use encode::{Encoder, Encoding, Prepared, is_file_changed};
pub use meta::EntryMeta;
pub use names::{ROOT_META_NAME, edge_name, raw_name};

// btrfs: snapshots, `btrfs send` as a reader, `btrfs receive`.
pub use btrfs::{Btrfs, BtrfsError, SendStream, Snapshots as BtrfsSnapshots};

// State and configuration.
pub use cache::Cache;
pub use config::{
    Codec, Config, Retry, RetryDelay, Timeouts, XzAction, XzRule, load as load_config,
};
// Tar streams (issue 15, TARzan): the splitter, its index, the joiner.
pub use dump::{DumpError, DumpSource, DumpStream, dump_sources_from_yaml};
pub use tarsplit::{
    Event as TarEvent, IndexError as TarIndexError, IndexReader as TarIndexReader,
    IndexWriter as TarIndexWriter, JoinError as TarJoinError, PayloadReader as TarPayloadReader,
    Record as TarRecord, SplitError, Splitter as TarSplitter, TarError, TarErrorKind, is_tar_error,
    join as tar_join,
};
