//! The metadata the scan records for each entry: owner, full `st_mode`,
//! POSIX ACLs and file capabilities.
//!
//! Everything is read with `lstat`/`lgetxattr`, never following symlinks, so
//! a symlink never picks up its target's capabilities. The mode is kept as
//! `st_mode` reports it (type bits, setuid/setgid/sticky included) and is
//! never rebuilt from the ACL.

pub(crate) mod acl;

use std::fmt;
use std::fs::Metadata;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use acl::{Acl, NameCache};

/// The xattr that holds file capabilities (carried as `caps`, never as an
/// xattr of its own).
pub(crate) const CAPS_XATTR: &str = "security.capability";

/// The metadata of one queue entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntryMeta {
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// `st_mode`; `None` for symlinks (as in the original tool's format,
    /// where an empty mode marks a symlink).
    pub mode: Option<u32>,
    /// libcap's text form with every space written as `;`.
    pub caps: Option<String>,
    /// Short ACL text with names; default-ACL entries carry a `d:` prefix.
    pub acls: Option<String>,
}

/// Why a queue metadata field could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad metadata field {field:?}: {reason}")]
pub(crate) struct MetaParseError {
    pub(crate) field: String,
    pub(crate) reason: &'static str,
}

pub(crate) const S_IFMT: u32 = 0o170000;
pub(crate) const S_IFDIR: u32 = 0o040000;
pub(crate) const S_IFREG: u32 = 0o100000;
pub(crate) const S_IFLNK: u32 = 0o120000;

/// `st_mtime` in nanoseconds since the epoch.
pub(crate) fn mtime_ns(md: &Metadata) -> i128 {
    i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec())
}

/// `st_ctime` in nanoseconds since the epoch.
pub(crate) fn ctime_ns(md: &Metadata) -> i128 {
    i128::from(md.ctime()) * 1_000_000_000 + i128::from(md.ctime_nsec())
}

impl EntryMeta {
    /// Whether the mode is a directory's.
    pub fn is_dir(&self) -> bool {
        self.mode.is_some_and(|m| m & S_IFMT == S_IFDIR)
    }

    /// Whether this is a symlink (it has no mode).
    #[cfg(test)]
    pub(crate) fn is_symlink(&self) -> bool {
        self.mode.is_none()
    }

    /// Appends `UID:GID:MODE[/CAPS[/ACLS]]`.
    pub(crate) fn write_queue_field(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{}:{}:", self.uid, self.gid);
        if let Some(mode) = self.mode {
            let _ = write!(out, "{mode:o}");
        }
        if self.caps.is_some() || self.acls.is_some() {
            out.push(b'/');
            out.extend_from_slice(self.caps.as_deref().unwrap_or("").as_bytes());
            if let Some(acls) = &self.acls {
                out.push(b'/');
                out.extend_from_slice(acls.as_bytes());
            }
        }
    }

    /// Parses `UID:GID:MODE[/CAPS[/ACLS]]`, the inverse of
    /// [`EntryMeta::write_queue_field`].
    pub(crate) fn parse_queue_field(field: &[u8]) -> Result<Self, MetaParseError> {
        let err = |reason| MetaParseError {
            field: String::from_utf8_lossy(field).into_owned(),
            reason,
        };
        let text = std::str::from_utf8(field).map_err(|_| err("not UTF-8"))?;
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err("contains whitespace or control characters"));
        }
        let mut parts = text.splitn(3, '/');
        let ids = parts.next().unwrap_or_default();
        let caps = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
        let acls = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
        if acls.as_deref().is_some_and(|a| a.contains('/')) {
            return Err(err("too many '/' separators"));
        }
        let mut ids = ids.split(':');
        let (Some(uid), Some(gid), Some(mode), None) =
            (ids.next(), ids.next(), ids.next(), ids.next())
        else {
            return Err(err("expected UID:GID:MODE"));
        };
        let uid = parse_decimal(uid).ok_or_else(|| err("UID is not a decimal number"))?;
        let gid = parse_decimal(gid).ok_or_else(|| err("GID is not a decimal number"))?;
        let mode = if mode.is_empty() {
            None
        } else {
            let m = mode
                .bytes()
                .all(|b| (b'0'..=b'7').contains(&b))
                .then(|| u32::from_str_radix(mode, 8).ok())
                .flatten()
                .ok_or_else(|| err("MODE is not an octal number"))?;
            if m & S_IFMT == 0 || m & S_IFMT == S_IFLNK {
                // Files made by the original tool always carry type bits, and
                // symlinks are written with an empty mode.
                return Err(err("MODE has no valid file type bits"));
            }
            Some(m)
        };
        Ok(Self {
            uid,
            gid,
            mode,
            caps,
            acls,
        })
    }
}

fn parse_decimal(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl fmt::Display for EntryMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = Vec::new();
        self.write_queue_field(&mut buf);
        f.write_str(&String::from_utf8_lossy(&buf))
    }
}

/// Reads entries' metadata, keeping the uid/gid → name lookups warm across a
/// whole scan.
#[derive(Debug, Default)]
pub(crate) struct Reader {
    names: NameCache,
}

/// Metadata read for one entry, plus what could not be read. A part that
/// could not be read is left out and reported, never guessed.
#[derive(Debug)]
pub(crate) struct Captured {
    pub meta: EntryMeta,
    pub problems: Vec<String>,
}

