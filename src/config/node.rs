//! One config layer as a positioned YAML tree.
//!
//! serde-saphyr does the YAML parsing (anchors, merge keys, YAML 1.1 numbers
//! such as `10_000_000` and booleans such as `yes`); this module only keeps
//! the result as a small tree whose every node knows its line, so that the
//! schema walk in the parent module can name the file, line and dotted key of
//! any problem it finds.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{
    DefaultMessageFormatter, DuplicateKeyPolicy, MessageFormatter, NonFiniteFloatPolicy, Spanned,
    UserMessageFormatter,
};

/// A YAML value with the (1-based) line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub line: usize,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    /// Wide enough for every u64 and i64 YAML can give us.
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// A mapping entry, in document order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub key: String,
    pub key_line: usize,
    pub value: Node,
}

/// A YAML syntax problem: where, and what.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SyntaxError {
    pub line: Option<usize>,
    pub message: String,
}

/// Parses one YAML document. An empty document (or one with only comments)
/// is `Null`.
pub(crate) fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut options = serde_saphyr::Options::default();
    // Non-finite numbers (`.inf`, `1e999`) reach the schema, which rejects
    // them naming the key, instead of failing as a nameless syntax error.
    options.non_finite_float_policy = NonFiniteFloatPolicy::PassThrough;
    // Duplicates reach the schema too, which reports them with the dotted key.
    options.duplicate_keys = DuplicateKeyPolicy::PassThrough;
    match serde_saphyr::from_str_with_options::<Spanned<Raw>>(text, options) {
        Ok(raw) => Ok(raw.into()),
        Err(err) => {
            let err = err.without_snippet();
            Err(SyntaxError {
                line: err
                    .location()
                    .map(|loc| loc.line() as usize)
                    .filter(|&line| line > 0),
                message: sanitize(&match err {
                    // The default wording names library functions to call.
                    serde_saphyr::Error::MultipleDocuments { .. } => {
                        UserMessageFormatter.format_message(err)
                    }
                    // The most specific wording for parser errors.
                    _ => DefaultMessageFormatter.format_message(err),
                }),
            })
        }
    }
}

/// The library's messages may quote document text; keep them on one line
/// and free of terminal control characters.
fn sanitize(message: &str) -> String {
    // The parser may quote the text around the error, which may hold a cap.
    let line: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    crate::tahoe::redact(&line)
}

/// What serde-saphyr hands us; converted to [`Node`] right away.
enum Raw {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Raw>>),
    /// Keys are read as strings so that `yes:` or `1:` keep their spelling
    /// (as values they would become a boolean and a number); `~:` is `None`.
    Map(Vec<(Spanned<Option<String>>, Spanned<Raw>)>),
}

impl From<Spanned<Raw>> for Node {
    fn from(raw: Spanned<Raw>) -> Self {
        let line = raw.referenced.line() as usize;
        let kind = match raw.value {
            Raw::Null => Kind::Null,
            Raw::Bool(b) => Kind::Bool(b),
            Raw::Int(i) => Kind::Int(i),
            Raw::Float(f) => Kind::Float(f),
            Raw::Str(s) => Kind::Str(s),
            Raw::Seq(items) => Kind::Seq(items.into_iter().map(Node::from).collect()),
            Raw::Map(entries) => Kind::Map(
                entries
                    .into_iter()
                    .map(|(key, value)| Entry {
                        key: key.value.unwrap_or_else(|| "null".to_owned()),
                        key_line: key.referenced.line() as usize,
                        value: value.into(),
                    })
                    .collect(),
            ),
        };
        Node { line, kind }
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }

    fn visit_none<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Raw, D::Error> {
        Raw::deserialize(deserializer)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Int(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw::Int(v.into()))
    }

    fn visit_i128<E>(self, v: i128) -> Result<Raw, E> {
        Ok(Raw::Int(v))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Raw, E> {
        i128::try_from(v)
            .map(Raw::Int)
            .map_err(|_| E::custom("integer too large"))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Str(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Raw::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Raw::Map(entries))
    }
}

impl Node {
    /// How a value is named in a "found ..." message.
    pub(crate) fn describe(&self) -> String {
        match &self.kind {
            Kind::Null => "null".to_owned(),
            Kind::Bool(b) => format!("the boolean {b}"),
            Kind::Int(i) => format!("the integer {i}"),
            Kind::Float(f) => format!("the number {f}"),
            Kind::Str(s) => format!("the string {}", quote_for_message(s)),
            Kind::Seq(_) => "a list".to_owned(),
            Kind::Map(_) => "a mapping".to_owned(),
        }
    }

    /// The value as a number, if it is one.
    pub(crate) fn as_f64(&self) -> Option<f64> {
        match self.kind {
            Kind::Int(i) => Some(i as f64),
            Kind::Float(f) => Some(f),
            _ => None,
        }
    }

    /// The value as an integer, also when written as an integral float such
    /// as `20e6` (sizes are often written that way).
    pub(crate) fn as_int(&self) -> Option<i128> {
        match self.kind {
            Kind::Int(i) => Some(i),
            // The bound keeps the cast exact; larger floats are not integers
            // anyone means.
            Kind::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i128),
            _ => None,
        }
    }
}

/// A string quoted for an error message: single line, bounded length, no
/// capability.
pub(crate) fn quote_for_message(s: &str) -> String {
    const MAX: usize = 60;
    // A cap is a secret wherever it was put, in any spelling.
    if crate::tahoe::user_cap::looks_like_cap(s) {
        return "a capability (not shown)".to_owned();
    }
    let s = &crate::tahoe::redact(s);
    let head: String = s.chars().take(MAX).collect();
    let more = if s.chars().nth(MAX).is_some() {
        "…"
    } else {
        ""
    };
    format!("{head:?}{more}")
}
