//! The scan phase: walk the source tree and write the queue.
//!
//! The walk is depth-first and emits each directory after everything beneath
//! it (post-order), siblings in byte order of their names, so the order never
//! depends on the locale. It holds one sorted name list per open directory:
//! memory grows with depth × width, never with the size of the tree.
//!
//! An entry that vanishes or cannot be read is reported by name, counted, and
//! the walk goes on; only a root that cannot be read stops the scan.

use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use thiserror::Error;
use tracing::{info, trace, warn};

use crate::escape;
use crate::filter::{self, Filter, LocalRules};
use crate::meta::{self, EntryMeta};
use crate::queue::{self, QueueError};

pub(crate) mod longpath;
use longpath::DirPath;

/// What the bytes of a valid `CACHEDIR.TAG` start with
/// (<https://bford.info/cachedir/>).
const CACHEDIR_TAG_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";
const CACHEDIR_TAG: &[u8] = b"CACHEDIR.TAG";

#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    /// Do not descend into directories on other filesystems than the root's.
    pub one_file_system: bool,
    /// Skip the contents of directories holding a valid `CACHEDIR.TAG`,
    /// keeping the tag itself.
    pub exclude_caches: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            one_file_system: true,
            exclude_caches: true,
        }
    }
}

/// Counts of one scan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stats {
    /// Lines written to the queue.
    pub entries: u64,
    /// Entries excluded by the filter rules (a pruned directory counts once).
    pub excluded: u64,
    /// Entries (or parts of their metadata, or directory contents) that could
    /// not be read; each was named in a warning.
    pub problems: u64,
    /// Directories not descended into because they are on another filesystem.
    pub other_filesystems: u64,
    /// Directories whose contents were skipped because of a `CACHEDIR.TAG`.
    pub caches: u64,
}

#[derive(Debug, Error)]
pub(crate) enum ScanError {
    #[error("source {path}: {source}")]
    Root {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("source {0} is not a directory")]
    RootNotDir(PathBuf),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// The escaped, single-line form of a relative path, for messages.
pub(crate) fn display_path(rel: &[u8]) -> String {
    let mut out = Vec::with_capacity(rel.len() + 1);
    out.push(b'/');
    escape::escape_into(rel, &mut out);
    // Escaped text is always UTF-8.
    String::from_utf8_lossy(&out).into_owned()
}

struct Frame {
    rel: Vec<u8>,
    /// The directory, by a path short enough for the kernel however deep.
    dir: DirPath,
    meta: EntryMeta,
    /// Remaining children, in reverse byte order so `pop` yields the next.
    pending: Vec<OsString>,
    /// The rules of this directory's `.lafs-backup-exclude`, if any.
    local: Option<LocalRules>,
}

struct Walker<'a> {
    filter: &'a Filter,
    options: Options,
    root_dev: u64,
    reader: meta::Reader,
    stats: Stats,
}

/// Scans `root` into `out`, which the caller finishes.
pub(crate) fn scan(
    root: &Path,
    filter: &Filter,
    options: Options,
    out: &mut queue::Writer,
) -> Result<Stats, ScanError> {
    let root_err = |source| ScanError::Root {
        path: root.to_owned(),
        source,
    };
    let root_dir = DirPath::new(root).map_err(root_err)?;
    let root_md = fs::symlink_metadata(root_dir.path()).map_err(root_err)?;
    if !root_md.is_dir() {
        return Err(ScanError::RootNotDir(root.to_owned()));
    }
    let mut walker = Walker {
        filter,
        options,
        root_dev: root_md.dev(),
        reader: meta::Reader::default(),
        stats: Stats::default(),
    };
    let root_meta = walker.capture(root_dir.path(), b"", &root_md);
    let pending = list_dir(root_dir.path()).map_err(root_err)?;
    let local = walker.local_rules(root_dir.path(), b"");
    let mut stack = vec![Frame {
        rel: Vec::new(),
        dir: root_dir,
        meta: root_meta,
        pending,
        local,
    }];

    while let Some(frame) = stack.last_mut() {
        let Some(name) = frame.pending.pop() else {
            let done = stack.pop().expect("the loop just saw a frame");
            walker.emit(out, &done.rel, &done.meta)?;
            continue;
        };
        let mut rel = frame.rel.clone();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(name.as_bytes());
        let dir = match frame.dir.child(&name) {
            Ok(dir) => dir,
            Err(e) => {
                walker.problem(&rel, &describe(&e));
                continue;
            }
        };
        if let Some(child) = walker.visit(out, dir, rel, &stack)? {
            stack.push(child);
        }
    }
    Ok(walker.stats)
}

