//! Typed values of config keys whose meaning is more than a plain scalar,
//! with their parsing (validation) and their YAML form for `to_yaml`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::emit::{self, Out};
use super::node::{Kind, Node};
use super::schema::{Invalid, InvalidKind, Value, check_duplicates, join, parse_list};

// ---------------------------------------------------------------- logging

/// `logging.level`, from quiet to loud.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum LogLevel {
    Error,
    #[default]
    Warning,
    Info,
    Debug,
    /// One line per entry processed.
    Noise,
}

impl LogLevel {
    pub const ALL: [LogLevel; 5] = [
        LogLevel::Error,
        LogLevel::Warning,
        LogLevel::Info,
        LogLevel::Debug,
        LogLevel::Noise,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warning => "warning",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Noise => "noise",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogLevel {
    type Err = String;

    /// Case-insensitive, since Python configs spell levels `WARNING`.
    fn from_str(s: &str) -> Result<Self, String> {
        LogLevel::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!(
                    "unknown log level {}; expected one of error, warning, info, debug, noise",
                    crate::config::node::quote_for_message(s)
                )
            })
    }
}

impl Value for LogLevel {
    fn zero() -> Self {
        LogLevel::Warning
    }

    fn parse(node: &Node, key: &str) -> Result<Self, Invalid> {
        const EXPECTED: &str = "one of error, warning, info, debug, noise";
        match &node.kind {
            Kind::Str(s) => s
                .parse()
                .map_err(|_: String| Invalid::ty(node, key, EXPECTED)),
            _ => Err(Invalid::ty(node, key, EXPECTED)),
        }
    }

    fn to_out(&self) -> Out {
        Out::Word(self.as_str())
    }
}

// ---------------------------------------------------------------- codec

/// `destination.encoding.codec`: how the files that the
/// `destination.encoding.xz` rules select are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Codec {
    /// xz (the original tool's codec): smallest, slow, ~94 MiB per
    /// preset-6 encoder.
    Xz,
    /// zstd: much faster, slightly larger, a few MiB per encoder; the
    /// default since issue 16 (flat memory).
    #[default]
    Zstd,
}

impl Codec {
    /// The config and edge-metadata spelling: `xz` or `zstd`.
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::Xz => "xz",
            Codec::Zstd => "zstd",
        }
    }
}

impl Value for Codec {
    fn zero() -> Self {
        Codec::Zstd
    }

    fn parse(node: &Node, key: &str) -> Result<Self, Invalid> {
        const EXPECTED: &str = "one of xz, zstd";
        match &node.kind {
            Kind::Str(s) if s.trim().eq_ignore_ascii_case("xz") => Ok(Codec::Xz),
            Kind::Str(s) if s.trim().eq_ignore_ascii_case("zstd") => Ok(Codec::Zstd),
            _ => Err(Invalid::ty(node, key, EXPECTED)),
        }
    }

    fn to_out(&self) -> Out {
        Out::Word(self.as_str())
    }
}

// ---------------------------------------------------------------- storage

/// `destination.storage`: how CHK objects reach the storage servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StorageMode {
    /// Through the gateway's web API (`PUT /uri`, `mkdir-immutable`).
    #[default]
    Gateway,
    /// Encoded here and sent straight to the storage servers (issue 17;
    /// `docs/native-storage.md`).
    Native,
}

impl StorageMode {
    /// The config spelling: `gateway` or `native`.
    pub fn as_str(self) -> &'static str {
        match self {
            StorageMode::Gateway => "gateway",
            StorageMode::Native => "native",
        }
    }
}

impl Value for StorageMode {
    fn zero() -> Self {
        StorageMode::Gateway
    }

    fn parse(node: &Node, key: &str) -> Result<Self, Invalid> {
        match &node.kind {
            Kind::Str(s) if s.trim().eq_ignore_ascii_case("gateway") => Ok(StorageMode::Gateway),
            Kind::Str(s) if s.trim().eq_ignore_ascii_case("native") => Ok(StorageMode::Native),
            _ => Err(Invalid::ty(node, key, "one of gateway, native")),
        }
    }

    fn to_out(&self) -> Out {
        Out::Word(self.as_str())
    }
}

// ---------------------------------------------------------------- timeouts

/// `operation.timeouts.updates`: how long one upload of an object (a file
/// PUT or a directory mkdir, HTTP retries included) may take.
#[derive(Debug, Clone, PartialEq)]
pub enum Timeouts {
    /// No timeout (`null`, `false`, `0` or a negative number).
    None,
    /// This many seconds per attempt, retrying forever (a positive number).
    Fixed(f64),
    /// One attempt per element, each with that many seconds; the upload
    /// fails after the last (a list).
    PerAttempt(Vec<f64>),
}

