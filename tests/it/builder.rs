//! The command builder of `tests/common` (`common::lafs`) catches what it
//! promises: caps in every spelling on stderr, caps on stdout unless they
//! are expected there, the key material of a known cap however it is
//! encoded, panics, and runs that hang. Each case runs a bash script that
//! prints the offending text in place of the binary (the checks look at
//! the output, not at what produced it). No grid needed.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use crate::common::{self, Lafs};

/// A cap of the fake kind the tests use (never real).
const CAP: &str = "URI:CHK:aaaaaaaaaaaaaaaaaaaaaaaaaa:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb:1:1:100";

/// The message of the failure `run` ends with; panics if it passes.
fn failure(run: impl FnOnce()) -> String {
    let err = catch_unwind(AssertUnwindSafe(run)).expect_err("the check let the run pass");
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

/// A run of `bash -c SCRIPT` through the builder, its text in `TEXT`.
fn printing(script: &str, text: &str) -> Lafs {
    Lafs::in_shell(script).env("TEXT", text)
}

#[test]
fn a_cap_on_stderr_in_any_spelling_fails_the_run() {
    let encoded = CAP.replace(':', "%3A");
    for spelling in [
        CAP.to_owned(),
        CAP.to_lowercase(),
        CAP.to_uppercase(),
        encoded.clone(),
        encoded.to_lowercase(),
        format!("http://127.0.0.1:1/uri/{encoded}?t=json"),
    ] {
        let msg = failure(|| {
            printing(r#"printf 'error: %s\n' "$TEXT" >&2"#, &spelling).run();
        });
        assert!(msg.contains("leaked on stderr"), "{msg}");
        // The failure shows the output with the cap cut short.
        assert!(!msg.contains("aaaaaaaaaaaaaaaa"), "{msg}");
    }
}

#[test]
fn a_cap_on_stdout_fails_unless_expected_there() {
    let msg = failure(|| {
        printing(r#"printf '%s\n' "$TEXT""#, CAP).run();
    });
    assert!(msg.contains("leaked on stdout"), "{msg}");
    let run = printing(r#"printf '%s\n' "$TEXT""#, CAP)
        .caps_on_stdout()
        .ok();
    assert_eq!(run.stdout.trim(), CAP);
    // Expected on stdout is never expected on stderr.
    failure(|| {
        printing(r#"printf '%s\n' "$TEXT" >&2"#, CAP)
            .caps_on_stdout()
            .run();
    });
}

#[test]
fn key_material_of_a_known_cap_fails_in_any_encoding() {
    // The key alone (no `URI:`), upper-case, partly percent-encoded.
    let key = "AAAAAAAAAAAAAAAAAAAAAAAAAA".replacen('A', "%41", 3);
    let msg = failure(|| {
        printing(r#"printf 'bad key %s\n' "$TEXT" >&2"#, &key)
            .known_cap(CAP)
            .run();
    });
    assert!(msg.contains("key material"), "{msg}");
    // Without the cap named, the same text passes: it is not a cap.
    printing(r#"printf 'bad key %s\n' "$TEXT" >&2"#, &key).ok();
}

#[test]
fn a_panic_fails_the_run_unless_expected() {
    for report in [
        "thread 'main' panicked at src/main.rs:1:1:",
        "lafs-backup: internal error: boom at src/x.rs:1 (a bug; please report it)",
    ] {
        let msg = failure(|| {
            printing(r#"printf '%s\n' "$TEXT" >&2; exit 1"#, report).run();
        });
        assert!(msg.contains("panicked"), "{msg}");
        printing(r#"printf '%s\n' "$TEXT" >&2; exit 1"#, report)
            .panic_expected()
            .code(1);
    }
}

#[test]
fn exit_codes_and_hangs_are_reported() {
    let msg = failure(|| {
        Lafs::in_shell("exit 3").ok();
    });
    assert!(msg.contains("exited 3, not 0"), "{msg}");
    Lafs::in_shell("exit 4").code(4);
    let msg = failure(|| {
        Lafs::in_shell("exec sleep 30")
            .timeout(Duration::from_millis(300))
            .run();
    });
    assert!(msg.contains("did not end within"), "{msg}");
}

#[test]
fn the_binary_itself_passes_the_checks() {
    let run = common::lafs().arg("--version").ok();
    assert!(run.stdout.starts_with("lafs-backup "), "{}", run.stdout);
    common::lafs().arg("--no-such-flag").code(2);
}
