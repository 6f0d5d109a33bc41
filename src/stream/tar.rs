//! Storing a tar stream (`backup --stdin --tar`, TARzan; docs/streams.md,
//! "Tar streams"): the tar is split as it passes ([`crate::tarsplit`]);
//! each regular member's payload is stored as an object of its own through
//! the content index (the compression rules see the member's path), in
//! group directories like a plain stream's chunks; every other byte goes
//! verbatim into the record index, which is spooled to an unlinked
//! temporary file (a tar of a million members has half a GB of headers)
//! and then stored as a plain stream under the root's `index` directory.
//!
//! Memory: payloads up to `chunking.max_size` are read into memory (a few
//! in flight, as chunks are); larger ones are spooled to an unlinked
//! temporary file while they are hashed, so none is held whole.
//!
//! `--tar-lenient`: the input is copied to an unlinked temporary file as it
//! is read, so a stream that turns out not to be a tar is stored again,
//! from its first byte, as a plain stream (stdin cannot be read twice).

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, Write};

use super::store::{
    self, Body, Naming, Options, Stats, Stored, StreamError, dir_child, with_writer,
};
use super::{TAR_INDEX_DIR, TarIndex, group_meta, payload_name};
use crate::cache::Cache;
use crate::config::Chunking;
use crate::encode::Encoder;
use crate::tahoe::{Cap, Client};
use crate::tarsplit::{Event, IndexWriter, SplitError, Splitter, is_tar_error};

/// Counts of one stored tar stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TarStats {
    /// The tar's length.
    pub(crate) size: u64,
    /// The payloads: `chunks` is their count, `bytes` their length.
    pub(crate) payloads: Stats,
    /// The record index, stored as a plain stream.
    pub(crate) index: Stats,
}

/// What `store_tar` stored.
#[derive(Debug)]
pub(crate) enum TarStored {
    /// A tar stream.
    Tar { root: Cap, stats: TarStats },
    /// `--tar-lenient` on a stream that is not a tar: a plain stream, and
    /// the tar error (offset and fault) that made it one.
    Plain { stored: Stored, why: String },
}