impl Timeouts {
    /// How many attempts an upload gets; `None` means no limit.
    pub fn attempts(&self) -> Option<usize> {
        match self {
            Timeouts::None | Timeouts::Fixed(_) => None,
            Timeouts::PerAttempt(list) => Some(list.len()),
        }
    }

    /// The timeout of attempt `n` (0-based); `None` means no timeout (also
    /// past the end of a list, which [`Timeouts::attempts`] rules out).
    pub fn timeout(&self, n: usize) -> Option<Duration> {
        match self {
            Timeouts::None => None,
            Timeouts::Fixed(secs) => Some(seconds(*secs)),
            Timeouts::PerAttempt(list) => list.get(n).map(|s| seconds(*s)),
        }
    }
}

impl Value for Timeouts {
    fn zero() -> Self {
        Timeouts::None
    }

    fn parse(node: &Node, key: &str) -> Result<Self, Invalid> {
        const EXPECTED: &str =
            "a number of seconds, a list of them (one per attempt), or null for no timeout";
        match &node.kind {
            Kind::Null | Kind::Bool(false) => Ok(Timeouts::None),
            Kind::Int(_) | Kind::Float(_) => {
                let secs = node.as_f64().unwrap_or(f64::NAN);
                if secs.is_nan() || secs == f64::INFINITY {
                    Err(Invalid::value(
                        node,
                        key,
                        "not a finite number of seconds; use null for no timeout",
                    ))
                } else if secs <= 0.0 {
                    // The original's documented meaning (it crashed on 0).
                    Ok(Timeouts::None)
                } else {
                    Ok(Timeouts::Fixed(secs))
                }
            }
            Kind::Seq(items) if items.is_empty() => Err(Invalid::value(
                node,
                key,
                "an empty list allows no attempt at all; use null for no timeout",
            )),
            Kind::Seq(_) => {
                parse_list(node, key, EXPECTED, "item", positive_secs).map(Timeouts::PerAttempt)
            }
            _ => Err(Invalid::ty(node, key, EXPECTED)),
        }
    }

    fn to_out(&self) -> Out {
        match self {
            Timeouts::None => Out::Null,
            Timeouts::Fixed(secs) => Out::Float(*secs),
            Timeouts::PerAttempt(list) => Out::Seq(list.iter().copied().map(Out::Float).collect()),
        }
    }
}

fn positive_secs(node: &Node, key: &str) -> Result<f64, Invalid> {
    match node.as_f64() {
        Some(secs) if secs.is_finite() && secs > 0.0 => Ok(secs),
        Some(_) => Err(Invalid::value(
            node,
            key,
            "must be a positive, finite number of seconds",
        )),
        None => Err(Invalid::ty(node, key, "a positive number of seconds")),
    }
}

fn non_negative_secs(node: &Node, key: &str) -> Result<f64, Invalid> {
    match node.as_f64() {
        Some(secs) if secs.is_finite() && secs >= 0.0 => Ok(secs),
        Some(_) => Err(Invalid::value(
            node,
            key,
            "must be a non-negative, finite number of seconds",
        )),
        None => Err(Invalid::ty(node, key, "a number of seconds")),
    }
}

// ---------------------------------------------------------------- http

/// `http.retry.delay`: seconds to wait before each retry.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryDelay {
    /// The same delay before every retry.
    Fixed(f64),
    /// One delay per retry; retries past the end of the list use the last.
    PerRetry(Vec<f64>),
}

impl RetryDelay {
    /// The delay before retry `n` (0-based: the first retry is the second
    /// attempt).
    pub fn before_retry(&self, n: usize) -> Duration {
        let secs = match self {
            RetryDelay::Fixed(secs) => *secs,
            RetryDelay::PerRetry(list) => {
                list.get(n).or_else(|| list.last()).copied().unwrap_or(0.0)
            }
        };
        seconds(secs)
    }
}

/// A config number of seconds as a duration. The parser only admits finite,
/// non-negative numbers, but a huge one (`1e20`) does not fit a `Duration`:
/// it means "practically forever", not a crash.
pub(crate) fn seconds(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX)
}

impl Value for RetryDelay {
    fn zero() -> Self {
        RetryDelay::Fixed(0.0)
    }

    fn parse(node: &Node, key: &str) -> Result<Self, Invalid> {
        const EXPECTED: &str = "a number of seconds, or a list of them (one per retry)";
        match &node.kind {
            Kind::Int(_) | Kind::Float(_) => non_negative_secs(node, key).map(RetryDelay::Fixed),
            Kind::Seq(items) if items.is_empty() => Err(Invalid::value(
                node,
                key,
                "an empty list; give at least one delay",
            )),
            Kind::Seq(_) => {
                parse_list(node, key, EXPECTED, "item", non_negative_secs).map(RetryDelay::PerRetry)
            }
            _ => Err(Invalid::ty(node, key, EXPECTED)),
        }
    }

