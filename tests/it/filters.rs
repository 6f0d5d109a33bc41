//! Filters from rule files (`filter_files`, appended across `-c` layers)
//! and per-directory `.lafs-backup-exclude` / `.lafs-backup-skip` files:
//! the queue a scan writes, the config errors, and a real-grid backup that
//! `verify NAME SOURCE` finds identical (docs/config.md).

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// The queue's paths, in file order (the test's names need no unescaping:
/// a line is `PATH META`, after a header line).
fn queued_paths(queue: &Path) -> Vec<String> {
    let text = String::from_utf8(fs::read(queue).unwrap()).unwrap();
    text.lines()
        .skip(1)
        .map(|l| l.rsplit_once(' ').unwrap().0.to_owned())
        .collect()
}

/// `lafs-backup -c CONFIG...`, to which the caller adds the rest.
fn lafs_with(configs: &[&Path]) -> common::Lafs {
    configs
        .iter()
        .fold(common::lafs(), |cmd, c| cmd.arg("-c").arg(c))
}

/// `lafs-backup -c CONFIG... backup --queue-only`, which must exit `code`.
fn queue_only(configs: &[&Path], code: i32) -> common::Run {
    lafs_with(configs)
        .args(["backup", "--queue-only"])
        .code(code)
}

struct Setup {
    tmp: TempDir,
    source: PathBuf,
}

impl Setup {
    /// A source tree exercising the three mechanisms, and two rule files.
    fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path().join("src");
        for dir in ["a/build", "a/sub/build", "skipped/deep", "logs"] {
            fs::create_dir_all(r.join(dir)).unwrap();
        }
        for file in [
            "a/build/out",
            "a/sub/build/out",
            "a/x.o",
            "a/sub/y.o",
            "a/keep.o",
            "top.o",
            "skipped/deep/f",
            "logs/app.log",
            "logs/app.tmp",
            "notes.bak",
            "plain",
        ] {
            fs::write(r.join(file), file).unwrap();
        }
        fs::write(
            r.join("a/.lafs-backup-exclude"),
            "# below a/ only\n+^/keep\\.o$\n-\\.o$\n\n-^/build/$\n",
        )
        .unwrap();
        fs::write(r.join("skipped/.lafs-backup-skip"), "").unwrap();
        fs::write(
            tmp.path().join("one.rules"),
            "# temporary files\n\n-\\.tmp$\n",
        )
        .unwrap();
        fs::write(tmp.path().join("two.rules"), "-\\.bak$\n").unwrap();
        Setup { tmp, source: r }
    }

    /// A config `name` backing up the source into [`Self::queue`], then
    /// `extra`.
    fn config(&self, name: &str, extra: &str) -> PathBuf {
        let yaml = format!(
            "source:\n  path: '{}'\n  queue:\n    path: '{}'\n{extra}",
            self.source.display(),
            self.queue().display()
        );
        self.layer(name, &yaml)
    }

    fn queue(&self) -> PathBuf {
        self.path("queue")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// A config layer file `name` holding `yaml`.
    fn layer(&self, name: &str, yaml: &str) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, yaml).unwrap();
        path
    }

    /// The two layers: the second adds a rule file to the first's.
    fn layers(&self) -> (String, String) {
        (
            format!(
                "filter_files:\n  - '{}'\n",
                self.path("one.rules").display()
            ),
            format!(
                "filter_files:\n  - '{}'\n",
                self.path("two.rules").display()
            ),
        )
    }
}

/// What the scan keeps of [`Setup::new`]'s tree with both rule files.
const KEPT: [&str; 11] = [
    "a/.lafs-backup-exclude",
    "a/keep.o",
    "a/sub/build/out",
    "a/sub/build",
    "a/sub",
    "a",
    "logs/app.log",
    "logs",
    "plain",
    "top.o",
    "",
];

