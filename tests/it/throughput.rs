//! Issue 4 behaviours against the real grid: concurrency, identical
//! content, compression choices and rate limits. Timings are lower bounds
//! only (the machine is shared); speed itself is measured by scripts/bench.

use crate::common;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value;
use tempfile::TempDir;

struct Setup {
    _tmp: TempDir,
    source: PathBuf,
    config: PathBuf,
}

fn setup(extra: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("src");
    fs::create_dir(&source).unwrap();
    let config = common::write_backup_config(tmp.path(), &source, &common::gateway_url(), extra);
    Setup {
        _tmp: tmp,
        source,
        config,
    }
}

/// Runs `--json backup ARGS` and returns the summary; the run must succeed.
fn backup(config: &Path, args: &[&str]) -> Value {
    let out = common::lafs()
        .arg("-c")
        .arg(config)
        .args(["--json", "backup"])
        .args(args)
        .caps_on_stdout()
        .output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    common::json_lines(&out.stdout)
        .into_iter()
        .find(|v| v["type"] == "summary")
        .expect("a summary line")
}

/// name → (cap, metadata) of a directory's children.
fn children(cap: &str) -> serde_json::Map<String, Value> {
    let url = common::gateway_url();
    let listing: Value =
        serde_json::from_slice(&common::http_get(&format!("{url}/uri/{cap}?t=json"))).unwrap();
    listing[1]["children"].as_object().unwrap().clone()
}

fn child<'a>(dir: &'a serde_json::Map<String, Value>, name: &str) -> (&'a str, &'a Value) {
    let info = &dir[name][1];
    (info["ro_uri"].as_str().unwrap(), &info["metadata"])
}

#[test]
fn copies_under_concurrency_give_the_same_root_cap_as_one_at_a_time() {
    let s = setup("");
    let unique = common::pseudo_random_bytes(50_000, 7);
    for d in 0..3 {
        let dir = s.source.join(format!("d{d}"));
        fs::create_dir(&dir).unwrap();
        for f in 0..4 {
            // Twelve copies of one file, uploaded four at a time: identical
            // content in flight must go up once, not collide on the grid.
            fs::write(dir.join(format!("copy{f}")), &unique).unwrap();
            fs::write(
                dir.join(format!("own{f}")),
                common::pseudo_random_bytes(3000, (d * 10 + f) as u64),
            )
            .unwrap();
        }
    }
    let parallel = backup(
        &s.config,
        &["--concurrency", "4", "--disable-deduplication"],
    );
    assert_eq!(parallel["skipped"], 0);
    // Another cache, one object at a time: the same tree, the same caps.
    let other = tempfile::tempdir().unwrap();
    let config = common::write_backup_config(other.path(), &s.source, &common::gateway_url(), "");
    let serial = backup(&config, &["--concurrency", "1"]);
    assert_eq!(serial["root_cap"], parallel["root_cap"]);
    // Identical content was sent once per run: 12 own files + 1 copy.
    assert_eq!(serial["files_uploaded"], 13);
    assert_eq!(serial["content_reused"], 11);
}

#[test]
fn a_moved_large_file_is_not_uploaded_again() {
    let s = setup("");
    fs::create_dir(s.source.join("a")).unwrap();
    fs::create_dir(s.source.join("b")).unwrap();
    // Compressible, so the reuse must also carry `enc` over to the new edge.
    let mut big = Vec::new();
    for i in 0..60_000 {
        big.extend_from_slice(format!("line {i} of a large compressible file\n").as_bytes());
    }
    fs::write(s.source.join("a/big.bin"), &big).unwrap();
    fs::write(
        s.source.join("a/small.bin"),
        common::pseudo_random_bytes(2000, 12),
    )
    .unwrap();
    let first = backup(&s.config, &[]);
    assert_eq!(first["files_uploaded"], 2);
    fs::rename(s.source.join("a/big.bin"), s.source.join("b/moved.bin")).unwrap();
    let second = backup(&s.config, &[]);
    assert_eq!(
        second["files_uploaded"], 0,
        "the moved file was uploaded again"
    );
    assert_eq!(second["content_reused"], 1);
    let root = children(second["root_cap"].as_str().unwrap());
    let b = children(child(&root, "b").0);
    let (_, meta) = child(&b, "moved.bin");
    // zstd: the base config's codec since issue 16.
    assert_eq!(
        meta["enc"], "zstd",
        "the reused object keeps its encoding on the edge"
    );
}

#[test]
fn zstd_compresses_text_and_leaves_random_content_alone() {
    let s = setup(
        "  encoding:\n    codec: zstd\n    xz:\n      path_filter:\n        - [0, '\\.txt$']\n",
    );
    let text = "a line of ordinary text that compresses well\n".repeat(40);
    fs::write(s.source.join("small.txt"), &text[..1100]).unwrap();
    fs::write(s.source.join("big.txt"), text.repeat(50)).unwrap();
    let random = common::pseudo_random_bytes(20_000, 21);
    fs::write(s.source.join("random.txt"), &random).unwrap();
    let summary = backup(&s.config, &[]);
    let root = children(summary["root_cap"].as_str().unwrap());
    let url = common::gateway_url();
    for name in ["small.txt", "big.txt"] {
        let (cap, meta) = child(&root, name);
        assert_eq!(meta["enc"], "zstd", "{name}");
        let stored = common::http_get(&format!("{url}/uri/{cap}"));
        let mut decoded = Vec::new();
        zstd::stream::read::Decoder::new(&stored[..])
            .unwrap()
            .read_to_end(&mut decoded)
            .unwrap();
        assert!(
            decoded == fs::read(s.source.join(name)).unwrap(),
            "{name} decodes to the source"
        );
        assert_eq!(
            meta["size"],
            fs::metadata(s.source.join(name)).unwrap().len().to_string()
        );
    }
    let (cap, meta) = child(&root, "random.txt");
    assert!(
        meta.get("enc").is_none(),
        "random content is stored as it is"
    );
    assert!(common::http_get(&format!("{url}/uri/{cap}")) == random);
}