    fn to_out(&self) -> Out {
        match self {
            RetryDelay::Fixed(secs) => Out::Float(*secs),
            RetryDelay::PerRetry(list) => Out::Seq(list.iter().copied().map(Out::Float).collect()),
        }
    }
}

// ---------------------------------------------------------------- rate limits

/// A token-bucket spec of `operation.rate_limit.*`: one unit per
/// `interval_secs` seconds on average, with up to `burst` units at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSpec {
    /// Seconds per unit: positive and finite.
    pub interval_secs: f64,
    /// Bucket size in units: at least 1, finite.
    pub burst: f64,
}

impl RateSpec {
    /// Validates the two numbers.
    pub fn new(interval_secs: f64, burst: f64) -> Result<Self, String> {
        if !(interval_secs.is_finite() && interval_secs > 0.0) {
            return Err(format!(
                "the interval must be a positive, finite number of seconds per unit, not {}",
                emit::float(interval_secs)
            ));
        }
        if !(burst.is_finite() && burst >= 1.0) {
            return Err(format!(
                "the burst must be a finite number of at least 1, not {}",
                emit::float(burst)
            ));
        }
        Ok(RateSpec {
            interval_secs,
            burst,
        })
    }

    /// Parses `INTERVAL[:BURST]`, where INTERVAL is seconds per unit written
    /// as a number or as `A/B` (so `1/3e5` is 300000 units a second).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (interval, burst) = match spec.split_once(':') {
            Some((interval, burst)) => (interval, Some(burst)),
            None => (spec, None),
        };
        let interval = match interval.split_once('/') {
            Some((a, b)) => number(a)? / number(b)?,
            None => number(interval)?,
        };
        let burst = burst.map(number).transpose()?.unwrap_or(1.0);
        RateSpec::new(interval, burst)
    }

    /// Units per second.
    pub fn rate(&self) -> f64 {
        1.0 / self.interval_secs
    }
}

fn number(s: &str) -> Result<f64, String> {
    let t = s.trim();
    // Rust's float syntax, plus `_` between digits as in `20_000_000`,
    // matching how YAML reads plain numbers.
    let digits_around = |i: usize| {
        let b = t.as_bytes();
        i > 0 && b[i - 1].is_ascii_digit() && b.get(i + 1).is_some_and(u8::is_ascii_digit)
    };
    let separators_ok = t.char_indices().all(|(i, c)| c != '_' || digits_around(i));
    t.replace('_', "")
        .parse::<f64>()
        .ok()
        .filter(|_| separators_ok)
        .ok_or_else(|| format!("{} is not a number", super::node::quote_for_message(t)))
}

impl FromStr for RateSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        RateSpec::parse(s)
    }
}

/// The canonical spec, which [`RateSpec::parse`] reads back exactly:
/// `1/N` when the interval is exactly the reciprocal of an integer.
impl fmt::Display for RateSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per = (1.0 / self.interval_secs).round();
        if self.interval_secs < 1.0 && per < 1e15 && 1.0 / per == self.interval_secs {
            write!(f, "1/{}", emit::float(per))?;
        } else {
            f.write_str(&emit::float(self.interval_secs))?;
        }
        if self.burst != 1.0 {
            write!(f, ":{}", emit::float(self.burst))?;
        }
        Ok(())
    }
}

impl Value for RateSpec {
    fn zero() -> Self {
        RateSpec {
            interval_secs: 1.0,
            burst: 1.0,
        }
    }

    fn parse(node: &Node, key: &str) -> Result<Self, Invalid> {
        let parsed = match &node.kind {
            Kind::Str(s) => RateSpec::parse(s),
            // A plain YAML number is an interval with a burst of 1.
            Kind::Int(_) | Kind::Float(_) => RateSpec::new(node.as_f64().unwrap_or(f64::NAN), 1.0),
            _ => {
                return Err(Invalid::ty(
                    node,
                    key,
                    "a rate spec INTERVAL[:BURST] such as '1/3e5:20e6', or null",
                ));
            }
        };
        parsed.map_err(|why| {
            Invalid::value(
                node,
                key,
                format!(
                    "{why}; a rate spec is INTERVAL[:BURST], seconds per unit and a burst \
                     size, e.g. '1/3e5:20e6' (300 kB/s, 20 MB burst) or '10:50'"
                ),
            )
        })
    }

    fn to_out(&self) -> Out {
        Out::Str(self.to_string())
    }
}

// ---------------------------------------------------------------- xz

/// `destination.encoding.xz.options`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XzOptions {
    /// Compression preset 0..=9 (`level` or `preset` in YAML); 6 if unset.
    pub level: u32,
    /// The "extreme" variant of the preset: slower, sometimes smaller.
    pub extreme: bool,
}

impl XzOptions {
    pub const DEFAULT_LEVEL: u32 = 6;
}

impl Default for XzOptions {
    fn default() -> Self {
        XzOptions {
            level: XzOptions::DEFAULT_LEVEL,
            extreme: false,
        }
    }
}

