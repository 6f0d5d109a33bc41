//! Share layout (`allmydata/immutable/layout.py`): a header with the
//! offsets of each section, the blocks, the (unused, zero-filled) plaintext
//! hash tree, the crypttext hash tree, the block hash tree, the share hash
//! chain as (2-byte index, 32-byte hash) pairs, then the UEB preceded by its
//! length. v1 uses 4-byte fields (header 0x24 bytes); v2, for shares whose
//! sizes or offsets do not fit in 32 bits, 8-byte fields (header 0x44 bytes,
//! the version number still 4 bytes).

use super::hashtree::roundup_pow2;

/// Where each section of a share starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    /// 1 or 2.
    pub(crate) version: u32,
    /// The size of a full block (segment_size / k); informative only.
    pub(crate) block_size: u64,
    /// The size of all blocks together (ceil(size / k)); informative only.
    pub(crate) data_size: u64,
    /// Offset of the first block.
    pub(crate) data: u64,
    /// Offset of the unused plaintext hash tree.
    pub(crate) plaintext_hash_tree: u64,
    /// Offset of the crypttext hash tree.
    pub(crate) crypttext_hash_tree: u64,
    /// Offset of the block hash tree.
    pub(crate) block_hashes: u64,
    /// Offset of the share hash chain.
    pub(crate) share_hashes: u64,
    /// Offset of the UEB length (then the UEB).
    pub(crate) uri_extension: u64,
}

/// The size of a complete hash tree over `leaves` leaves, in bytes.
/// Callers bound `leaves` by [`super::MAX_SEGMENTS`]; beyond that the
/// result saturates instead of overflowing.
pub(crate) fn tree_bytes(leaves: u64) -> u64 {
    if leaves > super::MAX_SEGMENTS {
        return u64::MAX;
    }
    let width = roundup_pow2(leaves as usize) as u64;
    (2 * width - 1) * 32
}

impl Layout {
    /// The layout of a new share (`make_write_bucket_proxy`): v1 when every
    /// size and offset fits in 32 bits, v2 otherwise.
    pub(crate) fn new(
        block_size: u64,
        data_size: u64,
        num_segments: u64,
        num_share_hashes: u64,
    ) -> Layout {
        let v1 = Layout::with_version(1, block_size, data_size, num_segments, num_share_hashes);
        let fits = block_size < 1 << 32 && data_size < 1 << 32 && v1.uri_extension < 1 << 32;
        if fits {
            v1
        } else {
            Layout::with_version(2, block_size, data_size, num_segments, num_share_hashes)
        }
    }

    fn with_version(
        version: u32,
        block_size: u64,
        data_size: u64,
        num_segments: u64,
        num_share_hashes: u64,
    ) -> Layout {
        let tree = tree_bytes(num_segments);
        let data = if version == 1 { 0x24 } else { 0x44 };
        let plaintext_hash_tree = data + data_size;
        let crypttext_hash_tree = plaintext_hash_tree + tree;
        let block_hashes = crypttext_hash_tree + tree;
        let share_hashes = block_hashes + tree;
        let uri_extension = share_hashes + num_share_hashes * 34;
        Layout {
            version,
            block_size,
            data_size,
            data,
            plaintext_hash_tree,
            crypttext_hash_tree,
            block_hashes,
            share_hashes,
            uri_extension,
        }
    }

    /// The width of the UEB length field.
    pub(crate) fn field_size(&self) -> u64 {
        if self.version == 1 { 4 } else { 8 }
    }

    /// The total share size for a UEB of `ueb_size` bytes.
    pub(crate) fn share_size(&self, ueb_size: u64) -> u64 {
        self.uri_extension + self.field_size() + ueb_size
    }

    /// The header bytes.
    pub(crate) fn header(&self) -> Vec<u8> {
        let fields = [
            self.block_size,
            self.data_size,
            self.data,
            self.plaintext_hash_tree,
            self.crypttext_hash_tree,
            self.block_hashes,
            self.share_hashes,
            self.uri_extension,
        ];
        let mut out = self.version.to_be_bytes().to_vec();
        for f in fields {
            if self.version == 1 {
                // Checked by `new`: every v1 field fits.
                out.extend_from_slice(&u32::try_from(f).unwrap_or(u32::MAX).to_be_bytes());
            } else {
                out.extend_from_slice(&f.to_be_bytes());
            }
        }
        out
    }

    /// Parses a header (at least 0x44 bytes, or 0x24 for v1; the offsets
    /// must be in order). `Err` says what is wrong.
    pub(crate) fn parse(header: &[u8]) -> Result<Layout, String> {
        let version = header
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or("share shorter than its header")?;
        let (width, len) = match version {
            1 => (4, 0x24),
            2 => (8, 0x44),
            v => return Err(format!("unknown share version {v}")),
        };
        if header.len() < len {
            return Err("share shorter than its header".into());
        }
        let field = |i: usize| -> u64 {
            let at = 4 + i * width;
            header[at..at + width]
                .iter()
                .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
        };
        let l = Layout {
            version,
            block_size: field(0),
            data_size: field(1),
            data: field(2),
            plaintext_hash_tree: field(3),
            crypttext_hash_tree: field(4),
            block_hashes: field(5),
            share_hashes: field(6),
            uri_extension: field(7),
        };
        let ordered = [
            len as u64,
            l.data,
            l.plaintext_hash_tree,
            l.crypttext_hash_tree,
            l.block_hashes,
            l.share_hashes,
            l.uri_extension,
        ]
        .windows(2)
        .all(|w| w[0] <= w[1]);
        if !ordered || l.data != len as u64 {
            return Err("share offsets out of order".into());
        }
        Ok(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2() {
        let l = Layout::new(100, 300, 3, 5);
        assert_eq!(l.version, 1);
        assert_eq!(l.data, 0x24);
        assert_eq!(l.crypttext_hash_tree, 0x24 + 300 + 7 * 32);
        assert_eq!(l.uri_extension, 0x24 + 300 + 3 * 7 * 32 + 5 * 34);
        assert_eq!(l.header().len(), 0x24);
        assert_eq!(Layout::parse(&l.header()).unwrap(), l);
        let big = Layout::new(1 << 20, 5 << 30, 5 << 10, 5);
        assert_eq!(big.version, 2);
        assert_eq!(big.header().len(), 0x44);
        assert_eq!(Layout::parse(&big.header()).unwrap(), big);
        assert!(Layout::parse(&[0, 0, 0, 3]).is_err());
        assert!(Layout::parse(&l.header()[..20]).is_err());
        let mut bad = l.header();
        bad[0x22] = 0;
        assert!(Layout::parse(&bad).is_err());
    }
}
