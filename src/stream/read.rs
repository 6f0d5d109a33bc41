//! Reading a stream back: its layout from the root directory, then its
//! chunks in order, each checked against the length its edge states, the
//! whole against the index's chunk count and size (`docs/streams.md`).

use std::io::{self, Read};

use serde_json::Value;
use thiserror::Error;

use super::{GROUP, INDEX_NAME, Index, chunk_name, group_name};
use crate::encode::{self, Encoding};
use crate::names::ROOT_META_NAME;
use crate::tahoe::{Cap, Client, TahoeError};

/// Why a stream could not be read. Never contains a cap.
#[derive(Debug, Error)]
pub(crate) enum ReadError {
    #[error("{what}: {source}")]
    Tahoe {
        what: String,
        #[source]
        source: TahoeError,
    },
    /// The directories do not hold a stream of this format.
    #[error("the stream is damaged or not of this format: {0}")]
    Format(String),
    /// A chunk's content does not match its edge.
    #[error("chunk {index}: {why}")]
    Chunk { index: u64, why: String },
    /// The consumer of the bytes failed (stdout closed, a comparison).
    #[error("{0}")]
    Sink(#[source] io::Error),
}

/// A stream's index and its group directories.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub(crate) index: Index,
    /// Each group's directory cap and its chunk count.
    groups: Vec<(Cap, u64)>,
}

/// One entry of a directory listing: name, whether a directory, cap,
/// metadata.
type Entry = (String, bool, Option<Cap>, Value);

fn list(client: &Client, dir: &Cap, what: &str) -> Result<Vec<Entry>, ReadError> {
    let mut entries = client
        .list_dir(dir, Vec::new, |acc: &mut Vec<Entry>, name, child| {
            let is_dir = child.get(0).and_then(Value::as_str) == Some("dirnode");
            let data = child.get(1);
            let cap = data
                .and_then(|d| d.get("ro_uri"))
                .and_then(Value::as_str)
                .and_then(|c| Cap::parse(c).ok());
            let meta = data
                .and_then(|d| d.get("metadata"))
                .cloned()
                .unwrap_or(Value::Null);
            acc.push((name, is_dir, cap, meta));
        })
        .map_err(|source| ReadError::Tahoe {
            what: format!("listing {what}"),
            source,
        })?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}

fn number(meta: &Value, key: &str) -> Option<u64> {
    meta.get(key)?.as_str()?.parse().ok()
}

/// The layout of the stream whose root directory is `root`, or `None`
/// when `root` is not a stream (a tree backup's root).
pub(crate) fn open(client: &Client, root: &Cap) -> Result<Option<Layout>, ReadError> {
    if !root.is_dir() {
        return Ok(None);
    }
    let entries = list(client, root, "the stream's root directory")?;
    let has = |name: &str| entries.iter().any(|e| e.0 == name);
    // A tree's root carries its own metadata entry; a stream's never does.
    if !has(INDEX_NAME) || has(ROOT_META_NAME) {
        return Ok(None);
    }
    let mut index = None;
    let mut groups = Vec::new();
    for (name, is_dir, cap, meta) in entries {
        if name == INDEX_NAME {
            index = Some(Index::from_json(&meta).map_err(ReadError::Format)?);
            continue;
        }
        let expected = group_name(groups.len() as u64);
        if name != expected || !is_dir {
            return Err(ReadError::Format(format!(
                "the root holds {name:?} where the group directory {expected} belongs"
            )));
        }
        let cap = cap.ok_or_else(|| ReadError::Format(format!("{name} has no cap")))?;
        let chunks = number(&meta, "chunks")
            .ok_or_else(|| ReadError::Format(format!("{name} does not say its chunk count")))?;
        groups.push((cap, chunks));
    }
    let index = index.ok_or_else(|| ReadError::Format("no index".into()))?;
    if groups.len() as u64 != index.chunks.div_ceil(GROUP)
        || groups.iter().map(|g| g.1).sum::<u64>() != index.chunks
    {
        return Err(ReadError::Format(
            "the group directories do not hold the index's chunk count".into(),
        ));
    }
    Ok(Some(Layout { index, groups }))
}

