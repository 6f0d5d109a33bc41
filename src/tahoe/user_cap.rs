//! Capabilities as people type them: on a command line, in a config, copied
//! out of a web-UI address. [`classify`] decides whether such a text is a
//! cap at all, and if so reads it in any of the spellings below, so that a
//! cap is never mistaken for a backup *name* (names are echoed in messages;
//! caps never are).
//!
//! Spellings accepted, in any combination:
//!
//! * surrounding whitespace;
//! * percent-encoding (`URI%3ADIR2-CHK%3A…`), and a whole gateway address
//!   (`http://HOST:PORT/uri/URI%3A…/`, the part after `/uri/` up to the next
//!   `/`, `?` or `#`);
//! * the `ro.` and `imm.` prefixes Tahoe puts on caps in directory listings;
//! * any letter case (`uri:dir2-chk:…`, an upper-cased cap): type tags are
//!   matched without regard to case and the key fields, base32, are read in
//!   lower case as Tahoe writes them.
//!
//! A text that looks like a cap but is not a well-formed one of a known
//! kind (wrong field count, a key of the wrong length, a character outside
//! base32) is [`UserCap::Malformed`]: callers make that a usage error that
//! says the cap looks truncated or mistyped, without quoting it.

use super::Cap;

/// What a command-line or config text is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum UserCap {
    /// A well-formed capability, in Tahoe's canonical spelling.
    Cap(Cap),
    /// It looks like a capability (after decoding, it starts with `URI:` in
    /// some letter case) but is not a valid one. Why, without quoting it.
    Malformed(&'static str),
    /// Not a capability: a name.
    NotACap,
}

/// Classifies `text`; see the module doc.
pub(crate) fn classify(text: &str) -> UserCap {
    let Some(candidate) = decode(text) else {
        return UserCap::NotACap;
    };
    match canonical(&candidate) {
        Ok(s) => match Cap::parse(&s) {
            Ok(cap) => UserCap::Cap(cap),
            Err(_) => UserCap::Malformed("it contains characters no capability has"),
        },
        Err(why) => UserCap::Malformed(why),
    }
}

/// Whether `text` is, or looks like, a capability in any spelling.
pub(crate) fn looks_like_cap(text: &str) -> bool {
    decode(text).is_some()
}

/// The text with whitespace trimmed, percent-encoding and an address
/// around it removed and an `ro.`/`imm.` prefix dropped, when the result
/// starts with `URI:` in any case; `None` otherwise.
fn decode(text: &str) -> Option<String> {
    let mut s = text.trim().to_string();
    if s.contains('%') {
        s = percent_decode(&s);
    }
    // A gateway address: keep the segment after `/uri/`.
    if let Some(pos) = find_ci(&s, "/uri/") {
        let rest = &s[pos + 5..];
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        s = rest[..end].to_string();
    }
    for prefix in ["ro.", "imm."] {
        if s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix) {
            s = s[prefix.len()..].to_string();
            break;
        }
    }
    let s = s.trim();
    (s.len() >= 4 && s[..4].eq_ignore_ascii_case("URI:")).then(|| s.to_string())
}

/// Byte position of `needle` (ASCII) in `hay`, any case.
fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    (0..=h.len().checked_sub(n.len())?).find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

/// `%XX` decoded; anything else (a lone `%`, bad hex, bytes that do not
/// make UTF-8) is kept or replaced, never an error: a cap is ASCII, so a
/// text that does not decode to one is simply not one.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(hi), Some(lo)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(hi * 16 + lo);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    char::from(c)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// The shapes of the cap kinds this tool can meet, by canonical tag: the
/// fields after the tag.
#[derive(Clone, Copy)]
enum Shape {
    /// `key(26):ueb-hash(52):k:N:size` (CHK, DIR2-CHK and their verifiers).
    Chk,
    /// `key(26):fingerprint(52)`, optionally followed by numeric extension
    /// fields (SSK, MDMF, DIR2, DIR2-MDMF, read-only and verifier forms).
    Ssk,
    /// One base32 data field, possibly empty (LIT, DIR2-LIT).
    Lit,
}

const KINDS: &[(&str, Shape)] = &[
    ("CHK", Shape::Chk),
    ("CHK-Verifier", Shape::Chk),
    ("DIR2-CHK", Shape::Chk),
    ("DIR2-CHK-Verifier", Shape::Chk),
    ("LIT", Shape::Lit),
    ("DIR2-LIT", Shape::Lit),
    ("SSK", Shape::Ssk),
    ("SSK-RO", Shape::Ssk),
    ("SSK-Verifier", Shape::Ssk),
    ("MDMF", Shape::Ssk),
    ("MDMF-RO", Shape::Ssk),
    ("MDMF-Verifier", Shape::Ssk),
    ("DIR2", Shape::Ssk),
    ("DIR2-RO", Shape::Ssk),
    ("DIR2-Verifier", Shape::Ssk),
    ("DIR2-MDMF", Shape::Ssk),
    ("DIR2-MDMF-RO", Shape::Ssk),
    ("DIR2-MDMF-Verifier", Shape::Ssk),
];

/// Base32 lengths of a 16-byte key and a 32-byte hash.
const KEY_LEN: usize = 26;
const HASH_LEN: usize = 52;

