//! POSIX ACLs, read straight from the kernel's xattr encoding.
//!
//! The kernel stores an ACL in `system.posix_acl_access` (and, for
//! directories, `system.posix_acl_default`) as a little-endian `u32` version
//! (2) followed by 8-byte entries `{u16 tag, u16 perm, u32 id}`, already sorted
//! by tag then id, the order libacl prints them in. Decoding that ourselves
//! avoids linking libacl, and the text produced is libacl's short form
//! (`acl_to_any_text(.., ',', TEXT_ABBREVIATE)`), e.g.
//! `u::rw-,u:alice:rwx,g::r--,m::rwx,o::r--`.

use std::collections::HashMap;
use std::fmt::Write as _;

const VERSION: u32 = 2;
pub(crate) const TAG_USER_OBJ: u16 = 0x01;
pub(crate) const TAG_USER: u16 = 0x02;
pub(crate) const TAG_GROUP_OBJ: u16 = 0x04;
pub(crate) const TAG_GROUP: u16 = 0x08;
pub(crate) const TAG_MASK: u16 = 0x10;
pub(crate) const TAG_OTHER: u16 = 0x20;
/// The id of an entry without a qualifier.
pub(crate) const UNDEFINED_ID: u32 = u32::MAX;

pub(crate) const ACCESS_XATTR: &str = "system.posix_acl_access";
pub(crate) const DEFAULT_XATTR: &str = "system.posix_acl_default";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AclEntry {
    pub tag: u16,
    pub perm: u16,
    pub id: u32,
}

/// A decoded ACL, entries in kernel order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Acl {
    pub entries: Vec<AclEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed POSIX ACL xattr: {0}")]
pub(crate) struct AclDecodeError(&'static str);

impl Acl {
    pub(crate) fn decode(raw: &[u8]) -> Result<Self, AclDecodeError> {
        if raw.len() < 4 || !(raw.len() - 4).is_multiple_of(8) {
            return Err(AclDecodeError("length is not 4 + 8*n bytes"));
        }
        let version = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
        if version != VERSION {
            return Err(AclDecodeError("unknown version"));
        }
        let entries = raw[4..]
            .chunks_exact(8)
            .map(|c| AclEntry {
                tag: u16::from_le_bytes([c[0], c[1]]),
                perm: u16::from_le_bytes([c[2], c[3]]),
                id: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        Ok(Self { entries })
    }

    /// The kernel's xattr value: the inverse of [`Acl::decode`]. Entries
    /// are written in the order held (the kernel wants them sorted by tag,
    /// then id).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut raw = Vec::with_capacity(4 + 8 * self.entries.len());
        raw.extend_from_slice(&VERSION.to_le_bytes());
        for e in &self.entries {
            raw.extend_from_slice(&e.tag.to_le_bytes());
            raw.extend_from_slice(&e.perm.to_le_bytes());
            raw.extend_from_slice(&e.id.to_le_bytes());
        }
        raw
    }

    /// The access ACL that the permission bits alone stand for: what libacl
    /// reports for a file without an access ACL xattr.
    pub(crate) fn from_mode(mode: u32) -> Self {
        let perm = |shift: u32| ((mode >> shift) & 7) as u16;
        Self {
            entries: vec![
                AclEntry {
                    tag: TAG_USER_OBJ,
                    perm: perm(6),
                    id: UNDEFINED_ID,
                },
                AclEntry {
                    tag: TAG_GROUP_OBJ,
                    perm: perm(3),
                    id: UNDEFINED_ID,
                },
                AclEntry {
                    tag: TAG_OTHER,
                    perm: perm(0),
                    id: UNDEFINED_ID,
                },
            ],
        }
    }

    /// Whether the ACL says more than the permission bits: it has named
    /// users or groups, or a mask (which hides the owning group's real
    /// permissions behind the mode's group bits).
    pub(crate) fn is_extended(&self) -> bool {
        self.entries
            .iter()
            .any(|e| matches!(e.tag, TAG_USER | TAG_GROUP | TAG_MASK))
    }

    /// Appends the short text form, each entry prefixed with `prefix` (`""`
    /// or `"d:"`), separated by commas.
    pub(crate) fn write_text(
        &self,
        prefix: &str,
        names: &mut NameCache,
        numeric: bool,
        out: &mut String,
    ) {
        for entry in &self.entries {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(prefix);
            let (tag, qualifier) = match entry.tag {
                TAG_USER_OBJ => ("u", None),
                TAG_USER => ("u", Some(names.user(entry.id, numeric))),
                TAG_GROUP_OBJ => ("g", None),
                TAG_GROUP => ("g", Some(names.group(entry.id, numeric))),
                TAG_MASK => ("m", None),
                TAG_OTHER => ("o", None),
                // Unknown tags cannot come from a Linux kernel today; keep
                // them visible rather than dropping them.
                other => {
                    let _ = write!(out, "?{other:x}:{}:", entry.id);
                    out.push_str(&perm_text(entry.perm));
                    continue;
                }
            };
            out.push_str(tag);
            out.push(':');
            if let Some(q) = qualifier {
                out.push_str(&q);
            }
            out.push(':');
            out.push_str(&perm_text(entry.perm));
        }
    }
}

fn perm_text(perm: u16) -> String {
    let mut s = String::with_capacity(3);
    s.push(if perm & 4 != 0 { 'r' } else { '-' });
    s.push(if perm & 2 != 0 { 'w' } else { '-' });
    s.push(if perm & 1 != 0 { 'x' } else { '-' });
    s
}

/// uid/gid → name lookups, cached: a tree with ACLs repeats the same few ids.
#[derive(Debug, Default)]
pub(crate) struct NameCache {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl NameCache {
    fn user(&mut self, id: u32, numeric: bool) -> String {
        if numeric {
            return id.to_string();
        }
        self.users
            .entry(id)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(id))
                    .ok()
                    .flatten()
                    .map(|u| u.name)
                    .filter(|n| is_safe_name(n))
                    .unwrap_or_else(|| id.to_string())
            })
            .clone()
    }

    fn group(&mut self, id: u32, numeric: bool) -> String {
        if numeric {
            return id.to_string();
        }
        self.groups
            .entry(id)
            .or_insert_with(|| {
                nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(id))
                    .ok()
                    .flatten()
                    .map(|g| g.name)
                    .filter(|n| is_safe_name(n))
                    .unwrap_or_else(|| id.to_string())
            })
            .clone()
    }
}