/// Stores the tar stream `source` (named `name`) and returns its root.
/// Not a valid tar: [`StreamError::NotTar`], or with `lenient` a plain
/// stream of the same bytes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn store_tar(
    client: &Client,
    cache: &mut Cache,
    encoder: &Encoder,
    chunking: &Chunking,
    name: &[u8],
    source: impl Read,
    options: Options,
    lenient: bool,
) -> Result<TarStored, StreamError> {
    let spool_err = |e| StreamError::Prepare {
        what: "the tar's spool file".into(),
        source: e,
    };
    let copy = if lenient {
        Some(tempfile::tempfile().map_err(spool_err)?)
    } else {
        None
    };
    let mut splitter = Splitter::new(Tee {
        inner: source,
        copy,
    });
    let naming = Naming {
        item: payload_name,
        noun: "payload",
    };
    let split = with_writer(
        client,
        cache,
        encoder,
        name,
        options,
        naming,
        |writer, done, concurrency| {
            let index_err = |e| StreamError::Prepare {
                what: "the tar's record index".into(),
                source: e,
            };
            let file = tempfile::tempfile().map_err(index_err)?;
            let mut index = IndexWriter::new(BufWriter::new(file)).map_err(index_err)?;
            let mut size = 0u64;
            let mut count = 0u64;
            loop {
                let event = match splitter.next_event() {
                    Ok(Some(event)) => event,
                    Ok(None) => break,
                    Err(SplitError::Tar(e)) => return Ok(Err(e.to_string())),
                    Err(SplitError::Read { source, .. }) => return Err(StreamError::Read(source)),
                };
                match event {
                    Event::Verbatim(bytes) => {
                        index.verbatim(&bytes).map_err(index_err)?;
                        size += bytes.len() as u64;
                    }
                    Event::Payload {
                        path,
                        size: len,
                        reader,
                    } => {
                        let (body, hash) = match take_payload(reader, len, chunking.max_size) {
                            Ok(taken) => taken,
                            Err(Taken::NotTar(why)) => return Ok(Err(why)),
                            Err(Taken::Read(e)) => return Err(StreamError::Read(e)),
                            Err(Taken::Spool(e)) => {
                                return Err(StreamError::Prepare {
                                    what: format!("payload {count}"),
                                    source: e,
                                });
                            }
                        };
                        index.payload(&path, len).map_err(index_err)?;
                        writer.stats.bytes = writer.stats.bytes.saturating_add(len);
                        match &body {
                            // A payload of at most 55 bytes is a literal cap
                            // (its bytes in the cap): no request, and no
                            // content-index row (literals have none).
                            Body::Bytes(data) if let Some(cap) = crate::tahoe::lit_cap(data) => {
                                writer.literal(count, cap, len)?;
                            }
                            _ => writer.item(count, body, len, hash, &path)?,
                        }
                        count += 1;
                        size += len;
                        writer.pump(done, concurrency)?;
                    }
                }
            }
            writer.finish_items(count, done)?;
            let mut file = index
                .finish()
                .and_then(|w| w.into_inner().map_err(io::IntoInnerError::into_error))
                .map_err(index_err)?;
            file.rewind().map_err(index_err)?;
            // The index is a plain stream of its own, deduplicated like any
            // (yesterday's headers are mostly today's), under the root.
            let stored_index = store::store(
                writer.client,
                writer.cache,
                encoder,
                chunking,
                name,
                file,
                options,
            )?;
            let index_dir = (
                dir_child(TAR_INDEX_DIR.to_owned(), stored_index.root),
                group_meta(stored_index.stats.chunks, stored_index.stats.bytes),
            );
            let json = TarIndex {
                size,
                payloads: count,
            }
            .to_json();
            let root = writer.write_root(json, Some(index_dir))?;
            writer.cache.commit()?;
            Ok(Ok((
                root,
                TarStats {
                    size,
                    payloads: writer.stats,
                    index: stored_index.stats,
                },
            )))
        },
    )?;
    let why = match split {
        Ok((root, stats)) => return Ok(TarStored::Tar { root, stats }),
        Err(why) => why,
    };
    let (tee, _) = splitter.into_parts();
    let Tee { inner, copy } = tee;
    let Some(mut copy) = copy else {
        return Err(StreamError::NotTar(why));
    };
    // Every byte read so far is in the copy (what the splitter still held
    // included); the rest is still in the input.
    copy.rewind().map_err(spool_err)?;
    let stored = store::store(
        client,
        cache,
        encoder,
        chunking,
        name,
        copy.chain(inner),
        options,
    )?;
    Ok(TarStored::Plain { stored, why })
}

/// Why a payload could not be taken.
enum Taken {
    /// The stream ended inside it: not a tar.
    NotTar(String),
    /// The input failed.
    Read(io::Error),
    /// Its temporary file failed.
    Spool(io::Error),
}

/// Reads a payload of `size` bytes: into memory up to `in_memory` bytes,
/// else into an unlinked temporary file; with the BLAKE3 hash of its bytes.
fn take_payload(
    mut reader: impl Read,
    size: u64,
    in_memory: u64,
) -> Result<(Body, [u8; 32]), Taken> {
    let failed = |e: io::Error| {
        if is_tar_error(&e) {
            Taken::NotTar(e.to_string())
        } else {
            Taken::Read(e)
        }
    };
    let mut hasher = blake3::Hasher::new();
    if size <= in_memory {
        let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        reader.read_to_end(&mut data).map_err(failed)?;
        hasher.update(&data);
        return Ok((Body::Bytes(data), *hasher.finalize().as_bytes()));
    }
    let mut file = tempfile::tempfile().map_err(Taken::Spool)?;
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(failed(e)),
        };
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(Taken::Spool)?;
    }
    Ok((Body::File(file), *hasher.finalize().as_bytes()))
}

