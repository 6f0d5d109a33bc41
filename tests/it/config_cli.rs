//! The config layering as users see it: `lafs-backup -c A -c B dump-config`,
//! and config errors (exit code 2, the message on stderr). No grid needed.

use std::fs;
use std::path::{Path, PathBuf};

use lafs_backup::{Config, load_config};
use predicates::prelude::*;
use tempfile::TempDir;

fn write(dir: &TempDir, name: &str, yaml: &str) -> PathBuf {
    let path = dir.path().join(name);
    fs::write(&path, yaml).expect("write config");
    path
}

/// `lafs-backup -c FILE... ARGS...`
fn run(files: &[&Path], args: &[&str]) -> assert_cmd::assert::Assert {
    let mut cmd = crate::common::lafs();
    for file in files {
        cmd = cmd.arg("-c").arg(file);
    }
    cmd.args(args).assert()
}

fn stdout_of(assert: &assert_cmd::assert::Assert) -> String {
    String::from_utf8(assert.get_output().stdout.clone()).expect("UTF-8 stdout")
}

const A: &str = "\
source:
  path: /srv/a
  queue:
    path: /var/tmp/queue
filter:
  - '+^/var/log/($|security/)'
  - '-^/var/(tmp|cache|log|spool)/'
operation:
  rate_limit:
    bytes: 1/3e5:20e6
";

const B: &str = "\
source:
  path: '/srv/b: #2'
  one_file_system: no
filter: ['-/(?i)\\.?svn(/.*|ignore)$']
destination:
  encoding:
    xz:
      min_size: 10_000_000
      options: {options: {level: 9}}
operation:
  timeouts:
    updates: null
";

#[test]
fn dump_config_prints_the_merged_config() {
    let dir = TempDir::new().expect("tempdir");
    let a = write(&dir, "a.yaml", A);
    let b = write(&dir, "b.yaml", B);
    let assert = run(&[&a, &b], &["dump-config"]).success();
    let expected = load_config(&[a.clone(), b.clone()]).expect("loads").config;
    assert_eq!(stdout_of(&assert), expected.to_yaml());

    // The layering itself, as seen in the output.
    let out = stdout_of(&assert);
    assert!(out.contains("  path: '/srv/b: #2'\n"), "{out}");
    assert!(out.contains("    path: '/var/tmp/queue'\n"), "{out}");
    assert!(out.contains("  one_file_system: false\n"), "{out}");
    assert!(
        out.contains("filter:\n  - '-/(?i)\\.?svn(/.*|ignore)$'\noperation:"),
        "{out}"
    );
    assert!(out.contains("      min_size: 10000000\n"), "{out}");
    assert!(out.contains("    updates: null\n"), "{out}");
    assert!(out.contains("    bytes: '1/300000:20000000'\n"), "{out}");
}

#[test]
fn dump_config_underscore_alias_prints_the_same() {
    let dir = TempDir::new().expect("tempdir");
    let a = write(&dir, "a.yaml", A);
    let dashed = stdout_of(&run(&[&a], &["dump-config"]).success());
    let underscored = stdout_of(&run(&[&a], &["dump_config"]).success());
    assert_eq!(dashed, underscored);
}

#[test]
fn dump_config_without_files_prints_the_base_config() {
    let assert = run(&[], &["dump-config"]).success();
    assert_eq!(stdout_of(&assert), Config::builtin().to_yaml());
}

#[test]
fn dump_config_output_reloads_to_the_same_config() {
    let dir = TempDir::new().expect("tempdir");
    let a = write(&dir, "a.yaml", A);
    let b = write(&dir, "b.yaml", B);
    let first = stdout_of(&run(&[&a, &b], &["dump-config"]).success());
    let dump = write(&dir, "dump.yaml", &first);
    let second = stdout_of(&run(&[&dump], &["dump-config"]).success());
    assert_eq!(first, second);
}

#[test]
fn config_errors_exit_2_naming_file_line_and_key() {
    let dir = TempDir::new().expect("tempdir");
    let a = write(&dir, "a.yaml", A);
    let b = write(
        &dir,
        "b.yaml",
        "source:\n  path: /x\n  queue:\n    chek_mtime: true\n",
    );
    run(&[&a, &b], &["dump-config"])
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains(format!(
            "{}:4: unknown config key source.queue.chek_mtime",
            b.display()
        )));

    let c = write(&dir, "c.yaml", "logging:\n  level: loud\n");
    run(&[&c], &["dump-config"])
        .code(2)
        .stderr(predicate::str::contains(format!(
            "{}:2: wrong type for logging.level",
            c.display()
        )));

    let d = write(
        &dir,
        "d.yaml",
        "operation:\n  rate_limit:\n    objects: '1:0'\n",
    );
    run(&[&d], &["dump-config"])
        .code(2)
        .stderr(predicate::str::contains(format!(
            "{}:3: invalid value for operation.rate_limit.objects",
            d.display()
        )));

    let e = write(&dir, "e.yaml", "filter:\n  - '+ok'\n  - 'no prefix'\n");
    run(&[&e], &["dump-config"])
        .code(2)
        .stderr(predicate::str::contains(format!(
            "{}:3: invalid value for filter",
            e.display()
        )));
}

#[test]
fn malformed_yaml_exits_2_naming_file_and_line() {
    let dir = TempDir::new().expect("tempdir");
    let bad = write(&dir, "bad.yaml", "source:\n  path: /x\n queue: 1\n");
    run(&[&bad], &["dump-config"])
        .code(2)
        .stderr(predicate::str::contains(format!(
            "{}:3: invalid YAML",
            bad.display()
        )));
}

#[test]
fn unreadable_config_file_exits_2() {
    let dir = TempDir::new().expect("tempdir");
    let missing = dir.path().join("missing.yaml");
    run(&[&missing], &["dump-config"])
        .code(2)
        .stderr(predicate::str::contains(format!(
            "cannot read config file {}",
            missing.display()
        )));
}

#[test]
fn keys_of_the_original_tool_warn_but_work() {
    let dir = TempDir::new().expect("tempdir");
    let old = write(
        &dir,
        "old.yaml",
        "source:\n  path: /srv\n  pick_policy: alphasort_last\n\
         manhole:\n  endpoint: 'tcp:8022:interface=localhost'\n\
         logging:\n  version: 1\n  root: {level: custom, handlers: [console]}\n",
    );
    let assert = run(&[&old], &["dump-config"])
        .success()
        .stderr(predicate::str::contains(format!(
            "{}:3: ignoring config key source.pick_policy",
            old.display()
        )))
        .stderr(predicate::str::contains("ignoring config key manhole"))
        .stderr(predicate::str::contains(
            "ignoring config key logging.version",
        ))
        .stderr(predicate::str::contains("ignoring config key logging.root"));
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert_eq!(stderr.matches("ignoring config key").count(), 4, "{stderr}");
    let out = stdout_of(&assert);
    assert!(!out.contains("manhole"), "{out}");
    assert!(out.contains("  path: '/srv'\n"), "{out}");
}