impl Walker<'_> {
    /// Handles one child of the last of `open` (the directories being
    /// walked, root first); returns a frame when it is a directory to
    /// descend.
    fn visit(
        &mut self,
        out: &mut queue::Writer,
        dir: DirPath,
        rel: Vec<u8>,
        open: &[Frame],
    ) -> Result<Option<Frame>, ScanError> {
        let abs = dir.path();
        let md = match fs::symlink_metadata(abs) {
            Ok(md) => md,
            Err(e) => {
                self.problem(&rel, &describe(&e));
                return Ok(None);
            }
        };
        let is_dir = md.is_dir();
        if !self.filter.includes(&rel, is_dir) {
            trace!(path = %display_path(&rel), "excluded by filter");
            self.stats.excluded += 1;
            return Ok(None);
        }
        if open
            .iter()
            .filter_map(|f| f.local.as_ref())
            .any(|local| local.excludes(&rel, is_dir))
        {
            trace!(path = %display_path(&rel), "excluded by a .lafs-backup-exclude");
            self.stats.excluded += 1;
            return Ok(None);
        }
        if is_dir && filter::has_skip_file(abs) {
            info!(path = %display_path(&rel), "leaving out a directory holding .lafs-backup-skip");
            self.stats.excluded += 1;
            return Ok(None);
        }
        let meta = self.capture(abs, &rel, &md);
        if !is_dir {
            self.emit(out, &rel, &meta)?;
            return Ok(None);
        }
        let pending = if self.options.one_file_system && md.dev() != self.root_dev {
            // Like `tar --one-file-system`: the mount point itself is kept
            // (a restore has somewhere to mount), its contents are not.
            info!(path = %display_path(&rel), "not descending into another filesystem");
            self.stats.other_filesystems += 1;
            Vec::new()
        } else if self.options.exclude_caches && has_cachedir_tag(abs) {
            info!(path = %display_path(&rel), "skipping the contents of a cache directory (CACHEDIR.TAG)");
            self.stats.caches += 1;
            let tag = OsString::from_vec(CACHEDIR_TAG.to_vec());
            let mut tag_rel = rel.clone();
            tag_rel.push(b'/');
            tag_rel.extend_from_slice(CACHEDIR_TAG);
            if self.filter.includes(&tag_rel, false) {
                vec![tag]
            } else {
                Vec::new()
            }
        } else {
            match list_dir(abs) {
                Ok(names) => names,
                Err(e) => {
                    // The directory itself is still recorded with its
                    // metadata; what it holds is reported as not backed up.
                    self.problem(&rel, &format!("contents not read: {}", describe(&e)));
                    Vec::new()
                }
            }
        };
        let local = self.local_rules(abs, &rel);
        Ok(Some(Frame {
            rel,
            dir,
            meta,
            pending,
            local,
        }))
    }

    /// The directory's `.lafs-backup-exclude` rules. A file that cannot be
    /// used is reported and ignored: the backup then holds more, never less.
    fn local_rules(&mut self, abs: &Path, rel: &[u8]) -> Option<LocalRules> {
        match LocalRules::read(abs, rel) {
            Ok(local) => local,
            Err(e) => {
                self.problem(rel, &format!("{e}; its rules are not applied"));
                None
            }
        }
    }

    fn capture(&mut self, abs: &Path, rel: &[u8], md: &Metadata) -> EntryMeta {
        let captured = self.reader.capture(abs, md);
        for problem in &captured.problems {
            self.problem(rel, problem);
        }
        captured.meta
    }

    fn emit(
        &mut self,
        out: &mut queue::Writer,
        rel: &[u8],
        meta: &EntryMeta,
    ) -> Result<(), ScanError> {
        trace!(path = %display_path(rel), meta = %meta, "queued");
        out.push(rel, meta)?;
        self.stats.entries += 1;
        Ok(())
    }

    fn problem(&mut self, rel: &[u8], what: &str) {
        warn!("{}: {what}", display_path(rel));
        self.stats.problems += 1;
    }
}

fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "vanished during the scan; skipped".into(),
        _ => format!("cannot be read ({e}); skipped"),
    }
}

