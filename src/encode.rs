//! How a file's bytes are encoded before upload.
//!
//! Two steps decide whether a regular file is stored compressed:
//!
//! 1. **The rules** ([`Encoder::choose`]): the ordered
//!    `destination.encoding.xz.path_filter` rules and `min_size` select the
//!    files to compress, with the codec of `destination.encoding.codec` (xz or
//!    zstd). This is cheap (no I/O) and it is part of a file's dedup key,
//!    written as [`Encoder::decision_tag`]: `enc:none`, or the codec with its
//!    settings (`enc:xz:6`, `enc:xz:9e`, `enc:zstd:3`). Flipping a rule, or
//!    changing the codec or its level, therefore uploads exactly the affected
//!    files again.
//! 2. **The content** ([`Encoder::prepare`]): a selected file is still stored
//!    as it is when compressing would not pay. A probe compresses the first
//!    [`PROBE_SIZE`] bytes with zstd level 1; unless that saves at least 1/20
//!    (5 %), the file is taken for incompressible (media, archives, encrypted
//!    data) and not compressed at all. Otherwise the whole file is compressed
//!    into an unlinked temporary spool file, and if the result is not smaller
//!    than the file, it is discarded and the raw bytes are sent.
//!
//! Memory: an xz encoder takes ~94 MiB at preset 6 (674 MiB at 9), a zstd
//! one a few MiB, so zstd is the default codec and at most
//! `destination.encoding.xz.max_parallel` (default 1) xz encoders exist at a
//! time in the process (`gate`), whatever the upload concurrency.
//!
//! `prepare` reads the file once, hashing its raw bytes (BLAKE3) as it goes;
//! [`Prepared::open`] then yields the body to send, as many times as the
//! upload is attempted. A raw body is read from the file again and checked
//! against that hash while it streams, so a file that changed after
//! `prepare` fails the upload instead of being recorded under the hash of
//! other bytes. Memory use is bounded whatever the file size.

mod bytes;
mod gate;
mod prepare;
#[cfg(test)]
mod tests;

use std::io::{self, Read};

use regex::bytes::Regex;

use crate::config::{self, Codec, XzAction};
use crate::filter;

pub(crate) use prepare::PROBE_SIZE;
pub use prepare::{Prepared, is_file_changed};

/// A content encoding recorded in the edge metadata as `enc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// An xz stream (CRC64 check).
    Xz,
    /// A single zstd frame (with its content checksum).
    Zstd,
}

impl Encoding {
    /// The value of the `enc` edge key.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Xz => "xz",
            Encoding::Zstd => "zstd",
        }
    }

    /// The encoding named by an `enc` value, if known.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        match name {
            "xz" => Some(Encoding::Xz),
            "zstd" => Some(Encoding::Zstd),
            _ => None,
        }
    }
}

/// The original bytes of `stored`, an object stored with the encoding
/// `enc` (as it is when `None`), streamed: what restore writes and verify
/// compares.
pub(crate) fn decoder<'a>(
    enc: Option<Encoding>,
    stored: impl Read + 'a,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match enc {
        None => Box::new(stored),
        Some(Encoding::Xz) => Box::new(liblzma::read::XzDecoder::new(stored)),
        Some(Encoding::Zstd) => Box::new(zstd::stream::read::Decoder::new(stored)?),
    })
}

impl From<Codec> for Encoding {
    fn from(codec: Codec) -> Self {
        match codec {
            Codec::Xz => Encoding::Xz,
            Codec::Zstd => Encoding::Zstd,
        }
    }
}

/// The compiled `destination.encoding` section: which files are compressed,
/// and how. Shared by the upload workers (it is `Send + Sync`).
#[derive(Debug, Clone)]
pub struct Encoder {
    enabled: bool,
    min_size: Option<u64>,
    rules: Vec<(XzAction, Regex)>,
    codec: Encoding,
    xz_level: u32,
    xz_extreme: bool,
    /// How many xz encoders may exist at once in the process
    /// (`destination.encoding.xz.max_parallel`, at least 1).
    xz_max_parallel: usize,
    zstd_level: i32,
    /// How many leading bytes the probe compresses; 0 turns the probe off
    /// (only tests do, to reach the "not smaller" check directly).
    probe_size: usize,
}

