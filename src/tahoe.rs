//! The Tahoe-LAFS gateway: capabilities, errors and the web-API client.
//!
//! Capabilities ([`Cap`]) are secrets: whoever holds one can read (or, for
//! mutable directories, change) the object. So a `Cap` has no `Display`, its
//! `Debug` shows only [`Cap::short_id`], and every text a gateway sends back
//! goes through [`redact`] before it can end up in an error message or a log.
//!
//! The client itself ([`Client`]) lives in `tahoe/client.rs` (its streaming
//! deep check, [`Client::deep_check`], in `tahoe/deep_check.rs`), the error type
//! ([`TahoeError`]) and the reading of the gateway's error replies in
//! `tahoe/error.rs`. The web-API facts they rely on (reply formats, status
//! codes, the JSON of `t=check`) were checked against tahoe-lafs 1.20.0.

use std::fmt;

use sha2::{Digest, Sha256};

pub(crate) mod base32;
mod client;
mod deep_check;
mod error;
mod listing;
mod lit;
pub(crate) mod user_cap;

pub use client::{CheckOptions, Client};
pub(crate) use client::{CheckReport, SYMLINK_TARGET_LIMIT, read_ca_file, show_secs, tls_config};
pub(crate) use deep_check::StreamItem;
pub use error::TahoeError;
pub use lit::{empty_dir_cap, lit_cap, lit_data};

/// Files of at most this many bytes become `URI:LIT:` caps: the data is
/// kept inside the cap and nothing is stored on the grid
/// (`URI_LIT_SIZE_THRESHOLD` in tahoe's `immutable/upload.py`).
pub const LIT_THRESHOLD: u64 = 55;

/// The scheme prefix every capability starts with.
const PREFIX: &str = "URI:";

/// A Tahoe capability, such as `URI:CHK:…` or `URI:DIR2-CHK:…`.
///
/// It has no `Display` impl on purpose, and its `Debug` shows only a short
/// hash ([`Cap::short_id`]), so a cap cannot reach a log by accident. Use
/// [`Cap::as_str`] where the text itself is needed (a request, a result
/// file).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Cap(String);

