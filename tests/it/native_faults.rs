//! `destination.storage: native` on the 5-node 3-of-10 HTTPS grid (happy
//! 4; `common::grid5`): the root cap equals the gateway's, and with storage
//! nodes down or killed mid-backup a backup with
//! `destination.native.required: true` either completes (the shares
//! re-placed on the nodes left) or exits 1 with a clear message; once the
//! nodes are back the next run completes and restores byte for byte.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::grid5::{Grid5, NODES};

/// A backup of `src` to the 5-node grid with its own cache under `dir`,
/// native (required) or through the gateway.
fn config(g: &Grid5, dir: &Path, src: &Path, native: bool) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let extra = if native {
        format!(
            "  storage: native\n  native:\n    node_dir: '{}'\n    required: true\n{}",
            g.gateway_node().display(),
            common::QUICK_RETRY
        )
    } else {
        common::QUICK_RETRY.to_owned()
    };
    common::write_backup_config(dir, src, g.url(), &extra)
}

/// Files of several sizes (the seed keeps each test's content its own:
/// identical content uploaded at once by two tests is refused).
fn build_source(src: &Path, seed: u64) {
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("small"), common::pseudo_random_bytes(1000, seed)).unwrap();
    fs::write(
        src.join("sub/multi-segment"),
        common::pseudo_random_bytes(2 * 1024 * 1024 + 3, seed + 1),
    )
    .unwrap();
    fs::write(src.join("sub/lit"), b"a literal").unwrap();
}

/// Restores `cap` through the gateway and compares it with `src`.
fn assert_restores(g: &Grid5, cap: &str, src: &Path, target: &Path) {
    common::lafs()
        .args(["restore", "--gateway", g.url(), cap])
        .arg(target)
        .ok();
    assert_same_files(src, target);
}

fn assert_same_files(a: &Path, b: &Path) {
    let mut names: Vec<_> = fs::read_dir(a)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for name in names {
        let (pa, pb) = (a.join(&name), b.join(&name));
        if pa.is_dir() {
            assert_same_files(&pa, &pb);
        } else {
            assert!(
                fs::read(&pa).unwrap() == fs::read(&pb).unwrap(),
                "{} differs after restore",
                pb.display()
            );
        }
    }
}

/// The regular files under `dir` (none if it does not exist).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).into_iter().flatten().flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => todo.push(entry.path()),
                Ok(t) if t.is_file() => out.push(entry.path()),
                _ => {}
            }
        }
    }
    out
}

fn native_backup(cfg: &Path) -> common::Run {
    common::lafs()
        .arg("-c")
        .arg(cfg)
        .args(["--json", "backup"])
        .caps_on_stdout()
        .run()
}

fn root_cap(run: &common::Run) -> String {
    run.of_type("summary")[0]["root_cap"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_native_backup_on_3_of_10_gives_the_gateway_root_cap() {
    let g = Grid5::shared();
    let _shared = g.shared_use();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    build_source(&src, 500);
    let native_cap = common::backup_root_cap(&config(g, &tmp.path().join("n"), &src, true));
    let gateway_cap = common::backup_root_cap(&config(g, &tmp.path().join("g"), &src, false));
    assert!(
        native_cap == gateway_cap,
        "the native backup's root cap differs from the gateway's"
    );
    assert_restores(g, &native_cap, &src, &tmp.path().join("out"));
}

#[test]
fn a_backup_with_nodes_down_completes_or_fails_clearly_and_the_next_run_completes() {
    let g = Grid5::shared();
    let alone = g.alone();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    build_source(&src, 600);
    let cfg = config(g, &tmp.path().join("n"), &src, true);

    // One node of five down: happy 4 is still reachable, the backup
    // completes (the native client skips the node that does not answer).
    alone.stop_node("storage2");
    let run = native_backup(&cfg);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_restores(g, &root_cap(&run), &src, &tmp.path().join("out1"));

    // Two down: 3 servers cannot be 4 happy. A clear error, exit 1.
    alone.stop_node("storage4");
    fs::write(src.join("new"), common::pseudo_random_bytes(50_000, 601)).unwrap();
    let run = native_backup(&cfg);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("upload unhappy: shares on 3 distinct server(s), 4 needed"),
        "{}",
        run.stderr
    );

    // All back: the next run completes.
    alone.all_up();
    let run = native_backup(&cfg);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_restores(g, &root_cap(&run), &src, &tmp.path().join("out2"));
}

#[test]
fn a_node_killed_mid_backup_then_the_next_run_completes() {
    let g = Grid5::shared();
    let alone = g.alone();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    // Shares of 3 MiB, sent in 1 MiB chunks.
    fs::write(
        src.join("large"),
        common::pseudo_random_bytes(9 * 1024 * 1024 + 5, 700),
    )
    .unwrap();
    let cfg = config(g, &tmp.path().join("n"), &src, true);
    let running = common::lafs()
        .arg("-c")
        .arg(&cfg)
        .args(["--json", "backup"])
        .caps_on_stdout()
        .spawn();
    // The first node with a share of the file past its first chunk
    // (uploads in progress are under storage/shares/incoming) is killed.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut killed = None;
    let mut running = running;
    while killed.is_none() && Instant::now() < deadline {
        if running.try_wait().is_some() {
            break;
        }
        killed = NODES.into_iter().find(|node| {
            let incoming = g.dir().join(node).join("storage/shares/incoming");
            files_under(&incoming)
                .iter()
                .any(|f| f.metadata().is_ok_and(|m| m.len() > 1024 * 1024))
        });
        if let Some(node) = killed {
            alone.kill_node(node);
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let node = killed.expect("a node took a chunk of the large file before the backup ended");
    let run = running.wait();
    eprintln!("{node} killed mid-backup: the backup exited {}", run.code);
    // Re-placed on the four others (happy 4), or a clear error.
    match run.code {
        0 => assert_restores(g, &root_cap(&run), &src, &tmp.path().join("out1")),
        1 => assert!(run.stderr.contains("upload unhappy"), "{}", run.stderr),
        code => panic!("exit {code} after {node} was killed: {}", run.stderr),
    }
    alone.all_up();
    let run = native_backup(&cfg);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_restores(g, &root_cap(&run), &src, &tmp.path().join("out2"));
}
