//! The machinery that applies a YAML layer onto the typed
//! [`super::Config`] and writes it back out.
//!
//! Every config type implements [`Item`]: sections (structs declared with
//! [`section!`]) walk a mapping key by key, leaves parse one value. A layer is
//! applied in place, on top of the previous layers, so "later scalars win,
//! lists replace lists, mappings merge key by key" falls out of the walk: a
//! section only touches the keys a layer gives, a leaf is replaced whole.

use std::path::PathBuf;

use super::ConfigError;
use super::emit::Out;
use super::node::{Entry, Kind, Node};

/// The layer being applied: its display name, and where warnings go.
pub(crate) struct Layer<'a> {
    pub file: &'a str,
    pub warnings: &'a mut Vec<String>,
}

/// A problem with a value, before the file name is known to it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Invalid {
    pub line: usize,
    /// The dotted key, with `[i]` for list elements.
    pub key: String,
    pub kind: InvalidKind,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum InvalidKind {
    Type { expected: String, found: String },
    Value(String),
    Unknown,
    Duplicate { first_line: usize },
}

impl Invalid {
    pub(super) fn ty(node: &Node, key: &str, expected: impl Into<String>) -> Self {
        Invalid {
            line: node.line,
            key: key.to_owned(),
            kind: InvalidKind::Type {
                expected: expected.into(),
                found: node.describe(),
            },
        }
    }

    pub(super) fn value(node: &Node, key: &str, message: impl Into<String>) -> Self {
        Invalid {
            line: node.line,
            key: key.to_owned(),
            kind: InvalidKind::Value(message.into()),
        }
    }
}

impl Layer<'_> {
    /// Attaches the file name.
    pub(super) fn fail(&self, invalid: Invalid) -> ConfigError {
        let file = self.file.to_owned();
        let Invalid { line, key, kind } = invalid;
        match kind {
            InvalidKind::Type { expected, found } => ConfigError::WrongType {
                file,
                line,
                key,
                expected,
                found,
            },
            InvalidKind::Value(message) => ConfigError::InvalidValue {
                file,
                line,
                key,
                message,
            },
            InvalidKind::Unknown => ConfigError::UnknownKey { file, line, key },
            InvalidKind::Duplicate { first_line } => ConfigError::DuplicateKey {
                file,
                line,
                key,
                first_line,
            },
        }
    }

    /// The entries of a section. `null` (e.g. `logging:` with everything
    /// under it commented out) is an empty section, not an error: it changes
    /// nothing, as in the original tool.
    pub(super) fn section<'n>(
        &self,
        node: &'n Node,
        key: &str,
    ) -> Result<&'n [Entry], ConfigError> {
        match &node.kind {
            Kind::Null => Ok(&[]),
            Kind::Map(entries) => {
                check_duplicates(entries, key).map_err(|e| self.fail(e))?;
                Ok(entries)
            }
            _ if key.is_empty() => Err(ConfigError::NotAMapping {
                file: self.file.to_owned(),
                line: node.line,
                found: node.describe(),
            }),
            _ => Err(self.fail(Invalid::ty(node, key, "a mapping of config keys"))),
        }
    }

    /// A key a section does not know: a key of the original tool that no
    /// longer applies (one warning, and everything under it is skipped), or
    /// an error.
    pub(super) fn other_key(&mut self, key: &str, line: usize) -> Result<(), ConfigError> {
        match super::IGNORED_KEYS.iter().find(|(k, _)| *k == key) {
            Some((_, why)) => {
                self.warnings.push(format!(
                    "{}:{line}: ignoring config key {key}: {why}",
                    self.file
                ));
                Ok(())
            }
            None => Err(self.fail(Invalid {
                line,
                key: key.to_owned(),
                kind: InvalidKind::Unknown,
            })),
        }
    }
}

/// YAML forbids duplicate keys, and a silent "last one wins" would hide
/// typos in long configs.
pub(crate) fn check_duplicates(entries: &[Entry], key: &str) -> Result<(), Invalid> {
    for (i, entry) in entries.iter().enumerate() {
        if let Some(first) = entries[..i].iter().find(|e| e.key == entry.key) {
            return Err(Invalid {
                line: entry.key_line,
                key: join(key, &entry.key),
                kind: InvalidKind::Duplicate {
                    first_line: first.key_line,
                },
            });
        }
    }
    Ok(())
}