/// The input, copied to `copy` as it is read (`--tar-lenient`).
struct Tee<R> {
    inner: R,
    copy: Option<File>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(copy) = &mut self.copy {
            // A failed copy is a failed read: the fallback would lose bytes.
            copy.write_all(&buf[..n])?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-member ustar archive of `data` named `f`, as bytes.
    fn one_member(data: &[u8]) -> Vec<u8> {
        let mut header = [0u8; 512];
        header[0] = b'f';
        header[100..107].copy_from_slice(b"0000644");
        header[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        header[136..147].copy_from_slice(b"00000000000");
        header[156] = b'0';
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[148..156].fill(b' ');
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        header[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        let mut tar = header.to_vec();
        tar.extend_from_slice(data);
        tar.resize(tar.len().div_ceil(512) * 512 + 1024, 0);
        tar
    }

    fn payload_of(tar: &[u8], in_memory: u64) -> Result<(Body, [u8; 32]), Taken> {
        let mut sp = Splitter::new(tar);
        loop {
            match sp.next_event().unwrap().unwrap() {
                Event::Verbatim(_) => {}
                Event::Payload { size, reader, .. } => {
                    return take_payload(reader, size, in_memory);
                }
            }
        }
    }

    #[test]
    fn payloads_are_held_in_memory_or_spooled_with_their_hash() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let tar = one_member(&data);
        let want = *blake3::hash(&data).as_bytes();
        let Ok((Body::Bytes(bytes), hash)) = payload_of(&tar, 5000) else {
            panic!("in memory up to the limit");
        };
        assert_eq!((bytes, hash), (data.clone(), want));
        let Ok((Body::File(mut file), hash)) = payload_of(&tar, 4999) else {
            panic!("spooled past the limit");
        };
        let mut spooled = Vec::new();
        file.rewind().unwrap();
        file.read_to_end(&mut spooled).unwrap();
        assert_eq!((spooled, hash), (data, want));
    }

    #[test]
    fn a_tar_cut_inside_a_payload_is_a_tar_error_not_a_read_error() {
        let tar = one_member(&[7u8; 3000]);
        let cut = &tar[..2000];
        match payload_of(cut, 1 << 20) {
            Err(Taken::NotTar(why)) => {
                assert!(why.contains("not a valid tar stream at byte 2000"), "{why}");
            }
            _ => panic!("a short payload is a tar error"),
        }
    }

    #[test]
    fn the_tee_copies_every_byte_read() {
        let data: Vec<u8> = (0..70_000u32).map(|i| (i % 13) as u8).collect();
        let mut tee = Tee {
            inner: &data[..],
            copy: Some(tempfile::tempfile().unwrap()),
        };
        let mut head = vec![0u8; 12_345];
        tee.read_exact(&mut head).unwrap();
        let Tee { inner, copy } = tee;
        let mut copy = copy.unwrap();
        copy.rewind().unwrap();
        let mut replay = Vec::new();
        copy.chain(inner).read_to_end(&mut replay).unwrap();
        assert_eq!(replay, data);
    }

    /// A command job's `tar: true` dumps and reloads; `tar: false` and an
    /// unset `tar` dump as before (no key); a tree job's `tar` is refused.
    #[test]
    fn the_job_key_tar_dumps_only_when_true() {
        let job = |tar: &str| {
            format!("jobs:\n  - name: t\n    kind: command\n    command: [tar, -c, .]\n{tar}")
        };
        let with = crate::config::load_from_strs(&[("cfg", &job("    tar: true\n"))])
            .unwrap()
            .config;
        assert!(with.jobs[0].tar);
        let dump = with.to_yaml();
        assert!(dump.contains("tar: true"), "{dump}");
        let again = crate::config::load_from_strs(&[("dump", &dump)])
            .unwrap()
            .config;
        // The same config but for the line numbers.
        assert_eq!(again.to_yaml(), dump);
        assert!(again.jobs[0].tar);
        let unset = crate::config::load_from_strs(&[("cfg", &job(""))])
            .unwrap()
            .config;
        let off = crate::config::load_from_strs(&[("cfg", &job("    tar: false\n"))])
            .unwrap()
            .config;
        assert_eq!(off.to_yaml(), unset.to_yaml());
        assert!(!unset.to_yaml().contains("tar:"));
        let tree = "jobs:\n  - name: t\n    tar: true\n    source: {path: /tmp}\n";
        let err = crate::config::load_from_strs(&[("cfg", tree)]).unwrap_err();
        assert!(
            err.to_string().contains("only a job of kind: command"),
            "{err}"
        );
    }
}
