//! Where and how `check` reports: object lines (a `--format` template, or
//! JSON), per-backup summaries and notes.

use std::io::{self, Write};

use serde_json::{Value, json};
use tracing::warn;

use super::Deadline;
use super::targets::Target;
use super::templates::{Fields, Template, show_duration};
use super::tree::{Object, TreeResult};
use crate::cache::{Cache, StaleLeases};
use crate::commands::show::{self, name as show_name};
use crate::tahoe::{Cap, CheckOptions, CheckReport};

/// Backups named in the stale-lease warning before "and N more".
const WARN_NAMES: usize = 10;

/// The summary of a `check --leases` run.
#[derive(Debug)]
pub(super) struct LeasesSummary {
    /// Objects reachable from the recorded backups.
    pub(super) objects: usize,
    /// Of those, done by the interrupted run this one continued.
    pub(super) resumed_at: usize,
    pub(super) renewed: u64,
    pub(super) unhealthy: u64,
    pub(super) errors: u64,
    /// Requests sent to the gateway.
    pub(super) requests: u64,
    pub(super) stale_before: u64,
    pub(super) stale_after: u64,
    /// Every object was done (no stop, no failure of the gateway).
    pub(super) complete: bool,
    pub(super) seconds: f64,
}

/// Where and how reports go: every line `check` prints is made here, as
/// text or JSON from the same record.
pub(super) struct Reporter {
    pub(super) json: bool,
    /// `-e`: object reports on stderr.
    pub(super) to_stderr: bool,
    pub(super) format: Template,
    pub(super) healthy_format: Option<Template>,
}

impl Reporter {
    /// Reports one object of a tree: always when unhealthy, when healthy
    /// only with `--healthy-format`.
    pub(super) fn object(
        &self,
        backup: &str,
        object: &Object<'_>,
        path: &str,
    ) -> anyhow::Result<()> {
        let r = object.report;
        let template = if r.healthy {
            match &self.healthy_format {
                Some(t) => t,
                None => return Ok(()),
            }
        } else {
            &self.format
        };
        let kind = kind_name(object.kind);
        let line = if self.json {
            let mut v = object_json(kind, r);
            v.insert("backup".into(), json!(backup));
            v.insert("path".into(), json!(object.path));
            if r.repair_attempted {
                v.insert("repaired".into(), Value::Bool(r.repair_successful));
            }
            Value::Object(v).to_string()
        } else {
            template.render(&Fields {
                backup,
                path,
                kind,
                report: r,
            })
        };
        self.object_line(&line)
    }

    /// Reports an object of `check --leases` (known only by its cap): the
    /// backups that reach it stand for `{backup}`, `#` and its short id for
    /// `{path}`.
    pub(super) fn lease_object(
        &self,
        cache: &Cache,
        cap: &Cap,
        r: &CheckReport,
    ) -> anyhow::Result<()> {
        let names: Vec<String> = cache
            .backups_reaching(cap)?
            .iter()
            .map(|(_, name)| show_name(name))
            .collect();
        let id = format!("#{}", cap.short_id());
        let kind = if cap.is_dir() { "directory" } else { "file" };
        let line = if self.json {
            let mut v = object_json(kind, r);
            v.insert("backups".into(), json!(names));
            v.insert("object".into(), json!(id));
            v.insert("path".into(), Value::Null);
            Value::Object(v).to_string()
        } else {
            self.format.render(&Fields {
                backup: &if names.is_empty() {
                    "(no recorded backup)".to_owned()
                } else {
                    names.join(", ")
                },
                path: &id,
                kind,
                report: r,
            })
        };
        self.object_line(&line)
    }

    pub(super) fn object_line(&self, line: &str) -> anyhow::Result<()> {
        if self.to_stderr {
            let mut err = io::stderr().lock();
            writeln!(err, "{line}")?;
            err.flush()?;
        } else {
            let mut out = io::stdout().lock();
            writeln!(out, "{line}")?;
            out.flush()?;
        }
        Ok(())
    }

    /// A JSON summary line on stdout.
    pub(super) fn summary_line(&self, value: &Value) -> anyhow::Result<()> {
        let mut out = io::stdout().lock();
        writeln!(out, "{value}")?;
        out.flush()?;
        Ok(())
    }

    /// The note of a run that `--max-duration` stopped: on stderr, and as a
    /// `not_finished` line with `--json`.
    pub(super) fn not_finished(
        &self,
        deadline: &Deadline,
        done: &str,
        next: &str,
    ) -> anyhow::Result<()> {
        let limit = show_duration(deadline.limit);
        let ran = show_duration(deadline.started.elapsed());
        if self.json {
            self.summary_line(&json!({
                "type": "not_finished",
                "max_duration_seconds": deadline.limit.as_secs_f64(),
                "seconds": show::json_seconds(deadline.started.elapsed().as_secs_f64()),
                "done": done,
            }))?;
        }
        eprintln!(
            "lafs-backup: check not finished: --max-duration {limit} reached after {ran} \
             ({done}); what was checked is recorded, {next}"
        );
        Ok(())
    }