impl Cap {
    /// Parses a capability. Surrounding whitespace is trimmed; the rest must
    /// start with `URI:` and consist of printable ASCII without spaces.
    /// The error never quotes the text (it may be a cap with a typo).
    pub fn parse(s: &str) -> Result<Cap, TahoeError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(TahoeError::BadCap("empty text"));
        }
        if !s.starts_with(PREFIX) {
            return Err(TahoeError::BadCap(
                "the text does not start with the \"URI\" prefix and a colon",
            ));
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TahoeError::BadCap(
                "it contains spaces, control or non-ASCII characters",
            ));
        }
        Ok(Cap(s.to_string()))
    }

    /// The cap's text, for requests and result files. Never log it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits of the SHA-256 of the cap: how logs and
    /// messages name an object without revealing it. [`redact`] uses the
    /// same id, so redacted server messages and log lines can be matched.
    pub fn short_id(&self) -> String {
        short_hash(&self.0)
    }

    /// The cap of the empty file, `URI:LIT:`.
    pub fn empty_literal() -> Cap {
        Cap("URI:LIT:".to_string())
    }

    /// A literal cap (`URI:LIT:` file or `URI:DIR2-LIT:` directory): the
    /// data is inside the cap, nothing is stored on the grid (no shares, no
    /// leases, always healthy).
    pub fn is_literal(&self) -> bool {
        self.0.starts_with("URI:LIT:") || self.0.starts_with("URI:DIR2-LIT:")
    }

    /// A directory cap of any kind (`URI:DIR2:`, `URI:DIR2-RO:`,
    /// `URI:DIR2-CHK:`, `URI:DIR2-LIT:`, `URI:DIR2-MDMF:`, …).
    pub fn is_dir(&self) -> bool {
        self.0.starts_with("URI:DIR2")
    }

    /// The `(k, N)` encoding parameters (shares needed, shares total) of a
    /// `URI:CHK:key:ueb:k:N:size` or `URI:DIR2-CHK:key:ueb:k:N:size` cap;
    /// `None` for other kinds.
    pub fn k_n(&self) -> Option<(u32, u32)> {
        let fields = self.chk_fields()?;
        Some((fields[4].parse().ok()?, fields[5].parse().ok()?))
    }

    /// The size in bytes of the stored object of a `URI:CHK:` (file data)
    /// or `URI:DIR2-CHK:` (packed directory) cap; `None` for other kinds.
    pub fn size(&self) -> Option<u64> {
        self.chk_fields()?[6].parse().ok()
    }

    /// What identifies the stored object whatever cap names it, for
    /// telling that two caps reach the same directory (a cycle): the
    /// public-key fingerprint of a mutable object (`URI:DIR2:`,
    /// `URI:DIR2-RO:`, the MDMF and SSK kinds share it between their write,
    /// read and verify caps), the key of a CHK object; the whole cap for
    /// other kinds. It is a secret too (part of a cap): never log it.
    pub fn object_key(&self) -> String {
        let fields: Vec<&str> = self.0.split(':').collect();
        let kind = fields.get(1).copied().unwrap_or_default();
        let base = kind
            .strip_suffix("-RO")
            .or_else(|| kind.strip_suffix("-Verifier"))
            .unwrap_or(kind);
        match (base, fields.get(2), fields.get(3)) {
            ("DIR2" | "DIR2-MDMF" | "SSK" | "MDMF", Some(_), Some(fingerprint)) => {
                format!("mutable:{fingerprint}")
            }
            ("DIR2-CHK" | "CHK", Some(key), Some(_)) => format!("chk:{key}"),
            _ => self.0.clone(),
        }
    }

    /// Tahoe's storage index of a `URI:CHK:` or `URI:DIR2-CHK:` cap, in its
    /// base32: the first 16 bytes of SHA-256d over the netstring of the tag
    /// `allmydata_immutable_key_to_storage_index_v1` and the cap's 16-byte
    /// key (`hashutil.storage_index_hash`). It names the object's shares on
    /// the storage servers (`cleanup -e`). `None` for other kinds (ask the
    /// gateway: its `verify_uri` holds it).
    pub fn storage_index(&self) -> Option<String> {
        const TAG: &[u8] = b"allmydata_immutable_key_to_storage_index_v1";
        let key = base32::decode(self.chk_fields()?[2])?;
        if key.len() != 16 {
            return None;
        }
        let mut h = Sha256::new();
        h.update(format!("{}:", TAG.len()).as_bytes());
        h.update(TAG);
        h.update(b",");
        h.update(&key);
        let twice = Sha256::digest(h.finalize());
        Some(base32::encode(&twice[..16]))
    }

    /// The 7 `:`-separated fields of a CHK or DIR2-CHK cap.
    fn chk_fields(&self) -> Option<Vec<&str>> {
        let fields: Vec<&str> = self.0.split(':').collect();
        (fields.len() == 7 && matches!(fields[1], "CHK" | "DIR2-CHK")).then_some(fields)
    }
}

impl fmt::Debug for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cap(#{})", self.short_id())
    }
}

/// First 12 hex digits of SHA-256 of `s`.
fn short_hash(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// Replaces every capability-looking token in `text` — `URI:` (any case) followed by
/// `[A-Za-z0-9:_-]*` — with `<cap #SHORTID>` (the [`Cap::short_id`] of the
/// token). The percent-encoded form found in HTML links (`URI%3A…`, any
/// case) is replaced too, with the id of the decoded cap.
pub fn redact(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    // Start of the text not yet copied to `out`; only ever an index where an
    // ASCII pattern starts or ends, so always a char boundary.
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let (token_end, encoded) =
            if bytes.len() - i >= 4 && bytes[i..i + 4].eq_ignore_ascii_case(b"URI:") {
                (
                    scan(bytes, i + 4, |b| {
                        b.is_ascii_alphanumeric() || b"_:-".contains(&b)
                    }),
                    false,
                )
            } else if bytes.len() - i >= 6 && bytes[i..i + 6].eq_ignore_ascii_case(b"URI%3A") {
                (
                    scan(bytes, i + 6, |b| {
                        b.is_ascii_alphanumeric() || b"_%-".contains(&b)
                    }),
                    true,
                )
            } else {
                i += 1;
                continue;
            };
        out.push_str(&text[copied..i]);
        let token = &text[i..token_end];
        let id = if encoded {
            short_hash(&token.replace("%3A", ":").replace("%3a", ":"))
        } else {
            short_hash(token)
        };
        out.push_str("<cap #");
        out.push_str(&id);
        out.push('>');
        copied = token_end;
        i = token_end;
    }
    out.push_str(&text[copied..]);
    out
}

