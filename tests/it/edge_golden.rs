//! Golden tests of edge metadata v1 (`docs/metadata.md`): the exact JSON
//! text of representative entries and of one `mkdir-immutable` body, the
//! documentation's examples, and `EdgeMeta::read` on real files.
//!
//! The JSON text is the format: changing one byte of it changes every dircap
//! of every backup, so these strings must only change with a new format
//! version.

use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use lafs_backup::{
    Cap, Child, EdgeMeta, Encoding, EntryMeta, ROOT_META_NAME, children_json, edge_name, raw_name,
};

const DOC: &str = include_str!("../../docs/metadata.md");

const ACLS: &str = "u::rwx,u:alice:rwx,g::rwx,m::rwx,o::---,\
                    d:u::rwx,d:u:alice:rwx,d:g::rwx,d:m::rwx,d:o::---";
const ACL_IDS: &str = "u::rwx,u:1001:rwx,g::rwx,m::rwx,o::---,\
                       d:u::rwx,d:u:1001:rwx,d:g::rwx,d:m::rwx,d:o::---";

/// (what, value, exact JSON text)
fn golden() -> Vec<(&'static str, EdgeMeta, &'static str)> {
    let base = EdgeMeta {
        uid: 1000,
        gid: 100,
        mode: Some(0o100644),
        mtime_ns: Some(1_700_000_000_123_456_789),
        ..EdgeMeta::default()
    };
    vec![
        (
            "regular file",
            base.clone(),
            r#"{"uid":"1000","gid":"100","mode":"100644","mtime":1700000000.1234567,"mtime_ns":"1700000000123456789"}"#,
        ),
        (
            "xz-compressed file",
            EdgeMeta {
                mode: Some(0o100640),
                mtime_ns: Some(1_712_345_678_900_000_000),
                size: Some(1_048_576),
                enc: Some(Encoding::Xz),
                ..base.clone()
            },
            r#"{"uid":"1000","gid":"100","mode":"100640","mtime":1712345678.9,"mtime_ns":"1712345678900000000","size":"1048576","enc":"xz"}"#,
        ),
        (
            "chunked file",
            EdgeMeta {
                size: Some(209_715_200),
                chunked: true,
                ..base.clone()
            },
            r#"{"uid":"1000","gid":"100","mode":"100644","mtime":1700000000.1234567,"mtime_ns":"1700000000123456789","size":"209715200","chunked":"v1"}"#,
        ),
        (
            "symlink",
            EdgeMeta {
                mode: None,
                mtime_ns: Some(1_700_000_000_000_000_000),
                ..base.clone()
            },
            r#"{"uid":"1000","gid":"100","mtime":1700000000.0,"mtime_ns":"1700000000000000000"}"#,
        ),
        (
            "directory with an ACL and a default ACL",
            EdgeMeta {
                uid: 0,
                gid: 1002,
                mode: Some(0o42770),
                mtime_ns: Some(1_712_345_678_900_000_000),
                acls: Some(ACLS.into()),
                acl_ids: Some(ACL_IDS.into()),
                ..EdgeMeta::default()
            },
            r#"{"uid":"0","gid":"1002","mode":"42770","mtime":1712345678.9,"mtime_ns":"1712345678900000000","acls":"u::rwx,u:alice:rwx,g::rwx,m::rwx,o::---,d:u::rwx,d:u:alice:rwx,d:g::rwx,d:m::rwx,d:o::---","acl_ids":"u::rwx,u:1001:rwx,g::rwx,m::rwx,o::---,d:u::rwx,d:u:1001:rwx,d:g::rwx,d:m::rwx,d:o::---"}"#,
        ),
        (
            "character device",
            EdgeMeta {
                uid: 0,
                gid: 5,
                mode: Some(0o20620),
                mtime_ns: Some(1_700_000_000_000_000_000),
                rdev: Some((4, 1)),
                ..EdgeMeta::default()
            },
            r#"{"uid":"0","gid":"5","mode":"20620","mtime":1700000000.0,"mtime_ns":"1700000000000000000","rdev":"4:1"}"#,
        ),
        (
            "fifo",
            EdgeMeta {
                mode: Some(0o10644),
                ..base.clone()
            },
            r#"{"uid":"1000","gid":"100","mode":"10644","mtime":1700000000.1234567,"mtime_ns":"1700000000123456789"}"#,
        ),
        (
            "hard-linked file",
            EdgeMeta {
                mode: Some(0o100755),
                hlink: Some((2049, 1_311_234)),
                ..base.clone()
            },
            r#"{"uid":"1000","gid":"100","mode":"100755","mtime":1700000000.1234567,"mtime_ns":"1700000000123456789","hlink":"2049:1311234"}"#,
        ),
        (
            "file with capabilities and xattrs",
            EdgeMeta {
                uid: 0,
                gid: 0,
                mode: Some(0o100755),
                mtime_ns: Some(1_651_234_567_123_000_000),
                caps: Some("cap_net_raw=ep".into()),
                xattrs: vec![
                    (
                        "security.selinux".into(),
                        b"system_u:object_r:ping_exec_t:s0\0".to_vec(),
                    ),
                    ("user.mime_type".into(), b"text/plain".to_vec()),
                ],
                ..EdgeMeta::default()
            },
            r#"{"uid":"0","gid":"0","mode":"100755","mtime":1651234567.1230001,"mtime_ns":"1651234567123000000","caps":"cap_net_raw=ep","xattrs":{"security.selinux":"c3lzdGVtX3U6b2JqZWN0X3I6cGluZ19leGVjX3Q6czAA","user.mime_type":"dGV4dC9wbGFpbg=="}}"#,
        ),
        (
            "file with an escaped name (cafe + U+0301, NFD)",
            EdgeMeta {
                name_raw: Some("cafe\u{301}".as_bytes().to_vec()),
                ..base.clone()
            },
            r#"{"uid":"1000","gid":"100","mode":"100644","mtime":1700000000.1234567,"mtime_ns":"1700000000123456789","name_raw":"Y2FmZcyB"}"#,
        ),
        (
            "the reserved root entry (the root directory's own metadata)",
            EdgeMeta {
                uid: 0,
                gid: 0,
                mode: Some(0o40755),
                mtime_ns: Some(1_712_345_678_900_000_000),
                ..EdgeMeta::default()
            },
            r#"{"uid":"0","gid":"0","mode":"40755","mtime":1712345678.9,"mtime_ns":"1712345678900000000"}"#,
        ),
    ]
}

