//! Storing a stream: chunks through the content index, then the group
//! directories and the root (`docs/streams.md`).
//!
//! The calling thread reads and cuts the stream, hashes each chunk
//! (BLAKE3 of its raw bytes) and looks it up in the cache's content index,
//! under the same encoding tags as the files of tree backups: a chunk
//! stored before, by any stream or as a whole file, is not uploaded again.
//! The others go to `concurrency` worker threads, which encode them (the
//! compression rules, with the stream name as the path) and upload them.
//! At most `concurrency + 1` chunks are in flight, so memory is a few
//! chunks whatever the stream's length. Only the calling thread touches the
//! cache, and a cap enters it only once the gateway returned it.
//!
//! Nothing is recorded as a backup here: the caller records the root once
//! the source ended well (a command that failed stores chunks, but no
//! backup; its chunks are reused by the next run or swept with its
//! generation).

use std::collections::HashMap;
use std::io::{self, Read, Seek};
use std::sync::mpsc;

use thiserror::Error;
use tracing::{debug, trace};

use super::chunker::Chunker;
use super::{GROUP, INDEX_NAME, Index, chunk_meta, chunk_name, group_meta, group_name};
use crate::cache::{Cache, CacheError, KeyBuilder, ObjectKey, ObjectKind};
use crate::config::Chunking;
use crate::edge::{self, Child, EdgeMeta};
use crate::encode::{Encoder, Encoding};
use crate::tahoe::{Cap, Client, TahoeError};

/// The content-index tag of raw bytes (as the tree upload writes it).
const TAG_NONE: &str = "enc:none";

/// Why a stream could not be stored. Never contains a cap.
#[derive(Debug, Error)]
pub(crate) enum StreamError {
    /// The source failed (stdin, or the command's output).
    #[error("reading the stream: {0}")]
    Read(#[source] io::Error),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("{what}: {source}")]
    Tahoe {
        what: String,
        #[source]
        source: TahoeError,
    },
    /// Encoding a chunk or payload (its temporary file) failed.
    #[error("preparing {what}: {source}")]
    Prepare {
        what: String,
        #[source]
        source: io::Error,
    },
    /// With `--tar`: the stream is not a valid tar (offset and fault).
    #[error("{0}")]
    NotTar(String),
    #[error("{0}")]
    Other(String),
}

/// How a stream is stored.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    /// Look chunks up in the content index (false with
    /// `--disable-deduplication`; what is uploaded is recorded either way).
    pub(crate) dedup: bool,
    /// Upload threads, at least 1.
    pub(crate) concurrency: usize,
    /// A btrfs send stream's plan facts, written into its index.
    pub(crate) btrfs: Option<crate::btrfs::plan::Member>,
}

/// Counts of one stored stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stats {
    /// Chunks in the stream.
    pub(crate) chunks: u64,
    /// The stream's length.
    pub(crate) bytes: u64,
    /// Chunks uploaded by this run, and their raw bytes.
    pub(crate) chunks_uploaded: u64,
    pub(crate) bytes_uploaded: u64,
    /// Chunks found in the content index (or earlier in this stream).
    pub(crate) chunks_reused: u64,
    /// Directories created (groups and the root) and reused.
    pub(crate) dirs_created: u64,
    pub(crate) dirs_reused: u64,
}

/// A stored stream.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) root: Cap,
    pub(crate) stats: Stats,
}

/// A chunk in place: what its group's directory entry needs.
#[derive(Debug, Clone)]
struct Placed {
    cap: Cap,
    size: u64,
    enc: Option<Encoding>,
}

/// A chunk waiting for its upload (or for an identical one's).
struct Waiting {
    index: u64,
    size: u64,
}

/// What a worker uploads: bytes in memory (a chunk, a small payload) or a
/// spooled temporary file (a large tar payload, never held in memory).
pub(super) enum Body {
    Bytes(Vec<u8>),
    File(std::fs::File),
}

type Job = (u64, Body, Option<Encoding>);
/// A chunk's content: the hash of its raw bytes and its rule's tag.
type Content = ([u8; 32], String);
pub(super) type Done = (u64, Result<(Cap, Option<Encoding>), StreamError>);

