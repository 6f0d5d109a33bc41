//! The streaming deep check, `POST /uri/DIRCAP?t=stream-deep-check`: the
//! gateway walks the tree under a directory, checks (and optionally
//! verifies, repairs, renews the lease of) every object it reaches, and
//! sends one JSON line per object as it goes.
//!
//! The format (tahoe-lafs 1.20.0, `web/directory.py` `DeepCheckStreamer`):
//!
//! * one line per object: `{"path": [edge names], "cap", "type":
//!   "file"|"directory", "verifycap", "repaircap", "storage-index",
//!   "check-results": {…}}`, or `"check-and-repair-results"` with
//!   `repair=true`. Objects reached twice are listed once, except literal
//!   ones, which have no storage index (`""`) and appear on every path;
//! * a last line `{"type": "stats", "stats": {…}}`;
//! * when the walk fails (a directory that cannot be read), a line
//!   `ERROR: Class(args)` followed by a Python traceback, and nothing else.
//!
//! Lines carry caps. [`DeepCheck`] keeps them out of everything it returns
//! except [`ObjectLine::cap`]: the texts of `ERROR:` lines and of lines that
//! are not JSON go through [`redact`].

use std::io::{BufRead, BufReader, Read};

use serde_json::Value;

use super::client::parse_check;
use super::{Cap, CheckOptions, CheckReport, Client, TahoeError, redact};

/// The longest line accepted from the stream. One object's line is a few
/// KiB at most (its caps, the share map of its servers).
const MAX_LINE: usize = 4 << 20;

/// Lines of the traceback after an `ERROR:` line read before the stream is
/// dropped (a traceback has a few dozen).
const MAX_DRAIN_LINES: usize = 10_000;

/// Characters kept of an error or garbage line.
const MAX_SHOWN: usize = 300;

/// One object of the stream.
#[derive(Debug, Clone)]
pub struct ObjectLine {
    /// Edge names from the checked directory down to the object (empty for
    /// the directory itself), exactly as the gateway sends them.
    pub path: Vec<String>,
    /// The object's cap; `None` if the line had none that parses. Never log
    /// it.
    pub cap: Option<Cap>,
    /// `file`, `directory` (or `unknown` for a node the gateway cannot
    /// classify).
    pub kind: String,
    /// A literal object: no storage index, nothing on the grid, always
    /// healthy, no lease.
    pub literal: bool,
    /// The state reported; after a repair, the state after it.
    pub report: CheckReport,
}

/// What one line of the stream said.
#[derive(Debug, Clone)]
pub enum StreamItem {
    /// An object and its check results.
    Object(ObjectLine),
    /// The final statistics line: the walk is complete.
    Stats(Value),
    /// An `ERROR:` line: the walk stopped there. The text (the line without
    /// `ERROR: `) is redacted and shortened; the traceback that follows it
    /// in the stream is read and dropped.
    Error(String),
    /// A line that is not JSON, or JSON of an unknown shape (an object line
    /// without check results). Redacted and shortened.
    Garbage(String),
}

/// A running deep check: an iterator over the stream's lines. A read error
/// (the connection broke, the gateway went silent for longer than the
/// attempt's time limit) ends it with that error.
pub struct DeepCheck<'a> {
    reader: BufReader<Box<dyn Read + Send>>,
    /// Maps read errors; `None` for a stream that is not from a gateway.
    client: Option<&'a Client>,
    done: bool,
    repair: bool,
}

impl std::fmt::Debug for DeepCheck<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeepCheck")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts a streaming deep check of the directory `dir` with the given
    /// options (`add-lease`, `verify`, `repair`). The request is retried as
    /// any other until the gateway answers; the lines are then read as they
    /// come, each read bounded by the attempt's time limit
    /// (`operation.timeouts.updates`), not the whole stream. A file cap is
    /// refused by the gateway (400).
    pub fn deep_check(&self, dir: &Cap, opts: CheckOptions) -> Result<DeepCheck<'_>, TahoeError> {
        let query = format!("t=stream-deep-check{}", opts.query());
        let reply = self.post_stream("deep-check", dir, &query)?;
        let body: Box<dyn Read + Send> = Box::new(reply.into_body().into_reader());
        Ok(DeepCheck::new(body, opts.repair, Some(self)))
    }
}

