//! Applying an entry's recorded metadata, in an order that sticks:
//! ownership → (stale ACL removal) → mode → ACLs → capabilities → other
//! xattrs → mtime. `chown` clears setuid/setgid bits and capabilities, so
//! it comes first; times come last because every other change touches the
//! inode's ctime only, but writing into a directory changes its mtime.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::PathBuf;
use std::str::FromStr as _;

use nix::fcntl::AtFlags;
use nix::sys::stat::{FchmodatFlags, Mode, UtimensatFlags, fchmod, fchmodat, futimens, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Group, Uid, User, fchown, fchownat};
use xattr::FileExt as _;

use crate::edge::EdgeMeta;
use crate::meta::CAPS_XATTR;
use crate::meta::acl::{
    ACCESS_XATTR, Acl, AclEntry, DEFAULT_XATTR, TAG_GROUP, TAG_GROUP_OBJ, TAG_MASK, TAG_OTHER,
    TAG_USER, TAG_USER_OBJ, UNDEFINED_ID,
};

/// What to apply metadata to.
pub(crate) enum At<'a> {
    /// An open file or directory (regular files and directories).
    Open(&'a File),
    /// A name in a directory, never followed (symlinks, special files).
    Name(BorrowedFd<'a>, &'a OsStr),
}

impl At<'_> {
    /// `/proc/self/fd/DIR/NAME`: the directory is reached through its fd,
    /// the last component is not followed by the `l*xattr` calls.
    fn proc_path(dir: BorrowedFd<'_>, name: &OsStr) -> PathBuf {
        let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
        p.push(name);
        p
    }

    fn set_xattr(&self, name: &str, value: &[u8]) -> std::io::Result<()> {
        match self {
            At::Open(f) => f.set_xattr(name, value),
            At::Name(dir, n) => xattr::set(Self::proc_path(*dir, n), name, value),
        }
    }

    fn remove_xattr(&self, name: &str) {
        // Only used to drop an inherited ACL; "no such attribute" is fine.
        let _ = match self {
            At::Open(f) => f.remove_xattr(name),
            At::Name(dir, n) => xattr::remove(Self::proc_path(*dir, n), name),
        };
    }
}

/// How to apply: as root (ownership, capabilities) or not, and what the
/// restore's safety options (`--no-owner`, `--no-setuid`, `--no-caps`,
/// `--no-xattrs`) hold back.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ctx {
    pub root: bool,
    /// Leave ownership to the restoring user (no `chown`).
    pub no_owner: bool,
    /// Clear the setuid and setgid bits of non-directories.
    pub no_setuid: bool,
    /// Set no file capabilities.
    pub no_caps: bool,
    /// Set no extended attributes other than the POSIX ACLs and the file
    /// capabilities (which have options of their own: ACLs are part of the
    /// permissions, and are always restored).
    pub no_xattrs: bool,
}

impl Ctx {
    /// The permission bits `mode` gets on an entry (`is_dir`): all twelve,
    /// less setuid/setgid on a non-directory under `--no-setuid` (setgid on
    /// a directory only makes new files inherit its group).
    pub(crate) fn mode_bits(&self, mode: u32, is_dir: bool) -> u32 {
        let bits = mode & 0o7777;
        if self.no_setuid && !is_dir {
            bits & !0o6000
        } else {
            bits
        }
    }
}

