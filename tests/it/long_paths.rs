//! Trees whose full paths are longer than PATH_MAX (issue 16 item 3), and a
//! `source.path` glob over a name that is not UTF-8: backed up, restored,
//! verified and checked on the real grid. The trees are made and compared
//! through directory descriptors (tests/common/deep.rs), never by full
//! paths, which the kernel refuses past 4096 bytes.

use crate::common::{self, deep};

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::AtFlags;
use nix::unistd::{linkat, symlinkat};
use xattr::FileExt as _;

/// 200-byte directory names: 40 of them make a path of more than 8,000.
fn long_name(c: u8) -> Vec<u8> {
    vec![c; 200]
}

/// `src`: a chain of 40 directories of 200-byte names, with at the bottom
/// a file with an xattr, a symlink to it and a hard link pair; an xattr on
/// a directory at depth 30, and a file half way down.
fn build_deep_source(src: &Path) -> PathBuf {
    std::fs::create_dir(src).unwrap();
    let top = deep::open_dir(src);
    let middle = deep::chain(&top, &long_name(b'd'), 20);
    deep::write_in(&middle, b"middle", b"half way");
    let depth30 = deep::chain(&middle, &long_name(b'd'), 10);
    let dir30 = std::fs::File::from(depth30.try_clone().unwrap());
    dir30.set_xattr("user.depth", b"30").unwrap();
    let bottom = deep::chain(&depth30, &long_name(b'd'), 10);
    let file = deep::write_in(&bottom, b"f", b"at the bottom\n");
    file.set_xattr("user.deep", b"yes").unwrap();
    symlinkat(OsStr::new("f"), &bottom, OsStr::new("link")).unwrap();
    linkat(
        &bottom,
        OsStr::new("f"),
        &bottom,
        OsStr::new("f2"),
        AtFlags::empty(),
    )
    .unwrap();
    let path = src.join(bottom_rel());
    assert!(
        path.as_os_str().len() > 8_000,
        "the chain is longer than 8,000 bytes"
    );
    path
}

/// The bottom of the chain, relative to the source.
fn bottom_rel() -> PathBuf {
    std::iter::repeat_n(OsStr::from_bytes(&long_name(b'd')), 40).collect()
}

/// `lafs-backup -c CFG ARGS` must exit 0: its stdout.
fn run_ok(cfg: &Path, args: &[&OsStr]) -> String {
    let run = common::lafs().arg("-c").arg(cfg).args(args).run();
    assert_eq!(run.code, 0, "{args:?}: {}{}", run.stdout, run.stderr);
    assert!(!run.stderr.contains("too long"), "{}", run.stderr);
    run.stdout
}

/// `lafs-backup -c CFG --json backup` must exit 0 without "too long": its
/// summary line.
fn backup_summary(cfg: &Path) -> serde_json::Value {
    let run = common::lafs()
        .arg("-c")
        .arg(cfg)
        .args(["--json", "backup"])
        .caps_on_stdout()
        .run();
    assert_eq!(run.code, 0, "nothing skipped: {}", run.stderr);
    assert!(!run.stderr.contains("too long"), "{}", run.stderr);
    run.of_type("summary").remove(0)
}

#[test]
fn a_chain_longer_than_path_max_is_backed_up_restored_verified_and_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let bottom = build_deep_source(&src);
    let cfg = common::write_backup_config(tmp.path(), &src, &common::gateway_url(), "");

    let summary = &backup_summary(&cfg);
    assert_eq!(summary["skipped"], 0, "{summary}");
    // The root, 40 directories, `middle`, `f`, `f2` and `link`.
    assert_eq!(summary["entries"], 45, "{summary}");
    let cap = summary["root_cap"].as_str().unwrap().to_owned();

    // The restore target is itself below a path longer than PATH_MAX, and
    // does not exist yet.
    let outer = tmp.path().join("outer");
    std::fs::create_dir(&outer).unwrap();
    let mut target = outer.clone();
    for _ in 0..25 {
        target.push(OsStr::from_bytes(&long_name(b't')));
    }
    target.push("restored");
    assert!(target.as_os_str().len() > 5_000);
    let run = common::lafs()
        .args(["restore", "--gateway", &common::gateway_url(), &cap])
        .arg(&target)
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let source = deep::walk(&src);
    assert_eq!(source.len(), 44);
    let restored = deep::walk(&target);
    assert_eq!(
        source.keys().collect::<Vec<_>>(),
        restored.keys().collect::<Vec<_>>()
    );
    for (path, entry) in &source {
        assert_eq!(
            Some(entry),
            restored.get(path),
            "{}",
            String::from_utf8_lossy(&path[path.len().saturating_sub(40)..])
        );
    }
    let bottom_file = source.keys().find(|k| k.ends_with(b"/f")).unwrap();
    assert_eq!(
        source[bottom_file].xattrs,
        [(b"user.deep".to_vec(), b"yes".to_vec())]
    );

    // verify (with and without --content) finds the restore identical, and
    // the source too; check finds the backup healthy.
    for live in [&target, &src] {
        for opts in [&[][..], &["--content"][..]] {
            let run = common::lafs()
                .arg("verify")
                .args(opts)
                .args(["--gateway", &common::gateway_url(), &cap])
                .arg(live)
                .run();
            assert_eq!(run.code, 0, "verify {opts:?}: {}{}", run.stdout, run.stderr);
            assert_eq!(run.stdout, "", "no difference");
        }
    }
    run_ok(&cfg, &["check".as_ref(), "src".as_ref()]);

    // A change at the bottom is seen by verify, through the long path.
    let bottom = deep::open_dir(&bottom);
    deep::write_in(&bottom, b"f", b"changed at the bottom\n");
    let run = common::lafs()
        .args(["verify", "--gateway", &common::gateway_url(), &cap])
        .arg(&src)
        .run();
    // Exit 4: the backup and the live tree differ; the file and its link
    // twin, each by size and mtime.
    assert_eq!(run.code, 4, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout.lines().count(), 4, "{}", run.stdout);
    assert!(run.stdout.contains("/f: "), "{}", run.stdout);
    assert!(run.stdout.contains("/f2: "), "{}", run.stdout);
}

