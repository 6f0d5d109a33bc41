//! The `jobs` key: several named backups in one config (`docs/config.md`).
//!
//! One leaf in the schema: `jobs` is a list, so a later layer replaces it
//! whole, like every list. Each job overrides the source-side keys of the
//! config (`source` without the entry cache, `filter`, `retention`); the
//! cache, lock, gateway and everything else stay shared.

use std::path::PathBuf;

use super::btrfs::{self as btrfs_keys, BtrfsJob, BtrfsKeys};
use super::dumps::{self, Dump};
use super::emit::Out;
use super::hooks::{self, Hooks};
use super::node::{Kind, Node};
use super::retention::{self, Retention};
use super::schema::{Invalid, InvalidKind, Value, check_duplicates, join, parse_list};
use super::values::filter_rules;

/// One entry of `jobs`. Keys a job leaves unset (`None`, also when given
/// as `null`, which is how the dump writes them) take the
/// top-level value, except the queue path (see [`Job::queue_path`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Job {
    /// The backup name (replaces the basename rule for this job).
    pub(crate) name: String,
    /// The line of the job's entry, for messages.
    pub(crate) line: usize,
    /// `source.path`: a path or a glob (required).
    pub(crate) path: String,
    /// `source.queue.path`; `None`: the top-level one with `.NAME` appended.
    pub(crate) queue_path: Option<PathBuf>,
    /// `source.queue.check_mtime`.
    pub(crate) check_mtime: Option<bool>,
    /// `source.queue.max_resume_age`.
    pub(crate) max_resume_age: Option<u64>,
    /// `source.one_file_system`.
    pub(crate) one_file_system: Option<bool>,
    /// `source.exclude_caches`.
    pub(crate) exclude_caches: Option<bool>,
    /// `filter`: replaces the top-level `filter` (`filter_files` stay shared).
    pub(crate) filter: Option<Vec<String>>,
    /// `retention`: replaces the top-level policy.
    pub(crate) retention: Option<Option<Retention>>,
    /// `hooks`: run around this job (`docs/hooks.md`); empty when unset.
    pub(crate) hooks: Hooks,
    /// `kind`: what the job backs up (`tree` unless given).
    pub(crate) kind: JobKind,
    /// `command`: the program and its arguments whose standard output a
    /// `kind: command` job stores as a stream (`docs/streams.md`).
    pub(crate) command: Vec<String>,
    /// A `kind: btrfs` job's own keys (`docs/btrfs.md`).
    pub(crate) btrfs: Option<BtrfsJob>,
    /// A dump job's own keys (`kind: postgresql`, `mysql`, `sqlite`,
    /// `subversion` or `subversion_dir`; `docs/dumps.md`).
    pub(crate) dump: Option<Dump>,
    /// `tar`: a `kind: command` job's output is a tar (`--tar`).
    pub(crate) tar: bool,
}

/// What a job backs up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum JobKind {
    /// A file tree: `source.path` (the default).
    #[default]
    Tree,
    /// A stream: the standard output of `command`.
    Command,
    /// btrfs send streams of a subvolume on btrsend's schedule
    /// ([`Job::btrfs`]).
    Btrfs,
    /// Database or repository dumps, one stream per database
    /// ([`Job::dump`]).
    Dump,
}

impl JobKind {
    /// Whether the job stores streams (no source tree, no queue).
    pub(crate) fn is_stream(self) -> bool {
        self != JobKind::Tree
    }
}

/// The keys every job takes whatever its kind; a dump kind's other keys
/// are [`dumps::parse`]'s.
const COMMON_KEYS: [&str; 4] = ["name", "kind", "retention", "hooks"];

pub(crate) fn zero() -> Vec<Job> {
    Vec::new()
}

pub(crate) fn parse(node: &Node, key: &str) -> Result<Vec<Job>, Invalid> {
    if matches!(node.kind, Kind::Null) {
        return Ok(Vec::new());
    }
    let jobs = parse_list(node, key, "a list of jobs", "job", job)?;
    for (i, job) in jobs.iter().enumerate() {
        if let Some(first) = jobs[..i].iter().find(|j| j.name == job.name) {
            return Err(Invalid {
                line: job.line,
                key: format!("{key} job #{}.name", i + 1),
                kind: InvalidKind::Value(format!(
                    "duplicate job name {:?} (first given on line {})",
                    job.name, first.line
                )),
            });
        }
    }
    Ok(jobs)
}

