//! Tahoe's base32 (`allmydata/util/base32.py`): RFC 4648's alphabet in
//! lower case, no `=` padding, the last character padded with zero bits.
//! The one encoder and decoder of the crate: literal caps ([`super::lit`])
//! and storage indexes ([`super::Cap::storage_index`]) use it.

/// The alphabet: RFC 4648's, lower-cased.
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Appends the base32 of `data` to `out`: 5 bits per character, most
/// significant first.
pub(crate) fn encode_into(data: &[u8], out: &mut String) {
    let mut acc: u16 = 0; // holds at most 4 + 8 bits
    let mut bits = 0u32;
    for &byte in data {
        acc = (acc << 8) | u16::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[usize::from((acc >> bits) & 31)]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[usize::from((acc << (5 - bits)) & 31)]));
    }
}

/// The base32 of `data`.
pub(crate) fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity((data.len() * 8).div_ceil(5));
    encode_into(data, &mut out);
    out
}

/// Decodes canonical base32: `None` for a character outside the alphabet
/// (upper case included), a length no encoding produces, or non-zero
/// padding bits — a text [`encode`] makes for no data.
pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut acc: u16 = 0; // holds at most 4 + 5 bits
    let mut bits = 0u32;
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)?;
        acc = (acc << 5) | u16::try_from(v).ok()?;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).ok()?);
            acc &= (1 << bits) - 1;
        }
    }
    // What is left is padding: fewer than 5 bits, all zero.
    if bits >= 5 || acc != 0 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors_lowercase_unpadded() {
        // RFC 4648 section 10, lower-cased, '=' stripped (Tahoe's b2a).
        for (input, want) in [
            ("", ""),
            ("f", "my"),
            ("fo", "mzxq"),
            ("foo", "mzxw6"),
            ("foob", "mzxw6yq"),
            ("fooba", "mzxw6ytb"),
            ("foobar", "mzxw6ytboi"),
        ] {
            assert_eq!(encode(input.as_bytes()), want, "{input:?}");
            assert_eq!(decode(want).as_deref(), Some(input.as_bytes()), "{want:?}");
        }
        assert_eq!(encode(&[0xff; 5]), "77777777");
        assert_eq!(encode(&[0xff]), "74");
        assert_eq!(encode(&[0x00, 0x01]), "aaaq");
        let sixteen: Vec<u8> = (0u8..16).collect();
        assert_eq!(encode(&sixteen), "aaaqeayeaudaocajbifqydiob4");
        assert_eq!(decode("aaaqeayeaudaocajbifqydiob4"), Some(sixteen));
    }

    #[test]
    fn only_canonical_text_decodes() {
        // Leftover bits must be zero; upper case and '=' are not Tahoe's.
        assert_eq!(decode("aaaqeayeaudaocajbifqydiob5"), None);
        assert_eq!(decode("MY"), None);
        assert_eq!(decode("my=="), None);
        // One character (5 bits) is no byte and a non-zero rest.
        assert_eq!(decode("b"), None);
    }
}
