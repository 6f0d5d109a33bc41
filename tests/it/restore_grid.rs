//! `restore` against the shared fast grid. Restored trees are compared with
//! the source by a metadata-aware walk of the test's own (lstat, readlink,
//! llistxattr), never through the crate's code.

use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

/// One entry of a tree, as compared.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime_ns: i128,
    content: Vec<u8>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

type Entries = BTreeMap<Vec<u8>, Entry>;
type Inodes = HashMap<Vec<u8>, (u64, u64)>;

fn walk(root: &Path) -> (Entries, Inodes) {
    let mut out = BTreeMap::new();
    let mut inodes = HashMap::new();
    let mut todo = vec![(root.to_owned(), Vec::new())];
    while let Some((path, rel)) = todo.pop() {
        let md = fs::symlink_metadata(&path).unwrap();
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "file"
        } else {
            "special"
        };
        let content = if ft.is_file() {
            fs::read(&path).unwrap()
        } else if ft.is_symlink() {
            fs::read_link(&path).unwrap().into_os_string().into_vec()
        } else {
            Vec::new()
        };
        let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = xattr::list(&path)
            .map(|l| {
                l.map(|n| {
                    let v = xattr::get(&path, &n).unwrap().unwrap_or_default();
                    (n.as_bytes().to_vec(), v)
                })
                .collect()
            })
            .unwrap_or_default();
        xattrs.sort();
        if !ft.is_dir() && md.nlink() > 1 {
            inodes.insert(rel.clone(), (md.dev(), md.ino()));
        }
        if ft.is_dir() {
            for e in fs::read_dir(&path).unwrap() {
                let e = e.unwrap();
                let mut r = rel.clone();
                if !r.is_empty() {
                    r.push(b'/');
                }
                r.extend_from_slice(e.file_name().as_bytes());
                todo.push((e.path(), r));
            }
        }
        out.insert(
            rel,
            Entry {
                kind,
                mode: md.mode(),
                uid: md.uid(),
                gid: md.gid(),
                mtime_ns: i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec()),
                content,
                xattrs,
            },
        );
    }
    (out, inodes)
}

use std::os::unix::ffi::OsStringExt;

/// `lafs-backup restore --gateway URL ARGS` without any config: (code, stderr).
fn restore(args: &[&OsStr]) -> (i32, String) {
    let out = common::lafs()
        .args(["restore", "--gateway", &common::gateway_url()])
        .args(args)
        .output();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), stderr)
}

/// `lafs-backup verify --gateway URL OPTS CAP TARGET` without any config.
fn verify(opts: &[&str], cap: &str, target: &Path) -> Output {
    common::lafs()
        .arg("verify")
        .args(opts)
        .args(["--gateway", &common::gateway_url(), cap])
        .arg(target)
        .output()
}

fn build_source(src: &Path) {
    common::hostile_tree(src);
    // 100 levels deep.
    let mut deep = src.join("deep");
    for i in 0..100 {
        deep.push(format!("d{i}"));
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("bottom"), b"bottom").unwrap();
    // 5,000 tiny files (LIT caps: at most 55 bytes) in one directory.
    let many = src.join("many");
    fs::create_dir(&many).unwrap();
    for i in 0..5000 {
        fs::write(many.join(format!("f{i:04}")), format!("tiny {i}")).unwrap();
    }
    // Hard links, across directories too.
    fs::write(src.join("hl1"), common::pseudo_random_bytes(5000, 7)).unwrap();
    fs::hard_link(src.join("hl1"), src.join("hl2")).unwrap();
    fs::hard_link(src.join("hl1"), src.join("a/hl3")).unwrap();
    // Sparse: 20 MB with 1 KiB of data at the end.
    let f = fs::File::create(src.join("sparse")).unwrap();
    f.set_len(20_000_000).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[7u8; 1024], 20_000_000 - 1024).unwrap();
    drop(f);
    // User xattrs, binary value.
    fs::write(src.join("xattr-file"), b"x").unwrap();
    xattr::set(src.join("xattr-file"), "user.one", b"1\0\xff").unwrap();
    xattr::set(src.join("xattr-file"), "user.two", b"two").unwrap();
    // Incompressible and compressible content.
    fs::write(src.join("random"), common::pseudo_random_bytes(300_000, 3)).unwrap();
    fs::write(src.join("text"), "hello world\n".repeat(20_000)).unwrap();
    fs::set_permissions(src.join("a"), fs::Permissions::from_mode(0o1777)).unwrap();
}