/// `parent.child`, or `child` at the top level.
pub(crate) fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_owned()
    } else {
        format!("{parent}.{child}")
    }
}

/// Anything that can stand at a key: a section or a leaf.
pub(crate) trait Item: Sized {
    /// The value before any layer is applied. The base config sets every
    /// key (a test checks), so this never reaches users.
    fn blank() -> Self;
    /// Applies one layer's `node` given at `key`.
    fn apply(&mut self, node: &Node, key: &str, layer: &mut Layer<'_>) -> Result<(), ConfigError>;
    fn emit(&self) -> Out;
    /// The dotted keys of all leaves at and under `key`, in schema order.
    fn keys(key: &str, out: &mut Vec<String>) {
        out.push(key.to_owned());
    }
}

/// A leaf value: parsed whole from one node, replacing the previous value.
pub(crate) trait Value: Sized {
    fn zero() -> Self;
    fn parse(node: &Node, key: &str) -> Result<Self, Invalid>;
    fn to_out(&self) -> Out;
}

impl<T: Value> Item for T {
    fn blank() -> Self {
        T::zero()
    }

    fn apply(&mut self, node: &Node, key: &str, layer: &mut Layer<'_>) -> Result<(), ConfigError> {
        *self = T::parse(node, key).map_err(|e| layer.fail(e))?;
        Ok(())
    }

    fn emit(&self) -> Out {
        self.to_out()
    }
}

/// Declares a config section: the struct (with `Debug, Clone, PartialEq`)
/// and its [`Item`] impl. Fields are written in the order of
/// `config/base.yaml`, which is also the order `to_yaml` writes them. A
/// field is a leaf or a nested section; `=> module` parses a leaf with
/// `module::parse` / `module::to_out` instead of the type's own [`Value`]
/// impl (for types such as `Option<u64>` whose meaning depends on the key).
///
/// Adding a key is one line here (plus its default in `config/base.yaml`
/// and its documentation in `docs/config.md`; tests check both).
macro_rules! section {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                pub $field:ident : $ty:ty $( => $via:ident )?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $crate::config::schema::Item for $name {
            fn blank() -> Self {
                Self {
                    $( $field: $crate::config::schema::blank_field!($ty $(, $via)?), )*
                }
            }

            fn apply(
                &mut self,
                node: &$crate::config::node::Node,
                key: &str,
                layer: &mut $crate::config::schema::Layer<'_>,
            ) -> Result<(), $crate::config::ConfigError> {
                for entry in layer.section(node, key)? {
                    let child = $crate::config::schema::join(key, &entry.key);
                    match entry.key.as_str() {
                        $(
                            stringify!($field) => $crate::config::schema::apply_field!(
                                self.$field, $ty, &entry.value, &child, layer $(, $via)?
                            ),
                        )*
                        _ => layer.other_key(&child, entry.key_line)?,
                    }
                }
                Ok(())
            }

            fn emit(&self) -> $crate::config::emit::Out {
                $crate::config::emit::Out::Map(vec![
                    $(
                        (
                            stringify!($field),
                            $crate::config::schema::emit_field!(self.$field, $ty $(, $via)?),
                        ),
                    )*
                ])
            }

            fn keys(key: &str, out: &mut Vec<String>) {
                $(
                    $crate::config::schema::keys_field!(
                        &$crate::config::schema::join(key, stringify!($field)),
                        out,
                        $ty $(, $via)?
                    );
                )*
            }
        }
    };
}

macro_rules! blank_field {
    ($ty:ty) => {
        <$ty as $crate::config::schema::Item>::blank()
    };
    ($ty:ty, $via:ident) => {
        $via::zero()
    };
}

macro_rules! keys_field {
    ($key:expr, $out:expr, $ty:ty) => {
        <$ty as $crate::config::schema::Item>::keys($key, $out)
    };
    // A leaf with its own parser is one key.
    ($key:expr, $out:expr, $ty:ty, $via:ident) => {
        $out.push(($key).to_owned())
    };
}

