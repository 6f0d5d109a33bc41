//! Tahoe's hashes (`allmydata/util/hashutil.py`): SHA-256d (SHA-256 of
//! SHA-256) of a netstring-framed tag followed by the value, some truncated.

use sha2::{Digest, Sha256};

/// `allmydata_immutable_key_to_storage_index_v1`, truncated to 16 bytes.
pub(crate) const STORAGE_INDEX_TAG: &[u8] = b"allmydata_immutable_key_to_storage_index_v1";
/// The hash of one erasure-coded block.
pub(crate) const BLOCK_TAG: &[u8] = b"allmydata_encoded_subshare_v1";
/// The hash of the URI extension block (in the cap).
pub(crate) const UEB_TAG: &[u8] = b"allmydata_uri_extension_v1";
/// The hash of the whole ciphertext.
pub(crate) const CIPHERTEXT_TAG: &[u8] = b"allmydata_crypttext_v1";
/// The hash of one ciphertext segment (the crypttext hash tree's leaves).
pub(crate) const CIPHERTEXT_SEGMENT_TAG: &[u8] = b"allmydata_crypttext_segment_v1";
/// The convergence key's tag, before the secret and the parameters.
pub(crate) const CONVERGENT_ENCRYPTION_TAG: &[u8] =
    b"allmydata_immutable_content_to_key_with_added_secret_v1+";
/// Hash tree padding leaves.
pub(crate) const EMPTY_LEAF_TAG: &[u8] = b"Merkle tree empty leaf";
/// Hash tree inner nodes.
pub(crate) const INTERNAL_NODE_TAG: &[u8] = b"Merkle tree internal node";

/// A 32-byte hash.
pub(crate) type Hash = [u8; 32];

/// `netstring(s)`: `b"%d:%s," % (len(s), s)`.
pub(crate) fn netstring(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 12);
    push_netstring(&mut out, s);
    out
}

/// Appends `netstring(s)` to `out`.
pub(crate) fn push_netstring(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(s);
    out.push(b',');
}

/// A streaming tagged hasher (`tagged_hasher`): SHA-256d over
/// `netstring(tag)` then the data.
#[derive(Clone)]
pub(crate) struct TaggedHasher(Sha256);

impl TaggedHasher {
    /// A hasher for `tag`.
    pub(crate) fn new(tag: &[u8]) -> TaggedHasher {
        let mut h = Sha256::new();
        h.update(netstring(tag));
        TaggedHasher(h)
    }

    /// Adds data.
    pub(crate) fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The SHA-256d digest.
    pub(crate) fn finish(self) -> Hash {
        Sha256::digest(self.0.finalize()).into()
    }
}

/// `tagged_hash(tag, val)`.
pub(crate) fn tagged_hash(tag: &[u8], val: &[u8]) -> Hash {
    let mut h = TaggedHasher::new(tag);
    h.update(val);
    h.finish()
}

/// `tagged_pair_hash(tag, a, b)`: the netstrings of both values after the tag.
pub(crate) fn tagged_pair_hash(tag: &[u8], a: &[u8], b: &[u8]) -> Hash {
    let mut h = TaggedHasher::new(tag);
    h.update(&netstring(a));
    h.update(&netstring(b));
    h.finish()
}

/// The first 16 bytes of a hash.
fn truncate16(h: &Hash) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&h[..16]);
    out
}

/// `storage_index_hash(key)`: the storage index of an object with AES key `key`.
pub(crate) fn storage_index(key: &[u8; 16]) -> [u8; 16] {
    truncate16(&tagged_hash(STORAGE_INDEX_TAG, key))
}

/// `block_hash(data)`.
pub(crate) fn block_hash(data: &[u8]) -> Hash {
    tagged_hash(BLOCK_TAG, data)
}

/// `uri_extension_hash(data)`.
pub(crate) fn uri_extension_hash(data: &[u8]) -> Hash {
    tagged_hash(UEB_TAG, data)
}

/// The convergence hasher (`convergence_hasher(k, n, segsize, secret)`):
/// the tag is `CONVERGENT_ENCRYPTION_TAG + netstring(secret) +
/// netstring("k,n,segsize")`, where segsize is the file's *effective*
/// segment size; the plaintext follows; the key is the first 16 bytes.
#[derive(Clone)]
pub(crate) struct ConvergenceHasher(TaggedHasher);

impl ConvergenceHasher {
    /// A hasher for a file encoded k-of-n with effective segment size
    /// `segment_size`, under the convergence secret `secret`.
    pub(crate) fn new(k: u16, n: u16, segment_size: u64, secret: &[u8]) -> ConvergenceHasher {
        let mut tag = CONVERGENT_ENCRYPTION_TAG.to_vec();
        push_netstring(&mut tag, secret);
        push_netstring(&mut tag, format!("{k},{n},{segment_size}").as_bytes());
        ConvergenceHasher(TaggedHasher::new(&tag))
    }

    /// Adds plaintext.
    pub(crate) fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The 16-byte AES key.
    pub(crate) fn finish(self) -> [u8; 16] {
        truncate16(&self.0.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netstrings() {
        assert_eq!(netstring(b""), b"0:,");
        assert_eq!(netstring(b"abc"), b"3:abc,");
    }

    #[test]
    fn tagged_hash_is_sha256d_of_netstring_tag() {
        let mut inner = Sha256::new();
        inner.update(b"3:tag,");
        inner.update(b"value");
        let expected: Hash = Sha256::digest(inner.finalize()).into();
        assert_eq!(tagged_hash(b"tag", b"value"), expected);
        let pair = tagged_hash(b"tag", b"1:a,2:bc,");
        assert_eq!(tagged_pair_hash(b"tag", b"a", b"bc"), pair);
    }
}
