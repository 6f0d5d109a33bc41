//! Issue 10 (hardening), the command-line side, against the real fast grid:
//! caps in every spelling are never echoed; restore's safety options for
//! root and its refusal of a non-empty TARGET; only a dead restore's
//! leftovers are removed; verify honours the config's source rules;
//! `append_to_lafs_dir` layouts restore cleanly; a closed stdout, a
//! malformed cap and `--json` errors behave as docs/exit-codes.md says.

use crate::common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::common::{Lafs, Run, gateway_url, lafs, write_backup_config};
use nix::sys::stat::{Mode, SFlag, makedev, mknod};

fn run(args: &[&str]) -> Run {
    lafs().args(args).run()
}

fn run_cfg(cfg: &Path, args: &[&str]) -> Run {
    lafs().arg("-c").arg(cfg).args(args).run()
}

/// [`run_cfg`] for a run given `cap` in some spelling: none of the cap's
/// key material may come back, in any case or encoding (see
/// `common::Lafs::known_cap`).
fn run_cap(cfg: &Path, cap: &str, args: &[&str]) -> Run {
    lafs().arg("-c").arg(cfg).args(args).known_cap(cap).run()
}

/// A small source tree, backed up once: (tempdir, source, config, root cap).
fn backed_up(
    extra: &str,
    fill: impl FnOnce(&Path),
) -> (tempfile::TempDir, PathBuf, PathBuf, String) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("a.txt"), b"alpha\n").unwrap();
    fs::create_dir(src.join("sub")).unwrap();
    fs::write(src.join("sub/b.txt"), vec![7u8; 3000]).unwrap();
    fill(&src);
    let cfg = write_backup_config(tmp.path(), &src, &gateway_url(), extra);
    let cap = common::backup_root_cap(&cfg);
    (tmp, src, cfg, cap)
}

// ---------------------------------------------------------------- caps

#[test]
fn caps_in_any_spelling_are_caps_and_never_echoed() {
    let (tmp, src, cfg, cap) = backed_up("", |_| {});
    let enc = cap.replace(':', "%3A");
    let spellings = [
        enc.clone(),
        enc.to_lowercase(),
        cap.to_lowercase(),
        cap.to_uppercase(),
        format!("ro.{cap}"),
        format!("imm.{cap}"),
        format!("{}/uri/{enc}/", gateway_url()),
    ];
    for (i, spelling) in spellings.iter().enumerate() {
        // restore: the real backup comes back, so the spelling was read as
        // the cap, not as a name.
        let target = tmp.path().join(format!("r{i}"));
        let r = run_cap(&cfg, &cap, &["restore", spelling, target.to_str().unwrap()]);
        assert_eq!(r.code, 0, "restore {i}: {}", r.stderr);
        assert_eq!(fs::read(target.join("a.txt")).unwrap(), b"alpha\n");
        let r = run_cap(&cfg, &cap, &["verify", spelling, src.to_str().unwrap()]);
        assert_eq!(r.code, 0, "verify {i}: {}{}", r.stdout, r.stderr);
        let r = run_cap(&cfg, &cap, &["check", spelling]);
        assert_eq!(r.code, 0, "check {i}: {}", r.stderr);
        let r = run_cap(&cfg, &cap, &["cleanup", "-n", spelling]);
        assert!(r.code == 0, "cleanup {i}: {}", r.stderr);
    }

    // Truncated or mistyped, in every spelling: a usage error (exit 2) that
    // says so and quotes nothing, from every command.
    let other_tmp = tmp.path().join("t");
    for bad in [
        cap[..cap.len() - 20].to_string(),
        enc[..enc.len() - 25].to_string(),
        format!("ro.{}", &cap.to_lowercase()[..cap.len() - 9]),
        cap.replacen(':', "%3A", 2).replace("1:1", "1x1"),
    ] {
        for args in [
            vec!["restore", &bad, other_tmp.to_str().unwrap()],
            vec!["verify", &bad, src.to_str().unwrap()],
            vec!["check", &bad],
            vec!["cleanup", "-n", &bad],
        ] {
            let r = run_cap(&cfg, &cap, &args);
            assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
            assert!(
                r.stderr.contains("looks like a Tahoe capability"),
                "{args:?}: {}",
                r.stderr
            );
            assert_eq!(
                r.stderr.matches("error:").count(),
                1,
                "{args:?}: {}",
                r.stderr
            );
        }
    }
    assert!(!other_tmp.exists());
}

