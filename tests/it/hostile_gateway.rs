//! Replies a real grid cannot produce, from small fake gateways on
//! 127.0.0.1 (tests/common/fake_gateway.rs): endless and huge listings, an
//! endless symlink target and file body, endless check replies and
//! deep-check lines, a tree deeper than the walk limit, a gateway that never
//! answers (or only to the first contact), a closed port with retries. Each run
//! of the real binary must end with a clear error, never a cap on stderr,
//! and a peak resident memory (VmHWM) under 64 MiB.
//!
//! The same commands against the real grid are tested by
//! `restore_grid::round_trip_with_metadata_and_resume` (restore),
//! `verify_grid::identical_then_each_change_reported` (verify),
//! `lifecycle_check::check_reports_nothing_on_a_healthy_backup_records_times_and_moves_leases`
//! (check) and
//! `lifecycle_check::check_leases_renews_each_object_once_resumes_and_a_picks_the_oldest`
//! (check --leases).

use crate::common;

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::fake_gateway::{
    FakeGateway, Measured, Reply, endless_bytes, endless_json_string, endless_listing, node_status,
    run_measured, sized_listing,
};

/// The most memory a run against a hostile gateway may take.
const MAX_PEAK_KIB: u64 = 64 * 1024;

/// Listing limit of these tests' config: small, so the parsed part of a
/// hostile listing stays well inside [`MAX_PEAK_KIB`] (see
/// docs/config.md, `http.max_listing_bytes`).
const LISTING_LIMIT: u64 = 4 << 20;

/// A directory cap the fake gateway lists (never real).
const ROOT: &str = "URI:DIR2-CHK:aaaaaaaaaaaaaaaaaaaaaaaaaa:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb:1:1:100";

/// A config with the test listing limit and one quick try per request.
fn write_config(dir: &Path) -> std::path::PathBuf {
    let cfg = dir.join("hostile.yaml");
    std::fs::write(
        &cfg,
        format!("http:\n  max_listing_bytes: {LISTING_LIMIT}\n  retry:\n    attempts: 1\n"),
    )
    .unwrap();
    cfg
}

/// Runs `lafs-backup ARGS` (at most 120 s) and checks what every hostile
/// run must: no cap (nor the fake root's key) on stderr or stdout, peak
/// memory under the bound.
fn run(args: &[&OsStr]) -> Measured {
    // The builder checks stdout and stderr for caps, and for the key
    // material of the fake root cap in any spelling.
    let m = run_measured(
        common::lafs().args(args).known_cap(ROOT),
        Duration::from_secs(120),
    );
    assert!(
        m.peak_kib < MAX_PEAK_KIB,
        "peak memory {} KiB (limit {MAX_PEAK_KIB} KiB); stderr:\n{}",
        m.peak_kib,
        m.stderr
    );
    m
}

/// A fake gateway that answers the first contact and serves `listing` for
/// every `t=json` request and `other` for anything else.
fn gateway(listing: Reply, other: Reply) -> FakeGateway {
    FakeGateway::start(move |target| {
        if target == "/?t=json" {
            node_status()
        } else if target.ends_with("?t=json") {
            listing.clone()
        } else {
            other.clone()
        }
    })
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

#[test]
fn endless_listing_is_refused_by_restore_and_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path());
    let fake = gateway(endless_listing(), Reply::NotFound);
    let target = tmp.path().join("target");
    let live = tmp.path().join("live");
    std::fs::create_dir(&live).unwrap();
    let want = format!(
        "the directory listing is larger than the limit of {LISTING_LIMIT} bytes \
         (http.max_listing_bytes)"
    );

    let m = run(&[
        os("-c"),
        cfg.as_os_str(),
        os("restore"),
        os("--gateway"),
        os(&fake.url),
        os(ROOT),
        target.as_os_str(),
    ]);
    assert_eq!(m.code, 1, "{}", m.stderr);
    assert!(
        m.stderr.contains("cannot read the backup's root directory") && m.stderr.contains(&want),
        "{}",
        m.stderr
    );

    let m = run(&[
        os("-c"),
        cfg.as_os_str(),
        os("verify"),
        os("--gateway"),
        os(&fake.url),
        os(ROOT),
        live.as_os_str(),
    ]);
    assert_eq!(m.code, 1, "{}", m.stderr);
    assert!(m.stderr.contains(&want), "{}", m.stderr);
}