impl Value for XzOptions {
    fn zero() -> Self {
        XzOptions::default()
    }

    fn parse(node: &Node, key: &str) -> Result<Self, Invalid> {
        const EXPECTED: &str = "a mapping such as {level: 9, extreme: false}, or null";
        let Kind::Map(entries) = &node.kind else {
            return Err(Invalid::ty(node, key, EXPECTED));
        };
        check_duplicates(entries, key)?;
        // The original passed this mapping as keyword arguments to
        // pyliblzma, whose only keyword is `options`: its working configs
        // read `{options: {level: 9}}`.
        if let Some(wrapped) = entries.iter().find(|e| e.key == "options") {
            if entries.len() > 1 {
                return Err(Invalid::value(
                    node,
                    key,
                    "give either the original tool's form {options: {level: 9}} or \
                     {level: 9}, not both",
                ));
            }
            let inner_key = join(key, "options");
            return match wrapped.value.kind {
                Kind::Null => Ok(XzOptions::default()),
                _ => XzOptions::parse(&wrapped.value, &inner_key),
            };
        }
        let mut options = XzOptions::default();
        let mut level_given = false;
        for entry in entries {
            let entry_key = join(key, &entry.key);
            let value = &entry.value;
            match entry.key.as_str() {
                "level" | "preset" => {
                    if level_given {
                        return Err(Invalid::value(
                            value,
                            &entry_key,
                            "level and preset are the same setting; give only one",
                        ));
                    }
                    level_given = true;
                    options.level = value
                        .as_int()
                        .and_then(|i| u32::try_from(i).ok())
                        .filter(|level| *level <= 9)
                        .ok_or_else(|| match value.kind {
                            Kind::Int(_) | Kind::Float(_) => Invalid::value(
                                value,
                                &entry_key,
                                "the xz preset level must be an integer from 0 to 9",
                            ),
                            _ => Invalid::ty(value, &entry_key, "an integer from 0 to 9"),
                        })?;
                }
                "extreme" => options.extreme = bool::parse(value, &entry_key)?,
                _ => {
                    return Err(Invalid {
                        line: entry.key_line,
                        key: entry_key,
                        kind: InvalidKind::Unknown,
                    });
                }
            }
        }
        Ok(options)
    }

    fn to_out(&self) -> Out {
        Out::Map(vec![
            ("level", Out::Int(self.level.into())),
            ("extreme", Out::Bool(self.extreme)),
        ])
    }
}

/// One rule of `destination.encoding.xz.path_filter`. Rules are tried in
/// order against `'/' + relative path` of each regular file; the first whose
/// regex matches decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XzRule {
    /// What a match decides.
    pub action: XzAction,
    /// Rust `regex` syntax, matched unanchored on the path's raw bytes.
    pub regex: String,
}

/// What a matching [`XzRule`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XzAction {
    /// `'+REGEX'` or `['+', REGEX]`: compress if the file has at least
    /// `xz.min_size` bytes (never, if `min_size` is null). Same as no match.
    UseMinSize,
    /// `'-REGEX'` or `['-', REGEX]`: never compress.
    Never,
    /// `[N, REGEX]`: compress if the file has at least N bytes (0: always).
    AtLeast(u64),
}

/// The decision of compiled size-and-path rules for a regular file at
/// `rel_path` (relative to the source root) of `size` bytes: the rules
/// are tried in order against `'/' + rel_path`, as the original tool did;
/// the first match decides, and no match means "at least `min_size`
/// bytes" (never, when `min_size` is `None`). Used by the compression
/// rules and by `chunking.files`; no I/O, so it can go into dedup keys.
pub(crate) fn rules_choose(
    rules: &[(XzAction, regex::bytes::Regex)],
    min_size: Option<u64>,
    rel_path: &[u8],
    size: u64,
) -> bool {
    let mut subject = Vec::with_capacity(rel_path.len() + 1);
    subject.push(b'/');
    subject.extend_from_slice(rel_path);
    let action = rules
        .iter()
        .find(|(_, re)| re.is_match(&subject))
        .map_or(XzAction::UseMinSize, |(action, _)| *action);
    match action {
        XzAction::Never => false,
        XzAction::UseMinSize => min_size.is_some_and(|min| size >= min),
        XzAction::AtLeast(min) => size >= min,
    }
}

