//! Tar streams (issue 15 item 4, TARzan) against the real local grid and
//! Debian's GNU tar: `backup --stdin --tar` of the hostile tree in GNU and
//! pax formats (and `--sparse`), `cat` gives the byte-identical tar back
//! (`cmp`), a changed file uploads its payload only, a payload a tree
//! backup stored is found by content, a stream that is not a tar fails
//! (`--tar`) or is stored plain (`--tar-lenient`), `check --leases` and
//! `cleanup` reach every payload, and the layout of docs/streams.md.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use lafs_backup::{TarEvent, TarIndexWriter, TarSplitter};
use serde_json::Value;
use tempfile::TempDir;

/// Small chunks, so that the record index of a small tar has a few.
const CHUNKING: &str = "chunking:\n  min_size: 1024\n  avg_size: 4096\n  max_size: 65536\n";

struct Setup {
    tmp: TempDir,
    config: PathBuf,
    url: String,
}

impl Setup {
    fn new(url: &str) -> Setup {
        Setup::with(url, "")
    }

    /// With `extra` config (e.g. `jobs`) at the end.
    fn with(url: &str, extra: &str) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("cfg.yaml");
        // `tree/` is the source of a tree backup, when a test makes one.
        fs::write(
            &config,
            format!(
                "source:\n  path: '{}'\n  queue:\n    path: '{}'\n  entry_cache:\n    path: '{}'\n\
                 destination:\n  url: '{url}/uri'\n{}{CHUNKING}{extra}",
                tmp.path().join("tree").display(),
                tmp.path().join("queue").display(),
                tmp.path().join("cache.sqlite").display(),
                common::QUICK_RETRY,
            ),
        )
        .unwrap();
        Setup {
            tmp,
            config,
            url: url.to_owned(),
        }
    }

    fn lafs(&self) -> common::Lafs {
        common::lafs().arg("-c").arg(&self.config)
    }

    /// `backup --json --stdin NAME FLAG` of `data`; the summary line.
    fn backup(&self, name: &str, flag: &str, data: &[u8]) -> Value {
        let run = self
            .lafs()
            .args(["--json", "backup", "--stdin", name, flag])
            .write_stdin(data.to_vec())
            .caps_on_stdout()
            .ok();
        let summary = run.of_type("summary");
        assert_eq!(summary.len(), 1, "{}", run.stdout);
        summary[0].clone()
    }

    /// `cat SELECTOR` into a file, compared with `expected` by `cmp`.
    fn cat_cmp(&self, selector: &str, expected: &[u8]) {
        let want = self.tmp.path().join("want");
        let got = self.tmp.path().join("got");
        fs::write(&want, expected).unwrap();
        let out = self.lafs().args(["cat", selector]).output();
        assert!(
            out.status.success(),
            "cat {selector}: {}",
            common::redact(&String::from_utf8_lossy(&out.stderr))
        );
        fs::write(&got, &out.stdout).unwrap();
        let cmp = Command::new("cmp").arg(&want).arg(&got).output().unwrap();
        assert!(
            cmp.status.success(),
            "cat {selector} differs: {}",
            String::from_utf8_lossy(&cmp.stdout)
        );
    }

    fn backups(&self) -> Vec<Value> {
        self.lafs()
            .args(["--json", "list"])
            .caps_on_stdout()
            .ok()
            .of_type("backup")
    }
}

/// The hostile tree, random files (one larger than `max_size`, so that its
/// payload is spooled to a file) and a sparse file with 8 KiB of data.
fn tar_tree(root: &Path) {
    common::hostile_tree(root);
    fs::write(
        root.join("random-1"),
        common::pseudo_random_bytes(30_001, 1),
    )
    .unwrap();
    fs::write(
        root.join("random-2"),
        common::pseudo_random_bytes(300_000, 2),
    )
    .unwrap();
    fs::write(root.join("n".repeat(150)), b"long name").unwrap();
    let sparse = root.join("sparse-data");
    let file = fs::File::create(&sparse).unwrap();
    file.set_len(4 << 20).unwrap();
    drop(file);
    let data = common::pseudo_random_bytes(8192, 3);
    let mut file = fs::OpenOptions::new().write(true).open(&sparse).unwrap();
    use std::io::{Seek, SeekFrom, Write};
    file.seek(SeekFrom::Start(2 << 20)).unwrap();
    file.write_all(&data).unwrap();
}

