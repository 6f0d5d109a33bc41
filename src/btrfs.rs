//! btrfs subvolumes backed up as `btrfs send` streams in full/incremental
//! chains, on btrsend's date-driven schedule (`docs/btrfs.md`).
//!
//! - `plan`: the schedule: given the recorded chain members and a date,
//!   the plan line (nothing, `c` or `i YYYY-MM-DD`) and the members to
//!   forget. Pure code.
//! - `cmd`: the `btrfs` tool: read-only snapshots named `NAME-DATE`,
//!   `btrfs send` as a reader, `btrfs receive` fed from a reader, the
//!   subvolume check, and which snapshots are no longer needed.
//!
//! The stream itself is stored by the stream backups (issue 15); this
//! module knows nothing of the grid.

pub(crate) mod cmd;
pub(crate) mod frames;
pub(crate) mod plan;

pub use cmd::{Btrfs, BtrfsError, SendStream, Snapshots};
