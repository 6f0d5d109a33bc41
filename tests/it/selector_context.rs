//! Issue 11, items 1 and 2, against the real grid: one backup selector for
//! `restore`, `verify`, `check` and `cleanup` (the same resolution, message
//! and exit code for a cap, a raw name, the escaped name `list` prints, an
//! older generation, an unknown name and an ambiguous name), and no command
//! but `backup` ever creating a cache (a mistyped cache path is exit 1
//! naming it, and nothing is created).

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::{self, Run};
use serde_json::Value;

/// Writes a config backing up `source` into the cache `cache`; the source
/// path is double-quoted YAML, so a tab or a backslash in it survives.
fn config(dir: &Path, file: &str, source: &Path, cache: &Path, url: &str) -> PathBuf {
    let quote = |p: &Path| {
        let text = p.to_str().expect("test paths are UTF-8");
        let mut out = String::from("\"");
        for c in text.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\t' => out.push_str("\\t"),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    };
    let cfg = dir.join(file);
    fs::write(
        &cfg,
        format!(
            "source:\n  path: {}\n  queue:\n    path: {}\n  entry_cache:\n    path: {}\n\
             destination:\n  url: '{url}/uri'\n{}",
            quote(source),
            quote(&dir.join(format!("{file}.queue"))),
            quote(cache),
            common::QUICK_RETRY,
        ),
    )
    .unwrap();
    cfg
}

/// Runs the binary (the builder checks that no cap reaches stderr and
/// nothing panics; stdout may carry caps: `list`, `check --json`).
fn run(cfg: &Path, args: &[&str]) -> Run {
    common::lafs()
        .arg("-c")
        .arg(cfg)
        .args(args)
        .write_stdin("")
        .caps_on_stdout()
        .run()
}

/// A file big enough not to be a literal cap.
fn file(dir: &Path, name: &str, seed: u64) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(name), common::pseudo_random_bytes(300, seed)).unwrap();
}

struct Grid {
    tmp: tempfile::TempDir,
    cache: PathBuf,
    /// The config of the backups named `web<TAB>site`.
    tab_cfg: PathBuf,
    tab_src: PathBuf,
    aa_src: PathBuf,
    /// (generation, root cap) by backup: web<TAB>site twice, `a\x41`, `aA`.
    tab1: (u64, String),
    tab2: (u64, String),
    lit: (u64, String),
    aa: (u64, String),
}

