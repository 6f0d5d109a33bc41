//! `restore` (and `verify`) of what the everyday round trip of
//! `restore_grid.rs` does not cover (issue 6), against the shared fast grid:
//!
//! * a tree made by Tahoe's own `tahoe backup` (keys `st_mode`, `st_uid`,
//!   `st_gid`, float `mtime`) restores as far as its metadata goes;
//! * character and block devices, a fifo and a socket, restored as root;
//! * a restore run by an unprivileged user (`nobody`): contents, modes and
//!   mtimes come back, ownership is left alone, and each piece of metadata
//!   that cannot be set is reported for its entry (exit 3).
//!
//! Restored trees are checked with the test's own `lstat`/`readlink`/xattr
//! calls, never through the crate's code.

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _, lchown};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::stat::{Mode, SFlag, UtimensatFlags, major, makedev, minor, mknod, utimensat};
use nix::sys::time::TimeSpec;
use serde_json::Value;

// ---------------------------------------------------------------------------
// Fixtures and helpers.

fn assert_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests make device nodes, chown and setcap: run them as root (scripts/test in CI is)"
    );
}

/// Sets the mtime of `path` (never following a symlink); atime is left alone.
fn set_mtime(path: &Path, secs: i64, nsec: i64) {
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &TimeSpec::UTIME_OMIT,
        &TimeSpec::new(secs, nsec),
        UtimensatFlags::NoFollowSymlink,
    )
    .unwrap_or_else(|e| panic!("utimensat {}: {e}", path.display()));
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(path: &Path, uid: u32, gid: u32) {
    lchown(path, Some(uid), Some(gid)).unwrap();
}

fn make_node(path: &Path, kind: SFlag, major_: u64, minor_: u64) {
    mknod(
        path,
        kind,
        Mode::from_bits_truncate(0o600),
        makedev(major_, minor_),
    )
    .unwrap_or_else(|e| panic!("mknod {}: {e}", path.display()));
}

fn mtime_ns(md: &fs::Metadata) -> i128 {
    i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec())
}

/// One entry of a tree, as compared.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// Full `st_mode`, type bits included.
    mode: u32,
    uid: u32,
    gid: u32,
    mtime_ns: i128,
    /// (major, minor) of a character or block device.
    rdev: Option<(u64, u64)>,
    /// A file's bytes or a symlink's target.
    content: Vec<u8>,
    /// Extended attributes, sorted by name.
    xattrs: Vec<(String, Vec<u8>)>,
}

/// Every entry below `root` (the root itself as ""), by relative path.
fn walk(root: &Path) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    let mut todo = vec![(root.to_owned(), String::new())];
    while let Some((path, rel)) = todo.pop() {
        let md = fs::symlink_metadata(&path).unwrap();
        let ft = md.file_type();
        let content = if ft.is_file() {
            fs::read(&path).unwrap()
        } else if ft.is_symlink() {
            use std::os::unix::ffi::OsStrExt as _;
            fs::read_link(&path)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec()
        } else {
            Vec::new()
        };
        let rdev = (ft.is_char_device() || ft.is_block_device())
            .then(|| (major(md.rdev()), minor(md.rdev())));
        let mut xattrs: Vec<(String, Vec<u8>)> = xattr::list(&path)
            .unwrap()
            .map(|n| {
                let value = xattr::get(&path, &n).unwrap().unwrap_or_default();
                (n.to_string_lossy().into_owned(), value)
            })
            .collect();
        xattrs.sort();
        if ft.is_dir() {
            for e in fs::read_dir(&path).unwrap() {
                let e = e.unwrap();
                let name = e.file_name().into_string().expect("UTF-8 test names");
                let child = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                todo.push((e.path(), child));
            }
        }
        out.insert(
            rel,
            Entry {
                mode: md.mode(),
                uid: md.uid(),
                gid: md.gid(),
                mtime_ns: mtime_ns(&md),
                rdev,
                content,
                xattrs,
            },
        );
    }
    out
}

/// `lafs-backup restore --gateway URL CAP TARGET`, no config: (code, stderr).
fn restore(cap: &str, target: &Path) -> (i32, String) {
    let out = common::lafs()
        .args(["restore", "--gateway", &common::gateway_url(), cap])
        .arg(target)
        .output();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), stderr)
}