/// Hands every chunk's decoded bytes, in order, to `sink`, checking each
/// chunk's length and, at the end, the chunk count and the total. Returns
/// the bytes handed out.
pub(crate) fn for_each_chunk(
    client: &Client,
    layout: &Layout,
    mut sink: impl FnMut(&[u8]) -> io::Result<()>,
) -> Result<u64, ReadError> {
    let mut index = 0u64;
    let mut total = 0u64;
    for (g, (group, count)) in layout.groups.iter().enumerate() {
        let entries = list(
            client,
            group,
            &format!("the group {}", group_name(g as u64)),
        )?;
        if entries.len() as u64 != *count {
            return Err(ReadError::Format(format!(
                "the group {} holds {} chunks, its entry says {count}",
                group_name(g as u64),
                entries.len()
            )));
        }
        for (name, is_dir, cap, meta) in entries {
            if name != chunk_name(index) || is_dir {
                return Err(ReadError::Format(format!(
                    "{name:?} where chunk {} belongs",
                    chunk_name(index)
                )));
            }
            let bad = |why: String| ReadError::Chunk { index, why };
            let cap = cap.ok_or_else(|| bad("no cap".into()))?;
            let size = number(&meta, "size").ok_or_else(|| bad("no size".into()))?;
            let enc = match meta.get("enc").and_then(Value::as_str) {
                None => None,
                Some(name) => Some(
                    Encoding::from_name(name)
                        .ok_or_else(|| bad(format!("unknown encoding {name:?}")))?,
                ),
            };
            if size > layout.index.max_size {
                return Err(bad(format!(
                    "its edge says {size} bytes, more than the stream's max_size"
                )));
            }
            let data =
                read_chunk(client, &cap, size, enc, layout.index.max_size).map_err(
                    |e| match e {
                        ReadError::Chunk { why, .. } => ReadError::Chunk { index, why },
                        other => other,
                    },
                )?;
            sink(&data).map_err(ReadError::Sink)?;
            total = total.saturating_add(size);
            index += 1;
        }
    }
    if index != layout.index.chunks || total != layout.index.size {
        return Err(ReadError::Format(format!(
            "read {index} chunks and {total} bytes; the index says {} chunks and {} bytes",
            layout.index.chunks, layout.index.size
        )));
    }
    Ok(total)
}

/// One chunk, downloaded (at most `max` stored bytes: a stored chunk is
/// never larger than the chunk) and decoded; exactly `size` bytes.
fn read_chunk(
    client: &Client,
    cap: &Cap,
    size: u64,
    enc: Option<Encoding>,
    max: u64,
) -> Result<Vec<u8>, ReadError> {
    let stored = client
        .download_at_most(cap, max, "a stream chunk")
        .map_err(|source| ReadError::Tahoe {
            what: "downloading a chunk".into(),
            source,
        })?;
    let chunk_err = |why: String| ReadError::Chunk { index: 0, why };
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    encode::decoder(enc, &stored[..])
        .and_then(|d| d.take(size.saturating_add(1)).read_to_end(&mut data))
        .map_err(|e| chunk_err(format!("cannot be decoded ({e})")))?;
    if data.len() as u64 != size {
        return Err(chunk_err(format!(
            "holds {} bytes, its edge says {size}",
            data.len()
        )));
    }
    Ok(data)
}

/// A file of a tree backup stored chunked (`"chunked":"v1"` on its
/// edge), read as one byte stream: its chunk directory's index is checked
/// against the edge's `size`, then each group is listed and each chunk
/// downloaded, decoded and length-checked as it is reached (one chunk in
/// memory at a time), and the end checks the chunk count and the total,
/// as `cat` does for a stream. A damaged chunk list is an
/// [`io::Error`] wrapping the [`ReadError`].
pub(crate) struct ChunkedFile<'a> {
    client: &'a Client,
    layout: Layout,
    /// The next group to list.
    group: usize,
    /// The chunks of the current group not yet read.
    entries: std::vec::IntoIter<Entry>,
    /// The next chunk's index over the whole file, and the bytes so far.
    index: u64,
    total: u64,
    chunk: Vec<u8>,
    at: usize,
    ended: bool,
}