#[test]
fn a_source_glob_matches_a_directory_whose_name_is_not_utf8() {
    let tmp = tempfile::tempdir().unwrap();
    let x = tmp.path().join("x");
    std::fs::create_dir(&x).unwrap();
    let odd = x.join(OsStr::from_bytes(b"caf\xff"));
    std::fs::create_dir(&odd).unwrap();
    std::fs::write(odd.join("f"), b"in caf\\xff").unwrap();
    let cfg = common::write_backup_config(tmp.path(), &x.join("caf*"), &common::gateway_url(), "");
    let cap = common::backup_root_cap(&cfg);
    let target = tmp.path().join("out");
    let run = common::lafs()
        .args(["restore", "--gateway", &common::gateway_url(), &cap])
        .arg(&target)
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(std::fs::read(target.join("f")).unwrap(), b"in caf\\xff");
}

#[test]
fn a_source_path_longer_than_path_max_is_backed_up_restored_and_verified() {
    let tmp = tempfile::tempdir().unwrap();
    let top = tmp.path().join("top");
    std::fs::create_dir(&top).unwrap();
    // The source root is the bottom of a chain longer than PATH_MAX.
    let mid = deep::chain(&deep::open_dir(&top), &long_name(b's'), 12);
    let bottom = deep::chain(&mid, &long_name(b's'), 13);
    let src_fd = deep::mkdir_in(&bottom, b"src");
    deep::write_in(&src_fd, b"f", b"in a long source\n");
    let sub = deep::mkdir_in(&src_fd, b"sub");
    deep::write_in(&sub, b"g", b"below it\n");
    let mut src = top.clone();
    for _ in 0..25 {
        src.push(OsStr::from_bytes(&long_name(b's')));
    }
    src.push("src");
    assert!(src.as_os_str().len() > 5_000);
    let cfg = common::write_backup_config(tmp.path(), &src, &common::gateway_url(), "");

    let summary = backup_summary(&cfg);
    assert_eq!(summary["skipped"], 0, "{summary}");
    assert_eq!(summary["entries"], 4, "{summary}");
    let cap = summary["root_cap"].as_str().unwrap().to_owned();
    // A second run binds its queue to the same long root: the same backup.
    assert_eq!(backup_summary(&cfg)["root_cap"], cap.as_str());

    let target = tmp.path().join("restored");
    let run = common::lafs()
        .args(["restore", "--gateway", &common::gateway_url(), &cap])
        .arg(&target)
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let source = deep::walk(&src);
    assert_eq!(source, deep::walk(&target));
    for live in [&target, &src] {
        let run = common::lafs()
            .args([
                "verify",
                "--content",
                "--gateway",
                &common::gateway_url(),
                &cap,
            ])
            .arg(live)
            .run();
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
        assert_eq!(run.stdout, "", "no difference");
    }

    // A short live path that is a symlink into the long tree (through a
    // second link half way: a link's target is shorter than PATH_MAX):
    // verify follows it like `realpath` would, past PATH_MAX.
    let rest: PathBuf = std::iter::repeat_n(OsStr::from_bytes(&long_name(b's')), 13)
        .chain([OsStr::new("src")])
        .collect();
    symlinkat(&rest, &mid, OsStr::new("down")).unwrap();
    let first: PathBuf = std::iter::once(OsStr::new("top"))
        .chain(std::iter::repeat_n(OsStr::from_bytes(&long_name(b's')), 12))
        .chain([OsStr::new("down")])
        .collect();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&first, &link).unwrap();
    let run = common::lafs()
        .args([
            "verify",
            "--content",
            "--gateway",
            &common::gateway_url(),
            &cap,
        ])
        .arg(&link)
        .run();
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout, "", "no difference");
}
