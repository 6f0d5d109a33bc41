//! Reading a stream back: its layout from the root directory, then its
//! chunks in order, each checked against the length its edge states, the
//! whole against the index's chunk count and size (`docs/streams.md`). A
//! tar stream: its record index (a plain stream) read record by record,
//! verbatim bytes written as they are, each payload streamed from its
//! object and checked against the length its record and its edge state.

use std::io::{self, Read};

use serde_json::Value;
use thiserror::Error;

use super::{
    GROUP, INDEX_NAME, Index, LayoutKind, TAR_INDEX_DIR, TarIndex, chunk_name, group_name,
    layout_kind, payload_name,
};
use crate::encode::{self, Encoding};
use crate::names::ROOT_META_NAME;
use crate::tahoe::{Cap, Client, TahoeError};
use crate::tarsplit::{IndexError, IndexReader, Record};

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
    /// A chunk's (or a tar payload's) content does not match its edge.
    #[error("{noun} {index}: {why}")]
    Chunk {
        noun: &'static str,
        index: u64,
        why: String,
    },
    /// The consumer of the bytes failed (stdout closed, a comparison).
    #[error("{0}")]
    Sink(#[source] io::Error),
}

/// A stream's layout: its length, and where its pieces are.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// The stream's length in bytes.
    pub(crate) size: u64,
    kind: Kind,
}

