//! Preparing the upload body of bytes already in memory (a stream's chunk,
//! a small tar payload): the same decisions and the same encoded bytes as
//! [`Encoder::prepare_file`], without the temporary file.
//!
//! A chunk is at most `chunking.max_size` (4 MiB) and already held by the
//! caller, who also hashed it: writing it to a temporary file to read it
//! back twice (hash, then a verified body) cost a write, two reads and two
//! BLAKE3 passes per byte on the client's share of the CPU, which the
//! gateway shares on a small machine (docs/performance.md, issue 15).
//! The compressed form, when the probe says it pays, is built in memory
//! too and given up as soon as it would not be smaller than the raw bytes,
//! so it never holds more than the chunk's size again.

use std::io::{self, Write};

use liblzma::stream::{Check, Stream};

use super::gate::XzSlot;
use super::prepare::{CHUNK, compressible};
use super::{Encoder, Encoding};

/// The body of an in-memory item, made by [`Encoder::prepare_bytes`].
#[derive(Debug)]
pub(crate) struct PreparedBytes {
    /// The encoding actually used (`None`: the raw bytes are sent).
    pub(crate) encoding: Option<Encoding>,
    /// What to send: the raw bytes themselves, or their compressed form.
    pub(crate) body: Vec<u8>,
}

impl Encoder {
    /// [`Encoder::prepare_file`] of bytes in memory: with a decision of
    /// `Some(codec)`, the same probe of the first `PROBE_SIZE` bytes, then
    /// the whole compressed with `codec` (fed in the same pieces as a file
    /// is read, so the bytes are the same), kept only when smaller.
    pub(crate) fn prepare_bytes(
        &self,
        data: Vec<u8>,
        decision: Option<Encoding>,
    ) -> io::Result<PreparedBytes> {
        let raw = |body| PreparedBytes {
            encoding: None,
            body,
        };
        let Some(codec) = decision else {
            return Ok(raw(data));
        };
        let head = data.len().min(self.probe_size);
        if self.probe_size > 0 && !compressible(&data[..head]) {
            return Ok(raw(data));
        }
        match self.compress_bytes(codec, &data, head) {
            Ok(body) => Ok(PreparedBytes {
                encoding: Some(codec),
                body,
            }),
            Err(e) if is_not_smaller(&e) => Ok(raw(data)),
            Err(e) => Err(e),
        }
    }

    /// `data` compressed with `codec`, in the pieces `prepare_file` writes
    /// (the probe's head, then reads of [`CHUNK`]); an error that
    /// [`is_not_smaller`] recognises once the output reaches `data`'s size.
    fn compress_bytes(&self, codec: Encoding, data: &[u8], head: usize) -> io::Result<Vec<u8>> {
        let out = Bounded {
            buf: Vec::new(),
            limit: data.len(),
        };
        let pieces = std::iter::once(&data[..head]).chain(data[head..].chunks(CHUNK));
        let out = match codec {
            Encoding::Xz => {
                // The process-wide xz limit holds for chunks too (`gate`).
                let _slot = XzSlot::acquire(self.xz_max_parallel);
                let stream = Stream::new_easy_encoder(self.xz_preset(), Check::Crc64)
                    .map_err(|e| io::Error::other(format!("xz encoder: {e}")))?;
                let mut w = liblzma::write::XzEncoder::new_stream(out, stream);
                for piece in pieces {
                    w.write_all(piece)?;
                }
                w.finish()?
            }
            Encoding::Zstd => {
                let mut w = zstd::stream::write::Encoder::new(out, self.zstd_level)?;
                w.include_checksum(true)?;
                for piece in pieces {
                    w.write_all(piece)?;
                }
                w.finish()?
            }
        };
        Ok(out.buf)
    }
}

/// The compressed output would be at least as large as the raw bytes.
#[derive(Debug)]
struct NotSmaller;

impl std::fmt::Display for NotSmaller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the compressed form is not smaller")
    }
}

impl std::error::Error for NotSmaller {}

fn is_not_smaller(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|e| e.is::<NotSmaller>())
}

/// A memory sink that refuses to grow to `limit` bytes: the compressed
/// form is kept only when smaller than the raw bytes (as the spool is).
struct Bounded {
    buf: Vec<u8>,
    limit: usize,
}

impl Write for Bounded {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len().saturating_add(data.len()) >= self.limit {
            return Err(io::Error::other(NotSmaller));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
