//! CHK caps (`allmydata/uri.py`): `URI:CHK:<key>:<UEB hash>:<k>:<N>:<size>`
//! with the 16-byte AES key and the 32-byte UEB hash in Tahoe's base32, and
//! `URI:DIR2-CHK:` with the same fields for an immutable directory;
//! `URI:LIT:<base32 data>` for a file of at most 55 bytes.
//!
//! A cap is a secret: [`ChkCap`] has no `Display`, its `Debug` shows no key.

use std::fmt;

use super::hash::{Hash, storage_index};
use super::{ChkError, LIT_THRESHOLD};
use crate::tahoe::base32;

/// A `URI:CHK:` (file) or `URI:DIR2-CHK:` (immutable directory) cap.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ChkCap {
    /// The AES-128 key.
    pub(crate) key: [u8; 16],
    /// The hash of the URI extension block.
    pub(crate) ueb_hash: Hash,
    /// Shares needed.
    pub(crate) k: u16,
    /// Shares made.
    pub(crate) n: u16,
    /// Plaintext size.
    pub(crate) size: u64,
    /// A `URI:DIR2-CHK:` cap (the object is a packed directory).
    pub(crate) dir: bool,
}

impl fmt::Debug for ChkCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ChkCap({}{}-of-{}, {} bytes)",
            if self.dir { "dir, " } else { "" },
            self.k,
            self.n,
            self.size
        )
    }
}

impl ChkCap {
    /// The cap's text.
    pub(crate) fn to_uri(&self) -> String {
        format!(
            "URI:{}:{}:{}:{}:{}:{}",
            if self.dir { "DIR2-CHK" } else { "CHK" },
            base32::encode(&self.key),
            base32::encode(&self.ueb_hash),
            self.k,
            self.n,
            self.size
        )
    }

    /// Parses a `URI:CHK:` or `URI:DIR2-CHK:` cap.
    pub(crate) fn parse(text: &str) -> Result<ChkCap, ChkError> {
        let bad = |why: &str| ChkError::BadCap(why.to_string());
        let (dir, rest) = if let Some(r) = text.strip_prefix("URI:CHK:") {
            (false, r)
        } else if let Some(r) = text.strip_prefix("URI:DIR2-CHK:") {
            (true, r)
        } else {
            return Err(bad("not a URI:CHK: or URI:DIR2-CHK: cap"));
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let [key, ueb, k, n, size] = parts[..] else {
            return Err(bad("wrong number of fields"));
        };
        let key: [u8; 16] = base32::decode(key)
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad("bad key field"))?;
        let ueb_hash: Hash = base32::decode(ueb)
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad("bad UEB hash field"))?;
        let number = |s: &str| -> Option<u64> {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        let k = number(k).and_then(|v| u16::try_from(v).ok());
        let n = number(n).and_then(|v| u16::try_from(v).ok());
        let (Some(k), Some(n), Some(size)) = (k, n, number(size)) else {
            return Err(bad("bad number field"));
        };
        if k == 0 || k > n || n > 256 {
            return Err(bad("share counts out of range"));
        }
        Ok(ChkCap {
            key,
            ueb_hash,
            k,
            n,
            size,
            dir,
        })
    }

    /// The storage index: the tagged hash of the key, 16 bytes.
    pub(crate) fn storage_index(&self) -> [u8; 16] {
        storage_index(&self.key)
    }
}

/// The `URI:LIT:` cap of `data`, or `None` when it is over 55 bytes.
pub(crate) fn lit_uri(data: &[u8]) -> Option<String> {
    (data.len() as u64 <= LIT_THRESHOLD).then(|| format!("URI:LIT:{}", base32::encode(data)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        // A cap the gateway made (tests/it/lit_caps.rs's grid, 2-of-3).
        let text = "URI:CHK:mcdi47z6bo54osot7psx2wceme:7q26tmtwq6yawrpwimodqaoayv3xdbqqdyzxp47q7ebemjr5ekbq:2:3:100000";
        let cap = ChkCap::parse(text).unwrap();
        assert_eq!((cap.k, cap.n, cap.size, cap.dir), (2, 3, 100_000, false));
        assert_eq!(cap.to_uri(), text);
        assert!(!format!("{cap:?}").contains("mcdi"));
        let dir = text.replace("URI:CHK:", "URI:DIR2-CHK:");
        assert!(ChkCap::parse(&dir).unwrap().dir);
        assert_eq!(ChkCap::parse(&dir).unwrap().to_uri(), dir);
        for bad in [
            "URI:LIT:abc",
            "URI:CHK:mcdi47z6bo54osot7psx2wceme:7q26:2:3:1",
            "URI:CHK:mcdi47z6bo54osot7psx2wceme:7q26tmtwq6yawrpwimodqaoayv3xdbqqdyzxp47q7ebemjr5ekbq:0:3:1",
            "URI:CHK:mcdi47z6bo54osot7psx2wceme:7q26tmtwq6yawrpwimodqaoayv3xdbqqdyzxp47q7ebemjr5ekbq:4:3:1",
            "URI:CHK:mcdi47z6bo54osot7psx2wceme:7q26tmtwq6yawrpwimodqaoayv3xdbqqdyzxp47q7ebemjr5ekbq:2:3:-1",
            "URI:CHK:mcdi47z6bo54osot7psx2wceme:7q26tmtwq6yawrpwimodqaoayv3xdbqqdyzxp47q7ebemjr5ekbq:2:3",
        ] {
            assert!(ChkCap::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(lit_uri(b"hello").unwrap(), "URI:LIT:nbswy3dp");
        assert_eq!(lit_uri(b"").unwrap(), "URI:LIT:");
        assert!(lit_uri(&[0; 56]).is_none());
    }
}