impl XzRule {
    fn parse(node: &Node, key: &str) -> Result<Self, Invalid> {
        const EXPECTED: &str = "a rule '+REGEX' or '-REGEX', or a pair [SIZE, REGEX], \
                                ['+', REGEX] or ['-', REGEX]";
        let (action, regex) = match &node.kind {
            Kind::Str(s) => match s.split_at_checked(1) {
                Some(("+", re)) => (XzAction::UseMinSize, re),
                Some(("-", re)) => (XzAction::Never, re),
                _ => {
                    return Err(Invalid::value(
                        node,
                        key,
                        format!(
                            "the rule {} must start with '+' (compress if at least \
                             min_size bytes) or '-' (never compress)",
                            super::node::quote_for_message(s)
                        ),
                    ));
                }
            },
            Kind::Seq(pair) => {
                let [first, second] = pair.as_slice() else {
                    return Err(Invalid::value(
                        node,
                        key,
                        format!(
                            "a list rule has exactly two elements, [SIZE, REGEX]; this one has {}",
                            pair.len()
                        ),
                    ));
                };
                let action = match &first.kind {
                    Kind::Str(s) if s == "+" => XzAction::UseMinSize,
                    Kind::Str(s) if s == "-" => XzAction::Never,
                    _ => match first.as_int().map(u64::try_from) {
                        Some(Ok(size)) => XzAction::AtLeast(size),
                        _ => {
                            return Err(Invalid::ty(
                                first,
                                key,
                                "a size threshold (an integer of at least 0), '+' or '-' \
                                 as the first element",
                            ));
                        }
                    },
                };
                let Kind::Str(re) = &second.kind else {
                    return Err(Invalid::ty(
                        second,
                        key,
                        "a regex string as the second element",
                    ));
                };
                (action, re.as_str())
            }
            _ => return Err(Invalid::ty(node, key, EXPECTED)),
        };
        if let Err(message) = crate::filter::compile(regex) {
            return Err(Invalid::value(
                node,
                key,
                format!(
                    "the regex {} does not compile: {message}",
                    super::node::quote_for_message(regex)
                ),
            ));
        }
        Ok(XzRule {
            action,
            regex: regex.to_owned(),
        })
    }

    fn to_out(&self) -> Out {
        match self.action {
            XzAction::UseMinSize => Out::Str(format!("+{}", self.regex)),
            XzAction::Never => Out::Str(format!("-{}", self.regex)),
            XzAction::AtLeast(size) => {
                Out::Seq(vec![Out::Int(size.into()), Out::Str(self.regex.clone())])
            }
        }
    }
}

/// The whole `path_filter` list; `null` is an empty list.
impl Value for Vec<XzRule> {
    fn zero() -> Self {
        Vec::new()
    }

    fn parse(node: &Node, key: &str) -> Result<Self, Invalid> {
        match node.kind {
            Kind::Null => Ok(Vec::new()),
            _ => parse_list(node, key, "a list of rules, or null", "rule", XzRule::parse),
        }
    }

    fn to_out(&self) -> Out {
        if self.is_empty() {
            Out::Null
        } else {
            Out::Seq(self.iter().map(XzRule::to_out).collect())
        }
    }
}

// ------------------------------------------------ keys with their own rules
//
// Used as `pub field: Type => module` in `section!`, for types such as
// `Option<u64>` whose meaning depends on the key.

/// `destination.url`: the Tahoe web API base, including `/uri`.
pub(crate) mod url {
    use super::*;

    pub(crate) fn zero() -> String {
        String::new()
    }

    pub(crate) fn parse(node: &Node, key: &str) -> Result<String, Invalid> {
        let url = String::parse(node, key)?;
        let lower = url.to_ascii_lowercase();
        if (lower.starts_with("http://") || lower.starts_with("https://"))
            && url.len() > "https://".len()
        {
            Ok(url)
        } else {
            Err(Invalid::value(
                node,
                key,
                format!(
                    "{} is not an http:// or https:// URL; expected the Tahoe web API \
                     base including /uri, e.g. 'http://localhost:3456/uri'",
                    super::super::node::quote_for_message(&url)
                ),
            ))
        }
    }

    pub(crate) fn to_out(url: &str) -> Out {
        Out::Str(url.to_owned())
    }
}

/// `destination.catalog`: `auto`, a mutable directory's writecap
/// (`URI:DIR2:…`, in any spelling people paste), or `null` for none. The
/// value is never quoted in an error: it is a secret.
pub(crate) mod catalog {
    use super::*;
    use crate::tahoe::user_cap::{self, UserCap};

    pub(crate) fn zero() -> Option<String> {
        None
    }

    pub(crate) fn parse(node: &Node, key: &str) -> Result<Option<String>, Invalid> {
        if matches!(node.kind, Kind::Null) {
            return Ok(None);
        }
        let Kind::Str(text) = &node.kind else {
            return Err(Invalid::ty(
                node,
                key,
                "'auto' or a mutable directory's writecap (a DIR2 cap)",
            ));
        };
        if text.trim() == "auto" {
            return Ok(Some("auto".to_owned()));
        }
        let why = match user_cap::classify(text) {
            UserCap::Cap(cap) if crate::catalog::is_writecap(&cap) => {
                return Ok(Some(cap.as_str().to_owned()));
            }
            UserCap::Cap(_) => "it is a capability, but not a mutable directory's writecap \
                                (a DIR2 cap); a read-only or immutable one cannot be \
                                written to"
                .to_owned(),
            UserCap::Malformed(why) => format!(
                "it looks like a Tahoe capability, but {why}; check that it was copied whole"
            ),
            UserCap::NotACap => {
                "it is neither 'auto' nor a mutable directory's writecap (a DIR2 cap)".to_owned()
            }
        };
        Err(Invalid::value(
            node,
            key,
            format!("{why} (the value is not quoted here: a cap is a secret)"),
        ))
    }

