//! Immutable directories (`allmydata/dirnode.py` `pack_children` with
//! `deep_immutable=True`, as `POST /uri?t=mkdir-immutable` calls it): each
//! child is `netstring(netstring(NFC name) + netstring(read cap) +
//! netstring("") + netstring(json.dumps(metadata)))`, children sorted by
//! name; the whole is CHK-encoded like a file and its cap is
//! `URI:DIR2-CHK:` (or `URI:DIR2-LIT:` when it is at most 55 bytes).
//!
//! The gateway parses the request's metadata objects with `json.loads` and
//! writes them back with `json.dumps`: keys in the order given, `", "` and
//! `": "` separators, every non-ASCII character as `\uXXXX` (surrogate
//! pairs beyond the BMP), floats as Python's `repr`. [`python_json`] does
//! the same from the JSON text lafs-backup sends.

use unicode_normalization::UnicodeNormalization as _;

use super::ChkError;
use super::cap::ChkCap;
#[cfg(test)]
use super::encode::encode_bytes;
use super::hash::push_netstring;
#[cfg(test)]
use super::{LIT_THRESHOLD, Params};
use crate::tahoe::base32;

/// One child of an immutable directory.
#[derive(Clone, Debug)]
pub(crate) struct Child<'a> {
    /// The name (normalised to NFC here, as the gateway does).
    pub(crate) name: &'a str,
    /// The child's read cap.
    pub(crate) cap: &'a str,
    /// The edge metadata as a JSON object text (any formatting).
    pub(crate) metadata: &'a str,
}

/// The packed contents of an immutable directory.
pub(crate) fn pack(children: &[Child<'_>]) -> Result<Vec<u8>, ChkError> {
    let mut entries: Vec<(String, &Child<'_>)> = children
        .iter()
        .map(|c| (c.name.nfc().collect(), c))
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    if entries.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(ChkError::Dir(
            "two children with the same (NFC) name".into(),
        ));
    }
    let mut out = Vec::new();
    for (name, child) in entries {
        let meta = python_json(child.metadata)?;
        if !meta.starts_with('{') {
            return Err(ChkError::Dir("child metadata is not a JSON object".into()));
        }
        // `strip_prefix_for_ro`: the prefixes are implied in an immutable directory.
        let cap = child
            .cap
            .strip_prefix("imm.")
            .or_else(|| child.cap.strip_prefix("ro."))
            .unwrap_or(child.cap);
        let mut entry = Vec::new();
        push_netstring(&mut entry, name.as_bytes());
        push_netstring(&mut entry, cap.as_bytes());
        push_netstring(&mut entry, b"");
        push_netstring(&mut entry, meta.as_bytes());
        push_netstring(&mut out, &entry);
    }
    Ok(out)
}

/// An encoded immutable directory: its cap.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct EncodedDir {
    /// `URI:DIR2-CHK:…` or `URI:DIR2-LIT:…`.
    pub(crate) cap: String,
}

/// Packs and encodes an immutable directory as the gateway does (tests:
/// the native path packs, then uploads the bytes as a file).
#[cfg(test)]
pub(crate) fn encode_dir(
    children: &[Child<'_>],
    params: &Params,
    secret: &[u8],
) -> Result<EncodedDir, ChkError> {
    let packed = pack(children)?;
    if packed.len() as u64 <= LIT_THRESHOLD {
        return Ok(EncodedDir {
            cap: format!("URI:DIR2-LIT:{}", base32::encode(&packed)),
        });
    }
    let (mut encoded, _shares) = encode_bytes(&packed, params, secret)?;
    encoded.cap.dir = true;
    Ok(EncodedDir {
        cap: encoded.cap.to_uri(),
    })
}

/// `json.dumps(json.loads(text))` as Python 3 writes it.
pub(crate) fn python_json(text: &str) -> Result<String, ChkError> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
        out: String::with_capacity(text.len() + 16),
        depth: 0,
    };
    p.ws();
    p.value()?;
    p.ws();
    if p.i != p.s.len() {
        return Err(p.err("trailing characters"));
    }
    Ok(p.out)
}

/// A JSON reader that writes what it reads in Python's `json.dumps` form.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    out: String,
    depth: usize,
}