/// The zstd levels accepted for `destination.encoding.zstd.level`.
pub(crate) const ZSTD_LEVELS: std::ops::RangeInclusive<u64> = 1..=19;

impl Encoder {
    /// Compiles the `destination.encoding` section. The config loader has
    /// already checked most of it; what is still wrong here is reported
    /// naming the key.
    pub fn new(config: &config::Encoding) -> Result<Self, String> {
        let xz = &config.xz;
        let rules = xz
            .path_filter
            .iter()
            .enumerate()
            .map(|(index, rule)| {
                filter::compile(&rule.regex)
                    .map(|re| (rule.action, re))
                    .map_err(|e| {
                        format!(
                            "destination.encoding.xz.path_filter rule #{} {:?}: {e}",
                            index + 1,
                            rule.regex
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        let options = xz.options.unwrap_or_default();
        if options.level > 9 {
            return Err(format!(
                "destination.encoding.xz.options.level: the xz preset level must be \
                 an integer from 0 to 9, not {}",
                options.level
            ));
        }
        let xz_max_parallel = usize::try_from(xz.max_parallel)
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                format!(
                    "destination.encoding.xz.max_parallel: must be at least 1, not {}",
                    xz.max_parallel
                )
            })?;
        let zstd_level = config.zstd.level;
        if !ZSTD_LEVELS.contains(&zstd_level) {
            return Err(format!(
                "destination.encoding.zstd.level: the zstd level must be an integer \
                 from {} to {}, not {zstd_level}",
                ZSTD_LEVELS.start(),
                ZSTD_LEVELS.end()
            ));
        }
        Ok(Self {
            enabled: xz.enabled,
            min_size: xz.min_size,
            rules,
            codec: config.codec.into(),
            xz_level: options.level,
            xz_extreme: options.extreme,
            xz_max_parallel,
            // At most 19: the conversion cannot truncate.
            zstd_level: zstd_level as i32,
            probe_size: PROBE_SIZE,
        })
    }

    /// The configured codec (`destination.encoding.codec`).
    #[cfg(test)]
    pub(crate) fn codec(&self) -> Encoding {
        self.codec
    }

    /// The rule decision for a regular file at `rel_path` (relative to the
    /// source root) of `size` bytes: the configured codec, or `None`. Rules
    /// are tried in order against `'/' + rel_path`, as the original tool did;
    /// the first match decides, and no match means "compress if at least
    /// `min_size` bytes". No I/O: this goes into the dedup key (see
    /// `Encoder::decision_tag`).
    pub fn choose(&self, rel_path: &[u8], size: u64) -> Option<Encoding> {
        if !self.enabled {
            return None;
        }
        config::rules_choose(&self.rules, self.min_size, rel_path, size).then_some(self.codec)
    }

    /// The dedup-key tag of a rule decision: `enc:none`, or the codec with
    /// the settings that shape its output: `enc:xz:LEVEL` (with an `e` for
    /// the extreme variant, `enc:xz:9e`) or `enc:zstd:LEVEL`. Changing the
    /// codec or its level changes the tag of every file compressed with it.
    pub(crate) fn decision_tag(&self, decision: Option<Encoding>) -> String {
        match decision {
            None => "enc:none".to_owned(),
            Some(Encoding::Xz) => format!(
                "enc:xz:{}{}",
                self.xz_level,
                if self.xz_extreme { "e" } else { "" }
            ),
            Some(Encoding::Zstd) => format!("enc:zstd:{}", self.zstd_level),
        }
    }

    /// The liblzma preset: the level, with the extreme flag.
    fn xz_preset(&self) -> u32 {
        let mut preset = self.xz_level;
        if self.xz_extreme {
            preset |= liblzma::stream::PRESET_EXTREME;
        }
        preset
    }
}

// The upload workers share one Encoder and move Prepared bodies between
// threads.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Encoder>();
    send_sync::<Prepared>();
};
