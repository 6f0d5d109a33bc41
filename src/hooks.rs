//! Runs the commands of a `hooks` set (`docs/hooks.md`): each without a
//! shell, in its own process group, with a timeout, its output logged line
//! by line under the hook's name.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::config::Hooks;

/// The exit status of a `before` hook that skips the job (sysexits'
/// `EX_TEMPFAIL`, as borgmatic uses it).
pub(crate) const SKIP: i32 = 75;

/// What the environment of a hook says.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Env<'a> {
    /// `LAFS_BACKUP_JOB`: the job's name; `None` for the top-level hooks.
    pub(crate) job: Option<&'a str>,
    /// `LAFS_BACKUP_EXIT`: the exit status so far (not for `before`).
    pub(crate) exit: Option<u8>,
    /// `LAFS_BACKUP_SUMMARY`: the summary file (not for `before`).
    pub(crate) summary: Option<&'a Path>,
}

/// What the `before` hooks decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Every `before` command exited 0.
    Go,
    /// One exited 75: skip, not an error; the message says which.
    Skip(String),
    /// One failed: the message says which and how.
    Fail(String),
}

/// Runs the `before` commands in order, stopping at the first that does
/// not exit 0.
pub(crate) fn before(hooks: &Hooks, env: Env<'_>) -> Gate {
    for (i, argv) in hooks.before.iter().enumerate() {
        let name = name(env.job, "before", i);
        match run(&name, argv, hooks.timeout, env) {
            Ok(()) => {}
            Err(Failure::Exit(SKIP)) => {
                return Gate::Skip(format!("{name} exited {SKIP} (skip)"));
            }
            Err(failure) => return Gate::Fail(format!("{name} {failure}")),
        }
    }
    Gate::Go
}

/// How the backup (or job) ended, which decides the hooks after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Exit 0 or 3: `after`, then `finally`.
    Success,
    /// Exit 1, 2 or 4, or a failed `before`: `on_error`, then `finally`.
    Failure,
    /// A `before` hook exited 75: only `finally`.
    Skipped,
}

/// Runs the `after` or `on_error` commands (as `ended` says), then the
/// `finally` ones: every command, whatever the others did. Returns the
/// failures, each a message naming its hook (already logged).
pub(crate) fn after(hooks: &Hooks, ended: Ended, env: Env<'_>) -> Vec<String> {
    let first: (&str, &[Vec<String>]) = match ended {
        Ended::Success => ("after", &hooks.after),
        Ended::Failure => ("on_error", &hooks.on_error),
        Ended::Skipped => ("after", &[]),
    };
    let mut failures = Vec::new();
    for (phase, list) in [first, ("finally", &hooks.finally)] {
        for (i, argv) in list.iter().enumerate() {
            let name = name(env.job, phase, i);
            if let Err(failure) = run(&name, argv, hooks.timeout, env) {
                let message = format!("{name} {failure}");
                warn!("{message}");
                failures.push(message);
            }
        }
    }
    failures
}

/// `hook before[0]`, or `hook NAME/before[0]` for a job's hooks.
fn name(job: Option<&str>, phase: &str, i: usize) -> String {
    match job {
        Some(job) => format!("hook {job}/{phase}[{i}]"),
        None => format!("hook {phase}[{i}]"),
    }
}

/// How a hook command failed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    Exit(i32),
    Signal(i32),
    Timeout(u64),
    Start(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Exit(code) => write!(f, "exited {code}"),
            Failure::Signal(sig) => write!(f, "was killed by signal {sig}"),
            Failure::Timeout(secs) => {
                write!(f, "ran longer than its timeout ({secs} s) and was killed")
            }
            Failure::Start(why) => write!(f, "could not be started: {why}"),
        }
    }
}

/// How long the log readers are waited for after the command ended: a
/// background child that keeps the pipes open must not hold the backup.
const DRAIN_WAIT: Duration = Duration::from_secs(2);

fn run(name: &str, argv: &[String], timeout: u64, env: Env<'_>) -> Result<(), Failure> {
    let Some((program, args)) = argv.split_first() else {
        return Err(Failure::Start("an empty command".into()));
    };
    info!("{name}: running {program}");
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a timeout kills what it started.
        .process_group(0)
        .env_remove("LAFS_BACKUP_JOB")
        .env_remove("LAFS_BACKUP_EXIT")
        .env_remove("LAFS_BACKUP_SUMMARY");
    if let Some(job) = env.job {
        command.env("LAFS_BACKUP_JOB", job);
    }
    if let Some(exit) = env.exit {
        command.env("LAFS_BACKUP_EXIT", exit.to_string());
    }
    if let Some(summary) = env.summary {
        command.env("LAFS_BACKUP_SUMMARY", summary);
    }
    let mut child = command
        .spawn()
        .map_err(|e| Failure::Start(format!("{program}: {e}")))?;
    // Both pipes are read at once, each by its own thread: a child filling
    // one pipe while we wait on the other would never end.
    let (done_tx, done_rx) = mpsc::channel();
    let mut readers = 0;
    if let Some(out) = child.stdout.take() {
        readers += 1;
        spawn_reader(name, out, false, done_tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        readers += 1;
        spawn_reader(name, err, true, done_tx);
    }
    let status = wait(&mut child, Duration::from_secs(timeout));
    let drain_until = Instant::now() + DRAIN_WAIT;
    for _ in 0..readers {
        let left = drain_until.saturating_duration_since(Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            warn!(
                "{name}: its output is still open after it ended (a background process?); not waiting for it"
            );
            break;
        }
    }
    match status {
        None => Err(Failure::Timeout(timeout)),
        Some(status) => check(status),
    }
}

fn check(status: ExitStatus) -> Result<(), Failure> {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (Some(code), _) => Err(Failure::Exit(code)),
        (None, Some(sig)) => Err(Failure::Signal(sig)),
        (None, None) => Err(Failure::Exit(-1)),
    }
}

