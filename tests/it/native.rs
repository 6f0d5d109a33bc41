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

    // Native first, so that its shares are the ones the servers keep (the
    // gateway's backup then finds them in place).
    let native_cfg = config(&tmp.path().join("n"), &src, &native(&node_dir_3n(), true));
    let native_cap = common::backup_root_cap(&native_cfg);
    let gateway_cap = common::backup_root_cap(&config(&tmp.path().join("g"), &src, ""));
    assert!(
        native_cap == gateway_cap,
        "the native backup's root cap differs from the gateway's"
    );

    // The normal restore (through the gateway) of the native backup.
    let target = tmp.path().join("out");
    common::lafs()
        .args([
            "restore",
            "--gateway",
            &common::gateway_url_3n(),
            &native_cap,
        ])
        .arg(&target)
        .ok();
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

    let cfg = config(&tmp.path().join("f"), &src, &native(&node, false));
    let out = common::lafs()
        .arg("-c")
        .arg(&cfg)
        .args(["--json", "backup"])
        .caps_on_stdout()
        .ok();
    assert!(
        out.stderr.contains("destination.storage is native, but no storage server NURLs were found: using the gateway"),
        "{}",
        out.stderr
    );

    let cfg = config(&tmp.path().join("r"), &src, &native(&node, true));
    let out = common::lafs().arg("-c").arg(&cfg).arg("backup").code(1);
    assert!(
        out.stderr.contains(
            "destination.native.required is true, but no storage server NURLs were found"
        ),
        "{}",
        out.stderr
    );
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
