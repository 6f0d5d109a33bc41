//! btrfs snapshots, `btrfs send` and `btrfs receive` through lafs-backup's
//! plumbing (`docs/btrfs.md`), on real loop-mounted btrfs file systems
//! (`common::btrfs`): a full stream received into a fresh btrfs is the
//! snapshot, entry by entry with its metadata; an incremental one on top of
//! it is the second snapshot; a chain received in one `btrfs receive` (as
//! `receive --as-of` will feed it) is the same; the snapshots no longer
//! needed as parents go; a failed send is never a whole stream; a path that
//! is not a subvolume, and a missing `btrfs`, are clear usage errors.
//!
//! The streams are not stored on the grid here: the stream backups do that.

use std::io::Read;
use std::path::Path;

use jiff::civil::Date;
use lafs_backup::{Btrfs, BtrfsSnapshots, error_message, exit_code};

use crate::common::btrfs::{LoopBtrfs, assert_same_tree, change, populate, tree};

fn d(s: &str) -> Date {
    s.parse().unwrap()
}

#[test]
fn full_then_incremental_send_receives_identical_trees() {
    let btrfs = Btrfs::default();
    let src = LoopBtrfs::new();
    let data = src.subvolume("data");
    populate(&data);
    let snaps = BtrfsSnapshots::new(btrfs.clone(), src.dir("snapshots"), "data");

    let s1 = snaps.take(&data, d("2000-01-01")).unwrap();
    assert_eq!(s1, src.mnt().join("snapshots/data-2000-01-01"));
    assert_same_tree(&data, &s1);

    // c: the full stream into a fresh btrfs.
    let dst = LoopBtrfs::new();
    let mut full = btrfs.send(&s1, None).unwrap();
    let full_bytes = btrfs.receive(dst.mnt(), &mut full).unwrap();
    full.finish().unwrap();
    assert!(
        full_bytes > 4 << 20,
        "the full stream holds bin: {full_bytes}"
    );
    assert_same_tree(&s1, &dst.mnt().join("data-2000-01-01"));

    // A day's changes, then i 2000-01-01.
    change(&data);
    let s2 = snaps.take(&data, d("2000-01-07")).unwrap();
    assert_same_tree(&data, &s2);
    // The comparison sees the changes (so it would see a bad receive).
    assert_ne!(tree(&s1), tree(&s2));
    assert_eq!(tree(&s1).len(), 11, "{:#?}", tree(&s1));
    let mut incr = btrfs.send(&s2, Some(&s1)).unwrap();
    let incr_bytes = btrfs.receive(dst.mnt(), &mut incr).unwrap();
    incr.finish().unwrap();
    assert!(
        incr_bytes < 1 << 20,
        "the incremental stream holds the changes, not bin: {incr_bytes}"
    );
    assert_same_tree(&s2, &dst.mnt().join("data-2000-01-07"));
    assert_same_tree(&s1, &dst.mnt().join("data-2000-01-01"));

    // The chain in order through one `btrfs receive` into a fresh btrfs.
    let chained = LoopBtrfs::new();
    let mut chain = btrfs
        .send(&s1, None)
        .unwrap()
        .chain(btrfs.send(&s2, Some(&s1)).unwrap());
    let chain_bytes = btrfs.receive(chained.mnt(), &mut chain).unwrap();
    assert!(
        chain_bytes > full_bytes,
        "both streams were fed: {chain_bytes}"
    );
    assert_same_tree(&s1, &chained.mnt().join("data-2000-01-01"));
    assert_same_tree(&s2, &chained.mnt().join("data-2000-01-07"));

    // The same date again takes no new snapshot: it is the one there.
    assert_eq!(snaps.take(&data, d("2000-01-07")).unwrap(), s2);
    assert_same_tree(&data, &s2);

    // Once 01-07 is stored, 01-01 is no longer needed as a parent.
    assert_eq!(snaps.list().unwrap(), [d("2000-01-01"), d("2000-01-07")]);
    assert_eq!(snaps.prune(d("2000-01-07")).unwrap(), [d("2000-01-01")]);
    assert_eq!(snaps.list().unwrap(), [d("2000-01-07")]);
    assert!(!s1.exists());
    assert!(s2.exists());
}

/// A send that fails (here: of a subvolume that is not read-only) ends its
/// stream with an error naming the command and the tool's message, and a
/// receive fed from it fails instead of taking a short stream as whole.
#[test]
fn a_failed_send_is_never_a_whole_stream() {
    let btrfs = Btrfs::default();
    let src = LoopBtrfs::new();
    let data = src.subvolume("data");
    std::fs::write(data.join("f"), b"f").unwrap();

    let mut out = Vec::new();
    let err = btrfs
        .send(&data, None)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "`btrfs send {}` failed (exit status: 1)",
            data.display()
        )),
        "{err}"
    );
    assert!(err.contains("read-only"), "the tool's reason: {err}");

    let dst = LoopBtrfs::new();
    let mut stream = btrfs.send(&data, None).unwrap();
    let err = anyhow::Error::from(btrfs.receive(dst.mnt(), &mut stream).unwrap_err());
    assert_eq!(exit_code(&err), 1);
    let msg = error_message(&err);
    assert!(msg.contains("btrfs receive"), "{msg}");
    assert!(
        msg.contains("btrfs send"),
        "the send's failure is the cause: {msg}"
    );
}

#[test]
fn not_a_subvolume_and_a_missing_tool_are_usage_errors() {
    let btrfs = Btrfs::default();
    let fs = LoopBtrfs::new();
    let plain = fs.dir("plain");
    let snaps = BtrfsSnapshots::new(btrfs.clone(), fs.dir("snapshots"), "plain");

    let check = |path: &Path| {
        let err = anyhow::Error::from(btrfs.check_subvolume(path).unwrap_err());
        assert_eq!(exit_code(&err), 2);
        error_message(&err)
    };
    let msg = check(&plain);
    assert!(
        msg.starts_with(&format!(
            "{} is not a btrfs subvolume (`btrfs subvolume show {}` failed (exit status: 1): ERROR: ",
            plain.display(),
            plain.display()
        )),
        "{msg}"
    );
    // Not on btrfs at all, and not there at all.
    let elsewhere = tempfile::tempdir().unwrap();
    assert!(check(elsewhere.path()).contains("is not a btrfs subvolume"));
    assert!(check(&fs.mnt().join("missing")).contains("is not a btrfs subvolume"));

    // No snapshot is made of it.
    let err = anyhow::Error::from(snaps.take(&plain, d("2000-01-01")).unwrap_err());
    assert_eq!(exit_code(&err), 2);
    assert!(error_message(&err).contains("is not a btrfs subvolume"));
    assert_eq!(snaps.list().unwrap(), []);

    let missing = Btrfs::with_program("btrfs-not-installed");
    let err = anyhow::Error::from(missing.check_subvolume(fs.mnt()).unwrap_err());
    assert_eq!(exit_code(&err), 2);
    assert_eq!(
        error_message(&err),
        "the btrfs tool `btrfs-not-installed` was not found: install btrfs-progs"
    );
}