/// Stores the stream `source` (named `name`: the path the compression
/// rules see) and returns its root directory.
pub(crate) fn store(
    client: &Client,
    cache: &mut Cache,
    encoder: &Encoder,
    chunking: &Chunking,
    name: &[u8],
    source: impl Read,
    options: Options,
) -> Result<Stored, StreamError> {
    let chunker = Chunker::new(source, chunking).map_err(StreamError::Other)?;
    let naming = Naming {
        item: chunk_name,
        noun: "chunk",
    };
    with_writer(
        client,
        cache,
        encoder,
        name,
        options,
        naming,
        |writer, done, concurrency| writer.run(chunker, done, concurrency, chunking),
    )
}

/// How the items a [`Writer`] places are named: their directory entry and
/// the word for them in messages.
#[derive(Clone, Copy)]
pub(super) struct Naming {
    pub(super) item: fn(u64) -> String,
    pub(super) noun: &'static str,
}

/// Runs `body` with a [`Writer`] whose uploads go to `options.concurrency`
/// worker threads; the workers end with it.
pub(super) fn with_writer<T>(
    client: &Client,
    cache: &mut Cache,
    encoder: &Encoder,
    name: &[u8],
    options: Options,
    naming: Naming,
    body: impl FnOnce(&mut Writer<'_, '_>, &mpsc::Receiver<Done>, usize) -> Result<T, StreamError>,
) -> Result<T, StreamError> {
    let concurrency = options.concurrency.max(1);
    let (job_tx, job_rx) = mpsc::sync_channel::<Job>(0);
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    let job_rx = std::sync::Mutex::new(job_rx);
    std::thread::scope(|scope| {
        for _ in 0..concurrency {
            let (done_tx, job_rx) = (done_tx.clone(), &job_rx);
            scope.spawn(move || {
                loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok((index, data, decision)) = job else {
                        return;
                    };
                    let result = upload_chunk(client, encoder, naming.noun, index, data, decision);
                    if done_tx.send((index, result)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        let mut writer = Writer {
            client,
            cache,
            encoder,
            name,
            options,
            naming,
            jobs: Some(job_tx),
            in_flight: 0,
            owners: HashMap::new(),
            waiters: HashMap::new(),
            placed: HashMap::new(),
            groups: Vec::new(),
            next_group: 0,
            total: None,
            stats: Stats::default(),
            encoding_checked: false,
        };
        let result = body(&mut writer, &done_rx, concurrency);
        // Closing the job channel ends the workers; the scope waits.
        writer.jobs = None;
        result
    })
}

/// Encodes `data` with the rule decision and uploads it.
fn upload_chunk(
    client: &Client,
    encoder: &Encoder,
    noun: &str,
    index: u64,
    data: Body,
    decision: Option<Encoding>,
) -> Result<(Cap, Option<Encoding>), StreamError> {
    let prepare = |e| StreamError::Prepare {
        what: format!("{noun} {index}"),
        source: e,
    };
    let uploading = |source| StreamError::Tahoe {
        what: format!("uploading {noun} {index}"),
        source,
    };
    let mut file = match data {
        // Already in memory (at most `max_size`, hashed by the caller):
        // encoded and sent from there, as one Content-Length body, with
        // the rules, probe and "not smaller" check of a file.
        Body::Bytes(data) => {
            let prepared = encoder.prepare_bytes(data, decision).map_err(prepare)?;
            let cap = client.upload_bytes(&prepared.body).map_err(uploading)?;
            return Ok((cap, prepared.encoding));
        }
        Body::File(file) => file,
    };
    file.rewind().map_err(prepare)?;
    let prepared = encoder.prepare_file(file, decision).map_err(prepare)?;
    // Sized, so that in native mode the body is read only twice (its key,
    // then its shares) rather than once more for its length.
    let cap = client
        .upload_sized(prepared.body_size, |_| prepared.open())
        .map_err(uploading)?;
    Ok((cap, prepared.encoding))
}

pub(super) struct Writer<'a, 'c> {
    pub(super) client: &'a Client,
    pub(super) cache: &'c mut Cache,
    encoder: &'a Encoder,
    name: &'a [u8],
    options: Options,
    naming: Naming,
    jobs: Option<mpsc::SyncSender<Job>>,
    in_flight: usize,
    /// Content being uploaded: (hash, rule tag) → the chunk uploading it.
    owners: HashMap<Content, u64>,
    /// Chunks waiting for another chunk's upload, by its index; the first
    /// is the owner itself.
    waiters: HashMap<u64, (Content, Vec<Waiting>)>,
    /// Chunks in place whose group is not written yet.
    placed: HashMap<u64, Placed>,
    /// Written groups: cap, chunks, bytes.
    groups: Vec<(Cap, u64, u64)>,
    next_group: u64,
    /// The chunk count, once the stream ended.
    total: Option<u64>,
    pub(super) stats: Stats,
    /// Whether a fresh upload's k/N were compared with the cache's probe.
    encoding_checked: bool,
}

impl Writer<'_, '_> {
    fn run(
        &mut self,
        chunker: Chunker<impl Read>,
        done: &mpsc::Receiver<Done>,
        concurrency: usize,
        chunking: &Chunking,
    ) -> Result<Stored, StreamError> {
        let mut index = 0u64;
        for chunk in chunker {
            let data = chunk.map_err(StreamError::Read)?;
            self.stats.bytes = self.stats.bytes.saturating_add(data.len() as u64);
            self.chunk(index, data)?;
            index += 1;
            self.pump(done, concurrency)?;
        }
        self.finish_items(index, done)?;
        let root = self.write_root(
            Index {
                btrfs: self.options.btrfs,
                ..Index::new(self.stats.bytes, index, chunking)
            }
            .to_json(),
            None,
        )?;
        self.cache.commit()?;
        Ok(Stored {
            root,
            stats: self.stats,
        })
    }

    /// After an item was handed over: takes the finished uploads, waits
    /// while more than `concurrency` are in flight (so memory stays a few
    /// items), commits the cache now and then.
    pub(super) fn pump(
        &mut self,
        done: &mpsc::Receiver<Done>,
        concurrency: usize,
    ) -> Result<(), StreamError> {
        while let Ok(result) = done.try_recv() {
            self.done(result)?;
        }
        while self.in_flight > concurrency {
            self.wait(done)?;
        }
        self.cache.maybe_commit()?;
        Ok(())
    }

    /// The items ended at `count`: waits for every upload and writes the
    /// last groups.
    pub(super) fn finish_items(
        &mut self,
        count: u64,
        done: &mpsc::Receiver<Done>,
    ) -> Result<(), StreamError> {
        self.total = Some(count);
        self.stats.chunks = count;
        while self.in_flight > 0 {
            self.wait(done)?;
        }
        self.write_groups()?;
        if self.next_group != count.div_ceil(GROUP) || !self.placed.is_empty() {
            return Err(StreamError::Other(format!(
                "internal error: a {} of the stream was never placed",
                self.naming.noun
            )));
        }
        Ok(())
    }

    fn wait(&mut self, done: &mpsc::Receiver<Done>) -> Result<(), StreamError> {
        let result = done
            .recv()
            .map_err(|_| StreamError::Other("the upload threads stopped unexpectedly".into()))?;
        self.done(result)?;
        self.cache.maybe_commit()?;
        Ok(())
    }

    /// One chunk of the stream: found, waiting for an identical one, or sent.
    fn chunk(&mut self, index: u64, data: Vec<u8>) -> Result<(), StreamError> {
        let size = data.len() as u64;
        let hash = *blake3::hash(&data).as_bytes();
        let name = self.name;
        self.item(index, Body::Bytes(data), size, hash, name)
    }

    /// Item `index` (a chunk, a tar payload) of `size` bytes hashing to
    /// `hash`, encoded by the rules as if at `path`: found in the content
    /// index, waiting for an identical one, or sent to a worker.
    pub(super) fn item(
        &mut self,
        index: u64,
        data: Body,
        size: u64,
        hash: [u8; 32],
        path: &[u8],
    ) -> Result<(), StreamError> {
        let decision = self.encoder.choose(path, size);
        let rule_tag = self.encoder.decision_tag(decision);
        if self.options.dedup {
            // What the rules want first; raw bytes too, as a chunk (or file)
            // the rules selected is stored raw when it did not compress.
            let mut tags = vec![rule_tag.clone()];
            if decision.is_some() {
                tags.push(TAG_NONE.to_owned());
            }
            for tag in tags {
                if let Some(cap) = self.cache.content_lookup(&hash, &tag)? {
                    let enc = enc_of_tag(&tag);
                    self.cache.record_encoded(
                        &chunk_key(&hash, &tag),
                        &cap,
                        ObjectKind::File,
                        enc.map(Encoding::as_str),
                        false,
                    )?;
                    self.stats.chunks_reused += 1;
                    trace!(index, "chunk already stored");
                    return self.place(index, Placed { cap, size, enc });
                }
            }
        }
        let content = (hash, rule_tag);
        if let Some(&owner) = self.owners.get(&content) {
            if let Some((_, list)) = self.waiters.get_mut(&owner) {
                list.push(Waiting { index, size });
            }
            return Ok(());
        }
        self.owners.insert(content.clone(), index);
        self.waiters
            .insert(index, (content, vec![Waiting { index, size }]));
        self.in_flight += 1;
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|tx| tx.send((index, data, decision)).is_ok());
        if !sent {
            return Err(StreamError::Other(
                "the upload threads stopped unexpectedly".into(),
            ));
        }
        Ok(())
    }

    /// Item `index` is the literal `cap` (at most 55 bytes, the bytes in
    /// the cap itself): placed without a request, counted as found.
    pub(super) fn literal(&mut self, index: u64, cap: Cap, size: u64) -> Result<(), StreamError> {
        self.stats.chunks_reused += 1;
        self.place(
            index,
            Placed {
                cap,
                size,
                enc: None,
            },
        )
    }

    /// An upload came back.
    fn done(&mut self, (index, result): Done) -> Result<(), StreamError> {
        self.in_flight -= 1;
        let (cap, enc) = result?;
        let Some(((hash, _), waiting)) = self.waiters.remove(&index) else {
            return Err(StreamError::Other(
                "internal error: an upload nobody waits for".into(),
            ));
        };
        self.owners.retain(|_, owner| *owner != index);
        // The tag of what was sent: the rule's codec, or raw bytes.
        let tag = match enc {
            Some(_) => self.encoder.decision_tag(enc),
            None => TAG_NONE.to_owned(),
        };
        self.cache.content_record(&hash, &tag, &cap)?;
        self.cache.record_encoded(
            &chunk_key(&hash, &tag),
            &cap,
            ObjectKind::File,
            enc.map(Encoding::as_str),
            true,
        )?;
        if !self.encoding_checked && !cap.is_literal() {
            // Once a run, as the tree upload does: warns when the gateway's
            // k/N differ from those the cache was made with.
            self.encoding_checked = true;
            self.cache.check_encoding(&cap)?;
        }
        for (i, w) in waiting.into_iter().enumerate() {
            if i == 0 {
                self.stats.chunks_uploaded += 1;
                self.stats.bytes_uploaded = self.stats.bytes_uploaded.saturating_add(w.size);
            } else {
                self.stats.chunks_reused += 1;
            }
            self.place(
                w.index,
                Placed {
                    cap: cap.clone(),
                    size: w.size,
                    enc,
                },
            )?;
        }
        Ok(())
    }

    fn place(&mut self, index: u64, placed: Placed) -> Result<(), StreamError> {
        self.placed.insert(index, placed);
        self.write_groups()
    }

    /// Writes every group whose chunks are all in place, in order.
    fn write_groups(&mut self) -> Result<(), StreamError> {
        loop {
            let first = self.next_group * GROUP;
            let end = match self.total {
                Some(total) if total <= first => return Ok(()),
                Some(total) => (first + GROUP).min(total),
                None => first + GROUP,
            };
            if !(first..end).all(|i| self.placed.contains_key(&i)) {
                return Ok(());
            }
            let chunks: Vec<(u64, Placed)> = (first..end)
                .filter_map(|i| self.placed.remove(&i).map(|p| (i, p)))
                .collect();
            let size = chunks.iter().map(|(_, p)| p.size).sum::<u64>();
            let children: Vec<(Child, String)> = chunks
                .into_iter()
                .map(|(i, p)| {
                    let meta = chunk_meta(p.size, p.enc);
                    (file_child((self.naming.item)(i), p.cap), meta)
                })
                .collect();
            let cap = self.mkdir(&children)?;
            self.groups.push((cap, end - first, size));
            self.next_group += 1;
        }
    }

    /// The root: the index entry with `index_json`, the groups, and
    /// `extra` (a tar stream's index directory) when given.
    pub(super) fn write_root(
        &mut self,
        index_json: String,
        extra: Option<(Child, String)>,
    ) -> Result<Cap, StreamError> {
        let mut children = vec![(
            file_child(INDEX_NAME.to_owned(), Cap::empty_literal()),
            index_json,
        )];
        for (i, (cap, chunks, size)) in self.groups.iter().enumerate() {
            children.push((
                dir_child(group_name(i as u64), cap.clone()),
                group_meta(*chunks, *size),
            ));
        }
        children.extend(extra);
        self.mkdir(&children)
    }

    /// An immutable directory of `children` (in name order), reused from
    /// the cache when one with the same body was made before.
    fn mkdir(&mut self, children: &[(Child, String)]) -> Result<Cap, StreamError> {
        let body = edge::sorted_children_json(children.iter().map(|(c, m)| (c, m.as_str())));
        let key = KeyBuilder::new("stream-dir").str(&body).finish();
        if self.options.dedup
            && let Some(cached) = self.cache.lookup(&key)?
        {
            self.stats.dirs_reused += 1;
            return Ok(cached.cap);
        }
        let cap = self
            .client
            .mkdir_immutable(&body)
            .map_err(|source| StreamError::Tahoe {
                what: "creating a directory of the stream".into(),
                source,
            })?;
        self.cache.record(&key, &cap, ObjectKind::Dir, true)?;
        let refs: Vec<&Cap> = children.iter().map(|(c, _)| &c.cap).collect();
        self.cache.record_children(&cap, &refs)?;
        self.stats.dirs_created += 1;
        debug!(children = children.len(), "created a stream directory");
        Ok(cap)
    }
}

/// A directory entry for a directory body (as [`file_child`]).
pub(super) fn dir_child(name: String, cap: Cap) -> Child {
    Child {
        name,
        cap,
        is_dir: true,
        meta: EdgeMeta::default(),
    }
}

/// A file entry for a directory body (only its name and cap are used: the
/// metadata goes beside it as JSON).
fn file_child(name: String, cap: Cap) -> Child {
    Child {
        name,
        cap,
        is_dir: false,
        meta: EdgeMeta::default(),
    }
}

/// The cache key of a chunk: its content and encoding tag (so that
/// `forget` and `cleanup` find the chunk's row by the generation that last
/// used it, as for files).
fn chunk_key(hash: &[u8; 32], tag: &str) -> ObjectKey {
    KeyBuilder::new("stream-chunk")
        .bytes(hash)
        .str(tag)
        .finish()
}

/// The encoding a content-index tag stands for (`enc:zstd:3` → zstd).
fn enc_of_tag(tag: &str) -> Option<Encoding> {
    let codec = tag.strip_prefix("enc:")?.split(':').next()?;
    Encoding::from_name(codec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_name_their_encoding() {
        assert_eq!(enc_of_tag("enc:none"), None);
        assert_eq!(enc_of_tag("enc:zstd:3"), Some(Encoding::Zstd));
        assert_eq!(enc_of_tag("enc:xz:9e"), Some(Encoding::Xz));
    }
}