/// The regular members of a tar (its payloads), as the splitter sees them.
fn payload_count(tar: &[u8]) -> u64 {
    let mut sp = TarSplitter::new(tar);
    let mut n = 0;
    while let Some(event) = sp.next_event().unwrap() {
        if let TarEvent::Payload { .. } = event {
            n += 1;
        }
    }
    n
}

/// The hostile tree in GNU and pax formats, and with `--sparse`, through
/// `backup --stdin --tar`: `cat` gives each tar back identical (`cmp`);
/// the same tar again uploads nothing; one file changed uploads its
/// payload (and a few index chunks) only; `verify --stdin`; `list`.
#[test]
fn tar_streams_round_trip_and_upload_only_changed_payloads() {
    // A grid of its own: its upload counter sees this test's uploads only.
    let grid = common::PrivateGrid::start_fast();
    let s = Setup::new(grid.url());
    let root = s.tmp.path().join("tree");
    fs::create_dir(&root).unwrap();
    tar_tree(&root);

    let gnu = common::tar_c(&root, &["--format=gnu"]);
    let first = s.backup("t", "--tar", &gnu);
    assert_eq!(first["kind"], "stream");
    assert_eq!(first["layout"], "tar");
    assert_eq!(first["bytes_total"], gnu.len());
    assert_eq!(first["payloads"], payload_count(&gnu), "{first}");
    assert!(first["payloads"].as_u64().unwrap() >= 15, "{first}");
    s.cat_cmp("t", &gnu);

    // The same tar again: nothing goes up, the same root.
    let before = common::bytes_uploaded(grid.url());
    let again = s.backup("t", "--tar", &gnu);
    assert_eq!(common::bytes_uploaded(grid.url()), before, "{again}");
    assert_eq!(again["payloads_uploaded"], 0);
    assert_eq!(again["root_cap"], first["root_cap"]);

    // pax, and GNU with --sparse: other headers, the same payloads (the
    // sparse file's is its data only), found by content.
    for (name, args) in [
        ("p", &["--format=pax"][..]),
        ("sp", &["--format=gnu", "--sparse"][..]),
        ("spx", &["--format=pax", "--sparse"][..]),
    ] {
        let tar = common::tar_c(&root, args);
        let summary = s.backup(name, "--tar", &tar);
        assert_eq!(summary["payloads"], payload_count(&tar), "{summary}");
        let uploaded = summary["payloads_uploaded"].as_u64().unwrap();
        // Only the sparse file's data (8 KiB) is new with --sparse.
        assert!(uploaded <= 1, "{name}: {summary}");
        s.cat_cmp(name, &tar);
    }

    // One file changed: its payload goes up, and the index chunks around
    // its header; no other payload.
    fs::write(
        root.join("random-2"),
        common::pseudo_random_bytes(300_000, 9),
    )
    .unwrap();
    let changed = common::tar_c(&root, &["--format=gnu"]);
    let before = common::bytes_uploaded(grid.url());
    let third = s.backup("t", "--tar", &changed);
    let sent = common::bytes_uploaded(grid.url()) - before;
    assert_eq!(third["payloads_uploaded"], 1, "{third}");
    let index_up = third["bytes_uploaded"].as_u64().unwrap() - 300_000;
    assert!(index_up <= 3 * 65_536, "{third}");
    // The gateway's count adds the directories rewritten (small).
    assert!(
        sent <= 300_000 + index_up + (64 << 10),
        "{sent} bytes uploaded for one changed file: {third}"
    );
    s.cat_cmp("t", &changed);
    s.cat_cmp("t@1", &gnu);

    // verify --stdin: equal, then different.
    s.lafs()
        .args(["verify", "t", "--stdin"])
        .write_stdin(changed.clone())
        .ok();
    s.lafs()
        .args(["verify", "t@1", "--stdin"])
        .write_stdin(changed.clone())
        .code(4);

    // list shows the kind; restore refuses, pointing at cat.
    let listed = s.backups();
    assert!(listed.iter().all(|b| b["kind"] == "stream"), "{listed:?}");
    let target = s.tmp.path().join("restored");
    let r = s.lafs().args(["restore", "t"]).arg(&target).code(2);
    assert!(r.stderr.contains("lafs-backup cat"), "{}", r.stderr);
}

