//! `restore`'s options and selections against the shared fast grid, each
//! checked against what docs/restore.md promises: `+`/`-` rules, PATHs,
//! `-n`, existing entries (`--overwrite`, `--skip-existing`, directories and
//! symlinks in the way), `--generation`, `--json`. The real binary is
//! driven; restored trees are inspected with lstat/readlink only.
//!
//! No cap may appear on stdout or stderr of a `restore` run, nor on stderr
//! of any command: [`run`] asserts that for every command run here.

use crate::common::{self, Run};

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;

/// Runs `lafs-backup ARGS`, checked by `common::lafs`: no cap on stderr,
/// ever; none on stdout either unless `caps_on_stdout` (`backup`, `list`:
/// there the cap is the answer).
fn run_cmd<I, S>(args: I, caps_on_stdout: bool) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let cmd = common::lafs().args(args);
    if caps_on_stdout {
        cmd.caps_on_stdout().run()
    } else {
        cmd.run()
    }
}

/// Runs `lafs-backup ARGS` (a `restore`): see [`run_cmd`].
fn run<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_cmd(args, false)
}

/// `restore --gateway URL OPTS CAP TARGET SEL...`, without a config.
fn restore_cap(opts: &[&str], cap: &str, target: &Path, sel: &[&str]) -> Run {
    let gw = common::gateway_url();
    let mut args: Vec<OsString> = vec!["restore".into(), "--gateway".into(), gw.into()];
    args.extend(opts.iter().map(OsString::from));
    args.push(cap.into());
    args.push(target.into());
    args.extend(sel.iter().map(OsString::from));
    run(args)
}

/// The paths named in warnings (`... WARN PATH: why`), each once.
fn warned(stderr: &str) -> BTreeSet<String> {
    stderr
        .lines()
        .filter_map(|l| l.split_once(" WARN ").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_once(": ").map(|(p, _)| p.to_owned()))
        .collect()
}

fn set_set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Every path beneath `root` (relative, `/`-separated), the root excluded.
fn tree(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo = vec![(root.to_owned(), String::new())];
    while let Some((dir, rel)) = todo.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if e.file_type().unwrap().is_dir() {
                todo.push((e.path(), r.clone()));
            }
            out.insert(r);
        }
    }
    out
}

/// One entry as compared: type and permission bits, owner, mtime (ns),
/// content or symlink target.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime_ns: i128,
    content: Vec<u8>,
}

fn seen(p: &Path) -> Seen {
    let md = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let content = if md.file_type().is_file() {
        fs::read(p).unwrap()
    } else if md.file_type().is_symlink() {
        use std::os::unix::ffi::OsStringExt;
        fs::read_link(p).unwrap().into_os_string().into_vec()
    } else {
        Vec::new()
    };
    Seen {
        mode: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
        mtime_ns: i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec()),
        content,
    }
}

/// `out/rel` is `src/rel`: same type, mode, owner, mtime, content.
fn assert_same(src: &Path, out: &Path, rel: &str) {
    assert_eq!(seen(&src.join(rel)), seen(&out.join(rel)), "{rel}");
}

fn ino(p: &Path) -> u64 {
    fs::symlink_metadata(p).unwrap().ino()
}

fn set_mtime(p: &Path, secs: u64, nanos: u32) {
    let t = UNIX_EPOCH + Duration::new(secs, nanos);
    fs::File::open(p).unwrap().set_modified(t).unwrap();
}