/// The index of the first byte at or after `from` that is not `in_token`.
fn scan(bytes: &[u8], from: usize, in_token: impl Fn(u8) -> bool) -> usize {
    bytes[from..]
        .iter()
        .position(|&b| !in_token(b))
        .map_or(bytes.len(), |p| from + p)
}

#[cfg(test)]
mod tests {
    use super::error::{ErrorText, parse_error_body};
    use super::*;
    use std::io;
    use std::time::Duration;

    const CHK: &str = "URI:CHK:mcdi47z6bo54osot7psx2wceme:7q26tmtwq6yawrpwimodqaoayv3xdbqqdyzxp47q7ebemjr5ekbq:2:3:100000";
    const DIR_CHK: &str = "URI:DIR2-CHK:6k5yof7gs5tfsmapklxyh6ukwy:dgmdhz3wu4372ywcaobuzqyzcq5klljw33tszmmyyumxhduvppjq:1:1:551";
    const DIR_RW: &str =
        "URI:DIR2:forau3r7zp4pfptesmflovhrpm:kyjd2wg3k3cariu7snnqc26hxjg757vvkd62q5czeev6eapniieq";

    // ------------------------------------------------------------ Cap

    #[test]
    fn storage_index_matches_tahoe() {
        // From tahoe-lafs 1.20.0: CHKFileURI(bytes(range(16)), bytes(range(32)),
        // 2, 3, 1000) and its verify cap.
        let chk = "URI:CHK:aaaqeayeaudaocajbifqydiob4:\
                   aaaqeayeaudaocajbifqydiob4ibceqtcqkrmfyydenbwha5dypq:2:3:1000";
        let si = |text: &str| Cap::parse(text).unwrap().storage_index();
        assert_eq!(si(chk).as_deref(), Some("hdis5iaveku6lnlaiccydyid7q"));
        let dir = chk.replace("URI:CHK:", "URI:DIR2-CHK:");
        assert_eq!(si(&dir).as_deref(), Some("hdis5iaveku6lnlaiccydyid7q"));
        assert_eq!(si("URI:LIT:nbswy3dp"), None);
        assert_eq!(si(DIR_RW), None);
        assert_eq!(si("URI:CHK:bad!:x:1:1:1"), None);
        // A key of another length is no CHK key.
        assert_eq!(si("URI:CHK:aaaq:x:1:1:1"), None);
    }

    #[test]
    fn parse_trims_and_accepts_caps() {
        let cap = Cap::parse(&format!("  {CHK}\n")).unwrap();
        assert_eq!(cap.as_str(), CHK);
        assert_eq!(Cap::parse("URI:LIT:").unwrap(), Cap::empty_literal());
        assert!(Cap::parse(DIR_RW).is_ok());
    }

    #[test]
    fn parse_rejects_without_quoting_the_text() {
        for bad in [
            "",
            "   ",
            "notacap-secretsecret",
            "uri:chk:secretsecret",
            "URI:CHK:secret secret",
            "URI:CHK:secret\u{e9}secret",
            "URI:CHK:secret\tsecret",
            "URI:CHK:secret\u{7f}",
        ] {
            let err = Cap::parse(bad).unwrap_err();
            assert!(matches!(err, TahoeError::BadCap(_)), "{bad:?}");
            let msg = err.to_string();
            assert!(!msg.contains("secret"), "{msg}");
            assert!(!msg.contains("URI:"), "{msg}");
            assert!(!err.is_transient());
        }
    }

