//! Pings of a Healthchecks-compatible endpoint (`monitor.healthchecks_url`,
//! `docs/hooks.md`): `URL/start` when a backup run starts, `URL` when it
//! succeeded (exit 0 or 3), `URL/fail` when it failed, the run's summary as
//! the body of the last. A ping never fails the backup: an unreachable
//! endpoint costs a warning. The URL's path is a secret of sorts (anyone
//! who knows it can ping), so messages show only its scheme and host.

use std::time::Duration;

use tracing::{info, warn};

/// The time limit of one ping attempt.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts per ping (one retry: a ping is cheap, a lost one alarms).
const ATTEMPTS: u32 = 2;

/// The endpoint of one run.
pub(crate) struct Pinger {
    url: String,
    agent: ureq::Agent,
}

impl Pinger {
    /// `None` when no URL is configured. `ca_files` are trusted beside the
    /// system's store for an `https://` endpoint (`http.ca_certs_files`).
    pub(crate) fn new(url: Option<&str>, ca_files: &[std::path::PathBuf]) -> Option<Pinger> {
        let url = url?.trim_end_matches('/').to_owned();
        let mut config = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false)
            .user_agent(format!("lafs-backup/{}", env!("CARGO_PKG_VERSION")));
        if url.to_ascii_lowercase().starts_with("https://") {
            match crate::tahoe::tls_config(ca_files) {
                Ok(tls) => config = config.tls_config(tls),
                Err(e) => warn!("monitor.healthchecks_url ({}): {e}", origin(&url)),
            }
        }
        Some(Pinger {
            url,
            agent: ureq::Agent::new_with_config(config.build()),
        })
    }

    /// `URL/start`.
    pub(crate) fn start(&self) {
        self.ping("/start", "");
    }

    /// `URL` (success) or `URL/fail`, with the summary as body.
    pub(crate) fn finish(&self, success: bool, body: &str) {
        self.ping(if success { "" } else { "/fail" }, body);
    }

    fn ping(&self, suffix: &str, body: &str) {
        let url = format!("{}{suffix}", self.url);
        let what = if suffix.is_empty() { "/" } else { suffix };
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            match self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body)
            {
                Ok(response) if response.status().is_success() => {
                    info!("monitor ping {what} to {} sent", origin(&self.url));
                    return;
                }
                Ok(response) => last = format!("HTTP status {}", response.status().as_u16()),
                Err(e) => last = e.to_string(),
            }
        }
        warn!(
            "monitor.healthchecks_url: the ping {what} to {} failed ({}); the backup goes on",
            origin(&self.url),
            scrub(&scrub(&last, &url), &self.url)
        );
    }
}

/// `scheme://host[:port]` of a URL: what may be shown of it.
fn origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    // Credentials in the authority are a secret too.
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    format!("{scheme}://{host}")
}

/// An error message with the URL's path replaced by its origin.
fn scrub(message: &str, url: &str) -> String {
    message.replace(url, &origin(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_origin_is_shown() {
        assert_eq!(
            origin("https://hc-ping.com/1234-uuid"),
            "https://hc-ping.com"
        );
        assert_eq!(
            origin("http://u:p@127.0.0.1:8000/ping/x?y"),
            "http://127.0.0.1:8000"
        );
        assert_eq!(
            scrub("error at http://h/secret/start", "http://h/secret/start"),
            "error at http://h"
        );
    }
}