/// A payload with the bytes of a file a tree backup stored is not
/// uploaded again.
#[test]
fn payloads_stored_by_a_tree_backup_are_found_by_content() {
    let s = Setup::new(&common::gateway_url());
    let root = s.tmp.path().join("tree");
    fs::create_dir(&root).unwrap();
    fs::write(root.join("one"), common::pseudo_random_bytes(70_000, 31)).unwrap();
    fs::write(root.join("two"), common::pseudo_random_bytes(5_000, 32)).unwrap();
    let tree = s.lafs().args(["--json", "backup"]).caps_on_stdout().ok();
    assert_eq!(tree.of_type("summary").len(), 1, "{}", tree.stdout);
    let tar = common::tar_c(&root, &["--format=pax"]);
    let summary = s.backup("tarred", "--tar", &tar);
    assert_eq!(summary["payloads"], 2, "{summary}");
    assert_eq!(summary["payloads_uploaded"], 0, "{summary}");
    assert_eq!(summary["payloads_reused"], 2, "{summary}");
    s.cat_cmp("tarred", &tar);
}

/// Not a tar: `--tar` fails (exit 1, the offset named, nothing recorded);
/// `--tar-lenient` stores the bytes as a plain stream, also when the error
/// comes late (a tar cut inside a payload); `--tar` without `--stdin` is a
/// usage error.
#[test]
fn streams_that_are_not_tars() {
    let s = Setup::new(&common::gateway_url());
    let noise = common::pseudo_random_bytes(200_000, 41);
    let failed = s
        .lafs()
        .args(["backup", "--stdin", "junk", "--tar"])
        .write_stdin(noise.clone())
        .code(1);
    assert!(
        failed.stderr.contains("not a valid tar stream at byte 0"),
        "{}",
        failed.stderr
    );
    assert!(
        failed.stderr.contains("nothing was recorded"),
        "{}",
        failed.stderr
    );
    assert!(s.backups().is_empty());

    let plain = s.backup("junk", "--tar-lenient", &noise);
    assert_eq!(plain["kind"], "stream");
    assert!(plain.get("layout").is_none(), "{plain}");
    s.cat_cmp("junk", &noise);

    // A real tar cut inside a payload: the error comes after payloads were
    // stored; lenient replays every byte.
    let root = s.tmp.path().join("tree");
    fs::create_dir(&root).unwrap();
    fs::write(root.join("a"), common::pseudo_random_bytes(50_000, 42)).unwrap();
    fs::write(root.join("b"), common::pseudo_random_bytes(200_000, 43)).unwrap();
    let tar = common::tar_c(&root, &["--format=gnu"]);
    let cut = &tar[..tar.len() - 100_000];
    let failed = s
        .lafs()
        .args(["backup", "--stdin", "cut", "--tar"])
        .write_stdin(cut.to_vec())
        .code(1);
    assert!(
        failed.stderr.contains("not a valid tar stream at byte")
            && failed.stderr.contains("the stream ends inside the payload"),
        "{}",
        failed.stderr
    );
    assert_eq!(s.backups().len(), 1, "nothing more recorded");
    let lenient = s
        .lafs()
        .args(["--json", "backup", "--stdin", "cut", "--tar-lenient"])
        .write_stdin(cut.to_vec())
        .caps_on_stdout()
        .ok();
    assert!(
        lenient.stderr.contains("not a valid tar"),
        "{}",
        lenient.stderr
    );
    assert!(
        lenient.stderr.contains("plain stream"),
        "{}",
        lenient.stderr
    );
    s.cat_cmp("cut", cut);

    for flag in ["--tar", "--tar-lenient"] {
        s.lafs().args(["backup", flag]).arg(s.tmp.path()).code(2);
    }

    // The spelling, NAME last, is the same backup.
    s.lafs()
        .args(["backup", "--stdin", "--tar", "last"])
        .write_stdin(tar.clone())
        .caps_on_stdout()
        .ok();
    s.cat_cmp("last", &tar);
    let nameless = s
        .lafs()
        .args(["backup", "--stdin", "--tar"])
        .write_stdin(tar.clone())
        .code(2);
    assert!(
        nameless.stderr.contains("--stdin needs the backup NAME"),
        "{}",
        nameless.stderr
    );
}

