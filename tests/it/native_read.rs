//! Native reads (issue 17 item 3): with `destination.storage: native`,
//! restore and verify read CHK files and immutable directories straight
//! from the storage servers of the 3-node HTTPS grid. Backups made in
//! either mode restore identical in the other; a corrupted share is routed
//! around; nothing secret is logged at `--noise`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::common;
use crate::common::btrfs::tree;

/// The 3-node grid's directory and its gateway node directory.
fn grid_dir_3n() -> PathBuf {
    PathBuf::from(std::env::var("LAFS_TEST_GRID_3N_DIR").expect("LAFS_TEST_GRID_3N_DIR"))
}

fn node_dir_3n() -> PathBuf {
    grid_dir_3n().join("gateway")
}

/// `destination:` lines of the native mode; `required`: no fallback, so a
/// run that passes read natively.
fn native_extra() -> String {
    format!(
        "  storage: native\n  native:\n    node_dir: '{}'\n    required: true\n",
        node_dir_3n().display()
    )
}

/// The hostile tree plus CHK-sized files (one segment, several segments,
/// compressible), from `seed` (each test its own content).
fn build_source(src: &Path, seed: u64) {
    fs::create_dir_all(src).unwrap();
    common::hostile_tree(src);
    fs::create_dir(src.join("chk")).unwrap();
    fs::write(
        src.join("chk/small"),
        common::pseudo_random_bytes(1000, seed),
    )
    .unwrap();
    fs::write(
        src.join("chk/multi-segment"),
        common::pseudo_random_bytes(2 * 1024 * 1024 + 4321, seed + 1),
    )
    .unwrap();
    fs::write(
        src.join("chk/text"),
        format!("native read {seed}\n").repeat(5000),
    )
    .unwrap();
    for i in 0..30 {
        fs::write(
            src.join(format!("chk/file {i:02}")),
            common::pseudo_random_bytes(100 + i, seed + 10 + i as u64),
        )
        .unwrap();
    }
}

/// A config backing up `src` with its own cache under `dir`.
fn config(dir: &Path, src: &Path, extra: &str) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    common::write_backup_config(dir, src, &common::gateway_url_3n(), extra)
}

/// `src` and `out` hold the same tree, every entry's metadata included
/// (the roots' own names and times aside).
fn assert_same(src: &Path, out: &Path) {
    let strip = |mut t: BTreeMap<PathBuf, common::btrfs::Seen>| {
        t.remove(Path::new(""));
        t
    };
    let (a, b) = (strip(tree(src)), strip(tree(out)));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (rel, seen) in &a {
        assert!(Some(seen) == b.get(rel), "{} differs", rel.display());
    }
}

/// `restore` in native mode through `cfg` (-c): the run's output.
fn restore_native(cfg: &Path, cap: &str, target: &Path, noise: bool) -> common::Run {
    let mut run = common::lafs().arg("-c").arg(cfg);
    if noise {
        run = run.arg("--noise");
    }
    run.args(["restore", cap]).arg(target).ok()
}

#[test]
fn backups_of_either_mode_restore_identical_in_the_other() {
    let tmp = tempfile::tempdir().unwrap();
    let src_g = tmp.path().join("src-g");
    let src_n = tmp.path().join("src-n");
    build_source(&src_g, 1700);
    build_source(&src_n, 1800);

    // A backup made through the gateway, restored and verified natively.
    let gateway_cap = common::backup_root_cap(&config(&tmp.path().join("g"), &src_g, ""));
    let native_cfg = config(&tmp.path().join("n"), &src_n, &native_extra());
    let out = tmp.path().join("out-native");
    restore_native(&native_cfg, &gateway_cap, &out, false);
    assert_same(&src_g, &out);
    common::lafs()
        .arg("-c")
        .arg(&native_cfg)
        .args(["verify", "--content", &gateway_cap])
        .arg(&out)
        .ok();

    // A backup made natively, restored and verified through the gateway.
    let native_cap = common::backup_root_cap(&native_cfg);
    let out = tmp.path().join("out-gateway");
    let gateway = common::gateway_url_3n();
    common::lafs()
        .args(["restore", "--gateway", &gateway, &native_cap])
        .arg(&out)
        .ok();
    assert_same(&src_n, &out);
    common::lafs()
        .args(["verify", "--content", "--gateway", &gateway, &native_cap])
        .arg(&out)
        .ok();
}

