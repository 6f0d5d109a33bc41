//! Reading the fields of one 512-byte tar header block, and pax records.
//!
//! Only what the splitter needs: the checksum, the type, the size, the
//! name (ustar prefix applied), the GNU sparse extension flag, and the pax
//! keys that change a member's path or size or say it is sparse.

use super::TarErrorKind;

/// The size of a tar block.
pub(super) const BLOCK: usize = 512;

/// One header block.
pub(super) struct Header<'a>(pub(super) &'a [u8; BLOCK]);

/// The header's format, from its magic field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Magic {
    /// POSIX ustar and pax: `ustar\0` `00`, with a name prefix field.
    Ustar,
    /// Old GNU: `ustar  \0`; the prefix area holds times and sparse data.
    Gnu,
    /// Anything else: pre-POSIX (v7) headers; the name field only.
    V7,
}

impl Header<'_> {
    pub(super) fn is_zero(&self) -> bool {
        self.0.iter().all(|&b| b == 0)
    }

    /// Checks the checksum: the sum of the block's bytes with the checksum
    /// field taken as eight spaces, unsigned (POSIX) or signed (some old
    /// tars summed signed chars, and GNU tar accepts both).
    pub(super) fn check_checksum(&self) -> Result<(), TarErrorKind> {
        let field = &self.0[148..156];
        let mut unsigned: u64 = 0;
        let mut signed: i64 = 0;
        for (i, &b) in self.0.iter().enumerate() {
            let b = if (148..156).contains(&i) { b' ' } else { b };
            unsigned += u64::from(b);
            signed += i64::from(b as i8);
        }
        let bad = || TarErrorKind::BadChecksum {
            stored: trim_field(field).to_vec(),
            computed: unsigned,
        };
        let stored = parse_octal(field, "chksum").map_err(|_| bad())?;
        if stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed) {
            Ok(())
        } else {
            Err(bad())
        }
    }

    pub(super) fn typeflag(&self) -> u8 {
        self.0[156]
    }

    pub(super) fn magic(&self) -> Magic {
        match &self.0[257..265] {
            b"ustar  \0" => Magic::Gnu,
            m if &m[..6] == b"ustar\0" => Magic::Ustar,
            _ => Magic::V7,
        }
    }

    /// The size field: octal, or GNU's base-256 for sizes of 8 GiB and more.
    pub(super) fn size(&self) -> Result<u64, TarErrorKind> {
        parse_number(&self.0[124..136], "size")
    }

    /// The member's name from the header alone: the ustar prefix joined
    /// with a `/` to the name field (POSIX headers only).
    pub(super) fn name(&self) -> Vec<u8> {
        let name = until_nul(&self.0[0..100]);
        if self.magic() == Magic::Ustar {
            let prefix = until_nul(&self.0[345..500]);
            if !prefix.is_empty() {
                let mut full = prefix.to_vec();
                full.push(b'/');
                full.extend_from_slice(name);
                return full;
            }
        }
        name.to_vec()
    }

    /// Old GNU sparse (`S`) headers: whether extension blocks with more of
    /// the sparse map follow (the `isextended` byte).
    pub(super) fn gnu_sparse_extended(&self) -> bool {
        self.0[482] != 0
    }
}

/// A GNU sparse extension block's own `isextended` byte: another follows.
pub(super) fn sparse_extension_continues(block: &[u8; BLOCK]) -> bool {
    block[504] != 0
}

