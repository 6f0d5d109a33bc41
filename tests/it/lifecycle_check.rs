//! `check` and `check --leases` against real local grids.
//!
//! Trees and share files are read here with code of the test's own (the
//! gateway's `?t=json` listings, `t=check` for storage indexes, the share
//! files on the storage nodes' disks, `tahoe debug dump-share`), never
//! through the crate, so a bug cannot hide on both sides.

use crate::common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::Run;
use serde_json::Value;
use tempfile::TempDir;

/// A source tree, a config and the state files of one setup.
struct Setup {
    tmp: TempDir,
    source: PathBuf,
    config: PathBuf,
    cache: PathBuf,
    url: String,
}

impl Setup {
    fn new(url: &str) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let source = tmp.path().join("src");
        fs::create_dir(&source).unwrap();
        let s = Setup {
            source,
            config: tmp.path().join("cfg.yaml"),
            cache: tmp.path().join("cache.sqlite"),
            url: url.to_owned(),
            tmp,
        };
        s.write_config("");
        s
    }

    fn write_config(&self, extra: &str) {
        let extra = format!("{}{extra}", common::QUICK_RETRY);
        common::write_backup_config(self.tmp.path(), &self.source, &self.url, &extra);
    }

    fn command(&self, args: &[&str]) -> common::Lafs {
        let cmd = common::lafs()
            .arg("-c")
            .arg(&self.config)
            .arg("--noise")
            .args(args);
        // No template here asks for a cap on stdout; `backup`'s summary
        // has the root cap.
        if args.contains(&"backup") {
            cmd.caps_on_stdout()
        } else {
            cmd
        }
    }

    /// `lafs-backup -c CFG --noise ARGS` (checked by `common::lafs`).
    fn run(&self, args: &[&str]) -> Run {
        self.command(args).run()
    }

    /// A backup that must succeed; returns its root cap.
    fn backup(&self) -> String {
        let run = self.run(&["--json", "backup"]);
        assert_eq!(run.code, 0, "backup failed:\n{}", run.stderr);
        let summary = run.of_type("summary").pop().expect("a summary line");
        summary["root_cap"].as_str().unwrap().to_owned()
    }

    fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            &self.cache,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap()
    }

    /// `ts_check` of every backup, by id.
    fn ts_checks(&self) -> Vec<Option<i64>> {
        let db = self.db();
        let mut stmt = db
            .prepare("SELECT ts_check FROM backups ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn write(&self, rel: &str, data: &[u8]) {
        let path = self.source.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, data).unwrap();
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Every object of a backup tree: path (edge names joined by `/`, the
/// root "") → cap. Literal caps included.
fn walk(url: &str, root: &str) -> Vec<(String, String)> {
    let mut out = vec![(String::new(), root.to_owned())];
    let mut todo = vec![(String::new(), root.to_owned())];
    while let Some((prefix, cap)) = todo.pop() {
        let listing: Value =
            serde_json::from_slice(&common::http_get(&format!("{url}/uri/{cap}?t=json"))).unwrap();
        for (name, child) in listing[1]["children"].as_object().unwrap() {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            let child_cap = child[1]["ro_uri"].as_str().unwrap().to_owned();
            if child[0] == "dirnode" {
                todo.push((path.clone(), child_cap.clone()));
            }
            out.push((path, child_cap));
        }
    }
    out
}

fn cap_at(tree: &[(String, String)], path: &str) -> String {
    tree.iter()
        .find(|(p, _)| p == path)
        .unwrap_or_else(|| panic!("no {path} in the tree"))
        .1
        .clone()
}

/// The objects of trees that live on the grid: non-literal caps.
fn stored(tree: &[(String, String)]) -> BTreeSet<String> {
    tree.iter()
        .map(|(_, c)| c.clone())
        .filter(|c| !c.starts_with("URI:LIT:") && !c.starts_with("URI:DIR2-LIT:"))
        .collect()
}

/// The storage index of an object, from a plain `t=check` (which renews
/// no lease).
fn storage_index(url: &str, cap: &str) -> String {
    let mut resp = common::http_agent()
        .post(format!("{url}/uri/{cap}?t=check&output=JSON"))
        .send_empty()
        .unwrap();
    let v: Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    v["storage-index"].as_str().unwrap().to_owned()
}

/// The one share file of `si` on the fast grid's single storage node.
fn share_file(si: &str) -> PathBuf {
    let dir = common::grid_dir()
        .join("gateway/storage/shares")
        .join(&si[..2])
        .join(si);
    fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("share dir {}: {e}", dir.display()))
        .next()
        .expect("a share file")
        .unwrap()
        .path()
}

/// The lease expiry (Unix seconds) of an immutable share file with one
/// lease, read from the file itself: a 12-byte header (version, unused,
/// lease count), the share data, then the leases, 72 bytes each, the
/// expiry time being a lease's last 4 bytes, big-endian (tahoe
/// `storage/immutable.py`, lease format `>L32s32sL`).
fn lease_expiry(share: &Path) -> u32 {
    let data = fs::read(share).unwrap();
    let be = |at: usize| u32::from_be_bytes(data[at..at + 4].try_into().unwrap());
    assert!(matches!(be(0), 1 | 2), "an immutable share file");
    assert_eq!(be(8), 1, "one lease (this gateway's)");
    be(data.len() - 4)
}

/// The `tahoe` of the venv the grids run from.
fn tahoe() -> PathBuf {
    if let Some(v) = std::env::var_os("LAFS_TAHOE_VENV") {
        return PathBuf::from(v).join("bin/tahoe");
    }
    let env = fs::read_to_string(common::grid_dir().join("grid.env")).unwrap_or_default();
    for line in env.lines() {
        if let Some(v) = line.strip_prefix("LAFS_TAHOE_VENV=") {
            return PathBuf::from(v.trim_matches('\'')).join("bin/tahoe");
        }
    }
    PathBuf::from(std::env::var("HOME").unwrap())
        .join(".cache/lafs-backup/tahoe-venv-1.20.0/bin/tahoe")
}

/// `tahoe debug dump-share`'s view of the lease: (Unix time just before
/// the call, just after it, the "expire in Ns" it printed).
fn dump_share_expiry(share: &Path) -> (i64, i64, i64) {
    let before = now();
    let out = Command::new(tahoe())
        .args(["debug", "dump-share", "--leases-only"])
        .arg(share)
        .output()
        .expect("run tahoe debug dump-share");
    let after = now();
    let text = String::from_utf8_lossy(&out.stdout);
    let secs = text
        .split("expire in ")
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|n| n.trim().parse::<i64>().ok())
        .unwrap_or_else(|| panic!("no lease expiry in the dump:\n{text}"));
    (before, after, secs)
}