    #[test]
    fn kinds_k_n_and_size() {
        let chk = Cap::parse(CHK).unwrap();
        assert_eq!(chk.k_n(), Some((2, 3)));
        assert_eq!(chk.size(), Some(100_000));
        assert!(!chk.is_literal() && !chk.is_dir());

        let dir = Cap::parse(DIR_CHK).unwrap();
        assert_eq!(dir.k_n(), Some((1, 1)));
        assert_eq!(dir.size(), Some(551));
        assert!(dir.is_dir() && !dir.is_literal());

        let lit = Cap::parse("URI:LIT:nbswy3dp").unwrap();
        assert!(lit.is_literal() && !lit.is_dir());
        assert_eq!(lit.k_n(), None);
        assert!(Cap::empty_literal().is_literal());

        let dir_lit = Cap::parse("URI:DIR2-LIT:").unwrap();
        assert!(dir_lit.is_literal() && dir_lit.is_dir());

        let rw = Cap::parse(DIR_RW).unwrap();
        assert!(rw.is_dir() && !rw.is_literal());
        assert_eq!(rw.k_n(), None);
        assert_eq!(rw.size(), None);

        // Malformed numbers or field counts give None, never a panic.
        for odd in [
            "URI:CHK:a:b:x:3:10",
            "URI:CHK:a:b:2:3",
            "URI:CHK:a:b:2:3:10:extra",
            "URI:SSK:a:b",
        ] {
            assert_eq!(Cap::parse(odd).unwrap().k_n(), None, "{odd}");
        }
    }

    #[test]
    fn debug_and_short_id_hide_the_cap() {
        let cap = Cap::parse(CHK).unwrap();
        let id = cap.short_id();
        assert_eq!(id.len(), 12);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        // sha256("URI:LIT:") checked with `printf URI:LIT: | sha256sum`.
        assert_eq!(Cap::empty_literal().short_id(), "08e480fb1dfc");
        let dbg = format!("{cap:?} {:?}", Some(&cap));
        assert!(!dbg.contains("URI:"), "{dbg}");
        assert!(!dbg.contains("mcdi47"), "{dbg}");
        assert!(dbg.contains(&id), "{dbg}");
    }

    #[test]
    fn object_keys_match_across_write_and_read_caps() {
        let rw = Cap::parse("URI:DIR2:wwwwkey:fprint").unwrap();
        let ro = Cap::parse("URI:DIR2-RO:rrrrkey:fprint").unwrap();
        let other = Cap::parse("URI:DIR2-RO:rrrrkey:otherfp").unwrap();
        assert_eq!(rw.object_key(), ro.object_key());
        assert_ne!(ro.object_key(), other.object_key());
        let mdmf = Cap::parse("URI:DIR2-MDMF:wk:fp").unwrap();
        let mdmf_ro = Cap::parse("URI:DIR2-MDMF-RO:rk:fp").unwrap();
        assert_eq!(mdmf.object_key(), mdmf_ro.object_key());
        let chk = Cap::parse(DIR_CHK).unwrap();
        assert!(chk.object_key().starts_with("chk:6k5yof"));
        let lit = Cap::parse("URI:DIR2-LIT:abc").unwrap();
        assert_eq!(lit.object_key(), "URI:DIR2-LIT:abc");
        // Odd shapes never panic.
        for odd in ["URI:", "URI:DIR2", "URI:DIR2:", "URI:CHK:a"] {
            let _ = Cap::parse(odd).unwrap().object_key();
        }
    }

    // ------------------------------------------------------------ redact

    #[test]
    fn redact_replaces_every_cap_token() {
        let chk = Cap::parse(CHK).unwrap();
        let text = format!("child {CHK}, dir {DIR_RW}.\nend URI:LIT: x");
        let red = redact(&text);
        assert!(!red.contains("URI:"), "{red}");
        assert!(red.starts_with(&format!("child <cap #{}>, dir <cap #", chk.short_id())));
        assert!(red.ends_with(&format!("<cap #{}> x", Cap::empty_literal().short_id())));
        assert!(red.contains(".\nend "));
    }