/// A name that can stand in the queue's metadata field and in ACL text
/// unambiguously. Directory-service names with spaces, commas or colons exist;
/// for those the numeric id is written instead, which libacl also does for ids
/// it cannot name. An all-digit name would read back as an id, so it is
/// refused too.
fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && !name.bytes().all(|b| b.is_ascii_digit())
        && name
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !",:/\\#".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let entries = entries
            .iter()
            .map(|&(tag, perm, id)| AclEntry { tag, perm, id })
            .collect();
        Acl { entries }.encode()
    }

    #[test]
    fn decodes_and_prints_short_form() {
        let raw = encode(&[
            (TAG_USER_OBJ, 6, u32::MAX),
            (TAG_USER, 7, 0),
            (TAG_GROUP_OBJ, 4, u32::MAX),
            (TAG_GROUP, 5, 0),
            (TAG_MASK, 7, u32::MAX),
            (TAG_OTHER, 4, u32::MAX),
        ]);
        let acl = Acl::decode(&raw).unwrap();
        assert!(acl.is_extended());
        let mut names = NameCache::default();
        let mut text = String::new();
        acl.write_text("", &mut names, false, &mut text);
        assert_eq!(text, "u::rw-,u:root:rwx,g::r--,g:root:r-x,m::rwx,o::r--");
        let mut numeric = String::new();
        acl.write_text("d:", &mut names, true, &mut numeric);
        assert_eq!(
            numeric,
            "d:u::rw-,d:u:0:rwx,d:g::r--,d:g:0:r-x,d:m::rwx,d:o::r--"
        );
    }

    #[test]
    fn minimal_acl_is_not_extended() {
        assert!(!Acl::from_mode(0o100644).is_extended());
        let mut text = String::new();
        Acl::from_mode(0o40750).write_text("", &mut NameCache::default(), false, &mut text);
        assert_eq!(text, "u::rwx,g::r-x,o::---");
    }

    #[test]
    fn unknown_ids_are_numeric() {
        let raw = encode(&[(TAG_USER_OBJ, 6, u32::MAX), (TAG_USER, 4, 4_000_000_000)]);
        let mut text = String::new();
        Acl::decode(&raw)
            .unwrap()
            .write_text("", &mut NameCache::default(), false, &mut text);
        assert_eq!(text, "u::rw-,u:4000000000:r--");
    }

    #[test]
    fn malformed_xattrs_are_errors() {
        assert!(Acl::decode(b"").is_err());
        assert!(Acl::decode(&[2, 0, 0, 0, 1]).is_err());
        assert!(Acl::decode(&[3, 0, 0, 0]).is_err());
    }

    #[test]
    fn unsafe_names_fall_back_to_ids() {
        assert!(is_safe_name("alice"));
        assert!(is_safe_name("machine$"));
        assert!(!is_safe_name("Domain Users"));
        assert!(!is_safe_name("a,b"));
        assert!(!is_safe_name("a:b"));
        assert!(!is_safe_name("1000"));
    }
}
