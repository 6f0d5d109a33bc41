//! Subtree signatures: how a re-run skips unchanged directories wholesale.
//!
//! A directory's *signature* is a hash over everything the upload phase
//! would read to build that directory's object: for each entry beneath it,
//! in queue order, its name, its `lstat` fields (type and mode, owner, size,
//! mtime, ctime, inode, device, link count, rdev) and its queue metadata
//! (capabilities, ACLs), and for a subdirectory that subdirectory's own
//! signature; plus the directory's path (compression and chunking rules
//! choose by path) and a fingerprint of the settings that shape objects
//! ([`fingerprint`]). Any change to an entry's content, xattrs, mode or owner
//! moves its ctime, so an equal signature means the upload phase would
//! rebuild the same directory object.
//!
//! The upload phase computes the signature of every directory it completes
//! from its own `lstat` results and records `signature → cap` in the cache
//! (`subtrees`, docs/cache.md) when nothing beneath was skipped. The next
//! scan computes the same signatures from its walk; when a directory's
//! signature is in the cache and the oldest lease beneath it is fresh, the
//! scan takes that directory's lines back out of the queue and writes one
//! *reused* line for it instead (docs/queue-format.md), so the upload phase
//! neither stats, reads xattrs of, nor touches the cache for anything in it.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt as _;

use crate::cache::{KeyBuilder, ObjectKey};
use crate::meta::{EntryMeta, ctime_ns, mtime_ns};

/// Accumulates one directory's signature, child by child in queue order.
pub(crate) struct SigBuilder {
    key: KeyBuilder,
}

impl SigBuilder {
    /// The signature of the directory at `dir` (relative path) under the
    /// settings `fingerprint`.
    pub(crate) fn new(fingerprint: &[u8; 32], dir: &[u8]) -> Self {
        let mut key = KeyBuilder::new("subtree");
        key.put_bytes(fingerprint);
        key.put_bytes(dir);
        SigBuilder { key }
    }

    /// Adds one child: its raw name, its `lstat`, its queue metadata, and
    /// for a directory its own signature.
    pub(crate) fn child(
        &mut self,
        name: &[u8],
        md: &Metadata,
        meta: &EntryMeta,
        sub: Option<&ObjectKey>,
    ) {
        let k = &mut self.key;
        k.put_bytes(name);
        k.put_u64(u64::from(md.mode()));
        k.put_u64(u64::from(md.uid()));
        k.put_u64(u64::from(md.gid()));
        k.put_u64(md.size());
        k.put_i128(mtime_ns(md));
        k.put_i128(ctime_ns(md));
        k.put_u64(md.ino());
        k.put_u64(md.dev());
        k.put_u64(md.nlink());
        k.put_u64(md.rdev());
        let mut field = Vec::with_capacity(32);
        meta.write_queue_field(&mut field);
        k.put_bytes(&field);
        // Always present (empty for a non-directory): the encoding stays
        // prefix-free whatever the child's kind.
        k.put_bytes(sub.map_or(&[][..], |s| &s.as_bytes()[..]));
    }

    pub(crate) fn finish(self) -> ObjectKey {
        self.key.finish()
    }
}

/// The settings that shape the objects a tree becomes, hashed: a change to
/// any of them (a new compression rule, chunking, a new version of this
/// program) makes every signature miss once, so the next run takes the
/// per-entry path and stores what the new settings say.
pub(crate) fn fingerprint(settings: &str) -> [u8; 32] {
    *KeyBuilder::new("subtree settings")
        .str(env!("CARGO_PKG_VERSION"))
        .str(settings)
        .finish()
        .as_bytes()
}

/// A reused directory in the queue: its signature, and how many entries
/// and bytes of regular-file content lie beneath it (for the backup's
/// counts, which the upload phase no longer sees one by one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reused {
    pub(crate) sig: ObjectKey,
    /// Entries beneath the directory, not counting itself.
    pub(crate) entries: u64,
    /// Sum of the sizes of the regular files beneath it.
    pub(crate) bytes: u64,
}

