//! The `btrfs` tool (btrfs-progs): read-only snapshots, `btrfs send` as a
//! reader, `btrfs receive` fed from a reader (`docs/btrfs.md`).
//!
//! Every failure names the command and carries the tool's exit status and
//! the tail of its stderr. A missing `btrfs` binary, and a path that is not
//! a subvolume, are usage errors (exit 2): the user fixes them by
//! installing btrfs-progs or correcting the config.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;

use jiff::civil::Date;

use crate::exit::UsageError;

/// How much of a tool's stderr a message quotes (its end, where the reason
/// is); the reader keeps no more than this in memory.
const STDERR_TAIL: usize = 4096;

/// A failure of the `btrfs` tool. Transparent, so that a usage error's
/// [`UsageError`] stays in the error chain (`exit::code_for` looks there).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct BtrfsError(#[from] Failure);

/// What went wrong with the `btrfs` tool.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// The `btrfs` binary cannot be run (a usage error).
    #[error("{0}")]
    NotInstalled(#[source] UsageError),
    /// The path is not a btrfs subvolume (a usage error).
    #[error("{0}")]
    NotSubvolume(#[source] UsageError),
    /// The tool ran and failed.
    #[error("`{command}` failed ({status}){}", stderr_suffix(.stderr))]
    Failed {
        /// The command line, as the user would type it.
        command: String,
        /// How it ended (`exit status: 1`, `signal: 9 (SIGKILL)`).
        status: String,
        /// The end of its stderr, trimmed.
        stderr: String,
    },
    /// Talking to the tool failed (a pipe, reading the stream).
    #[error("`{command}`: {what}: {source}")]
    Io {
        /// The command line.
        command: String,
        /// What was being done.
        what: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

/// The `btrfs` program to run: `btrfs` from `PATH` unless told otherwise.
#[derive(Debug, Clone)]
pub struct Btrfs {
    program: OsString,
}

impl Default for Btrfs {
    fn default() -> Self {
        Btrfs {
            program: "btrfs".into(),
        }
    }
}

impl Btrfs {
    /// Runs `program` instead of `btrfs` from `PATH`.
    pub fn with_program(program: impl Into<OsString>) -> Btrfs {
        Btrfs {
            program: program.into(),
        }
    }

    fn command(&self, args: &[&OsStr]) -> (Command, String) {
        let mut cmd = Command::new(&self.program);
        cmd.args(args).stdin(Stdio::null());
        let mut line = Path::new(&self.program).display().to_string();
        for a in args {
            line.push(' ');
            line.push_str(&Path::new(a).display().to_string());
        }
        (cmd, line)
    }

    fn spawn(&self, cmd: &mut Command) -> Result<Child, Failure> {
        cmd.spawn().map_err(|e| self.spawn_error(e))
    }

    fn spawn_error(&self, e: io::Error) -> Failure {
        let program = Path::new(&self.program).display();
        if e.kind() == io::ErrorKind::NotFound {
            Failure::NotInstalled(UsageError(format!(
                "the btrfs tool `{program}` was not found: install btrfs-progs"
            )))
        } else {
            Failure::NotInstalled(UsageError(format!(
                "the btrfs tool `{program}` cannot be run: {e}"
            )))
        }
    }

    /// Runs a short command to its end; stdout is discarded.
    fn run(&self, args: &[&OsStr]) -> Result<(), Failure> {
        let (mut cmd, line) = self.command(args);
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let child = self.spawn(&mut cmd)?;
        let out = child.wait_with_output().map_err(|source| Failure::Io {
            command: line.clone(),
            what: "waiting for it",
            source,
        })?;
        check_status(&line, out.status, &out.stderr)
    }

    /// Whether `path` is a btrfs subvolume (`btrfs subvolume show`); if not,
    /// a usage error that quotes the tool.
    pub fn check_subvolume(&self, path: &Path) -> Result<(), BtrfsError> {
        match self.run(&["subvolume".as_ref(), "show".as_ref(), path.as_os_str()]) {
            Err(Failure::Failed {
                command,
                status,
                stderr,
            }) => Err(Failure::NotSubvolume(UsageError(format!(
                "{} is not a btrfs subvolume (`{command}` failed ({status}){})",
                path.display(),
                stderr_suffix(&stderr)
            )))
            .into()),
            other => Ok(other?),
        }
    }

    /// A read-only snapshot of `subvolume` at `dest`, which must not exist.
    pub fn snapshot(&self, subvolume: &Path, dest: &Path) -> Result<(), BtrfsError> {
        self.check_subvolume(subvolume)?;
        Ok(self.run(&[
            "subvolume".as_ref(),
            "snapshot".as_ref(),
            "-r".as_ref(),
            subvolume.as_os_str(),
            dest.as_os_str(),
        ])?)
    }

    /// Deletes the subvolume (snapshot) at `path`.
    pub fn delete(&self, path: &Path) -> Result<(), BtrfsError> {
        Ok(self.run(&["subvolume".as_ref(), "delete".as_ref(), path.as_os_str()])?)
    }

    /// `btrfs send [-p PARENT] SNAPSHOT`: the stream, read from the
    /// returned reader. Both must be read-only snapshots.
    pub fn send(&self, snapshot: &Path, parent: Option<&Path>) -> Result<SendStream, BtrfsError> {
        let mut args: Vec<&OsStr> = vec!["send".as_ref()];
        if let Some(p) = parent {
            args.extend(["-p".as_ref(), p.as_os_str()]);
        }
        args.push(snapshot.as_os_str());
        let (mut cmd, line) = self.command(&args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = self.spawn(&mut cmd)?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take().map(tail_reader);
        Ok(SendStream {
            command: line,
            child,
            stdout,
            stderr,
            ended: None,
        })
    }

    /// `btrfs receive DEST` fed from `stream` (one stream, or several in
    /// chain order, concatenated): returns the bytes fed. A stream that
    /// cannot be read kills the receive; what it had made stays in DEST
    /// (btrfs-progs' own behaviour).
    pub fn receive(&self, dest: &Path, stream: &mut dyn Read) -> Result<u64, BtrfsError> {
        let (mut cmd, line) = self.command(&["receive".as_ref(), dest.as_os_str()]);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = self.spawn(&mut cmd)?;
        let stderr = child.stderr.take().map(tail_reader);
        let mut stdin = child.stdin.take();
        let mut fed = 0u64;
        let mut buf = vec![0u8; 256 * 1024];
        let mut write_error = None;
        loop {
            let n = match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    // The receive must not take a cut stream for a whole one.
                    let _ = child.kill();
                    let _ = child.wait();
                    join_tail(stderr);
                    return Err(Failure::Io {
                        command: line,
                        what: "reading the stream to receive",
                        source,
                    }
                    .into());
                }
            };
            let Some(pipe) = stdin.as_mut() else { break };
            if let Err(e) = pipe.write_all(&buf[..n]) {
                // Most likely the receive ended early: its status and
                // stderr say why, below.
                write_error = Some(e);
                break;
            }
            fed += n as u64;
        }
        drop(stdin);
        let status = child.wait().map_err(|source| Failure::Io {
            command: line.clone(),
            what: "waiting for it",
            source,
        })?;
        check_status(&line, status, &join_tail(stderr))?;
        match write_error {
            Some(source) => Err(Failure::Io {
                command: line,
                what: "writing the stream to it",
                source,
            }
            .into()),
            None => Ok(fed),
        }
    }
}

/// Maps a finished command's status to a result.
fn check_status(line: &str, status: ExitStatus, stderr: &[u8]) -> Result<(), Failure> {
    if status.success() {
        return Ok(());
    }
    Err(Failure::Failed {
        command: line.to_owned(),
        status: status.to_string(),
        stderr: tail_text(stderr),
    })
}

/// The end of a tool's stderr as one trimmed text.
fn tail_text(stderr: &[u8]) -> String {
    let start = stderr.len().saturating_sub(STDERR_TAIL);
    String::from_utf8_lossy(&stderr[start..]).trim().to_owned()
}

/// Reads a child's stderr to its end on a thread (so the child never blocks
/// on a full pipe), keeping the last [`STDERR_TAIL`] bytes.
fn tail_reader(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut tail = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > 2 * STDERR_TAIL {
                tail.drain(..tail.len() - STDERR_TAIL);
            }
        }
        tail
    })
}