/// `lafs-backup verify --gateway URL [--content] CAP PATH`: (code, stdout).
fn verify(cap: &str, path: &Path, content: bool) -> (i32, String) {
    let mut cmd = common::lafs().args(["verify", "--gateway", &common::gateway_url()]);
    if content {
        cmd = cmd.arg("--content");
    }
    let out = cmd.arg(cap).arg(path).output();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 4,
        "verify could not run ({code}):\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (code, stdout)
}

/// `SECONDS.NANOSECONDS` (as `verify` prints times) in nanoseconds.
fn parse_ns(text: &str) -> i128 {
    let (secs, nanos) = text.split_once('.').expect("SECONDS.NANOSECONDS");
    assert_eq!(nanos.len(), 9, "{text}");
    secs.parse::<i128>().unwrap() * 1_000_000_000 + nanos.parse::<i128>().unwrap()
}

/// `text` with every cap (`URI:…` up to white space or a quote) cut short,
/// for assertion messages that show a tool's output.
fn redact(text: &[u8]) -> String {
    common::redact(&String::from_utf8_lossy(text))
}

/// The entries named by warnings on stderr (`… WARN PATH: WHY`), with why.
fn warnings(stderr: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in stderr.lines() {
        let Some((_, rest)) = line.split_once(" WARN ") else {
            continue;
        };
        let (path, why) = rest.trim_start().split_once(": ").unwrap_or((rest, ""));
        out.entry(path.to_owned()).or_default().push(why.to_owned());
    }
    out
}

// ---------------------------------------------------------------------------
// 1. A tree made by `tahoe backup`.

