//! The `hooks` key (top level and `jobs[].hooks`): commands run around a
//! backup run or one job (`docs/hooks.md`).
//!
//! One leaf in the schema: a later layer's `hooks` replaces the whole set,
//! like a list, so a layer never mixes its commands with another's.

use std::path::Path;

use super::emit::Out;
use super::node::{Kind, Node};
use super::schema::{Invalid, InvalidKind, Value, check_duplicates, join, parse_list};

/// Seconds a hook command may run when its set gives no `timeout`.
pub(crate) const DEFAULT_TIMEOUT: u64 = 300;

/// One set of hooks. Each command is an argv list, run without a shell.
#[derive(Debug, Clone, PartialEq)]
pub struct Hooks {
    /// Run before the backup (or job); exit 75 skips it, any other failure
    /// fails it without backing up.
    pub(crate) before: Vec<Vec<String>>,
    /// Run after a backup that ended with exit 0 or 3.
    pub(crate) after: Vec<Vec<String>>,
    /// Run after a failed backup (exit 1, 2 or 4) or a failed `before`.
    pub(crate) on_error: Vec<Vec<String>>,
    /// Run last, whatever happened (a skip included).
    pub(crate) finally: Vec<Vec<String>>,
    /// Seconds each command of this set may run before it is killed.
    pub(crate) timeout: u64,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            before: Vec::new(),
            after: Vec::new(),
            on_error: Vec::new(),
            finally: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

pub(crate) fn zero() -> Hooks {
    Hooks::default()
}

pub(crate) fn parse(node: &Node, key: &str) -> Result<Hooks, Invalid> {
    let entries = match &node.kind {
        Kind::Null => return Ok(Hooks::default()),
        Kind::Map(entries) => entries,
        _ => {
            return Err(Invalid::ty(
                node,
                key,
                "a mapping of before, after, on_error, finally and timeout",
            ));
        }
    };
    check_duplicates(entries, key)?;
    let mut hooks = Hooks::default();
    for entry in entries {
        let child = join(key, &entry.key);
        let value = &entry.value;
        let place = match entry.key.as_str() {
            "before" => &mut hooks.before,
            "after" => &mut hooks.after,
            "on_error" => &mut hooks.on_error,
            "finally" => &mut hooks.finally,
            "timeout" => {
                hooks.timeout = u64::parse(value, &child)?;
                if hooks.timeout == 0 {
                    return Err(Invalid::value(
                        value,
                        &child,
                        "a timeout of 0 s runs nothing",
                    ));
                }
                continue;
            }
            _ => {
                return Err(Invalid {
                    line: entry.key_line,
                    key: child,
                    kind: InvalidKind::Unknown,
                });
            }
        };
        *place = match value.kind {
            Kind::Null => Vec::new(),
            _ => parse_list(value, &child, "a list of commands", "command", command)?,
        };
    }
    Ok(hooks)
}

/// One command: a non-empty list of strings whose first resolves to an
/// executable now (a typo is found when the config loads, not at 3 a.m.).
fn command(node: &Node, key: &str) -> Result<Vec<String>, Invalid> {
    let argv = parse_list(
        node,
        key,
        "a command as a list of strings (program, arguments...)",
        "argument",
        String::parse,
    )?;
    let Some(program) = argv.first() else {
        return Err(Invalid::value(node, key, "an empty command"));
    };
    if !resolves(program) {
        return Err(Invalid::value(
            node,
            key,
            format!("the program {program:?} is not an executable file (nor found in PATH)"),
        ));
    }
    Ok(argv)
}

/// Whether `program` is what `Command` would run: a path with a `/` that is
/// an executable file, or a name found in `PATH`.
pub(crate) fn resolves(program: &str) -> bool {
    if program.is_empty() {
        return false;
    }
    if program.contains('/') {
        return executable(Path::new(program));
    }
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| executable(&dir.join(program)))
    })
}

fn executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

pub(crate) fn to_out(hooks: &Hooks) -> Out {
    if *hooks == Hooks::default() {
        return Out::Null;
    }
    let list = |cmds: &[Vec<String>]| {
        Out::Seq(
            cmds.iter()
                .map(|argv| Out::Seq(argv.iter().map(|a| Out::Str(a.clone())).collect()))
                .collect(),
        )
    };
    Out::Map(vec![
        ("before", list(&hooks.before)),
        ("after", list(&hooks.after)),
        ("on_error", list(&hooks.on_error)),
        ("finally", list(&hooks.finally)),
        ("timeout", hooks.timeout.to_out()),
    ])
}
