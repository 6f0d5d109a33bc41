//! `check` in `destination.storage: native` mode (issue 17 item 3): CHK
//! objects are checked, verified, repaired and their leases renewed on the
//! storage servers of the 3-node HTTPS grid, with the gateway's reports.
//!
//! What the servers hold is read here with the test's own code: the share
//! files on the storage nodes' disks (`$LAFS_TEST_GRID_3N_DIR`), and the
//! gateway's own `t=check&verify=true`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::common::{self, Run};

/// The 3-node grid's directory (its gateway and storage nodes).
fn grid_dir_3n() -> PathBuf {
    PathBuf::from(std::env::var("LAFS_TEST_GRID_3N_DIR").expect("LAFS_TEST_GRID_3N_DIR"))
}

/// Content no other run or test has stored: seeded by the clock.
fn fresh_bytes(len: usize) -> Vec<u8> {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        ^ u64::from(std::process::id());
    common::pseudo_random_bytes(len, seed)
}

/// A source tree with one fresh file `f`, and a config dir whose cache
/// both modes share.
struct Setup {
    tmp: tempfile::TempDir,
    src: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir(&src).unwrap();
        fs::write(src.join("f"), fresh_bytes(5000)).unwrap();
        fs::create_dir(src.join("d")).unwrap();
        fs::write(src.join("d/g"), fresh_bytes(3000)).unwrap();
        Setup { tmp, src }
    }

    /// The config (one path, one cache) in native mode or gateway mode.
    fn config(&self, native: bool) -> PathBuf {
        let extra = if native {
            format!(
                "  storage: native\n  native:\n    node_dir: '{}'\n    required: true\n{}",
                grid_dir_3n().join("gateway").display(),
                common::QUICK_RETRY
            )
        } else {
            common::QUICK_RETRY.to_owned()
        };
        common::write_backup_config(
            self.tmp.path(),
            &self.src,
            &common::gateway_url_3n(),
            &extra,
        )
    }

    /// `lafs-backup -c CFG --noise ARGS` in the given mode.
    fn run(&self, native: bool, args: &[&str]) -> Run {
        let mut cmd = common::lafs()
            .arg("-c")
            .arg(self.config(native))
            .arg("--noise")
            .args(args);
        if args.contains(&"backup") {
            cmd = cmd.caps_on_stdout();
        }
        cmd.run()
    }

    /// A backup in the given mode; the cap of `f`.
    fn backup(&self, native: bool) -> String {
        let root = self.backup_root(native);
        common::dir_listing(&common::gateway_url_3n(), &root)
            .into_iter()
            .find(|(name, ..)| name == "f")
            .expect("f in the backup")
            .2
    }

    /// A backup in the given mode; its root cap.
    fn backup_root(&self, native: bool) -> String {
        let run = self.run(native, &["--json", "backup"]);
        assert_eq!(run.code, 0, "backup failed:\n{}", run.stderr);
        run.of_type("summary")[0]["root_cap"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// `--json check --healthy-format {path} ARGS`: the object lines, and
    /// whether the check was answered by the storage servers.
    fn check(&self, native: bool, args: &[&str], code: i32) -> (Vec<Value>, bool) {
        let mut all = vec!["--json", "check", "--healthy-format", "{path}"];
        all.extend_from_slice(args);
        let run = self.run(native, &all);
        assert_eq!(run.code, code, "{}\n{}", run.stdout, run.stderr);
        let natively = run.stderr.contains("checked on the storage servers");
        (run.of_type("object"), natively)
    }
}

/// The fields of an object line that describe the object's state.
fn state(line: &Value) -> Value {
    let keys = [
        "kind",
        "healthy",
        "recoverable",
        "summary",
        "good",
        "needed",
        "expected",
    ];
    keys.iter()
        .map(|k| (k.to_string(), line[k].clone()))
        .collect()
}

/// The storage index of `cap` (base32), from the gateway's `t=check`.
fn storage_index(cap: &str) -> String {
    gateway_check(cap, false)["storage-index"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The gateway's own `t=check` (`verify=true` when asked) of `cap`.
fn gateway_check(cap: &str, verify: bool) -> Value {
    let mut resp = common::http_agent()
        .post(format!(
            "{}/uri/{cap}?t=check&output=JSON{}",
            common::gateway_url_3n(),
            if verify { "&verify=true" } else { "" }
        ))
        .send_empty()
        .unwrap();
    serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap()
}

/// Every share file of `si` on the grid's storage nodes.
fn share_files(si: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = common::share_dirs(&grid_dir_3n(), si)
        .iter()
        .flat_map(|d| fs::read_dir(d).unwrap().map(|e| e.unwrap().path()))
        .collect();
    files.sort();
    files
}

/// The leases of an immutable share file (format v1, tahoe
/// `storage/immutable.py`: a 12-byte header whose last field is the lease
/// count; the leases after the share data, 72 bytes each, `>L32s32sL`:
/// owner, renew secret, cancel secret, expiry): (count, expiry of each).
fn leases(share: &Path) -> (u32, Vec<u32>) {
    let data = fs::read(share).unwrap();
    let be = |at: usize| u32::from_be_bytes(data[at..at + 4].try_into().unwrap());
    assert!(matches!(be(0), 1 | 2), "an immutable share file");
    let count = be(8);
    let expiries = (0..count as usize)
        .map(|i| be(data.len() - 72 * i - 4))
        .collect();
    (count, expiries)
}

/// `--json check --healthy-format {path} src`: every object's state, by
/// path, and the backup's summary line without its timing.
fn check_tree(s: &Setup, native: bool, args: &[&str]) -> (Vec<(Value, Value)>, Value) {
    let mut all = vec!["--json", "check", "--healthy-format", "{path}"];
    all.extend_from_slice(args);
    all.push("src");
    let run = s.run(native, &all);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        run.stderr.contains("checked on the storage servers"),
        native,
        "{}",
        run.stderr
    );
    let mut objects: Vec<(Value, Value)> = run
        .of_type("object")
        .iter()
        .map(|o| (o["path"].clone(), state(o)))
        .collect();
    objects.sort_by_key(|(path, _)| path.to_string());
    let mut summary = run.of_type("backup").pop().expect("a backup line");
    summary.as_object_mut().unwrap().remove("seconds");
    (objects, summary)
}

#[test]
fn native_check_reports_as_the_gateway_does() {
    let s = Setup::new();
    s.backup_root(true);
    // The backup's tree, walked here and checked on the storage servers,
    // gives what the gateway's deep check gives.
    for args in [&[][..], &["--verify"], &["--repair"]] {
        let (native, native_summary) = check_tree(&s, true, args);
        let (gateway, gateway_summary) = check_tree(&s, false, args);
        assert_eq!(native, gateway, "{args:?}");
        assert_eq!(native_summary, gateway_summary, "{args:?}");
        assert_eq!(native.len(), 4, "/, /d, /d/g, /f: {native:?}");
    }

    let f = s.backup(true);
    let (native, natively) = s.check(true, &[&f], 0);
    assert!(natively, "the native mode asked the storage servers");
    let (gateway, by_gateway) = s.check(false, &[&f], 0);
    assert!(!by_gateway);
    assert_eq!(native.len(), 1);
    assert_eq!(state(&native[0]), state(&gateway[0]));
    assert_eq!(native[0]["summary"], "Healthy");
    assert_eq!(native[0]["good"], 3);
    // The same keys, in both modes.
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&native[0]), keys(&gateway[0]));

    // Verification reads every share: all good.
    let (native, natively) = s.check(true, &["--verify", &f], 0);
    assert!(natively);
    assert_eq!(native[0]["good"], 3);
    assert_eq!(native[0]["healthy"], true);

    // The sampled verification of every recorded object, natively.
    let run = s.run(true, &["--json", "check", "--verify-sample", "100%"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("checked on the storage servers"));
    let line = &run.of_type("verify_sample")[0];
    assert_eq!(line["unhealthy"], 0, "{line}");
    assert_eq!(line["errors"], 0, "{line}");
    assert!(line["verified"].as_u64().unwrap() >= 3, "{line}");
}

#[test]
fn a_lost_share_is_reported_and_repaired_natively_byte_for_byte() {
    let s = Setup::new();
    let f = s.backup(true);
    let si = storage_index(&f);
    let files = share_files(&si);
    assert_eq!(files.len(), 3, "one share on each storage node");
    let lost = files[0].clone();
    let before = fs::read(&lost).unwrap();
    fs::remove_file(&lost).unwrap();

    let (native, natively) = s.check(true, &[&f], 4);
    assert!(natively);
    let (gateway, _) = s.check(false, &[&f], 4);
    assert_eq!(state(&native[0]), state(&gateway[0]));
    assert_eq!(native[0]["summary"], "Not Healthy: 2 shares (enc 2-of-3)");
    assert_eq!(native[0]["recoverable"], true);

    let (repaired, natively) = s.check(true, &["--repair", &f], 0);
    assert!(natively);
    assert_eq!(repaired[0]["repaired"], true, "{}", repaired[0]);
    assert_eq!(repaired[0]["healthy"], true, "{}", repaired[0]);
    assert_eq!(repaired[0]["good"], 3, "{}", repaired[0]);

    let verified = gateway_check(&f, true);
    assert_eq!(verified["results"]["healthy"], true, "{verified}");
    assert_eq!(verified["results"]["count-shares-good"], 3, "{verified}");
    // The share is back where it was, the same bytes: only the lease's
    // expiry (its last 4 bytes) may differ, the lease secrets being the
    // gateway's.
    assert_eq!(share_files(&si), files, "the same share files");
    let after = fs::read(&lost).unwrap();
    assert_eq!(after.len(), before.len());
    assert!(
        after[..after.len() - 4] == before[..before.len() - 4],
        "the re-created share differs from the lost one"
    );
}

#[test]
fn native_lease_renewal_is_the_gateways_lease() {
    let s = Setup::new();
    // The gateway uploads: its lease is on every share.
    let f = s.backup(false);
    let files = share_files(&storage_index(&f));
    assert_eq!(files.len(), 3);
    let expiry = |file: &Path| {
        let (count, expiries) = leases(file);
        assert_eq!(count, 1, "exactly one lease on {}", file.display());
        expiries[0]
    };
    let first = expiry(&files[0]);

    std::thread::sleep(Duration::from_millis(1100));
    let run = s.run(true, &["--json", "check", "--leases"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("checked on the storage servers"));
    let summary = &run.of_type("leases")[0];
    assert_eq!(summary["renewed"], summary["objects"], "{summary}");
    assert_eq!(summary["errors"], 0, "{summary}");
    // Renewed, not added: the native secrets are the gateway's.
    let renewed = expiry(&files[0]);
    assert!(
        renewed > first,
        "the lease was renewed: {first} -> {renewed}"
    );
    for file in &files {
        expiry(file);
    }

    std::thread::sleep(Duration::from_millis(1100));
    let run = s.run(false, &["--json", "check", "--leases"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("checked on the storage servers"));
    let again = expiry(&files[0]);
    assert!(again > renewed, "the gateway renewed the same lease");
}

#[test]
fn a_corrupted_share_is_counted_bad_under_verify() {
    let s = Setup::new();
    let f = s.backup(true);
    let si = storage_index(&f);
    let files = share_files(&si);
    assert_eq!(files.len(), 3);
    // A byte of the first block (after the 12-byte container header and
    // the 0x24-byte share header).
    let mut data = fs::read(&files[1]).unwrap();
    data[12 + 0x24 + 10] ^= 0x55;
    fs::write(&files[1], &data).unwrap();

    // Without --verify the servers' word is taken: 3 shares.
    let (plain, natively) = s.check(true, &[&f], 0);
    assert!(natively);
    assert_eq!(plain[0]["good"], 3);

    let (native, natively) = s.check(true, &["--verify", &f], 4);
    assert!(natively);
    let (gateway, _) = s.check(false, &["--verify", &f], 4);
    assert_eq!(state(&native[0]), state(&gateway[0]));
    assert_eq!(native[0]["summary"], "Not Healthy: 2 shares (enc 2-of-3)");
    assert_eq!(native[0]["good"], 2);

    // --verify --repair: the server of the corrupt copy already holds that
    // share number, so the re-created share goes to another server.
    let (repaired, natively) = s.check(true, &["--verify", "--repair", &f], 0);
    assert!(natively);
    assert_eq!(repaired[0]["repaired"], true, "{}", repaired[0]);
    assert_eq!(repaired[0]["good"], 3, "{}", repaired[0]);
    let verified = gateway_check(&f, true);
    assert_eq!(verified["results"]["healthy"], true, "{verified}");
    assert_eq!(verified["results"]["count-shares-good"], 3, "{verified}");
    assert_eq!(share_files(&si).len(), 4, "the corrupt copy and a good one");
}

#[test]
fn a_native_failure_falls_back_to_the_gateway_unless_required() {
    let s = Setup::new();
    let f = s.backup(false);
    // The node's secrets, but one storage server that refuses connections.
    let dead = "pb://AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA@127.0.0.1:1/swissnum#v=1";
    let config = |required: bool| {
        common::write_backup_config(
            s.tmp.path(),
            &s.src,
            &common::gateway_url_3n(),
            &format!(
                "  storage: native\n  native:\n    node_dir: '{}'\n    servers: ['{dead}']\n    \
                 required: {required}\n{}",
                grid_dir_3n().join("gateway").display(),
                common::QUICK_RETRY
            ),
        )
    };
    let run = common::lafs()
        .arg("-c")
        .arg(config(false))
        .args([
            "--json",
            "check",
            "--no-lease",
            "--healthy-format",
            "{path}",
            &f,
        ])
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stderr
            .matches("the native storage path failed (no storage server answered")
            .count(),
        1,
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("checking through the gateway instead"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("swissnum"), "{}", run.stderr);
    assert_eq!(run.of_type("object")[0]["summary"], "Healthy");

    let run = common::lafs()
        .arg("-c")
        .arg(config(true))
        .args(["check", "--no-lease", &f])
        .run();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("the native check failed and destination.native.required is true: no storage server answered"),
        "{}",
        run.stderr
    );
}