/// Applies `meta` to `at`. `is_dir` enables the default ACL; `is_symlink`
/// skips mode, ACLs and capabilities (Linux has none for symlinks).
/// Returns the problems (each a short text; the caller names the entry).
pub(crate) fn apply(
    at: &At<'_>,
    meta: &EdgeMeta,
    is_dir: bool,
    is_symlink: bool,
    ctx: Ctx,
) -> Vec<String> {
    let mut problems = Vec::new();
    // 1. Ownership (root only: an unprivileged chown would fail anyway).
    if ctx.root && !ctx.no_owner {
        let (uid, gid) = (Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)));
        let r = match at {
            At::Open(f) => fchown(f.as_fd(), uid, gid),
            At::Name(dir, n) => fchownat(*dir, *n, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW),
        };
        if let Err(e) = r {
            problems.push(format!("cannot set owner {}:{}: {e}", meta.uid, meta.gid));
        }
    }
    if !is_symlink {
        // 2. An ACL inherited from a default ACL that the backup did not
        // record must go before the mode is set.
        if meta.acls.is_none() {
            at.remove_xattr(ACCESS_XATTR);
            if is_dir {
                at.remove_xattr(DEFAULT_XATTR);
            }
        }
        // 3. The full mode, setuid/setgid/sticky included.
        if let Some(mode) = meta.mode {
            let bits = ctx.mode_bits(mode, is_dir);
            let m = Mode::from_bits_truncate(bits);
            let r = match at {
                At::Open(f) => fchmod(f.as_fd(), m),
                At::Name(dir, n) => fchmodat(*dir, *n, m, FchmodatFlags::FollowSymlink),
            };
            if let Err(e) = r {
                problems.push(format!("cannot set mode {bits:o}: {e}"));
            }
        }
        // 4. ACLs.
        if let Some(acls) = &meta.acls {
            match encode_acls(acls, meta.acl_ids.as_deref()) {
                Ok((access, default)) => {
                    if let Some(a) = access
                        && let Err(e) = at.set_xattr(ACCESS_XATTR, &a)
                    {
                        problems.push(format!("cannot set the access ACL: {e}"));
                    }
                    if let Some(d) = default {
                        if !is_dir {
                            problems.push("a default ACL on a non-directory is ignored".into());
                        } else if let Err(e) = at.set_xattr(DEFAULT_XATTR, &d) {
                            problems.push(format!("cannot set the default ACL: {e}"));
                        }
                    }
                }
                Err(e) => problems.push(format!("bad ACL {acls:?}: {e}")),
            }
        }
        // 5. File capabilities (after chown, which clears them).
        if let Some(caps) = meta.caps.as_ref().filter(|_| !ctx.no_caps) {
            match capctl::FileCaps::from_str(&caps.replace(';', " ")) {
                Ok(fc) => {
                    if let Err(e) = at.set_xattr(CAPS_XATTR, &fc.pack_attrs()) {
                        problems.push(format!("cannot set capabilities {caps:?}: {e}"));
                    }
                }
                Err(e) => problems.push(format!("bad capabilities {caps:?}: {e}")),
            }
        }
    }
    // 6. Other xattrs.
    for (name, value) in meta.xattrs.iter().filter(|_| !ctx.no_xattrs) {
        if name == ACCESS_XATTR || name == DEFAULT_XATTR || name == CAPS_XATTR {
            continue;
        }
        if let Err(e) = at.set_xattr(name, value) {
            problems.push(format!("cannot set xattr {name:?}: {e}"));
        }
    }
    // 7. Modification time, to the nanosecond; access time left alone.
    if let Some(ns) = meta.mtime_ns {
        match timespec(ns) {
            Some(mtime) => {
                let r = match at {
                    At::Open(f) => futimens(f.as_fd(), &TimeSpec::UTIME_OMIT, &mtime),
                    At::Name(dir, n) => utimensat(
                        *dir,
                        *n,
                        &TimeSpec::UTIME_OMIT,
                        &mtime,
                        UtimensatFlags::NoFollowSymlink,
                    ),
                };
                if let Err(e) = r {
                    problems.push(format!("cannot set mtime: {e}"));
                }
            }
            None => problems.push(format!("mtime_ns {ns} is out of range")),
        }
    }
    problems
}

fn timespec(ns: i128) -> Option<TimeSpec> {
    let secs = ns.div_euclid(1_000_000_000);
    let nsec = ns.rem_euclid(1_000_000_000);
    Some(TimeSpec::new(
        i64::try_from(secs).ok()?,
        i64::try_from(nsec).ok()?,
    ))
}

/// The recorded mtime of `meta` as (seconds, nanoseconds), for comparisons.
pub(crate) fn mtime_parts(meta: &EdgeMeta) -> Option<(i64, i64)> {
    let ns = meta.mtime_ns?;
    Some((
        i64::try_from(ns.div_euclid(1_000_000_000)).ok()?,
        i64::try_from(ns.rem_euclid(1_000_000_000)).ok()?,
    ))
}

