//! The `chunking` section: the content-defined chunking of streams
//! (`docs/streams.md`). Each size is checked against FastCDC's own limits
//! here, where its key and line are known; that `min_size < avg_size <
//! max_size` holds is checked by [`Chunking::check`] when a stream backup
//! starts (a later layer may still change one of them).

use super::ConfigError;
use super::emit::Out;
use super::node::{Kind, Node};
use super::schema::{Invalid, Item, Layer, join, section};
use super::values::{XzAction, XzRule};

section! {
    /// `chunking`: how streams are cut into chunks (FastCDC 2020).
    pub struct Chunking {
        /// No chunk is smaller (except the last of a stream), in bytes.
        pub min_size: u64 => chunk_size,
        /// The average chunk size FastCDC aims at, in bytes.
        pub avg_size: u64 => chunk_size,
        /// No chunk is larger, in bytes; at most 4 MiB.
        pub max_size: u64 => chunk_size,
    }
}

/// The largest `chunking.max_size`: one Tahoe object per chunk stays small
/// enough to be held in memory a few times over, and to retry cheaply.
pub(crate) const MAX_CHUNK: u64 = 4 << 20;

/// The limits of each key: FastCDC's (`fastcdc::v2020::*_MIN`/`*_MAX`),
/// with `max_size` capped at [`MAX_CHUNK`].
pub(crate) fn limits(key: &str) -> (u64, u64) {
    use fastcdc::v2020 as f;
    if key.ends_with("min_size") {
        (f::MINIMUM_MIN.into(), f::MINIMUM_MAX.into())
    } else if key.ends_with("avg_size") {
        (f::AVERAGE_MIN.into(), f::AVERAGE_MAX.into())
    } else {
        (f::MAXIMUM_MIN.into(), MAX_CHUNK)
    }
}

impl Chunking {
    /// Whether the three sizes fit together (`min_size < avg_size <
    /// max_size`); the message names the keys.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.min_size < self.avg_size && self.avg_size < self.max_size {
            return Ok(());
        }
        Err(format!(
            "chunking: min_size ({}) < avg_size ({}) < max_size ({}) must hold",
            self.min_size, self.avg_size, self.max_size
        ))
    }
}

/// One size of the `chunking` section: an integer number of bytes within
/// the key's [`limits`].
pub(crate) mod chunk_size {
    use super::{Invalid, Node, Out, limits};

    pub(crate) fn zero() -> u64 {
        0
    }

    pub(crate) fn parse(node: &Node, key: &str) -> Result<u64, Invalid> {
        let (lo, hi) = limits(key);
        match node.as_int().map(u64::try_from) {
            Some(Ok(n)) if (lo..=hi).contains(&n) => Ok(n),
            Some(Ok(_)) | Some(Err(_)) => Err(Invalid::value(
                node,
                key,
                format!("must be a number of bytes from {lo} to {hi}"),
            )),
            None => Err(Invalid::ty(node, key, "an integer number of bytes")),
        }
    }

    pub(crate) fn to_out(n: &u64) -> Out {
        Out::Int((*n).into())
    }
}

section! {
    /// `chunking.files`: which regular files of a tree backup are stored
    /// chunked, like a stream (`docs/streams.md`), rather than whole. The
    /// rules read as `destination.encoding.xz`'s: tried in order against
    /// `'/' + relative path`, the first match decides; no match means "at
    /// least `min_size` bytes".
    pub struct ChunkFiles {
        /// Files of at least this many bytes are chunked unless a rule says
        /// otherwise; `None`: only `[N, REGEX]` rules chunk.
        pub min_size: Option<u64>,
        /// Ordered rules (`'+REGEX'`, `'-REGEX'`, `[N, REGEX]`); empty when
        /// null.
        pub path_filter: Vec<XzRule>,
    }
}

/// The `chunking` section as the config holds it: the chunk sizes (what
/// the chunker and the stream code use, reached through `Deref`, so that
/// `&config.chunking` is still a `&Chunking`), and `chunking.files`.
///
/// `files` is written by `dump-config` only when set: a config without it
/// dumps byte for byte as before the key existed.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkingConfig {
    /// `min_size`, `avg_size`, `max_size`.
    pub sizes: Chunking,
    /// `chunking.files`; `None` (the default): every file is stored whole.
    pub files: Option<ChunkFiles>,
}

impl std::ops::Deref for ChunkingConfig {
    type Target = Chunking;

    fn deref(&self) -> &Chunking {
        &self.sizes
    }
}

/// The key of `chunking.files`.
const FILES: &str = "files";

impl Item for ChunkingConfig {
    fn blank() -> Self {
        ChunkingConfig {
            sizes: Chunking::blank(),
            files: None,
        }
    }