impl Layout {
    /// What a backup record counts for this stream: its objects (chunks;
    /// for a tar, payloads and the record index's chunks), its length, and
    /// the btrfs facts of a send stream (`cache rebuild` records these).
    pub(crate) fn recorded(&self) -> (u64, u64, Option<&crate::btrfs::plan::Member>) {
        match &self.kind {
            Kind::Plain(plain) => (plain.index.chunks, self.size, plain.index.btrfs.as_ref()),
            Kind::Tar { index, records, .. } => {
                (index.payloads + records.index.chunks, self.size, None)
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Kind {
    Plain(Plain),
    Tar {
        index: TarIndex,
        /// The payload groups: cap and payload count.
        groups: Vec<(Cap, u64)>,
        /// The record index, a plain stream.
        records: Plain,
    },
}

/// A plain stream: its index and its group directories.
#[derive(Debug, Clone)]
struct Plain {
    index: Index,
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
    let meta = entries
        .iter()
        .find(|e| e.0 == INDEX_NAME)
        .map(|e| e.3.clone())
        .unwrap_or(Value::Null);
    match layout_kind(&meta).map_err(ReadError::Format)? {
        LayoutKind::Plain => {
            let plain = plain(entries)?;
            Ok(Some(Layout {
                size: plain.index.size,
                kind: Kind::Plain(plain),
            }))
        }
        LayoutKind::Tar => {
            let index = TarIndex::from_json(&meta).map_err(ReadError::Format)?;
            let mut records = None;
            let mut rest = Vec::new();
            for entry in entries {
                match entry.0.as_str() {
                    INDEX_NAME => {}
                    TAR_INDEX_DIR if entry.1 => records = entry.2,
                    _ => rest.push(entry),
                }
            }
            let groups = groups(rest)?;
            if groups.len() as u64 != index.payloads.div_ceil(GROUP)
                || groups.iter().map(|g| g.1).sum::<u64>() != index.payloads
            {
                return Err(ReadError::Format(
                    "the group directories do not hold the index's payload count".into(),
                ));
            }
            let records = records.ok_or_else(|| {
                ReadError::Format(format!("the tar stream has no {TAR_INDEX_DIR} directory"))
            })?;
            let inner = list(client, &records, "the tar stream's record index")?;
            let records = plain(inner)?;
            Ok(Some(Layout {
                size: index.size,
                kind: Kind::Tar {
                    index,
                    groups,
                    records,
                },
            }))
        }
    }
}

/// A plain stream from its root directory's entries.
fn plain(entries: Vec<Entry>) -> Result<Plain, ReadError> {
    let mut index = None;
    let mut rest = Vec::new();
    for entry in entries {
        if entry.0 == INDEX_NAME {
            index = Some(Index::from_json(&entry.3).map_err(ReadError::Format)?);
        } else {
            rest.push(entry);
        }
    }
    let groups = groups(rest)?;
    let index = index.ok_or_else(|| ReadError::Format("no index".into()))?;
    if groups.len() as u64 != index.chunks.div_ceil(GROUP)
        || groups.iter().map(|g| g.1).sum::<u64>() != index.chunks
    {
        return Err(ReadError::Format(
            "the group directories do not hold the index's chunk count".into(),
        ));
    }
    Ok(Plain { index, groups })
}

/// The group directories `g00000000`, ... in order, and their counts.
fn groups(entries: Vec<Entry>) -> Result<Vec<(Cap, u64)>, ReadError> {
    let mut groups = Vec::new();
    for (name, is_dir, cap, meta) in entries {
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
    Ok(groups)
}

/// Hands the stream's bytes, in order, to `sink`: a plain stream's decoded
/// chunks, or a tar stream's records and payloads (in pieces). Checks each
/// chunk's and payload's length and, at the end, the counts and the total.
/// Returns the bytes handed out.
pub(crate) fn for_each_chunk(
    client: &Client,
    layout: &Layout,
    mut sink: impl FnMut(&[u8]) -> io::Result<()>,
) -> Result<u64, ReadError> {
    match &layout.kind {
        Kind::Plain(plain) => {
            let mut chunks = Chunks::new(client, plain);
            while let Some(data) = chunks.next_chunk()? {
                sink(&data).map_err(ReadError::Sink)?;
            }
            Ok(chunks.total)
        }
        Kind::Tar {
            index,
            groups,
            records,
        } => join(client, index, groups, records, &mut sink),
    }
}

/// An item of a group directory: a chunk or a payload.
struct Item {
    index: u64,
    cap: Cap,
    size: u64,
    enc: Option<Encoding>,
}

/// The items of group directories, in order, each listing read when
/// reached (memory: one group's listing).
struct Walk<'a> {
    client: &'a Client,
    groups: std::borrow::Cow<'a, [(Cap, u64)]>,
    name: fn(u64) -> String,
    noun: &'static str,
    group: usize,
    entries: std::vec::IntoIter<Entry>,
    index: u64,
}

impl<'a> Walk<'a> {
    fn new(
        client: &'a Client,
        groups: std::borrow::Cow<'a, [(Cap, u64)]>,
        name: fn(u64) -> String,
        noun: &'static str,
    ) -> Walk<'a> {
        Walk {
            client,
            groups,
            name,
            noun,
            group: 0,
            entries: Vec::new().into_iter(),
            index: 0,
        }
    }

    fn next_item(&mut self) -> Result<Option<Item>, ReadError> {
        loop {
            if let Some((name, is_dir, cap, meta)) = self.entries.next() {
                let index = self.index;
                let expected = (self.name)(index);
                if name != expected || is_dir {
                    return Err(ReadError::Format(format!(
                        "{name:?} where {} {expected} belongs",
                        self.noun
                    )));
                }
                let noun = self.noun;
                let bad = |why: String| ReadError::Chunk { noun, index, why };
                let cap = cap.ok_or_else(|| bad("no cap".into()))?;
                let size = number(&meta, "size").ok_or_else(|| bad("no size".into()))?;
                let enc = match meta.get("enc").and_then(Value::as_str) {
                    None => None,
                    Some(name) => Some(
                        Encoding::from_name(name)
                            .ok_or_else(|| bad(format!("unknown encoding {name:?}")))?,
                    ),
                };
                self.index += 1;
                return Ok(Some(Item {
                    index,
                    cap,
                    size,
                    enc,
                }));
            }
            let Some((group, count)) = self.groups.get(self.group) else {
                return Ok(None);
            };
            let shown = group_name(self.group as u64);
            let entries = list(self.client, group, &format!("the group {shown}"))?;
            if entries.len() as u64 != *count {
                return Err(ReadError::Format(format!(
                    "the group {shown} holds {} {}s, its entry says {count}",
                    entries.len(),
                    self.noun,
                )));
            }
            self.entries = entries.into_iter();
            self.group += 1;
        }
    }
}

/// The decoded chunks of a plain stream, in order, checked.
struct Chunks<'a> {
    walk: Walk<'a>,
    plain: &'a Plain,
    total: u64,
    ended: bool,
}

impl<'a> Chunks<'a> {
    fn new(client: &'a Client, plain: &'a Plain) -> Chunks<'a> {
        Chunks {
            walk: Walk::new(client, (&plain.groups[..]).into(), chunk_name, "chunk"),
            plain,
            total: 0,
            ended: false,
        }
    }

    /// The next chunk; at the end, the chunk count and total are checked.
    fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, ReadError> {
        if self.ended {
            return Ok(None);
        }
        let max = self.plain.index.max_size;
        let Some(item) = self.walk.next_item()? else {
            self.ended = true;
            let index = &self.plain.index;
            if self.walk.index != index.chunks || self.total != index.size {
                return Err(ReadError::Format(format!(
                    "read {} chunks and {} bytes; the index says {} chunks and {} bytes",
                    self.walk.index, self.total, index.chunks, index.size
                )));
            }
            return Ok(None);
        };
        let bad = |why: String| ReadError::Chunk {
            noun: "chunk",
            index: item.index,
            why,
        };
        if item.size > max {
            return Err(bad(format!(
                "its edge says {} bytes, more than the stream's max_size",
                item.size
            )));
        }
        let data = read_chunk(self.walk.client, &item.cap, item.size, item.enc, max).map_err(
            |e| match e {
                ReadError::Chunk { why, .. } => bad(why),
                other => other,
            },
        )?;
        self.total = self.total.saturating_add(item.size);
        Ok(Some(data))
    }
}

/// A plain stream as a [`Read`] (a tar stream's record index); a
/// [`ReadError`] comes wrapped in the `io::Error`.
struct ChunkRead<'a> {
    chunks: Chunks<'a>,
    data: Vec<u8>,
    at: usize,
}

