//! The Prometheus textfile (`monitor.prometheus_textfile`): the status of
//! [`super::collect`] in the text exposition format, written atomically for
//! node_exporter's textfile collector after every `backup` run, and printed
//! by `status --prometheus`. Metrics are listed in `docs/monitoring.md`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::collect::{JobStatus, Status};

/// One metric: its name, help, and its value for a job (`None`: no sample).
struct Metric {
    name: &'static str,
    help: &'static str,
    value: fn(&JobStatus, &Status) -> Option<f64>,
}

fn opt_u64(v: Option<u64>) -> Option<f64> {
    v.map(|n| n as f64)
}

/// The metrics, in the file's order. The cache-wide ones repeat the same
/// value for every backup name (objects are shared between names), so that
/// every series carries the `backup` label and two configs' files on one
/// host never collide.
const METRICS: &[Metric] = &[
    Metric {
        name: "lafs_backup_last_success_timestamp_seconds",
        help: "When the last successful backup finished (Unix seconds; 0: never).",
        value: |j, _| Some(j.last_success.unwrap_or(0) as f64),
    },
    Metric {
        name: "lafs_backup_last_run_duration_seconds",
        help: "How long the last recorded run took.",
        value: |j, _| {
            j.last_run
                .as_ref()
                .map(|r| r.ts_end.saturating_sub(r.ts_start) as f64)
        },
    },
    Metric {
        name: "lafs_backup_last_run_exit_status",
        help: "The exit status of the last recorded run (0 for a skipped one).",
        value: |j, _| j.last_run.as_ref().map(|r| f64::from(r.exit)),
    },
    Metric {
        name: "lafs_backup_last_run_entries",
        help: "Entries of the last recorded run's backup.",
        value: |j, _| opt_u64(j.last_run.as_ref().and_then(|r| r.entries)),
    },
    Metric {
        name: "lafs_backup_last_run_bytes_uploaded",
        help: "Bytes the last recorded run sent to the gateway.",
        value: |j, _| opt_u64(j.last_run.as_ref().and_then(|r| r.bytes_uploaded)),
    },
    Metric {
        name: "lafs_backup_last_run_objects_reused",
        help: "Objects the last recorded run reused instead of uploading.",
        value: |j, _| opt_u64(j.last_run.as_ref().and_then(|r| r.objects_reused)),
    },
    Metric {
        name: "lafs_backup_kept_backups",
        help: "Backups of the name recorded in the cache.",
        value: |j, _| Some(j.kept as f64),
    },
    Metric {
        name: "lafs_backup_lease_horizon_days",
        help: "Days until the first lease of an object of the cache's kept backups may lapse \
               (cache-wide; 0 when an object has no renewal recorded).",
        value: |_, s| s.cache.and_then(|c| c.horizon_days(s.now)),
    },
    Metric {
        name: "lafs_backup_verified_ratio",
        help: "Share of the cache's objects verified at least once (cache-wide).",
        value: |_, s| s.cache.and_then(|c| c.verified_ratio()),
    },
];

/// A label value escaped per the text format: `\`, `"` and newline.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The status as Prometheus text: each metric's `# HELP` and `# TYPE`
/// (all gauges), then one sample per backup name that has a value.
pub(crate) fn render(status: &Status) -> String {
    let mut out = String::new();
    for m in METRICS {
        let _ = writeln!(out, "# HELP {} {}", m.name, m.help);
        let _ = writeln!(out, "# TYPE {} gauge", m.name);
        for job in &status.jobs {
            if let Some(v) = (m.value)(job, status) {
                // Names are shown escaped (`\xNN`) as everywhere, then
                // escaped again for the label syntax.
                let label = escape_label(&crate::commands::show::name(&job.name));
                let _ = writeln!(out, "{}{{backup=\"{label}\"}} {v}", m.name);
            }
        }
    }
    out
}

/// Writes `text` to `path` atomically: a temporary file in the same
/// directory, mode 0644 (node_exporter may run as another user; the file
/// holds no cap), synced, then renamed over `path`.
pub(crate) fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".lafs-backup-textfile.")
        .tempfile_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{Coverage, LeaseAges, RunRecord};
    use crate::commands::status::collect::CacheFacts;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape_label("plain"), "plain");
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn renders_every_metric_with_help_type_and_escaped_labels() {
        let status = Status {
            now: 1000,
            jobs: vec![
                JobStatus {
                    name: b"we\"ird\n\\".to_vec(),
                    last_success: Some(900),
                    last_run: Some(RunRecord {
                        ts_start: 800,
                        ts_end: 900,
                        entries: Some(12),
                        bytes_uploaded: Some(3000),
                        objects_reused: Some(4),
                        ..RunRecord::default()
                    }),
                    kept: 2,
                    last_check: None,
                },
                JobStatus {
                    name: b"never".to_vec(),
                    ..JobStatus::default()
                },
            ],
            cache: Some(CacheFacts {
                leases: LeaseAges {
                    objects: 4,
                    never: 0,
                    oldest: Some(1000 - 86_400),
                },
                lease_days: 31,
                coverage: Coverage {
                    objects: 4,
                    verified: 1,
                    oldest: Some(1000),
                },
                unverified_since: Some(0),
            }),
            crossed: Vec::new(),
        };
        let text = render(&status);
        // The name's newline is shown as \x0a, its `"` and `\` escaped for
        // the label syntax.
        let label = r#"{backup="we\"ird\\x0a\\\\"}"#;
        for line in [
            "# TYPE lafs_backup_last_success_timestamp_seconds gauge".to_owned(),
            format!("lafs_backup_last_success_timestamp_seconds{label} 900"),
            "lafs_backup_last_success_timestamp_seconds{backup=\"never\"} 0".to_owned(),
            format!("lafs_backup_last_run_duration_seconds{label} 100"),
            format!("lafs_backup_last_run_exit_status{label} 0"),
            format!("lafs_backup_last_run_entries{label} 12"),
            format!("lafs_backup_last_run_bytes_uploaded{label} 3000"),
            format!("lafs_backup_last_run_objects_reused{label} 4"),
            format!("lafs_backup_kept_backups{label} 2"),
            format!("lafs_backup_lease_horizon_days{label} 30"),
            "lafs_backup_verified_ratio{backup=\"never\"} 0.25".to_owned(),
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
        // A job without runs has no run samples.
        assert!(!text.contains("lafs_backup_last_run_entries{backup=\"never\"}"));
        assert_eq!(text.matches("# HELP ").count(), METRICS.len());
    }

    #[test]
    fn the_file_is_replaced_atomically_with_mode_0644() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lafs.prom");
        write_atomically(&path, "one\n").unwrap();
        write_atomically(&path, "two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp left"
        );
    }
}