    fn apply(&mut self, node: &Node, key: &str, layer: &mut Layer<'_>) -> Result<(), ConfigError> {
        let entries = layer.section(node, key)?;
        let mut sizes = Vec::with_capacity(entries.len());
        for entry in entries {
            if entry.key != FILES {
                sizes.push(entry.clone());
                continue;
            }
            if entry.value.kind == Kind::Null {
                // `files: null` turns chunked files off again.
                self.files = None;
                continue;
            }
            let mut files = self.files.take().unwrap_or_else(ChunkFiles::blank);
            files.apply(&entry.value, &join(key, FILES), layer)?;
            self.files = Some(files);
        }
        if sizes.is_empty() {
            return Ok(());
        }
        // The size keys, walked by the generated section (its checks and
        // messages), without the key it does not know.
        let rest = Node {
            line: node.line,
            kind: Kind::Map(sizes),
        };
        self.sizes.apply(&rest, key, layer)
    }

    fn emit(&self) -> Out {
        match (self.sizes.emit(), &self.files) {
            (Out::Map(mut entries), Some(files)) => {
                entries.push((FILES, files.emit()));
                Out::Map(entries)
            }
            (out, _) => out,
        }
    }

    fn keys(key: &str, out: &mut Vec<String>) {
        // `chunking.files` is off (absent) in the base config, so that dumps
        // of configs without it stay as they were; docs/config.md documents
        // it by hand.
        Chunking::keys(key, out);
    }
}

/// The compiled `chunking.files` rules: which regular files are chunked.
#[derive(Debug, Clone)]
pub(crate) struct ChunkRules {
    min_size: Option<u64>,
    rules: Vec<(XzAction, regex::bytes::Regex)>,
}

impl ChunkFiles {
    /// Compiles the rules (the loader has checked each regex already; what
    /// is still wrong here is named by its key).
    pub(crate) fn compile(&self) -> Result<ChunkRules, String> {
        let rules = self
            .path_filter
            .iter()
            .enumerate()
            .map(|(index, rule)| {
                crate::filter::compile(&rule.regex)
                    .map(|re| (rule.action, re))
                    .map_err(|e| {
                        format!(
                            "chunking.files.path_filter rule #{} {:?}: {e}",
                            index + 1,
                            rule.regex
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(ChunkRules {
            min_size: self.min_size,
            rules,
        })
    }
}

impl ChunkRules {
    /// Whether the regular file at `rel_path` (relative to the source
    /// root) of `size` bytes is stored chunked: the first rule matching
    /// `'/' + rel_path` decides, no match means "at least `min_size`". No
    /// I/O: this goes into the file's dedup key.
    pub(crate) fn chooses(&self, rel_path: &[u8], size: u64) -> bool {
        super::values::rules_choose(&self.rules, self.min_size, rel_path, size)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, load_from_strs};

    fn load(yaml: &str) -> Config {
        load_from_strs(&[("t.yaml", yaml)]).unwrap().config
    }

    #[test]
    fn files_is_off_by_default_and_absent_from_dumps() {
        let base = Config::builtin();
        assert_eq!(base.chunking.files, None);
        assert!(!base.to_yaml().contains("\n  files:"), "{}", base.to_yaml());
        // Setting only the sizes keeps it off; the sizes still apply.
        let c = load("chunking:\n  min_size: 65536\n");
        assert_eq!(c.chunking.min_size, 65536);
        assert_eq!(c.chunking.files, None);
    }

    #[test]
    fn files_rules_parse_dump_reload_and_choose() {
        let c = load(
            "chunking:\n  avg_size: 524288\n  files:\n    min_size: 1000\n    path_filter:\n      \
             - '-\\.iso$'\n      - [10, '\\.img$']\n",
        );
        assert_eq!(c.chunking.avg_size, 524288);
        let files = c.chunking.files.clone().unwrap();
        assert_eq!(files.min_size, Some(1000));
        assert_eq!(files.path_filter.len(), 2);
        let dump = c.to_yaml();
        assert!(dump.contains("  files:\n    min_size: 1000\n"), "{dump}");
        assert_eq!(load(&dump), c);
        let rules = files.compile().unwrap();
        assert!(rules.chooses(b"a/big", 1000));
        assert!(!rules.chooses(b"a/small", 999));
        assert!(!rules.chooses(b"x.iso", 1 << 30));
        assert!(rules.chooses(b"vm/disk.img", 10));
        assert!(!rules.chooses(b"vm/disk.img", 9));
        // A later layer's `files: null` turns it off again.
        let off = load_from_strs(&[("a.yaml", &dump), ("b.yaml", "chunking:\n  files: null\n")])
            .unwrap()
            .config;
        assert_eq!(off.chunking.files, None);
        // A bad rule names its key.
        let err = load_from_strs(&[("t.yaml", "chunking:\n  files:\n    path_filter: ['x']\n")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("chunking.files.path_filter"), "{err}");
        let err = load_from_strs(&[("t.yaml", "chunking:\n  files:\n    nope: 1\n")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("chunking.files.nope"), "{err}");
    }
}
