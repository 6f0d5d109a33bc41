//! Stream backups (issue 15 items 1-3, 8) against the real local grid:
//! `backup --stdin` and `kind: command` jobs, cut by content, deduplicated
//! through the content index, read back byte for byte by `cat`, compared by
//! `verify --stdin`; failures record nothing; `check --leases` and
//! `cleanup` reach every chunk; the format of docs/streams.md, pinned.

use crate::common;

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use serde_json::Value;
use tempfile::TempDir;

/// Small chunks, so that a few MB make dozens of chunks.
const CHUNKING: &str = "chunking:\n  min_size: 16384\n  avg_size: 65536\n  max_size: 262144\n";
const MAX_SIZE: u64 = 262_144;

struct Setup {
    tmp: TempDir,
    config: PathBuf,
    url: String,
}

impl Setup {
    fn new(url: &str, extra: &str) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("cfg.yaml");
        let s = Setup {
            config,
            url: url.to_owned(),
            tmp,
        };
        s.write_config(extra);
        s
    }

    fn write_config(&self, extra: &str) {
        fs::write(
            &self.config,
            format!(
                "source:\n  entry_cache:\n    path: '{}'\n\
                 destination:\n  url: '{}/uri'\n{}{CHUNKING}{extra}",
                self.cache().display(),
                self.url,
                common::QUICK_RETRY,
            ),
        )
        .unwrap();
    }

    fn cache(&self) -> PathBuf {
        self.tmp.path().join("cache.sqlite")
    }

    fn lafs(&self) -> common::Lafs {
        common::lafs().arg("-c").arg(&self.config)
    }

    /// `backup --json --stdin NAME` of `data`; the summary line.
    fn backup_stdin(&self, name: &str, data: &[u8]) -> Value {
        let run = self
            .lafs()
            .args(["--json", "backup", "--stdin", name])
            .write_stdin(data.to_vec())
            .caps_on_stdout()
            .ok();
        let summary = run.of_type("summary");
        assert_eq!(summary.len(), 1, "{}", run.stdout);
        summary[0].clone()
    }

    fn cat(&self, selector: &str) -> Vec<u8> {
        self.lafs().args(["cat", selector]).output_ok()
    }

    fn backups(&self) -> Vec<Value> {
        self.lafs()
            .args(["--json", "list"])
            .caps_on_stdout()
            .ok()
            .of_type("backup")
    }
}

/// Runs that must exit 0, their raw stdout.
trait OutputOk {
    fn output_ok(self) -> Vec<u8>;
}

impl OutputOk for common::Lafs {
    fn output_ok(self) -> Vec<u8> {
        let out = self.output();
        assert!(
            out.status.success(),
            "exit {:?}: {}",
            out.status.code(),
            common::redact(&String::from_utf8_lossy(&out.stderr))
        );
        out.stdout
    }
}

/// The non-literal caps of a stream: its root, groups and chunks.
fn stream_objects(url: &str, root: &str) -> BTreeSet<String> {
    let mut all = BTreeSet::from([root.to_owned()]);
    for (name, kind, cap, _) in common::dir_listing(url, root) {
        if kind == "dirnode" {
            assert!(name.starts_with('g'), "{name}");
            all.insert(cap.clone());
            for (_, _, chunk, _) in common::dir_listing(url, &cap) {
                all.insert(chunk);
            }
        }
    }
    all.retain(|c| !c.starts_with("URI:LIT:") && !c.starts_with("URI:DIR2-LIT:"));
    all
}