/// Four recorded backups in one cache: `web<TAB>site` (two generations),
/// a name that is literally `a\x41`, and `aA` (what `a\x41` unescapes to).
fn grid() -> Grid {
    let url = common::gateway_url();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("state").join("cache.sqlite");
    let tab_src = tmp.path().join("src").join("web\tsite");
    let lit_src = tmp.path().join("src").join("a\\x41");
    let aa_src = tmp.path().join("src").join("aA");
    file(&tab_src, "one.dat", 1);
    file(&lit_src, "lit.dat", 3);
    file(&aa_src, "aa.dat", 4);
    let tab_cfg = config(tmp.path(), "tab.yaml", &tab_src, &cache, &url);
    let lit_cfg = config(tmp.path(), "lit.yaml", &lit_src, &cache, &url);
    let aa_cfg = config(tmp.path(), "aa.yaml", &aa_src, &cache, &url);

    let cap1 = common::backup_root_cap(&tab_cfg);
    file(&tab_src, "two.dat", 2);
    let cap2 = common::backup_root_cap(&tab_cfg);
    let cap3 = common::backup_root_cap(&lit_cfg);
    let cap4 = common::backup_root_cap(&aa_cfg);
    let listed = run(&tab_cfg, &["--json", "list"]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let generation = |cap: &str| -> u64 {
        listed
            .of_type("backup")
            .iter()
            .find(|b| b["root_cap"] == cap)
            .and_then(|b| b["generation"].as_u64())
            .expect("the backup is listed")
    };
    let names: Vec<Value> = listed
        .of_type("backup")
        .iter()
        .map(|b| b["name"].clone())
        .collect();
    assert_eq!(names, ["web\\x09site", "web\\x09site", "a\\\\x41", "aA"]);
    Grid {
        tab1: (generation(&cap1), cap1),
        tab2: (generation(&cap2), cap2),
        lit: (generation(&cap3), cap3),
        aa: (generation(&cap4), cap4),
        tmp,
        cache,
        tab_cfg,
        tab_src,
        aa_src,
    }
}

impl Grid {
    /// `restore -n --json [extra] BACKUP T`: the exit code and the paths it
    /// would write.
    fn restore(&self, extra: &[&str], backup: &str) -> (Run, Vec<String>) {
        let target = self.tmp.path().join("restored");
        let mut args = vec!["--json", "restore", "-n"];
        args.extend_from_slice(extra);
        args.extend([backup, target.to_str().unwrap()]);
        let r = run(&self.tab_cfg, &args);
        assert!(!target.exists(), "a dry run writes nothing");
        let paths = if r.code == 0 {
            r.of_type("planned")
                .iter()
                .filter_map(|p| p["path"].as_str().map(str::to_owned))
                .filter(|p| p.ends_with(".dat"))
                .collect()
        } else {
            Vec::new()
        };
        (r, paths)
    }

    fn verify(&self, extra: &[&str], backup: &str, tree: &Path) -> Run {
        let mut args = vec!["verify"];
        args.extend_from_slice(extra);
        args.extend([backup, tree.to_str().unwrap()]);
        run(&self.tab_cfg, &args)
    }

    /// `check --json --no-lease BACKUP`: the run and its `backup` lines
    /// (name, objects).
    fn check(&self, backup: &str) -> (Run, Vec<(String, u64)>) {
        let r = run(&self.tab_cfg, &["--json", "check", "--no-lease", backup]);
        let lines = if r.code == 0 {
            r.of_type("backup")
                .iter()
                .map(|b| {
                    (
                        b["name"].as_str().unwrap_or_default().to_owned(),
                        b["objects"].as_u64().unwrap_or_default(),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        (r, lines)
    }

    fn cleanup(&self, args: &[&str]) -> Run {
        let mut all = vec!["cleanup", "-n"];
        all.extend_from_slice(args);
        run(&self.tab_cfg, &all)
    }
}

/// The table of the issue: every way of naming a backup, through all four
/// commands.
#[test]
fn one_selector_resolves_the_same_way_in_restore_verify_check_and_cleanup() {
    let g = grid();
    let (g1, g2, g3, g4) = (g.tab1.0, g.tab2.0, g.lit.0, g.aa.0);
    let cache = g.cache.display().to_string();

    // A cap, and the raw name `aA`: the same backup everywhere.
    for sel in [g.aa.1.as_str(), "aA"] {
        let (r, paths) = g.restore(&[], sel);
        assert_eq!(
            (r.code, paths),
            (0, vec!["aa.dat".to_owned()]),
            "{}",
            r.stderr
        );
        let r = g.verify(&[], sel, &g.aa_src);
        assert_eq!(r.code, 0, "{sel}: {}", r.stderr);
        let (r, lines) = g.check(sel);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].0, "aA");
        let r = g.cleanup(&[sel]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(
            r.stderr
                .contains(&format!("would forget backup aA (generation {g4}, ")),
            "{}",
            r.stderr
        );
    }

    // The name with a tab, raw or in the escaped form `list` prints: the
    // latest generation for restore, verify and check; cleanup refuses a
    // name with several generations and lists them.
    let (_, latest) = g.check(&g.tab2.1);
    for sel in ["web\tsite", "web\\x09site"] {
        let (r, paths) = g.restore(&[], sel);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(paths, ["one.dat", "two.dat"], "{sel:?}");
        let r = g.verify(&[], sel, &g.tab_src);
        assert_eq!(r.code, 0, "{sel:?}: {}", r.stderr);
        let (r, lines) = g.check(sel);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(lines, latest, "{sel:?}");
        assert_eq!(lines[0].0, "web\\x09site");
        let r = g.cleanup(&[sel]);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(r.stderr.contains("matches 2 backups"), "{}", r.stderr);
        for n in [g1, g2] {
            assert!(
                r.stderr.contains(&format!("\n  generation {n}, finished ")),
                "{}",
                r.stderr
            );
        }
    }

    // An older generation: --generation for restore and verify, its cap for
    // check (which has no --generation), -g for cleanup (its documented
    // meaning: forget that generation).
    let older = ["--generation", &g1.to_string()].map(str::to_owned);
    let older: Vec<&str> = older.iter().map(String::as_str).collect();
    let (r, paths) = g.restore(&older, "web\\x09site");
    assert_eq!(
        (r.code, paths),
        (0, vec!["one.dat".to_owned()]),
        "{}",
        r.stderr
    );
    // Generation 1 lacks two.dat, which the tree now has.
    let r = g.verify(&older, "web\\x09site", &g.tab_src);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stdout.contains("two.dat"), "{}", r.stdout);
    let (r, lines) = g.check(&g.tab1.1);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(lines[0].0, "web\\x09site");
    assert!(lines[0].1 < latest[0].1, "{lines:?} {latest:?}");
    let r = g.cleanup(&["-g", &g1.to_string()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "would forget backup web\\x09site (generation {g1}, "
        )),
        "{}",
        r.stderr
    );
    // A generation the name does not have: exit 2 everywhere it applies.
    let missing = ["--generation", "999999"];
    let (r, _) = g.restore(&missing, "web\\x09site");
    assert_eq!(r.code, 2, "{}", r.stderr);
    let message = format!(
        "no backup named \"web\\\\x09site\" has generation 999999 in the entry cache {cache} \
         (its generations: {g1}, {g2})"
    );
    assert!(r.stderr.contains(&message), "{}", r.stderr);
    let r = g.verify(&missing, "web\\x09site", &g.tab_src);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains(&message), "{}", r.stderr);

    // An unknown name: exit 2 naming it, the same words everywhere.
    let unknown = format!("no backup named \"nosuch\" in the entry cache {cache} (");
    let runs = [
        g.restore(&[], "nosuch").0,
        g.verify(&[], "nosuch", &g.tab_src),
        g.check("nosuch").0,
        g.cleanup(&["nosuch"]),
    ];
    for r in &runs {
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(r.stderr.contains(&unknown), "{}", r.stderr);
    }

    // `a\x41` names one backup as given and another (`aA`) read escaped:
    // exit 2 listing both, nothing guessed.
    let runs = [
        g.restore(&[], "a\\x41").0,
        g.verify(&[], "a\\x41", &g.aa_src),
        g.check("a\\x41").0,
        g.cleanup(&["a\\x41"]),
    ];
    for r in &runs {
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(
            r.stderr
                .contains("the name \"a\\\\x41\" names different backups"),
            "{}",
            r.stderr
        );
        assert!(
            r.stderr
                .contains(&format!("\n  a\\\\x41: generation {g3}, finished ")),
            "{}",
            r.stderr
        );
        assert!(
            r.stderr
                .contains(&format!("\n  aA: generation {g4}, finished ")),
            "{}",
            r.stderr
        );
    }
    // Its cap still names it.
    let (r, paths) = g.restore(&[], &g.lit.1);
    assert_eq!(
        (r.code, paths),
        (0, vec!["lit.dat".to_owned()]),
        "{}",
        r.stderr
    );
}

/// `-` reads targets from stdin in one place: caps or names, one per line,
/// for check and cleanup alike.
#[test]
fn dash_reads_caps_and_names_from_stdin() {
    let g = grid();
    let stdin = format!("\n{}\n  aA  \n", g.tab1.1);
    let r = common::lafs()
        .arg("-c")
        .arg(&g.tab_cfg)
        .args(["--json", "check", "--no-lease", "-"])
        .write_stdin(stdin.clone())
        .caps_on_stdout()
        .run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let names: Vec<Value> = r
        .of_type("backup")
        .iter()
        .map(|b| b["name"].clone())
        .collect();
    assert_eq!(names, ["web\\x09site", "aA"]);
    let r = common::lafs()
        .arg("-c")
        .arg(&g.tab_cfg)
        .args(["cleanup", "-n", "-"])
        .write_stdin(stdin)
        .run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("would forget backup aA "), "{}", r.stderr);
    assert!(
        r.stderr.contains("would forget backup web\\x09site "),
        "{}",
        r.stderr
    );
}

