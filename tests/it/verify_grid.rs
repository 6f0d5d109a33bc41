//! `verify` against a real grid: a backed-up tree verifies as identical,
//! and each later change to it is reported, hard-link structure included.

use crate::common;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tempfile::TempDir;

/// A source tree, a config and the state files of one backup setup.
struct Setup {
    _tmp: TempDir,
    source: PathBuf,
    config: PathBuf,
}

impl Setup {
    fn new(url: &str) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let source = tmp.path().join("src");
        fs::create_dir(&source).unwrap();
        let config = common::write_backup_config(tmp.path(), &source, url, common::QUICK_RETRY);
        Setup {
            _tmp: tmp,
            source,
            config,
        }
    }

    /// `lafs-backup -c CFG verify ARGS`: (exit code, stdout, stderr).
    fn verify(&self, args: &[&str]) -> (i32, String, String) {
        let out = common::lafs()
            .arg("-c")
            .arg(&self.config)
            .arg("verify")
            .args(args)
            .output();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code().unwrap_or(-1), stdout, stderr)
    }
}

fn set_mtime(path: &Path, t: SystemTime) {
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_times(fs::FileTimes::new().set_modified(t))
        .unwrap();
}

#[test]
fn identical_then_each_change_reported() {
    let url = common::gateway_url();
    let s = Setup::new(&url);
    let src = &s.source;
    common::hostile_tree(src);
    for name in ["content.txt", "mode.txt", "mtime.txt", "gone.txt"] {
        fs::write(src.join(name), format!("{name} body")).unwrap();
    }
    fs::create_dir(src.join("sub")).unwrap();
    fs::write(src.join("sub/xattr.txt"), b"x").unwrap();
    xattr::set(src.join("sub/xattr.txt"), "user.comment", b"hello \x00\xff").unwrap();
    xattr::set(src.join("sub/xattr.txt"), "user.other", b"kept").unwrap();
    xattr::set(src.join("sub"), "user.dir", b"on a directory").unwrap();
    // Large enough to be compressed, to exercise `enc`.
    let text = "compressible line of text\n".repeat(20_000);
    fs::write(src.join("big.txt"), &text).unwrap();
    let root = common::backup_root_cap(&s.config);
    let path = src.to_str().unwrap();

    // Identical: no output, exit 0, with and without --content.
    let (code, out, err) = s.verify(&[&root, path]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(out, "");
    let (code, out, err) = s.verify(&["--content", &root, path]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(out, "");

    // --gateway and a cap: no config, no cache.
    let out = common::lafs()
        .args(["verify", "--gateway", &url, &root, path])
        .ok();
    assert!(out.stdout.is_empty());

    // A NAME resolves through the cache.
    let name = src.file_name().unwrap().to_str().unwrap();
    let (code, out, err) = s.verify(&[name, path]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");

    // The changes.
    let content = src.join("content.txt");
    let before = fs::metadata(&content).unwrap().modified().unwrap();
    fs::write(&content, b"CONTENT.TXT BODY").unwrap();
    set_mtime(&content, before);
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(src.join("mode.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    set_mtime(
        &src.join("mtime.txt"),
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000),
    );
    xattr::set(src.join("sub/xattr.txt"), "user.comment", b"changed").unwrap();
    fs::remove_file(src.join("gone.txt")).unwrap();
    fs::write(src.join("added.txt"), b"new").unwrap();

    let (code, out, err) = s.verify(&["--content", &root, path]);
    assert_eq!(code, 4, "stdout:\n{out}\nstderr:\n{err}");
    for want in [
        "content /content.txt: differs",
        "mode /mode.txt: backup 100644, live 100600",
        "mtime /mtime.txt: backup ",
        "xattr /sub/xattr.txt: user.comment differs",
        "missing /gone.txt",
        "extra /added.txt",
        // Deleting and adding changed the root's mtime.
        "mtime /: backup ",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(want)),
            "no line {want:?} in:\n{out}"
        );
    }
    assert!(
        !out.contains("xattr /sub/xattr.txt: user.other"),
        "an unchanged xattr reported:\n{out}"
    );
    assert_eq!(out.lines().count(), 7, "unexpected lines:\n{out}");

    // Without --content the same-size content change goes unseen.
    let (code, out, _) = s.verify(&[&root, path]);
    assert_eq!(code, 4);
    assert!(!out.contains("content.txt"), "{out}");
    assert_eq!(out.lines().count(), 6, "unexpected lines:\n{out}");

    // --json: one object per difference and a summary.
    let out = common::lafs()
        .args(["--json", "verify", "--gateway", &url, &root, path])
        .output();
    assert_eq!(out.status.code(), Some(4));
    let lines = common::json_lines(&out.stdout);
    let summary = lines.last().unwrap();
    assert_eq!(summary["type"], "verify");
    assert_eq!(summary["differences"], 6);
    assert!(summary["entries"].as_u64().unwrap() > 20);
    assert!(
        lines.iter().any(|v| v["type"] == "difference"
            && v["kind"] == "missing"
            && v["path"] == "/gone.txt")
    );

    // A change of size and of a symlink's target are seen without --content.
    fs::write(src.join("big.txt"), b"short").unwrap();
    fs::remove_file(src.join("dangling")).unwrap();
    std::os::unix::fs::symlink("elsewhere", src.join("dangling")).unwrap();
    let (code, out, _) = s.verify(&[&root, path]);
    assert_eq!(code, 4);
    assert!(
        out.lines()
            .any(|l| l.starts_with("size /big.txt: backup 520000, live 5")),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("target /dangling: ")),
        "{out}"
    );

    // A live tree that does not exist: the verify could not run.
    let (code, _, _) = s.verify(&[&root, "/nonexistent/verify/tree"]);
    assert_eq!(code, 1);
}

#[test]
fn hard_link_structure_is_compared() {
    let url = common::gateway_url();
    let s = Setup::new(&url);
    let src = &s.source;
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    fs::write(src.join("hl1"), b"linked content").unwrap();
    fs::hard_link(src.join("hl1"), src.join("hl2")).unwrap();
    for name in ["b", "c"] {
        fs::write(src.join(name), b"same content").unwrap();
        set_mtime(&src.join(name), t);
    }
    set_mtime(&src.join("hl1"), t);
    let root = common::backup_root_cap(&s.config);
    let path = src.to_str().unwrap();
    let (code, out, err) = s.verify(&[&root, path]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");

    // hl2 becomes a copy (same bytes and metadata), c a link to b.
    fs::remove_file(src.join("hl2")).unwrap();
    fs::write(src.join("hl2"), b"linked content").unwrap();
    set_mtime(&src.join("hl2"), t);
    fs::remove_file(src.join("c")).unwrap();
    fs::hard_link(src.join("b"), src.join("c")).unwrap();
    let (code, out, err) = s.verify(&[&root, path]);
    assert_eq!(code, 4, "stdout:\n{out}\nstderr:\n{err}");
    let lines: Vec<&str> = out.lines().filter(|l| !l.starts_with("mtime /:")).collect();
    assert_eq!(
        lines,
        [
            "hlink /c: live: a hard link of /b, backup: not linked to it",
            "hlink /hl2: backup: a hard link of /hl1, live: not linked to it",
        ],
        "{out}"
    );
}
