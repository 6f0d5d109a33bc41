//! The scan phase end to end: `backup --queue-only` on hostile trees.
//!
//! The queue is decoded here by a small independent reader, so these tests
//! do not trust the crate's own parser to check its own writer.

use crate::common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

/// `backup` writes format v3: its header line binds the queue to the
/// source (`written=T dev=D ino=I source=PATH`, see docs/queue-format.md).
const HEADER: &[u8] = b"#lafs-backup-queue v3 written=";

/// The queue's body: everything after its header line.
fn body_of(bytes: &[u8]) -> &[u8] {
    assert!(bytes.starts_with(HEADER), "queue lacks the v3 header");
    let end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .expect("a header line");
    let header = std::str::from_utf8(&bytes[..end]).expect("the header is UTF-8");
    assert!(valid_header(header), "malformed v3 header: {header:?}");
    &bytes[end + 1..]
}

/// `#lafs-backup-queue v3 written=N dev=N ino=N source=/...`.
fn valid_header(header: &str) -> bool {
    let Some(rest) = header.strip_prefix("#lafs-backup-queue v3 ") else {
        return false;
    };
    let mut parts = rest.splitn(4, ' ');
    let number = |p: Option<&str>, key: &str| {
        p.and_then(|p| p.strip_prefix(key))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    number(parts.next(), "written=")
        && number(parts.next(), "dev=")
        && number(parts.next(), "ino=")
        && parts.next().is_some_and(|p| p.starts_with("source=/"))
}

/// Decodes `\\` and `\xNN`, independently of the crate's escape module.
fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' {
            if s[i + 1] == b'\\' {
                out.push(b'\\');
                i += 2;
            } else {
                assert_eq!(
                    s[i + 1],
                    b'x',
                    "unknown escape in {:?}",
                    String::from_utf8_lossy(s)
                );
                let hex = std::str::from_utf8(&s[i + 2..i + 4]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 4;
            }
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// (raw path, metadata field) per line, in file order.
fn decode_queue(bytes: &[u8]) -> Vec<(Vec<u8>, String)> {
    let body = body_of(bytes);
    assert!(body.ends_with(b"\n"), "queue does not end with a newline");
    body[..body.len() - 1]
        .split(|&b| b == b'\n')
        .map(|line| {
            let split = line
                .iter()
                .rposition(|&b| b == b' ')
                .expect("line has a space");
            (
                unescape(&line[..split]),
                String::from_utf8(line[split + 1..].to_vec()).unwrap(),
            )
        })
        .collect()
}

/// The expected order, computed by plain recursion: post-order with
/// siblings in byte order, root (empty path) last.
fn expected_order(root: &Path) -> Vec<Vec<u8>> {
    fn walk(abs: &Path, rel: &[u8], out: &mut Vec<Vec<u8>>) {
        let mut names: Vec<_> = fs::read_dir(abs)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let mut child = rel.to_vec();
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(name.as_bytes());
            let path = abs.join(&name);
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                walk(&path, &child, out);
            }
            out.push(child);
        }
    }
    let mut out = Vec::new();
    walk(root, b"", &mut out);
    out.push(Vec::new());
    out
}

/// Runs `lafs-backup -c CFG... backup --queue-only ARGS...`, asserts the exit
/// code, and returns stderr.
fn queue_only(configs: &[&Path], args: &[&OsStr], code: i32) -> String {
    let mut cmd = common::lafs();
    for c in configs {
        cmd = cmd.arg("-c").arg(c);
    }
    let out = cmd
        .args(["backup", "--queue-only"])
        .args(args)
        .assert()
        .code(code);
    String::from_utf8_lossy(&out.get_output().stderr).into_owned()
}

/// The queue's paths as strings, in file order.
fn queued_paths(queue: &Path) -> Vec<String> {
    decode_queue(&fs::read(queue).unwrap())
        .into_iter()
        .map(|(p, _)| String::from_utf8(p).unwrap())
        .collect()
}

fn raw(name: &[u8]) -> &OsStr {
    OsStr::from_bytes(name)
}

struct Setup {
    _tmp: TempDir,
    source: PathBuf,
    queue: PathBuf,
    config: PathBuf,
}

/// A source dir, a queue path and a config file pointing at both.
fn setup(extra_config: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("src");
    fs::create_dir(&source).unwrap();
    let queue = tmp.path().join("queue");
    let config = tmp.path().join("cfg.yaml");
    fs::write(
        &config,
        format!(
            "source:\n  path: '{}'\n  queue:\n    path: '{}'\n{extra_config}",
            source.display(),
            queue.display()
        ),
    )
    .unwrap();
    Setup {
        _tmp: tmp,
        source,
        queue,
        config,
    }
}