fn job(node: &Node, key: &str) -> Result<Job, Invalid> {
    let Kind::Map(entries) = &node.kind else {
        return Err(Invalid::ty(
            node,
            key,
            "a mapping (name, source, filter, retention, hooks)",
        ));
    };
    check_duplicates(entries, key)?;
    let mut job = Job {
        line: node.line,
        ..Job::default()
    };
    let mut path = None;
    let mut name = None;
    let mut command = None;
    // The kind decides which other keys the job takes, so it is read first.
    let mut dump_kind = false;
    if let Some(entry) = entries.iter().find(|e| e.key == "kind") {
        let child = join(key, "kind");
        let value = &entry.value;
        let text = String::parse(value, &child)?;
        job.kind = match text.as_str() {
            "tree" => JobKind::Tree,
            "command" => JobKind::Command,
            "btrfs" => JobKind::Btrfs,
            other if dumps::KINDS.contains(&other) => {
                dump_kind = true;
                JobKind::Dump
            }
            _ => {
                return Err(Invalid::value(
                    value,
                    &child,
                    format!(
                        "must be tree, command, btrfs or a dump kind ({})",
                        dumps::KINDS.join(", ")
                    ),
                ));
            }
        };
    }
    let mut btrfs = BtrfsKeys::default();
    let mut dump_entries = Vec::new();
    let mut tar = None;
    for entry in entries {
        let child = join(key, &entry.key);
        let value = &entry.value;
        if dump_kind && !COMMON_KEYS.contains(&entry.key.as_str()) {
            // Checked, with the kind, by `dumps::parse` below.
            dump_entries.push(entry.clone());
            continue;
        }
        if job.kind == JobKind::Btrfs && btrfs.take(entry, key)? {
            continue;
        }
        match entry.key.as_str() {
            "name" => {
                let n = String::parse(value, &child)?;
                if n.is_empty() || n.contains('/') || n.contains('\0') {
                    return Err(Invalid::value(
                        value,
                        &child,
                        "a job name must be non-empty, without '/'",
                    ));
                }
                job.line = entry.key_line;
                name = Some(n);
            }
            "source" => source(value, &child, &mut job, &mut path)?,
            "filter" => job.filter = Some(filter_rules::parse(value, &child)?),
            "retention" => job.retention = Some(retention::parse(value, &child)?),
            "hooks" => job.hooks = hooks::parse(value, &child)?,
            "kind" => {
                if dump_kind {
                    dump_entries.push(entry.clone());
                }
            }
            "command" => {
                let argv = parse_list(
                    value,
                    &child,
                    "a list [PROGRAM, ARG...]",
                    "argument",
                    <String as Value>::parse,
                )?;
                command = Some((value, argv));
            }
            "tar" => {
                job.tar = bool::parse(value, &child)?;
                tar = Some(value);
            }
            _ => return Err(unknown(entry.key_line, &child)),
        }
    }
    job.name = name.ok_or_else(|| Invalid::value(node, &join(key, "name"), "missing"))?;
    if job.kind.is_stream() && job.kind != JobKind::Command {
        if let Some((value, _)) = command {
            return Err(Invalid::value(
                value,
                &join(key, "command"),
                "only a job of kind: command runs a command",
            ));
        }
        if path.is_some() {
            return Err(Invalid::value(
                node,
                &join(key, "source.path"),
                "only a job of kind: tree has a source.path",
            ));
        }
    }
    match job.kind {
        JobKind::Btrfs => job.btrfs = Some(btrfs.finish(node, key)?),
        JobKind::Dump => {
            let only = Node {
                line: node.line,
                kind: Kind::Map(dump_entries),
            };
            job.dump = Some(dumps::parse(&only, key)?);
        }
        JobKind::Tree => {
            if let Some((value, _)) = command {
                return Err(Invalid::value(
                    value,
                    &join(key, "command"),
                    "only a job of kind: command runs a command",
                ));
            }
            job.path =
                path.ok_or_else(|| Invalid::value(node, &join(key, "source.path"), "missing"))?;
        }
        JobKind::Command => {
            let (value, argv) =
                command.ok_or_else(|| Invalid::value(node, &join(key, "command"), "missing"))?;
            if argv.first().is_none_or(String::is_empty) {
                return Err(Invalid::value(
                    value,
                    &join(key, "command"),
                    "an empty command: give the program and its arguments, [PROGRAM, ARG...]",
                ));
            }
            if path.is_some() {
                return Err(Invalid::value(
                    node,
                    &join(key, "source.path"),
                    "a job of kind: command has no source.path (it stores the command's output)",
                ));
            }
            job.command = argv;
        }
    }
    if let Some(value) = tar.filter(|_| job.kind != JobKind::Command) {
        let why = "only a job of kind: command has a tar stream";
        return Err(Invalid::value(value, &join(key, "tar"), why));
    }
    Ok(job)
}

