//! Where the root cap of a finished backup goes (`destination.result.*`).
//!
//! The result file holds caps, which are secrets: it is created 0600 and
//! appended to under an exclusive lock, so two runs never interleave lines.
//! `cleanup` removes lines by rewriting the file under the same lock and
//! renaming the new one into place ([`remove_lines`]); this module owns
//! both halves of that protocol.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::escape;
use crate::tahoe::Cap;

/// One line of the result file: `TIME SOURCE-PATH CAP`, TIME in ISO 8601
/// local time with its offset. The source path is escaped like queue paths,
/// so a name with a space or newline cannot break the line.
pub(crate) fn result_line(time: &jiff::Zoned, source: &[u8], cap: &Cap) -> String {
    let mut line = time.strftime("%Y-%m-%dT%H:%M:%S%.6f%:z").to_string();
    line.push(' ');
    line.push_str(&String::from_utf8_lossy(&escape::escape(source)));
    line.push(' ');
    line.push_str(cap.as_str());
    line.push('\n');
    line
}

/// Appends a result line to `path`, creating it 0600 (and its missing
/// directories 0700). A symlink at `path` is refused, never followed; an
/// existing file that others may read is tightened to 0600 with a warning.
pub(crate) fn append_to_file(path: &Path, source: &[u8], cap: &Cap) -> io::Result<()> {
    append_line(path, |now| result_line(now, source, cap))
}

/// The second field of the line that records the recovery catalog
/// (`destination.catalog: auto`): `TIME #recovery-catalog CAP`. The cap, a
/// mutable directory's writecap (`URI:DIR2:`), tells it apart from a
/// backup's line whatever a source path looks like: a backup's root is
/// never a mutable directory. `cleanup` and `forget` never remove it.
pub(crate) const CATALOG_FIELD: &str = "#recovery-catalog";

/// Appends the recovery catalog's line ([`CATALOG_FIELD`]) to `path`, as
/// [`append_to_file`] appends a backup's.
pub(crate) fn append_catalog(path: &Path, cap: &Cap) -> io::Result<()> {
    append_line(path, |now| {
        format!(
            "{} {CATALOG_FIELD} {}\n",
            now.strftime("%Y-%m-%dT%H:%M:%S%.6f%:z"),
            cap.as_str()
        )
    })
}

/// Appends the line `line(now)` under the file's lock; see
/// [`append_to_file`].
fn append_line(path: &Path, line: impl FnOnce(&jiff::Zoned) -> String) -> io::Result<()> {
    crate::queue::ensure_state_dir(path)?;
    let mut locked = loop {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags((nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_CLOEXEC).bits())
            .open(path)
            .map_err(crate::queue::refuse_symlink)?;
        let md = file.metadata()?;
        if !md.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", path.display()),
            ));
        }
        if md.mode() & 0o777 != 0o600 {
            // fchmod of the open file: the caps about to be appended are
            // secrets, whatever the umask or an earlier chmod allowed.
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            if md.mode() & 0o077 != 0 {
                tracing::warn!(
                    "the result file {} was readable or writable by others (mode {:o}); its \
                     mode is now 0600 (it holds caps, which grant access to the backups)",
                    path.display(),
                    md.mode() & 0o777
                );
            }
        }
        let locked = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, errno)| io::Error::from(errno))?;
        // `cleanup` rewrites the file under this lock and renames the new one
        // into place: a writer that waited on the old file must start over
        // with the new one, or its line would go to a deleted file.
        let still_there = std::fs::metadata(path).is_ok_and(|md| {
            locked
                .metadata()
                .is_ok_and(|open| open.ino() == md.ino() && open.dev() == md.dev())
        });
        if still_there {
            break locked;
        }
    };
    let line = line(&crate::clock::now_local());
    // One write call: the line lands whole even for readers that do not lock.
    locked.write_all(line.as_bytes())?;
    locked.sync_data()
}

/// Removes (or, dry, counts) the lines of the result file whose last field
/// is one of `caps`. The file is rewritten atomically under the writer's
/// lock (`flock` on the file, as [`append_to_file`] takes; it starts over when
/// it finds the file renamed away): a temp
/// file in the same directory, 0600, fsynced, renamed over it, then the
/// directory fsynced. Every other line stays byte for byte; a missing file
/// removes nothing.
pub(crate) fn remove_lines(path: &Path, caps: &BTreeSet<&str>, dry: bool) -> io::Result<usize> {
    let file = match OpenOptions::new().read(true).write(!dry).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let lock = if dry {
        nix::fcntl::FlockArg::LockShared
    } else {
        nix::fcntl::FlockArg::LockExclusive
    };
    let mut locked =
        nix::fcntl::Flock::lock(file, lock).map_err(|(_, errno)| io::Error::from(errno))?;
    let mut text = Vec::new();
    locked.rewind()?;
    locked.read_to_end(&mut text)?;
    let (kept, removed) = drop_lines(&text, caps);
    if dry || removed == 0 {
        return Ok(removed);
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".lafs-backup-result.")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .tempfile_in(dir)?;
    tmp.write_all(&kept)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    File::open(dir)?.sync_all()?;
    drop(locked);
    Ok(removed)
}