#[test]
fn hostile_tree_is_queued_completely_in_order_with_metadata() {
    let s = setup("");
    let r = &s.source;
    common::hostile_tree(r);

    let locales = Command::new("locale").arg("-a").output().unwrap();
    assert!(
        String::from_utf8_lossy(&locales.stdout)
            .lines()
            .any(|l| l.eq_ignore_ascii_case("en_US.utf8")),
        "the en_US.UTF-8 locale is missing (.ci/run generates it with localedef)"
    );
    let mut queues = Vec::new();
    for lang in ["C", "en_US.UTF-8"] {
        common::lafs()
            .env("LANG", lang)
            .env("LC_ALL", lang)
            .arg("-c")
            .arg(&s.config)
            .args(["backup", "--queue-only"])
            .ok();
        queues.push(fs::read(&s.queue).unwrap());
    }
    // The entries, not the header: its `written=` is the second each scan
    // began, and two scans may straddle a second.
    assert_eq!(
        body_of(&queues[0]),
        body_of(&queues[1]),
        "the queue depends on the locale"
    );

    let lines = decode_queue(&queues[0]);
    let paths: Vec<Vec<u8>> = lines.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(
        paths,
        expected_order(r),
        "entries missing, doubled or out of order"
    );

    let meta: BTreeMap<Vec<u8>, String> = lines.into_iter().collect();
    for path in &paths {
        let md = fs::symlink_metadata(r.join(raw(path))).unwrap();
        let field = &meta[path];
        let mode = if md.file_type().is_symlink() {
            String::new()
        } else {
            format!("{:o}", md.mode())
        };
        let base = format!("{}:{}:{mode}", md.uid(), md.gid());
        let name = String::from_utf8_lossy(path);
        match path.as_slice() {
            b"acl-file" => assert_eq!(
                *field,
                format!("{base}//u::rw-,u:nobody:rwx,g::r--,m::rwx,o::r--")
            ),
            b"acl-dir" => assert_eq!(
                *field,
                format!(
                    "{base}//u::rwx,g::r-x,o::r-x,d:u::rwx,d:u:nobody:r-x,d:g::r-x,d:m::r-x,d:o::r-x"
                )
            ),
            b"cap-file" => assert_eq!(*field, format!("{base}/cap_net_raw=ep")),
            _ => assert_eq!(*field, base, "{name}"),
        }
    }
    assert_eq!(meta[&b"setuid"[..]].rsplit(':').next(), Some("104755"));
    assert_eq!(meta[&b"fifo"[..]].rsplit(':').next(), Some("10644"));
    assert_eq!(meta[&b"dirlink"[..]].rsplit(':').next(), Some(""));
}

#[test]
fn unreadable_directory_is_reported_and_the_rest_is_queued() {
    let s = setup("");
    // The scan runs as nobody (root would read a mode-000 directory), so
    // everything it needs must be reachable by nobody.
    let tmp = s.source.parent().unwrap();
    fs::set_permissions(tmp, fs::Permissions::from_mode(0o777)).unwrap();
    fs::create_dir_all(s.source.join("ok")).unwrap();
    fs::write(s.source.join("ok/f"), b"f").unwrap();
    fs::create_dir(s.source.join("secret")).unwrap();
    fs::write(s.source.join("secret/hidden"), b"h").unwrap();
    fs::write(s.source.join("z"), b"z").unwrap();
    fs::set_permissions(s.source.join("secret"), fs::Permissions::from_mode(0o000)).unwrap();

    let out = common::Lafs::in_shell(
        r#"exec setpriv --reuid=65534 --regid=65534 --clear-groups "$0" "$@""#,
    )
    .arg("-c")
    .arg(&s.config)
    .args(["backup", "--queue-only"])
    .output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");
    assert!(
        stderr.contains("/secret"),
        "the warning names the directory: {stderr}"
    );
    assert_eq!(queued_paths(&s.queue), ["ok/f", "ok", "secret", "z", ""]);
}

/// Unmounts on drop, so a failing assertion does not leave a mount behind.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn one_file_system_and_cache_directories() {
    let s = setup("");
    let r = &s.source;
    fs::create_dir(r.join("mnt")).unwrap();
    common::run_tool(
        "mount",
        &[
            OsStr::new("-t"),
            OsStr::new("tmpfs"),
            OsStr::new("none"),
            r.join("mnt").as_os_str(),
        ],
    );
    let _mount = Mount(r.join("mnt"));
    fs::write(r.join("mnt/inner"), b"elsewhere").unwrap();
    fs::create_dir(r.join("cache")).unwrap();
    fs::write(
        r.join("cache/CACHEDIR.TAG"),
        b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n",
    )
    .unwrap();
    fs::write(r.join("cache/blob"), b"b").unwrap();

    queue_only(&[&s.config], &[], 0);
    assert_eq!(
        queued_paths(&s.queue),
        ["cache/CACHEDIR.TAG", "cache", "mnt", ""]
    );

    let off = s.queue.with_file_name("off.yaml");
    fs::write(
        &off,
        "source:\n  one_file_system: false\n  exclude_caches: false\n",
    )
    .unwrap();
    queue_only(&[&s.config, &off], &[], 0);
    assert_eq!(
        queued_paths(&s.queue),
        [
            "cache/CACHEDIR.TAG",
            "cache/blob",
            "cache",
            "mnt/inner",
            "mnt",
            ""
        ]
    );
}