fn join_tail(handle: Option<JoinHandle<Vec<u8>>>) -> Vec<u8> {
    handle.and_then(|h| h.join().ok()).unwrap_or_default()
}

/// A running `btrfs send`: its stream as a [`Read`]. The stream's end is
/// the send's end: a send that failed turns the end into an error (never a
/// short stream taken for a whole one), and so does every read after it.
/// Dropped before its end, the send is killed.
pub struct SendStream {
    command: String,
    child: Child,
    stdout: Option<ChildStdout>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    /// `Some` once the send has been waited for: `Some(None)` when it
    /// succeeded, else how it ended and its stderr.
    ended: Option<Option<(String, String)>>,
}

impl SendStream {
    /// Waits for the send (closing its stdout first if the stream was not
    /// read to its end, which fails the send) and reports how it ended.
    pub fn finish(mut self) -> Result<(), BtrfsError> {
        self.end()
    }

    /// Waits for the send once and reports how it ended, every time asked.
    fn end(&mut self) -> Result<(), BtrfsError> {
        let ended = match &self.ended {
            Some(ended) => ended.clone(),
            None => {
                self.stdout = None;
                let stderr = join_tail(self.stderr.take());
                let ended = match self.child.wait() {
                    Ok(status) if status.success() => None,
                    Ok(status) => Some((status.to_string(), tail_text(&stderr))),
                    Err(e) => Some((format!("cannot wait for it: {e}"), tail_text(&stderr))),
                };
                self.ended = Some(ended.clone());
                ended
            }
        };
        match ended {
            None => Ok(()),
            Some((status, stderr)) => Err(Failure::Failed {
                command: self.command.clone(),
                status,
                stderr,
            }
            .into()),
        }
    }
}