#[test]
fn a_500_mb_listing_is_refused_while_it_streams() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path());
    let fake = gateway(sized_listing(500_000_000), Reply::NotFound);
    let started = Instant::now();
    let m = run(&[
        os("-c"),
        cfg.as_os_str(),
        os("restore"),
        os("--dry-run"),
        os("--gateway"),
        os(&fake.url),
        os(ROOT),
        tmp.path().join("t").as_os_str(),
    ]);
    assert_eq!(m.code, 1, "{}", m.stderr);
    assert!(
        m.stderr.contains(&format!(
            "is larger than the limit of {LISTING_LIMIT} bytes"
        )),
        "{}",
        m.stderr
    );
    // It stopped reading at the limit: 500 MB were never needed.
    assert!(started.elapsed() < Duration::from_secs(60));
}

/// A listing with one symlink whose cap states no size (a mutable file),
/// a file whose cap states 1000 bytes, and bodies that never end.
#[test]
fn endless_symlink_target_and_file_body_are_per_entry_problems() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path());
    let listing = br#"["dirnode", {"children": {
        "plain": ["filenode", {"ro_uri": "URI:LIT:nbswy3dp", "size": 5, "metadata": {"mode": "100644", "mtime_ns": "1700000000000000000"}}],
        "link": ["filenode", {"ro_uri": "URI:SSK-RO:aaaaaaaaaaaaaaaaaaaaaaaaaa:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "metadata": {"uid": "0", "gid": "0", "mtime_ns": "1700000000000000000"}}],
        "big": ["filenode", {"ro_uri": "URI:CHK:aaaaaaaaaaaaaaaaaaaaaaaaaa:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb:1:1:1000", "size": 1000, "metadata": {"mode": "100644", "mtime_ns": "1700000000000000000"}}]
    }}]"#;
    let fake = gateway(Reply::Body(listing.to_vec()), endless_bytes());
    let target = tmp.path().join("target");
    let m = run(&[
        os("-c"),
        cfg.as_os_str(),
        os("restore"),
        os("--gateway"),
        os(&fake.url),
        os(ROOT),
        target.as_os_str(),
    ]);
    // The rest of the tree is restored; the symlink is named as a problem.
    assert_eq!(m.code, 3, "{}", m.stderr);
    assert!(
        m.stderr.contains("link")
            && m.stderr
                .contains("the symlink target is larger than the limit of 65536 bytes"),
        "{}",
        m.stderr
    );
    assert!(
        m.stderr.contains(
            "big: download failed: the file's content is larger than the limit of 1000 bytes"
        ),
        "{}",
        m.stderr
    );
    assert_eq!(std::fs::read(target.join("plain")).unwrap(), b"hello");
    assert!(std::fs::symlink_metadata(target.join("link")).is_err());
    assert!(std::fs::symlink_metadata(target.join("big")).is_err());

    // verify --content: the same entries are `refused` differences (exit 4).
    let live = tmp.path().join("live");
    std::fs::create_dir(&live).unwrap();
    std::fs::write(live.join("plain"), b"hello").unwrap();
    std::os::unix::fs::symlink("somewhere", live.join("link")).unwrap();
    std::fs::write(live.join("big"), [b'x'; 1000]).unwrap();
    let m = run(&[
        os("-c"),
        cfg.as_os_str(),
        os("verify"),
        os("--content"),
        os("--gateway"),
        os(&fake.url),
        os(ROOT),
        live.as_os_str(),
    ]);
    assert_eq!(m.code, 4, "{}", m.stderr);
    assert!(
        m.stdout
            .contains("refused /link: the symlink target is larger")
            && m.stdout
                .contains("refused /big: the file's content is larger than the limit of 1000"),
        "{}",
        m.stdout
    );
}

/// A tree whose every directory has one subdirectory with a new cap: the
/// walk stops at the documented depth.
#[test]
fn a_tree_deeper_than_the_limit_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path());
    let n = Arc::new(AtomicU64::new(0));
    let fake = FakeGateway::start(move |target| {
        if target == "/?t=json" {
            return node_status();
        }
        let i = n.fetch_add(1, Ordering::Relaxed);
        Reply::Body(
            format!(
                r#"["dirnode", {{"children": {{"d": ["dirnode", {{"ro_uri": "URI:DIR2-CHK:{i:026}:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb:1:1:100", "metadata": {{"mode": "40755"}}}}]}}}}]"#
            )
            .into_bytes(),
        )
    });
    let m = run(&[
        os("-c"),
        cfg.as_os_str(),
        os("restore"),
        os("--dry-run"),
        os("--gateway"),
        os(&fake.url),
        os(ROOT),
        tmp.path().join("t").as_os_str(),
    ]);
    assert_eq!(m.code, 3, "{}", m.stderr);
    assert!(
        m.stderr
            .contains("refused: more than 1024 directory levels below the root"),
        "{}",
        m.stderr
    );
    // The root and 1024 levels below it were listed, no more.
    assert_eq!(fake.requests.load(Ordering::Relaxed), 1 + 1025);
}

