//! `list` and `cleanup` against a real local grid.
//!
//! The cache is inspected here with SQL of the test's own (rusqlite), and
//! the grid through the gateway's web API and the grid's share
//! directories, never through the crate's cleanup code.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::Run;
use rusqlite::Connection;
use serde_json::Value;
use tempfile::TempDir;

/// A cache, a result file and a result directory shared by backups of
/// several sources.
struct Setup {
    tmp: TempDir,
    cache: PathBuf,
    results: PathBuf,
    dircap: Option<String>,
    url: String,
}

impl Setup {
    fn new(url: &str, with_dir: bool) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let dircap = with_dir.then(|| common::mkdir_mutable(url));
        Setup {
            cache: tmp.path().join("cache.sqlite"),
            results: tmp.path().join("results.txt"),
            dircap,
            url: url.to_owned(),
            tmp,
        }
    }

    /// A config named `label` backing up `source`, with `extra` YAML
    /// appended.
    fn config(&self, label: &str, source: &Path, extra: &str) -> PathBuf {
        let name = source.file_name().unwrap().to_string_lossy().into_owned();
        let path = self.tmp.path().join(format!("cfg-{label}.yaml"));
        let dir = self
            .dircap
            .as_ref()
            .map(|d| format!("    append_to_lafs_dir: '{d}'\n"))
            .unwrap_or_default();
        fs::write(
            &path,
            format!(
                "source:\n  path: '{}'\n  queue:\n    path: '{}'\n  entry_cache:\n    path: '{}'\n\
                 destination:\n  url: '{}/uri'\n  result:\n    print_to_stdout: false\n    \
                 append_to_file: '{}'\n{dir}{}{extra}",
                source.display(),
                self.tmp.path().join(format!("queue-{name}")).display(),
                self.cache.display(),
                self.url,
                self.results.display(),
                common::QUICK_RETRY,
            ),
        )
        .unwrap();
        path
    }

    /// `lafs-backup -c CFG --noise ARGS` (and stdin, if given), checked by
    /// `common::lafs`; caps are the answer on stdout of `backup` and `list`
    /// only.
    fn run(&self, config: &Path, args: &[&str], stdin: Option<&str>) -> Run {
        let mut cmd = common::lafs()
            .arg("-c")
            .arg(config)
            .arg("--noise")
            .args(args);
        if args.iter().any(|a| ["backup", "list"].contains(a)) {
            cmd = cmd.caps_on_stdout();
        }
        if let Some(input) = stdin {
            cmd = cmd.write_stdin(input.as_bytes());
        }
        cmd.run()
    }

    /// A backup that must succeed; returns its root cap.
    fn backup(&self, config: &Path) -> String {
        let r = self.run(config, &["--json", "backup"], None);
        assert_eq!(r.code, 0, "backup failed:\n{}", r.stderr);
        let summary = r.of_type("summary");
        let cap = summary[0]["root_cap"].as_str().unwrap().to_owned();
        assert!(cap.starts_with("URI:DIR2-CHK:"));
        cap
    }

    fn db(&self) -> Connection {
        Connection::open(&self.cache).unwrap()
    }

    /// Every row of every table, for before/after comparisons.
    fn snapshot(&self) -> BTreeMap<String, Vec<String>> {
        let db = self.db();
        let mut out = BTreeMap::new();
        for table in [
            "objects",
            "backups",
            "dir_children",
            "leases",
            "content",
            "meta",
        ] {
            let mut stmt = db.prepare(&format!("SELECT * FROM {table}")).unwrap();
            let n = stmt.column_count();
            let mut rows: Vec<String> = stmt
                .query_map([], |r| {
                    Ok((0..n)
                        .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                        .collect::<Vec<_>>()
                        .join("|"))
                })
                .unwrap()
                .map(Result::unwrap)
                .collect();
            rows.sort();
            out.insert(table.to_owned(), rows);
        }
        out
    }

    /// The caps reachable from `root` through the recorded references,
    /// `root` included (by SQL of the test's own).
    fn reach(&self, root: &str) -> BTreeSet<String> {
        let db = self.db();
        let mut stmt = db
            .prepare(
                "WITH RECURSIVE r(cap) AS (SELECT ?1 UNION \
                 SELECT child_cap FROM dir_children JOIN r ON dir_cap = r.cap) \
                 SELECT cap FROM r",
            )
            .unwrap();
        stmt.query_map([root], |r| r.get::<_, String>(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn has_row(&self, table: &str, cap: &str) -> bool {
        self.db()
            .query_row(
                &format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE cap = ?1)"),
                [cap],
                |r| r.get(0),
            )
            .unwrap()
    }

    /// The result directory's children: name -> cap.
    fn links(&self) -> BTreeMap<String, String> {
        let dircap = self.dircap.as_ref().unwrap();
        let listing: Value =
            serde_json::from_slice(&get(&format!("{}/uri/{dircap}?t=json", self.url))).unwrap();
        listing[1]["children"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v[1]["ro_uri"].as_str().unwrap().to_owned()))
            .collect()
    }
}

