//! The queue file: the scan's output and the upload's input.
//!
//! Format v1 (see `docs/queue-format.md`): a header line
//! `#lafs-backup-queue v1`, then one line per entry, `PATH META`, where PATH
//! is the escaped path relative to the source root (empty for the root
//! itself) and META is `UID:GID:MODE[/CAPS[/ACLS]]`. Entries come in
//! post-order, siblings in byte order of their names, the root last.
//!
//! Format v2 is v1 with a header that binds the queue to the source it was
//! made from: `#lafs-backup-queue v2 written=T dev=D ino=I source=PATH`, so
//! that a queue is never resumed for another tree (or a stale one for the
//! same tree). The reader accepts v1 and v2.
//!
//! Files written by the original lafs-backup-tool have no header and no
//! escaping; the reader accepts them too.
//!
//! Every state file here is opened without following a final symlink and
//! written through a temporary file renamed into place, so a planted
//! symlink is replaced, never written through.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::escape;
use crate::meta::EntryMeta;

pub(crate) const HEADER: &str = "#lafs-backup-queue v1";

/// The start of a v2 header line; the binding's fields follow.
pub(crate) const HEADER_V2: &str = "#lafs-backup-queue v2";

/// What a v2 queue is bound to: the source tree it lists, and when the scan
/// wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Binding {
    /// Unix seconds when the scan began writing the queue.
    pub written: i64,
    /// `st_dev` and `st_ino` of the source root (the scan refuses a root
    /// that is a symlink, so following one here changes nothing).
    pub dev: u64,
    pub ino: u64,
    /// The source root's resolved path (`realpath`), raw bytes.
    pub source: Vec<u8>,
}

impl Binding {
    /// The binding of a queue scanned now from `source`.
    pub(crate) fn of(source: &Path) -> io::Result<Binding> {
        // Of any length: a root below a chain longer than PATH_MAX is
        // resolved a component at a time, and stat'ed through a descriptor.
        let resolved = crate::scan::longpath::canonicalize(source)?;
        let md = fs::metadata(crate::scan::longpath::DirPath::resolve(&resolved)?.path())?;
        Ok(Binding {
            written: crate::cache::unix_now(),
            dev: md.dev(),
            ino: md.ino(),
            source: resolved.as_os_str().as_bytes().to_vec(),
        })
    }

    /// Whether `current` (a binding made now) names the same source tree:
    /// the same resolved path and the same root directory.
    pub(crate) fn same_source(&self, current: &Binding) -> bool {
        self.source == current.source && self.dev == current.dev && self.ino == current.ino
    }

    /// The v2 header line, without its newline. The source path comes last
    /// and is escaped like queue paths, so it may hold spaces.
    pub(crate) fn header(&self) -> String {
        format!(
            "{HEADER_V2} written={} dev={} ino={} source={}",
            self.written,
            self.dev,
            self.ino,
            String::from_utf8_lossy(&escape::escape(&self.source))
        )
    }

    /// Parses the fields after `HEADER_V2 ` (strict: a damaged header is an
    /// error, never a guess).
    fn parse_fields(text: &[u8]) -> Result<Binding, String> {
        let bad = || "the v2 header is damaged (expected written=T dev=D ino=I source=PATH)";
        let mut rest = text;
        let mut field = |name: &str| -> Result<&[u8], String> {
            let prefix = format!("{name}=");
            let body = rest.strip_prefix(prefix.as_bytes()).ok_or_else(bad)?;
            if name == "source" {
                rest = b"";
                return Ok(body);
            }
            let end = body.iter().position(|&b| b == b' ').ok_or_else(bad)?;
            rest = &body[end + 1..];
            Ok(&body[..end])
        };
        let number = |b: &[u8]| std::str::from_utf8(b).ok().map(str::to_owned);
        let written = number(field("written")?)
            .and_then(|t| t.parse::<i64>().ok())
            .ok_or_else(bad)?;
        let dev = number(field("dev")?)
            .and_then(|t| t.parse::<u64>().ok())
            .ok_or_else(bad)?;
        let ino = number(field("ino")?)
            .and_then(|t| t.parse::<u64>().ok())
            .ok_or_else(bad)?;
        let source = escape::unescape(field("source")?)
            .map_err(|e| format!("the v2 header's source path: {e}"))?;
        if source.first() != Some(&b'/') {
            return Err(bad().into());
        }
        Ok(Binding {
            written,
            dev,
            ino,
            source,
        })
    }
}