const DIR_CAP: &str = "URI:DIR2-CHK:6k5yof7gs5tfsmapklxyh6ukwy:dgmdhz3wu4372ywcaobuzqyzcq5klljw33tszmmyyumxhduvppjq:2:3:551";
const FILE_CAP: &str = "URI:CHK:mcdi47z6bo54osot7psx2wceme:7q26tmtwq6yawrpwimodqaoayv3xdbqqdyzxp47q7ebemjr5ekbq:2:3:100000";
/// `docs/readme`, the symlink's target, as a literal cap.
const LINK_CAP: &str = "URI:LIT:mrxwg4zpojswczdnmu";

const BODY: &str = r#"{".lafs-backup-root":["filenode",{"ro_uri":"URI:LIT:","metadata":{"uid":"0","gid":"0","mode":"40755","mtime":1712345678.9,"mtime_ns":"1712345678900000000"}}],"\\x2elafs-backup-root":["filenode",{"ro_uri":"URI:LIT:","metadata":{"uid":"1000","gid":"100","mode":"100644","mtime":1700000000.0,"mtime_ns":"1700000000000000000","name_raw":"LmxhZnMtYmFja3VwLXJvb3Q="}}],"cafe\\xcc\\x81":["filenode",{"ro_uri":"URI:CHK:mcdi47z6bo54osot7psx2wceme:7q26tmtwq6yawrpwimodqaoayv3xdbqqdyzxp47q7ebemjr5ekbq:2:3:100000","metadata":{"uid":"1000","gid":"100","mode":"100644","mtime":1700000000.1234567,"mtime_ns":"1700000000123456789","name_raw":"Y2FmZcyB"}}],"docs":["dirnode",{"ro_uri":"URI:DIR2-CHK:6k5yof7gs5tfsmapklxyh6ukwy:dgmdhz3wu4372ywcaobuzqyzcq5klljw33tszmmyyumxhduvppjq:2:3:551","metadata":{"uid":"1000","gid":"100","mode":"40755","mtime":1700000000.1234567,"mtime_ns":"1700000000123456789"}}],"link":["filenode",{"ro_uri":"URI:LIT:mrxwg4zpojswczdnmu","metadata":{"uid":"1000","gid":"100","mtime":1700000000.1234567,"mtime_ns":"1700000000123456789"}}]}"#;

