//! Stream backups: the bytes a program writes (or standard input), cut by
//! content-defined chunking, each chunk stored once, the stream stored as
//! an immutable directory of its chunks. `docs/streams.md` is the contract
//! for the format; this module writes and reads exactly what it describes.
//!
//! The layout, chosen so that stock Tahoe tools (`tahoe deep-check`,
//! `check --leases`, repair) reach every chunk by following directories:
//!
//! ```text
//! ROOT (immutable directory)
//!   .lafs-backup-stream   URI:LIT: (empty); the index is its edge metadata
//!   g00000000             immutable directory of chunks 0..1023
//!     c00000000           chunk 0 (a file; edge metadata: size, enc)
//!     ...
//!   g00000001             chunks 1024..2047
//! ```
//!
//! Groups of [`GROUP`] chunks keep every directory small (a directory is
//! one object, read and written whole) whatever the stream's length; the
//! fixed-width names sort in stream order.
//!
//! A tar stream (`backup --stdin --tar`) has the layout `tar`: its regular
//! members' payloads in the groups (`p00000000`, ...), and its record index
//! (verbatim bytes and payload records) stored as a plain stream in the
//! root's `index` directory.
//!
//! The parts: [`chunker`] cuts a `Read` into chunks with bounded memory,
//! [`store`] uploads them through the content index and builds the
//! directories, [`tar`] splits a tar into payloads and records and stores
//! them with the same machinery, [`read`] gets the exact bytes back.

pub(crate) mod chunker;
pub(crate) mod read;
pub(crate) mod store;
pub(crate) mod tar;

use serde_json::Value;

use crate::config::Chunking;
use crate::encode::Encoding;

/// The name of the index entry in a stream's root directory.
pub(crate) const INDEX_NAME: &str = ".lafs-backup-stream";

/// The `format` value of the index.
pub(crate) const FORMAT: &str = "lafs-backup-stream";

/// The format version this build writes and reads.
pub(crate) const VERSION: u64 = 1;

/// The chunker, as the index names it.
pub(crate) const CHUNKER: &str = "fastcdc-v2020";

/// Chunks per group directory.
pub(crate) const GROUP: u64 = 1024;

/// The name of chunk `index` (counted from 0 over the whole stream).
pub(crate) fn chunk_name(index: u64) -> String {
    format!("c{index:08}")
}

/// The name of group `index`.
pub(crate) fn group_name(index: u64) -> String {
    format!("g{index:08}")
}

/// The `layout` of a tar stream's index (a plain stream's index has no
/// `layout` key; docs/streams.md, "Tar streams").
pub(crate) const LAYOUT_TAR: &str = "tar";

/// The name of a tar stream's record index, a plain stream (a directory
/// of the root).
pub(crate) const TAR_INDEX_DIR: &str = "index";

/// The name of tar payload `index` (counted from 0 over the whole tar).
pub(crate) fn payload_name(index: u64) -> String {
    format!("p{index:08}")
}

/// How a stream is laid out, from its index's `layout` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LayoutKind {
    /// Chunks in groups (no `layout` key).
    Plain,
    /// A tar: payloads in groups, the record index a plain stream.
    Tar,
}

/// The layout an index states; an unknown one is refused.
pub(crate) fn layout_kind(meta: &Value) -> Result<LayoutKind, String> {
    match meta.get("layout") {
        None => Ok(LayoutKind::Plain),
        Some(Value::String(l)) if l == LAYOUT_TAR => Ok(LayoutKind::Tar),
        Some(other) => Err(format!(
            "the stream has the layout {other}, which this lafs-backup does not read \
             (a newer lafs-backup wrote it)"
        )),
    }
}

/// The index of a tar stream: what its root's `.lafs-backup-stream` edge
/// says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TarIndex {
    /// The tar's length in bytes.
    pub(crate) size: u64,
    /// How many payloads (regular members) it has.
    pub(crate) payloads: u64,
}

impl TarIndex {
    /// The edge metadata, keys in exactly this order, numbers as decimal
    /// strings.
    pub(crate) fn to_json(&self) -> String {
        let groups = self.payloads.div_ceil(GROUP);
        format!(
            "{{\"format\":\"{FORMAT}\",\"version\":\"{VERSION}\",\"layout\":\"{LAYOUT_TAR}\",\
             \"size\":\"{}\",\"payloads\":\"{}\",\"groups\":\"{groups}\",\
             \"group_size\":\"{GROUP}\"}}",
            self.size, self.payloads
        )
    }

    /// Reads a tar index back (format and version as for [`Index`]).
    pub(crate) fn from_json(meta: &Value) -> Result<TarIndex, String> {
        check_format(meta)?;
        if layout_kind(meta)? != LayoutKind::Tar {
            return Err("the stream index is not of a tar".into());
        }
        let index = TarIndex {
            size: number(meta, "size")?,
            payloads: number(meta, "payloads")?,
        };
        if number(meta, "group_size")? != GROUP {
            return Err("the stream index has another group size".into());
        }
        if number(meta, "groups")? != index.payloads.div_ceil(GROUP) {
            return Err("the stream index's group count does not match its payloads".into());
        }
        Ok(index)
    }
}

