//! Issue 14 item 5 against the real grid: `diff` of two backups, of a
//! backup and a live directory, and `files` (a backup against its previous
//! one), on the shared three-backup history; and the listings `diff`
//! fetches on a 10,000-file tree with one changed file.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crate::common::history::{F2, History};
use crate::common::{self, Lafs, Run, lafs};

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
fn diff_of_two_backups_lists_prints_json_and_stat() {
    // f changed between the first and second backups, nothing else.
    let r = run(&["diff", "tree@1", "tree@2", "--list"]);
    assert_eq!(r.code, 4, "differences: exit 4; {}", r.stderr);
    assert_eq!(r.stdout, "f\n");
    // The text form: the change, then the unified diff of the text file.
    let r = run(&["diff", "tree@1", "tree@2"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[0].starts_with("M f: "), "{}", r.stdout);
    assert!(lines[0].contains("content"), "{}", r.stdout);
    assert_eq!(lines[1..3], ["--- a/f", "+++ b/f"], "{}", r.stdout);
    for want in ["-version one of f", "+version two of f", "+and a fourth"] {
        assert!(lines.contains(&want), "{want}: {}", r.stdout);
    }
    // -U 0: no context lines.
    let r = run(&["diff", "tree@1", "tree@2", "-U", "0"]);
    assert!(!r.stdout.contains("\n line two"), "{}", r.stdout);
    let r = run(&["diff", "tree@1", "tree@2", "-U", "1"]);
    assert!(r.stdout.contains("\n line two"), "{}", r.stdout);
    // The same backup twice: no difference, exit 0, nothing printed.
    let r = run(&["diff", "tree@2", "tree@2"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{}", r.stderr);
    // JSON: one line per difference, then the summary.
    // (At --noise too: no cap on stderr, which `lafs()` checks.)
    let r = run(&["--noise", "--json", "diff", "tree@1", "tree@3"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    let lines = r.json();
    let kinds: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["type"].as_str().unwrap(),
                l["path"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("added", "d/new"), ("removed", "f"), ("summary", "")],
        "{}",
        r.stdout
    );
    assert_eq!(lines[0]["path_b64"], "ZC9uZXc=");
    assert_eq!(lines[0]["kind"], "file");
    assert_eq!(lines[2]["added"], 1);
    assert_eq!(lines[2]["removed"], 1);
    assert_eq!(lines[2]["changed"], 0);
    let r = run(&["--json", "diff", "tree@1", "tree@2"]);
    let changed = r.of_type("changed");
    assert_eq!(changed.len(), 1, "{}", r.stdout);
    let what: Vec<&str> = changed[0]["what"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(what.contains(&"content"), "{what:?}");
    // --stat: the counts only.
    let r = run(&["diff", "tree@1", "tree@3", "--stat"]);
    assert_eq!(r.stdout, "1 added, 1 removed, 0 changed\n", "{}", r.stderr);
    // PATH limits the comparison to a subtree.
    let r = run(&["diff", "tree@1", "tree@3", "--list", "d"]);
    assert_eq!(r.stdout, "d/new\n", "{}", r.stderr);
    let r = run(&["diff", "tree@1", "tree@3", "--list", "g"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{}", r.stderr);
}

#[test]
fn files_is_the_diff_against_the_previous_backup() {
    let r = run(&["files", "tree"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert_eq!(r.stdout, "+ d/new\n- f\n");
    let r = run(&["files", "tree@2", "--list"]);
    assert_eq!(r.stdout, "f\n", "{}", r.stderr);
    let r = run(&["files", "tree", "--as-of", "2024-01-02T12:00:00Z", "--list"]);
    assert_eq!(r.stdout, "f\n", "{}", r.stderr);
}

#[test]
fn mistakes_are_usage_errors() {
    let cap = History::get().caps[0].as_str();
    for (args, want) in [
        (
            &["diff", "tree@1", "tree@2", "nosuch"][..],
            "nosuch: no such file or directory in A or B",
        ),
        (
            &["diff", "tree@1", "tree@2", "../x"][..],
            "`..` is not allowed",
        ),
        (
            &["diff", "./here", "tree"][..],
            "only B may be a live directory",
        ),
        (
            &["diff", "tree", "/nonexistent/dir"][..],
            "B: cannot open the live directory",
        ),
        (
            &["files", "tree@1"][..],
            "tree generation 1 is the first backup of the name",
        ),
        (&["files", cap][..], "files takes a backup NAME"),
        (&["files", "nosuch"][..], "no backup named \"nosuch\""),
    ] {
        let r = run(args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
        assert_eq!(r.stdout, "", "{args:?}");
    }
}

#[test]
fn diff_against_a_live_directory_reports_chmod_touch_and_an_edited_line() {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("live");
    let r = run(&["restore", "tree@2", live.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Just restored: the same.
    let live_s = live.to_str().unwrap();
    let r = run(&["diff", "tree@2", live_s]);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{}", r.stderr);
    // chmod g, touch d/old, edit one line of f (same length: only the
    // content says it changed, besides the mtime).
    fs::set_permissions(live.join("g"), fs::Permissions::from_mode(0o600)).unwrap();
    touch(&live.join("d").join("old"), 1_800_000_000);
    let edited = String::from_utf8(F2.to_vec())
        .unwrap()
        .replace("line two", "LINE TWO");
    fs::write(live.join("f"), edited).unwrap();
    // And an extra file.
    fs::write(live.join("extra"), b"x").unwrap();
    let r = run(&["diff", "tree@2", live_s]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(
        lines[0].starts_with("M d/old: mtime ")
            && lines[0].contains("-> 2027-01-15T08:00:00+00:00"),
        "{}",
        r.stdout
    );
    assert!(lines[1] == "+ extra", "{}", r.stdout);
    assert!(lines[2].starts_with("M f: mtime "), "{}", r.stdout);
    assert!(lines[2].ends_with(", content"), "{}", r.stdout);
    assert_eq!(lines[3..5], ["--- a/f", "+++ b/f"], "{}", r.stdout);
    assert!(lines.contains(&"-line two"), "{}", r.stdout);
    assert!(lines.contains(&"+LINE TWO"), "{}", r.stdout);
    assert_eq!(
        lines.last(),
        Some(&"M g: mode 0644 -> 0600"),
        "{}",
        r.stdout
    );
    // A relative directory is live too.
    let r = Lafs::in_shell("cd \"$1\" && shift && \"$0\" \"$@\"")
        .arg(tmp.path())
        .arg("-c")
        .arg(&History::get().cfg)
        .args(["--json", "diff", "tree@2", "./live"])
        .env("TZ", "UTC")
        .caps_on_stdout()
        .run();
    assert_eq!(r.code, 4, "{}", r.stderr);
    let paths: Vec<String> = r
        .json()
        .iter()
        .filter(|l| l["type"] != "summary")
        .map(|l| format!("{} {} {}", l["type"], l["path"], l["what"]))
        .collect();
    assert_eq!(
        paths,
        [
            r#""changed" "d/old" ["mtime"]"#,
            r#""added" "extra" []"#,
            r#""changed" "f" ["mtime","content"]"#,
            r#""changed" "g" ["mode"]"#,
        ]
    );
}

fn touch(path: &Path, secs: i64) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.unsigned_abs());
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// On a 10,000-file tree (4 × 5 × 5 directories of 100 small files), one
/// changed file three directories deep: `diff` lists the two roots and both
/// sides of the three directories on its path, nothing else.
#[test]
fn diff_opens_only_the_directories_that_differ() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("big");
    for a in 0..4 {
        for b in 0..5 {
            for c in 0..5 {
                let dir = src.join(format!("a{a}/b{b}/c{c}"));
                fs::create_dir_all(&dir).unwrap();
                for f in 0..100 {
                    // Under 56 bytes: literal caps, no upload.
                    fs::write(dir.join(format!("f{f}")), format!("{a} {b} {c} {f}\n")).unwrap();
                }
            }
        }
    }
    let cfg = common::write_backup_config(tmp.path(), &src, &common::gateway_url(), "");
    common::backup_root_cap(&cfg);
    fs::write(src.join("a2/b3/c4/f57"), b"changed, and longer\n").unwrap();
    common::backup_root_cap(&cfg);
    let r = lafs()
        .arg("-c")
        .arg(&cfg)
        .args(["--json", "diff", "big@1", "big@2"])
        .caps_on_stdout()
        .run();
    assert_eq!(r.code, 4, "{}", r.stderr);
    let changed = r.of_type("changed");
    assert_eq!(changed.len(), 1, "{}", r.stdout);
    assert_eq!(changed[0]["path"], "a2/b3/c4/f57");
    let summary = &r.of_type("summary")[0];
    let listings = summary["listings"].as_u64().unwrap();
    assert!(listings <= 2 * 3 + 2, "{listings} listings: {summary}");
    assert_eq!(listings, 8, "{summary}");
}

fn put(data: &[u8]) -> String {
    let mut resp = common::http_agent()
        .put(format!("{}/uri", common::gateway_url()))
        .send(data)
        .unwrap();
    resp.body_mut().read_to_string().unwrap().trim().to_owned()
}

fn mkdir_immutable(children: &serde_json::Value) -> String {
    let mut resp = common::http_agent()
        .post(format!("{}/uri?t=mkdir-immutable", common::gateway_url()))
        .header("Content-Type", "application/json")
        .send(children.to_string().as_bytes())
        .unwrap();
    let body = resp.body_mut().read_to_string().unwrap();
    assert_eq!(resp.status(), 200, "{body}");
    body.trim().to_owned()
}

/// A hostile tree (names `..`, `a/b`, two edges naming `s`) against a
/// clean one holding the same good entry: each hostile entry refused with a
/// warning, never followed; no difference, so exit 3. Caps and
/// `--gateway`: no config.
#[test]
fn a_hostile_tree_is_refused_per_entry() {
    use base64::Engine as _;
    use serde_json::json;
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    let file = put(b"content that is longer than fifty-five bytes, so a CHK file");
    let meta = json!({"uid": "0", "gid": "0", "mode": "100644", "mtime_ns": "1600000000000000000"});
    let inner =
        mkdir_immutable(&json!({"inside": ["filenode", {"ro_uri": file, "metadata": meta}]}));
    let ok = json!(["filenode", {"ro_uri": file, "metadata": meta}]);
    let clean = mkdir_immutable(&json!({ "ok": ok }));
    let hostile = mkdir_immutable(&json!({
        "..": ["filenode", {"ro_uri": file, "metadata": meta}],
        "a/b": ["filenode", {"ro_uri": file, "metadata": meta}],
        "s": ["filenode", {"ro_uri": file, "metadata": meta}],
        "\\x73": ["dirnode", {"ro_uri": inner, "metadata": {"mode": "40755", "name_raw": b64(b"s")}}],
        "ok": ok,
    }));
    let r = lafs()
        .args([
            "diff",
            &clean,
            &hostile,
            "--gateway",
            &common::gateway_url(),
        ])
        .known_cap(&clean)
        .known_cap(&hostile)
        .run();
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(r.stdout, "");
    for name in [
        "..: refused",
        "a/b: refused",
        " s: refused",
        "\\x73: refused",
    ] {
        assert!(r.stderr.contains(name), "{name}: {}", r.stderr);
    }
}