#[test]
fn json_errors_are_json_lines() {
    let tmp = tempfile::tempdir().unwrap();
    // A closed port: nothing listens on port 1 of loopback.
    let r = run(&[
        "--json",
        "restore",
        "--gateway",
        "http://127.0.0.1:1",
        "URI:DIR2-LIT:",
        tmp.path().join("t").to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let errors = r.of_type("error");
    assert_eq!(errors.len(), 1, "{}", r.stdout);
    assert_eq!(errors[0]["code"], 1);
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1:1")
    );
    // Printed once on stderr, each cause once.
    assert_eq!(
        r.stderr.matches("lafs-backup: error:").count(),
        1,
        "{}",
        r.stderr
    );
}

// ---------------------------------------------------------------- restore

#[test]
fn non_empty_target_is_refused_once_up_front() {
    let (tmp, _src, cfg, cap) = backed_up("", |_| {});
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    for n in ["x", "y", "a.txt"] {
        fs::write(out.join(n), b"mine").unwrap();
    }
    let r = run_cfg(&cfg, &["restore", &cap, out.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("is not empty (3 entries)"),
        "{}",
        r.stderr
    );
    assert_eq!(
        r.stderr.lines().count(),
        1,
        "one refusal, not one per entry: {}",
        r.stderr
    );
    assert_eq!(fs::read(out.join("a.txt")).unwrap(), b"mine");
    assert!(!out.join("sub").exists());
    // With --skip-existing the rest is restored and a.txt reported.
    let r = run_cfg(
        &cfg,
        &["restore", "--skip-existing", &cap, out.to_str().unwrap()],
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(out.join("sub/b.txt").exists());
}

/// Only `.lafs-restore.PID.N` names of a process that is gone are a
/// restore's leftovers; a live process's, and other names with the prefix,
/// are left alone.
#[test]
fn only_leftovers_of_dead_restores_are_removed() {
    let (tmp, _src, cfg, cap) = backed_up("", |_| {});
    let out = tmp.path().join("out");
    let r = run_cfg(&cfg, &["restore", &cap, out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let live = format!(".lafs-restore.{}.0", std::process::id());
    let dead = ".lafs-restore.4000000000.3"; // above any pid_max
    let other = ".lafs-restore.notes";
    for n in [live.as_str(), dead, other] {
        fs::write(out.join("sub").join(n), b"x").unwrap();
    }
    let r = run_cfg(
        &cfg,
        &["restore", "--skip-existing", &cap, out.to_str().unwrap()],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(out.join("sub").join(&live).exists());
    assert!(out.join("sub").join(other).exists());
    assert!(!out.join("sub").join(dead).exists());
}

fn assert_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "restore's safety options are tested as root (scripts/test in CI is)"
    );
}

#[test]
fn safety_options_withhold_devices_setuid_and_caps() {
    assert_root();
    let (tmp, _src, cfg, cap) = backed_up("", |src| {
        mknod(
            &src.join("mem"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o640),
            makedev(1, 1),
        )
        .unwrap();
        fs::write(src.join("suid"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(src.join("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::write(src.join("capped"), b"x").unwrap();
        common::run_tool(
            "setcap",
            &["cap_net_raw+ep".as_ref(), src.join("capped").as_os_str()],
        );
        fs::create_dir(src.join("shared")).unwrap();
        fs::set_permissions(src.join("shared"), fs::Permissions::from_mode(0o2775)).unwrap();
    });

    // Without the options: everything is created, and counted.
    let plain = tmp.path().join("plain");
    let r = run_cfg(&cfg, &["restore", &cap, plain.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("created 1 device nodes, 1 setuid/setgid files, 1 capability sets"),
        "{}",
        r.stderr
    );
    assert_eq!(
        fs::symlink_metadata(plain.join("mem")).unwrap().rdev(),
        makedev(1, 1)
    );

    // With them: none created, each reported, exit 0 with the counts.
    let safe = tmp.path().join("safe");
    let r = run_cfg(
        &cfg,
        &[
            "--json",
            "restore",
            "--no-devices",
            "--no-setuid",
            "--no-caps",
            &cap,
            safe.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!safe.join("mem").exists());
    assert_eq!(
        fs::metadata(safe.join("suid")).unwrap().mode() & 0o7777,
        0o755
    );
    assert!(
        xattr::get(safe.join("capped"), "security.capability")
            .unwrap()
            .is_none()
    );
    assert_eq!(
        fs::metadata(safe.join("shared")).unwrap().mode() & 0o7777,
        0o2775
    );
    let withheld: Vec<(String, String)> = r
        .of_type("withheld")
        .iter()
        .map(|v| {
            (
                v["path"].as_str().unwrap().to_owned(),
                v["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let paths: Vec<&str> = withheld.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["capped", "mem", "suid"], "{withheld:?}");
    let summary = &r.of_type("restore")[0];
    assert_eq!(summary["devices"], 0);
    assert_eq!(summary["setid"], 0);
    assert_eq!(summary["caps"], 0);
    assert_eq!(summary["withheld"], 3);
    assert_eq!(summary["problems"], 0);

    // --no-owner: everything belongs to the restoring user (root here), not
    // to the backup's owner.
    let src = tmp.path().join("src");
    nix::unistd::chown(&src.join("a.txt"), Some(1234.into()), Some(4321.into())).unwrap();
    let cap2 = common::backup_root_cap(&cfg);
    let owned = tmp.path().join("owned");
    let r = run_cfg(
        &cfg,
        &[
            "restore",
            "--no-owner",
            "--no-xattrs",
            &cap2,
            owned.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(fs::metadata(owned.join("a.txt")).unwrap().uid(), 0);
    let full = tmp.path().join("full");
    let r = run_cfg(&cfg, &["restore", &cap2, full.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(fs::metadata(full.join("a.txt")).unwrap().uid(), 1234);
}

#[test]
fn dry_run_into_a_closed_pipe_is_quiet() {
    let (_tmp, _src, cfg, cap) = backed_up("", |src| {
        for i in 0..300 {
            fs::write(src.join(format!("f{i:03}")), b"").unwrap();
        }
    });
    for _ in 0..20 {
        let out = Lafs::in_shell(
            r#""$0" -c "$1" restore -n "$2" /nonexistent/t | head -1 >/dev/null; echo "${PIPESTATUS[0]}""#,
        )
        .arg(&cfg)
        .arg(&cap)
        .known_cap(&cap)
        .output();
        let status = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        // 0, or 141 (128 + SIGPIPE): never 101 (a panic).
        assert!(
            status == "0" || status == "141",
            "status {status}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    }
}

// ---------------------------------------------------------------- verify

#[test]
fn verify_honours_the_configured_source_rules() {
    let rules = "filter:\n  - '-\\.tmp$'\n";
    let (_tmp, src, cfg, _cap) = backed_up(rules, |src| {
        fs::write(src.join("scratch.tmp"), b"not backed up").unwrap();
        fs::write(src.join("sub/x.tmp"), b"not backed up").unwrap();
        fs::create_dir(src.join("cache")).unwrap();
        fs::write(
            src.join("cache/CACHEDIR.TAG"),
            b"Signature: 8a477f597d28d172789f06886806bc55\n",
        )
        .unwrap();
        fs::write(src.join("cache/blob"), b"cached").unwrap();
    });
    // The backup's name is the source's basename.
    let (name, live) = ("src", src.to_str().unwrap());
    let r = run_cfg(&cfg, &["verify", name, live]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let r = run_cfg(&cfg, &["verify", "--unfiltered", name, live]);
    assert_eq!(r.code, 4, "{}{}", r.stdout, r.stderr);
    for extra in ["/scratch.tmp", "/sub/x.tmp", "/cache/blob"] {
        assert!(r.stdout.contains(extra), "{extra}: {}", r.stdout);
    }
    // A new file the filter keeps is still a difference.
    fs::write(src.join("new.txt"), b"new").unwrap();
    let r = run_cfg(&cfg, &["verify", name, live]);
    assert_eq!(r.code, 4, "{}", r.stdout);
    assert_eq!(r.stdout.lines().count(), 2, "{}", r.stdout);
}

// ---------------------------------------------------------------- append_to_lafs_dir

#[test]
fn append_to_lafs_dir_layout_restores_without_problems() {
    let dircap = common::mkdir_mutable(&gateway_url());
    let extra = format!("  result:\n    append_to_lafs_dir: '{dircap}'\n");
    let (tmp, src, _cfg, _cap) = backed_up(&extra, |src| {
        fs::set_permissions(src, fs::Permissions::from_mode(0o750)).unwrap();
    });
    let out = tmp.path().join("out");
    let r = run(&[
        "restore",
        "--gateway",
        &gateway_url(),
        &dircap,
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let base = src.file_name().unwrap();
    assert_eq!(fs::read(out.join(base).join("a.txt")).unwrap(), b"alpha\n");
    assert!(!out.join(base).join(".lafs-backup-root").exists());
    assert_eq!(fs::metadata(out.join(base)).unwrap().mode() & 0o7777, 0o750);
}