impl<'a> ChunkedFile<'a> {
    /// Opens the chunk directory `dir` of a file whose edge says `size`.
    pub(crate) fn open(client: &'a Client, dir: &Cap, size: u64) -> Result<Self, ReadError> {
        let layout = open(client, dir)?.ok_or_else(|| {
            ReadError::Format("the chunked file's directory holds no chunk index".into())
        })?;
        if layout.index.size != size {
            return Err(ReadError::Format(format!(
                "the chunk index says {} bytes, the file's edge says {size}",
                layout.index.size
            )));
        }
        Ok(ChunkedFile {
            client,
            layout,
            group: 0,
            entries: Vec::new().into_iter(),
            index: 0,
            total: 0,
            chunk: Vec::new(),
            at: 0,
            ended: false,
        })
    }

    /// The next chunk's decoded bytes, or `None` at a well-formed end.
    fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, ReadError> {
        loop {
            if let Some((name, is_dir, cap, meta)) = self.entries.next() {
                let index = self.index;
                if name != chunk_name(index) || is_dir {
                    return Err(ReadError::Format(format!(
                        "{name:?} where chunk {} belongs",
                        chunk_name(index)
                    )));
                }
                let bad = |why: String| ReadError::Chunk { index, why };
                let cap = cap.ok_or_else(|| bad("no cap".into()))?;
                let size = number(&meta, "size").ok_or_else(|| bad("no size".into()))?;
                let enc = match meta.get("enc").and_then(Value::as_str) {
                    None => None,
                    Some(name) => Some(
                        Encoding::from_name(name)
                            .ok_or_else(|| bad(format!("unknown encoding {name:?}")))?,
                    ),
                };
                let max = self.layout.index.max_size;
                if size > max {
                    return Err(bad(format!(
                        "its edge says {size} bytes, more than the stream's max_size"
                    )));
                }
                let data = read_chunk(self.client, &cap, size, enc, max).map_err(|e| match e {
                    ReadError::Chunk { why, .. } => ReadError::Chunk { index, why },
                    other => other,
                })?;
                self.index += 1;
                self.total = self.total.saturating_add(size);
                return Ok(Some(data));
            }
            let Some((group, count)) = self.layout.groups.get(self.group) else {
                let index = &self.layout.index;
                if self.index != index.chunks || self.total != index.size {
                    return Err(ReadError::Format(format!(
                        "read {} chunks and {} bytes; the index says {} chunks and {} bytes",
                        self.index, self.total, index.chunks, index.size
                    )));
                }
                return Ok(None);
            };
            let name = group_name(self.group as u64);
            let entries = list(self.client, group, &format!("the group {name}"))?;
            if entries.len() as u64 != *count {
                return Err(ReadError::Format(format!(
                    "the group {name} holds {} chunks, its entry says {count}",
                    entries.len()
                )));
            }
            self.entries = entries.into_iter();
            self.group += 1;
        }
    }
}

impl Read for ChunkedFile<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at >= self.chunk.len() {
            if self.ended {
                return Ok(0);
            }
            match self.next_chunk().map_err(io::Error::other)? {
                Some(chunk) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                None => {
                    self.ended = true;
                    self.chunk = Vec::new();
                    self.at = 0;
                }
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// One group of a chunk directory: its cap, and each chunk's cap,
/// encoding and decoded length.
pub(crate) type GroupObjects = (Cap, Vec<(Cap, Option<Encoding>, u64)>);

/// The objects of the chunk directory `root` (a stream's root, or a
/// chunked file's directory), group by group, for `cache rebuild`: what it
/// records as directory children and hashes into the content index.
pub(crate) fn objects(client: &Client, root: &Cap) -> Result<Vec<GroupObjects>, ReadError> {
    let layout = open(client, root)?
        .ok_or_else(|| ReadError::Format("the directory holds no chunk index".into()))?;
    let mut out = Vec::with_capacity(layout.groups.len());
    for (g, (group, _)) in layout.groups.iter().enumerate() {
        let entries = list(
            client,
            group,
            &format!("the group {}", group_name(g as u64)),
        )?;
        let mut chunks = Vec::with_capacity(entries.len());
        for (name, _, cap, meta) in entries {
            let bad = || ReadError::Format(format!("{name:?} of a group is not a chunk"));
            let cap = cap.ok_or_else(bad)?;
            let size = number(&meta, "size").ok_or_else(bad)?;
            let enc = match meta.get("enc").and_then(Value::as_str) {
                None => None,
                Some(codec) => Some(Encoding::from_name(codec).ok_or_else(bad)?),
            };
            chunks.push((cap, enc, size));
        }
        out.push((group.clone(), chunks));
    }
    Ok(out)
}