/// The bytes of a field up to its first NUL.
pub(super) fn until_nul(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// A field without its leading and trailing spaces and NULs (for messages).
fn trim_field(field: &[u8]) -> &[u8] {
    let is_pad = |b: &u8| *b == b' ' || *b == 0;
    let start = field.iter().position(|b| !is_pad(b)).unwrap_or(field.len());
    let end = field
        .iter()
        .rposition(|b| !is_pad(b))
        .map_or(start, |e| e + 1);
    &field[start..end]
}

/// A numeric field: base-256 when its first byte has the high bit set
/// (GNU, star), else octal.
fn parse_number(field: &[u8], name: &'static str) -> Result<u64, TarErrorKind> {
    let bad = || TarErrorKind::BadNumber {
        field: name,
        value: trim_field(field).to_vec(),
    };
    match field.first() {
        // 0x80: a positive base-256 number in the remaining bits; 0xff would
        // be a negative one, which no size can be.
        Some(&first) if first & 0x80 != 0 => {
            if first != 0x80 {
                return Err(bad());
            }
            field[1..].iter().try_fold(0u64, |acc, &b| {
                acc.checked_mul(256)
                    .and_then(|v| v.checked_add(u64::from(b)))
                    .ok_or_else(bad)
            })
        }
        _ => parse_octal(field, name),
    }
}

/// An octal field as GNU tar reads it: leading spaces, octal digits, then
/// only spaces and NULs. An empty field is 0.
fn parse_octal(field: &[u8], name: &'static str) -> Result<u64, TarErrorKind> {
    let bad = || TarErrorKind::BadNumber {
        field: name,
        value: trim_field(field).to_vec(),
    };
    let start = field.iter().position(|&b| b != b' ').unwrap_or(field.len());
    let digits_end = field[start..]
        .iter()
        .position(|b| !(b'0'..=b'7').contains(b))
        .map_or(field.len(), |e| start + e);
    if !field[digits_end..].iter().all(|&b| b == b' ' || b == 0) {
        return Err(bad());
    }
    field[start..digits_end].iter().try_fold(0u64, |acc, &b| {
        acc.checked_mul(8)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or_else(bad)
    })
}

/// A decimal number as pax records and GNU sparse maps write them.
pub(super) fn parse_decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |acc, &b| {
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// The pax keys that matter to the splitter, from `x` (this member) or
/// `g` (every member after it) headers.
#[derive(Debug, Default, Clone)]
pub(super) struct Pax {
    /// `path`.
    pub(super) path: Option<Vec<u8>>,
    /// `size`.
    pub(super) size: Option<u64>,
    /// `GNU.sparse.name`: the real name of a sparse member (its header
    /// name is a made-up `GNUSparseFile.N/...`).
    pub(super) sparse_name: Option<Vec<u8>>,
    /// `GNU.sparse.major`.
    pub(super) sparse_major: Option<Vec<u8>>,
    /// `GNU.sparse.minor`.
    pub(super) sparse_minor: Option<Vec<u8>>,
}

impl Pax {
    /// Parses the records `LEN KEY=VALUE\n` of an extended header's data
    /// and applies the ones that matter on top of `self` (later records
    /// win, as in GNU tar).
    pub(super) fn apply(&mut self, data: &[u8]) -> Result<(), TarErrorKind> {
        let mut rest = data;
        while !rest.is_empty() {
            // GNU tar pads the data with NULs in some old archives.
            if rest.iter().all(|&b| b == 0) {
                break;
            }
            let bad = |what: &str| TarErrorKind::BadPax {
                what: format!("{what} at record offset {}", data.len() - rest.len()),
            };
            let space = rest
                .iter()
                .take(21)
                .position(|&b| b == b' ')
                .ok_or_else(|| bad("no length"))?;
            let len = parse_decimal(&rest[..space]).ok_or_else(|| bad("a bad length"))?;
            let len = usize::try_from(len)
                .ok()
                .filter(|&l| l > space + 1 && l <= rest.len())
                .ok_or_else(|| bad("a length past the end"))?;
            let record = &rest[space + 1..len];
            let Some((&b'\n', body)) = record.split_last() else {
                return Err(bad("no newline at the end of a record"));
            };
            let eq = body
                .iter()
                .position(|&b| b == b'=')
                .ok_or_else(|| bad("no '=' in a record"))?;
            let (key, value) = (&body[..eq], &body[eq + 1..]);
            match key {
                b"path" => self.path = Some(value.to_vec()),
                b"size" => {
                    self.size =
                        Some(parse_decimal(value).ok_or_else(|| TarErrorKind::BadNumber {
                            field: "pax size",
                            value: value.to_vec(),
                        })?);
                }
                b"GNU.sparse.name" => self.sparse_name = Some(value.to_vec()),
                b"GNU.sparse.major" => self.sparse_major = Some(value.to_vec()),
                b"GNU.sparse.minor" => self.sparse_minor = Some(value.to_vec()),
                _ => {}
            }
            rest = &rest[len..];
        }
        Ok(())
    }

    /// `other`'s keys on top of `self`'s (a member's own `x` records over
    /// the global `g` ones).
    pub(super) fn overlay(&self, other: &Pax) -> Pax {
        Pax {
            path: other.path.clone().or_else(|| self.path.clone()),
            size: other.size.or(self.size),
            sparse_name: other
                .sparse_name
                .clone()
                .or_else(|| self.sparse_name.clone()),
            sparse_major: other
                .sparse_major
                .clone()
                .or_else(|| self.sparse_major.clone()),
            sparse_minor: other
                .sparse_minor
                .clone()
                .or_else(|| self.sparse_minor.clone()),
        }
    }

    /// GNU's sparse format 1.0: the data section starts with the sparse
    /// map, in decimal text padded to a block.
    pub(super) fn is_sparse_1_0(&self) -> bool {
        self.sparse_major.as_deref() == Some(b"1") && self.sparse_minor.as_deref() == Some(b"0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_fields_parse_as_gnu_tar_reads_them() {
        assert_eq!(parse_octal(b"00000000017\0", "size"), Ok(15));
        assert_eq!(parse_octal(b"    17 \0\0\0\0\0", "size"), Ok(15));
        assert_eq!(parse_octal(b"\0\0\0\0", "size"), Ok(0));
        assert!(parse_octal(b"0001x\0", "size").is_err());
        assert!(parse_octal(b"0008\0", "size").is_err());
        assert!(parse_octal(b"77777777777777777777777", "size").is_err());
    }

    #[test]
    fn base256_sizes_parse_and_negative_ones_do_not() {
        let mut f = [0u8; 12];
        f[0] = 0x80;
        f[7] = 0x02; // 2 << 32
        assert_eq!(parse_number(&f, "size"), Ok(2 << 32));
        f[0] = 0xff;
        assert!(parse_number(&f, "size").is_err());
    }

    #[test]
    fn pax_records_apply_in_order_and_bad_ones_are_errors() {
        let mut pax = Pax::default();
        pax.apply(b"12 path=a/b\n9 size=7\n12 path=c/d\n").unwrap();
        assert_eq!(pax.path.as_deref(), Some(&b"c/d"[..]));
        assert_eq!(pax.size, Some(7));
        for bad in [
            &b"13 path=a/b"[..],
            b"x path=a\n",
            b"99 path=a\n",
            b"8 patha\n",
            b"11 size=1x\n",
            b"3 \n",
        ] {
            assert!(Pax::default().apply(bad).is_err(), "{}", bad.escape_ascii());
        }
    }
}