/// `check --leases` renews every object of a tar stream (root, payload
/// groups and payloads, the index directory, its groups and chunks), a
/// deep check finds them healthy, and `cleanup` of one tar forgets what
/// only it reached and keeps what a kept tar shares.
#[test]
fn leases_check_and_cleanup_reach_every_payload() {
    let s = Setup::new(&common::gateway_url());
    let root = s.tmp.path().join("tree");
    fs::create_dir(&root).unwrap();
    for i in 0..6 {
        fs::write(
            root.join(format!("f{i}")),
            common::pseudo_random_bytes(20_000, 50 + i),
        )
        .unwrap();
    }
    let first = s.backup("a", "--tar", &common::tar_c(&root, &["--format=pax"]));
    fs::write(root.join("f6"), common::pseudo_random_bytes(20_000, 60)).unwrap();
    let second = s.backup("b", "--tar", &common::tar_c(&root, &["--format=pax"]));
    let (r1, r2) = (
        first["root_cap"].as_str().unwrap(),
        second["root_cap"].as_str().unwrap(),
    );
    let o1 = common::reachable_objects(&s.url, r1);
    let o2 = common::reachable_objects(&s.url, r2);
    // Root, payload group, 6 payloads, index directory and its group, at
    // least one index chunk.
    assert!(o1.len() >= 11, "{}", o1.len());
    assert!(o1.intersection(&o2).count() >= 6, "the tars share payloads");

    common::assert_leases_renew(|| s.lafs(), &o1, &o2);
    // A deep check with repair reaches every object of the tar, all
    // healthy; the literal index entries (root and index) are counted too.
    common::assert_repair_reaches(|| s.lafs(), "a", &o1, 2);

    let cache = s.tmp.path().join("cache.sqlite");
    common::assert_cleanup_keeps_shared(|| s.lafs(), &cache, r1, &o1, &o2);
}

/// The tar layout of docs/streams.md, pinned: the root's entries, the
/// index edge, the payload names and metadata (each payload's bytes the
/// member's), and the record index (a plain stream) holding exactly the
/// serialised records.
#[test]
fn tar_stream_format_golden() {
    let s = Setup::new(&common::gateway_url());
    let root = s.tmp.path().join("tree");
    fs::create_dir(&root).unwrap();
    let a = common::pseudo_random_bytes(3000, 70);
    let b = common::pseudo_random_bytes(700, 71);
    fs::write(root.join("a"), &a).unwrap();
    fs::write(root.join("b"), &b).unwrap();
    let tar = common::tar_c(
        &root,
        &[
            "--format=ustar",
            "--sort=name",
            "--mtime=@0",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
        ],
    );
    let summary = s.backup("golden", "--tar", &tar);
    let cap = summary["root_cap"].as_str().unwrap();
    let top = common::dir_listing(&s.url, cap);
    let names: Vec<&str> = top.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(names, [".lafs-backup-stream", "g00000000", "index"]);
    let own = |m: &Value| {
        let mut m = m.clone();
        m.as_object_mut().unwrap().remove("tahoe");
        m
    };
    let parse = |text: String| -> Value { serde_json::from_str(&text).unwrap() };
    assert_eq!(top[0].2, "URI:LIT:");
    assert_eq!(
        own(&top[0].3),
        parse(format!(
            "{{\"format\":\"lafs-backup-stream\",\"version\":\"1\",\"layout\":\"tar\",\
             \"size\":\"{}\",\"payloads\":\"2\",\"groups\":\"1\",\"group_size\":\"1024\"}}",
            tar.len()
        ))
    );
    assert_eq!(
        own(&top[1].3),
        parse("{\"chunks\":\"2\",\"size\":\"3700\"}".into())
    );
    let payloads = common::dir_listing(&s.url, &top[1].2);
    let names: Vec<&str> = payloads.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(names, ["p00000000", "p00000001"]);
    for ((_, kind, pcap, meta), want) in payloads.iter().zip([&a, &b]) {
        assert_eq!(kind, "filenode");
        assert_eq!(own(meta), parse(format!("{{\"size\":\"{}\"}}", want.len())));
        let body = common::http_get(&format!("{}/uri/{}", s.url, pcap.replace(':', "%3A")));
        assert!(&body == want, "a payload's object is the member's bytes");
    }

    // The record index: the verbatim bytes and payload records, in the
    // form of src/tarsplit/index.rs, stored as a plain stream.
    let mut expected = TarIndexWriter::new(Vec::new()).unwrap();
    let mut sp = TarSplitter::new(&tar[..]);
    while let Some(event) = sp.next_event().unwrap() {
        match event {
            TarEvent::Verbatim(bytes) => expected.verbatim(&bytes).unwrap(),
            TarEvent::Payload { path, size, .. } => expected.payload(&path, size).unwrap(),
        }
    }
    let expected = expected.finish().unwrap();
    assert!(expected.starts_with(b"LBTARIDX\x01V"));
    let index = common::dir_listing(&s.url, &top[2].2);
    assert_eq!(top[2].1, "dirnode");
    assert_eq!(index[0].0, ".lafs-backup-stream");
    assert_eq!(index[0].3["size"], expected.len().to_string());
    assert!(
        index.iter().skip(1).all(|e| e.0.starts_with('g')),
        "{index:?}"
    );
    // The index directory is a plain stream: cat reads it as one.
    let got = common::lafs()
        .args(["cat", "--gateway", &s.url, &top[2].2])
        .known_cap(&top[2].2)
        .output();
    assert!(got.status.success());
    let got = got.stdout;
    assert!(
        got == expected,
        "the index stream is the serialised records"
    );
}

