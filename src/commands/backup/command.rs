//! The `Producer` of a `kind: command` job: its program runs with stdout
//! piped into the stream store, its stderr's last lines kept for the
//! message when it fails (`docs/streams.md`, "Failure is never success").

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use tracing::debug;

use super::stream::Producer;
use crate::exit::UsageError;

/// How many of a failed command's last stderr lines are shown.
const STDERR_LINES: usize = 20;

/// How long a command whose output was not a valid tar may take to end by
/// itself (its exit status then explains the short tar).
const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// The longest stderr line kept (longer ones are cut).
const STDERR_LINE_MAX: usize = 1000;

/// A running command whose stdout is the stream.
pub(super) struct Running {
    child: Child,
    program: String,
    /// Its last stderr lines, collected by a thread.
    stderr: Arc<Mutex<VecDeque<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// It ended by itself while [`Producer::settle`] waited.
    ended_itself: bool,
}

impl Running {
    pub(super) fn start(argv: &[String], name: &str) -> anyhow::Result<Running> {
        let Some((program, rest)) = argv.split_first().filter(|(p, _)| !p.is_empty()) else {
            return Err(UsageError(format!("job {name}: the command is empty")).into());
        };
        let mut child = Command::new(program)
            .args(rest)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                let why = if e.kind() == io::ErrorKind::NotFound {
                    "no such program".to_owned()
                } else {
                    e.to_string()
                };
                UsageError(format!(
                    "job {name}: the command {program:?} cannot be run: {why}"
                ))
            })?;
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let reader = child.stderr.take().map(|pipe| {
            let lines = Arc::clone(&stderr);
            std::thread::spawn(move || keep_last_lines(pipe, &lines))
        });
        debug!("started the command {program:?} of job {name}");
        Ok(Running {
            child,
            program: program.clone(),
            stderr,
            reader,
            ended_itself: false,
        })
    }
}

impl Producer for Running {
    fn reader(&mut self) -> Box<dyn Read + '_> {
        match self.child.stdout.as_mut() {
            Some(stdout) => Box::new(stdout),
            None => Box::new(io::empty()),
        }
    }

    /// Gives the command up to [`SETTLE`] to end by itself.
    fn settle(&mut self) {
        let until = Instant::now() + SETTLE;
        while Instant::now() < until {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                self.ended_itself = true;
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Waits for the command (killing it first when the stream could not be
    /// stored: nobody reads its output any more) and fails unless it exited
    /// 0, showing its last stderr lines.
    ///
    /// After [`Producer::settle`] (the stream was not a valid tar), a
    /// command that ended by itself is reported when it failed, instead of
    /// the storing error.
    fn finish(mut self: Box<Self>, stored: bool) -> anyhow::Result<()> {
        // Closed first: a writer still holding the pipe gets EPIPE instead
        // of blocking on it.
        drop(self.child.stdout.take());
        let ended_itself = self.ended_itself;
        if !stored && !ended_itself {
            // It may be blocked writing into the pipe nobody reads.
            let _ = self.child.kill();
        }
        let status = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let status =
            status.with_context(|| format!("waiting for the command {:?}", self.program))?;
        // SIGPIPE: it was still writing when the pipe was closed on it.
        let sigpipe = {
            use std::os::unix::process::ExitStatusExt as _;
            status.signal() == Some(13)
        };
        if status.success() || (!stored && (!ended_itself || sigpipe)) {
            // When the storing failed, its error is the one to report.
            return Ok(());
        }
        let lines: Vec<String> = self
            .stderr
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default();
        if !lines.is_empty() {
            eprintln!(
                "lafs-backup: the last {} line(s) the command {:?} wrote on stderr:",
                lines.len(),
                self.program
            );
            for line in &lines {
                eprintln!("  | {line}");
            }
        }
        Err(anyhow::anyhow!(
            "the command {:?} {}: the stream is incomplete and nothing was recorded",
            self.program,
            describe(status)
        ))
    }
}

/// "exited with status 3", "was killed by signal 9 (SIGKILL)".
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    match status.signal() {
        Some(signal) => {
            let name = match signal {
                1 => " (SIGHUP)",
                2 => " (SIGINT)",
                3 => " (SIGQUIT)",
                6 => " (SIGABRT)",
                9 => " (SIGKILL)",
                11 => " (SIGSEGV)",
                13 => " (SIGPIPE)",
                15 => " (SIGTERM)",
                _ => "",
            };
            format!("was killed by signal {signal}{name}")
        }
        None => format!("ended abnormally ({status})"),
    }
}

/// Reads `pipe` to its end, keeping the last [`STDERR_LINES`] lines.
fn keep_last_lines(pipe: ChildStderr, lines: &Mutex<VecDeque<String>>) {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&buf);
        let mut line: String = text.trim_end_matches(['\n', '\r']).to_owned();
        if line.len() > STDERR_LINE_MAX {
            let mut cut = STDERR_LINE_MAX;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        debug!(line = %line, "command stderr");
        if let Ok(mut lines) = lines.lock() {
            if lines.len() == STDERR_LINES {
                lines.pop_front();
            }
            lines.push_back(line);
        }
    }
}
