//! Deduplication keys: SHA-256 over an unambiguous encoding of fields.
//!
//! Every field is written as a one-byte type tag, its length as a big-endian
//! `u64`, then its bytes. That encoding is prefix-free, so two different
//! field lists (different kinds, counts, types, or a byte moved from one
//! field to the next) never hash the same input; a collision needs a
//! SHA-256 collision. The first field is a domain string with a version, so
//! a future change of a key recipe can bump it and make every old key miss
//! (a re-upload, never a wrong hit).
//!
//! The recipes for files, symlinks and directories are fixed by
//! [`FileKey`], [`SymlinkKey`] and [`dir_key`]; callers that build keys by
//! hand with [`KeyBuilder`] must feed the same fields in the same order.
//! `docs/cache.md` explains why each field is there.

use std::fmt;

use sha2::{Digest, Sha256};

/// Changes every key when bumped.
const DOMAIN: &[u8] = b"lafs-backup object key v1";

const TAG_DOMAIN: u8 = b'D';
const TAG_KIND: u8 = b'k';
const TAG_BYTES: u8 = b'b';
const TAG_STR: u8 = b's';
const TAG_U64: u8 = b'u';
const TAG_I128: u8 = b'i';

/// The dedup key of one object: 32 bytes of SHA-256.
///
/// Not a secret like a cap, but it is still never put into error messages;
/// its `Debug` form shows only the first 6 bytes in hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ObjectKey([u8; 32]);

impl ObjectKey {
    #[cfg(test)]
    pub(crate) const fn from_bytes(bytes: [u8; 32]) -> Self {
        ObjectKey(bytes)
    }

    /// A key read back from where it was written (a queue's reused line).
    pub(crate) const fn from_array(bytes: [u8; 32]) -> Self {
        ObjectKey(bytes)
    }

    pub(crate) const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first 6 bytes in lower-case hex, for logs and `Debug`.
    pub(crate) fn short_hex(&self) -> String {
        self.0[..6].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectKey({}…)", self.short_hex())
    }
}

/// Builds an [`ObjectKey`] from typed, length-prefixed fields, so that
/// `"ab", "c"` and `"a", "bc"` give different keys (`builder_fields_do_not_run_together` in
/// the cache tests).
#[derive(Clone)]
#[must_use]
pub(crate) struct KeyBuilder {
    hasher: Sha256,
}

impl KeyBuilder {
    /// Starts a key of the given kind (`"file"`, `"symlink"`, `"dir"`).
    pub(crate) fn new(kind: &str) -> Self {
        KeyBuilder {
            hasher: Sha256::new(),
        }
        .field(TAG_DOMAIN, DOMAIN)
        .field(TAG_KIND, kind.as_bytes())
    }

    fn field(mut self, tag: u8, data: &[u8]) -> Self {
        self.put(tag, data);
        self
    }

    /// Adds one field in place (for builders fed in a loop).
    fn put(&mut self, tag: u8, data: &[u8]) {
        self.hasher.update([tag]);
        self.hasher.update((data.len() as u64).to_be_bytes());
        self.hasher.update(data);
    }

    /// [`bytes`](Self::bytes) in place.
    pub(crate) fn put_bytes(&mut self, data: &[u8]) {
        self.put(TAG_BYTES, data);
    }

    /// [`u64`](Self::u64) in place.
    pub(crate) fn put_u64(&mut self, value: u64) {
        self.put(TAG_U64, &value.to_be_bytes());
    }

    /// [`i128`](Self::i128) in place.
    pub(crate) fn put_i128(&mut self, value: i128) {
        self.put(TAG_I128, &value.to_be_bytes());
    }

    /// Raw bytes (a path, a symlink target).
    pub(crate) fn bytes(self, data: &[u8]) -> Self {
        self.field(TAG_BYTES, data)
    }

    /// Text (metadata JSON, an edge name, a cap, an encoding decision).
    /// Tagged differently from [`bytes`](Self::bytes) of the same content.
    pub(crate) fn str(self, text: &str) -> Self {
        self.field(TAG_STR, text.as_bytes())
    }

    pub(crate) fn u64(self, value: u64) -> Self {
        self.field(TAG_U64, &value.to_be_bytes())
    }

    /// A signed 128-bit number (nanosecond timestamps, which may be negative).
    pub(crate) fn i128(self, value: i128) -> Self {
        self.field(TAG_I128, &value.to_be_bytes())
    }

    pub(crate) fn finish(self) -> ObjectKey {
        ObjectKey(self.hasher.finalize().into())
    }
}

/// The fields of a regular file's key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileKey<'a> {
    /// The path relative to the source root, raw bytes.
    pub(crate) path: &'a [u8],
    /// The edge metadata JSON exactly as it goes into the parent directory.
    pub(crate) meta_json: &'a str,
    pub(crate) mtime_ns: i128,
    pub(crate) ctime_ns: i128,
    pub(crate) size: u64,
    pub(crate) inode: u64,
    /// The compression decision, e.g. `"enc:xz"` or `"enc:none"`.
    pub(crate) encoding: &'a str,
}

impl FileKey<'_> {
    pub(crate) fn key(&self) -> ObjectKey {
        KeyBuilder::new("file")
            .bytes(self.path)
            .str(self.meta_json)
            .i128(self.mtime_ns)
            .i128(self.ctime_ns)
            .u64(self.size)
            .u64(self.inode)
            .str(self.encoding)
            .finish()
    }
}

/// The fields of a symlink's key. The content uploaded is the target.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SymlinkKey<'a> {
    pub(crate) path: &'a [u8],
    pub(crate) meta_json: &'a str,
    pub(crate) target: &'a [u8],
    pub(crate) ctime_ns: i128,
    pub(crate) inode: u64,
}

impl SymlinkKey<'_> {
    pub(crate) fn key(&self) -> ObjectKey {
        KeyBuilder::new("symlink")
            .bytes(self.path)
            .str(self.meta_json)
            .bytes(self.target)
            .i128(self.ctime_ns)
            .u64(self.inode)
            .finish()
    }
}

/// One child edge of a directory, as it goes into the directory's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct DirChild<'a> {
    /// The edge name exactly as sent to the gateway.
    pub(crate) name: &'a str,
    /// The child's cap (`Cap::as_str`).
    pub(crate) cap: &'a str,
    /// The child's edge metadata JSON exactly as sent.
    pub(crate) meta_json: &'a str,
}

/// A directory's key: its own edge metadata, then its children sorted by
/// name (then cap, then metadata, so even a duplicate name sorts the same
/// way every time) as `(name, cap, metadata)` triples. The order the
/// children are given in does not matter; their names do.
pub(crate) fn dir_key(meta_json: &str, children: &[DirChild<'_>]) -> ObjectKey {
    let mut sorted: Vec<DirChild<'_>> = children.to_vec();
    sorted.sort();
    let mut key = KeyBuilder::new("dir").str(meta_json);
    for child in &sorted {
        key = key.str(child.name).str(child.cap).str(child.meta_json);
    }
    key.finish()
}
