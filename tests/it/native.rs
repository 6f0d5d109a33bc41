//! `destination.storage: native` (issue 17 item 3): backups whose CHK
//! objects are encoded by lafs-backup and sent straight to the storage
//! servers of the 3-node HTTPS grid give the gateway's caps, restore
//! through the normal restore, and fall back to the gateway when no server
//! is known (unless required).

use std::fs;
use std::path::{Path, PathBuf};

use crate::common;

/// The 3-node grid's gateway node directory.
fn node_dir_3n() -> PathBuf {
    PathBuf::from(std::env::var("LAFS_TEST_GRID_3N_DIR").expect("LAFS_TEST_GRID_3N_DIR"))
        .join("gateway")
}

/// The hostile tree plus files and directories big enough to be CHK
/// objects (not literal caps): one segment, several segments, and a
/// compressible file.
fn build_source(src: &Path) {
    common::hostile_tree(src);
    fs::create_dir(src.join("chk")).unwrap();
    fs::write(src.join("chk/small"), common::pseudo_random_bytes(1000, 1)).unwrap();
    fs::write(
        src.join("chk/multi-segment"),
        common::pseudo_random_bytes(2 * 1024 * 1024 + 12345, 2),
    )
    .unwrap();
    fs::write(src.join("chk/text"), "native storage\n".repeat(5000)).unwrap();
    for i in 0..20 {
        fs::write(
            src.join(format!("chk/name with a long tail {i:02}")),
            format!("{i}"),
        )
        .unwrap();
    }
}

/// A backup of `src` with its own cache under `dir`; `extra` goes under
/// `destination:`. Returns the config path.
fn config(dir: &Path, src: &Path, extra: &str) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    common::write_backup_config(dir, src, &common::gateway_url_3n(), extra)
}

/// Backs `src` up natively (`native` lines under `destination:`) and then
/// through the gateway, each with its own state under `dir` and `extra`
/// after it; asserts both give the same root cap and returns it. Native
/// first, so that its shares are the ones the servers keep (the gateway's
/// backup then finds them in place).
fn same_root_both_ways(dir: &Path, src: &Path, native: &str, extra: &str) -> String {
    let native_cap =
        common::backup_root_cap(&config(&dir.join("n"), src, &format!("{native}{extra}")));
    let gateway_cap = common::backup_root_cap(&config(&dir.join("g"), src, extra));
    assert!(
        native_cap == gateway_cap,
        "the native backup's root cap differs from the gateway's"
    );
    native_cap
}

/// The normal restore (through the 3-node grid's gateway) of `cap`.
fn restore_3n(cap: &str, target: &Path) {
    common::lafs()
        .args(["restore", "--gateway", &common::gateway_url_3n(), cap])
        .arg(target)
        .ok();
}

fn native(node_dir: &Path, required: bool) -> String {
    format!(
        "  storage: native\n  native:\n    node_dir: '{}'\n    required: {required}\n",
        node_dir.display()
    )
}

#[test]
fn native_backup_gives_the_gateway_root_cap_and_restores() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    build_source(&src);

    let native_cap = same_root_both_ways(tmp.path(), &src, &native(&node_dir_3n(), true), "");

    // The normal restore (through the gateway) of the native backup.
    let target = tmp.path().join("out");
    restore_3n(&native_cap, &target);
    common::lafs()
        .args([
            "verify",
            "--content",
            "--gateway",
            &common::gateway_url_3n(),
            &native_cap,
        ])
        .arg(&target)
        .ok();
    assert_eq!(
        fs::read(target.join("chk/multi-segment")).unwrap(),
        fs::read(src.join("chk/multi-segment")).unwrap()
    );
}

/// A node directory with the 3-node gateway's secrets and tahoe.cfg but no
/// announcement cache: no server is known.
fn node_without_servers(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let node = dir.join("node");
    fs::create_dir_all(node.join("private")).unwrap();
    fs::set_permissions(node.join("private"), fs::Permissions::from_mode(0o700)).unwrap();
    for f in ["private/convergence", "private/secret", "tahoe.cfg"] {
        fs::copy(node_dir_3n().join(f), node.join(f)).unwrap();
    }
    node
}

#[test]
fn no_servers_falls_back_to_the_gateway_unless_required() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    build_source(&src);
    let node = node_without_servers(tmp.path());

    falls_back_unless_required(
        tmp.path(),
        &src,
        |required| native(&node, required),
        "destination.storage is native, but no storage server NURLs were found: using the gateway",
        "destination.native.required is true, but no storage server NURLs were found",
    );
}

/// A backup of `src` with the `native(false)` lines: exit 0 and `warning`
/// on stderr (returned); with `native(true)`: exit 1 and `error`.
fn falls_back_unless_required(
    dir: &Path,
    src: &Path,
    native: impl Fn(bool) -> String,
    warning: &str,
    error: &str,
) -> String {
    let cfg = config(&dir.join("f"), src, &native(false));
    let fallback = common::lafs()
        .arg("-c")
        .arg(&cfg)
        .args(["--json", "backup"])
        .caps_on_stdout()
        .ok();
    assert!(fallback.stderr.contains(warning), "{}", fallback.stderr);

    let cfg = config(&dir.join("r"), src, &native(true));
    let out = common::lafs().arg("-c").arg(&cfg).arg("backup").code(1);
    assert!(out.stderr.contains(error), "{}", out.stderr);
    fallback.stderr
}

