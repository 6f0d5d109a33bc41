//! Edge metadata v1: the JSON object each directory edge (child link) carries
//! for its entry, and the `mkdir-immutable` request body built from them.
//!
//! `docs/metadata.md` is the contract; this module writes exactly what it
//! describes. Tahoe stores an immutable directory's edge metadata verbatim and
//! serialises it in the order given, so the key order below is part of the
//! format: the same tree must give the same dircap on every run.

use std::fmt::Write as _;
use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use crate::encode::Encoding;
use crate::meta::acl::{ACCESS_XATTR, DEFAULT_XATTR};
use crate::meta::{self, CAPS_XATTR, EntryMeta};
use crate::tahoe::Cap;

/// The metadata of one directory edge.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EdgeMeta {
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// `st_mode`; `None` for symlinks (whose file content is the link target).
    pub mode: Option<u32>,
    /// Nanoseconds since the epoch.
    pub mtime_ns: Option<i128>,
    /// The original size; set only together with `enc` or `chunked`.
    pub size: Option<u64>,
    /// How the stored content is encoded (`xz`, `zstd`); `None`: as it is.
    pub enc: Option<Encoding>,
    /// A regular file stored chunked (`"chunked":"v1"`): the child is a
    /// stream-layout immutable directory (`docs/streams.md`), not a
    /// directory of the tree.
    pub chunked: bool,
    /// libcap text, spaces as `;` (as in the queue).
    pub caps: Option<String>,
    /// Short ACL text with names, default entries prefixed `d:` (as in the queue).
    pub acls: Option<String>,
    /// The same ACL with numeric ids.
    pub acl_ids: Option<String>,
    /// Sorted by name; every xattr except `system.posix_acl_*` and
    /// `security.capability`.
    pub xattrs: Vec<(String, Vec<u8>)>,
    /// Device nodes: (major, minor).
    pub rdev: Option<(u64, u64)>,
    /// (dev, ino), only when `st_nlink > 1`.
    pub hlink: Option<(u64, u64)>,
    /// The raw file name, when the edge name is its escaped form.
    pub name_raw: Option<Vec<u8>>,
}

/// The value of the `chunked` key this build writes and reads.
pub(crate) const CHUNKED_V1: &str = "v1";

/// Why an edge's metadata could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EdgeError {
    #[error("edge metadata is not a JSON object")]
    NotAnObject,
    #[error("edge metadata key {key:?}: {reason}")]
    BadKey { key: String, reason: String },
}