    pub(crate) fn to_out(value: &Option<String>) -> Out {
        value.as_ref().map_or(Out::Null, |v| Out::Str(v.clone()))
    }
}

/// `monitor.healthchecks_url`: an http(s) URL, or `null` for none.
pub(crate) mod monitor_url {
    use super::*;

    pub(crate) fn zero() -> Option<String> {
        None
    }

    pub(crate) fn parse(node: &Node, key: &str) -> Result<Option<String>, Invalid> {
        if matches!(node.kind, Kind::Null) {
            return Ok(None);
        }
        let url = String::parse(node, key)?;
        let lower = url.to_ascii_lowercase();
        let rest = lower
            .strip_prefix("http://")
            .or_else(|| lower.strip_prefix("https://"));
        match rest {
            Some(host) if !host.is_empty() && !host.starts_with('/') => Ok(Some(url)),
            _ => Err(Invalid::value(
                node,
                key,
                format!(
                    "{} is not an http:// or https:// URL, e.g. 'https://hc-ping.com/UUID'",
                    super::super::node::quote_for_message(&url)
                ),
            )),
        }
    }

    pub(crate) fn to_out(url: &Option<String>) -> Out {
        url.as_ref().map_or(Out::Null, |u| Out::Str(u.clone()))
    }
}

/// `monitor.max_backup_age`: a duration like retention's `within`
/// (`26h`, `2d`, `1m`), or `null` for none.
pub(crate) mod max_age {
    use super::*;
    use crate::retention::KeepDuration;

    pub(crate) fn zero() -> Option<MaxAge> {
        None
    }

    pub(crate) fn parse(node: &Node, key: &str) -> Result<Option<MaxAge>, Invalid> {
        if matches!(node.kind, Kind::Null) {
            return Ok(None);
        }
        let text = match &node.kind {
            Kind::Str(s) => s.clone(),
            _ => return Err(Invalid::ty(node, key, "a duration such as '26h' or '2d'")),
        };
        match text.parse::<KeepDuration>() {
            Ok(d) if !d.is_zero() => Ok(Some(MaxAge(d))),
            Ok(_) => Err(Invalid::value(
                node,
                key,
                "a zero duration; use null for no threshold",
            )),
            Err(e) => Err(Invalid::value(
                node,
                key,
                format!(
                    "{} is not a duration such as '26h' or '2d' ({e})",
                    super::super::node::quote_for_message(&text)
                ),
            )),
        }
    }

    pub(crate) fn to_out(age: &Option<MaxAge>) -> Out {
        age.map_or(Out::Null, |d| Out::Str(d.0.to_string()))
    }
}

/// `monitor.max_backup_age`: a calendar duration (years, months, days,
/// hours), as retention's `within` writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxAge(pub(crate) crate::retention::KeepDuration);

/// `source.entry_cache.commit_after.queries`: `null`, 0 or a negative
/// number mean no limit (`None`).
pub(crate) mod count_limit {
    use super::*;

    pub(crate) fn zero() -> Option<u64> {
        None
    }

    pub(crate) fn parse(node: &Node, key: &str) -> Result<Option<u64>, Invalid> {
        match (&node.kind, node.as_int()) {
            (Kind::Null, _) => Ok(None),
            (_, Some(n)) if n <= 0 => Ok(None),
            (_, Some(n)) => u64::try_from(n)
                .map(Some)
                .map_err(|_| Invalid::value(node, key, "too large")),
            _ => Err(Invalid::ty(node, key, "an integer, or null for no limit")),
        }
    }

    pub(crate) fn to_out(limit: &Option<u64>) -> Out {
        limit.map_or(Out::Null, |n| Out::Int(n.into()))
    }
}

/// `source.entry_cache.commit_after.seconds`: `null`, 0 or a negative
/// number mean no limit (`None`).
pub(crate) mod secs_limit {
    use super::*;

    pub(crate) fn zero() -> Option<f64> {
        None
    }

    pub(crate) fn parse(node: &Node, key: &str) -> Result<Option<f64>, Invalid> {
        match (&node.kind, node.as_f64()) {
            (Kind::Null, _) => Ok(None),
            (_, Some(secs)) if secs.is_finite() => Ok((secs > 0.0).then_some(secs)),
            (_, Some(_)) => Err(Invalid::value(
                node,
                key,
                "not a finite number of seconds; use null for no limit",
            )),
            _ => Err(Invalid::ty(
                node,
                key,
                "a number of seconds, or null for no limit",
            )),
        }
    }