/// `text` without the lines whose last whitespace-separated field is one of
/// `caps`, and how many lines went. Lines without such a field (blank,
/// malformed) stay as they are.
fn drop_lines(text: &[u8], caps: &BTreeSet<&str>) -> (Vec<u8>, usize) {
    let mut kept = Vec::with_capacity(text.len());
    let mut removed = 0;
    for line in text.split_inclusive(|&b| b == b'\n') {
        let field = line
            .trim_ascii_end()
            .rsplit(u8::is_ascii_whitespace)
            .next()
            .unwrap_or_default();
        let hit = !field.is_empty() && std::str::from_utf8(field).is_ok_and(|f| caps.contains(f));
        if hit {
            removed += 1;
        } else {
            kept.extend_from_slice(line);
        }
    }
    (kept, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_appended_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results");
        let cap = Cap::parse("URI:DIR2-CHK:aaaa:bbbb:1:1:100").unwrap();
        append_to_file(&path, b"/srv/weekly.2026", &cap).unwrap();
        append_to_file(&path, b"/srv/odd name\n", &cap).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let fields: Vec<_> = lines[0].split(' ').collect();
        assert_eq!(fields.len(), 3);
        assert!(
            jiff::Timestamp::strptime("%Y-%m-%dT%H:%M:%S%.f%:z", fields[0]).is_ok(),
            "{}",
            fields[0]
        );
        assert_eq!(fields[1], "/srv/weekly.2026");
        assert_eq!(fields[2], cap.as_str());
        assert!(lines[1].contains(" /srv/odd name\\x0a "));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn loose_modes_are_tightened_and_symlinks_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cap = Cap::parse("URI:DIR2-CHK:aaaa:bbbb:1:1:100").unwrap();
        let path = dir.path().join("results");
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        append_to_file(&path, b"/srv", &cap).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let link = dir.path().join("linked");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let err = append_to_file(&link, b"/srv", &cap).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");

        let nested = dir.path().join("new/dir/results");
        append_to_file(&nested, b"/srv", &cap).unwrap();
        let dmode = std::fs::metadata(dir.path().join("new/dir"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dmode & 0o777, 0o700);
    }

    #[test]
    fn result_lines_go_by_their_last_field_and_the_rest_stays_byte_for_byte() {
        let a = "URI:DIR2-CHK:aaa:bbb:1:1:10";
        let b = "URI:DIR2-CHK:ccc:ddd:1:1:10";
        let text = format!(
            "2026-01-01T00:00:00+01:00 /srv/x {a}\n\
             \n\
             garbage\n\
             2026-01-02T00:00:00+01:00 /srv/odd name {b}\n\
             \u{fffd} odd {a}  \r\n\
             2026-01-03T00:00:00+01:00 /srv/x {a}x\n\
             no newline at the end {b}"
        );
        let mut raw = text.into_bytes();
        raw.extend_from_slice(b"\n\xff\xfe odd bytes\n");
        let (kept, n) = drop_lines(&raw, &BTreeSet::from([a]));
        assert_eq!(n, 2);
        let want = format!(
            "\n\
             garbage\n\
             2026-01-02T00:00:00+01:00 /srv/odd name {b}\n\
             2026-01-03T00:00:00+01:00 /srv/x {a}x\n\
             no newline at the end {b}"
        );
        let mut want = want.into_bytes();
        want.extend_from_slice(b"\n\xff\xfe odd bytes\n");
        assert_eq!(kept, want);
        let (kept, n) = drop_lines(&raw, &BTreeSet::from([b]));
        assert_eq!(n, 2);
        assert!(kept.ends_with(b"\xff\xfe odd bytes\n"));
        assert_eq!(drop_lines(b"", &BTreeSet::from([a])), (Vec::new(), 0));
    }

    #[test]
    fn the_result_file_is_rewritten_privately_and_only_when_needed() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results");
        let a = Cap::parse("URI:DIR2-CHK:aaa:bbb:1:1:10").unwrap();
        let b = Cap::parse("URI:DIR2-CHK:ccc:ddd:1:1:10").unwrap();
        crate::result::append_to_file(&path, b"/srv/x", &a).unwrap();
        crate::result::append_to_file(&path, b"/srv/y", &b).unwrap();
        let before = std::fs::read(&path).unwrap();
        let ino = std::fs::metadata(&path).unwrap().ino();
        assert_eq!(
            remove_lines(&path, &BTreeSet::from([a.as_str()]), true).unwrap(),
            1
        );
        assert_eq!(std::fs::read(&path).unwrap(), before, "dry run");
        let none = BTreeSet::from(["URI:DIR2-CHK:zzz:zzz:1:1:1"]);
        assert_eq!(remove_lines(&path, &none, false).unwrap(), 0);
        assert_eq!(
            std::fs::metadata(&path).unwrap().ino(),
            ino,
            "not rewritten"
        );
        assert_eq!(
            remove_lines(&path, &BTreeSet::from([a.as_str()]), false).unwrap(),
            1
        );
        let after = std::fs::read_to_string(&path).unwrap();
        assert!(after.ends_with(&format!(" /srv/y {}\n", b.as_str())));
        assert_eq!(after.lines().count(), 1);
        let md = std::fs::metadata(&path).unwrap();
        assert_eq!(md.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
        assert_eq!(
            remove_lines(&dir.path().join("absent"), &none, false).unwrap(),
            0
        );
    }
}
