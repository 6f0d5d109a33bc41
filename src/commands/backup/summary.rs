//! The run summary handed to hooks (`LAFS_BACKUP_SUMMARY`) and sent to the
//! Healthchecks endpoint: a JSON document whose format is a contract
//! (`docs/hooks.md`). It names jobs and counts; it never holds a
//! capability.

use std::io::Write as _;
use std::path::Path;

use serde_json::{Value, json};

use super::JobReport;
use crate::exit;

/// Version of the summary document's format.
const VERSION: u64 = 1;

/// One job's line of the summary.
#[derive(Debug, Clone, Default)]
pub(crate) struct JobSummary {
    /// The backup name.
    pub(crate) name: String,
    /// The job's name in `jobs:`, `None` for the config's own source.
    pub(crate) job: Option<String>,
    pub(crate) exit: u8,
    /// Why the job was skipped (its schedule, or a `before` hook).
    pub(crate) skipped: Option<String>,
    /// Why it failed (the message printed for it).
    pub(crate) error: Option<String>,
    pub(crate) report: Option<JobReport>,
    pub(crate) seconds: f64,
}

impl JobSummary {
    /// The summary of a finished (or failed) job.
    pub(crate) fn of(
        name: &str,
        job: Option<&str>,
        result: &anyhow::Result<JobReport>,
        seconds: f64,
    ) -> JobSummary {
        let mut summary = JobSummary {
            name: name.to_owned(),
            job: job.map(str::to_owned),
            seconds,
            ..JobSummary::default()
        };
        match result {
            Ok(report) => {
                summary.name = String::from_utf8_lossy(&report.name).into_owned();
                summary.exit = report.outcome.code();
                summary.skipped = report.skipped.clone();
                summary.report = Some(report.clone());
            }
            Err(err) => {
                summary.exit = exit::code_for(err);
                summary.error = Some(exit::message(err));
            }
        }
        summary
    }

    fn to_json(&self) -> Value {
        let report = self.report.as_ref();
        let upload = report.and_then(|r| r.upload.as_ref());
        json!({
            "name": self.name,
            "job": self.job,
            "exit": self.exit,
            "skipped": self.skipped,
            "error": self.error,
            "entries": report.and_then(|r| r.entries),
            "files_uploaded": upload.map(|s| s.files_uploaded),
            "bytes_uploaded": upload.map(|s| s.bytes_read),
            "objects_reused": upload.map(|s| s.unchanged + s.content_reused),
            "seconds": (self.seconds * 1000.0).round() / 1000.0,
        })
    }
}

/// The summary document of a run (or of one job's part of it).
pub(crate) fn document(exit: u8, jobs: &[JobSummary]) -> Value {
    json!({
        "version": VERSION,
        "exit": exit,
        "jobs": jobs.iter().map(JobSummary::to_json).collect::<Vec<_>>(),
    })
}

/// The summary written to a private temporary file (0600) for the hooks;
/// removed when dropped.
pub(crate) struct SummaryFile(tempfile::NamedTempFile);

impl SummaryFile {
    pub(crate) fn write(document: &Value) -> std::io::Result<SummaryFile> {
        // tempfile creates the file 0600, exclusively, in $TMPDIR.
        let mut file = tempfile::Builder::new()
            .prefix("lafs-backup-summary-")
            .suffix(".json")
            .tempfile()?;
        let mut text = document.to_string();
        text.push('\n');
        file.write_all(text.as_bytes())?;
        file.flush()?;
        Ok(SummaryFile(file))
    }

    pub(crate) fn path(&self) -> &Path {
        self.0.path()
    }
}