fn source(node: &Node, key: &str, job: &mut Job, path: &mut Option<String>) -> Result<(), Invalid> {
    let Kind::Map(entries) = &node.kind else {
        return Err(Invalid::ty(node, key, "a mapping of source keys"));
    };
    check_duplicates(entries, key)?;
    for entry in entries {
        let child = join(key, &entry.key);
        let value = &entry.value;
        match entry.key.as_str() {
            "path" => *path = Some(String::parse(value, &child)?),
            "one_file_system" => job.one_file_system = Option::<bool>::parse(value, &child)?,
            "exclude_caches" => job.exclude_caches = Option::<bool>::parse(value, &child)?,
            "queue" => {
                let entries: &[_] = match &value.kind {
                    Kind::Null => &[],
                    Kind::Map(entries) => entries,
                    _ => return Err(Invalid::ty(value, &child, "a mapping of queue keys")),
                };
                check_duplicates(entries, &child)?;
                for q in entries {
                    let qkey = join(&child, &q.key);
                    match q.key.as_str() {
                        "path" => job.queue_path = Option::<PathBuf>::parse(&q.value, &qkey)?,
                        "check_mtime" => job.check_mtime = Option::<bool>::parse(&q.value, &qkey)?,
                        "max_resume_age" => {
                            job.max_resume_age = Option::<u64>::parse(&q.value, &qkey)?;
                        }
                        _ => return Err(unknown(q.key_line, &qkey)),
                    }
                }
            }
            _ => return Err(unknown(entry.key_line, &child)),
        }
    }
    Ok(())
}

fn unknown(line: usize, key: &str) -> Invalid {
    Invalid {
        line,
        key: key.to_owned(),
        kind: InvalidKind::Unknown,
    }
}

pub(crate) fn to_out(jobs: &[Job]) -> Out {
    if jobs.is_empty() {
        return Out::Null;
    }
    let opt_bool = |b: Option<bool>| b.map_or(Out::Null, Out::Bool);
    Out::Seq(
        jobs.iter()
            .map(|j| {
                let mut map = vec![
                    ("name", Out::Str(j.name.clone())),
                    (
                        "source",
                        Out::Map(vec![
                            ("path", Out::Str(j.path.clone())),
                            (
                                "queue",
                                Out::Map(vec![
                                    ("path", j.queue_path.to_out()),
                                    ("check_mtime", opt_bool(j.check_mtime)),
                                    (
                                        "max_resume_age",
                                        j.max_resume_age.map_or(Out::Null, |n| n.to_out()),
                                    ),
                                ]),
                            ),
                            ("one_file_system", opt_bool(j.one_file_system)),
                            ("exclude_caches", opt_bool(j.exclude_caches)),
                        ]),
                    ),
                ];
                if let Some(filter) = &j.filter {
                    map.push(("filter", filter_rules::to_out(filter)));
                }
                if let Some(r) = &j.retention {
                    map.push(("retention", retention::to_out(r)));
                }
                if j.hooks != Hooks::default() {
                    map.push(("hooks", hooks::to_out(&j.hooks)));
                }
                // Written only for stream jobs: a tree job dumps as before.
                if j.kind.is_stream() {
                    map.retain(|(k, _)| *k != "source");
                }
                match (j.kind, &j.btrfs, &j.dump) {
                    (JobKind::Command, _, _) => {
                        map.push(("kind", Out::Word("command")));
                        map.push((
                            "command",
                            Out::Seq(j.command.iter().map(|a| Out::Str(a.clone())).collect()),
                        ));
                        if j.tar {
                            map.push(("tar", Out::Bool(true)));
                        }
                    }
                    (JobKind::Btrfs, Some(b), _) => {
                        map.push(("kind", Out::Word("btrfs")));
                        map.extend(btrfs_keys::to_out(b));
                    }
                    (JobKind::Dump, _, Some(d)) => map.extend(dumps::to_out(d)),
                    _ => {}
                }
                Out::Map(map)
            })
            .collect(),
    )
}