#[test]
fn a_bad_convergence_secret_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"x").unwrap();
    let node = node_without_servers(tmp.path());
    fs::write(
        node.join("private/convergence"),
        "aaaaaaaaaaaaaaaaaaaaaaaaaa\n",
    )
    .unwrap();
    let cfg = config(&tmp.path().join("b"), &src, &native(&node, false));
    let out = common::lafs().arg("-c").arg(&cfg).arg("backup").code(2);
    assert!(
        out.stderr
            .contains("the convergence secret is 16 bytes long; Tahoe's is 32"),
        "{}",
        out.stderr
    );
}

// ---- the rest of the upload side (issue 17 item 3) ----

const SMALL_CHUNKING: &str =
    "chunking:\n  min_size: 16384\n  avg_size: 65536\n  max_size: 262144\n";

/// `-c CFG --json ARGS...` (stdin `input`): must exit 0; the summary line.
fn summary(cfg: &Path, args: &[&str], input: Option<&[u8]>) -> serde_json::Value {
    let mut run = common::lafs().arg("-c").arg(cfg).arg("--json").args(args);
    if let Some(input) = input {
        run = run.write_stdin(input.to_vec());
    }
    let run = run.caps_on_stdout().ok();
    let lines = run.of_type("summary");
    assert_eq!(lines.len(), 1, "{}", run.stdout);
    lines[0].clone()
}

/// The storage servers' NURLs from the 3-node gateway's announcement
/// cache (`private/introducer_*_cache.yaml`), as a user would copy them.
fn announced_nurls() -> Vec<String> {
    let re = regex::Regex::new(r"pb://[A-Za-z0-9_-]{43}@[A-Za-z0-9.:\[\]-]+/[A-Za-z0-9_-]+#v=1")
        .unwrap();
    let mut nurls = std::collections::BTreeSet::new();
    for entry in fs::read_dir(node_dir_3n().join("private")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("introducer_") && name.ends_with("_cache.yaml") {
            let text = fs::read_to_string(&path).unwrap();
            nurls.extend(re.find_iter(&text).map(|m| m.as_str().to_owned()));
        }
    }
    assert_eq!(nurls.len(), 3, "the 3 storage servers' NURLs: {nurls:?}");
    nurls.into_iter().collect()
}

/// `destination:` lines of a native config with a static server list.
fn native_static(nurls: &[String], required: bool) -> String {
    let list: String = nurls.iter().map(|n| format!("      - '{n}'\n")).collect();
    format!("{}    servers:\n{list}", native(&node_dir_3n(), required))
}

/// The secrets a native run must never print: the convergence and lease
/// secrets and every swissnum.
fn secrets(nurls: &[String]) -> Vec<String> {
    let mut out: Vec<String> = ["private/convergence", "private/secret"]
        .iter()
        .map(|f| {
            fs::read_to_string(node_dir_3n().join(f))
                .unwrap()
                .trim()
                .to_owned()
        })
        .collect();
    for nurl in nurls {
        let swissnum = nurl.rsplit('/').next().unwrap().trim_end_matches("#v=1");
        out.push(swissnum.to_owned());
    }
    assert!(out.iter().all(|s| s.len() >= 20), "{}", out.len());
    out
}

#[test]
fn stream_and_chunked_backups_in_native_mode_give_the_gateway_caps() {
    let tmp = tempfile::tempdir().unwrap();
    let stream_cfg = |dir: &str, extra: &str| {
        let d = tmp.path().join(dir);
        fs::create_dir_all(&d).unwrap();
        let cfg = d.join("cfg.yaml");
        fs::write(
            &cfg,
            format!(
                "source:\n  entry_cache:\n    path: '{}'\ndestination:\n  url: '{}/uri'\n\
                 {extra}{SMALL_CHUNKING}",
                d.join("cache.sqlite").display(),
                common::gateway_url_3n(),
            ),
        )
        .unwrap();
        cfg
    };
    // stdin: native (required, so no silent fallback) first, then the
    // gateway: the same root, and it reads back.
    let data = common::pseudo_random_bytes(1_500_000, 0x17_0301);
    let native_cfg = stream_cfg("sn", &native(&node_dir_3n(), true));
    let n = summary(&native_cfg, &["backup", "--stdin", "dump"], Some(&data));
    assert!(n["chunks_uploaded"].as_u64().unwrap() > 5, "{n}");
    let g = summary(
        &stream_cfg("sg", ""),
        &["backup", "--stdin", "dump"],
        Some(&data),
    );
    assert!(
        n["root_cap"] == g["root_cap"],
        "the native stream's root differs from the gateway's"
    );
    let out = common::lafs()
        .arg("-c")
        .arg(&native_cfg)
        .args(["cat", "dump"])
        .output();
    assert!(out.status.success());
    assert!(out.stdout == data, "cat gives the stream back");

    // A chunked file of a tree backup (chunking.files).
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    let big = common::pseudo_random_bytes(1_200_000, 0x17_0302);
    fs::write(src.join("disk.img"), &big).unwrap();
    fs::write(
        src.join("small"),
        common::pseudo_random_bytes(3000, 0x17_0303),
    )
    .unwrap();
    let chunked = format!("{SMALL_CHUNKING}  files:\n    min_size: 100000\n");
    let native_cap = same_root_both_ways(
        &tmp.path().join("c"),
        &src,
        &native(&node_dir_3n(), true),
        &chunked,
    );
    let target = tmp.path().join("out");
    restore_3n(&native_cap, &target);
    assert!(fs::read(target.join("disk.img")).unwrap() == big);
}