/// The names in `dir`, sorted so that `pop` returns them in byte order.
fn list_dir(dir: &Path) -> io::Result<Vec<OsString>> {
    let mut names = fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<io::Result<Vec<_>>>()?;
    names.sort_unstable_by(|a, b| b.as_bytes().cmp(a.as_bytes()));
    Ok(names)
}

pub(crate) fn has_cachedir_tag(dir: &Path) -> bool {
    let tag = dir.join(OsString::from_vec(CACHEDIR_TAG.to_vec()));
    // A symlinked tag could point anywhere; the convention wants a file.
    let Ok(md) = fs::symlink_metadata(&tag) else {
        return false;
    };
    if !md.is_file() {
        return false;
    }
    let mut head = [0u8; CACHEDIR_TAG_SIGNATURE.len()];
    // O_NOFOLLOW: a tag swapped for a symlink since the lstat is not read.
    crate::queue::open_nofollow(&tag)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| head == CACHEDIR_TAG_SIGNATURE)
}

#[derive(Debug, Error)]
pub(crate) enum PickError {
    #[error("source.path {pattern:?} is not a valid glob pattern: {message}")]
    BadPattern { pattern: String, message: String },
    #[error("source.path {0:?} matches nothing")]
    NoMatch(String),
    #[error("source.path {pattern:?}: {source}")]
    Io {
        pattern: String,
        #[source]
        source: io::Error,
    },
}

/// Resolves `source.path`: a path, or a glob whose last match in byte order
/// is backed up (so `weekly.*` picks the newest of dated snapshots). Names
/// are matched as bytes: one that is not valid UTF-8 (`caf\xff`) matches
/// too, each invalid byte being one character for `?` and `*`.
pub(crate) fn pick_source(pattern: &str) -> Result<PathBuf, PickError> {
    // Compiled by the glob crate first: the same syntax and messages.
    let paths = glob::glob(pattern).map_err(|e| PickError::BadPattern {
        pattern: pattern.to_owned(),
        message: e.to_string(),
    })?;
    let io_err = |source| PickError::Io {
        pattern: pattern.to_owned(),
        source,
    };
    let matches = if pattern.contains("**") {
        // Recursive wildcards: the glob crate's walk (UTF-8 names only).
        paths
            .map(|p| p.map_err(|e| io_err(e.into())))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        expand_bytes(pattern).map_err(io_err)?
    };
    matches
        .into_iter()
        .max_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()))
        .ok_or_else(|| PickError::NoMatch(pattern.to_owned()))
}

/// The paths `pattern` (no `**`) matches, walking one component at a time
/// like the glob crate but matching every name, valid UTF-8 or not.
fn expand_bytes(pattern: &str) -> io::Result<Vec<PathBuf>> {
    use std::path::Component;
    let options = glob::MatchOptions::new();
    let mut found = vec![PathBuf::new()];
    for component in Path::new(pattern).components() {
        let Component::Normal(part) = component else {
            // `/`, `.` and `..` are taken as they are.
            for path in &mut found {
                path.push(component.as_os_str());
            }
            continue;
        };
        let text = part.to_string_lossy();
        if !text.contains(['*', '?', '[']) {
            for path in &mut found {
                path.push(part);
            }
            continue;
        }
        let Ok(compiled) = glob::Pattern::new(&text) else {
            // Checked by the glob crate already; nothing matches otherwise.
            return Ok(Vec::new());
        };
        let mut next = Vec::new();
        for dir in found {
            let listed = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir.as_path()
            };
            // Of any length: listed through a descriptor past PATH_MAX.
            let Ok(listed) = DirPath::resolve(listed) else {
                continue;
            };
            if !listed.path().is_dir() {
                continue;
            }
            for entry in fs::read_dir(listed.path())? {
                let name = entry?.file_name();
                if compiled.matches_with(&match_text(name.as_bytes()), options) {
                    next.push(dir.join(name));
                }
            }
        }
        found = next;
    }
    // There (a dangling link too), whatever the length of its path.
    found.retain(|p| {
        !p.as_os_str().is_empty()
            && DirPath::new(p).is_ok_and(|d| fs::symlink_metadata(d.path()).is_ok())
    });
    Ok(found)
}

/// A name as text for a glob: itself when valid UTF-8, else with each byte
/// that is not part of a valid character replaced by U+FFFD.
fn match_text(name: &[u8]) -> std::borrow::Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(name) {
        return text.into();
    }
    let mut out = String::with_capacity(name.len() + 8);
    for chunk in name.utf8_chunks() {
        out.push_str(chunk.valid());
        out.extend(chunk.invalid().iter().map(|_| char::REPLACEMENT_CHARACTER));
    }
    out.into()
}