    pub(crate) fn to_out(limit: &Option<f64>) -> Out {
        limit.map_or(Out::Null, Out::Float)
    }
}

/// `http.retry.attempts`: total attempts per request; 1 or less means one
/// attempt, no retries (as in the original tool).
pub(crate) mod attempts {
    use super::*;

    pub(crate) fn zero() -> u32 {
        1
    }

    pub(crate) fn parse(node: &Node, key: &str) -> Result<u32, Invalid> {
        match node.as_int() {
            Some(n) if n < 1 => Ok(1),
            Some(n) => u32::try_from(n).map_err(|_| Invalid::value(node, key, "too many attempts")),
            None => Err(Invalid::ty(
                node,
                key,
                "an integer (the total number of attempts)",
            )),
        }
    }

    pub(crate) fn to_out(attempts: &u32) -> Out {
        Out::Int((*attempts).into())
    }
}

/// A count that must be at least 1 (`operation.concurrency`): checked once
/// here, so that no command has to refuse 0 itself.
pub(crate) mod at_least_one {
    use super::*;

    pub(crate) fn zero() -> u64 {
        1
    }

    pub(crate) fn parse(node: &Node, key: &str) -> Result<u64, Invalid> {
        match node.as_int().map(u64::try_from) {
            Some(Ok(n)) if n >= 1 => Ok(n),
            Some(Ok(_)) => Err(Invalid::value(node, key, "must be at least 1")),
            _ => Err(Invalid::ty(node, key, "a positive integer")),
        }
    }

    pub(crate) fn to_out(n: &u64) -> Out {
        Out::Int((*n).into())
    }
}

/// `filter`: the scan's ordered `'+REGEX'`/`'-REGEX'` rules, validated by
/// compiling them with [`crate::filter::Filter`]; `null` is an empty list.
pub(crate) mod filter_rules {
    use super::*;
    use crate::filter::Filter;

    pub(crate) fn zero() -> Vec<String> {
        Vec::new()
    }

    pub(crate) fn parse(node: &Node, key: &str) -> Result<Vec<String>, Invalid> {
        let items: &[Node] = match &node.kind {
            Kind::Null => return Ok(Vec::new()),
            Kind::Seq(items) => items,
            _ => {
                return Err(Invalid::ty(
                    node,
                    key,
                    "a list of rules '+REGEX' or '-REGEX', or null",
                ));
            }
        };
        let rules = parse_list(node, key, "a list of rules", "rule", |item, item_key| {
            String::parse(item, item_key).map_err(|_| {
                Invalid::ty(
                    item,
                    item_key,
                    "a string '+REGEX' (include) or '-REGEX' (exclude)",
                )
            })
        })?;
        if let Err(err) = Filter::new(&rules) {
            // Point at the offending rule's line: the first one that fails on
            // its own (the message names it too).
            let at = rules
                .iter()
                .position(|rule| Filter::new(std::slice::from_ref(rule)).is_err())
                .and_then(|i| items.get(i))
                .unwrap_or(node);
            return Err(Invalid::value(at, key, err.to_string()));
        }
        Ok(rules)
    }

    pub(crate) fn to_out(rules: &[String]) -> Out {
        if rules.is_empty() {
            Out::Null
        } else {
            Out::Seq(rules.iter().cloned().map(Out::Str).collect())
        }
    }
}

// ---------------------------------------------------------------- filter_files

/// `filter_files`: rule files whose rules follow `filter`, in order. Unlike
/// every other list, a layer appends to it instead of replacing it, so that
/// layered configs add rule files; an explicit `null` empties it (the only
/// way for a later layer to drop an earlier layer's files).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuleFiles {
    /// The files, in the order their rules apply.
    pub paths: Vec<std::path::PathBuf>,
}

impl super::schema::Item for RuleFiles {
    fn blank() -> Self {
        Self::default()
    }

    fn apply(
        &mut self,
        node: &Node,
        key: &str,
        layer: &mut super::schema::Layer<'_>,
    ) -> Result<(), super::ConfigError> {
        let paths = match &node.kind {
            Kind::Null => {
                self.paths.clear();
                return Ok(());
            }
            _ => parse_list(
                node,
                key,
                "a list of rule file paths, or null",
                "file",
                |item, item_key| {
                    let path = std::path::PathBuf::parse(item, item_key)?;
                    // Checked now, so that a missing file or a bad rule is
                    // a config error naming this line (and the rule file's).
                    crate::filter::read_rule_file(&path)
                        .map_err(|err| Invalid::value(item, item_key, err.to_string()))?;
                    Ok(path)
                },
            ),
        }
        .map_err(|e| layer.fail(e))?;
        self.paths.extend(paths);
        Ok(())
    }

