//! The check of one tree: the streaming deep check of a directory, or one
//! check of a file cap; each object is counted, reported and its lease
//! recorded.

use std::time::Instant;

use tracing::{error, info, trace, warn};

use super::Deadline;
use super::report::Reporter;
use super::targets::Target;
use crate::cache::{Cache, unix_now};
use crate::names::ROOT_META_NAME;
use crate::tahoe::{Cap, CheckOptions, CheckReport, Client, StreamItem, TahoeError};

/// What the check of one tree found.
#[derive(Debug, Default)]
pub(super) struct TreeResult {
    pub(super) objects: u64,
    pub(super) literal: u64,
    pub(super) unhealthy: u64,
    /// `ERROR:` lines, lines that are not check results.
    pub(super) errors: u64,
    pub(super) repaired: u64,
    pub(super) leases: u64,
    /// The stream ended with its statistics line.
    pub(super) complete: bool,
    /// `--max-duration` ran out before the stream ended.
    pub(super) stopped: bool,
}

pub(super) enum Checked {
    Done(TreeResult),
    /// `--max-duration` ran out during the check: what it found is
    /// recorded (leases), the check time is not.
    Stopped(TreeResult),
    /// The check could not run (or not to its end) for a reason other than
    /// the grid's state: the gateway, the connection.
    Failed(TahoeError),
}

/// Checks one tree: reports its unhealthy objects as they come, records
/// leases and, when all is well, the check time.
pub(super) fn check_target(
    client: &Client,
    cache: &mut Cache,
    target: &Target,
    opts: CheckOptions,
    report: &Reporter,
    deadline: Option<&Deadline>,
) -> anyhow::Result<Checked> {
    if target.ids.is_empty() {
        warn!(
            "{} is not the root cap of a backup recorded in the cache {}: checking it anyway \
             (its check time is not recorded)",
            target.label,
            cache.path().display()
        );
    }
    info!(
        "checking {}{}{}{}",
        target.label,
        if opts.verify {
            ", verifying every share"
        } else {
            ""
        },
        if opts.repair { ", repairing" } else { "" },
        if opts.add_lease {
            ", renewing leases"
        } else {
            ""
        },
    );
    let started = Instant::now();
    let mut run = TreeCheck {
        cache: &mut *cache,
        target,
        opts,
        report,
        result: TreeResult::default(),
    };
    let failure = if target.cap.is_literal() {
        // An empty (or tiny) backup: everything is inside the cap.
        run.result.objects = 1;
        run.result.literal = 1;
        run.result.complete = true;
        None
    } else if !target.cap.is_dir() {
        run.single(client)?
    } else if client.native().is_some() {
        run.native_tree(client, deadline)?
    } else {
        run.tree(client, deadline)?
    };
    let result = run.result;
    if let Some(err) = failure {
        cache.commit()?;
        return Ok(Checked::Failed(err));
    }
    let seconds = started.elapsed().as_secs_f64();
    if result.stopped {
        cache.commit()?;
        return Ok(Checked::Stopped(result));
    }
    if !result.complete {
        cache.commit()?;
        return Ok(Checked::Failed(TahoeError::Network {
            message: "the deep check ended before the gateway finished it (no statistics \
                      line)"
                .into(),
            attempts: 1,
        }));
    }
    if result.unhealthy == 0 && result.errors == 0 {
        let now = unix_now();
        for &id in &target.ids {
            cache.set_checked(id, now)?;
        }
    }
    cache.commit()?;
    report.backup_summary(target, &result, opts, seconds)?;
    Ok(Checked::Done(result))
}

/// The check of one tree under way: where it records, how it reports, and
/// what it found so far.
struct TreeCheck<'a> {
    cache: &'a mut Cache,
    target: &'a Target,
    opts: CheckOptions,
    report: &'a Reporter,
    result: TreeResult,
}