    #[test]
    fn redact_handles_percent_encoding_unicode_and_edges() {
        let enc = CHK.replace(':', "%3A");
        let red = redact(&format!("<a href=\"/uri/{enc}\">caf\u{e9}</a>"));
        let id = Cap::parse(CHK).unwrap().short_id();
        assert_eq!(red, format!("<a href=\"/uri/<cap #{id}>\">caf\u{e9}</a>"));
        assert_eq!(redact(""), "");
        assert_eq!(
            redact("no caps, \u{fc}n\u{ef}code URI"),
            "no caps, \u{fc}n\u{ef}code URI"
        );
        assert!(!redact("\u{e9}URI:").contains("URI:"));
        assert!(!redact("uri%3aCHK%3Aabc").contains("CHK"));
    }

    #[test]
    fn redact_catches_a_cap_at_the_start_of_an_error_line_and_any_case() {
        for body in [
            format!("{CHK}: no such file"),
            format!("{}\nmore", CHK.to_lowercase()),
            format!("allmydata.x.Boom: {CHK} is gone"),
        ] {
            for html in [false, true] {
                let e = parse_error_body(&body, html);
                let all = format!("{:?} {}", e.exception, e.message).to_lowercase();
                assert!(!all.contains("mcdi47z6"), "{all}");
                assert!(!all.contains("7q26tmtw"), "{all}");
            }
        }
    }

    // ------------------------------------------------------------ error bodies

    fn parsed(body: &str, html: bool) -> ErrorText {
        parse_error_body(body, html)
    }

    #[test]
    fn traceback_last_line_names_the_exception() {
        let body = "Traceback (most recent call last):\n  File \"/x/defer.py\", line 205, in maybeDeferred\n    result = f(*args, **kwargs)\n\
            allmydata.interfaces.UploadUnhappinessError: server selection failed for <Tahoe2ServerSelector for upload b'jpazk'>: shares could be placed on only 2 server(s)\n\n";
        let e = parsed(body, false);
        assert_eq!(e.exception.as_deref(), Some("UploadUnhappinessError"));
        assert!(
            e.message
                .starts_with("server selection failed for <Tahoe2ServerSelector")
        );
        assert!(e.message.ends_with("only 2 server(s)"));

        // Twisted's Failure wrapper (a write into an immutable directory).
        let e = parsed(
            "Traceback (most recent call last):\nFailure: allmydata.mutable.common.NotWriteableError: \n",
            false,
        );
        assert_eq!(e.exception.as_deref(), Some("NotWriteableError"));
        assert_eq!(e.message, "");

        let json = "Traceback (most recent call last):\n  File \"x\", line 1\njson.decoder.JSONDecodeError: Expecting value: line 1 column 7 (char 6)";
        let e = parsed(json, false);
        assert_eq!(e.exception.as_deref(), Some("JSONDecodeError"));
        assert_eq!(e.message, "Expecting value: line 1 column 7 (char 6)");
    }

    #[test]
    fn plain_error_bodies() {
        // The 410 of a download without shares (tahoe 1.20.0, verbatim
        // shape): the exception is on the first line, not the last.
        let body = "NoSharesError: no shares could be found. Zero shares usually indicates a corrupt URI, or that no servers were connected.\n\nThe full error message is:\nno shares (need 1). Last failure: None";
        let e = parsed(body, false);
        assert_eq!(e.exception.as_deref(), Some("NoSharesError"));
        assert!(e.message.starts_with("no shares could be found."));
        assert!(e.message.ends_with("Last failure: None"));
        assert!(!e.message.contains('\n'));

        let e = parsed(
            "GET unknown URI type: can only do t=info and t=json, not t=.",
            false,
        );
        assert_eq!(e.exception, None);
        assert_eq!(
            e.message,
            "GET unknown URI type: can only do t=info and t=json, not t=."
        );

        let e = parsed("", false);
        assert_eq!((e.exception, e.message.as_str()), (None, ""));
    }

    #[test]
    fn html_404_is_stripped() {
        let body = "\n<html>\n  <head><title>404 - Error</title></head>\n  <body>\n    <h1>Error</h1>\n    <p>No such child: caf&eacute; &lt;x&gt; &amp; y</p>\n  </body>\n</html>\n";
        let e = parsed(body, true);
        assert_eq!(e.exception, None);
        assert_eq!(e.message, "No such child: caf&eacute; <x> & y");
        // Without <p>: all tags go, the title too.
        let e = parsed(
            "<html><head><title>T</title></head><body><h1>Oops</h1> went <b>wrong</b></body></html>",
            true,
        );
        assert_eq!(e.message, "Oops went wrong");
    }

