//! Where the root cap of a finished backup goes (`destination.result.*`).
//!
//! The result file holds caps, which are secrets: it is created 0600 and
//! appended to under an exclusive lock, so two runs never interleave lines.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::escape;
use crate::tahoe::Cap;

/// One line of the result file: `TIME SOURCE-PATH CAP`, TIME in ISO 8601
/// local time with its offset. The source path is escaped like queue paths,
/// so a name with a space or newline cannot break the line.
pub fn result_line(time: &jiff::Zoned, source: &[u8], cap: &Cap) -> String {
    let mut line = time.strftime("%Y-%m-%dT%H:%M:%S%.6f%:z").to_string();
    line.push(' ');
    line.push_str(&String::from_utf8_lossy(&escape::escape(source)));
    line.push(' ');
    line.push_str(cap.as_str());
    line.push('\n');
    line
}

/// Appends a result line to `path`, creating it 0600.
pub fn append_to_file(path: &Path, source: &[u8], cap: &Cap) -> io::Result<()> {
    let mut locked = loop {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
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
    use std::os::unix::fs::PermissionsExt;

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
}