fn set_mode(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

const DIRS: &[&str] = &["a", "a/b", "skip", "skip/deep"];
const FILES: &[&str] = &[
    "top.txt",
    "top.log",
    "big.bin",
    "a/a.txt",
    "a/x.tmp",
    "a/b/file",
    "a/b/c.txt",
    "a/b/big.txt",
    "skip/s.txt",
    "skip/deep/d.txt",
    "hl1",
    "hl2",
];

/// The source tree: small files (literal caps), two bigger ones (CHK, one
/// compressible), a symlink, a hard-link pair, a fifo; distinct modes and
/// nanosecond mtimes on directories and files.
///
/// `seed` makes every fixture's CHK objects (the bigger files, and the
/// directories through their children's mtimes) its own: tests run in
/// parallel, and two uploads of the same immutable object at the same time
/// make the storage server refuse the second one (its shares are still
/// being written), which would fail a backup on a fresh grid.
fn build_tree(src: &Path, seed: u32) {
    for d in DIRS {
        fs::create_dir_all(src.join(d)).unwrap();
    }
    let small: &[(&str, &[u8])] = &[
        ("top.txt", b"top text\n"),
        ("top.log", b"top log\n"),
        ("a/a.txt", b"a text\n"),
        ("a/x.tmp", b"temporary\n"),
        ("a/b/file", b"nested file\n"),
        ("a/b/c.txt", b"c text\n"),
        ("skip/s.txt", b"skipped\n"),
        ("skip/deep/d.txt", b"deep\n"),
        ("hl1", b"hard linked\n"),
    ];
    for (p, c) in small {
        fs::write(src.join(p), c).unwrap();
    }
    fs::write(
        src.join("big.bin"),
        common::pseudo_random_bytes(3000, u64::from(seed)),
    )
    .unwrap();
    fs::write(
        src.join("a/b/big.txt"),
        format!("a line of text {seed}\n").repeat(400),
    )
    .unwrap();
    fs::hard_link(src.join("hl1"), src.join("hl2")).unwrap();
    symlink("a/a.txt", src.join("link")).unwrap();
    common::run_tool("mkfifo", &[src.join("fifo").as_os_str()]);
    set_mode(&src.join("a/a.txt"), 0o640);
    set_mode(&src.join("a/b/file"), 0o604);
    set_mode(&src.join("top.log"), 0o600);
    for (i, f) in FILES.iter().enumerate() {
        if *f != "hl2" {
            set_mtime(
                &src.join(f),
                1_600_000_000 + i as u64,
                100_000_000 + seed * 1000 + i as u32,
            );
        }
    }
    // Directories last (their children changed them), deepest first.
    for (i, (d, mode)) in [
        ("skip/deep", 0o755),
        ("a/b", 0o710),
        ("skip", 0o751),
        ("a", 0o750),
        ("", 0o755),
    ]
    .into_iter()
    .enumerate()
    {
        set_mode(&src.join(d), mode);
        set_mtime(
            &src.join(d),
            1_500_000_000 + i as u64,
            seed * 1000 + i as u32,
        );
    }
}

/// Every entry of the tree, relative.
fn all_entries() -> BTreeSet<String> {
    let mut s = set_set(DIRS);
    s.extend(set_set(FILES));
    s.insert("link".into());
    s.insert("fifo".into());
    s
}

struct Fixture {
    tmp: tempfile::TempDir,
    src: PathBuf,
    cfg: PathBuf,
    cap: String,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir(&src).unwrap();
        static SEED: AtomicU32 = AtomicU32::new(1);
        build_tree(&src, SEED.fetch_add(1, Ordering::Relaxed));
        let cfg = common::write_backup_config(tmp.path(), &src, &common::gateway_url(), "");
        let cap = backup(&cfg);
        Fixture { tmp, src, cfg, cap }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// `restore` of the whole backup by cap with `opts`, into `target`.
    fn restore(&self, opts: &[&str], target: &Path, sel: &[&str]) -> Run {
        restore_cap(opts, &self.cap, target, sel)
    }
}

/// [`common::backup_root_cap`], with stderr checked for caps too.
fn backup(cfg: &Path) -> String {
    let out = run_cmd(
        [
            OsStr::new("-c"),
            cfg.as_os_str(),
            "--json".as_ref(),
            "backup".as_ref(),
        ],
        true,
    );
    assert_eq!(out.code, 0, "backup failed:\n{}", out.stderr);
    out.stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "summary")
        .and_then(|v| v["root_cap"].as_str().map(str::to_owned))
        .expect("a summary line with root_cap")
}

// ---------------------------------------------------------------- rules