/// Opens a state file for reading without following a final symlink: a
/// symlink planted at `path` is an error naming it, never followed.
pub(crate) fn open_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc_flags::O_NOFOLLOW | libc_flags::O_CLOEXEC)
        .open(path)
        .map_err(refuse_symlink)
}

/// Turns the `ELOOP` of an `O_NOFOLLOW` open into an error that
/// says why (the callers' errors name the path).
pub(crate) fn refuse_symlink(e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is a symbolic link; state files are never followed through links \
             (remove the link or point the config at a real file)",
        )
    } else {
        e
    }
}

/// Open flags from nix, which re-exports libc's values.
mod libc_flags {
    pub(super) const O_NOFOLLOW: i32 = nix::fcntl::OFlag::O_NOFOLLOW.bits();
    pub(super) const O_CLOEXEC: i32 = nix::fcntl::OFlag::O_CLOEXEC.bits();
}

/// Creates the missing directories of a state file's parent, mode 0700
/// (state files hold caps or say what is backed up).
pub(crate) fn ensure_state_dir(file: &Path) -> io::Result<()> {
    match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() && !parent.exists() => DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot create the directory {}: {e}", parent.display()),
                )
            }),
        _ => Ok(()),
    }
}

/// Where a temporary file for `dest` is made (its directory) and the prefix
/// of its name (`.NAME.`), so that it is renamed into place atomically.
fn temp_place(dest: &Path) -> (&Path, String) {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let prefix = format!(
        ".{}.",
        dest.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    );
    (dir, prefix)
}

/// Writes `contents` to `dest` through a 0600 temporary file in the same
/// directory, renamed into place: a symlink at `dest` is replaced, its
/// target never touched.
pub(crate) fn write_replacing(dest: &Path, contents: &[u8]) -> io::Result<()> {
    let (dir, prefix) = temp_place(dest);
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(dest).map_err(|e| e.error)?;
    Ok(())
}

/// One line of the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Raw path bytes relative to the source root; empty for the root.
    pub path: Vec<u8>,
    pub meta: EntryMeta,
}

/// Which dialect a queue file is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    V1,
    /// V1 lines under a header that binds the queue to its source.
    V2,
    /// The original tool's headerless, unescaped lines.
    Legacy,
}

#[derive(Debug, Error)]
pub(crate) enum QueueError {
    #[error("queue file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("queue file {path}, line {line}: {reason}")]
    Parse {
        path: PathBuf,
        line: u64,
        reason: String,
    },
}