#[test]
fn round_trip_with_metadata_and_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    build_source(&src);
    let cfg = common::write_backup_config(tmp.path(), &src, &common::gateway_url(), "");
    let cap = common::backup_root_cap(&cfg);

    // --gateway URL CAP TARGET, no -c.
    let target = tmp.path().join("out");
    let (code, stderr) = restore(&[cap.as_ref(), target.as_os_str()]);
    assert_eq!(code, 0, "{stderr}");
    compare(&src, &target);
    // The tool's own verify agrees: the restore is identical to the backup,
    // contents included.
    let out = verify(&["--content"], &cap, &target);
    assert_eq!(
        out.status.code(),
        Some(0),
        "verify of the restore: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // By NAME through the config's cache, and a selection.
    let part = tmp.path().join("part");
    common::lafs()
        .arg("-c")
        .arg(&cfg)
        .args(["restore", "src"])
        .arg(&part)
        .arg("a")
        .ok();
    assert_eq!(fs::read(part.join("a/0")).unwrap(), b"zero");
    assert!(!part.join("many").exists());

    // Again into the same TARGET: it is not empty → refused up front
    // (exit 2), nothing changed.
    let (code, _) = restore(&[cap.as_ref(), target.as_os_str()]);
    assert_eq!(code, 2);
    compare(&src, &target);

    // Killed midway, then continued with --skip-existing.
    let target2 = tmp.path().join("out2");
    let child = common::lafs()
        .args([
            "restore",
            "--concurrency",
            "1",
            "--gateway",
            &common::gateway_url(),
        ])
        .arg(&cap)
        .arg(&target2)
        .spawn();
    // Wait until some files are in place, then SIGKILL.
    let many = target2.join("many");
    for _ in 0..400 {
        if fs::read_dir(&many).map(|d| d.count()).unwrap_or(0) > 50 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill();
    let before: HashMap<PathBuf, u64> = fs::read_dir(&many)
        .map(|d| {
            d.flatten()
                .filter(|e| !e.file_name().as_bytes().starts_with(b".lafs-restore."))
                .map(|e| (e.path(), e.metadata().unwrap().ino()))
                .collect()
        })
        .unwrap_or_default();
    let (code, stderr) = restore(&[
        "--skip-existing".as_ref(),
        cap.as_ref(),
        target2.as_os_str(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    compare(&src, &target2);
    // Completed files were not written again (same inode: no new temp file
    // renamed over them).
    for (p, ino) in before {
        assert_eq!(
            fs::symlink_metadata(&p).unwrap().ino(),
            ino,
            "{}",
            p.display()
        );
    }
}

fn compare(src: &Path, out: &Path) {
    let (a, ai) = walk(src);
    let (b, bi) = walk(out);
    let names_a: Vec<_> = a.keys().collect();
    let names_b: Vec<_> = b.keys().collect();
    assert_eq!(names_a, names_b);
    for (k, ea) in &a {
        let eb = &b[k];
        let mut ea_cmp = ea.clone();
        if k.is_empty() {
            // TARGET's root: everything but the name.
            ea_cmp.kind = "dir";
        }
        assert_eq!(&ea_cmp, eb, "{}", String::from_utf8_lossy(k));
    }
    // Hard-link twins share an inode after the restore.
    let mut groups: HashMap<(u64, u64), Vec<&Vec<u8>>> = HashMap::new();
    for (k, ino) in &ai {
        groups.entry(*ino).or_default().push(k);
    }
    for names in groups.values() {
        let inos: Vec<_> = names.iter().map(|n| bi.get(*n).copied()).collect();
        assert!(inos[0].is_some());
        assert!(inos.iter().all(|i| *i == inos[0]), "{names:?}");
    }
    // Sparse stays sparse.
    let md = fs::metadata(out.join("sparse")).unwrap();
    assert!(md.blocks() * 512 < 1_000_000, "blocks {}", md.blocks());
}

fn put(data: &[u8]) -> String {
    let mut resp = common::http_agent()
        .put(format!("{}/uri", common::gateway_url()))
        .send(data)
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.body_mut().read_to_string().unwrap().trim().to_owned()
}

fn mkdir_immutable(children: &Value) -> String {
    let mut resp = common::http_agent()
        .post(format!("{}/uri?t=mkdir-immutable", common::gateway_url()))
        .header("Content-Type", "application/json")
        .send(children.to_string().as_bytes())
        .unwrap();
    let body = resp.body_mut().read_to_string().unwrap();
    assert_eq!(resp.status(), 200, "{body}");
    body.trim().to_owned()
}

#[test]
fn hostile_tree_stays_inside_target() {
    let tmp = tempfile::tempdir().unwrap();
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    let file = put(b"evil content that is longer than fifty-five bytes, so CHK");
    let inner = mkdir_immutable(&json!({
        "inside": ["filenode", {"ro_uri": file, "metadata": {"uid": "0", "gid": "0", "mode": "100644"}}]
    }));
    let tmp_link = put(b"/tmp");
    let root = mkdir_immutable(&json!({
        "..": ["filenode", {"ro_uri": file, "metadata": {"mode": "100644"}}],
        "a/b": ["filenode", {"ro_uri": file, "metadata": {"mode": "100644"}}],
        "..\\x2fx": ["filenode", {"ro_uri": file, "metadata": {"mode": "100644", "name_raw": b64(b"../x")}}],
        "s": ["filenode", {"ro_uri": tmp_link, "metadata": {"uid": "0", "gid": "0"}}],
        "\\x73": ["dirnode", {"ro_uri": inner, "metadata": {"mode": "40755", "name_raw": b64(b"s")}}],
        "ok": ["filenode", {"ro_uri": file, "metadata": {"mode": "100600"}}],
    }));
    let target = tmp.path().join("t");
    let (code, stderr) = restore(&[root.as_ref(), target.as_os_str()]);
    assert_eq!(code, 3, "{stderr}");
    for name in ["..", "a/b", "..\\\\x2fx", "s", "\\\\x73"] {
        assert!(stderr.contains(name), "{name} not reported:\n{stderr}");
    }
    let names: Vec<_> = fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("ok")]);
    assert!(!tmp.path().join("x").exists());
    assert!(!Path::new("/tmp/inside").exists());

    // --json: a dry run lists the plan, every refusal is a problem line,
    // and a summary comes last; no cap anywhere.
    let out = common::lafs()
        .args([
            "--json",
            "restore",
            "-n",
            "--gateway",
            &common::gateway_url(),
        ])
        .arg(&root)
        .arg(tmp.path().join("t2"))
        .output();
    assert_eq!(out.status.code(), Some(3));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines[0],
        json!({"type": "planned", "kind": "file", "path": "ok"}),
        "{stdout}"
    );
    let problems = lines.iter().filter(|v| v["type"] == "problem").count();
    assert_eq!(problems, 5, "{stdout}");
    assert_eq!(
        lines.last().unwrap(),
        &json!({"type": "restore", "dry_run": true, "written": 0, "skipped": 0, "bytes": 0,
            "problems": 5, "withheld": 0, "devices": 0, "setid": 0, "caps": 0})
    );
    assert!(!tmp.path().join("t2").exists());
}

#[test]
fn original_tool_format() {
    let tmp = tempfile::tempdir().unwrap();
    let text = "original tool content\n".repeat(100);
    let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 6);
    enc.write_all(text.as_bytes()).unwrap();
    let xz = put(&enc.finish().unwrap());
    let link = put(b"target/of link");
    let root = mkdir_immutable(&json!({
        "file.txt": ["filenode", {"ro_uri": xz, "metadata": {"uid": "1234", "gid": "5678", "mode": "100640", "enc": "xz"}}],
        "link": ["filenode", {"ro_uri": link, "metadata": {"uid": "1234", "gid": "5678"}}],
    }));
    let target = tmp.path().join("t");
    let (code, stderr) = restore(&[root.as_ref(), target.as_os_str()]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(fs::read_to_string(target.join("file.txt")).unwrap(), text);
    let md = fs::symlink_metadata(target.join("file.txt")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o640);
    if nix::unistd::geteuid().is_root() {
        assert_eq!((md.uid(), md.gid()), (1234, 5678));
    }
    assert_eq!(
        fs::read_link(target.join("link"))
            .unwrap()
            .as_os_str()
            .as_bytes(),
        b"target/of link"
    );
}

/// An ACL names a user this machine has (applied by name) and one it does
/// not (applied by the id in `acl_ids`); `verify` finds the result the same.
#[test]
fn acl_by_name_or_by_recorded_id() {
    let tmp = tempfile::tempdir().unwrap();
    let file = put(b"acl restore test");
    let acls = "u::rw-,u:root:rwx,u:lafs-no-such-user:r--,g::r--,m::rwx,o::---";
    let acl_ids = "u::rw-,u:777:rwx,u:4242:r--,g::r--,m::rwx,o::---";
    let root = mkdir_immutable(&json!({
        "f": ["filenode", {"ro_uri": file, "metadata": {
            "uid": "0", "gid": "0", "mode": "100670", "mtime_ns": "1600000000123456789",
            "acls": acls, "acl_ids": acl_ids}}],
    }));
    let target = tmp.path().join("t");
    let (code, stderr) = restore(&[root.as_ref(), target.as_os_str()]);
    assert_eq!(code, 0, "{stderr}");
    let out = Command::new("getfacl")
        .args(["-n", "--omit-header", "--absolute-names"])
        .arg(target.join("f"))
        .output()
        .expect("getfacl (package acl)");
    let text = String::from_utf8(out.stdout).unwrap();
    let entries: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        entries,
        [
            "user::rw-",
            "user:0:rwx",
            "user:4242:r--",
            "group::r--",
            "mask::rwx",
            "other::---"
        ],
        "{text}"
    );
    let out = verify(&[], &root, &target);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A gateway that is not there fails `restore` and `verify` on the first
/// contact (exit 1, a message naming it), not after the default retry
/// delays (10, 60 and 600 s), and creates no TARGET.
#[test]
fn unreachable_gateway_fails_at_first_contact() {
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gateway = format!("http://127.0.0.1:{port}");
    let cap = "URI:DIR2-CHK:aaaaaaaaaaaaaaaaaaaaaaaaaa:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb:1:1:100";
    let target = tmp.path().join("t");
    for args in [
        vec![
            "restore",
            "--gateway",
            &gateway,
            cap,
            target.to_str().unwrap(),
        ],
        vec![
            "verify",
            "--gateway",
            &gateway,
            cap,
            tmp.path().to_str().unwrap(),
        ],
    ] {
        let out = common::lafs().args(&args).known_cap(cap).output();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", args[0]);
        assert!(
            stderr.contains("first contact with the Tahoe gateway")
                && stderr.contains(&format!("127.0.0.1:{port}")),
            "{}: {stderr}",
            args[0]
        );
    }
    assert!(!target.exists());
}