fn text<'a>(meta: &'a Value, key: &str) -> Result<&'a str, String> {
    meta.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("the stream index lacks {key:?}"))
}

fn number(meta: &Value, key: &str) -> Result<u64, String> {
    text(meta, key)?
        .parse::<u64>()
        .map_err(|_| format!("the stream index's {key:?} is not a number"))
}

/// The format and version every stream index starts with.
fn check_format(meta: &Value) -> Result<(), String> {
    if text(meta, "format")? != FORMAT {
        return Err("the stream index is of another format".into());
    }
    let version = number(meta, "version")?;
    if version != VERSION {
        return Err(format!(
            "the stream has format version {version}; this lafs-backup reads version \
             {VERSION} (a newer lafs-backup wrote it)"
        ));
    }
    Ok(())
}

/// The index of a stream: what its root's `.lafs-backup-stream` edge says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Index {
    /// The stream's length in bytes.
    pub(crate) size: u64,
    /// How many chunks it has.
    pub(crate) chunks: u64,
    /// The chunking it was cut with.
    pub(crate) min_size: u64,
    pub(crate) avg_size: u64,
    pub(crate) max_size: u64,
    /// A btrfs send stream's plan facts (`docs/btrfs.md`): the keys
    /// `btrfs_date` and `btrfs_send` (`c` or `i YYYY-MM-DD`) after the
    /// others; `None` (no such keys) for every other stream.
    pub(crate) btrfs: Option<crate::btrfs::plan::Member>,
}

impl Index {
    /// The index of a stream of `size` bytes in `chunks` chunks cut with
    /// `chunking`.
    pub(crate) fn new(size: u64, chunks: u64, chunking: &Chunking) -> Index {
        Index {
            size,
            chunks,
            min_size: chunking.min_size,
            avg_size: chunking.avg_size,
            max_size: chunking.max_size,
            btrfs: None,
        }
    }

    /// The edge metadata, keys in exactly this order, numbers as decimal
    /// strings (as in `docs/metadata.md`).
    pub(crate) fn to_json(&self) -> String {
        let groups = self.chunks.div_ceil(GROUP);
        // A btrfs member's facts go last, so that every other stream's
        // index is byte for byte what it always was.
        let btrfs = self
            .btrfs
            .map(|m| {
                format!(
                    ",\"btrfs_date\":\"{}\",\"btrfs_send\":\"{}\"",
                    m.date.strftime("%Y-%m-%d"),
                    m.kind
                )
            })
            .unwrap_or_default();
        format!(
            "{{\"format\":\"{FORMAT}\",\"version\":\"{VERSION}\",\"size\":\"{}\",\
             \"chunks\":\"{}\",\"groups\":\"{groups}\",\"group_size\":\"{GROUP}\",\
             \"chunker\":\"{CHUNKER}\",\"min_size\":\"{}\",\"avg_size\":\"{}\",\
             \"max_size\":\"{}\"{btrfs}}}",
            self.size, self.chunks, self.min_size, self.avg_size, self.max_size
        )
    }

    /// Reads an index back; a newer version or another format is refused.
    pub(crate) fn from_json(meta: &Value) -> Result<Index, String> {
        check_format(meta)?;
        if layout_kind(meta)? != LayoutKind::Plain {
            return Err("the stream index is of a tar, not a plain stream".into());
        }
        let number = |key: &str| number(meta, key);
        let index = Index {
            size: number("size")?,
            chunks: number("chunks")?,
            min_size: number("min_size")?,
            avg_size: number("avg_size")?,
            max_size: number("max_size")?,
            btrfs: btrfs_member(meta)?,
        };
        if number("group_size")? != GROUP {
            return Err("the stream index has another group size".into());
        }
        if number("groups")? != index.chunks.div_ceil(GROUP) {
            return Err("the stream index's group count does not match its chunks".into());
        }
        Ok(index)
    }
}

/// The btrfs facts of an index, when it has them (both keys or neither).
fn btrfs_member(meta: &Value) -> Result<Option<crate::btrfs::plan::Member>, String> {
    let key = |k: &str| meta.get(k).and_then(Value::as_str);
    match (key("btrfs_date"), key("btrfs_send")) {
        (None, None) => Ok(None),
        (Some(date), Some(send)) => crate::btrfs::plan::Member::parse(date, send)
            .map(Some)
            .ok_or_else(|| {
                format!(
                    "the stream index's btrfs facts {date:?} {send:?} are not a date and a plan"
                )
            }),
        _ => Err("the stream index has only one of btrfs_date and btrfs_send".into()),
    }
}