impl<'a> DeepCheck<'a> {
    fn new(reader: Box<dyn Read + Send>, repair: bool, client: Option<&'a Client>) -> Self {
        DeepCheck {
            reader: BufReader::with_capacity(64 * 1024, reader),
            client,
            done: false,
            repair,
        }
    }

    /// The lines of a stream read from `reader` (for tests of the line
    /// handling, or a saved stream).
    pub fn from_reader(reader: Box<dyn Read + Send>, repair: bool) -> DeepCheck<'static> {
        DeepCheck::new(reader, repair, None)
    }

    /// Maps an error while reading the stream's body.
    fn read_error(&self, e: std::io::Error) -> TahoeError {
        if let Some(client) = self.client {
            return match client.map_ureq(ureq::Error::from(e)) {
                // Each read may take the first attempt's limit: say so.
                TahoeError::Timeout { attempts, .. } => TahoeError::Timeout {
                    after: client.first_attempt_limit().unwrap_or_default(),
                    attempts,
                },
                other => other,
            };
        }
        TahoeError::Network {
            message: redact(&e.to_string()),
            attempts: 1,
        }
    }

    /// Reads one line (without its newline); `None` at the end.
    fn read_line(&mut self) -> Option<Result<Vec<u8>, TahoeError>> {
        let mut line = Vec::new();
        loop {
            let buf = match self.reader.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Some(Err(self.read_error(e))),
            };
            if buf.is_empty() {
                return if line.is_empty() {
                    None
                } else {
                    Some(Ok(line))
                };
            }
            let (take, end) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            if line.len() + take > MAX_LINE + 2 {
                // No object's line is this long: the stream is hostile or
                // broken. Stop here rather than read on without end.
                self.done = true;
                return Some(Err(TahoeError::TooLarge {
                    what: "a line of the deep-check stream",
                    limit: MAX_LINE as u64,
                    hint: None,
                }));
            }
            line.extend_from_slice(&buf[..take]);
            self.reader.consume(take);
            if end {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Some(Ok(line));
            }
        }
    }

    /// Reads and drops the rest of the stream (a traceback after `ERROR:`),
    /// at most [`MAX_DRAIN_LINES`] lines.
    fn drain(&mut self) {
        for _ in 0..MAX_DRAIN_LINES {
            if !matches!(self.read_line(), Some(Ok(_))) {
                break;
            }
        }
    }
}

impl Iterator for DeepCheck<'_> {
    type Item = Result<StreamItem, TahoeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            let line = match self.read_line() {
                None => {
                    self.done = true;
                    return None;
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Some(Ok(line)) => line,
            };
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let item = parse_line(&line, self.repair);
            if matches!(item, StreamItem::Error(_)) {
                self.drain();
                self.done = true;
            }
            return Some(Ok(item));
        }
    }
}

/// Interprets one non-empty line of the stream.
pub(super) fn parse_line(line: &[u8], repair: bool) -> StreamItem {
    let text = String::from_utf8_lossy(line);
    if let Some(rest) = text.strip_prefix("ERROR:") {
        return StreamItem::Error(shown(rest.trim()));
    }
    let Ok(value) = serde_json::from_slice::<Value>(line) else {
        return StreamItem::Garbage(shown(&text));
    };
    if value.get("type").and_then(Value::as_str) == Some("stats") {
        return StreamItem::Stats(value.get("stats").cloned().unwrap_or(Value::Null));
    }
    match parse_object(&value, repair) {
        Some(object) => StreamItem::Object(object),
        None => StreamItem::Garbage(shown(&text)),
    }
}

