//! Literal caps computed locally, without asking the gateway.
//!
//! A file of at most [`LIT_THRESHOLD`] (55) bytes is not stored on the grid:
//! `PUT /uri` answers `URI:LIT:` followed by the data itself in Tahoe's
//! base32. The form is tahoe-lafs 1.20.0's `LiteralFileURI.to_string`
//! (`allmydata/uri.py`): `b"URI:LIT:" + base32.b2a(data)`, where `b2a`
//! (`allmydata/util/base32.py`) is `base64.b32encode(data).rstrip(b"=")
//! .lower()`: the RFC 4648 alphabet in lower case, no padding. So the cap
//! can be computed here, byte for byte, and the request saved.
//!
//! An immutable directory without children (`POST /uri?t=mkdir-immutable`
//! with `{}`) packs to zero bytes and comes back as `URI:DIR2-LIT:`
//! ([`empty_dir_cap`]). Both are checked against a real gateway by
//! `tests/it/lit_caps.rs`.

use super::base32;
use super::{Cap, LIT_THRESHOLD};

/// The `URI:LIT:` cap the gateway returns for a file with content `data`,
/// or `None` when `data` is longer than [`LIT_THRESHOLD`] (such a file
/// becomes a `URI:CHK:` cap, which needs the grid).
pub fn lit_cap(data: &[u8]) -> Option<Cap> {
    if data.len() as u64 > LIT_THRESHOLD {
        return None;
    }
    let mut s = String::with_capacity(8 + (data.len() * 8).div_ceil(5));
    s.push_str("URI:LIT:");
    base32::encode_into(data, &mut s);
    Some(Cap(s))
}

/// The cap of an immutable directory without children, `URI:DIR2-LIT:`:
/// what `POST /uri?t=mkdir-immutable` returns for `{}` (or an empty body).
/// Nothing is stored on the grid for it.
pub fn empty_dir_cap() -> Cap {
    Cap("URI:DIR2-LIT:".to_string())
}

/// The content of a `URI:LIT:` file cap, decoded here (the gateway would
/// answer the same bytes, without touching the grid). `None` for any other
/// cap, or a LIT cap that is not canonical base32 (a wrong character, a
/// length no encoding produces, non-zero padding bits): the gateway then
/// gets to say what is wrong with it.
pub fn lit_data(cap: &Cap) -> Option<Vec<u8>> {
    let text = cap.as_str().strip_prefix("URI:LIT:")?;
    base32::decode(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_lit_caps() {
        // From tahoe-lafs 1.20.0: "hello" -> URI:LIT:nbswy3dp (see the
        // reference notes), the empty file -> URI:LIT:.
        assert_eq!(lit_cap(b"hello").unwrap().as_str(), "URI:LIT:nbswy3dp");
        assert_eq!(lit_cap(b"").unwrap(), Cap::empty_literal());
        // Checked with python3 -c 'import base64;
        // print(base64.b32encode(b"hello world\n").rstrip(b"=").lower())'.
        assert_eq!(
            lit_cap(b"hello world\n").unwrap().as_str(),
            "URI:LIT:nbswy3dpeb3w64tmmqfa"
        );
        // 55 zero bytes: 88 'a's (55 * 8 = 440 bits = 88 quintets).
        let zeros = lit_cap(&[0u8; 55]).unwrap();
        assert_eq!(zeros.as_str(), format!("URI:LIT:{}", "a".repeat(88)));
        assert!(zeros.is_literal() && !zeros.is_dir());
    }

    #[test]
    fn threshold_is_55_bytes() {
        assert!(lit_cap(&[7u8; 55]).is_some());
        assert!(lit_cap(&[7u8; 56]).is_none());
        assert!(lit_cap(&[0u8; 4096]).is_none());
    }

    #[test]
    fn lengths_match_tahoe_quintet_counts() {
        // base32.NUM_OS_TO_NUM_QS = (0, 2, 4, 5, 7) per 5-byte group.
        for len in 0..=55usize {
            let cap = lit_cap(&vec![0xa5; len]).unwrap();
            let body = &cap.as_str()["URI:LIT:".len()..];
            assert_eq!(body.len(), len / 5 * 8 + [0, 2, 4, 5, 7][len % 5], "{len}");
            assert!(base32::decode(body).is_some(), "{len}");
        }
    }

    #[test]
    fn lit_data_round_trips_every_length() {
        for n in 0..=55usize {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 + n) as u8).collect();
            let cap = lit_cap(&data).unwrap();
            assert_eq!(lit_data(&cap).as_deref(), Some(&data[..]), "length {n}");
        }
    }

    #[test]
    fn lit_data_refuses_what_is_not_canonical() {
        for bad in [
            "URI:LIT:a",  // 5 bits: no encoding ends like this
            "URI:LIT:mz", // 'f' = 66 would be "my"; "mz" has padding bits set
            "URI:LIT:MY", // upper case
            "URI:LIT:m1", // not in the alphabet
            "URI:CHK:abc:def:1:1:1",
            "URI:DIR2-LIT:",
        ] {
            assert_eq!(lit_data(&Cap(bad.into())), None, "{bad}");
        }
        assert_eq!(
            lit_data(&Cap("URI:LIT:my".into())).as_deref(),
            Some(&b"f"[..])
        );
        assert_eq!(lit_data(&Cap("URI:LIT:".into())).as_deref(), Some(&b""[..]));
    }

    #[test]
    fn empty_dir() {
        let cap = empty_dir_cap();
        assert_eq!(cap.as_str(), "URI:DIR2-LIT:");
        assert!(cap.is_literal() && cap.is_dir());
    }
}