/// Runs the real `tahoe backup SRC ROOT/bk` (ROOT a fresh mutable directory,
/// the CLI with a client dir of its own) and returns the `Latest` snapshot's
/// read-only dircap and its `t=json` listing.
fn tahoe_backup(src: &Path, work: &Path) -> (String, Value) {
    let url = common::gateway_url();
    let agent = common::http_agent();
    let mut resp = agent
        .post(format!("{url}/uri?t=mkdir"))
        .send_empty()
        .unwrap();
    let body = resp.body_mut().read_to_string().unwrap();
    assert_eq!(resp.status(), 200, "mkdir: {}", redact(body.as_bytes()));
    let root = body.trim().to_owned();

    let client = common::tahoe_client_dir(work, &url);
    let out = Command::new(common::tahoe_cli())
        .arg("-d")
        .arg(&client)
        .arg("backup")
        .arg(src)
        .arg(format!("{root}/bk"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tahoe backup failed ({}):\n{}\n{}",
        out.status,
        redact(&out.stdout),
        redact(&out.stderr)
    );

    let mut resp = agent
        .get(format!("{url}/uri/{root}/bk/Latest?t=json"))
        .header("Accept", "text/plain")
        .call()
        .unwrap();
    let body = resp.body_mut().read_to_string().unwrap();
    assert_eq!(
        resp.status(),
        200,
        "GET bk/Latest: {}",
        redact(body.as_bytes())
    );
    let listing: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(listing[0], "dirnode");
    let cap = listing[1]["ro_uri"].as_str().unwrap().to_owned();
    assert!(cap.starts_with("URI:DIR2-CHK:"), "Latest is not immutable");
    (cap, listing)
}

#[test]
fn tahoe_backup_tree_restores_as_far_as_its_metadata_goes() {
    assert_root();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    // Contents are unique to this test: no concurrent identical uploads.
    fs::write(
        src.join("big.bin"),
        common::pseudo_random_bytes(3000, 0x7a40_0e06),
    )
    .unwrap();
    fs::write(src.join("small.txt"), b"made by tahoe backup\n").unwrap();
    fs::write(src.join("empty"), b"").unwrap();
    fs::create_dir_all(src.join("sub/empty-dir")).unwrap();
    fs::write(
        src.join("sub/inner.bin"),
        common::pseudo_random_bytes(200, 0x7a40_0e07),
    )
    .unwrap();
    chown(&src.join("sub/inner.bin"), 4321, 8765);
    chown(&src.join("sub"), 1234, 5678);
    for (rel, mode) in [
        ("big.bin", 0o640),
        ("small.txt", 0o604),
        ("empty", 0o444),
        ("sub/inner.bin", 0o600),
        ("sub/empty-dir", 0o711),
        ("sub", 0o750),
    ] {
        set_mode(&src.join(rel), mode);
    }
    // Children before parents, so directory mtimes stay put. `.5` and `.25`
    // are exact as floats, the others are not.
    for (rel, secs, nsec) in [
        ("big.bin", 1_577_934_245, 123_456_789),
        ("small.txt", 1_600_000_000, 987_654_321),
        ("empty", 1_546_300_800, 500_000_000),
        ("sub/inner.bin", 1_700_000_000, 1),
        ("sub/empty-dir", 1_400_000_000, 250_000_000),
        ("sub", 1_614_834_367, 654_321_000),
        ("", 1_650_000_000, 111_111_111),
    ] {
        set_mtime(&src.join(rel), secs, nsec);
    }

    let (cap, listing) = tahoe_backup(&src, tmp.path());
    // Really tahoe backup's format: its keys, none of ours; a CHK file.
    let big = &listing[1]["children"]["big.bin"][1];
    assert!(
        big["ro_uri"].as_str().unwrap().starts_with("URI:CHK:"),
        "big.bin is not a CHK file"
    );
    let meta = &big["metadata"];
    assert!(meta["st_mode"].is_u64(), "{meta}");
    assert!(meta["st_uid"].is_u64(), "{meta}");
    assert!(meta["mtime"].is_f64(), "{meta}");
    for ours in ["mode", "uid", "mtime_ns"] {
        assert!(meta.get(ours).is_none(), "{ours} in {meta}");
    }
    assert!(listing[1]["children"].get(".lafs-backup-root").is_none());

    let out = tmp.path().join("out");
    let (code, stderr) = restore(&cap, &out);
    assert_eq!(code, 0, "{stderr}");

    // Same names, types, bytes, modes, owners; mtimes to within the
    // float's precision (a microsecond). The root's own metadata is not
    // in a tahoe backup tree: only its children are compared.
    let (a, b) = (walk(&src), walk(&out));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "different names"
    );
    for (rel, ea) in a.iter().filter(|(rel, _)| !rel.is_empty()) {
        let eb = &b[rel];
        assert_eq!(
            ea.mode, eb.mode,
            "{rel}: mode {:o} vs {:o}",
            ea.mode, eb.mode
        );
        assert_eq!((ea.uid, ea.gid), (eb.uid, eb.gid), "{rel}: owner");
        assert_eq!(ea.content, eb.content, "{rel}: content");
        assert!(eb.xattrs.is_empty(), "{rel}: xattrs {:?}", eb.xattrs);
        let diff = (ea.mtime_ns - eb.mtime_ns).abs();
        assert!(
            diff <= 1_000,
            "{rel}: mtime {} restored as {} ({diff} ns off)",
            ea.mtime_ns,
            eb.mtime_ns
        );
    }
    assert!(fs::symlink_metadata(&out).unwrap().is_dir());

    // verify against the restore: identical, contents included.
    let (code, stdout) = verify(&cap, &out, true);
    assert_eq!((code, stdout.as_str()), (0, ""), "verify of the restore");

    // verify against the unchanged source: identical too. Every key tahoe
    // backup recorded compares equal, its float mtimes within a microsecond
    // (docs/verify.md), and the root, whose metadata such a tree does not
    // hold, is not compared.
    let (code, stdout) = verify(&cap, &src, true);
    assert_eq!((code, stdout.as_str()), (0, ""), "verify of the source");

    // A real change to what tahoe backup recorded is reported, an mtime
    // moved by 2 µs too.
    set_mode(&src.join("small.txt"), 0o600);
    chown(&src.join("sub/inner.bin"), 4321, 4321);
    set_mtime(&src.join("big.bin"), 1_577_934_245, 123_458_789);
    let (code, stdout) = verify(&cap, &src, false);
    assert_eq!(code, 4);
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("mtime /big.bin: backup "))
        .unwrap_or_else(|| panic!("no mtime line for big.bin in:\n{stdout}"));
    let (backup, live) = line["mtime /big.bin: backup ".len()..]
        .split_once(", live ")
        .expect(line);
    assert_eq!(parse_ns(live), 1_577_934_245_123_458_789, "{line}");
    let off = parse_ns(live) - parse_ns(backup);
    assert!((1_000..=3_000).contains(&off), "{line}");
    for want in [
        "mode /small.txt: backup 100604, live 100600",
        "owner /sub/inner.bin: backup 4321:8765, live 4321:4321",
    ] {
        assert!(
            stdout.lines().any(|l| l == want),
            "no {want:?} in:\n{stdout}"
        );
    }
}