/// 3 MB of random bytes through `backup --stdin`: `cat` gives them back
/// (also with `--gateway URL CAP` and no config); the same again uploads
/// nothing; 64 KiB inserted in the middle uploads at most 64 KiB + 3 ×
/// max_size, and `cat` gives the new bytes. `verify --stdin` tells equal
/// from different; `list` shows the kind.
#[test]
fn stdin_streams_round_trip_and_deduplicate() {
    // A grid of its own: its upload counter sees this test's uploads only.
    let grid = common::PrivateGrid::start_fast();
    let s = Setup::new(grid.url(), "");
    let data = common::pseudo_random_bytes(3 << 20, 15);

    let first = s.backup_stdin("dump", &data);
    assert_eq!(first["kind"], "stream");
    assert_eq!(first["bytes_total"], data.len());
    let chunks = first["chunks"].as_u64().unwrap();
    assert!(chunks >= 12, "{first}");
    assert_eq!(first["chunks_uploaded"], chunks);
    assert!(s.cat("dump") == data, "cat differs from the input");
    let root = first["root_cap"].as_str().unwrap().to_owned();
    let no_config = common::lafs()
        .args(["cat", "--gateway", grid.url(), &root])
        .known_cap(&root)
        .output_ok();
    assert!(no_config == data, "cat --gateway differs from the input");

    // The same again: nothing goes up.
    let before = common::bytes_uploaded(grid.url());
    let again = s.backup_stdin("dump", &data);
    assert_eq!(common::bytes_uploaded(grid.url()), before, "{again}");
    assert_eq!(again["chunks_uploaded"], 0);
    assert_eq!(again["root_cap"], first["root_cap"]);

    // 64 KiB inserted in the middle.
    let mut changed = data.clone();
    changed.splice(
        data.len() / 2..data.len() / 2,
        common::pseudo_random_bytes(64 << 10, 16),
    );
    let before = common::bytes_uploaded(grid.url());
    let third = s.backup_stdin("dump", &changed);
    let sent = common::bytes_uploaded(grid.url()) - before;
    assert!(
        third["bytes_uploaded"].as_u64().unwrap() <= (64 << 10) + 3 * MAX_SIZE,
        "{third}"
    );
    // The gateway's count includes the two small directories rewritten.
    assert!(
        sent <= (64 << 10) + 3 * MAX_SIZE + (64 << 10),
        "{sent} bytes uploaded for a 64 KiB insertion"
    );
    assert!(
        s.cat("dump") == changed,
        "cat differs from the changed input"
    );
    assert!(s.cat("dump@1") == data, "the first backup changed");

    // verify --stdin: equal, then different (first offset named).
    s.lafs()
        .args(["verify", "dump", "--stdin"])
        .write_stdin(changed.clone())
        .ok();
    let diff = s
        .lafs()
        .args(["--json", "verify", "dump@1", "--stdin"])
        .write_stdin(changed.clone())
        .code(4);
    let line = &diff.of_type("verify")[0];
    assert_eq!(line["first_difference"], data.len() / 2, "{line}");
    assert_eq!(line["stdin_bytes"], changed.len());
    assert_eq!(line["backup_bytes"], data.len());
    let short = s
        .lafs()
        .args(["verify", "dump@1", "--stdin"])
        .write_stdin(data[..1000].to_vec())
        .code(4);
    assert!(short.stdout.contains("offset 1000"), "{}", short.stdout);

    // restore has no tree to write: exit 2, pointing at cat.
    let target = s.tmp.path().join("restored");
    let r = s.lafs().args(["restore", "dump"]).arg(&target).code(2);
    assert!(r.stderr.contains("is a stream backup"), "{}", r.stderr);
    assert!(r.stderr.contains("lafs-backup cat"), "{}", r.stderr);
    assert!(!target.exists(), "nothing was written");

    // list: the kind, as a --json key and in the table.
    let listed = s.backups();
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|b| b["kind"] == "stream"), "{listed:?}");
    assert_eq!(listed[0]["entries"], chunks);
    let table = s.lafs().arg("list").caps_on_stdout().ok();
    assert!(
        table.stdout.contains(&format!("{chunks} chunks")),
        "{}",
        table.stdout
    );

    // cat with a PATH on a stream, or without one on a tree: usage errors.
    let with_path = s.lafs().args(["cat", "dump", "c00000000"]).code(2);
    assert!(
        with_path.stderr.contains("stream backup"),
        "{}",
        with_path.stderr
    );
}

/// A tree backup: `cat` without PATH asks for one (exit 2).
#[test]
fn cat_of_a_tree_without_a_path_asks_for_one() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("src");
    fs::create_dir(&source).unwrap();
    fs::write(source.join("f"), common::pseudo_random_bytes(2000, 1)).unwrap();
    let cfg = common::write_backup_config(
        tmp.path(),
        &source,
        &common::gateway_url(),
        common::QUICK_RETRY,
    );
    common::lafs()
        .arg("-c")
        .arg(&cfg)
        .arg("backup")
        .caps_on_stdout()
        .ok();
    let run = common::lafs()
        .arg("-c")
        .arg(&cfg)
        .args(["cat", "src"])
        .code(2);
    assert!(run.stderr.contains("PATH"), "{}", run.stderr);
    let listed = common::lafs()
        .arg("-c")
        .arg(&cfg)
        .args(["--json", "list"])
        .caps_on_stdout()
        .ok();
    assert_eq!(listed.of_type("backup")[0]["kind"], "tree");
}

