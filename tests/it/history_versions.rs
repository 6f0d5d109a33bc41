//! Issue 14 items 4 and 6 against the real grid: `versions` and `find` on
//! the shared three-backup history, and the listings they cost (each
//! distinct directory once).

use crate::common::history::{F1, F2, History};
use crate::common::{Run, lafs};

fn run(args: &[&str]) -> Run {
    lafs()
        .arg("-c")
        .arg(&History::get().cfg)
        .args(args)
        .env("TZ", "UTC")
        .caps_on_stdout()
        .run()
}

fn gens(line: &serde_json::Value) -> (u64, u64) {
    (
        line["first"]["generation"].as_u64().unwrap(),
        line["last"]["generation"].as_u64().unwrap_or(0),
    )
}

#[test]
fn versions_of_a_changed_deleted_file_and_an_unchanged_one() {
    let r = run(&["--json", "versions", "tree", "f"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines = r.json();
    assert_eq!(lines.len(), 4, "{}", r.stdout);
    assert_eq!(lines[0]["type"], "version");
    assert_eq!(lines[0]["size"], F1.len());
    assert_eq!(gens(&lines[0]), (1, 1));
    assert_eq!(lines[0]["first"]["start"], "2024-01-01T03:00:00+00:00");
    assert_eq!(lines[1]["type"], "version");
    assert_eq!(lines[1]["size"], F2.len());
    assert_eq!(gens(&lines[1]), (2, 2));
    assert_eq!(lines[2]["type"], "deletion");
    assert_eq!(lines[2]["first"]["generation"], 3);
    // Only the three roots were listed.
    assert_eq!(lines[3]["listings"], 3, "{}", r.stdout);

    let r = run(&["--json", "versions", "tree", "g"]);
    let v = r.of_type("version");
    assert_eq!(v.len(), 1, "{}", r.stdout);
    assert_eq!(gens(&v[0]), (1, 3));

    // d is the same directory object in the first two backups: listed once.
    let r = run(&["--json", "versions", "tree", "d/old"]);
    assert_eq!(r.of_type("version").len(), 1, "{}", r.stdout);
    assert_eq!(r.of_type("summary")[0]["listings"], 5, "{}", r.stdout);

    let r = run(&["versions", "tree", "f"]);
    let text: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(text.len(), 3, "{}", r.stdout);
    assert!(text[0].starts_with("f: -rw"), "{}", r.stdout);
    assert!(text[2].starts_with("f: deleted in generation 3 (2024-01-03T03:00:00+00:00)"));

    let r = run(&["--json", "versions", "tree", "f", "--all"]);
    let kinds: Vec<&str> = r
        .json()
        .iter()
        .filter_map(|l| l["type"].as_str().map(|_| ""))
        .collect();
    assert_eq!(kinds.len(), 4);
    let types: Vec<String> = r
        .json()
        .iter()
        .map(|l| l["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types, ["present", "present", "absent", "summary"]);

    let r = run(&["versions", "tree", "nosuch"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("nosuch: no backup named \"tree\" has this path"),
        "{}",
        r.stderr
    );
}

#[test]
fn find_by_name_path_regex_and_date() {
    let found = |args: &[&str]| -> Vec<(u64, String)> {
        let mut all = vec!["--json", "find"];
        all.extend_from_slice(args);
        let r = run(&all);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        r.of_type("match")
            .iter()
            .map(|m| {
                (
                    m["generation"].as_u64().unwrap(),
                    m["path"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(found(&["f"]), [(1, "f".into()), (2, "f".into())]);
    assert_eq!(
        found(&["d/*", "tree"]),
        [
            (1, "d/old".into()),
            (2, "d/old".into()),
            (3, "d/new".into()),
            (3, "d/old".into())
        ]
    );
    assert_eq!(found(&["--regex", "^d/n", "tree"]), [(3, "d/new".into())]);
    assert_eq!(
        found(&["f", "--as-of", "2024-01-02T12:00:00Z"]),
        [(2, "f".into())]
    );
    assert_eq!(
        found(&["f", "--since", "2024-01-02", "--until", "2024-01-02"]),
        [(2, "f".into())]
    );
    // Three roots, and d twice (the first two backups share it).
    let r = run(&["--json", "find", "*"]);
    assert_eq!(r.of_type("summary")[0]["listings"], 5, "{}", r.stdout);
    let r = run(&["find", "[", "tree"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("PATTERN is not a valid glob"),
        "{}",
        r.stderr
    );
    let r = run(&["find", "f", "--since", "someday"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}