/// Waits for the child up to `limit`; past it, kills its process group and
/// returns `None`.
fn wait(child: &mut std::process::Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Ok(None) | Err(_) => break,
        }
    }
    kill_group(child);
    // Reaps it (SIGKILL cannot be ignored, so this returns at once).
    let _ = child.wait();
    None
}

fn kill_group(child: &mut std::process::Child) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    let pgid = i32::try_from(child.id()).ok().map(Pid::from_raw);
    let killed = pgid.is_some_and(|pgid| killpg(pgid, Signal::SIGKILL).is_ok());
    if !killed {
        let _ = child.kill();
    }
}

/// Logs each line the hook writes (stdout at info, stderr at warn), then
/// says it is done.
fn spawn_reader(
    name: &str,
    pipe: impl Read + Send + 'static,
    stderr: bool,
    done: mpsc::Sender<()>,
) {
    let name = name.to_owned();
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    // The log never shows a cap, whatever a hook prints.
                    let text = crate::tahoe::redact(text.trim_end_matches(['\n', '\r']));
                    if stderr {
                        warn!("{name}: {text}");
                    } else {
                        info!("{name}: {text}");
                    }
                }
            }
        }
        let _ = done.send(());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hooks(before: &[&[&str]], timeout: u64) -> Hooks {
        Hooks {
            before: before
                .iter()
                .map(|argv| argv.iter().map(|a| (*a).to_owned()).collect())
                .collect(),
            timeout,
            ..Hooks::default()
        }
    }

    #[test]
    fn before_goes_skips_and_fails() {
        let env = Env::default();
        assert_eq!(before(&hooks(&[&["/bin/true"]], 5), env), Gate::Go);
        assert_eq!(
            before(
                &hooks(&[&["/bin/sh", "-c", "exit 75"], &["/bin/false"]], 5),
                env
            ),
            Gate::Skip("hook before[0] exited 75 (skip)".into())
        );
        assert_eq!(
            before(
                &hooks(&[&["/bin/true"], &["/bin/sh", "-c", "exit 3"]], 5),
                env
            ),
            Gate::Fail("hook before[1] exited 3".into())
        );
        let job = Env {
            job: Some("docs"),
            ..Env::default()
        };
        let Gate::Fail(why) = before(&hooks(&[&["/no/such/program"]], 5), job) else {
            panic!("a missing program must fail");
        };
        assert!(
            why.starts_with("hook docs/before[0] could not be started"),
            "{why}"
        );
    }

    #[test]
    fn a_timeout_kills_the_process_group() {
        let started = Instant::now();
        // The shell's child keeps the pipes open: only the group kill ends it.
        let gate = before(
            &hooks(&[&["/bin/sh", "-c", "sleep 30 & sleep 30; wait"]], 1),
            Env::default(),
        );
        assert_eq!(
            gate,
            Gate::Fail("hook before[0] ran longer than its timeout (1 s) and was killed".into())
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn much_output_on_both_pipes_does_not_deadlock() {
        let script =
            "i=0; while [ $i -lt 20000 ]; do echo out $i; echo err $i >&2; i=$((i+1)); done";
        assert_eq!(
            before(&hooks(&[&["/bin/sh", "-c", script]], 60), Env::default()),
            Gate::Go
        );
    }

    #[test]
    fn after_runs_every_command_and_finally() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let append = |word: &str| {
            vec![
                "/bin/sh".to_owned(),
                "-c".to_owned(),
                format!("echo {word} $LAFS_BACKUP_EXIT >> {}; exit 1", log.display()),
            ]
        };
        let set = Hooks {
            after: vec![append("after")],
            on_error: vec![append("error"), append("error2")],
            finally: vec![append("finally")],
            ..Hooks::default()
        };
        let env = Env {
            exit: Some(4),
            ..Env::default()
        };
        let failures = after(&set, Ended::Failure, env);
        assert_eq!(failures.len(), 3, "{failures:?}");
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "error 4\nerror2 4\nfinally 4\n"
        );
    }
}