macro_rules! apply_field {
    ($place:expr, $ty:ty, $node:expr, $key:expr, $layer:expr) => {
        <$ty as $crate::config::schema::Item>::apply(&mut $place, $node, $key, $layer)?
    };
    ($place:expr, $ty:ty, $node:expr, $key:expr, $layer:expr, $via:ident) => {
        $place = $via::parse($node, $key).map_err(|e| $layer.fail(e))?
    };
}

macro_rules! emit_field {
    ($place:expr, $ty:ty) => {
        <$ty as $crate::config::schema::Item>::emit(&$place)
    };
    ($place:expr, $ty:ty, $via:ident) => {
        $via::to_out(&$place)
    };
}

pub(crate) use {apply_field, blank_field, emit_field, keys_field, section};

// ---- Leaf types with one meaning wherever they appear. ----

/// `true`/`false` (YAML 1.1 spellings such as `yes`/`off` too). `null` is
/// false, as it was for the original tool (Python truthiness).
impl Value for bool {
    fn zero() -> Self {
        false
    }

    fn parse(node: &Node, key: &str) -> Result<Self, Invalid> {
        match node.kind {
            Kind::Bool(b) => Ok(b),
            Kind::Null => Ok(false),
            _ => Err(Invalid::ty(node, key, "true or false")),
        }
    }

    fn to_out(&self) -> Out {
        Out::Bool(*self)
    }
}

impl Value for String {
    fn zero() -> Self {
        String::new()
    }

    fn parse(node: &Node, key: &str) -> Result<Self, Invalid> {
        match &node.kind {
            Kind::Str(s) => Ok(s.clone()),
            _ => Err(Invalid::ty(node, key, "a string")),
        }
    }

    fn to_out(&self) -> Out {
        Out::Str(self.clone())
    }
}

/// A non-empty string (an empty one is a mistake; `null` unsets).
impl Value for PathBuf {
    fn zero() -> Self {
        PathBuf::new()
    }

    fn parse(node: &Node, key: &str) -> Result<Self, Invalid> {
        match &node.kind {
            Kind::Str(s) if s.is_empty() => Err(Invalid::value(
                node,
                key,
                "an empty path; use null to leave it unset",
            )),
            Kind::Str(s) => Ok(PathBuf::from(s)),
            _ => Err(Invalid::ty(node, key, "a path (a string)")),
        }
    }

    fn to_out(&self) -> Out {
        // Paths come from YAML strings, so they are valid UTF-8; the lossy
        // conversion only matters for paths set in code.
        Out::Str(self.to_string_lossy().into_owned())
    }
}

/// A non-negative integer (`20e6` and `10_000_000` spellings included).
impl Value for u64 {
    fn zero() -> Self {
        0
    }

    fn parse(node: &Node, key: &str) -> Result<Self, Invalid> {
        node.as_int()
            .and_then(|i| u64::try_from(i).ok())
            .ok_or_else(|| Invalid::ty(node, key, "a non-negative integer"))
    }

    fn to_out(&self) -> Out {
        Out::Int((*self).into())
    }
}

/// `null` is `None`; anything else must be a valid `T`.
impl<T: Value> Value for Option<T> {
    fn zero() -> Self {
        None
    }

    fn parse(node: &Node, key: &str) -> Result<Self, Invalid> {
        match node.kind {
            Kind::Null => Ok(None),
            _ => T::parse(node, key).map(Some),
        }
    }

    fn to_out(&self) -> Out {
        self.as_ref().map_or(Out::Null, T::to_out)
    }
}

/// Parses a list; element `i` is named `KEY NOUN #i+1` (1-based, as users
/// count) and errors point at the element's own line.
pub(crate) fn parse_list<T>(
    node: &Node,
    key: &str,
    expected: &str,
    noun: &str,
    mut element: impl FnMut(&Node, &str) -> Result<T, Invalid>,
) -> Result<Vec<T>, Invalid> {
    match &node.kind {
        Kind::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| element(item, &format!("{key} {noun} #{}", i + 1)))
            .collect(),
        _ => Err(Invalid::ty(node, key, expected)),
    }
}
