//! Tahoe child names for raw file names.
//!
//! A Linux file name is any non-empty byte string without `/` or NUL. A
//! Tahoe directory edge name is a Unicode string that Tahoe NFC-normalises
//! when it packs the directory; two names that are equal after NFC silently
//! become one entry (see `docs/metadata.md`). So a raw name is stored in one
//! of two forms:
//!
//! * **as it is**, when it is valid UTF-8, already NFC, and free of `\` and of
//!   control characters (C0, DEL and C1, U+0080–U+009F). The edge carries no
//!   `name_raw`.
//! * **escaped**, otherwise: pure ASCII, printable ASCII bytes (0x20–0x7e) as
//!   they are except `\` → `\\`, every other byte → `\xNN` (two lowercase hex
//!   digits). The edge carries the raw bytes as `name_raw` (base64), so a
//!   reader never has to trust the escaping alone.
//!
//! One more name is escaped: at the top level of a backup, a real entry named
//! [`ROOT_META_NAME`] is stored as `\x2elafs-backup-root`, because that edge
//! name is reserved for the entry that carries the root directory's own
//! metadata.
//!
//! # Why no two distinct raw names can end up as one Tahoe entry
//!
//! * **Escaped vs. stored as is.** Every escaped name contains a `\`: a name
//!   is escaped because it holds a `\` (written `\\`), or a C0/DEL byte
//!   (written `\xNN`), or a byte ≥ 0x80 — invalid UTF-8, a C1 control, and
//!   any non-NFC string (an ASCII-only string is always NFC, so a non-NFC
//!   one has a non-ASCII character) are all written `\xNN` — or it is the
//!   reserved name, written `\x2e…`. No name stored as is contains a `\`.
//! * **Escaped vs. escaped.** The escaping is injective: [`unescape`] undoes
//!   it (each output token — one printable non-`\` byte, `\\`, or `\xNN` —
//!   decodes to exactly one byte, and the tokens parse unambiguously). The
//!   reserved-name special case writes `\x2e` for `.`, which the ordinary
//!   rule never emits (0x2e is printable), so it cannot meet an ordinary
//!   escaped name either, and it decodes back to the real name.
//! * **NFC twins.** Two names stored as is are both already NFC, so if they
//!   are equal after NFC they were equal to begin with. Escaped names are
//!   ASCII, which NFC never changes.
//!
//! A residual caveat, documented in `docs/metadata.md`: "already NFC" is
//! decided with this crate's Unicode tables; Tahoe uses Python's. They agree
//! on every character assigned in both Unicode versions.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// The reserved top-level edge name of the entry that carries the backup
/// root directory's own metadata.
pub const ROOT_META_NAME: &str = ".lafs-backup-root";

/// The edge name of one directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeName {
    /// The Tahoe child name.
    pub name: String,
    /// Some(raw bytes) when `name` is not the raw name itself (it is the
    /// escaped form); the edge metadata then carries them as `name_raw`.
    pub raw: Option<Vec<u8>>,
}

/// Why an edge name could not be turned back into raw bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name_raw of {name:?} is not valid base64")]
    BadBase64 { name: String },
    #[error("escaped name {name:?} has a bad escape at byte {offset}: {reason}")]
    BadEscape {
        name: String,
        offset: usize,
        reason: &'static str,
    },
    #[error("escaped name {name:?} does not match its name_raw")]
    Mismatch { name: String },
    #[error("{name:?} is not a usable file name: {reason}")]
    NotAFileName { name: String, reason: &'static str },
}