    #[test]
    fn server_text_is_redacted_and_shortened() {
        let body = format!(
            "allmydata.mutable.common.NotWriteableError: cannot write to {DIR_RW} {}",
            "x".repeat(1000)
        );
        let e = parsed(&body, false);
        assert_eq!(e.exception.as_deref(), Some("NotWriteableError"));
        assert!(!e.message.contains("URI:"));
        assert!(e.message.contains("<cap #"));
        assert!(e.message.chars().count() <= 300, "{}", e.message.len());
        assert!(e.message.ends_with('\u{2026}'));
        // Multi-byte characters are cut at a char boundary.
        let e = parsed(&"\u{e9}".repeat(400), false);
        assert_eq!(e.message.chars().count(), 300);
    }

    // ------------------------------------------------------------ classification

    fn http(status: u16, exception: Option<&str>) -> TahoeError {
        TahoeError::Http {
            status,
            exception: exception.map(str::to_string),
            message: "m".into(),
        }
    }

    #[test]
    fn classification() {
        // Transient.
        for e in [
            http(500, None),
            http(500, Some("Exception")),
            http(502, None),
            http(503, None),
            TahoeError::Connect {
                gateway: "127.0.0.1:1".into(),
                message: "refused".into(),
                attempts: 1,
            },
            TahoeError::Network {
                message: "reset".into(),
                attempts: 1,
            },
            TahoeError::Timeout {
                after: Duration::from_secs(1),
                attempts: 1,
            },
            TahoeError::Incomplete {
                expected: 10,
                got: 5,
            },
        ] {
            assert!(e.is_transient(), "{e}");
            assert!(!e.is_unhappy() && !e.is_not_found(), "{e}");
        }
        // Permanent.
        for e in [
            http(400, None),
            http(404, None),
            http(409, None),
            http(410, Some("NoSharesError")),
            http(500, Some("MustBeDeepImmutableError")),
            http(500, Some("NotWriteableError")),
            http(500, Some("JSONDecodeError")),
            http(500, Some("UploadUnhappinessError")),
            http(500, Some("NoSharesError")),
            http(500, Some("NotEnoughSharesError")),
            TahoeError::BadReply("x".into()),
            TahoeError::BadCap("x"),
            TahoeError::Invalid("x".into()),
            TahoeError::Body(io::Error::new(io::ErrorKind::NotFound, "gone")),
        ] {
            assert!(!e.is_transient(), "{e}");
        }
        assert!(http(500, Some("UploadUnhappinessError")).is_unhappy());
        assert!(!http(500, Some("NoSharesError")).is_unhappy());
        for e in [
            http(404, None),
            http(410, None),
            http(500, Some("NoSharesError")),
            http(410, Some("NotEnoughSharesError")),
        ] {
            assert!(e.is_not_found(), "{e}");
        }
        assert!(!http(400, None).is_not_found());
        assert!(!http(500, Some("UploadUnhappinessError")).is_not_found());
    }

    #[test]
    fn display_is_short_and_has_no_caps() {
        let e = http(500, Some("UploadUnhappinessError"));
        assert_eq!(
            e.to_string(),
            "the Tahoe gateway answered 500 Internal Server Error: UploadUnhappinessError: m"
        );
        let e = TahoeError::Connect {
            gateway: "127.0.0.1:9".into(),
            message: "Connection refused (os error 111)".into(),
            attempts: 3,
        };
        assert_eq!(
            e.to_string(),
            "cannot connect to the Tahoe gateway at 127.0.0.1:9: Connection refused (os error 111) (3 attempts)"
        );
        let e = TahoeError::Timeout {
            after: Duration::from_millis(1500),
            attempts: 2,
        };
        assert_eq!(
            e.to_string(),
            "the Tahoe gateway did not finish in time (waited 1.5 s per attempt, 2 attempts)"
        );
    }
}
