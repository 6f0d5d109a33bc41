//! How a file's bytes are encoded before upload: the compression rules of
//! `destination.encoding.xz` and the compressing reader.
//!
//! The decision is part of a file's dedup key: changing a rule so that a
//! file's decision flips makes exactly that file upload again.

use std::io::{self, Read};

use liblzma::read::XzEncoder;
use liblzma::stream::{Check, PRESET_EXTREME, Stream};
use regex::bytes::Regex;

use crate::config::{Xz, XzAction};
use crate::filter;

/// A content encoding recorded in the edge metadata as `enc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Xz,
}

impl Encoding {
    /// The value of the `enc` edge key.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Xz => "xz",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "xz" => Some(Encoding::Xz),
            _ => None,
        }
    }
}

/// The compiled `destination.encoding.xz` rules.
#[derive(Debug, Clone)]
pub struct Encoder {
    enabled: bool,
    min_size: Option<u64>,
    preset: u32,
    rules: Vec<(XzAction, Regex)>,
}

impl Encoder {
    /// Compiles the rules. The config loader has already checked that every
    /// regex compiles, so a failure here is reported, not assumed away.
    pub fn new(xz: &Xz) -> Result<Self, String> {
        let rules = xz
            .path_filter
            .iter()
            .map(|rule| {
                filter::compile(&rule.regex)
                    .map(|re| (rule.action, re))
                    .map_err(|e| {
                        format!("destination.encoding.xz.path_filter {:?}: {e}", rule.regex)
                    })
            })
            .collect::<Result<_, _>>()?;
        let options = xz.options.unwrap_or_default();
        let mut preset = options.level;
        if options.extreme {
            preset |= PRESET_EXTREME;
        }
        Ok(Self {
            enabled: xz.enabled,
            min_size: xz.min_size,
            preset,
            rules,
        })
    }

    /// Whether a regular file at `rel_path` (relative to the source root)
    /// of `size` bytes is compressed. Rules are tried in order against
    /// `'/' + rel_path`, as the original tool did; the first match decides,
    /// and no match means "compress if at least `min_size` bytes".
    pub fn choose(&self, rel_path: &[u8], size: u64) -> Option<Encoding> {
        if !self.enabled {
            return None;
        }
        let mut subject = Vec::with_capacity(rel_path.len() + 1);
        subject.push(b'/');
        subject.extend_from_slice(rel_path);
        let action = self
            .rules
            .iter()
            .find(|(_, re)| re.is_match(&subject))
            .map_or(XzAction::UseMinSize, |(action, _)| *action);
        let compress = match action {
            XzAction::Never => false,
            XzAction::UseMinSize => self.min_size.is_some_and(|min| size >= min),
            XzAction::AtLeast(min) => size >= min,
        };
        compress.then_some(Encoding::Xz)
    }

    /// Wraps `input` so that reading yields its encoded form.
    pub fn reader<R: Read + Send + 'static>(
        &self,
        encoding: Option<Encoding>,
        input: R,
    ) -> io::Result<Box<dyn Read + Send>> {
        Ok(match encoding {
            None => Box::new(input),
            Some(Encoding::Xz) => {
                let stream = Stream::new_easy_encoder(self.preset, Check::Crc64)
                    .map_err(|e| io::Error::other(format!("xz encoder: {e}")))?;
                Box::new(XzEncoder::new_stream(input, stream))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{XzOptions, XzRule};

    fn xz(min_size: Option<u64>, rules: &[(XzAction, &str)]) -> Xz {
        let mut xz = crate::config::Config::default().destination.encoding.xz;
        xz.enabled = true;
        xz.min_size = min_size;
        xz.path_filter = rules
            .iter()
            .map(|(action, re)| XzRule {
                action: *action,
                regex: (*re).to_owned(),
            })
            .collect();
        xz
    }

    #[test]
    fn min_size_decides_without_rules() {
        let e = Encoder::new(&xz(Some(5120), &[])).unwrap();
        assert_eq!(e.choose(b"a", 5119), None);
        assert_eq!(e.choose(b"a", 5120), Some(Encoding::Xz));
        let never = Encoder::new(&xz(None, &[])).unwrap();
        assert_eq!(never.choose(b"a", 1 << 30), None);
    }

    #[test]
    fn rules_in_order_first_match_wins() {
        let e = Encoder::new(&xz(
            Some(5120),
            &[
                (XzAction::Never, r"\.(gz|xz|jpg)$"),
                (XzAction::AtLeast(0), r"\.txt$"),
                (XzAction::UseMinSize, r"^/logs/"),
            ],
        ))
        .unwrap();
        assert_eq!(e.choose(b"big.jpg", 1 << 20), None);
        assert_eq!(e.choose(b"tiny.txt", 3), Some(Encoding::Xz));
        assert_eq!(e.choose(b"logs/a.txt", 3), Some(Encoding::Xz));
        assert_eq!(e.choose(b"logs/a", 3), None);
        assert_eq!(e.choose(b"logs/a", 6000), Some(Encoding::Xz));
    }

    #[test]
    fn disabled_never_compresses() {
        let mut config = xz(Some(0), &[(XzAction::AtLeast(0), ".")]);
        config.enabled = false;
        assert_eq!(Encoder::new(&config).unwrap().choose(b"x", 1 << 20), None);
    }

    #[test]
    fn xz_reader_round_trips() {
        let mut config = xz(Some(0), &[]);
        config.options = Some(XzOptions {
            level: 1,
            extreme: false,
        });
        let e = Encoder::new(&config).unwrap();
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let mut packed = Vec::new();
        e.reader(Some(Encoding::Xz), io::Cursor::new(data.clone()))
            .unwrap()
            .read_to_end(&mut packed)
            .unwrap();
        assert!(packed.starts_with(b"\xfd7zXZ\0"));
        assert!(packed.len() < data.len() / 4);
        let mut unpacked = Vec::new();
        liblzma::read::XzDecoder::new(&packed[..])
            .read_to_end(&mut unpacked)
            .unwrap();
        assert_eq!(unpacked, data);
    }
}