/// The kernel encodings of an access and a default ACL.
pub(crate) type AclXattrs = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Encodes the short ACL text (entries joined by `,`, default entries
/// prefixed `d:`) as the kernel's xattr values (access, default). A named
/// qualifier is resolved by name on this machine when the name exists,
/// else taken from the same entry of `ids` (`acl_ids`); an all-digit
/// qualifier is an id.
pub(crate) fn encode_acls(text: &str, ids: Option<&str>) -> Result<AclXattrs, String> {
    let entries: Vec<&str> = text.split(',').filter(|e| !e.is_empty()).collect();
    let id_entries: Option<Vec<&str>> =
        ids.map(|t| t.split(',').filter(|e| !e.is_empty()).collect());
    if let Some(ie) = &id_entries
        && ie.len() != entries.len()
    {
        return Err("acl_ids does not match acls".into());
    }
    let mut access: Vec<AclEntry> = Vec::new();
    let mut default: Vec<AclEntry> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let (is_default, body) = match entry
            .strip_prefix("d:")
            .or_else(|| entry.strip_prefix("default:"))
        {
            Some(rest) => (true, rest),
            None => (false, *entry),
        };
        let mut parts = body.splitn(3, ':');
        let (Some(tag), Some(qual), Some(perms)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("entry {entry:?} is not TAG:QUALIFIER:PERMS"));
        };
        let perm = parse_perms(perms).ok_or_else(|| format!("entry {entry:?}: bad permissions"))?;
        let user = matches!(tag, "u" | "user");
        let group = matches!(tag, "g" | "group");
        let (tag, id) = match (tag, qual.is_empty()) {
            (_, true) if user => (TAG_USER_OBJ, UNDEFINED_ID),
            (_, true) if group => (TAG_GROUP_OBJ, UNDEFINED_ID),
            ("m" | "mask", _) => (TAG_MASK, UNDEFINED_ID),
            ("o" | "other", _) => (TAG_OTHER, UNDEFINED_ID),
            (_, false) if user || group => {
                let fallback = id_entries.as_ref().map(|ie| ie[i]);
                let id = resolve(qual, user, fallback)
                    .ok_or_else(|| format!("{qual:?} is not known here and has no recorded id"))?;
                (if user { TAG_USER } else { TAG_GROUP }, id)
            }
            _ => return Err(format!("entry {entry:?}: unknown tag")),
        };
        let list = if is_default {
            &mut default
        } else {
            &mut access
        };
        list.push(AclEntry { tag, perm, id });
    }
    Ok((pack(access), pack(default)))
}

fn parse_perms(p: &str) -> Option<u16> {
    let mut bits = 0;
    for c in p.chars() {
        bits |= match c {
            'r' => 4,
            'w' => 2,
            'x' => 1,
            '-' => 0,
            _ => return None,
        };
    }
    Some(bits)
}

fn resolve(qual: &str, user: bool, id_entry: Option<&str>) -> Option<u32> {
    if qual.bytes().all(|b| b.is_ascii_digit()) {
        return qual.parse().ok();
    }
    let by_name = if user {
        User::from_name(qual).ok().flatten().map(|u| u.uid.as_raw())
    } else {
        Group::from_name(qual)
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw())
    };
    by_name.or_else(|| {
        let body = id_entry?;
        let body = body.strip_prefix("d:").unwrap_or(body);
        let q = body.split(':').nth(1)?;
        q.parse().ok()
    })
}

/// The kernel's xattr value of `entries`, sorted as it wants them; `None`
/// for no entries.
fn pack(mut entries: Vec<AclEntry>) -> Option<Vec<u8>> {
    if entries.is_empty() {
        return None;
    }
    entries.sort_by_key(|e| (e.tag, e.id));
    Some(Acl { entries }.encode())
}

/// `name` as an `OsStr`.
pub(crate) fn os(name: &[u8]) -> &OsStr {
    OsStr::from_bytes(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_round_trip_through_the_decoder() {
        let (a, d) = encode_acls(
            "u::rwx,u:4242:r-x,g::r--,m::rwx,o::---,d:u::rwx,d:g::r-x,d:o::---",
            None,
        )
        .unwrap();
        let a = Acl::decode(&a.unwrap()).unwrap();
        assert_eq!(a.entries.len(), 5);
        assert_eq!(a.entries[1].id, 4242);
        assert_eq!(a.entries[1].perm, 5);
        let d = Acl::decode(&d.unwrap()).unwrap();
        assert_eq!(d.entries.len(), 3);
    }

    #[test]
    fn unknown_names_fall_back_to_ids() {
        let (a, _) = encode_acls(
            "u::rw-,u:no-such-user-xyz:rw-,g::r--,m::rw-,o::---",
            Some("u::rw-,u:31337:rw-,g::r--,m::rw-,o::---"),
        )
        .unwrap();
        let a = Acl::decode(&a.unwrap()).unwrap();
        assert_eq!(a.entries[1].id, 31337);
        assert!(encode_acls("u:no-such-user-xyz:rw-", None).is_err());
    }
}
