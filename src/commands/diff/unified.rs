//! The unified diff of a changed text file (the `similar` crate), or the
//! line saying why there is none.

/// The largest file (either side, decoded) that gets a text diff: both
/// versions are held in memory.
pub(crate) const DIFF_LIMIT: u64 = 1024 * 1024;

/// The lines of the unified diff of `a` and `b` (the file at `path`, as
/// shown), with `context` lines of context; one `Binary files … differ`
/// line when either is not text (not UTF-8, or a NUL byte).
pub(crate) fn text(a: &[u8], b: &[u8], path: &str, context: usize) -> Vec<String> {
    let (Some(x), Some(y)) = (as_text(a), as_text(b)) else {
        return vec![format!("Binary files a/{path} and b/{path} differ")];
    };
    let diff = similar::TextDiff::from_lines(x, y);
    diff.unified_diff()
        .context_radius(context)
        .header(&format!("a/{path}"), &format!("b/{path}"))
        .to_string()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn as_text(bytes: &[u8]) -> Option<&str> {
    if bytes.contains(&0) {
        return None;
    }
    std::str::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_line_with_context() {
        let a = b"one\ntwo\nthree\nfour\nfive\n";
        let b = b"one\ntwo\n3\nfour\nfive\n";
        let lines = text(a, b, "f", 1);
        assert_eq!(
            lines,
            [
                "--- a/f",
                "+++ b/f",
                "@@ -2,3 +2,3 @@",
                " two",
                "-three",
                "+3",
                " four"
            ]
        );
        assert_eq!(text(a, b, "f", 3).len(), 9);
    }

    #[test]
    fn binary_files_say_so() {
        assert_eq!(
            text(b"a\0b", b"a\0c", "x", 3),
            ["Binary files a/x and b/x differ"]
        );
        assert_eq!(text(b"\xff", b"a", "x", 3).len(), 1);
    }
}