impl Parser<'_> {
    fn err(&self, why: &str) -> ChkError {
        ChkError::Dir(format!("metadata JSON at byte {}: {why}", self.i))
    }

    fn ws(&mut self) {
        while matches!(self.s.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn literal(&mut self, word: &str) -> Result<(), ChkError> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            self.out.push_str(word);
            Ok(())
        } else {
            Err(self.err("unexpected character"))
        }
    }

    fn value(&mut self) -> Result<(), ChkError> {
        self.depth += 1;
        if self.depth > 200 {
            return Err(self.err("nested too deeply"));
        }
        match self.s.get(self.i) {
            Some(b'{') => self.container(b'}', true)?,
            Some(b'[') => self.container(b']', false)?,
            Some(b'"') => self.string()?,
            Some(b't') => self.literal("true")?,
            Some(b'f') => self.literal("false")?,
            Some(b'n') => self.literal("null")?,
            Some(b'-' | b'0'..=b'9') => self.number()?,
            _ => return Err(self.err("expected a value")),
        }
        self.depth -= 1;
        Ok(())
    }

    fn container(&mut self, close: u8, object: bool) -> Result<(), ChkError> {
        self.out.push(char::from(self.s[self.i]));
        self.i += 1;
        self.ws();
        let mut keys: Vec<String> = Vec::new();
        if !self.eat(close) {
            loop {
                self.ws();
                if object {
                    let start = self.out.len();
                    if self.s.get(self.i) != Some(&b'"') {
                        return Err(self.err("expected a key"));
                    }
                    self.string()?;
                    let key = self.out[start..].to_string();
                    if keys.contains(&key) {
                        return Err(self.err("a key twice in one object"));
                    }
                    keys.push(key);
                    self.ws();
                    if !self.eat(b':') {
                        return Err(self.err("expected ':'"));
                    }
                    self.out.push_str(": ");
                    self.ws();
                }
                self.value()?;
                self.ws();
                if self.eat(close) {
                    break;
                }
                if !self.eat(b',') {
                    return Err(self.err("expected ',' or the end"));
                }
                self.out.push_str(", ");
            }
        }
        self.out.push(char::from(close));
        Ok(())
    }

    fn hex4(&mut self) -> Result<u16, ChkError> {
        let h = self
            .s
            .get(self.i..self.i + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u16::from_str_radix(h, 16).ok())
            .ok_or_else(|| self.err("bad \\u escape"))?;
        self.i += 4;
        Ok(h)
    }

    /// Reads a string into UTF-16 units (as Python keeps lone surrogates)
    /// and writes it with `ensure_ascii`.
    fn string(&mut self) -> Result<(), ChkError> {
        self.i += 1;
        let mut units: Vec<u16> = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.i) else {
                return Err(self.err("unterminated string"));
            };
            match c {
                b'"' => {
                    self.i += 1;
                    break;
                }
                b'\\' => {
                    let e = self.s.get(self.i + 1).copied();
                    self.i += 2;
                    let u = match e {
                        Some(b'"') => 0x22,
                        Some(b'\\') => 0x5c,
                        Some(b'/') => 0x2f,
                        Some(b'b') => 0x08,
                        Some(b'f') => 0x0c,
                        Some(b'n') => 0x0a,
                        Some(b'r') => 0x0d,
                        Some(b't') => 0x09,
                        Some(b'u') => self.hex4()?,
                        _ => return Err(self.err("bad escape")),
                    };
                    units.push(u);
                }
                0..=0x1f => return Err(self.err("control character in a string")),
                _ => {
                    let rest = std::str::from_utf8(&self.s[self.i..])
                        .or_else(|e| std::str::from_utf8(&self.s[self.i..self.i + e.valid_up_to()]))
                        .map_err(|_| self.err("invalid UTF-8"))?;
                    let ch = rest
                        .chars()
                        .next()
                        .ok_or_else(|| self.err("invalid UTF-8"))?;
                    self.i += ch.len_utf8();
                    let mut buf = [0u16; 2];
                    units.extend_from_slice(ch.encode_utf16(&mut buf));
                }
            }
        }
        self.out.push('"');
        for u in units {
            match u {
                0x22 => self.out.push_str("\\\""),
                0x5c => self.out.push_str("\\\\"),
                0x0a => self.out.push_str("\\n"),
                0x0d => self.out.push_str("\\r"),
                0x09 => self.out.push_str("\\t"),
                0x08 => self.out.push_str("\\b"),
                0x0c => self.out.push_str("\\f"),
                0x20..=0x7e => self.out.push(char::from(u as u8)),
                _ => self.out.push_str(&format!("\\u{u:04x}")),
            }
        }
        self.out.push('"');
        Ok(())
    }

    fn number(&mut self) -> Result<(), ChkError> {
        let start = self.i;
        self.eat(b'-');
        let digits = |p: &mut Self| {
            let s = p.i;
            while matches!(p.s.get(p.i), Some(b'0'..=b'9')) {
                p.i += 1;
            }
            p.i - s
        };
        let int_start = self.i;
        let n = digits(self);
        if n == 0 || (n > 1 && self.s[int_start] == b'0') {
            return Err(self.err("bad number"));
        }
        let mut float = false;
        if self.eat(b'.') {
            float = true;
            if digits(self) == 0 {
                return Err(self.err("bad number"));
            }
        }
        if self.eat(b'e') || self.eat(b'E') {
            float = true;
            let _ = self.eat(b'+') || self.eat(b'-');
            if digits(self) == 0 {
                return Err(self.err("bad number"));
            }
        }
        let token = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("0");
        if !float {
            // Python's int: "-0" is 0; the rest is already canonical.
            self.out.push_str(if token == "-0" { "0" } else { token });
            return Ok(());
        }
        let v: f64 = token.parse().map_err(|_| self.err("bad number"))?;
        self.out.push_str(&python_float_repr(v));
        Ok(())
    }
}