fn command_job(name: &str, script: &str) -> String {
    format!(
        "jobs:\n  - name: {name}\n    kind: command\n    command: ['sh', '-c', {}]\n",
        serde_json::to_string(script).unwrap()
    )
}

/// A command job stores the command's stdout; one that exits 3, or is
/// killed by SIGKILL halfway, records nothing, shows its stderr, exits 1.
#[test]
fn command_jobs_record_only_a_clean_exit() {
    let s = Setup::new(&common::gateway_url(), "");
    let input = s.tmp.path().join("input");
    let data = common::pseudo_random_bytes(700_000, 17);
    fs::write(&input, &data).unwrap();
    s.write_config(&command_job(
        "db",
        &format!("cat '{}'; echo fine >&2", input.display()),
    ));
    s.lafs().arg("backup").caps_on_stdout().ok();
    let listed = s.backups();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["kind"], "stream");
    assert_eq!(listed[0]["name"], "db");
    assert_eq!(listed[0]["bytes"], data.len());
    assert!(s.cat("db") == data, "cat differs from the command's output");

    s.write_config(&command_job(
        "db",
        "head -c 300000 /dev/urandom; echo 'pg_dump: connection refused' >&2; exit 3",
    ));
    let failed = s.lafs().arg("backup").caps_on_stdout().code(1);
    assert!(
        failed.stderr.contains("pg_dump: connection refused"),
        "{}",
        failed.stderr
    );
    assert!(failed.stderr.contains("status 3"), "{}", failed.stderr);
    assert_eq!(s.backups().len(), 1, "a failed command was recorded");

    s.write_config(&command_job(
        "db",
        "head -c 1000000 /dev/urandom; echo dying >&2; kill -9 $$",
    ));
    let killed = s.lafs().arg("backup").caps_on_stdout().code(1);
    assert!(killed.stderr.contains("signal 9"), "{}", killed.stderr);
    assert!(killed.stderr.contains("dying"), "{}", killed.stderr);
    assert_eq!(s.backups().len(), 1, "a killed command was recorded");
    assert!(s.cat("db") == data, "the recorded backup changed");

    // A stdin that cannot be read (a directory) records nothing either.
    let dir = s.tmp.path();
    let run = common::Lafs::in_shell(&format!("\"$0\" \"$@\" < '{}'", dir.display()))
        .args([
            "-c",
            s.config.to_str().unwrap(),
            "backup",
            "--stdin",
            "fromdir",
        ])
        .caps_on_stdout()
        .code(1);
    assert!(
        run.stderr.contains("nothing was recorded"),
        "{}",
        run.stderr
    );
    assert_eq!(s.backups().len(), 1);
}

/// An empty command, a program that does not exist: exit 2 naming it.
#[test]
fn bad_commands_are_usage_errors() {
    let s = Setup::new(&common::gateway_url(), "");
    s.write_config("jobs:\n  - name: db\n    kind: command\n    command: []\n");
    let run = s.lafs().arg("backup").code(2);
    assert!(run.stderr.contains("command"), "{}", run.stderr);
    s.write_config(
        "jobs:\n  - name: db\n    kind: command\n    command: ['/no/such/pg_dump', '-x']\n",
    );
    let run = s.lafs().arg("backup").code(2);
    assert!(run.stderr.contains("/no/such/pg_dump"), "{}", run.stderr);
    assert!(s.backups().is_empty());
    // A tree job with a command, a command job with a source: refused.
    s.write_config("jobs:\n  - name: db\n    command: ['true']\n    source:\n      path: /tmp\n");
    s.lafs().arg("backup").code(2);
    // Chunk sizes that do not fit together, a max_size above 4 MiB: a
    // later layer over the test's chunking.
    s.write_config("");
    let layer = s.tmp.path().join("chunking.yaml");
    fs::write(&layer, "chunking:\n  min_size: 65536\n  avg_size: 65536\n").unwrap();
    let run = s
        .lafs()
        .arg("-c")
        .arg(&layer)
        .args(["backup", "--stdin", "x"])
        .write_stdin(vec![1u8; 10])
        .code(2);
    assert!(run.stderr.contains("min_size"), "{}", run.stderr);
    fs::write(&layer, "chunking:\n  max_size: 8388608\n").unwrap();
    let run = s.lafs().arg("-c").arg(&layer).arg("dump-config").code(2);
    assert!(run.stderr.contains("chunking.max_size"), "{}", run.stderr);
}