impl QueueError {
    fn io(path: &Path, source: io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Formats one queue line (without the trailing newline).
pub(crate) fn format_line(path: &[u8], meta: &EntryMeta, out: &mut Vec<u8>) {
    escape::escape_into(path, out);
    out.push(b' ');
    meta.write_queue_field(out);
}

/// Parses one line (without its newline). The path is everything before the
/// last space, never trimmed: names may begin or end with spaces.
pub(crate) fn parse_line(line: &[u8], format: Format) -> Result<Entry, String> {
    let Some(split) = line.iter().rposition(|&b| b == b' ') else {
        return Err("no space between path and metadata".into());
    };
    let (path, meta) = (&line[..split], &line[split + 1..]);
    let meta = EntryMeta::parse_queue_field(meta).map_err(|e| e.to_string())?;
    let path = match format {
        Format::V1 | Format::V2 => escape::unescape(path).map_err(|e| format!("path: {e}"))?,
        Format::Legacy => path.to_vec(),
    };
    if path.first() == Some(&b'/') || path.last() == Some(&b'/') && path.len() > 1 {
        return Err("path must be relative, without a leading or trailing '/'".into());
    }
    if path.split(|&b| b == b'/').any(|c| c == b"." || c == b"..")
        || path.windows(2).any(|w| w == b"//")
        || path.contains(&0)
    {
        return Err("path has an empty, '.' or '..' component, or a NUL byte".into());
    }
    Ok(Entry { path, meta })
}

/// Writes a queue to a temporary file beside its destination and renames it
/// into place only when complete, so a crash never leaves a truncated queue
/// under the real name. Lines are streamed: memory does not grow with the
/// number of entries.
pub(crate) struct Writer {
    dest: PathBuf,
    out: BufWriter<tempfile::NamedTempFile>,
    line: Vec<u8>,
    entries: u64,
}

impl Writer {
    /// A v1 queue (no binding): for tests.
    #[cfg(test)]
    pub(crate) fn create(dest: &Path) -> Result<Self, QueueError> {
        Self::create_with_header(dest, HEADER)
    }

    /// A v2 queue bound to `binding`: what `backup` writes.
    pub(crate) fn create_bound(dest: &Path, binding: &Binding) -> Result<Self, QueueError> {
        Self::create_with_header(dest, &binding.header())
    }

    fn create_with_header(dest: &Path, header: &str) -> Result<Self, QueueError> {
        ensure_state_dir(dest).map_err(|e| QueueError::io(dest, e))?;
        let (dir, prefix) = temp_place(dest);
        let tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(|e| QueueError::io(dest, e))?;
        let mut out = BufWriter::with_capacity(256 * 1024, tmp);
        writeln!(out, "{header}").map_err(|e| QueueError::io(dest, e))?;
        Ok(Self {
            dest: dest.to_owned(),
            out,
            line: Vec::with_capacity(256),
            entries: 0,
        })
    }

    pub(crate) fn push(&mut self, path: &[u8], meta: &EntryMeta) -> Result<(), QueueError> {
        self.line.clear();
        format_line(path, meta, &mut self.line);
        self.line.push(b'\n');
        self.out
            .write_all(&self.line)
            .map_err(|e| QueueError::io(&self.dest, e))?;
        self.entries += 1;
        Ok(())
    }

    /// Flushes, fsyncs and renames the queue into place; returns the number
    /// of entries written.
    pub(crate) fn finish(self) -> Result<u64, QueueError> {
        let dest = self.dest;
        let tmp = self
            .out
            .into_inner()
            .map_err(|e| QueueError::io(&dest, e.into_error()))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| QueueError::io(&dest, e))?;
        tmp.persist(&dest)
            .map_err(|e| QueueError::io(&dest, e.error))?;
        if let Some(dir) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Make the rename itself durable.
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| QueueError::io(&dest, e))?;
        }
        // A marker left from the previous queue describes another file (see
        // `is_done`), but removing it keeps the directory honest.
        let _ = fs::remove_file(done_marker_path(&dest));
        Ok(self.entries)
    }
}

/// Streams the entries of a queue file.
pub(crate) struct Reader<R> {
    path: PathBuf,
    input: R,
    format: Format,
    line_no: u64,
    pending: Option<Vec<u8>>,
    binding: Option<Binding>,
}

impl Reader<BufReader<File>> {
    pub(crate) fn open(path: &Path) -> Result<Self, QueueError> {
        let file = open_nofollow(path).map_err(|e| QueueError::io(path, e))?;
        Self::new(path, BufReader::with_capacity(256 * 1024, file))
    }
}

impl<R: BufRead> Reader<R> {
    pub(crate) fn new(path: &Path, mut input: R) -> Result<Self, QueueError> {
        let mut first = Vec::new();
        input
            .read_until(b'\n', &mut first)
            .map_err(|e| QueueError::io(path, e))?;
        let stripped = first.strip_suffix(b"\n").unwrap_or(&first);
        let mut binding = None;
        let (format, pending, line_no) = if stripped == HEADER.as_bytes() {
            (Format::V1, None, 1)
        } else if let Some(fields) = stripped.strip_prefix(format!("{HEADER_V2} ").as_bytes()) {
            binding = Some(
                Binding::parse_fields(fields).map_err(|reason| QueueError::Parse {
                    path: path.to_owned(),
                    line: 1,
                    reason,
                })?,
            );
            (Format::V2, None, 1)
        } else if stripped.starts_with(b"#lafs-backup-queue ") {
            return Err(QueueError::Parse {
                path: path.to_owned(),
                line: 1,
                reason: format!(
                    "unsupported queue format {:?} (this version reads v1, v2 and the original tool's files)",
                    String::from_utf8_lossy(stripped)
                ),
            });
        } else if first.is_empty() {
            (Format::Legacy, None, 0)
        } else {
            (Format::Legacy, Some(first), 0)
        };
        Ok(Self {
            path: path.to_owned(),
            input,
            format,
            line_no,
            pending,
            binding,
        })
    }