/// Python's `repr(float)` (what `json.dumps` writes): the shortest digits
/// that round-trip, positional for decimal exponents -4..16, else
/// `d.ddde+XX`.
pub(crate) fn python_float_repr(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let sci = format!("{v:e}"); // e.g. "-1.2345e-7", shortest round-trip digits
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut out = sign.to_string();
    if (-4..16).contains(&exp) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                out.push_str(&"0".repeat(int_len - digits.len()));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        } else {
            out.push_str("0.");
            out.push_str(&"0".repeat((-exp - 1) as usize));
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push_str(&format!(
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        ));
    }
    out
}

/// One child of a packed immutable directory, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Unpacked<'a> {
    /// The name, normalised to NFC (as the gateway does on reading).
    pub(crate) name: String,
    /// The child's read cap (trailing spaces stripped, as Tahoe does).
    pub(crate) cap: &'a str,
    /// The metadata's JSON text (`json.dumps` of the object).
    pub(crate) metadata: &'a str,
    /// The length of the child's whole entry, in bytes.
    pub(crate) entry_len: usize,
}

/// One netstring at `at` of `data`: its content and the position after it
/// (`split_netstring`: `LEN:BYTES,`, LEN in decimal without leading
/// zeros, at most 20 digits).
fn netstring(data: &[u8], at: usize) -> Result<(&[u8], usize), ChkError> {
    let bad = |why: &str| ChkError::Dir(format!("a packed directory at byte {at}: {why}"));
    let rest = data.get(at..).ok_or_else(|| bad("past the end"))?;
    let colon = rest
        .iter()
        .take(21)
        .position(|&b| b == b':')
        .ok_or_else(|| bad("no netstring length"))?;
    let digits = &rest[..colon];
    if digits.is_empty()
        || !digits.iter().all(u8::is_ascii_digit)
        || (digits.len() > 1 && digits[0] == b'0')
    {
        return Err(bad("a bad netstring length"));
    }
    let len: usize = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| bad("a bad netstring length"))?;
    let start = colon + 1;
    let end = start
        .checked_add(len)
        .filter(|&e| e < rest.len())
        .ok_or_else(|| bad("a netstring past the end"))?;
    if rest[end] != b',' {
        return Err(bad("a netstring without its comma"));
    }
    Ok((&rest[start..end], at + end + 1))
}

/// `b` as text, or an error naming `what`.
fn utf8<'a>(b: &'a [u8], what: &str) -> Result<&'a str, ChkError> {
    std::str::from_utf8(b).map_err(|_| ChkError::Dir(format!("a child's {what} is not UTF-8")))
}

/// The children of a packed immutable directory (the inverse of [`pack`],
/// as `dirnode.py` `_unpack_contents` reads it), in stored order. An entry
/// with a write cap (not allowed in an immutable directory), text that is
/// not UTF-8 or a metadata text that is not a JSON object is an error.
pub(crate) fn unpack(data: &[u8]) -> Result<Vec<Unpacked<'_>>, ChkError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let (entry, next) = netstring(data, at)?;
        let mut fields = [&b""[..]; 4];
        let mut pos = 0;
        for field in &mut fields {
            let (value, after) = netstring(entry, pos)?;
            *field = value;
            pos = after;
        }
        if pos != entry.len() {
            return Err(ChkError::Dir(format!(
                "a packed directory at byte {at}: trailing bytes in an entry"
            )));
        }
        let [name, cap, rw, metadata] = fields;
        if !rw.is_empty() {
            return Err(ChkError::Dir(
                "a child with a write cap in an immutable directory".into(),
            ));
        }
        let metadata = utf8(metadata, "metadata")?;
        if !metadata.trim_start().starts_with('{') {
            return Err(ChkError::Dir(
                "a child's metadata is not a JSON object".into(),
            ));
        }
        out.push(Unpacked {
            name: utf8(name, "name")?.nfc().collect(),
            cap: utf8(cap, "cap")?.trim_end_matches(' '),
            metadata,
            entry_len: entry.len(),
        });
        at = next;
    }
    Ok(out)
}