// ---------------------------------------------------------------------------
// 2. Device nodes, a fifo and a socket, as root.

#[test]
fn devices_fifo_and_socket_round_trip_as_root() {
    assert_root();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("dev")).unwrap();
    make_node(&src.join("null"), SFlag::S_IFCHR, 1, 3);
    make_node(&src.join("loop200"), SFlag::S_IFBLK, 7, 200);
    // Numbers beyond the old 8-bit encodings.
    make_node(&src.join("dev/big-numbers"), SFlag::S_IFBLK, 259, 65_600);
    make_node(&src.join("dev/chr"), SFlag::S_IFCHR, 4095, 1_048_575);
    nix::unistd::mkfifo(&src.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
    drop(UnixListener::bind(src.join("socket")).unwrap());
    fs::write(src.join("plain"), b"a plain file beside the special ones").unwrap();
    for (rel, mode, uid, gid) in [
        ("null", 0o666, 0, 0),
        ("loop200", 0o660, 0, 6),
        ("dev/big-numbers", 0o640, 1234, 5678),
        ("dev/chr", 0o2620, 0, 5),
        ("fifo", 0o640, 1234, 5678),
        ("socket", 0o755, 4321, 8765),
        ("dev", 0o750, 0, 0),
    ] {
        chown(&src.join(rel), uid, gid);
        set_mode(&src.join(rel), mode);
    }
    for (i, rel) in [
        "null",
        "loop200",
        "dev/big-numbers",
        "dev/chr",
        "fifo",
        "socket",
        "plain",
        "dev",
        "",
    ]
    .iter()
    .enumerate()
    {
        set_mtime(
            &src.join(rel),
            1_600_000_000 + i as i64,
            123_456_789 + i as i64,
        );
    }
    let cfg = common::write_backup_config(tmp.path(), &src, &common::gateway_url(), "");
    let cap = common::backup_root_cap(&cfg);

    let out = tmp.path().join("out");
    let (code, stderr) = restore(&cap, &out);
    assert_eq!(code, 0, "{stderr}");
    let (a, b) = (walk(&src), walk(&out));
    assert_eq!(a, b);
    let ft = |rel: &str| fs::symlink_metadata(out.join(rel)).unwrap().file_type();
    assert!(ft("null").is_char_device());
    assert!(ft("loop200").is_block_device());
    assert!(ft("dev/big-numbers").is_block_device());
    assert!(ft("dev/chr").is_char_device());
    assert!(ft("fifo").is_fifo());
    assert!(ft("socket").is_socket());
    assert_eq!(b["null"].rdev, Some((1, 3)));
    assert_eq!(b["loop200"].rdev, Some((7, 200)));
    assert_eq!(b["dev/big-numbers"].rdev, Some((259, 65_600)));
    assert_eq!(b["dev/chr"].rdev, Some((4095, 1_048_575)));
    assert_eq!(b["dev/chr"].mode, 0o022620);
    assert_eq!((b["socket"].uid, b["socket"].gid), (4321, 8765));

    let (code, stdout) = verify(&cap, &out, true);
    assert_eq!((code, stdout.as_str()), (0, ""), "verify of the restore");
}

// ---------------------------------------------------------------------------
// 3. A restore by an unprivileged user.

/// `(uid, gid)` of nobody:nogroup.
fn nobody() -> (u32, u32) {
    let user = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("a user nobody");
    let group = nix::unistd::Group::from_name("nogroup")
        .unwrap()
        .expect("a group nogroup");
    (user.uid.as_raw(), group.gid.as_raw())
}

/// Runs the binary at `bin` as nobody:nogroup with no supplementary
/// groups, with the checks of every run (`common::lafs`); ARGS follow.
fn as_nobody(bin: &Path) -> common::Lafs {
    common::Lafs::in_shell(
        r#"b=$1; shift; exec setpriv --reuid=nobody --regid=nogroup --clear-groups "$b" "$@""#,
    )
    .arg(bin)
}

/// The lafs-backup binary, where nobody can run it: cargo's own when
/// nobody can reach it, else a copy in `dir` (which nobody must be able to
/// enter).
fn binary_for_nobody(dir: &Path) -> PathBuf {
    let built = PathBuf::from(common::BIN);
    let runs = as_nobody(&built).arg("--version").run().code == 0;
    if runs {
        return built;
    }
    let copy = dir.join("lafs-backup");
    fs::copy(&built, &copy).unwrap();
    set_mode(&copy, 0o755);
    copy
}