impl Read for ChunkRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.data.len() {
            match self.chunks.next_chunk().map_err(io::Error::other)? {
                Some(data) => {
                    self.data = data;
                    self.at = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// A record index's error: the stream's own error when reading its chunks
/// failed, else what is wrong with the index.
fn index_error(e: IndexError) -> ReadError {
    if let IndexError::Read(io) = e {
        return match io.into_inner().map(|inner| inner.downcast::<ReadError>()) {
            Some(Ok(inner)) => *inner,
            Some(Err(other)) => {
                ReadError::Format(format!("reading the tar stream's record index: {other}"))
            }
            None => ReadError::Format("reading the tar stream's record index failed".into()),
        };
    }
    ReadError::Format(format!("the tar stream's record index: {e}"))
}

/// A tar stream: the records in order, verbatim bytes as they are, each
/// payload streamed from its object.
fn join(
    client: &Client,
    index: &TarIndex,
    groups: &[(Cap, u64)],
    records: &Plain,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<u64, ReadError> {
    let input = ChunkRead {
        chunks: Chunks::new(client, records),
        data: Vec::new(),
        at: 0,
    };
    let mut records = IndexReader::new(input).map_err(index_error)?;
    let mut payloads = Walk::new(client, groups.into(), payload_name, "payload");
    let mut total = 0u64;
    while let Some(record) = records.next_record().map_err(index_error)? {
        match record {
            Record::Verbatim(bytes) => {
                sink(&bytes).map_err(ReadError::Sink)?;
                total = total.saturating_add(bytes.len() as u64);
            }
            Record::Payload { path, size } => {
                let item = payloads.next_item()?.ok_or_else(|| {
                    ReadError::Format(format!(
                        "the record index names more than the {} payloads stored",
                        index.payloads
                    ))
                })?;
                if item.size != size {
                    return Err(ReadError::Chunk {
                        noun: "payload",
                        index: item.index,
                        why: format!(
                            "its edge says {} bytes, its record (\"{}\") {size}",
                            item.size,
                            path.escape_ascii()
                        ),
                    });
                }
                read_payload(client, &item, sink)?;
                total = total.saturating_add(size);
            }
        }
    }
    if payloads.next_item()?.is_some() || payloads.index != index.payloads || total != index.size {
        return Err(ReadError::Format(format!(
            "read {} payloads and {total} bytes; the index says {} payloads and {} bytes",
            payloads.index, index.payloads, index.size
        )));
    }
    Ok(total)
}

/// Streams one payload's decoded bytes to `sink`: exactly its size, never
/// more (a longer object is an error, its excess not written).
fn read_payload(
    client: &Client,
    item: &Item,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<(), ReadError> {
    let bad = |why: String| ReadError::Chunk {
        noun: "payload",
        index: item.index,
        why,
    };
    let mut written = 0u64;
    let mut attempts = 0u32;
    let mut sink_error = None;
    let mut too_long = false;
    let result = client.download_with_max(&item.cap, None, |body| {
        attempts += 1;
        if attempts > 1 && written > 0 {
            // A retried download cannot take back what was written.
            return Err(io::Error::other(format!(
                "the download was interrupted after {written} bytes were written"
            )));
        }
        let mut decoded = encode::decoder(item.enc, body)?;
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = match decoded.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let keep = usize::try_from(item.size - written)
                .unwrap_or(usize::MAX)
                .min(n);
            if let Err(e) = sink(&buf[..keep]) {
                sink_error = Some(e);
                return Err(io::Error::other("the output failed"));
            }
            written += keep as u64;
            if keep < n {
                too_long = true;
                return Ok(());
            }
        }
    });
    if let Some(e) = sink_error {
        return Err(ReadError::Sink(e));
    }
    result.map_err(|source| ReadError::Tahoe {
        what: format!("downloading payload {}", item.index),
        source,
    })?;
    if too_long || written != item.size {
        return Err(bad(format!(
            "holds {}{} bytes, its edge says {}",
            if too_long { "more than " } else { "" },
            written,
            item.size
        )));
    }
    Ok(())
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
    let chunk_err = |why: String| ReadError::Chunk {
        noun: "chunk",
        index: 0,
        why,
    };
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
    /// The chunks, group by group, each group listed when reached.
    walk: Walk<'a>,
    /// The chunk index the file was stored with.
    index: Index,
    /// The bytes read so far.
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
        let Kind::Plain(layout) = layout.kind else {
            return Err(ReadError::Format(
                "the chunked file's directory holds a tar stream, not chunks".into(),
            ));
        };
        if layout.index.size != size {
            return Err(ReadError::Format(format!(
                "the chunk index says {} bytes, the file's edge says {size}",
                layout.index.size
            )));
        }
        Ok(ChunkedFile {
            client,
            walk: Walk::new(client, layout.groups.into(), chunk_name, "chunk"),
            index: layout.index,
            total: 0,
            chunk: Vec::new(),
            at: 0,
            ended: false,
        })
    }

    /// The next chunk's decoded bytes, or `None` at a well-formed end.
    fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, ReadError> {
        let Some(item) = self.walk.next_item()? else {
            let index = &self.index;
            if self.walk.index != index.chunks || self.total != index.size {
                return Err(ReadError::Format(format!(
                    "read {} chunks and {} bytes; the index says {} chunks and {} bytes",
                    self.walk.index, self.total, index.chunks, index.size
                )));
            }
            return Ok(None);
        };
        let bad = |why: String| ReadError::Chunk {
            noun: "chunk",
            index: item.index,
            why,
        };
        let max = self.index.max_size;
        if item.size > max {
            return Err(bad(format!(
                "its edge says {} bytes, more than the stream's max_size",
                item.size
            )));
        }
        let data =
            read_chunk(self.client, &item.cap, item.size, item.enc, max).map_err(|e| match e {
                ReadError::Chunk { why, .. } => bad(why),
                other => other,
            })?;
        self.total = self.total.saturating_add(item.size);
        Ok(Some(data))
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

/// The objects of the chunk directory `root` (a plain stream's root, or a
/// chunked file's directory), group by group, for `cache rebuild`: what it
/// records as directory children and hashes into the content index.
pub(crate) fn objects(client: &Client, root: &Cap) -> Result<Vec<GroupObjects>, ReadError> {
    let layout = open(client, root)?
        .ok_or_else(|| ReadError::Format("the directory holds no chunk index".into()))?;
    let Kind::Plain(layout) = layout.kind else {
        return Err(ReadError::Format(
            "the directory holds a tar stream, not chunks".into(),
        ));
    };
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
