//! btrfs snapshots, `btrfs send` and `btrfs receive` through lafs-backup's
//! plumbing (`docs/btrfs.md`), on real loop-mounted btrfs file systems
//! (`common::btrfs`): a full stream received into a fresh btrfs is the
//! snapshot, entry by entry with its metadata; an incremental one on top of
//! it is the second snapshot; a chain received in one `btrfs receive` (as
//! `receive --as-of` will feed it) is the same; the snapshots no longer
//! needed as parents go; a failed send is never a whole stream; a path that
//! is not a subvolume, and a missing `btrfs`, are clear usage errors.
//!
//! Then the wired commands against the local grid: a `kind: btrfs` job on
//! simulated dates (`LAFS_BACKUP_NOW`, `TZ=UTC`) follows the planner,
//! restarts and expires chains, prunes snapshots, and `receive --as-of`
//! gives a middle date's tree; `send --date` keeps btrsend's contract; a
//! failed send records nothing.

use std::io::Read;
use std::path::{Path, PathBuf};

use jiff::civil::Date;
use lafs_backup::{Btrfs, BtrfsSnapshots, error_message, exit_code};
use rusqlite::Connection;
use serde_json::Value;

use crate::common;

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

// ------------------------------------------------------------ wired: jobs, send --date, receive

/// A config on the test grid: the cache and result file in `dir`, the
/// root cap printed on stdout too (`print_to_stdout`, so that `send`'s
/// stdout staying the plan line's is tested), then `extra`.
fn grid_config(dir: &Path, extra: &str) -> PathBuf {
    let config = dir.join("cfg.yaml");
    std::fs::write(
        &config,
        format!(
            "source:\n  entry_cache:\n    path: '{}'\n\
             destination:\n  url: '{}/uri'\n  result:\n    print_to_stdout: true\n    \
             append_to_file: '{}'\n{}\
             chunking:\n  min_size: 16384\n  avg_size: 65536\n  max_size: 262144\n{extra}",
            dir.join("cache.sqlite").display(),
            common::gateway_url(),
            dir.join("results.txt").display(),
            common::QUICK_RETRY,
        ),
    )
    .unwrap();
    config
}

/// `lafs-backup -c CONFIG` at `date` (03:00 UTC).
fn at(config: &Path, date: &str) -> common::Lafs {
    common::lafs()
        .arg("-c")
        .arg(config)
        .env("TZ", "UTC")
        .env("LAFS_BACKUP_NOW", format!("{date}T03:00:00+00:00"))
}

