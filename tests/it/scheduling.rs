//! The shipped scheduling files (contrib/, docs/scheduling.md): the systemd
//! units pass `systemd-analyze verify` exactly as shipped, and the cron
//! example runs the same command.
//!
//! `verify` runs with `--root` on a throw-away root that holds the units
//! where docs/scheduling.md installs them, the built binary where their
//! `ExecStart=` says (`/usr/local/bin/lafs-backup`, which `verify` checks
//! is executable) and a copy of this machine's own unit directory (for
//! `sysinit.target`, `network-online.target`, `timers.target`): nothing
//! is installed on the machine itself, and the units are checked byte for
//! byte, not an edited copy. CI installs `systemd-analyze` (`.ci/run`);
//! without it the test fails, saying so.
//!
//! The sandbox's capability set is tried for real: a backup run as root
//! with only the service's `CapabilityBoundingSet=` (through `setpriv`)
//! reads a file nobody may read, and leaves out the `trusted.*` xattrs, as
//! docs/scheduling.md says.

use std::path::{Path, PathBuf};
use std::process::Command;

use std::os::unix::fs::PermissionsExt;

use crate::common::{BIN, Lafs, gateway_url, lafs, run_tool, write_backup_config};

/// The repository's root.
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The command every shipped schedule runs (docs/scheduling.md says so).
const COMMAND: &str = "/usr/local/bin/lafs-backup -c /etc/lafs-backup/backup.yaml backup";

const UNITS: [&str; 2] = ["lafs-backup.service", "lafs-backup.timer"];

/// Copy the tree at `from` to `to`, symlinks as symlinks (their targets
/// resolve inside the `--root` as they do on the machine).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_symlink() {
            let target = std::fs::read_link(entry.path()).unwrap();
            std::os::unix::fs::symlink(target, &dest).unwrap();
        } else if kind.is_dir() {
            copy_tree(&entry.path(), &dest);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// A root for `systemd-analyze --root`: this machine's unit directories,
/// the shipped units in /etc/systemd/system, the binary in /usr/local/bin.
fn verify_root() -> tempfile::TempDir {
    // In the target directory, so the binary is hard-linked, not copied.
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for dir in ["/usr/lib/systemd/system", "/lib/systemd/system"] {
        let host = Path::new(dir);
        let inside = root.path().join(dir.trim_start_matches('/'));
        // /lib is a symlink to usr/lib on merged-/usr systems: the same
        // symlink in the root, so units that name /lib/... resolve.
        let parent = Path::new(dir).components().nth(1).unwrap();
        let top = Path::new("/").join(parent);
        let top_inside = root.path().join(parent);
        if std::fs::symlink_metadata(&top).is_ok_and(|m| m.file_type().is_symlink()) {
            if !top_inside.exists() {
                let target = std::fs::read_link(&top).unwrap();
                std::os::unix::fs::symlink(target, &top_inside).unwrap();
            }
            continue;
        }
        if host.is_dir() && !inside.exists() {
            copy_tree(host, &inside);
        }
    }
    let units = root.path().join("etc/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    for unit in UNITS {
        std::fs::copy(repo().join("contrib/systemd").join(unit), units.join(unit)).unwrap();
    }
    let bin_dir = root.path().join("usr/local/bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let bin = bin_dir.join("lafs-backup");
    if std::fs::hard_link(BIN, &bin).is_err() {
        std::fs::copy(BIN, &bin).unwrap();
    }
    root
}

/// `systemd-analyze verify`, run the way docs/scheduling.md tells users to.
fn systemd_analyze(args: &[&str]) -> std::process::Output {
    Command::new("systemd-analyze")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run systemd-analyze ({e}): install systemd (Debian: apt-get install \
                 systemd), as .ci/run does"
            )
        })
}