    pub(super) fn backup_summary(
        &self,
        target: &Target,
        r: &TreeResult,
        opts: CheckOptions,
        seconds: f64,
    ) -> anyhow::Result<()> {
        if self.json {
            return self.summary_line(&json!({
                "type": "backup",
                "name": target.label,
                "known": !target.ids.is_empty(),
                "objects": r.objects,
                "literal": r.literal,
                "unhealthy": r.unhealthy,
                "errors": r.errors,
                "repaired": r.repaired,
                "leases_renewed": r.leases,
                "seconds": show::json_seconds(seconds),
            }));
        }
        let mut text = format!(
            "lafs-backup: check {}: {} objects ({} literal), {} unhealthy",
            target.label, r.objects, r.literal, r.unhealthy
        );
        if r.errors > 0 {
            text.push_str(&format!(", {} failed", r.errors));
        }
        if opts.repair {
            text.push_str(&format!(", {} repaired", r.repaired));
        }
        if opts.add_lease {
            text.push_str(&format!("; {} leases renewed", r.leases));
        }
        text.push_str(&format!("; {seconds:.1}s"));
        eprintln!("{text}");
        Ok(())
    }

    /// The stale-lease record: a `stale_leases` JSON line (with `--json`,
    /// when `json_line`) and, when there are any, the warning in the log.
    pub(super) fn stale_leases(
        &self,
        stale: &StaleLeases,
        days: i64,
        json_line: bool,
    ) -> anyhow::Result<()> {
        if self.json && json_line {
            let names: Vec<String> = stale.backups.iter().map(|b| show_name(&b.name)).collect();
            self.summary_line(&json!({
                "type": "stale_leases",
                "objects": stale.objects,
                "never": stale.never,
                "days": days,
                "backups": names,
            }))?;
        }
        if stale.objects > 0 {
            let mut names: Vec<String> = stale
                .backups
                .iter()
                .take(WARN_NAMES)
                .map(|b| format!("{} ({})", show_name(&b.name), b.objects))
                .collect();
            if stale.backups.len() > WARN_NAMES {
                names.push(format!("and {} more", stale.backups.len() - WARN_NAMES));
            }
            warn!(
                "LEASES: {} object(s) of the recorded backups have not had their leases renewed \
                 by this cache for more than {days} days{}: the grid may delete their shares \
                 when their leases lapse (lease.duration_days). Backups affected (objects): {}. \
                 Run `lafs-backup check --leases` to renew them",
                stale.objects,
                if stale.never > 0 {
                    format!(" ({} never)", stale.never)
                } else {
                    String::new()
                },
                names.join(", ")
            );
        }
        Ok(())
    }

    /// The summary of `check --leases`: a `leases` JSON line, or a line on
    /// stderr.
    pub(super) fn leases_summary(&self, s: &LeasesSummary) -> anyhow::Result<()> {
        if self.json {
            return self.summary_line(&json!({
                "type": "leases",
                "objects": s.objects,
                "resumed_at": s.resumed_at,
                "renewed": s.renewed,
                "unhealthy": s.unhealthy,
                "errors": s.errors,
                "requests": s.requests,
                "stale_before": s.stale_before,
                "stale_after": s.stale_after,
                "complete": s.complete,
                "seconds": show::json_seconds(s.seconds),
            }));
        }
        eprintln!(
            "lafs-backup: check --leases: {} objects{}, {} leases renewed, {} unhealthy, {} \
             failed; {} requests; stale before {}, after {}; {:.1}s",
            s.objects,
            if s.resumed_at > 0 {
                format!(" ({} done by the interrupted run)", s.resumed_at)
            } else {
                String::new()
            },
            s.renewed,
            s.unhealthy,
            s.errors,
            s.requests,
            s.stale_before,
            s.stale_after,
            s.seconds,
        );
        Ok(())
    }
}

/// The fields of an `object` JSON line that come from its check report
/// (the keys of a JSON line come out sorted, whatever the order here).
fn object_json(kind: &str, r: &CheckReport) -> serde_json::Map<String, Value> {
    let v = json!({
        "type": "object",
        "kind": kind,
        "healthy": r.healthy,
        "recoverable": r.recoverable,
        "summary": r.summary,
        "good": r.shares_good,
        "needed": r.shares_needed,
        "expected": r.shares_expected,
    });
    match v {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

/// `file` or `directory` (the stream's names), anything else as it came.
pub(super) fn kind_name(kind: &str) -> &str {
    match kind {
        "dir" => "directory",
        other => other,
    }
}