fn bad(key: &str, reason: impl Into<String>) -> EdgeError {
    EdgeError::BadKey {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// Appends `s` as a JSON string literal.
fn push_json_str(out: &mut String, s: &str) {
    // Serialising a &str cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// Appends `,"key":` (or `"key":` for the first key).
fn push_key(out: &mut String, first: &mut bool, key: &str) {
    if !std::mem::take(first) {
        out.push(',');
    }
    out.push('"');
    out.push_str(key);
    out.push_str("\":");
}

fn push_str_field(out: &mut String, first: &mut bool, key: &str, value: &str) {
    push_key(out, first, key);
    push_json_str(out, value);
}

impl EdgeMeta {
    /// Appends the JSON object, keys in exactly this order, each only when it
    /// applies: `uid`, `gid` (decimal strings); `mode` (octal string, absent
    /// for symlinks); `mtime` (a JSON number: seconds as f64, for Tahoe's own
    /// tools); `mtime_ns` (decimal string); `size` (decimal string, only with
    /// `enc`); `enc`; `caps`; `acls`; `acl_ids`; `xattrs` (object name →
    /// standard base64 with padding, in name order); `rdev` (`"MAJOR:MINOR"`);
    /// `hlink` (`"DEV:INO"`); `name_raw` (base64 of the raw name).
    pub fn write_json(&self, out: &mut String) {
        let mut first = true;
        let f = &mut first;
        out.push('{');
        push_str_field(out, f, "uid", &self.uid.to_string());
        push_str_field(out, f, "gid", &self.gid.to_string());
        if let Some(mode) = self.mode {
            push_str_field(out, f, "mode", &format!("{mode:o}"));
        }
        if let Some(ns) = self.mtime_ns {
            push_key(out, f, "mtime");
            // Precision loss is fine: `mtime` is for Tahoe's tools, readers
            // of this format use `mtime_ns`. serde_json prints the shortest
            // text that reads back as the same f64, so it is deterministic.
            let secs = ns as f64 / 1e9;
            out.push_str(&serde_json::to_string(&secs).unwrap_or_default());
            push_str_field(out, f, "mtime_ns", &ns.to_string());
        }
        if (self.enc.is_some() || self.chunked)
            && let Some(size) = self.size
        {
            push_str_field(out, f, "size", &size.to_string());
        }
        if let Some(enc) = self.enc {
            push_str_field(out, f, "enc", enc.as_str());
        }
        if self.chunked {
            push_str_field(out, f, "chunked", CHUNKED_V1);
        }
        if let Some(caps) = &self.caps {
            push_str_field(out, f, "caps", caps);
        }
        if let Some(acls) = &self.acls {
            push_str_field(out, f, "acls", acls);
        }
        if let Some(acl_ids) = &self.acl_ids {
            push_str_field(out, f, "acl_ids", acl_ids);
        }
        if !self.xattrs.is_empty() {
            push_key(out, f, "xattrs");
            let mut sorted: Vec<&(String, Vec<u8>)> = self.xattrs.iter().collect();
            // Already sorted when built by `read`; sorting again keeps the
            // text deterministic for values built by hand.
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            out.push('{');
            for (i, (name, value)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_str(out, name);
                out.push(':');
                push_json_str(out, &BASE64.encode(value));
            }
            out.push('}');
        }
        if let Some((major, minor)) = self.rdev {
            push_str_field(out, f, "rdev", &format!("{major}:{minor}"));
        }
        if let Some((dev, ino)) = self.hlink {
            push_str_field(out, f, "hlink", &format!("{dev}:{ino}"));
        }
        if let Some(raw) = &self.name_raw {
            push_str_field(out, f, "name_raw", &BASE64.encode(raw));
        }
        out.push('}');
    }

    /// The metadata object as compact JSON (`docs/metadata.md`).
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(128);
        self.write_json(&mut out);
        out
    }

    /// Reads an edge's metadata object back: ours (v1), the original Python
    /// tool's (a subset: string `uid`/`gid`/`mode`/`caps`/`acls`/`enc`, no
    /// mtime), and `tahoe backup`'s keys as far as they map (`st_mode` →
    /// mode, `st_uid`, `st_gid`, `mtime` float → `mtime_ns`). Our keys win
    /// over `tahoe backup`'s, and `mtime_ns` over `mtime`. Unknown keys are
    /// ignored; a malformed known key is an error naming the key. A missing
    /// `uid`/`gid` reads as 0 (plain Tahoe directories carry none).
    pub fn from_json(value: &Value) -> Result<EdgeMeta, EdgeError> {
        let obj = value.as_object().ok_or(EdgeError::NotAnObject)?;
        let get_str = |key: &str| -> Result<Option<&str>, EdgeError> {
            match obj.get(key) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(bad(key, "expected a string")),
            }
        };
        let get_int = |key: &str| -> Result<Option<u64>, EdgeError> {
            match obj.get(key) {
                None => Ok(None),
                Some(v) => v
                    .as_u64()
                    .map(Some)
                    .ok_or_else(|| bad(key, "expected a non-negative integer")),
            }
        };
        let decimal = |key: &str| -> Result<Option<u64>, EdgeError> {
            get_str(key)?
                .map(|s| parse_decimal(s).ok_or_else(|| bad(key, "expected a decimal number")))
                .transpose()
        };
        let id = |key: &str, tahoe_key: &str| -> Result<u32, EdgeError> {
            let v = match decimal(key)? {
                Some(v) => Some((key, v)),
                None => get_int(tahoe_key)?.map(|v| (tahoe_key, v)),
            };
            match v {
                None => Ok(0),
                Some((k, v)) => u32::try_from(v).map_err(|_| bad(k, "out of range")),
            }
        };

        let mut meta = EdgeMeta {
            uid: id("uid", "st_uid")?,
            gid: id("gid", "st_gid")?,
            ..EdgeMeta::default()
        };
        meta.mode = match get_str("mode")? {
            Some(s) => Some(parse_octal(s).ok_or_else(|| bad("mode", "expected an octal number"))?),
            None => get_int("st_mode")?
                .map(|v| u32::try_from(v).map_err(|_| bad("st_mode", "out of range")))
                .transpose()?,
        };
        meta.mtime_ns = match get_str("mtime_ns")? {
            Some(s) => Some(
                parse_signed_decimal(s)
                    .ok_or_else(|| bad("mtime_ns", "expected a decimal number"))?,
            ),
            None => match obj.get("mtime") {
                None => None,
                Some(v) => Some(
                    v.as_f64()
                        .and_then(secs_to_ns)
                        .ok_or_else(|| bad("mtime", "expected a number of seconds"))?,
                ),
            },
        };
        meta.size = decimal("size")?;
        meta.enc = match get_str("enc")? {
            None => None,
            Some(name) => match Encoding::from_name(name) {
                Some(enc) => Some(enc),
                None => return Err(bad("enc", format!("unknown encoding {name:?}"))),
            },
        };
        meta.chunked = match get_str("chunked")? {
            None => false,
            Some(CHUNKED_V1) => true,
            Some(other) => {
                return Err(bad(
                    "chunked",
                    format!(
                        "unknown chunked-file format {other:?} (a newer lafs-backup wrote it; \
                         this one reads {CHUNKED_V1:?})"
                    ),
                ));
            }
        };
        if meta.chunked && meta.size.is_none() {
            return Err(bad("size", "a chunked file must state its size"));
        }
        meta.caps = get_str("caps")?.map(str::to_owned);
        meta.acls = get_str("acls")?.map(str::to_owned);
        meta.acl_ids = get_str("acl_ids")?.map(str::to_owned);
        if let Some(x) = obj.get("xattrs") {
            let x = x
                .as_object()
                .ok_or_else(|| bad("xattrs", "expected an object"))?;
            for (name, v) in x {
                let value = v
                    .as_str()
                    .and_then(|s| BASE64.decode(s).ok())
                    .ok_or_else(|| bad("xattrs", format!("{name:?} is not a base64 string")))?;
                meta.xattrs.push((name.clone(), value));
            }
            meta.xattrs.sort_by(|a, b| a.0.cmp(&b.0));
        }
        meta.rdev = get_str("rdev")?
            .map(|s| parse_pair(s).ok_or_else(|| bad("rdev", "expected MAJOR:MINOR")))
            .transpose()?;
        meta.hlink = get_str("hlink")?
            .map(|s| parse_pair(s).ok_or_else(|| bad("hlink", "expected DEV:INO")))
            .transpose()?;
        meta.name_raw = get_str("name_raw")?
            .map(|s| {
                BASE64
                    .decode(s)
                    .map_err(|_| bad("name_raw", "expected base64"))
            })
            .transpose()?;
        Ok(meta)
    }

    /// Builds the edge metadata of an entry at upload time.
    ///
    /// `uid`, `gid`, `mode`, `caps` and `acls` come from the queue (it is the
    /// contract and may have been edited). Read from the file now, with `md`
    /// = `lstat(abs)`: `mtime_ns`; `xattrs` (`llistxattr`/`lgetxattr`,
    /// never following symlinks; the ACL and capability xattrs are left out,
    /// they are `acls` and `caps`); `rdev` for character and block devices;
    /// `hlink` when `st_nlink > 1` and not a directory. `acl_ids` is the
    /// queue's `acls` with every named qualifier resolved to its id.
    ///
    /// `size`, `enc` and `name_raw` are left for the caller. The returned
    /// strings are problems (the caller warns, naming the path); the part
    /// concerned is left out, never guessed.
    pub fn read(abs: &Path, queue: &EntryMeta, md: &Metadata) -> (EdgeMeta, Vec<String>) {
        let mut problems = Vec::new();
        let file_type = md.file_type();
        let mtime_ns = meta::mtime_ns(md);
        let rdev = (file_type.is_char_device() || file_type.is_block_device()).then(|| {
            let dev = md.rdev();
            (nix::sys::stat::major(dev), nix::sys::stat::minor(dev))
        });
        let hlink = (md.nlink() > 1 && !file_type.is_dir()).then(|| (md.dev(), md.ino()));
        let acl_ids = queue
            .acls
            .as_deref()
            .and_then(|acls| match acl_with_ids(acls) {
                Ok(text) => Some(text),
                Err(e) => {
                    problems.push(e);
                    None
                }
            });
        let xattrs = read_xattrs(abs, &mut problems);
        let meta = EdgeMeta {
            uid: queue.uid,
            gid: queue.gid,
            mode: queue.mode,
            mtime_ns: Some(mtime_ns),
            size: None,
            enc: None,
            chunked: false,
            caps: queue.caps.clone(),
            acls: queue.acls.clone(),
            acl_ids,
            xattrs,
            rdev,
            hlink,
            name_raw: None,
        };
        (meta, problems)
    }
}

fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_signed_decimal(s: &str) -> Option<i128> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_octal(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(s, 8).ok()
}

fn parse_pair(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once(':')?;
    Some((parse_decimal(a)?, parse_decimal(b)?))
}

/// Seconds (a float, as `tahoe backup` writes them) to nanoseconds. The
/// whole seconds and the fraction are converted apart, so a value like
/// `1700000000.5` gives exactly `1700000000500000000`.
fn secs_to_ns(secs: f64) -> Option<i128> {
    if !secs.is_finite() || secs.abs() > 1e15 {
        return None;
    }
    let whole = secs.floor();
    let frac_ns = ((secs - whole) * 1e9).round();
    Some(whole as i128 * 1_000_000_000 + frac_ns as i128)
}

/// The queue's ACL text with every named `u:`/`g:` qualifier (also after a
/// `d:` prefix) replaced by its numeric id. An all-digit qualifier is
/// already an id. Err names the first qualifier that does not resolve.
fn acl_with_ids(acls: &str) -> Result<String, String> {
    let mut out = String::with_capacity(acls.len());
    for (i, entry) in acls.split(',').enumerate() {
        if i > 0 {
            out.push(',');
        }
        let (prefix, body) = match entry.strip_prefix("d:") {
            Some(rest) => ("d:", rest),
            None => ("", entry),
        };
        out.push_str(prefix);
        let mut parts = body.splitn(3, ':');
        let (Some(tag), Some(qualifier), Some(perms)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("ACL entry {entry:?} is not TAG:QUALIFIER:PERMS"));
        };
        let id = match tag {
            "u" | "g"
                if !qualifier.is_empty() && !qualifier.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Some(resolve(tag, qualifier)?)
            }
            _ => None,
        };
        out.push_str(tag);
        out.push(':');
        match id {
            Some(id) => {
                let _ = write!(out, "{id}");
            }
            None => out.push_str(qualifier),
        }
        out.push(':');
        out.push_str(perms);
    }
    Ok(out)
}