/// The edge metadata of a chunk: its length, and its encoding when stored
/// compressed.
pub(crate) fn chunk_meta(size: u64, enc: Option<Encoding>) -> String {
    match enc {
        None => format!("{{\"size\":\"{size}\"}}"),
        Some(enc) => format!("{{\"size\":\"{size}\",\"enc\":\"{}\"}}", enc.as_str()),
    }
}

/// The edge metadata of a group: its chunks and their bytes.
pub(crate) fn group_meta(chunks: u64, size: u64) -> String {
    format!("{{\"chunks\":\"{chunks}\",\"size\":\"{size}\"}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A btrfs member's facts follow the other keys (pinned), read back;
    /// half of them, or bad ones, are refused.
    #[test]
    fn btrfs_facts_round_trip_and_are_pinned() {
        use crate::btrfs::plan::{Kind, Member};
        let chunking = Chunking {
            min_size: 1024,
            avg_size: 4096,
            max_size: 16384,
        };
        let d = |s: &str| s.parse::<jiff::civil::Date>().unwrap();
        let plain = Index::new(5000, 2, &chunking).to_json();
        for (kind, text) in [
            (Kind::Complete, "c"),
            (
                Kind::Incremental {
                    parent: d("2000-01-01"),
                },
                "i 2000-01-01",
            ),
        ] {
            let index = Index {
                btrfs: Some(Member {
                    date: d("2000-01-07"),
                    kind,
                }),
                ..Index::new(5000, 2, &chunking)
            };
            let json = index.to_json();
            assert_eq!(
                json,
                format!(
                    "{},\"btrfs_date\":\"2000-01-07\",\"btrfs_send\":\"{text}\"}}",
                    plain.trim_end_matches('}')
                )
            );
            let value: Value = serde_json::from_str(&json).unwrap();
            assert_eq!(Index::from_json(&value).unwrap(), index);
        }
        let bad = |extra: &str| {
            let json = format!("{},{extra}}}", plain.trim_end_matches('}'));
            Index::from_json(&serde_json::from_str(&json).unwrap()).unwrap_err()
        };
        assert!(bad("\"btrfs_date\":\"2000-01-07\"").contains("only one"));
        assert!(bad("\"btrfs_date\":\"2000-1-7\",\"btrfs_send\":\"c\"").contains("btrfs"));
        assert!(
            bad("\"btrfs_date\":\"2000-01-07\",\"btrfs_send\":\"x 2000-01-01\"").contains("btrfs")
        );
    }

    #[test]
    fn index_round_trips_and_is_pinned() {
        let chunking = Chunking {
            min_size: 1024,
            avg_size: 4096,
            max_size: 16384,
        };
        let index = Index::new(5000, 2, &chunking);
        let json = index.to_json();
        assert_eq!(
            json,
            "{\"format\":\"lafs-backup-stream\",\"version\":\"1\",\"size\":\"5000\",\
             \"chunks\":\"2\",\"groups\":\"1\",\"group_size\":\"1024\",\
             \"chunker\":\"fastcdc-v2020\",\"min_size\":\"1024\",\"avg_size\":\"4096\",\
             \"max_size\":\"16384\"}"
        );
        let value: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(Index::from_json(&value).unwrap(), index);
        let newer = json.replace("\"version\":\"1\"", "\"version\":\"2\"");
        let err = Index::from_json(&serde_json::from_str(&newer).unwrap()).unwrap_err();
        assert!(err.contains("newer"), "{err}");
        assert_eq!(chunk_name(3), "c00000003");
        assert_eq!(payload_name(3), "p00000003");
        assert_eq!(group_name(1), "g00000001");
        assert_eq!(chunk_meta(7, None), "{\"size\":\"7\"}");
        assert_eq!(
            chunk_meta(7, Some(Encoding::Zstd)),
            "{\"size\":\"7\",\"enc\":\"zstd\"}"
        );
    }

    #[test]
    fn tar_index_round_trips_and_is_pinned() {
        let index = TarIndex {
            size: 10240,
            payloads: 1025,
        };
        let json = index.to_json();
        assert_eq!(
            json,
            "{\"format\":\"lafs-backup-stream\",\"version\":\"1\",\"layout\":\"tar\",\
             \"size\":\"10240\",\"payloads\":\"1025\",\"groups\":\"2\",\
             \"group_size\":\"1024\"}"
        );
        let value: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(TarIndex::from_json(&value).unwrap(), index);
        assert_eq!(layout_kind(&value).unwrap(), LayoutKind::Tar);
        // A plain reader refuses a tar index; an unknown layout is refused.
        assert!(Index::from_json(&value).unwrap_err().contains("tar"));
        let other = json.replace("\"tar\"", "\"zip\"");
        let err = layout_kind(&serde_json::from_str(&other).unwrap()).unwrap_err();
        assert!(err.contains("\"zip\"") && err.contains("newer"), "{err}");
    }
}