/// No command but `backup` creates a cache: with a mistyped cache path,
/// each says so (exit 1, naming the path) and leaves nothing behind. No
/// gateway is needed to find that out.
#[test]
fn a_mistyped_cache_path_is_exit_1_naming_it_and_nothing_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("src");
    file(&source, "a.dat", 1);
    let missing_dir = tmp.path().join("no-such-dir");
    let cache = missing_dir.join("cache.sqlite");
    let cfg = config(
        tmp.path(),
        "cfg.yaml",
        &source,
        &cache,
        "http://127.0.0.1:9",
    );
    let target = tmp.path().join("target");
    let src = source.to_str().unwrap();
    let t = target.to_str().unwrap();
    for args in [
        vec!["check", "--all"],
        vec!["check", "-a"],
        vec!["check", "--leases"],
        vec!["check", "src"],
        vec!["verify", "src", src],
        vec!["list"],
        vec!["cleanup", "-n", "src"],
        vec!["cleanup", "src"],
        vec!["restore", "src", t],
    ] {
        let r = run(&cfg, &args);
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains(&format!(
                "there is no entry cache at {} (source.entry_cache.path)",
                cache.display()
            )),
            "{args:?}: {}",
            r.stderr
        );
        assert!(
            !missing_dir.exists(),
            "{args:?} created the cache directory"
        );
        assert!(!target.exists(), "{args:?}");
    }
    // The same in an existing directory: no file appears there.
    let cache = tmp.path().join("cache.sqlite");
    let cfg = config(
        tmp.path(),
        "cfg2.yaml",
        &source,
        &cache,
        "http://127.0.0.1:9",
    );
    for args in [vec!["check", "--all"], vec!["verify", "src", src]] {
        let r = run(&cfg, &args);
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        let left: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .filter(|n| n.to_string_lossy().starts_with("cache.sqlite"))
            .collect();
        assert!(left.is_empty(), "{args:?} created {left:?}");
    }
}