impl Reader {
    /// `md` must come from `lstat` of `path`.
    pub(crate) fn capture(&mut self, path: &Path, md: &Metadata) -> Captured {
        let file_type = md.file_type();
        let mut problems = Vec::new();
        let mode = (!file_type.is_symlink()).then(|| md.mode());
        let mut meta = EntryMeta {
            uid: md.uid(),
            gid: md.gid(),
            mode,
            caps: None,
            acls: None,
        };
        // Symlinks carry no ACLs or capabilities on Linux; devices, fifos
        // and sockets can carry ACLs but not capabilities.
        if file_type.is_symlink() {
            return Captured { meta, problems };
        }
        // One listing instead of a read per attribute: most entries have
        // none of them, and the scan of an unchanged tree is mostly these
        // system calls. Where the listing fails, each is read as before.
        let listed = Listed::of(path);
        if file_type.is_file() && listed.caps {
            match read_xattr(path, CAPS_XATTR) {
                Ok(Some(raw)) => match capctl::FileCaps::unpack_attrs(&raw) {
                    Ok(caps) => meta.caps = Some(caps.to_string().replace(' ', ";")),
                    Err(e) => problems.push(format!("file capabilities unreadable: {e}")),
                },
                Ok(None) => {}
                Err(e) => problems.push(format!("file capabilities unreadable: {e}")),
            }
        }
        match self.acl_text(path, md, file_type.is_dir(), &listed) {
            Ok(acls) => meta.acls = acls,
            Err(e) => problems.push(e),
        }
        Captured { meta, problems }
    }

    fn acl_text(
        &mut self,
        path: &Path,
        md: &Metadata,
        is_dir: bool,
        listed: &Listed,
    ) -> Result<Option<String>, String> {
        let decode = |name: &str| -> Result<Option<Acl>, String> {
            match read_xattr(path, name) {
                Ok(Some(raw)) => Acl::decode(&raw)
                    .map(Some)
                    .map_err(|e| format!("ACL unreadable: {e}")),
                Ok(None) => Ok(None),
                Err(e) => Err(format!("ACL unreadable: {e}")),
            }
        };
        let access = if listed.access {
            decode(acl::ACCESS_XATTR)?
        } else {
            None
        };
        let default = if is_dir && listed.default {
            decode(acl::DEFAULT_XATTR)?
        } else {
            None
        };
        let default = default.filter(|d| !d.entries.is_empty());
        let extended = access.as_ref().is_some_and(Acl::is_extended);
        if !extended && default.is_none() {
            return Ok(None);
        }
        let access = access.unwrap_or_else(|| Acl::from_mode(md.mode()));
        let mut text = String::new();
        access.write_text("", &mut self.names, false, &mut text);
        if let Some(default) = default {
            default.write_text("d:", &mut self.names, false, &mut text);
        }
        Ok(Some(text))
    }
}

/// `lgetxattr`, with "this filesystem has no xattrs" treated as "none".
/// Which of the attributes the queue records an entry has, by its xattr
/// listing (`llistxattr`); all `true` when the listing failed, so that each
/// is read (and its own error reported) as before.
struct Listed {
    caps: bool,
    access: bool,
    default: bool,
}

impl Listed {
    fn of(path: &Path) -> Listed {
        match xattr::list(path) {
            Ok(names) => {
                let mut listed = Listed {
                    caps: false,
                    access: false,
                    default: false,
                };
                for name in names {
                    let name = name.as_encoded_bytes();
                    listed.caps |= name == CAPS_XATTR.as_bytes();
                    listed.access |= name == acl::ACCESS_XATTR.as_bytes();
                    listed.default |= name == acl::DEFAULT_XATTR.as_bytes();
                }
                listed
            }
            Err(_) => Listed {
                caps: true,
                access: true,
                default: true,
            },
        }
    }
}

fn read_xattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    match xattr::get(path, name) {
        Ok(v) => Ok(v),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc_errno::ENOTSUP) | Some(libc_errno::ENODATA)
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

mod libc_errno {
    pub(super) const ENODATA: i32 = nix::errno::Errno::ENODATA as i32;
    pub(super) const ENOTSUP: i32 = nix::errno::Errno::ENOTSUP as i32;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> EntryMeta {
        EntryMeta::parse_queue_field(s.as_bytes()).expect(s)
    }

    fn field(m: &EntryMeta) -> String {
        m.to_string()
    }

    #[test]
    fn queue_field_forms_round_trip() {
        for s in [
            "0:0:100644",
            "1000:100:40755",
            "1000:1000:",
            "0:0:100755/cap_net_raw=ep",
            "0:0:100640//u::rw-,u:alice:rwx,g::r--,m::rwx,o::r--",
            "0:0:40755/=;cap_dac_read_search+i/u::rwx,g::r-x,o::r-x,d:u::rwx,d:g::r-x,d:o::r-x",
            "0:0:10644",
            "0:0:20620",
            "0:0:104755",
        ] {
            assert_eq!(field(&parse(s)), s);
        }
    }

    #[test]
    fn symlinks_have_no_mode() {
        let m = parse("1:2:");
        assert!(m.is_symlink());
        assert!(!m.is_dir());
        assert!(parse("1:2:40700").is_dir());
    }

    #[test]
    fn bad_fields_are_errors() {
        for s in [
            "",
            "1:2",
            "1:2:3:4",
            "a:2:100644",
            "1:-2:100644",
            "1:2:100648",
            "1:2:644",
            "1:2:120777",
            "1:2:100644/x/y/z",
            "1 :2:100644",
            "99999999999:0:100644",
        ] {
            assert!(EntryMeta::parse_queue_field(s.as_bytes()).is_err(), "{s:?}");
        }
    }
}
