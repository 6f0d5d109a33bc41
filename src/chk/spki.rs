//! The SPKI hash that pins a storage server's TLS certificate in its NURL
//! (`http-storage-node-protocol.rst` "Server Identity"; tahoe-lafs 1.20's
//! `storage/http_common.py` `get_spki_hash`): SHA-256 of the certificate's
//! DER SubjectPublicKeyInfo, in URL-safe base64 without padding.
//!
//! The storage client (issue 17 item 2) pins servers with it; it lives here
//! for now because item 1 checks it against Tahoe's vectors beside the CHK
//! ones. Only the certificate's outer structure is read (a minimal DER
//! walker): the hash covers the SPKI's exact bytes, whatever the key type.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// One DER element: its tag, its whole encoding, and its contents.
struct Tlv<'a> {
    tag: u8,
    whole: &'a [u8],
    contents: &'a [u8],
}

/// The first DER element of `data` and what follows it; `None` if it is
/// truncated or uses a length form DER does not allow.
fn tlv(data: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let tag = *data.first()?;
    let first = *data.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = data.get(2..2 + n)?;
        (
            bytes.iter().fold(0usize, |a, &b| (a << 8) | usize::from(b)),
            2 + n,
        )
    };
    let end = header.checked_add(len)?;
    let whole = data.get(..end)?;
    Some((
        Tlv {
            tag,
            whole,
            contents: &whole[header..],
        },
        &data[end..],
    ))
}

/// The DER SubjectPublicKeyInfo of a DER X.509 certificate.
pub(crate) fn spki_of_certificate(cert_der: &[u8]) -> Option<&[u8]> {
    let (cert, _) = tlv(cert_der)?;
    let (tbs, _) = tlv(cert.contents)?;
    if cert.tag != 0x30 || tbs.tag != 0x30 {
        return None;
    }
    let mut rest = tbs.contents;
    let (first, after) = tlv(rest)?;
    if first.tag == 0xa0 {
        rest = after; // [0] EXPLICIT version
    }
    // serialNumber, signature, issuer, validity, subject, then the SPKI.
    for _ in 0..5 {
        rest = tlv(rest)?.1;
    }
    let (spki, _) = tlv(rest)?;
    (spki.tag == 0x30).then_some(spki.whole)
}

/// The SPKI hash of a DER certificate, as it appears in a NURL.
pub(crate) fn spki_hash(cert_der: &[u8]) -> Option<String> {
    spki_of_certificate(cert_der).map(|spki| URL_SAFE_NO_PAD.encode(Sha256::digest(spki)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_none_not_a_panic() {
        assert!(spki_hash(b"").is_none());
        assert!(spki_hash(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
        assert!(spki_hash(&[0x30, 0x03, 0x30, 0x01, 0x02]).is_none());
        assert!(spki_hash(&[0x30, 0x80]).is_none());
    }
}