/// `check --leases` renews every chunk of a stream backup; `cleanup` of
/// one stream keeps the chunks another kept stream shares.
#[test]
fn leases_and_cleanup_reach_every_chunk() {
    let s = Setup::new(&common::gateway_url(), "");
    let data = common::pseudo_random_bytes(1 << 20, 18);
    let first = s.backup_stdin("a", &data);
    let mut more = data.clone();
    more.extend(common::pseudo_random_bytes(300_000, 19));
    let second = s.backup_stdin("b", &more);
    let (r1, r2) = (
        first["root_cap"].as_str().unwrap(),
        second["root_cap"].as_str().unwrap(),
    );
    let o1 = stream_objects(&s.url, r1);
    let o2 = stream_objects(&s.url, r2);
    assert!(
        o1.intersection(&o2).count() >= 5,
        "the streams share chunks"
    );

    common::assert_leases_renew(|| s.lafs(), &o1, &o2);

    // A deep check with repair reaches every object of a stream, all
    // healthy; the literal index entry is counted too.
    common::assert_repair_reaches(|| s.lafs(), "a", &o1, 1);

    // Forget the first: what the second reaches stays known.
    common::assert_cleanup_keeps_shared(|| s.lafs(), &s.cache(), r1, &o1, &o2);
    let listed = s.backups();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "b");
    // The kept stream still reads back, and a new backup of the first
    // stream's bytes finds the shared chunks (only the others go up).
    assert!(s.cat("b") == more);
    let again = s.backup_stdin("a", &data);
    assert!(again["chunks_reused"].as_u64().unwrap() >= 5, "{again}");
}

/// The stream directory of docs/streams.md, pinned: the index entry's
/// metadata, the group and chunk names and their metadata.
#[test]
fn stream_format_golden() {
    let s = Setup::new(&common::gateway_url(), "");
    // Incompressible bytes: every chunk is stored as it is.
    let data = common::pseudo_random_bytes(300_000, 20);
    let summary = s.backup_stdin("golden", &data);
    let root = summary["root_cap"].as_str().unwrap();
    let chunks = summary["chunks"].as_u64().unwrap();
    let top = common::dir_listing(&s.url, root);
    assert_eq!(top.len(), 2, "{top:?}");
    let (name, kind, cap, meta) = &top[0];
    assert_eq!(name, ".lafs-backup-stream");
    assert_eq!(kind, "filenode");
    assert_eq!(cap, "URI:LIT:");
    // Tahoe may add its own bookkeeping; the format is the rest (its key
    // order is pinned by the unit test `index_round_trips_and_is_pinned`).
    let own = |m: &Value| {
        let mut m = m.clone();
        m.as_object_mut().unwrap().remove("tahoe");
        m
    };
    let parse = |text: String| -> Value { serde_json::from_str(&text).unwrap() };
    assert_eq!(
        own(meta),
        parse(format!(
            "{{\"avg_size\":\"65536\",\"chunker\":\"fastcdc-v2020\",\"chunks\":\"{chunks}\",\
             \"format\":\"lafs-backup-stream\",\"group_size\":\"1024\",\"groups\":\"1\",\
             \"max_size\":\"262144\",\"min_size\":\"16384\",\"size\":\"300000\",\"version\":\"1\"}}"
        ))
    );
    let (name, kind, group, meta) = &top[1];
    assert_eq!((name.as_str(), kind.as_str()), ("g00000000", "dirnode"));
    assert_eq!(
        own(meta),
        parse(format!("{{\"chunks\":\"{chunks}\",\"size\":\"300000\"}}"))
    );
    let inner = common::dir_listing(&s.url, group);
    let names: Vec<&str> = inner.iter().map(|c| c.0.as_str()).collect();
    let expected: Vec<String> = (0..chunks).map(|i| format!("c{i:08}")).collect();
    assert_eq!(names, expected);
    let mut offset = 0usize;
    for (_, kind, cap, meta) in &inner {
        assert_eq!(kind, "filenode");
        let size: usize = meta["size"].as_str().unwrap().parse().unwrap();
        assert_eq!(own(meta), parse(format!("{{\"size\":\"{size}\"}}")));
        // Each chunk is stored as it is: its bytes are the stream's.
        let body = common::http_get(&format!("{}/uri/{}", s.url, cap.replace(':', "%3A")));
        assert!(body == data[offset..offset + size], "chunk at {offset}");
        offset += size;
    }
    assert_eq!(offset, data.len());
}