fn resolve(tag: &str, name: &str) -> Result<u32, String> {
    let found = if tag == "u" {
        nix::unistd::User::from_name(name).map(|u| u.map(|u| u.uid.as_raw()))
    } else {
        nix::unistd::Group::from_name(name).map(|g| g.map(|g| g.gid.as_raw()))
    };
    let kind = if tag == "u" { "user" } else { "group" };
    match found {
        Ok(Some(id)) => Ok(id),
        Ok(None) => Err(format!(
            "ACL {kind} {name:?} no longer resolves to an id; acl_ids left out"
        )),
        Err(e) => Err(format!(
            "ACL {kind} {name:?} could not be looked up ({e}); acl_ids left out"
        )),
    }
}

/// Every xattr of `abs` (not following symlinks) but the ACL and capability
/// ones, sorted by name. A filesystem without xattrs has none.
fn read_xattrs(abs: &Path, problems: &mut Vec<String>) -> Vec<(String, Vec<u8>)> {
    let names = match xattr::list(abs) {
        Ok(names) => names,
        Err(e) if is_unsupported(&e) => return Vec::new(),
        Err(e) => {
            problems.push(format!("xattrs unreadable: {e}"));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for os_name in names {
        let Some(name) = os_name.to_str() else {
            problems.push(format!(
                "xattr name \"{}\" is not UTF-8; left out",
                os_name.as_encoded_bytes().escape_ascii()
            ));
            continue;
        };
        if name == ACCESS_XATTR || name == DEFAULT_XATTR || name == CAPS_XATTR {
            continue;
        }
        match xattr::get(abs, &os_name) {
            Ok(Some(value)) => out.push((name.to_owned(), value)),
            // Removed since it was listed.
            Ok(None) => {}
            Err(e) => problems.push(format!("xattr {name:?} unreadable: {e}")),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn is_unsupported(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(nix::errno::Errno::ENOTSUP as i32)
}

/// One child for `POST /uri?t=mkdir-immutable`.
#[derive(Debug, Clone)]
pub struct Child {
    /// The edge name (see [`crate::names::edge_name`]).
    pub name: String,
    /// The child's read-only cap.
    pub cap: Cap,
    /// A directory (`dirnode`), not a file or symlink (`filenode`).
    pub is_dir: bool,
    /// The edge metadata.
    pub meta: EdgeMeta,
}

/// The request body: `{"NAME": ["dirnode"|"filenode", {"ro_uri": CAP,
/// "metadata": {...}}], ...}`, children in byte order of name, no
/// whitespace: the same children always give the same bytes. Names must be
/// distinct (edge names of distinct raw names are).
pub fn children_json(children: &[Child]) -> String {
    let mut sorted: Vec<&Child> = children.iter().collect();
    sorted.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    let metas: Vec<String> = sorted.iter().map(|c| c.meta.to_json()).collect();
    sorted_children_json(sorted.into_iter().zip(metas.iter().map(String::as_str)))
}

/// [`children_json`] of children already in byte order of name, each given
/// with its metadata's [`EdgeMeta::to_json`] (which the uploader has made
/// for the directory's cache key already).
pub(crate) fn sorted_children_json<'a>(
    children: impl ExactSizeIterator<Item = (&'a Child, &'a str)>,
) -> String {
    let mut out = String::with_capacity(64 + children.len() * 256);
    let mut last: Option<&str> = None;
    out.push('{');
    for (i, (child, meta_json)) in children.enumerate() {
        debug_assert!(
            last.is_none_or(|l| l.as_bytes() < child.name.as_bytes()),
            "children out of order or duplicate"
        );
        last = Some(&child.name);
        if i > 0 {
            out.push(',');
        }
        push_json_str(&mut out, &child.name);
        out.push_str(if child.is_dir {
            ":[\"dirnode\",{\"ro_uri\":"
        } else {
            ":[\"filenode\",{\"ro_uri\":"
        });
        push_json_str(&mut out, child.cap.as_str());
        out.push_str(",\"metadata\":");
        out.push_str(meta_json);
        out.push_str("}]");
    }
    out.push('}');
    out
}

/// Every metadata key lafs-backup writes (tests of the directory packing
/// and of listings, which must carry each key as the gateway does).
#[cfg(test)]
pub(crate) fn every_key_meta() -> EdgeMeta {
    EdgeMeta {
        uid: 1000,
        gid: 100,
        mode: Some(0o100644),
        mtime_ns: Some(1_700_000_000_123_456_789),
        size: Some(123_456),
        enc: Some(crate::encode::Encoding::Zstd),
        chunked: false,
        caps: Some("cap_net_raw=ep".into()),
        acls: Some("user::rw-,user:bob:r--,group::r--,mask::r--,other::---".into()),
        acl_ids: Some("user::rw-,user:1001:r--,group::r--,mask::r--,other::---".into()),
        xattrs: vec![
            ("user.a".into(), b"\x00\xffv".to_vec()),
            ("user.\u{e9}".into(), b"x".to_vec()),
        ],
        rdev: Some((8, 1)),
        hlink: Some((2049, 123_456)),
        name_raw: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn parse(text: &str) -> Result<EdgeMeta, EdgeError> {
        EdgeMeta::from_json(&serde_json::from_str(text).unwrap())
    }

    fn key_of(e: EdgeError) -> String {
        match e {
            EdgeError::BadKey { key, .. } => key,
            EdgeError::NotAnObject => "<not an object>".to_owned(),
        }
    }

    #[test]
    fn minimal_edge() {
        let m = EdgeMeta::default();
        assert_eq!(m.to_json(), r#"{"uid":"0","gid":"0"}"#);
        assert_eq!(parse(&m.to_json()).unwrap(), m);
    }

    #[test]
    fn size_is_written_only_with_enc() {
        let m = EdgeMeta {
            size: Some(5),
            ..EdgeMeta::default()
        };
        assert_eq!(m.to_json(), r#"{"uid":"0","gid":"0"}"#);
    }

    #[test]
    fn xattrs_are_written_in_name_order() {
        let m = EdgeMeta {
            xattrs: vec![("user.b".into(), b"2".to_vec()), ("user.a".into(), vec![])],
            ..EdgeMeta::default()
        };
        assert_eq!(
            m.to_json(),
            r#"{"uid":"0","gid":"0","xattrs":{"user.a":"","user.b":"Mg=="}}"#
        );
    }

    #[test]
    fn reads_original_tool_edges() {
        let m = parse(
            r#"{"uid":"1000","gid":"100","mode":"100644","caps":"=;cap_net_raw+ep",
                "acls":"u::rw-,u:alice:rwx,g::r--,m::rwx,o::r--","enc":"xz"}"#,
        )
        .unwrap();
        assert_eq!(
            m,
            EdgeMeta {
                uid: 1000,
                gid: 100,
                mode: Some(0o100644),
                enc: Some(Encoding::Xz),
                caps: Some("=;cap_net_raw+ep".into()),
                acls: Some("u::rw-,u:alice:rwx,g::r--,m::rwx,o::r--".into()),
                ..EdgeMeta::default()
            }
        );
        // A symlink: no mode.
        let link = parse(r#"{"uid":"0","gid":"0"}"#).unwrap();
        assert_eq!(link.mode, None);
    }

    #[test]
    fn reads_tahoe_backup_edges() {
        let m = parse(
            r#"{"ctime":1700000001.25,"mtime":1700000000.5,"st_mode":33188,
                "st_ino":1234,"st_dev":2049,"st_uid":1000,"st_gid":100}"#,
        )
        .unwrap();
        assert_eq!(
            m,
            EdgeMeta {
                uid: 1000,
                gid: 100,
                mode: Some(0o100644),
                mtime_ns: Some(1_700_000_000_500_000_000),
                ..EdgeMeta::default()
            }
        );
        // Plain Tahoe edges (mutable dirs): nothing maps.
        let plain = parse(r#"{"tahoe":{"linkcrtime":1.5,"linkmotime":1.5}}"#).unwrap();
        assert_eq!(plain, EdgeMeta::default());
    }

    #[test]
    fn our_keys_win() {
        let m = parse(
            r#"{"uid":"1","gid":"2","mode":"40755","mtime":5.0,"mtime_ns":"-1",
                "st_uid":9,"st_gid":9,"st_mode":9}"#,
        )
        .unwrap();
        assert_eq!(
            (m.uid, m.gid, m.mode, m.mtime_ns),
            (1, 2, Some(0o40755), Some(-1))
        );
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let m = parse(r#"{"uid":"1","gid":"2","future":{"x":[1,2]},"v2":true}"#).unwrap();
        assert_eq!((m.uid, m.gid), (1, 2));
    }

    #[test]
    fn malformed_keys_are_named() {
        for (text, key) in [
            (r#"{"uid":1000}"#, "uid"),
            (r#"{"uid":"-1"}"#, "uid"),
            (r#"{"uid":"4294967296"}"#, "uid"),
            (r#"{"gid":"x"}"#, "gid"),
            (r#"{"mode":"100648"}"#, "mode"),
            (r#"{"mode":33188}"#, "mode"),
            (r#"{"mtime":"1.5"}"#, "mtime"),
            (r#"{"mtime_ns":"1.5"}"#, "mtime_ns"),
            (r#"{"mtime_ns":""}"#, "mtime_ns"),
            (r#"{"size":"-3"}"#, "size"),
            (r#"{"enc":"gzip"}"#, "enc"),
            (r#"{"caps":{"xattr":{}}}"#, "caps"),
            (r#"{"acls":["u::rw-"]}"#, "acls"),
            (r#"{"acl_ids":1}"#, "acl_ids"),
            (r#"{"xattrs":[]}"#, "xattrs"),
            (r#"{"xattrs":{"user.a":"%%"}}"#, "xattrs"),
            (r#"{"rdev":"1"}"#, "rdev"),
            (r#"{"rdev":"1:2:3"}"#, "rdev"),
            (r#"{"hlink":"a:b"}"#, "hlink"),
            (r#"{"name_raw":"!"}"#, "name_raw"),
            (r#"{"st_uid":-1}"#, "st_uid"),
            (r#"{"st_uid":4294967296}"#, "st_uid"),
            (r#"{"st_mode":"33188"}"#, "st_mode"),
        ] {
            let err = parse(text).expect_err(text);
            assert!(err.to_string().contains(key), "{err}");
            assert_eq!(key_of(err), key, "{text}");
        }
        assert_eq!(
            EdgeMeta::from_json(&json!([1])),
            Err(EdgeError::NotAnObject)
        );
    }

    #[test]
    fn float_seconds_to_ns() {
        assert_eq!(secs_to_ns(1_700_000_000.5), Some(1_700_000_000_500_000_000));
        assert_eq!(secs_to_ns(-1.5), Some(-1_500_000_000));
        assert_eq!(secs_to_ns(0.0), Some(0));
        assert_eq!(secs_to_ns(1e300), None);
        // tahoe backup's floats are within a microsecond of the truth.
        let ns = secs_to_ns(1_700_000_000.123_456_7).unwrap();
        assert!((ns - 1_700_000_000_123_456_700).abs() < 1000, "{ns}");
    }

    #[test]
    fn acl_ids_resolve_names() {
        assert_eq!(
            acl_with_ids("u::rw-,u:root:rwx,g::r--,g:root:r-x,m::rwx,o::r--").unwrap(),
            "u::rw-,u:0:rwx,g::r--,g:0:r-x,m::rwx,o::r--"
        );
        assert_eq!(
            acl_with_ids(
                "u::rwx,g::r-x,o::---,d:u::rwx,d:u:root:rwx,d:g:1234:r-x,d:m::rwx,d:o::---"
            )
            .unwrap(),
            "u::rwx,g::r-x,o::---,d:u::rwx,d:u:0:rwx,d:g:1234:r-x,d:m::rwx,d:o::---"
        );
        let err = acl_with_ids("u::rw-,u:no-such-user-lafs:r--").unwrap_err();
        assert!(err.contains("no-such-user-lafs"), "{err}");
        let err = acl_with_ids("g:no-such-group-lafs:r--").unwrap_err();
        assert!(err.contains("group"), "{err}");
        assert!(acl_with_ids("u::rw-,bogus").is_err());
    }

    fn arb_meta() -> impl Strategy<Value = EdgeMeta> {
        let text = "[ -~]{0,12}";
        (
            (
                any::<u32>(),
                any::<u32>(),
                proptest::option::of(any::<u32>()),
            ),
            proptest::option::of(any::<i64>().prop_map(i128::from)),
            proptest::option::of(any::<u64>()),
            (
                proptest::option::of(text),
                proptest::option::of(text),
                proptest::option::of(text),
            ),
            proptest::collection::btree_map(
                "\\PC{1,8}",
                proptest::collection::vec(any::<u8>(), 0..8),
                0..4,
            ),
            proptest::option::of((any::<u64>(), any::<u64>())),
            proptest::option::of((any::<u64>(), any::<u64>())),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 1..16)),
        )
            .prop_map(
                |(
                    (uid, gid, mode),
                    mtime_ns,
                    size,
                    (caps, acls, acl_ids),
                    xattrs,
                    rdev,
                    hlink,
                    name_raw,
                )| EdgeMeta {
                    uid,
                    gid,
                    mode,
                    mtime_ns,
                    // size is only written together with enc.
                    size,
                    enc: size.map(|_| Encoding::Xz),
                    chunked: false,
                    caps,
                    acls,
                    acl_ids,
                    xattrs: xattrs.into_iter().collect(),
                    rdev,
                    hlink,
                    name_raw,
                },
            )
    }

    /// The keys of a JSON object in the order they appear in the text.
    fn top_level_keys(text: &str) -> Vec<String> {
        struct Keys(Vec<String>);
        impl<'de> serde::Deserialize<'de> for Keys {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = Keys;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("an object")
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<Keys, A::Error> {
                        let mut keys = Vec::new();
                        while let Some(k) = map.next_key::<String>()? {
                            map.next_value::<serde::de::IgnoredAny>()?;
                            keys.push(k);
                        }
                        Ok(Keys(keys))
                    }
                }
                d.deserialize_map(V)
            }
        }
        serde_json::from_str::<Keys>(text).unwrap().0
    }

    #[test]
    fn golden_key_order() {
        let m = EdgeMeta {
            uid: 1,
            gid: 2,
            mode: Some(0o100600),
            mtime_ns: Some(1_500_000_000),
            size: Some(3),
            enc: Some(Encoding::Xz),
            chunked: false,
            caps: Some("c".into()),
            acls: Some("a".into()),
            acl_ids: Some("i".into()),
            xattrs: vec![("user.x".into(), b"v".to_vec())],
            rdev: Some((4, 5)),
            hlink: Some((6, 7)),
            name_raw: Some(b"n".to_vec()),
        };
        assert_eq!(
            m.to_json(),
            r#"{"uid":"1","gid":"2","mode":"100600","mtime":1.5,"mtime_ns":"1500000000","size":"3","enc":"xz","caps":"c","acls":"a","acl_ids":"i","xattrs":{"user.x":"dg=="},"rdev":"4:5","hlink":"6:7","name_raw":"bg=="}"#
        );
    }

    #[test]
    fn chunked_files_carry_size_and_marker() {
        let m = EdgeMeta {
            uid: 1,
            gid: 2,
            mode: Some(0o100600),
            mtime_ns: Some(1_500_000_000),
            size: Some(209_715_200),
            chunked: true,
            ..EdgeMeta::default()
        };
        let json = m.to_json();
        assert_eq!(
            json,
            r#"{"uid":"1","gid":"2","mode":"100600","mtime":1.5,"mtime_ns":"1500000000","size":"209715200","chunked":"v1"}"#
        );
        let value: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(EdgeMeta::from_json(&value).unwrap(), m);
        let newer: Value = serde_json::from_str(&json.replace("\"v1\"", "\"v2\"")).unwrap();
        let err = EdgeMeta::from_json(&newer).unwrap_err().to_string();
        assert!(err.contains("newer"), "{err}");
        let sizeless: Value =
            serde_json::from_str(&json.replace(r#""size":"209715200","#, "")).unwrap();
        assert!(EdgeMeta::from_json(&sizeless).is_err());
    }

    proptest! {
        #[test]
        fn json_round_trips(m in arb_meta()) {
            let text = m.to_json();
            let value: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(EdgeMeta::from_json(&value).unwrap(), m.clone());
            // The keys come in the documented order.
            let keys = top_level_keys(&text);
            let order = ["uid", "gid", "mode", "mtime", "mtime_ns", "size", "enc", "caps",
                "acls", "acl_ids", "xattrs", "rdev", "hlink", "name_raw"];
            let expected: Vec<&str> =
                order.iter().copied().filter(|k| keys.iter().any(|x| x == k)).collect();
            prop_assert_eq!(keys, expected);
            // Deterministic text.
            prop_assert_eq!(text, m.to_json());
        }
    }
}