/// The restored entry `eb` at `rel` has the mode, mtime and content of
/// the source's `ea`.
fn assert_same_mode_mtime_content(rel: &str, ea: &Entry, eb: &Entry) {
    assert_eq!(
        eb.mode, ea.mode,
        "{rel}: mode {:o} vs {:o}",
        ea.mode, eb.mode
    );
    assert_eq!(eb.mtime_ns, ea.mtime_ns, "{rel}: mtime");
    assert_eq!(eb.content, ea.content, "{rel}: content");
}

/// `restore [OPTS] --gateway URL CAP TMP/target` run by nobody, into a
/// TARGET nobody owns: (exit code, stderr, TARGET).
fn restore_as_nobody(tmp: &Path, cap: &str, opts: &[&str]) -> (Option<i32>, String, PathBuf) {
    let (nobody_uid, nogroup_gid) = nobody();
    let target = tmp.join("target");
    fs::create_dir(&target).unwrap();
    chown(&target, nobody_uid, nogroup_gid);
    let out = as_nobody(&binary_for_nobody(tmp))
        .arg("restore")
        .args(opts)
        .args(["--gateway", &common::gateway_url(), cap])
        .arg(&target)
        .output();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), stderr, target)
}

#[test]
fn restore_without_root_reports_each_failure_and_exits_3() {
    assert_root();
    let (nobody_uid, nogroup_gid) = nobody();
    let tmp = tempfile::tempdir().unwrap();
    // nobody must reach TARGET (and maybe the binary) through it.
    set_mode(tmp.path(), 0o755);
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("other-dir")).unwrap();
    let file = |rel: &str, seed: u64, mode: u32, uid: u32, gid: u32| {
        let path = src.join(rel);
        fs::write(&path, common::pseudo_random_bytes(300, seed)).unwrap();
        chown(&path, uid, gid);
        set_mode(&path, mode);
        path
    };
    file("root-file", 0x6e0b_0d01, 0o644, 0, 0);
    file("other-file", 0x6e0b_0d02, 0o640, 4321, 8765);
    file("setuid-file", 0x6e0b_0d03, 0o4755, 0, 0);
    file("other-dir/inner", 0x6e0b_0d04, 0o600, 4321, 8765);
    let caps = file("cap-file", 0x6e0b_0d05, 0o755, 0, 0);
    common::run_tool("setcap", &["cap_net_raw+ep".as_ref(), caps.as_os_str()]);
    let trusted = file("trusted-file", 0x6e0b_0d06, 0o644, 0, 0);
    xattr::set(&trusted, "trusted.lafs-test", b"root only").unwrap();
    let user = file("user-xattr-file", 0x6e0b_0d07, 0o664, 4321, 8765);
    xattr::set(&user, "user.note", b"anyone may set this").unwrap();
    make_node(&src.join("char-dev"), SFlag::S_IFCHR, 1, 3);
    set_mode(&src.join("char-dev"), 0o666);
    nix::unistd::mkfifo(&src.join("fifo-node"), Mode::from_bits_truncate(0o640)).unwrap();
    chown(&src.join("fifo-node"), 1234, 5678);
    std::os::unix::fs::symlink("root-file", src.join("a-link")).unwrap();
    chown(&src.join("a-link"), 4321, 8765);
    chown(&src.join("other-dir"), 4321, 8765);
    set_mode(&src.join("other-dir"), 0o750);
    set_mode(&src, 0o751);
    for (i, rel) in [
        "root-file",
        "other-file",
        "setuid-file",
        "other-dir/inner",
        "cap-file",
        "trusted-file",
        "user-xattr-file",
        "char-dev",
        "fifo-node",
        "a-link",
        "other-dir",
        "",
    ]
    .iter()
    .enumerate()
    {
        set_mtime(
            &src.join(rel),
            1_650_000_000 + i as i64,
            987_654_321 - i as i64,
        );
    }
    let cfg = common::write_backup_config(tmp.path(), &src, &common::gateway_url(), "");
    let cap = common::backup_root_cap(&cfg);

    let (code, stderr, target) = restore_as_nobody(tmp.path(), &cap, &[]);
    assert_eq!(code, Some(3), "{stderr}");

    // Each failure is reported by name, and nothing else is.
    let reported = warnings(&stderr);
    assert_eq!(
        reported.keys().collect::<Vec<_>>(),
        ["cap-file", "char-dev", "trusted-file"],
        "{stderr}"
    );
    for (rel, word) in [
        ("cap-file", "capabilit"),
        ("char-dev", "device"),
        ("trusted-file", "trusted.lafs-test"),
    ] {
        assert!(
            reported[rel].iter().any(|why| why.contains(word)),
            "{rel}: no {word:?} in {:?}",
            reported[rel]
        );
    }

    // Everything else is back, with contents, modes, mtimes and the
    // xattrs an ordinary user may set; all of it owned by nobody.
    let (a, b) = (walk(&src), walk(&target));
    let want: Vec<_> = a.keys().filter(|k| *k != "char-dev").collect();
    assert_eq!(b.keys().collect::<Vec<_>>(), want, "restored names");
    for (rel, eb) in &b {
        let ea = &a[rel];
        assert_eq!((eb.uid, eb.gid), (nobody_uid, nogroup_gid), "{rel}: owner");
        assert_same_mode_mtime_content(rel, ea, eb);
        let settable: Vec<_> = ea
            .xattrs
            .iter()
            .filter(|(n, _)| n.starts_with("user."))
            .cloned()
            .collect();
        assert_eq!(eb.xattrs, settable, "{rel}: xattrs");
    }
    assert_eq!(b["setuid-file"].mode, 0o104755);
    assert_eq!(b["user-xattr-file"].xattrs.len(), 1);
    assert_eq!(b[""].mode, 0o040751);
}