/// A job of `kind: command` with `tar: true` stores its output as a tar
/// stream; output that is not a tar fails it (exit 1, nothing recorded);
/// `tar` on a tree job is a config error (exit 2).
#[test]
fn command_jobs_with_tar() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("x"), common::pseudo_random_bytes(40_000, 80)).unwrap();
    fs::write(src.join("y"), b"why").unwrap();
    let jobs = format!(
        "jobs:\n  - name: t\n    kind: command\n    tar: true\n    \
         command: [tar, -c, --format=gnu, -C, '{}', .]\n  \
         - name: junk\n    kind: command\n    tar: true\n    command: [echo, hello]\n",
        src.display()
    );
    let s = Setup::with(&common::gateway_url(), &jobs);
    let run = s
        .lafs()
        .args(["--json", "backup", "--job", "t"])
        .caps_on_stdout()
        .ok();
    let summary = &run.of_type("summary")[0];
    assert_eq!(summary["layout"], "tar", "{summary}");
    assert_eq!(summary["job"], "t", "{summary}");
    assert_eq!(summary["payloads"], 2, "{summary}");
    s.cat_cmp("t", &common::tar_c(&src, &["--format=gnu"]));

    // A tar command that fails halfway: its failure and stderr are shown.
    let half = Setup::with(
        &common::gateway_url(),
        &format!(
            "jobs:\n  - name: half\n    kind: command\n    tar: true\n    \
             command: [sh, -c, \"tar -c -C '{}' . | head -c 3000; echo oops >&2; exit 3\"]\n",
            src.display()
        ),
    );
    let failed = half.lafs().args(["backup", "--job", "half"]).code(1);
    assert!(failed.stderr.contains("oops"), "{}", failed.stderr);
    assert!(
        failed.stderr.contains("exited with status 3"),
        "{}",
        failed.stderr
    );
    assert!(half.backups().is_empty());

    let failed = s.lafs().args(["backup", "--job", "junk"]).code(1);
    assert!(
        failed.stderr.contains("not a valid tar stream"),
        "{}",
        failed.stderr
    );
    assert_eq!(s.backups().len(), 1, "nothing more recorded");

    let tree = Setup::with(
        &common::gateway_url(),
        "jobs:\n  - name: tr\n    tar: true\n    source: {path: /tmp}\n",
    );
    let bad = tree.lafs().arg("list").code(2);
    assert!(
        bad.stderr.contains("only a job of kind: command"),
        "{}",
        bad.stderr
    );
}