/// `+`/`-` rules on top-level entries: an excluded directory is not
/// restored; the rest is, with its metadata. (`-REGEX` rules go after
/// `--`, or the command line parser takes them for options.)
#[test]
fn rules_exclude_a_top_level_directory() {
    let fx = Fixture::new();
    let out = fx.path("out");
    let r = fx.restore(&[], &out, &["--", "-^/skip/"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut want = all_entries();
    want.retain(|p| !p.starts_with("skip"));
    assert_eq!(tree(&out), want);
    for p in &want {
        assert_same(&fx.src, &out, p);
    }
    // TARGET gets the root's metadata.
    assert_same(&fx.src, &out, "");

    // `+\.txt$` then `-.`: every directory matches `-.` (`/a/`), so none is
    // descended into; only the top level's .txt file is restored.
    let out2 = fx.path("out2");
    let r = fx.restore(&[], &out2, &["--", "+\\.txt$", "-."]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(tree(&out2), set_set(&["top.txt"]));
    assert_same(&fx.src, &out2, "top.txt");

    // Directories are tested with a trailing '/', files and symlinks
    // without: `-^/a$` does not exclude the directory a, `-^/link/$` not
    // the symlink link; first match wins (`+^/top` before `-\.txt$`).
    let out4 = fx.path("out4");
    let r = fx.restore(
        &[],
        &out4,
        &[
            "--",
            "-^/a$",
            "-^/link/$",
            "-^/top\\.log$",
            "+^/top",
            "-\\.txt$",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    // `-\.txt$` applies at every depth: only top.txt (kept by `+^/top`)
    // of the .txt files comes back.
    let mut want = all_entries();
    want.remove("top.log");
    want.retain(|p| p == "top.txt" || !p.ends_with(".txt"));
    assert_eq!(tree(&out4), want);

    // A rule that does not compile is a usage error; nothing is made.
    let out3 = fx.path("out3");
    let r = fx.restore(&[], &out3, &["--", "-("]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(!out3.exists());
}

// ---------------------------------------------------------------- paths

#[test]
fn paths_select_entries_and_their_ancestors() {
    let fx = Fixture::new();

    // Several PATHs, one nested, one a directory (with what is beneath it).
    let out = fx.path("out");
    let r = fx.restore(&[], &out, &["top.txt", "a/b/file", "skip/deep", "link"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let want = set_set(&[
        "top.txt",
        "link",
        "a",
        "a/b",
        "a/b/file",
        "skip",
        "skip/deep",
        "skip/deep/d.txt",
    ]);
    assert_eq!(tree(&out), want);
    // Ancestors (a, a/b, skip) are made with their recorded metadata.
    for p in &want {
        assert_same(&fx.src, &out, p);
    }

    // A hard link: the selected name is restored on its own.
    let out_h = fx.path("out-h");
    let r = fx.restore(&[], &out_h, &["hl2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(tree(&out_h), set_set(&["hl2"]));
    assert_eq!(fs::read(out_h.join("hl2")).unwrap(), b"hard linked\n");

    // PATHs that are not in the backup are reported by name (exit 3); the
    // others are restored all the same.
    let out2 = fx.path("out2");
    let r = fx.restore(
        &[],
        &out2,
        &["nope", "a/b/file", "a/missing", "top.txt/under-a-file"],
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(
        warned(&r.stderr),
        set_set(&["nope", "a/missing", "top.txt/under-a-file"]),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("not in the backup"), "{}", r.stderr);
    assert_eq!(tree(&out2), set_set(&["a", "a/b", "a/b/file"]));
    assert_same(&fx.src, &out2, "a/b/file");

    // By NAME through the config's cache, with a trailing slash and `./`.
    let out3 = fx.path("out3");
    let r = run([
        OsStr::new("-c"),
        fx.cfg.as_os_str(),
        "restore".as_ref(),
        "src".as_ref(),
        out3.as_os_str(),
        "./a/b/".as_ref(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        tree(&out3),
        set_set(&["a", "a/b", "a/b/file", "a/b/c.txt", "a/b/big.txt"])
    );
    assert_same(&fx.src, &out3, "a/b/big.txt");

    // Paths and rules mixed (either order), or a path with `..`: usage
    // errors, nothing made.
    for (sel, why) in [
        (&["top.txt", "+\\.txt$"][..], "not both"),
        (&["--", "top.txt", "-^/skip/"], "not both"),
        (&["--", "-^/skip/", "top.txt"], "not both"),
        (&["a/../top.txt"], ".."),
    ] {
        let out4 = fx.path("out4");
        let r = fx.restore(&[], &out4, sel);
        assert_eq!(r.code, 2, "{sel:?}: {}", r.stderr);
        assert!(r.stderr.contains(why), "{sel:?}: {}", r.stderr);
        assert!(!out4.exists(), "{sel:?}");
    }
}

// ---------------------------------------------------------------- dry run

#[test]
fn dry_run_lists_and_writes_nothing() {
    let fx = Fixture::new();
    let out = fx.path("out");
    let mut first: Option<BTreeSet<String>> = None;
    for flag in ["-n", "--dry-run"] {
        let r = fx.restore(&[flag], &out, &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        // TARGET is not even created.
        assert!(!out.exists(), "{flag} created TARGET");
        let lines: Vec<&str> = r.stdout.lines().collect();
        let set: BTreeSet<String> = lines.iter().map(|l| (*l).to_owned()).collect();
        assert_eq!(lines.len(), set.len(), "a line twice:\n{}", r.stdout);
        // The hard link's first name is `f`, the other `h`; which one is
        // first is the restore's choice.
        let hl = (set.contains("f hl1") && set.contains("h hl2"))
            || (set.contains("h hl1") && set.contains("f hl2"));
        assert!(hl, "hard link pair:\n{}", r.stdout);
        let mut want = set_set(&[
            "d a",
            "d a/b",
            "d skip",
            "d skip/deep",
            "f top.txt",
            "f top.log",
            "f big.bin",
            "f a/a.txt",
            "f a/x.tmp",
            "f a/b/file",
            "f a/b/c.txt",
            "f a/b/big.txt",
            "f skip/s.txt",
            "f skip/deep/d.txt",
            "l link",
            "s fifo",
        ]);
        want.extend(
            set.iter()
                .filter(|l| l.ends_with(" hl1") || l.ends_with(" hl2"))
                .cloned(),
        );
        assert_eq!(set, want, "{}", r.stdout);
        if let Some(f) = &first {
            assert_eq!(f, &set);
        }
        first = Some(set);
    }

    // With a selection: the ancestors are listed as `d`, and a PATH that is
    // not in the backup is reported (exit 3), still without writing.
    let r = fx.restore(&["-n"], &out, &["a/b/file", "nope"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(r.stdout, "d a\nd a/b\nf a/b/file\n");
    assert_eq!(warned(&r.stderr), set_set(&["nope"]));
    assert!(!out.exists());

    // Into an existing TARGET holding something else: nothing is touched.
    fs::create_dir(&out).unwrap();
    fs::write(out.join("top.txt"), b"mine").unwrap();
    set_mode(&out, 0o711);
    let before = seen(&out);
    let before_file = seen(&out.join("top.txt"));
    let r = fx.restore(&["-n", "--overwrite"], &out, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("f top.txt\n"), "{}", r.stdout);
    assert_eq!(tree(&out), set_set(&["top.txt"]));
    assert_eq!(seen(&out), before);
    assert_eq!(seen(&out.join("top.txt")), before_file);
}

// ---------------------------------------------------------------- existing entries

#[test]
fn existing_file_is_reported_or_overwritten() {
    let fx = Fixture::new();
    let out = fx.path("out");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("top.txt"), b"not the backup's").unwrap();
    set_mode(&out.join("top.txt"), 0o666);
    let before = seen(&out.join("top.txt"));
    let before_ino = ino(&out.join("top.txt"));

    // Without an option: TARGET is not empty, so the restore is refused
    // once, up front (exit 2), and nothing is written.
    let r = fx.restore(&[], &out, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("is not empty (1 entries)"),
        "{}",
        r.stderr
    );
    assert_eq!(tree(&out), set_set(&["top.txt"]));
    assert_eq!(seen(&out.join("top.txt")), before);

    // --skip-existing: that entry differs, so it is reported and left
    // alone; the rest is restored.
    let r = fx.restore(&["--skip-existing"], &out, &[]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(warned(&r.stderr), set_set(&["top.txt"]), "{}", r.stderr);
    assert_eq!(seen(&out.join("top.txt")), before);
    assert_eq!(ino(&out.join("top.txt")), before_ino);
    assert_eq!(tree(&out), all_entries());
    for p in all_entries().iter().filter(|p| *p != "top.txt") {
        assert_same(&fx.src, &out, p);
    }
    assert!(!tree(&out).iter().any(|p| p.contains(".lafs-restore.")));
    // The summary line on stderr.
    assert!(
        r.stderr
            .lines()
            .any(|l| l.starts_with("lafs-backup: restored ")),
        "{}",
        r.stderr
    );

    // --overwrite: replaced, content and metadata.
    let r = fx.restore(&["--overwrite"], &out, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_same(&fx.src, &out, "top.txt");
    assert_eq!(tree(&out), all_entries());
    // The hard-link pair is still one inode.
    assert_eq!(ino(&out.join("hl1")), ino(&out.join("hl2")));
}

#[test]
fn skip_existing_keeps_complete_files_and_reports_different_ones() {
    let fx = Fixture::new();
    let out = fx.path("out");
    let r = fx.restore(&[], &out, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let inodes: BTreeMap<String, u64> = all_entries()
        .into_iter()
        .filter(|p| !DIRS.contains(&p.as_str()))
        .map(|p| {
            let i = ino(&out.join(&p));
            (p, i)
        })
        .collect();

    // top.txt: another size; top.log: the same size, another mtime;
    // big.bin: the same size and mtime, other bytes (not detectable by
    // design: left alone).
    fs::write(out.join("top.txt"), b"a longer, different text\n").unwrap();
    fs::write(out.join("top.log"), b"TOP LOG\n").unwrap();
    let mut big = fs::read(out.join("big.bin")).unwrap();
    big[0] ^= 0xff;
    let big_mtime = fs::metadata(out.join("big.bin"))
        .unwrap()
        .modified()
        .unwrap();
    fs::write(out.join("big.bin"), &big).unwrap();
    fs::File::open(out.join("big.bin"))
        .unwrap()
        .set_modified(big_mtime)
        .unwrap();
    let changed_txt = seen(&out.join("top.txt"));
    let changed_log = seen(&out.join("top.log"));

    let r = fx.restore(&["--skip-existing"], &out, &[]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(
        warned(&r.stderr),
        set_set(&["top.txt", "top.log"]),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("differs"), "{}", r.stderr);
    // Not overwritten.
    assert_eq!(seen(&out.join("top.txt")), changed_txt);
    assert_eq!(seen(&out.join("top.log")), changed_log);
    assert_eq!(fs::read(out.join("big.bin")).unwrap(), big);
    // Everything else was left alone: the same inodes (nothing renamed
    // over them), hard links included.
    for (p, i) in &inodes {
        assert_eq!(ino(&out.join(p)), *i, "{p}");
    }
    assert_eq!(ino(&out.join("hl1")), ino(&out.join("hl2")));
    for p in all_entries()
        .iter()
        .filter(|p| !["top.txt", "top.log", "big.bin"].contains(&p.as_str()))
    {
        assert_same(&fx.src, &out, p);
    }

    // A missing entry is restored by --skip-existing (that is how an
    // interrupted restore is continued).
    fs::remove_file(out.join("a/b/file")).unwrap();
    let r = fx.restore(&["--skip-existing"], &out, &["a"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_same(&fx.src, &out, "a/b/file");
    assert_eq!(ino(&out.join("a/a.txt")), inodes["a/a.txt"]);

    // --overwrite and --skip-existing together: a usage error.
    let r = fx.restore(&["--overwrite", "--skip-existing"], &out, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

/// An existing directory where the backup has a file is not replaced, not
/// even with --overwrite.
#[test]
fn existing_directory_is_not_replaced_by_a_file() {
    let fx = Fixture::new();
    for (i, opts) in [&["--overwrite"][..], &["--skip-existing"]]
        .into_iter()
        .enumerate()
    {
        let out = fx.path(&format!("out{i}"));
        fs::create_dir_all(out.join("top.txt")).unwrap();
        fs::write(out.join("top.txt/keep"), b"keep me").unwrap();
        let r = fx.restore(opts, &out, &[]);
        assert_eq!(r.code, 3, "{opts:?}: {}", r.stderr);
        assert_eq!(
            warned(&r.stderr),
            set_set(&["top.txt"]),
            "{opts:?}: {}",
            r.stderr
        );
        assert!(fs::symlink_metadata(out.join("top.txt")).unwrap().is_dir());
        assert_eq!(fs::read(out.join("top.txt/keep")).unwrap(), b"keep me");
        let mut want = all_entries();
        want.insert("top.txt/keep".into());
        assert_eq!(tree(&out), want, "{opts:?}");
    }
}

/// An existing symlink where the backup has a directory is never followed:
/// nothing is written where it points, with or without --overwrite, whether
/// the directory is restored whole or only as an ancestor of a PATH.
#[test]
fn existing_symlink_to_a_directory_is_not_followed() {
    let fx = Fixture::new();
    let elsewhere = fx.path("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    set_mode(&elsewhere, 0o700);
    set_mtime(&elsewhere, 1_234_567_890, 5);
    let elsewhere_before = seen(&elsewhere);
    let check_elsewhere = |what: &str| {
        assert_eq!(tree(&elsewhere), BTreeSet::new(), "{what}: written through");
        assert_eq!(seen(&elsewhere), elsewhere_before, "{what}: changed");
    };

    // Without --overwrite (here --skip-existing: a non-empty TARGET needs
    // one of the two): the entry is reported, the symlink stays.
    for (i, sel) in [&[][..], &["a/b/file"], &["a"]].into_iter().enumerate() {
        let out = fx.path(&format!("keep{i}"));
        fs::create_dir(&out).unwrap();
        symlink(&elsewhere, out.join("a")).unwrap();
        let r = fx.restore(&["--skip-existing"], &out, sel);
        assert_eq!(r.code, 3, "{sel:?}: {}", r.stderr);
        assert!(warned(&r.stderr).contains("a"), "{sel:?}: {}", r.stderr);
        assert!(
            fs::symlink_metadata(out.join("a"))
                .unwrap()
                .file_type()
                .is_symlink(),
            "{sel:?}"
        );
        check_elsewhere(&format!("{sel:?}"));
    }

    // --skip-existing: the same (a symlink is not the backup's directory).
    let out = fx.path("skip");
    fs::create_dir(&out).unwrap();
    symlink(&elsewhere, out.join("a")).unwrap();
    let r = fx.restore(&["--skip-existing"], &out, &[]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    check_elsewhere("--skip-existing");

    // --overwrite: the symlink is replaced by the directory, which is
    // restored in full; still nothing where the symlink pointed.
    for (i, sel) in [&[][..], &["a/b/file"]].into_iter().enumerate() {
        let out = fx.path(&format!("over{i}"));
        fs::create_dir(&out).unwrap();
        symlink(&elsewhere, out.join("a")).unwrap();
        let r = fx.restore(&["--overwrite"], &out, sel);
        assert_eq!(r.code, 0, "--overwrite {sel:?}: {}", r.stderr);
        check_elsewhere(&format!("--overwrite {sel:?}"));
        let md = fs::symlink_metadata(out.join("a")).unwrap();
        assert!(md.is_dir(), "--overwrite {sel:?}: a is not a directory");
        assert_same(&fx.src, &out, "a");
        assert_same(&fx.src, &out, "a/b/file");
    }

    // A symlink deeper down (TARGET/a/b) where the backup has a directory,
    // with a PATH beneath it.
    let out = fx.path("deeper");
    fs::create_dir_all(out.join("a")).unwrap();
    symlink(&elsewhere, out.join("a/b")).unwrap();
    let r = fx.restore(&["--skip-existing"], &out, &["a/b/file"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(warned(&r.stderr).contains("a/b"), "{}", r.stderr);
    check_elsewhere("a/b");
}

// ---------------------------------------------------------------- generations

#[test]
fn generation_of_a_named_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("gsrc");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("v.txt"), b"version one\n").unwrap();
    fs::write(src.join("same.txt"), b"unchanged\n").unwrap();
    let cfg = common::write_backup_config(tmp.path(), &src, &common::gateway_url(), "");
    let cap1 = backup(&cfg);
    fs::write(src.join("v.txt"), b"version two, longer\n").unwrap();
    fs::write(src.join("new.txt"), b"new in two\n").unwrap();
    let cap2 = backup(&cfg);
    assert_ne!(cap1, cap2);

    // The generations, from `list --json`.
    let l = run_cmd(
        [
            OsStr::new("-c"),
            cfg.as_os_str(),
            "list".as_ref(),
            "--json".as_ref(),
        ],
        true,
    );
    assert_eq!(l.code, 0, "{}", l.stderr);
    let rows: Vec<Value> = l
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "backup" && v["name"] == "gsrc")
        .collect();
    assert_eq!(rows.len(), 2, "{}", l.stdout);
    let gen_of = |cap: &str| {
        rows.iter()
            .find(|r| r["root_cap"] == cap)
            .and_then(|r| r["generation"].as_u64())
            .unwrap_or_else(|| panic!("no row for a backup:\n{}", l.stdout))
    };
    let (g1, g2) = (gen_of(&cap1), gen_of(&cap2));
    assert!(g1 < g2, "{g1} {g2}");

    let named = |extra: &[&str], name: &str, target: &Path| {
        let mut args: Vec<OsString> = vec!["-c".into(), cfg.clone().into(), "restore".into()];
        args.extend(extra.iter().map(OsString::from));
        args.push(name.into());
        args.push(target.into());
        run(args)
    };

    let first = tmp.path().join("first");
    let r = named(&["--generation", &g1.to_string()], "gsrc", &first);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(tree(&first), set_set(&["v.txt", "same.txt"]));
    assert_eq!(fs::read(first.join("v.txt")).unwrap(), b"version one\n");

    let latest = tmp.path().join("latest");
    let r = named(&[], "gsrc", &latest);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(tree(&latest), set_set(&["v.txt", "same.txt", "new.txt"]));
    assert_eq!(
        fs::read(latest.join("v.txt")).unwrap(),
        b"version two, longer\n"
    );
    for p in ["v.txt", "same.txt", "new.txt"] {
        assert_same(&src, &latest, p);
    }

    // --generation of the latest, explicitly: the same.
    let explicit = tmp.path().join("explicit");
    let r = named(&["--generation", &g2.to_string()], "gsrc", &explicit);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(tree(&explicit), tree(&latest));

    // Usage errors (exit 2), nothing made: --generation with a cap, an
    // unknown name, a generation the name does not have.
    let bad = tmp.path().join("bad");
    let g1s = g1.to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--generation", &g1s], cap1.as_str()),
        (vec![], "no-such-backup"),
        (vec!["--generation", "999999"], "gsrc"),
    ];
    for (extra, name) in cases {
        let r = named(&extra, name, &bad);
        assert_eq!(r.code, 2, "{extra:?}: {}", r.stderr);
        assert!(!bad.exists(), "{extra:?}");
    }
    let r = run([
        OsStr::new("restore"),
        "--gateway".as_ref(),
        common::gateway_url().as_ref(),
        "--generation".as_ref(),
        g1s.as_ref(),
        cap1.as_ref(),
        bad.as_os_str(),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--generation"), "{}", r.stderr);
    assert!(!bad.exists());
}

// ---------------------------------------------------------------- --json

/// `--json restore` (docs/restore.md, "Output"): stdout holds only JSON
/// lines (`planned` per entry of a dry run, `problem` per problem, a
/// `restore` summary last), never a cap.
#[test]
fn json_output() {
    let fx = Fixture::new();
    let with_json = |opts: &[&str], out: &Path, sel: &[&str]| -> (Run, Vec<Value>) {
        let mut args: Vec<OsString> = vec![
            "--json".into(),
            "restore".into(),
            "--gateway".into(),
            common::gateway_url().into(),
        ];
        args.extend(opts.iter().map(OsString::from));
        args.push(fx.cap.clone().into());
        args.push(out.into());
        args.extend(sel.iter().map(OsString::from));
        let r = run(args);
        let lines = r
            .stdout
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\n{}", r.stdout))
            })
            .collect();
        (r, lines)
    };
    let summary = |dry_run: bool, written: u64, skipped: u64, bytes: u64, problems: u64| {
        serde_json::json!({"type": "restore", "dry_run": dry_run, "written": written,
            "skipped": skipped, "bytes": bytes, "problems": problems, "withheld": 0,
            "devices": 0, "setid": 0, "caps": 0})
    };
    let out = fx.path("out");

    // A dry run: the plan, then the summary; nothing written.
    let (r, lines) = with_json(&["-n"], &out, &["a/b", "link", "hl1", "hl2", "fifo"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!out.exists());
    assert_eq!(
        lines.last(),
        Some(&summary(true, 0, 0, 0, 0)),
        "{}",
        r.stdout
    );
    let planned: BTreeSet<(String, String)> = lines[..lines.len() - 1]
        .iter()
        .map(|v| {
            assert_eq!(v["type"], "planned", "{}", r.stdout);
            (
                v["kind"].as_str().unwrap().to_owned(),
                v["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(lines.len() - 1, planned.len(), "{}", r.stdout);
    let kinds = |pairs: &[(&str, &str)]| -> BTreeSet<(String, String)> {
        pairs
            .iter()
            .map(|(k, p)| ((*k).to_owned(), (*p).to_owned()))
            .collect()
    };
    let mut want = kinds(&[
        ("directory", "a"),
        ("directory", "a/b"),
        ("file", "a/b/file"),
        ("file", "a/b/c.txt"),
        ("file", "a/b/big.txt"),
        ("symlink", "link"),
        ("special", "fifo"),
    ]);
    let hl = planned
        .iter()
        .filter(|(_, p)| p == "hl1" || p == "hl2")
        .cloned()
        .collect::<BTreeSet<_>>();
    assert!(
        hl == kinds(&[("file", "hl1"), ("hardlink", "hl2")])
            || hl == kinds(&[("hardlink", "hl1"), ("file", "hl2")]),
        "{}",
        r.stdout
    );
    want.extend(hl);
    assert_eq!(planned, want, "{}", r.stdout);

    // A full restore: only the summary. Every entry is written; the bytes
    // are the files' contents, a hard-linked one once.
    let mut bytes = 0;
    let mut inodes = BTreeSet::new();
    for f in FILES {
        let md = fs::metadata(fx.src.join(f)).unwrap();
        if inodes.insert(md.ino()) {
            bytes += md.len();
        }
    }
    let n = all_entries().len() as u64;
    let (r, lines) = with_json(&[], &out, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(lines, [summary(false, n, 0, bytes, 0)], "{}", r.stdout);
    assert_eq!(tree(&out), all_entries());

    // Again with --skip-existing: every non-directory is left as it was
    // (existing directories are entered and filled again).
    let (r, lines) = with_json(&["--skip-existing"], &out, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(lines.len(), 1, "{}", r.stdout);
    let non_dirs = n - DIRS.len() as u64;
    assert_eq!(lines[0]["skipped"], non_dirs, "{}", r.stdout);
    assert_eq!(lines[0]["bytes"], 0, "{}", r.stdout);
    assert_eq!(lines[0]["problems"], 0, "{}", r.stdout);

    // Problems: a line each (the same as the warnings), before the summary.
    let out2 = fx.path("out2");
    fs::create_dir(&out2).unwrap();
    fs::write(out2.join("top.txt"), b"mine").unwrap();
    let (r, lines) = with_json(&["--skip-existing"], &out2, &["nope", "top.txt", "a/a.txt"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    let problems: BTreeSet<String> = lines
        .iter()
        .filter(|v| v["type"] == "problem")
        .map(|v| {
            assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()), "{v}");
            v["path"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(problems, set_set(&["nope", "top.txt"]), "{}", r.stdout);
    assert_eq!(problems, warned(&r.stderr), "{}", r.stderr);
    assert_eq!(lines.len(), 3, "{}", r.stdout);
    // Written: a/a.txt and its ancestor a.
    let a_txt = fs::metadata(fx.src.join("a/a.txt")).unwrap().len();
    assert_eq!(
        lines.last(),
        Some(&summary(false, 2, 0, a_txt, 2)),
        "{}",
        r.stdout
    );
    assert_eq!(fs::read(out2.join("top.txt")).unwrap(), b"mine");
}

/// Rules are tried on every entry, as the config's filter is during a
/// scan ("first match wins, directories with a trailing '/'"), not only on
/// the top level: entries deeper down are selected by them too, and the
/// directories that hold selected entries are created with their recorded
/// metadata.
#[test]
fn rules_apply_beneath_the_top_level() {
    let fx = Fixture::new();

    // A file pattern deeper down.
    let out = fx.path("out");
    let r = fx.restore(&[], &out, &["--", "-\\.tmp$"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut want = all_entries();
    want.remove("a/x.tmp");
    assert_eq!(tree(&out), want, "-\\.tmp$ must exclude a/x.tmp");

    // A nested directory.
    let out2 = fx.path("out2");
    let r = fx.restore(&[], &out2, &["--", "-^/a/b/"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut want = all_entries();
    want.retain(|p| !p.starts_with("a/b"));
    assert_eq!(tree(&out2), want, "-^/a/b/ must exclude a/b");

    // Only .txt files, in every directory (`+/$` keeps directories).
    let out3 = fx.path("out3");
    let r = fx.restore(&[], &out3, &["--", "+\\.txt$", "+/$", "-."]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let want = set_set(&[
        "a",
        "a/b",
        "skip",
        "skip/deep",
        "top.txt",
        "a/a.txt",
        "a/b/c.txt",
        "a/b/big.txt",
        "skip/s.txt",
        "skip/deep/d.txt",
    ]);
    assert_eq!(tree(&out3), want);
    for p in &want {
        assert_same(&fx.src, &out3, p);
    }
}

/// A PATH beneath another PATH given too is in the backup, and restored
/// (by the outer one): it must not be reported as missing.
#[test]
fn overlapping_paths_are_not_reported() {
    let fx = Fixture::new();
    let out = fx.path("out");
    let r = fx.restore(&[], &out, &["a", "a/b/file"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(warned(&r.stderr).is_empty(), "{}", r.stderr);
}