/// A restore by nobody of hard links whose first name lies in a directory
/// (or beneath one) whose final mode denies its owner search: the later
/// names are linked before those modes are applied, and every directory
/// still gets its own mode and mtime.
#[test]
fn restore_without_root_links_hard_links_beneath_closed_directories() {
    assert_root();
    let tmp = tempfile::tempdir().unwrap();
    set_mode(tmp.path(), 0o755);
    let src = tmp.path().join("src");
    // `a-closed` (mode 0600: no search) holds the first name of one inode;
    // `b-outer` (0400) holds `inner` (0755), which holds the first name
    // of another; `z` holds the later names, met after both are done.
    fs::create_dir_all(src.join("a-closed")).unwrap();
    fs::create_dir_all(src.join("b-outer/inner")).unwrap();
    fs::create_dir_all(src.join("z")).unwrap();
    fs::write(src.join("a-closed/first"), b"one inode\n").unwrap();
    fs::write(
        src.join("b-outer/inner/first"),
        common::pseudo_random_bytes(5000, 0x16_0003),
    )
    .unwrap();
    fs::hard_link(src.join("a-closed/first"), src.join("z/later")).unwrap();
    fs::hard_link(src.join("b-outer/inner/first"), src.join("z/later2")).unwrap();
    fs::hard_link(src.join("b-outer/inner/first"), src.join("z/later3")).unwrap();
    set_mode(&src.join("a-closed"), 0o600);
    set_mode(&src.join("b-outer"), 0o400);
    for (i, rel) in [
        "a-closed/first",
        "b-outer/inner/first",
        "b-outer/inner",
        "a-closed",
        "b-outer",
        "z",
        "",
    ]
    .iter()
    .enumerate()
    {
        set_mtime(&src.join(rel), 1_660_000_000 + i as i64, 1000 + i as i64);
    }
    let cfg = common::write_backup_config(tmp.path(), &src, &common::gateway_url(), "");
    let cap = common::backup_root_cap(&cfg);

    let (code, stderr, target) = restore_as_nobody(tmp.path(), &cap, &["--no-owner"]);
    assert_eq!(code, Some(0), "{stderr}");

    let ino = |rel: &str| fs::symlink_metadata(target.join(rel)).unwrap().ino();
    assert_eq!(ino("z/later"), ino("a-closed/first"));
    assert_eq!(ino("z/later2"), ino("b-outer/inner/first"));
    assert_eq!(ino("z/later3"), ino("b-outer/inner/first"));
    let (a, b) = (walk(&src), walk(&target));
    assert_eq!(b.keys().collect::<Vec<_>>(), a.keys().collect::<Vec<_>>());
    for (rel, ea) in &a {
        let eb = &b[rel];
        assert_same_mode_mtime_content(rel, ea, eb);
    }
}