/// The share files of the file whose read cap is `cap` on the 3-node
/// grid's disks: its storage index from the gateway's `t=json`.
fn share_files(cap: &str) -> Vec<PathBuf> {
    let text = common::http_agent()
        .get(format!("{}/uri/{cap}?t=json", common::gateway_url_3n()))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let info: serde_json::Value = serde_json::from_str(&text).unwrap();
    let verify = info[1]["verify_uri"].as_str().expect("a CHK file");
    let si = verify
        .strip_prefix("URI:CHK-Verifier:")
        .and_then(|v| v.split(':').next())
        .unwrap();
    let mut files: Vec<PathBuf> = common::share_dirs(&grid_dir_3n(), si)
        .into_iter()
        .flat_map(|d| fs::read_dir(d).unwrap().map(|e| e.unwrap().path()))
        .collect();
    files.sort();
    files
}

#[test]
fn a_corrupted_share_is_routed_around_on_native_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let content = common::pseudo_random_bytes(5000, nonce);
    fs::write(src.join("f"), &content).unwrap();
    // The file's cap, stored by the gateway as the backup will find it.
    let cap = common::http_agent()
        .put(format!("{}/uri", common::gateway_url_3n()))
        .send(&content[..])
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let files = share_files(&cap);
    assert_eq!(files.len(), 3, "one share on each of the 3 servers");
    // 5000 random bytes are stored as they are (under encoding's min_size).
    let root = common::backup_root_cap(&config(&tmp.path().join("g"), &src, ""));
    let cfg = config(&tmp.path().join("n"), &src, &native_extra());
    // Each share in turn has a flipped byte in its first block (after the
    // 12-byte container header and the 0x24-byte share header): whichever
    // two shares the read picks, at least two of the three rounds meet the
    // bad one.
    let mut routed = 0;
    for (round, file) in files.iter().enumerate() {
        let good = fs::read(file).unwrap();
        let mut bad = good.clone();
        bad[12 + 0x24 + 10] ^= 0xff;
        fs::write(file, &bad).unwrap();
        let out = tmp.path().join(format!("out{round}"));
        let run = restore_native(&cfg, &root, &out, true);
        fs::write(file, &good).unwrap();
        assert!(fs::read(out.join("f")).unwrap() == content, "round {round}");
        if run.stderr.contains("other shares were used") {
            assert!(run.stderr.contains("does not match its block hash"));
            routed += 1;
        }
    }
    assert!(routed >= 2, "the bad share was met {routed} times");
}

/// The secrets of the 3-node gateway node: its convergence and lease
/// secrets, and every storage server's swissnum (from its NURLs).
fn secrets() -> Vec<String> {
    let node = node_dir_3n();
    let mut out: Vec<String> = ["private/convergence", "private/secret"]
        .iter()
        .map(|f| fs::read_to_string(node.join(f)).unwrap().trim().to_owned())
        .collect();
    for entry in fs::read_dir(node.join("private")).unwrap() {
        let path = entry.unwrap().path();
        let text = fs::read_to_string(&path).unwrap_or_default();
        for nurl in text.split("pb://").skip(1) {
            let swissnum = nurl
                .split('#')
                .next()
                .and_then(|n| n.rsplit('/').next())
                .unwrap();
            if swissnum.len() >= 16 {
                out.push(swissnum.to_owned());
            }
        }
    }
    assert!(out.len() >= 5, "2 secrets and 3 swissnums: {}", out.len());
    out
}

#[test]
fn noise_output_of_native_reads_has_no_cap_or_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    build_source(&src, 1900);
    let cfg = config(&tmp.path().join("n"), &src, &native_extra());
    let cap = common::backup_root_cap(&cfg);
    let out = tmp.path().join("out");
    let restore = restore_native(&cfg, &cap, &out, true);
    let verify = common::lafs()
        .arg("-c")
        .arg(&cfg)
        .args(["--noise", "verify", "--content", &cap])
        .arg(&out)
        .ok();
    for run in [&restore, &verify] {
        let text = format!("{}{}", run.stdout, run.stderr);
        assert!(!text.is_empty());
        assert!(!text.contains("URI:"), "a cap in the output");
        for secret in secrets() {
            assert!(!text.contains(&secret), "a secret in the output");
        }
    }
}