impl Read for SendStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.stdout.as_mut() {
            Some(out) => out.read(buf)?,
            None => 0,
        };
        if n == 0 && !buf.is_empty() {
            self.end().map_err(io::Error::other)?;
        }
        Ok(n)
    }
}

impl Drop for SendStream {
    fn drop(&mut self) {
        if self.ended.is_none() {
            self.stdout = None;
            let _ = self.child.kill();
            let _ = self.child.wait();
            join_tail(self.stderr.take());
        }
    }
}

/// The snapshots of one backup: read-only snapshots of its subvolume named
/// `NAME-YYYY-MM-DD` in its snapshot directory, one a date.
#[derive(Debug, Clone)]
pub struct Snapshots {
    btrfs: Btrfs,
    dir: PathBuf,
    name: String,
}

impl Snapshots {
    /// The snapshots of backup `name` in `dir`.
    pub fn new(btrfs: Btrfs, dir: impl Into<PathBuf>, name: impl Into<String>) -> Self {
        Snapshots {
            btrfs,
            dir: dir.into(),
            name: name.into(),
        }
    }

    /// Where the snapshot of `date` is: `DIR/NAME-YYYY-MM-DD`.
    pub fn path(&self, date: Date) -> PathBuf {
        self.dir
            .join(format!("{}-{}", self.name, date.strftime("%Y-%m-%d")))
    }

    /// The date of a snapshot's file name, if it is one of this backup's.
    /// Another backup's `OTHER-NAME-DATE` in the same directory never
    /// matches: what follows `NAME-` must be a date and nothing else.
    fn date_of(&self, file_name: &OsStr) -> Option<Date> {
        let rest = file_name
            .to_str()?
            .strip_prefix(self.name.as_str())?
            .strip_prefix('-')?;
        let date: Date = rest.parse().ok()?;
        (date.strftime("%Y-%m-%d").to_string() == rest).then_some(date)
    }

    /// The dates of this backup's snapshots in the directory, oldest first.
    pub fn list(&self) -> Result<Vec<Date>, BtrfsError> {
        let io = |source| Failure::Io {
            command: self.dir.display().to_string(),
            what: "listing the snapshot directory",
            source,
        };
        let mut dates = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io)? {
            if let Some(date) = self.date_of(&entry.map_err(io)?.file_name()) {
                dates.push(date);
            }
        }
        dates.sort();
        Ok(dates)
    }

    /// The read-only snapshot of `subvolume` for `date`: taken now, or the
    /// one already there (a run of the same date again: btrsnap's rule,
    /// one snapshot a date). Returns its path.
    pub fn take(&self, subvolume: &Path, date: Date) -> Result<PathBuf, BtrfsError> {
        let path = self.path(date);
        if std::fs::symlink_metadata(&path).is_ok() {
            self.btrfs.check_subvolume(&path)?;
        } else {
            self.btrfs.snapshot(subvolume, &path)?;
        }
        Ok(path)
    }

    /// Deletes the snapshots no longer needed as parents: every one older
    /// than `newest`, the date of the newest member stored (the only one a
    /// later `i` can name). Newer ones (a snapshot whose stream failed) are
    /// left for the next run. Returns the dates deleted.
    pub fn prune(&self, newest: Date) -> Result<Vec<Date>, BtrfsError> {
        let stale = stale(&self.list()?, newest);
        for date in &stale {
            self.btrfs.delete(&self.path(*date))?;
        }
        Ok(stale)
    }
}