#[test]
fn shipped_units_pass_systemd_analyze_verify() {
    let root = verify_root();
    let root_arg = format!("--root={}", root.path().display());
    // --man=no: the units name no man page, and none is installed in the
    // root. --recursive-errors=no: only our units decide the exit status,
    // not a broken unit elsewhere on the machine they are checked on.
    let mut args = vec!["verify", "--man=no", "--recursive-errors=no", &root_arg];
    args.extend(UNITS);
    let out = systemd_analyze(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze {args:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // Warnings do not change the exit status: none may name our units.
    for line in stdout.lines().chain(stderr.lines()) {
        assert!(
            !line.contains("lafs-backup"),
            "systemd-analyze warns about the units: {line}\n{stdout}\n{stderr}"
        );
    }

    // The check has teeth: without the binary where ExecStart says, it fails.
    std::fs::remove_file(root.path().join("usr/local/bin/lafs-backup")).unwrap();
    let out = systemd_analyze(&args);
    assert!(
        !out.status.success(),
        "systemd-analyze verify passed without the binary"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/usr/local/bin/lafs-backup"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn service_and_cron_run_the_documented_command() {
    let read = |p: &str| std::fs::read_to_string(repo().join(p)).unwrap();
    let service = read("contrib/systemd/lafs-backup.service");
    let exec: Vec<&str> = service
        .lines()
        .filter(|l| l.starts_with("ExecStart="))
        .collect();
    assert_eq!(exec, [format!("ExecStart={COMMAND}")]);
    for key in ["Type=oneshot", "SuccessExitStatus=3", "StandardOutput=null"] {
        assert!(
            service.lines().any(|l| l == key),
            "{key} not in the service"
        );
    }
    let timer = read("contrib/systemd/lafs-backup.timer");
    for key in ["Persistent=true", "RandomizedDelaySec=1h"] {
        assert!(timer.lines().any(|l| l == key), "{key} not in the timer");
    }
    // The cron example: every active line runs the binary as root with
    // the shipped config, its stdout (the root cap) not mailed; the first
    // is the backup.
    let cron = read("contrib/cron/lafs-backup");
    let active: Vec<&str> = cron
        .lines()
        .filter(|l| {
            let l = l.trim();
            !l.is_empty() && !l.starts_with('#') && !l.contains('=')
        })
        .collect();
    assert!(!active.is_empty());
    assert!(active[0].contains(COMMAND), "{}", active[0]);
    for line in active {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[5], "root", "{line}");
        assert!(
            line.contains(&COMMAND[..COMMAND.len() - "backup".len()]),
            "{line}"
        );
        assert!(line.ends_with(">/dev/null"), "{line}");
    }
    let docs = read("docs/scheduling.md");
    assert!(docs.contains(COMMAND));
}

/// The capabilities of the service's `CapabilityBoundingSet=`, in
/// setpriv's spelling (`+dac_read_search`).
fn service_capabilities() -> Vec<String> {
    let service =
        std::fs::read_to_string(repo().join("contrib/systemd/lafs-backup.service")).unwrap();
    let line: Vec<&str> = service
        .lines()
        .filter_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .collect();
    assert_eq!(line.len(), 1, "one CapabilityBoundingSet= line");
    line[0]
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect()
}

#[test]
fn sandbox_capabilities_suffice_for_a_backup() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test drops root's capabilities to the service's: run it as root \
         (scripts/test in CI is)"
    );
    let caps = service_capabilities();
    assert_eq!(caps, ["+dac_read_search"]);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let private = src.join("private");
    std::fs::create_dir_all(&private).unwrap();
    std::fs::write(private.join("secret"), "only its owner may read this\n").unwrap();
    std::fs::write(src.join("tagged"), "with xattrs\n").unwrap();
    for (path, mode) in [(private.join("secret"), 0o000), (private.clone(), 0o700)] {
        std::os::unix::fs::chown(&path, Some(1234), Some(1234)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let tagged = src.join("tagged");
    for (name, value) in [("trusted.sandbox", "1"), ("user.kept", "2")] {
        run_tool(
            "setfattr",
            &[
                "-n".as_ref(),
                name.as_ref(),
                "-v".as_ref(),
                value.as_ref(),
                tagged.as_os_str(),
            ],
        );
    }
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let cfg = write_backup_config(&state, &src, &gateway_url(), "");

    // As the service runs it: root, with only the bounding set's
    // capabilities, no new privileges.
    let bounding = format!("-all,{}", caps.join(","));
    let run = Lafs::in_shell(&format!(
        "exec setpriv --bounding-set {bounding} --inh-caps=-all --no-new-privs -- \"$0\" \"$@\""
    ))
    .arg("-c")
    .arg(&cfg)
    .args(["--json", "backup"])
    .caps_on_stdout()
    .ok();
    let summary = run.of_type("summary");
    assert_eq!(summary.len(), 1, "{}", run.stdout);
    assert_eq!(summary[0]["skipped"], 0, "{}", run.stdout);

    // Full root compares: the same bytes and metadata, but trusted.* was
    // not listed without CAP_SYS_ADMIN.
    let verify = lafs()
        .arg("-c")
        .arg(&cfg)
        .args(["verify", "--content", "src"])
        .arg(&src)
        .code(4);
    let differences: Vec<&str> = verify.stdout.lines().collect();
    assert_eq!(differences.len(), 1, "{}", verify.stdout);
    assert!(
        differences[0].contains("/tagged") && differences[0].contains("trusted.sandbox"),
        "{}",
        verify.stdout
    );
}