/// A child of an immutable directory as the gateway lists it
/// (`GET /uri/DIRCAP?t=json`, `web/directory.py`
/// `_directory_json_metadata` with `web/common.py`
/// `get_filenode_metadata`): `["filenode", {"mutable": false, "format":
/// "CHK", "size": N, "metadata": {...}, "ro_uri": CAP, "verify_uri":
/// VCAP}]` or `["dirnode", {"mutable": false, "metadata": {...}, "ro_uri":
/// CAP, "verify_uri": VCAP}]`; literal caps have no verify cap. A cap of
/// another kind (mutable, unknown) is an error: the gateway decides what
/// to show for it.
pub(crate) fn listing_entry(child: &Unpacked<'_>) -> Result<serde_json::Value, ChkError> {
    use serde_json::{Value, json};
    let metadata: Value = serde_json::from_str(child.metadata)
        .map_err(|e| ChkError::Dir(format!("a child's metadata is not JSON: {e}")))?;
    if !metadata.is_object() {
        return Err(ChkError::Dir(
            "a child's metadata is not a JSON object".into(),
        ));
    }
    let cap = child.cap;
    let verify = |chk: &ChkCap, prefix: &str| {
        format!(
            "{prefix}{}:{}:{}:{}:{}",
            base32::encode(&chk.storage_index()),
            base32::encode(&chk.ueb_hash),
            chk.k,
            chk.n,
            chk.size
        )
    };
    let value = if let Some(data) = cap.strip_prefix("URI:LIT:") {
        let size = base32::decode(data)
            .ok_or_else(|| ChkError::Dir("a child's literal cap is not base32".into()))?
            .len();
        json!(["filenode", {"mutable": false, "format": "CHK", "size": size,
            "metadata": metadata, "ro_uri": cap}])
    } else if let Some(data) = cap.strip_prefix("URI:DIR2-LIT:") {
        base32::decode(data)
            .ok_or_else(|| ChkError::Dir("a child's literal cap is not base32".into()))?;
        json!(["dirnode", {"mutable": false, "metadata": metadata, "ro_uri": cap}])
    } else if cap.starts_with("URI:CHK:") {
        let chk = ChkCap::parse(cap)?;
        json!(["filenode", {"mutable": false, "format": "CHK", "size": chk.size,
            "metadata": metadata, "ro_uri": cap,
            "verify_uri": verify(&chk, "URI:CHK-Verifier:")}])
    } else if cap.starts_with("URI:DIR2-CHK:") {
        let chk = ChkCap::parse(cap)?;
        json!(["dirnode", {"mutable": false, "metadata": metadata, "ro_uri": cap,
            "verify_uri": verify(&chk, "URI:DIR2-CHK-Verifier:")}])
    } else {
        return Err(ChkError::Dir(
            "a child whose cap is not an immutable file or directory".into(),
        ));
    };
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_as_python_writes_it() {
        let cases = [
            (
                r#"{"a":1,"b":[true,false,null],"c":{}}"#,
                r#"{"a": 1, "b": [true, false, null], "c": {}}"#,
            ),
            (
                r#"{"z":"é😀\u0001\n\"\\/"}"#,
                r#"{"z": "\u00e9\ud83d\ude00\u0001\n\"\\/"}"#,
            ),
            (r#"{"b":2,"a":1}"#, r#"{"b": 2, "a": 1}"#),
            (
                r#"[1.5, -0, 1e16, 1.5e-5, 0.0001, 100.0, 1E400, "\u007f"]"#,
                r#"[1.5, 0, 1e+16, 1.5e-05, 0.0001, 100.0, Infinity, "\u007f"]"#,
            ),
            (
                r#"[1234567890123456789012, 123456789012345678.0, -0.0, 1700000000.123456]"#,
                "[1234567890123456789012, 1.2345678901234568e+17, -0.0, 1700000000.123456]",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(python_json(input).unwrap(), want, "{input}");
        }
        for bad in [
            "",
            "{",
            r#"{"a" 1}"#,
            "[01]",
            r#"{"a":1,"a":2}"#,
            "[1,]",
            "\"\u{1}\"",
            "nul",
        ] {
            assert!(python_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn packs_sorted_nfc_children() {
        let kids = [
            Child {
                name: "b",
                cap: "URI:LIT:mjqxe",
                metadata: "{}",
            },
            Child {
                name: "a\u{301}",
                cap: "URI:LIT:nbswy3dp",
                metadata: r#"{"k":"v"}"#,
            },
        ];
        let packed = pack(&kids).unwrap();
        let text = String::from_utf8(packed).unwrap();
        assert_eq!(
            text,
            "29:1:b,13:URI:LIT:mjqxe,0:,2:{},,42:2:\u{e1},16:URI:LIT:nbswy3dp,0:,10:{\"k\": \"v\"},,"
        );
        let dup = [
            kids[1].clone(),
            Child {
                name: "\u{e1}",
                ..kids[0].clone()
            },
        ];
        assert!(pack(&dup).is_err());
        assert_eq!(
            encode_dir(&[], &Params::new(2, 3).unwrap(), b"s")
                .unwrap()
                .cap,
            "URI:DIR2-LIT:"
        );
    }

    #[test]
    fn unpack_reads_what_pack_writes() {
        let chk = "URI:CHK:mcdi47z6bo54osot7psx2wceme:7q26tmtwq6yawrpwimodqaoayv3xdbqqdyzxp47q7ebemjr5ekbq:2:3:100000";
        let dir = chk.replace("URI:CHK:", "URI:DIR2-CHK:");
        let children = [
            Child {
                name: "b\u{301}",
                cap: chk,
                metadata: r#"{"mode":"100644"}"#,
            },
            Child {
                name: "a",
                cap: "URI:LIT:nbswy3dp",
                metadata: "{}",
            },
            Child {
                name: "d",
                cap: &dir,
                metadata: r#"{"x":[1]}"#,
            },
            Child {
                name: "e",
                cap: "URI:DIR2-LIT:",
                metadata: "{}",
            },
        ];
        let packed = pack(&children).unwrap();
        let got = unpack(&packed).unwrap();
        let names: Vec<&str> = got.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["a", "b\u{301}".nfc().collect::<String>().as_str(), "d", "e"]
        );
        assert_eq!(got[1].cap, chk);
        assert_eq!(got[1].metadata, r#"{"mode": "100644"}"#);
        assert!(unpack(b"").unwrap().is_empty());

        // The gateway's t=json shapes.
        let entry = |i: usize| listing_entry(&got[i]).unwrap();
        assert_eq!(
            entry(0),
            serde_json::json!(["filenode", {"mutable": false, "format": "CHK", "size": 5,
                "metadata": {}, "ro_uri": "URI:LIT:nbswy3dp"}])
        );
        let file = entry(1);
        assert_eq!(file[1]["size"], 100_000);
        let verify = file[1]["verify_uri"].as_str().unwrap();
        assert!(verify.starts_with("URI:CHK-Verifier:") && verify.ends_with(":2:3:100000"));
        let d = entry(2);
        assert_eq!(d[0], "dirnode");
        assert!(
            d[1]["verify_uri"]
                .as_str()
                .unwrap()
                .starts_with("URI:DIR2-CHK-Verifier:")
        );
        assert!(d[1].get("size").is_none());
        assert_eq!(
            entry(3),
            serde_json::json!(["dirnode", {"mutable": false, "metadata": {}, "ro_uri": "URI:DIR2-LIT:"}])
        );
    }

    #[test]
    fn bad_packed_directories_are_errors() {
        let mut entry = Vec::new();
        push_netstring(&mut entry, b"n");
        push_netstring(&mut entry, b"URI:LIT:");
        push_netstring(&mut entry, b"rw");
        push_netstring(&mut entry, b"{}");
        let mut with_rw = Vec::new();
        push_netstring(&mut with_rw, &entry);
        let mut three = Vec::new();
        push_netstring(&mut three, b"3:abc,3:def,0:,");
        for bad in [
            &b"5:abc,"[..],
            b"x:abc,",
            b"03:abc,",
            b"3:abc",
            b"3:abc;",
            &with_rw,
            &three,
            b"99999999999999999999999:",
        ] {
            assert!(unpack(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let mutable = Unpacked {
            name: "m".into(),
            cap: "URI:SSK-RO:aaaa:bbbb",
            metadata: "{}",
            entry_len: 0,
        };
        assert!(listing_entry(&mutable).is_err());
        let not_object = Unpacked {
            metadata: "[1]",
            cap: "URI:LIT:",
            ..mutable
        };
        assert!(listing_entry(&not_object).is_err());
    }
}