impl TreeCheck<'_> {
    /// A target that is a file cap: one `t=check`.
    fn single(&mut self, client: &Client) -> anyhow::Result<Option<TahoeError>> {
        let checked = match client.check(&self.target.cap, self.opts) {
            Ok(r) => r,
            Err(err) if err.is_not_found() => not_found_report(&err),
            Err(err) => return Ok(Some(err)),
        };
        self.root("file", &checked)?;
        Ok(None)
    }

    /// Records the target's root itself as the one object checked.
    fn root(&mut self, kind: &str, checked: &CheckReport) -> anyhow::Result<()> {
        let object = Object {
            path: &[],
            kind,
            cap: Some(&self.target.cap),
            literal: false,
            report: checked,
        };
        self.object(&object)?;
        self.result.complete = true;
        Ok(())
    }

    /// A directory target: the streaming deep check.
    fn tree(
        &mut self,
        client: &Client,
        deadline: Option<&Deadline>,
    ) -> anyhow::Result<Option<TahoeError>> {
        let stream = match client.deep_check(&self.target.cap, self.opts) {
            Ok(stream) => stream,
            Err(err) if err.is_not_found() => {
                // The root itself cannot be read.
                let checked = not_found_report(&err);
                self.root("directory", &checked)?;
                self.result.errors += 1;
                return Ok(None);
            }
            Err(err) => return Ok(Some(err)),
        };
        for item in stream {
            let item = match item {
                Ok(item) => item,
                // A read that ran into --max-duration's limit is a stop, not
                // a failure of the gateway.
                Err(err) if err.is_timeout() && deadline.is_some_and(Deadline::passed) => {
                    self.result.stopped = true;
                    return Ok(None);
                }
                Err(err) => return Ok(Some(err)),
            };
            match item {
                StreamItem::Object(line) => {
                    // The reserved entry carrying the root's own metadata is a
                    // literal file, not part of the user's tree.
                    if line.literal && line.path.len() == 1 && line.path[0] == ROOT_META_NAME {
                        continue;
                    }
                    let object = Object {
                        path: &line.path,
                        kind: &line.kind,
                        cap: line.cap.as_ref(),
                        literal: line.literal,
                        report: &line.report,
                    };
                    self.object(&object)?;
                }
                StreamItem::Stats(_) => self.result.complete = true,
                StreamItem::Error(text) => {
                    self.result.errors += 1;
                    self.result.complete = true;
                    error!(
                        "{}: the gateway stopped the deep check: {text} (a directory that cannot \
                         be read; what is below it was not checked)",
                        self.target.label
                    );
                }
                StreamItem::Garbage(text) => {
                    self.result.errors += 1;
                    error!(
                        "{}: the gateway sent a line that is not a check result, counted as a \
                         failure: {text}",
                        self.target.label
                    );
                }
            }
            if !self.result.complete && deadline.is_some_and(Deadline::passed) {
                // Dropping the stream closes the connection: the gateway stops.
                self.result.stopped = true;
                break;
            }
        }
        Ok(None)
    }

    /// A directory target in native mode (`destination.storage: native`):
    /// the walk the gateway's deep check makes, done here so that every
    /// object is checked by [`Client::check`] on the storage servers. Each
    /// object is checked once (literal ones on every path, as the gateway
    /// lists them), the directory before its children, children in name
    /// order; a directory that cannot be listed is an error, and the walk
    /// goes on with the rest.
    fn native_tree(
        &mut self,
        client: &Client,
        deadline: Option<&Deadline>,
    ) -> anyhow::Result<Option<TahoeError>> {
        let mut seen = std::collections::HashSet::new();
        let mut todo: Vec<(Vec<String>, Cap, bool)> =
            vec![(Vec::new(), self.target.cap.clone(), true)];
        while let Some((path, cap, is_dir)) = todo.pop() {
            if deadline.is_some_and(Deadline::passed) {
                self.result.stopped = true;
                return Ok(None);
            }
            let literal = cap.is_literal();
            if !literal && !seen.insert(cap.object_key()) {
                continue;
            }
            let report = if literal {
                CheckReport::literal()
            } else {
                match client.check(&cap, self.opts) {
                    Ok(r) => r,
                    Err(err) if err.is_not_found() => not_found_report(&err),
                    Err(err) => return Ok(Some(err)),
                }
            };
            // The reserved entry carrying the root's own metadata is a
            // literal file, not part of the user's tree.
            if !(literal && path.len() == 1 && path[0] == ROOT_META_NAME) {
                let object = Object {
                    path: &path,
                    kind: if is_dir { "directory" } else { "file" },
                    cap: Some(&cap),
                    literal,
                    report: &report,
                };
                self.object(&object)?;
            }
            if !is_dir || !report.recoverable {
                continue;
            }
            let listed = client.list_dir(&cap, Vec::new, |children, name, child| {
                children.push((name, child));
            });
            let mut children = match listed {
                Ok(children) => children,
                Err(err) if err.is_not_found() || !err.is_transient() => {
                    self.result.errors += 1;
                    error!(
                        "{} {}: the directory cannot be read ({err}); what is below it was not \
                         checked",
                        self.target.label,
                        show_path(&path)
                    );
                    continue;
                }
                Err(err) => return Ok(Some(err)),
            };
            // Popped from the end: pushed in reverse name order.
            children.sort_by(|a, b| b.0.cmp(&a.0));
            for (name, child) in children {
                let mut child_path = path.clone();
                child_path.push(name);
                let parsed = child[1]["ro_uri"].as_str().and_then(|c| Cap::parse(c).ok());
                let Some(child_cap) = parsed else {
                    self.result.errors += 1;
                    error!(
                        "{} {}: an entry without a read cap, not checked",
                        self.target.label,
                        show_path(&child_path)
                    );
                    continue;
                };
                let child_is_dir = child[0].as_str() == Some("dirnode");
                todo.push((child_path, child_cap, child_is_dir));
            }
        }
        self.result.complete = true;
        Ok(None)
    }

    /// Counts, reports and records (its lease) one object.
    fn object(&mut self, object: &Object<'_>) -> anyhow::Result<()> {
        let TreeCheck {
            cache,
            target,
            opts,
            report,
            result,
        } = self;
        let backup = &target.label;
        let r = object.report;
        result.objects += 1;
        if object.literal {
            result.literal += 1;
        }
        let path = show_path(object.path);
        if r.repair_attempted && r.repair_successful {
            result.repaired += 1;
            info!("{backup} {path}: repaired");
        }
        trace!(path = %path, "{}", r.summary);
        if !r.healthy {
            result.unhealthy += 1;
        }
        report.object(backup, object, &path)?;
        // add-lease renewed the lease on every share found; a repair placed
        // new shares with fresh leases. An unrecoverable object keeps nothing
        // worth recording.
        if let Some(cap) = object.cap
            && opts.add_lease
            && !object.literal
            && r.recoverable
        {
            cache.set_lease_renewed(cap, unix_now())?;
            result.leases += 1;
            cache.maybe_commit()?;
        }
        Ok(())
    }
}