fn child(raw: &[u8], top_level: bool, cap: &str, is_dir: bool, meta: EdgeMeta) -> Child {
    let name = edge_name(raw, top_level);
    Child {
        name: name.name,
        cap: Cap::parse(cap).unwrap(),
        is_dir,
        meta: EdgeMeta {
            name_raw: name.raw,
            ..meta
        },
    }
}

fn body_children() -> Vec<Child> {
    let file = EdgeMeta {
        uid: 1000,
        gid: 100,
        mode: Some(0o100644),
        mtime_ns: Some(1_700_000_000_123_456_789),
        ..EdgeMeta::default()
    };
    let root = EdgeMeta {
        uid: 0,
        gid: 0,
        mode: Some(0o40755),
        mtime_ns: Some(1_712_345_678_900_000_000),
        ..EdgeMeta::default()
    };
    // Deliberately not in byte order.
    vec![
        child(
            b"link",
            true,
            LINK_CAP,
            false,
            EdgeMeta {
                mode: None,
                ..file.clone()
            },
        ),
        child(
            b"docs",
            true,
            DIR_CAP,
            true,
            EdgeMeta {
                mode: Some(0o40755),
                ..file.clone()
            },
        ),
        child(
            "cafe\u{301}".as_bytes(),
            true,
            FILE_CAP,
            false,
            file.clone(),
        ),
        child(
            ROOT_META_NAME.as_bytes(),
            true,
            "URI:LIT:",
            false,
            EdgeMeta {
                mtime_ns: Some(1_700_000_000_000_000_000),
                ..file.clone()
            },
        ),
        Child {
            name: ROOT_META_NAME.to_owned(),
            cap: Cap::empty_literal(),
            is_dir: false,
            meta: root,
        },
    ]
}

#[test]
fn golden_edge_metadata() {
    for (what, meta, text) in golden() {
        assert_eq!(meta.to_json(), text, "{what}");
        let mut appended = String::from("x");
        meta.write_json(&mut appended);
        assert_eq!(&appended[1..], text, "{what}: write_json appends");
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            EdgeMeta::from_json(&value).unwrap(),
            meta,
            "{what}: reads back"
        );
    }
}

#[test]
fn golden_children_body() {
    let children = body_children();
    assert_eq!(children_json(&children), BODY);
    // Any input order gives the same bytes.
    let mut reversed = body_children();
    reversed.reverse();
    assert_eq!(children_json(&reversed), BODY);
    assert_eq!(children_json(&[]), "{}");
}

#[test]
fn golden_body_reads_back() {
    let value: serde_json::Value = serde_json::from_str(BODY).unwrap();
    let mut raws = Vec::new();
    for (name, entry) in value.as_object().unwrap() {
        let meta = EdgeMeta::from_json(&entry[1]["metadata"]).unwrap();
        let b64 = entry[1]["metadata"]["name_raw"].as_str();
        raws.push(raw_name(name, b64).unwrap());
        assert!(meta.name_raw.is_some() == b64.is_some());
    }
    raws.sort();
    let want: Vec<&[u8]> = vec![
        b".lafs-backup-root",
        b".lafs-backup-root",
        "cafe\u{301}".as_bytes(),
        b"docs",
        b"link",
    ];
    assert_eq!(raws, want);
}