    pub(crate) fn format(&self) -> Format {
        self.format
    }

    /// The source binding of a v2 queue.
    pub(crate) fn binding(&self) -> Option<&Binding> {
        self.binding.as_ref()
    }

    /// The 1-based number of the line most recently returned.
    pub(crate) fn line_no(&self) -> u64 {
        self.line_no
    }

    fn parse_error(&self, reason: String) -> QueueError {
        QueueError::Parse {
            path: self.path.clone(),
            line: self.line_no,
            reason,
        }
    }
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = Result<Entry, QueueError>;

    fn next(&mut self) -> Option<Self::Item> {
        let line = match self.pending.take() {
            Some(line) => line,
            None => {
                let mut line = Vec::with_capacity(128);
                match self.input.read_until(b'\n', &mut line) {
                    Ok(0) => return None,
                    Ok(_) => line,
                    Err(e) => return Some(Err(QueueError::io(&self.path, e))),
                }
            }
        };
        self.line_no += 1;
        let Some(body) = line.strip_suffix(b"\n") else {
            return Some(Err(self.parse_error(
                "the last line has no newline: the file is truncated".into(),
            )));
        };
        Some(parse_line(body, self.format).map_err(|reason| self.parse_error(reason)))
    }
}

/// The sidecar file that records that a queue's upload completed.
pub(crate) fn done_marker_path(queue: &Path) -> PathBuf {
    let mut name = queue.as_os_str().to_owned();
    name.push(".done");
    PathBuf::from(name)
}

/// The identity of a queue file: a new queue is always a new inode (it is
/// renamed into place), so a marker written for an older queue never matches.
fn identity(queue: &Path) -> io::Result<String> {
    let md = fs::symlink_metadata(queue)?;
    Ok(format!(
        "ino={} size={} mtime_ns={}",
        md.ino(),
        md.size(),
        crate::meta::mtime_ns(&md)
    ))
}

/// Records that the upload of `queue` completed, so the next run scans again
/// instead of resuming it.
pub(crate) fn mark_done(queue: &Path) -> Result<(), QueueError> {
    let marker = done_marker_path(queue);
    let contents = format!(
        "# lafs-backup: the upload of this queue completed; the next backup scans again.\n{}\n",
        identity(queue).map_err(|e| QueueError::io(queue, e))?
    );
    // Through a renamed temporary file (0600): a symlink planted at the
    // marker's path is replaced, never written through.
    write_replacing(&marker, contents.as_bytes()).map_err(|e| QueueError::io(&marker, e))
}