#[test]
fn rule_files_accumulate_across_layers_and_directory_files_apply() {
    let s = Setup::new();
    let queue = s.queue();
    let base = s.config("base.yaml", "");
    let (one, two) = s.layers();
    let one = s.layer("one.yaml", &one);
    let two = s.layer("two.yaml", &two);
    queue_only(&[&base, &one, &two], 0);
    assert_eq!(queued_paths(&queue), KEPT);

    // The second layer alone drops only *.bak: the lists did accumulate.
    queue_only(&[&base, &two], 0);
    let paths = queued_paths(&queue);
    assert!(paths.contains(&"logs/app.tmp".to_owned()), "{paths:?}");
    assert!(!paths.contains(&"notes.bak".to_owned()), "{paths:?}");

    // dump-config shows both files; `filter_files: null` in a later layer
    // empties the list.
    let dump = common::lafs()
        .args(["-c", base.to_str().unwrap(), "-c", one.to_str().unwrap()])
        .args(["-c", two.to_str().unwrap(), "dump-config"])
        .ok()
        .stdout;
    assert!(
        dump.contains("one.rules") && dump.contains("two.rules"),
        "{dump}"
    );
    let none = s.layer("none.yaml", "filter_files: null\n");
    queue_only(&[&base, &one, &none], 0);
    let paths = queued_paths(&queue);
    assert!(paths.contains(&"logs/app.tmp".to_owned()), "{paths:?}");
}

#[test]
fn rule_file_errors_exit_2_naming_file_and_line() {
    let s = Setup::new();
    let config = |rules: &Path| {
        s.config(
            "cfg.yaml",
            &format!("filter_files:\n  - '{}'\n", rules.display()),
        )
    };
    let err = queue_only(&[&config(&s.path("missing.rules"))], 2).stderr;
    assert!(err.contains("cfg.yaml:6: "), "{err}");
    assert!(err.contains("missing.rules"), "{err}");

    let bad = s.path("bad.rules");
    fs::write(&bad, "-ok\n# comment\n\n(no prefix)\n").unwrap();
    let err = queue_only(&[&config(&bad)], 2).stderr;
    assert!(err.contains("cfg.yaml:6: "), "{err}");
    assert!(err.contains(&format!("{}:4: ", bad.display())), "{err}");
    assert!(err.contains("(no prefix)"), "{err}");
    assert!(!s.queue().exists());
}

#[test]
fn a_bad_directory_file_is_reported_and_ignored() {
    let s = Setup::new();
    fs::write(s.source.join("logs/.lafs-backup-exclude"), "-x\nbad rule\n").unwrap();
    let err = queue_only(&[&s.config("cfg.yaml", "")], 3).stderr;
    assert!(err.contains("logs/.lafs-backup-exclude:2: "), "{err}");
    assert!(queued_paths(&s.queue()).contains(&"logs/app.tmp".to_owned()));
}

#[test]
fn backup_then_verify_source_is_identical() {
    let url = common::gateway_url();
    let s = Setup::new();
    let (one, two) = s.layers();
    let cfg = common::write_backup_config(s.tmp.path(), &s.source, &url, common::QUICK_RETRY);
    let extra = s.layer("extra.yaml", &one);
    let more = s.layer("more.yaml", &two);
    let configs: [&Path; 3] = [&cfg, &extra, &more];
    let run = lafs_with(&configs)
        .args(["--json", "backup"])
        .caps_on_stdout()
        .ok();
    let scan = run.of_type("scan");
    assert_eq!(scan[0]["entries"], 11, "{scan:?}");
    // a/x.o, a/sub/y.o, a/build (one pruned directory), skipped/,
    // logs/app.tmp, notes.bak.
    assert_eq!(scan[0]["excluded"], 6, "{scan:?}");
    let verify = |args: &[&str]| {
        lafs_with(&configs)
            .arg("verify")
            .args(args)
            .arg(&s.source)
            .run()
    };
    let run = verify(&["src"]);
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    assert_eq!(run.stdout, "");
    // Without the source rules, every left-out entry is `extra`.
    let run = verify(&["--unfiltered", "src"]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    let mut extra: Vec<&str> = run.stdout.lines().collect();
    extra.sort_unstable();
    assert_eq!(
        extra,
        [
            "extra /a/build",
            "extra /a/sub/y.o",
            "extra /a/x.o",
            "extra /logs/app.tmp",
            "extra /notes.bak",
            "extra /skipped",
        ]
    );
}
