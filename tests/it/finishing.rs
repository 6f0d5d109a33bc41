//! Issue 13's finishing touches: shell completions and the man page, both
//! generated from the CLI definition and needing no config, and
//! `logging.file` (appended, 0600, never through a symlink, never a cap)
//! against a real local grid.

use crate::common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use clap::CommandFactory;
use lafs_backup::Cli;

/// Every subcommand name of the CLI definition (`help` included).
fn subcommands() -> Vec<String> {
    let names: Vec<String> = Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect();
    assert!(names.iter().any(|n| n == "dump-config"), "{names:?}");
    names
}

#[test]
fn bash_completion_script_loads_without_a_config() {
    // No -c and no cache: the command must not need either.
    let run =
        common::Lafs::in_shell("source <(\"$0\" completions bash) && complete -p lafs-backup").ok();
    assert!(
        run.stdout.contains("lafs-backup"),
        "complete -p printed: {}",
        run.stdout
    );
    assert_eq!(run.stderr, "", "bash said something on stderr");
}

#[test]
fn zsh_and_fish_completion_scripts_name_every_subcommand() {
    for shell in ["zsh", "fish"] {
        let run = common::lafs().args(["completions", shell]).ok();
        assert!(!run.stdout.trim().is_empty(), "{shell}: empty script");
        for name in subcommands() {
            assert!(
                run.stdout.contains(&name),
                "{shell} completions do not name {name}"
            );
        }
    }
    common::lafs().args(["completions", "tcsh"]).code(2);
}

#[test]
fn man_page_renders_and_names_every_subcommand() {
    // man -l - reads the page from stdin; MANPAGER=cat and MANWIDTH keep it
    // non-interactive and stable.
    let run =
        common::Lafs::in_shell("set -o pipefail; \"$0\" man | MANPAGER=cat MANWIDTH=100 man -l -")
            .ok();
    assert_eq!(run.stderr, "", "man or groff complained");
    assert!(run.stdout.contains("SYNOPSIS"), "{}", run.stdout);
    assert!(run.stdout.contains("lafs-backup"), "{}", run.stdout);
    for name in subcommands() {
        assert!(
            run.stdout.contains(&name),
            "the man page does not name {name}:\n{}",
            run.stdout
        );
    }
}

#[test]
fn every_subcommand_has_its_own_man_page() {
    let dir = tempfile::tempdir().unwrap();
    common::lafs().arg("man").arg("--dir").arg(dir.path()).ok();
    for name in subcommands().into_iter().filter(|n| n != "help") {
        let page = dir.path().join(format!("lafs-backup-{name}.1"));
        assert!(page.exists(), "{}", page.display());
    }
    assert!(dir.path().join("lafs-backup.1").exists());
    // One page on stdout renders and names the subcommand's options.
    let run = common::Lafs::in_shell(
        "set -o pipefail; \"$0\" man restore | MANPAGER=cat MANWIDTH=100 man -l -",
    )
    .ok();
    assert_eq!(run.stderr, "", "man or groff complained");
    assert!(run.stdout.contains("lafs-backup-restore"), "{}", run.stdout);
    assert!(run.stdout.contains("--as-of"), "{}", run.stdout);
    common::lafs().args(["man", "nosuch"]).code(2);
}

/// A source tree and a config backing it up, with `logging.file: LOG`.
fn log_setup(log: &Path) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("a.txt"), "some content\n").unwrap();
    fs::create_dir(src.join("sub")).unwrap();
    fs::write(src.join("sub/b.txt"), common::pseudo_random_bytes(5000, 13)).unwrap();
    let cfg = common::write_backup_config(
        tmp.path(),
        &src,
        &common::gateway_url(),
        &format!("logging:\n  file: '{}'\n", log.display()),
    );
    (tmp, cfg)
}

#[test]
fn logging_file_is_0600_appended_and_holds_no_cap() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("lafs-backup.log");
    let (_tmp, cfg) = log_setup(&log);
    // umask 000: the file is 0600 because we chmod it, not by the umask.
    let run = common::Lafs::in_shell("umask 000; exec \"$0\" \"$@\"")
        .arg("-c")
        .arg(&cfg)
        .args(["--noise", "--json", "backup"])
        .caps_on_stdout()
        .ok();
    let root_cap = run
        .of_type("summary")
        .pop()
        .and_then(|s| s["root_cap"].as_str().map(str::to_owned))
        .expect("a summary with root_cap");
    let mode = fs::metadata(&log).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "log file mode {mode:o}");
    let first = fs::read_to_string(&log).unwrap();
    // --noise logs every entry: the file has the same lines as stderr.
    assert!(first.contains("a.txt"), "log file:\n{first}");
    assert!(first.contains("b.txt"), "log file:\n{first}");
    for line in run.stderr.lines() {
        assert!(
            first.contains(line),
            "stderr line missing in the file: {line}"
        );
    }
    common::assert_no_cap("the log file", &first);
    assert!(!first.contains(&root_cap));
    // The key field (URI:DIR2-CHK:KEY:HASH:k:n:size): the last fields are
    // small numbers that may appear in a log by chance.
    let key = root_cap.split(':').nth(2).unwrap();
    assert!(key.len() >= 20, "{key}");
    assert!(!first.contains(key));

    // A second run appends.
    common::lafs()
        .arg("-c")
        .arg(&cfg)
        .args(["--noise", "list"])
        .caps_on_stdout()
        .ok();
    let second = fs::read_to_string(&log).unwrap();
    assert!(second.starts_with(&first), "the log was not appended to");
    common::assert_no_cap("the log file", &second);
    assert_eq!(
        fs::metadata(&log).unwrap().permissions().mode() & 0o7777,
        0o600
    );
}

#[test]
fn logging_file_symlink_is_refused_and_victim_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    fs::write(&victim, "precious\n").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
    let log = dir.path().join("lafs-backup.log");
    symlink(&victim, &log).unwrap();
    let (_tmp, cfg) = log_setup(&log);
    let run = common::lafs()
        .arg("-c")
        .arg(&cfg)
        .args(["--noise", "backup"])
        .run();
    assert!(
        matches!(run.code, 1 | 2),
        "exit {}: {}",
        run.code,
        run.stderr
    );
    assert!(
        run.stderr.contains(&log.display().to_string()) && run.stderr.contains("symbolic link"),
        "stderr: {}",
        run.stderr
    );
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
    assert_eq!(
        fs::metadata(&victim).unwrap().permissions().mode() & 0o7777,
        0o644
    );
    assert!(fs::symlink_metadata(&log).unwrap().file_type().is_symlink());
}