#[test]
fn codec_xz_with_the_original_tools_options_still_compresses_with_xz() {
    // The original tool's {options: {level: N}} form, with the codec that
    // was its only one (the default before issue 16) named explicitly.
    let s = setup(
        "  encoding:\n    codec: xz\n    xz:\n      max_parallel: 1\n      \
         options: {options: {level: 1}}\n",
    );
    let text = "a line of ordinary text that compresses well\n".repeat(400);
    fs::write(s.source.join("a.txt"), &text).unwrap();
    fs::write(s.source.join("b.txt"), text.repeat(2)).unwrap();
    let summary = backup(&s.config, &[]);
    assert_eq!(summary["files_uploaded"], 2);
    let root = children(summary["root_cap"].as_str().unwrap());
    let url = common::gateway_url();
    for name in ["a.txt", "b.txt"] {
        let (cap, meta) = child(&root, name);
        assert_eq!(meta["enc"], "xz", "{name}");
        let stored = common::http_get(&format!("{url}/uri/{cap}"));
        let mut decoded = Vec::new();
        liblzma::read::XzDecoder::new(&stored[..])
            .read_to_end(&mut decoded)
            .unwrap();
        assert!(decoded == fs::read(s.source.join(name)).unwrap(), "{name}");
    }
}

#[test]
fn flipping_a_rule_reuploads_exactly_the_files_whose_decision_changed() {
    let s = setup("");
    let text = "compressible log line\n".repeat(400); // 8.8 kB, above min_size
    for name in ["a.log", "b.log", "c.dat"] {
        fs::write(s.source.join(name), format!("{name}\n{text}")).unwrap();
    }
    let first = backup(&s.config, &[]);
    assert_eq!(first["files_uploaded"], 3);
    let root = children(first["root_cap"].as_str().unwrap());
    // zstd: the base config's codec since issue 16.
    assert_eq!(child(&root, "a.log").1["enc"], "zstd");
    // Now .log files are never compressed: a.log and b.log change their
    // decision, c.dat does not.
    let flipped = s.config.with_file_name("flip.yaml");
    fs::write(
        &flipped,
        "destination:\n  encoding:\n    xz:\n      path_filter: ['-\\.log$']\n",
    )
    .unwrap();
    let out = common::lafs()
        .arg("-c")
        .arg(&s.config)
        .arg("-c")
        .arg(&flipped)
        .args(["--json", "backup"])
        .caps_on_stdout()
        .ok();
    let second = common::json_lines(out.stdout.as_bytes())
        .into_iter()
        .find(|v| v["type"] == "summary")
        .unwrap();
    assert_eq!(second["files_uploaded"], 2);
    assert!(second["unchanged"].as_u64().unwrap() >= 1);
    let root = children(second["root_cap"].as_str().unwrap());
    assert!(child(&root, "a.log").1.get("enc").is_none());
    assert_eq!(child(&root, "c.dat").1["enc"], "zstd");
}

#[test]
fn an_objects_limit_paces_uploads_before_sending() {
    let s = setup("operation:\n  rate_limit:\n    objects: '1:1'\n");
    for i in 0..5 {
        fs::write(
            s.source.join(format!("f{i}")),
            common::pseudo_random_bytes(1000, 40 + i),
        )
        .unwrap();
    }
    // Five files and one directory: six objects at one per second, the
    // first free (burst 1), so at least four seconds even for the files.
    let started = Instant::now();
    let summary = backup(&s.config, &[]);
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(summary["files_uploaded"], 5);
    assert!(
        elapsed >= 4.0,
        "5 files at 1 object/s took only {elapsed:.2}s"
    );
}

#[test]
fn limit_upload_paces_bytes_and_rejects_nonsense() {
    let s = setup("");
    fs::write(
        s.source.join("f"),
        common::pseudo_random_bytes(400 << 10, 50),
    )
    .unwrap();
    let started = Instant::now();
    // 400 KiB at 200 KiB/s with a burst of one second's worth: >= ~1 s.
    backup(
        &s.config,
        &["--limit-upload", "200K", "--disable-deduplication"],
    );
    assert!(started.elapsed().as_secs_f64() >= 0.9);
    common::lafs()
        .arg("-c")
        .arg(&s.config)
        .args(["backup", "--limit-upload", "fast"])
        .assert()
        .code(2);
}

#[test]
fn json_progress_lines_come_before_the_summary() {
    let s = setup("");
    for i in 0..6 {
        fs::write(
            s.source.join(format!("f{i}")),
            common::pseudo_random_bytes(9000, 60 + i),
        )
        .unwrap();
    }
    let out = common::lafs()
        .arg("-c")
        .arg(&s.config)
        .args(["--json", "backup", "--json-progress"])
        .caps_on_stdout()
        .output();
    assert_eq!(out.status.code(), Some(0));
    let lines = common::json_lines(&out.stdout);
    let progress: Vec<&Value> = lines.iter().filter(|v| v["type"] == "progress").collect();
    assert!(!progress.is_empty(), "no progress line");
    let last = progress.last().unwrap();
    assert_eq!(last["objects_done"], last["objects_total"]);
    assert_eq!(lines.last().unwrap()["type"], "summary");
}