/// `check --leases` (a `t=check` per object) and `check NAME` (the
/// streaming deep check) against a gateway whose replies never end. The
/// cache comes from a real backup on the shared grid.
#[test]
fn endless_check_replies_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a"), common::pseudo_random_bytes(1000, 1)).unwrap();
    std::fs::write(src.join("b"), common::pseudo_random_bytes(1000, 2)).unwrap();
    let real = common::gateway_url();
    let cfg = common::write_backup_config(tmp.path(), &src, &real, common::QUICK_RETRY);
    common::backup_root_cap(&cfg);

    let fake = gateway(Reply::NotFound, endless_json_string());
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(&real, &fake.url);
    let fake_cfg = tmp.path().join("fake.yaml");
    std::fs::write(&fake_cfg, text).unwrap();

    let m = run(&[os("-c"), fake_cfg.as_os_str(), os("check"), os("--leases")]);
    assert_eq!(m.code, 4, "{}\n{}", m.stdout, m.stderr);
    let all = format!("{}{}", m.stdout, m.stderr);
    assert!(
        all.contains("the check report is larger than the limit of 4194304 bytes"),
        "{all}"
    );

    let m = run(&[os("-c"), fake_cfg.as_os_str(), os("check"), os("src")]);
    assert_eq!(m.code, 1, "{}\n{}", m.stdout, m.stderr);
    assert!(
        m.stderr
            .contains("a line of the deep-check stream is larger than the limit of 4194304 bytes"),
        "{}",
        m.stderr
    );
}

/// A gateway that accepts connections and never answers.
#[test]
fn a_stalled_gateway_ends_restore_within_its_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeGateway::start(|_| Reply::Stall);
    let target = tmp.path().join("t");
    let m = run(&[
        os("restore"),
        os("--gateway"),
        os(&fake.url),
        os(ROOT),
        target.as_os_str(),
        os("--timeout"),
        os("5"),
    ]);
    assert_eq!(m.code, 1, "{}", m.stderr);
    assert!(m.elapsed < Duration::from_secs(30), "{:?}", m.elapsed);
    assert!(
        m.stderr.contains("first contact with the Tahoe gateway")
            && m.stderr
                .contains("did not finish in time (waited 5 s per attempt)"),
        "{}",
        m.stderr
    );
    assert!(!target.exists());

    // A gateway that answers the first contact and then stalls: the
    // listing of the root runs into --timeout.
    let half = FakeGateway::start(|target| {
        if target == "/?t=json" {
            node_status()
        } else {
            Reply::Stall
        }
    });
    let m = run(&[
        os("restore"),
        os("--gateway"),
        os(&half.url),
        os(ROOT),
        target.as_os_str(),
        os("--timeout"),
        os("3"),
    ]);
    assert_eq!(m.code, 1, "{}", m.stderr);
    assert!(m.elapsed < Duration::from_secs(30), "{:?}", m.elapsed);
    assert!(
        m.stderr.contains("cannot read the backup's root directory")
            && m.stderr
                .contains("did not finish in time (waited 3 s per attempt)"),
        "{}",
        m.stderr
    );

    // Without --timeout, verify's first contact waits 15 s, and says so.
    let m = run(&[
        os("verify"),
        os("--gateway"),
        os(&fake.url),
        os(ROOT),
        tmp.path().as_os_str(),
    ]);
    assert_eq!(m.code, 1, "{}", m.stderr);
    assert!(m.elapsed < Duration::from_secs(45), "{:?}", m.elapsed);
    assert!(
        m.stderr.contains("(waited 15 s per attempt)"),
        "{}",
        m.stderr
    );
}

/// Each retry is announced on stderr with the time until the next try;
/// the cap of the failing request is not.
#[test]
fn each_retry_is_a_warning_with_its_delay() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a"), common::pseudo_random_bytes(1000, 3)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = common::write_backup_config(
        tmp.path(),
        &src,
        &format!("http://127.0.0.1:{port}"),
        "http:\n  retry:\n    attempts: 2\n    delay: 1\n",
    );
    let m = run(&[os("-c"), cfg.as_os_str(), os("backup")]);
    assert_eq!(m.code, 1, "{}", m.stderr);
    assert!(
        m.stderr.contains("WARN")
            && m.stderr.contains("gateway request failed (cannot connect")
            && m.stderr.contains("trying again in 1 s (try 2 of 2"),
        "{}",
        m.stderr
    );
}