fn get(url: &str) -> Vec<u8> {
    let (status, body) = common::http_get_status(url);
    assert_eq!(status, 200);
    body
}

/// The storage index the gateway gives for a cap (`t=json` verify cap).
fn gateway_si(url: &str, cap: &str) -> String {
    let info: Value = serde_json::from_slice(&get(&format!("{url}/uri/{cap}?t=json"))).unwrap();
    let verify = info[1]["verify_uri"].as_str().unwrap();
    assert!(verify.contains("-Verifier:"));
    verify.split(':').nth(2).unwrap().to_owned()
}

/// A tree of files (each above the literal limit), reproducible from
/// `seed`.
fn make_tree(root: &Path, seed: u64) {
    for (d, n) in [("d1", 6u64), ("d2", 4)] {
        fs::create_dir_all(root.join(d)).unwrap();
        for f in 0..n {
            let bytes = common::pseudo_random_bytes(
                2000 + 37 * f as usize,
                seed * 1000 + f + 100 * u64::from(d == "d2"),
            );
            fs::write(root.join(d).join(format!("f{f}")), bytes).unwrap();
        }
    }
    fs::write(
        root.join("top"),
        common::pseudo_random_bytes(3000, seed * 1000 + 999),
    )
    .unwrap();
    fs::write(root.join("small"), b"literal").unwrap();
}

/// A copy of `from` at `to` whose files are hard links (same inodes, so
/// the same dedup keys), and whose directories are new.
fn hardlink_copy(from: &Path, to: &Path) {
    fs::create_dir(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dst = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            hardlink_copy(&entry.path(), &dst);
        } else {
            fs::hard_link(entry.path(), dst).unwrap();
        }
    }
}

fn result_caps(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap().to_owned())
        .collect()
}