    fn emit(&self) -> Out {
        paths_out(&self.paths)
    }
}

// ---------------------------------------------------------------- ca_certs_files

/// `http.ca_certs_files`: PEM files whose certificates are trusted roots for
/// an `https://` gateway. One path (as the original tool's configs give it)
/// or a list; a later layer replaces it, like every list. Each file is read
/// now, so that an unreadable file or one without a certificate is a config
/// error naming its line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CaFiles {
    /// The files, in order.
    pub paths: Vec<std::path::PathBuf>,
}

impl CaFiles {
    fn check(item: &Node, item_key: &str) -> Result<std::path::PathBuf, Invalid> {
        let path = std::path::PathBuf::parse(item, item_key)?;
        crate::tahoe::read_ca_file(&path).map_err(|err| Invalid::value(item, item_key, err))?;
        Ok(path)
    }
}

impl super::schema::Item for CaFiles {
    fn blank() -> Self {
        Self::default()
    }

    fn apply(
        &mut self,
        node: &Node,
        key: &str,
        layer: &mut super::schema::Layer<'_>,
    ) -> Result<(), super::ConfigError> {
        let paths = match &node.kind {
            Kind::Null => Ok(Vec::new()),
            Kind::Seq(_) => parse_list(
                node,
                key,
                "a PEM file path, a list of them, or null",
                "file",
                Self::check,
            ),
            _ => Self::check(node, key).map(|path| vec![path]),
        }
        .map_err(|e| layer.fail(e))?;
        self.paths = paths;
        Ok(())
    }

    fn emit(&self) -> Out {
        paths_out(&self.paths)
    }
}

/// A list of paths as config output; `null` when empty.
fn paths_out(paths: &[std::path::PathBuf]) -> Out {
    if paths.is_empty() {
        Out::Null
    } else {
        Out::Seq(
            paths
                .iter()
                .map(|p| Out::Str(p.to_string_lossy().into_owned()))
                .collect(),
        )
    }
}

/// `destination.native.servers`: storage server NURLs, each checked here
/// (`pb://SPKI-HASH@HOST:PORT/SWISSNUM#v=1`); `null` is an empty list. An
/// error says which part is wrong and never quotes the NURL: it carries the
/// server's swissnum, a secret.
pub(crate) mod nurls {
    use super::*;

    pub(crate) fn zero() -> Vec<String> {
        Vec::new()
    }

    pub(crate) fn parse(node: &Node, key: &str) -> Result<Vec<String>, Invalid> {
        if matches!(node.kind, Kind::Null) {
            return Ok(Vec::new());
        }
        parse_list(
            node,
            key,
            "a list of NURLs, or null",
            "NURL",
            |item, key| {
                let Kind::Str(text) = &item.kind else {
                    return Err(Invalid::ty(item, key, "a NURL (a string)"));
                };
                if text.contains(REDACTED_SWISSNUM) {
                    return Err(Invalid::value(
                        item,
                        key,
                        "its swissnum was left out by dump-config (a secret); give the \
                         server's whole NURL"
                            .to_owned(),
                    ));
                }
                crate::storage::nurl::Nurl::parse(text.trim())
                    .map(|_| text.trim().to_owned())
                    .map_err(|e| Invalid::value(item, key, e.to_string()))
            },
        )
    }

    /// The dump leaves every swissnum out (it is the storage service's
    /// bearer secret, and issue 17 allows no secret in any output): the
    /// NURL's path becomes [`REDACTED_SWISSNUM`], which [`parse`] refuses
    /// with a clear error, so a dump fed back with `-c` fails loudly rather
    /// than talk to the servers with a wrong swissnum.
    pub(crate) fn to_out(value: &[String]) -> Out {
        if value.is_empty() {
            Out::Null
        } else {
            Out::Seq(value.iter().map(|s| Out::Str(redacted(s))).collect())
        }
    }

    /// What stands for a swissnum in a dump: not a valid path segment.
    pub(crate) const REDACTED_SWISSNUM: &str = "<swissnum>";

    /// `nurl` with its swissnum replaced by [`REDACTED_SWISSNUM`] (checked at
    /// load, so it has the `pb://…@HOST:PORT/SWISSNUM#v=1` shape).
    fn redacted(nurl: &str) -> String {
        let nurl = nurl.trim();
        match (nurl.find('@'), nurl.rfind('#')) {
            (Some(at), Some(hash)) if at < hash => match nurl[at..hash].find('/') {
                Some(slash) => format!(
                    "{}{REDACTED_SWISSNUM}{}",
                    &nurl[..at + slash + 1],
                    &nurl[hash..]
                ),
                None => format!("pb://{REDACTED_SWISSNUM}"),
            },
            _ => format!("pb://{REDACTED_SWISSNUM}"),
        }
    }
}