/// The canonical spelling of a cap-looking text (`URI:` prefix checked by
/// the caller), or why it is not a well-formed cap.
fn canonical(s: &str) -> Result<String, &'static str> {
    let fields: Vec<&str> = s.split(':').collect();
    let Some(tag) = fields.get(1) else {
        return Err("it has no kind after the \"URI\" prefix");
    };
    let Some(&(tag, shape)) = KINDS.iter().find(|(t, _)| t.eq_ignore_ascii_case(tag)) else {
        return Err("its kind (the field after the \"URI\" prefix) is not one Tahoe-LAFS uses");
    };
    let rest: Vec<String> = fields[2..].iter().map(|f| f.to_ascii_lowercase()).collect();
    let base32 = |f: &str, len: usize| f.len() == len && f.bytes().all(is_base32);
    let number = |f: &str| !f.is_empty() && f.len() <= 20 && f.bytes().all(|b| b.is_ascii_digit());
    let ok = match shape {
        Shape::Chk => {
            rest.len() == 5
                && base32(&rest[0], KEY_LEN)
                && base32(&rest[1], HASH_LEN)
                && rest[2..].iter().all(|f| number(f))
        }
        Shape::Ssk => {
            rest.len() >= 2
                && rest.len() <= 4
                && base32(&rest[0], KEY_LEN)
                && base32(&rest[1], HASH_LEN)
                && rest[2..].iter().all(|f| number(f))
        }
        Shape::Lit => rest.len() <= 1 && rest.iter().all(|f| f.bytes().all(is_base32)),
    };
    if !ok {
        return Err("it looks truncated or mistyped (wrong number or length of fields)");
    }
    let mut out = format!("URI:{tag}");
    for f in &rest {
        out.push(':');
        out.push_str(f);
    }
    if matches!(shape, Shape::Lit) && rest.is_empty() {
        out.push(':');
    }
    Ok(out)
}

fn is_base32(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'2'..=b'7')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CHK: &str = "URI:CHK:mcdi47z6bo54osot7psx2wceme:7q26tmtwq6yawrpwimodqaoayv3xdbqqdyzxp47q7ebemjr5ekbq:2:3:100000";
    const DIR_CHK: &str = "URI:DIR2-CHK:6k5yof7gs5tfsmapklxyh6ukwy:dgmdhz3wu4372ywcaobuzqyzcq5klljw33tszmmyyumxhduvppjq:1:1:551";
    const DIR_RW: &str =
        "URI:DIR2:forau3r7zp4pfptesmflovhrpm:kyjd2wg3k3cariu7snnqc26hxjg757vvkd62q5czeev6eapniieq";

    fn cap(s: &str) -> UserCap {
        UserCap::Cap(Cap::parse(s).unwrap())
    }

    #[test]
    fn every_spelling_reads_as_the_same_cap() {
        for c in [CHK, DIR_CHK, DIR_RW, "URI:LIT:nbswy3dp", "URI:DIR2-LIT:"] {
            let enc = c.replace(':', "%3A");
            for spelling in [
                c.to_string(),
                format!("  {c}\n"),
                c.to_lowercase(),
                c.to_uppercase(),
                enc.clone(),
                enc.to_lowercase(),
                format!("ro.{c}"),
                format!("imm.{c}"),
                format!("IMM.{}", c.to_lowercase()),
                format!("http://127.0.0.1:3456/uri/{enc}/"),
                format!("http://127.0.0.1:3456/uri/{enc}?t=info"),
            ] {
                assert_eq!(classify(&spelling), cap(c), "{spelling}");
                assert!(looks_like_cap(&spelling));
            }
        }
    }

    #[test]
    fn names_are_not_caps() {
        for name in [
            "/srv/data",
            "home",
            "",
            "URI",
            "weekly URI:x",
            "uri-backup",
            "%zz",
        ] {
            assert_eq!(classify(name), UserCap::NotACap, "{name}");
        }
    }

    #[test]
    fn truncated_or_mistyped_caps_are_malformed() {
        let truncated = &CHK[..CHK.len() - 30];
        let typo = CHK.replace("mcdi", "mcd1");
        for bad in [
            truncated.to_string(),
            typo,
            "URI:".into(),
            "uri:nonsense:abc".into(),
            format!("{DIR_RW}:extra:fields:here"),
            CHK.replace(':', "%3a")[..40].to_string(),
            "URI:CHK:a b".into(),
        ] {
            assert!(
                matches!(classify(&bad), UserCap::Malformed(_)),
                "{bad}: {:?}",
                classify(&bad)
            );
        }
    }

    proptest! {
        /// Whatever the spelling, a cap-looking text is never a name, and
        /// the reason given for refusing it never quotes its key material.
        #[test]
        fn caps_are_never_names(
            key in "[a-z2-7]{26}",
            hash in "[a-z2-7]{52}",
            cut in 0usize..120,
            upper in any::<bool>(),
            encode in any::<bool>(),
            prefix in prop::sample::select(vec!["", "ro.", "imm.", "IMM.", " "]),
        ) {
            let mut c = format!("URI:DIR2-CHK:{key}:{hash}:1:3:9000");
            c.truncate(c.len().min(cut.max(4)));
            if upper { c = c.to_uppercase(); }
            if encode { c = c.replace(':', "%3A"); }
            let text = format!("{prefix}{c}");
            match classify(&text) {
                UserCap::NotACap => prop_assert!(false, "{text} taken for a name"),
                UserCap::Malformed(why) => {
                    prop_assert!(!why.to_lowercase().contains(&key[..8]));
                    prop_assert!(!why.to_lowercase().contains(&hash[..8]));
                }
                UserCap::Cap(_) => {}
            }
        }
    }
}
