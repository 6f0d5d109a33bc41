//! [`TahoeError`], its classification, and the reading of a gateway's error
//! replies (Python tracebacks, plain text, HTML).

use std::io;
use std::time::Duration;

use super::redact;

/// Longest server-provided message kept in an error, in characters.
const MAX_MESSAGE_CHARS: usize = 300;

/// Python exceptions after which a retry cannot help, whatever the status.
const PERMANENT_EXCEPTIONS: &[&str] = &[
    "MustBeDeepImmutableError",
    "NotWriteableError",
    "JSONDecodeError",
    "UploadUnhappinessError",
    "NoSharesError",
    "NotEnoughSharesError",
];

/// An error of a Tahoe gateway request. Its `Display` is one short line and
/// never contains a capability: server texts went through [`redact`].
#[derive(Debug, thiserror::Error)]
pub enum TahoeError {
    /// Text that is not a capability. The reason never quotes the text.
    #[error("invalid capability: {0}")]
    BadCap(&'static str),

    /// An unusable gateway URL, child name or directory path.
    #[error("{0}")]
    Invalid(String),

    /// No connection to the gateway: refused, unreachable, unknown host.
    /// `attempts` is how many tries were made.
    #[error("cannot connect to the Tahoe gateway at {gateway}: {message}{}", attempts_note(*attempts))]
    Connect {
        /// The gateway's address (never a cap).
        gateway: String,
        /// Why the connection failed.
        message: String,
        /// How many tries were made.
        attempts: u32,
    },

    /// The connection failed during the exchange (reset, closed early,
    /// malformed HTTP).
    #[error("connection to the Tahoe gateway failed: {message}{}", attempts_note(*attempts))]
    Network {
        /// What went wrong.
        message: String,
        /// How many tries were made.
        attempts: u32,
    },

    /// Every attempt ran out of time (`operation.timeouts.updates`);
    /// `after` is the limit of the last attempt.
    #[error(
        "the Tahoe gateway did not finish in time (waited {} per attempt{})",
        super::client::show_secs(*after),
        if *attempts > 1 { format!(", {attempts} attempts") } else { String::new() }
    )]
    Timeout {
        /// The time limit of the last attempt.
        after: Duration,
        /// How many tries were made.
        attempts: u32,
    },

    /// Reading the local data of an upload failed (the file vanished or
    /// could not be read, the compressor failed). Never retried.
    #[error("reading the data to upload failed: {0}")]
    Body(#[source] io::Error),

    /// Writing downloaded data where it goes (a file being restored)
    /// failed. Never retried.
    #[error("writing the downloaded data failed: {0}")]
    Sink(#[source] io::Error),

    /// The gateway answered with an error status. `exception` is the Python
    /// exception's class name when the body names one; `message` is the
    /// rest of the text, redacted and shortened.
    #[error("{}", http_text(*status, exception.as_deref(), message))]
    Http {
        /// The HTTP status code.
        status: u16,
        /// The Python exception's class name, when the body names one.
        exception: Option<String>,
        /// The rest of the body, redacted and shortened.
        message: String,
    },

    /// A reply body ended before (or went past) its announced size.
    #[error("incomplete reply from the Tahoe gateway: {got} of {expected} bytes")]
    Incomplete {
        /// The announced size.
        expected: u64,
        /// The bytes received.
        got: u64,
    },

    /// A reply body longer than the limit for what it is (a directory
    /// listing, a check report, a symlink target, a file longer than its
    /// cap says), noticed while it was streaming in: at most `limit` bytes
    /// were read. `what` names the kind of reply (never a cap); callers add
    /// the object's path. Never retried: the gateway would send it again.
    #[error("{what} is larger than the limit of {limit} bytes{}", hint.map(|h| format!(" ({h})")).unwrap_or_default())]
    TooLarge {
        /// The kind of reply (never a cap).
        what: &'static str,
        /// The limit, in bytes.
        limit: u64,
        /// The config key that sets the limit, when it is configurable.
        hint: Option<&'static str>,
    },

    /// A read through the native storage path (`destination.storage:
    /// native`) failed and `destination.native.required` forbids the
    /// gateway. The text names what failed (never a cap or secret).
    #[error("the native storage path failed and destination.native.required is true: {0}")]
    Native(String),

    /// A successful status with a reply that makes no sense (not a cap,
    /// invalid JSON, an unexpected redirect).
    #[error("unexpected reply from the Tahoe gateway: {0}")]
    BadReply(String),
}

fn attempts_note(attempts: u32) -> String {
    if attempts > 1 {
        format!(" ({attempts} attempts)")
    } else {
        String::new()
    }
}

fn http_text(status: u16, exception: Option<&str>, message: &str) -> String {
    let reason = ureq::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(|r| format!(" {r}"))
        .unwrap_or_default();
    let mut text = format!("the Tahoe gateway answered {status}{reason}");
    if let Some(exception) = exception {
        text.push_str(": ");
        text.push_str(exception);
    }
    if !message.is_empty() {
        text.push_str(": ");
        text.push_str(message);
    }
    text
}

impl TahoeError {
    /// Worth retrying: connection failures, timeouts, incomplete replies,
    /// 503, and other 5xx unless the exception is a known permanent one
    /// (see `PERMANENT_EXCEPTIONS`). 4xx, bad replies, bad caps and local
    /// body errors are permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            TahoeError::Connect { .. }
            | TahoeError::Network { .. }
            | TahoeError::Timeout { .. }
            | TahoeError::Incomplete { .. } => true,
            TahoeError::Http {
                status, exception, ..
            } => {
                *status == 503
                    || ((500..600).contains(status)
                        && !exception
                            .as_deref()
                            .is_some_and(|e| PERMANENT_EXCEPTIONS.contains(&e)))
            }
            TahoeError::BadCap(_)
            | TahoeError::Invalid(_)
            | TahoeError::Body(_)
            | TahoeError::Sink(_)
            | TahoeError::TooLarge { .. }
            | TahoeError::Native(_)
            | TahoeError::BadReply(_) => false,
        }
    }

    /// The grid could not place enough shares (`UploadUnhappinessError`:
    /// too few servers, or the same content being uploaded concurrently or
    /// left half-uploaded). The client does not retry it: the uploader
    /// decides.
    pub fn is_unhappy(&self) -> bool {
        self.exception() == Some("UploadUnhappinessError")
    }

    /// The object (or child) does not exist or cannot be recovered: 404,
    /// 410, `NoSharesError`, `NotEnoughSharesError`.
    pub fn is_not_found(&self) -> bool {
        matches!(self.status(), Some(404 | 410))
            || matches!(
                self.exception(),
                Some("NoSharesError" | "NotEnoughSharesError")
            )
    }

    /// The HTTP status of an error reply.
    pub fn status(&self) -> Option<u16> {
        match self {
            TahoeError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The Python exception class named by an error reply.
    pub fn exception(&self) -> Option<&str> {
        match self {
            TahoeError::Http { exception, .. } => exception.as_deref(),
            _ => None,
        }
    }

    pub(crate) fn is_timeout(&self) -> bool {
        matches!(self, TahoeError::Timeout { .. })
    }

    /// Records how many tries an error took, for the kinds that say so.
    pub(crate) fn with_attempts(mut self, tries: u32) -> Self {
        match &mut self {
            TahoeError::Connect { attempts, .. }
            | TahoeError::Network { attempts, .. }
            | TahoeError::Timeout { attempts, .. } => *attempts = tries,
            _ => {}
        }
        self
    }

    /// Builds the error for an error reply from its status, Content-Type
    /// and (possibly partial) body.
    pub(crate) fn from_reply(status: u16, content_type: Option<&str>, body: &[u8]) -> TahoeError {
        let text = String::from_utf8_lossy(body);
        let start = text
            .trim_start()
            .get(..9)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let html = start.starts_with('<')
            && (content_type.is_some_and(|ct| ct.to_ascii_lowercase().contains("html"))
                || start.starts_with("<html")
                || start.starts_with("<!doctype"));
        let ErrorText { exception, message } = parse_error_body(&text, html);
        TahoeError::Http {
            status,
            exception,
            message,
        }
    }
}

/// What an error body says: the exception class (if named) and the message,
/// already redacted, on one line and shortened.
#[derive(Debug)]
pub(crate) struct ErrorText {
    pub exception: Option<String>,
    pub message: String,
}

/// Reads an error body. With `Accept: text/plain` a 500 is a Python
/// traceback whose last non-empty line is `module.ExceptionClass: message`;
/// a 410 is `ExceptionClass: message` on its first line followed by more
/// text; a 404 is HTML (`<p>No such child: x</p>`), whose tags are
/// stripped. The exception is taken from the last non-empty line, else the
/// first, when the text before its first `:` is a (dotted) class name.
pub(crate) fn parse_error_body(body: &str, html: bool) -> ErrorText {
    let text = if html {
        html_to_text(body)
    } else {
        body.to_string()
    };
    // Redacted before it is split: a line that starts with a cap would
    // otherwise read as `URI: rest`, an "exception" whose rest escapes the
    // redaction below.
    let text = redact(&text);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();

    let (exception, message) = match (lines.first(), lines.last()) {
        (Some(first), Some(last)) => {
            if let Some((exc, rest)) = exception_line(last) {
                (Some(exc), rest.to_string())
            } else if let Some((exc, rest)) = exception_line(first) {
                let mut message = rest.to_string();
                for line in &lines[1..] {
                    message.push(' ');
                    message.push_str(line);
                }
                (Some(exc), message)
            } else {
                (None, lines.join(" "))
            }
        }
        _ => (None, String::new()),
    };
    let message = redact(&message.split_whitespace().collect::<Vec<_>>().join(" "));
    ErrorText {
        exception,
        message: shorten(&message, MAX_MESSAGE_CHARS),
    }
}

/// `Some((class name, rest))` when `line` is `dotted.path.ClassName: rest`.
fn exception_line(line: &str) -> Option<(String, &str)> {
    let (head, rest) = line.split_once(':')?;
    let class = head.rsplit('.').next()?;
    let is_ident = |s: &str| {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let valid =
        head.split('.').all(is_ident) && class.starts_with(|c: char| c.is_ascii_uppercase());
    if !valid {
        return None;
    }
    let rest = rest.trim();
    // Twisted wraps some: `Failure: allmydata.mutable.common.NotWriteableError: `.
    if class == "Failure"
        && let Some(inner) = exception_line(rest)
    {
        return Some(inner);
    }
    Some((class.to_string(), rest))
}

/// The text of an HTML error page: the contents of its `<p>` elements when
/// it has any, else of the whole page without `<head>`; tags stripped,
/// basic entities decoded.
fn html_to_text(html: &str) -> String {
    let lower = html.to_ascii_lowercase();
    let mut paragraphs = Vec::new();
    let mut at = 0;
    while let Some(start) = lower[at..].find("<p>").map(|p| at + p + 3) {
        let end = lower[start..]
            .find("</p>")
            .map_or(lower.len(), |p| start + p);
        paragraphs.push(strip_tags(&html[start..end]));
        at = end;
    }
    let text = if paragraphs.is_empty() {
        let body_start = lower.find("</head>").map_or(0, |p| p + "</head>".len());
        strip_tags(&html[body_start..])
    } else {
        paragraphs.join("\n")
    };
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

/// `text` without `<…>` tags; each tag becomes a space.
fn strip_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// At most `max` characters: longer texts end in "…".
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('\u{2026}');
    out
}
