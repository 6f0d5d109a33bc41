//! The YAML writer behind `Config::to_yaml`.
//!
//! Hand-written because the output must load back to the identical config:
//! every string is quoted (so `'yes'`, `'5120'` or `'null'` stay strings),
//! floats use Rust's shortest round-trip form, and key order is the schema's,
//! which is the order of `config/base.yaml`.

use std::fmt::Write as _;

/// A value to write.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Out {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    /// Always quoted.
    Str(String),
    /// A fixed token that is safe unquoted (an enum value such as `warning`).
    Word(&'static str),
    Seq(Vec<Out>),
    Map(Vec<(&'static str, Out)>),
}

/// Writes a whole document; `root` is expected to be a mapping.
pub(crate) fn document(root: &Out) -> String {
    let mut out = String::new();
    match root {
        Out::Map(entries) if !entries.is_empty() => write_map(&mut out, entries, 0),
        other => {
            write_inline(&mut out, other);
            out.push('\n');
        }
    }
    out
}

fn write_map(out: &mut String, entries: &[(&'static str, Out)], indent: usize) {
    for (key, value) in entries {
        pad(out, indent);
        out.push_str(key);
        out.push(':');
        match value {
            Out::Map(inner) if !inner.is_empty() => {
                out.push('\n');
                write_map(out, inner, indent + 2);
            }
            Out::Seq(items) if !items.is_empty() && !is_flat(items) => {
                out.push('\n');
                for item in items {
                    pad(out, indent + 2);
                    out.push_str("- ");
                    write_inline(out, item);
                    out.push('\n');
                }
            }
            _ => {
                out.push(' ');
                write_inline(out, value);
                out.push('\n');
            }
        }
    }
}

/// Lists of numbers read best on one line; lists of strings (rules) one
/// item per line.
fn is_flat(items: &[Out]) -> bool {
    items.iter().all(|item| {
        matches!(
            item,
            Out::Null | Out::Bool(_) | Out::Int(_) | Out::Float(_) | Out::Word(_)
        )
    })
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// Flow style; used for scalars and for collections nested in a list.
fn write_inline(out: &mut String, value: &Out) {
    match value {
        Out::Null => out.push_str("null"),
        Out::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Out::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Out::Float(f) => out.push_str(&float(*f)),
        Out::Word(w) => out.push_str(w),
        Out::Str(s) => out.push_str(&quote(s)),
        Out::Seq(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_inline(out, item);
            }
            out.push(']');
        }
        Out::Map(entries) => {
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(key);
                out.push_str(": ");
                write_inline(out, item);
            }
            out.push('}');
        }
    }
}

/// Shortest text that parses back to exactly `f`: integral values as plain
/// integers (`1200`, not `1200.0`), the rest in Rust's round-trip form,
/// which YAML reads as a float (`0.5`, `3.3333333333333333e-6`).
pub(crate) fn float(f: f64) -> String {
    if f.is_nan() {
        ".nan".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { ".inf" } else { "-.inf" }.to_owned()
    } else if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f:?}")
    }
}

/// A YAML string scalar that reads back as exactly `s`.
///
/// Single quotes need no escapes but `''`, which keeps regexes readable
/// (backslashes stay single). They cannot carry line breaks or control
/// characters faithfully, so strings with those use double quotes and escapes.
pub(crate) fn quote(s: &str) -> String {
    if !s.chars().any(needs_escape) {
        return format!("'{}'", s.replace('\'', "''"));
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Characters outside YAML's printable set, or that some YAML readers take
/// as line breaks (NEL, LS, PS) or strip (BOM).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{FEFF}' | '\u{FFFE}' | '\u{FFFF}'
        )
}