/// An object line; `None` when its shape is not one the gateway sends.
fn parse_object(value: &Value, repair: bool) -> Option<ObjectLine> {
    let path = value
        .get("path")?
        .as_array()?
        .iter()
        .map(|p| p.as_str().map(str::to_owned))
        .collect::<Option<Vec<String>>>()?;
    let kind = value.get("type")?.as_str()?.to_owned();
    let cap = value
        .get("cap")
        .and_then(Value::as_str)
        .and_then(|c| Cap::parse(c).ok());
    let key = if repair {
        "check-and-repair-results"
    } else {
        "check-results"
    };
    let results = value.get(key).filter(|r| r.is_object())?;
    let si = value
        .get("storage-index")
        .and_then(Value::as_str)
        .or_else(|| results.get("storage-index").and_then(Value::as_str))
        .unwrap_or("");
    let literal = si.is_empty() && cap.as_ref().is_none_or(Cap::is_literal);
    let report = if literal {
        CheckReport::literal()
    } else {
        parse_check(results).ok()?
    };
    Some(ObjectLine {
        path,
        cap,
        kind,
        literal,
        report,
    })
}

/// A server text fit for messages: redacted, one line, shortened.
fn shown(text: &str) -> String {
    let text = redact(text.trim());
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() > MAX_SHOWN {
        let mut cut: String = one_line.chars().take(MAX_SHOWN - 1).collect();
        cut.push('\u{2026}');
        cut
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHK: &str = "URI:CHK:mcdi47z6bo54osot7psx2wceme:7q26tmtwq6yawrpwimodqaoayv3xdbqqdyzxp47q7ebemjr5ekbq:2:3:100000";

    fn items(text: &str, repair: bool) -> Vec<Result<StreamItem, TahoeError>> {
        DeepCheck::from_reader(Box::new(std::io::Cursor::new(text.to_owned())), repair).collect()
    }

    #[test]
    fn objects_stats_and_literals() {
        let text = format!(
            "{{\"path\": [], \"cap\": \"URI:DIR2-CHK:a:b:2:3:100\", \"type\": \"directory\", \"storage-index\": \"abc\", \
              \"check-results\": {{\"storage-index\": \"abc\", \"summary\": \"Healthy\", \"results\": {{\"healthy\": true, \"recoverable\": true, \
              \"count-shares-good\": 3, \"count-shares-needed\": 2, \"count-shares-expected\": 3}}}}}}\n\
             {{\"path\": [\"d\", \"x\"], \"cap\": \"{CHK}\", \"type\": \"file\", \"storage-index\": \"def\", \
              \"check-results\": {{\"summary\": \"Not Healthy: 1 shares (enc 2-of-3)\", \"results\": {{\"healthy\": false, \"recoverable\": false, \
              \"count-shares-good\": 1, \"count-shares-needed\": 2, \"count-shares-expected\": 3}}}}}}\n\
             {{\"path\": [\"small\"], \"cap\": \"URI:LIT:nbswy3dp\", \"type\": \"file\", \"storage-index\": \"\", \
              \"check-results\": {{\"storage-index\": \"\", \"results\": {{\"healthy\": true}}}}}}\n\
             \n{{\"type\": \"stats\", \"stats\": {{\"count-immutable-files\": 1}}}}\n"
        );
        let got = items(&text, false);
        assert_eq!(got.len(), 4);
        let StreamItem::Object(root) = got[0].as_ref().unwrap() else {
            panic!("root")
        };
        assert!(root.path.is_empty() && root.kind == "directory" && root.report.healthy);
        let StreamItem::Object(x) = got[1].as_ref().unwrap() else {
            panic!("x")
        };
        assert_eq!(x.path, ["d", "x"]);
        assert!(!x.report.healthy && !x.literal);
        assert_eq!(x.report.summary, "Not Healthy: 1 shares (enc 2-of-3)");
        assert_eq!(
            (
                x.report.shares_good,
                x.report.shares_needed,
                x.report.shares_expected
            ),
            (Some(1), Some(2), Some(3))
        );
        assert_eq!(x.cap.as_ref().unwrap().as_str(), CHK);
        let StreamItem::Object(lit) = got[2].as_ref().unwrap() else {
            panic!("lit")
        };
        assert!(lit.literal && lit.report.healthy);
        assert!(matches!(got[3], Ok(StreamItem::Stats(_))));
    }

    #[test]
    fn repair_results_use_the_post_repair_state() {
        let line = r#"{"path": ["f"], "cap": "URI:CHK:a:b:2:3:100", "type": "file", "storage-index": "s",
            "check-and-repair-results": {"storage-index": "s", "repair-attempted": true, "repair-successful": true,
            "pre-repair-results": {"summary": "Not Healthy: 2 shares (enc 2-of-3)", "results": {"healthy": false, "recoverable": true, "count-shares-good": 2}},
            "post-repair-results": {"summary": "Healthy", "results": {"healthy": true, "recoverable": true, "count-shares-good": 3}}}}"#
            .replace('\n', " ");
        let StreamItem::Object(o) = parse_line(line.as_bytes(), true) else {
            panic!()
        };
        assert!(o.report.healthy && o.report.repair_attempted);
        assert_eq!(o.report.shares_good, Some(3));
        // The literal form under repair has no results at all.
        let lit =
            r#"{"path": ["s"], "cap": "URI:LIT:nbswy3dp", "type": "file", "storage-index": "",
            "check-and-repair-results": {"storage-index": "", "repair-attempted": false}}"#
                .replace('\n', " ");
        let StreamItem::Object(o) = parse_line(lit.as_bytes(), true) else {
            panic!()
        };
        assert!(o.literal && o.report.healthy);
        // Without repair the key is another: an object line without its
        // results is garbage, never healthy.
        assert!(matches!(
            parse_line(line.as_bytes(), false),
            StreamItem::Garbage(_)
        ));
    }

    #[test]
    fn error_lines_and_garbage_are_redacted_and_end_the_stream() {
        let text = format!(
            "{{\"path\": [], \"cap\": \"{CHK}\", \"type\": \"directory\", \"storage-index\": \"x\", \"check-results\": {{\"results\": {{\"healthy\": false, \"recoverable\": false}}}}}}\n\
             ERROR: NotEnoughSharesError(ran out of shares for {CHK})\n\
             Traceback (most recent call last):\n  File \"x\", line 1\nallmydata.NotEnoughSharesError: {CHK}\n"
        );
        let got = items(&text, false);
        assert_eq!(got.len(), 2, "the traceback is not more items");
        let Ok(StreamItem::Error(msg)) = &got[1] else {
            panic!("{:?}", got[1])
        };
        assert!(msg.starts_with("NotEnoughSharesError(ran out of shares for <cap #"));
        assert!(!msg.contains("URI:"));

        let got = items(&format!("<html>oops {CHK}</html>\n"), false);
        let Ok(StreamItem::Garbage(msg)) = &got[0] else {
            panic!()
        };
        assert!(!msg.contains("URI:") && msg.contains("<cap #"));
        let long = "x".repeat(5000);
        let Ok(StreamItem::Garbage(msg)) = &items(&long, false)[0] else {
            panic!()
        };
        assert_eq!(msg.chars().count(), MAX_SHOWN);
    }

    #[test]
    fn a_broken_stream_ends_with_an_error() {
        struct Broken(bool);
        impl Read for Broken {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "reset",
                    ));
                }
                self.0 = true;
                let line = b"{\"type\": \"stats\", \"stats\": {}}\n{\"path\": [";
                buf[..line.len()].copy_from_slice(line);
                Ok(line.len())
            }
        }
        let got: Vec<_> = DeepCheck::from_reader(Box::new(Broken(false)), false).collect();
        assert_eq!(got.len(), 2);
        assert!(matches!(got[0], Ok(StreamItem::Stats(_))));
        assert!(matches!(got[1], Err(TahoeError::Network { .. })));
    }

    #[test]
    fn an_endless_line_ends_the_stream_with_an_error() {
        // An endless line without a newline: refused at the limit, without
        // reading on (the reader would never end).
        let endless = std::io::repeat(b'x');
        let got: Vec<_> = DeepCheck::from_reader(Box::new(endless), false).collect();
        assert_eq!(got.len(), 1);
        let Err(err @ TahoeError::TooLarge { .. }) = &got[0] else {
            panic!("{:?}", got[0]);
        };
        assert!(err.to_string().contains("deep-check stream"), "{err}");
        assert!(!err.is_transient());
    }
}