/// The Tahoe edge name for the raw file name `raw`. `top_level`: the entry
/// is a child of the backup root (where [`ROOT_META_NAME`] is reserved).
pub fn edge_name(raw: &[u8], top_level: bool) -> EdgeName {
    if let Ok(s) = std::str::from_utf8(raw)
        && is_storable_as_is(s)
        && !(top_level && s == ROOT_META_NAME)
    {
        return EdgeName {
            name: s.to_owned(),
            raw: None,
        };
    }
    let mut name = String::with_capacity(raw.len() + 8);
    let mut rest = raw;
    if top_level && raw == ROOT_META_NAME.as_bytes() {
        // The reserved name: `.` written as `\x2e`, a form the ordinary
        // rule never produces.
        name.push_str("\\x2e");
        rest = &raw[1..];
    }
    for &b in rest {
        match b {
            b'\\' => name.push_str("\\\\"),
            0x20..=0x7e => name.push(char::from(b)),
            _ => push_hex(b, &mut name),
        }
    }
    EdgeName {
        name,
        raw: Some(raw.to_vec()),
    }
}

/// Valid UTF-8 already (the caller checked), NFC, no `\`, no control
/// character. `char::is_control` is exactly C0, DEL and C1 (category Cc).
fn is_storable_as_is(s: &str) -> bool {
    !s.chars().any(|c| c == '\\' || c.is_control()) && unicode_normalization::is_nfc(s)
}

fn push_hex(b: u8, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('\\');
    out.push('x');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0xf)]));
}

/// The raw bytes of an edge, given its name and its metadata's `name_raw`
/// (base64) if any. The inverse of [`edge_name`], for readers (restore,
/// tests).
///
/// Without `name_raw` the name is the raw name (UTF-8 bytes): that covers
/// names stored as is, and every name in trees of the original tool and of
/// `tahoe backup`, which never escape (a `\` there is a plain byte). With
/// `name_raw` the name must be the escaped form of those bytes; a name that
/// does not unescape to exactly `name_raw` is an error, not a guess.
///
/// This does not judge whether the bytes are a usable file name; a restore
/// must also call `check_file_name`, since Tahoe accepts any child name.
pub fn raw_name(name: &str, name_raw_b64: Option<&str>) -> Result<Vec<u8>, NameError> {
    let Some(b64) = name_raw_b64 else {
        return Ok(name.as_bytes().to_vec());
    };
    let raw = BASE64.decode(b64).map_err(|_| NameError::BadBase64 {
        name: name.to_owned(),
    })?;
    let decoded = unescape(name)?;
    if decoded != raw {
        return Err(NameError::Mismatch {
            name: name.to_owned(),
        });
    }
    Ok(raw)
}

/// Reverses the escaping: `\\` → `\`, `\xNN` → the byte (lowercase hex, as
/// written), every other character as its UTF-8 bytes.
pub(crate) fn unescape(name: &str) -> Result<Vec<u8>, NameError> {
    let bytes = name.as_bytes();
    let bad = |offset, reason| NameError::BadEscape {
        name: name.to_owned(),
        offset,
        reason,
    };
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'\\') => {
                out.push(b'\\');
                i += 2;
            }
            Some(b'x') => {
                let hi = bytes.get(i + 2).and_then(|&c| hex_value(c));
                let lo = bytes.get(i + 3).and_then(|&c| hex_value(c));
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(bad(i, "\\x must be followed by two lowercase hex digits"));
                };
                out.push(hi << 4 | lo);
                i += 4;
            }
            Some(_) => return Err(bad(i, "only \\\\ and \\xNN escapes exist")),
            None => return Err(bad(i, "a lone backslash ends the name")),
        }
    }
    Ok(out)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Whether `raw` can be created as one directory entry: not empty, not `.`
