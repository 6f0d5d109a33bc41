//! Issue 14 item 1 against the real grid: one selector, by date too. The
//! shared three-backup history (`common::history`): `--as-of` and the
//! one-token form pick the right backup, and the same mistakes give the
//! same message and exit 2 from every command that takes a backup.

use std::fs;

use crate::common::history::{F1, F2, History};
use crate::common::{Run, lafs};

fn run(args: &[&str]) -> Run {
    let h = History::get();
    lafs()
        .arg("-c")
        .arg(&h.cfg)
        .args(args)
        .env("TZ", "UTC")
        .env("LAFS_BACKUP_NOW", "2024-01-05T12:00:00+00:00")
        .write_stdin("")
        .caps_on_stdout()
        .run()
}

/// Restores `selector` (and extra args) and returns the bytes of `f`, if
/// the restored tree has it.
fn restored_f(extra: &[&str]) -> Option<Vec<u8>> {
    let target = tempfile::tempdir().unwrap();
    let dest = target.path().join("out");
    let mut args = vec!["restore"];
    args.extend_from_slice(extra);
    let dest_s = dest.to_str().unwrap().to_owned();
    args.insert(2, &dest_s);
    let r = run(&args);
    assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    fs::read(dest.join("f")).ok()
}

#[test]
fn as_of_and_tokens_pick_by_date_generation_and_label() {
    // Between the first and the second backup: version 1 of f.
    assert_eq!(
        restored_f(&["tree", "--as-of", "2024-01-01T12:00:00Z"]).as_deref(),
        Some(F1)
    );
    assert_eq!(
        restored_f(&["tree@2024-01-01"]).as_deref(),
        Some(F1),
        "a date's end"
    );
    assert_eq!(restored_f(&["tree@2"]).as_deref(), Some(F2));
    let h = History::get();
    assert_eq!(restored_f(&[h.caps[1].as_str()]).as_deref(), Some(F2));
    assert_eq!(
        restored_f(&["tree", "--as-of", "3 days ago"]).as_deref(),
        Some(F2)
    );
    assert_eq!(
        restored_f(&["tree", "--as-of", "today"]),
        None,
        "deleted in the third"
    );
}

/// The same mistakes, the same words, exit 2, in every command.
#[test]
fn the_same_mistakes_give_the_same_message_everywhere() {
    let h = History::get();
    let live = h.source.to_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    let out = out.path().join("r");
    let out = out.to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["nosuch"], "no backup named \"nosuch\" in the entry cache"),
        (
            &["tree", "--as-of", "2023-12-31"],
            "no backup named \"tree\" started at or before \"2023-12-31\"",
        ),
        (
            &["tree@2023-12-31"],
            "no backup named \"tree\" started at or before \"2023-12-31\"",
        ),
        // The label `yesterday` (generation 1) against the WHEN (generation 3).
        (
            &["tree@yesterday"],
            "\"tree@yesterday\" can be read more than one way",
        ),
    ];
    for (sel, want) in cases {
        let token_only = sel.len() == 1;
        let mut commands: Vec<Vec<&str>> = vec![
            [&["restore"][..], &sel[..1], &[out], &sel[1..]].concat(),
            [&["verify"][..], &sel[..1], &[live], &sel[1..]].concat(),
            [&["pin"][..], sel].concat(),
            [&["ls"][..], sel].concat(),
            [&["cat"][..], &sel[..1], &["g"], &sel[1..]].concat(),
        ];
        if token_only {
            commands.push([&["check"][..], sel].concat());
            commands.push([&["cleanup"][..], sel].concat());
            commands.push([&["diff"][..], sel, &["tree"]].concat());
        }
        for args in commands {
            let r = run(&args);
            assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
            assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
        }
    }
    // --generation with --as-of: a usage error.
    let r = run(&[
        "restore",
        "tree",
        out,
        "--generation",
        "1",
        "--as-of",
        "today",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = run(&["restore", "tree", out, "--as-of", "last tuesday"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("\"last tuesday\" is not a time"),
        "{}",
        r.stderr
    );
}