/// A missing object under `repair=true`: the gateway answers 410 instead of
/// a report.
pub(super) fn not_found_report(err: &TahoeError) -> CheckReport {
    failure_report(format!("Unrecoverable: {err}"), true)
}

/// The report of an object whose check failed: unhealthy, unrecoverable,
/// with `summary` saying why.
pub(super) fn failure_report(summary: String, repair_attempted: bool) -> CheckReport {
    CheckReport {
        healthy: false,
        recoverable: false,
        summary,
        shares_good: None,
        shares_needed: None,
        shares_expected: None,
        repair_attempted,
        repair_successful: false,
    }
}

/// One object as the stream (or a single check) reported it.
pub(super) struct Object<'a> {
    pub(super) path: &'a [String],
    pub(super) kind: &'a str,
    pub(super) cap: Option<&'a Cap>,
    pub(super) literal: bool,
    pub(super) report: &'a CheckReport,
}

/// `/dir/name`: the edge names from the root, `/` for the root itself.
/// Names are shown as the grid stores them: this tool's trees store a name
/// that is not plain NFC UTF-8 free of `\` and control characters in its
/// escaped form (`\\`, `\xNN`), which already names the raw bytes exactly;
/// control characters of foreign trees are shown as `\xNN` too.
pub(super) fn show_path(path: &[String]) -> String {
    if path.is_empty() {
        return "/".into();
    }
    let mut out = String::new();
    for name in path {
        out.push('/');
        for c in name.chars() {
            if c.is_control() {
                let mut buf = [0; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            } else {
                out.push(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_edge_names_from_the_root() {
        assert_eq!(show_path(&[]), "/");
        assert_eq!(
            show_path(&["d".into(), "caf\\xcc\\x81".into()]),
            "/d/caf\\xcc\\x81"
        );
        assert_eq!(show_path(&["new\nline".into()]), "/new\\x0aline");
    }
}