/// or `..`, no `/` and no NUL. Names read from a grid must pass this before
/// a restore uses them (Tahoe itself accepts `""` and `"a/b"` as child names).
pub(crate) fn check_file_name(raw: &[u8]) -> Result<(), NameError> {
    let reason = if raw.is_empty() {
        "empty"
    } else if raw == b"." || raw == b".." {
        "`.` or `..`"
    } else if raw.contains(&b'/') {
        "contains `/`"
    } else if raw.contains(&0) {
        "contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(NameError::NotAFileName {
        name: String::from_utf8_lossy(raw).into_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name(raw: &[u8]) -> String {
        edge_name(raw, false).name
    }

    fn round_trip(raw: &[u8], top_level: bool) -> Vec<u8> {
        let e = edge_name(raw, top_level);
        let b64 = e.raw.as_ref().map(|r| BASE64.encode(r));
        raw_name(&e.name, b64.as_deref()).unwrap()
    }

    #[test]
    fn plain_names_are_stored_as_is() {
        for raw in ["a", "file name.txt", " lead ", "日本語", "café", "a-b_c.d~"] {
            let e = edge_name(raw.as_bytes(), true);
            assert_eq!(e.name, raw);
            assert_eq!(e.raw, None);
            assert_eq!(round_trip(raw.as_bytes(), true), raw.as_bytes());
        }
    }

    #[test]
    fn nfc_is_as_is_and_nfd_is_escaped() {
        let nfc = "caf\u{e9}";
        let nfd = "cafe\u{301}";
        assert_eq!(edge_name(nfc.as_bytes(), false).raw, None);
        let e = edge_name(nfd.as_bytes(), false);
        assert_eq!(e.name, "cafe\\xcc\\x81");
        assert_eq!(e.raw.as_deref(), Some(nfd.as_bytes()));
        // The twins map to different names.
        assert_ne!(name(nfc.as_bytes()), name(nfd.as_bytes()));
        assert_eq!(round_trip(nfd.as_bytes(), false), nfd.as_bytes());
    }

    #[test]
    fn controls_backslash_and_invalid_utf8_are_escaped() {
        let cases: &[(&[u8], &str)] = &[
            (b"new\nline", "new\\x0aline"),
            (b"tab\there", "tab\\x09here"),
            (b"\x01", "\\x01"),
            (b"del\x7f", "del\\x7f"),
            ("nel\u{85}".as_bytes(), "nel\\xc2\\x85"),
            (b"bad\xffname", "bad\\xffname"),
            (b"\xc3", "\\xc3"),
            (b"back\\slash", "back\\\\slash"),
            // Once escaped, every non-ASCII byte is escaped, valid or not.
            ("\u{e9}\\".as_bytes(), "\\xc3\\xa9\\\\"),
        ];
        for &(raw, want) in cases {
            let e = edge_name(raw, false);
            assert_eq!(e.name, want, "{raw:?}");
            assert_eq!(e.raw.as_deref(), Some(raw));
            assert!(e.name.is_ascii());
            assert_eq!(round_trip(raw, false), raw);
        }
    }

    #[test]
    fn reserved_root_name_is_escaped_only_at_top_level() {
        let top = edge_name(ROOT_META_NAME.as_bytes(), true);
        assert_eq!(top.name, "\\x2elafs-backup-root");
        assert_eq!(top.raw.as_deref(), Some(ROOT_META_NAME.as_bytes()));
        assert_eq!(
            round_trip(ROOT_META_NAME.as_bytes(), true),
            ROOT_META_NAME.as_bytes()
        );
        let deep = edge_name(ROOT_META_NAME.as_bytes(), false);
        assert_eq!(deep.name, ROOT_META_NAME);
        assert_eq!(deep.raw, None);
        // Similar names are not affected.
        assert_eq!(edge_name(b".lafs-backup-root2", true).raw, None);
    }

    #[test]
    fn raw_name_reads_unescaped_trees_verbatim() {
        // Trees of the original tool: no name_raw, a `\` is a plain byte.
        assert_eq!(raw_name("a\\b", None).unwrap(), b"a\\b");
        assert_eq!(raw_name("caf\u{e9}", None).unwrap(), "caf\u{e9}".as_bytes());
    }

    #[test]
    fn raw_name_errors() {
        assert!(matches!(
            raw_name("x", Some("!!")),
            Err(NameError::BadBase64 { .. })
        ));
        // name_raw "y" but the name says "x".
        assert!(matches!(
            raw_name("x", Some("eQ==")),
            Err(NameError::Mismatch { .. })
        ));
        for bad in ["a\\", "a\\n", "a\\x4", "a\\xzz", "a\\x4A"] {
            assert!(
                matches!(
                    raw_name(bad, Some("YQ==")),
                    Err(NameError::BadEscape { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn file_name_check() {
        assert!(check_file_name(b"a").is_ok());
        assert!(check_file_name(b"...").is_ok());
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0"] {
            assert!(check_file_name(bad).is_err(), "{bad:?}");
        }
    }

    fn interesting_bytes() -> impl Strategy<Value = Vec<u8>> {
        // Bias towards the bytes that matter: ASCII, `\`, `x`, hex digits,
        // `.`, controls, and pieces of multi-byte UTF-8 (é, combining acute, NEL).
        let byte = prop_oneof![
            any::<u8>(),
            prop::sample::select(vec![
                b'\\', b'x', b'2', b'e', b'.', b'a', 0x0a, 0x7f, 0xc3, 0xa9, 0xcc, 0x81, 0xc2,
                0x85,
            ]),
        ];
        prop_oneof![
            prop::collection::vec(byte, 0..24),
            Just(ROOT_META_NAME.as_bytes().to_vec()),
            "\\PC{0,12}".prop_map(String::into_bytes),
        ]
    }

    proptest! {
        #[test]
        fn any_bytes_round_trip(raw in interesting_bytes(), top in any::<bool>()) {
            let e = edge_name(&raw, top);
            if let Some(r) = &e.raw {
                prop_assert_eq!(r, &raw);
                prop_assert!(e.name.is_ascii());
                prop_assert!(e.name.contains('\\'));
            } else {
                prop_assert!(!e.name.contains('\\'));
                prop_assert!(unicode_normalization::is_nfc(&e.name));
            }
            prop_assert_eq!(round_trip(&raw, top), raw);
        }

        #[test]
        fn distinct_inputs_give_distinct_names(
            a in interesting_bytes(),
            b in interesting_bytes(),
            top in any::<bool>(),
        ) {
            use unicode_normalization::UnicodeNormalization as _;
            let (na, nb) = (edge_name(&a, top).name, edge_name(&b, top).name);
            // Distinct even after Tahoe's NFC normalisation.
            let (fa, fb): (String, String) = (na.nfc().collect(), nb.nfc().collect());
            prop_assert_eq!(a == b, fa == fb);
            prop_assert_eq!(a == b, na == nb);
        }

        #[test]
        fn near_inputs_give_distinct_names(
            a in interesting_bytes(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            edit in 0..3u8,
            top in any::<bool>(),
        ) {
            use unicode_normalization::UnicodeNormalization as _;
            // b: a with one byte replaced, inserted or removed.
            let mut b = a.clone();
            match edit {
                0 if !b.is_empty() => { let i = at.index(b.len()); b[i] = byte; }
                1 => { let i = at.index(b.len() + 1); b.insert(i, byte); }
                _ if !b.is_empty() => { b.remove(at.index(b.len())); }
                _ => b.push(byte),
            }
            let (na, nb) = (edge_name(&a, top).name, edge_name(&b, top).name);
            let (fa, fb): (String, String) = (na.nfc().collect(), nb.nfc().collect());
            prop_assert_eq!(a == b, fa == fb);
        }

        #[test]
        fn nfc_twins_never_collide(s in "\\PC{0,8}") {
            use unicode_normalization::UnicodeNormalization as _;
            let nfc: String = s.nfc().collect();
            let nfd: String = s.nfd().collect();
            let (a, b) = (name(nfc.as_bytes()), name(nfd.as_bytes()));
            prop_assert_eq!(nfc == nfd, a == b);
        }
    }
}
