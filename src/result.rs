//! Where the root cap of a finished backup goes (`destination.result.*`).
//!
//! The result file holds caps, which are secrets: it is created 0600 and
//! appended to under an exclusive lock, so two runs never interleave lines.

use std::fs::OpenOptions;
use std::io::{self, Write};
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
    let line = result_line(&jiff::Zoned::now(), source, cap);
    // One write call: the line lands whole even for readers that do not lock.
    locked.write_all(line.as_bytes())?;
    locked.sync_data()
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
}