#[test]
fn list_shows_backups_oldest_first_and_warns_about_old_leases() {
    let url = common::gateway_url();
    let s = Setup::new(&url, false);
    let src = s.tmp.path().join("weekly");
    make_tree(&src, 7101);
    let cfg = s.config("weekly", &src, "");

    // No cache yet: a clear error naming the config key, and no cache made.
    let r = s.run(&cfg, &["list"], None);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("source.entry_cache.path"), "{}", r.stderr);
    assert!(!s.cache.exists());
    // An empty cache lists nothing.
    drop(
        lafs_backup::Cache::open(
            &s.cache,
            &lafs_backup::Config::default()
                .source
                .entry_cache
                .commit_after,
        )
        .unwrap(),
    );
    let r = s.run(&cfg, &["list"], None);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{}", r.stderr);
    let r = s.run(&cfg, &["--json", "list", "-g"], None);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{}", r.stderr);

    let first = s.backup(&cfg);
    fs::write(src.join("d1/new"), common::pseudo_random_bytes(4000, 7102)).unwrap();
    let second = s.backup(&cfg);
    assert_ne!(first, second);

    let r = s.run(&cfg, &["--json", "list"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let listed = r.of_type("backup");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["root_cap"], first.as_str());
    assert_eq!(listed[1]["root_cap"], second.as_str());
    let g0 = listed[0]["generation"].as_u64().unwrap();
    let g1 = listed[1]["generation"].as_u64().unwrap();
    assert!(g0 < g1, "generations increase: {g0} {g1}");
    for b in &listed {
        assert_eq!(b["name"], "weekly");
        assert!(b["entries"].as_u64().unwrap() >= 13);
        assert!(b["bytes"].as_u64().unwrap() > 20_000);
        assert!(b["checked"].is_null());
        let finished = b["finished"].as_str().unwrap();
        assert!(
            jiff::Timestamp::strptime("%Y-%m-%dT%H:%M:%S%:z", finished).is_ok(),
            "{finished}"
        );
    }
    assert!(
        r.of_type("lease_warning").is_empty(),
        "fresh leases: {}",
        r.stdout
    );
    assert!(!r.stderr.contains("WARNING"), "{}", r.stderr);

    // The human table: a header, then one aligned line per backup, oldest
    // first, with the root caps.
    let r = s.run(&cfg, &["list"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", r.stdout);
    assert!(lines[0].starts_with("NAME"));
    assert!(lines[1].starts_with("weekly") && lines[1].ends_with(&first));
    assert!(lines[2].starts_with("weekly") && lines[2].ends_with(&second));
    let cap_col = lines[0].find("ROOT CAP").unwrap();
    assert_eq!(lines[1].find("URI:"), Some(cap_col));
    assert_eq!(lines[2].find("URI:"), Some(cap_col));

    // Leases this cache renewed 40 days ago: a loud warning, counted per
    // backup, telling what to run.
    s.db()
        .execute("UPDATE leases SET renewed = renewed - 40 * 86400", [])
        .unwrap();
    let r = s.run(&cfg, &["--json", "list"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let warning = &r.of_type("lease_warning")[0];
    let n = warning["objects"].as_u64().unwrap();
    let all: BTreeSet<String> = s.reach(&first).union(&s.reach(&second)).cloned().collect();
    assert_eq!(
        n,
        all.len() as u64,
        "every non-literal object of both backups"
    );
    assert_eq!(warning["backups"].as_array().unwrap().len(), 2);
    assert!(r.stderr.contains("WARNING"), "{}", r.stderr);
    assert!(r.stderr.contains(&format!("{n} objects")), "{}", r.stderr);
    assert!(r.stderr.contains("check --leases"), "{}", r.stderr);
}

#[test]
fn cleanup_forgets_by_references_and_only_what_it_was_asked_to() {
    let url = common::gateway_url();
    let s = Setup::new(&url, true);
    let src = s.tmp.path().join("src");
    make_tree(&src, 7201);
    let cfg = s.config("src", &src, "");
    // A: src. B: srcB, the same files (hard links) plus one of its own.
    // C: src again, with one file more. B and C share most objects with A.
    let a = s.backup(&cfg);
    let src_b = s.tmp.path().join("srcB");
    hardlink_copy(&src, &src_b);
    fs::write(
        src_b.join("d2/only-b"),
        common::pseudo_random_bytes(5000, 7202),
    )
    .unwrap();
    let cfg_b = s.config("srcB", &src_b, "");
    let b = s.backup(&cfg_b);
    fs::write(
        src.join("d1/only-c"),
        common::pseudo_random_bytes(5000, 7203),
    )
    .unwrap();
    let c = s.backup(&cfg);

    let (reach_a, reach_b, reach_c) = (s.reach(&a), s.reach(&b), s.reach(&c));
    let kept: BTreeSet<String> = reach_a.union(&reach_c).cloned().collect();
    let only_b: BTreeSet<String> = reach_b.difference(&kept).cloned().collect();
    let shared = reach_b.intersection(&kept).count();
    assert!(
        shared >= 11,
        "B shares its files with A ({shared} objects in common)"
    );
    assert!(
        only_b.len() >= 3,
        "B's own: at least its root, d2 and only-b ({})",
        only_b.len()
    );
    assert_eq!(
        result_caps(&s.results),
        vec![a.clone(), b.clone(), c.clone()]
    );
    assert_eq!(
        s.links(),
        BTreeMap::from([
            ("src".to_owned(), c.clone()),
            ("srcB".to_owned(), b.clone())
        ])
    );
    let before = s.snapshot();
    let results_before = fs::read(&s.results).unwrap();
    let distinct_caps = || -> i64 {
        s.db()
            .query_row("SELECT count(DISTINCT cap) FROM objects", [], |r| r.get(0))
            .unwrap()
    };
    let caps_before = distinct_caps();

    // --dry-run: says what would go, changes nothing.
    let r = s.run(&cfg, &["--json", "cleanup", "-n", &b], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let summary = &r.of_type("cleanup")[0];
    assert_eq!(summary["dry_run"], true);
    assert_eq!(summary["backups"], 1);
    let would_go = summary["objects"].as_i64().unwrap();
    assert!(would_go >= only_b.len() as i64, "{would_go}");
    assert_eq!(summary["unreferenced"], only_b.len());
    assert_eq!(summary["result_lines"], 1);
    assert_eq!(summary["links"], 1);
    assert_eq!(r.of_type("forget")[0]["name"], "srcB");
    let r = s.run(&cfg, &["cleanup", "--dry-run", &b], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("would forget backup srcB"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("Nothing was changed"), "{}", r.stderr);
    assert_eq!(s.snapshot(), before);
    assert_eq!(fs::read(&s.results).unwrap(), results_before);
    assert_eq!(s.links().len(), 2);

    // An unknown cap is reported (by its short id, never the cap), and then
    // nothing is done at all, not even for the known target.
    // (Well formed: another first letter of the key.)
    let unknown = {
        let mut f: Vec<String> = b.split(':').map(String::from).collect();
        let first = if f[2].starts_with('a') { 'b' } else { 'a' };
        f[2] = format!("{first}{}", &f[2][1..]);
        f.join(":")
    };
    let r = s.run(&cfg, &["cleanup", &b, &unknown], None);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("no recorded backup has the root cap #"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("nothing was forgotten"), "{}", r.stderr);
    // An unknown name, no target at all, an unknown generation: the same.
    for args in [
        vec!["cleanup", "nosuchname"],
        vec!["cleanup"],
        vec!["cleanup", "-g", "99"],
    ] {
        let r = s.run(&cfg, &args, None);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
    }
    // A name that matches two backups (A and C are both "src"): an error
    // listing both.
    let r = s.run(&cfg, &["cleanup", "src"], None);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let gens: Vec<i64> = {
        let db = s.db();
        let mut stmt = db
            .prepare("SELECT generation FROM backups WHERE name = CAST('src' AS BLOB) ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(gens.len(), 2);
    for g in &gens {
        assert!(
            r.stderr.contains(&format!("generation {g}, finished ")),
            "{}",
            r.stderr
        );
    }
    assert_eq!(s.snapshot(), before);
    assert_eq!(fs::read(&s.results).unwrap(), results_before);

    // The real thing, the cap read from stdin, with the storage indexes of
    // what becomes unreferenced on stdout.
    let r = s.run(
        &cfg,
        &["cleanup", "-e", "-", "-"],
        Some(&format!("\n{b}\n")),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let printed: BTreeSet<String> = r.stdout.lines().map(str::to_owned).collect();
    let expected: BTreeSet<String> = only_b.iter().map(|cap| gateway_si(&url, cap)).collect();
    assert_eq!(printed, expected, "the storage indexes of B's own objects");
    for si in &printed {
        assert_eq!(
            common::share_dirs(&common::grid_dir(), si).len(),
            1,
            "{si} is a share directory on the grid (cleanup deletes no share)"
        );
    }
    assert!(r.stderr.contains("forgot 1 backup"), "{}", r.stderr);
    assert_eq!(
        caps_before - distinct_caps(),
        would_go,
        "the dry run told how many objects go"
    );
    // Everything A or C reaches is still in the cache, with its lease and
    // references; B's own objects are gone.
    for cap in &kept {
        assert!(
            s.has_row("objects", cap),
            "an object A or C needs lost its row"
        );
        assert!(
            s.has_row("leases", cap),
            "an object A or C needs lost its lease"
        );
    }
    assert_eq!(s.reach(&a), reach_a);
    assert_eq!(s.reach(&c), reach_c);
    for cap in &only_b {
        assert!(!s.has_row("objects", cap) && !s.has_row("leases", cap));
    }
    // And a lease pass over the kept backups still renews every one of them.
    let r = s.run(&cfg, &["--json", "check", "--leases"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let leases = &r.of_type("leases")[0];
    assert_eq!(
        leases["renewed"].as_u64(),
        Some(kept.len() as u64),
        "{leases}"
    );
    assert_eq!(result_caps(&s.results), vec![a.clone(), c.clone()]);
    assert_eq!(
        fs::metadata(&s.results).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(s.links(), BTreeMap::from([("src".to_owned(), c.clone())]));
    let r = s.run(&cfg, &["--json", "list"], None);
    let listed: Vec<Value> = r.of_type("backup");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["root_cap"], a.as_str());
    assert_eq!(listed[1]["root_cap"], c.as_str());

    // Forgetting A: its result line goes, but the link "src" holds C, so it
    // is left alone; C keeps everything.
    let r = s.run(&cfg, &["--json", "cleanup", &a], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let summary = &r.of_type("cleanup")[0];
    assert_eq!(
        (summary["result_lines"].as_u64(), summary["links"].as_u64()),
        (Some(1), Some(0))
    );
    assert!(r.stderr.contains("links another backup"), "{}", r.stderr);
    assert_eq!(s.links(), BTreeMap::from([("src".to_owned(), c.clone())]));
    assert_eq!(result_caps(&s.results), vec![c.clone()]);
    for cap in &reach_c {
        assert!(s.has_row("objects", cap) && s.has_row("leases", cap));
    }
    // "src" now names one backup: cleanup by name works.
    let r = s.run(&cfg, &["--json", "cleanup", "src"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.of_type("cleanup")[0]["links"], 1);
    assert!(s.links().is_empty());
    assert_eq!(fs::read_to_string(&s.results).unwrap(), "");
    let left: i64 = s
        .db()
        .query_row("SELECT count(*) FROM objects", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0, "no backup left, no entry left");
}

#[test]
fn cleanup_g_forgets_an_interrupted_run() {
    let url = common::gateway_url();
    let s = Setup::new(&url, false);
    let src = s.tmp.path().join("nightly");
    make_tree(&src, 7301);
    let plain = s.config("plain", &src, "");
    let first = s.backup(&plain);
    let reach_first = s.reach(&first);

    // A second run, slowed down to one object a second and committing
    // after every write, killed once some of its uploads are recorded.
    let more = src.join("more");
    fs::create_dir(&more).unwrap();
    for i in 0..40 {
        fs::write(
            more.join(format!("m{i:02}")),
            common::pseudo_random_bytes(3000 + i, 7400 + i as u64),
        )
        .unwrap();
    }
    let slow = s.config(
        "slow",
        &src,
        "operation:\n  rate_limit:\n    objects: '1'\n",
    );
    let text = fs::read_to_string(&slow).unwrap().replace(
        "  entry_cache:\n",
        "  entry_cache:\n    commit_after:\n      queries: 1\n      seconds: 0.1\n",
    );
    fs::write(&slow, text).unwrap();
    let mut child = common::lafs()
        .arg("-c")
        .arg(&slow)
        .args(["--json", "backup"])
        .caps_on_stdout()
        .spawn();
    let started = Instant::now();
    // Rows of the second run that are not objects of the first backup (the
    // run also gives the objects it reuses its generation).
    let recorded = |s: &Setup| -> usize {
        let Ok(db) = Connection::open(&s.cache) else {
            return 0;
        };
        let Ok(mut stmt) = db.prepare("SELECT cap FROM objects WHERE generation > 1") else {
            return 0;
        };
        stmt.query_map([], |r| r.get::<_, String>(0))
            .map(|rows| {
                rows.filter_map(Result::ok)
                    .filter(|c| !reach_first.contains(c))
                    .count()
            })
            .unwrap_or(0)
    };
    while recorded(&s) < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the second run recorded nothing"
        );
        assert!(child.try_wait().is_none(), "the second run ended");
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill();
    let dangling_rows = recorded(&s);

    let r = s.run(&plain, &["--json", "list", "-g"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.of_type("backup").len(), 1);
    let gens = r.of_type("generation");
    assert_eq!(gens.len(), 1, "{}", r.stdout);
    assert_eq!(gens[0]["generation"], 2);
    assert_eq!(gens[0]["entries"].as_u64().unwrap(), dangling_rows as u64);
    let r = s.run(&plain, &["list", "-g", "2"], None);
    assert!(
        r.stdout.contains("Generations without a finished backup"),
        "{}",
        r.stdout
    );

    let r = s.run(&plain, &["--json", "cleanup", "-g", "2"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let summary = &r.of_type("cleanup")[0];
    assert_eq!(summary["backups"], 0);
    assert_eq!(summary["objects"].as_u64().unwrap(), dangling_rows as u64);
    let r = s.run(&plain, &["--json", "list", "-g"], None);
    assert!(r.of_type("generation").is_empty(), "{}", r.stdout);
    assert_eq!(r.of_type("backup").len(), 1);
    // The first backup keeps every object; what is left of generation 2 is
    // what it reused from the first backup.
    for cap in &reach_first {
        assert!(s.has_row("objects", cap) && s.has_row("leases", cap));
    }
    assert_eq!(recorded(&s), 0);
    assert_eq!(s.reach(&first), reach_first);
}