/// Every golden text appears verbatim in the documentation, and every JSON
/// example there is exactly what the code writes for what it reads.
#[test]
fn documentation_examples_are_exact() {
    for (what, _, text) in golden() {
        assert!(
            DOC.contains(text),
            "docs/metadata.md lacks the {what} example:\n{text}"
        );
    }
    assert!(
        DOC.contains(BODY),
        "docs/metadata.md lacks the body example"
    );
    let mut checked = 0;
    let mut rest = DOC;
    while let Some(start) = rest.find("```json\n") {
        let block = &rest[start + 8..];
        let end = block.find("```").expect("unterminated json block");
        for line in block[..end].lines().filter(|l| l.starts_with('{')) {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            let obj = value.as_object().unwrap();
            if obj.values().all(serde_json::Value::is_array) {
                // A request body: rebuilt from what it says, it is the same text.
                let children: Vec<Child> = obj
                    .iter()
                    .map(|(name, entry)| Child {
                        name: name.clone(),
                        cap: Cap::parse(entry[1]["ro_uri"].as_str().unwrap()).unwrap(),
                        is_dir: entry[0] == "dirnode",
                        meta: EdgeMeta::from_json(&entry[1]["metadata"]).unwrap(),
                    })
                    .collect();
                assert_eq!(children_json(&children), line, "docs body is not canonical");
            } else {
                let m = EdgeMeta::from_json(&value).unwrap();
                assert_eq!(m.to_json(), line, "docs example is not canonical");
            }
            checked += 1;
        }
        rest = &block[end + 3..];
    }
    assert!(
        checked >= golden().len(),
        "only {checked} json examples found"
    );
}

fn set_mtime(path: &Path, secs: u64, nanos: u32) {
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos))
        .unwrap();
}

fn run(cmd: &str, args: &[&str]) {
    let st = Command::new(cmd).args(args).status().unwrap();
    assert!(st.success(), "{cmd} {args:?}");
}

fn queue(mode: Option<u32>, acls: Option<&str>) -> EntryMeta {
    EntryMeta {
        uid: 1000,
        gid: 100,
        mode,
        caps: None,
        acls: acls.map(str::to_owned),
    }
}

/// Needs root (tests run as root): `security.*` xattrs and file capabilities.
#[test]
fn read_real_files() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    fs::write(&f, b"data").unwrap();
    set_mtime(&f, 1_700_000_000, 123_456_789);
    xattr::set(&f, "user.test", b"hello\0world").unwrap();
    xattr::set(&f, "user.a", b"").unwrap();
    // These three are carried as `acls`/`caps`, never as xattrs.
    run("setfacl", &["-m", "u:root:rwx", f.to_str().unwrap()]);
    run("setcap", &["cap_net_raw=ep", f.to_str().unwrap()]);
    let g = dir.path().join("g");
    fs::hard_link(&f, &g).unwrap();
    let l = dir.path().join("l");
    std::os::unix::fs::symlink("f", &l).unwrap();

    // A regular file with a hard link, an ACL and capabilities.
    let md = fs::symlink_metadata(&f).unwrap();
    let acls = "u::rw-,u:root:rwx,g::r--,m::rwx,o::r--";
    let mut q = queue(Some(0o100644), Some(acls));
    q.caps = Some("cap_net_raw=ep".into());
    let (m, problems) = EdgeMeta::read(&f, &q, &md);
    assert!(problems.is_empty(), "{problems:?}");
    let want = EdgeMeta {
        // uid/gid/mode/caps/acls come from the queue, not from the file.
        uid: 1000,
        gid: 100,
        mode: Some(0o100644),
        mtime_ns: Some(1_700_000_000_123_456_789),
        size: None,
        enc: None,
        chunked: false,
        caps: Some("cap_net_raw=ep".into()),
        acls: Some(acls.into()),
        acl_ids: Some("u::rw-,u:0:rwx,g::r--,m::rwx,o::r--".into()),
        xattrs: vec![
            ("user.a".into(), vec![]),
            ("user.test".into(), b"hello\0world".to_vec()),
        ],
        rdev: None,
        hlink: Some((md.dev(), md.ino())),
        name_raw: None,
    };
    assert_eq!(m, want);
    // The other name of the same inode gets the same hlink.
    let (mg, _) = EdgeMeta::read(&g, &q, &fs::symlink_metadata(&g).unwrap());
    assert_eq!(mg.hlink, m.hlink);

    // A symlink: its target's xattrs are not followed, no hard link.
    let lmd = fs::symlink_metadata(&l).unwrap();
    let (ml, problems) = EdgeMeta::read(&l, &queue(None, None), &lmd);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(ml.mode, None);
    assert_eq!(ml.xattrs, vec![]);
    assert_eq!(ml.hlink, None);
    assert_eq!(ml.acl_ids, None);
    assert_eq!(
        ml.mtime_ns,
        Some(i128::from(lmd.mtime()) * 1_000_000_000 + i128::from(lmd.mtime_nsec()))
    );

    // A directory has st_nlink >= 2 but is never a hard link; default ACL
    // qualifiers resolve too, and ids stay ids.
    let sub = dir.path().join("sub");
    fs::create_dir(&sub).unwrap();
    fs::create_dir(sub.join("inner")).unwrap();
    let smd = fs::symlink_metadata(&sub).unwrap();
    assert!(smd.nlink() > 1);
    let dacls = "u::rwx,g::r-x,o::r-x,d:u::rwx,d:u:root:rwx,d:g::r-x,d:g:root:r-x,d:g:4242:r--,d:m::rwx,d:o::r-x";
    let (md_, problems) = EdgeMeta::read(&sub, &queue(Some(0o40755), Some(dacls)), &smd);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(md_.hlink, None);
    assert_eq!(
        md_.acl_ids.as_deref(),
        Some(
            "u::rwx,g::r-x,o::r-x,d:u::rwx,d:u:0:rwx,d:g::r-x,d:g:0:r-x,d:g:4242:r--,d:m::rwx,d:o::r-x"
        )
    );

    // A name that no longer resolves: a problem, and no acl_ids.
    let (mu, problems) = EdgeMeta::read(
        &f,
        &queue(
            Some(0o100644),
            Some("u::rw-,u:lafs-no-such-user:r--,g::r--,m::r--,o::r--"),
        ),
        &md,
    );
    assert_eq!(mu.acl_ids, None);
    assert_eq!(
        mu.acls.as_deref(),
        Some("u::rw-,u:lafs-no-such-user:r--,g::r--,m::r--,o::r--")
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("lafs-no-such-user"), "{problems:?}");
}