/// Whether `queue` exists and its upload is recorded as complete.
pub(crate) fn is_done(queue: &Path) -> bool {
    let read_marker = || -> io::Result<String> {
        let mut text = String::new();
        open_nofollow(&done_marker_path(queue))?
            .take(64 << 10)
            .read_to_string(&mut text)?;
        Ok(text)
    };
    let (Ok(marker), Ok(id)) = (read_marker(), identity(queue)) else {
        return false;
    };
    marker.lines().any(|l| l == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(s: &str) -> EntryMeta {
        EntryMeta::parse_queue_field(s.as_bytes()).unwrap()
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Entry>, QueueError> {
        Reader::new(Path::new("q"), bytes)?.collect()
    }

    #[test]
    fn golden_v1_file() {
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join("queue");
        let mut w = Writer::create(&q).unwrap();
        w.push(b"a/0", &meta("0:0:100644")).unwrap();
        w.push(b"a", &meta("0:0:40755")).unwrap();
        w.push(
            b"a b\n\\\xff ",
            &meta("1000:100:100600//u::rw-,u:root:r--,g::---,m::r--,o::---"),
        )
        .unwrap();
        w.push(b"link", &meta("0:0:")).unwrap();
        w.push(b"", &meta("0:0:40700")).unwrap();
        assert_eq!(w.finish().unwrap(), 5);
        let text = fs::read(&q).unwrap();
        assert_eq!(
            String::from_utf8(text.clone()).unwrap(),
            "#lafs-backup-queue v1\n\
             a/0 0:0:100644\n\
             a 0:0:40755\n\
             a b\\x0a\\\\\\xff  1000:100:100600//u::rw-,u:root:r--,g::---,m::r--,o::---\n\
             link 0:0:\n \
             0:0:40700\n"
        );
        let entries = read_all(&text).unwrap();
        assert_eq!(entries.len(), 5);
        assert_eq!(entries[2].path, b"a b\n\\\xff ");
        assert_eq!(entries[4].path, b"");
        // No temporary file is left beside the queue.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_source_root_longer_than_path_max_is_bound_written_and_read_back() {
        let t = tempfile::tempdir().unwrap();
        let name = "r".repeat(200);
        let mut root = t.path().to_owned();
        for _ in 0..25 {
            root.push(&name);
        }
        crate::scan::longpath::create_dir_all(&root).unwrap();
        assert!(root.as_os_str().len() > 5_000);
        // Named with `.` and `..` on the way: bound to the resolved path.
        let mut roundabout = root.clone();
        roundabout.push(".");
        roundabout.push(&name);
        roundabout.push("..");
        crate::scan::longpath::create_dir_all(&roundabout.join(&name)).unwrap();
        let binding = Binding::of(&roundabout).unwrap();
        assert_eq!(binding.source, root.as_os_str().as_bytes());
        let q = t.path().join("queue");
        let mut w = Writer::create_bound(&q, &binding).unwrap();
        w.push(b"", &meta("0:0:40700")).unwrap();
        w.finish().unwrap();
        let reader = Reader::open(&q).unwrap();
        let read = reader.binding().unwrap();
        assert_eq!(read, &binding);
        assert!(read.same_source(&Binding::of(&root).unwrap()));
    }

    #[test]
    fn legacy_files_are_read_raw() {
        let legacy = b"tmp/root.log 0:0:100600//u::rwx,u:fraggod:rwx,g::r-x,m::rwx,o::r-x\n\
                       bin/fs_backup 1000:1000:102750/=;cap_dac_read_search+i\n\
                       back\\slash 0:0:100644\n \
                       1000:1000:40755\n";
        let mut reader = Reader::new(Path::new("q"), &legacy[..]).unwrap();
        assert_eq!(reader.format(), Format::Legacy);
        let entries: Vec<_> = reader.by_ref().collect::<Result<_, _>>().unwrap();
        assert_eq!(entries[0].path, b"tmp/root.log");
        assert_eq!(
            entries[1].meta.caps.as_deref(),
            Some("=;cap_dac_read_search+i")
        );
        assert_eq!(entries[2].path, b"back\\slash");
        assert_eq!(entries[3].path, b"");
    }

    #[test]
    fn errors_name_the_line() {
        let bad = b"#lafs-backup-queue v1\na 0:0:100644\nb 0:0:bogus\n";
        let err = read_all(bad).unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
        let truncated = b"#lafs-backup-queue v1\na 0:0:100644\nb 0:0:1006";
        let err = read_all(truncated).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        let future = b"#lafs-backup-queue v2\n";
        assert!(
            read_all(future)
                .unwrap_err()
                .to_string()
                .contains("unsupported")
        );
        for line in [
            &b"/abs 0:0:100644\n"[..],
            b"a/../b 0:0:100644\n",
            b"a//b 0:0:100644\n",
            b"nometa\n",
        ] {
            let mut q = b"#lafs-backup-queue v1\n".to_vec();
            q.extend_from_slice(line);
            assert!(read_all(&q).is_err(), "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn empty_and_header_only_files_have_no_entries() {
        assert!(read_all(b"").unwrap().is_empty());
        assert!(read_all(b"#lafs-backup-queue v1\n").unwrap().is_empty());
    }

    #[test]
    fn done_marker_binds_to_one_queue_file() {
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join("queue");
        assert!(!is_done(&q));
        let mut w = Writer::create(&q).unwrap();
        w.push(b"", &meta("0:0:40755")).unwrap();
        w.finish().unwrap();
        assert!(!is_done(&q));
        mark_done(&q).unwrap();
        assert!(is_done(&q));
        // A new queue is a new file: the old marker no longer applies, even if
        // it survived (say, a crash between the rename and its removal).
        let stale = fs::read(done_marker_path(&q)).unwrap();
        let mut w = Writer::create(&q).unwrap();
        w.push(b"", &meta("0:0:40755")).unwrap();
        w.finish().unwrap();
        assert!(!is_done(&q));
        fs::write(done_marker_path(&q), stale).unwrap();
        assert!(!is_done(&q));
    }

    #[test]
    fn golden_v2_file() {
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join("queue");
        let binding = Binding {
            written: 1_765_000_000,
            dev: 2049,
            ino: 131_074,
            source: b"/srv/my data\n\\".to_vec(),
        };
        let mut w = Writer::create_bound(&q, &binding).unwrap();
        w.push(b"a", &meta("0:0:100644")).unwrap();
        w.push(b"", &meta("0:0:40700")).unwrap();
        w.finish().unwrap();
        let text = fs::read(&q).unwrap();
        assert_eq!(
            String::from_utf8(text.clone()).unwrap(),
            "#lafs-backup-queue v2 written=1765000000 dev=2049 ino=131074 source=/srv/my data\\x0a\\\\\n\
             a 0:0:100644\n \
             0:0:40700\n"
        );
        let mut reader = Reader::new(&q, &text[..]).unwrap();
        assert_eq!(reader.format(), Format::V2);
        assert_eq!(reader.binding(), Some(&binding));
        let entries: Vec<_> = reader.by_ref().collect::<Result<_, _>>().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(reader.line_no(), 3);
    }

    #[test]
    fn damaged_v2_headers_are_errors() {
        for header in [
            "#lafs-backup-queue v2",
            "#lafs-backup-queue v2 ",
            "#lafs-backup-queue v2 written=1 dev=2 ino=3",
            "#lafs-backup-queue v2 written=x dev=2 ino=3 source=/a",
            "#lafs-backup-queue v2 written=1 dev=-2 ino=3 source=/a",
            "#lafs-backup-queue v2 written=1 dev=2 ino=3 source=relative",
            "#lafs-backup-queue v2 written=1 dev=2 ino=3 source=/bad\\q",
            "#lafs-backup-queue v2 ino=3 dev=2 written=1 source=/a",
        ] {
            let text = format!("{header}\n 0:0:40755\n");
            assert!(read_all(text.as_bytes()).is_err(), "{header}");
        }
    }

    #[test]
    fn state_files_are_never_written_through_symlinks() {
        use std::os::unix::fs::{PermissionsExt, symlink};
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
        let q = dir.path().join("queue");
        let mut w = Writer::create(&q).unwrap();
        w.push(b"", &meta("0:0:40755")).unwrap();
        w.finish().unwrap();
        // The done marker replaces a planted symlink; its target stays.
        symlink(&victim, done_marker_path(&q)).unwrap();
        assert!(!is_done(&q));
        mark_done(&q).unwrap();
        assert!(is_done(&q));
        let md = fs::symlink_metadata(done_marker_path(&q)).unwrap();
        assert!(md.is_file());
        assert_eq!(md.permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        // A symlinked queue is refused by the reader, with its name.
        let linked = dir.path().join("linked-queue");
        symlink(&q, &linked).unwrap();
        let err = Reader::open(&linked).err().unwrap().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        // The writer replaces a symlink at the queue's path.
        let mut w = Writer::create(&linked).unwrap();
        w.push(b"", &meta("0:0:40755")).unwrap();
        w.finish().unwrap();
        assert!(fs::symlink_metadata(&linked).unwrap().is_file());
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert_eq!(
            fs::metadata(&victim).unwrap().permissions().mode() & 0o777,
            0o644
        );
        // Missing state directories are created 0700.
        let deep = dir.path().join("state/sub/queue");
        Writer::create(&deep).unwrap().finish().unwrap();
        let mode = fs::metadata(dir.path().join("state/sub"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