#[test]
fn filters_prune_and_rules_are_checked() {
    let s =
        setup("filter:\n  - '+^/keep/($|sub/)'\n  - '-^/keep/'\n  - '-\\.tmp$'\n  - '-/cache/$'\n");
    let r = &s.source;
    fs::create_dir_all(r.join("keep/sub")).unwrap();
    fs::create_dir_all(r.join("keep/other")).unwrap();
    fs::write(r.join("keep/sub/f.tmp"), b"").unwrap();
    fs::write(r.join("keep/sub/f"), b"").unwrap();
    fs::write(r.join("keep/other/f"), b"").unwrap();
    fs::write(r.join("x.tmp"), b"").unwrap();
    fs::create_dir(r.join("cache")).unwrap();
    fs::write(r.join("cache.d"), b"").unwrap();
    fs::create_dir(r.join("top")).unwrap();
    fs::write(r.join("top/cache"), b"a file named cache stays").unwrap();
    queue_only(&[&s.config], &[], 0);
    let paths = queued_paths(&s.queue);
    // First match wins: keep/sub/f.tmp matches the `+` rule before the
    // `.tmp` rule, as in the original tool.
    assert_eq!(
        paths,
        [
            "cache.d",
            "keep/sub/f",
            "keep/sub/f.tmp",
            "keep/sub",
            "keep",
            "top/cache",
            "top",
            ""
        ]
    );

    let bad = s.queue.with_file_name("bad.yaml");
    fs::write(&bad, "filter:\n  - '+ok'\n  - 'no-prefix'\n").unwrap();
    let stderr = queue_only(&[&s.config, &bad], &[], 2);
    assert!(stderr.contains("no-prefix"), "{stderr}");

    fs::write(&bad, "filter:\n  - '-foo(?=bar)'\n").unwrap();
    let stderr = queue_only(&[&s.config, &bad], &[], 2);
    assert!(stderr.contains("look-around"), "{stderr}");
}

#[test]
fn usage_and_source_errors_have_their_exit_codes() {
    let s = setup("");
    // -f contradicts --reuse-queue.
    common::lafs()
        .arg("-c")
        .arg(&s.config)
        .args(["backup", "--reuse-queue", "-f"])
        .assert()
        .code(2);
    // A source.path glob that matches nothing is an error, not a success.
    let none = s.queue.with_file_name("none.yaml");
    fs::write(
        &none,
        "source:\n  path: /nonexistent-lafs-backup/weekly.*\n",
    )
    .unwrap();
    let stderr = queue_only(&[&s.config, &none], &[], 1);
    assert!(stderr.contains("matches nothing"), "{stderr}");
    // No queue path anywhere.
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("c.yaml");
    fs::write(&cfg, format!("source:\n  path: '{}'\n", s.source.display())).unwrap();
    let stderr = queue_only(&[&cfg], &[], 2);
    assert!(stderr.contains("source.queue.path"), "{stderr}");
    // ...unless --queue-only names one.
    let q = tmp.path().join("q");
    queue_only(&[&cfg], &[q.as_os_str()], 0);
    body_of(&fs::read(&q).unwrap());
}

#[test]
fn glob_picks_the_last_snapshot_in_byte_order() {
    let tmp = tempfile::tempdir().unwrap();
    for name in [
        "weekly.2013-01-07",
        "weekly.2013-01-14",
        "weekly.2012-12-31",
    ] {
        fs::create_dir(tmp.path().join(name)).unwrap();
        fs::write(tmp.path().join(name).join(name), b"").unwrap();
    }
    let cfg = tmp.path().join("c.yaml");
    let q = tmp.path().join("q");
    fs::write(
        &cfg,
        format!(
            "source:\n  path: '{}/weekly.*'\n  queue:\n    path: '{}'\n",
            tmp.path().display(),
            q.display()
        ),
    )
    .unwrap();
    let out = common::lafs()
        .arg("-c")
        .arg(&cfg)
        .args(["--json", "backup", "--queue-only"])
        .ok();
    assert_eq!(queued_paths(&q), ["weekly.2013-01-14", ""]);
    // --json: stdout is JSON lines only (UTF-8: `Run` insists).
    for line in out.stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["type"], "scan");
        assert_eq!(v["entries"], 2);
    }
}
