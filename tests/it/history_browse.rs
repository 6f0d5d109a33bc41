//! Issue 14 items 2 and 3 against the real grid: `ls` and `cat` (and
//! `restore --stdout`) on the shared three-backup history and on a tree
//! with odd names, a symlink and a compressed file.

use std::fs;
use std::os::unix::ffi::OsStrExt as _;

use base64::Engine as _;

use crate::common::history::{F1, F2, History};
use crate::common::{self, Run, lafs};

fn run(args: &[&str]) -> Run {
    lafs()
        .arg("-c")
        .arg(&History::get().cfg)
        .args(args)
        .env("TZ", "UTC")
        .caps_on_stdout()
        .run()
}

#[test]
fn ls_lists_names_long_recursive_and_json() {
    let r = run(&["ls", "tree@1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "d/\nf\ng\n");
    let r = run(&["ls", "tree", "d"]);
    assert_eq!(r.stdout, "new\nold\n", "{}", r.stderr);
    let r = run(&["ls", "-R", "tree"]);
    assert_eq!(r.stdout, "d/\nd/new\nd/old\ng\n", "{}", r.stderr);
    let r = run(&["ls", "-l", "tree@2", "f"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let fields: Vec<&str> = r.stdout.split_whitespace().collect();
    assert!(fields[0].starts_with("-rw"), "{}", r.stdout);
    assert_eq!(fields[3], F2.len().to_string(), "{}", r.stdout);
    assert_eq!(fields[5], "f");
    let r = run(&["--json", "ls", "tree@2"]);
    let lines = r.of_type("entry");
    assert_eq!(lines.len(), 3, "{}", r.stdout);
    let f = &lines[1];
    assert_eq!(f["path"], "f");
    assert_eq!(f["kind"], "file");
    assert_eq!(f["size"], F2.len());
    assert_eq!(lines[0]["kind"], "dir");
    assert!(f["mtime_ns"].as_i64().is_some(), "{f}");
    // A path that is not there: exit 2 naming it.
    let r = run(&["ls", "tree", "d/nosuch"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("d/nosuch: no such file or directory in the backup"),
        "{}",
        r.stderr
    );
}

#[test]
fn cat_and_restore_stdout_give_the_exact_bytes() {
    let r = run(&["cat", "tree@1", "f"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.as_bytes(), F1);
    let r = run(&["cat", "tree", "f", "--as-of", "2024-01-02T12:00:00Z"]);
    assert_eq!(r.stdout.as_bytes(), F2, "{}", r.stderr);
    let r = run(&["restore", "tree@2", "--stdout", "f"]);
    assert_eq!(r.stdout.as_bytes(), F2, "{}", r.stderr);
    // With a cap and --gateway: no config at all.
    let cap = &History::get().caps[0];
    let r = lafs()
        .args(["cat", cap, "/f", "--gateway", &common::gateway_url()])
        .known_cap(cap)
        .run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.as_bytes(), F1);
    for (args, want) in [
        (
            &["cat", "tree", "f"][..],
            "f: no such file or directory in the backup",
        ),
        (&["cat", "tree", "d"][..], "d: is a directory"),
        (&["cat", "tree", "../etc/passwd"][..], "`..` is not allowed"),
    ] {
        let r = run(args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
    }
}

#[test]
fn odd_names_symlinks_and_compressed_files() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("odd");
    fs::create_dir(&src).unwrap();
    let big: Vec<u8> = b"compressible line of text\n".repeat(2000);
    fs::write(src.join("big.txt"), &big).unwrap();
    fs::write(src.join("tab\there"), b"x").unwrap();
    let raw = std::ffi::OsStr::from_bytes(b"caf\xff");
    fs::write(src.join(raw), b"latin").unwrap();
    std::os::unix::fs::symlink("big.txt", src.join("link")).unwrap();
    let cfg = common::write_backup_config(tmp.path(), &src, &common::gateway_url(), "");
    common::backup_root_cap(&cfg);
    let run =
        |args: &[&str]| -> Run { lafs().arg("-c").arg(&cfg).args(args).caps_on_stdout().run() };
    let r = run(&["ls", "odd"]);
    assert_eq!(
        r.stdout, "big.txt\ncaf\\xff\nlink\ntab\\x09here\n",
        "{}",
        r.stderr
    );
    let r = run(&["cat", "odd", "big.txt"]);
    assert_eq!(r.stdout.len(), big.len(), "{}", r.stderr);
    assert!(r.stdout.as_bytes() == big.as_slice());
    // The escaped form names the file too.
    let r = run(&["cat", "odd", "caf\\xff"]);
    assert_eq!(r.stdout, "latin", "{}", r.stderr);
    let r = run(&["cat", "odd", "link"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--readlink"), "{}", r.stderr);
    let r = run(&["cat", "odd", "link", "--readlink"]);
    assert_eq!(r.stdout, "big.txt", "{}", r.stderr);
    let r = run(&["ls", "-l", "odd", "link"]);
    assert!(r.stdout.starts_with("lrwxrwxrwx"), "{}", r.stdout);
    assert!(
        r.stdout.trim_end().ends_with("link -> big.txt"),
        "{}",
        r.stdout
    );
    let r = run(&["--json", "ls", "odd"]);
    let b64 = base64::engine::general_purpose::STANDARD;
    let caf = r
        .of_type("entry")
        .into_iter()
        .find(|l| l["path"] == "caf\\xff")
        .expect("listed");
    assert_eq!(caf["path_b64"], b64.encode(b"caf\xff"));
    let big_line = r
        .of_type("entry")
        .into_iter()
        .find(|l| l["path"] == "big.txt")
        .unwrap();
    assert_eq!(
        big_line["size"],
        big.len(),
        "the original size, not the stored one"
    );
}