/// The btrfs facts recorded for `name`, in row order: (date, parent).
fn recorded(dir: &Path, name: &str) -> Vec<(String, Option<String>)> {
    let conn = Connection::open(dir.join("cache.sqlite")).unwrap();
    let mut stmt = conn
        .prepare("SELECT btrfs_date, btrfs_parent, kind FROM backups WHERE name = ?1 ORDER BY id")
        .unwrap();
    stmt.query_map([name.as_bytes()], |r| {
        let kind: String = r.get(2)?;
        assert_eq!(kind, "stream");
        Ok((r.get(0)?, r.get(1)?))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// The root caps recorded for `name`, in row order.
fn roots(dir: &Path, name: &str) -> Vec<String> {
    let conn = Connection::open(dir.join("cache.sqlite")).unwrap();
    let mut stmt = conn
        .prepare("SELECT root_cap FROM backups WHERE name = ?1 ORDER BY id")
        .unwrap();
    stmt.query_map([name.as_bytes()], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The stream index (the `.lafs-backup-stream` edge metadata) of `root`.
fn stream_index(root: &str) -> Value {
    let url = format!(
        "{}/uri/{}?t=json",
        common::gateway_url(),
        root.replace(':', "%3A")
    );
    let v: Value = serde_json::from_slice(&common::http_get(&url)).unwrap();
    v[1]["children"][".lafs-backup-stream"][1]["metadata"].clone()
}

fn r(date: &str, parent: Option<&str>) -> (String, Option<String>) {
    (date.to_owned(), parent.map(str::to_owned))
}

/// A `kind: btrfs` job run on simulated dates (every day due, one
/// incremental a chain, chains live 2 days) with the subvolume changed
/// between them: the streams are the planner's, the chain restarts, the
/// oldest chain is forgotten when it expires (its records go, the rest
/// stay restorable), the snapshots no longer needed go, and `receive
/// --as-of` a middle date gives that date's tree in a fresh btrfs.
#[test]
fn a_btrfs_job_follows_the_planner_expires_chains_and_receives() {
    let src = LoopBtrfs::new();
    let data = src.subvolume("data");
    populate(&data);
    let snapshots = src.dir("snapshots");
    let keep = src.dir("keep");
    let tmp = tempfile::tempdir().unwrap();
    let days: Vec<String> = (1..=31).map(|d| d.to_string()).collect();
    let config = grid_config(
        tmp.path(),
        &format!(
            "jobs:\n  - name: home\n    kind: btrfs\n    subvolume: '{}'\n    \
             snapshot_dir: '{}'\n    backup_days: [{}]\n    max_incrementals: 1\n    \
             chain_lifetime_days: 2\n",
            data.display(),
            snapshots.display(),
            days.join(", ")
        ),
    );
    let backup = |date: &str| {
        let run = at(&config, date)
            .args(["--noise", "backup", "--job", "home"])
            .caps_on_stdout()
            .ok();
        // A copy of what the job's snapshot holds, kept out of its reach.
        let copy = keep.join(date);
        common::run_tool(
            "btrfs",
            &[
                "subvolume".as_ref(),
                "snapshot".as_ref(),
                "-r".as_ref(),
                data.as_os_str(),
                copy.as_os_str(),
            ],
        );
        run
    };
    let day = |n: u32| format!("2000-01-0{n}");

    backup(&day(1));
    assert_eq!(recorded(tmp.path(), "home"), [r("2000-01-01", None)]);
    change(&data);
    // --plan says what the run would do, and changes nothing.
    let plan = at(&config, &day(2))
        .args(["backup", "--plan", "--job", "home"])
        .ok();
    assert_eq!(
        plan.stdout,
        format!("home (btrfs {}): due: send i 2000-01-01\n", data.display())
    );
    assert_eq!(recorded(tmp.path(), "home"), [r("2000-01-01", None)]);
    backup(&day(2));
    assert_eq!(
        recorded(tmp.path(), "home"),
        [r("2000-01-01", None), r("2000-01-02", Some("2000-01-01"))]
    );
    // The snapshot of 01-01 is no longer needed as a parent.
    let names = || {
        let mut n: Vec<String> = std::fs::read_dir(&snapshots)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(), ["home-2000-01-02"]);
    // The same date again: nothing is due, nothing recorded, exit 0.
    let again = at(&config, &day(2)).args(["backup", "--job", "home"]).ok();
    assert!(
        again
            .stderr
            .contains("no btrfs stream is due on 2000-01-02"),
        "{}",
        again.stderr
    );
    assert_eq!(recorded(tmp.path(), "home").len(), 2);

    std::fs::write(data.join("day3.txt"), b"three\n").unwrap();
    backup(&day(3));
    // The chain is full (one c, one i): a new c.
    assert_eq!(
        recorded(tmp.path(), "home"),
        [
            r("2000-01-01", None),
            r("2000-01-02", Some("2000-01-01")),
            r("2000-01-03", None)
        ]
    );
    std::fs::write(data.join("day4.txt"), b"four\n").unwrap();
    std::fs::remove_file(data.join("day3.txt")).unwrap();
    let run = backup(&day(4));
    // 01-04: i against 01-03; the first chain (newest 01-02 <= 01-04 - 2)
    // is forgotten.
    assert!(
        run.stderr.contains("the oldest btrfs chain expired"),
        "{}",
        run.stderr
    );
    assert_eq!(
        recorded(tmp.path(), "home"),
        [r("2000-01-03", None), r("2000-01-04", Some("2000-01-03"))]
    );
    std::fs::write(data.join("day5.txt"), b"five\n").unwrap();
    backup(&day(5));
    assert_eq!(
        recorded(tmp.path(), "home"),
        [
            r("2000-01-03", None),
            r("2000-01-04", Some("2000-01-03")),
            r("2000-01-05", None)
        ]
    );
    assert_eq!(names(), ["home-2000-01-05"]);

    // The facts are on the grid too, in each stream's index.
    let roots = roots(tmp.path(), "home");
    let facts: Vec<(String, String)> = roots
        .iter()
        .map(|root| {
            let index = stream_index(root);
            (
                index["btrfs_date"].as_str().unwrap().to_owned(),
                index["btrfs_send"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        facts,
        [
            ("2000-01-03".to_owned(), "c".to_owned()),
            ("2000-01-04".to_owned(), "i 2000-01-03".to_owned()),
            ("2000-01-05".to_owned(), "c".to_owned()),
        ]
    );
    // `list` shows them as stream backups.
    let list = at(&config, &day(5))
        .args(["--json", "list"])
        .caps_on_stdout()
        .ok()
        .of_type("backup");
    assert_eq!(list.len(), 3);
    assert!(list.iter().all(|b| b["kind"] == "stream"), "{list:?}");

    // A middle date, through its chain (c 01-03, i 01-04), into a fresh
    // btrfs: the tree of 01-04, entry by entry.
    let dst = LoopBtrfs::new();
    let run = at(&config, "2000-01-06")
        .args(["--noise", "receive", "home", "--as-of", "2000-01-04"])
        .arg(dst.mnt())
        .ok();
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(run.stderr.contains("2 stream(s)"), "{}", run.stderr);
    assert_same_tree(&keep.join(day(4)), &dst.mnt().join("home-2000-01-04"));
    assert_same_tree(&keep.join(day(3)), &dst.mnt().join("home-2000-01-03"));
    assert!(tree(&dst.mnt().join("home-2000-01-04")).contains_key(Path::new("day4.txt")));

    // A forgotten date has no member: --as-of 01-02 picks nothing.
    let run = at(&config, "2000-01-06")
        .args(["receive", "home", "--as-of", "2000-01-02"])
        .arg(LoopBtrfs::new().mnt())
        .code(2);
    assert!(run.stderr.contains("home"), "{}", run.stderr);
}

/// A real `btrfs send` stream of a fresh snapshot (and the snapshots).
fn send_bytes(snapshot: &Path, parent: Option<&Path>) -> Vec<u8> {
    let mut out = Vec::new();
    Btrfs::default()
        .send(snapshot, parent)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// `send --date` keeps btrsend's contract: stdout is exactly the plan line
/// (never the cap, though `print_to_stdout` is on; the cap goes to the
/// result file), the stream is read from stdin and recorded with its facts;
/// a second call the same date prints nothing and does not read stdin; a
/// stream that ends early, or an empty one, records nothing (exit 1); a bad
/// date is a usage error; NAME need not be a job (btrsend's default
/// schedule). `receive` of a name that is not a btrfs chain is refused.
#[test]
fn send_date_keeps_btrsends_contract() {
    let src = LoopBtrfs::new();
    let data = src.subvolume("data");
    std::fs::write(data.join("f"), b"first\n").unwrap();
    let snaps = BtrfsSnapshots::new(Btrfs::default(), src.dir("snapshots"), "wrapped");
    let s1 = snaps.take(&data, d("2000-01-01")).unwrap();
    let full = send_bytes(&s1, None);
    std::fs::write(data.join("g"), b"second\n").unwrap();
    let s2 = snaps.take(&data, d("2000-01-07")).unwrap();
    let incremental = send_bytes(&s2, Some(&s1));

    let tmp = tempfile::tempdir().unwrap();
    let config = grid_config(tmp.path(), "");
    let send = |date: &str, stdin: &[u8]| {
        at(&config, date)
            .args(["--noise", "send", "--date", date, "wrapped"])
            .write_stdin(stdin.to_vec())
    };

    let run = send("2000-01-01", &full).ok();
    assert_eq!(run.stdout, "c\n");
    assert_eq!(recorded(tmp.path(), "wrapped"), [r("2000-01-01", None)]);
    let results = std::fs::read_to_string(tmp.path().join("results.txt")).unwrap();
    assert_eq!(results.lines().count(), 1);
    assert!(results.contains(&roots(tmp.path(), "wrapped")[0]));

    // The same date again: nothing due, stdin not read (garbage there
    // would fail the stream's check), nothing recorded.
    let run = send("2000-01-01", b"not a stream").ok();
    assert_eq!(run.stdout, "");
    // Not a due day (btrsend's 1, 7, 14, 21): nothing.
    assert_eq!(send("2000-01-02", b"garbage").ok().stdout, "");
    assert_eq!(recorded(tmp.path(), "wrapped").len(), 1);

    let run = send("2000-01-07", &incremental).ok();
    assert_eq!(run.stdout, "i 2000-01-01\n");
    assert_eq!(
        recorded(tmp.path(), "wrapped"),
        [r("2000-01-01", None), r("2000-01-07", Some("2000-01-01"))]
    );

    // A stream that ends early, and an empty one: the plan line, then
    // exit 1 and nothing recorded.
    let run = send("2000-01-14", &incremental[..incremental.len() / 2]).code(1);
    assert_eq!(run.stdout, "i 2000-01-07\n");
    assert!(run.stderr.contains("ends early"), "{}", run.stderr);
    assert!(
        run.stderr.contains("nothing was recorded"),
        "{}",
        run.stderr
    );
    let run = send("2000-01-14", b"").code(1);
    assert_eq!(run.stdout, "i 2000-01-07\n");
    assert!(run.stderr.contains("is empty"), "{}", run.stderr);
    assert_eq!(recorded(tmp.path(), "wrapped").len(), 2);

    // Bad dates: usage errors naming them, before anything is printed.
    for bad in ["2000-13-01", "2000-1-7", "yesterday", ""] {
        let run = at(&config, "2000-01-14")
            .args(["send", "--date", bad, "wrapped"])
            .code(2);
        assert_eq!(run.stdout, "");
        assert!(run.stderr.contains(&format!("{bad:?}")), "{}", run.stderr);
    }

    // The chain through `receive` (its newest member) into a fresh btrfs.
    let dst = LoopBtrfs::new();
    at(&config, "2000-01-14")
        .args(["receive", "wrapped"])
        .arg(dst.mnt())
        .ok();
    assert_same_tree(&s2, &dst.mnt().join("wrapped-2000-01-07"));

    // The facts survive `cache rebuild` (they are in each stream's index
    // on the grid): the planner sees the same chain, and the next due date
    // of the chain is `i` against its newest member.
    let caps = roots(tmp.path(), "wrapped");
    at(&config, "2000-01-14")
        .args(["cache", "rebuild", "--force", "--name", "wrapped"])
        .args(&caps)
        .ok();
    assert_eq!(
        recorded(tmp.path(), "wrapped"),
        [r("2000-01-01", None), r("2000-01-07", Some("2000-01-01"))]
    );
    let list = at(&config, "2000-01-14")
        .args(["--json", "list"])
        .caps_on_stdout()
        .ok()
        .of_type("backup");
    assert!(list.iter().all(|b| b["kind"] == "stream"), "{list:?}");
    assert_eq!(send("2000-01-14", b"").code(1).stdout, "i 2000-01-07\n");

    // A stream backup that is not a btrfs member: receive refuses it.
    at(&config, "2000-01-14")
        .args(["backup", "--stdin", "plain"])
        .write_stdin(b"plain bytes".to_vec())
        .caps_on_stdout()
        .ok();
    let run = at(&config, "2000-01-14")
        .args(["receive", "plain"])
        .arg(dst.mnt())
        .code(2);
    assert!(
        run.stderr.contains("is not a btrfs send stream"),
        "{}",
        run.stderr
    );
}

/// A job whose subvolume is not one is a usage error naming it (no
/// snapshot, nothing recorded); a send that fails (its parent snapshot is
/// gone) records nothing, exits 1 and shows the tool's stderr.
#[test]
fn a_btrfs_job_refuses_a_non_subvolume_and_records_no_failed_send() {
    let src = LoopBtrfs::new();
    let plain = src.dir("plain");
    let data = src.subvolume("data");
    std::fs::write(data.join("f"), b"f\n").unwrap();
    let snapshots = src.dir("snapshots");
    let tmp = tempfile::tempdir().unwrap();
    let job = |name: &str, subvolume: &Path| {
        format!(
            "  - name: {name}\n    kind: btrfs\n    subvolume: '{}'\n    \
             snapshot_dir: '{}'\n",
            subvolume.display(),
            snapshots.display()
        )
    };
    let config = grid_config(
        tmp.path(),
        &format!("jobs:\n{}{}", job("notsub", &plain), job("data", &data)),
    );

    let run = at(&config, "2000-01-01")
        .args(["backup", "--job", "notsub"])
        .code(2);
    assert!(
        run.stderr
            .contains(&format!("{} is not a btrfs subvolume", plain.display())),
        "{}",
        run.stderr
    );

    at(&config, "2000-01-01")
        .args(["backup", "--job", "data"])
        .caps_on_stdout()
        .ok();
    assert_eq!(recorded(tmp.path(), "data"), [r("2000-01-01", None)]);
    // The parent snapshot disappears: the incremental send fails.
    common::run_tool(
        "btrfs",
        &[
            "subvolume".as_ref(),
            "delete".as_ref(),
            snapshots.join("data-2000-01-01").as_os_str(),
        ],
    );
    let run = at(&config, "2000-01-07")
        .args(["backup", "--job", "data"])
        .code(1);
    assert!(run.stderr.contains("btrfs send -p"), "{}", run.stderr);
    assert!(
        run.stderr.contains("ERROR"),
        "the tool's stderr: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("nothing was recorded"),
        "{}",
        run.stderr
    );
    assert_eq!(recorded(tmp.path(), "data"), [r("2000-01-01", None)]);
    // The failed date's snapshot stays for the next run.
    assert!(snapshots.join("data-2000-01-07").exists());
}

/// btrsend's planner vectors through `send --date` with real send streams
/// (the wrapper's part played by the test): on btrsend's test dates
/// (2000-01-01 `c`, 01-07 `i 2000-01-01`, eleven incrementals, `c` on
/// 04-01, and on 06-21 the first chain forgotten while chain 2 gets
/// `i 2000-06-14`), and called every day the first chain goes on 06-19
/// (the days between due days change nothing but the expiry, so 06-18 and
/// 06-19 stand for them). The 12-stream chain left is received whole.
#[test]
fn btrsends_vectors_hold_through_send_date() {
    let src = LoopBtrfs::new();
    let vol = src.subvolume("vol");
    let snaps = BtrfsSnapshots::new(Btrfs::default(), src.dir("snapshots"), "vol");
    // btrsend's due days from 01-01 to 06-21, each with its plan line and
    // the stream btrsend's wrapper would send for it.
    let mut table: Vec<(String, String, Vec<u8>)> = Vec::new();
    let mut previous: Option<String> = None;
    for month in 1..=6 {
        for day in [1, 7, 14, 21] {
            let date = format!("2000-{month:02}-{day:02}");
            std::fs::write(vol.join(format!("{date}.txt")), date.as_bytes()).unwrap();
            let snapshot = snaps.take(&vol, d(&date)).unwrap();
            let line = match &previous {
                Some(p) if date != "2000-04-01" => format!("i {p}"),
                _ => "c".to_owned(),
            };
            let parent = line.strip_prefix("i ").map(|p| snaps.path(d(p)));
            let stream = send_bytes(&snapshot, parent.as_deref());
            table.push((date.clone(), line, stream));
            previous = Some(date);
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let config = grid_config(tmp.path(), "");
    let send = |name: &str, date: &str, stdin: &[u8]| {
        at(&config, date)
            .args(["send", "--date", date, name])
            .write_stdin(stdin.to_vec())
            .ok()
    };
    let (last, before) = table.split_last().unwrap();
    assert_eq!(
        (last.0.as_str(), last.1.as_str()),
        ("2000-06-21", "i 2000-06-14")
    );

    for name in ["btrsend", "daily"] {
        for (date, line, stream) in before {
            let run = send(name, date, stream);
            assert_eq!(run.stdout, format!("{line}\n"), "{name} on {date}");
            if name == "btrsend" && date == "2000-01-07" {
                // btrsend's test also asks again, and on other days.
                for again in ["2000-01-01", "2000-01-02", "2000-01-08"] {
                    assert_eq!(send(name, again, b"unread").stdout, "", "{again}");
                }
            }
        }
        assert_eq!(recorded(tmp.path(), name).len(), 23, "{name}");
    }

    // btrsend's test: 06-21 forgets chain 1 and sends chain 2's eleventh
    // incremental.
    let run = send("btrsend", &last.0, &last.2);
    assert_eq!(run.stdout, "i 2000-06-14\n");
    assert!(
        run.stderr.contains("forgetting its 12 member(s)"),
        "{}",
        run.stderr
    );
    let chain2: Vec<_> = table[12..]
        .iter()
        .map(|(date, line, _)| r(date, line.strip_prefix("i ")))
        .collect();
    assert_eq!(chain2.len(), 12);
    assert_eq!(recorded(tmp.path(), "btrsend"), chain2);

    // Called every day: nothing on 06-18; chain 1 goes on 06-19, nothing
    // sent; 06-21 sends the same incremental.
    assert_eq!(send("daily", "2000-06-18", b"unread").stdout, "");
    assert_eq!(recorded(tmp.path(), "daily").len(), 23);
    let run = send("daily", "2000-06-19", b"unread");
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.contains("forgetting its 12 member(s)"),
        "{}",
        run.stderr
    );
    assert_eq!(recorded(tmp.path(), "daily"), chain2[..11]);
    assert_eq!(send("daily", &last.0, &last.2).stdout, "i 2000-06-14\n");
    assert_eq!(recorded(tmp.path(), "daily"), chain2);

    // The chain left, 12 streams in one receive: the snapshot of 06-21.
    let dst = LoopBtrfs::new();
    let run = at(&config, "2000-06-22")
        .args(["receive", "daily"])
        .arg(dst.mnt())
        .ok();
    assert!(run.stderr.contains("12 stream(s)"), "{}", run.stderr);
    assert_same_tree(
        &snaps.path(d("2000-06-21")),
        &dst.mnt().join("vol-2000-06-21"),
    );

    // A retention policy keeps the parents of what it keeps: `--keep-last
    // 1` keeps 06-21 and, through it, the whole chain it is received on.
    let run = at(&config, "2000-06-22")
        .args(["forget", "--keep-last", "1", "daily"])
        .ok();
    assert!(
        run.stderr.contains("the parent of a kept btrfs stream"),
        "{}",
        run.stderr
    );
    assert_eq!(recorded(tmp.path(), "daily"), chain2);
}