#[test]
fn read_device_node() {
    let null = Path::new("/dev/null");
    let md = fs::symlink_metadata(null).unwrap();
    let q = EntryMeta {
        uid: 0,
        gid: 0,
        mode: Some(md.mode()),
        caps: None,
        acls: None,
    };
    let (m, _) = EdgeMeta::read(null, &q, &md);
    assert_eq!(m.rdev, Some((1, 3)));
    assert_eq!(m.hlink, None);
}

#[test]
fn non_utf8_xattr_names_are_problems() {
    use std::os::unix::ffi::OsStrExt as _;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    fs::write(&f, b"").unwrap();
    xattr::set(&f, std::ffi::OsStr::from_bytes(b"user.bad\xff"), b"v").unwrap();
    xattr::set(&f, "user.good", b"v").unwrap();
    let md = fs::symlink_metadata(&f).unwrap();
    let (m, problems) = EdgeMeta::read(&f, &queue(Some(0o100644), None), &md);
    assert_eq!(m.xattrs, vec![("user.good".to_owned(), b"v".to_vec())]);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("user.bad\\xff"), "{problems:?}");
}

/// The table of examples in the "Names" section.
#[test]
fn name_table_in_docs() {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let rows: &[(&[u8], bool, &str)] = &[
        ("caf\u{e9}".as_bytes(), false, "| `café` | —"),
        ("cafe\u{301}".as_bytes(), false, "| `cafe\\xcc\\x81` |"),
        (b"new\nline", false, "| `new\\x0aline` |"),
        (b"report\xff.txt", false, "| `report\\xff.txt` |"),
        (b"a\\b", false, "| `a\\\\b` |"),
        (
            ROOT_META_NAME.as_bytes(),
            true,
            "| `\\x2elafs-backup-root` |",
        ),
        (
            ROOT_META_NAME.as_bytes(),
            false,
            "| `.lafs-backup-root` | —",
        ),
    ];
    for &(raw, top, cell) in rows {
        let e = edge_name(raw, top);
        let row = match &e.raw {
            Some(r) => format!("| `{}` | `{}` |", e.name, b64(r)),
            None => format!("| `{}` | — |", e.name),
        };
        assert!(DOC.contains(&row), "docs lack the row {row:?}");
        assert!(row.starts_with(cell), "{row:?} vs {cell:?}");
    }
}
