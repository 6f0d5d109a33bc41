//! Lossless text form of arbitrary file names for the queue file.
//!
//! Linux file names are byte strings: they can hold newlines, control bytes
//! and bytes that are not UTF-8. The queue is a line-oriented text file that a
//! person should be able to read, so names are escaped:
//!
//! * `\` is written `\\`;
//! * every byte below 0x20, 0x7f, and every byte that is not part of a valid
//!   UTF-8 sequence is written `\xNN` (two lowercase hex digits);
//! * all other bytes (spaces and valid multi-byte UTF-8 included) are written
//!   as they are.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnescapeError {
    /// Byte offset of the offending backslash in the escaped text.
    pub offset: usize,
    pub reason: &'static str,
}

impl fmt::Display for UnescapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad escape at byte {}: {}", self.offset, self.reason)
    }
}

impl std::error::Error for UnescapeError {}

/// Appends the escaped form of `raw` to `out`.
pub(crate) fn escape_into(raw: &[u8], out: &mut Vec<u8>) {
    let mut rest = raw;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                escape_valid(valid, out);
                return;
            }
            Err(err) => {
                let (valid, after) = rest.split_at(err.valid_up_to());
                // SAFETY-free: `valid_up_to` guarantees this prefix is UTF-8.
                escape_valid(std::str::from_utf8(valid).unwrap_or_default(), out);
                let bad = err.error_len().unwrap_or(after.len());
                for &b in &after[..bad] {
                    push_hex(b, out);
                }
                rest = &after[bad..];
            }
        }
    }
}

/// The escaped form of `raw`.
pub(crate) fn escape(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    escape_into(raw, &mut out);
    out
}

fn escape_valid(s: &str, out: &mut Vec<u8>) {
    for &b in s.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            0..=0x1f | 0x7f => push_hex(b, out),
            _ => out.push(b),
        }
    }
}

fn push_hex(b: u8, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(&[b'\\', b'x', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]);
}

/// Reverses [`escape`]. Only `\\` and `\xNN` (either case of hex digit) are
/// accepted after a backslash; anything else is an error rather than a guess.
pub(crate) fn unescape(text: &[u8]) -> Result<Vec<u8>, UnescapeError> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        match text.get(i + 1) {
            Some(b'\\') => {
                out.push(b'\\');
                i += 2;
            }
            Some(b'x') => {
                let hi = text.get(i + 2).and_then(|&c| hex_value(c));
                let lo = text.get(i + 3).and_then(|&c| hex_value(c));
                match (hi, lo) {
                    (Some(hi), Some(lo)) => {
                        out.push(hi << 4 | lo);
                        i += 4;
                    }
                    _ => {
                        return Err(UnescapeError {
                            offset: i,
                            reason: "\\x must be followed by two hex digits",
                        });
                    }
                }
            }
            Some(_) => {
                return Err(UnescapeError {
                    offset: i,
                    reason: "only \\\\ and \\xNN escapes exist",
                });
            }
            None => {
                return Err(UnescapeError {
                    offset: i,
                    reason: "a lone backslash ends the path",
                });
            }
        }
    }
    Ok(out)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_names_are_unchanged() {
        assert_eq!(escape(b"dir/file name.txt"), b"dir/file name.txt");
        assert_eq!(escape("café/日本".as_bytes()), "café/日本".as_bytes());
        assert_eq!(escape(b" lead and trail "), b" lead and trail ");
    }

    #[test]
    fn specials_are_escaped() {
        assert_eq!(escape(b"a\nb"), b"a\\x0ab");
        assert_eq!(escape(b"a\\b"), b"a\\\\b");
        assert_eq!(escape(b"\t\x01\x7f"), b"\\x09\\x01\\x7f");
        assert_eq!(escape(b"bad\xffname"), b"bad\\xffname");
        // A truncated multi-byte sequence is escaped byte by byte.
        assert_eq!(escape(b"\xc3"), b"\\xc3");
        assert_eq!(escape(b"\xe6\x97x"), b"\\xe6\\x97x");
    }

    #[test]
    fn escaped_text_is_one_line_of_utf8() {
        let out = escape(b"x\n\r\xff\xfe\\y");
        assert!(std::str::from_utf8(&out).is_ok());
        assert!(!out.contains(&b'\n'));
    }

    #[test]
    fn bad_escapes_are_errors() {
        assert!(unescape(b"a\\").is_err());
        assert!(unescape(b"a\\n").is_err());
        assert!(unescape(b"a\\x4").is_err());
        assert!(unescape(b"a\\xzz").is_err());
        assert_eq!(unescape(b"\\x4A\\x4a").unwrap(), b"JJ");
    }

    proptest! {
        #[test]
        fn any_bytes_round_trip(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
            let escaped = escape(&raw);
            prop_assert!(!escaped.contains(&b'\n'));
            prop_assert!(std::str::from_utf8(&escaped).is_ok());
            prop_assert_eq!(unescape(&escaped).unwrap(), raw);
        }

        #[test]
        fn any_string_round_trips(s in ".*") {
            prop_assert_eq!(unescape(&escape(s.as_bytes())).unwrap(), s.as_bytes());
        }
    }
}