/// The backup's name: the picked source's last path component.
pub(crate) fn backup_name(source: &Path) -> OsString {
    source
        .file_name()
        .map(OsString::from)
        .unwrap_or_else(|| OsString::from("root"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::os::unix::fs::symlink;

    fn scan_to_lines(root: &Path, rules: &[&str], options: Options) -> (Vec<String>, Stats) {
        let out_dir = tempfile::tempdir().unwrap();
        let q = out_dir.path().join("q");
        let mut w = queue::Writer::create(&q).unwrap();
        let stats = scan(root, &Filter::new(rules).unwrap(), options, &mut w).unwrap();
        w.finish().unwrap();
        let text = String::from_utf8(fs::read(&q).unwrap()).unwrap();
        let lines = text
            .lines()
            .skip(1)
            .map(|l| l.rsplit_once(' ').unwrap().0.to_owned())
            .collect();
        (lines, stats)
    }

    #[test]
    fn post_order_in_byte_order() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir(r.join("a")).unwrap();
        fs::write(r.join("a/0"), "x").unwrap();
        fs::write(r.join("a-b"), "x").unwrap();
        fs::write(r.join("B"), "x").unwrap();
        fs::create_dir(r.join("empty")).unwrap();
        symlink("a", r.join("link")).unwrap();
        let (lines, stats) = scan_to_lines(r, &[], Options::default());
        assert_eq!(lines, ["B", "a/0", "a", "a-b", "empty", "link", ""]);
        assert_eq!(stats.entries, 7);
        assert_eq!(stats.problems, 0);
    }

    #[test]
    fn excluded_dirs_are_pruned() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("keep/sub")).unwrap();
        fs::create_dir_all(r.join("keep/other")).unwrap();
        fs::write(r.join("keep/sub/f"), "x").unwrap();
        fs::write(r.join("keep/other/f"), "x").unwrap();
        fs::write(r.join("x.tmp"), "x").unwrap();
        let (lines, stats) = scan_to_lines(
            r,
            &["+^/keep/($|sub/)", "-^/keep/", "-\\.tmp$"],
            Options::default(),
        );
        assert_eq!(lines, ["keep/sub/f", "keep/sub", "keep", ""]);
        assert_eq!(stats.excluded, 2);
    }

    #[test]
    fn cache_directories_keep_only_their_tag() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir(r.join("cache")).unwrap();
        fs::write(
            r.join("cache/CACHEDIR.TAG"),
            [CACHEDIR_TAG_SIGNATURE, b"\n# x\n"].concat(),
        )
        .unwrap();
        fs::write(r.join("cache/blob"), "x").unwrap();
        fs::create_dir(r.join("fake")).unwrap();
        fs::write(
            r.join("fake/CACHEDIR.TAG"),
            "not a signature at all, no no no no no no",
        )
        .unwrap();
        fs::write(r.join("fake/blob"), "x").unwrap();
        let (lines, stats) = scan_to_lines(r, &[], Options::default());
        assert_eq!(
            lines,
            [
                "cache/CACHEDIR.TAG",
                "cache",
                "fake/CACHEDIR.TAG",
                "fake/blob",
                "fake",
                ""
            ]
        );
        assert_eq!(stats.caches, 1);
        let off = Options {
            exclude_caches: false,
            ..Options::default()
        };
        let (lines, _) = scan_to_lines(r, &[], off);
        assert!(lines.contains(&"cache/blob".to_owned()));
    }

    #[test]
    fn exclude_files_apply_below_their_directory() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("a/build")).unwrap();
        fs::create_dir_all(r.join("a/sub/build")).unwrap();
        fs::write(r.join("a/build/f"), "x").unwrap();
        fs::write(r.join("a/sub/build/f"), "x").unwrap();
        fs::write(r.join("a/x.o"), "x").unwrap();
        fs::write(r.join("a/sub/y.o"), "x").unwrap();
        fs::write(r.join("a/keep.o"), "x").unwrap();
        fs::write(r.join("top.o"), "x").unwrap();
        // Relative to a/: '/build/' is a/build only, '\.o$' anywhere below.
        fs::write(
            r.join("a/.lafs-backup-exclude"),
            "# generated files\n+^/keep\\.o$\n-\\.o$\n\n-^/build/$\n",
        )
        .unwrap();
        let (lines, stats) = scan_to_lines(r, &[], Options::default());
        assert_eq!(
            lines,
            [
                "a/.lafs-backup-exclude",
                "a/keep.o",
                "a/sub/build/f",
                "a/sub/build",
                "a/sub",
                "a",
                "top.o",
                ""
            ]
        );
        assert_eq!(stats.excluded, 3);
        assert_eq!(stats.problems, 0);
        // The config's filter still applies, and first.
        let (lines, _) = scan_to_lines(r, &["-^/a/sub/$"], Options::default());
        assert!(!lines.iter().any(|l| l.starts_with("a/sub")), "{lines:?}");
    }

    #[test]
    fn a_bad_exclude_file_is_a_problem_and_ignored() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir(r.join("d")).unwrap();
        fs::write(r.join("d/f"), "x").unwrap();
        fs::write(r.join("d/.lafs-backup-exclude"), "-f\nno prefix\n").unwrap();
        let (lines, stats) = scan_to_lines(r, &[], Options::default());
        assert_eq!(lines, ["d/.lafs-backup-exclude", "d/f", "d", ""]);
        assert_eq!(stats.problems, 1);
    }

    #[test]
    fn skip_files_drop_their_directory() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("skipped/deep")).unwrap();
        fs::write(r.join("skipped/.lafs-backup-skip"), "").unwrap();
        fs::write(r.join("skipped/deep/f"), "x").unwrap();
        fs::create_dir(r.join("kept")).unwrap();
        fs::write(r.join("kept/f"), "x").unwrap();
        // A symlink named like the marker does not count.
        symlink("f", r.join("kept/.lafs-backup-skip")).unwrap();
        // At the root, the marker has no effect: the source is backed up.
        fs::write(r.join(".lafs-backup-skip"), "").unwrap();
        let (lines, stats) = scan_to_lines(r, &[], Options::default());
        assert_eq!(
            lines,
            [
                ".lafs-backup-skip",
                "kept/.lafs-backup-skip",
                "kept/f",
                "kept",
                ""
            ]
        );
        assert_eq!(stats.excluded, 1);
    }

    #[test]
    fn pick_source_takes_the_last_match_in_byte_order() {
        let t = tempfile::tempdir().unwrap();
        for name in [
            "weekly.2013-01-01",
            "weekly.2013-02-01",
            "weekly.2012-12-31",
            "Weekly.2099",
        ] {
            fs::create_dir(t.path().join(name)).unwrap();
        }
        let pattern = format!("{}/weekly.*", t.path().display());
        assert_eq!(
            pick_source(&pattern).unwrap(),
            t.path().join("weekly.2013-02-01")
        );
        assert_eq!(
            backup_name(&pick_source(&pattern).unwrap()),
            "weekly.2013-02-01"
        );
        let none = format!("{}/monthly.*", t.path().display());
        assert!(matches!(pick_source(&none), Err(PickError::NoMatch(_))));
        let literal = t.path().join("weekly.2012-12-31");
        assert_eq!(pick_source(literal.to_str().unwrap()).unwrap(), literal);
        assert!(pick_source("/nonexistent/lafs-backup-test").is_err());
    }

    #[test]
    fn pick_source_matches_names_that_are_not_utf8() {
        let t = tempfile::tempdir().unwrap();
        let odd = t.path().join(OsStr::from_bytes(b"caf\xff"));
        fs::create_dir(&odd).unwrap();
        fs::create_dir(t.path().join("cab")).unwrap();
        let base = t.path().display();
        assert_eq!(pick_source(&format!("{base}/caf*")).unwrap(), odd);
        assert_eq!(pick_source(&format!("{base}/ca??")).unwrap(), odd);
        assert_eq!(pick_source(&format!("{base}/caf?")).unwrap(), odd);
        // A wildcard in a middle component, a literal after it.
        fs::create_dir(odd.join("sub")).unwrap();
        assert_eq!(
            pick_source(&format!("{base}/caf*/sub")).unwrap(),
            odd.join("sub")
        );
        assert!(matches!(
            pick_source(&format!("{base}/caf*/nope")),
            Err(PickError::NoMatch(_))
        ));
        assert!(matches!(
            pick_source(&format!("{base}/[")),
            Err(PickError::BadPattern { .. })
        ));
    }
}