/// The snapshot dates older than `newest`.
fn stale(snapshots: &[Date], newest: Date) -> Vec<Date> {
    snapshots.iter().copied().filter(|d| *d < newest).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Date {
        s.parse().unwrap()
    }

    #[test]
    fn snapshot_names() {
        let s = Snapshots::new(Btrfs::default(), "/snap", "my-home");
        assert_eq!(
            s.path(d("2000-01-07")),
            Path::new("/snap/my-home-2000-01-07")
        );
        let date = |n: &str| s.date_of(n.as_ref());
        assert_eq!(date("my-home-2000-01-07"), Some(d("2000-01-07")));
        for other in [
            "my-home-2000-1-07",
            "my-home-2000-01-07.tmp",
            "my-home2000-01-07",
            "my-2000-01-07",
            "my-home-x-2000-01-07",
            "my-home-2000-02-30",
        ] {
            assert_eq!(date(other), None, "{other}");
        }
        // Backup `my` does not take `my-home`'s snapshots.
        let my = Snapshots::new(Btrfs::default(), "/snap", "my");
        assert_eq!(my.date_of("my-home-2000-01-07".as_ref()), None);
    }

    #[test]
    fn stale_snapshots_are_the_older_ones() {
        let all = [d("2000-01-01"), d("2000-01-07"), d("2000-01-14")];
        assert_eq!(stale(&all, d("2000-01-07")), vec![d("2000-01-01")]);
        assert_eq!(stale(&all, d("2000-01-01")), Vec::<Date>::new());
    }

    #[test]
    fn a_missing_tool_is_a_usage_error_naming_it() {
        let b = Btrfs::with_program("/nonexistent/btrfs-tool");
        let err = b.check_subvolume(Path::new("/")).unwrap_err();
        assert!(matches!(&err.0, Failure::NotInstalled(_)));
        let err = anyhow::Error::from(err);
        assert_eq!(crate::exit::code_for(&err), crate::exit::USAGE);
        let msg = crate::exit::message(&err);
        assert_eq!(
            msg,
            "the btrfs tool `/nonexistent/btrfs-tool` was not found: install btrfs-progs"
        );
        assert!(matches!(
            b.send(Path::new("/x"), None).map_err(|e| e.0),
            Err(Failure::NotInstalled(_))
        ));
        assert!(matches!(
            b.receive(Path::new("/x"), &mut io::empty())
                .map_err(|e| e.0),
            Err(Failure::NotInstalled(_))
        ));
    }

    /// A failing tool's message names the command, its status and stderr;
    /// a failed send ends its stream with an error. `sh -c` stands in for
    /// the tool (these tests run without btrfs).
    #[test]
    fn failures_name_the_command_and_its_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("btrfs");
        std::fs::write(
            &fake,
            "#!/bin/sh\nprintf 'partial'\necho \"ERROR: no luck with $*\" >&2\nexit 3\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let b = Btrfs::with_program(&fake);

        let err = b.delete(Path::new("/snap/a")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("subvolume delete /snap/a` failed (exit status: 3)"),
            "{msg}"
        );
        assert!(
            msg.ends_with(": ERROR: no luck with subvolume delete /snap/a"),
            "{msg}"
        );
        assert_eq!(crate::exit::code_for(&err.into()), crate::exit::FATAL);

        let err = b.check_subvolume(Path::new("/srv/x")).unwrap_err();
        assert!(matches!(&err.0, Failure::NotSubvolume(_)));
        assert!(
            err.to_string()
                .starts_with("/srv/x is not a btrfs subvolume")
        );
        assert_eq!(crate::exit::code_for(&err.into()), crate::exit::USAGE);

        let mut out = Vec::new();
        let mut s = b
            .send(Path::new("/snap/b"), Some(Path::new("/snap/a")))
            .unwrap();
        let err = s.read_to_end(&mut out).unwrap_err();
        assert_eq!(out, b"partial");
        let msg = err.to_string();
        assert!(
            msg.contains("send -p /snap/a /snap/b` failed (exit status: 3)"),
            "{msg}"
        );
        // Reading again still fails: the end never turns into success.
        assert!(s.read(&mut [0u8; 8]).is_err());
        assert!(matches!(
            s.finish().map_err(|e| e.0),
            Err(Failure::Failed { .. })
        ));

        let err = b
            .receive(Path::new("/dest"), &mut &b"stream"[..])
            .unwrap_err();
        assert!(err.to_string().contains("receive /dest` failed"), "{err}");
    }
}