#[test]
fn a_gateway_cache_is_used_unchanged_in_native_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    build_source(&src);
    let dir = tmp.path().join("state");
    let gateway_cfg = config(&dir, &src, "");
    let first = summary(&gateway_cfg, &["backup"], None);
    assert!(first["files_uploaded"].as_u64().unwrap() > 0, "{first}");

    // The CHK files touched: the metadata cache misses, the content index
    // (written in gateway mode) finds them; nothing new is stored. (Not
    // chk/text: compressed, it is a literal cap, which the content index
    // does not keep.)
    let later = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    for name in ["small", "multi-segment"] {
        let path = src.join("chk").join(name);
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
    }
    // The same cache, now native (required: no silent fallback).
    let native_cfg = config(&dir, &src, &native(&node_dir_3n(), true));
    let second = summary(&native_cfg, &["backup"], None);
    assert_eq!(second["files_uploaded"], 0, "{second}");
    assert_eq!(
        second["content_reused"], 2,
        "every touched CHK file found by content: {second}"
    );
    assert!(
        second["root_cap"] != first["root_cap"],
        "the mtimes changed"
    );
    // And back: the cache the native run updated serves the gateway.
    let third = summary(&gateway_cfg, &["backup"], None);
    assert_eq!(third["files_uploaded"], 0, "{third}");
    assert_eq!(third["dirs_created"], 0, "{third}");
    assert!(third["root_cap"] == second["root_cap"]);
}

#[test]
fn a_static_server_list_backs_up_and_nothing_secret_is_printed() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    build_source(&src);
    let nurls = announced_nurls();
    let cfg = config(&tmp.path().join("s"), &src, &native_static(&nurls, true));
    let run = common::lafs()
        .arg("-c")
        .arg(&cfg)
        .args(["--noise", "--json", "backup"])
        .caps_on_stdout()
        .ok();
    let root = run.of_type("summary")[0]["root_cap"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        run.stderr
            .contains("3 of 3 storage server(s) answer the native storage path"),
        "{}",
        run.stderr
    );
    let gateway_cap = common::backup_root_cap(&config(&tmp.path().join("g"), &src, ""));
    assert!(
        root == gateway_cap,
        "a static list gives the gateway's caps"
    );
    let target = tmp.path().join("out");
    restore_3n(&root, &target);
    assert!(
        fs::read(target.join("chk/multi-segment")).unwrap()
            == fs::read(src.join("chk/multi-segment")).unwrap()
    );

    // --noise: no cap on stderr (common::lafs checks), no secret anywhere.
    let dump = common::lafs().arg("-c").arg(&cfg).arg("dump-config").ok();
    for secret in secrets(&nurls) {
        for (what, text) in [
            ("stderr", &run.stderr),
            ("stdout", &run.stdout),
            ("dump-config", &dump.stdout),
        ] {
            assert!(!text.contains(&secret), "a secret in the {what}");
        }
    }
    assert!(!run.stderr.contains("URI:"));
    assert_eq!(dump.stdout.matches("/<swissnum>#v=1").count(), 3);
}

#[test]
fn the_grid_probe_with_dead_servers_falls_back_unless_required() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), common::pseudo_random_bytes(2000, 0x17_0304)).unwrap();
    // The real servers' NURLs on ports nobody listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let re = regex::Regex::new(r"@[^/]+/").unwrap();
    let dead: Vec<String> = announced_nurls()
        .iter()
        .map(|n| re.replace(n, format!("@127.0.0.1:{port}/")).into_owned())
        .collect();

    let stderr = falls_back_unless_required(
        tmp.path(),
        &src,
        |required| native_static(&dead, required),
        "destination.storage is native, but only 0 of 3 storage server(s) answer, \
         3 needed (shares.happy)",
        "destination.native.required is true, but only 0 of 3 storage server(s) answer",
    );
    assert!(stderr.contains(": using the gateway"), "{stderr}");
    assert_eq!(
        stderr.matches("native").count(),
        1,
        "one warning, nothing native after it: {stderr}"
    );
}