#[test]
fn check_reports_nothing_on_a_healthy_backup_records_times_and_moves_leases() {
    let url = common::gateway_url();
    let s = Setup::new(&url);
    s.write("a", &common::pseudo_random_bytes(4000, 0xC0_01));
    s.write("b", &common::pseudo_random_bytes(3000, 0xC0_02));
    s.write("d/c", &common::pseudo_random_bytes(5000, 0xC0_03));
    s.write("d/tiny", b"tiny");
    let root = s.backup();
    let tree = walk(&url, &root);
    let shares: Vec<PathBuf> = [root.clone(), cap_at(&tree, "a"), cap_at(&tree, "d/c")]
        .iter()
        .map(|c| share_file(&storage_index(&url, c)))
        .collect();
    let expiry = || shares.iter().map(|f| lease_expiry(f)).collect::<Vec<_>>();
    let e0 = expiry();

    // Nothing to check, or an unknown name: usage errors, nothing done.
    let run = s.run(&["check"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("nothing to check"), "{}", run.stderr);
    let run = s.run(&["check", "no-such-backup"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("no backup named"), "{}", run.stderr);
    assert_eq!(s.ts_checks(), [None]);

    // Expiry has one-second resolution: let the clock move on.
    std::thread::sleep(Duration::from_millis(2200));
    let run = s.run(&["check", "--no-lease", "src"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(expiry(), e0, "--no-lease renews nothing");

    let before = now();
    let run = s.run(&["check", "src"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "", "nothing to report on a healthy backup");
    assert!(
        run.stderr.contains("check src: 6 objects"),
        "{}",
        run.stderr
    );
    let e1 = expiry();
    for (old, new) in e0.iter().zip(&e1) {
        assert!(new >= &(old + 2), "the lease moved: {old} -> {new}");
    }
    // tahoe's own reading of a share agrees.
    let (t0, t1, secs) = dump_share_expiry(&shares[1]);
    let e = i64::from(e1[1]);
    assert!(
        (t0 + secs - 1..=t1 + secs + 1).contains(&e),
        "dump-share says expire in {secs}s at {t0}..{t1}; the file says {e}"
    );
    // The check time, and a lease time for every object reached.
    let checked = s.ts_checks()[0].expect("the check time is recorded");
    assert!(checked >= before, "{checked} {before}");
    let objects = stored(&tree);
    let db = s.db();
    for cap in &objects {
        let renewed: i64 = db
            .query_row("SELECT renewed FROM leases WHERE cap = ?1", [cap], |r| {
                r.get(0)
            })
            .expect("a lease time per object");
        assert!(renewed >= before);
    }

    // --json, with healthy objects listed too; the reserved root entry is
    // not an object of the user's tree.
    let run = s.run(&["--json", "check", "src", "--healthy-format", "{path}"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = run.of_type("object");
    assert_eq!(lines.len(), 6, "{}", run.stdout);
    assert!(
        lines
            .iter()
            .all(|l| l["healthy"] == true && l["backup"] == "src")
    );
    assert!(
        lines
            .iter()
            .any(|l| l["path"] == serde_json::json!(["d", "c"])
                && l["kind"] == "file"
                && l["good"] == 1
                && l["needed"] == 1
                && l["expected"] == 1)
    );
    let summary = &run.of_type("backup")[0];
    assert_eq!(
        (
            &summary["objects"],
            &summary["literal"],
            &summary["unhealthy"],
            &summary["errors"]
        ),
        (
            &Value::from(6),
            &Value::from(1),
            &Value::from(0),
            &Value::from(0)
        )
    );
    assert_eq!(run.of_type("stale_leases")[0]["objects"], 0);

    // A cap that is not a backup's root is checked anyway, with a note.
    let run = s.run(&["check", &cap_at(&tree, "d")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("not the root cap of a backup"),
        "{}",
        run.stderr
    );

    // check --leases moves them again.
    std::thread::sleep(Duration::from_millis(2200));
    let run = s.run(&["--json", "check", "--leases"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let summary = &run.of_type("leases")[0];
    assert_eq!(summary["objects"], objects.len());
    assert_eq!(summary["renewed"], objects.len());
    let e2 = expiry();
    for (old, new) in e1.iter().zip(&e2) {
        assert!(
            new >= &(old + 2),
            "check --leases moved the lease: {old} -> {new}"
        );
    }
}

#[test]
fn check_leases_renews_each_object_once_resumes_and_a_picks_the_oldest() {
    let url = common::gateway_url();
    let s = Setup::new(&url);
    for d in 0..3 {
        for f in 0..4 {
            s.write(
                &format!("d{d}/f{f}"),
                &common::pseudo_random_bytes(2000, 0x1EA5E + d * 10 + f),
            );
        }
    }
    s.write("top1", &common::pseudo_random_bytes(2000, 0x1EA5E0));
    s.write("top2", &common::pseudo_random_bytes(2000, 0x1EA5E1));
    // Three backups of one tree, a file changed before each of the next two.
    let mut roots = vec![s.backup()];
    s.write("d0/f0", &common::pseudo_random_bytes(2000, 0x1EA5E2));
    roots.push(s.backup());
    s.write("d1/f1", &common::pseudo_random_bytes(2000, 0x1EA5E3));
    roots.push(s.backup());
    let trees: Vec<_> = roots.iter().map(|r| stored(&walk(&url, r))).collect();
    let one_tree = trees[0].len();
    assert_eq!(one_tree, 18, "root, 3 dirs, 14 files");
    let all: BTreeSet<&String> = trees.iter().flatten().collect();

    let run = s.run(&["--json", "check", "--leases"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let summary = &run.of_type("leases")[0];
    assert_eq!(summary["objects"], all.len(), "{summary}");
    assert_eq!(summary["renewed"], all.len(), "{summary}");
    assert_eq!(summary["unhealthy"], 0);
    let requests = summary["requests"].as_u64().unwrap() as usize;
    assert_eq!(requests, all.len(), "one request per distinct object");
    assert!(
        (requests as f64) < 1.5 * one_tree as f64,
        "{requests} requests for three backups of an {one_tree}-object tree"
    );

    // -a: the backup checked longest ago (never checked first, oldest
    // first among those).
    assert_eq!(s.ts_checks(), [None, None, None]);
    assert_eq!(s.run(&["check", "-a"]).code, 0);
    let ts = s.ts_checks();
    assert!(
        ts[0].is_some() && ts[1].is_none() && ts[2].is_none(),
        "{ts:?}"
    );
    assert_eq!(s.run(&["check", "-a"]).code, 0);
    let ts = s.ts_checks();
    assert!(ts[1].is_some() && ts[2].is_none(), "{ts:?}");

    // Interrupted runs continue where they stopped: slow the run down (5
    // objects a second, one at a time), kill it once its cursor is saved.
    s.write_config("operation:\n  concurrency: 1\n  rate_limit:\n    objects: 0.2\n");
    let mut child = s.command(&["--json", "check", "--leases"]).spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let saved: Option<String> = s
            .db()
            .query_row(
                "SELECT value FROM meta WHERE name = 'lease_run_last'",
                [],
                |r| r.get(0),
            )
            .ok();
        if saved.is_some() {
            break;
        }
        assert!(
            child.try_wait().is_none(),
            "the slowed-down run finished before saving a cursor"
        );
        assert!(Instant::now() < deadline, "no cursor saved in 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill();
    s.write_config("");
    let run = s.run(&["--json", "check", "--leases"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let summary = &run.of_type("leases")[0];
    let resumed = summary["resumed_at"].as_u64().unwrap() as usize;
    assert!(resumed > 0 && resumed < all.len(), "{summary}");
    assert_eq!(
        summary["requests"].as_u64().unwrap() as usize,
        all.len() - resumed,
        "{summary}"
    );
    // A finished run leaves no cursor: the next one starts over.
    let run = s.run(&["--json", "check", "--leases"]);
    let summary = &run.of_type("leases")[0];
    assert_eq!(summary["resumed_at"], 0, "{summary}");
    assert_eq!(summary["requests"], all.len());
}

#[test]
fn lost_shares_are_reported_by_path_repaired_and_a_dead_grid_is_a_clear_failure() {
    let grid = common::PrivateGrid::start_3n();
    let url = grid.url().to_owned();
    let s = Setup::new(&url);
    s.write("keep", &common::pseudo_random_bytes(5000, 0x10_57));
    s.write("d/lose", &common::pseudo_random_bytes(5000, 0x10_58));
    s.write("d/other", &common::pseudo_random_bytes(5000, 0x10_59));
    let root = s.backup();
    let tree = walk(&url, &root);
    let si = storage_index(&url, &cap_at(&tree, "d/lose"));
    let dirs = common::share_dirs(grid.dir(), &si);
    assert_eq!(dirs.len(), 3, "one share on each storage node");
    fs::remove_dir_all(&dirs[0]).unwrap();

    let run = s.run(&["check", "src"]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert_eq!(
        run.stdout, "src /d/lose (file): Not Healthy: 2 shares (enc 2-of-3)\n",
        "{}",
        run.stderr
    );
    let run = s.run(&["--json", "check", "src"]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    let lines = run.of_type("object");
    assert_eq!(lines.len(), 1, "{}", run.stdout);
    assert_eq!(lines[0]["path"], serde_json::json!(["d", "lose"]));
    assert_eq!(
        (
            &lines[0]["good"],
            &lines[0]["needed"],
            &lines[0]["expected"]
        ),
        (&Value::from(2), &Value::from(2), &Value::from(3))
    );
    assert_eq!(lines[0]["healthy"], false);
    assert_eq!(
        s.ts_checks(),
        [None],
        "an unhealthy backup is not marked checked"
    );

    let run = s.run(&["check", "--repair", "src"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("1 repaired"), "{}", run.stderr);
    let shares: usize = common::share_dirs(grid.dir(), &si)
        .iter()
        .map(|d| fs::read_dir(d).unwrap().count())
        .sum();
    // The repairer uploads the object again: it may place more shares.
    assert!(shares >= 3, "the lost share is back: {shares}");
    let run = s.run(&["check", "src"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(s.ts_checks()[0].is_some());

    // Two of three storage nodes down: the check cannot succeed, and says
    // why.
    grid.stop_node("storage1");
    grid.stop_node("storage2");
    let run = s.run(&["check", "src"]);
    assert!(matches!(run.code, 1 | 4), "{}", run.stderr);
    assert!(
        run.stderr.contains("sees only 1 of 3 storage servers"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.contains("src / (directory): Not Healthy"),
        "{}",
        run.stdout
    );
}