/// The marker that starts a reused line's suffix (queue format v3).
pub(crate) const MARKER: &str = "#subtree=";

impl Reused {
    /// Appends `#subtree=HEX:ENTRIES:BYTES`.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(MARKER.as_bytes());
        for b in self.sig.as_bytes() {
            out.extend_from_slice(format!("{b:02x}").as_bytes());
        }
        out.extend_from_slice(format!(":{}:{}", self.entries, self.bytes).as_bytes());
    }

    /// Parses what follows [`MARKER`].
    pub(crate) fn parse(text: &[u8]) -> Result<Reused, String> {
        let bad = || "a damaged #subtree= field (expected 64 hex digits:ENTRIES:BYTES)".to_owned();
        let text = std::str::from_utf8(text).map_err(|_| bad())?;
        let mut parts = text.split(':');
        let (Some(hex), Some(entries), Some(bytes), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(bad());
        }
        let mut sig = [0u8; 32];
        for (i, byte) in sig.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        let number = |s: &str| {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            s.parse::<u64>().map_err(|_| bad())
        };
        Ok(Reused {
            sig: ObjectKey::from_array(sig),
            entries: number(entries)?,
            bytes: number(bytes)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn meta(s: &str) -> EntryMeta {
        EntryMeta::parse_queue_field(s.as_bytes()).unwrap()
    }

    #[test]
    fn reused_round_trips_and_rejects_damage() {
        let r = Reused {
            sig: ObjectKey::from_array([0xab; 32]),
            entries: 12,
            bytes: 3456,
        };
        let mut out = Vec::new();
        r.write(&mut out);
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(text, format!("#subtree={}:12:3456", "ab".repeat(32)));
        let back = Reused::parse(&out[MARKER.len()..]).unwrap();
        assert_eq!(back, r);
        for bad in [
            "",
            "ab:1:2",
            &format!("{}:1", "ab".repeat(32)),
            &format!("{}:1:2:3", "ab".repeat(32)),
            &format!("{}:x:2", "ab".repeat(32)),
            &format!("{}:-1:2", "ab".repeat(32)),
            &format!("{}:1:2", "AB".repeat(32)),
            &format!("{}:1:99999999999999999999999", "ab".repeat(32)),
        ] {
            assert!(Reused::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn signatures_see_every_input() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, b"x").unwrap();
        let md = fs::symlink_metadata(&f).unwrap();
        let fp = fingerprint("a");
        let sig = |fp: &[u8; 32], dir: &[u8], name: &[u8], m: &str, sub: Option<&ObjectKey>| {
            let mut b = SigBuilder::new(fp, dir);
            b.child(name, &md, &meta(m), sub);
            b.finish()
        };
        let base = sig(&fp, b"d", b"f", "0:0:100644", None);
        assert_eq!(base, sig(&fp, b"d", b"f", "0:0:100644", None));
        assert_ne!(base, sig(&fingerprint("b"), b"d", b"f", "0:0:100644", None));
        assert_ne!(base, sig(&fp, b"e", b"f", "0:0:100644", None));
        assert_ne!(base, sig(&fp, b"d", b"g", "0:0:100644", None));
        assert_ne!(
            base,
            sig(&fp, b"d", b"f", "0:0:100644/cap_net_raw=ep", None)
        );
        assert_ne!(base, sig(&fp, b"d", b"f", "0:0:100644", Some(&base)));
        // The content moves the ctime and the size.
        fs::write(&f, b"yy").unwrap();
        let md2 = fs::symlink_metadata(&f).unwrap();
        let mut b = SigBuilder::new(&fp, b"d");
        b.child(b"f", &md2, &meta("0:0:100644"), None);
        assert_ne!(base, b.finish());
        // No children at all differs from one child.
        assert_ne!(base, SigBuilder::new(&fp, b"d").finish());
    }
}
